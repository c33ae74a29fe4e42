//! Ids that both the metadata (cluster) and the data plane (shard) speak of.
//!
//! `NodeId` and `ShardId` stay plain integer aliases: openraft takes `NodeId` as its `u64` node id,
//! and both travel in persisted metadata and wire messages whose encoding must not change.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node of the cluster (openraft's node id).
pub type NodeId = u64;

/// A shard's id, unique within its collection for the collection's lifetime.
pub type ShardId = u32;

/// A collection's uid: unique for the cluster's life, never reused (a collection re-created under
/// an old name never sees old files).
pub type CollectionUid = u64;

/// A shard key: Qdrant allows strings and unsigned integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ShardKey {
    Num(u64),
    Str(String),
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardKey::Num(n) => write!(f, "{n}"),
            ShardKey::Str(s) => f.write_str(s),
        }
    }
}
