//! The metadata state machine: collections, shard keys, shards and their replica placement.
//!
//! `apply` is pure and deterministic: it reads no clock, no random number and not the local node
//! id. Whoever proposes a command (the single node today, the Raft leader later) decides placement
//! and ids first, and they travel in the command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use tessera_core::codec;

pub use tessera_core::ids::{NodeId, ShardId, ShardKey};

/// Largest vector dimension a collection may declare.
pub const MAX_DIM: usize = 65_536;
/// Most shards one shard key (or an auto-sharded collection) may have.
pub const MAX_SHARDS_PER_KEY: u32 = 256;
/// Longest collection name and shard key.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    Cosine,
    Dot,
    Euclid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardingMethod {
    Auto,
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construct: usize,
    pub payload_m: Option<usize>,
    /// Below this many points (per segment) a search scans exactly instead of walking a graph.
    pub full_scan_threshold: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construct: 100,
            payload_m: None,
            full_scan_threshold: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionParams {
    pub dim: usize,
    pub distance: Distance,
    pub sharding_method: ShardingMethod,
    /// Shards per shard key (custom) or of the collection (auto).
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub hnsw: HnswParams,
    pub on_disk_payload: bool,
}

impl CollectionParams {
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(Error::bad_request(format!(
                "vector size must be between 1 and {MAX_DIM}, got {}",
                self.dim
            )));
        }
        if self.shard_number == 0 || self.shard_number > MAX_SHARDS_PER_KEY {
            return Err(Error::bad_request(format!(
                "shard_number must be between 1 and {MAX_SHARDS_PER_KEY}, got {}",
                self.shard_number
            )));
        }
        if self.replication_factor == 0 {
            return Err(Error::bad_request("replication_factor must be at least 1"));
        }
        if self.write_consistency_factor == 0 {
            return Err(Error::bad_request(
                "write_consistency_factor must be at least 1",
            ));
        }
        if self.write_consistency_factor > self.replication_factor {
            return Err(Error::bad_request(format!(
                "write_consistency_factor {} is more than the replication_factor {}: no write could reach that many replicas",
                self.write_consistency_factor, self.replication_factor
            )));
        }
        // m: 0 is Qdrant's "no graph over the whole collection" (per-tenant graphs only, with
        // payload_m)
        if self.hnsw.m == 1 || self.hnsw.m > 128 {
            return Err(Error::bad_request(format!(
                "hnsw_config.m must be 0 or between 2 and 128, got {}",
                self.hnsw.m
            )));
        }
        if let Some(pm) = self.hnsw.payload_m
            && !(2..=128).contains(&pm)
        {
            return Err(Error::bad_request(format!(
                "hnsw_config.payload_m must be between 2 and 128, got {pm}"
            )));
        }
        if self.hnsw.ef_construct < 4 || self.hnsw.ef_construct > 4096 {
            return Err(Error::bad_request(format!(
                "hnsw_config.ef_construct must be between 4 and 4096, got {}",
                self.hnsw.ef_construct
            )));
        }
        Ok(())
    }
}

/// A replica's state, as Qdrant names them. `Active`: in the shard's in-sync set (it has every
/// acknowledged write, takes every new one before it is acknowledged, and serves reads). `Dead`:
/// out of the in-sync set (failed, unreachable, or deposed), it serves nothing until it has
/// caught up. `Partial`: catching up from the primary. Variants are only ever appended: the
/// Raft log stores them by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    Active,
    Initializing,
    Dead,
    Partial,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub node: NodeId,
    pub state: ReplicaState,
}

/// One shard and its replica set. `replicas[0]` is the primary: it orders the shard's writes
/// and sends them to every `Active` backup before it acknowledges them. `epoch` grows with every
/// change of primary; messages of an older epoch are refused everywhere, so a deposed primary
/// can never again have a write acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: ShardId,
    /// The shard key it belongs to; None in an auto-sharded collection.
    pub key: Option<ShardKey>,
    pub replicas: Vec<Replica>,
    pub epoch: u64,
    /// A move in flight ([`Command::MoveReplica`]): once the replica on `to` is in sync, the
    /// metadata leader drops the one on `from`. Recorded here, not in a task, so the move
    /// finishes whichever node asked for it and whichever node leads by then. Both nodes hold a
    /// replica while it is set; removing either one ends the move.
    pub moving: Option<ShardMove>,
}

/// A shard's replica moving from one node to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMove {
    pub from: NodeId,
    pub to: NodeId,
}

impl ShardMeta {
    /// The node of the primary replica.
    pub fn primary(&self) -> Option<NodeId> {
        self.replicas.first().map(|r| r.node)
    }

