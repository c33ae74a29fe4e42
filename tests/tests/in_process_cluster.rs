//! Cluster behaviour over the in-process [`TestCluster`]: three nodes on the memory transport,
//! faults injected by isolating nodes. Fast and deterministic; the same stories over real QUIC
//! and real processes are in `chaos/`.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use serde_json::{Value, json};
use tessera_tests::{Api, TestCluster, phase};

fn create_collection(api: &Api) -> Result<()> {
    api.ok_put(
        "/collections/c",
        &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom"}),
    )?;
    Ok(())
}

fn upsert(api: &Api, key: &str, points: u64) -> Result<()> {
    let points: Vec<Value> = (0..points)
        .map(|i| json!({"id": i, "vector": [1.0, i as f32], "payload": {"tenant": key}}))
        .collect();
    api.ok_put(
        "/collections/c/points?wait=true",
        &json!({"points": points, "shard_key": key}),
    )?;
    Ok(())
}

fn count(api: &Api, key: &str) -> Result<(u16, Value)> {
    api.post("/collections/c/points/count", &json!({"shard_key": key}))
}

/// The node holding shard key `key`'s replica, as the node `api` talks to sees it.
fn holder(api: &Api, key: &str) -> Result<u64> {
    let view = api.ok_get("/collections/c/cluster")?;
    let result = &view;
    let local = result["local_shards"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let remote = result["remote_shards"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let me = result["peer_id"].as_u64();
    for shard in local.iter().chain(remote.iter()) {
        if shard["shard_key"] == json!(key) {
            return shard["peer_id"]
                .as_u64()
                .or(me)
                .ok_or_else(|| anyhow!("no peer for {key}: {view}"));
        }
    }
    Err(anyhow!("no shard for {key}: {view}"))
}

#[test]
fn three_nodes_form_a_cluster_and_serve_a_key_through_any_node() -> Result<()> {
    phase!("three nodes: one bootstraps, two join through it");
    let cluster = TestCluster::start(3)?;
    for id in cluster.ids() {
        let view = cluster.view(id)?;
        ensure!(
            view["peers"].as_object().map(|p| p.len()) == Some(3),
            "node {id} sees {view}"
        );
    }

    phase!("a shard key created through node 1 is written through node 2 and read through node 3");
    create_collection(cluster.api(1)?)?;
    cluster
        .api(1)?
        .ok_put("/collections/c/shards", &json!({"shard_key": "acme"}))?;
    upsert(cluster.api(2)?, "acme", 5)?;
    let (status, body) = count(cluster.api(3)?, "acme")?;
    ensure!(
        status == 200 && body["result"]["count"] == 5,
        "{status} {body}"
    );
    Ok(())
}

#[test]
fn isolating_the_leader_elects_another_and_metadata_writes_continue() -> Result<()> {
    let cluster = TestCluster::start(3)?;
    create_collection(cluster.api(1)?)?;
    let ids = cluster.ids();
    let leader = cluster.wait_for_leader(&ids, Duration::from_secs(10))?;

    phase!("isolate the leader {leader}: the other two elect one of themselves");
    cluster.isolate(leader);
    let rest: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let next = cluster.wait_for_leader(&rest, Duration::from_secs(15))?;
    ensure!(next != leader, "a new leader");

    phase!("a shard key is created through a follower of the new leader's side");
    let via = rest[0];
    let started = Instant::now();
    loop {
        let (status, body) = cluster
            .api(via)?
            .put("/collections/c/shards", &json!({"shard_key": "after"}))?;
        if status == 200 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(15),
            "no metadata write after isolating the leader: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // the node asked reads its own change at once; the other one once it has applied it
    let keys = cluster.api(via)?.ok_get("/collections/c/shards")?;
    ensure!(keys.to_string().contains("after"), "{keys}");
    let applied = Instant::now();
    while !cluster
        .api(rest[1])?
        .ok_get("/collections/c/shards")?
        .to_string()
        .contains("after")
    {
        ensure!(
            applied.elapsed() < Duration::from_secs(5),
            "node {} never applied the new key",
            rest[1]
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    phase!("heal: the old leader follows again");
    cluster.heal();
    cluster.wait_for_leader(&ids, Duration::from_secs(15))?;
    Ok(())
}

#[test]
fn isolating_a_tenants_node_gives_it_503_and_leaves_other_tenants_alone() -> Result<()> {
    let cluster = TestCluster::start(3)?;
    let api = cluster.api(1)?;
    create_collection(api)?;

    phase!("two tenants on two different nodes other than the observer");
    api.ok_put(
        "/collections/c/shards",
        &json!({"shard_key": "victim", "placement": [2]}),
    )?;
    api.ok_put(
        "/collections/c/shards",
        &json!({"shard_key": "safe", "placement": [3]}),
    )?;
    upsert(api, "victim", 3)?;
    upsert(api, "safe", 4)?;
    ensure!(holder(api, "victim")? == 2 && holder(api, "safe")? == 3);

    phase!("isolate node 2: its tenant answers 503 at once, the other tenant 200");
    cluster.isolate(2);
    let isolated = Instant::now();
    let (status, body) = count(api, "victim")?;
    ensure!(status == 503, "{status} {body}");
    ensure!(
        isolated.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        isolated.elapsed()
    );
    let (status, body) = count(api, "safe")?;
    ensure!(
        status == 200 && body["result"]["count"] == 4,
        "{status} {body}"
    );

    phase!("heal: the tenant is served again");
    cluster.heal();
    let healed = Instant::now();
    loop {
        let (status, body) = count(api, "victim")?;
        if status == 200 {
            ensure!(body["result"]["count"] == 3, "{body}");
            break;
        }
        ensure!(
            healed.elapsed() < Duration::from_secs(5),
            "never served again: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn strangers_with_a_cluster_certificate_reach_no_data_and_no_vote() {
    use tessera_cluster::ErrorKind;
    use tessera_cluster::transport::Service;
    use tessera_cluster::transport::memory::MemoryHub;

    let cluster = TestCluster::start(3).expect("cluster");
    let garbage = b"not a frame of ours".to_vec();
    for (claims, at, what) in [
        (99, MemoryHub::addr_of(99), "a node that never joined"),
        (
            2,
            MemoryHub::addr_of(77),
            "a stranger claiming member 2's id from elsewhere",
        ),
    ] {
        phase!("{what}: shard, raft and metadata calls are refused before they are read");
        for service in [Service::Shard, Service::Raft] {
            let e = cluster
                .call_as_stranger(claims, at, 1, service, garbage.clone())
                .expect_err("refused");
            assert_eq!(
                e.kind,
                ErrorKind::Unauthenticated,
                "{what} {service:?}: {e:?}"
            );
        }
    }
    phase!("the members still serve each other: a change through a follower, read on every node");
    let leader = cluster
        .wait_for_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("leader");
    let follower = if leader == 1 { 2 } else { 1 };
    create_collection(cluster.api(follower).expect("api")).expect("a metadata change");
    for id in [1, 2, 3] {
        let api = cluster.api(id).expect("api");
        let deadline = Instant::now() + Duration::from_secs(10);
        while api.ok_get("/collections/c").is_err() {
            assert!(
                Instant::now() < deadline,
                "node {id} never applied the change"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
