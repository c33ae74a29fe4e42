//! The link: every call this node makes to a peer (shard requests, admin calls), and who is down.
//!
//! A peer that missed its last ping is down until it answers again ([`Link::ping_round`]); calls
//! to it fail at once with 503, and a call in flight when its peer is marked down ends then, not
//! at its deadline. Other peers' calls are unaffected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tessera_cluster::meta::{NodeId, ShardId};
use tessera_cluster::raft::MetaRaft;
use tessera_cluster::request::MetaRequest;
use tessera_cluster::transport::{Service, Transport};
use tessera_cluster::{Error, ErrorKind, Result, codec};

use super::rpc::{AdminReply, AdminRpc};
use crate::shard_rpc::{SHARD_CALL_DEADLINE, ShardReply, ShardRpc};

/// Deadline of an admin call (join, forwarded change: the leader waits for replicas).
pub const ADMIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long the leader may take to confirm its leadership for a read index; a caller's
/// deadline is this plus a round trip.
pub const READ_INDEX_DEADLINE: Duration = Duration::from_millis(1500);
/// Deadline of a ping; one missed ping marks a peer down.
pub const PING_DEADLINE: Duration = Duration::from_millis(700);
/// How often a call in flight checks whether its peer was marked down meanwhile.
const DOWN_CHECK_EVERY: Duration = Duration::from_millis(50);

/// The calls a node makes to other nodes, and who is down.
pub struct Link {
    pub transport: Arc<dyn Transport>,
    /// The membership, for addresses the address book does not have yet (a restarted node).
    members: Option<MetaRaft>,
    /// Peers that missed their last ping, since when.
    down: DashMap<NodeId, Instant>,
}

impl Link {
    /// A link over `transport`; `members` (the Raft group) fills in addresses the address book
    /// lacks.
    pub fn new(transport: Arc<dyn Transport>, members: Option<MetaRaft>) -> Link {
        Link {
            transport,
            members,
            down: DashMap::new(),
        }
    }

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

    /// How long `node` has been unreachable (None: it answers).
    pub fn down_for(&self, node: NodeId) -> Option<Duration> {
        self.down.get(&node).map(|since| since.elapsed())
    }

    /// Makes sure the address book knows `node` (from the Raft membership).
    fn resolve(&self, node: NodeId) {
        if self.transport.peers().iter().any(|(id, _)| *id == node) {
            return;
        }
        if let Some(members) = &self.members
            && let Some(member) = members.metrics().nodes.get(&node)
            && let Ok(addr) = member.p2p_addr.parse()
        {
            self.transport.set_peer(node, addr);
        }
    }

    /// Records whether `node` answered its last ping.
    pub fn mark(&self, node: NodeId, up: bool) {
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
        self.call_within(node, rpc, SHARD_CALL_DEADLINE).await
    }

    /// A shard request to `node` that fails (503) when it is not answered within `deadline`.
    pub async fn call_within(
        &self,
        node: NodeId,
        rpc: &ShardRpc,
        deadline: Duration,
    ) -> Result<ShardReply> {
        self.check_up(node)?;
        let body = codec::encode(rpc)?;
        self.resolve(node);
        let call = self.transport.call(node, rpc.service(), body, deadline);
        tokio::pin!(call);
        // a call in flight when its peer dies ends as soon as the pinger marks the peer down,
        // not at the deadline
        let answer = loop {
            tokio::select! {
                answer = &mut call => break answer,
                _ = tokio::time::sleep(DOWN_CHECK_EVERY) => self.check_up(node)?,
            }
        };
        let reply = answer.map_err(|e| match e.kind {
            // the handler's own errors keep their kind; only a call that got no answer
            // in time becomes a 503 (the pinger decides who is down)
            ErrorKind::Timeout => Error::unavailable(format!(
                "peer {node} holding this shard did not answer in time: {}",
                e.message
            )),
            ErrorKind::BadRequest
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::AlreadyExists
            | ErrorKind::Conflict
            | ErrorKind::PayloadTooLarge
            | ErrorKind::TooManyRequests { .. }
            | ErrorKind::InsufficientStorage
            | ErrorKind::Unavailable
            | ErrorKind::Internal => e,
        })?;
        codec::decode(&reply)
    }

    /// An admin call to `node`.
    pub async fn admin(
        &self,
        node: NodeId,
        rpc: &AdminRpc,
        deadline: Duration,
    ) -> Result<AdminReply> {
        let body = codec::encode(rpc)?;
        self.resolve(node);
        let call = self.transport.call(node, Service::Admin, body, deadline);
        tokio::pin!(call);
        let ping = matches!(rpc, AdminRpc::Ping);
        let reply = loop {
            tokio::select! {
                answer = &mut call => break answer?,
                // a peer that dies mid-call is given up on once the pinger notices
                _ = tokio::time::sleep(DOWN_CHECK_EVERY), if !ping => self.check_up(node)?,
            }
        };
        codec::decode(&reply)
    }

