//! Qdrant's `value_exists` revocation: a token carrying it is valid only while a point matching
//! its conditions exists in the named collection. Answered from a short-lived cache, so a busy
//! token costs one count every [`TTL`], not one per request.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde_json::Value;
use tessera_shard::filter::{
    Condition, FieldCondition, Filter, JsonPath, MAX_FILTER_CONDITIONS, Match, MatchValue,
};

use crate::auth::ValueExists;
use crate::router::{Ctx, KeySelector, Router};

/// How long an answer is reused. Revoking a token (deleting its point) takes effect within it.
pub const TTL: Duration = Duration::from_secs(10);
/// Most cached answers; the cache is cleared when full (the cost is one count per token).
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct Revocations {
    cache: DashMap<String, (Instant, bool)>,
}

impl Revocations {
    /// Whether the token's `value_exists` condition holds now (within [`TTL`]).
    pub async fn holds(&self, router: &Router, ve: &ValueExists) -> bool {
        // a cache key, not a document: the collection and the conditions, unambiguously
        let key = format!("{:?}", (&ve.collection, &ve.matches));
        if let Some(e) = self.cache.get(&key)
            && e.0.elapsed() < TTL
        {
            return e.1;
        }
        let holds = check(router, ve).await;
        if self.cache.len() >= MAX_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(key, (Instant::now(), holds));
        holds
    }
}

async fn check(router: &Router, ve: &ValueExists) -> bool {
    let Some(filter) = lookup_filter(ve) else {
        return false;
    };
    match router
        .count(
            &Ctx::system(),
            &ve.collection,
            &KeySelector::All,
            Some(filter),
        )
        .await
    {
        Ok(n) => n > 0,
        Err(e) => {
            tracing::debug!(error = %e, collection = %ve.collection, "value_exists check failed");
            false
        }
    }
}

/// The filter "every `key` matches its `value`", or `None` when a condition cannot be a match
/// (a bad key path, a value that is not a string, a 64-bit integer or a boolean, too many
/// conditions): such a token never holds, as Qdrant's filter parser would refuse it.
fn lookup_filter(ve: &ValueExists) -> Option<Filter> {
    if ve.matches.len() > MAX_FILTER_CONDITIONS {
        return None;
    }
    let must = ve
        .matches
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(s) => MatchValue::Keyword(s.clone()),
                Value::Bool(b) => MatchValue::Bool(*b),
                Value::Number(n) => MatchValue::Integer(n.as_i64()?),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            let key = JsonPath::parse(key).ok()?;
            Some(Condition::Field(FieldCondition::new_match(
                key,
                Match::Value(value),
            )))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Filter {
        must,
        ..Filter::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tessera_shard::filter::parse_filter;

    fn ve(matches: Vec<(&str, Value)>) -> ValueExists {
        ValueExists {
            collection: "users".into(),
            matches: matches
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    #[test]
    fn the_lookup_filter_is_the_one_qdrants_json_would_give() {
        let cases = [
            vec![("user", json!("alice"))],
            vec![
                ("user", json!("alice")),
                ("n", json!(-3)),
                ("ok", json!(true)),
            ],
            vec![("a.b[0].\"c d\"", json!(7))],
            vec![],
        ];
        for matches in cases {
            let v = ve(matches);
            let must: Vec<Value> = v
                .matches
                .iter()
                .map(|(key, value)| json!({"key": key, "match": {"value": value}}))
                .collect();
            let parsed = parse_filter(&json!({ "must": must })).expect("a valid filter");
            assert_eq!(lookup_filter(&v), Some(parsed), "{:?}", v.matches);
        }
    }

    #[test]
    fn conditions_the_filter_parser_refuses_never_hold() {
        for value in [
            json!(1.5),
            json!(null),
            json!([1]),
            json!({"a": 1}),
            json!(u64::MAX),
        ] {
            assert_eq!(
                lookup_filter(&ve(vec![("user", value.clone())])),
                None,
                "{value}"
            );
        }
        assert_eq!(lookup_filter(&ve(vec![("a..b", json!("x"))])), None);
    }
}
