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
use tokio::sync::Semaphore;

use crate::filter::Filter;
use crate::manager::Failure;
use crate::point::{Payload, PointId};
use crate::priority::{self, Class};
use crate::replication::{RejoinError, ReplicaStatus, Replicate, TAIL_BYTES, Tail, digest_of};
use crate::segment::Vectors;
use crate::store::{BuildJob, ShardData};
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

/// What a write answers: its sequence number, and the 503 message when it is safe on fewer
/// in-sync replicas than the collection's write consistency factor.
pub type WriteReply = Result<(u64, Option<String>)>;

pub enum ShardMsg {
    /// Applies a write durably (as the primary, with its replica set; alone, with None);
    /// answers its sequence number.
    Write(
        WriteOp,
        Option<Arc<dyn Replicate>>,
        RpcReplyPort<WriteReply>,
    ),
    /// A record from the shard's primary in `epoch` (this replica is a backup).
    Apply {
        epoch: u64,
        record: Arc<Vec<u8>>,
        reply: RpcReplyPort<Result<u64>>,
    },
    /// The replica's status; a nonzero `epoch` raises its fence first.
    Status {
        epoch: u64,
        reply: RpcReplyPort<Result<ReplicaStatus>>,
    },
    /// Replaces the replica with a copy of the primary's points.
    Install {
        epoch: u64,
        page: CopyPage,
        reply: RpcReplyPort<Result<ReplicaStatus>>,
    },
    /// As the primary: brings the replica on `node`, which holds everything up to `from_seq`,
    /// into the in-sync set.
    Rejoin {
        node: tessera_core::NodeId,
        from_seq: u64,
        repl: Arc<dyn Replicate>,
        reply: RpcReplyPort<Result<()>>,
    },
    /// A background index job finished.
    /// A background job's graph, with the segment file it was persisted in (if it was).
    Built(Box<BuildJob>, Result<(Vectors, Option<String>)>),
    /// A background job found nothing to do after all.
    Idle,
    /// As the primary of a copy taken from `from` on: keep the records after it for the
    /// copy's rejoin ([`Tail::pin`]).
    Pin {
        node: tessera_core::NodeId,
        from: u64,
        reply: RpcReplyPort<Result<()>>,
    },
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
    /// The newest epoch seen from a primary; records of older epochs are refused.
    fence: u64,
    /// Recent records, for a returning replica's catch-up.
    tail: Tail,
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
            fence: 0,
            tail: Tail::new(TAIL_BYTES),
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
            ShardMsg::Write(op, repl, reply) => {
                let done = write(st, op, repl).await;
                return answer(&myself, st, reply, done);
            }
            ShardMsg::Apply {
                epoch,
                record,
                reply,
            } => {
                let done = apply_replicated(st, epoch, record).await;
                return answer(&myself, st, reply, done);
            }
            ShardMsg::Status { epoch, reply } => {
                if epoch > st.fence {
                    st.fence = epoch;
                }
                let _ = reply.send(status(st).await);
            }
            ShardMsg::Install { epoch, page, reply } => {
                let done = install(st, epoch, page).await;
                return answer(&myself, st, reply, done);
            }
            ShardMsg::Rejoin {
                node,
                from_seq,
                repl,
                reply,
            } => {
                let last = st.data.last_seq();
                let done = match st.tail.after(from_seq, last) {
                    None => Err(RejoinError::Refused(Error::conflict(format!(
                        "replica on node {node} is too far behind (at {from_seq}, the primary keeps records after {}); it needs a full copy",
                        st.tail.first_seq().unwrap_or(last)
                    )))),
                    Some(records) => match status(st).await {
                        Ok(own) => repl.rejoin(node, records, own.digest).await,
                        Err(e) => Err(RejoinError::Refused(e)),
                    },
                };
                match done {
                    Ok(()) => {
                        st.tail.unpin(node);
                        let _ = reply.send(Ok(()));
                    }
                    Err(RejoinError::Refused(e)) => {
                        let _ = reply.send(Err(e));
                    }
                    Err(RejoinError::Unknown(e)) => {
                        let cause = Error::unavailable(format!(
                            "whether the replica on node {node} is back in the in-sync set is unknown, so this primary acknowledges no more writes: {}",
                            e.message
                        ));
                        return answer(
                            &myself,
                            st,
                            reply,
                            Err(WriteError::Fatal(Fatal::new(COMPONENT, cause))),
                        );
                    }
                }
            }
            ShardMsg::Built(job, graph) => {
                st.job_running = false;
                let files = st.dir.join(crate::segfile::DIR);
                let mut new_file = None;
                let installed = graph.and_then(|(g, file)| {
                    new_file = file.clone();
                    st.data.install(*job, g, file)
                });
                match installed {
                    Err(e) => {
                        if let Some(f) = new_file {
                            crate::segfile::remove(&files, &f);
                        }
                        tracing::warn!(
                            shard = st.data.spec.shard_id,
                            error = %e,
                            "index job failed; the segment stays searchable by exact scan"
                        );
                    }
                    Ok(replaced) => {
                        for f in replaced {
                            crate::segfile::remove(&files, &f);
                        }
                        metrics::counter!("tessera_index_builds_total").increment(1);
                    }
                }
                schedule_job(&myself, st);
            }
            ShardMsg::Idle => st.job_running = false,
            ShardMsg::Pin { node, from, reply } => {
                st.tail.pin(node, from);
                let _ = reply.send(Ok(()));
            }
        }
        Ok(())
    }
}

