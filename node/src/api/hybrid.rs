//! The Query API's tree, run: prefetches (each a search, a scroll, an ordered scroll or a
//! sample of the caller's points, through the router like any other read), and the level above
//! them merging their candidates by fusion (RRF, DBSF), rescoring them with another query
//! vector, ordering them by a payload field or sampling them.
//!
//! As in Qdrant, each level's filter is anded into every level below it, so a prefetch's limit
//! counts candidates that already pass every filter above; candidates are told apart by shard
//! key and id; the root's offset applies once, at the root. A rescoring level needs the
//! candidates' vectors, so then every leaf reads them (and the root drops them unless asked).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::meta::ShardKey;
use tessera_shard::filter::{Condition, Filter};
use tessera_shard::point::PointId;

use super::AppState;
use super::json::prefetch::{Fusion, Stage, StageQuery};
use super::json::query::ScoredPoint;
use super::json::{bad, field, key_selector, usize_field, with_payload};
use super::query::{Nearest, query_scorer};
use crate::router::{Ctx, KeySelector};

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The answer to a query body whose tree is `root`.
pub async fn run(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
    root: &Stage<'_>,
) -> Result<Vec<ScoredPoint>> {
    let max = app.catalog.config.max_limit;
    let offset = usize_field(o, "offset")?.unwrap_or(0);
    if offset > max {
        return Err(bad(format!(
            "Bad request: offset {offset} is over the maximum of {max}"
        )));
    }
    let with_vector = super::json::with_vector(field(o, "with_vector"))?;
    let tree = Tree {
        app,
        ctx,
        name,
        shard_key: key_selector(o)?,
        root: o,
        vectors: with_vector || root.rescores(),
    };
    let points = tree.stage(root, None, None, root.limit + offset).await?;
    Ok(points
        .into_iter()
        .skip(offset)
        .map(|mut p| {
            if !with_vector {
                p.vector = None;
            }
            p
        })
        .collect())
}

/// One query's tree being run, and what every level of it shares.
struct Tree<'a> {
    app: &'a AppState,
    ctx: &'a Ctx,
    name: &'a str,
    shard_key: KeySelector,
    /// The root body: its payload selector and shard key hold for every level.
    root: &'a Map<String, Value>,
    /// Whether the leaves read vectors (a level rescores, or the caller asked for them).
    vectors: bool,
}

/// A candidate's identity: ids are unique within a shard key.
fn identity(p: &ScoredPoint) -> (Option<ShardKey>, PointId) {
    (p.shard_key.as_ref().map(|k| k.0.clone()), p.id.0.clone())
}

fn and(a: Option<Filter>, b: Option<&Filter>) -> Option<Filter> {
    match (a, b) {
        (None, b) => b.cloned(),
        (a, None) => a,
        (Some(a), Some(b)) => Some(a.and(b.clone())),
    }
}

