//! Conversions between Qdrant's JSON shapes and our internal types. Only the HTTP layer knows JSON
//! shapes; everything past this module takes typed values.

use serde_json::{Map, Value, json};
use tessera_cluster::meta::{
    CollectionMeta, Distance, PayloadIndex, PayloadSchemaType, ShardKey, ShardingMethod,
};
use tessera_cluster::{Error, Result};
use tessera_shard::filter::{Filter, parse_filter};
use tessera_shard::point::{Payload, PointId};
use tessera_shard::store::{PayloadSelector, Record};

use crate::router::KeySelector;

pub fn bad(m: impl Into<String>) -> Error {
    Error::bad_request(m)
}

pub fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        bad(format!(
            "Format error in JSON body: {what} must be an object"
        ))
    })
}

/// A field that may be absent or null.
pub fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

pub fn point_id(v: &Value) -> Result<PointId> {
    match v {
        Value::Number(n) => n.as_u64().map(PointId::Num).ok_or_else(|| {
            bad(format!(
                "Format error in JSON body: point id {n} must be an unsigned integer or a string"
            ))
        }),
        Value::String(s) if !s.is_empty() && s.len() <= 512 => Ok(PointId::from_string(s)),
        Value::String(_) => Err(bad(
            "Format error in JSON body: point id must be 1 to 512 bytes",
        )),
        other => Err(bad(format!(
            "Format error in JSON body: point id must be an unsigned integer or a string, got {other}"
        ))),
    }
}

pub fn point_id_json(id: &PointId) -> Value {
    match id {
        PointId::Num(n) => json!(n),
        PointId::Uuid(s) | PointId::Str(s) => json!(s),
    }
}

pub fn shard_key(v: &Value) -> Result<ShardKey> {
    match v {
        Value::String(s) => Ok(ShardKey::Str(s.clone())),
        Value::Number(n) => n.as_u64().map(ShardKey::Num).ok_or_else(|| {
            bad("Format error in JSON body: shard key must be a string or an unsigned integer")
        }),
        _ => Err(bad(
            "Format error in JSON body: shard key must be a string or an unsigned integer",
        )),
    }
}

pub fn shard_key_json(k: &ShardKey) -> Value {
    match k {
        ShardKey::Num(n) => json!(n),
        ShardKey::Str(s) => json!(s),
    }
}

fn key_list(v: &Value) -> Result<Vec<ShardKey>> {
    match v {
        Value::Array(a) => a.iter().map(shard_key).collect(),
        other => Ok(vec![shard_key(other)?]),
    }
}

/// `shard_key`: absent, one key, a list, or `{target, fallback}`.
pub fn key_selector(o: &Map<String, Value>) -> Result<KeySelector> {
    match field(o, "shard_key") {
        None => Ok(KeySelector::All),
        Some(Value::Object(m)) => {
            let target = m
                .get("target")
                .ok_or_else(|| bad("Format error in JSON body: shard_key object needs `target`"))?;
            let target = key_list(target)?;
            match field(m, "fallback") {
                Some(fb) => Ok(KeySelector::Fallback {
                    target,
                    fallback: shard_key(fb)?,
                }),
                None => Ok(KeySelector::Keys(target)),
            }
        }
        Some(v) => Ok(KeySelector::Keys(key_list(v)?)),
    }
}

pub fn vector(v: &Value) -> Result<Vec<f32>> {
    let arr = match v {
        Value::Array(a) => a,
        Value::Object(m) if m.len() == 1 && m.contains_key("") => {
            return vector(&m[""]);
        }
        Value::Object(_) => {
            return Err(bad(
                "Wrong input: named vectors are not supported; this collection has one unnamed vector",
            ));
        }
        _ => {
            return Err(bad(
                "Format error in JSON body: vector must be a list of numbers",
            ));
        }
    };
    let mut out = Vec::with_capacity(arr.len());
    for x in arr {
        let f = x
            .as_f64()
            .ok_or_else(|| bad("Format error in JSON body: vector must be a list of numbers"))?
            as f32;
        if !f.is_finite() {
            return Err(bad("Wrong input: vector values must be finite numbers"));
        }
        out.push(f);
    }
    Ok(out)
}

pub fn check_dim(v: &[f32], dim: usize) -> Result<()> {
    if v.len() != dim {
        return Err(bad(format!(
            "Wrong input: Vector dimension error: expected dim: {dim}, got {}",
            v.len()
        )));
    }
    Ok(())
}

pub fn payload(v: Option<&Value>) -> Result<Payload> {
    match v {
        None | Some(Value::Null) => Ok(Payload::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(bad("Format error in JSON body: payload must be an object")),
    }
}

pub fn with_payload(v: Option<&Value>, default: bool) -> Result<PayloadSelector> {
    let strings = |a: &Vec<Value>| -> Result<Vec<String>> {
        a.iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    bad("Format error in JSON body: with_payload keys must be strings")
                })
            })
            .collect()
    };
    match v {
        None | Some(Value::Null) => Ok(if default {
            PayloadSelector::All
        } else {
            PayloadSelector::None
        }),
        Some(Value::Bool(true)) => Ok(PayloadSelector::All),
        Some(Value::Bool(false)) => Ok(PayloadSelector::None),
        Some(Value::Array(a)) => Ok(PayloadSelector::Include(strings(a)?)),
        Some(Value::Object(m)) => {
            if let Some(Value::Array(a)) = m.get("include") {
                Ok(PayloadSelector::Include(strings(a)?))
            } else if let Some(Value::Array(a)) = m.get("exclude") {
                Ok(PayloadSelector::Exclude(strings(a)?))
            } else {
                Err(bad(
                    "Format error in JSON body: with_payload object needs include or exclude",
                ))
            }
        }
        Some(_) => Err(bad(
            "Format error in JSON body: with_payload must be a bool, a list or an object",
        )),
    }
}

