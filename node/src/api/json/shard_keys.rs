//! Shard key bodies (create, delete, list) and the collection's cluster view (its shards and
//! where their replicas are).

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::meta::ShardKey;

use super::{KeyJson, bad, field, shard_key, usize_field};
use crate::catalog::KeyOutcome;
use crate::replication::ClusterOp;

/// `PUT /collections/{c}/shards`.
pub struct CreateShardKey {
    pub key: ShardKey,
    pub shards_number: Option<u32>,
    pub replication_factor: Option<u32>,
    /// Peer ids to place the replicas on.
    pub placement: Option<Vec<u64>>,
}

impl CreateShardKey {
    pub fn parse(o: &Map<String, Value>) -> Result<CreateShardKey> {
        let key = required_key(o)?;
        let shards_number =
            usize_field(o, "shards_number")?.map(|n| n.min(u32::MAX as usize) as u32);
        let replication_factor =
            usize_field(o, "replication_factor")?.map(|n| n.min(u32::MAX as usize) as u32);
        let not_peers = || bad("Format error in JSON body: placement must list peer ids");
        let placement = match field(o, "placement") {
            None => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|x| x.as_u64().ok_or_else(not_peers))
                    .collect::<Result<Vec<u64>>>()?,
            ),
            Some(_) => return Err(not_peers()),
        };
        Ok(CreateShardKey {
            key,
            shards_number,
            replication_factor,
            placement,
        })
    }
}

/// The answer to `PUT /collections/{c}/shards`: Qdrant's envelope (`result: true`) and, beyond
/// it, what happened (clients ignore fields they do not know).
#[derive(Serialize)]
pub struct KeyCreated {
    pub result: bool,
    pub status: &'static str,
    pub time: f64,
    pub outcome: KeyOutcomeJson,
}

/// Whether this request created the key (false: it was there with the same settings), and its
/// replicas not open on their nodes yet (they open when their node applies the change).
#[derive(Serialize)]
pub struct KeyOutcomeJson {
    pub shard_key: KeyJson,
    pub created: bool,
    pub pending: Vec<PendingReplica>,
}

#[derive(Serialize)]
pub struct PendingReplica {
    pub shard_id: u32,
    pub peer_id: u64,
}

impl KeyCreated {
    pub fn new(key: ShardKey, outcome: KeyOutcome, time: f64) -> KeyCreated {
        KeyCreated {
            result: true,
            status: "ok",
            time,
            outcome: KeyOutcomeJson {
                shard_key: KeyJson(key),
                created: outcome.created,
                pending: outcome
                    .pending
                    .into_iter()
                    .map(|(shard_id, peer_id)| PendingReplica { shard_id, peer_id })
                    .collect(),
            },
        }
    }
}

/// `POST /collections/{c}/shards/delete`: the key.
pub fn delete_shard_key(o: &Map<String, Value>) -> Result<ShardKey> {
    required_key(o)
}

fn required_key(o: &Map<String, Value>) -> Result<ShardKey> {
    shard_key(
        field(o, "shard_key")
            .ok_or_else(|| bad("Format error in JSON body: shard_key is required"))?,
    )
}

/// `GET /collections/{c}/shards`.
#[derive(Serialize)]
pub struct ShardKeyList {
    pub shard_keys: Vec<ShardKeyEntry>,
}

#[derive(Serialize)]
pub struct ShardKeyEntry {
    pub key: KeyJson,
}

/// `GET /collections/{c}/cluster`.
#[derive(Serialize)]
pub struct CollectionCluster {
    pub local_shards: Vec<ShardReplica>,
    pub peer_id: u64,
    pub remote_shards: Vec<ShardReplica>,
    pub shard_count: usize,
    pub shard_transfers: Vec<ShardTransfer>,
}

/// One replica of a shard: `points_count` whenever the count is the caller's own (on remote
/// replicas too, as the replica reports it, beyond Qdrant's shape; absent when it did not
/// answer), `peer_id` on remote ones.
#[derive(Serialize)]
pub struct ShardReplica {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points_count: Option<usize>,
    pub shard_id: u32,
    pub shard_key: Option<KeyJson>,
    pub state: String,
}

/// `POST /collections/{c}/cluster`: one operation, in Qdrant's shapes.
pub fn cluster_op(o: &Map<String, Value>) -> Result<ClusterOp> {
    {
        let mut ops = o.iter();
        let (Some((name, body)), None) = (ops.next(), ops.next()) else {
            return Err(bad(
                "Format error in JSON body: expected exactly one of move_shard, replicate_shard, abort_transfer, drop_replica",
            ));
        };
        let b = body.as_object().ok_or_else(|| {
            bad(format!(
                "Format error in JSON body: {name} must be an object"
            ))
        })?;
        let num = |k: &str| -> Result<u64> {
            field(b, k).and_then(Value::as_u64).ok_or_else(|| {
                bad(format!(
                    "Format error in JSON body: {name}.{k} must be a non-negative integer"
                ))
            })
        };
        let shard = u32::try_from(num("shard_id")?).map_err(|_| {
            bad(format!(
                "Format error in JSON body: {name}.shard_id is too large"
            ))
        })?;
        // a transfer streams the source's built graphs, then all its records in batches, then
        // the records written meanwhile: Qdrant's `snapshot` and `stream_records` both describe
        // it; `wal_delta` alone (no copy) and resharding transfers are refused, not faked
        if let Some(method) = field(b, "method").filter(|m| !m.is_null())
            && !matches!(method.as_str(), Some("stream_records" | "snapshot"))
        {
            return Err(bad(format!(
                "Bad request: transfer method {method} is not supported; use snapshot or stream_records"
            )));
        }
        // the official clients send unset options as null
        for (k, v) in b.iter().filter(|(_, v)| !v.is_null()) {
            if k == "to_shard_id" {
                return Err(bad(format!(
                    "Bad request: {name}.to_shard_id (resharding) is not supported; {v} was given"
                )));
            }
            if !matches!(
                k.as_str(),
                "shard_id" | "from_peer_id" | "to_peer_id" | "peer_id" | "method"
            ) {
                return Err(bad(format!(
                    "Format error in JSON body: unknown field {name}.{k}"
                )));
            }
        }
        Ok(match name.as_str() {
            "move_shard" => ClusterOp::Move {
                shard,
                from: num("from_peer_id")?,
                to: num("to_peer_id")?,
            },
            "replicate_shard" => ClusterOp::Replicate {
                shard,
                from: num("from_peer_id")?,
                to: num("to_peer_id")?,
            },
            "abort_transfer" => ClusterOp::Abort {
                shard,
                to: num("to_peer_id")?,
            },
            "drop_replica" => ClusterOp::Drop {
                shard,
                peer: num("peer_id")?,
            },
            other => {
                return Err(bad(format!(
                    "Bad request: cluster operation {other} is not supported here (shard keys: PUT /collections/{{c}}/shards)"
                )));
            }
        })
    }
}

/// A shard transfer in progress: a replica catching up from the shard's primary.
#[derive(Serialize)]
pub struct ShardTransfer {
    pub shard_id: u32,
    pub from: u64,
    pub to: u64,
    pub sync: bool,
    pub method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
