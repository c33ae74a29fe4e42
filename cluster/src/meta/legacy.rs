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
                };
                (name, meta)
            })
            .collect();
        MetadataState {
            collections,
            applied: v.applied,
            tenants: v.tenants,
            node_keys: BTreeMap::new(),
        }
    }
}

/// A collection of formats 2 and 3: before tenant id spaces.
#[derive(Deserialize)]
pub(super) struct CollectionV3 {
    name: String,
    uid: u64,
    params: CollectionParams,
    shards: BTreeMap<ShardId, ShardMeta>,
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
            shards: c.shards,
            shard_keys: c.shard_keys,
            payload_indexes: c.payload_indexes,
            next_shard_id: c.next_shard_id,
            tenant_id_spaces: false,
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
        }
    }
}
