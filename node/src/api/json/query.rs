//! Search bodies: the universal query (`/points/query` and its batch) and the classic search,
//! and the scored points they answer with.
//!
//! A nearest-neighbour body is parsed in two parts around the work that needs the collection:
//! [`NearestHead`] (limit, offset, the query) before the query vector is resolved (a point id
//! query reads the point) and its dimension checked, [`NearestTail`] after, so every error
//! comes in the order it always has.

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::filter::Filter;
use tessera_shard::point::PointId;
use tessera_shard::store::PayloadSelector;

use super::prefetch::{Stage, needs_tree};
use super::{
    IdJson, KeyJson, bad, check_fields, f64_field, field, filter, key_selector, limit, obj,
    point_id, usize_field, vector, widen, with_payload, with_vector,
};
use crate::router::KeySelector;

/// Most queries one batch request may carry.
pub const MAX_BATCH_QUERIES: usize = 256;

/// What a universal query body asks for.
pub enum Query<'a> {
    /// No query: the points in id order (a scroll), as Qdrant does.
    Scroll(ScrollQuery),
    /// A nearest-neighbour search for this query value (a vector or a point id).
    Nearest(&'a Value),
    /// Prefetches, fusion, ordering or sampling: see [`Stage`].
    Tree(Stage<'a>),
}

/// A query without `query`.
pub struct ScrollQuery {
    pub limit: usize,
    pub shard_key: KeySelector,
    pub filter: Option<Filter>,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
}

impl<'a> Query<'a> {
    pub fn parse(o: &'a Map<String, Value>, max_limit: usize) -> Result<Query<'a>> {
        check_using(o)?;
        check_fields(
            o,
            "",
            &[
                "shard_key",
                "prefetch",
                "query",
                "using",
                "filter",
                "params",
                "score_threshold",
                "limit",
                "offset",
                "with_vector",
                "with_payload",
                "lookup_from",
            ],
            &[],
        )?;
        LookupFrom::parse(o)?;
        if needs_tree(o) {
            return Ok(Query::Tree(Stage::root(o, max_limit)?));
        }
        match field(o, "query") {
            None => Ok(Query::Scroll(ScrollQuery {
                limit: limit(o, 10, max_limit)?,
                shard_key: key_selector(o)?,
                filter: filter(o)?,
                with_payload: with_payload(field(o, "with_payload"), false)?,
                with_vector: with_vector(field(o, "with_vector"))?,
            })),
            Some(q @ Value::Object(m)) => match m.get("nearest") {
                Some(nearest) => Ok(Query::Nearest(nearest)),
                // the whole `{"recommend": {..}}` (or discover, context): [`NearestHead::parse`]
                // reads it
                None if is_example_query(m) => Ok(Query::Nearest(q)),
                None => {
                    let kind = m.keys().next().cloned().unwrap_or_default();
                    Err(bad(format!(
                        "Wrong input: query type `{kind}` is not supported"
                    )))
                }
            },
            Some(v) => Ok(Query::Nearest(v)),
        }
    }
}

/// Whether a query object is one [`NearestHead::parse`] reads whole: a recommendation, a
/// discovery or a context search.
pub fn is_example_query(m: &Map<String, Value>) -> bool {
    ["recommend", "discover", "context"]
        .iter()
        .any(|k| m.contains_key(*k))
}

/// A collection has one unnamed vector: `using` may name only it.
pub fn check_using(o: &Map<String, Value>) -> Result<()> {
    match field(o, "using") {
        None => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(Value::String(s)) => Err(bad(format!(
            "Wrong input: Not existing vector name error: {s}"
        ))),
        Some(_) => Err(bad("Format error in JSON body: using must be a string")),
    }
}

/// `POST /collections/{c}/points/search`: the `vector` to search for.
pub fn search_vector(o: &Map<String, Value>) -> Result<&Value> {
    check_fields(
        o,
        "",
        &[
            "shard_key",
            "vector",
            "filter",
            "params",
            "limit",
            "offset",
            "with_payload",
            "with_vector",
            "score_threshold",
        ],
        &[],
    )?;
    let q =
        field(o, "vector").ok_or_else(|| bad("Format error in JSON body: vector is required"))?;
    if !q.is_array() {
        return Err(bad(
            "Format error in JSON body: vector must be a list of numbers",
        ));
    }
    Ok(q)
}

/// `POST /collections/{c}/points/query/batch` (and the search and recommend batches): the bodies, each checked to be an object
/// by [`batch_query`] when its turn comes (after the ones before it ran, as always).
pub fn query_batch(o: &Map<String, Value>) -> Result<&[Value]> {
    let searches = field(o, "searches")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Format error in JSON body: searches must be a list"))?;
    if searches.len() > MAX_BATCH_QUERIES {
        return Err(bad(format!(
            "Bad request: at most {MAX_BATCH_QUERIES} queries per batch"
        )));
    }
    Ok(searches)
}

/// One query of a batch.
pub fn batch_query(v: &Value) -> Result<&Map<String, Value>> {
    obj(v, "searches[]")
}

/// What a nearest search looks for.
pub enum Target {
    Vector(Vec<f32>),
    /// The vector of this point, which is left out of the results.
    Point(PointId),
    /// Points like the positive examples and unlike the negative ones.
    Recommend(Recommend),
    /// Points near `target` within the zone the context pairs mark out: a point's score is
    /// the number of pairs it is closer to the positive of, less those it is closer to the
    /// negative of, plus its similarity to the target squashed into (0, 1).
    Discover {
        target: Example,
        pairs: Vec<Pair>,
    },
    /// Points on the positive side of every context pair (score 0), the others penalised by
    /// how far they are on the wrong side.
    Context(Vec<Pair>),
}

/// Most examples one recommendation may name (each point example is a read).
pub const MAX_EXAMPLES: usize = 256;

/// One example of a recommendation: a vector, or a point whose vector it is (that point is
/// left out of the results).
pub enum Example {
    Vector(Vec<f32>),
    Point(PointId),
}

impl Example {
    fn parse(e: &Value) -> Result<Example> {
        match e {
            Value::Array(_) => vector(e).map(Example::Vector),
            _ => point_id(e).map(Example::Point),
        }
    }
}

/// `lookup_from`: examples given by id are read from another collection (in the caller's scope
/// there, under its own shard key selector), and are not left out of the results.
pub struct LookupFrom {
    pub collection: String,
    pub shard_key: KeySelector,
}

impl LookupFrom {
    pub fn parse(o: &Map<String, Value>) -> Result<Option<LookupFrom>> {
        let Some(l) = field(o, "lookup_from") else {
            return Ok(None);
        };
        let l = obj(l, "lookup_from")?;
        check_fields(
            l,
            "lookup_from.",
            &["collection", "vector", "shard_key"],
            &[],
        )?;
        let collection = super::string_at(l, "collection", "lookup_from")?;
        match field(l, "vector") {
            None => {}
            Some(Value::String(v)) if v.is_empty() => {}
            Some(Value::String(v)) => {
                return Err(bad(format!(
                    "Wrong input: Not existing vector name error: {v}"
                )));
            }
            Some(_) => {
                return Err(bad(
                    "Format error in JSON body: lookup_from.vector must be a string",
                ));
            }
        }
        Ok(Some(LookupFrom {
            collection,
            shard_key: key_selector(l)?,
        }))
    }
}

/// One context pair of a discovery or context search.
pub struct Pair {
    pub positive: Example,
    pub negative: Example,
}

/// A context: a list of pairs, or one pair, each `{"positive": .., "negative": ..}`.
fn pairs(v: &Value, what: &str) -> Result<Vec<Pair>> {
    let one = |p: &Value| -> Result<Pair> {
        let p = obj(p, what)?;
        check_fields(p, &format!("{what}."), &["positive", "negative"], &[])?;
        let side = |k: &str| {
            field(p, k)
                .ok_or_else(|| bad(format!("Format error in JSON body: {what}.{k} is required")))
                .and_then(Example::parse)
        };
        Ok(Pair {
            positive: side("positive")?,
            negative: side("negative")?,
        })
    };
    let list = match v {
        Value::Array(list) => list.iter().map(one).collect::<Result<Vec<_>>>()?,
        Value::Null => Vec::new(),
        _ => vec![one(v)?],
    };
    if list.len() > MAX_EXAMPLES {
        return Err(bad(format!(
            "Bad request: at most {MAX_EXAMPLES} context pairs per query"
        )));
    }
    Ok(list)
}

/// How a recommendation scores points from its examples.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Search for `2 * mean(positive) - mean(negative)` (Qdrant's default).
    AverageVector,
    /// The best similarity to a positive example if it beats the best to a negative one, else
    /// minus the best to a negative one (each squashed into (0, 1)).
    BestScore,
    /// The sum of the similarities to the positive examples less the sum to the negative ones.
    SumScores,
}

/// A recommendation.
pub struct Recommend {
    pub positive: Vec<Example>,
    pub negative: Vec<Example>,
    pub strategy: Strategy,
}

impl Recommend {
    /// From the fields `positive`, `negative` and `strategy` of `o` (the query API's
    /// `recommend` object, or a recommend body).
    pub fn parse(o: &Map<String, Value>) -> Result<Recommend> {
        let strategy = match field(o, "strategy") {
            None => Strategy::AverageVector,
            Some(Value::String(s)) if s == "average_vector" => Strategy::AverageVector,
            Some(Value::String(s)) if s == "best_score" => Strategy::BestScore,
            Some(Value::String(s)) if s == "sum_scores" => Strategy::SumScores,
            Some(v) => {
                return Err(bad(format!(
                    "Format error in JSON body: unknown recommend strategy {v}; expected average_vector, best_score or sum_scores"
                )));
            }
        };
        let examples = |k: &str| -> Result<Vec<Example>> {
            let Some(v) = field(o, k) else {
                return Ok(Vec::new());
            };
            let list = v
                .as_array()
                .ok_or_else(|| bad(format!("Format error in JSON body: {k} must be a list")))?;
            if list.len() > MAX_EXAMPLES {
                return Err(bad(format!(
                    "Bad request: at most {MAX_EXAMPLES} {k} examples per recommendation"
                )));
            }
            list.iter().map(Example::parse).collect()
        };
        let positive = examples("positive")?;
        let negative = examples("negative")?;
        if positive.is_empty() && strategy == Strategy::AverageVector {
            return Err(bad(
                "Bad request: No positive examples given with 'average_vector' strategy",
            ));
        }
        if positive.is_empty() && negative.is_empty() {
            return Err(bad("Bad request: a recommendation needs examples"));
        }
        Ok(Recommend {
            positive,
            negative,
            strategy,
        })
    }
}

/// `POST /collections/{c}/points/recommend`: the recommendation, as the query API names it.
pub fn recommend_body(o: &Map<String, Value>) -> Result<Value> {
    check_fields(
        o,
        "",
        &[
            "shard_key",
            "positive",
            "negative",
            "strategy",
            "using",
            "filter",
            "params",
            "limit",
            "offset",
            "with_payload",
            "with_vector",
            "score_threshold",
            "lookup_from",
        ],
        &[],
    )?;
    check_using(o)?;
    let mut r = Map::new();
    for k in ["positive", "negative", "strategy"] {
        if let Some(v) = field(o, k) {
            r.insert(k.to_owned(), v.clone());
        }
    }
    Ok(serde_json::json!({ "recommend": r }))
}

/// `POST /collections/{c}/points/discover`: the discovery (or, without a target, the context
/// search), as the query API names it.
pub fn discover_body(o: &Map<String, Value>) -> Result<Value> {
    check_fields(
        o,
        "",
        &[
            "shard_key",
            "target",
            "context",
            "using",
            "filter",
            "params",
            "limit",
            "offset",
            "with_payload",
            "with_vector",
            "lookup_from",
        ],
        &[],
    )?;
    check_using(o)?;
    let context = field(o, "context").cloned().unwrap_or(Value::Null);
    Ok(match field(o, "target") {
        Some(target) => serde_json::json!({"discover": {"target": target, "context": context}}),
        None => serde_json::json!({ "context": context }),
    })
}

/// The part of a nearest search read before its vector is known.
pub struct NearestHead {
    pub limit: usize,
    pub offset: usize,
    pub target: Target,
}

impl NearestHead {
    pub fn parse(o: &Map<String, Value>, query: &Value, max_limit: usize) -> Result<NearestHead> {
        let limit = limit(o, 10, max_limit)?;
        let offset = usize_field(o, "offset")?.unwrap_or(0);
        if offset > max_limit {
            return Err(bad(format!(
                "Bad request: offset {offset} is over the maximum of {max_limit}"
            )));
        }
        let target = match query {
            Value::Array(_) => Target::Vector(vector(query)?),
            Value::Number(_) | Value::String(_) => Target::Point(point_id(query)?),
            Value::Object(m) if m.contains_key("recommend") => {
                let r = m.get("recommend").unwrap_or(&Value::Null);
                Target::Recommend(Recommend::parse(obj(r, "query.recommend")?)?)
            }
            Value::Object(m) if m.contains_key("discover") => {
                let d = obj(m.get("discover").unwrap_or(&Value::Null), "query.discover")?;
                check_fields(d, "query.discover.", &["target", "context"], &[])?;
                let target = field(d, "target").ok_or_else(|| {
                    bad("Format error in JSON body: query.discover.target is required")
                })?;
                Target::Discover {
                    target: Example::parse(target)?,
                    pairs: pairs(
                        field(d, "context").unwrap_or(&Value::Null),
                        "query.discover.context",
                    )?,
                }
            }
            Value::Object(m) if m.contains_key("context") => {
                let pairs = pairs(m.get("context").unwrap_or(&Value::Null), "query.context")?;
                if pairs.is_empty() {
                    return Err(bad("Bad request: a context search needs context pairs"));
                }
                Target::Context(pairs)
            }
            _ => {
                return Err(bad(
                    "Wrong input: query must be a vector, a point id or {\"nearest\": ...}",
                ));
            }
        };
        Ok(NearestHead {
            limit,
            offset,
            target,
        })
    }
}

/// The rest of a nearest search.
pub struct NearestTail {
    /// `None`: the default ef.
    pub hnsw_ef: Option<usize>,
    pub exact: bool,
    pub score_threshold: Option<f64>,
    pub filter: Option<Filter>,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
}

/// A body's search `params`: `(hnsw_ef, exact)`, each checked.
pub fn search_params(o: &Map<String, Value>) -> Result<(Option<usize>, bool)> {
    let Some(p) = field(o, "params") else {
        return Ok((None, false));
    };
    let p = obj(p, "params")?;
    // there are no quantized vectors, so quantization's options change nothing
    check_fields(
        p,
        "params.",
        &["hnsw_ef", "exact", "quantization"],
        &[
            ("indexed_only", Value::Bool(false)),
            ("acorn", serde_json::json!({"enable": false})),
        ],
    )?;
    let exact = match field(p, "exact") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("Format error in JSON body: params.exact must be a boolean"))?,
    };
    Ok((usize_field(p, "hnsw_ef")?, exact))
}

