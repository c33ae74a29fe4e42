//! The node's catalog: submits metadata changes and makes the shard manager follow them.
//!
//! The metadata lives in an embedded single-node store, or in a cluster behind Raft. Either way
//! a change is a [`MetaRequest`] that goes one path, [`Catalog::submit`]: forwarded to the leader
//! when this node is not it, else serialised, decided against the current state and load
//! ([`tessera_cluster::request::decide`], pure), proposed, and settled (the replicas it created
//! are open on their nodes). `apply` is pure, and every node's shard manager follows what was
//! applied ([`Catalog::follow`], [`Catalog::follow_raft`]).
//!
//! Architecture invariants:
//! - Only the leader proposes; every other node forwards the request and waits until it has
//!   applied it itself, so a client reads its own change on the node it asked.
//! - Every node opens and closes its replicas by following the applied log, never by being told.
//! - The catalog reaches other nodes only through the [`Link`] it is built with; it does not
//!   import the peer service, the router or the API.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_cluster::meta::{
    Applied, CollectionMeta, Command, Distance, MetadataState, NodeId, ShardId, ShardKey,
};
use tessera_cluster::metastore::MetaStore;
use tessera_cluster::raft::{MetaEvent, MetaRaft, StateView};
use tessera_cluster::request::{MetaRequest, decide, existing_key};
use tessera_cluster::transport::BoxFuture;
use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::manager::ShardManager;
use tessera_shard::store::ShardSpec;
use tessera_shard::{GraphParams, Metric};
use tokio::sync::broadcast::error::RecvError;

use crate::config::NodeConfig;
use crate::peer::membership::learn_addresses;
use crate::peer::{Link, MetaExecutor};
use crate::read_barrier::{ReadBarrier, unconfirmed};

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

/// How long a shard-key or collection change waits for its replicas to open on the nodes that
/// answer; those not open by then are reported pending (each opens its replicas when it applies
/// the change), and nodes that are down are not waited for at all.
const REPLICAS_READY: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest wait for one node's answer about one replica within [`REPLICAS_READY`].
const REPLICA_PROBE: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a follower waits to apply a change its leader committed.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// How long a create that the leader found done already waits to see the key here.
const KEY_VISIBLE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long a change waits for a metadata leader to be elected.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a node that reaches no other voter waits before it refuses a change (503): a
/// partition, not an election.
const CUT_OFF_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest read barrier: the leader confirms its read index and this node applies it.
pub const READ_BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Catalog {
    pub config: NodeConfig,
    pub meta: Arc<Meta>,
    pub shards: Arc<ShardManager>,
    /// This node's id in the metadata (1 for a single node).
    pub node_id: NodeId,
    /// Serialises proposals with the shard manager's reaction to them.
    propose_lock: tokio::sync::Mutex<()>,
    /// The cluster link, to forward changes to the leader and ask peers about replicas (None
    /// on a single node).
    link: Option<Arc<Link>>,
    /// Coalesces the read barriers of this node's reads ([`Catalog::read_barrier`]).
    barrier: ReadBarrier,
}

/// What a shard-key create did: whether this request created the key (false: it was there with
/// the same settings), and the replicas (shard, node) not open on their nodes yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOutcome {
    pub created: bool,
    pub pending: Vec<(ShardId, NodeId)>,
}

