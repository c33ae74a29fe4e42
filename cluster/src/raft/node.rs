//! [`MetaRaft`]: the one handle the node holds on the metadata Raft group.
//!
//! It hides openraft's types behind our own: commands in, [`Applied`] or a classified
//! [`crate::Error`] out, and a typed [`MetaRaftError::NotLeader`] that names the leader so the
//! caller can forward the request.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError,
    RaftError,
};
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::broadcast;

use super::log_store::LogStore;
use super::network::{NetworkFactory, RaftReply, RaftRpc, decode_rpc, encode_reply};
use super::state_machine::{MetaEvent, StateMachine, StateView};
use super::{LogCommand, MetaNode, NodeId, Raft};
use crate::error::{Error, ErrorKind, Result};
use crate::meta::{Applied, Command};
use crate::transport::Transport;

/// Timing and retention of the metadata group. The defaults elect a new leader well under 2 s
/// after the old one is lost (election timeout 300–600 ms, heartbeat 100 ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSettings {
    /// Name of the group in openraft's logs.
    pub cluster_name: String,
    /// The leader's heartbeat period; also the deadline of one append-entries RPC.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in this range starts an election.
    pub election_timeout_min_ms: u64,
    /// Upper end of the election timeout; also openraft's leader lease, so a follower starts an
    /// election `election_timeout_max_ms` + a random election timeout after the last heartbeat.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging follower catches up from
    /// the log instead of receiving the whole snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Largest snapshot chunk in one install-snapshot RPC; keep it under the transport's frame
    /// limit.
    pub snapshot_chunk_bytes: u64,
    /// How long [`MetaRaft::propose`] waits for its command to commit (no quorum: it times out).
    pub propose_timeout_ms: u64,
    /// How long membership changes and linearizable-read checks may take.
    pub membership_timeout_ms: u64,
    /// Events buffered for a slow [`MetaRaft::subscribe`] receiver before it lags.
    pub event_capacity: usize,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            cluster_name: "tessera-meta".to_string(),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every_logs: 1000,
            logs_kept_after_snapshot: 1000,
            snapshot_chunk_bytes: 1 << 20,
            propose_timeout_ms: 5000,
            membership_timeout_ms: 10_000,
            event_capacity: 4096,
        }
    }
}

impl RaftSettings {
    fn openraft_config(&self) -> Result<openraft::Config> {
        openraft::Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::bad_request(format!("raft settings: {e}")))
    }
}

/// A metadata-group operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetaRaftError {
    /// This node is not the leader. Forward to `leader` when it is known; when it is `None` no
    /// leader is elected right now (retry shortly).
    #[error("not the metadata leader{}", match (.leader_id, .leader) {
        (Some(id), Some(n)) => format!("; the leader is node {id} at {}", n.http_addr),
        (Some(id), None) => format!("; the leader is node {id}"),
        _ => "; no leader is elected".to_string(),
    })]
    NotLeader {
        leader_id: Option<NodeId>,
        leader: Option<MetaNode>,
    },
    /// Anything else, classified: a command refused by `apply` keeps its own kind (BadRequest,
    /// NotFound, AlreadyExists, Conflict...); Unavailable when Raft is stopped or has no quorum;
    /// Timeout when a write did not commit in time (its outcome is then unknown).
    #[error("{0}")]
    Other(Error),
}

impl From<MetaRaftError> for Error {
    fn from(e: MetaRaftError) -> Error {
        match e {
            MetaRaftError::NotLeader { .. } => Error::unavailable(e.to_string()),
            MetaRaftError::Other(e) => e,
        }
    }
}

impl From<Error> for MetaRaftError {
    fn from(e: Error) -> MetaRaftError {
        MetaRaftError::Other(e)
    }
}

impl MetaRaftError {
    /// The error kind this maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetaRaftError::NotLeader { .. } => ErrorKind::Unavailable,
            MetaRaftError::Other(e) => e.kind,
        }
    }
}

fn not_leader(f: ForwardToLeader<NodeId, MetaNode>) -> MetaRaftError {
    MetaRaftError::NotLeader {
        leader_id: f.leader_id,
        leader: f.leader_node,
    }
}

fn fatal(e: openraft::error::Fatal<NodeId>) -> MetaRaftError {
    MetaRaftError::Other(Error::unavailable(format!("metadata raft stopped: {e}")))
}

fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, MetaNode>>) -> MetaRaftError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            let kind = match &c {
                ChangeMembershipError::InProgress(_) => ErrorKind::Conflict,
                ChangeMembershipError::EmptyMembership(_)
                | ChangeMembershipError::LearnerNotFound(_) => ErrorKind::BadRequest,
            };
            MetaRaftError::Other(Error::new(kind, format!("membership change: {c}")))
        }
        RaftError::Fatal(f) => fatal(f),
    }
}

/// The role of a node in the metadata group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    /// Receives the log but does not vote (a node that joined and is not yet promoted).
    Learner,
    Shutdown,
}

/// A summary of the group as this node sees it, for /metrics, admin endpoints and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaMetrics {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// The leader's addresses, when the leader is in the membership.
    pub leader_node: Option<MetaNode>,
    pub last_log_index: Option<u64>,
    /// Highest index this node knows to be committed (0 before any).
    pub committed_index: u64,
    pub applied_index: Option<u64>,
    /// Last index covered by this node's snapshot.
    pub snapshot_index: Option<u64>,
    /// Last index purged from this node's log.
    pub purged_index: Option<u64>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Every member (voters and learners) with its addresses.
    pub nodes: BTreeMap<NodeId, MetaNode>,
    /// On the leader: how long since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

struct Inner {
    id: NodeId,
    node: MetaNode,
    raft: Raft,
    sm: StateMachine,
    committed: Arc<AtomicU64>,
    settings: RaftSettings,
}

/// The metadata Raft group member running in this process. Cheap to clone.
#[derive(Clone)]
pub struct MetaRaft {
    inner: Arc<Inner>,
}

async fn within<T>(
    ms: u64,
    what: &str,
    fut: impl Future<Output = Result<T, MetaRaftError>>,
) -> Result<T, MetaRaftError> {
    match tokio::time::timeout(Duration::from_millis(ms), fut).await {
        Ok(r) => r,
        Err(_) => Err(MetaRaftError::Other(Error::timeout(format!(
            "{what} did not complete within {ms} ms"
        )))),
    }
}

impl MetaRaft {
    /// Starts this node's member of the metadata group with its durable state in
    /// `<data_dir>/raft/`. A restarted node loads its snapshot and replays its log; a new node
    /// waits to be initialised ([`MetaRaft::initialize`]) or added by the leader.
    /// Must be called within a tokio runtime (openraft spawns its tasks there).
    pub async fn start(
        id: NodeId,
        node: MetaNode,
        data_dir: &Path,
        transport: Arc<dyn Transport>,
        settings: RaftSettings,
    ) -> Result<MetaRaft> {
        let config = Arc::new(settings.openraft_config()?);
        let dir = data_dir.join("raft");
        let capacity = settings.event_capacity;
        let (log, sm) = tokio::task::spawn_blocking(move || {
            Ok::<_, Error>((
                LogStore::open(&dir)?,
                StateMachine::open(&dir, id, capacity)?,
            ))
        })
        .await
        .map_err(|e| Error::internal(format!("open raft storage: {e}")))??;
        let committed = log.committed_index();
        let raft = Raft::new(id, config, NetworkFactory::new(transport), log, sm.clone())
            .await
            .map_err(|e| Error::internal(format!("start metadata raft: {e}")))?;
        tracing::info!(node = id, p2p = %node.p2p_addr, http = %node.http_addr, "metadata raft started");
        Ok(MetaRaft {
            inner: Arc::new(Inner {
                id,
                node,
                raft,
                sm,
                committed,
                settings,
            }),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's addresses.
    pub fn node(&self) -> &MetaNode {
        &self.inner.node
    }

    /// The openraft handle, for what this facade does not cover.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Creates the group with `members` as its voters (`--bootstrap`). Idempotent: on a node
    /// that already has Raft state (initialised before a restart, or joined) it does nothing and
    /// returns `Ok(false)`; `Ok(true)` when this call initialised the group.
    pub async fn initialize(&self, members: BTreeMap<NodeId, MetaNode>) -> Result<bool> {
        match self.inner.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node = self.inner.id, "metadata group initialised");
                Ok(true)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(node = self.inner.id, reason = %e, "metadata group already initialised");
                Ok(false)
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                Err(Error::bad_request(format!("initialize: {e}")))
            }
            Err(RaftError::Fatal(f)) => Err(fatal(f).into()),
        }
    }

