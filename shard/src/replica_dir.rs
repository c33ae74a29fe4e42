//! What a replica's directory must prove before its data is served: whose data it is, and that
//! it is all there.
//!
//! - **Identity.** Every replica directory holds `replica.id` (checksummed): the collection uid,
//!   shard id and shard key it was made for, written before its first WAL record. A directory is
//!   opened only under that identity, so no damaged or confused metadata can hand one tenant's
//!   files to another.
//! - **Ownership.** The node keeps a ledger (`<root>/replicas.log`) of the replicas that have
//!   written data on it. A replica the ledger lists whose directory is missing or holds no data
//!   has lost its data: that is an error, never an empty tenant.
//!
//! Directories from before identities existed are adopted once (their identity is written from
//! the metadata that opened them) with a warning.
//!
//! Architecture invariant: a replica's data is read only under the identity it was written with.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tessera_core::record_log::{self, RecordLog};
use tessera_core::{Error, Result, ShardKey, codec};

use crate::manager::ReplicaId;
use crate::store::ShardSpec;

/// The identity file inside a replica's directory.
pub const IDENTITY_FILE: &str = "replica.id";
/// The node-wide ledger of replicas that own data, in the shard manager's root.
pub const LEDGER_FILE: &str = "replicas.log";
/// Files that hold a replica's data.
const DATA_FILES: [&str; 2] = ["wal.log", "points.snap"];

/// Whose data a replica directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub collection_uid: u64,
    pub shard_id: u32,
    pub key: Option<ShardKey>,
}

impl Identity {
    pub fn of(spec: &ShardSpec) -> Identity {
        Identity {
            collection_uid: spec.collection_uid,
            shard_id: spec.shard_id,
            key: spec.key.clone(),
        }
    }
}

fn describe(id: &Identity) -> String {
    match &id.key {
        Some(key) => format!(
            "collection {} shard {} (shard key {key})",
            id.collection_uid, id.shard_id
        ),
        None => format!("collection {} shard {}", id.collection_uid, id.shard_id),
    }
}

/// Whether the directory holds any of a replica's data files.
pub fn has_data(dir: &Path) -> bool {
    DATA_FILES.iter().any(|f| dir.join(f).exists())
}

/// Checks a replica directory before it is opened for `spec`: a directory that names another
/// identity is refused; one with data and no identity (made before identities) is adopted.
pub fn check(dir: &Path, spec: &ShardSpec) -> Result<()> {
    let want = Identity::of(spec);
    let path = dir.join(IDENTITY_FILE);
    match record_log::read_checksummed(&path)? {
        Some(body) => {
            let found: Identity = codec::decode(&body).map_err(|e| {
                Error::internal(format!("{} cannot be read: {}", path.display(), e.message))
            })?;
            if found != want {
                return Err(Error::internal(format!(
                    "replica dir {} holds the data of {}, not of {}; refusing to open it",
                    dir.display(),
                    describe(&found),
                    describe(&want)
                )));
            }
            Ok(())
        }
        None if has_data(dir) => {
            tracing::warn!(dir = %dir.display(), replica = %describe(&want), "replica dir without an identity (made before identities); adopting it");
            write_identity(dir, spec)
        }
        None => Ok(()),
    }
}

/// Writes the identity of a replica whose directory is about to get its first data.
pub fn ensure_identity(dir: &Path, spec: &ShardSpec) -> Result<()> {
    if dir.join(IDENTITY_FILE).exists() {
        return check(dir, spec);
    }
    write_identity(dir, spec)
}

fn write_identity(dir: &Path, spec: &ShardSpec) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    record_log::sync_parent_dir(dir)?;
    let body = codec::encode(&Identity::of(spec))?;
    record_log::write_checksummed(&dir.join(IDENTITY_FILE), &body)
}

/// An entry of the ownership ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum LedgerEntry {
    /// The replica wrote data on this node.
    Owns { collection: u64, shard: u32 },
    /// The replica's data was removed on purpose.
    Released { collection: u64, shard: u32 },
    /// A whole collection's data was removed on purpose.
    ReleasedCollection { collection: u64 },
}

/// The replicas that own data on this node (see the module doc).
pub struct Ledger {
    inner: Mutex<(RecordLog, HashSet<ReplicaId>)>,
}