pub fn metric_of(distance: Distance) -> Metric {
    match distance {
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
        Catalog::with_meta(config, Meta::Local(meta), None).await
    }

    /// A cluster member whose metadata is the Raft group's, reaching peers through `link`.
    pub async fn open_raft(config: NodeConfig, raft: MetaRaft, link: Arc<Link>) -> Result<Catalog> {
        let view = raft.state();
        Catalog::with_meta(config, Meta::Raft { raft, view }, Some(link)).await
    }

    /// Voters the metadata group grows to (cluster mode).
    pub fn max_voters(&self) -> usize {
        self.config
            .cluster
            .as_ref()
            .map(|c| c.max_voters)
            .unwrap_or(1)
    }

    /// Waits until this node's metadata holds every change committed before the call (in a
    /// cluster: the leader's read index is applied here), so a read of a replica this view
    /// calls in sync misses no acknowledged write. Immediate on a single node. Fails (503,
    /// retry elsewhere) when no leader confirms within [`READ_BARRIER_WAIT`].
    pub async fn read_barrier(&self) -> Result<()> {
        let Some(raft) = self.meta.raft() else {
            return Ok(());
        };
        self.barrier
            .pass(|| async {
                let round = async {
                    let index = match raft.leader() {
                        Some((id, _)) if id == self.node_id => raft
                            .read_index(crate::peer::link::READ_INDEX_DEADLINE)
                            .await
                            .map_err(Error::from)?,
                        Some((id, _)) => {
                            let link = self.link.as_ref().ok_or_else(|| {
                                Error::internal("a cluster member without a link")
                            })?;
                            link.check_up(id)?;
                            link.read_index(id).await?
                        }
                        None => return Err(Error::unavailable("no metadata leader is known")),
                    };
                    raft.wait_applied(index, READ_BARRIER_WAIT).await
                };
                match tokio::time::timeout(READ_BARRIER_WAIT, round).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(unconfirmed(&e)),
                    Err(_) => Err(unconfirmed(&Error::timeout(format!(
                        "no answer within {READ_BARRIER_WAIT:?}"
                    )))),
                }
            })
            .await
    }

    /// The cluster link (None on a single node).
    pub fn link(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
    }

    async fn with_meta(config: NodeConfig, meta: Meta, link: Option<Arc<Link>>) -> Result<Catalog> {
        let shards = Arc::new(ShardManager::new(
            &config.data_dir.join("collections"),
            config.build_threads,
        )?);
        let node_id = config.node_id;
        let cat = Catalog {
            config,
            meta: Arc::new(meta),
            shards,
            node_id,
            propose_lock: tokio::sync::Mutex::new(()),
            link,
            barrier: ReadBarrier::default(),
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

    pub fn spec(
        &self,
        collection: &CollectionMeta,
        shard_id: u32,
        key: Option<ShardKey>,
    ) -> ShardSpec {
        ShardSpec {
            collection_uid: collection.uid,
            shard_id,
            key,
            dim: collection.params.dim,
            metric: metric_of(collection.params.distance),
            graph: GraphParams {
                m: collection.params.hnsw.m,
                ef_construct: collection.params.hnsw.ef_construct,
            },
            payload_m: collection.params.hnsw.payload_m,
            partition_field: partition_field(collection),
            indexing_threshold: self.config.indexing_threshold,
            full_scan_threshold: collection.params.hnsw.full_scan_threshold,
        }
    }

    /// Makes a metadata change: forwarded to the leader if this node is not it, else decided,
    /// proposed and settled here. Answers the index this node has applied (at least the
    /// change's), so a read on this node sees it.
    pub async fn submit(&self, request: MetaRequest) -> Result<u64> {
        if let Some(forwarded) = self.forward(&request).await {
            forwarded?;
            return Ok(self.meta.read().applied);
        }
        let _serialised = self.propose_lock.lock().await;
        let (load, reachable) = self.load();
        let applied = self
            .propose(move |state, uid| {
                let command = decide(state, &load, uid, request)?;
                check_reachable(&command, &reachable)?;
                Ok(command)
            })
            .await?;
        self.settle(applied).await?;
        Ok(self.meta.read().applied)
    }

    /// Runs a metadata change forwarded by another node (this node is the leader, or says why
    /// not): the same path as a change made over this node's API. Answers the applied index.
    pub async fn execute(&self, request: MetaRequest) -> Result<u64> {
        if let Some(raft) = self.meta.raft()
            && raft.leader().map(|(id, _)| id) != Some(self.node_id)
        {
            return Err(Error::unavailable(
                "this node is no longer the metadata leader; retry",
            ));
        }
        self.submit(request).await
    }

    /// Proposes the command `make` builds from the current state and a fresh unique id: on a
    /// single node into the embedded store, in a cluster through Raft (this node is the leader:
    /// changes are forwarded to it first, see [`Catalog::forward`]).
    async fn propose(
        &self,
        make: impl FnOnce(&MetadataState, u64) -> Result<Command> + Send + 'static,
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
    async fn forward(&self, request: &MetaRequest) -> Option<Result<()>> {
        let raft = self.meta.raft()?;
        let Some(link) = self.link.as_ref() else {
            return Some(Err(Error::internal("a cluster member without a link")));
        };
        // a leader that is down is being replaced: wait (bounded) for the next one and send
        // the change there
        let started = tokio::time::Instant::now();
        let deadline = started + LEADER_WAIT;
        loop {
            // a node that reaches no other voter (cut off) has no leader to wait for
            let voters = raft.metrics().voters;
            let cut_off = voters
                .iter()
                .filter(|v| **v != self.node_id)
                .all(|v| link.check_up(*v).is_err());
            if cut_off && started.elapsed() >= CUT_OFF_WAIT {
                return Some(Err(Error::unavailable(
                    "this node reaches no other member of the metadata group; retry, or ask another node",
                )));
            }
            let leader = match raft.leader() {
                Some((id, _)) if id == self.node_id => return None,
                Some((id, _)) if link.check_up(id).is_ok() => Some(id),
                _ => None,
            };
            if let Some(leader) = leader {
                match link.forward_meta(leader, request.clone()).await {
                    Ok(index) => return Some(raft.wait_applied(index, APPLY_WAIT).await),
                    Err(e) if e.kind == ErrorKind::Unavailable => {
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
    /// node follows the Raft log, and this waits (briefly, see [`REPLICAS_READY`]) until the
    /// replicas the change created are open on their nodes. Never fails for a replica that is
    /// not open yet: the change is committed, and its node opens it when it applies the log.
    async fn settle(&self, applied: Applied) -> Result<()> {
        match &*self.meta {
            Meta::Local(_) => self.follow(applied).await,
            Meta::Raft { .. } => {
                let (uid, shards) = match &applied {
                    Applied::CollectionCreated { uid } => (*uid, None),
                    Applied::ShardsCreated { uid, shards } => (*uid, Some(shards.clone())),
                    Applied::CollectionDeleted { .. }
                    | Applied::ShardsDeleted { .. }
                    | Applied::ReplicasChanged { .. }
                    | Applied::Nothing => return Ok(()),
                };
                let pending = self.pending_replicas(uid, shards.as_deref()).await;
                if !pending.is_empty() {
                    tracing::info!(
                        uid,
                        ?pending,
                        "replicas not open yet; their nodes open them when they apply the change"
                    );
                }
                Ok(())
            }
        }
    }

    /// The replicas (shard, node) of collection `uid` (only `shards`, if given) that are not
    /// open on their nodes after a wait of at most [`REPLICAS_READY`]: nodes the link says are
    /// down are not asked, and each other is asked with a short deadline.
    pub async fn pending_replicas(
        &self,
        uid: u64,
        shards: Option<&[ShardId]>,
    ) -> Vec<(ShardId, NodeId)> {
        let mut pending: Vec<(ShardId, NodeId)> = {
            let st = self.meta.read();
            let Some(c) = st.collections.values().find(|c| c.uid == uid) else {
                return Vec::new();
            };
            c.shards
                .values()
                .filter(|s| shards.is_none_or(|ids| ids.contains(&s.id)))
                .flat_map(|s| s.replicas.iter().map(move |r| (s.id, r.node)))
                .collect()
        };
        let deadline = tokio::time::Instant::now() + REPLICAS_READY;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (shard, node) in pending {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let open = if node == self.node_id {
                    self.shards.contains((uid, shard))
                } else {
                    match &self.link {
                        Some(link) if !left.is_zero() => {
                            link.has_replica_within(node, uid, shard, left.min(REPLICA_PROBE))
                                .await
                        }
                        _ => false,
                    }
                };
                if !open {
                    still.push((shard, node));
                }
            }
            pending = still;
            // nodes that are down are not waited for
            let waiting = pending.iter().any(|(_, node)| {
                *node == self.node_id
                    || self
                        .link
                        .as_ref()
                        .is_some_and(|l| l.check_up(*node).is_ok())
            });
            if pending.is_empty() || !waiting || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        pending
    }

    /// Creates a shard key, idempotently: a key that exists with the settings asked for is
    /// answered as there (`created: false`), one with other settings is a 409 naming the
    /// differences. A create that failed after it may have been committed (a timeout, the
    /// leader lost) says that its outcome is unknown and that a retry is safe. Replicas not
    /// open on their nodes yet are reported pending; they open when their node applies the log.
    pub async fn create_shard_key(&self, request: MetaRequest) -> Result<KeyOutcome> {
        let MetaRequest::CreateShardKey {
            collection,
            key,
            shards_number,
            replication_factor,
            placement,
        } = &request
        else {
            return Err(Error::internal("create_shard_key of another request"));
        };
        let (collection, key) = (collection.clone(), key.clone());
        let (n, rf, placement) = (*shards_number, *replication_factor, placement.clone());
        // a collection this node has not applied yet is the leader's to judge
        let there = |st: &MetadataState| match existing_key(
            st,
            &collection,
            &key,
            n,
            rf,
            placement.as_deref(),
        ) {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            other => other,
        };
        if there(&self.meta.read())? {
            return Ok(self.key_outcome(&collection, &key, false).await);
        }
        let failed = match self.submit(request).await {
            Ok(_) => return Ok(self.key_outcome(&collection, &key, true).await),
            Err(e) => e,
        };
        // the key may be there all the same: committed by an earlier try of this create, or by
        // the leader before its answer was lost; the leader said so (AlreadyExists) before this
        // node applied it, maybe
        let wait = match failed.kind {
            ErrorKind::AlreadyExists => KEY_VISIBLE_WAIT,
            _ => std::time::Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if there(&self.meta.read())? {
                return Ok(self.key_outcome(&collection, &key, false).await);
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        match failed.kind {
            ErrorKind::Timeout | ErrorKind::Unavailable => Err(Error::new(
                failed.kind,
                format!(
                    "{}; the shard key {key} may or may not have been created: retrying the same create is safe",
                    failed.message
                ),
            )),
            ErrorKind::AlreadyExists => Err(Error::unavailable(format!(
                "{}, but this node has not applied it yet: retrying the same create is safe",
                failed.message
            ))),
            _ => Err(failed),
        }
    }

    /// What a create of `key` amounts to now: whether it created it, and which of its replicas
    /// are not open yet.
    async fn key_outcome(&self, collection: &str, key: &ShardKey, created: bool) -> KeyOutcome {
        let found = {
            let st = self.meta.read();
            st.collections
                .get(collection)
                .and_then(|c| c.shards_of_key(key).map(|ids| (c.uid, ids.to_vec())))
        };
        let pending = match found {
            Some((uid, ids)) => self.pending_replicas(uid, Some(&ids)).await,
            None => Vec::new(),
        };
        KeyOutcome { created, pending }
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

    /// Every member (this node included) with the replicas it holds, for placement, and the
    /// members reachable now. Unreachable members weigh more than any reachable one, so new
    /// replicas go to reachable nodes first.
    fn load(&self) -> (BTreeMap<NodeId, usize>, BTreeSet<NodeId>) {
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
                    // a node that is no member any more (removed) takes no new replicas
                    if let Some(held) = load.get_mut(&r.node) {
                        *held += 1;
                    }
                }
            }
        }
        let reachable: BTreeSet<NodeId> = load
            .keys()
            .copied()
            .filter(|id| {
                *id == self.node_id || self.link.as_ref().is_none_or(|l| l.check_up(*id).is_ok())
            })
            .collect();
        for (id, held) in load.iter_mut() {
            if !reachable.contains(id) {
                *held += UNREACHABLE_WEIGHT;
            }
        }
        (load, reachable)
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
            Applied::ReplicasChanged { uid, shard } => {
                // a replica added here opens (empty, to catch up); one removed from here closes
                // and its data goes
                let (placed, spec) = {
                    let st = self.meta.read();
                    let c = st.collections.values().find(|c| c.uid == uid);
                    let s = c.and_then(|c| c.shards.get(&shard).map(|s| (c, s)));
                    match s {
                        Some((c, s)) => (
                            s.replicas.iter().any(|r| r.node == self.node_id),
                            Some(self.spec(c, s.id, s.key.clone())),
                        ),
                        None => (false, None),
                    }
                };
                let open = self.shards.contains((uid, shard));
                match (placed, open, spec) {
                    (true, false, Some(spec)) => self.shards.open(spec).await?,
                    (false, true, _) => self.shards.close((uid, shard), true).await?,
                    _ => {}
                }
            }
            Applied::Nothing => {}
        }
        self.follow_partitions();
        Ok(())
    }

    /// Gives every open replica of a collection with per-tenant graphs its partition field as
    /// the metadata has it now (an `is_tenant` index made or dropped).
    fn follow_partitions(&self) {
        let st = self.meta.read();
        for c in st.collections.values() {
            if c.params.hnsw.payload_m.is_none() && c.params.hnsw.m > 0 {
                continue;
            }
            let field = partition_field(c);
            for s in c.shards.values() {
                if let Some(data) = self.shards.data((c.uid, s.id)) {
                    data.set_partition_field(field.clone());
                }
            }
        }
    }
}

/// The field a collection's points are grouped by for per-tenant graphs (`payload_m`): its
/// `is_tenant` keyword (or uuid) index, else its first keyword index, as Qdrant builds
/// `payload_m` links for keyword indexes.
pub fn partition_field(c: &CollectionMeta) -> Option<String> {
    use tessera_cluster::meta::{PayloadIndex, PayloadSchemaType};
    let keyword = |ix: &PayloadIndex| {
        matches!(
            ix.schema,
            PayloadSchemaType::Keyword | PayloadSchemaType::Uuid
        )
    };
    let indexes = || c.payload_indexes.iter().filter(|(_, ix)| keyword(ix));
    indexes()
        .find(|(_, ix)| ix.is_tenant)
        .or_else(|| indexes().next())
        .map(|(field, _)| field.clone())
}

impl Catalog {
    /// Follows the Raft log on every node: opens and closes this node's replicas for every
    /// applied command, and keeps the link's address book current with the membership. After a
    /// snapshot (or a lag) the whole state is followed again. Runs until Raft stops.
    pub async fn follow_raft(self: Arc<Self>) {
        let Some(raft) = self.meta.raft().cloned() else {
            return;
        };
        let mut events = raft.subscribe();
        if let Err(e) = self.open_placed().await {
            tracing::error!(error = %e, "opening this node's replicas failed");
        }
        loop {
            match events.recv().await {
                Ok(MetaEvent::Applied {
                    result: Ok(applied),
                    ..
                }) => {
                    if let Err(e) = self.follow(applied).await {
                        tracing::error!(error = %e, "following an applied change failed");
                    }
                }
                Ok(MetaEvent::Applied { result: Err(_), .. }) => {}
                Ok(MetaEvent::Membership { membership, .. }) => {
                    if let Some(link) = &self.link {
                        learn_addresses(link, membership.nodes());
                    }
                }
                Ok(MetaEvent::SnapshotInstalled { .. }) | Err(RecvError::Lagged(_)) => {
                    if let Err(e) = self.open_placed().await {
                        tracing::error!(error = %e, "re-following the metadata failed");
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// Refuses (503) a placement that needs a member unreachable now: the same request succeeds
/// once it is back. (Unreachable members are offered to placement last, so they are chosen only
/// when the reachable ones are too few.)
fn check_reachable(command: &Command, reachable: &BTreeSet<NodeId>) -> Result<()> {
    let shards = match command {
        Command::CreateCollection { shards, .. } | Command::CreateShardKey { shards, .. } => shards,
        _ => return Ok(()),
    };
    match shards
        .iter()
        .flat_map(|s| s.nodes.iter())
        .find(|n| !reachable.contains(n))
    {
        Some(n) => Err(Error::unavailable(format!(
            "the placement needs peer {n}, which is unreachable now; retry when it is back"
        ))),
        None => Ok(()),
    }
}

/// Added to an unreachable member's load, so placement takes it only when it must.
const UNREACHABLE_WEIGHT: usize = 1 << 32;

impl MetaExecutor for Catalog {
    fn execute(&self, request: MetaRequest) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Catalog::execute(self, request))
    }

    fn submit(&self, request: MetaRequest) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Catalog::submit(self, request))
    }
}
