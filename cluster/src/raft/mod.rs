//! Raft-replicated metadata (openraft): being built.
