//! The durable Raft log: one checksummed [`RecordLog`] journal in `<data>/raft/log`.
//!
//! Every change is a record appended to the journal: an entry, a truncation of a conflicting
//! suffix, a purge after a snapshot, a vote, the committed log id. Opening the journal replays
//! the records in order into memory (the metadata log is small: it is purged after every
//! snapshot), and a torn tail is truncated by the record log itself. A purge rewrites the journal
//! atomically (temporary file, fsync, rename) with only what is still live, so the file does not
//! grow without bound.
//!
//! Entries, truncations and votes are fsynced before openraft is told they are durable
//! ([`LogFlushed::log_io_completed`]); the committed log id is written without its own fsync (it
//! is an optimisation: openraft re-learns it from the leader).
//!
//! File I/O runs on tokio's blocking pool, so an fsync never stalls the Raft core's thread.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError, Vote};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::codec;
use crate::error::{Error, Result};
use crate::record_log::{self, RecordLog};

const LOG_FILE: &str = "log";
const LOG_REWRITE_FILE: &str = "log.rewrite";

/// One record of the journal.
#[derive(Serialize, Deserialize)]
enum LogRecord {
    /// An entry; it replaces any entry at its index or after.
    Entry(Entry),
    /// Entries at `since` and after are deleted.
    Truncate {
        since: u64,
    },
    /// Entries up to and including `upto` are deleted; `upto` is the last purged log id.
    Purge {
        upto: LogId,
    },
    Vote(Vote<NodeId>),
    Committed(Option<LogId>),
}

/// The log as it is in memory: the replay of the journal.
#[derive(Default)]
struct LogMem {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
}

impl LogMem {
    fn replay(&mut self, record: LogRecord) {
        match record {
            LogRecord::Entry(e) => {
                let index = e.log_id.index;
                self.entries.split_off(&index);
                self.entries.insert(index, e);
            }
            LogRecord::Truncate { since } => {
                self.entries.split_off(&since);
            }
            LogRecord::Purge { upto } => self.purge(upto),
            LogRecord::Vote(v) => self.vote = Some(v),
            LogRecord::Committed(c) => self.committed = c,
        }
    }

    fn purge(&mut self, upto: LogId) {
        self.entries = self.entries.split_off(&(upto.index + 1));
        if self
            .last_purged
            .as_ref()
            .is_none_or(|p| p.index < upto.index)
        {
            self.last_purged = Some(upto);
        }
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.last_purged)
    }

    /// The journal that reproduces this state, for an atomic rewrite.
    fn live_records(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(self.entries.len() + 3);
        if let Some(v) = &self.vote {
            out.push(codec::encode(&LogRecord::Vote(*v))?);
        }
        if let Some(p) = &self.last_purged {
            out.push(codec::encode(&LogRecord::Purge { upto: *p })?);
        }
        if self.committed.is_some() {
            out.push(codec::encode(&LogRecord::Committed(self.committed))?);
        }
        for e in self.entries.values() {
            out.push(codec::encode(&LogRecord::Entry(e.clone()))?);
        }
        Ok(out)
    }
}

/// The Raft log storage of one node. Cheap to clone the reader half ([`LogReader`]); the store
/// itself is owned by openraft.
pub struct LogStore {
    dir: PathBuf,
    mem: Arc<Mutex<LogMem>>,
    file: Arc<Mutex<RecordLog>>,
    committed_index: Arc<AtomicU64>,
}

/// A read handle on the log, used by openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    mem: Arc<Mutex<LogMem>>,
}

