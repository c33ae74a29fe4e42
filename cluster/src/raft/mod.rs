//! Raft-replicated metadata (openraft 0.9, `storage-v2`).
//!
//! The metadata state machine ([`crate::meta::MetadataState`]) sits behind Raft: every node keeps
//! the same state by applying the same committed log. Raft RPCs ride the node's one
//! [`crate::transport::Transport`] as `Service::Raft` (QUIC in production, the in-memory hub with
//! faults in tests) and arrive through [`handle_rpc`] / [`MetaRaft::handle_rpc_bytes`].
//!
//! ```text
//! MetaRaft (facade: start, initialize, add_learner, change_membership, propose, state, metrics)
//!   openraft::Raft<TypeConfig>
//!     LogStore      <data>/raft/log        journal of entries, votes, truncations, purges (fsynced)
//!     StateMachine  <data>/raft/snapshot   MetadataState + last applied log id + membership
//!     Network       dyn Transport          RaftRpc / RaftReply, serde enums (bincode via codec)
//! ```
//!
//! Architecture invariant: nothing here matches on [`Command`]'s variants; commands are applied
//! only through [`crate::meta::MetadataState::apply`], so new variants need no change here.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::meta::{Applied, Command};

mod log_store;
mod network;
mod node;
mod state_machine;
#[cfg(test)]
mod tests;

pub use log_store::{LogReader, LogStore};
pub use network::{
    BoxFuture, NetError, Network, NetworkFactory, RAFT_CALL_DEADLINE, RaftReply, RaftRpc,
    decode_reply, decode_rpc, encode_reply, encode_rpc, handle_rpc,
};
pub use node::{MetaMetrics, MetaRaft, MetaRaftError, RaftSettings, Role};
pub use state_machine::{MetaEvent, StateMachine, StateView};

/// Raft node ids: the same ids as [`crate::meta::NodeId`].
pub type NodeId = u64;

/// What the cluster knows about a member: where its peers reach it (QUIC) and where clients and
/// forwarded requests reach it (HTTP). Stored in the membership, so every node can find the
/// leader's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaNode {
    /// Node-to-node (QUIC) address, `host:port`.
    pub p2p_addr: String,
    /// HTTP API address, `host:port`.
    pub http_addr: String,
}

impl MetaNode {
    /// A node reachable at `p2p_addr` by peers and at `http_addr` by clients.
    pub fn new(p2p_addr: impl Into<String>, http_addr: impl Into<String>) -> MetaNode {
        MetaNode {
            p2p_addr: p2p_addr.into(),
            http_addr: http_addr.into(),
        }
    }
}

impl fmt::Display for MetaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p2p={} http={}", self.p2p_addr, self.http_addr)
    }
}

/// The application data of a Raft entry: one metadata command. A newtype so that it can
/// implement `Display` (openraft logs entries) without touching [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogCommand(pub Command);

impl fmt::Display for LogCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug of a command is bounded by the command's own limits (names, shard counts)
        write!(f, "{:?}", self.0)
    }
}

/// What applying one entry produced, handed back to the proposer on the leader.
///
/// `outcome` is `Some` for a command entry: `Ok` with what changed, or the deterministic error
/// `apply` refused it with (a refused command is committed but changes nothing). It is `None`
/// for blank and membership entries. The outcome is not serialised: openraft hands responses
/// to the local proposer only, and [`Applied`] is not a wire type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetaResponse {
    /// The result of `MetadataState::apply`, for command entries.
    #[serde(skip)]
    pub outcome: Option<Result<Applied>>,
}

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata group.
    pub TypeConfig:
        D = LogCommand,
        R = MetaResponse,
        NodeId = NodeId,
        Node = MetaNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of the metadata group.
pub type Raft = openraft::Raft<TypeConfig>;
/// One entry of the metadata Raft log.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A stored membership with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, MetaNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, MetaNode>;
/// openraft's storage error for this group.
pub type StorageError = openraft::StorageError<NodeId>;
