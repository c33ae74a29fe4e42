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

/// A cluster of three with collection `c` (replication_factor 2, key `acme`, 10 points
/// written), and the key's primary and backup.
fn replicated_pair() -> Result<(TestCluster, u64, u64)> {
    let cluster = TestCluster::start(3)?;
    let api = cluster.api(1)?;
    create(api, 2)?;
    let (status, body) = upsert(api, 0..10)?;
    ensure!(status == 200, "{status} {body}");
    let shard = wait_identical(api, 10, Duration::from_secs(5))?;
    let primary = shard["primary"]
        .as_u64()
        .ok_or_else(|| anyhow!("{shard}"))?;
    let backup = shard["replicas"]
        .as_array()
        .and_then(|rs| {
            rs.iter()
                .filter_map(|r| r["peer_id"].as_u64())
                .find(|n| *n != primary)
        })
        .ok_or_else(|| anyhow!("no backup in {shard}"))?;
    Ok((cluster, primary, backup))
}

fn state_of(api: &Api, node: u64) -> Result<String> {
    let shard = replicas(api)?;
    shard["replicas"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["peer_id"] == node))
        .and_then(|r| r["state"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("no replica on {node}: {shard}"))
}

#[test]
fn a_backup_that_dies_before_its_fsync_is_dropped_first_and_catches_up() -> Result<()> {
    use tessera_cluster::transport::Service;
    use tessera_cluster::transport::faults::Lose;
    let (cluster, primary, backup) = replicated_pair()?;
    let api = cluster.api(primary)?;
    phase!("the record to backup {backup} is lost before it reaches the backup");
    cluster
        .faults()
        .lose(Service::Replication, backup, Lose::Request, 1);
    let (status, body) = upsert(api, 10..11)?;
    ensure!(
        status == 200,
        "the write is acknowledged once the backup is dropped: {status} {body}"
    );
    phase!("the backup was out of the in-sync set when the write was acknowledged");
    // the drop is committed before the answer; the keeper then brings the backup back
    let (status, body) = count(api)?;
    ensure!(
        status == 200 && body["result"]["count"] == 11,
        "{status} {body}"
    );
    wait_identical(api, 11, Duration::from_secs(10))?;
    ensure!(state_of(api, backup)? == "Active", "back in sync");
    Ok(())
}