    /// The nodes of the in-sync set (the primary first).
    pub fn in_sync(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Active)
            .map(|r| r.node)
    }

    /// Where `node`'s replica is in the replica set; NotFound naming both when it holds none.
    pub fn replica_index(&self, node: NodeId) -> Result<usize> {
        self.replicas
            .iter()
            .position(|r| r.node == node)
            .ok_or_else(|| {
                Error::not_found(format!("node {node} holds no replica of shard {}", self.id))
            })
    }

    /// This node's replica state, if it holds one.
    pub fn state_on(&self, node: NodeId) -> Option<ReplicaState> {
        self.replicas
            .iter()
            .find(|r| r.node == node)
            .map(|r| r.state)
    }

    /// Whether a replica is catching up or a move is in flight: nothing else is started on it.
    pub fn in_transfer(&self) -> bool {
        self.moving.is_some()
            || self
                .replicas
                .iter()
                .any(|r| r.state != ReplicaState::Active)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadSchemaType {
    Keyword,
    Integer,
    Float,
    Bool,
    Geo,
    Text,
    Datetime,
    Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadIndex {
    pub schema: PayloadSchemaType,
    pub is_tenant: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionMeta {
    pub name: String,
    /// Unique for the cluster's lifetime: data directories are named by it, so a collection
    /// created again under an old name never sees the old data.
    pub uid: u64,
    pub params: CollectionParams,
    pub shards: BTreeMap<ShardId, ShardMeta>,
    pub shard_keys: BTreeMap<ShardKey, Vec<ShardId>>,
    pub payload_indexes: BTreeMap<String, PayloadIndex>,
    pub next_shard_id: ShardId,
    /// In a payload-partitioned collection each tenant's point ids are its own (tenant A's
    /// point 21 and tenant B's point 21 are two points). True for every collection created since
    /// id spaces exist; older ones keep one id space shared by their tenants.
    pub tenant_id_spaces: bool,
    /// What each shard key was created with (keys created since format 5; older ones are
    /// read off their shards by [`CollectionMeta::key_settings_of`]).
    pub key_settings: BTreeMap<ShardKey, KeySettings>,
}

/// The settings a shard key was created with, against which a repeated create is compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySettings {
    pub replication_factor: u32,
    /// The nodes its replicas were placed on at creation.
    pub placed_on: Vec<NodeId>,
}

impl CollectionMeta {
    /// The shards of one shard key, or of the whole collection (auto sharding / no key given).
    pub fn shards_of_key(&self, key: &ShardKey) -> Option<&[ShardId]> {
        self.shard_keys.get(key).map(|v| v.as_slice())
    }

    /// The settings `key` was created with: recorded, or (a key from before format 5) read off
    /// its shards as they are now. None: no such key.
    pub fn key_settings_of(&self, key: &ShardKey) -> Option<KeySettings> {
        if let Some(k) = self.key_settings.get(key) {
            return Some(k.clone());
        }
        let shards: Vec<&ShardMeta> = self
            .shards_of_key(key)?
            .iter()
            .filter_map(|id| self.shards.get(id))
            .collect();
        let mut placed_on: Vec<NodeId> = shards
            .iter()
            .flat_map(|s| s.replicas.iter().map(|r| r.node))
            .collect();
        placed_on.sort_unstable();
        placed_on.dedup();
        Some(KeySettings {
            replication_factor: shards.first().map_or(0, |s| s.replicas.len() as u32),
            placed_on,
        })
    }
}

/// A shard to create, placed by the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    pub id: ShardId,
    pub nodes: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateCollection {
        name: String,
        uid: u64,
        params: CollectionParams,
        /// Auto sharding: the collection's shards. Custom: empty.
        shards: Vec<ShardPlacement>,
    },
    DeleteCollection {
        name: String,
    },
    CreateShardKey {
        collection: String,
        key: ShardKey,
        shards: Vec<ShardPlacement>,
    },
    DeleteShardKey {
        collection: String,
        key: ShardKey,
    },
    CreatePayloadIndex {
        collection: String,
        field: String,
        index: PayloadIndex,
    },
    DeletePayloadIndex {
        collection: String,
        field: String,
    },
    /// Suspends a tenant (every request it makes is refused at once) or lifts the suspension.
    SetTenantSuspended {
        tenant: String,
        suspended: bool,
    },
    /// Sets a tenant's quota (validated), or returns it to the defaults (None).
    SetTenantQuota {
        tenant: String,
        quota: Option<crate::quota::Quota>,
    },
    /// Moves a backup in or out of the in-sync set (`Active`, `Dead`, `Partial`). Applied only
    /// in the shard's current `epoch`: a deposed primary's request changes nothing. The primary
    /// itself is changed only by [`Command::PromoteReplica`].
    SetReplicaState {
        collection: String,
        uid: u64,
        shard: ShardId,
        node: NodeId,
        state: ReplicaState,
        epoch: u64,
    },
    /// Makes the in-sync backup on `node` the primary (the old primary becomes `Dead`) and
    /// bumps the epoch. Applied only in the shard's current `epoch`.
    PromoteReplica {
        collection: String,
        uid: u64,
        shard: ShardId,
        node: NodeId,
        epoch: u64,
    },
    /// Binds node id `node` to the identity `key`; a node bound to another key is refused.
    BindNodeKey {
        node: NodeId,
        key: [u8; 32],
    },
    /// Adds a replica of the shard on `node`, `Partial` until it has caught up from the primary
    /// (Qdrant's `replicate_shard`, the first half of `move_shard`). In the current epoch only.
    AddReplica {
        collection: String,
        uid: u64,
        shard: ShardId,
        node: NodeId,
        epoch: u64,
    },
    /// Removes the replica on `node` (never the primary). In the current epoch only.
    RemoveReplica {
        collection: String,
        uid: u64,
        shard: ShardId,
        node: NodeId,
        epoch: u64,
    },
    /// Marks node id `node` removed for good: it can neither join again nor call as a member
    /// (a removed node joins anew under a new id, with an empty data dir).
    RetireNode {
        node: NodeId,
    },
    /// Starts a move of the shard's replica on `from` to `to` (Qdrant's `move_shard`): a
    /// `Partial` replica on `to` and the intent ([`ShardMeta::moving`]), which the metadata
    /// leader completes once `to` is in sync. In the current epoch only, and never while another
    /// move of the shard is in flight.
    MoveReplica {
        collection: String,
        uid: u64,
        shard: ShardId,
        from: NodeId,
        to: NodeId,
        epoch: u64,
    },
    /// Changes aliases, all or none ([`AliasAction`]).
    UpdateAliases {
        actions: Vec<AliasAction>,
    },
}

/// Settings of one tenant (the value of a token's tenant claim; in a custom-sharded collection,
/// the shard key of the same name). Tenants without settings have the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub suspended: bool,
    /// The tenant's own quota; None means the node defaults.
    pub quota: Option<crate::quota::Quota>,
}

