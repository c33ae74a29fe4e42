//! Point bodies: upsert (a list of points or a column batch), the points selector of deletes and
//! payload writes, retrieve, scroll and count.

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::actor::{NewPoint, Selector};
use tessera_shard::filter::Filter;
use tessera_shard::point::PointId;
use tessera_shard::store::PayloadSelector;

use super::{
    IdJson, PointRecord, bad, check_dim, field, filter, key_selector, limit, obj, payload,
    point_id, vector, with_payload, with_vector,
};
use crate::router::{KeySelector, PointsWrite};

/// `PUT /collections/{c}/points`, checked against the collection's dimension and the node's
/// batch limit.
pub struct Upsert {
    pub shard_key: KeySelector,
    pub points: Vec<NewPoint>,
    /// Qdrant's `update_filter`: an existing point is overwritten only if it matches; new
    /// points are inserted whatever it says.
    pub update_filter: Option<tessera_shard::filter::Filter>,
}

impl Upsert {
    pub fn parse(o: &Map<String, Value>, dim: usize, max_batch_points: usize) -> Result<Upsert> {
        super::check_fields(
            o,
            "",
            &["points", "batch", "shard_key", "update_filter"],
            &[],
        )?;
        let shard_key = key_selector(o)?;
        let update_filter = super::filter_at(o, "update_filter")?;
        let mut points = Vec::new();
        if let Some(list) = field(o, "points") {
            let list = list
                .as_array()
                .ok_or_else(|| bad("Format error in JSON body: points must be a list"))?;
            for p in list {
                let po = obj(p, "point")?;
                super::check_fields(po, "points[].", &["id", "vector", "payload"], &[])?;
                let id = point_id(
                    po.get("id")
                        .ok_or_else(|| bad("Format error in JSON body: point id is required"))?,
                )?;
                let vector =
                    vector(po.get("vector").ok_or_else(|| {
                        bad("Format error in JSON body: point vector is required")
                    })?)?;
                check_dim(&vector, dim)?;
                points.push(NewPoint {
                    id,
                    vector,
                    payload: payload(po.get("payload"))?,
                });
            }
        } else if let Some(b) = field(o, "batch") {
            let bo = obj(b, "batch")?;
            super::check_fields(bo, "batch.", &["ids", "vectors", "payloads"], &[])?;
            let ids = bo
                .get("ids")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("Format error in JSON body: batch.ids must be a list"))?;
            let vectors = bo
                .get("vectors")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("Format error in JSON body: batch.vectors must be a list"))?;
            let payloads = field(bo, "payloads")
                .map(|p| {
                    p.as_array().ok_or_else(|| {
                        bad("Format error in JSON body: batch.payloads must be a list")
                    })
                })
                .transpose()?;
            if vectors.len() != ids.len() || payloads.is_some_and(|p| p.len() != ids.len()) {
                return Err(bad(
                    "Wrong input: batch ids, vectors and payloads must have the same length",
                ));
            }
            for (i, (id, v)) in ids.iter().zip(vectors).enumerate() {
                let vector = vector(v)?;
                check_dim(&vector, dim)?;
                points.push(NewPoint {
                    id: point_id(id)?,
                    vector,
                    payload: payload(payloads.and_then(|p| p.get(i)))?,
                });
            }
        } else {
            return Err(bad(
                "Format error in JSON body: points or batch is required",
            ));
        }
        if points.len() > max_batch_points {
            return Err(bad(format!(
                "Bad request: a batch may carry at most {max_batch_points} points, got {}",
                points.len()
            )));
        }
        Ok(Upsert {
            shard_key,
            points,
            update_filter,
        })
    }
}

/// The writes that select points by ids or filter.
#[derive(Debug, Clone, Copy)]
pub enum SelectedWriteKind {
    Delete,
    SetPayload,
    OverwritePayload,
    DeletePayload,
    ClearPayload,
}

/// A points-selector write body: delete, set/overwrite/delete/clear payload.
pub struct SelectedWrite {
    pub shard_key: KeySelector,
    pub write: PointsWrite,
    pub points: Selector,
}

