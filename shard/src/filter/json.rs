//! Qdrant's JSON form of a filter: the parser, which refuses malformed input with a place and a
//! reason and bounds depth and size, and the renderer, whose canonical output the parser reads back
//! to an equal filter.

use std::collections::HashSet;

use serde_json::{Map, Number, Value};

use super::model::{
    AnyVariants, Bounds, Condition, FieldCondition, Filter, FilterError, MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH, Match, MatchValue, MinShould, Range, TextQuery, ValuesCount,
};
use super::path::JsonPath;
use crate::calendar::parse_datetime;
use crate::point::PointId;

/// Parses a filter from Qdrant's JSON. JSON `null` is the empty filter (matches everything).
pub fn parse_filter(v: &Value) -> Result<Filter, FilterError> {
    if v.is_null() {
        return Ok(Filter::default());
    }
    let mut p = Parser { conditions: 0 };
    p.filter(v, "filter", 1)
}

struct Parser {
    conditions: usize,
}

fn err(at: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        at: at.to_string(),
        message: message.into(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn expect_object<'v>(
    v: &'v Value,
    at: &str,
    what: &str,
) -> Result<&'v Map<String, Value>, FilterError> {
    v.as_object()
        .ok_or_else(|| err(at, format!("expected {what}, got {}", kind(v))))
}