/// What applying a command changed, for the shard manager to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    CollectionCreated {
        uid: u64,
    },
    CollectionDeleted {
        uid: u64,
        shards: Vec<ShardId>,
    },
    ShardsCreated {
        uid: u64,
        shards: Vec<ShardId>,
    },
    ShardsDeleted {
        uid: u64,
        shards: Vec<ShardId>,
    },
    /// A shard's replica set changed (a state, or the primary).
    ReplicasChanged {
        uid: u64,
        shard: ShardId,
    },
    Nothing,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataState {
    pub collections: BTreeMap<String, CollectionMeta>,
    /// Index of the last applied command.
    pub applied: u64,
    /// Tenants with settings other than the defaults.
    pub tenants: BTreeMap<String, TenantSettings>,
    /// Each node id's identity (the SHA-256 of its certificate's public key), bound when it
    /// joins (or, for a member from before bindings, at its first call) and never rebound: a
    /// holder of another certificate of the cluster CA cannot act as that node.
    pub node_keys: BTreeMap<NodeId, [u8; 32]>,
    /// Collection aliases: alias name to collection name.
    pub aliases: BTreeMap<String, String>,
}

pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::bad_request(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes long"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '\0'))
    {
        return Err(Error::bad_request(format!(
            "{what} must not contain '/', '\\' or control characters"
        )));
    }
    Ok(())
}

pub use tessera_core::missing_collection;

/// The answer for a shard key that does not exist, or that the caller may not see.
pub fn missing_key(key: &ShardKey) -> Error {
    tessera_core::missing_key(Some(key))
}

/// The key a removed node id is bound to: no certificate's key hashes to it, so nothing can
/// act as that id again.
pub const RETIRED_KEY: [u8; 32] = [0; 32];

/// Version byte of an encoded [`MetadataState`]: 1 before shards had epochs, 2 before node
/// keys, 3 before tenant id spaces, 4 before moves and key settings were recorded, 5 before
/// aliases, 6 since.
const STATE_FORMAT: u8 = 6;

