//! The shard manager of a node: the replicas this node holds, their actors, and the node-wide
//! limit on concurrent index builds.
//!
//! A replica whose WAL could not be written has failed ([`Fatal`]): its actor stopped, and every
//! later request for it is refused with that failure (a 503 naming it) until the replica is closed
//! and opened again, which replays what the disk really holds. So has a replica whose data could
//! not be loaded (a corrupt WAL, a directory of another identity, data that went missing, see
//! [`crate::replica_dir`]): it is registered failed and the node serves every other replica.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};
use tessera_core::{CollectionUid, Error, Fatal, Result, ShardId, ShardKey};
use tokio::sync::Semaphore;

use crate::actor::{CopyPage, ShardActor, ShardArgs, ShardMsg, WriteOp, WriteReply};
use crate::point::PointId;
use crate::replica_dir::{self, Ledger};
use crate::replication::{ReplicaStatus, Replicate};
use crate::segfile;
use crate::store::{ShardData, ShardSpec};
use crate::wal;
use crate::wal::WalPoint;

/// A write that has not been answered in this long fails with a timeout.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Identifies a replica on a node: its collection's uid and its shard id. A `(uid, shard)` pair
/// converts into one, so callers may pass either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId {
    pub collection: CollectionUid,
    pub shard: ShardId,
}

impl ReplicaId {
    pub fn new(collection: CollectionUid, shard: ShardId) -> ReplicaId {
        ReplicaId { collection, shard }
    }

    /// The replica a spec describes.
    pub fn of(spec: &ShardSpec) -> ReplicaId {
        ReplicaId::new(spec.collection_uid, spec.shard_id)
    }
}

impl From<(CollectionUid, ShardId)> for ReplicaId {
    fn from((collection, shard): (CollectionUid, ShardId)) -> ReplicaId {
        ReplicaId { collection, shard }
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "collection {} shard {}", self.collection, self.shard)
    }
}

/// Set once, by the replica's actor, when the replica failed for good.
pub type Failure = Arc<OnceLock<Fatal>>;

struct Replica {
    data: Arc<ShardData>,
    /// None for a replica that failed to load: it has no actor, only its failure.
    actor: Option<ActorRef<ShardMsg>>,
    failure: Failure,
}

pub struct ShardManager {
    root: PathBuf,
    replicas: DashMap<ReplicaId, Replica>,
    builds: Arc<Semaphore>,
    ledger: Arc<Ledger>,
}

/// Reads the segment files `names` of `dir`; a damaged one is logged and left out (its points
/// go to the tail and are indexed again).
pub fn read_segments(dir: &Path, names: &[String]) -> Vec<crate::store::LoadedSegment> {
    let mut out = Vec::new();
    for name in names {
        match segfile::read(&dir.join(name)) {
            Ok((ids, graph)) => out.push((name.clone(), ids, graph)),
            Err(e) => {
                metrics::counter!("tessera_segment_files_damaged_total").increment(1);
                tracing::warn!(file = %dir.join(name).display(), error = %e, "segment file not used; its graph is built again");
            }
        }
    }
    out
}

impl ShardManager {
    /// `root` holds one directory per collection uid, one per shard inside it.
    /// Reads run on the caller's pool (the node's fair scheduler, through [`ShardManager::reader`]);
    /// background builds on at most `build_threads` threads.
    /// Fails only when the node's ledger of replicas that own data is unreadable.
    pub fn new(root: &Path, build_threads: usize) -> Result<ShardManager> {
        Ok(ShardManager {
            root: root.to_path_buf(),
            replicas: DashMap::new(),
            builds: Arc::new(Semaphore::new(build_threads.max(1))),
            ledger: Arc::new(Ledger::open(root)?),
        })
    }

    fn dir(&self, id: ReplicaId) -> PathBuf {
        replica_dir::dir_of(&self.root, id)
    }

    pub fn contains(&self, id: impl Into<ReplicaId>) -> bool {
        self.replicas.contains_key(&id.into())
    }

    pub fn replica_ids(&self) -> Vec<ReplicaId> {
        self.replicas.iter().map(|r| *r.key()).collect()
    }