impl SelectedWrite {
    pub fn parse(o: &Map<String, Value>, kind: SelectedWriteKind) -> Result<SelectedWrite> {
        let fields: &[&str] = match kind {
            SelectedWriteKind::Delete | SelectedWriteKind::ClearPayload => {
                &["points", "filter", "shard_key"]
            }
            SelectedWriteKind::SetPayload | SelectedWriteKind::OverwritePayload => {
                &["payload", "points", "filter", "shard_key", "key"]
            }
            SelectedWriteKind::DeletePayload => &["keys", "points", "filter", "shard_key"],
        };
        super::check_fields(o, "", fields, &[])?;
        if matches!(kind, SelectedWriteKind::OverwritePayload) && field(o, "key").is_some() {
            return Err(bad(
                "Bad request: tessera does not support key with an overwrite; overwrite the whole payload or set a key",
            ));
        }
        let shard_key = key_selector(o)?;
        let required_payload = || -> Result<_> {
            payload(Some(field(o, "payload").ok_or_else(|| {
                bad("Format error in JSON body: payload is required")
            })?))
        };
        let write = match kind {
            SelectedWriteKind::Delete => PointsWrite::Delete,
            SelectedWriteKind::ClearPayload => PointsWrite::ClearPayload,
            SelectedWriteKind::SetPayload => {
                let key = field(o, "key")
                    .map(|k| {
                        k.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad("Format error in JSON body: key must be a string"))
                    })
                    .transpose()?;
                PointsWrite::SetPayload {
                    payload: required_payload()?,
                    key,
                }
            }
            SelectedWriteKind::OverwritePayload => {
                PointsWrite::OverwritePayload(required_payload()?)
            }
            SelectedWriteKind::DeletePayload => {
                let not_strings =
                    || bad("Format error in JSON body: keys must be a list of strings");
                let keys: Vec<String> = field(o, "keys")
                    .and_then(Value::as_array)
                    .ok_or_else(not_strings)?
                    .iter()
                    .map(|k| k.as_str().map(str::to_string).ok_or_else(not_strings))
                    .collect::<Result<_>>()?;
                PointsWrite::DeletePayload(keys)
            }
        };
        Ok(SelectedWrite {
            shard_key,
            write,
            points: points_selector(o)?,
        })
    }
}

/// `points` (ids) or `filter` of a points selector body.
fn points_selector(o: &Map<String, Value>) -> Result<Selector> {
    if let Some(p) = field(o, "points") {
        let ids = p
            .as_array()
            .ok_or_else(|| bad("Format error in JSON body: points must be a list of ids"))?
            .iter()
            .map(point_id)
            .collect::<Result<Vec<_>>>()?;
        return Ok(Selector::Ids(ids));
    }
    if let Some(f) = filter(o)? {
        return Ok(Selector::Filter(f));
    }
    Err(bad(
        "Format error in JSON body: points or filter is required",
    ))
}

/// `POST /collections/{c}/points`: points by id.
pub struct Retrieve {
    pub shard_key: KeySelector,
    pub ids: Vec<PointId>,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
}

impl Retrieve {
    pub fn parse(o: &Map<String, Value>, max_ids: usize) -> Result<Retrieve> {
        super::check_fields(
            o,
            "",
            &["ids", "with_payload", "with_vector", "shard_key"],
            &[],
        )?;
        let shard_key = key_selector(o)?;
        let ids = field(o, "ids")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("Format error in JSON body: ids must be a list"))?
            .iter()
            .map(point_id)
            .collect::<Result<Vec<_>>>()?;
        if ids.len() > max_ids {
            return Err(bad(format!(
                "Bad request: at most {max_ids} ids per request"
            )));
        }
        Ok(Retrieve {
            shard_key,
            ids,
            with_payload: with_payload(field(o, "with_payload"), true)?,
            with_vector: with_vector(field(o, "with_vector"))?,
        })
    }
}

