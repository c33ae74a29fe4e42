//! Search endpoints: the universal query, its batch, and the classic search. All three end in
//! [`nearest`] (or, for a query without `query`, a scroll in id order).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::store::SearchParams;

use super::json::query::{
    NearestHead, NearestTail, Query, QueryResult, ScoredPoint, ScrollQuery, Target, batch_query,
    query_batch as batch_queries, search_vector,
};
use super::json::{body_json, body_object, check_dim, key_selector};
use super::{AppState, DEFAULT_EF, Reply, ok, visible_collection};
use crate::router::Ctx;

type Body = std::result::Result<Bytes, BytesRejection>;

pub async fn query(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let ctx = super::with_consistency(ctx, &query)?;
    let v = body_json(body)?;
    let points = query_one(&app, &ctx, &name, body_object(&v)?).await?;
    ok(QueryResult { points }, started)
}

pub async fn query_batch(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let ctx = super::with_consistency(ctx, &query)?;
    let v = body_json(body)?;
    let results = query_many(&app, &ctx, &name, body_object(&v)?).await?;
    ok(results, started)
}

/// The answers to a query batch body, in order.
pub async fn query_many(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<QueryResult>> {
    let queries = batch_queries(o)?;
    let mut results = Vec::with_capacity(queries.len());
    for query in queries {
        let points = query_one(app, ctx, name, batch_query(query)?).await?;
        results.push(QueryResult { points });
    }
    Ok(results)
}

pub async fn search(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let ctx = super::with_consistency(ctx, &query)?;
    let v = body_json(body)?;
    let points = search_points(&app, &ctx, &name, body_object(&v)?).await?;
    ok(points, started)
}

/// The hits of a classic search body.
pub async fn search_points(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<ScoredPoint>> {
    nearest(app, ctx, name, o, search_vector(o)?).await
}

/// The hits of a universal query body.
pub async fn query_one(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<ScoredPoint>> {
    match Query::parse(o, app.catalog.config.max_limit)? {
        Query::Nearest(query) => nearest(app, ctx, name, o, query).await,
        Query::Scroll(ScrollQuery {
            limit,
            shard_key,
            filter,
            with_payload,
            with_vector,
        }) => {
            // no query: Qdrant returns points in id order, each scored 1
            let (records, _) = app
                .router
                .scroll(
                    ctx,
                    name,
                    &shard_key,
                    None,
                    limit,
                    filter,
                    with_payload,
                    with_vector,
                )
                .await?;
            Ok(records
                .into_iter()
                .map(|record| ScoredPoint::new(record, 1.0))
                .collect())
        }
    }
}

/// Runs a nearest-neighbour search for `query` (a vector or a point id) with the rest of the
/// body's parameters, and scores the hits.
async fn nearest(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
    query: &Value,
) -> Result<Vec<ScoredPoint>> {
    let shard_key = key_selector(o)?;
    let (dim, distance) =
        visible_collection(app, ctx, name, |c| (c.params.dim, c.params.distance))?;
    let NearestHead {
        limit,
        offset,
        target,
    } = NearestHead::parse(o, query, app.catalog.config.max_limit)?;
    let (vector, exclude) = match target {
        Target::Vector(vector) => (vector, None),
        Target::Point(id) => {
            let vector = app
                .router
                .vector_of(ctx, name, &shard_key, id.clone())
                .await?;
            (vector, Some(id))
        }
    };
    check_dim(&vector, dim)?;
    let tail = NearestTail::parse(o)?;
    let metric = crate::catalog::metric_of(distance);
    let params = SearchParams {
        vector,
        filter: tail.filter,
        k: limit + offset,
        ef: tail.hnsw_ef.unwrap_or(DEFAULT_EF).clamp(1, 100_000),
        exact: tail.exact,
        with_payload: tail.with_payload,
        with_vector: tail.with_vector,
        exclude,
    };
    let hits = app
        .router
        .search(ctx, name, &shard_key, params, offset)
        .await?;
    let higher_better = metric != tessera_shard::Metric::Euclid;
    let threshold = tail.score_threshold;
    Ok(hits
        .into_iter()
        .map(|(key, hit)| {
            let score = tessera_shard::score_from_distance(metric, hit.distance);
            (score, key, hit)
        })
        .filter(|(score, _, _)| match threshold {
            None => true,
            Some(th) if higher_better => f64::from(*score) >= th,
            Some(th) => f64::from(*score) <= th,
        })
        .map(|(score, key, hit)| ScoredPoint::new((key, hit.record), score))
        .collect())
}