/// Answers a write-like message. A fatal error fails the replica: it is recorded where the
/// manager sees it before the answer, logged once, and stops the actor (writes queued behind are
/// dropped, and the manager answers them with the failure).
fn answer<T: Send + 'static>(
    myself: &ActorRef<ShardMsg>,
    st: &mut ShardState,
    reply: RpcReplyPort<Result<T>>,
    done: Result<T, WriteError>,
) -> Result<(), ActorProcessingErr> {
    match done {
        Ok(v) => {
            let _ = reply.send(Ok(v));
            schedule_job(myself, st);
            Ok(())
        }
        Err(WriteError::Refused(e)) => {
            let _ = reply.send(Err(e));
            schedule_job(myself, st);
            Ok(())
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
            let _ = st.failure.set(f.clone());
            let _ = reply.send(Err(f.clone().into()));
            Err(Box::new(f))
        }
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
    let files = st.dir.join(crate::segfile::DIR);
    tokio::spawn(async move {
        let Ok(_permit) = builds.acquire_owned().await else {
            return;
        };
        let done = priority::run(Class::Background, move || {
            let job = data.next_job()?;
            let started = std::time::Instant::now();
            // Builds on the calling thread: background builds run at the lowest CPU priority,
            // and rayon's pool (hnsw_rs's parallel insert) would run them at normal priority on
            // every core, slowing every tenant's searches.
            let graph = crate::store::build(&data.spec, &job).map(|built| {
                if matches!(built, Vectors::Plain(_)) {
                    return (built, None);
                }
                // kept on disk for restarts and copies; without its file the segment is built
                // again after a restart, nothing worse
                let name = crate::segfile::fresh_name();
                match crate::segfile::write(&files, &name, &job.ids, &built) {
                    Ok(_) => (built, Some(name)),
                    Err(e) => {
                        tracing::warn!(shard = data.spec.shard_id, error = %e, "segment file not written");
                        (built, None)
                    }
                }
            });
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

/// A write as the shard's primary (or its only replica): resolved and encoded, logged here and
/// sent to the in-sync backups at once, and applied once both are done. Answers the sequence
/// number and, when the in-sync set shrank below the write consistency factor meanwhile, the
/// message of the 503 the caller answers with (the write is applied and safe on the rest).
async fn write(
    st: &mut ShardState,
    op: WriteOp,
    repl: Option<Arc<dyn Replicate>>,
) -> Result<(u64, Option<String>), WriteError> {
    if let Some(r) = &repl {
        fence(st, r.epoch())?;
        r.prepare(&st.data).await?;
    }
    let data = st.data.clone();
    // the write's CPU (validation, encoding, applying) runs below searches' priority
    let (rec, body) = priority::run(Class::Ingest, move || -> Result<_> {
        let op = resolve(&data, op)?;
        let rec = WalRecord {
            seq: data.last_seq() + 1,
            op,
        };
        let body = wal::encode(&rec)?;
        Ok((rec, Arc::new(body)))
    })
    .await??;
    let seq = rec.seq;
    let local = log(st, body.clone());
    let short = match &repl {
        None => {
            local.await?;
            None
        }
        Some(r) => {
            let (logged, sent) = tokio::join!(local, r.send(seq, body.clone()));
            match (logged, sent) {
                (Ok(()), Ok(short)) => short,
                // backups may hold a record this replica does not: it must not go on as the
                // primary
                (Err(WriteError::Refused(e)), _)
                | (Err(WriteError::Fatal(Fatal { cause: e, .. })), _) => {
                    return Err(WriteError::Fatal(Fatal::new(COMPONENT, e)));
                }
                // logged here, fate on the backups unknown: this replica cannot know whether it
                // is still the primary, and its disk is ahead of its memory
                (Ok(()), Err(e)) => {
                    return Err(WriteError::Fatal(Fatal::new(
                        COMPONENT,
                        Error::unavailable(format!(
                            "the write could not be replicated, its outcome is unknown: {}",
                            e.message
                        )),
                    )));
                }
            }
        }
    };
    // only a replicated shard keeps its tail: a single replica has nobody to catch up
    let keep = repl.is_some();
    apply_logged(st, rec, body, keep).await?;
    Ok((seq, short))
}

/// Appends an encoded record to the WAL and fsyncs it (the replica's identity is written before
/// its first record).
async fn log(st: &ShardState, body: Arc<Vec<u8>>) -> Result<(), WriteError> {
    let (wal, dir, spec) = (st.wal.clone(), st.dir.clone(), st.data.spec.clone());
    priority::run(Class::Ingest, move || {
        let mut wal = wal.lock();
        if !wal.exists() {
            // the first record: the directory says whose data it holds before it holds any
            crate::replica_dir::ensure_identity(&dir, &spec)?;
        }
        match wal.try_append(&[&body], true) {
            Ok(()) => Ok(()),
            Err(AppendError::Refused(e)) => Err(WriteError::Refused(e)),
            Err(AppendError::Failed(e)) => Err(WriteError::Fatal(Fatal::new(COMPONENT, e))),
        }
    })
    .await?
}

/// Applies a logged record to memory, records the replica in the ledger, keeps it in the tail
/// for catch-up, and folds the WAL into a snapshot when it is long.
async fn apply_logged(
    st: &mut ShardState,
    rec: WalRecord,
    body: Arc<Vec<u8>>,
    keep: bool,
) -> Result<(), WriteError> {
    let data = st.data.clone();
    let wal = st.wal.clone();
    let snapshot_path = st.snapshot_path.clone();
    let (id, ledger) = (st.id, st.ledger.clone());
    let seq = rec.seq;
    priority::run(Class::Ingest, move || -> Result<(), WriteError> {
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
        let mut wal = wal.lock();
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
        Ok(())
    })
    .await??;
    if keep {
        st.tail.push(seq, body);
    }
    Ok(())
}

/// A record from the primary, on a backup: taken only from an epoch not older than the newest
/// seen, and only as the next in sequence.
async fn apply_replicated(
    st: &mut ShardState,
    epoch: u64,
    body: Arc<Vec<u8>>,
) -> Result<u64, WriteError> {
    fence(st, epoch)?;
    let rec: WalRecord = tessera_core::codec::decode(&body)?;
    let expected = st.data.last_seq() + 1;
    if rec.seq != expected {
        return Err(WriteError::Refused(Error::conflict(format!(
            "record {} out of sequence: this replica expects {expected}",
            rec.seq
        ))));
    }
    let seq = rec.seq;
    log(st, body.clone()).await?;
    apply_logged(st, rec, body, true).await?;
    Ok(seq)
}

/// Refuses a message of an epoch older than the newest this replica has seen, else raises the
/// fence to it.
fn fence(st: &mut ShardState, epoch: u64) -> Result<(), Error> {
    if epoch < st.fence {
        return Err(Error::conflict(format!(
            "stale epoch {epoch}: this replica has seen epoch {}",
            st.fence
        )));
    }
    st.fence = epoch;
    Ok(())
}

/// The replica's sequence, digest and size, computed off the actor's thread.
async fn status(st: &ShardState) -> Result<ReplicaStatus> {
    let (data, fence) = (st.data.clone(), st.fence);
    priority::run(Class::Ingest, move || ReplicaStatus {
        last_seq: data.last_seq(),
        digest: digest_of(&data),
        points: data.len() as u64,
        fence,
    })
    .await
}

/// One page of a copy of the primary's points. The first page empties the WAL and replaces
/// the state (its sequence becomes the replica's); later pages add to it; the last writes the
/// whole state as the snapshot. A crash in between leaves an old or partial state that the
/// metadata still marks out of sync, never old records replayed over the copy. Pages taken at
/// later sequences than the first are healed by the tail the rejoin replays (every write is
/// idempotent as a whole).
async fn install(
    st: &mut ShardState,
    epoch: u64,
    page: CopyPage,
) -> Result<ReplicaStatus, WriteError> {
    fence(st, epoch)?;
    let (data, wal, dir) = (st.data.clone(), st.wal.clone(), st.dir.clone());
    let (snapshot_path, id, ledger) = (st.snapshot_path.clone(), st.id, st.ledger.clone());
    priority::run(Class::Ingest, move || -> Result<(), WriteError> {
        let fatal = |e: Error| WriteError::Fatal(Fatal::new(COMPONENT, e));
        let seg_dir = dir.join(crate::segfile::DIR);
        if page.first {
            crate::replica_dir::ensure_identity(&dir, &data.spec).map_err(fatal)?;
            wal.lock().clear().map_err(fatal)?;
            let offered = crate::manager::read_segments(&seg_dir, &page.segments);
            data.replace(page.last_seq, page.points, offered)
                .map_err(fatal)?;
            // the old state's files (and any partial download) are of no use now
            crate::segfile::remove_except(&seg_dir, &data.segment_files());
        } else {
            data.merge(page.points).map_err(fatal)?;
        }
        if page.last {
            let (adopted, unused) = data.finish_adoption();
            for f in unused {
                crate::segfile::remove(&seg_dir, &f);
            }
            if adopted > 0 {
                tracing::info!(replica = %id, points = adopted, "copied graphs adopted; nothing to build for them");
            }
            let (last_seq, points) = data.export();
            wal::write_snapshot(&snapshot_path, last_seq, points).map_err(fatal)?;
            ledger.record_owned(id).map_err(fatal)?;
        }
        Ok(())
    })
    .await??;
    st.tail.clear();
    Ok(status(st).await?)
}

/// One page of a copy from the primary ([`install`]).
#[derive(Debug)]
pub struct CopyPage {
    pub last_seq: u64,
    pub points: Vec<(WalPoint, u64)>,
    pub first: bool,
    pub last: bool,
    /// With the first page: segment files of the primary already in this replica's
    /// `segments` folder, offered for adoption.
    pub segments: Vec<String>,
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