impl MetadataState {
    /// The state as stored in snapshots (and sent in Raft snapshots).
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::encode_as(STATE_FORMAT, self)
    }

    /// Reads a stored state, of this format or of those before: before epochs each shard
    /// starts at epoch 1 (the epoch every shard is created at); before node keys no node is
    /// bound yet (each is at its first call).
    pub fn decode(bytes: &[u8]) -> Result<MetadataState> {
        match codec::version_of(bytes) {
            Some(STATE_FORMAT) => codec::decode_as(STATE_FORMAT, bytes),
            Some(5) => codec::decode_as::<legacy::StateV5>(5, bytes).map(Into::into),
            Some(4) => codec::decode_as::<legacy::StateV4>(4, bytes).map(Into::into),
            Some(3) => codec::decode_as::<legacy::StateV3>(3, bytes).map(Into::into),
            Some(2) => codec::decode_as::<legacy::StateV2>(2, bytes).map(Into::into),
            Some(1) => codec::decode_as::<legacy::StateV1>(1, bytes).map(Into::into),
            other => Err(Error::bad_request(format!(
                "metadata state of unknown format {other:?}"
            ))),
        }
    }

    pub fn collection(&self, name: &str) -> Result<&CollectionMeta> {
        self.collections
            .get(name)
            .ok_or_else(|| missing_collection(name))
    }

    /// Applies a committed command. Errors are deterministic (every replica of the state gets the
    /// same one) and leave the state unchanged: every branch validates before it changes anything.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Applied> {
        let r = self.apply_inner(cmd);
        self.applied = index;
        r
    }

    fn apply_inner(&mut self, cmd: &Command) -> Result<Applied> {
        match cmd {
            Command::CreateCollection {
                name,
                uid,
                params,
                shards,
            } => {
                validate_name("collection name", name)?;
                params.validate()?;
                if self.collections.contains_key(name) {
                    return Err(Error::already_exists(format!(
                        "Wrong input: Collection `{name}` already exists!"
                    )));
                }
                if self.aliases.contains_key(name) {
                    return Err(Error::already_exists(format!(
                        "Wrong input: Alias with name `{name}` already exists!"
                    )));
                }
                let mut meta = CollectionMeta {
                    name: name.clone(),
                    uid: *uid,
                    params: params.clone(),
                    shards: BTreeMap::new(),
                    shard_keys: BTreeMap::new(),
                    payload_indexes: BTreeMap::new(),
                    next_shard_id: 0,
                    tenant_id_spaces: true,
                    key_settings: BTreeMap::new(),
                };
                match params.sharding_method {
                    ShardingMethod::Auto => {
                        if shards.len() != params.shard_number as usize {
                            return Err(Error::internal(
                                "auto-sharded collection proposed with the wrong shard count",
                            ));
                        }
                        add_shards(&mut meta, None, shards)?;
                    }
                    ShardingMethod::Custom => {
                        if !shards.is_empty() {
                            return Err(Error::internal(
                                "custom-sharded collection proposed with shards",
                            ));
                        }
                    }
                }
                self.collections.insert(name.clone(), meta);
                Ok(Applied::CollectionCreated { uid: *uid })
            }
            Command::DeleteCollection { name } => {
                let meta = self
                    .collections
                    .remove(name)
                    .ok_or_else(|| missing_collection(name))?;
                self.aliases.retain(|_, target| target != name);
                Ok(Applied::CollectionDeleted {
                    uid: meta.uid,
                    shards: meta.shards.keys().copied().collect(),
                })
            }
            Command::CreateShardKey {
                collection,
                key,
                shards,
            } => {
                let meta = self
                    .collections
                    .get_mut(collection)
                    .ok_or_else(|| missing_collection(collection))?;
                if meta.params.sharding_method != ShardingMethod::Custom {
                    return Err(Error::bad_request(format!(
                        "Shard keys can only be created in a collection with sharding_method custom; `{collection}` uses auto"
                    )));
                }
                if let ShardKey::Str(s) = key {
                    validate_name("shard key", s)?;
                }
                if meta.shard_keys.contains_key(key) {
                    return Err(Error::already_exists(format!(
                        "Shard key {key} already exists"
                    )));
                }
                if shards.is_empty() || shards.len() > MAX_SHARDS_PER_KEY as usize {
                    return Err(Error::bad_request(format!(
                        "a shard key needs 1 to {MAX_SHARDS_PER_KEY} shards"
                    )));
                }
                add_shards(meta, Some(key.clone()), shards)?;
                let mut placed_on: Vec<NodeId> = shards
                    .iter()
                    .flat_map(|s| s.nodes.iter().copied())
                    .collect();
                placed_on.sort_unstable();
                placed_on.dedup();
                let settings = KeySettings {
                    replication_factor: shards.first().map_or(0, |s| s.nodes.len() as u32),
                    placed_on,
                };
                meta.key_settings.insert(key.clone(), settings);
                Ok(Applied::ShardsCreated {
                    uid: meta.uid,
                    shards: shards.iter().map(|s| s.id).collect(),
                })
            }
            Command::DeleteShardKey { collection, key } => {
                let meta = self
                    .collections
                    .get_mut(collection)
                    .ok_or_else(|| missing_collection(collection))?;
                let ids = meta
                    .shard_keys
                    .remove(key)
                    .ok_or_else(|| missing_key(key))?;
                meta.key_settings.remove(key);
                for id in &ids {
                    meta.shards.remove(id);
                }
                Ok(Applied::ShardsDeleted {
                    uid: meta.uid,
                    shards: ids,
                })
            }
            Command::CreatePayloadIndex {
                collection,
                field,
                index,
            } => {
                let meta = self
                    .collections
                    .get_mut(collection)
                    .ok_or_else(|| missing_collection(collection))?;
                if field.is_empty() || field.len() > MAX_NAME_LEN {
                    return Err(Error::bad_request("field_name must be 1 to 255 bytes long"));
                }
                meta.payload_indexes.insert(field.clone(), index.clone());
                Ok(Applied::Nothing)
            }
            Command::DeletePayloadIndex { collection, field } => {
                let meta = self
                    .collections
                    .get_mut(collection)
                    .ok_or_else(|| missing_collection(collection))?;
                meta.payload_indexes.remove(field);
                Ok(Applied::Nothing)
            }
            Command::SetTenantSuspended { tenant, suspended } => {
                validate_name("tenant", tenant)?;
                let settings = self.tenants.entry(tenant.clone()).or_default();
                settings.suspended = *suspended;
                if *settings == TenantSettings::default() {
                    self.tenants.remove(tenant);
                }
                Ok(Applied::Nothing)
            }
            Command::SetTenantQuota { tenant, quota } => {
                validate_name("tenant", tenant)?;
                if let Some(q) = quota {
                    q.validate()?;
                }
                let settings = self.tenants.entry(tenant.clone()).or_default();
                settings.quota = quota.clone();
                if *settings == TenantSettings::default() {
                    self.tenants.remove(tenant);
                }
                Ok(Applied::Nothing)
            }
            Command::SetReplicaState { .. }
            | Command::PromoteReplica { .. }
            | Command::AddReplica { .. }
            | Command::RemoveReplica { .. }
            | Command::MoveReplica { .. } => self.apply_replicas(cmd),
            Command::RetireNode { node } => {
                self.node_keys.insert(*node, RETIRED_KEY);
                Ok(Applied::Nothing)
            }
            Command::UpdateAliases { actions } => self.apply_aliases(actions),
            Command::BindNodeKey { node, key } => match self.node_keys.get(node) {
                Some(bound) if bound == key => Ok(Applied::Nothing),
                Some(_) => Err(Error::conflict(format!(
                    "node id {node} is bound to another certificate key"
                ))),
                None => {
                    self.node_keys.insert(*node, *key);
                    Ok(Applied::Nothing)
                }
            },
        }
    }

    /// Whether `tenant` is suspended.
    pub fn is_suspended(&self, tenant: &str) -> bool {
        self.tenants.get(tenant).is_some_and(|t| t.suspended)
    }
}