/// The id of `GET /collections/{c}/points/{id}`: a number if it reads as one, else a string.
pub fn path_point_id(id: &str) -> PointId {
    match id.parse::<u64>() {
        Ok(n) => PointId::Num(n),
        Err(_) => PointId::from_string(id),
    }
}

/// `POST /collections/{c}/points/scroll`.
pub struct Scroll {
    pub shard_key: KeySelector,
    pub offset: Option<PointId>,
    pub limit: usize,
    pub filter: Option<Filter>,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
    pub order_by: Option<OrderBy>,
}

/// A scroll's `order_by`: the points in the order of a numeric payload field's values.
#[derive(Clone)]
pub struct OrderBy {
    pub key: String,
    pub path: tessera_shard::filter::JsonPath,
    pub descending: bool,
    /// The first value of the page (inclusive).
    pub start_from: Option<f64>,
}

impl OrderBy {
    /// `"field"`, or `{"key", "direction": "asc"|"desc", "start_from": number}`.
    pub fn parse(v: &Value) -> Result<OrderBy> {
        let (key, direction, start_from) = match v {
            Value::String(k) => (k.clone(), None, None),
            Value::Object(m) => {
                super::check_fields(m, "order_by.", &["key", "direction", "start_from"], &[])?;
                let key = field(m, "key").and_then(Value::as_str).ok_or_else(|| {
                    bad("Format error in JSON body: order_by.key must be a string")
                })?;
                (
                    key.to_owned(),
                    field(m, "direction"),
                    field(m, "start_from"),
                )
            }
            _ => {
                return Err(bad(
                    "Format error in JSON body: order_by must be a key or an object",
                ));
            }
        };
        let path = tessera_shard::filter::JsonPath::parse(&key)
            .map_err(|e| bad(format!("Format error in JSON body: order_by.key: {e}")))?;
        let descending = match direction.and_then(Value::as_str) {
            None if direction.is_none() => false,
            Some("asc") => false,
            Some("desc") => true,
            _ => {
                return Err(bad(
                    "Format error in JSON body: order_by.direction must be asc or desc",
                ));
            }
        };
        let start_from = match start_from {
            None => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(bad(format!(
                    "Bad request: tessera does not support order_by.start_from {other}; give a number"
                )));
            }
        };
        Ok(OrderBy {
            key,
            path,
            descending,
            start_from,
        })
    }
}

impl Scroll {
    pub fn parse(o: &Map<String, Value>, max_limit: usize) -> Result<Scroll> {
        let shard_key = key_selector(o)?;
        super::check_fields(
            o,
            "",
            &[
                "shard_key",
                "offset",
                "limit",
                "filter",
                "with_payload",
                "with_vector",
                "order_by",
            ],
            &[],
        )?;
        let limit = limit(o, 10, max_limit)?;
        let offset = field(o, "offset").map(point_id).transpose()?;
        let order_by = field(o, "order_by").map(OrderBy::parse).transpose()?;
        if order_by.is_some() && offset.is_some() {
            return Err(bad(
                "Bad request: an offset cannot be used with order_by; page on with order_by.start_from",
            ));
        }
        Ok(Scroll {
            shard_key,
            offset,
            limit,
            filter: filter(o)?,
            with_payload: with_payload(field(o, "with_payload"), true)?,
            with_vector: with_vector(field(o, "with_vector"))?,
            order_by,
        })
    }
}

/// A page of points and where the next one starts.
#[derive(Serialize)]
pub struct ScrollPage {
    pub next_page_offset: Option<IdJson>,
    pub points: Vec<PointRecord>,
}

/// `POST /collections/{c}/points/count`.
pub struct Count {
    pub shard_key: KeySelector,
    pub filter: Option<Filter>,
}

impl Count {
    pub fn parse(o: &Map<String, Value>) -> Result<Count> {
        // counts are always exact: `exact: false` gets an exact count too
        super::check_fields(o, "", &["shard_key", "filter", "exact"], &[])?;
        Ok(Count {
            shard_key: key_selector(o)?,
            filter: filter(o)?,
        })
    }
}

#[derive(Serialize)]
pub struct CountResult {
    pub count: usize,
}
