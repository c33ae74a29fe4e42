//! The node's catalog: proposes metadata changes and makes the shard manager follow them.
//!
//! Today the metadata lives in an embedded single-node store; the cluster work puts the same
//! commands behind Raft. Either way: the proposer decides placement and ids, `apply` is pure, and
//! the shard manager reacts to what was applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera_cluster::meta::{
    Applied, CollectionMeta, CollectionParams, Command, Distance, NodeId, PayloadIndex, ShardKey,
    ShardingMethod, place,
};
use tessera_cluster::metastore::MetaStore;
use tessera_cluster::{Error, Result};
use tessera_shard::manager::ShardManager;
use tessera_shard::store::ShardSpec;
use tessera_shard::{GraphParams, Metric};

use crate::config::NodeConfig;

/// This node's id in the metadata (a single node is node 1).
pub const LOCAL_NODE: NodeId = 1;

pub struct Catalog {
    pub config: NodeConfig,
    pub meta: Arc<MetaStore>,
    pub shards: ShardManager,
    /// Serialises proposals with the shard manager's reaction to them.
    propose_lock: tokio::sync::Mutex<()>,
}

pub fn metric_of(d: Distance) -> Metric {
    match d {
        Distance::Cosine => Metric::Cosine,
        Distance::Dot => Metric::Dot,
        Distance::Euclid => Metric::Euclid,
    }
}

