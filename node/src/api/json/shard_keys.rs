//! Shard key bodies (create, delete, list) and the collection's cluster view (its shards and
//! where their replicas are).

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::meta::ShardKey;

use super::{Empty, KeyJson, bad, field, shard_key, usize_field};

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
    pub shard_transfers: Vec<Empty>,
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