/// Refuses keys of `obj` outside `allowed`.
fn only_keys(
    obj: &Map<String, Value>,
    at: &str,
    what: &str,
    allowed: &[&str],
) -> Result<(), FilterError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(
            at,
            format!(
                "unknown field '{k}' in {what}, expected one of: {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The value of `key` in `obj`, with JSON null meaning absent.
fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

const FILTER_KEYS: [&str; 4] = ["must", "should", "must_not", "min_should"];

impl Parser {
    fn filter(&mut self, v: &Value, at: &str, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(err(
                at,
                format!("filters are nested more than {MAX_FILTER_DEPTH} levels deep"),
            ));
        }
        let obj = expect_object(v, at, "a filter object")?;
        only_keys(obj, at, "a filter", &FILTER_KEYS)?;
        let mut f = Filter::default();
        for (k, val) in obj {
            let sub = format!("{at}.{k}");
            match k.as_str() {
                "must" => f.must = self.clause(val, &sub, depth)?,
                "should" => f.should = self.clause(val, &sub, depth)?,
                "must_not" => f.must_not = self.clause(val, &sub, depth)?,
                _ => f.min_should = self.min_should(val, &sub, depth)?,
            }
        }
        Ok(f)
    }

    /// A list of conditions, a single condition object, or null.
    fn clause(&mut self, v: &Value, at: &str, depth: usize) -> Result<Vec<Condition>, FilterError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, c)| self.condition(c, &format!("{at}[{i}]"), depth))
                .collect(),
            Value::Object(_) => Ok(vec![self.condition(v, at, depth)?]),
            other => Err(err(
                at,
                format!(
                    "expected a condition or a list of conditions, got {}",
                    kind(other)
                ),
            )),
        }
    }

    fn min_should(
        &mut self,
        v: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Option<MinShould>, FilterError> {
        if v.is_null() {
            return Ok(None);
        }
        let obj = expect_object(v, at, "an object with 'conditions' and 'min_count'")?;
        only_keys(obj, at, "min_should", &["conditions", "min_count"])?;
        let conditions = match field(obj, "conditions") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, c)| self.condition(c, &format!("{at}.conditions[{i}]"), depth))
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(err(
                    &format!("{at}.conditions"),
                    format!("expected a list of conditions, got {}", kind(other)),
                ));
            }
            None => return Err(err(at, "missing field 'conditions'")),
        };
        let min_count = match field(obj, "min_count") {
            None => return Err(err(at, "missing field 'min_count'")),
            Some(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    err(
                        &format!("{at}.min_count"),
                        format!("expected an integer of at least 1, got {n}"),
                    )
                })?,
        };
        Ok(Some(MinShould {
            conditions,
            min_count,
        }))
    }

    fn condition(&mut self, v: &Value, at: &str, depth: usize) -> Result<Condition, FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_FILTER_CONDITIONS {
            return Err(err(
                at,
                format!("a filter may have at most {MAX_FILTER_CONDITIONS} conditions"),
            ));
        }
        let obj = expect_object(v, at, "a condition object")?;
        if obj.contains_key("key") {
            return field_condition(obj, at).map(Condition::Field);
        }
        const KINDS: [&str; 5] = ["is_empty", "is_null", "has_id", "has_vector", "nested"];
        let mut kinds = obj.keys().filter(|k| KINDS.contains(&k.as_str()));
        let filter_keys = obj.keys().any(|k| FILTER_KEYS.contains(&k.as_str()));
        let unknown = obj
            .keys()
            .find(|k| !KINDS.contains(&k.as_str()) && !FILTER_KEYS.contains(&k.as_str()));
        match (kinds.next(), kinds.next(), filter_keys, unknown) {
            (_, _, _, Some(k)) => Err(err(
                at,
                format!(
                    "unknown condition field '{k}': expected a field condition ({{\"key\": .., \"match\": ..}}), \
                     is_empty, is_null, has_id, has_vector, nested, or a filter (must, should, must_not, min_should)"
                ),
            )),
            (Some(a), Some(b), _, _) => Err(err(
                at,
                format!("a condition has one kind, found both '{a}' and '{b}'"),
            )),
            (Some(a), None, true, _) => Err(err(
                at,
                format!("a condition has one kind, found '{a}' and filter clauses"),
            )),
            (Some(k), None, false, None) => {
                let sub = format!("{at}.{k}");
                let inner = &obj[k.as_str()];
                match k.as_str() {
                    "is_empty" => payload_field(inner, &sub).map(Condition::IsEmpty),
                    "is_null" => payload_field(inner, &sub).map(Condition::IsNull),
                    "has_id" => has_id(inner, &sub).map(Condition::HasId),
                    "has_vector" => match inner {
                        Value::String(name) => Ok(Condition::HasVector(name.clone())),
                        other => Err(err(
                            &sub,
                            format!("expected a vector name, got {}", kind(other)),
                        )),
                    },
                    _ => self.nested(inner, &sub, depth),
                }
            }
            // Filter clauses, or `{}` (the empty filter, which always holds).
            (None, _, _, None) => self.filter(v, at, depth + 1).map(Condition::Filter),
        }
    }

    fn nested(&mut self, v: &Value, at: &str, depth: usize) -> Result<Condition, FilterError> {
        let obj = expect_object(v, at, "an object with 'key' and 'filter'")?;
        only_keys(obj, at, "nested", &["key", "filter"])?;
        let key = match field(obj, "key") {
            Some(k) => key_path(k, &format!("{at}.key"))?,
            None => return Err(err(at, "missing field 'key'")),
        };
        let filter = match field(obj, "filter") {
            Some(f) => self.filter(f, &format!("{at}.filter"), depth + 1)?,
            None => return Err(err(at, "missing field 'filter'")),
        };
        Ok(Condition::Nested { key, filter })
    }
}

fn key_path(v: &Value, at: &str) -> Result<JsonPath, FilterError> {
    match v {
        Value::String(s) => {
            JsonPath::parse(s).map_err(|e| err(at, format!("invalid key path '{s}': {e}")))
        }
        other => Err(err(
            at,
            format!("expected a key path string, got {}", kind(other)),
        )),
    }
}

/// `{"key": "path"}`, as in `{"is_empty": {"key": "path"}}`.
fn payload_field(v: &Value, at: &str) -> Result<JsonPath, FilterError> {
    let obj = expect_object(v, at, "an object with 'key'")?;
    only_keys(obj, at, "this condition", &["key"])?;
    match field(obj, "key") {
        Some(k) => key_path(k, &format!("{at}.key")),
        None => Err(err(at, "missing field 'key'")),
    }
}

