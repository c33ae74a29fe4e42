//! Storage integrity against a real `tessera` process: damage found on disk is refused, never
//! served as a smaller truth, and it stays with the tenant it belongs to.
//!
//! - a byte flipped inside a replica's `wal.log`: that tenant's requests answer 503 naming the
//!   file and offset, every other tenant is served, nothing is cut from the file;
//! - a byte flipped inside `meta/meta.log`: the node refuses to start, naming the file;
//! - a replica directory deleted under a running node: after a restart that tenant answers 503
//!   (its data is missing), not an empty tenant;
//! - two tenants' replica directories swapped: each refuses to open the other's data;
//! - a full disk (a small tmpfs as the data dir): writes answer 507 with Qdrant's error JSON and
//!   change nothing; reads go on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tessera_tests::{Api, Node, error_message, phase, run_tessera_briefly};

fn seed(api: &Api) -> Result<()> {
    api.ok_put(
        "/collections/docs",
        &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom"}),
    )?;
    for tenant in ["acme", "globex"] {
        api.ok_put("/collections/docs/shards", &json!({"shard_key": tenant}))?;
        for batch in 0..3u64 {
            let points: Vec<Value> = (0..5u64)
                .map(|i| json!({"id": batch * 5 + i + 1, "vector": [1.0, i as f32], "payload": {"t": tenant}}))
                .collect();
            api.ok_put(
                "/collections/docs/points?wait=true",
                &json!({"shard_key": tenant, "points": points}),
            )?;
        }
    }
    Ok(())
}

fn count(api: &Api, tenant: &str) -> Result<(u16, Value)> {
    api.post(
        "/collections/docs/points/count",
        &json!({"shard_key": tenant, "exact": true}),
    )
}

/// The replica directory of the n-th shard of the only collection (acme is 0, globex 1).
fn replica_dir(data: &Path, shard: u32) -> Result<PathBuf> {
    let collections = data.join("collections");
    let mut uids = Vec::new();
    for e in std::fs::read_dir(&collections).context("collections dir")? {
        let e = e?;
        if e.file_type()?.is_dir() {
            uids.push(e.path());
        }
    }
    ensure!(uids.len() == 1, "one collection dir expected: {uids:?}");
    Ok(uids[0].join(shard.to_string()))
}

fn flip(path: &Path, offset: usize) -> Result<()> {
    let mut bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    ensure!(bytes.len() > offset + 64, "{} is too short", path.display());
    bytes[offset] ^= 0x5a;
    std::fs::write(path, &bytes)?;
    Ok(())
}

fn expect_failed(api: &Api, tenant: &str, needle: &str) -> Result<()> {
    let (status, body) = count(api, tenant)?;
    ensure!(
        status == 503,
        "{tenant}: expected 503, got {status}: {body}"
    );
    let msg = error_message(&body)?;
    ensure!(
        msg.contains("replica failed") && msg.contains(needle),
        "{tenant}: {msg}"
    );
    Ok(())
}

fn expect_count(api: &Api, tenant: &str, n: u64) -> Result<()> {
    let (status, body) = count(api, tenant)?;
    ensure!(status == 200, "{tenant}: {status} {body}");
    ensure!(body["result"]["count"] == n, "{tenant}: {body}");
    Ok(())
}

/// Runs a test's story in a temp dir of its own; an error fails the test with its context.
fn scenario(story: impl FnOnce(&std::path::Path) -> Result<()>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    story(tmp.path()).expect("scenario");
}

#[test]
fn a_corrupt_replica_wal_fails_that_replica_only() {
    scenario(|tmp| {
        let data = tmp.join("data");
        let mut node = Node::start(&data, &[])?;
        seed(&node.api())?;
        node.stop()?;

        phase!("a byte flipped in the first record of acme's wal, valid records after it");
        let wal = replica_dir(&data, 0)?.join("wal.log");
        let before = std::fs::metadata(&wal)?.len();
        flip(&wal, 12)?;
        node.restart()?;
        expect_failed(&node.api(), "acme", "corrupt log")?;
        let (_, body) = count(&node.api(), "acme")?;
        ensure!(
            error_message(&body)?.contains("offset 0"),
            "names the offset: {body}"
        );
        expect_count(&node.api(), "globex", 15)?;
        ensure!(
            std::fs::metadata(&wal)?.len() == before,
            "nothing was cut from the damaged wal"
        );
        let (status, body) = node.api().put(
            "/collections/docs/points?wait=true",
            &json!({"shard_key": "acme", "points": [{"id": 99, "vector": [1.0, 1.0]}]}),
        )?;
        ensure!(
            status == 503,
            "a write to the failed replica: {status} {body}"
        );
        Ok(())
    });
}

