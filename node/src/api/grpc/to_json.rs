//! gRPC requests as the REST bodies they mean. A gRPC request becomes the JSON body REST would
//! receive for it (Qdrant's own gRPC and REST schemas describe the same request), and both front
//! doors then run the same parser and the same operation: a check, a default or a refusal exists
//! in one only if it exists in both.
//!
//! Every field the proto carries is carried over, those tessera does not support included (under
//! their REST name, with the value [`set`] where the REST shape differs), so the shared parsers
//! refuse them naming the field instead of the conversion dropping them.

use std::collections::HashMap;

use qdrant_client::qdrant as pb;
use serde_json::{Map, Value, json};

/// The value a field tessera refuses is given when its REST shape is not rebuilt: the parsers
/// refuse the field by name whatever it holds.
fn set() -> Value {
    Value::String("set over gRPC".into())
}

/// A JSON object under construction.
#[derive(Default)]
pub struct Body(Map<String, Value>);

impl Body {
    pub fn new() -> Body {
        Body::default()
    }

    /// Sets `k` to `v`.
    pub fn put(mut self, k: &str, v: impl Into<Value>) -> Body {
        self.0.insert(k.to_string(), v.into());
        self
    }

    /// Sets `k` when `v` is given.
    pub fn opt<T>(self, k: &str, v: Option<T>, f: impl FnOnce(T) -> Value) -> Body {
        match v {
            Some(v) => self.put(k, f(v)),
            None => self,
        }
    }

    /// Sets `k` to the marker of an unsupported field when `given`.
    pub fn refused(self, k: &str, given: bool) -> Body {
        if given { self.put(k, set()) } else { self }
    }

    pub fn map(self) -> Map<String, Value> {
        self.0
    }

    pub fn value(self) -> Value {
        Value::Object(self.0)
    }
}

pub fn point_id(id: &pb::PointId) -> Value {
    match &id.point_id_options {
        Some(pb::point_id::PointIdOptions::Num(n)) => json!(n),
        Some(pb::point_id::PointIdOptions::Uuid(s)) => json!(s),
        None => Value::Null,
    }
}

pub fn point_ids(ids: &[pb::PointId]) -> Value {
    Value::Array(ids.iter().map(point_id).collect())
}

pub fn value(v: &pb::Value) -> Value {
    use pb::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(Kind::IntegerValue(i)) => json!(i),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => payload(&s.fields),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value).collect()),
    }
}

