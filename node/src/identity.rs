//! A node's id, settled once per data directory: the one given (`--node-id`), else the one the
//! data directory records, else a fresh random one, which is then recorded.
//!
//! Qdrant users start nodes without naming ids; before this every such node was node 1, and a
//! second one "joined" as node 1 and silently took the first one's place in the membership. Now
//! a node without `--node-id` gets a random id (as Qdrant's peer id) kept in `<data_dir>/node_id`,
//! and a data directory is never opened under another id than the one it was made with: the
//! metadata, the placement of its replicas and its Raft vote all name that id.
//!
//! Architecture invariant: a data directory belongs to one node id for its whole life.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

/// The file in the data directory that records the node's id (decimal, one line).
pub const NODE_ID_FILE: &str = "node_id";

/// Random ids stay below 2^53, so every JSON reader (JavaScript included) reads them exactly.
const MAX_RANDOM_ID: u64 = (1 << 53) - 1;

/// The node id to run under, recording it in `data_dir` if it was not recorded yet.
pub fn settle_node_id(data_dir: &Path, given: Option<u64>) -> anyhow::Result<u64> {
    let path = data_dir.join(NODE_ID_FILE);
    let recorded = read_recorded(&path)?;
    let id = match (given, recorded) {
        (Some(given), Some(recorded)) if given != recorded => bail!(
            "data dir {} belongs to node {recorded}, but this node was started as node {given}: \
             start it with --node-id {recorded} (or without --node-id), or give it another data dir",
            data_dir.display()
        ),
        (Some(given), _) => given,
        (None, Some(recorded)) => recorded,
        // data made before ids were recorded was made by node 1, the old default
        (None, None) if holds_node_data(data_dir) => 1,
        (None, None) => random_id(),
    };
    if id == 0 {
        bail!("node_id must be positive");
    }
    if recorded.is_none() {
        record(data_dir, &path, id)?;
        tracing::info!(
            node = id,
            given = given.is_some(),
            "node id recorded in the data dir"
        );
    }
    Ok(id)
}

fn read_recorded(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id: u64 = text.trim().parse().with_context(|| {
                format!(
                    "{} must hold this node's id as a positive integer, not {:?}",
                    path.display(),
                    text.trim()
                )
            })?;
            if id == 0 {
                bail!(
                    "{} holds node id 0, which is not a valid id",
                    path.display()
                );
            }
            Ok(Some(id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Whether the directory already holds a node's metadata (made before ids were recorded).
fn holds_node_data(data_dir: &Path) -> bool {
    ["meta", "raft", "collections"]
        .iter()
        .any(|d| data_dir.join(d).exists())
}

fn random_id() -> u64 {
    use rand::Rng;
    rand::rng().random_range(1..=MAX_RANDOM_ID)
}

/// Writes the id durably: a temporary file, fsynced, renamed into place, the directory fsynced.
fn record(data_dir: &Path, path: &Path, id: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("create data dir {}", data_dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    writeln!(file, "{id}").with_context(|| format!("write {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", data_dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_an_id_gets_a_random_one_and_keeps_it() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let first = settle_node_id(a.path(), None).expect("fresh");
        assert!((1..=MAX_RANDOM_ID).contains(&first));
        assert_eq!(settle_node_id(a.path(), None).expect("again"), first);
        // two fresh nodes do not collide (a 2^-53 chance aside)
        assert_ne!(settle_node_id(b.path(), None).expect("other"), first);
        // naming the recorded id is fine
        assert_eq!(settle_node_id(a.path(), Some(first)).expect("named"), first);
    }

    #[test]
    fn a_data_dir_is_never_opened_under_another_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(settle_node_id(dir.path(), Some(7)).expect("given"), 7);
        assert_eq!(settle_node_id(dir.path(), None).expect("recorded"), 7);
        let e = settle_node_id(dir.path(), Some(8)).expect_err("another id");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("belongs to node 7") && msg.contains("node 8"),
            "{msg}"
        );
    }

    #[test]
    fn data_from_before_ids_were_recorded_is_node_1s() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("meta")).expect("meta");
        assert_eq!(settle_node_id(dir.path(), None).expect("legacy"), 1);
        assert_eq!(settle_node_id(dir.path(), None).expect("recorded"), 1);
    }

    #[test]
    fn a_damaged_id_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["", "zero", "0", "-3"] {
            std::fs::write(dir.path().join(NODE_ID_FILE), bad).expect("write");
            let e = settle_node_id(dir.path(), None).expect_err("damaged");
            assert!(format!("{e:#}").contains(NODE_ID_FILE), "{e:#}");
        }
    }
}