fn add_shards(
    meta: &mut CollectionMeta,
    key: Option<ShardKey>,
    shards: &[ShardPlacement],
) -> Result<()> {
    let mut next = meta.next_shard_id;
    for s in shards {
        if s.id < next || meta.shards.contains_key(&s.id) {
            return Err(Error::internal(format!(
                "shard id {} proposed twice in collection {}",
                s.id, meta.name
            )));
        }
        if s.nodes.is_empty() {
            return Err(Error::internal("shard proposed without replicas"));
        }
        next = s.id + 1;
    }
    for s in shards {
        meta.shards.insert(
            s.id,
            ShardMeta {
                id: s.id,
                key: key.clone(),
                replicas: s
                    .nodes
                    .iter()
                    .map(|n| Replica {
                        node: *n,
                        state: ReplicaState::Active,
                    })
                    .collect(),
                epoch: 1,
                moving: None,
            },
        );
    }
    if let Some(k) = key {
        meta.shard_keys
            .insert(k, shards.iter().map(|s| s.id).collect());
    }
    meta.next_shard_id = next;
    Ok(())
}

mod place;
pub use place::place;

/// The replica-set commands (states, promotions, added, removed and moved replicas).
mod replicas;

mod rebalance;
pub use rebalance::{PlannedMove, plan_rebalance};

/// The shapes of earlier formats, read once and converted.
mod aliases;
pub use aliases::AliasAction;
mod legacy;

#[cfg(test)]
mod tests {
    use super::*;

    /// A collection's parameters for tests (this module's and its children's).
    pub(super) fn params(method: ShardingMethod) -> CollectionParams {
        CollectionParams {
            dim: 4,
            distance: Distance::Cosine,
            sharding_method: method,
            shard_number: 2,
            replication_factor: 1,
            write_consistency_factor: 1,
            hnsw: HnswParams::default(),
            on_disk_payload: false,
        }
    }

    #[test]
    fn shard_key_lifecycle() {
        let mut st = MetadataState::default();
        st.apply(
            1,
            &Command::CreateCollection {
                name: "c".into(),
                uid: 10,
                params: params(ShardingMethod::Custom),
                shards: vec![],
            },
        )
        .expect("create");
        let key = ShardKey::Str("acme".into());
        let placed = place(&BTreeMap::from([(1, 0)]), 0, 2, 1).expect("place");
        let applied = st
            .apply(
                2,
                &Command::CreateShardKey {
                    collection: "c".into(),
                    key: key.clone(),
                    shards: placed.clone(),
                },
            )
            .expect("key");
        assert_eq!(
            applied,
            Applied::ShardsCreated {
                uid: 10,
                shards: vec![0, 1]
            }
        );
        // the same key again is refused and changes nothing
        let before = st.clone();
        let again = st.apply(
            3,
            &Command::CreateShardKey {
                collection: "c".into(),
                key: key.clone(),
                shards: vec![ShardPlacement {
                    id: 2,
                    nodes: vec![1],
                }],
            },
        );
        assert!(again.is_err());
        assert_eq!(before.collections, st.collections);
        // reused shard ids are refused
        let reuse = st.apply(
            4,
            &Command::CreateShardKey {
                collection: "c".into(),
                key: ShardKey::Num(5),
                shards: placed,
            },
        );
        assert!(reuse.is_err());
        let del = st
            .apply(
                5,
                &Command::DeleteShardKey {
                    collection: "c".into(),
                    key,
                },
            )
            .expect("delete");
        assert_eq!(
            del,
            Applied::ShardsDeleted {
                uid: 10,
                shards: vec![0, 1]
            }
        );
        assert!(st.collections["c"].shards.is_empty());
    }

