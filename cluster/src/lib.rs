//! Shared types of tessera: the error classification, the binary codec, the checksummed record log
//! the metadata state machine (collections, shard keys, placement) and the requests that change it.
//!
//! Architecture invariant: this crate knows nothing of HTTP, JWT, HNSW or actors. Its decision logic
//! is plain functions over plain data ([`meta::MetadataState::apply`]).

pub mod codec;
pub mod error;
pub mod meta;
pub mod metastore;
pub mod quota;
pub mod raft;
pub mod record_log;
pub mod request;
pub mod transport;

pub use error::{Error, ErrorKind, Result};