impl NearestTail {
    pub fn parse(o: &Map<String, Value>) -> Result<NearestTail> {
        let (hnsw_ef, exact) = search_params(o)?;
        let score_threshold = f64_field(o, "score_threshold")?;
        Ok(NearestTail {
            hnsw_ef,
            exact,
            score_threshold,
            filter: filter(o)?,
            with_payload: with_payload(field(o, "with_payload"), false)?,
            with_vector: with_vector(field(o, "with_vector"))?,
        })
    }
}

/// A point found by a query or search.
#[derive(Clone, Serialize)]
pub struct ScoredPoint {
    pub id: IdJson,
    pub order_value: Option<serde_json::Number>,
    pub payload: Option<tessera_shard::point::Payload>,
    pub score: f64,
    pub shard_key: Option<KeyJson>,
    pub vector: Option<Vec<f64>>,
    pub version: u64,
}

impl ScoredPoint {
    pub fn new(
        (key, record): (
            Option<tessera_cluster::meta::ShardKey>,
            tessera_shard::store::Record,
        ),
        score: f32,
    ) -> ScoredPoint {
        ScoredPoint {
            id: IdJson(record.id),
            order_value: None,
            payload: record.payload,
            score: f64::from(score),
            shard_key: key.map(KeyJson),
            vector: record.vector.map(widen),
            version: record.version,
        }
    }
}

