//! The Query API's tree: a query with `prefetch` (nested to any depth Qdrant allows), and the
//! queries that only make sense over candidates or without a vector: fusion (`rrf`, `dbsf`),
//! `order_by` and `sample`.
//!
//! A [`Stage`] is one level of the tree: the root body or one prefetch. Its own filter is kept
//! apart from the filters above it; [`crate::api::hybrid`] ands them on the way down, as Qdrant
//! does (a prefetch's limit applies to already filtered candidates).

use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::filter::Filter;

use super::points::OrderBy;
use super::{bad, check_fields, f64_field, field, filter, limit, obj};

/// Most prefetches one query may hold, at every level together (each is a search).
pub const MAX_PREFETCHES: usize = 64;
/// Deepest nesting of prefetches.
pub const MAX_DEPTH: usize = 8;
/// Qdrant's default ranking constant for RRF.
pub const DEFAULT_RRF_K: f64 = 2.0;

/// What one level of the tree does with its candidates (or, without prefetches, with the
/// collection).
pub enum StageQuery<'a> {
    /// No query: points in id order, each scored 1 (only without prefetches).
    None,
    /// A vector, a point id or a recommendation: a search, or with prefetches a rescoring of
    /// their candidates.
    Nearest(&'a Value),
    /// The candidates of the prefetches merged by their ranks or scores.
    Fusion(Fusion),
    /// Points in the order of a numeric payload field.
    OrderBy(OrderBy),
    /// Points in random order.
    Sample,
}

/// How prefetched lists are merged.
pub enum Fusion {
    /// Reciprocal rank fusion: each list adds `weight / (rank + k)` (rank from 1) to a point.
    Rrf { k: f64, weights: Option<Vec<f64>> },
    /// Distribution-based score fusion: each list's scores normalised by mean ± 3 standard
    /// deviations, then summed.
    Dbsf,
}

/// One level of a query tree: the root body, or one prefetch.
pub struct Stage<'a> {
    /// The level's own body: a nearest query reads its limit, params, threshold and query here.
    pub body: &'a Map<String, Value>,
    pub prefetch: Vec<Stage<'a>>,
    pub query: StageQuery<'a>,
    /// This level's own filter (the ones above are anded in when it runs).
    pub filter: Option<Filter>,
    pub limit: usize,
    pub score_threshold: Option<f64>,
}

impl<'a> Stage<'a> {
    /// The root of a query body whose `prefetch` or `query` needs the tree (see
    /// [`needs_tree`]); the root's other fields (offset, payload, vectors, shard key) are the
    /// caller's.
    pub fn root(o: &'a Map<String, Value>, max_limit: usize) -> Result<Stage<'a>> {
        let mut count = 0;
        Stage::parse(o, max_limit, 0, &mut count)
    }

    fn parse(
        o: &'a Map<String, Value>,
        max_limit: usize,
        depth: usize,
        count: &mut usize,
    ) -> Result<Stage<'a>> {
        if depth > 0 {
            check_fields(
                o,
                "prefetch.",
                &[
                    "prefetch",
                    "query",
                    "using",
                    "filter",
                    "params",
                    "score_threshold",
                    "limit",
                    "lookup_from",
                ],
                &[],
            )?;
        }
        super::query::check_using(o)?;
        super::query::LookupFrom::parse(o)?;
        super::query::search_params(o)?;
        if depth > MAX_DEPTH {
            return Err(bad(format!(
                "Bad request: prefetches may be nested at most {MAX_DEPTH} deep"
            )));
        }
        let children: Vec<&Value> = match field(o, "prefetch") {
            None => Vec::new(),
            Some(Value::Array(list)) => list.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(_) => {
                return Err(bad(
                    "Format error in JSON body: prefetch must be an object or a list of objects",
                ));
            }
        };
        *count += children.len();
        if *count > MAX_PREFETCHES {
            return Err(bad(format!(
                "Bad request: at most {MAX_PREFETCHES} prefetches per query"
            )));
        }
        let prefetch = children
            .into_iter()
            .map(|c| Stage::parse(obj(c, "prefetch")?, max_limit, depth + 1, count))
            .collect::<Result<Vec<_>>>()?;
        let query = stage_query(field(o, "query"))?;
        match (&query, prefetch.is_empty()) {
            (StageQuery::Fusion(_), true) => {
                return Err(bad("Bad request: fusion needs prefetches to merge"));
            }
            (StageQuery::None, false) => {
                return Err(bad("Bad request: a query is required to merge prefetches"));
            }
            _ => {}
        }
        if let StageQuery::Fusion(Fusion::Rrf {
            weights: Some(w), ..
        }) = &query
            && w.len() != prefetch.len()
        {
            return Err(bad(format!(
                "Bad request: rrf has {} weights for {} prefetches",
                w.len(),
                prefetch.len()
            )));
        }
        let score_threshold = f64_field(o, "score_threshold")?;
        Ok(Stage {
            body: o,
            prefetch,
            query,
            filter: filter(o)?,
            limit: limit(o, 10, max_limit)?,
            score_threshold,
        })
    }

