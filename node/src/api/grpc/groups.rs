//! The REST bodies of the upsert, selected-write, query, recommend, discover, batch, groups, facet and matrix requests of
//! `qdrant.Points`, and the groups and facet counts they answer as Qdrant's messages.

use qdrant_client::qdrant as pb;
use serde_json::{Map, Value, json};

use super::to_json::{self as j, Body};
use super::to_proto;
use crate::api::json::facet::FacetHit;
use crate::api::json::groups::GroupsResult;

/// An upsert's body.
pub fn upsert_body(r: &pb::UpsertPoints) -> Map<String, Value> {
    let b = Body::new().put(
        "points",
        Value::Array(r.points.iter().map(j::point).collect()),
    );
    j::write_common(b, r.shard_key_selector.as_ref(), r.ordering.as_ref())
        .opt("update_filter", r.update_filter.as_ref(), j::filter)
        .refused(
            "update_mode",
            r.update_mode
                .is_some_and(|m| m != pb::UpdateMode::Upsert as i32),
        )
        .map()
}

/// A selected write's body: the points (ids or a filter) and the write's own fields.
pub fn selected(
    b: Body,
    s: Option<&pb::PointsSelector>,
    key: Option<&pb::ShardKeySelector>,
    ordering: Option<&pb::WriteOrdering>,
) -> Map<String, Value> {
    j::write_common(j::points_selector(b, s), key, ordering).map()
}

/// A universal query's body (`/points/query`).
pub fn query_body(r: &pb::QueryPoints) -> Map<String, Value> {
    let prefetch = (!r.prefetch.is_empty()).then_some(&r.prefetch);
    Body::new()
        .opt("prefetch", prefetch, |l| {
            Value::Array(l.iter().map(j::prefetch).collect())
        })
        .opt("query", r.query.as_ref(), j::query)
        .opt("using", r.using.as_ref(), |v| json!(v))
        .opt("filter", r.filter.as_ref(), j::filter)
        .opt("params", r.params.as_ref(), j::search_params)
        .opt("score_threshold", r.score_threshold, |v| json!(v))
        .opt("limit", r.limit, |v| json!(v))
        .opt("offset", r.offset, |v| json!(v))
        .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
        .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
        .opt("lookup_from", r.lookup_from.as_ref(), j::lookup)
        .map()
}

/// A classic discovery's body (`/points/discover`).
pub fn discover_body(r: &pb::DiscoverPoints) -> Map<String, Value> {
    let example = |e: Option<&pb::VectorExample>| match e.and_then(|e| e.example.as_ref()) {
        Some(pb::vector_example::Example::Id(id)) => j::point_id(id),
        Some(pb::vector_example::Example::Vector(v)) => j::vector(v),
        None => Value::Null,
    };
    let target = r.target.as_ref().and_then(|t| {
        t.target
            .as_ref()
            .map(|pb::target_vector::Target::Single(e)| example(Some(e)))
    });
    let context: Vec<Value> = r
        .context
        .iter()
        .map(|p| json!({"positive": example(p.positive.as_ref()), "negative": example(p.negative.as_ref())}))
        .collect();
    Body::new()
        .opt("target", target, |t| t)
        .put("context", context)
        .opt("filter", r.filter.as_ref(), j::filter)
        .put("limit", r.limit)
        .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
        .opt("params", r.params.as_ref(), j::search_params)
        .opt("offset", r.offset, |v| json!(v))
        .opt("using", r.using.as_ref(), |v| json!(v))
        .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
        .opt("lookup_from", r.lookup_from.as_ref(), j::lookup)
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
        .map()
}

/// A classic search's body (`/points/search`).
pub fn search_body(r: &pb::SearchPoints) -> Map<String, Value> {
    let vector = named_vector(r.vector_name.as_ref(), &r.vector);
    Body::new()
        .put("vector", vector)
        .opt("filter", r.filter.as_ref(), j::filter)
        .put("limit", r.limit)
        .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
        .opt("params", r.params.as_ref(), j::search_params)
        .opt("score_threshold", r.score_threshold, |v| json!(v))
        .opt("offset", r.offset, |v| json!(v))
        .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
        .refused("sparse_indices", r.sparse_indices.is_some())
        .map()
}

/// A classic search's `vector`: bare, or `{name, vector}` when a vector name is given (which
/// the parser refuses by that name: a collection has one unnamed vector).
fn named_vector(name: Option<&String>, vector: &[f32]) -> Value {
    match name {
        Some(name) if !name.is_empty() => json!({"name": name, "vector": vector}),
        _ => json!(vector),
    }
}

/// The examples of a recommendation: point ids, then vectors.
fn examples(ids: &[pb::PointId], vectors: &[pb::Vector]) -> Value {
    Value::Array(
        ids.iter()
            .map(j::point_id)
            .chain(vectors.iter().map(j::vector))
            .collect(),
    )
}

/// A classic recommendation's body (`/points/recommend`).
pub fn recommend_body(r: &pb::RecommendPoints) -> Map<String, Value> {
    Body::new()
        .put("positive", examples(&r.positive, &r.positive_vectors))
        .put("negative", examples(&r.negative, &r.negative_vectors))
        .opt("strategy", r.strategy, j::strategy)
        .opt("filter", r.filter.as_ref(), j::filter)
        .put("limit", r.limit)
        .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
        .opt("params", r.params.as_ref(), j::search_params)
        .opt("score_threshold", r.score_threshold, |v| json!(v))
        .opt("offset", r.offset, |v| json!(v))
        .opt("using", r.using.as_ref(), |v| json!(v))
        .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
        .opt("lookup_from", r.lookup_from.as_ref(), j::lookup)
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
        .map()
}

