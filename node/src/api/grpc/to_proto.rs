//! The answers of the shared operations in Qdrant's gRPC messages: the same results REST writes
//! as JSON, field for field.

use std::collections::HashMap;

use qdrant_client::qdrant as pb;
use serde_json::Value;
use tessera_cluster::meta::ShardKey;
use tessera_shard::point::{Payload, PointId};

use crate::api::json::collections::CollectionInfo;
use crate::api::json::query::ScoredPoint;
use crate::api::json::shard_keys::{CollectionCluster, ShardReplica};
use crate::api::json::{IdJson, KeyJson, PointRecord};

pub fn point_id(id: PointId) -> pb::PointId {
    use pb::point_id::PointIdOptions;
    pb::PointId {
        point_id_options: Some(match id {
            PointId::Num(n) => PointIdOptions::Num(n),
            PointId::Uuid(s) | PointId::Str(s) => PointIdOptions::Uuid(s),
        }),
    }
}

pub fn value(v: Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(pb::ListValue {
            values: a.into_iter().map(value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(pb::Struct {
            fields: payload(Some(o)),
        }),
    };
    pb::Value { kind: Some(kind) }
}

pub fn payload(p: Option<Payload>) -> HashMap<String, pb::Value> {
    p.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, value(v)))
        .collect()
}

pub fn shard_key(k: ShardKey) -> pb::ShardKey {
    pb::ShardKey {
        key: Some(match k {
            ShardKey::Str(s) => pb::shard_key::Key::Keyword(s),
            ShardKey::Num(n) => pb::shard_key::Key::Number(n),
        }),
    }
}

fn vectors(v: Vec<f64>) -> pb::VectorsOutput {
    #[allow(deprecated)] // the struct literal names the deprecated fields, left empty
    let vector = pb::VectorOutput {
        data: Vec::new(),
        indices: None,
        vectors_count: None,
        vector: Some(pb::vector_output::Vector::Dense(pb::DenseVector {
            data: v.into_iter().map(|x| x as f32).collect(),
        })),
    };
    pb::VectorsOutput {
        vectors_options: Some(pb::vectors_output::VectorsOptions::Vector(vector)),
    }
}

pub fn scored(p: ScoredPoint) -> pb::ScoredPoint {
    let IdJson(id) = p.id;
    pb::ScoredPoint {
        id: Some(point_id(id)),
        payload: payload(p.payload),
        score: p.score as f32,
        version: p.version,
        vectors: p.vector.map(vectors),
        shard_key: p.shard_key.map(|KeyJson(k)| shard_key(k)),
        order_value: p.order_value.and_then(order_value),
    }
}

pub fn retrieved(p: PointRecord) -> pb::RetrievedPoint {
    let IdJson(id) = p.id;
    pb::RetrievedPoint {
        id: Some(point_id(id)),
        payload: payload(p.payload),
        vectors: p.vector.map(vectors),
        shard_key: p.shard_key.map(|KeyJson(k)| shard_key(k)),
        order_value: p.order_value.and_then(order_value),
    }
}

/// An `order_by` value: an integer stays one.
fn order_value(n: serde_json::Number) -> Option<pb::OrderValue> {
    let variant = match n.as_i64() {
        Some(i) => pb::order_value::Variant::Int(i),
        None => pb::order_value::Variant::Float(n.as_f64()?),
    };
    Some(pb::OrderValue {
        variant: Some(variant),
    })
}

/// A write's answer: `completed` when it was waited for, as REST says it.
pub fn update_result(operation_id: u64, wait: bool) -> pb::UpdateResult {
    pb::UpdateResult {
        operation_id: Some(operation_id),
        status: if wait {
            pb::UpdateStatus::Completed as i32
        } else {
            pb::UpdateStatus::Acknowledged as i32
        },
    }
}

fn schema_type(name: &str) -> i32 {
    let t = match name {
        "keyword" => pb::PayloadSchemaType::Keyword,
        "integer" => pb::PayloadSchemaType::Integer,
        "float" => pb::PayloadSchemaType::Float,
        "geo" => pb::PayloadSchemaType::Geo,
        "text" => pb::PayloadSchemaType::Text,
        "bool" => pb::PayloadSchemaType::Bool,
        "datetime" => pb::PayloadSchemaType::Datetime,
        "uuid" => pb::PayloadSchemaType::Uuid,
        _ => pb::PayloadSchemaType::UnknownType,
    };
    t as i32
}

fn count(n: impl TryInto<u64>) -> u64 {
    n.try_into().unwrap_or(u64::MAX)
}

