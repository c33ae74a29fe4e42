//! Collection bodies: create (vectors, sharding, HNSW), info and config, the list, payload
//! indexes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::meta::{
    CollectionMeta, CollectionParams, Distance, HnswParams, PayloadIndex, PayloadSchemaType,
    ShardingMethod,
};

use super::{bad, check_fields, field, obj, usize_field};

/// `PUT /collections/{c}`: the collection's parameters.
pub fn create_collection(o: &Map<String, Value>) -> Result<CollectionParams> {
    check_fields(
        o,
        "",
        &[
            "vectors",
            "shard_number",
            "sharding_method",
            "replication_factor",
            "write_consistency_factor",
            "hnsw_config",
        ],
        // payloads are kept in memory (and in the WAL and snapshot on disk)
        &[("on_disk_payload", Value::Bool(false))],
    )?;
    let vectors =
        field(o, "vectors").ok_or_else(|| bad("Format error in JSON body: vectors is required"))?;
    let vo = obj(vectors, "vectors")?;
    let vector_fields = |v: &Map<String, Value>| {
        check_fields(
            v,
            "vectors.",
            &["size", "distance"],
            &[
                ("on_disk", Value::Bool(false)),
                ("datatype", Value::String("float32".into())),
            ],
        )
    };
    let (size, dist) = if vo.contains_key("size") {
        vector_fields(vo)?;
        (vo.get("size"), vo.get("distance"))
    } else if vo.len() == 1 && vo.contains_key("") {
        let inner = obj(&vo[""], "vectors")?;
        vector_fields(inner)?;
        (inner.get("size"), inner.get("distance"))
    } else {
        return Err(bad(
            "Wrong input: named vectors are not supported; give vectors {size, distance}",
        ));
    };
    let dim = size
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("Format error in JSON body: vectors.size must be a positive integer"))?;
    let distance = distance(
        dist.ok_or_else(|| bad("Format error in JSON body: vectors.distance is required"))?,
    )?;
    let sharding_method = match field(o, "sharding_method").and_then(Value::as_str) {
        None | Some("auto") => ShardingMethod::Auto,
        Some("custom") => ShardingMethod::Custom,
        Some(other) => {
            return Err(bad(format!("Wrong input: unknown sharding_method {other}")));
        }
    };
    let u32_field = |k: &str, d: u32| -> Result<u32> {
        Ok(usize_field(o, k)?
            .map(|n| n.min(u32::MAX as usize) as u32)
            .unwrap_or(d))
    };
    let mut hnsw = HnswParams::default();
    if let Some(h) = field(o, "hnsw_config") {
        let h = obj(h, "hnsw_config")?;
        check_fields(
            h,
            "hnsw_config.",
            &["m", "ef_construct", "payload_m", "full_scan_threshold"],
            // 0: as many build threads as tessera chooses (it builds on one, at low priority)
            &[
                ("on_disk", Value::Bool(false)),
                ("max_indexing_threads", Value::from(0)),
            ],
        )?;
        if let Some(m) = usize_field(h, "m")? {
            hnsw.m = m;
        }
        if let Some(e) = usize_field(h, "ef_construct")? {
            hnsw.ef_construct = e;
        }
        hnsw.payload_m = usize_field(h, "payload_m")?;
        if let Some(f) = usize_field(h, "full_scan_threshold")? {
            hnsw.full_scan_threshold = f;
        }
    }
    Ok(CollectionParams {
        dim: dim as usize,
        distance,
        sharding_method,
        shard_number: u32_field("shard_number", 1)?,
        replication_factor: u32_field("replication_factor", 1)?,
        write_consistency_factor: u32_field("write_consistency_factor", 1)?,
        hnsw,
        on_disk_payload: field(o, "on_disk_payload")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The fields of a collection update body (`PATCH /collections/{c}`) whose value differs from
/// what `config` (the collection's reported config) holds for them, by their request paths
/// (`hnsw_config.m`; `vectors.on_disk` for the unnamed vector); unknown fields count as changed.
pub fn changed_settings(o: &Map<String, Value>, config: &Value) -> Vec<String> {
    let mut changed = Vec::new();
    for (key, value) in o.iter().filter(|(_, v)| !v.is_null()) {
        let at: &[&str] = match key.as_str() {
            "optimizers_config" => &["optimizer_config"],
            "params" => &["params"],
            "hnsw_config" => &["hnsw_config"],
            "quantization_config" => &["quantization_config"],
            "strict_mode_config" => &["strict_mode_config"],
            "sparse_vectors" => &["params", "sparse_vectors"],
            "metadata" => &["metadata"],
            "vectors" => {
                // `{"": {...}}` or `{"name": {...}}`: the unnamed vector is reported flat
                match value {
                    Value::Object(m) => {
                        for (vname, diff) in m {
                            let reported = if vname.is_empty() {
                                config.pointer("/params/vectors")
                            } else {
                                None
                            };
                            let label = if vname.is_empty() {
                                "vectors".to_owned()
                            } else {
                                format!("vectors.{vname}")
                            };
                            differences(&label, diff, reported, &mut changed);
                        }
                    }
                    _ => changed.push(key.clone()),
                }
                continue;
            }
            _ => {
                changed.push(key.clone());
                continue;
            }
        };
        let mut reported = Some(config);
        for p in at {
            reported = reported.and_then(|r| r.get(*p));
        }
        differences(key, value, reported, &mut changed);
    }
    changed
}

/// Pushes the paths under `path` where `asked` differs from `reported` (objects compared field
/// by field, anything else whole).
fn differences(path: &str, asked: &Value, reported: Option<&Value>, out: &mut Vec<String>) {
    match (asked, reported) {
        (Value::Null, _) => {}
        (Value::Object(m), Some(Value::Object(_))) if m.is_empty() => {}
        (Value::Object(m), Some(Value::Object(r))) => {
            for (k, v) in m {
                differences(&format!("{path}.{k}"), v, r.get(k), out);
            }
        }
        (Value::Object(m), _) if !m.is_empty() => {
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                differences(&format!("{path}.{k}"), v, None, out);
            }
        }
        (a, Some(r)) if same_setting(a, r) => {}
        _ => out.push(path.to_owned()),
    }
}

/// Equal settings: numbers by value (`16` is `16.0`).
fn same_setting(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
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
            // what tessera's indexes do anyway is accepted as it is; any other tuning refused
            check_fields(
                m,
                "field_schema.",
                &["type", "is_tenant"],
                &[
                    ("on_disk", Value::Bool(false)),
                    ("lookup", Value::Bool(true)),
                    ("range", Value::Bool(true)),
                    ("is_principal", Value::Bool(false)),
                    ("enable_hnsw", Value::Bool(true)),
                ],
            )?;
            let tenant = m.get("is_tenant").and_then(Value::as_bool).unwrap_or(false);
            (schema_type(t)?, tenant)
        }
        _ => return Err(bad("Format error in JSON body: field_schema is required")),
    };
    Ok((name, PayloadIndex { schema, is_tenant }))
}

