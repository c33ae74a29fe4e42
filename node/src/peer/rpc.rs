//! The admin RPCs between nodes and what serving them asks of this node's metadata.
//!
//! Only this module and [`crate::shard_rpc`] define inter-node message shapes of the node.

use serde::{Deserialize, Serialize};
use tessera_cluster::Result;
use tessera_cluster::meta::{NodeId, ShardId};
use tessera_cluster::raft::MetaNode;
use tessera_cluster::request::MetaRequest;
use tessera_cluster::transport::BoxFuture;

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminRpc {
    /// A new node asks to become a member (learner, then voter up to the configured count).
    Join {
        id: NodeId,
        node: MetaNode,
        /// Whether the joining node's own metadata lists it as a member already (a member back,
        /// maybe on new addresses) rather than a new node: a new node may not take an id that a
        /// member holds.
        member: bool,
        /// The join secret the node was given, if any.
        token: Option<String>,
    },
    /// A metadata change forwarded to the leader.
    Meta(MetaRequest),
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
    /// Asks the metadata leader for its read index ([`tessera_cluster::raft::MetaRaft::read_index`]):
    /// a node that has applied it may serve a read from its own view of the metadata.
    ReadIndex,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminReply {
    Joined,
    Applied(u64),
    HasReplica(bool),
    Pong,
}

/// Runs a metadata change forwarded by another node, as this node's own API would: the
/// catalog implements it, and the peer service serves `AdminRpc::Meta` through it.
pub trait MetaExecutor: Send + Sync + 'static {
    /// Runs `request` on this node (the leader, or says why not); answers the applied index.
    fn execute(&self, request: MetaRequest) -> BoxFuture<'_, Result<u64>>;
    /// Makes `request` from this node, forwarded to the leader if this node is not it.
    fn submit(&self, request: MetaRequest) -> BoxFuture<'_, Result<u64>>;
}
