//! Fuzzing of the request decoders: random JSON in the shapes clients send (the field names the
//! decoders read, values of every kind, nesting) must give a typed request or a clear error,
//! never a panic. `PROPTEST_CASES=100000 cargo test -p tessera-node --lib fuzz_` runs it longer.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::points::{Count, Retrieve, Scroll, SelectedWrite, SelectedWriteKind, Upsert};
use super::query::Query;

const KEYS: &[&str] = &[
    "points",
    "id",
    "ids",
    "vector",
    "payload",
    "shard_key",
    "filter",
    "must",
    "should",
    "must_not",
    "key",
    "match",
    "value",
    "range",
    "gte",
    "lt",
    "limit",
    "offset",
    "with_payload",
    "with_vector",
    "query",
    "using",
    "params",
    "hnsw_ef",
    "exact",
    "fallback",
    "target",
    "keys",
    "nested",
    "has_id",
    "is_empty",
    "is_null",
    "values_count",
    "min_should",
    "conditions",
    "min_count",
    "text",
    "any",
    "except",
    "datetime_range",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        (-2.0f32..2.0).prop_map(|f| json!(f)),
        prop::sample::select(vec!["a", "acme", "", "2024-01-01T00:00:00Z", "5", "x.y[]"])
            .prop_map(|s| json!(s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            object(inner).prop_map(Value::Object),
        ]
    })
}

fn object(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
        inner,
        0..6,
    )
    .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #[test]
    fn fuzz_request_decoders_never_panic(body in object(value())) {
        let _ = Count::parse(&body);
        let _ = Scroll::parse(&body, 100);
        let _ = Retrieve::parse(&body, 100);
        let _ = Query::parse(&body, 100);
        for kind in [
            SelectedWriteKind::Delete,
            SelectedWriteKind::SetPayload,
            SelectedWriteKind::OverwritePayload,
            SelectedWriteKind::DeletePayload,
            SelectedWriteKind::ClearPayload,
        ] {
            let _ = SelectedWrite::parse(&body, kind);
        }
        let _ = tessera_shard::filter::parse_filter(&Value::Object(body.clone()));
        // an accepted upsert holds only points of the collection's dimension
        if let Ok(upsert) = Upsert::parse(&body, 2, 100) {
            prop_assert!(upsert.points.len() <= 100);
            prop_assert!(upsert.points.iter().all(|p| p.vector.len() == 2));
        }
    }
}
