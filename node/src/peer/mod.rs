//! This node's side of the cluster: calls to peers and who is down ([`link`]), the admin RPCs
//! between nodes ([`rpc`]), membership (joining, adding and removing members, announcing new
//! addresses, pinging: [`membership`]), and the transport handler that serves peers' calls
//! ([`service`]).
//!
//! Services on the transport: `Raft` (openraft's RPCs), `Shard` ([`crate::shard_rpc::ShardRpc`]),
//! `Admin` ([`rpc::AdminRpc`]: join, forwarded metadata requests, replica checks, pings).
//!
//! The node binds its transport first, starts Raft and the catalog on it (they call out through
//! the [`link::Link`]), and only then serves it with a [`service::PeerService`] built from them;
//! until then peers' calls fail as to a node still starting. Nothing is bound late through a cell.
//!
//! Architecture invariants:
//! - The link and the RPC types are below the catalog (it forwards through the link); the
//!   serving side is built from the catalog's parts and reaches metadata changes only through
//!   [`rpc::MetaExecutor`], so no module here imports the catalog or the router.
//! - A peer that does not answer pings is marked down; requests for its shards fail at once with
//!   503 instead of waiting for a deadline, and other tenants are not affected.

pub mod link;
pub mod membership;
pub mod rpc;
pub mod service;

pub use link::Link;
pub use rpc::{AdminReply, AdminRpc, MetaExecutor};
pub use service::PeerService;