fn io_err(e: &Error) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_logs(e),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying its journal. A record whose checksum holds
    /// but which does not decode is an error (a format mismatch, not a torn write).
    pub fn open(dir: &Path) -> Result<LogStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let stale = dir.join(LOG_REWRITE_FILE);
        if stale.exists() {
            // a rewrite that crashed before its rename: the old journal is still whole
            std::fs::remove_file(&stale).map_err(|e| Error::io("remove", &stale, e))?;
        }
        let mut mem = LogMem::default();
        let (file, report) = RecordLog::open(&dir.join(LOG_FILE), |body| {
            mem.replay(codec::decode(body)?);
            Ok(())
        })?;
        tracing::info!(
            dir = %dir.display(),
            records = report.records,
            truncated_bytes = report.truncated_bytes,
            entries = mem.entries.len(),
            last_purged = ?mem.last_purged.map(|l| l.index),
            last_log = ?mem.last_log_id().map(|l| l.index),
            "raft log opened"
        );
        let committed = mem.committed.map(|c| c.index).unwrap_or(0);
        Ok(LogStore {
            dir: dir.to_path_buf(),
            mem: Arc::new(Mutex::new(mem)),
            file: Arc::new(Mutex::new(file)),
            committed_index: Arc::new(AtomicU64::new(committed)),
        })
    }

    /// The last committed index this node has learnt (0 before any), shared for metrics.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed_index.clone()
    }

    /// Appends encoded records to the journal on the blocking pool.
    async fn write(&self, bodies: Vec<Vec<u8>>, sync: bool) -> Result<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            file.lock().append(&refs, sync)
        })
        .await
        .map_err(|e| Error::internal(format!("raft log write task failed: {e}")))?
    }

    /// Replaces the journal with `bodies`, atomically.
    async fn rewrite(&self, bodies: Vec<Vec<u8>>) -> Result<()> {
        let file = self.file.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock();
            let tmp_path = dir.join(LOG_REWRITE_FILE);
            if tmp_path.exists() {
                std::fs::remove_file(&tmp_path).map_err(|e| Error::io("remove", &tmp_path, e))?;
            }
            let (mut tmp, _) = RecordLog::open(&tmp_path, |_| Ok(()))?;
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            if refs.is_empty() {
                // an empty journal still replaces the old one
                std::fs::File::create(&tmp_path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("create", &tmp_path, e))?;
            } else {
                tmp.append(&refs, true)?;
            }
            let path = dir.join(LOG_FILE);
            std::fs::rename(&tmp_path, &path).map_err(|e| Error::io("rename into", &path, e))?;
            record_log::sync_parent_dir(&path)?;
            let (reopened, _) = RecordLog::open(&path, |_| Ok(()))?;
            *file = reopened;
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("raft log rewrite task failed: {e}")))?
    }
}

fn read_range<RB: RangeBounds<u64>>(mem: &Mutex<LogMem>, range: RB) -> Vec<Entry> {
    mem.lock()
        .entries
        .range(range)
        .map(|(_, e)| e.clone())
        .collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.mem, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.mem, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.mem.lock();
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: mem.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            mem: self.mem.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let body = codec::encode(&LogRecord::Vote(*vote)).map_err(|e| StorageError::IO {
            source: StorageIOError::write_vote(&e),
        })?;
        self.write(vec![body], true)
            .await
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_vote(&e),
            })?;
        self.mem.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.mem.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let body = codec::encode(&LogRecord::Committed(committed)).map_err(|e| io_err(&e))?;
        self.write(vec![body], false)
            .await
            .map_err(|e| io_err(&e))?;
        self.mem.lock().committed = committed;
        self.committed_index
            .store(committed.map(|c| c.index).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.mem.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut bodies = Vec::with_capacity(entries.len());
        for e in &entries {
            bodies.push(codec::encode(&LogRecord::Entry(e.clone())).map_err(|e| io_err(&e))?);
        }
        if let Err(e) = self.write(bodies, true).await {
            // openraft learns of the failure both ways: through the callback and the result
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(io_err(&e));
        }
        {
            let mut mem = self.mem.lock();
            for e in entries {
                mem.replay(LogRecord::Entry(e));
            }
        }
        // durable: the write above was fsynced
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(
            since = log_id.index,
            "raft log: truncating a conflicting suffix"
        );
        let body = codec::encode(&LogRecord::Truncate {
            since: log_id.index,
        })
        .map_err(|e| io_err(&e))?;
        self.write(vec![body], true).await.map_err(|e| io_err(&e))?;
        self.mem.lock().entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let records = {
            let mut mem = self.mem.lock();
            mem.purge(log_id);
            mem.live_records().map_err(|e| io_err(&e))?
        };
        tracing::debug!(
            upto = log_id.index,
            live = records.len(),
            "raft log: purging and rewriting"
        );
        self.rewrite(records).await.map_err(|e| io_err(&e))
    }
}
