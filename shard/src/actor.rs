//! The shard actor: one per shard replica. It owns the order of writes and the WAL: a write is
//! validated, resolved to point ids, appended and fsynced, then applied, and only then answered.
//! It also schedules the replica's background index jobs. Reads never pass through its mailbox:
//! they use the shared [`ShardData`] through the node's fair scheduler. A write's CPU runs on the
//! ingest pool and index builds on the background pool ([`crate::priority`]).
//!
//! A write whose WAL append or fsync fails, or that cannot be applied once logged, fails the
//! replica ([`Fatal`]): memory and disk may no longer agree (after a failed fsync the kernel may
//! have dropped the pages; a half-cut record would bury every later one), so carrying on could
//! acknowledge writes that a restart loses. The actor records the failure where the manager sees
//! it, logs it once, and stops; the replica is reopened from what the disk holds.

use std::sync::Arc;

use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tessera_core::record_log::{AppendError, RecordLog};
use tessera_core::{Error, Fatal, Result};
use tessera_index::CompactGraph;
use tokio::sync::Semaphore;

use crate::filter::Filter;
use crate::manager::Failure;
use crate::point::{Payload, PointId};
use crate::priority::{self, Class};
use crate::store::{BuildJob, ShardData, build_graph};
use crate::wal::{self, WalOp, WalPoint, WalRecord, payload_to_json};

/// A point to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPoint {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: Payload,
}

/// Which points a write touches.
#[derive(Debug, Clone)]
pub enum Selector {
    Ids(Vec<PointId>),
    Filter(Filter),
    /// These ids, but only those whose point matches the filter (a tenant's scope in a
    /// payload-partitioned collection): an id outside it is treated exactly as a missing one.
    IdsWhere(Vec<PointId>, Filter),
}

#[derive(Debug, Clone)]
pub enum WriteOp {
    Upsert(Vec<NewPoint>),
    /// Upsert, except that a point whose id exists and does not match the guard is left as it
    /// is (Qdrant's `update_filter`): a tenant's write never replaces another tenant's point in a
    /// payload-partitioned collection. The skipped count is logged and counted.
    UpsertWhere(Vec<NewPoint>, Filter),
    Delete(Selector),
    SetPayload {
        selector: Selector,
        payload: Payload,
        key: Option<String>,
    },
    OverwritePayload {
        selector: Selector,
        payload: Payload,
    },
    DeletePayload {
        selector: Selector,
        keys: Vec<String>,
    },
    ClearPayload(Selector),
}

pub enum ShardMsg {
    /// Applies a write durably; answers its sequence number.
    Write(WriteOp, RpcReplyPort<Result<u64>>),
    /// A background index job finished.
    Built(Box<BuildJob>, Result<CompactGraph>),
    /// A background job found nothing to do after all.
    Idle,
}

pub struct ShardActor;

/// The WAL is folded into a points snapshot when it grows past this.
pub const WAL_CHECKPOINT_BYTES: u64 = 64 << 20;

pub struct ShardArgs {
    pub id: crate::manager::ReplicaId,
    pub data: Arc<ShardData>,
    pub wal: RecordLog,
    /// The replica's directory: its identity is written there before its first record.
    pub dir: std::path::PathBuf,
    pub snapshot_path: std::path::PathBuf,
    /// Node-wide limit on concurrent index builds.
    pub builds: Arc<Semaphore>,
    /// Where the actor records that the replica failed, for the manager to refuse requests with.
    pub failure: Failure,
    /// The node's record of replicas that own data (a replica's first write enters it).
    pub ledger: Arc<crate::replica_dir::Ledger>,
}

pub struct ShardState {
    id: crate::manager::ReplicaId,
    data: Arc<ShardData>,
    wal: Arc<Mutex<RecordLog>>,
    dir: std::path::PathBuf,
    ledger: Arc<crate::replica_dir::Ledger>,
    snapshot_path: std::path::PathBuf,
    builds: Arc<Semaphore>,
    failure: Failure,
    job_running: bool,
}

/// How a write failed: the request alone (the replica goes on), or the replica.
enum WriteError {
    Refused(Error),
    Fatal(Fatal),
}

impl From<Error> for WriteError {
    fn from(e: Error) -> WriteError {
        WriteError::Refused(e)
    }
}

/// What a failed replica calls itself in the errors its callers see (`replica failed: ..`).
const COMPONENT: &str = "replica";