impl Tree<'_> {
    /// The best `k` of one level, under the filters above it (`inherited`). A level's search
    /// `params` hold for the searches below it that set none (a fusion or ordering level runs
    /// no search of its own).
    fn stage<'s>(
        &'s self,
        st: &'s Stage<'s>,
        inherited: Option<Filter>,
        params: Option<&'s Value>,
        k: usize,
    ) -> Fut<'s, Vec<ScoredPoint>> {
        Box::pin(async move {
            let mut points = self.level(st, inherited, params, k).await?;
            // an ordered or sampled point scores 1, as in Qdrant; a threshold still holds
            if matches!(
                st.query,
                StageQuery::OrderBy(_) | StageQuery::Sample | StageQuery::None
            ) && let Some(t) = st.score_threshold
            {
                points.retain(|p| p.score >= t);
            }
            Ok(points)
        })
    }

    async fn level(
        &self,
        st: &Stage<'_>,
        inherited: Option<Filter>,
        params: Option<&Value>,
        k: usize,
    ) -> Result<Vec<ScoredPoint>> {
        let filter = and(inherited, st.filter.as_ref());
        let params = field(st.body, "params").or(params);
        if st.prefetch.is_empty() {
            return self.leaf(st, filter, params, k).await;
        }
        // the prefetches run at once (each a read through the router), answered in order
        let sources = join_all(
            st.prefetch
                .iter()
                .map(|child| self.stage(child, filter.clone(), params, child.limit))
                .collect(),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        match &st.query {
            StageQuery::Fusion(f) => Ok(fuse(f, sources, k, st.score_threshold)),
            StageQuery::Nearest(q) => self.rescore(st, q, sources, k).await,
            StageQuery::OrderBy(order_by) => {
                let candidates = distinct(sources);
                let allowed: HashSet<_> = candidates.iter().map(identity).collect();
                let ids = Filter::new_must(Condition::HasId(
                    candidates.into_iter().map(|p| p.id.0).collect(),
                ));
                let ordered = self.ordered(order_by, and(filter, Some(&ids)), k).await?;
                Ok(ordered
                    .into_iter()
                    .filter(|p| allowed.contains(&identity(p)))
                    .collect())
            }
            StageQuery::Sample => {
                let mut candidates = distinct(sources);
                candidates.shuffle(&mut rand::rngs::StdRng::from_os_rng());
                candidates.truncate(k);
                Ok(candidates
                    .into_iter()
                    .map(|mut p| {
                        p.score = 1.0;
                        p
                    })
                    .collect())
            }
            // refused when the body was parsed
            StageQuery::None => Err(bad("Bad request: a query is required to merge prefetches")),
        }
    }

    /// A level without prefetches: it reads the collection.
    async fn leaf(
        &self,
        st: &Stage<'_>,
        filter: Option<Filter>,
        params: Option<&Value>,
        k: usize,
    ) -> Result<Vec<ScoredPoint>> {
        let payload = with_payload(field(self.root, "with_payload"), false)?;
        match &st.query {
            StageQuery::Nearest(q) => {
                let mut body = st.body.clone();
                for key in ["filter", "prefetch", "offset"] {
                    body.remove(key);
                }
                body.insert("limit".into(), Value::from(k));
                if let Some(p) = params {
                    body.insert("params".into(), p.clone());
                }
                body.insert("with_vector".into(), Value::Bool(self.vectors));
                for key in ["shard_key", "with_payload"] {
                    match self.root.get(key) {
                        Some(v) => body.insert(key.into(), v.clone()),
                        None => body.remove(key),
                    };
                }
                let mut search = Nearest::prepare(self.app, self.ctx, self.name, &body, q).await?;
                search.and_filter(filter);
                Ok(search.run(self.app, self.ctx, self.name).await?.0)
            }
            StageQuery::OrderBy(order_by) => self.ordered(order_by, filter, k).await,
            StageQuery::Sample => {
                let ids = super::matrix::sample_ids(
                    self.app,
                    self.ctx,
                    self.name,
                    &self.shard_key,
                    &filter,
                    k,
                )
                .await?;
                let rank: HashMap<PointId, usize> = ids
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, id)| (id, i))
                    .collect();
                let mut records = self
                    .app
                    .router
                    .retrieve(
                        self.ctx,
                        self.name,
                        &self.shard_key,
                        ids,
                        payload,
                        self.vectors,
                    )
                    .await?;
                records.sort_by_key(|(_, r)| rank.get(&r.id).copied());
                records.truncate(k);
                Ok(records
                    .into_iter()
                    .map(|r| ScoredPoint::new(r, 1.0))
                    .collect())
            }
            StageQuery::None => {
                let (records, _) = self
                    .app
                    .router
                    .scroll(
                        self.ctx,
                        self.name,
                        &self.shard_key,
                        None,
                        k,
                        filter,
                        payload,
                        self.vectors,
                    )
                    .await?;
                Ok(records
                    .into_iter()
                    .map(|r| ScoredPoint::new(r, 1.0))
                    .collect())
            }
            StageQuery::Fusion(_) => Err(bad("Bad request: fusion needs prefetches to merge")),
        }
    }

    /// The first `k` points under `filter` in the order of a payload field, scored 1 as Qdrant
    /// scores them, with the value they were ordered by.
    async fn ordered(
        &self,
        order_by: &super::json::points::OrderBy,
        filter: Option<Filter>,
        k: usize,
    ) -> Result<Vec<ScoredPoint>> {
        let found = super::order_by::Ordered {
            shard_key: self.shard_key.clone(),
            limit: k,
            filter,
            with_payload: with_payload(field(self.root, "with_payload"), false)?,
            with_vector: self.vectors,
            order_by: order_by.clone(),
        }
        .records(self.app, self.ctx, self.name)
        .await?;
        Ok(found
            .into_iter()
            .map(|(value, record)| {
                let mut p = ScoredPoint::new(record, 1.0);
                p.order_value = Some(value);
                p
            })
            .collect())
    }

    /// The candidates scored again by the level's own query vector, best `k` first.
    async fn rescore(
        &self,
        st: &Stage<'_>,
        q: &Value,
        sources: Vec<Vec<ScoredPoint>>,
        k: usize,
    ) -> Result<Vec<ScoredPoint>> {
        let (scorer, mentioned, metric) =
            query_scorer(self.app, self.ctx, self.name, &self.shard_key, st.body, q).await?;
        let mentioned: HashSet<PointId> = mentioned.into_iter().collect();
        let higher_better = scorer.higher_better(metric);
        let mut scored: Vec<ScoredPoint> = distinct(sources)
            .into_iter()
            .filter(|p| !mentioned.contains(&p.id.0))
            .filter_map(|mut p| {
                let v: Vec<f32> = p.vector.as_ref()?.iter().map(|x| *x as f32).collect();
                p.score = f64::from(scorer.score(metric, &v));
                Some(p)
            })
            .filter(|p| match st.score_threshold {
                None => true,
                Some(t) if higher_better => p.score >= t,
                Some(t) => p.score <= t,
            })
            .collect();
        scored.sort_by(|a, b| {
            let by = a.score.total_cmp(&b.score);
            if higher_better { by.reverse() } else { by }
        });
        scored.truncate(k);
        Ok(scored)
    }
}

