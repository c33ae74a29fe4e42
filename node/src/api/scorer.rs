//! How a nearest query scores a stored vector: by similarity to one vector (a search the shards
//! run on their graphs), or from examples (recommend's `best_score` and `sum_scores`,
//! discovery, context search), which no graph answers: those read every point the caller may
//! read under the filter, page by page, and keep the best (an exact answer, at the cost of a
//! scan of the caller's points).
//!
//! Scores follow Qdrant's: a similarity is the dot product of the (for cosine, normalised)
//! vectors, or minus the squared distance for Euclid, and `sigmoid(x) = x / (1 + |x|)`.

use std::collections::HashMap;

use tessera_cluster::Result;
use tessera_cluster::meta::ShardKey;
use tessera_shard::Metric;
use tessera_shard::filter::Filter;
use tessera_shard::point::PointId;
use tessera_shard::store::{PayloadSelector, Record};

use super::AppState;
use super::json::check_dim;
use super::json::query::{Example, LookupFrom, Pair, Recommend, Strategy, Target};
use super::points::Scan;
use crate::router::{Ctx, KeySelector, Keyed};

/// What a query scores stored vectors by (example vectors resolved, normalised for cosine).
pub enum Scorer {
    /// Similarity to this vector (normalised for cosine, as the shard would).
    Nearest(Vec<f32>),
    BestScore {
        positive: Vec<Vec<f32>>,
        negative: Vec<Vec<f32>>,
    },
    SumScores {
        positive: Vec<Vec<f32>>,
        negative: Vec<Vec<f32>>,
    },
    Discover {
        target: Vec<f32>,
        pairs: Vec<(Vec<f32>, Vec<f32>)>,
    },
    Context {
        pairs: Vec<(Vec<f32>, Vec<f32>)>,
    },
}

/// Qdrant's f32 epsilon in the context score.
const EPSILON: f32 = f32::EPSILON;

fn sigmoid(x: f32) -> f32 {
    if x.is_finite() {
        x / (1.0 + x.abs())
    } else {
        x
    }
}

fn scaled_sigmoid(x: f32) -> f32 {
    0.5 * (sigmoid(x) + 1.0)
}

impl Scorer {
    /// The score of stored vector `v` (already normalised for cosine).
    pub fn score(&self, metric: Metric, v: &[f32]) -> f32 {
        let sim = |a: &[f32]| -tessera_shard::distance(metric, a, v);
        match self {
            Scorer::Nearest(q) => {
                tessera_shard::score_from_distance(metric, tessera_shard::distance(metric, q, v))
            }
            Scorer::BestScore { positive, negative } => {
                let best =
                    |l: &[Vec<f32>]| l.iter().map(|e| sim(e)).fold(f32::NEG_INFINITY, f32::max);
                let (pos, neg) = (best(positive), best(negative));
                if pos > neg {
                    scaled_sigmoid(pos)
                } else {
                    -scaled_sigmoid(neg)
                }
            }
            Scorer::SumScores { positive, negative } => {
                positive.iter().map(|e| sim(e)).sum::<f32>()
                    - negative.iter().map(|e| sim(e)).sum::<f32>()
            }
            Scorer::Discover { target, pairs } => {
                let rank: i32 = pairs
                    .iter()
                    .map(|(p, n)| {
                        let (p, n) = (sim(p), sim(n));
                        i32::from(p > n) - i32::from(p < n)
                    })
                    .sum();
                rank as f32 + scaled_sigmoid(sim(target))
            }
            Scorer::Context { pairs } => pairs
                .iter()
                .map(|(p, n)| sigmoid((sim(p) - sim(n) - EPSILON).min(0.0)))
                .sum(),
        }
    }

    /// Whether a higher score is better: all but a Euclid search, whose score is a distance.
    pub fn higher_better(&self, metric: Metric) -> bool {
        !matches!(self, Scorer::Nearest(_)) || metric != Metric::Euclid
    }

    /// Stored vectors are normalised for cosine; the query and its examples are made so (the
    /// shard normalising a search vector again changes nothing).
    fn prepared(mut self, metric: Metric) -> Scorer {
        if metric != Metric::Cosine {
            return self;
        }
        let n = |v: &mut Vec<f32>| tessera_shard::store::normalize(v);
        match &mut self {
            Scorer::Nearest(q) => n(q),
            Scorer::BestScore { positive, negative } | Scorer::SumScores { positive, negative } => {
                positive.iter_mut().chain(negative.iter_mut()).for_each(n);
            }
            Scorer::Discover { target, pairs } => {
                n(target);
                pairs.iter_mut().for_each(|(p, q)| {
                    n(p);
                    n(q);
                });
            }
            Scorer::Context { pairs } => pairs.iter_mut().for_each(|(p, q)| {
                n(p);
                n(q);
            }),
        }
        self
    }
}

/// Where examples given by id are read: the caller's scope in one collection.
pub struct Examples<'a> {
    pub app: &'a AppState,
    pub ctx: &'a Ctx,
    pub name: &'a str,
    pub shard_key: &'a KeySelector,
    pub dim: usize,
    /// Another collection the examples given by id are read from.
    pub lookup: Option<LookupFrom>,
    /// The points named (in this collection), which are left out of the results.
    pub mentioned: Vec<PointId>,
}

