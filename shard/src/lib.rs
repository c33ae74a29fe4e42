//! The data plane of tessera: one shard actor per shard replica, owning its point store, its
//! write-ahead log, its vector index and its payload filters.
//!
//! Architecture invariant: this crate knows nothing of HTTP, JWT or Raft.

pub mod actor;
pub mod calendar;
pub mod filter;
pub mod manager;
pub mod point;
pub mod priority;
pub mod replica_dir;
pub mod replication;
pub mod segfile;
pub mod segment;
pub mod store;
pub mod wal;

pub use tessera_index::{DEFAULT_EF, GraphParams, Metric, distance, score_from_distance};
