//! Grouped searches: the hits of a query, search or recommendation grouped by the values of a
//! payload field, at most `group_size` hits in each of at most `limit` groups, groups in the
//! order of their best hit (Qdrant's `/points/{query,search,recommend}/groups`).
//!
//! The search is run for more hits until the first `limit` groups are full or the collection
//! (within the caller's scope and filter) has no more, so the groups are exactly those of the
//! whole ranking, up to [`MAX_GROUP_HITS`] hits read.

use std::collections::HashMap;

use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::store::PayloadSelector;

use super::AppState;
use super::json::groups::{GroupSpec, GroupsResult, PointGroup};
use super::json::query::{Query, ScoredPoint, recommend_body, search_vector};
use super::json::{PointRecord, bad, point_id};
use super::query::Nearest;
use crate::router::{Ctx, KeySelector};

/// Most hits one groups request reads.
pub const MAX_GROUP_HITS: usize = 16_384;

/// Which body a groups request holds.
#[derive(Clone, Copy)]
pub enum Kind {
    Query,
    Search,
    Recommend,
}

read_handler!(query_groups, query_groups_of);
read_handler!(search_groups, search_groups_of);
read_handler!(recommend_groups, recommend_groups_of);

async fn query_groups_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<GroupsResult> {
    groups_of(app, ctx, name, o, Kind::Query).await
}

async fn search_groups_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<GroupsResult> {
    groups_of(app, ctx, name, o, Kind::Search).await
}

async fn recommend_groups_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<GroupsResult> {
    groups_of(app, ctx, name, o, Kind::Recommend).await
}

/// The groups a groups body asks for.
pub async fn groups_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
    kind: Kind,
) -> Result<GroupsResult> {
    let max_limit = app.catalog.config.max_limit;
    let default_size = match kind {
        Kind::Query => 3,
        Kind::Search | Kind::Recommend => 1,
    };
    let (spec, rest) = GroupSpec::parse(o, default_size, max_limit)?;
    let query = match kind {
        Kind::Query => match Query::parse(&rest, max_limit)? {
            Query::Nearest(q) => q.clone(),
            Query::Scroll(_) => {
                return Err(bad("Bad request: a groups query needs a `query`"));
            }
            Query::Tree(_) => {
                return Err(bad(
                    "Bad request: tessera does not support prefetch, fusion, order_by or sample in a groups query",
                ));
            }
        },
        Kind::Search => search_vector(&rest)?.clone(),
        Kind::Recommend => recommend_body(&rest)?,
    };
    let mut search = Nearest::prepare(app, ctx, name, &rest, &query).await?;
    // grouping reads every hit's payload; the caller gets what it asked for
    let selector = std::mem::replace(&mut search.params.with_payload, PayloadSelector::All);
    let wanted = spec.limit.saturating_mul(spec.group_size);
    let mut k = wanted.saturating_mul(2).clamp(16, MAX_GROUP_HITS);
    let mut groups = loop {
        search.params.k = k;
        let (hits, more) = search.run(app, ctx, name).await?;
        let (groups, full) = group(&spec, hits);
        if full || !more || k >= MAX_GROUP_HITS {
            break groups;
        }
        k = k.saturating_mul(4).min(MAX_GROUP_HITS);
    };
    for g in &mut groups {
        for hit in &mut g.hits {
            hit.payload = hit.payload.take().and_then(|p| selector.select(&p));
        }
    }
    if let Some(lookup) = &spec.lookup {
        let ids: Vec<_> = groups.iter().filter_map(|g| point_id(&g.id).ok()).collect();
        let found = app
            .router
            .retrieve(
                ctx,
                &lookup.collection,
                &KeySelector::All,
                ids,
                lookup.with_payload.clone(),
                lookup.with_vector,
            )
            .await?;
        let mut by_id: HashMap<String, _> = found
            .into_iter()
            .map(|(key, r)| (r.id.to_string(), (key, r)))
            .collect();
        for g in &mut groups {
            if let Ok(id) = point_id(&g.id) {
                g.lookup = by_id.remove(&id.to_string()).map(PointRecord::new);
            }
        }
    }
    Ok(GroupsResult { groups })
}

/// The first `spec.limit` groups of `hits` (in score order), at most `spec.group_size` hits
/// each, and whether they are all full (more hits cannot change them).
fn group(spec: &GroupSpec, hits: Vec<ScoredPoint>) -> (Vec<PointGroup>, bool) {
    let mut groups: Vec<PointGroup> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for hit in hits {
        let Some(ids) = hit.payload.as_ref().and_then(|p| spec.ids_of(p)) else {
            continue;
        };
        for id in ids {
            // "1" and 1 are different groups
            let tag = match &id {
                Value::String(s) => format!("s{s}"),
                other => format!("n{other}"),
            };
            let at = match index.get(&tag) {
                Some(at) => *at,
                None if groups.len() < spec.limit => {
                    index.insert(tag, groups.len());
                    groups.push(PointGroup {
                        hits: Vec::new(),
                        id,
                        lookup: None,
                    });
                    groups.len() - 1
                }
                None => continue,
            };
            if let Some(g) = groups.get_mut(at)
                && g.hits.len() < spec.group_size
            {
                g.hits.push(hit.clone());
            }
        }
    }
    let full = groups.len() == spec.limit && groups.iter().all(|g| g.hits.len() == spec.group_size);
    (groups, full)
}
