//! Distance matrices (`/points/search/matrix/pairs` and `/offsets`, qdrant-client's
//! `search_matrix_pairs` and `search_matrix_offsets`): a random sample of the caller's points
//! (under the filter), and for each sampled point its `limit` nearest among the others of the
//! sample, scored exactly.
//!
//! The sample is drawn uniformly over every matching point (reservoir sampling over their ids,
//! read page by page through the router in the caller's scope), then sorted by id, as Qdrant
//! orders it.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::filter::{Condition, Filter};
use tessera_shard::point::PointId;
use tessera_shard::store::{PayloadSelector, SearchParams};

use super::json::query::{MatrixOffsets, MatrixPair, MatrixPairs, MatrixRequest};
use super::points::for_each_point;
use super::{AppState, DEFAULT_EF, visible_collection};
use crate::router::{Ctx, KeySelector};

read_handler!(pairs, pairs_of);
read_handler!(offsets, offsets_of);

/// The pairs answer.
pub async fn pairs_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<MatrixPairs> {
    let (ids, rows) = matrix(app, ctx, name, o).await?;
    let mut pairs = Vec::new();
    for (a, row) in ids.iter().zip(rows) {
        for (b, score) in row {
            pairs.push(MatrixPair::new(a.clone(), ids[b].clone(), score));
        }
    }
    Ok(MatrixPairs { pairs })
}

/// The offsets answer.
pub async fn offsets_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<MatrixOffsets> {
    let (ids, rows) = matrix(app, ctx, name, o).await?;
    let mut out = MatrixOffsets::new(ids);
    for (row, hits) in rows.into_iter().enumerate() {
        for (col, score) in hits {
            out.push(row, col, score);
        }
    }
    Ok(out)
}

/// A uniform random sample of `n` of the ids matching `filter` (all of them if fewer), in
/// random order: reservoir sampling over one page-by-page scan.
pub(super) async fn sample_ids(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    shard_key: &KeySelector,
    filter: &Option<Filter>,
    n: usize,
) -> Result<Vec<PointId>> {
    let mut reservoir: Vec<PointId> = Vec::with_capacity(n.min(4096));
    let mut seen = 0usize;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    for_each_point(
        app,
        ctx,
        name,
        shard_key,
        filter,
        PayloadSelector::None,
        |r| {
            seen += 1;
            if reservoir.len() < n {
                reservoir.push(r.id);
            } else {
                let j = rng.random_range(0..seen);
                if let Some(slot) = reservoir.get_mut(j) {
                    *slot = r.id;
                }
            }
        },
    )
    .await?;
    reservoir.shuffle(&mut rng);
    Ok(reservoir)
}

/// The sampled ids (sorted) and, per sampled point, its nearest others: (index in the sample,
/// score), best first.
async fn matrix(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<(Vec<PointId>, Vec<Vec<(usize, f32)>>)> {
    let MatrixRequest {
        sample,
        limit,
        filter,
        shard_key,
    } = MatrixRequest::parse(o, app.catalog.config.max_limit)?;
    let distance = visible_collection(app, ctx, name, |c| c.params.distance)?;
    let metric = crate::catalog::metric_of(distance);
    let mut reservoir = sample_ids(app, ctx, name, &shard_key, &filter, sample).await?;
    if reservoir.len() < 2 {
        return Ok((Vec::new(), Vec::new()));
    }
    reservoir.sort();
    let records = app
        .router
        .retrieve(
            ctx,
            name,
            &shard_key,
            reservoir.clone(),
            PayloadSelector::None,
            true,
        )
        .await?;
    let mut rows = Vec::with_capacity(reservoir.len());
    for (i, id) in reservoir.iter().enumerate() {
        let Some(vector) = records
            .iter()
            .find(|(_, r)| &r.id == id)
            .and_then(|(_, r)| r.vector.clone())
        else {
            rows.push(Vec::new());
            continue;
        };
        let others: HashSet<PointId> = reservoir
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p.clone())
            .collect();
        let among = Filter::new_must(Condition::HasId(others));
        let params = SearchParams {
            vector,
            filter: Some(filter.clone().map_or(among.clone(), |f| among.and(f))),
            k: limit,
            ef: DEFAULT_EF,
            exact: true,
            with_payload: PayloadSelector::None,
            with_vector: false,
            exclude: None,
        };
        let hits = app.router.search(ctx, name, &shard_key, params, 0).await?;
        rows.push(
            hits.into_iter()
                .filter_map(|(_, h)| {
                    let at = reservoir.iter().position(|p| *p == h.record.id)?;
                    Some((at, tessera_shard::score_from_distance(metric, h.distance)))
                })
                .collect(),
        );
    }
    Ok((reservoir, rows))
}