    #[test]
    fn shard_keys_only_in_custom_collections() {
        let mut st = MetadataState::default();
        st.apply(
            1,
            &Command::CreateCollection {
                name: "a".into(),
                uid: 1,
                params: params(ShardingMethod::Auto),
                shards: place(&BTreeMap::from([(1, 0)]), 0, 2, 1).expect("place"),
            },
        )
        .expect("create");
        let err = st
            .apply(
                2,
                &Command::CreateShardKey {
                    collection: "a".into(),
                    key: ShardKey::Num(1),
                    shards: vec![ShardPlacement {
                        id: 2,
                        nodes: vec![1],
                    }],
                },
            )
            .expect_err("auto");
        assert_eq!(err.kind, crate::ErrorKind::BadRequest);
    }

    #[test]
    fn primaries_spread_over_the_nodes() {
        let load = BTreeMap::from([(1, 0), (2, 0), (3, 0)]);
        let placed = place(&load, 0, 6, 3).expect("place");
        let mut primaries: BTreeMap<NodeId, usize> = BTreeMap::new();
        for p in &placed {
            *primaries.entry(p.nodes[0]).or_default() += 1;
        }
        assert_eq!(primaries, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    }

    #[test]
    fn placement_spreads_and_keeps_replicas_distinct() {
        let load = BTreeMap::from([(1, 3), (2, 0), (3, 1)]);
        let p = place(&load, 7, 4, 2).expect("place");
        for s in &p {
            assert_eq!(s.nodes.len(), 2);
            assert_ne!(s.nodes[0], s.nodes[1]);
        }
        let mut first = p[0].nodes.clone();
        first.sort_unstable();
        assert_eq!(first, vec![2, 3], "the least loaded nodes");
        assert_eq!(
            p.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        let mut count = BTreeMap::new();
        for s in &p {
            for n in &s.nodes {
                *count.entry(*n).or_insert(0) += 1;
            }
        }
        // final loads are as even as possible: 3+1, 0+?, 1+?
        let total: Vec<usize> = load
            .iter()
            .map(|(n, l)| l + count.get(n).copied().unwrap_or(0))
            .collect();
        assert!(
            total.iter().max().copied().unwrap_or(0) - total.iter().min().copied().unwrap_or(0)
                <= 1
        );
        assert!(place(&load, 0, 1, 4).is_err());
    }

    /// A collection `c` (uid 10) with one auto shard on nodes 1, 2, 3 (1 primary).
    fn replicated() -> MetadataState {
        let mut st = MetadataState::default();
        let mut p = params(ShardingMethod::Auto);
        p.shard_number = 1;
        p.replication_factor = 3;
        st.apply(
            1,
            &Command::CreateCollection {
                name: "c".into(),
                uid: 10,
                params: p,
                shards: vec![ShardPlacement {
                    id: 0,
                    nodes: vec![1, 2, 3],
                }],
            },
        )
        .expect("create");
        st
    }

    fn set_state(node: NodeId, state: ReplicaState, epoch: u64) -> Command {
        Command::SetReplicaState {
            collection: "c".into(),
            uid: 10,
            shard: 0,
            node,
            state,
            epoch,
        }
    }

    fn promote(node: NodeId, epoch: u64) -> Command {
        Command::PromoteReplica {
            collection: "c".into(),
            uid: 10,
            shard: 0,
            node,
            epoch,
        }
    }

    #[test]
    fn replica_states_change_only_in_the_current_epoch() {
        let mut st = replicated();
        let shard = |st: &MetadataState| st.collections["c"].shards[&0].clone();
        assert_eq!(shard(&st).epoch, 1);
        assert_eq!(shard(&st).primary(), Some(1));
        st.apply(2, &set_state(3, ReplicaState::Dead, 1))
            .expect("the primary drops a backup");
        assert_eq!(shard(&st).in_sync().collect::<Vec<_>>(), vec![1, 2]);
        // the primary is changed only by a promotion
        let e = st
            .apply(3, &set_state(1, ReplicaState::Dead, 1))
            .expect_err("primary");
        assert_eq!(e.kind, crate::ErrorKind::Conflict);
        // a Dead replica cannot be promoted; an in-sync one can
        assert!(st.apply(4, &promote(3, 1)).is_err());
        st.apply(5, &promote(2, 1)).expect("promoted");
        let s = shard(&st);
        assert_eq!((s.primary(), s.epoch), (Some(2), 2));
        assert_eq!(
            s.state_on(1),
            Some(ReplicaState::Dead),
            "the old primary is out"
        );
        assert_eq!(s.in_sync().collect::<Vec<_>>(), vec![2]);
        // the deposed primary's epoch is stale: nothing it asks for is applied
        let before = st.clone();
        let e = st
            .apply(6, &set_state(2, ReplicaState::Dead, 1))
            .expect_err("stale");
        assert_eq!(e.kind, crate::ErrorKind::Conflict);
        assert!(st.apply(7, &promote(1, 1)).is_err());
        assert_eq!(st.collections, before.collections, "nothing changed");
        // the returning replica catches up and rejoins in the new epoch
        st.apply(8, &set_state(1, ReplicaState::Partial, 2))
            .expect("partial");
        st.apply(9, &set_state(1, ReplicaState::Active, 2))
            .expect("active");
        assert_eq!(shard(&st).in_sync().collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn a_state_of_the_format_before_epochs_is_read_with_epoch_one() {
        #[derive(Serialize)]
        struct ShardV1<'a> {
            id: ShardId,
            key: Option<ShardKey>,
            replicas: &'a [Replica],
        }
        #[derive(Serialize)]
        struct CollectionV1<'a> {
            name: &'a str,
            uid: u64,
            params: &'a CollectionParams,
            shards: BTreeMap<ShardId, ShardV1<'a>>,
            shard_keys: &'a BTreeMap<ShardKey, Vec<ShardId>>,
            payload_indexes: &'a BTreeMap<String, PayloadIndex>,
            next_shard_id: ShardId,
        }
        #[derive(Serialize)]
        struct StateV1<'a> {
            collections: BTreeMap<String, CollectionV1<'a>>,
            applied: u64,
            tenants: &'a BTreeMap<String, TenantSettings>,
        }
        let st = replicated();
        let c = &st.collections["c"];
        let v1 = StateV1 {
            collections: BTreeMap::from([(
                "c".to_string(),
                CollectionV1 {
                    name: &c.name,
                    uid: c.uid,
                    params: &c.params,
                    shards: c
                        .shards
                        .iter()
                        .map(|(id, s)| {
                            let v = ShardV1 {
                                id: s.id,
                                key: s.key.clone(),
                                replicas: &s.replicas,
                            };
                            (*id, v)
                        })
                        .collect(),
                    shard_keys: &c.shard_keys,
                    payload_indexes: &c.payload_indexes,
                    next_shard_id: c.next_shard_id,
                },
            )]),
            applied: st.applied,
            tenants: &st.tenants,
        };
        let bytes = codec::encode_as(1, &v1).expect("encode v1");
        // a collection from before id spaces keeps one id space for its tenants
        let mut old = st.clone();
        for c in old.collections.values_mut() {
            c.tenant_id_spaces = false;
        }
        assert_eq!(MetadataState::decode(&bytes).expect("read v1"), old);
        let now = st.encode().expect("encode");
        assert_eq!(MetadataState::decode(&now).expect("read"), st);
        assert!(MetadataState::decode(&[9, 0]).is_err(), "unknown format");
        // shards of formats 2 to 4 had no move intent
        let shards_v4 = |c: &CollectionMeta| -> BTreeMap<ShardId, _> {
            c.shards
                .iter()
                .map(|(id, s)| (*id, (s.id, s.key.clone(), s.replicas.clone(), s.epoch)))
                .collect()
        };
        let v3_collections: BTreeMap<&String, _> = st
            .collections
            .iter()
            .map(|(n, c)| {
                let v = (
                    &c.name,
                    c.uid,
                    &c.params,
                    shards_v4(c),
                    &c.shard_keys,
                    &c.payload_indexes,
                    c.next_shard_id,
                );
                (n, v)
            })
            .collect();
        let v2 = codec::encode_as(2, &(&v3_collections, st.applied, &st.tenants)).expect("v2");
        assert_eq!(MetadataState::decode(&v2).expect("read v2"), old);
        let v3 = codec::encode_as(
            3,
            &(&v3_collections, st.applied, &st.tenants, &st.node_keys),
        )
        .expect("v3");
        assert_eq!(MetadataState::decode(&v3).expect("read v3"), old);
        // format 4: id spaces, but no moves and no recorded key settings
        let v4_collections: BTreeMap<&String, _> = st
            .collections
            .iter()
            .map(|(n, c)| {
                let v = (
                    &c.name,
                    c.uid,
                    &c.params,
                    shards_v4(c),
                    &c.shard_keys,
                    &c.payload_indexes,
                    c.next_shard_id,
                    c.tenant_id_spaces,
                );
                (n, v)
            })
            .collect();
        let v4 = codec::encode_as(
            4,
            &(&v4_collections, st.applied, &st.tenants, &st.node_keys),
        )
        .expect("v4");
        assert_eq!(MetadataState::decode(&v4).expect("read v4"), st);
        // format 5: today's collections, no aliases
        let v5 = codec::encode_as(
            5,
            &(&st.collections, st.applied, &st.tenants, &st.node_keys),
        )
        .expect("v5");
        assert_eq!(MetadataState::decode(&v5).expect("read v5"), st);
    }

    #[test]
    fn a_format_four_state_with_keys_reads_their_settings_off_the_shards() {
        let mut st = replicated();
        st.collections.clear();
        st.apply(
            2,
            &Command::CreateCollection {
                name: "k".into(),
                uid: 11,
                params: params(ShardingMethod::Custom),
                shards: vec![],
            },
        )
        .expect("custom");
        let key = ShardKey::Str("acme".into());
        st.apply(
            3,
            &Command::CreateShardKey {
                collection: "k".into(),
                key: key.clone(),
                shards: vec![
                    ShardPlacement {
                        id: 0,
                        nodes: vec![2, 1],
                    },
                    ShardPlacement {
                        id: 1,
                        nodes: vec![3, 2],
                    },
                ],
            },
        )
        .expect("key");
        let recorded = st.collections["k"].key_settings_of(&key).expect("settings");
        assert_eq!(recorded.replication_factor, 2);
        assert_eq!(recorded.placed_on, vec![1, 2, 3]);
        let c = &st.collections["k"];
        let shards: BTreeMap<ShardId, _> = c
            .shards
            .iter()
            .map(|(id, s)| (*id, (s.id, s.key.clone(), s.replicas.clone(), s.epoch)))
            .collect();
        let v4 = codec::encode_as(
            4,
            &(
                BTreeMap::from([(
                    "k".to_string(),
                    (
                        &c.name,
                        c.uid,
                        &c.params,
                        shards,
                        &c.shard_keys,
                        &c.payload_indexes,
                        c.next_shard_id,
                        c.tenant_id_spaces,
                    ),
                )]),
                st.applied,
                &st.tenants,
                &st.node_keys,
            ),
        )
        .expect("v4");
        let read = MetadataState::decode(&v4).expect("read v4");
        let c = &read.collections["k"];
        assert!(c.key_settings.is_empty(), "format 4 recorded none");
        assert_eq!(
            c.key_settings_of(&key),
            Some(recorded),
            "read off the shards"
        );
        assert!(c.shards.values().all(|s| s.moving.is_none()));
    }

    #[test]
    fn a_move_records_its_intent_until_either_end_is_removed() {
        let mut st = replicated();
        let mv = |from, to, epoch| Command::MoveReplica {
            collection: "c".into(),
            uid: 10,
            shard: 0,
            from,
            to,
            epoch,
        };
        let shard = |st: &MetadataState| st.collections["c"].shards[&0].clone();
        assert!(
            st.apply(2, &mv(1, 2, 1)).is_err(),
            "node 2 holds one already"
        );
        assert!(
            st.apply(3, &mv(4, 5, 1)).is_err(),
            "node 4 holds none to move"
        );
        st.apply(4, &mv(1, 4, 1)).expect("move");
        let s = shard(&st);
        assert_eq!(s.moving, Some(ShardMove { from: 1, to: 4 }));
        assert_eq!(s.state_on(4), Some(ReplicaState::Partial));
        assert!(s.in_transfer());
        let e = st.apply(5, &mv(2, 5, 1)).expect_err("one move at a time");
        assert_eq!(e.kind, crate::ErrorKind::Conflict);
        // the new replica in sync, the primary hands over, the source goes: the move is done
        st.apply(6, &set_state(4, ReplicaState::Active, 1))
            .expect("in sync");
        st.apply(7, &promote(4, 1)).expect("hand over");
        assert!(shard(&st).moving.is_some(), "a promotion does not end it");
        st.apply(
            8,
            &Command::RemoveReplica {
                collection: "c".into(),
                uid: 10,
                shard: 0,
                node: 1,
                epoch: 2,
            },
        )
        .expect("source dropped");
        let s = shard(&st);
        assert_eq!(s.moving, None);
        assert!(!s.in_transfer());
        // an aborted move (the new replica dropped) ends too
        st.apply(9, &mv(2, 5, 2)).expect("another move");
        st.apply(
            10,
            &Command::RemoveReplica {
                collection: "c".into(),
                uid: 10,
                shard: 0,
                node: 5,
                epoch: 2,
            },
        )
        .expect("aborted");
        assert_eq!(shard(&st).moving, None);
    }

    #[test]
    fn replicas_are_added_partial_and_removed_but_never_the_primary() {
        let mut st = replicated();
        let add = |node| Command::AddReplica {
            collection: "c".into(),
            uid: 10,
            shard: 0,
            node,
            epoch: 1,
        };
        let remove = |node| Command::RemoveReplica {
            collection: "c".into(),
            uid: 10,
            shard: 0,
            node,
            epoch: 1,
        };
        assert!(st.apply(2, &add(2)).is_err(), "node 2 holds one already");
        st.apply(3, &add(4)).expect("added");
        let s = st.collections["c"].shards[&0].clone();
        assert_eq!(s.state_on(4), Some(ReplicaState::Partial));
        assert!(!s.in_sync().any(|n| n == 4), "not in sync until caught up");
        let e = st.apply(4, &remove(1)).expect_err("the primary");
        assert_eq!(e.kind, crate::ErrorKind::Conflict);
        st.apply(5, &remove(3)).expect("a backup");
        assert_eq!(st.collections["c"].shards[&0].state_on(3), None);
        let stale = Command::AddReplica {
            collection: "c".into(),
            uid: 10,
            shard: 0,
            node: 5,
            epoch: 0,
        };
        assert!(st.apply(6, &stale).is_err(), "stale epoch");
    }

    #[test]
    fn a_node_id_is_bound_to_one_key_for_good() {
        let mut st = MetadataState::default();
        st.apply(
            1,
            &Command::BindNodeKey {
                node: 2,
                key: [7; 32],
            },
        )
        .expect("bound");
        st.apply(
            2,
            &Command::BindNodeKey {
                node: 2,
                key: [7; 32],
            },
        )
        .expect("the same key again changes nothing");
        let e = st
            .apply(
                3,
                &Command::BindNodeKey {
                    node: 2,
                    key: [8; 32],
                },
            )
            .expect_err("another key");
        assert_eq!(e.kind, crate::ErrorKind::Conflict);
        assert_eq!(st.node_keys.get(&2), Some(&[7; 32]));
    }
}
