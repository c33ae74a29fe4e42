//! The small core every other tessera crate stands on: the fixed error classification, the one
//! binary codec, the checksummed record log (metadata log, every WAL) and the ids that cluster and
//! shard share.
//!
//! It exists so that the data plane (`tessera-shard`) can use these without linking the metadata
//! plane's consensus and networking: the dependency graph is `core <- {cluster, shard} <- node`.
//!
//! Architecture invariant: this crate depends on no networking, consensus, HTTP, JWT, HNSW or actor
//! crate (openraft, quinn, rustls, rcgen, tokio's networking, axum, jsonwebtoken, hnsw_rs, ractor).

pub mod codec;
pub mod error;
pub mod ids;
pub mod not_found;
pub mod record_log;

pub use error::{Error, ErrorKind, Fatal, Result};
pub use ids::{CollectionUid, NodeId, ShardId, ShardKey};
pub use not_found::{missing_collection, missing_key};