#[test]
fn a_corrupt_metadata_log_stops_the_node_from_starting() {
    scenario(|tmp| {
        let data = tmp.join("data");
        let mut node = Node::start(&data, &[])?;
        seed(&node.api())?;
        node.stop()?;
        phase!("a byte flipped in the first metadata record: the node refuses to start");
        flip(&data.join("meta").join("meta.log"), 12)?;
        let out = run_tessera_briefly(&[
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            &data.to_string_lossy(),
        ])?;
        ensure!(!out.status.success(), "it started on corrupt metadata");
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.contains("corrupt log") && stderr.contains("meta.log"),
            "the error names the file: {stderr}"
        );
        Ok(())
    });
}

#[test]
fn lost_or_swapped_replica_directories_are_refused() {
    scenario(|tmp| {
        let data = tmp.join("data");
        let mut node = Node::start(&data, &[])?;
        seed(&node.api())?;

        phase!("acme's and globex's directories swapped while the node is down");
        node.stop()?;
        let (acme, globex) = (replica_dir(&data, 0)?, replica_dir(&data, 1)?);
        let parked = acme.with_extension("parked");
        std::fs::rename(&acme, &parked)?;
        std::fs::rename(&globex, &acme)?;
        std::fs::rename(&parked, &globex)?;
        node.restart()?;
        expect_failed(&node.api(), "acme", "holds the data of")?;
        expect_failed(&node.api(), "globex", "holds the data of")?;

        phase!("swapped back, both serve again");
        node.stop()?;
        std::fs::rename(&acme, &parked)?;
        std::fs::rename(&globex, &acme)?;
        std::fs::rename(&parked, &globex)?;
        node.restart()?;
        expect_count(&node.api(), "acme", 15)?;
        expect_count(&node.api(), "globex", 15)?;

        phase!(
            "acme's directory deleted under the running node: after a restart, missing, not empty"
        );
        std::fs::remove_dir_all(&acme)?;
        node.restart()?;
        expect_failed(&node.api(), "acme", "is missing")?;
        expect_count(&node.api(), "globex", 15)?;

        phase!("a tenant deleted on purpose is gone, not failed");
        node.api().ok_post(
            "/collections/docs/shards/delete",
            &json!({"shard_key": "globex"}),
        )?;
        node.restart()?;
        let (status, _) = count(&node.api(), "globex")?;
        ensure!(status == 404, "globex was deleted: {status}");
        Ok(())
    });
}

/// A tmpfs mounted at a directory for the test, unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(at)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .context("run mount (the full-disk test needs root to mount a tmpfs)")?;
        if !out.status.success() {
            bail!(
                "mount a tmpfs at {} failed (the full-disk test needs root): {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_answers_507_and_changes_nothing() {
    scenario(|tmp| {
        let disk = Tmpfs::mount(&tmp.join("disk"), "4m")?;
        let data = disk.0.join("data");
        let node = Node::start(&data, &[])?;
        let api = node.api();
        api.ok_put(
            "/collections/docs",
            &json!({"vectors": {"size": 64, "distance": "Dot"}, "sharding_method": "custom"}),
        )?;
        api.ok_put("/collections/docs/shards", &json!({"shard_key": "acme"}))?;

        phase!("fill the disk with acknowledged batches until a write is refused");
        let text = "x".repeat(2000);
        let mut acknowledged = 0u64;
        let mut refused = None;
        for batch in 0..400u64 {
            let points: Vec<Value> = (0..20u64)
                .map(|i| json!({"id": batch * 20 + i + 1, "vector": vec![0.5f32; 64], "payload": {"text": text}}))
                .collect();
            let (status, body) = api.put(
                "/collections/docs/points?wait=true",
                &json!({"shard_key": "acme", "points": points}),
            )?;
            match status {
                200 => acknowledged += 20,
                _ => {
                    refused = Some((status, body));
                    break;
                }
            }
        }
        let (status, body) = refused.context("4 MiB never filled up")?;
        ensure!(status == 507, "a full disk is 507, got {status}: {body}");
        ensure!(
            body["status"]["error"].is_string() && body["time"].is_number(),
            "{body}"
        );
        ensure!(acknowledged > 0, "some batches fit");

        phase!(
            "nothing of the refused batch was kept, reads go on, and so do later writes' refusals"
        );
        expect_count(&api, "acme", acknowledged)?;
        let (status, body) = api.put(
            "/collections/docs/points?wait=true",
            &json!({"shard_key": "acme", "points": [{"id": 1_000_000, "vector": vec![0.5f32; 64], "payload": {"text": text}}]}),
        )?;
        ensure!(status == 507 || status == 200, "{status} {body}");
        let expected = acknowledged + u64::from(status == 200);
        expect_count(&api, "acme", expected)?;
        drop(node);
        Ok(())
    });
}