fn has_id(v: &Value, at: &str) -> Result<HashSet<PointId>, FilterError> {
    let Value::Array(items) = v else {
        return Err(err(
            at,
            format!("expected a list of point ids, got {}", kind(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, id)| match id {
            Value::Number(n) => n.as_u64().map(PointId::Num).ok_or_else(|| {
                err(
                    &format!("{at}[{i}]"),
                    format!("a numeric point id is an unsigned integer, got {n}"),
                )
            }),
            Value::String(s) => Ok(PointId::from_string(s)),
            other => Err(err(
                &format!("{at}[{i}]"),
                format!(
                    "expected a point id (an unsigned integer or a string), got {}",
                    kind(other)
                ),
            )),
        })
        .collect()
}

const FIELD_KEYS: [&str; 9] = [
    "key",
    "match",
    "range",
    "values_count",
    "is_empty",
    "is_null",
    "geo_bounding_box",
    "geo_radius",
    "geo_polygon",
];

fn field_condition(obj: &Map<String, Value>, at: &str) -> Result<FieldCondition, FilterError> {
    only_keys(obj, at, "a field condition", &FIELD_KEYS)?;
    let key = match field(obj, "key") {
        Some(k) => key_path(k, &format!("{at}.key"))?,
        None => {
            return Err(err(
                &format!("{at}.key"),
                "expected a key path string, got null",
            ));
        }
    };
    for geo in ["geo_bounding_box", "geo_radius", "geo_polygon"] {
        if field(obj, geo).is_some() {
            return Err(err(
                &format!("{at}.{geo}"),
                "geo conditions are not supported",
            ));
        }
    }
    let mut fc = FieldCondition::empty(key);
    if let Some(m) = field(obj, "match") {
        fc.r#match = Some(parse_match(m, &format!("{at}.match"))?);
    }
    if let Some(r) = field(obj, "range") {
        fc.range = Some(parse_range(r, &format!("{at}.range"))?);
    }
    if let Some(c) = field(obj, "values_count") {
        fc.values_count = Some(parse_values_count(c, &format!("{at}.values_count"))?);
    }
    for (name, slot) in [("is_empty", &mut fc.is_empty), ("is_null", &mut fc.is_null)] {
        match field(obj, name) {
            None => {}
            Some(Value::Bool(b)) => *slot = Some(*b),
            Some(other) => {
                return Err(err(
                    &format!("{at}.{name}"),
                    format!("expected a boolean, got {}", kind(other)),
                ));
            }
        }
    }
    if fc.r#match.is_none()
        && fc.range.is_none()
        && fc.values_count.is_none()
        && fc.is_empty.is_none()
        && fc.is_null.is_none()
    {
        return Err(err(
            at,
            format!(
                "the condition on key '{}' has nothing to check: give one of match, range, values_count, is_empty, is_null",
                fc.key
            ),
        ));
    }
    Ok(fc)
}

const MATCH_KEYS: [&str; 6] = ["value", "text", "text_any", "phrase", "any", "except"];

fn parse_match(v: &Value, at: &str) -> Result<Match, FilterError> {
    let obj = expect_object(v, at, "an object such as {\"value\": ..}")?;
    only_keys(obj, at, "match", &MATCH_KEYS)?;
    let mut present = obj.iter().filter(|(_, v)| !v.is_null());
    let (k, val) = match (present.next(), present.next()) {
        (Some(one), None) => one,
        (Some((a, _)), Some((b, _))) => {
            return Err(err(
                at,
                format!("a match has one kind, found both '{a}' and '{b}'"),
            ));
        }
        (None, _) => {
            return Err(err(
                at,
                format!("expected one of: {}", MATCH_KEYS.join(", ")),
            ));
        }
    };
    let sub = format!("{at}.{k}");
    let text = |val: &Value| match val {
        Value::String(s) => Ok(TextQuery::new(s.as_str())),
        other => Err(err(&sub, format!("expected a string, got {}", kind(other)))),
    };
    match k.as_str() {
        "value" => match val {
            Value::String(s) => Ok(Match::Value(MatchValue::Keyword(s.clone()))),
            Value::Bool(b) => Ok(Match::Value(MatchValue::Bool(*b))),
            Value::Number(n) => n
                .as_i64()
                .map(|i| Match::Value(MatchValue::Integer(i)))
                .ok_or_else(|| {
                    err(
                        &sub,
                        format!(
                            "expected a string, a 64-bit integer or a boolean, got {n} (use range for floats)"
                        ),
                    )
                }),
            other => Err(err(
                &sub,
                format!(
                    "expected a string, an integer or a boolean, got {}",
                    kind(other)
                ),
            )),
        },
        "text" => text(val).map(Match::Text),
        "text_any" => text(val).map(Match::TextAny),
        "phrase" => text(val).map(Match::Phrase),
        "any" => any_variants(val, &sub).map(Match::Any),
        _ => any_variants(val, &sub).map(Match::Except),
    }
}

fn any_variants(v: &Value, at: &str) -> Result<AnyVariants, FilterError> {
    let Value::Array(items) = v else {
        return Err(err(
            at,
            format!(
                "expected a list of strings or a list of integers, got {}",
                kind(v)
            ),
        ));
    };
    let mixed = || {
        err(
            at,
            "expected a list of strings or a list of integers, not a mix or other values",
        )
    };
    match items.first() {
        None | Some(Value::String(_)) => items
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(mixed))
            .collect::<Result<_, _>>()
            .map(AnyVariants::Keywords),
        Some(Value::Number(_)) => items
            .iter()
            .map(|x| x.as_i64().ok_or_else(mixed))
            .collect::<Result<_, _>>()
            .map(AnyVariants::Integers),
        Some(_) => Err(mixed()),
    }
}

const BOUND_KEYS: [&str; 4] = ["gt", "gte", "lt", "lte"];

fn bounds<T>(
    obj: &Map<String, Value>,
    mut conv: impl FnMut(&str, &Value) -> Result<T, FilterError>,
) -> Result<Bounds<T>, FilterError> {
    let mut b = Bounds {
        gt: None,
        gte: None,
        lt: None,
        lte: None,
    };
    for (name, slot) in [
        ("gt", &mut b.gt),
        ("gte", &mut b.gte),
        ("lt", &mut b.lt),
        ("lte", &mut b.lte),
    ] {
        if let Some(v) = field(obj, name) {
            *slot = Some(conv(name, v)?);
        }
    }
    Ok(b)
}

fn parse_range(v: &Value, at: &str) -> Result<Range, FilterError> {
    let obj = expect_object(v, at, "an object with gt, gte, lt or lte")?;
    only_keys(obj, at, "range", &BOUND_KEYS)?;
    // As in Qdrant: a string bound makes it a datetime range, where every bound is a datetime.
    let datetime = BOUND_KEYS
        .iter()
        .any(|k| obj.get(*k).is_some_and(Value::is_string));
    if datetime {
        bounds(obj, |name, v| match v {
            Value::String(s) => parse_datetime(s).ok_or_else(|| {
                err(
                    at,
                    format!(
                        "'{s}' for '{name}' is not an RFC 3339 datetime (example: 2014-01-01T00:00:00Z)"
                    ),
                )
            }),
            other => Err(err(
                at,
                format!(
                    "expected a datetime string for '{name}' like the other bounds, got {}",
                    kind(other)
                ),
            )),
        })
        .map(Range::DateTime)
    } else {
        bounds(obj, |name, v| {
            v.as_f64().ok_or_else(|| {
                err(
                    at,
                    format!("expected a number for '{name}', got {}", kind(v)),
                )
            })
        })
        .map(Range::Float)
    }
}

fn parse_values_count(v: &Value, at: &str) -> Result<ValuesCount, FilterError> {
    let obj = expect_object(v, at, "an object with gt, gte, lt or lte")?;
    only_keys(obj, at, "values_count", &BOUND_KEYS)?;
    bounds(obj, |name, v| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                err(
                    at,
                    format!("expected a non-negative integer for '{name}', got {v}"),
                )
            })
    })
}