impl Actor for ShardActor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ShardMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        let mut st = ShardState {
            id: args.id,
            data: args.data,
            wal: Arc::new(Mutex::new(args.wal)),
            dir: args.dir,
            ledger: args.ledger,
            snapshot_path: args.snapshot_path,
            builds: args.builds,
            failure: args.failure,
            job_running: false,
        };
        schedule_job(&myself, &mut st);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        msg: ShardMsg,
        st: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardMsg::Write(op, reply) => match write(st, op).await {
                Ok(seq) => {
                    let _ = reply.send(Ok(seq));
                    schedule_job(&myself, st);
                }
                Err(WriteError::Refused(e)) => {
                    let _ = reply.send(Err(e));
                    schedule_job(&myself, st);
                }
                Err(WriteError::Fatal(f)) => {
                    let spec = &st.data.spec;
                    tracing::error!(
                        collection = spec.collection_uid,
                        shard = spec.shard_id,
                        key = ?spec.key,
                        wal = %st.wal.lock().path().display(),
                        error = %f.cause,
                        "replica failed, it refuses requests until it is reopened"
                    );
                    metrics::counter!("tessera_replica_failures_total").increment(1);
                    // recorded before the answer, so no later request finds the replica usable
                    let _ = st.failure.set(f.clone());
                    let _ = reply.send(Err(f.clone().into()));
                    // an error from a handler stops the actor: writes queued behind this one
                    // are dropped, and the manager answers them with the failure
                    return Err(Box::new(f));
                }
            },
            ShardMsg::Built(job, graph) => {
                st.job_running = false;
                let installed = graph.and_then(|g| st.data.install(*job, g));
                if let Err(e) = installed {
                    tracing::warn!(
                        shard = st.data.spec.shard_id,
                        error = %e,
                        "index job failed; the segment stays searchable by exact scan"
                    );
                } else {
                    metrics::counter!("tessera_index_builds_total").increment(1);
                }
                schedule_job(&myself, st);
            }
            ShardMsg::Idle => st.job_running = false,
        }
        Ok(())
    }
}

/// Starts the next index job in the background if none is running and one is due.
fn schedule_job(myself: &ActorRef<ShardMsg>, st: &mut ShardState) {
    if st.job_running || st.data.due_job().is_none() {
        return;
    }
    st.job_running = true;
    let data = st.data.clone();
    let builds = st.builds.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let Ok(_permit) = builds.acquire_owned().await else {
            return;
        };
        let done = priority::run(Class::Background, move || {
            let job = data.next_job()?;
            let started = std::time::Instant::now();
            let graph = build_graph(&data.spec, &job);
            tracing::debug!(
                shard = data.spec.shard_id,
                points = job.ids.len(),
                sources = job.sources.len(),
                ms = started.elapsed().as_millis() as u64,
                "index job built"
            );
            Some((job, graph))
        })
        .await;
        let msg = match done {
            Ok(Some((job, graph))) => ShardMsg::Built(Box::new(job), graph),
            Ok(None) => ShardMsg::Idle,
            Err(e) => {
                tracing::error!(error = %e, "index job failed");
                ShardMsg::Idle
            }
        };
        let _ = me.send_message(msg);
    });
}

async fn write(st: &mut ShardState, op: WriteOp) -> Result<u64, WriteError> {
    let data = st.data.clone();
    let wal = st.wal.clone();
    let snapshot_path = st.snapshot_path.clone();
    let (id, dir, ledger) = (st.id, st.dir.clone(), st.ledger.clone());
    // the write's CPU (validation, encoding, applying) runs below searches' priority
    priority::run(Class::Ingest, move || {
        let op = resolve(&data, op)?;
        let seq = data.last_seq() + 1;
        let rec = WalRecord { seq, op };
        let body = wal::encode(&rec)?;
        let mut wal = wal.lock();
        if !wal.exists() {
            // the first record: the directory says whose data it holds before it holds any
            crate::replica_dir::ensure_identity(&dir, &data.spec)?;
        }
        match wal.try_append(&[&body], true) {
            Ok(()) => {}
            Err(AppendError::Refused(e)) => return Err(WriteError::Refused(e)),
            Err(AppendError::Failed(e)) => return Err(WriteError::Fatal(Fatal::new(COMPONENT, e))),
        }
        // logged but not applied: memory would be behind the disk, and the next write would
        // reuse this sequence number
        data.apply(&rec)
            .map_err(|e| WriteError::Fatal(Fatal::new(COMPONENT, e)))?;
        metrics::counter!("tessera_wal_records_total").increment(1);
        if !ledger.owns(id)
            && let Err(e) = ledger.record_owned(id)
        {
            // the write is durable; without the entry only a lost directory goes unnoticed
            tracing::warn!(replica = %id, error = %e, "recording the replica in the ledger failed; retried at the next write");
        }
        if wal.len_bytes() > WAL_CHECKPOINT_BYTES {
            // snapshot first, then truncate: a crash in between replays records the snapshot
            // already holds, and apply() skips them by sequence number
            // the write is already durable: a failed checkpoint is logged and retried next time
            let (last_seq, points) = data.export();
            let folded =
                wal::write_snapshot(&snapshot_path, last_seq, points).and_then(|()| wal.clear());
            match folded {
                Ok(()) => tracing::debug!(
                    shard = data.spec.shard_id,
                    last_seq,
                    "wal folded into a snapshot"
                ),
                Err(e) => {
                    tracing::warn!(shard = data.spec.shard_id, error = %e, "wal checkpoint failed")
                }
            }
        }
        Ok(seq)
    })
    .await?
}

