//! Rebalancing onto a node that joins empty, on a swarm of real `tessera` processes: `POST
//! /admin/rebalance` moves replicas onto it under a light write load, nothing acknowledged is
//! lost, no shard ever has two replicas on one node; a move finishes though the leader that took
//! it dies at once; `--auto-rebalance` moves replicas onto a new node by itself.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use serde_json::{Value, json};
use tessera_chaos::{Api, Swarm, SwarmOptions};
use tessera_tests::phase;

mod common;
use common::{
    Writers, apis, check_acked_present, create_collection, replica_nodes, replica_sets, tenant,
    wait_identical,
};

/// Every shard has `rf` replicas on distinct nodes, all in sync, and no move in flight.
fn settled_shards(api: &Api, rf: usize) -> Result<bool> {
    let shards = replica_sets(api)?;
    for s in &shards {
        let nodes = replica_nodes(s);
        let distinct: BTreeSet<u64> = nodes.iter().copied().collect();
        ensure!(
            distinct.len() == nodes.len(),
            "two replicas of one shard on one node: {s}"
        );
    }
    Ok(shards.iter().all(|s| {
        let rs = s["replicas"].as_array().cloned().unwrap_or_default();
        rs.len() == rf && rs.iter().all(|r| r["state"] == "Active")
    }))
}

/// How many replicas node `node` holds.
fn held_by(api: &Api, node: u64) -> Result<usize> {
    Ok(replica_sets(api)?
        .iter()
        .filter(|s| replica_nodes(s).contains(&node))
        .count())
}

fn rebalance(api: &Api, body: &Value) -> Result<Vec<Value>> {
    let plan = api.ok_post("/admin/rebalance", body)?;
    Ok(plan["moves"].as_array().cloned().unwrap_or_default())
}