    /// Loads a replica from disk (WAL replay) and starts its actor; nothing if already open.
    /// An empty replica creates no files: its directory appears with its first write. A replica
    /// whose data cannot be loaded is registered failed (its requests get a 503 naming why) and
    /// this answers Ok: one tenant's damage does not stop the node.
    pub async fn open(&self, spec: ShardSpec) -> Result<()> {
        let id = ReplicaId::of(&spec);
        if self.replicas.contains_key(&id) {
            return Ok(());
        }
        let dir = self.dir(id);
        let owned = self.ledger.owns(id);
        let (load_spec, ledger, load_dir) = (spec.clone(), self.ledger.clone(), dir.clone());
        let loaded = tokio::task::spawn_blocking(move || -> Result<_> {
            replica_dir::check(&load_dir, &load_spec)?;
            replica_dir::check_present(&load_dir, id, owned)?;
            let data = ShardData::new(load_spec);
            let seg_dir = load_dir.join(segfile::DIR);
            data.offer_segments(read_segments(&seg_dir, &segfile::list(&seg_dir)));
            if let Some((last_seq, points)) = wal::read_snapshot(&load_dir.join("points.snap"))? {
                data.import(last_seq, points)?;
            }
            let wal_path = load_dir.join("wal.log");
            let log = if wal_path.exists() {
                wal::open(&wal_path, |rec| data.apply(&rec))?
            } else {
                wal::open(&wal_path, |_| Ok(()))?
            };
            let (adopted, _) = data.finish_adoption();
            // files no point adopted, and leftovers of writes a crash cut short
            segfile::remove_except(&seg_dir, &data.segment_files());
            if adopted > 0 {
                tracing::info!(replica = %id, points = adopted, "graphs loaded from segment files");
            }
            if !owned && replica_dir::has_data(&load_dir) {
                // data from before the ledger existed
                ledger.record_owned(id)?;
            }
            Ok((data, log))
        })
        .await
        .map_err(|e| Error::internal(format!("open task failed: {e}")))?;
        let (data, log) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(replica = %id, key = ?spec.key, dir = %dir.display(), error = %e, "replica cannot be loaded; it is failed and refuses its requests");
                metrics::counter!("tessera_replica_failures_total").increment(1);
                let failure = Failure::default();
                let _ = failure.set(Fatal::new("replica", e));
                self.replicas.insert(
                    id,
                    Replica {
                        data: Arc::new(ShardData::new(spec)),
                        actor: None,
                        failure,
                    },
                );
                return Ok(());
            }
        };
        let data = Arc::new(data);
        let failure = Failure::default();
        let (actor, _handle) = Actor::spawn(
            None,
            ShardActor,
            ShardArgs {
                id,
                data: data.clone(),
                wal: log,
                dir: dir.clone(),
                snapshot_path: dir.join("points.snap"),
                builds: self.builds.clone(),
                failure: failure.clone(),
                ledger: self.ledger.clone(),
            },
        )
        .await
        .map_err(|e| Error::internal(format!("spawn shard actor: {e}")))?;
        self.replicas.insert(
            id,
            Replica {
                data,
                actor: Some(actor),
                failure,
            },
        );
        metrics::gauge!("tessera_replicas").set(self.replicas.len() as f64);
        Ok(())
    }

    /// Stops a replica's actor and, with `remove`, deletes its data.
    pub async fn close(&self, id: impl Into<ReplicaId>, remove: bool) -> Result<()> {
        let id = id.into();
        if let Some((_, r)) = self.replicas.remove(&id)
            && let Some(actor) = r.actor
        {
            actor.stop(None);
        }
        if remove {
            self.ledger.record_released(id)?;
            let dir = self.dir(id);
            tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove", &dir, e)),
            })
            .await
            .map_err(|e| Error::internal(format!("remove task failed: {e}")))??;
        }
        metrics::gauge!("tessera_replicas").set(self.replicas.len() as f64);
        Ok(())
    }

    /// Removes a whole collection's directory (after its replicas were closed).
    pub async fn remove_collection_dir(&self, uid: u64) -> Result<()> {
        self.ledger.record_collection_released(uid)?;
        let dir = self.root.join(uid.to_string());
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir, e)),
        })
        .await
        .map_err(|e| Error::internal(format!("remove task failed: {e}")))?
    }

    /// The replica, if it is open here, holds `key`'s tenant (a foreign tenant learns nothing,
    /// not even that the replica failed) and has not failed.
    fn get(
        &self,
        id: ReplicaId,
        key: Option<&ShardKey>,
    ) -> Result<(Arc<ShardData>, ActorRef<ShardMsg>, Failure)> {
        let r = self.replicas.get(&id).ok_or_else(|| {
            Error::unavailable(format!("shard {} is not available on this node", id.shard))
        })?;
        r.data.check_key(key)?;
        if let Some(f) = r.failure.get() {
            return Err(f.clone().into());
        }
        let actor = r
            .actor
            .clone()
            .ok_or_else(|| Error::internal(format!("{id} has no actor and no recorded failure")))?;
        Ok((r.data.clone(), actor, r.failure.clone()))
    }

    /// Applies a write through the replica's actor; answers its sequence number once durable.
    pub async fn write(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        op: WriteOp,
    ) -> Result<u64> {
        self.write_replicated(id, key, op, None)
            .await
            .map(|(seq, _)| seq)
    }

    /// Applies a write as the shard's primary, through its replica set (`repl`; None: the
    /// replica is the shard's only one).
    pub async fn write_replicated(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        op: WriteOp,
        repl: Option<Arc<dyn Replicate>>,
    ) -> WriteReply {
        self.ask(id.into(), key, |port| ShardMsg::Write(op, repl, port))
            .await
    }

    /// A record from the shard's primary, on this backup replica.
    pub async fn apply_replicated(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        epoch: u64,
        record: Arc<Vec<u8>>,
    ) -> Result<u64> {
        self.ask(id.into(), key, |reply| ShardMsg::Apply {
            epoch,
            record,
            reply,
        })
        .await
    }

    /// The replica's sequence, digest and size; a nonzero `epoch` raises its fence first.
    pub async fn status(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        epoch: u64,
    ) -> Result<ReplicaStatus> {
        self.ask(id.into(), key, |reply| ShardMsg::Status { epoch, reply })
            .await
    }

    /// Installs one page of a copy of the primary's points ([`CopyPage`]).
    pub async fn install(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        epoch: u64,
        page: CopyPage,
    ) -> Result<ReplicaStatus> {
        self.ask(id.into(), key, |reply| ShardMsg::Install {
            epoch,
            page,
            reply,
        })
        .await
    }

    /// As the shard's primary: brings the replica on `node` (at `from_seq`) into the in-sync
    /// set, between two writes.
    pub async fn rejoin(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        node: tessera_core::NodeId,
        from_seq: u64,
        repl: Arc<dyn Replicate>,
    ) -> Result<()> {
        self.ask(id.into(), key, |reply| ShardMsg::Rejoin {
            node,
            from_seq,
            repl,
            reply,
        })
        .await
    }

    /// A page of the replica's points after `after` (for a returning replica's copy).
    #[allow(
        clippy::type_complexity,
        reason = "a page, its sequence and where to go on"
    )]
    pub fn export_page(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        after: Option<&PointId>,
        max_bytes: usize,
    ) -> Result<(u64, Vec<(WalPoint, u64)>, Option<PointId>)> {
        let (data, _, _) = self.get(id.into(), key)?;
        Ok(data.export_page(after, max_bytes))
    }

    /// As the primary of a copy to `node` about to start: keeps the records after the current
    /// sequence for the copy's rejoin; answers that sequence.
    pub async fn pin_tail(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        node: tessera_core::NodeId,
    ) -> Result<u64> {
        let id = id.into();
        let (data, _, _) = self.get(id, key)?;
        let from = data.last_seq();
        self.ask(id, key, |reply| ShardMsg::Pin { node, from, reply })
            .await?;
        Ok(from)
    }

    /// As the primary of a copy: the replica's segment files with their sizes.
    pub fn segment_files(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
    ) -> Result<Vec<(String, u64)>> {
        let id = id.into();
        let (data, _, _) = self.get(id, key)?;
        let dir = self.dir(id).join(segfile::DIR);
        Ok(data
            .segment_files()
            .into_iter()
            .filter_map(|name| {
                let len = std::fs::metadata(dir.join(&name)).ok()?.len();
                Some((name, len))
            })
            .collect())
    }

    /// As the primary of a copy: up to `max` bytes of segment file `name` from `offset`. A file
    /// merged away meanwhile is a not-found error (the copy goes on without it).
    pub fn read_segment(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
        name: &str,
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let id = id.into();
        self.get(id, key)?;
        if !segfile::valid_name(name) {
            return Err(Error::bad_request("not a segment file name"));
        }
        let path = self.dir(id).join(segfile::DIR).join(name);
        let gone = |e: std::io::Error| Error::not_found(format!("segment file {name}: {e}"));
        let mut f = std::fs::File::open(&path).map_err(gone)?;
        f.seek(std::io::SeekFrom::Start(offset)).map_err(gone)?;
        let mut out = Vec::with_capacity(max.min(16 << 20));
        f.take(max as u64).read_to_end(&mut out).map_err(gone)?;
        Ok(out)
    }

    /// As the replica a copy is for: writes `bytes` at `offset` of the incoming segment file
    /// `name` (offset 0 starts it again); `done` checks it whole and puts it in place, for the
    /// copy's first page to offer ([`CopyPage::segments`]).
    pub fn receive_segment(
        &self,
        id: impl Into<ReplicaId>,
        name: &str,
        offset: u64,
        bytes: &[u8],
        done: bool,
    ) -> Result<()> {
        use std::io::{Seek, Write};
        if !segfile::valid_name(name) {
            return Err(Error::bad_request("not a segment file name"));
        }
        let dir = self.dir(id.into()).join(segfile::DIR);
        let io = |e: std::io::Error| Error::internal(format!("incoming segment {name}: {e}"));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let part = dir.join(format!("{name}.part"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .open(&part)
            .map_err(io)?;
        f.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        if done {
            f.sync_all().map_err(io)?;
            drop(f);
            // checksummed now, so a damaged transfer is refused before the copy relies on it
            segfile::check(&part)?;
            std::fs::rename(&part, dir.join(name)).map_err(io)?;
        }
        Ok(())
    }

    /// Whether the replica is open here and has failed.
    pub fn failed(&self, id: impl Into<ReplicaId>) -> bool {
        self.replicas
            .get(&id.into())
            .is_some_and(|r| r.failure.get().is_some())
    }

    /// Replaces a failed replica with an empty one (its directory removed), to be filled with a
    /// copy from an in-sync replica.
    pub async fn reset(&self, spec: ShardSpec) -> Result<()> {
        let id = ReplicaId::of(&spec);
        tracing::warn!(replica = %id, "replacing a failed replica with an empty one to copy into");
        self.close(id, true).await?;
        self.open(spec).await
    }

    /// Reloads a failed replica from its own disk (snapshot, segment files, WAL replay), for a
    /// primary that has no in-sync copy to be replaced by: what it logged is all there is.
    pub async fn reopen(&self, spec: ShardSpec) -> Result<()> {
        let id = ReplicaId::of(&spec);
        tracing::warn!(replica = %id, "reopening a failed replica from its own data");
        self.close(id, false).await?;
        self.open(spec).await
    }

    /// One message to the replica's actor, answered in time; a replica that failed meanwhile
    /// answers with its failure.
    async fn ask<T: Send + 'static>(
        &self,
        id: ReplicaId,
        key: Option<&ShardKey>,
        msg: impl FnOnce(RpcReplyPort<Result<T>>) -> ShardMsg,
    ) -> Result<T> {
        let (_, actor, failure) = self.get(id, key)?;
        match actor.call(msg, Some(WRITE_TIMEOUT)).await {
            Ok(CallResult::Success(r)) => r,
            Ok(CallResult::Timeout) => Err(Error::timeout("write timed out")),
            // a write queued behind the one that failed the replica finds its actor gone
            Ok(CallResult::SenderError) | Err(_) => match failure.get() {
                Some(f) => Err(f.clone().into()),
                None => Err(Error::unavailable("shard stopped while writing")),
            },
        }
    }

    /// A replica's data for a read, after checking that `key` is the tenant it owns; the caller
    /// runs the read on a pool of its own (the node's fair scheduler).
    pub fn reader(
        &self,
        id: impl Into<ReplicaId>,
        key: Option<&ShardKey>,
    ) -> Result<Arc<ShardData>> {
        self.get(id.into(), key).map(|(data, _, _)| data)
    }

    /// A replica's data, for statistics.
    pub fn data(&self, id: impl Into<ReplicaId>) -> Option<Arc<ShardData>> {
        self.replicas.get(&id.into()).map(|r| r.data.clone())
    }

    pub async fn shutdown(&self) {
        let ids = self.replica_ids();
        for id in ids {
            if let Some((_, r)) = self.replicas.remove(&id)
                && let Some(actor) = r.actor
            {
                actor.stop(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::NewPoint;
    use crate::store::PayloadSelector;
    use tessera_core::ErrorKind;

    fn spec(key: &str) -> ShardSpec {
        ShardSpec::for_tests(1, 0, key)
    }

    /// Defence in depth, going around the router: a replica refuses any request whose shard
    /// key (tenant) is not the one it owns, and nothing is written.
    #[tokio::test]
    async fn a_replica_refuses_requests_for_another_tenant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ShardManager::new(dir.path(), 1).expect("manager");
        m.open(spec("acme")).await.expect("open");
        let id = (1, 0);
        let acme = ShardKey::Str("acme".into());
        let globex = ShardKey::Str("globex".into());
        let point = || {
            WriteOp::Upsert(vec![NewPoint {
                id: crate::point::PointId::Num(1),
                vector: vec![1.0, 0.0],
                payload: Default::default(),
            }])
        };
        for key in [Some(&globex), None] {
            let e = m.write(id, key, point()).await.expect_err("foreign write");
            assert_eq!(e.kind, ErrorKind::NotFound);
            let e = m.reader(id, key).err().expect("foreign read");
            assert_eq!(e.kind, ErrorKind::NotFound);
        }
        assert_eq!(
            m.reader(id, Some(&acme)).map(|d| d.count(None)).ok(),
            Some(0)
        );
        m.write(id, Some(&acme), point()).await.expect("own write");
        let d = m.reader(id, Some(&acme)).expect("own read");
        let got = d
            .retrieve(
                &[crate::point::PointId::Num(1)],
                None,
                &PayloadSelector::All,
                false,
            )
            .len();
        assert_eq!(got, 1);
        m.shutdown().await;
    }

    fn upsert(id: u64) -> WriteOp {
        WriteOp::Upsert(vec![NewPoint {
            id: crate::point::PointId::Num(id),
            vector: vec![1.0, 0.0],
            payload: Default::default(),
        }])
    }

    /// A WAL append that fails for real (ENOSPC: the log is made to point at /dev/full) fails the
    /// replica: that write is not acknowledged, no later write or read is served, and reopening
    /// the replica serves what the disk holds.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_failed_wal_append_fails_the_replica() {
        tracing::info!("a replica with one durable write");
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ShardManager::new(dir.path(), 1).expect("manager");
        m.open(spec("acme")).await.expect("open");
        let acme = ShardKey::Str("acme".into());
        let id = ReplicaId::new(1, 0);
        m.write(id, Some(&acme), upsert(1))
            .await
            .expect("first write");

        tracing::info!("its wal now answers every write with ENOSPC");
        let wal = m.dir(id).join("wal.log");
        let good = std::fs::read(&wal).expect("read wal");
        std::fs::remove_file(&wal).expect("remove wal");
        std::os::unix::fs::symlink("/dev/full", &wal).expect("symlink");
        let e = m
            .write(id, Some(&acme), upsert(2))
            .await
            .expect_err("a write to a full disk");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.starts_with("replica failed: "), "{}", e.message);
        assert!(e.message.contains("No space left"), "{}", e.message);

        tracing::info!("the replica refuses what follows, reads included, with the same error");
        let later = m
            .write(id, Some(&acme), upsert(3))
            .await
            .expect_err("a write after the failure");
        assert_eq!(later, e);
        let read = m
            .reader(id, Some(&acme))
            .err()
            .expect("a read after the failure");
        assert_eq!(read, e);
        // another tenant still learns nothing about this replica
        let foreign = m
            .reader(id, Some(&ShardKey::Str("globex".into())))
            .err()
            .expect("foreign read");
        assert_eq!(foreign.kind, ErrorKind::NotFound);

        tracing::info!("reopened on a working disk, it holds the acknowledged write only");
        std::fs::remove_file(&wal).expect("remove symlink");
        std::fs::write(&wal, &good).expect("restore wal");
        m.close(id, false).await.expect("close");
        m.open(spec("acme")).await.expect("reopen");
        let d = m.reader(id, Some(&acme)).expect("read after reopen");
        assert_eq!(d.count(None), 1);
        m.write(id, Some(&acme), upsert(4))
            .await
            .expect("write after reopen");
        m.shutdown().await;
    }

    fn point(id: u64) -> NewPoint {
        NewPoint {
            id: crate::point::PointId::Num(id),
            vector: vec![1.0, id as f32],
            payload: Default::default(),
        }
    }

    /// A backup takes a primary's records only in sequence and only from an epoch not older
    /// than the newest it has seen; a copy installed page by page ends identical to its source.
    #[tokio::test]
    async fn backups_take_records_in_sequence_from_current_epochs_and_copies_are_exact() {
        use crate::replication::digest_of;
        let key = Some(ShardKey::Str("acme".into()));
        let (pd, bd) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let primary = ShardManager::new(pd.path(), 1).expect("manager");
        let backup = ShardManager::new(bd.path(), 1).expect("manager");
        primary.open(spec("acme")).await.expect("open");
        backup.open(spec("acme")).await.expect("open");
        let id = ReplicaId::new(1, 0);
        for i in 0..3 {
            primary
                .write(id, key.as_ref(), WriteOp::Upsert(vec![point(i)]))
                .await
                .expect("write");
        }
        let data = primary.data(id).expect("data");
        let record = |seq: u64| {
            // the primary's records, as its WAL holds them, rebuilt from its points
            let (_, points) = data.export();
            let rec = crate::wal::WalRecord {
                seq,
                op: crate::wal::WalOp::Upsert(
                    points
                        .into_iter()
                        .map(|(p, _)| p)
                        .filter(|p| p.id == crate::point::PointId::Num(seq - 1))
                        .collect(),
                ),
            };
            Arc::new(crate::wal::encode(&rec).expect("encode"))
        };
        backup
            .apply_replicated(id, key.as_ref(), 2, record(1))
            .await
            .expect("first record");
        let e = backup
            .apply_replicated(id, key.as_ref(), 2, record(3))
            .await
            .expect_err("a gap");
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        let e = backup
            .apply_replicated(id, key.as_ref(), 1, record(2))
            .await
            .expect_err("an older epoch");
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(e.message.contains("stale epoch"), "{e}");
        let status = backup.status(id, key.as_ref(), 3).await.expect("status");
        assert_eq!(
            (status.last_seq, status.fence),
            (1, 3),
            "the status query raised the fence"
        );
        assert!(
            backup
                .apply_replicated(id, key.as_ref(), 2, record(2))
                .await
                .is_err(),
            "refused after the fence went up"
        );

        // a copy in pages of one point each
        let mut after = None;
        let mut first = true;
        loop {
            let (last_seq, points, next) = primary
                .export_page(id, key.as_ref(), after.as_ref(), 1)
                .expect("page");
            let page = CopyPage {
                last_seq,
                points,
                first,
                last: next.is_none(),
                segments: Vec::new(),
            };
            first = false;
            backup
                .install(id, key.as_ref(), 3, page)
                .await
                .expect("install");
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let copy = backup.data(id).expect("data");
        assert_eq!(copy.last_seq(), data.last_seq());
        assert_eq!(
            digest_of(&copy),
            digest_of(&data),
            "identical after the copy"
        );
        assert_eq!(copy.len(), 3);
        // and the copy survives a restart of the backup (the snapshot is written last)
        backup.shutdown().await;
        let reopened = ShardManager::new(bd.path(), 1).expect("manager");
        reopened.open(spec("acme")).await.expect("reopen");
        let again = reopened.data(id).expect("data");
        assert_eq!(digest_of(&again), digest_of(&data));
    }

    /// Built graphs are kept in segment files: a restarted replica serves them at once instead
    /// of building them again, a copy brings them along, and a damaged file is never used.
    #[tokio::test]
    async fn built_graphs_are_reused_by_restarts_and_copies_and_damage_is_ignored() {
        use crate::replication::digest_of;
        let (pd, bd) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let mut sp = spec("acme");
        sp.indexing_threshold = 40;
        let (id, key) = ((1, 0), sp.key.clone());
        let primary = ShardManager::new(pd.path(), 1).expect("manager");
        primary.open(sp.clone()).await.expect("open");
        for batch in 0..6u64 {
            let points = (0..25).map(|i| point(batch * 25 + i)).collect();
            primary
                .write(id, key.as_ref(), WriteOp::Upsert(points))
                .await
                .expect("write");
        }
        let ids = |v: &[u64]| v.iter().map(|&i| crate::point::PointId::Num(i)).collect();
        primary
            .write(
                id,
                key.as_ref(),
                WriteOp::Delete(crate::actor::Selector::Ids(ids(&[3, 4]))),
            )
            .await
            .expect("delete");
        // the background builds finish (every sealed segment indexed, no job due)
        let data = primary.data(id).expect("data");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while data.due_job().is_some() || data.stats().indexed_points < 100 {
            assert!(
                std::time::Instant::now() < deadline,
                "builds did not finish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = data.stats();
        let files = primary.segment_files(id, key.as_ref()).expect("files");
        assert!(!files.is_empty(), "graphs are on disk");
        let seg_dir = replica_dir::dir_of(pd.path(), id.into()).join(segfile::DIR);
        let on_disk = segfile::list(&seg_dir);
        assert_eq!(
            on_disk.len(),
            files.len(),
            "no file left of merged segments"
        );

        // a copy brings the files (in small chunks) before its pages
        let backup = ShardManager::new(bd.path(), 1).expect("manager");
        backup.open(sp.clone()).await.expect("open");
        let mut names = Vec::new();
        for (name, len) in &files {
            let mut off = 0;
            while off < *len {
                let b = primary
                    .read_segment(id, key.as_ref(), name, off, 1000)
                    .expect("chunk");
                let done = off + b.len() as u64 >= *len;
                backup
                    .receive_segment(id, name, off, &b, done)
                    .expect("receive");
                off += b.len() as u64;
            }
            names.push(name.clone());
        }
        let (last_seq, points, _) = primary
            .export_page(id, key.as_ref(), None, usize::MAX)
            .expect("page");
        let page = CopyPage {
            last_seq,
            points,
            first: true,
            last: true,
            segments: names,
        };
        backup
            .install(id, key.as_ref(), 3, page)
            .await
            .expect("install");
        let copy = backup.data(id).expect("data");
        assert_eq!(digest_of(&copy), digest_of(&data));
        assert_eq!(
            copy.stats().indexed_points,
            before.indexed_points,
            "the copy's graphs came with it"
        );
        backup.shutdown().await;

        // a restart loads the graphs instead of building them
        primary.shutdown().await;
        let again = ShardManager::new(pd.path(), 1).expect("manager");
        again.open(sp.clone()).await.expect("reopen");
        let d = again.data(id).expect("data");
        assert_eq!(digest_of(&d), digest_of(&data));
        assert_eq!(d.stats().indexed_points, before.indexed_points);
        let q = crate::store::SearchParams {
            vector: vec![1.0, 7.0],
            filter: None,
            k: 5,
            ef: 40,
            exact: false,
            with_payload: PayloadSelector::None,
            with_vector: false,
            exclude: None,
        };
        let found = |d: &ShardData| {
            d.search(&q)
                .into_iter()
                .map(|h| h.record.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(found(&d), found(&data));
        again.shutdown().await;

        // a damaged file is left out: same points, its graph built again
        let victim = seg_dir.join(&on_disk[0]);
        let mut bytes = std::fs::read(&victim).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&victim, &bytes).expect("write");
        let third = ShardManager::new(pd.path(), 1).expect("manager");
        third.open(sp).await.expect("reopen");
        let d = third.data(id).expect("data");
        assert_eq!(digest_of(&d), digest_of(&data));
        assert!(d.stats().indexed_points < before.indexed_points);
        assert!(!victim.exists(), "the damaged file is removed");
        assert_eq!(found(&d), found(&data));
    }
}