impl Filter {
    /// The filter as Qdrant JSON, in a canonical form that [`parse_filter`] reads back to an equal
    /// filter (empty clauses are left out, lists of ids and values are sorted).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.must.is_empty() {
            m.insert("must".into(), conditions_to_json(&self.must));
        }
        if !self.should.is_empty() {
            m.insert("should".into(), conditions_to_json(&self.should));
        }
        if !self.must_not.is_empty() {
            m.insert("must_not".into(), conditions_to_json(&self.must_not));
        }
        if let Some(ms) = &self.min_should {
            let mut o = Map::new();
            o.insert("conditions".into(), conditions_to_json(&ms.conditions));
            o.insert("min_count".into(), Value::from(ms.min_count));
            m.insert("min_should".into(), Value::Object(o));
        }
        Value::Object(m)
    }
}

fn conditions_to_json(cs: &[Condition]) -> Value {
    Value::Array(cs.iter().map(condition_to_json).collect())
}

fn key_object(key: &JsonPath) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::String(key.to_string()));
    Value::Object(m)
}

fn one(key: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), v);
    Value::Object(m)
}

fn condition_to_json(c: &Condition) -> Value {
    match c {
        Condition::Field(fc) => field_to_json(fc),
        Condition::IsEmpty(k) => one("is_empty", key_object(k)),
        Condition::IsNull(k) => one("is_null", key_object(k)),
        Condition::HasId(ids) => {
            let mut ids: Vec<&PointId> = ids.iter().collect();
            ids.sort();
            let ids = ids
                .into_iter()
                .map(|id| match id {
                    PointId::Num(n) => Value::from(*n),
                    PointId::Uuid(s) | PointId::Str(s) => Value::String(s.clone()),
                })
                .collect();
            one("has_id", Value::Array(ids))
        }
        Condition::HasVector(name) => one("has_vector", Value::String(name.clone())),
        Condition::Nested { key, filter } => {
            let mut m = Map::new();
            m.insert("key".into(), Value::String(key.to_string()));
            m.insert("filter".into(), filter.to_json());
            one("nested", Value::Object(m))
        }
        Condition::Filter(f) => f.to_json(),
    }
}

