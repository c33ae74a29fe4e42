//! `POST /collections/{c}/facet` (qdrant-client's `facet`): how many of the caller's points
//! (under the filter) hold each value of a payload field, most common first. As in Qdrant the
//! field must have a keyword, integer, bool or uuid index, whose type decides which values
//! count. Counts are exact: the points are read through the router page by page, in the
//! caller's scope like a scroll.

use std::collections::HashMap;

use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::meta::PayloadSchemaType;
use tessera_shard::filter::get_flat_values;
use tessera_shard::store::PayloadSelector;

use super::json::bad;
use super::json::facet::{Facet, FacetHit, FacetResult};
use super::points::for_each_point;
use super::{AppState, visible_collection};
use crate::access;
use crate::router::Ctx;

read_handler!(facet, facet_of);

/// The counts a facet body asks for.
pub async fn facet_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<FacetResult> {
    let Facet {
        key,
        path,
        limit,
        filter,
        shard_key,
    } = Facet::parse(o, app.catalog.config.max_limit)?;
    // a key out of reach is missing (404) before the index is looked at (400)
    let schema = visible_collection(app, ctx, name, |c| {
        access::scope_named(&ctx.principal, c, name, &shard_key, access::Need::Read)
            .map(|_| c.payload_indexes.get(&key).map(|i| i.schema))
    })??;
    let counts_value: fn(&Value) -> bool = match schema {
        Some(PayloadSchemaType::Keyword) => Value::is_string,
        Some(PayloadSchemaType::Integer) => |v| v.is_i64() || v.is_u64(),
        Some(PayloadSchemaType::Bool) => Value::is_boolean,
        Some(PayloadSchemaType::Uuid) => {
            |v| v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
        }
        _ => {
            return Err(bad(format!(
                "Bad request: Index required but not found for \"{key}\" of one of the following types: [keyword, integer, bool, uuid]. Help: Create an index for this key or use a different key."
            )));
        }
    };
    let uuids = schema == Some(PayloadSchemaType::Uuid);
    let mut counts: HashMap<String, (Value, u64)> = HashMap::new();
    let payload = PayloadSelector::Include(vec![key.clone()]);
    for_each_point(app, ctx, name, &shard_key, &filter, payload, |r| {
        let Some(payload) = r.payload else { return };
        let mut seen: Vec<String> = Vec::new();
        for v in get_flat_values(&payload, &path) {
            if !counts_value(v) {
                continue;
            }
            let v = match (uuids, v.as_str()) {
                // a uuid counts once however it is written
                (true, Some(s)) => uuid::Uuid::parse_str(s)
                    .map(|u| Value::String(u.hyphenated().to_string()))
                    .unwrap_or_else(|_| v.clone()),
                _ => v.clone(),
            };
            let tag = v.to_string();
            if seen.contains(&tag) {
                continue;
            }
            seen.push(tag.clone());
            counts.entry(tag).or_insert((v, 0)).1 += 1;
        }
    })
    .await?;
    let mut hits: Vec<FacetHit> = counts
        .into_values()
        .map(|(value, count)| FacetHit { count, value })
        .collect();
    hits.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| order(&a.value, &b.value))
    });
    hits.truncate(limit);
    Ok(FacetResult { hits })
}

/// Values of one facet in ascending order (one index type: all strings, integers or bools).
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.to_string().cmp(&b.to_string()),
        },
    }
}