#[test]
fn a_node_that_joins_empty_receives_replicas_through_rebalancing() -> Result<()> {
    const TENANTS: usize = 9;
    const PRELOAD: u64 = 5000;
    let mut swarm = Swarm::prepare(SwarmOptions::new(4))?;
    for id in 1..=3 {
        swarm.start_member(id)?;
    }
    let api1 = swarm.api(1)?;
    phase!(
        "3 nodes, replication_factor 2, {TENANTS} tenants of {PRELOAD} points, under a light write load"
    );
    create_collection(&api1, 2)?;
    for t in 0..TENANTS {
        api1.ok_put("/collections/c/shards", &json!({"shard_key": tenant(t)}))?;
        // points of its own, beyond the writers' ids, so that each move copies something
        for batch in 0..(PRELOAD / 500) {
            let points: Vec<Value> = (0..500)
                .map(|i| {
                    let id = 1_000_000 + batch * 500 + i;
                    json!({"id": id, "vector": [0.5, id as f32, 1.0, 0.25], "payload": {"n": id}})
                })
                .collect();
            api1.ok_put(
                "/collections/c/points?wait=true",
                &json!({"points": points, "shard_key": tenant(t)}),
            )?;
        }
    }
    let writers = Writers::start(
        apis(&swarm, &[1, 2, 3])?,
        TENANTS,
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_secs(1));

    phase!("node 4 joins: it holds nothing");
    swarm.start_member(4)?;
    ensure!(held_by(&api1, 4)? == 0, "a new node holds replicas already");

    phase!("bad rebalance requests are refused and change nothing");
    for body in [
        json!({"max_moves": 0}),
        json!({"max_moves": "2"}),
        json!({"dry_run": 1}),
        json!({"moves": 2}),
    ] {
        let (status, answer) = api1.post("/admin/rebalance", &body)?;
        ensure!(status == 400, "{body}: {status} {answer}");
        ensure!(
            answer["status"]["error"].is_string(),
            "not Qdrant's error JSON: {answer}"
        );
    }
    let dry = rebalance(&api1, &json!({"dry_run": true}))?;
    ensure!(!dry.is_empty(), "a dry run planned nothing");
    ensure!(
        dry.iter()
            .all(|m| m["status"] == "planned" && m["to_peer_id"] == 4),
        "{dry:?}"
    );
    ensure!(
        held_by(&api1, 4)? == 0,
        "a dry run moved something: {dry:?}"
    );

    phase!("rebalance onto node 4, {} moves at most per call", 4);
    let started = Instant::now();
    let mut calls = 0;
    let mut moved = 0;
    loop {
        let moves = rebalance(&api1, &json!({}))?;
        calls += 1;
        for m in &moves {
            ensure!(m["status"] != "refused", "a move was refused: {m}");
            let (from, to) = (m["from_peer_id"].as_u64(), m["to_peer_id"].as_u64());
            ensure!(from != to && from.is_some() && to.is_some(), "{m}");
        }
        moved += moves.len();
        if moves.is_empty() && settled_shards(&api1, 2)? {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(90),
            "not rebalanced within 90 s after {calls} calls: {:?}",
            replica_sets(&api1)?
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let took = started.elapsed();
    tessera_tests::log_phase(format_args!(
        "FIGURE time to rebalance onto a new node: {} ms ({moved} replicas of {TENANTS} tenants x 2 moved, {PRELOAD}+ points each, {calls} calls, writes running)",
        took.as_millis()
    ));
    let on_new = held_by(&api1, 4)?;
    ensure!(
        on_new >= 4,
        "node 4 holds {on_new} of 18 replicas after rebalancing"
    );
    for id in 1..=3 {
        let held = held_by(&api1, id)?;
        ensure!((4..=5).contains(&held), "node {id} holds {held} replicas");
    }
    let cluster4 = swarm.api(4)?.ok_get("/collections/c/cluster")?;
    ensure!(
        cluster4["local_shards"]
            .as_array()
            .is_some_and(|a| a.len() == on_new),
        "node 4's own view: {cluster4}"
    );

    phase!("every acknowledged write is there, read through every node");
    let acked = writers.finish()?;
    wait_identical(&api1, Duration::from_secs(30))?;
    for id in swarm.ids() {
        let n = check_acked_present(&swarm.api(id)?, &acked)?;
        ensure!(n > 0, "no write was acknowledged");
    }
    Ok(())
}

#[test]
fn a_move_finishes_though_the_leader_that_took_it_dies() -> Result<()> {
    let mut swarm = Swarm::start(3)?;
    let api1 = swarm.api(1)?;
    phase!("3 nodes, replication_factor 1, 3 tenants");
    create_collection(&api1, 1)?;
    for t in 0..3 {
        api1.ok_put("/collections/c/shards", &json!({"shard_key": tenant(t)}))?;
    }
    // the metadata leader takes the move and dies: neither the node that asked nor the leader
    // that committed the move is there to finish it
    let asker = swarm.wait_for_leader(Duration::from_secs(10))?;
    // a shard the asker does not hold, moved to the third node
    let shard = replica_sets(&api1)?
        .into_iter()
        .find(|s| !replica_nodes(s).contains(&asker))
        .ok_or_else(|| anyhow!("every shard is on node {asker}"))?;
    let from = replica_nodes(&shard)[0];
    let to = swarm
        .ids()
        .into_iter()
        .find(|n| *n != asker && *n != from)
        .ok_or_else(|| anyhow!("no third node"))?;
    let shard_id = shard["shard_id"]
        .as_u64()
        .ok_or_else(|| anyhow!("{shard}"))?;
    let key = shard["shard_key"].clone();
    let writes: Vec<u64> = (0..200).collect();
    let points: Vec<Value> = writes
        .iter()
        .map(|i| json!({"id": i, "vector": [1.0, *i as f32, 0.5, 0.25]}))
        .collect();
    api1.ok_put(
        "/collections/c/points?wait=true",
        &json!({"points": points, "shard_key": key}),
    )?;

    phase!("the leader {asker} is asked to move shard {shard_id} from {from} to {to}, then killed");
    swarm.api(asker)?.ok_post(
        "/collections/c/cluster",
        &json!({"move_shard": {"shard_id": shard_id, "from_peer_id": from, "to_peer_id": to}}),
    )?;
    swarm.kill9(asker)?;
    let reader = swarm.api(to)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = replica_sets(&reader)?
            .into_iter()
            .find(|s| s["shard_id"] == shard_id)
            .ok_or_else(|| anyhow!("no shard {shard_id}"))?;
        if replica_nodes(&s) == vec![to] && s["replicas"][0]["state"] == "Active" {
            break;
        }
        ensure!(Instant::now() < deadline, "the move was not finished: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = reader.ok_post(
        "/collections/c/points/count",
        &json!({"shard_key": key, "exact": true}),
    )?;
    ensure!(got["count"] == 200, "{got}");
    Ok(())
}

#[test]
fn auto_rebalance_moves_replicas_onto_a_new_node_by_itself() -> Result<()> {
    let mut swarm = Swarm::prepare(SwarmOptions::new(4).arg("--auto-rebalance"))?;
    for id in 1..=3 {
        swarm.start_member(id)?;
    }
    let api1 = swarm.api(1)?;
    phase!("3 nodes with --auto-rebalance, replication_factor 1, 6 tenants");
    create_collection(&api1, 1)?;
    for t in 0..6 {
        api1.ok_put("/collections/c/shards", &json!({"shard_key": tenant(t)}))?;
    }
    phase!("node 4 joins; the leader moves replicas onto it within a few rounds");
    swarm.start_member(4)?;
    let joined = Instant::now();
    loop {
        if held_by(&api1, 4)? >= 1 && settled_shards(&api1, 1)? {
            break;
        }
        ensure!(
            joined.elapsed() < Duration::from_secs(60),
            "nothing moved onto node 4 within 60 s: {:?}",
            replica_sets(&api1)?
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    tessera_tests::log_phase(format_args!(
        "FIGURE automatic rebalance: a replica on the new node {} ms after it joined",
        joined.elapsed().as_millis()
    ));
    Ok(())
}
