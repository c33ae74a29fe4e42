//! Service bodies: the banner at `/` and Qdrant's `GET /cluster` status.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Empty;

/// `GET /`.
#[derive(Serialize)]
pub struct Banner {
    pub commit: &'static str,
    pub tessera_version: &'static str,
    pub title: &'static str,
    pub version: &'static str,
}

/// `GET /cluster`, in Qdrant's shape. A single node reports itself as the leader of a
/// one-member group; a cluster member adds what it knows of its peers and the log.
#[derive(Serialize)]
pub struct ClusterStatus {
    pub consensus_thread_status: ConsensusThreadStatus,
    pub message_send_failures: Empty,
    pub peer_id: u64,
    /// By peer id (as a string, in string order).
    pub peers: BTreeMap<String, Peer>,
    pub raft_info: RaftInfo,
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct ConsensusThreadStatus {
    pub consensus_thread_status: &'static str,
    pub last_update: String,
}

/// A peer: its HTTP address; on a cluster member also its QUIC address, whether it votes and
/// whether this node can reach it.
#[derive(Serialize)]
pub struct Peer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p2p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    pub uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voter: Option<bool>,
}

#[derive(Serialize)]
pub struct RaftInfo {
    /// Reported by cluster members only (where it is null before anything was applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Option<u64>>,
    pub commit: u64,
    pub is_voter: bool,
    pub leader: Option<u64>,
    pub pending_operations: u64,
    pub role: String,
    pub term: u64,
}
