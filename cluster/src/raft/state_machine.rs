//! The metadata state machine behind Raft: [`MetadataState`] plus the last applied log id and
//! membership, snapshotted to `<data>/raft/snapshot` (checksummed, written atomically).
//!
//! Readers (HTTP handlers, the router, the shard manager) read the state through a [`StateView`]
//! without going through Raft. Every applied command is also published as a [`MetaEvent`] so the
//! shard manager can open and close local replicas as placements change.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, Membership, RaftSnapshotBuilder, Snapshot, StorageIOError};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{
    Entry, LogId, MetaNode, MetaResponse, NodeId, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::codec;
use crate::error::{Error, Result};
use crate::meta::{Applied, Command, MetadataState};
use crate::record_log;

const SNAPSHOT_FILE: &str = "snapshot";

/// Something the metadata state did, in log order.
///
/// To follow the state without missing a change: subscribe ([`super::MetaRaft::subscribe`]),
/// then read the state ([`StateView::read`]), then act on events whose `index` is greater than
/// the state's `applied` index. On `RecvError::Lagged`, or on `SnapshotInstalled`, re-read the
/// whole state: events in between were dropped or replaced by the snapshot.
#[derive(Debug, Clone)]
pub enum MetaEvent {
    /// A committed command was applied; `result` is what `MetadataState::apply` returned (an
    /// error means the command changed nothing).
    Applied {
        index: u64,
        command: Command,
        result: Result<Applied>,
    },
    /// The cluster membership changed (a node joined, left, or was promoted).
    Membership {
        index: u64,
        membership: Membership<NodeId, MetaNode>,
    },
    /// The whole state was replaced by a snapshot from the leader (this node lagged behind).
    SnapshotInstalled { index: u64 },
}

/// A shared, read-only view of the metadata state. Cheap to clone.
#[derive(Clone)]
pub struct StateView {
    state: Arc<RwLock<MetadataState>>,
}

impl StateView {
    /// Reads the current state. Do not hold the guard across an await (it is not `Send`).
    pub fn read(&self) -> RwLockReadGuard<'_, MetadataState> {
        self.state.read()
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> MetadataState {
        self.state.read().clone()
    }
}

/// The snapshot file: its metadata and the encoded [`MetadataState`].
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Raft bookkeeping, changed together with the state under one lock so a snapshot is consistent.
#[derive(Default)]
struct SmMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    current: Option<(SnapshotMeta, Arc<Vec<u8>>)>,
    snapshots_built: u64,
}

struct SmShared {
    dir: PathBuf,
    node_id: NodeId,
    /// Lock order: `meta`, then `state`.
    meta: Mutex<SmMeta>,
    state: Arc<RwLock<MetadataState>>,
    /// Serialises writers of the snapshot file.
    file_lock: Mutex<()>,
    events: broadcast::Sender<MetaEvent>,
}

/// The state machine handed to openraft; clones share everything.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<SmShared>,
}

fn snap_err(meta: Option<&SnapshotMeta>, e: &Error) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_snapshot(meta.map(|m| m.signature()), e),
    }
}

