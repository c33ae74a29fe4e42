//! The durable home of the metadata state on one node: a snapshot file plus a log of the commands
//! applied since. Every proposal is appended and fsynced before it is applied, so an acknowledged
//! metadata change survives `kill -9`.
//!
//! This is the single-node embedded default. In a cluster the same state machine sits behind Raft.

use parking_lot::{RwLock, RwLockReadGuard};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::meta::{Applied, Command, MetadataState};
use crate::record_log::{self, RecordLog};

/// Commands in the log before it is folded into a new snapshot.
const SNAPSHOT_EVERY: u64 = 4096;

#[derive(Serialize, Deserialize)]
struct Entry {
    index: u64,
    command: Command,
}

pub struct MetaStore {
    dir: PathBuf,
    state: RwLock<MetadataState>,
    log: std::sync::Mutex<RecordLog>,
}

impl MetaStore {
    /// Opens (or creates) the store in `dir`, replaying the log over the snapshot. Commands that
    /// failed when they were first applied fail again the same way and change nothing.
    pub fn open(dir: &Path) -> Result<MetaStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let snap_path = dir.join("meta.snap");
        let mut state: MetadataState = match record_log::read_checksummed(&snap_path)? {
            Some(b) => MetadataState::decode(&b)?,
            None => MetadataState::default(),
        };
        let snap_index = state.applied;
        let (log, report) = RecordLog::open(&dir.join("meta.log"), |body| {
            let e: Entry = codec::decode(body)?;
            if e.index > state.applied {
                let _ = state.apply(e.index, &e.command);
            }
            Ok(())
        })?;
        tracing::info!(
            dir = %dir.display(),
            snapshot_index = snap_index,
            replayed = report.records,
            collections = state.collections.len(),
            "metadata loaded"
        );
        Ok(MetaStore {
            dir: dir.to_path_buf(),
            state: RwLock::new(state),
            log: std::sync::Mutex::new(log),
        })
    }

    /// A read view of the state. Do not hold it across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, MetadataState> {
        self.state.read()
    }

    /// The index the next command will get (used by proposers for unique ids).
    pub fn next_index(&self) -> u64 {
        self.read().applied + 1
    }

    /// Checks, makes durable, and applies `make(next_index)`. `make` sees the state and the
    /// command's index, so it can decide placement and ids before the command is logged.
    pub fn propose(
        &self,
        make: impl FnOnce(&MetadataState, u64) -> Result<Command>,
    ) -> Result<Applied> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.state.write();
        let index = state.applied + 1;
        let command = make(&state, index)?;
        let body = codec::encode(&Entry {
            index,
            command: command.clone(),
        })?;
        // apply changes nothing when it fails, so a refused command is never logged
        let before = state.applied;
        let applied = match state.apply(index, &command) {
            Ok(a) => a,
            Err(e) => {
                state.applied = before;
                return Err(e);
            }
        };
        if let Err(e) = log.append(&[&body], true) {
            // not durable: undo by reloading what is on disk
            tracing::error!(error = %e, "metadata log append failed; reloading the durable state");
            drop(log);
            if let Ok(reloaded) = MetaStore::open(&self.dir) {
                *state = reloaded.state.into_inner();
            }
            return Err(e);
        }
        if index.is_multiple_of(SNAPSHOT_EVERY) {
            let snap = state.encode()?;
            record_log::write_checksummed(&self.dir.join("meta.snap"), &snap)?;
            log.clear()?;
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::*;

    #[test]
    fn survives_reopen_and_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = MetaStore::open(dir.path()).expect("open");
            for i in 0..(SNAPSHOT_EVERY + 5) {
                store
                    .propose(|_, index| {
                        Ok(Command::CreateCollection {
                            name: format!("c{i}"),
                            uid: index,
                            params: CollectionParams {
                                dim: 3,
                                distance: Distance::Dot,
                                sharding_method: ShardingMethod::Custom,
                                shard_number: 1,
                                replication_factor: 1,
                                write_consistency_factor: 1,
                                hnsw: HnswParams::default(),
                                on_disk_payload: false,
                            },
                            shards: vec![],
                        })
                    })
                    .expect("propose");
            }
            // a refused command is not logged
            assert!(
                store
                    .propose(|_, _| Ok(Command::DeleteCollection {
                        name: "nope".into()
                    }))
                    .is_err()
            );
        }
        let store = MetaStore::open(dir.path()).expect("reopen");
        let st = store.read();
        assert_eq!(st.collections.len() as u64, SNAPSHOT_EVERY + 5);
        assert_eq!(st.applied, SNAPSHOT_EVERY + 5);
        assert_eq!(st.collections["c7"].uid, 8);
    }
}
