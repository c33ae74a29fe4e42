//! Cluster membership of a node: the QUIC transport (mutual TLS), the Raft metadata group,
//! joining, forwarding metadata changes to the leader, following the log with the shard manager,
//! and the [`Link`] the router calls shards on other nodes through.
//!
//! Services on the transport: `Raft` (openraft's RPCs), `Shard` ([`crate::remote::ShardRpc`]),
//! `Admin` ([`AdminRpc`]: join, forwarded metadata changes, replica checks, pings).
//!
//! Architecture invariants:
//! - Only the leader proposes; every other node forwards the change ([`MetaOp`]) and waits
//!   until it has applied it itself, so a client reads its own change on the node it asked.
//! - Every node opens and closes its replicas by following the applied log, never by being told.
//! - A peer that does not answer pings is marked down; requests for its shards fail at once with
//!   503 instead of waiting for a deadline, and other tenants are not affected.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tessera_cluster::meta::{CollectionParams, NodeId, PayloadIndex, ShardId, ShardKey};
use tessera_cluster::quota::Quota;
use tessera_cluster::raft::{
    ByteTransport, MetaEvent, MetaNode, MetaRaft, NetError, OverBytes, RaftSettings, Role,
};
use tessera_cluster::transport::certs::NodeTls;
use tessera_cluster::transport::quic::{QuicConfig, QuicTransport};
use tessera_cluster::transport::{BoxFuture, PeerInfo, Service, Transport, handler_fn};
use tessera_cluster::{Error, ErrorKind, Result, codec};

use crate::catalog::Catalog;
use crate::config::ClusterConfig;
use crate::quota::Quotas;
use crate::remote::{ShardReply, ShardRpc, WireReply};

/// Deadline of a Raft RPC.
const RAFT_DEADLINE: Duration = Duration::from_secs(3);
/// Deadline of an admin call (join, forwarded change: the leader waits for replicas).
const ADMIN_DEADLINE: Duration = Duration::from_secs(30);
/// Peers are pinged this often; one missed ping marks a peer down until it answers again.
const PING_EVERY: Duration = Duration::from_millis(300);
const PING_DEADLINE: Duration = Duration::from_millis(700);
/// A joining node retries this long before giving up.
const JOIN_FOR: Duration = Duration::from_secs(120);