pub fn payload(fields: &HashMap<String, pb::Value>) -> Value {
    Value::Object(fields.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

pub fn shard_key(k: &pb::ShardKey) -> Value {
    match &k.key {
        Some(pb::shard_key::Key::Keyword(s)) => json!(s),
        Some(pb::shard_key::Key::Number(n)) => json!(n),
        None => Value::Null,
    }
}

/// A shard key selector as REST writes it: one key, a list, or `{target, fallback}`.
pub fn key_selector(s: &pb::ShardKeySelector) -> Value {
    let keys: Vec<Value> = s.shard_keys.iter().map(shard_key).collect();
    let target = match keys.as_slice() {
        [one] => one.clone(),
        _ => Value::Array(keys),
    };
    match &s.fallback {
        Some(fb) => json!({"target": target, "fallback": shard_key(fb)}),
        None => target,
    }
}

pub fn with_payload(s: &pb::WithPayloadSelector) -> Value {
    use pb::with_payload_selector::SelectorOptions;
    match &s.selector_options {
        Some(SelectorOptions::Enable(b)) => json!(b),
        Some(SelectorOptions::Include(i)) => json!({"include": i.fields}),
        Some(SelectorOptions::Exclude(e)) => json!({"exclude": e.fields}),
        None => Value::Null,
    }
}

pub fn with_vectors(s: &pb::WithVectorsSelector) -> Value {
    use pb::with_vectors_selector::SelectorOptions;
    match &s.selector_options {
        Some(SelectorOptions::Enable(b)) => json!(b),
        Some(SelectorOptions::Include(i)) => json!(i.names),
        None => Value::Null,
    }
}

fn dense(data: &[f32]) -> Value {
    Value::Array(data.iter().map(|x| json!(x)).collect())
}

fn sparse(values: &[f32], indices: &[u32]) -> Value {
    json!({"indices": indices, "values": dense(values)})
}

/// One vector of a point, as REST writes it.
pub fn vector(v: &pb::Vector) -> Value {
    use pb::vector::Vector as V;
    #[allow(deprecated)] // clients still send the deprecated `data`/`indices` form
    match &v.vector {
        Some(V::Dense(d)) => dense(&d.data),
        Some(V::Sparse(s)) => sparse(&s.values, &s.indices),
        Some(V::MultiDense(m)) => Value::Array(m.vectors.iter().map(|d| dense(&d.data)).collect()),
        Some(V::Document(_) | V::Image(_) | V::Object(_)) => json!({"inference": set()}),
        None => match &v.indices {
            Some(indices) => sparse(&v.data, &indices.data),
            None => dense(&v.data),
        },
    }
}

/// A point's vectors: the unnamed one, or named ones.
pub fn vectors(v: &pb::Vectors) -> Value {
    match &v.vectors_options {
        Some(pb::vectors::VectorsOptions::Vector(v)) => vector(v),
        Some(pb::vectors::VectorsOptions::Vectors(named)) => Value::Object(
            named
                .vectors
                .iter()
                .map(|(k, v)| (k.clone(), vector(v)))
                .collect(),
        ),
        None => Value::Null,
    }
}

pub fn point(p: &pb::PointStruct) -> Value {
    Body::new()
        .opt("id", p.id.as_ref(), point_id)
        .opt("vector", p.vectors.as_ref(), vectors)
        .put("payload", payload(&p.payload))
        .value()
}

/// A query vector or point: what `nearest` (and the other inputs) name.
pub fn vector_input(v: &pb::VectorInput) -> Value {
    use pb::vector_input::Variant;
    match &v.variant {
        Some(Variant::Id(id)) => point_id(id),
        Some(Variant::Dense(d)) => dense(&d.data),
        Some(Variant::Sparse(s)) => sparse(&s.values, &s.indices),
        Some(Variant::MultiDense(m)) => {
            Value::Array(m.vectors.iter().map(|d| dense(&d.data)).collect())
        }
        Some(Variant::Document(_) | Variant::Image(_) | Variant::Object(_)) => {
            json!({"inference": set()})
        }
        None => Value::Null,
    }
}

/// A universal query's `query`; the kinds tessera does not run keep their REST name, so the
/// parser refuses them by it.
pub fn query(q: &pb::Query) -> Value {
    use pb::query::Variant;
    let kind = match &q.variant {
        Some(Variant::Nearest(v)) => return json!({"nearest": vector_input(v)}),
        Some(Variant::Recommend(r)) => {
            return json!({"recommend": recommend_input(r)});
        }
        Some(Variant::Discover(d)) => {
            return json!({"discover": Body::new()
                .opt("target", d.target.as_ref(), vector_input)
                .put("context", d.context.as_ref().map_or(json!([]), context))
                .value()});
        }
        Some(Variant::Context(c)) => return json!({ "context": context(c) }),
        Some(Variant::OrderBy(o)) => return json!({"order_by": super::groups::order_by(o)}),
        Some(Variant::Fusion(f)) => {
            let f = match pb::Fusion::try_from(*f) {
                Ok(pb::Fusion::Rrf) => json!("rrf"),
                Ok(pb::Fusion::Dbsf) => json!("dbsf"),
                Err(_) => json!(f),
            };
            return json!({ "fusion": f });
        }
        Some(Variant::Sample(s)) => {
            let s = match pb::Sample::try_from(*s) {
                Ok(pb::Sample::Random) => json!("random"),
                Err(_) => json!(s),
            };
            return json!({ "sample": s });
        }
        Some(Variant::Rrf(r)) => {
            let weights = (!r.weights.is_empty()).then_some(&r.weights);
            return json!({"rrf": Body::new()
                .opt("k", r.k, |k| json!(k))
                .opt("weights", weights, |w| json!(w))
                .value()});
        }
        Some(Variant::Formula(_)) => "formula",
        Some(Variant::NearestWithMmr(_)) => "nearest_with_mmr",
        Some(Variant::RelevanceFeedback(_)) => "relevance_feedback",
        Some(Variant::Text(_)) => "text",
        None => return Value::Null,
    };
    json!({ kind: set() })
}

/// One prefetch of a universal query, its own prefetches within.
pub fn prefetch(p: &pb::PrefetchQuery) -> Value {
    let inner = (!p.prefetch.is_empty()).then_some(&p.prefetch);
    Body::new()
        .opt("prefetch", inner, |l| {
            Value::Array(l.iter().map(prefetch).collect())
        })
        .opt("query", p.query.as_ref(), query)
        .opt("using", p.using.as_ref(), |v| json!(v))
        .opt("filter", p.filter.as_ref(), filter)
        .opt("params", p.params.as_ref(), search_params)
        .opt("score_threshold", p.score_threshold, |v| json!(v))
        .opt("limit", p.limit, |v| json!(v))
        .opt("lookup_from", p.lookup_from.as_ref(), lookup)
        .value()
}

/// Where examples given by id are read: another collection.
pub fn lookup(l: &pb::LookupLocation) -> Value {
    Body::new()
        .put("collection", l.collection_name.clone())
        .opt("vector", l.vector_name.as_ref(), |v| json!(v))
        .opt("shard_key", l.shard_key_selector.as_ref(), key_selector)
        .value()
}

/// A context's pairs.
fn context(c: &pb::ContextInput) -> Value {
    let side = |v: Option<&pb::VectorInput>| v.map_or(Value::Null, vector_input);
    Value::Array(
        c.pairs
            .iter()
            .map(|p| json!({"positive": side(p.positive.as_ref()), "negative": side(p.negative.as_ref())}))
            .collect(),
    )
}

/// A recommend query's examples and strategy.
fn recommend_input(r: &pb::RecommendInput) -> Value {
    Body::new()
        .put(
            "positive",
            Value::Array(r.positive.iter().map(vector_input).collect()),
        )
        .put(
            "negative",
            Value::Array(r.negative.iter().map(vector_input).collect()),
        )
        .opt("strategy", r.strategy, strategy)
        .value()
}

/// A recommend strategy by its REST name (an unknown number stays a number, and is refused).
pub fn strategy(s: i32) -> Value {
    match pb::RecommendStrategy::try_from(s) {
        Ok(pb::RecommendStrategy::AverageVector) => json!("average_vector"),
        Ok(pb::RecommendStrategy::BestScore) => json!("best_score"),
        Ok(pb::RecommendStrategy::SumScores) => json!("sum_scores"),
        Err(_) => json!(s),
    }
}

pub fn search_params(p: &pb::SearchParams) -> Value {
    Body::new()
        .opt("hnsw_ef", p.hnsw_ef, |v| json!(v))
        .opt("exact", p.exact, |v| json!(v))
        .opt("quantization", p.quantization.as_ref(), |q| {
            Body::new()
                .opt("ignore", q.ignore, |v| json!(v))
                .opt("rescore", q.rescore, |v| json!(v))
                .opt("oversampling", q.oversampling, |v| json!(v))
                .value()
        })
        .opt("indexed_only", p.indexed_only, |v| json!(v))
        .opt("acorn", p.acorn.as_ref(), |a| {
            Body::new()
                .opt("enable", a.enable, |v| json!(v))
                .opt("max_selectivity", a.max_selectivity, |v| json!(v))
                .value()
        })
        .refused("idf", p.idf.is_some())
        .value()
}

pub fn read_consistency(r: &pb::ReadConsistency) -> Option<String> {
    match r.value? {
        pb::read_consistency::Value::Type(t) => match pb::ReadConsistencyType::try_from(t).ok()? {
            pb::ReadConsistencyType::All => Some("all".into()),
            pb::ReadConsistencyType::Majority => Some("majority".into()),
            pb::ReadConsistencyType::Quorum => Some("quorum".into()),
        },
        pb::read_consistency::Value::Factor(n) => Some(n.to_string()),
    }
}

pub fn filter(f: &pb::Filter) -> Value {
    let list = |cs: &[pb::Condition]| Value::Array(cs.iter().map(condition).collect());
    let mut b = Body::new();
    if !f.must.is_empty() {
        b = b.put("must", list(&f.must));
    }
    if !f.should.is_empty() {
        b = b.put("should", list(&f.should));
    }
    if !f.must_not.is_empty() {
        b = b.put("must_not", list(&f.must_not));
    }
    b.opt(
        "min_should",
        f.min_should.as_ref(),
        |m| json!({"conditions": list(&m.conditions), "min_count": m.min_count}),
    )
    .value()
}

fn condition(c: &pb::Condition) -> Value {
    use pb::condition::ConditionOneOf as C;
    match &c.condition_one_of {
        Some(C::Field(f)) => field_condition(f),
        Some(C::IsEmpty(e)) => json!({"is_empty": {"key": e.key}}),
        Some(C::IsNull(n)) => json!({"is_null": {"key": n.key}}),
        Some(C::HasId(h)) => json!({"has_id": point_ids(&h.has_id)}),
        Some(C::Filter(f)) => filter(f),
        Some(C::Nested(n)) => json!({"nested": {
            "key": n.key,
            "filter": n.filter.as_ref().map_or(json!({}), filter),
        }}),
        Some(C::HasVector(v)) => json!({"has_vector": v.has_vector}),
        Some(C::Slice(_)) => json!({"slice": set()}),
        None => json!({}),
    }
}

fn range(lt: Option<f64>, gt: Option<f64>, gte: Option<f64>, lte: Option<f64>) -> Value {
    Body::new()
        .opt("lt", lt, |v| json!(v))
        .opt("gt", gt, |v| json!(v))
        .opt("gte", gte, |v| json!(v))
        .opt("lte", lte, |v| json!(v))
        .value()
}

fn geo_point(p: &pb::GeoPoint) -> Value {
    json!({"lon": p.lon, "lat": p.lat})
}

fn field_condition(f: &pb::FieldCondition) -> Value {
    let stamp = |t: &Option<_>| {
        t.as_ref()
            .map(|t: &prost_types::Timestamp| json!(t.to_string()))
    };
    Body::new()
        .put("key", f.key.clone())
        .opt("match", f.r#match.as_ref(), match_value)
        .opt("range", f.range.as_ref(), |r| range(r.lt, r.gt, r.gte, r.lte))
        .opt("range", f.datetime_range.as_ref(), |r| {
            Body::new()
                .opt("lt", stamp(&r.lt), |v| v)
                .opt("gt", stamp(&r.gt), |v| v)
                .opt("gte", stamp(&r.gte), |v| v)
                .opt("lte", stamp(&r.lte), |v| v)
                .value()
        })
        .opt("geo_bounding_box", f.geo_bounding_box.as_ref(), |g| {
            Body::new()
                .opt("top_left", g.top_left.as_ref(), geo_point)
                .opt("bottom_right", g.bottom_right.as_ref(), geo_point)
                .value()
        })
        .opt("geo_radius", f.geo_radius.as_ref(), |g| {
            Body::new()
                .opt("center", g.center.as_ref(), geo_point)
                .put("radius", json!(g.radius))
                .value()
        })
        .opt("geo_polygon", f.geo_polygon.as_ref(), |g| {
            let line = |l: &pb::GeoLineString| {
                json!({"points": l.points.iter().map(geo_point).collect::<Vec<_>>()})
            };
            Body::new()
                .opt("exterior", g.exterior.as_ref(), line)
                .put(
                    "interiors",
                    Value::Array(g.interiors.iter().map(line).collect()),
                )
                .value()
        })
        .opt("values_count", f.values_count.as_ref(), |v| {
            Body::new()
                .opt("lt", v.lt, |v| json!(v))
                .opt("gt", v.gt, |v| json!(v))
                .opt("gte", v.gte, |v| json!(v))
                .opt("lte", v.lte, |v| json!(v))
                .value()
        })
        .opt("is_empty", f.is_empty, |v| json!(v))
        .opt("is_null", f.is_null, |v| json!(v))
        .value()
}

fn match_value(m: &pb::Match) -> Value {
    use pb::r#match::MatchValue as M;
    match &m.match_value {
        Some(M::Keyword(s)) => json!({"value": s}),
        Some(M::Integer(i)) => json!({"value": i}),
        Some(M::Boolean(b)) => json!({"value": b}),
        Some(M::Text(s)) => json!({"text": s}),
        Some(M::Keywords(k)) => json!({"any": k.strings}),
        Some(M::Integers(i)) => json!({"any": i.integers}),
        Some(M::ExceptIntegers(i)) => json!({"except": i.integers}),
        Some(M::ExceptKeywords(k)) => json!({"except": k.strings}),
        Some(M::Phrase(s)) => json!({"phrase": s}),
        Some(M::TextAny(s)) => json!({"text_any": s}),
        Some(M::Prefix(s)) => json!({"prefix": s}),
        Some(M::Substring(s)) => json!({"substring": s}),
        None => json!({}),
    }
}

/// A points selector: ids under `points`, or a `filter`.
pub fn points_selector(b: Body, s: Option<&pb::PointsSelector>) -> Body {
    use pb::points_selector::PointsSelectorOneOf as S;
    match s.and_then(|s| s.points_selector_one_of.as_ref()) {
        Some(S::Points(list)) => b.put("points", point_ids(&list.ids)),
        Some(S::Filter(f)) => b.put("filter", filter(f)),
        None => b,
    }
}

/// What every write request may carry besides its points.
pub fn write_common(
    b: Body,
    key: Option<&pb::ShardKeySelector>,
    ordering: Option<&pb::WriteOrdering>,
) -> Body {
    // every write goes through its shard's primary, which is the strongest ordering Qdrant
    // offers: weak, medium and strong are all honoured
    let _ = ordering;
    b.opt("shard_key", key, key_selector)
}

/// A payload index's schema as REST's `field_schema`: the type name, or its params object.
pub fn field_schema(
    field_type: Option<i32>,
    params: Option<&pb::PayloadIndexParams>,
) -> Option<Value> {
    use pb::payload_index_params::IndexParams as P;
    let name = |t: pb::FieldType| match t {
        pb::FieldType::Keyword => "keyword",
        pb::FieldType::Integer => "integer",
        pb::FieldType::Float => "float",
        pb::FieldType::Geo => "geo",
        pb::FieldType::Text => "text",
        pb::FieldType::Bool => "bool",
        pb::FieldType::Datetime => "datetime",
        pb::FieldType::Uuid => "uuid",
    };
    let type_name = field_type
        .map(|t| pb::FieldType::try_from(t).map_or("unknown", name))
        .map(str::to_string);
    let Some(params) = params.and_then(|p| p.index_params.as_ref()) else {
        return type_name.map(Value::String);
    };
    #[allow(deprecated)] // `on_disk` is still sent by clients
    let object = match params {
        P::KeywordIndexParams(k) => Body::new()
            .put("type", "keyword")
            .opt("is_tenant", k.is_tenant, |v| json!(v))
            .opt("on_disk", k.on_disk, |v| json!(v))
            .refused("enable_hnsw", k.enable_hnsw.is_some())
            .refused("prefix", k.prefix.is_some())
            .refused("memory", k.memory.is_some())
            .refused("nested", k.nested.is_some()),
        P::IntegerIndexParams(i) => flags(
            Body::new().put("type", "integer"),
            &[
                ("lookup", i.lookup),
                ("range", i.range),
                ("is_principal", i.is_principal),
                ("on_disk", i.on_disk),
            ],
        )
        .refused("enable_hnsw", i.enable_hnsw.is_some()),
        P::FloatIndexParams(f) => flags(
            Body::new().put("type", "float"),
            &[
                ("on_disk", f.on_disk),
                ("is_principal", f.is_principal),
                ("enable_hnsw", f.enable_hnsw),
            ],
        ),
        P::DatetimeIndexParams(d) => flags(
            Body::new().put("type", "datetime"),
            &[
                ("on_disk", d.on_disk),
                ("is_principal", d.is_principal),
                ("enable_hnsw", d.enable_hnsw),
            ],
        ),
        P::BoolIndexParams(b) => flags(
            Body::new().put("type", "bool"),
            &[("on_disk", b.on_disk), ("enable_hnsw", b.enable_hnsw)],
        )
        .refused("memory", b.memory.is_some()),
        P::GeoIndexParams(g) => flags(
            Body::new().put("type", "geo"),
            &[("on_disk", g.on_disk), ("enable_hnsw", g.enable_hnsw)],
        )
        .refused("memory", g.memory.is_some()),
        P::TextIndexParams(_) => Body::new().put("type", "text").put("tokenizer", set()),
        P::UuidIndexParams(u) => flags(
            Body::new().put("type", "uuid"),
            &[
                ("is_tenant", u.is_tenant),
                ("on_disk", u.on_disk),
                ("enable_hnsw", u.enable_hnsw),
            ],
        ),
    };
    Some(object.value())
}

/// Sets each flag that is given.
fn flags(mut b: Body, given: &[(&str, Option<bool>)]) -> Body {
    for (k, v) in given {
        if let Some(v) = v {
            b = b.put(k, *v);
        }
    }
    b
}
