//! Search endpoints: the universal query, its batch, and the classic search. All three end in
//! [`nearest`] (or, for a query without `query`, a scroll in id order).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::filter::{Condition, Filter};
use tessera_shard::point::PointId;
use tessera_shard::store::SearchParams;

use super::json::query::{
    LookupFrom, NearestHead, NearestTail, Query, QueryResult, ScoredPoint, ScrollQuery, Target,
    batch_query, discover_body, query_batch as batch_queries, recommend_body, search_vector,
};
use super::json::{body_json, body_object, check_dim, key_selector};
use super::scorer::{Examples, ScanSearch, Scorer};
use super::{AppState, DEFAULT_EF, Reply, ok, visible_collection};
use crate::router::{Ctx, KeySelector};

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

read_handler!(query_batch, query_many);

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

read_handler!(search, search_points);

/// The hits of a classic search body.
pub async fn search_points(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<ScoredPoint>> {
    nearest(app, ctx, name, o, search_vector(o)?).await
}

read_handler!(search_batch, search_many);

/// The hits of each body of a search batch.
async fn search_many(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<Vec<ScoredPoint>>> {
    each(app, ctx, name, o, Kind::Search).await
}

read_handler!(recommend, recommend_points);

read_handler!(recommend_batch, recommend_many);

/// The hits of each body of a recommend batch.
async fn recommend_many(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<Vec<ScoredPoint>>> {
    each(app, ctx, name, o, Kind::Recommend).await
}

read_handler!(discover, discover_points);

read_handler!(discover_batch, discover_many);

/// The hits of each body of a discover batch.
async fn discover_many(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<Vec<ScoredPoint>>> {
    each(app, ctx, name, o, Kind::Discover).await
}

/// The hits of a classic discover body.
pub async fn discover_points(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<ScoredPoint>> {
    let query = discover_body(o)?;
    nearest(app, ctx, name, o, &query).await
}

/// Which classic body a batch holds.
#[derive(Clone, Copy)]
pub enum Kind {
    Search,
    Recommend,
    Discover,
}

/// The hits of each body of a search or recommend batch (`searches`), in order.
pub async fn each(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
    kind: Kind,
) -> Result<Vec<Vec<ScoredPoint>>> {
    let bodies = batch_queries(o)?;
    let mut results = Vec::with_capacity(bodies.len());
    for body in bodies {
        let body = batch_query(body)?;
        results.push(match kind {
            Kind::Search => search_points(app, ctx, name, body).await?,
            Kind::Recommend => recommend_points(app, ctx, name, body).await?,
            Kind::Discover => discover_points(app, ctx, name, body).await?,
        });
    }
    Ok(results)
}

/// The hits of a classic recommend body.
pub async fn recommend_points(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<ScoredPoint>> {
    let query = recommend_body(o)?;
    nearest(app, ctx, name, o, &query).await
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
        Query::Tree(root) => super::hybrid::run(app, ctx, name, o, &root).await,
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

/// Runs a nearest-neighbour search for `query` (a vector, a point id or a recommendation) with
/// the rest of the body's parameters, and scores the hits.
async fn nearest(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
    query: &Value,
) -> Result<Vec<ScoredPoint>> {
    let search = Nearest::prepare(app, ctx, name, o, query).await?;
    Ok(search.run(app, ctx, name).await?.0)
}

/// A nearest-neighbour search, parsed and with its vector resolved, ready to run (again, with
/// another `k`, for groups).
pub(super) struct Nearest {
    pub shard_key: KeySelector,
    pub params: SearchParams,
    pub offset: usize,
    metric: tessera_shard::Metric,
    threshold: Option<f64>,
    /// A scorer no graph answers (see [`Scorer`]): the search is a scan scored by it.
    custom: Option<Scorer>,
}

impl Nearest {
    pub(super) async fn prepare(
        app: &AppState,
        ctx: &Ctx,
        name: &str,
        o: &Map<String, Value>,
        query: &Value,
    ) -> Result<Nearest> {
        let shard_key = key_selector(o)?;
        // 404 before any 400 about the body's search, as always
        visible_collection(app, ctx, name, |_| ())?;
        let NearestHead {
            limit,
            offset,
            target,
        } = NearestHead::parse(o, query, app.catalog.config.max_limit)?;
        let lookup = LookupFrom::parse(o)?;
        let (scorer, exclude, metric) =
            scorer_of(app, ctx, name, &shard_key, target, lookup).await?;
        let (vector, custom) = match scorer {
            Scorer::Nearest(v) => (v, None),
            other => (Vec::new(), Some(other)),
        };
        let tail = NearestTail::parse(o)?;
        // one mentioned point is left out by the search itself, several by the filter
        let (filter, exclude) = match exclude.len() {
            0 | 1 => (tail.filter, exclude.into_iter().next()),
            _ => {
                let out = Filter::new_must_not(Condition::HasId(exclude.into_iter().collect()));
                (Some(tail.filter.map_or(out.clone(), |f| out.and(f))), None)
            }
        };
        Ok(Nearest {
            shard_key,
            params: SearchParams {
                vector,
                filter,
                k: limit + offset,
                ef: tail.hnsw_ef.unwrap_or(DEFAULT_EF).clamp(1, 100_000),
                exact: tail.exact,
                with_payload: tail.with_payload,
                with_vector: tail.with_vector,
                exclude,
            },
            offset,
            metric,
            threshold: tail.score_threshold,
            custom,
        })
    }

    /// Ands `f` into the search's filter (the filters of the levels above a prefetch).
    pub(super) fn and_filter(&mut self, f: Option<Filter>) {
        if let Some(f) = f {
            let own = self.params.filter.take();
            self.params.filter = Some(own.map_or(f.clone(), |o| o.and(f)));
        }
    }

    /// The scored hits, and whether the search may have more (it returned all `k` it was
    /// asked for, none of them under the score threshold).
    pub(super) async fn run(
        &self,
        app: &AppState,
        ctx: &Ctx,
        name: &str,
    ) -> Result<(Vec<ScoredPoint>, bool)> {
        let (hits, higher_better): (Vec<_>, bool) = match &self.custom {
            None => {
                let hits = app
                    .router
                    .search(ctx, name, &self.shard_key, self.params.clone(), self.offset)
                    .await?;
                let scored = hits
                    .into_iter()
                    .map(|(key, hit)| {
                        let score = tessera_shard::score_from_distance(self.metric, hit.distance);
                        ((key, hit.record), score)
                    })
                    .collect();
                (scored, self.metric != tessera_shard::Metric::Euclid)
            }
            Some(scorer) => {
                let p = &self.params;
                let search = ScanSearch {
                    shard_key: &self.shard_key,
                    filter: &p.filter,
                    exclude: p.exclude.as_ref(),
                    k: p.k,
                    with_payload: p.with_payload.clone(),
                    with_vector: p.with_vector,
                };
                let mut hits = search.run(app, ctx, name, scorer, self.metric).await?;
                hits.drain(..self.offset.min(hits.len()));
                (hits, scorer.higher_better(self.metric))
            }
        };
        let full = hits.len() + self.offset >= self.params.k;
        let total = hits.len();
        let points: Vec<ScoredPoint> = hits
            .into_iter()
            .filter(|(_, score)| match self.threshold {
                None => true,
                Some(th) if higher_better => f64::from(*score) >= th,
                Some(th) => f64::from(*score) <= th,
            })
            .map(|(record, score)| ScoredPoint::new(record, score))
            .collect();
        let more = full && points.len() == total;
        Ok((points, more))
    }
}

/// How `target` scores stored vectors (examples given by id read in the caller's scope), the
/// points it names (left out of the results) and the collection's metric.
async fn scorer_of(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    shard_key: &KeySelector,
    target: Target,
    lookup: Option<LookupFrom>,
) -> Result<(Scorer, Vec<PointId>, tessera_shard::Metric)> {
    let (dim, distance) =
        visible_collection(app, ctx, name, |c| (c.params.dim, c.params.distance))?;
    let metric = crate::catalog::metric_of(distance);
    let mut examples = Examples {
        app,
        ctx,
        name,
        shard_key,
        dim,
        lookup,
        mentioned: Vec::new(),
    };
    let scorer = examples.scorer(target, metric).await?;
    if let Scorer::Nearest(v) = &scorer {
        check_dim(v, dim)?;
    }
    Ok((scorer, examples.mentioned, metric))
}

/// The scorer of a nearest query (`query`, read with the body `o`), the points it names and the
/// collection's metric: what a level of a query tree rescores its candidates by.
pub(super) async fn query_scorer(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    shard_key: &KeySelector,
    o: &Map<String, Value>,
    query: &Value,
) -> Result<(Scorer, Vec<PointId>, tessera_shard::Metric)> {
    let head = NearestHead::parse(o, query, app.catalog.config.max_limit)?;
    let lookup = LookupFrom::parse(o)?;
    scorer_of(app, ctx, name, shard_key, head.target, lookup).await
}