impl Ledger {
    /// Opens (or starts) the ledger in `root`. A corrupt ledger is an error: the node cannot tell
    /// lost data from never-written data without it.
    pub fn open(root: &Path) -> Result<Ledger> {
        let mut owned = HashSet::new();
        let (log, _) = RecordLog::open(&root.join(LEDGER_FILE), |body| {
            match codec::decode::<LedgerEntry>(body)? {
                LedgerEntry::Owns { collection, shard } => {
                    owned.insert(ReplicaId::new(collection, shard));
                }
                LedgerEntry::Released { collection, shard } => {
                    owned.remove(&ReplicaId::new(collection, shard));
                }
                LedgerEntry::ReleasedCollection { collection } => {
                    owned.retain(|id| id.collection != collection);
                }
            }
            Ok(())
        })?;
        Ok(Ledger {
            inner: Mutex::new((log, owned)),
        })
    }

    pub fn owns(&self, id: ReplicaId) -> bool {
        self.inner.lock().1.contains(&id)
    }

    fn append(&self, entry: &LedgerEntry) -> Result<()> {
        let body = codec::encode(entry)?;
        self.inner.lock().0.append(&[&body], true)
    }

    /// Records that `id` now owns data here (idempotent).
    pub fn record_owned(&self, id: ReplicaId) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.1.contains(&id) {
            return Ok(());
        }
        let body = codec::encode(&LedgerEntry::Owns {
            collection: id.collection,
            shard: id.shard,
        })?;
        inner.0.append(&[&body], true)?;
        inner.1.insert(id);
        Ok(())
    }

    /// Records that `id`'s data is removed on purpose.
    pub fn record_released(&self, id: ReplicaId) -> Result<()> {
        if !self.owns(id) {
            return Ok(());
        }
        self.append(&LedgerEntry::Released {
            collection: id.collection,
            shard: id.shard,
        })?;
        self.inner.lock().1.remove(&id);
        Ok(())
    }

    /// Records that a whole collection's data is removed on purpose.
    pub fn record_collection_released(&self, collection: u64) -> Result<()> {
        if !self
            .inner
            .lock()
            .1
            .iter()
            .any(|id| id.collection == collection)
        {
            return Ok(());
        }
        self.append(&LedgerEntry::ReleasedCollection { collection })?;
        self.inner.lock().1.retain(|id| id.collection != collection);
        Ok(())
    }
}

/// Refuses to open a replica the ledger says owns data when its directory holds none.
pub fn check_present(dir: &Path, id: ReplicaId, owned: bool) -> Result<()> {
    if owned && !has_data(dir) {
        return Err(Error::internal(format!(
            "the data of {id} is missing: {} holds no wal or snapshot, but this node wrote data \
             there; refusing to serve it as an empty replica",
            dir.display()
        )));
    }
    Ok(())
}

/// A replica's directory under `root`.
pub fn dir_of(root: &Path, id: ReplicaId) -> PathBuf {
    root.join(id.collection.to_string())
        .join(id.shard.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shard: u32, key: &str) -> ShardSpec {
        ShardSpec::for_tests(9, shard, key)
    }

    #[test]
    fn a_directory_opens_only_under_its_identity() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("9/0");
        check(&dir, &spec(0, "acme")).expect("no dir yet");
        ensure_identity(&dir, &spec(0, "acme")).expect("first write");
        check(&dir, &spec(0, "acme")).expect("same identity");
        let e = check(&dir, &spec(0, "globex")).expect_err("another tenant");
        assert!(
            e.message.contains("shard key acme") && e.message.contains("not of"),
            "{}",
            e.message
        );
        // a legacy directory with data and no identity is adopted under the opener's identity
        let legacy = root.path().join("9/1");
        std::fs::create_dir_all(&legacy).expect("dir");
        std::fs::write(legacy.join("wal.log"), b"").expect("wal");
        check(&legacy, &spec(1, "initech")).expect("adopted");
        assert!(check(&legacy, &spec(1, "hooli")).is_err());
    }

    #[test]
    fn the_ledger_tells_lost_data_from_never_written_data() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = ReplicaId::new(9, 0);
        let b = ReplicaId::new(9, 1);
        let c = ReplicaId::new(10, 0);
        {
            let ledger = Ledger::open(root.path()).expect("open");
            ledger.record_owned(a).expect("a");
            ledger.record_owned(b).expect("b");
            ledger.record_owned(c).expect("c");
            ledger.record_owned(a).expect("idempotent");
            ledger.record_released(b).expect("released");
            ledger.record_collection_released(10).expect("collection");
        }
        let ledger = Ledger::open(root.path()).expect("reopen");
        assert!(ledger.owns(a));
        assert!(!ledger.owns(b));
        assert!(!ledger.owns(c));
        let dir = dir_of(root.path(), a);
        let e = check_present(&dir, a, true).expect_err("missing");
        assert!(e.message.contains("is missing"), "{}", e.message);
        check_present(&dir_of(root.path(), b), b, false).expect("never written");
    }
}
