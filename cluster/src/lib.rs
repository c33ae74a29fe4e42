//! The metadata plane of tessera: the metadata state machine (collections, shard keys, placement),
//! its durable single-node home, quotas, the Raft member and the transport between nodes.
//!
//! The error classification, the binary codec and the checksummed record log live in
//! `tessera-core` (so the data plane need not link Raft or QUIC); they are re-exported here at
//! their old paths.
//!
//! Architecture invariant: this crate knows nothing of HTTP, JWT, HNSW or actors. Its decision logic
//! is plain functions over plain data ([`meta::MetadataState::apply`]).

pub mod meta;
pub mod metastore;
pub mod quota;
pub mod raft;
pub mod request;
pub mod transport;

pub use tessera_core::{Error, ErrorKind, Fatal, Result};
pub use tessera_core::{codec, error, record_log};