    /// Whether some level rescores its candidates by a vector (so the leaves must read them).
    pub fn rescores(&self) -> bool {
        !self.prefetch.is_empty() && matches!(self.query, StageQuery::Nearest(_))
            || self.prefetch.iter().any(Stage::rescores)
    }
}

/// Whether a query body needs the tree: it has prefetches, or its query is one a plain search
/// does not run.
pub fn needs_tree(o: &Map<String, Value>) -> bool {
    field(o, "prefetch").is_some()
        || matches!(field(o, "query"), Some(Value::Object(m))
            if ["fusion", "rrf", "order_by", "sample"].iter().any(|k| m.contains_key(*k)))
}

fn stage_query(q: Option<&Value>) -> Result<StageQuery<'_>> {
    let Some(q) = q else {
        return Ok(StageQuery::None);
    };
    let Value::Object(m) = q else {
        // a vector or a point id
        return Ok(StageQuery::Nearest(q));
    };
    if let Some(n) = m.get("nearest") {
        return Ok(StageQuery::Nearest(n));
    }
    if super::query::is_example_query(m) {
        return Ok(StageQuery::Nearest(q));
    }
    if let Some(f) = m.get("fusion") {
        return match f.as_str() {
            Some("rrf") => Ok(StageQuery::Fusion(Fusion::Rrf {
                k: DEFAULT_RRF_K,
                weights: None,
            })),
            Some("dbsf") => Ok(StageQuery::Fusion(Fusion::Dbsf)),
            _ => Err(bad(format!(
                "Format error in JSON body: unknown fusion {f}; expected \"rrf\" or \"dbsf\""
            ))),
        };
    }
    if let Some(r) = m.get("rrf") {
        let r = obj(r, "query.rrf")?;
        check_fields(r, "query.rrf.", &["k", "weights"], &[])?;
        let k = match field(r, "k") {
            None => DEFAULT_RRF_K,
            Some(v) => match v.as_u64() {
                Some(k) if k >= 1 => k as f64,
                _ => {
                    return Err(bad(format!(
                        "Format error in JSON body: query.rrf.k must be a positive integer, got {v}"
                    )));
                }
            },
        };
        let weights = field(r, "weights")
            .map(|w| {
                w.as_array()
                    .and_then(|l| l.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                    .filter(|l| l.iter().all(|x| x.is_finite() && *x >= 0.0))
                    .ok_or_else(|| {
                        bad("Format error in JSON body: query.rrf.weights must be a list of non-negative numbers")
                    })
            })
            .transpose()?;
        return Ok(StageQuery::Fusion(Fusion::Rrf { k, weights }));
    }
    if let Some(o) = m.get("order_by") {
        return Ok(StageQuery::OrderBy(OrderBy::parse(o)?));
    }
    if let Some(s) = m.get("sample") {
        return match s.as_str() {
            Some("random") => Ok(StageQuery::Sample),
            _ => Err(bad(format!(
                "Format error in JSON body: unknown sample {s}; expected \"random\""
            ))),
        };
    }
    let kind = m.keys().next().cloned().unwrap_or_default();
    Err(bad(format!(
        "Wrong input: query type `{kind}` is not supported"
    )))
}