pub fn with_vector(v: Option<&Value>) -> Result<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Array(_)) => Ok(true),
        Some(_) => Err(bad(
            "Format error in JSON body: with_vector must be a bool or a list",
        )),
    }
}

pub fn filter(o: &Map<String, Value>) -> Result<Option<Filter>> {
    match field(o, "filter") {
        None => Ok(None),
        Some(v) => parse_filter(v)
            .map(Some)
            .map_err(|e| bad(format!("Format error in JSON body: {e}"))),
    }
}

pub fn usize_field(o: &Map<String, Value>, k: &str) -> Result<Option<usize>> {
    match field(o, k) {
        None => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            bad(format!(
                "Format error in JSON body: {k} must be a non-negative integer"
            ))
        }),
    }
}

pub fn limit(o: &Map<String, Value>, default: usize, max: usize) -> Result<usize> {
    let l = usize_field(o, "limit")?.unwrap_or(default);
    if l > max {
        return Err(bad(format!(
            "Bad request: limit {l} is over the maximum of {max}"
        )));
    }
    Ok(l)
}

pub fn record_json((key, r): (Option<ShardKey>, Record)) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), point_id_json(&r.id));
    m.insert(
        "payload".into(),
        r.payload.map(Value::Object).unwrap_or(Value::Null),
    );
    m.insert(
        "vector".into(),
        r.vector.map(|v| json!(v)).unwrap_or(Value::Null),
    );
    m.insert(
        "shard_key".into(),
        key.as_ref().map(shard_key_json).unwrap_or(Value::Null),
    );
    m.insert("order_value".into(), Value::Null);
    Value::Object(m)
}

pub fn distance(v: &Value) -> Result<Distance> {
    match v.as_str() {
        Some("Cosine") => Ok(Distance::Cosine),
        Some("Dot") => Ok(Distance::Dot),
        Some("Euclid") => Ok(Distance::Euclid),
        Some(other) => Err(bad(format!(
            "Wrong input: distance {other} is not supported (Cosine, Dot or Euclid)"
        ))),
        None => Err(bad(
            "Format error in JSON body: vectors.distance must be a string",
        )),
    }
}

pub fn distance_name(d: Distance) -> &'static str {
    match d {
        Distance::Cosine => "Cosine",
        Distance::Dot => "Dot",
        Distance::Euclid => "Euclid",
    }
}

pub fn schema_type(s: &str) -> Result<PayloadSchemaType> {
    Ok(match s {
        "keyword" => PayloadSchemaType::Keyword,
        "integer" => PayloadSchemaType::Integer,
        "float" => PayloadSchemaType::Float,
        "bool" => PayloadSchemaType::Bool,
        "geo" => PayloadSchemaType::Geo,
        "text" => PayloadSchemaType::Text,
        "datetime" => PayloadSchemaType::Datetime,
        "uuid" => PayloadSchemaType::Uuid,
        other => return Err(bad(format!("Wrong input: unknown field_schema {other}"))),
    })
}

pub fn schema_name(s: PayloadSchemaType) -> &'static str {
    match s {
        PayloadSchemaType::Keyword => "keyword",
        PayloadSchemaType::Integer => "integer",
        PayloadSchemaType::Float => "float",
        PayloadSchemaType::Bool => "bool",
        PayloadSchemaType::Geo => "geo",
        PayloadSchemaType::Text => "text",
        PayloadSchemaType::Datetime => "datetime",
        PayloadSchemaType::Uuid => "uuid",
    }
}

pub fn payload_index(o: &Map<String, Value>) -> Result<(String, PayloadIndex)> {
    let name = field(o, "field_name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Format error in JSON body: field_name must be a string"))?
        .to_string();
    let (schema, is_tenant) = match field(o, "field_schema") {
        Some(Value::String(s)) => (schema_type(s)?, false),
        Some(Value::Object(m)) => {
            let t = m.get("type").and_then(Value::as_str).ok_or_else(|| {
                bad("Format error in JSON body: field_schema.type must be a string")
            })?;
            let tenant = m.get("is_tenant").and_then(Value::as_bool).unwrap_or(false);
            (schema_type(t)?, tenant)
        }
        _ => return Err(bad("Format error in JSON body: field_schema is required")),
    };
    Ok((name, PayloadIndex { schema, is_tenant }))
}

/// Qdrant's collection config shape.
pub fn collection_config(c: &CollectionMeta) -> Value {
    let p = &c.params;
    json!({
        "params": {
            "vectors": {"size": p.dim, "distance": distance_name(p.distance)},
            "shard_number": p.shard_number,
            "sharding_method": match p.sharding_method { ShardingMethod::Auto => "auto", ShardingMethod::Custom => "custom" },
            "replication_factor": p.replication_factor,
            "write_consistency_factor": p.write_consistency_factor,
            "on_disk_payload": p.on_disk_payload,
        },
        "hnsw_config": {
            "m": p.hnsw.m,
            "ef_construct": p.hnsw.ef_construct,
            "full_scan_threshold": p.hnsw.full_scan_threshold,
            "max_indexing_threads": 0,
            "on_disk": false,
            "payload_m": p.hnsw.payload_m,
        },
        "optimizer_config": {
            "deleted_threshold": 0.3,
            "vacuum_min_vector_number": 1000,
            "default_segment_number": 0,
            "max_segment_size": null,
            "memmap_threshold": null,
            "indexing_threshold": 10000,
            "flush_interval_sec": 5,
            "max_optimization_threads": null,
        },
        "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
        "quantization_config": null,
        "strict_mode_config": null,
    })
}