/// Validates a write and turns it into the record to log: vectors checked and prepared, filters
/// resolved to the ids they match now.
fn resolve(data: &ShardData, op: WriteOp) -> Result<WalOp> {
    let ids_of = |sel: Selector, must_exist: bool| -> Result<Vec<PointId>> {
        match sel {
            Selector::Ids(ids) => {
                if must_exist {
                    let found = data.resolve(Some(&ids), None);
                    if found.len() < ids.len() {
                        let missing = ids.iter().find(|id| !found.contains(id));
                        if let Some(m) = missing {
                            return Err(Error::not_found(format!("No point with id {m} found")));
                        }
                    }
                }
                Ok(ids)
            }
            Selector::Filter(f) => Ok(data.resolve(None, Some(&f))),
            Selector::IdsWhere(ids, f) => {
                let found = data.resolve(Some(&ids), Some(&f));
                if must_exist
                    && found.len() < ids.len()
                    && let Some(m) = ids.iter().find(|id| !found.contains(id))
                {
                    return Err(Error::not_found(format!("No point with id {m} found")));
                }
                Ok(found)
            }
        }
    };
    Ok(match op {
        WriteOp::UpsertWhere(points, guard) => {
            let ids: Vec<PointId> = points.iter().map(|p| p.id.clone()).collect();
            let foreign = data.existing_not_matching(&ids, &guard);
            if !foreign.is_empty() {
                tracing::warn!(
                    shard = data.spec.shard_id,
                    skipped = foreign.len(),
                    "upsert skipped points outside the writer's scope"
                );
                metrics::counter!("tessera_scoped_upsert_skipped_total")
                    .increment(foreign.len() as u64);
            }
            let keep: Vec<NewPoint> = points
                .into_iter()
                .filter(|p| !foreign.contains(&p.id))
                .collect();
            return resolve(data, WriteOp::Upsert(keep));
        }
        WriteOp::Upsert(points) => {
            let mut out = Vec::with_capacity(points.len());
            for mut p in points {
                if p.vector.len() != data.spec.dim {
                    return Err(Error::bad_request(format!(
                        "Wrong input: Vector dimension error: expected dim: {}, got {}",
                        data.spec.dim,
                        p.vector.len()
                    )));
                }
                if p.vector.iter().any(|x| !x.is_finite()) {
                    return Err(Error::bad_request(
                        "Wrong input: vector values must be finite numbers",
                    ));
                }
                data.prepare_vector(&mut p.vector);
                out.push(WalPoint {
                    id: p.id,
                    vector: p.vector,
                    payload_json: payload_to_json(&p.payload),
                });
            }
            WalOp::Upsert(out)
        }
        WriteOp::Delete(sel) => WalOp::Delete(ids_of(sel, false)?),
        WriteOp::SetPayload {
            selector,
            payload,
            key,
        } => WalOp::SetPayload {
            ids: ids_of(selector, true)?,
            payload_json: payload_to_json(&payload),
            key,
        },
        WriteOp::OverwritePayload { selector, payload } => WalOp::OverwritePayload {
            ids: ids_of(selector, true)?,
            payload_json: payload_to_json(&payload),
        },
        WriteOp::DeletePayload { selector, keys } => WalOp::DeletePayload {
            ids: ids_of(selector, true)?,
            keys,
        },
        WriteOp::ClearPayload(sel) => WalOp::ClearPayload {
            ids: ids_of(sel, true)?,
        },
    })
}