fn field_to_json(fc: &FieldCondition) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::String(fc.key.to_string()));
    if let Some(x) = &fc.r#match {
        m.insert("match".into(), match_to_json(x));
    }
    if let Some(r) = &fc.range {
        let v = match r {
            Range::Float(b) => bounds_to_json(b, |x| {
                Number::from_f64(*x).map_or(Value::Null, Value::Number)
            }),
            Range::DateTime(b) => bounds_to_json(b, |t| Value::String(t.to_string())),
        };
        m.insert("range".into(), v);
    }
    if let Some(c) = &fc.values_count {
        m.insert(
            "values_count".into(),
            bounds_to_json(c, |n| Value::from(*n)),
        );
    }
    if let Some(b) = fc.is_empty {
        m.insert("is_empty".into(), Value::Bool(b));
    }
    if let Some(b) = fc.is_null {
        m.insert("is_null".into(), Value::Bool(b));
    }
    Value::Object(m)
}

fn bounds_to_json<T>(b: &Bounds<T>, conv: impl Fn(&T) -> Value) -> Value {
    let mut m = Map::new();
    for (name, v) in [
        ("gt", &b.gt),
        ("gte", &b.gte),
        ("lt", &b.lt),
        ("lte", &b.lte),
    ] {
        if let Some(v) = v {
            m.insert(name.into(), conv(v));
        }
    }
    Value::Object(m)
}

fn any_to_json(a: &AnyVariants) -> Value {
    match a {
        AnyVariants::Keywords(set) => {
            let mut v: Vec<&String> = set.iter().collect();
            v.sort();
            Value::Array(v.into_iter().map(|s| Value::String(s.clone())).collect())
        }
        AnyVariants::Integers(set) => {
            let mut v: Vec<i64> = set.iter().copied().collect();
            v.sort_unstable();
            Value::Array(v.into_iter().map(Value::from).collect())
        }
    }
}