#[test]
fn a_backup_that_dies_after_its_fsync_catches_up_from_the_tail() -> Result<()> {
    use tessera_cluster::transport::Service;
    use tessera_cluster::transport::faults::Lose;
    let (cluster, primary, backup) = replicated_pair()?;
    let api = cluster.api(primary)?;
    phase!("backup {backup} makes the record durable, its answer is lost");
    cluster
        .faults()
        .lose(Service::Replication, backup, Lose::Reply, 1);
    let started = Instant::now();
    let (status, body) = upsert(api, 10..11)?;
    ensure!(status == 200, "{status} {body}");
    ensure!(
        started.elapsed() >= Duration::from_secs(1),
        "acknowledged only after the backup's deadline and its drop ({:?})",
        started.elapsed()
    );
    wait_identical(api, 11, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn a_primary_cut_off_after_sending_acknowledges_nothing_the_majority_lacks() -> Result<()> {
    use tessera_cluster::transport::Service;
    use tessera_cluster::transport::faults::Lose;
    let (cluster, primary, backup) = replicated_pair()?;
    let api = cluster.api(primary)?;
    phase!("the backup's answer is lost, and the primary is cut off before it can drop it");
    cluster
        .faults()
        .lose(Service::Replication, backup, Lose::Reply, 1);
    let writer = {
        let api = api.clone();
        std::thread::spawn(move || upsert(&api, 10..12).map(|(status, _)| status))
    };
    std::thread::sleep(Duration::from_millis(300));
    cluster.isolate(primary);
    let status = writer.join().map_err(|_| anyhow!("writer"))??;
    ensure!(
        status != 200,
        "a primary that could not drop its silent backup acknowledged the write"
    );
    phase!("the majority promotes the backup, which holds the record; nothing else differs");
    let api_b = cluster.api(backup)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shard = replicas(api_b)?;
        if shard["primary"].as_u64() == Some(backup) {
            break;
        }
        ensure!(Instant::now() < deadline, "no promotion: {shard}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = upsert(api_b, 12..13)?;
    ensure!(status == 200, "{status} {body}");
    cluster.heal();
    wait_identical(api_b, 13, Duration::from_secs(15))?;
    Ok(())
}

#[test]
fn reads_honour_qdrants_consistency_parameter() -> Result<()> {
    let (cluster, primary, backup) = replicated_pair()?;
    let api = cluster.api(primary)?;
    let count_with = |api: &Api, c: &str| {
        api.post(
            &format!("/collections/c/points/count?consistency={c}"),
            &json!({"shard_key": "acme", "exact": true}),
        )
    };
    phase!("both replicas answer: every consistency level reads 10");
    for c in ["1", "2", "majority", "quorum", "all"] {
        let (status, body) = count_with(api, c)?;
        ensure!(
            status == 200 && body["result"]["count"] == 10,
            "consistency={c}: {status} {body}"
        );
    }
    let (status, body) = count_with(api, "3")?;
    ensure!(
        status == 503,
        "3 replicas of a 2-replica shard: {status} {body}"
    );
    let (status, body) = count_with(api, "most")?;
    ensure!(status == 400, "unknown level: {status} {body}");
    ensure!(
        tessera_tests::error_message(&body)?.contains("consistency"),
        "the error names the parameter: {body}"
    );
    phase!("the backup's node is cut off: `all` is refused, `1` still reads");
    cluster.isolate(backup);
    let (status, body) = count_with(api, "all")?;
    ensure!(status == 503, "all with a replica cut off: {status} {body}");
    let (status, body) = count_with(api, "1")?;
    ensure!(
        status == 200 && body["result"]["count"] == 10,
        "{status} {body}"
    );
    Ok(())
}

#[test]
fn the_collection_cluster_view_shows_every_replica_with_its_own_count_on_every_node() -> Result<()>
{
    // the reproduction: 3 nodes, replication_factor 2, two points upserted
    let cluster = TestCluster::start(3)?;
    create(cluster.api(1)?, 2)?;
    let (status, body) = upsert(cluster.api(2)?, 0..2)?;
    ensure!(status == 200, "{status} {body}");
    for id in cluster.ids() {
        let view = cluster.api(id)?.ok_get("/collections/c/cluster")?;
        let mut entries: Vec<Value> = Vec::new();
        for side in ["local_shards", "remote_shards"] {
            entries.extend(view[side].as_array().cloned().unwrap_or_default());
        }
        ensure!(entries.len() == 2, "node {id}: two replicas, got {view}");
        for e in &entries {
            ensure!(
                e["state"] == "Active" && e["points_count"] == 2,
                "node {id}: every replica Active with its own 2 points: {view}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_deposed_primarys_record_that_arrives_late_is_refused() -> Result<()> {
    use tessera_cluster::transport::Service;
    use tessera_cluster::transport::faults::Lose;
    let (cluster, primary, backup) = replicated_pair()?;
    let api = cluster.api(primary)?;
    phase!("primary {primary}'s next record to backup {backup} arrives 6 s late");
    cluster.faults().lose(
        Service::Replication,
        backup,
        Lose::Late(Duration::from_secs(6)),
        1,
    );
    let sent = Instant::now();
    let writer = {
        let api = api.clone();
        std::thread::spawn(move || upsert(&api, 10..11).map(|(status, _)| status))
    };
    std::thread::sleep(Duration::from_millis(300));
    phase!("the primary is cut off before it can drop the backup; the backup is promoted");
    cluster.isolate(primary);
    let status = writer.join().map_err(|_| anyhow!("writer"))??;
    ensure!(
        status != 200,
        "a write the backup never acknowledged was acknowledged"
    );
    let api_b = cluster.api(backup)?;
    loop {
        if replicas(api_b)?["primary"].as_u64() == Some(backup) {
            break;
        }
        ensure!(
            sent.elapsed() < Duration::from_secs(5),
            "not promoted before the late record"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    phase!("the late record of the old epoch reaches the new primary, which refuses it");
    std::thread::sleep(Duration::from_secs(7).saturating_sub(sent.elapsed()));
    let (status, body) = api_b.post(
        "/collections/c/points",
        &json!({"ids": [10], "shard_key": "acme"}),
    )?;
    ensure!(
        status == 200 && body["result"].as_array().is_some_and(|a| a.is_empty()),
        "the deposed primary's write is visible on the new primary: {status} {body}"
    );
    let (status, body) = upsert(api_b, 11..12)?;
    ensure!(status == 200, "{status} {body}");
    cluster.heal();
    wait_identical(api_b, 11, Duration::from_secs(15))?;
    let (_, body) = cluster.api(primary)?.post(
        "/collections/c/points",
        &json!({"ids": [10], "shard_key": "acme"}),
    )?;
    ensure!(
        body["result"].as_array().is_some_and(|a| a.is_empty()),
        "the old primary kept its unacknowledged write after catching up: {body}"
    );
    Ok(())
}

fn holders(api: &Api) -> Result<Vec<(u64, String)>> {
    let shard = replicas(api)?;
    Ok(shard["replicas"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| Some((r["peer_id"].as_u64()?, r["state"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default())
}

fn wait_holders(api: &Api, want: &[u64], within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let mut now: Vec<u64> = holders(api)?
            .into_iter()
            .filter(|(_, s)| s == "Active")
            .map(|(n, _)| n)
            .collect();
        now.sort_unstable();
        let all = holders(api)?.len();
        if now == want && all == want.len() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "holders {:?}, want {want:?}",
            holders(api)?
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn shards_are_replicated_moved_and_dropped_with_qdrants_operations() -> Result<()> {
    let cluster = TestCluster::start(3)?;
    let api = cluster.api(1)?;
    create(api, 1)?;
    let (status, body) = upsert(api, 0..10)?;
    ensure!(status == 200, "{status} {body}");
    let first = holders(api)?[0].0;
    let mut others = cluster.ids().into_iter().filter(|n| *n != first);
    let (second, third) = (
        others.next().ok_or_else(|| anyhow!("node"))?,
        others.next().ok_or_else(|| anyhow!("node"))?,
    );
    let op = |body: Value| api.post("/collections/c/cluster", &body);

    phase!("replicate_shard {first} -> {second}: a second in-sync replica with every point");
    // as qdrant-client sends it: unset options as null
    let (status, body) = op(
        json!({"replicate_shard": {"shard_id": 0, "from_peer_id": first,
        "to_peer_id": second, "method": null, "to_shard_id": null}}),
    )?;
    ensure!(status == 200 && body["result"] == true, "{status} {body}");
    let mut want = vec![first, second];
    want.sort_unstable();
    wait_holders(api, &want, Duration::from_secs(10))?;
    wait_identical(api, 10, Duration::from_secs(5))?;

    phase!("refusals: a peer that holds one already, a source without one, an unknown method");
    for (body, what) in [
        (
            json!({"replicate_shard": {"shard_id": 0, "from_peer_id": first, "to_peer_id": second}}),
            "holds one",
        ),
        (
            json!({"replicate_shard": {"shard_id": 0, "from_peer_id": third, "to_peer_id": third}}),
            "no source",
        ),
        (
            json!({"move_shard": {"shard_id": 0, "from_peer_id": first, "to_peer_id": third, "method": "wal_delta"}}),
            "method",
        ),
        (
            json!({"replicate_shard": {"shard_id": 9, "from_peer_id": first, "to_peer_id": third}}),
            "no shard",
        ),
        (json!({"split_shard": {}}), "unknown op"),
    ] {
        let (status, answer) = op(body)?;
        ensure!(matches!(status, 400 | 404), "{what}: {status} {answer}");
        ensure!(holders(api)?.len() == 2, "{what} changed nothing");
    }

    phase!("move_shard {first} -> {third} under writes: the primary moves with it, nothing lost");
    let (status, body) =
        op(json!({"move_shard": {"shard_id": 0, "from_peer_id": first, "to_peer_id": third}}))?;
    ensure!(status == 200, "{status} {body}");
    for i in 10..20 {
        let (status, body) = upsert(cluster.api(second)?, i..i + 1)?;
        ensure!(status == 200, "write during the move: {status} {body}");
    }
    let mut want = vec![second, third];
    want.sort_unstable();
    wait_holders(api, &want, Duration::from_secs(15))?;
    wait_identical(api, 20, Duration::from_secs(5))?;
    for id in cluster.ids() {
        let (status, body) = count(cluster.api(id)?)?;
        ensure!(
            status == 200 && body["result"]["count"] == 20,
            "node {id}: {status} {body}"
        );
    }

    phase!("drop_replica: the last in-sync replica stays, another goes");
    let (status, body) = op(json!({"drop_replica": {"shard_id": 0, "peer_id": second}}))?;
    ensure!(status == 200, "{status} {body}");
    wait_holders(api, &[third], Duration::from_secs(5))?;
    let (status, body) = op(json!({"drop_replica": {"shard_id": 0, "peer_id": third}}))?;
    ensure!(status == 400, "the last replica: {status} {body}");
    let (status, body) = count(api)?;
    ensure!(
        status == 200 && body["result"]["count"] == 20,
        "{status} {body}"
    );
    Ok(())
}

#[test]
fn too_few_reachable_nodes_is_a_503_too_few_nodes_a_400() -> Result<()> {
    let cluster = TestCluster::start(3)?;
    let api = cluster.api(1)?;
    create(api, 1)?;
    phase!("node 3 is cut off: replication_factor 3 must wait for it, 4 can never be");
    cluster.isolate(3);
    let key = |k: &str, rf: u32| {
        api.put(
            "/collections/c/shards",
            &json!({"shard_key": k, "replication_factor": rf}),
        )
    };
    // the pinger marks it down within a second (a 300 ms round, a 700 ms deadline)
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = key("wide", 3)?;
    ensure!(status == 503, "a temporary shortage: {status} {body}");
    ensure!(
        tessera_tests::error_message(&body)?.contains("retry"),
        "says to retry: {body}"
    );
    let (status, body) = key("wider", 4)?;
    ensure!(status == 400, "more than the cluster has: {status} {body}");
    phase!("node 3 is back: the same request succeeds");
    cluster.heal();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = key("wide", 3)?;
        if status == 200 {
            break;
        }
        ensure!(Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