/// The grouping fields of a groups request.
fn grouping(
    b: Body,
    group_by: &str,
    group_size: Option<u64>,
    limit: Option<u64>,
    lookup: Option<&pb::WithLookup>,
) -> Body {
    b.put("group_by", group_by)
        .opt("group_size", group_size, |v| json!(v))
        .opt("limit", limit, |v| json!(v))
        .opt("with_lookup", lookup, |l| {
            Body::new()
                .put("collection", l.collection.clone())
                .opt("with_payload", l.with_payload.as_ref(), j::with_payload)
                .opt("with_vectors", l.with_vectors.as_ref(), j::with_vectors)
                .value()
        })
}

/// `/points/search/groups`.
pub fn search_groups_body(r: &pb::SearchPointGroups) -> Map<String, Value> {
    let vector = named_vector(r.vector_name.as_ref(), &r.vector);
    let b = Body::new()
        .put("vector", vector)
        .opt("filter", r.filter.as_ref(), j::filter)
        .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
        .opt("params", r.params.as_ref(), j::search_params)
        .opt("score_threshold", r.score_threshold, |v| json!(v))
        .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
        .refused("sparse_indices", r.sparse_indices.is_some());
    grouping(
        b,
        &r.group_by,
        Some(u64::from(r.group_size)),
        Some(u64::from(r.limit)),
        r.with_lookup.as_ref(),
    )
    .map()
}

/// `/points/recommend/groups`.
pub fn recommend_groups_body(r: &pb::RecommendPointGroups) -> Map<String, Value> {
    let b = Body::new()
        .put("positive", examples(&r.positive, &r.positive_vectors))
        .put("negative", examples(&r.negative, &r.negative_vectors))
        .opt("strategy", r.strategy, j::strategy)
        .opt("filter", r.filter.as_ref(), j::filter)
        .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
        .opt("params", r.params.as_ref(), j::search_params)
        .opt("score_threshold", r.score_threshold, |v| json!(v))
        .opt("using", r.using.as_ref(), |v| json!(v))
        .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
        .refused("lookup_from", r.lookup_from.is_some())
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector);
    grouping(
        b,
        &r.group_by,
        Some(u64::from(r.group_size)),
        Some(u64::from(r.limit)),
        r.with_lookup.as_ref(),
    )
    .map()
}

/// `/points/query/groups`.
pub fn query_groups_body(r: &pb::QueryPointGroups) -> Map<String, Value> {
    let b = Body::new()
        .refused("prefetch", !r.prefetch.is_empty())
        .opt("query", r.query.as_ref(), j::query)
        .opt("using", r.using.as_ref(), |v| json!(v))
        .opt("filter", r.filter.as_ref(), j::filter)
        .opt("params", r.params.as_ref(), j::search_params)
        .opt("score_threshold", r.score_threshold, |v| json!(v))
        .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
        .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
        .refused("lookup_from", r.lookup_from.is_some());
    grouping(
        b,
        &r.group_by,
        r.group_size,
        r.limit,
        r.with_lookup.as_ref(),
    )
    .map()
}

/// A group's id as Qdrant's message holds it.
fn group_id(v: Value) -> pb::GroupId {
    use pb::group_id::Kind;
    let kind = match v {
        Value::String(s) => Some(Kind::StringValue(s)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Some(Kind::IntegerValue(i)),
            (None, Some(u)) => Some(Kind::UnsignedValue(u)),
            _ => None,
        },
        _ => None,
    };
    pb::GroupId { kind }
}

/// The groups as Qdrant's message.
pub fn groups(g: GroupsResult) -> pb::GroupsResult {
    pb::GroupsResult {
        groups: g
            .groups
            .into_iter()
            .map(|g| pb::PointGroup {
                id: Some(group_id(g.id)),
                hits: g.hits.into_iter().map(to_proto::scored).collect(),
                lookup: g.lookup.map(to_proto::retrieved),
            })
            .collect(),
    }
}

/// A distance-matrix request's REST body.
pub fn matrix_body(r: &pb::SearchMatrixPoints) -> Map<String, Value> {
    Body::new()
        .opt("filter", r.filter.as_ref(), j::filter)
        .opt("sample", r.sample, |v| json!(v))
        .opt("limit", r.limit, |v| json!(v))
        .opt("using", r.using.as_ref(), |v| json!(v))
        .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
        .map()
}

pub fn facet_hit(h: FacetHit) -> pb::FacetHit {
    use pb::facet_value::Variant;
    let variant = match h.value {
        Value::String(s) => Some(Variant::StringValue(s)),
        Value::Bool(b) => Some(Variant::BoolValue(b)),
        Value::Number(n) => n.as_i64().map(Variant::IntegerValue),
        _ => None,
    };
    pb::FacetHit {
        value: Some(pb::FacetValue { variant }),
        count: h.count,
    }
}

/// A scroll's `order_by`; a datetime `start_from` keeps a value REST refuses by name.
pub fn order_by(o: &pb::OrderBy) -> Value {
    use pb::start_from::Value as S;
    let direction = match pb::Direction::try_from(o.direction.unwrap_or(0)) {
        Ok(pb::Direction::Desc) => "desc",
        _ => "asc",
    };
    Body::new()
        .put("key", o.key.clone())
        .put("direction", direction)
        .opt(
            "start_from",
            o.start_from.as_ref().and_then(|s| s.value.as_ref()),
            |v| match v {
                S::Float(f) => json!(f),
                S::Integer(i) => json!(i),
                S::Timestamp(t) => json!(format!("{}s", t.seconds)),
                S::Datetime(d) => json!(d),
            },
        )
        .value()
}