/// `GET /collections`.
#[derive(Serialize)]
pub struct CollectionList {
    pub collections: Vec<CollectionName>,
}

#[derive(Serialize)]
pub struct CollectionName {
    pub name: String,
}

/// `GET /collections/{c}/exists`.
#[derive(Serialize)]
pub struct Exists {
    pub exists: bool,
}

/// `GET /collections/{c}`.
#[derive(Serialize)]
pub struct CollectionInfo {
    pub config: CollectionConfig,
    /// `None` where per-segment figures are not known for every shard (null).
    pub indexed_vectors_count: Option<usize>,
    pub optimizer_status: &'static str,
    pub payload_schema: BTreeMap<String, PayloadSchemaInfo>,
    pub points_count: usize,
    pub segments_count: usize,
    /// green, or yellow while index builds or merges are due
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct PayloadSchemaInfo {
    pub data_type: &'static str,
    pub params: PayloadSchemaParams,
    pub points: usize,
}

#[derive(Serialize)]
pub struct PayloadSchemaParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_tenant: Option<bool>,
    pub r#type: &'static str,
}

impl PayloadSchemaInfo {
    /// An index's entry; Qdrant counts the points it covers, here every point of the collection.
    pub fn new(index: &PayloadIndex, points: usize) -> PayloadSchemaInfo {
        PayloadSchemaInfo {
            data_type: schema_name(index.schema),
            params: PayloadSchemaParams {
                is_tenant: index.is_tenant.then_some(true),
                r#type: schema_name(index.schema),
            },
            points,
        }
    }
}