    /// Sends a metadata change to the leader; answers the index it was applied at.
    pub async fn forward_meta(&self, leader: NodeId, request: MetaRequest) -> Result<u64> {
        match self
            .admin(leader, &AdminRpc::Meta(request), ADMIN_DEADLINE)
            .await?
        {
            AdminReply::Applied(index) => Ok(index),
            other @ (AdminReply::Joined | AdminReply::HasReplica(_) | AdminReply::Pong) => {
                Err(Error::internal(format!("unexpected reply {other:?}")))
            }
        }
    }

    /// The metadata leader's read index ([`AdminRpc::ReadIndex`]).
    pub async fn read_index(&self, leader: NodeId) -> Result<u64> {
        match self
            .admin(
                leader,
                &AdminRpc::ReadIndex,
                READ_INDEX_DEADLINE + Duration::from_millis(500),
            )
            .await?
        {
            AdminReply::Applied(index) => Ok(index),
            other @ (AdminReply::Joined | AdminReply::HasReplica(_) | AdminReply::Pong) => {
                Err(Error::internal(format!("unexpected reply {other:?}")))
            }
        }
    }

    /// Whether `node` has the replica open.
    pub async fn has_replica(&self, node: NodeId, uid: u64, shard: ShardId) -> bool {
        self.has_replica_within(node, uid, shard, Duration::from_secs(2))
            .await
    }

    /// Whether `node` answers within `deadline` that it has the replica open (false at once
    /// for a peer that is down).
    pub async fn has_replica_within(
        &self,
        node: NodeId,
        uid: u64,
        shard: ShardId,
        deadline: Duration,
    ) -> bool {
        if self.check_up(node).is_err() {
            return false;
        }
        matches!(
            self.admin(node, &AdminRpc::HasReplica { uid, shard }, deadline)
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

    /// Pings every peer in `peers` at once and marks each up or down by its answer.
    pub async fn ping_round(self: &Arc<Self>, peers: impl IntoIterator<Item = NodeId>) {
        let mut checks = tokio::task::JoinSet::new();
        for peer in peers {
            let link = self.clone();
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

#[cfg(test)]
mod tests {
    use tessera_cluster::transport::memory::MemoryHub;
    use tessera_cluster::transport::{PeerInfo, handler_fn};

    use super::*;

    /// A peer that answers pings, and one that answers shard calls only after `delay`.
    fn answering(delay: Duration) -> Arc<dyn tessera_cluster::transport::Handler> {
        handler_fn(
            move |_from: PeerInfo, service: Service, _body: Vec<u8>| async move {
                match service {
                    Service::Admin => codec::encode(&AdminReply::Pong),
                    Service::Shard => {
                        tokio::time::sleep(delay).await;
                        codec::encode(&ShardReply::Seq(1))
                    }
                    Service::Raft | Service::Replication | Service::Transfer => {
                        Err(Error::bad_request("not served"))
                    }
                }
            },
        )
    }

    fn write() -> ShardRpc {
        ShardRpc::Write {
            uid: 1,
            shard: 0,
            key: None,
            op: crate::shard_rpc::WireWrite::from_op(&tessera_shard::actor::WriteOp::Upsert(
                vec![],
            )),
        }
    }

    #[test]
    fn a_peer_is_down_from_a_missed_ping_until_it_answers() {
        let hub = MemoryHub::new();
        let link = Link::new(Arc::new(hub.attach(1, MemoryHub::addr_of(1))), None);
        assert!(link.check_up(2).is_ok(), "peers start up");
        link.mark(2, false);
        let e = link.check_up(2).expect_err("down");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(link.check_up(3).is_ok(), "other peers are not affected");
        link.mark(2, false);
        assert!(link.check_up(2).is_err(), "still down");
        link.mark(2, true);
        assert!(link.check_up(2).is_ok(), "up again once it answers");
    }

    #[tokio::test]
    async fn a_ping_round_marks_silent_peers_down_and_answering_ones_up() {
        let hub = MemoryHub::new();
        let link = Arc::new(Link::new(
            Arc::new(hub.attach(1, MemoryHub::addr_of(1))),
            None,
        ));
        let _answers = hub.register(2, MemoryHub::addr_of(2), answering(Duration::ZERO));
        let _silent = hub.attach(3, MemoryHub::addr_of(3));
        link.mark(2, false);
        link.ping_round([2, 3]).await;
        assert!(link.check_up(2).is_ok());
        assert!(link.check_up(3).is_err());
        let e = link.call(3, &write()).await.expect_err("down peer");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(matches!(
            link.call(2, &write()).await.expect("up peer"),
            ShardReply::Seq(1)
        ));
    }

    #[tokio::test]
    async fn a_call_in_flight_ends_when_its_peer_is_marked_down() {
        let hub = MemoryHub::new();
        let link = Arc::new(Link::new(
            Arc::new(hub.attach(1, MemoryHub::addr_of(1))),
            None,
        ));
        let _slow = hub.register(2, MemoryHub::addr_of(2), answering(Duration::from_secs(4)));
        let marker = link.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            marker.mark(2, false);
        });
        let started = Instant::now();
        let e = link.call(2, &write()).await.expect_err("given up");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "ended at the mark, not at the deadline"
        );
    }
}