fn match_to_json(x: &Match) -> Value {
    match x {
        Match::Value(MatchValue::Keyword(s)) => one("value", Value::String(s.clone())),
        Match::Value(MatchValue::Integer(i)) => one("value", Value::from(*i)),
        Match::Value(MatchValue::Bool(b)) => one("value", Value::Bool(*b)),
        Match::Text(q) => one("text", Value::String(q.text.clone())),
        Match::TextAny(q) => one("text_any", Value::String(q.text.clone())),
        Match::Phrase(q) => one("phrase", Value::String(q.text.clone())),
        Match::Any(a) => one("any", any_to_json(a)),
        Match::Except(a) => one("except", any_to_json(a)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::filter::testkit::*;

    #[test]
    fn malformed_filters_are_refused_with_a_place_and_a_reason() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "filter: expected a filter object, got a list"),
            (
                json!({"musts": []}),
                "filter: unknown field 'musts' in a filter",
            ),
            (
                json!({"must": 5}),
                "filter.must: expected a condition or a list of conditions, got a number",
            ),
            (
                json!({"must": [5]}),
                "filter.must[0]: expected a condition object, got a number",
            ),
            (
                json!({"must": [{}, {"key": "a", "range": {"gt": true}}]}),
                "filter.must[1].range: expected a number for 'gt', got a boolean",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": "x"}}]}),
                "filter.must[0].range: 'x' for 'gt' is not an RFC 3339 datetime",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": 1, "lt": "2020-01-01"}}]}),
                "filter.must[0].range: expected a datetime string for 'gt'",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": 1, "eq": 2}}]}),
                "unknown field 'eq' in range",
            ),
            (
                json!({"must": [{"foo": 1}]}),
                "filter.must[0]: unknown condition field 'foo'",
            ),
            (
                json!({"should": {"key": "a"}}),
                "filter.should: the condition on key 'a' has nothing to check",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1}, "rnage": {}}]}),
                "unknown field 'rnage' in a field condition",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1.5}}]}),
                "filter.must[0].match.value: expected a string",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": u64::MAX}}]}),
                "filter.must[0].match.value: expected a string, a 64-bit integer",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": null}}]}),
                "filter.must[0].match: expected one of",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1, "text": "x"}}]}),
                "found both",
            ),
            (
                json!({"must": [{"key": "a", "match": {"any": [1, "x"]}}]}),
                "filter.must[0].match.any: expected a list of strings or a list of integers",
            ),
            (
                json!({"must": [{"key": "a", "match": {"except": "x"}}]}),
                "filter.must[0].match.except: expected a list",
            ),
            (
                json!({"must": [{"key": "a", "match": {"text": 3}}]}),
                "filter.must[0].match.text: expected a string",
            ),
            (
                json!({"must": [{"key": "a", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}}]}),
                "filter.must[0].geo_radius: geo conditions are not supported",
            ),
            (
                json!({"must": [{"key": "a..b", "match": {"value": 1}}]}),
                "filter.must[0].key: invalid key path 'a..b'",
            ),
            (
                json!({"must": [{"key": "", "match": {"value": 1}}]}),
                "invalid key path '': empty key path",
            ),
            (
                json!({"must": [{"key": 5, "match": {"value": 1}}]}),
                "filter.must[0].key: expected a key path string, got a number",
            ),
            (
                json!({"must": [{"key": null, "match": {"value": 1}}]}),
                "filter.must[0].key: expected a key path string, got null",
            ),
            (
                json!({"must": [{"is_empty": {"key": "a"}, "has_id": [1]}]}),
                "found both",
            ),
            (
                json!({"must": [{"is_empty": {"key": "a"}, "must": []}]}),
                "found 'is_empty' and filter clauses",
            ),
            (
                json!({"must": [{"is_empty": "a"}]}),
                "filter.must[0].is_empty: expected an object with 'key', got a string",
            ),
            (
                json!({"must": [{"is_null": {"field": "a"}}]}),
                "unknown field 'field'",
            ),
            (
                json!({"must": [{"has_id": [-1]}]}),
                "filter.must[0].has_id[0]: a numeric point id is an unsigned integer",
            ),
            (
                json!({"must": [{"has_id": [1.5]}]}),
                "filter.must[0].has_id[0]",
            ),
            (
                json!({"must": [{"has_id": 1}]}),
                "filter.must[0].has_id: expected a list of point ids",
            ),
            (
                json!({"must": [{"has_vector": 1}]}),
                "filter.must[0].has_vector: expected a vector name",
            ),
            (
                json!({"min_should": {"conditions": [], "min_count": 0}}),
                "filter.min_should.min_count: expected an integer of at least 1",
            ),
            (
                json!({"min_should": {"conditions": [], "min_count": -1}}),
                "filter.min_should.min_count",
            ),
            (
                json!({"min_should": {"conditions": {}, "min_count": 1}}),
                "filter.min_should.conditions: expected a list",
            ),
            (
                json!({"min_should": {"min_count": 1}}),
                "filter.min_should: missing field 'conditions'",
            ),
            (
                json!({"min_should": {"conditions": []}}),
                "filter.min_should: missing field 'min_count'",
            ),
            (
                json!({"must": [{"nested": {"key": "a"}}]}),
                "filter.must[0].nested: missing field 'filter'",
            ),
            (
                json!({"must": [{"nested": {"key": "a", "filter": {"bad": 1}}}]}),
                "filter.must[0].nested.filter: unknown field 'bad'",
            ),
            (
                json!({"must": [{"key": "a", "values_count": {"gt": -1}}]}),
                "filter.must[0].values_count: expected a non-negative integer for 'gt'",
            ),
            (
                json!({"must": [{"key": "a", "values_count": {"gt": 1.5}}]}),
                "expected a non-negative integer for 'gt'",
            ),
            (
                json!({"must": [{"key": "a", "is_empty": "yes"}]}),
                "filter.must[0].is_empty: expected a boolean, got a string",
            ),
            (
                json!({"must": [{"should": [{"must_not": [{"key": "a", "range": {"lt": []}}]}]}]}),
                "filter.must[0].should[0].must_not[0].range: expected a number for 'lt', got a list",
            ),
        ];
        for (j, want) in cases {
            let got = parse_err(j.clone());
            assert!(
                got.contains(want),
                "{j}: got error {got:?}, want it to contain {want:?}"
            );
        }
    }

    #[test]
    fn optional_parts_accept_null_and_single_objects() {
        let f =
            parsed(&json!({"must": null, "should": null, "must_not": null, "min_should": null}));
        assert!(f.is_empty());
        let f = parsed(
            &json!({"must": {"key": "a", "match": {"value": 1}, "range": null, "values_count": null,
            "is_empty": null, "is_null": null, "geo_radius": null, "geo_bounding_box": null, "geo_polygon": null}}),
        );
        assert_eq!(f.must.len(), 1);
        assert!(
            matches!(&f.must[0], Condition::Field(fc) if fc.range.is_none() && fc.r#match.is_some())
        );
        let f = parsed(&json!({"must_not": {"has_id": []}, "should": {"is_null": {"key": "x"}}}));
        assert_eq!((f.must_not.len(), f.should.len()), (1, 1));
        let f = parsed(&json!({"must": [{"key": "a", "match": {"value": 1, "text": null}}]}));
        assert!(
            matches!(&f.must[0], Condition::Field(fc) if fc.r#match == Some(Match::Value(MatchValue::Integer(1))))
        );
    }

    /// `{"must": [{"must": [ ... ]}]}` with `levels` filter objects in all.
    fn nested_filters(levels: usize) -> Value {
        let mut v = json!({"must": [{"key": "a", "match": {"value": 1}}]});
        for _ in 1..levels {
            v = json!({ "must": [v] });
        }
        v
    }

    #[test]
    fn depth_is_limited() {
        let p = obj(json!({"a": 1}));
        assert!(eval(&nested_filters(MAX_FILTER_DEPTH), 1, &p));
        let e = parse_err(nested_filters(MAX_FILTER_DEPTH + 1));
        assert!(e.contains("nested more than 16 levels"), "{e}");
        let mut nested = json!({"key": "a", "match": {"value": 1}});
        for _ in 0..MAX_FILTER_DEPTH {
            nested = json!({"nested": {"key": "x", "filter": {"must": [nested]}}});
        }
        let e = parse_err(json!({ "must": [nested] }));
        assert!(e.contains("nested more than 16 levels"), "{e}");
        // Far deeper than the limit, and than serde_json's parser allows (128), so built by hand;
        // not deeper still because dropping a `Value` recurses (serde_json's drop, not ours).
        let mut hostile = json!({});
        for _ in 0..300 {
            hostile = json!({ "should": [hostile] });
        }
        assert!(parse_err(hostile).contains("nested more than"));
    }

    #[test]
    fn condition_count_is_limited() {
        let c = json!({"key": "a", "match": {"value": 1}});
        let many = |n: usize| Value::Array(vec![c.clone(); n]);
        assert!(parse_filter(&json!({ "must": many(MAX_FILTER_CONDITIONS) })).is_ok());
        let e = parse_err(json!({ "must": many(MAX_FILTER_CONDITIONS + 1) }));
        assert!(e.contains("at most 1024 conditions"), "{e}");
        assert!(e.starts_with("filter.must[1024]"), "{e}");
        // Counted across clauses and levels: two filter conditions (2) with 512 each (1024).
        let e =
            parse_err(json!({"must": [{"must": many(512)}], "should": [{"must_not": many(512)}]}));
        assert!(e.contains("at most 1024 conditions"), "{e}");
    }

    #[test]
    fn to_json_reads_back() {
        let f = json!({
            "must": [
                {"key": "a.b[].c", "match": {"any": ["y", "x"]}, "range": {"gt": 1.5, "lte": 3}},
                {"key": "\"odd key\"[0]", "range": {"gte": "2020-01-01T00:00:00+02:00"}},
                {"has_id": [3, "936DA01F9ABD4d9d80C702AF85C822A8", 1, "t_1"]},
                {"nested": {"key": "diet", "filter": {"must_not": {"key": "x", "match": {"phrase": "a b"}}}}}
            ],
            "should": [{"is_empty": {"key": "e"}}, {"is_null": {"key": "n"}}, {"has_vector": "img"}],
            "must_not": [{"key": "t", "values_count": {"lt": 2}, "is_empty": false, "is_null": true}],
            "min_should": {"conditions": [{"key": "x", "match": {"except": [3, 1]}}, {}], "min_count": 2}
        });
        let once = parsed(&f);
        let json = once.to_json();
        assert_eq!(parsed(&json), once, "{json}");
        assert_eq!(
            json.to_string(),
            once.to_json().to_string(),
            "canonical output"
        );
        assert_eq!(
            json["must"][2]["has_id"],
            json!([1, 3, "936da01f-9abd-4d9d-80c7-02af85c822a8", "t_1"])
        );
        assert_eq!(
            json["must"][1]["range"]["gte"],
            json!("2019-12-31T22:00:00.000000000Z")
        );
    }

    proptest! {
        // 256 cases unless PROPTEST_CASES says otherwise (the fuzz_ targets run longer so)

        #[test]
        fn to_json_round_trips(f in filter_json(), p in payload(), id in 0u64..5) {
            let once = parsed(&f);
            let again = parsed(&once.to_json());
            prop_assert_eq!(&again, &once);
            prop_assert_eq!(again.matches(&PointId::Num(id), &p), once.matches(&PointId::Num(id), &p));
        }

        #[test]
        fn fuzz_filter_parser_never_panics(j in wild_json(), p in payload(), id in 0u64..5) {
            if let Ok(f) = parse_filter(&j) {
                let _ = f.matches(&PointId::Num(id), &p);
                prop_assert_eq!(parse_filter(&f.to_json()), Ok(f));
            }
            let _ = parse_filter(&json!({ "must": [j.clone()] }));
            let _ = parse_filter(&json!({"must": [{"key": "a", "match": j.clone()}]}));
            let _ = parse_filter(&json!({"must": [{"key": "a", "range": j}]}));
        }
    }
}
