//! The shapes of the metadata state's earlier formats, read once and converted.
use super::*;

#[derive(Deserialize)]
pub(super) struct ShardV1 {
    id: ShardId,
    key: Option<ShardKey>,
    replicas: Vec<Replica>,
}

#[derive(Deserialize)]
pub(super) struct CollectionV1 {
    name: String,
    uid: u64,
    params: CollectionParams,
    shards: BTreeMap<ShardId, ShardV1>,
    shard_keys: BTreeMap<ShardKey, Vec<ShardId>>,
    payload_indexes: BTreeMap<String, PayloadIndex>,
    next_shard_id: ShardId,
}

#[derive(Deserialize)]
pub(super) struct StateV1 {
    collections: BTreeMap<String, CollectionV1>,
    applied: u64,
    tenants: BTreeMap<String, TenantSettings>,
}

impl From<StateV1> for MetadataState {
    fn from(v: StateV1) -> MetadataState {
        let collections = v
            .collections
            .into_iter()
            .map(|(name, c)| {
                let shards = c
                    .shards
                    .into_iter()
                    .map(|(id, s)| {
                        let shard = ShardMeta {
                            id: s.id,
                            key: s.key,
                            replicas: s.replicas,
                            epoch: 1,
                            moving: None,
                        };
                        (id, shard)
                    })
                    .collect();
                let meta = CollectionMeta {
                    name: c.name,
                    uid: c.uid,
                    params: c.params,
                    shards,
                    shard_keys: c.shard_keys,
                    payload_indexes: c.payload_indexes,
                    next_shard_id: c.next_shard_id,
                    tenant_id_spaces: false,
                    key_settings: BTreeMap::new(),
                };
                (name, meta)
            })
            .collect();
        MetadataState {
            collections,
            applied: v.applied,
            tenants: v.tenants,
            node_keys: BTreeMap::new(),
            aliases: BTreeMap::new(),
        }
    }
}

/// A shard of formats 2 to 4: before moves were recorded.
#[derive(Deserialize)]
pub(super) struct ShardV4 {
    id: ShardId,
    key: Option<ShardKey>,
    replicas: Vec<Replica>,
    epoch: u64,
}

impl From<ShardV4> for ShardMeta {
    fn from(s: ShardV4) -> ShardMeta {
        ShardMeta {
            id: s.id,
            key: s.key,
            replicas: s.replicas,
            epoch: s.epoch,
            moving: None,
        }
    }
}

fn shards_of(s: BTreeMap<ShardId, ShardV4>) -> BTreeMap<ShardId, ShardMeta> {
    s.into_iter().map(|(id, s)| (id, s.into())).collect()
}

/// A collection of formats 2 and 3: before tenant id spaces.
#[derive(Deserialize)]
pub(super) struct CollectionV3 {
    name: String,
    uid: u64,
    params: CollectionParams,
    shards: BTreeMap<ShardId, ShardV4>,
    shard_keys: BTreeMap<ShardKey, Vec<ShardId>>,
    payload_indexes: BTreeMap<String, PayloadIndex>,
    next_shard_id: ShardId,
}

impl From<CollectionV3> for CollectionMeta {
    fn from(c: CollectionV3) -> CollectionMeta {
        CollectionMeta {
            name: c.name,
            uid: c.uid,
            params: c.params,
            shards: shards_of(c.shards),
            shard_keys: c.shard_keys,
            payload_indexes: c.payload_indexes,
            next_shard_id: c.next_shard_id,
            tenant_id_spaces: false,
            key_settings: BTreeMap::new(),
        }
    }
}

fn collections_of(c: BTreeMap<String, CollectionV3>) -> BTreeMap<String, CollectionMeta> {
    c.into_iter().map(|(n, c)| (n, c.into())).collect()
}

#[derive(Deserialize)]
pub(super) struct StateV2 {
    collections: BTreeMap<String, CollectionV3>,
    applied: u64,
    tenants: BTreeMap<String, TenantSettings>,
}

impl From<StateV2> for MetadataState {
    fn from(v: StateV2) -> MetadataState {
        MetadataState {
            collections: collections_of(v.collections),
            applied: v.applied,
            tenants: v.tenants,
            node_keys: BTreeMap::new(),
            aliases: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct StateV3 {
    collections: BTreeMap<String, CollectionV3>,
    applied: u64,
    tenants: BTreeMap<String, TenantSettings>,
    node_keys: BTreeMap<NodeId, [u8; 32]>,
}

impl From<StateV3> for MetadataState {
    fn from(v: StateV3) -> MetadataState {
        MetadataState {
            collections: collections_of(v.collections),
            applied: v.applied,
            tenants: v.tenants,
            node_keys: v.node_keys,
            aliases: BTreeMap::new(),
        }
    }
}

/// A collection of format 4: before moves and key settings were recorded.
#[derive(Deserialize)]
pub(super) struct CollectionV4 {
    name: String,
    uid: u64,
    params: CollectionParams,
    shards: BTreeMap<ShardId, ShardV4>,
    shard_keys: BTreeMap<ShardKey, Vec<ShardId>>,
    payload_indexes: BTreeMap<String, PayloadIndex>,
    next_shard_id: ShardId,
    tenant_id_spaces: bool,
}

#[derive(Deserialize)]
pub(super) struct StateV4 {
    collections: BTreeMap<String, CollectionV4>,
    applied: u64,
    tenants: BTreeMap<String, TenantSettings>,
    node_keys: BTreeMap<NodeId, [u8; 32]>,
}

impl From<StateV4> for MetadataState {
    fn from(v: StateV4) -> MetadataState {
        let collections = v
            .collections
            .into_iter()
            .map(|(name, c)| {
                let meta = CollectionMeta {
                    name: c.name,
                    uid: c.uid,
                    params: c.params,
                    shards: shards_of(c.shards),
                    shard_keys: c.shard_keys,
                    payload_indexes: c.payload_indexes,
                    next_shard_id: c.next_shard_id,
                    tenant_id_spaces: c.tenant_id_spaces,
                    key_settings: BTreeMap::new(),
                };
                (name, meta)
            })
            .collect();
        MetadataState {
            collections,
            applied: v.applied,
            tenants: v.tenants,
            node_keys: v.node_keys,
            aliases: BTreeMap::new(),
        }
    }
}

/// The state of format 5: before aliases (its collections are today's).
#[derive(Deserialize)]
pub(super) struct StateV5 {
    collections: BTreeMap<String, CollectionMeta>,
    applied: u64,
    tenants: BTreeMap<String, TenantSettings>,
    node_keys: BTreeMap<NodeId, [u8; 32]>,
}

impl From<StateV5> for MetadataState {
    fn from(v: StateV5) -> MetadataState {
        MetadataState {
            collections: v.collections,
            applied: v.applied,
            tenants: v.tenants,
            node_keys: v.node_keys,
            aliases: BTreeMap::new(),
        }
    }
}
