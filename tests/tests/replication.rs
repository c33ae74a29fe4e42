//! Replicated shards over the in-process [`TestCluster`] (memory transport, faults injected by
//! isolating and partitioning nodes): the write path, failover, catch-up and the digests that
//! prove replicas identical. The same stories over real QUIC and real processes, with kill -9,
//! are in `chaos/tests/replication.rs`.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use tessera_tests::{Api, TestCluster, phase};

fn create(api: &Api, replication_factor: u32) -> Result<()> {
    api.ok_put(
        "/collections/c",
        &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom",
                "replication_factor": replication_factor}),
    )?;
    api.ok_put("/collections/c/shards", &json!({"shard_key": "acme"}))?;
    Ok(())
}

fn upsert(api: &Api, ids: std::ops::Range<u64>) -> Result<(u16, Value)> {
    let points: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": [1.0, i as f32], "payload": {"n": i}}))
        .collect();
    api.put(
        "/collections/c/points?wait=true",
        &json!({"points": points, "shard_key": "acme"}),
    )
}

fn count(api: &Api) -> Result<(u16, Value)> {
    api.post(
        "/collections/c/points/count",
        &json!({"shard_key": "acme", "exact": true}),
    )
}

/// The replica set of the collection's one shard, as node `api` reports it.
fn replicas(api: &Api) -> Result<Value> {
    let view = api.ok_get("/admin/collections/c/replicas")?;
    view["shards"]
        .get(0)
        .cloned()
        .ok_or_else(|| anyhow!("no shard in {view}"))
}

/// Waits until every replica is Active with `points` points and one digest.
fn wait_identical(api: &Api, points: u64, within: Duration) -> Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let shard = replicas(api)?;
        let rs = shard["replicas"].as_array().cloned().unwrap_or_default();
        let digests: Vec<&Value> = rs.iter().map(|r| &r["digest"]).collect();
        let all_active = rs.iter().all(|r| r["state"] == "Active");
        let all_counted = rs.iter().all(|r| r["points_count"] == points);
        if all_active
            && all_counted
            && digests.windows(2).all(|w| w[0] == w[1])
            && !digests[0].is_null()
        {
            return Ok(shard);
        }
        if Instant::now() >= deadline {
            bail!("replicas not identical in {within:?}: {shard}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn writes_reach_every_replica_and_survive_the_loss_of_the_primary() -> Result<()> {
    let cluster = TestCluster::start(3)?;
    let api = cluster.api(1)?;
    phase!("replication_factor 2: every acknowledged write is on both replicas");
    create(api, 2)?;
    let (status, body) = upsert(api, 0..20)?;
    ensure!(status == 200, "{status} {body}");
    let shard = wait_identical(api, 20, Duration::from_secs(5))?;
    let primary = shard["primary"]
        .as_u64()
        .ok_or_else(|| anyhow!("{shard}"))?;
    let epoch = shard["epoch"].as_u64().unwrap_or_default();

    phase!("the primary's node is cut off: a backup is promoted and writes resume");
    cluster.isolate(primary);
    let other = cluster
        .ids()
        .into_iter()
        .find(|id| *id != primary)
        .unwrap_or(1);
    let api2 = cluster.api(other)?;
    let started = Instant::now();
    let (status, body) = upsert(api2, 20..30)?;
    ensure!(
        status == 200,
        "write after the primary's loss: {status} {body}"
    );
    let resumed = started.elapsed();
    ensure!(
        resumed < Duration::from_secs(5),
        "writes resumed after {resumed:?}"
    );
    let (status, body) = count(api2)?;
    ensure!(
        status == 200 && body["result"]["count"] == 30,
        "{status} {body}"
    );
    let shard = replicas(api2)?;
    ensure!(
        shard["primary"].as_u64() != Some(primary),
        "not promoted: {shard}"
    );
    ensure!(
        shard["epoch"].as_u64() > Some(epoch),
        "epoch not bumped: {shard}"
    );

    phase!("the old primary comes back: it catches up and the replicas are identical again");
    cluster.heal();
    wait_identical(api2, 30, Duration::from_secs(15))?;
    let (status, body) = count(cluster.api(primary)?)?;
    ensure!(
        status == 200 && body["result"]["count"] == 30,
        "{status} {body}"
    );
    Ok(())
}
