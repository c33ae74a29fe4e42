//! Nodes left behind by a runner that was killed with SIGKILL (nothing in it survived to stop
//! them): every swarm root records the pid of the process that made it (`owner.pid`), and
//! [`clean_orphans`] stops the nodes of roots whose owner is gone and deletes those roots.
//!
//! A node is recognised as a root's by its command line, which names its data dir inside the
//! root; nothing else is signalled.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The file in a swarm root naming the pid of the process that made it.
pub const OWNER_FILE: &str = "owner.pid";
/// The prefix of every swarm root's name (in the temp dir).
pub const ROOT_PREFIX: &str = "tessera-swarm-";

/// Records this process as the owner of `root`.
pub fn claim(root: &Path) -> Result<()> {
    std::fs::write(root.join(OWNER_FILE), std::process::id().to_string())
        .with_context(|| format!("write {}", root.join(OWNER_FILE).display()))
}

/// What a cleanup did: the pids it killed and the roots it deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub killed: Vec<u32>,
    pub roots: Vec<PathBuf>,
}

/// Stops the processes of every swarm root in `dir` whose owner process is gone (SIGKILL),
/// and deletes the root. Roots of live owners (a parallel runner, a test) stay untouched, and
/// so do roots without an owner file (made by an older runner).
pub fn clean_orphans_in(dir: &Path) -> Result<Cleaned> {
    let mut cleaned = Cleaned::default();
    let entries = std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))?;
    for entry in entries.flatten() {
        let root = entry.path();
        let named = root
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(ROOT_PREFIX));
        if !named {
            continue;
        }
        let Some(owner) = std::fs::read_to_string(root.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if owner == std::process::id() || alive(owner) {
            continue;
        }
        for pid in processes_naming(&root) {
            // std signals only its own children: the `kill` command signals the others
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            cleaned.killed.push(pid);
        }
        if std::fs::remove_dir_all(&root).is_ok() {
            cleaned.roots.push(root);
        }
    }
    Ok(cleaned)
}

/// [`clean_orphans_in`] the temp dir, where swarm roots are made.
pub fn clean_orphans() -> Result<Cleaned> {
    clean_orphans_in(&std::env::temp_dir())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pids of the processes whose command line names a path inside `root`.
fn processes_naming(root: &Path) -> Vec<u32> {
    let Some(needle) = root.to_str().map(|r| format!("{r}/")) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let text: String = String::from_utf8_lossy(&c).replace('\0', " ");
                text.contains(&needle)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owners_processes_are_killed_and_its_root_deleted_a_live_owners_stay() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        // a root whose owner is gone, with a process naming a path in it
        let orphan = tmp.path().join(format!("{ROOT_PREFIX}orphan"));
        std::fs::create_dir_all(orphan.join("n1/data"))?;
        let mut gone = std::process::Command::new("true").spawn()?;
        let dead = gone.id();
        gone.wait()?;
        std::fs::write(orphan.join(OWNER_FILE), dead.to_string())?;
        let data = orphan.join("n1/data");
        let mut node = std::process::Command::new("sh")
            .args(["-c", "sleep 60", &format!("{}/", data.display())])
            .spawn()?;
        // a root of this (live) process, with a process too
        let mine = tmp.path().join(format!("{ROOT_PREFIX}mine"));
        std::fs::create_dir_all(mine.join("n1"))?;
        claim(&mine)?;
        let mut other = std::process::Command::new("sh")
            .args(["-c", "sleep 60", &format!("{}/", mine.join("n1").display())])
            .spawn()?;

        let cleaned = clean_orphans_in(tmp.path())?;
        assert_eq!(cleaned.killed, vec![node.id()]);
        assert_eq!(cleaned.roots, vec![orphan.clone()]);
        assert!(!node.wait()?.success(), "the orphan's node was killed");
        assert!(!orphan.exists() && mine.exists());
        assert!(
            other.try_wait()?.is_none(),
            "a live owner's process runs on"
        );
        other.kill()?;
        other.wait()?;
        Ok(())
    }
}