/// Polls every future until all are done; their outputs in order.
async fn join_all<T>(futures: Vec<Fut<'_, T>>) -> Vec<Result<T>> {
    let mut pending: Vec<Option<Fut<'_, T>>> = futures.into_iter().map(Some).collect();
    let mut done: Vec<Option<Result<T>>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => {
                        *out = Some(r);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// Every candidate once (its first appearance), in the order they came.
fn distinct(sources: Vec<Vec<ScoredPoint>>) -> Vec<ScoredPoint> {
    let mut seen = HashSet::new();
    sources
        .into_iter()
        .flatten()
        .filter(|p| seen.insert(identity(p)))
        .collect()
}

/// The prefetched lists merged by `fusion`, best `k` first (ties in order of first
/// appearance), without those under `threshold`.
fn fuse(
    fusion: &Fusion,
    sources: Vec<Vec<ScoredPoint>>,
    k: usize,
    threshold: Option<f64>,
) -> Vec<ScoredPoint> {
    let mut order: Vec<ScoredPoint> = Vec::new();
    let mut at: HashMap<(Option<ShardKey>, PointId), usize> = HashMap::new();
    for (i, list) in sources.into_iter().enumerate() {
        let scores: Vec<f64> = match fusion {
            Fusion::Rrf { k: rank_k, weights } => {
                let w = weights
                    .as_ref()
                    .and_then(|w| w.get(i).copied())
                    .unwrap_or(1.0);
                (0..list.len())
                    .map(|rank| {
                        if w <= 0.0 {
                            0.0
                        } else {
                            1.0 / ((rank as f64 + 1.0) / w + rank_k - 1.0)
                        }
                    })
                    .collect()
            }
            Fusion::Dbsf => normalised(&list),
        };
        for (p, s) in list.into_iter().zip(scores) {
            match at.get(&identity(&p)) {
                Some(&j) => {
                    if let Some(q) = order.get_mut(j) {
                        q.score += s;
                    }
                }
                None => {
                    at.insert(identity(&p), order.len());
                    let mut p = p;
                    p.score = s;
                    order.push(p);
                }
            }
        }
    }
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    order.truncate(k);
    order.retain(|p| threshold.is_none_or(|t| p.score >= t));
    order
}

/// DBSF's normalisation of one list's scores: `(s - (mean - 3σ)) / 6σ` with the sample
/// standard deviation; 0.5 for a list of one or of equal scores.
fn normalised(list: &[ScoredPoint]) -> Vec<f64> {
    let n = list.len();
    if n <= 1 {
        return vec![0.5; n];
    }
    let mean = list.iter().map(|p| p.score).sum::<f64>() / n as f64;
    let variance = list.iter().map(|p| (p.score - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    if variance == 0.0 {
        return vec![0.5; n];
    }
    let sd = variance.sqrt();
    let low = mean - 3.0 * sd;
    list.iter().map(|p| (p.score - low) / (6.0 * sd)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::{IdJson, KeyJson};

    fn point(id: u64, score: f64) -> ScoredPoint {
        ScoredPoint {
            id: IdJson(PointId::Num(id)),
            order_value: None,
            payload: None,
            score,
            shard_key: None,
            vector: None,
            version: 0,
        }
    }

    fn ids(points: &[ScoredPoint]) -> Vec<u64> {
        points
            .iter()
            .map(|p| match p.id.0 {
                PointId::Num(n) => n,
                _ => 0,
            })
            .collect()
    }

    #[tokio::test]
    async fn join_all_runs_the_prefetches_at_once_and_answers_in_order() {
        let nap = |ms: u64, v: u32| -> Fut<'static, u32> {
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(v)
            })
        };
        let started = std::time::Instant::now();
        let out = join_all(vec![nap(300, 1), nap(0, 2), nap(300, 3)]).await;
        let out: Vec<u32> = out.into_iter().map(|r| r.unwrap_or(0)).collect();
        assert_eq!(out, vec![1, 2, 3]);
        assert!(started.elapsed() < std::time::Duration::from_millis(590));
    }

    #[test]
    fn rrf_adds_reciprocal_ranks_and_keeps_first_appearance_on_ties() {
        let a = vec![point(1, 0.9), point(2, 0.8), point(3, 0.1)];
        let b = vec![point(3, 5.0), point(4, 4.0)];
        let rrf = Fusion::Rrf {
            k: 2.0,
            weights: None,
        };
        let fused = fuse(&rrf, vec![a, b], 10, None);
        // 3: 1/4 + 1/2; 1: 1/2; 4: 1/3; 2: 1/3 (2 came first)
        assert_eq!(ids(&fused), vec![3, 1, 2, 4]);
        assert!((fused[0].score - 0.75).abs() < 1e-12);
        let weighted = Fusion::Rrf {
            k: 2.0,
            weights: Some(vec![0.0, 1.0]),
        };
        let fused = fuse(
            &weighted,
            vec![vec![point(1, 1.0)], vec![point(2, 1.0)]],
            1,
            None,
        );
        assert_eq!(ids(&fused), vec![2]);
    }

    #[test]
    fn dbsf_normalises_each_list_by_three_deviations() {
        let a = vec![point(1, 3.0), point(2, 2.0), point(3, 1.0)];
        let fused = fuse(&Fusion::Dbsf, vec![a, vec![point(9, 7.0)]], 10, Some(0.4));
        // sd 1, mean 2: 1 -> (3 - -1) / 6, 2 -> 0.5, 9 -> 0.5 (a list of one); 3 -> 1/3 cut
        assert_eq!(ids(&fused), vec![1, 2, 9]);
        assert!((fused[0].score - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn the_same_id_under_two_shard_keys_is_two_candidates() {
        let mut x = point(1, 1.0);
        x.shard_key = Some(KeyJson(ShardKey::Str("a".into())));
        let mut y = point(1, 1.0);
        y.shard_key = Some(KeyJson(ShardKey::Str("b".into())));
        assert_eq!(distinct(vec![vec![x.clone(), y], vec![x]]).len(), 2);
    }
}