#[allow(deprecated)] // Qdrant's messages still carry `on_disk`, reported as REST reports it
pub fn collection_info(info: CollectionInfo) -> pb::CollectionInfo {
    let c = info.config;
    let (h, o, p) = (c.hnsw_config, c.optimizer_config, c.params);
    let payload_schema = info
        .payload_schema
        .into_iter()
        .map(|(field, s)| {
            let params = s.params.is_tenant.map(|is_tenant| {
                let index_params = match s.data_type {
                    "uuid" => pb::payload_index_params::IndexParams::UuidIndexParams(
                        pb::UuidIndexParams {
                            is_tenant: Some(is_tenant),
                            ..Default::default()
                        },
                    ),
                    _ => pb::payload_index_params::IndexParams::KeywordIndexParams(
                        pb::KeywordIndexParams {
                            is_tenant: Some(is_tenant),
                            ..Default::default()
                        },
                    ),
                };
                pb::PayloadIndexParams {
                    index_params: Some(index_params),
                }
            });
            let schema = pb::PayloadSchemaInfo {
                data_type: schema_type(s.data_type),
                params,
                points: Some(count(s.points)),
            };
            (field, schema)
        })
        .collect();
    let vectors = pb::VectorParams {
        size: count(p.vectors.size),
        distance: pb::Distance::from_str_name(p.vectors.distance)
            .unwrap_or(pb::Distance::UnknownDistance) as i32,
        on_disk: Some(p.vectors.on_disk),
        ..Default::default()
    };
    pb::CollectionInfo {
        status: match info.status {
            "green" => pb::CollectionStatus::Green as i32,
            "yellow" => pb::CollectionStatus::Yellow as i32,
            _ => pb::CollectionStatus::Red as i32,
        },
        optimizer_status: Some(pb::OptimizerStatus {
            ok: info.optimizer_status == "ok",
            error: String::new(),
        }),
        segments_count: count(info.segments_count),
        config: Some(pb::CollectionConfig {
            params: Some(pb::CollectionParams {
                shard_number: p.shard_number,
                on_disk_payload: p.on_disk_payload,
                vectors_config: Some(pb::VectorsConfig {
                    config: Some(pb::vectors_config::Config::Params(vectors)),
                }),
                replication_factor: Some(p.replication_factor),
                write_consistency_factor: Some(p.write_consistency_factor),
                sharding_method: Some(match p.sharding_method {
                    "custom" => pb::ShardingMethod::Custom as i32,
                    _ => pb::ShardingMethod::Auto as i32,
                }),
                ..Default::default()
            }),
            hnsw_config: Some(pb::HnswConfigDiff {
                m: Some(count(h.m)),
                ef_construct: Some(count(h.ef_construct)),
                full_scan_threshold: Some(count(h.full_scan_threshold)),
                max_indexing_threads: Some(u64::from(h.max_indexing_threads)),
                on_disk: Some(h.on_disk),
                payload_m: h.payload_m.map(count),
                ..Default::default()
            }),
            optimizer_config: Some(pb::OptimizersConfigDiff {
                deleted_threshold: Some(o.deleted_threshold),
                vacuum_min_vector_number: Some(u64::from(o.vacuum_min_vector_number)),
                default_segment_number: Some(u64::from(o.default_segment_number)),
                max_segment_size: o.max_segment_size.map(u64::from),
                memmap_threshold: o.memmap_threshold.map(u64::from),
                indexing_threshold: Some(u64::from(o.indexing_threshold)),
                flush_interval_sec: Some(u64::from(o.flush_interval_sec)),
                ..Default::default()
            }),
            wal_config: Some(pb::WalConfigDiff {
                wal_capacity_mb: Some(u64::from(c.wal_config.wal_capacity_mb)),
                wal_segments_ahead: Some(u64::from(c.wal_config.wal_segments_ahead)),
                wal_retain_closed: None,
            }),
            quantization_config: None,
            strict_mode_config: None,
            metadata: HashMap::new(),
        }),
        payload_schema,
        points_count: Some(count(info.points_count)),
        indexed_vectors_count: info.indexed_vectors_count.map(count),
        warnings: Vec::new(),
        update_queue: Some(pb::UpdateQueueInfo::default()),
        created_at: None,
    }
}

fn replica_state(state: &str) -> i32 {
    pb::ReplicaState::from_str_name(state).unwrap_or(pb::ReplicaState::Dead) as i32
}

pub fn cluster_info(c: CollectionCluster, time: f64) -> pb::CollectionClusterInfoResponse {
    let local = |r: ShardReplica| pb::LocalShardInfo {
        shard_id: r.shard_id,
        points_count: r.points_count.map_or(0, count),
        state: replica_state(&r.state),
        shard_key: r.shard_key.map(|KeyJson(k)| shard_key(k)),
    };
    let remote = |r: ShardReplica| pb::RemoteShardInfo {
        shard_id: r.shard_id,
        peer_id: r.peer_id.unwrap_or(0),
        state: replica_state(&r.state),
        shard_key: r.shard_key.map(|KeyJson(k)| shard_key(k)),
    };
    pb::CollectionClusterInfoResponse {
        peer_id: c.peer_id,
        shard_count: count(c.shard_count),
        local_shards: c.local_shards.into_iter().map(local).collect(),
        remote_shards: c.remote_shards.into_iter().map(remote).collect(),
        shard_transfers: c
            .shard_transfers
            .into_iter()
            .map(|t| pb::ShardTransferInfo {
                shard_id: t.shard_id,
                to_shard_id: None,
                from: t.from,
                to: t.to,
                sync: t.sync,
            })
            .collect(),
        resharding_operations: Vec::new(),
        time,
    }
}
