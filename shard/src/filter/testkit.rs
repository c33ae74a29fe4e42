//! What the filter tests share: building payloads and filters from JSON, the points of Qdrant's
//! filtering guide, and proptest strategies for payloads, conditions and hostile JSON.

use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

use super::{Filter, parse_filter};
use crate::point::{Payload, PointId};

pub(crate) fn obj(v: Value) -> Payload {
    match v {
        Value::Object(m) => m,
        other => panic!("payload must be an object, got {other}"),
    }
}

pub(crate) fn parsed(j: &Value) -> Filter {
    parse_filter(j).unwrap_or_else(|e| panic!("{j} should parse: {e}"))
}

pub(crate) fn eval(filter: &Value, id: u64, payload: &Payload) -> bool {
    parsed(filter).matches(&PointId::Num(id), payload)
}

/// Whether the single condition `c` holds for `payload` (id 1).
pub(crate) fn holds(c: &Value, payload: &Value) -> bool {
    eval(&json!({ "must": [c] }), 1, &obj(payload.clone()))
}

pub(crate) fn run_table(cases: &[(&str, Value, Value, bool)]) {
    for (name, c, p, want) in cases {
        assert_eq!(holds(c, p), *want, "case {name}: {c} on {p}");
    }
}

pub(crate) fn parse_err(j: Value) -> String {
    match parse_filter(&j) {
        Ok(f) => panic!("{j} should be refused, got {f:?}"),
        Err(e) => e.to_string(),
    }
}

/// The six points of Qdrant's filtering guide; returns the ids `filter` selects.
pub(crate) fn cities(filter: Value) -> Vec<u64> {
    let points = [
        (1, "London", "green"),
        (2, "London", "red"),
        (3, "London", "blue"),
        (4, "Berlin", "red"),
        (5, "Moscow", "green"),
        (6, "Moscow", "blue"),
    ];
    let f = parsed(&filter);
    points
        .iter()
        .filter(|(id, city, color)| {
            f.matches(
                &PointId::Num(*id),
                &obj(json!({"city": city, "color": color})),
            )
        })
        .map(|(id, _, _)| *id)
        .collect()
}

// ---- properties -------------------------------------------------------------------------

pub(crate) fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(options)
}

pub(crate) fn leaf_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-2i64..4).prop_map(Value::from),
        pick(&["1.5", "-0.5", "2.0"]).prop_map(|s| json!(s.parse::<f64>().unwrap_or(0.0))),
        pick(&[
            "red",
            "Red",
            "green",
            "hello world",
            "",
            "2020-01-01T00:00:00Z",
            "2021-06-01"
        ])
        .prop_map(Value::from),
    ]
}

pub(crate) fn any_value() -> impl Strategy<Value = Value> {
    leaf_value().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((pick(&["x", "y"]), inner), 0..3).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

pub(crate) fn payload() -> impl Strategy<Value = Payload> {
    let objects = prop::collection::vec(
        prop::collection::vec((pick(&["x", "y"]), any_value()), 0..3).prop_map(|kv| {
            Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }),
        0..4,
    );
    (
        prop::collection::vec((pick(&["a", "b", "arr", "x", "we ird"]), any_value()), 0..5),
        prop::option::of(objects),
    )
        .prop_map(|(kv, arr)| {
            let mut p: Payload = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            if let Some(arr) = arr {
                p.insert("arr".into(), Value::Array(arr));
            }
            p
        })
}

pub(crate) fn key() -> impl Strategy<Value = &'static str> {
    pick(&[
        "a",
        "b",
        "x",
        "a.x",
        "arr",
        "arr[]",
        "arr[].x",
        "arr[0].x",
        "\"we ird\".y",
    ])
}

