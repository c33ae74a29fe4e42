//! The shard manager of a node: the replicas this node holds, their actors, and the node-wide
//! limit on concurrent index builds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tessera_core::ShardKey;
use tessera_core::{Error, Result};
use tokio::sync::Semaphore;

use crate::actor::{ShardActor, ShardArgs, ShardMsg, WriteOp};
use crate::store::{ShardData, ShardSpec};
use crate::wal;

/// A write that has not been answered in this long fails with a timeout.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Identifies a replica on a node: (collection uid, shard id).
pub type ReplicaId = (u64, u32);

struct Replica {
    data: Arc<ShardData>,
    actor: ActorRef<ShardMsg>,
}

pub struct ShardManager {
    root: PathBuf,
    replicas: DashMap<ReplicaId, Replica>,
    builds: Arc<Semaphore>,
}

impl ShardManager {
    /// `root` holds one directory per collection uid, one per shard inside it.
    /// Reads run on the caller's pool (the node's fair scheduler, through [`ShardManager::reader`]);
    /// background builds on at most `build_threads` threads.
    pub fn new(root: &Path, build_threads: usize) -> ShardManager {
        ShardManager {
            root: root.to_path_buf(),
            replicas: DashMap::new(),
            builds: Arc::new(Semaphore::new(build_threads.max(1))),
        }
    }

    fn dir(&self, id: ReplicaId) -> PathBuf {
        self.root.join(id.0.to_string()).join(id.1.to_string())
    }

    pub fn contains(&self, id: ReplicaId) -> bool {
        self.replicas.contains_key(&id)
    }

    pub fn replica_ids(&self) -> Vec<ReplicaId> {
        self.replicas.iter().map(|r| *r.key()).collect()
    }

    /// Loads a replica from disk (WAL replay) and starts its actor; nothing if already open.
    /// An empty replica creates no files: its directory appears with its first write.
    pub async fn open(&self, spec: ShardSpec) -> Result<()> {
        let id = (spec.collection_uid, spec.shard_id);
        if self.replicas.contains_key(&id) {
            return Ok(());
        }
        let dir = self.dir(id);
        let (data, log) = tokio::task::spawn_blocking(move || -> Result<_> {
            let data = ShardData::new(spec);
            if let Some((last_seq, points)) = wal::read_snapshot(&dir.join("points.snap"))? {
                data.import(last_seq, points)?;
            }
            let wal_path = dir.join("wal.log");
            let log = if wal_path.exists() {
                wal::open(&wal_path, |rec| data.apply(&rec))?
            } else {
                wal::open(&wal_path, |_| Ok(()))?
            };
            Ok((data, log))
        })
        .await
        .map_err(|e| Error::internal(format!("open task failed: {e}")))??;
        let data = Arc::new(data);
        let (actor, _handle) = Actor::spawn(
            None,
            ShardActor,
            ShardArgs {
                data: data.clone(),
                wal: log,
                snapshot_path: self.dir(id).join("points.snap"),
                builds: self.builds.clone(),
            },
        )
        .await
        .map_err(|e| Error::internal(format!("spawn shard actor: {e}")))?;
        self.replicas.insert(id, Replica { data, actor });
        metrics::gauge!("tessera_replicas").set(self.replicas.len() as f64);
        Ok(())
    }

    /// Stops a replica's actor and, with `remove`, deletes its data.
    pub async fn close(&self, id: ReplicaId, remove: bool) -> Result<()> {
        if let Some((_, r)) = self.replicas.remove(&id) {
            r.actor.stop(None);
        }
        if remove {
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
        let dir = self.root.join(uid.to_string());
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir, e)),
        })
        .await
        .map_err(|e| Error::internal(format!("remove task failed: {e}")))?
    }

    fn get(
        &self,
        id: ReplicaId,
        key: Option<&ShardKey>,
    ) -> Result<(Arc<ShardData>, ActorRef<ShardMsg>)> {
        let r = self.replicas.get(&id).ok_or_else(|| {
            Error::unavailable(format!("shard {} is not available on this node", id.1))
        })?;
        r.data.check_key(key)?;
        Ok((r.data.clone(), r.actor.clone()))
    }

    /// Applies a write through the replica's actor; answers its sequence number once durable.
    pub async fn write(&self, id: ReplicaId, key: Option<&ShardKey>, op: WriteOp) -> Result<u64> {
        let (_, actor) = self.get(id, key)?;
        match actor
            .call(|port| ShardMsg::Write(op, port), Some(WRITE_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(r)) => r,
            Ok(CallResult::Timeout) => Err(Error::timeout("write timed out")),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(Error::unavailable("shard stopped while writing"))
            }
        }
    }

    /// A replica's data for a read, after checking that `key` is the tenant it owns; the caller
    /// runs the read on a pool of its own (the node's fair scheduler).
    pub fn reader(&self, id: ReplicaId, key: Option<&ShardKey>) -> Result<Arc<ShardData>> {
        self.get(id, key).map(|(data, _)| data)
    }

    /// A replica's data, for statistics.
    pub fn data(&self, id: ReplicaId) -> Option<Arc<ShardData>> {
        self.replicas.get(&id).map(|r| r.data.clone())
    }

    pub async fn shutdown(&self) {
        let ids = self.replica_ids();
        for id in ids {
            if let Some((_, r)) = self.replicas.remove(&id) {
                r.actor.stop(None);
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
        ShardSpec {
            collection_uid: 1,
            shard_id: 0,
            key: Some(ShardKey::Str(key.into())),
            dim: 2,
            metric: crate::Metric::Dot,
            graph: crate::GraphParams::default(),
            indexing_threshold: 1000,
            full_scan_threshold: 1000,
        }
    }

    /// Defence in depth, going around the router: a replica refuses any request whose shard
    /// key (tenant) is not the one it owns, and nothing is written.
    #[tokio::test]
    async fn a_replica_refuses_requests_for_another_tenant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ShardManager::new(dir.path(), 1);
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
}
