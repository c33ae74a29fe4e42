//! The node's catalog: proposes metadata changes and makes the shard manager follow them.
//!
//! Today the metadata lives in an embedded single-node store; the cluster work puts the same
//! commands behind Raft. Either way: the proposer decides placement and ids, `apply` is pure, and
//! the shard manager reacts to what was applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera_cluster::meta::MetadataState;
use tessera_cluster::meta::{
    Applied, CollectionMeta, CollectionParams, Command, Distance, NodeId, PayloadIndex, ShardKey,
    ShardingMethod, place,
};
use tessera_cluster::metastore::MetaStore;
use tessera_cluster::raft::{MetaRaft, StateView};
use tessera_cluster::{Error, Result};
use tessera_shard::manager::ShardManager;
use tessera_shard::store::ShardSpec;
use tessera_shard::{GraphParams, Metric};

use crate::config::NodeConfig;

/// The metadata a node reads and changes: embedded on a single node, Raft-replicated in a
/// cluster. Either way `apply` is the same pure function and reads never wait for Raft.
pub enum Meta {
    Local(MetaStore),
    Raft { raft: MetaRaft, view: StateView },
}

impl Meta {
    /// A read view of the state. Do not hold it across an await.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, MetadataState> {
        match self {
            Meta::Local(m) => m.read(),
            Meta::Raft { view, .. } => view.read(),
        }
    }

    pub fn raft(&self) -> Option<&MetaRaft> {
        match self {
            Meta::Local(_) => None,
            Meta::Raft { raft, .. } => Some(raft),
        }
    }
}

/// How long a shard-key or collection change waits for its replicas to open on their nodes.
const REPLICAS_READY: std::time::Duration = std::time::Duration::from_secs(15);
/// How long a change waits for a metadata leader to be elected.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Catalog {
    pub config: NodeConfig,
    pub meta: Arc<Meta>,
    pub shards: ShardManager,
    /// This node's id in the metadata (1 for a single node).
    pub node_id: NodeId,
    /// Serialises proposals with the shard manager's reaction to them.
    propose_lock: tokio::sync::Mutex<()>,
    /// The cluster link, to forward changes to the leader and ask peers about replicas.
    link: std::sync::OnceLock<Arc<crate::cluster::Link>>,
}

pub fn metric_of(d: Distance) -> Metric {
    match d {
        Distance::Cosine => Metric::Cosine,
        Distance::Dot => Metric::Dot,
        Distance::Euclid => Metric::Euclid,
    }
}

impl Catalog {
    /// A single node with embedded metadata.
    pub async fn open(config: NodeConfig) -> Result<Catalog> {
        let meta_dir = config.data_dir.join("meta");
        let meta = tokio::task::spawn_blocking(move || MetaStore::open(&meta_dir))
            .await
            .map_err(|e| Error::internal(format!("open metadata: {e}")))??;
        Catalog::with_meta(config, Meta::Local(meta)).await
    }

    /// A cluster member whose metadata is the Raft group's.
    pub async fn open_raft(config: NodeConfig, raft: MetaRaft) -> Result<Catalog> {
        let view = raft.state();
        Catalog::with_meta(config, Meta::Raft { raft, view }).await
    }

    /// Voters the metadata group grows to (cluster mode).
    pub fn max_voters(&self) -> usize {
        self.config
            .cluster
            .as_ref()
            .map(|c| c.max_voters)
            .unwrap_or(1)
    }

    pub fn link(&self) -> Option<&Arc<crate::cluster::Link>> {
        self.link.get()
    }

    pub fn set_link(&self, link: Arc<crate::cluster::Link>) {
        let _ = self.link.set(link);
    }