pub(crate) fn match_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        pick(&["red", "green", "hello"]).prop_map(|s| json!({ "value": s })),
        (-2i64..4).prop_map(|i| json!({ "value": i })),
        any::<bool>().prop_map(|b| json!({ "value": b })),
        prop::collection::vec(pick(&["red", "green"]), 0..3).prop_map(|v| json!({ "any": v })),
        prop::collection::vec(-2i64..4, 0..3).prop_map(|v| json!({ "any": v })),
        prop::collection::vec(pick(&["red", "green"]), 0..3).prop_map(|v| json!({ "except": v })),
        prop::collection::vec(-2i64..4, 0..3).prop_map(|v| json!({ "except": v })),
        pick(&["hello", "world hello", "RED", ""]).prop_map(|s| json!({ "text": s })),
        pick(&["hello", "nope red", ""]).prop_map(|s| json!({ "text_any": s })),
        pick(&["hello world", "world hello", "red"]).prop_map(|s| json!({ "phrase": s })),
    ]
}

pub(crate) fn bound_json(datetime: bool) -> impl Strategy<Value = Value> {
    let num = prop_oneof![(-2i64..4).prop_map(|i| json!(i)), Just(json!(0.5))];
    let dt = pick(&[
        "2020-01-01",
        "2020-06-01T00:00:00Z",
        "2021-01-01T00:00:00+01:00",
    ])
    .prop_map(|s| json!(s));
    let one = if datetime { dt.boxed() } else { num.boxed() };
    prop::collection::vec((pick(&["gt", "gte", "lt", "lte"]), one), 0..3)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

pub(crate) fn leaf_condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (key(), match_json()).prop_map(|(k, m)| json!({"key": k, "match": m})),
        1 => (key(), any::<bool>().prop_flat_map(bound_json)).prop_map(|(k, r)| json!({"key": k, "range": r})),
        1 => (key(), prop::collection::vec((pick(&["gt", "gte", "lt", "lte"]), 0usize..3), 0..3))
            .prop_map(|(k, b)| json!({"key": k, "values_count": b.into_iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<Map<_, _>>()})),
        1 => (key(), any::<bool>()).prop_map(|(k, b)| json!({"key": k, "is_empty": b})),
        1 => (key(), any::<bool>()).prop_map(|(k, b)| json!({"key": k, "is_null": b})),
        1 => key().prop_map(|k| json!({"is_empty": {"key": k}})),
        1 => key().prop_map(|k| json!({"is_null": {"key": k}})),
        1 => prop::collection::vec(0u64..5, 0..3).prop_map(|ids| json!({ "has_id": ids })),
        1 => pick(&["", "image"]).prop_map(|n| json!({ "has_vector": n })),
    ]
}

pub(crate) fn condition() -> impl Strategy<Value = Value> {
    leaf_condition().prop_recursive(3, 16, 3, |inner| {
        let list = |n: std::ops::Range<usize>| prop::collection::vec(inner.clone(), n);
        prop_oneof![
            (list(0..3), list(0..3), list(0..2))
                .prop_map(|(m, s, n)| json!({"must": m, "should": s, "must_not": n})),
            (list(0..3), 1usize..3)
                .prop_map(|(c, k)| json!({"min_should": {"conditions": c, "min_count": k}})),
            (pick(&["arr", "a", "arr[]"]), list(1..3))
                .prop_map(|(k, m)| json!({"nested": {"key": k, "filter": {"must": m}}})),
        ]
    })
}

pub(crate) fn filter_json() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(condition(), 0..3),
        prop::collection::vec(condition(), 0..3),
        prop::collection::vec(condition(), 0..2),
    )
        .prop_map(|(m, s, n)| json!({"must": m, "should": s, "must_not": n}))
}

/// JSON shaped like filters but built from any mix of known and unknown keys and values.
pub(crate) fn wild_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        pick(&[
            "a",
            "a[]",
            "a.b",
            "a..b",
            "\"x",
            "",
            "2020-01-01",
            "red",
            "[0]",
            "a[9999999999999999999999]"
        ])
        .prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    pick(&[
                        "must",
                        "should",
                        "must_not",
                        "min_should",
                        "conditions",
                        "min_count",
                        "key",
                        "match",
                        "range",
                        "values_count",
                        "value",
                        "any",
                        "except",
                        "text",
                        "text_any",
                        "phrase",
                        "gt",
                        "gte",
                        "lt",
                        "lte",
                        "is_empty",
                        "is_null",
                        "has_id",
                        "has_vector",
                        "nested",
                        "filter",
                        "geo_radius",
                        "x",
                    ]),
                    inner,
                ),
                0..4,
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}