impl Catalog {
    pub async fn open(config: NodeConfig) -> Result<Catalog> {
        let meta_dir = config.data_dir.join("meta");
        let meta = tokio::task::spawn_blocking(move || MetaStore::open(&meta_dir))
            .await
            .map_err(|e| Error::internal(format!("open metadata: {e}")))??;
        let shards = ShardManager::new(
            &config.data_dir.join("collections"),
            config.read_threads,
            config.build_threads,
        );
        let cat = Catalog {
            config,
            meta: Arc::new(meta),
            shards,
            propose_lock: tokio::sync::Mutex::new(()),
        };
        // open every replica placed on this node
        let specs: Vec<ShardSpec> = {
            let st = cat.meta.read();
            st.collections
                .values()
                .flat_map(|c| {
                    c.shards
                        .values()
                        .filter(|s| s.replicas.iter().any(|r| r.node == LOCAL_NODE))
                        .map(|s| cat.spec(c, s.id, s.key.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let started = std::time::Instant::now();
        for spec in specs.iter().cloned() {
            cat.shards.open(spec).await?;
        }
        tracing::info!(
            replicas = specs.len(),
            ms = started.elapsed().as_millis() as u64,
            "replicas opened"
        );
        Ok(cat)
    }

    pub fn spec(&self, c: &CollectionMeta, shard_id: u32, key: Option<ShardKey>) -> ShardSpec {
        ShardSpec {
            collection_uid: c.uid,
            shard_id,
            key,
            dim: c.params.dim,
            metric: metric_of(c.params.distance),
            graph: GraphParams {
                m: c.params.hnsw.m,
                ef_construct: c.params.hnsw.ef_construct,
            },
            indexing_threshold: self.config.indexing_threshold,
            full_scan_threshold: c.params.hnsw.full_scan_threshold,
        }
    }

    /// Runs `f` on one collection's metadata under the read lock (no copy: a collection with
    /// 100,000 shard keys must not be cloned per request).
    pub fn with_collection<T>(
        &self,
        name: &str,
        f: impl FnOnce(&CollectionMeta) -> T,
    ) -> Result<T> {
        let st = self.meta.read();
        Ok(f(st.collection(name)?))
    }

    /// A copy of one collection's metadata (admin paths only).
    pub fn collection(&self, name: &str) -> Result<CollectionMeta> {
        self.meta.read().collection(name).cloned()
    }

    pub fn collection_names(&self) -> Vec<String> {
        self.meta.read().collections.keys().cloned().collect()
    }

    async fn propose(
        &self,
        make: impl FnOnce(&tessera_cluster::meta::MetadataState, u64) -> Result<Command>
        + Send
        + 'static,
    ) -> Result<Applied> {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || meta.propose(make))
            .await
            .map_err(|e| Error::internal(format!("proposal task failed: {e}")))?
    }

    fn load(&self) -> BTreeMap<NodeId, usize> {
        let st = self.meta.read();
        let mut load = BTreeMap::from([(LOCAL_NODE, 0usize)]);
        for c in st.collections.values() {
            for s in c.shards.values() {
                for r in &s.replicas {
                    *load.entry(r.node).or_default() += 1;
                }
            }
        }
        load
    }

    /// Opens the replicas placed on this node by an applied command.
    async fn follow(&self, applied: Applied) -> Result<()> {
        match applied {
            Applied::CollectionCreated { uid } | Applied::ShardsCreated { uid, .. } => {
                let specs: Vec<ShardSpec> = {
                    let st = self.meta.read();
                    let Some(c) = st.collections.values().find(|c| c.uid == uid) else {
                        return Ok(());
                    };
                    c.shards
                        .values()
                        .filter(|s| s.replicas.iter().any(|r| r.node == LOCAL_NODE))
                        .filter(|s| !self.shards.contains((uid, s.id)))
                        .map(|s| self.spec(c, s.id, s.key.clone()))
                        .collect()
                };
                for spec in specs {
                    self.shards.open(spec).await?;
                }
            }
            Applied::CollectionDeleted { uid, shards } => {
                for s in shards {
                    self.shards.close((uid, s), false).await?;
                }
                self.shards.remove_collection_dir(uid).await?;
            }
            Applied::ShardsDeleted { uid, shards } => {
                for s in shards {
                    self.shards.close((uid, s), true).await?;
                }
            }
            Applied::Nothing => {}
        }
        Ok(())
    }

    pub async fn create_collection(&self, name: String, params: CollectionParams) -> Result<()> {
        let _g = self.propose_lock.lock().await;
        let load = self.load();
        let applied = self
            .propose(move |_, index| {
                let shards = match params.sharding_method {
                    ShardingMethod::Auto => place(
                        &load,
                        0,
                        params.shard_number,
                        params.replication_factor.min(load.len() as u32),
                    )?,
                    ShardingMethod::Custom => Vec::new(),
                };
                Ok(Command::CreateCollection {
                    name,
                    uid: index,
                    params,
                    shards,
                })
            })
            .await?;
        self.follow(applied).await
    }

    pub async fn delete_collection(&self, name: String) -> Result<()> {
        let _g = self.propose_lock.lock().await;
        let applied = self
            .propose(move |_, _| Ok(Command::DeleteCollection { name }))
            .await?;
        self.follow(applied).await
    }

    pub async fn create_shard_key(
        &self,
        collection: String,
        key: ShardKey,
        shards_number: Option<u32>,
        replication_factor: Option<u32>,
        placement: Option<Vec<NodeId>>,
    ) -> Result<()> {
        let _g = self.propose_lock.lock().await;
        let mut load = self.load();
        if let Some(p) = &placement {
            if p.is_empty() {
                return Err(Error::bad_request("placement must name at least one peer"));
            }
            if let Some(unknown) = p.iter().find(|n| !load.contains_key(n)) {
                return Err(Error::bad_request(format!(
                    "placement names unknown peer {unknown}"
                )));
            }
            load.retain(|n, _| p.contains(n));
        }
        let applied = self
            .propose(move |st, _| {
                let c = st.collection(&collection)?;
                let n = shards_number.unwrap_or(c.params.shard_number);
                if n == 0 || n > tessera_cluster::meta::MAX_SHARDS_PER_KEY {
                    return Err(Error::bad_request(format!(
                        "shards_number must be between 1 and {}",
                        tessera_cluster::meta::MAX_SHARDS_PER_KEY
                    )));
                }
                let rf = replication_factor.unwrap_or(c.params.replication_factor);
                if rf == 0 {
                    return Err(Error::bad_request("replication_factor must be at least 1"));
                }
                let shards = place(&load, c.next_shard_id, n, rf)?;
                Ok(Command::CreateShardKey {
                    collection,
                    key,
                    shards,
                })
            })
            .await?;
        self.follow(applied).await
    }

    pub async fn delete_shard_key(&self, collection: String, key: ShardKey) -> Result<()> {
        let _g = self.propose_lock.lock().await;
        let applied = self
            .propose(move |_, _| Ok(Command::DeleteShardKey { collection, key }))
            .await?;
        self.follow(applied).await
    }

    pub async fn create_payload_index(
        &self,
        collection: String,
        field: String,
        index: PayloadIndex,
    ) -> Result<u64> {
        let _g = self.propose_lock.lock().await;
        self.propose(move |_, _| {
            Ok(Command::CreatePayloadIndex {
                collection,
                field,
                index,
            })
        })
        .await?;
        Ok(self.meta.read().applied)
    }

    pub async fn delete_payload_index(&self, collection: String, field: String) -> Result<u64> {
        let _g = self.propose_lock.lock().await;
        self.propose(move |_, _| Ok(Command::DeletePayloadIndex { collection, field }))
            .await?;
        Ok(self.meta.read().applied)
    }

    /// Suspends a tenant (every request attributed to it is refused with 403) or resumes it.
    pub async fn set_tenant_suspended(&self, tenant: String, suspended: bool) -> Result<()> {
        let _g = self.propose_lock.lock().await;
        self.propose(move |_, _| Ok(Command::SetTenantSuspended { tenant, suspended }))
            .await?;
        Ok(())
    }

    /// Sets a tenant's quota, or returns it to the defaults (None).
    pub async fn set_tenant_quota(
        &self,
        tenant: String,
        quota: Option<tessera_cluster::quota::Quota>,
    ) -> Result<()> {
        let _g = self.propose_lock.lock().await;
        self.propose(move |_, _| Ok(Command::SetTenantQuota { tenant, quota }))
            .await?;
        Ok(())
    }
}