/// Qdrant's collection config shape; what tessera does not tune reports Qdrant's defaults.
#[derive(Serialize)]
pub struct CollectionConfig {
    pub hnsw_config: HnswConfig,
    pub optimizer_config: OptimizerConfig,
    pub params: ConfigParams,
    pub quantization_config: Option<()>,
    pub strict_mode_config: Option<()>,
    pub wal_config: WalConfig,
}

#[derive(Serialize)]
pub struct HnswConfig {
    pub ef_construct: usize,
    pub full_scan_threshold: usize,
    pub m: usize,
    pub max_indexing_threads: u32,
    pub on_disk: bool,
    pub payload_m: Option<usize>,
}

#[derive(Serialize)]
pub struct OptimizerConfig {
    pub default_segment_number: u32,
    pub deleted_threshold: f64,
    pub flush_interval_sec: u32,
    pub indexing_threshold: u32,
    pub max_optimization_threads: Option<u32>,
    pub max_segment_size: Option<u32>,
    pub memmap_threshold: Option<u32>,
    pub vacuum_min_vector_number: u32,
}

#[derive(Serialize)]
pub struct ConfigParams {
    pub on_disk_payload: bool,
    pub replication_factor: u32,
    pub shard_number: u32,
    pub sharding_method: &'static str,
    pub vectors: VectorParams,
    pub write_consistency_factor: u32,
}

#[derive(Serialize)]
pub struct VectorParams {
    pub distance: &'static str,
    /// Vectors are held in memory.
    pub on_disk: bool,
    pub size: usize,
}

#[derive(Serialize)]
pub struct WalConfig {
    pub wal_capacity_mb: u32,
    pub wal_segments_ahead: u32,
}

impl CollectionConfig {
    /// `indexing_threshold`: the node's (points a tail holds before its graph is built).
    pub fn new(c: &CollectionMeta, indexing_threshold: usize) -> CollectionConfig {
        let p = &c.params;
        CollectionConfig {
            hnsw_config: HnswConfig {
                ef_construct: p.hnsw.ef_construct,
                full_scan_threshold: p.hnsw.full_scan_threshold,
                m: p.hnsw.m,
                max_indexing_threads: 0,
                on_disk: false,
                payload_m: p.hnsw.payload_m,
            },
            optimizer_config: OptimizerConfig {
                default_segment_number: 0,
                deleted_threshold: 0.3,
                flush_interval_sec: 5,
                indexing_threshold: u32::try_from(indexing_threshold).unwrap_or(u32::MAX),
                max_optimization_threads: None,
                max_segment_size: None,
                memmap_threshold: None,
                vacuum_min_vector_number: 1000,
            },
            params: ConfigParams {
                on_disk_payload: p.on_disk_payload,
                replication_factor: p.replication_factor,
                shard_number: p.shard_number,
                sharding_method: match p.sharding_method {
                    ShardingMethod::Auto => "auto",
                    ShardingMethod::Custom => "custom",
                },
                vectors: VectorParams {
                    distance: distance_name(p.distance),
                    on_disk: false,
                    size: p.dim,
                },
                write_consistency_factor: p.write_consistency_factor,
            },
            quantization_config: None,
            strict_mode_config: None,
            wal_config: WalConfig {
                wal_capacity_mb: 32,
                wal_segments_ahead: 0,
            },
        }
    }
}