impl Examples<'_> {
    /// The scorer of `target`.
    pub async fn scorer(&mut self, target: Target, metric: Metric) -> Result<Scorer> {
        let scorer = match target {
            Target::Vector(vector) => Scorer::Nearest(vector),
            Target::Point(id) => Scorer::Nearest(self.vector(Example::Point(id)).await?),
            Target::Recommend(Recommend {
                positive,
                negative,
                strategy,
            }) => {
                let positive = self.vectors(positive).await?;
                let negative = self.vectors(negative).await?;
                match strategy {
                    Strategy::AverageVector => {
                        let pos = mean(&positive, self.dim);
                        Scorer::Nearest(if negative.is_empty() {
                            pos
                        } else {
                            let neg = mean(&negative, self.dim);
                            pos.iter().zip(&neg).map(|(p, n)| p + p - n).collect()
                        })
                    }
                    Strategy::BestScore => Scorer::BestScore { positive, negative },
                    Strategy::SumScores => Scorer::SumScores { positive, negative },
                }
            }
            Target::Discover { target, pairs } => Scorer::Discover {
                target: self.vector(target).await?,
                pairs: self.pairs(pairs).await?,
            },
            Target::Context(pairs) => Scorer::Context {
                pairs: self.pairs(pairs).await?,
            },
        };
        Ok(scorer.prepared(metric))
    }

    async fn vector(&mut self, e: Example) -> Result<Vec<f32>> {
        let v = match e {
            Example::Vector(v) => v,
            Example::Point(id) => match &self.lookup {
                None => {
                    let v = self
                        .app
                        .router
                        .vector_of(self.ctx, self.name, self.shard_key, id.clone())
                        .await?;
                    self.mentioned.push(id);
                    v
                }
                Some(l) => {
                    self.app
                        .router
                        .vector_of(self.ctx, &l.collection, &l.shard_key, id)
                        .await?
                }
            },
        };
        check_dim(&v, self.dim)?;
        Ok(v)
    }

    async fn vectors(&mut self, examples: Vec<Example>) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(examples.len());
        for e in examples {
            out.push(self.vector(e).await?);
        }
        Ok(out)
    }

    async fn pairs(&mut self, pairs: Vec<Pair>) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let mut out = Vec::with_capacity(pairs.len());
        for Pair { positive, negative } in pairs {
            out.push((self.vector(positive).await?, self.vector(negative).await?));
        }
        Ok(out)
    }
}

fn mean(vectors: &[Vec<f32>], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    for v in vectors {
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
    }
    sum.iter_mut()
        .for_each(|s| *s /= vectors.len().max(1) as f32);
    sum
}

/// What a scan-scored search reads and returns.
pub struct ScanSearch<'a> {
    pub shard_key: &'a KeySelector,
    pub filter: &'a Option<Filter>,
    pub exclude: Option<&'a PointId>,
    pub k: usize,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
}

impl ScanSearch<'_> {
    /// The best `k` points by `scorer` (ties by shard key and id), best first, with the
    /// payload and vector asked for.
    pub async fn run(
        &self,
        app: &AppState,
        ctx: &Ctx,
        name: &str,
        scorer: &Scorer,
        metric: Metric,
    ) -> Result<Vec<(Keyed<Record>, f32)>> {
        let higher_better = scorer.higher_better(metric);
        let better = |a: &(f32, Option<ShardKey>, PointId),
                      b: &(f32, Option<ShardKey>, PointId)| {
            let by = a.0.total_cmp(&b.0);
            let by = if higher_better { by.reverse() } else { by };
            by.then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2)))
        };
        let mut best: Vec<(f32, Option<ShardKey>, PointId)> = Vec::new();
        let k = self.k;
        let scan = Scan {
            sel: self.shard_key,
            filter: self.filter,
            payload: PayloadSelector::None,
            vectors: true,
        };
        scan.run(app, ctx, name, |(key, r)| {
            if self.exclude == Some(&r.id) {
                return;
            }
            let Some(v) = &r.vector else { return };
            let s = scorer.score(metric, v);
            if s.is_nan() {
                return;
            }
            best.push((s, key, r.id));
            if best.len() >= k.saturating_mul(2).max(64) {
                best.sort_by(better);
                best.truncate(k);
            }
        })
        .await?;
        best.sort_by(better);
        best.truncate(k);
        if best.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<PointId> = best.iter().map(|(_, _, id)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        let records: HashMap<(Option<ShardKey>, PointId), Record> = app
            .router
            .retrieve(
                ctx,
                name,
                self.shard_key,
                ids,
                self.with_payload.clone(),
                self.with_vector,
            )
            .await?
            .into_iter()
            .map(|(key, r)| ((key, r.id.clone()), r))
            .collect();
        Ok(best
            .into_iter()
            .filter_map(|(s, key, id)| {
                let r = records.get(&(key.clone(), id))?.clone();
                Some(((key, r), s))
            })
            .collect())
    }
}
