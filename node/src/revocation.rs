//! Qdrant's `value_exists` revocation: a token carrying it is valid only while a point matching
//! its conditions exists in the named collection. Answered from a short-lived cache, so a busy
//! token costs one count every [`TTL`], not one per request.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde_json::{Value, json};

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
        let key = json!([ve.collection, ve.matches]).to_string();
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
    let must: Vec<Value> = ve
        .matches
        .iter()
        .map(|(key, value)| json!({"key": key, "match": {"value": value}}))
        .collect();
    let Ok(filter) = tessera_shard::filter::parse_filter(&json!({ "must": must })) else {
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