    /// [`MetaRaft::initialize`] with this node as the only voter.
    pub async fn initialize_single(&self) -> Result<bool> {
        self.initialize(BTreeMap::from([(self.inner.id, self.inner.node.clone())]))
            .await
    }

    /// On the leader: adds node `id` as a learner and waits until it has caught up with the log.
    /// Adding a member again (e.g. with new addresses) is allowed.
    pub async fn add_learner(&self, id: NodeId, node: MetaNode) -> Result<(), MetaRaftError> {
        within(
            self.inner.settings.membership_timeout_ms,
            "add learner",
            async {
                self.inner
                    .raft
                    .add_learner(id, node, true)
                    .await
                    .map(|_| ())
                    .map_err(write_err)
            },
        )
        .await
    }

    /// On the leader: records new addresses for a member (voter or learner, it stays one). For a
    /// member that came back on other addresses with its own data and identity; pointing an id
    /// at another process would split the group, which is why joins never do it.
    pub async fn set_node(&self, id: NodeId, node: MetaNode) -> Result<(), MetaRaftError> {
        within(
            self.inner.settings.membership_timeout_ms,
            "update member addresses",
            async {
                self.inner
                    .raft
                    .change_membership(
                        openraft::ChangeMembers::SetNodes(std::collections::BTreeMap::from([(
                            id, node,
                        )])),
                        true,
                    )
                    .await
                    .map(|_| ())
                    .map_err(write_err)
            },
        )
        .await
    }

    /// On the leader: removes a learner from the group (a voter is removed with
    /// [`MetaRaft::change_membership`]).
    pub async fn remove_learner(&self, id: NodeId) -> Result<(), MetaRaftError> {
        within(
            self.inner.settings.membership_timeout_ms,
            "remove a learner",
            async {
                self.inner
                    .raft
                    .change_membership(
                        openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                        false,
                    )
                    .await
                    .map(|_| ())
                    .map_err(write_err)
            },
        )
        .await
    }