/// The answer to one universal query.
#[derive(Serialize)]
pub struct QueryResult {
    pub points: Vec<ScoredPoint>,
}

/// A distance-matrix request (`/points/search/matrix/pairs`, `/offsets`).
pub struct MatrixRequest {
    pub sample: usize,
    pub limit: usize,
    pub filter: Option<Filter>,
    pub shard_key: KeySelector,
}

impl MatrixRequest {
    pub fn parse(o: &Map<String, Value>, max_limit: usize) -> Result<MatrixRequest> {
        check_fields(
            o,
            "",
            &["shard_key", "filter", "sample", "limit", "using"],
            &[],
        )?;
        check_using(o)?;
        let positive = |k: &str, default: usize| -> Result<usize> {
            let n = usize_field(o, k)?.unwrap_or(default);
            if n == 0 || n > max_limit {
                return Err(bad(format!(
                    "Bad request: {k} must be between 1 and {max_limit}, got {n}"
                )));
            }
            Ok(n)
        };
        Ok(MatrixRequest {
            sample: positive("sample", 10)?,
            limit: positive("limit", 3)?,
            filter: filter(o)?,
            shard_key: key_selector(o)?,
        })
    }
}

/// One pair of a distance matrix.
#[derive(Serialize)]
pub struct MatrixPair {
    pub a: IdJson,
    pub b: IdJson,
    pub score: f64,
}

impl MatrixPair {
    pub fn new(a: PointId, b: PointId, score: f32) -> MatrixPair {
        MatrixPair {
            a: IdJson(a),
            b: IdJson(b),
            score: f64::from(score),
        }
    }
}

/// `/points/search/matrix/pairs`.
#[derive(Serialize)]
pub struct MatrixPairs {
    pub pairs: Vec<MatrixPair>,
}

/// `/points/search/matrix/offsets`: the sample's ids, and for each pair its row and column in
/// them and its score.
#[derive(Serialize)]
pub struct MatrixOffsets {
    pub ids: Vec<IdJson>,
    pub offsets_col: Vec<u64>,
    pub offsets_row: Vec<u64>,
    pub scores: Vec<f64>,
}

impl MatrixOffsets {
    pub fn new(ids: Vec<PointId>) -> MatrixOffsets {
        MatrixOffsets {
            ids: ids.into_iter().map(IdJson).collect(),
            offsets_col: Vec::new(),
            offsets_row: Vec::new(),
            scores: Vec::new(),
        }
    }

    pub fn push(&mut self, row: usize, col: usize, score: f32) {
        self.offsets_row.push(row as u64);
        self.offsets_col.push(col as u64);
        self.scores.push(f64::from(score));
    }
}