    async fn with_meta(config: NodeConfig, meta: Meta) -> Result<Catalog> {
        let shards = ShardManager::new(&config.data_dir.join("collections"), config.build_threads)?;
        let node_id = config.node_id;
        let cat = Catalog {
            config,
            meta: Arc::new(meta),
            shards,
            node_id,
            propose_lock: tokio::sync::Mutex::new(()),
            link: std::sync::OnceLock::new(),
        };
        // open every replica placed on this node
        let started = std::time::Instant::now();
        let opened = cat.open_placed().await?;
        tracing::info!(
            replicas = opened,
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

    /// Proposes the command `make` builds from the current state and a fresh unique id: on a
    /// single node into the embedded store, in a cluster through Raft (this node is the leader:
    /// changes are forwarded to it first, see [`Catalog::forward`]).
    async fn propose(
        &self,
        make: impl FnOnce(&tessera_cluster::meta::MetadataState, u64) -> Result<Command>
        + Send
        + 'static,
    ) -> Result<Applied> {
        match &*self.meta {
            Meta::Local(_) => {
                let meta = self.meta.clone();
                tokio::task::spawn_blocking(move || match &*meta {
                    Meta::Local(m) => m.propose(make),
                    Meta::Raft { .. } => Err(Error::internal("metadata backend changed")),
                })
                .await
                .map_err(|e| Error::internal(format!("proposal task failed: {e}")))?
            }
            Meta::Raft { raft, view } => {
                // unique for the cluster's life: a term has one leader, and it proposes one
                // change at a time (propose_lock) at increasing log indexes
                let m = raft.metrics();
                let uid = (m.term << 40) | (m.last_log_index.unwrap_or(0) + 1);
                let command = {
                    let st = view.read();
                    make(&st, uid)?
                };
                raft.propose(command).await.map_err(Error::from)
            }
        }
    }

    /// In a cluster, on a node that is not the leader: sends the change to the leader, waits
    /// until this node has applied it, and answers for it. `None`: this node decides.
    async fn forward(&self, op: crate::cluster::MetaOp) -> Option<Result<()>> {
        let raft = self.meta.raft()?;
        let Some(link) = self.link.get() else {
            return Some(Err(Error::unavailable("the cluster link is not ready")));
        };
        // a leader that is down is being replaced: wait (bounded) for the next one and send
        // the change there
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let leader = match raft.leader() {
                Some((id, _)) if id == self.node_id => return None,
                Some((id, _)) if link.check_up(id).is_ok() => Some(id),
                _ => None,
            };
            if let Some(leader) = leader {
                match link.forward_meta(leader, op.clone()).await {
                    Ok(index) => return Some(raft.wait_applied(index, REPLICAS_READY).await),
                    Err(e) if e.kind == tessera_cluster::ErrorKind::Unavailable => {
                        tracing::debug!(leader, error = %e, "forward failed; looking for the leader");
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Some(Err(Error::unavailable(
                    "no reachable metadata leader; retry",
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// After a change: on a single node the shard manager follows it now; in a cluster every
    /// node follows the Raft log, and this waits until the replicas the change created are open
    /// on their nodes.
    async fn settle(&self, applied: Applied) -> Result<()> {
        match &*self.meta {
            Meta::Local(_) => self.follow(applied).await,
            Meta::Raft { .. } => {
                let (uid, shards) = match &applied {
                    Applied::CollectionCreated { uid } => (*uid, None),
                    Applied::ShardsCreated { uid, shards } => (*uid, Some(shards.clone())),
                    _ => return Ok(()),
                };
                let placed: Vec<(NodeId, u32)> = {
                    let st = self.meta.read();
                    let Some(c) = st.collections.values().find(|c| c.uid == uid) else {
                        return Ok(());
                    };
                    c.shards
                        .values()
                        .filter(|s| shards.as_ref().is_none_or(|ids| ids.contains(&s.id)))
                        .flat_map(|s| s.replicas.iter().map(move |r| (r.node, s.id)))
                        .collect()
                };
                let deadline = tokio::time::Instant::now() + REPLICAS_READY;
                for (node, shard) in placed {
                    loop {
                        let open = if node == self.node_id {
                            self.shards.contains((uid, shard))
                        } else {
                            match self.link.get() {
                                Some(link) => link.has_replica(node, uid, shard).await,
                                None => false,
                            }
                        };
                        if open {
                            break;
                        }
                        if tokio::time::Instant::now() >= deadline {
                            return Err(Error::timeout(format!(
                                "shard {shard} is not yet active on peer {node}; it will be once the peer applies the change"
                            )));
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
                Ok(())
            }
        }
    }

    /// Opens every replica placed on this node that is not open yet (after a restart, or a
    /// snapshot installed from the leader).
    pub async fn open_placed(&self) -> Result<usize> {
        let self_node = self.node_id;
        let specs: Vec<ShardSpec> = {
            let st = self.meta.read();
            st.collections
                .values()
                .flat_map(|c| {
                    c.shards
                        .values()
                        .filter(|s| s.replicas.iter().any(|r| r.node == self_node))
                        .filter(|s| !self.shards.contains((c.uid, s.id)))
                        .map(|s| self.spec(c, s.id, s.key.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let n = specs.len();
        for spec in specs {
            self.shards.open(spec).await?;
        }
        Ok(n)
    }

    fn load(&self) -> BTreeMap<NodeId, usize> {
        let st = self.meta.read();
        let mut load = BTreeMap::from([(self.node_id, 0usize)]);
        if let Some(raft) = self.meta.raft() {
            for id in raft.metrics().nodes.keys() {
                load.entry(*id).or_insert(0);
            }
        }
        for c in st.collections.values() {
            for s in c.shards.values() {
                for r in &s.replicas {
                    *load.entry(r.node).or_default() += 1;
                }
            }
        }
        // new replicas go to reachable nodes only
        if let Some(link) = self.link.get() {
            load.retain(|id, _| *id == self.node_id || link.check_up(*id).is_ok());
        }
        load
    }

    /// Makes this node's replicas follow one applied command: opens those placed on it, closes
    /// (and removes) those deleted. In a cluster every node runs this for every command.
    pub(crate) async fn follow(&self, applied: Applied) -> Result<()> {
        match applied {
            Applied::CollectionCreated { uid } | Applied::ShardsCreated { uid, .. } => {
                let specs: Vec<ShardSpec> = {
                    let st = self.meta.read();
                    let Some(c) = st.collections.values().find(|c| c.uid == uid) else {
                        return Ok(());
                    };
                    c.shards
                        .values()
                        .filter(|s| s.replicas.iter().any(|r| r.node == self.node_id))
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
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::CreateCollection {
                name: name.clone(),
                params: params.clone(),
            })
            .await
        {
            return r;
        }
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
        self.settle(applied).await
    }

    pub async fn delete_collection(&self, name: String) -> Result<()> {
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::DeleteCollection { name: name.clone() })
            .await
        {
            return r;
        }
        let _g = self.propose_lock.lock().await;
        let applied = self
            .propose(move |_, _| Ok(Command::DeleteCollection { name }))
            .await?;
        self.settle(applied).await
    }

    pub async fn create_shard_key(
        &self,
        collection: String,
        key: ShardKey,
        shards_number: Option<u32>,
        replication_factor: Option<u32>,
        placement: Option<Vec<NodeId>>,
    ) -> Result<()> {
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::CreateShardKey {
                collection: collection.clone(),
                key: key.clone(),
                shards_number,
                replication_factor,
                placement: placement.clone(),
            })
            .await
        {
            return r;
        }
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
        self.settle(applied).await
    }

    pub async fn delete_shard_key(&self, collection: String, key: ShardKey) -> Result<()> {
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::DeleteShardKey {
                collection: collection.clone(),
                key: key.clone(),
            })
            .await
        {
            return r;
        }
        let _g = self.propose_lock.lock().await;
        let applied = self
            .propose(move |_, _| Ok(Command::DeleteShardKey { collection, key }))
            .await?;
        self.settle(applied).await
    }

    pub async fn create_payload_index(
        &self,
        collection: String,
        field: String,
        index: PayloadIndex,
    ) -> Result<u64> {
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::CreatePayloadIndex {
                collection: collection.clone(),
                field: field.clone(),
                index: index.clone(),
            })
            .await
        {
            return r.map(|()| self.meta.read().applied);
        }
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
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::DeletePayloadIndex {
                collection: collection.clone(),
                field: field.clone(),
            })
            .await
        {
            return r.map(|()| self.meta.read().applied);
        }
        let _g = self.propose_lock.lock().await;
        self.propose(move |_, _| Ok(Command::DeletePayloadIndex { collection, field }))
            .await?;
        Ok(self.meta.read().applied)
    }

    /// Suspends a tenant (every request attributed to it is refused with 403) or resumes it.
    pub async fn set_tenant_suspended(&self, tenant: String, suspended: bool) -> Result<()> {
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::SetTenantSuspended {
                tenant: tenant.clone(),
                suspended,
            })
            .await
        {
            return r;
        }
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
        if let Some(r) = self
            .forward(crate::cluster::MetaOp::SetTenantQuota {
                tenant: tenant.clone(),
                quota: quota.clone(),
            })
            .await
        {
            return r;
        }
        let _g = self.propose_lock.lock().await;
        self.propose(move |_, _| Ok(Command::SetTenantQuota { tenant, quota }))
            .await?;
        Ok(())
    }

    /// Runs a metadata change forwarded by another node (this node is the leader, or says why
    /// not): the same path as a change made over this node's API. Answers the applied index.
    pub async fn execute(&self, op: crate::cluster::MetaOp) -> Result<u64> {
        use crate::cluster::MetaOp as Op;
        if let Some(raft) = self.meta.raft()
            && raft.leader().map(|(id, _)| id) != Some(self.node_id)
        {
            return Err(Error::unavailable(
                "this node is no longer the metadata leader; retry",
            ));
        }
        match op {
            Op::CreateCollection { name, params } => self.create_collection(name, params).await?,
            Op::DeleteCollection { name } => self.delete_collection(name).await?,
            Op::CreateShardKey {
                collection,
                key,
                shards_number,
                replication_factor,
                placement,
            } => {
                self.create_shard_key(
                    collection,
                    key,
                    shards_number,
                    replication_factor,
                    placement,
                )
                .await?
            }
            Op::DeleteShardKey { collection, key } => {
                self.delete_shard_key(collection, key).await?
            }
            Op::CreatePayloadIndex {
                collection,
                field,
                index,
            } => {
                self.create_payload_index(collection, field, index).await?;
            }
            Op::DeletePayloadIndex { collection, field } => {
                self.delete_payload_index(collection, field).await?;
            }
            Op::SetTenantSuspended { tenant, suspended } => {
                self.set_tenant_suspended(tenant, suspended).await?
            }
            Op::SetTenantQuota { tenant, quota } => self.set_tenant_quota(tenant, quota).await?,
        }
        Ok(self.meta.read().applied)
    }
}