impl StateMachine {
    /// Opens the state machine in `dir`, loading the last snapshot if there is one (openraft then
    /// replays the committed log after it). `event_capacity` bounds the event channel.
    pub fn open(dir: &Path, node_id: NodeId, event_capacity: usize) -> Result<StateMachine> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let mut meta = SmMeta::default();
        let mut state = MetadataState::default();
        if let Some(bytes) = record_log::read_checksummed(&dir.join(SNAPSHOT_FILE))? {
            let file: SnapshotFile = codec::decode(&bytes)?;
            state = MetadataState::decode(&file.data)?;
            meta.last_applied = file.meta.last_log_id;
            meta.membership = file.meta.last_membership.clone();
            tracing::info!(
                dir = %dir.display(),
                last_log = ?file.meta.last_log_id.map(|l| l.index),
                collections = state.collections.len(),
                "metadata snapshot loaded"
            );
            meta.current = Some((file.meta, Arc::new(file.data)));
        }
        let (events, _) = broadcast::channel(event_capacity.max(1));
        Ok(StateMachine {
            shared: Arc::new(SmShared {
                dir: dir.to_path_buf(),
                node_id,
                meta: Mutex::new(meta),
                state: Arc::new(RwLock::new(state)),
                file_lock: Mutex::new(()),
                events,
            }),
        })
    }

    /// The read view of the state.
    pub fn view(&self) -> StateView {
        StateView {
            state: self.shared.state.clone(),
        }
    }

    /// A new receiver of applied-command events (see [`MetaEvent`] for how to follow without gaps).
    pub fn subscribe(&self) -> broadcast::Receiver<MetaEvent> {
        self.shared.events.subscribe()
    }

    fn publish(&self, event: MetaEvent) {
        // no receiver is fine: nobody follows yet
        let _ = self.shared.events.send(event);
    }

    /// Writes the snapshot file and makes it the current snapshot, unless a newer one is there.
    async fn persist(&self, meta: SnapshotMeta, data: Arc<Vec<u8>>) -> Result<()> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = shared.file_lock.lock();
            let newer_on_disk = shared
                .meta
                .lock()
                .current
                .as_ref()
                .is_some_and(|(m, _)| m.last_log_id > meta.last_log_id);
            if newer_on_disk {
                return Ok(());
            }
            let body = codec::encode(&SnapshotFile {
                meta: meta.clone(),
                data: data.as_ref().clone(),
            })?;
            record_log::write_checksummed(&shared.dir.join(SNAPSHOT_FILE), &body)?;
            let mut m = shared.meta.lock();
            if m.current
                .as_ref()
                .is_none_or(|(c, _)| c.last_log_id <= meta.last_log_id)
            {
                m.current = Some((meta, data));
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("snapshot write task failed: {e}")))?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, data) = {
            let mut m = self.shared.meta.lock();
            let state = self.shared.state.read();
            let data = state.encode().map_err(|e| snap_err(None, &e))?;
            m.snapshots_built += 1;
            let snapshot_id = match m.last_applied {
                Some(l) => format!(
                    "{}-{}-{}-{}",
                    l.leader_id, l.index, self.shared.node_id, m.snapshots_built
                ),
                None => format!("none-{}-{}", self.shared.node_id, m.snapshots_built),
            };
            let meta = SnapshotMeta {
                last_log_id: m.last_applied,
                last_membership: m.membership.clone(),
                snapshot_id,
            };
            (meta, Arc::new(data))
        };
        self.persist(meta.clone(), data.clone())
            .await
            .map_err(|e| snap_err(Some(&meta), &e))?;
        tracing::info!(
            last_log = ?meta.last_log_id.map(|l| l.index),
            bytes = data.len(),
            "metadata snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.as_ref().clone())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let m = self.shared.meta.lock();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let (response, event) = {
                let mut m = self.shared.meta.lock();
                m.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => (MetaResponse::default(), None),
                    EntryPayload::Normal(req) => {
                        let result = self.shared.state.write().apply(index, &req.0);
                        if let Err(e) = &result {
                            tracing::debug!(index, error = %e, "metadata command refused");
                        }
                        let response = MetaResponse {
                            outcome: Some(result.clone()),
                        };
                        let event = MetaEvent::Applied {
                            index,
                            command: req.0,
                            result,
                        };
                        (response, Some(event))
                    }
                    EntryPayload::Membership(membership) => {
                        m.membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        (
                            MetaResponse::default(),
                            Some(MetaEvent::Membership { index, membership }),
                        )
                    }
                }
            };
            if let Some(ev) = event {
                self.publish(ev);
            }
            out.push(response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = MetadataState::decode(&data).map_err(|e| snap_err(Some(meta), &e))?;
        self.persist(meta.clone(), Arc::new(data))
            .await
            .map_err(|e| snap_err(Some(meta), &e))?;
        {
            let mut m = self.shared.meta.lock();
            m.last_applied = meta.last_log_id;
            m.membership = meta.last_membership.clone();
            *self.shared.state.write() = state;
        }
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        tracing::info!(index, "metadata snapshot installed from the leader");
        self.publish(MetaEvent::SnapshotInstalled { index });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let m = self.shared.meta.lock();
        Ok(m.current.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.as_ref().clone())),
        }))
    }
}
