//! Tests of the metadata Raft group.