/// A metadata change, as forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaOp {
    CreateCollection {
        name: String,
        params: CollectionParams,
    },
    DeleteCollection {
        name: String,
    },
    CreateShardKey {
        collection: String,
        key: ShardKey,
        shards_number: Option<u32>,
        replication_factor: Option<u32>,
        placement: Option<Vec<NodeId>>,
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
    SetTenantSuspended {
        tenant: String,
        suspended: bool,
    },
    SetTenantQuota {
        tenant: String,
        quota: Option<Quota>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminRpc {
    /// A new node asks to become a member (learner, then voter up to the configured count).
    Join {
        id: NodeId,
        node: MetaNode,
    },
    /// A metadata change forwarded to the leader.
    Meta(MetaOp),
    /// Whether a replica is open on the called node.
    HasReplica {
        uid: u64,
        shard: ShardId,
    },
    /// Removes a node from the membership (on the leader).
    Remove {
        id: NodeId,
    },
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminReply {
    Joined,
    Applied(u64),
    HasReplica(bool),
    Pong,
}

/// The calls a node makes to other nodes: shard requests, admin calls, and who is down.
pub struct Link {
    pub transport: Arc<QuicTransport>,
    /// The membership, for addresses the address book does not have yet (a restarted node).
    raft: MetaRaft,
    /// Peers that missed their last ping, since when.
    down: DashMap<NodeId, Instant>,
}

impl Link {
    /// Fails at once for a peer that is not answering (503), so its tenants' requests do not
    /// wait for a deadline.
    pub fn check_up(&self, node: NodeId) -> Result<()> {
        match self.down.get(&node) {
            Some(since) => Err(Error::unavailable(format!(
                "peer {node} is unreachable (for {} ms)",
                since.elapsed().as_millis()
            ))),
            None => Ok(()),
        }
    }

    /// Makes sure the address book knows `node` (from the Raft membership).
    fn resolve(&self, node: NodeId) {
        if self.transport.peers().iter().any(|(id, _)| *id == node) {
            return;
        }
        if let Some(n) = self.raft.metrics().nodes.get(&node)
            && let Ok(addr) = n.p2p_addr.parse()
        {
            self.transport.set_peer(node, addr);
        }
    }

    fn mark(&self, node: NodeId, up: bool) {
        if up {
            if self.down.remove(&node).is_some() {
                tracing::info!(peer = node, "peer reachable again");
            }
        } else if !self.down.contains_key(&node) {
            tracing::warn!(peer = node, "peer unreachable; its shards answer 503");
            self.down.insert(node, Instant::now());
        }
    }

    /// A shard request to `node`.
    pub async fn call(&self, node: NodeId, rpc: &ShardRpc) -> Result<ShardReply> {
        let body = codec::encode(rpc)?;
        self.resolve(node);
        let call = self.transport.call(
            node,
            Service::Shard,
            body,
            crate::router::SHARD_CALL_DEADLINE,
        );
        tokio::pin!(call);
        // a call in flight when its peer dies ends as soon as the pinger marks the peer down,
        // not at the deadline
        let answer = loop {
            tokio::select! {
                r = &mut call => break r,
                _ = tokio::time::sleep(Duration::from_millis(50)) => self.check_up(node)?,
            }
        };
        let reply = answer.map_err(|e| match e.kind {
            // the handler's own errors keep their kind; only a call that got no answer
            // in time becomes a 503 (the pinger decides who is down)
            ErrorKind::Timeout => Error::unavailable(format!(
                "peer {node} holding this shard did not answer in time: {}",
                e.message
            )),
            _ => e,
        })?;
        codec::decode(&reply)
    }

    async fn admin(&self, node: NodeId, rpc: &AdminRpc, deadline: Duration) -> Result<AdminReply> {
        let body = codec::encode(rpc)?;
        self.resolve(node);
        let call = self.transport.call(node, Service::Admin, body, deadline);
        tokio::pin!(call);
        let ping = matches!(rpc, AdminRpc::Ping);
        let reply = loop {
            tokio::select! {
                r = &mut call => break r?,
                // a peer that dies mid-call is given up on once the pinger notices
                _ = tokio::time::sleep(Duration::from_millis(50)), if !ping => self.check_up(node)?,
            }
        };
        codec::decode(&reply)
    }

    /// Sends a metadata change to the leader; answers the index it was applied at.
    pub async fn forward_meta(&self, leader: NodeId, op: MetaOp) -> Result<u64> {
        match self
            .admin(leader, &AdminRpc::Meta(op), ADMIN_DEADLINE)
            .await?
        {
            AdminReply::Applied(index) => Ok(index),
            other => Err(Error::internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Whether `node` has the replica open.
    pub async fn has_replica(&self, node: NodeId, uid: u64, shard: ShardId) -> bool {
        matches!(
            self.admin(
                node,
                &AdminRpc::HasReplica { uid, shard },
                Duration::from_secs(2)
            )
            .await,
            Ok(AdminReply::HasReplica(true))
        )
    }

    /// Asks the leader to remove node `id` from the membership.
    pub async fn remove_peer(&self, leader: NodeId, id: NodeId) -> Result<()> {
        self.admin(leader, &AdminRpc::Remove { id }, ADMIN_DEADLINE)
            .await
            .map(|_| ())
    }
}

/// Raft's byte transport over QUIC.
struct RaftOverQuic(Arc<QuicTransport>);

impl ByteTransport for RaftOverQuic {
    fn call(
        &self,
        _target: NodeId,
        node: &MetaNode,
        request: Vec<u8>,
    ) -> BoxFuture<'static, std::result::Result<Vec<u8>, NetError>> {
        let t = self.0.clone();
        let addr = node.p2p_addr.parse::<SocketAddr>();
        Box::pin(async move {
            let addr = addr.map_err(|e| NetError::Unreachable(format!("bad p2p address: {e}")))?;
            t.call_addr(addr, Service::Raft, request, RAFT_DEADLINE)
                .await
                .map_err(|e| match e.kind {
                    ErrorKind::Unavailable | ErrorKind::Timeout => NetError::Unreachable(e.message),
                    _ => NetError::Failed(e.message),
                })
        })
    }
}

/// What the transport's handler serves once the node is up.
struct Served {
    catalog: Arc<Catalog>,
    quotas: Arc<Quotas>,
}

/// A running cluster member.
pub struct ClusterNode {
    pub raft: MetaRaft,
    pub link: Arc<Link>,
    served: Arc<OnceLock<Served>>,
    config: ClusterConfig,
}

impl ClusterNode {
    /// Binds the transport and starts the Raft member (bootstrapping a new cluster if asked).
    /// The node serves Raft at once; shard and admin calls once [`ClusterNode::serve`] ran.
    pub async fn start(
        id: NodeId,
        config: &ClusterConfig,
        http_addr: SocketAddr,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<ClusterNode> {
        let tls = NodeTls::load_dir(&config.tls_dir)
            .map_err(|e| anyhow::anyhow!("load tls dir {}: {e}", config.tls_dir.display()))?;
        let served: Arc<OnceLock<Served>> = Arc::new(OnceLock::new());
        let raft_cell: Arc<OnceLock<MetaRaft>> = Arc::new(OnceLock::new());
        let link_cell: Arc<OnceLock<Arc<Link>>> = Arc::new(OnceLock::new());
        let handler = {
            let (served, raft_cell, link_cell) =
                (served.clone(), raft_cell.clone(), link_cell.clone());
            handler_fn(move |from: PeerInfo, service: Service, body: Vec<u8>| {
                let (served, raft_cell, link_cell) =
                    (served.clone(), raft_cell.clone(), link_cell.clone());
                async move {
                    let raft = raft_cell
                        .get()
                        .cloned()
                        .ok_or_else(|| Error::unavailable("node starting"))?;
                    match service {
                        Service::Raft => raft.handle_rpc_bytes(&body).await,
                        Service::Shard => {
                            let s = served
                                .get()
                                .ok_or_else(|| Error::unavailable("node starting"))?;
                            serve_shard(s, &body).await
                        }
                        Service::Admin => {
                            let link = link_cell
                                .get()
                                .cloned()
                                .ok_or_else(|| Error::unavailable("node starting"))?;
                            serve_admin(&raft, &link, served.get(), from, &body).await
                        }
                        other => Err(Error::bad_request(format!(
                            "service {other:?} is not served"
                        ))),
                    }
                }
            })
        };
        let mut qc = QuicConfig::new(config.p2p_addr);
        qc.node_id = Some(id);
        let transport = Arc::new(
            QuicTransport::bind(qc, &tls, Some(handler))
                .map_err(|e| anyhow::anyhow!("bind p2p {}: {e}", config.p2p_addr))?,
        );
        let me = MetaNode::new(transport.local_addr()?.to_string(), http_addr.to_string());
        let raft = MetaRaft::start(
            id,
            me.clone(),
            data_dir,
            Arc::new(OverBytes(RaftOverQuic(transport.clone()))),
            RaftSettings::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("start metadata raft: {e}"))?;
        let _ = raft_cell.set(raft.clone());
        let link = Arc::new(Link {
            transport,
            raft: raft.clone(),
            down: DashMap::new(),
        });
        let _ = link_cell.set(link.clone());
        for (peer, node) in raft.metrics().nodes {
            if let Ok(addr) = node.p2p_addr.parse() {
                link.transport.set_peer(peer, addr);
            }
        }
        if config.bootstrap {
            raft.initialize_single()
                .await
                .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
        }
        Ok(ClusterNode {
            raft,
            link,
            served,
            config: config.clone(),
        })
    }

    /// Serves shard and admin calls, follows the log with the shard manager, pings peers, and
    /// joins the cluster if asked.
    pub fn serve(&self, catalog: Arc<Catalog>, quotas: Arc<Quotas>) {
        let _ = self.served.set(Served {
            catalog: catalog.clone(),
            quotas,
        });
        tokio::spawn(follow_log(self.raft.clone(), self.link.clone(), catalog));
        tokio::spawn(ping_peers(self.raft.clone(), self.link.clone()));
        if let Some(seed) = self.config.join {
            tokio::spawn(join(self.raft.clone(), self.link.clone(), seed));
        } else {
            tokio::spawn(announce(self.raft.clone(), self.link.clone()));
        }
    }
}

/// Every applied command, on every node: open and close this node's replicas, keep the address
/// book current. After a snapshot (or a lag) the whole state is followed again.
async fn follow_log(raft: MetaRaft, link: Arc<Link>, catalog: Arc<Catalog>) {
    let mut events = raft.subscribe();
    if let Err(e) = catalog.open_placed().await {
        tracing::error!(error = %e, "opening this node's replicas failed");
    }
    loop {
        match events.recv().await {
            Ok(MetaEvent::Applied {
                result: Ok(applied),
                ..
            }) => {
                if let Err(e) = catalog.follow(applied).await {
                    tracing::error!(error = %e, "following an applied change failed");
                }
            }
            Ok(MetaEvent::Applied { .. }) => {}
            Ok(MetaEvent::Membership { membership, .. }) => {
                for (id, node) in membership.nodes() {
                    if let Ok(addr) = node.p2p_addr.parse() {
                        link.transport.set_peer(*id, addr);
                    }
                }
            }
            Ok(MetaEvent::SnapshotInstalled { .. })
            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Err(e) = catalog.open_placed().await {
                    tracing::error!(error = %e, "re-following the metadata failed");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Pings every other member; a peer that misses a ping is down until it answers.
async fn ping_peers(raft: MetaRaft, link: Arc<Link>) {
    let me = raft.id();
    loop {
        tokio::time::sleep(PING_EVERY).await;
        // the address book follows the membership (a restarted node learns it from its log)
        let nodes = raft.metrics().nodes;
        for (id, node) in &nodes {
            if let Ok(addr) = node.p2p_addr.parse() {
                link.transport.set_peer(*id, addr);
            }
        }
        let peers: Vec<NodeId> = nodes.keys().copied().filter(|id| *id != me).collect();
        let mut checks = tokio::task::JoinSet::new();
        for peer in peers {
            let link = link.clone();
            checks.spawn(async move {
                let up = matches!(
                    link.admin(peer, &AdminRpc::Ping, PING_DEADLINE).await,
                    Ok(AdminReply::Pong)
                );
                link.mark(peer, up);
            });
        }
        while checks.join_next().await.is_some() {}
    }
}

/// A member restarted with other addresses (a pod with a new IP) tells the leader, so that
/// peers dial the new ones: the same request as a join, which updates a member's addresses.
async fn announce(raft: MetaRaft, link: Arc<Link>) {
    let started = Instant::now();
    while started.elapsed() < JOIN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = raft.metrics();
        let Some(known) = m.nodes.get(&raft.id()) else {
            return; // not a member (yet): nothing to update
        };
        if known == raft.node() {
            return;
        }
        let Some(leader) = m.leader_node else {
            continue;
        };
        let Ok(addr) = leader.p2p_addr.parse::<SocketAddr>() else {
            continue;
        };
        join(raft.clone(), link.clone(), addr).await;
        return;
    }
}

/// Asks the seed node to add this node, until it is a member (bounded).
async fn join(raft: MetaRaft, link: Arc<Link>, seed: SocketAddr) {
    let started = Instant::now();
    let rpc = AdminRpc::Join {
        id: raft.id(),
        node: raft.node().clone(),
    };
    let Ok(body) = codec::encode(&rpc) else {
        return;
    };
    while started.elapsed() < JOIN_FOR {
        match link
            .transport
            .call_addr(seed, Service::Admin, body.clone(), ADMIN_DEADLINE)
            .await
        {
            Ok(_) => {
                tracing::info!(%seed, "joined the cluster");
                return;
            }
            Err(e) => {
                tracing::warn!(%seed, error = %e, "join failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    tracing::error!(%seed, "could not join the cluster");
}

async fn serve_shard(s: &Served, body: &[u8]) -> Result<Vec<u8>> {
    let reply = match codec::decode::<ShardRpc>(body)? {
        ShardRpc::Write {
            uid,
            shard,
            key,
            op,
        } => ShardReply::Seq(
            crate::router::serve_write(&s.catalog, uid, shard, key, op.into_op()?).await?,
        ),
        ShardRpc::Read {
            uid,
            shard,
            key,
            tenant,
            weight,
            op,
        } => {
            let reply = crate::router::serve_read(
                &s.catalog,
                &s.quotas,
                (uid, shard, key),
                &tenant,
                weight.max(1),
                Arc::new(op.into_op()?),
            )
            .await?;
            ShardReply::Read(WireReply::from_reply(&reply))
        }
    };
    codec::encode(&reply)
}

async fn serve_admin(
    raft: &MetaRaft,
    link: &Arc<Link>,
    served: Option<&Served>,
    from: PeerInfo,
    body: &[u8],
) -> Result<Vec<u8>> {
    let reply = match codec::decode::<AdminRpc>(body)? {
        AdminRpc::Ping => AdminReply::Pong,
        AdminRpc::HasReplica { uid, shard } => {
            AdminReply::HasReplica(served.is_some_and(|s| s.catalog.shards.contains((uid, shard))))
        }
        AdminRpc::Meta(op) => {
            let s = served.ok_or_else(|| Error::unavailable("node starting"))?;
            AdminReply::Applied(s.catalog.execute(op).await?)
        }
        AdminRpc::Join { id, node } => {
            add_member(raft, link, id, node, served).await?;
            AdminReply::Joined
        }
        AdminRpc::Remove { id } => {
            remove_member(raft, id).await?;
            AdminReply::Joined
        }
    };
    tracing::debug!(peer = %from.addr, "admin call served");
    codec::encode(&reply)
}

/// On the leader (forwarded there otherwise): adds `id` as a learner, then as a voter while
/// the cluster has fewer voters than configured. Idempotent.
async fn add_member(
    raft: &MetaRaft,
    link: &Arc<Link>,
    id: NodeId,
    node: MetaNode,
    served: Option<&Served>,
) -> Result<()> {
    let m = raft.metrics();
    if m.role != Role::Leader {
        let (leader, _) = raft
            .leader()
            .ok_or_else(|| Error::unavailable("no metadata leader yet"))?;
        let body = codec::encode(&AdminRpc::Join { id, node })?;
        link.transport
            .call(leader, Service::Admin, body, ADMIN_DEADLINE)
            .await?;
        return Ok(());
    }
    if let Ok(addr) = node.p2p_addr.parse() {
        link.transport.set_peer(id, addr);
    }
    let max_voters = served.map(|s| s.catalog.max_voters()).unwrap_or(3);
    if m.nodes.get(&id).is_some_and(|known| *known != node) {
        // a member back with other addresses: record them (voter or learner, it stays one)
        raft.set_node(id, node.clone()).await.map_err(Error::from)?;
        tracing::info!(node = id, p2p = %node.p2p_addr, "member addresses updated");
        return Ok(());
    }
    if !m.voters.contains(&id) {
        raft.add_learner(id, node).await.map_err(Error::from)?;
        let voters = raft.metrics().voters;
        if voters.len() < max_voters {
            let mut next = voters;
            next.insert(id);
            raft.change_membership(next, true)
                .await
                .map_err(Error::from)?;
        }
    }
    tracing::info!(node = id, "member added");
    Ok(())
}

async fn remove_member(raft: &MetaRaft, id: NodeId) -> Result<()> {
    let m = raft.metrics();
    if m.role != Role::Leader {
        return Err(Error::unavailable("not the metadata leader"));
    }
    let mut voters = m.voters.clone();
    voters.remove(&id);
    if voters.is_empty() {
        return Err(Error::bad_request("cannot remove the last voter"));
    }
    raft.change_membership(voters, false)
        .await
        .map_err(Error::from)?;
    Ok(())
}