    /// On the leader: makes `voters` the voting members (they must be members already, added
    /// as learners). Removed voters stay as learners when `retain`, else leave the group.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<(), MetaRaftError> {
        within(
            self.inner.settings.membership_timeout_ms,
            "membership change",
            async {
                self.inner
                    .raft
                    .change_membership(voters, retain)
                    .await
                    .map(|_| ())
                    .map_err(write_err)
            },
        )
        .await
    }

    /// A leader that has not heard from a quorum for two election timeouts answers Unavailable
    /// at once instead of letting the caller wait for a commit that cannot come.
    fn check_quorum(&self) -> Result<(), MetaRaftError> {
        let limit = 2 * self.inner.settings.election_timeout_max_ms;
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        if m.state == ServerState::Leader
            && let Some(ms) = m.millis_since_quorum_ack
            && ms > limit
        {
            return Err(MetaRaftError::Other(Error::unavailable(format!(
                "the metadata leader has not reached a quorum for {ms} ms"
            ))));
        }
        Ok(())
    }

    /// Proposes a command and waits until it is committed and applied here (the leader). Returns
    /// what `apply` returned: a refused command is answered with its own error and changed
    /// nothing. Not the leader: [`MetaRaftError::NotLeader`], forward it.
    ///
    /// The proposer decides everything nondeterministic (placement, uids) before calling this.
    pub async fn propose(&self, command: Command) -> Result<Applied, MetaRaftError> {
        self.check_quorum()?;
        within(
            self.inner.settings.propose_timeout_ms,
            "metadata write (its outcome is unknown)",
            async {
                let resp = self
                    .inner
                    .raft
                    .client_write(LogCommand(command))
                    .await
                    .map_err(write_err)?;
                match resp.data.outcome {
                    Some(r) => r.map_err(MetaRaftError::Other),
                    None => Err(MetaRaftError::Other(Error::internal(
                        "metadata write committed without an outcome",
                    ))),
                }
            },
        )
        .await
    }

    /// On the leader: confirms with a quorum that it is still the leader and waits until the
    /// local state has applied everything committed before this call. A read of [`Self::state`]
    /// after it is linearizable. Elsewhere: [`MetaRaftError::NotLeader`].
    pub async fn ensure_linearizable(&self) -> Result<(), MetaRaftError> {
        self.check_quorum()?;
        within(
            self.inner.settings.membership_timeout_ms,
            "linearizable read check",
            async {
                match self.inner.raft.ensure_linearizable().await {
                    Ok(_) => Ok(()),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                        Err(not_leader(f))
                    }
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => Err(
                        MetaRaftError::Other(Error::unavailable(format!("metadata quorum: {q}"))),
                    ),
                    Err(RaftError::Fatal(f)) => Err(fatal(f)),
                }
            },
        )
        .await
    }

    /// On the leader: confirms with a quorum that it is still the leader and answers the index
    /// a linearizable read must have applied (the read index, as in the Raft paper's read-only
    /// queries); any node that has applied it sees every change committed before this call.
    /// It waits for nothing else. Elsewhere: [`MetaRaftError::NotLeader`].
    pub async fn read_index(&self, deadline: Duration) -> Result<u64, MetaRaftError> {
        self.check_quorum()?;
        let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        within(ms, "read index (leadership check)", async {
            match self.inner.raft.get_read_log_id().await {
                Ok((read, applied)) => Ok(read
                    .map(|l| l.index)
                    .max(applied.map(|l| l.index))
                    .unwrap_or(0)),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(not_leader(f))
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => Err(
                    MetaRaftError::Other(Error::unavailable(format!("metadata quorum: {q}"))),
                ),
                Err(RaftError::Fatal(f)) => Err(fatal(f)),
            }
        })
        .await
    }

    /// The local read view of the metadata state (this node's applied state; possibly behind the
    /// leader unless [`Self::ensure_linearizable`] was called on the leader).
    pub fn state(&self) -> StateView {
        self.inner.sm.view()
    }

    /// Follows every applied command and membership change (see [`MetaEvent`] for the protocol).
    pub fn subscribe(&self) -> broadcast::Receiver<MetaEvent> {
        self.inner.sm.subscribe()
    }

    /// The current leader and its addresses, as this node knows them.
    pub fn leader(&self) -> Option<(NodeId, Option<MetaNode>)> {
        let m = self.metrics();
        m.leader.map(|id| (id, m.leader_node))
    }

    /// Waits until this node knows of a leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let m = self
            .inner
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a metadata leader")
            .await
            .map_err(|e| Error::timeout(format!("waiting for a metadata leader: {e}")))?;
        m.current_leader
            .ok_or_else(|| Error::internal("a leader was seen and then lost"))
    }

    /// Waits until this node has applied the log up to `index` (read-your-writes after a
    /// forwarded write, or a follower catching up).
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "metadata applied index")
            .await
            .map(|_| ())
            .map_err(|e| Error::timeout(format!("waiting for index {index} to apply: {e}")))
    }

    /// A summary of the group as this node sees it.
    pub fn metrics(&self) -> MetaMetrics {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let nodes: BTreeMap<NodeId, MetaNode> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        MetaMetrics {
            id: m.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            leader_node: m.current_leader.and_then(|l| nodes.get(&l).cloned()),
            last_log_index: m.last_log_index,
            committed_index: self.inner.committed.load(Ordering::Relaxed),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }

    /// Serves a Raft RPC that arrived for this node.
    pub async fn handle_rpc(&self, rpc: RaftRpc) -> RaftReply {
        super::network::handle_rpc(&self.inner.raft, rpc).await
    }

    /// Serves a Raft RPC that arrived as bytes ([`super::encode_rpc`]) and returns the encoded
    /// reply. Bytes that do not decode are a `BadRequest` and reach no Raft code.
    pub async fn handle_rpc_bytes(&self, request: &[u8]) -> Result<Vec<u8>> {
        let rpc = decode_rpc(request)?;
        encode_reply(&self.handle_rpc(rpc).await)
    }

    /// Asks for a snapshot now (normally the snapshot policy decides).
    pub async fn trigger_snapshot(&self) -> Result<()> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| fatal(e).into())
    }

    /// Stops this member. Its durable state stays for a restart.
    pub async fn shutdown(&self) -> Result<()> {
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| Error::internal(format!("metadata raft shutdown: {e}")))?;
        tracing::info!(node = self.inner.id, "metadata raft stopped");
        Ok(())
    }
}
