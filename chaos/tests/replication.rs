//! Replicated shards on a swarm of real `tessera` processes over QUIC with mutual TLS: a stream
//! of `wait=true` writes over many tenants through every node while a primary's node is killed
//! with SIGKILL; no acknowledged write is lost, writes resume and reads stay served within their
//! bounds, and the restarted node catches up until every replica's digest and count are equal.
//! With `replication_factor: 3` on five nodes, two successive kills lose nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use serde_json::json;
use tessera_chaos::{Api, Swarm, SwarmOptions};
use tessera_tests::phase;

mod common;
use common::{CutOff, apis, replica_sets, tenant, upsert_one, wait_identical};

/// Most writes one tenant's writer makes (the stream is bounded in count and in time).
const MAX_WRITES: u64 = 4000;
const MAX_STREAM: Duration = Duration::from_secs(60);

fn create(api: &Api, tenants: usize, replication_factor: u32) -> Result<()> {
    common::create_collection(api, replication_factor)?;
    for t in 0..tenants {
        api.ok_put("/collections/c/shards", &json!({"shard_key": tenant(t)}))?;
    }
    Ok(())
}

/// What the stream saw: per tenant the acknowledged ids, and for reads and writes the times of
/// each answer (ok or not).
#[derive(Default)]
struct Seen {
    acked: BTreeMap<String, BTreeSet<u64>>,
    /// (tenant, time, ok) of every write and read answer.
    writes: Vec<(String, Instant, bool)>,
    reads: Vec<(String, Instant, bool)>,
}

struct Stream {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<JoinHandle<()>>,
}

impl Stream {
    /// One writer and one reader per tenant, each going round every node in `apis`.
    fn start(apis: Vec<Api>, tenants: usize) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut threads = Vec::new();
        for t in 0..tenants {
            let (w_stop, w_seen, w_apis) = (stop.clone(), seen.clone(), apis.clone());
            threads.push(std::thread::spawn(move || {
                write_stream(&w_apis, &tenant(t), &w_stop, &w_seen)
            }));
            let (r_stop, r_seen, r_apis) = (stop.clone(), seen.clone(), apis.clone());
            threads.push(std::thread::spawn(move || {
                read_stream(&r_apis, &tenant(t), &r_stop, &r_seen)
            }));
        }
        Stream {
            stop,
            seen,
            threads,
        }
    }

    fn finish(self) -> Result<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().map_err(|_| anyhow!("a stream thread panicked"))?;
        }
        Arc::try_unwrap(self.seen)
            .map_err(|_| anyhow!("stream still shared"))?
            .into_inner()
            .map_err(|_| anyhow!("stream lock poisoned"))
    }
}

fn write_stream(apis: &[Api], key: &str, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let started = Instant::now();
    for id in 0..MAX_WRITES {
        if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_STREAM {
            return;
        }
        // a node that is down refuses the connection: the next node is tried
        let Some(status) = upsert_one(&apis[id as usize % apis.len()], key, id) else {
            continue;
        };
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        s.writes
            .push((key.to_owned(), Instant::now(), status == 200));
        if status == 200 {
            s.acked.entry(key.to_owned()).or_default().insert(id);
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_stream(apis: &[Api], key: &str, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let started = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_STREAM {
        i += 1;
        let api = &apis[i % apis.len()];
        let answer = api.post("/collections/c/points/count", &json!({"shard_key": key}));
        let Ok((status, _)) = answer else { continue };
        seen.lock().unwrap_or_else(|p| p.into_inner()).reads.push((
            key.to_owned(),
            Instant::now(),
            status == 200,
        ));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The longest time a tenant went without a successful answer after `since` (refusals only:
/// from a refusal to the next success).
fn longest_refusal(answers: &[(String, Instant, bool)], since: Instant) -> (Duration, String) {
    let mut worst = (Duration::ZERO, String::new());
    let mut first_bad: BTreeMap<&str, Instant> = BTreeMap::new();
    for (key, at, ok) in answers.iter().filter(|(_, at, _)| *at >= since) {
        if *ok {
            if let Some(bad) = first_bad.remove(key.as_str()) {
                let gap = at.duration_since(bad);
                if gap > worst.0 {
                    worst = (gap, key.clone());
                }
            }
        } else {
            first_bad.entry(key.as_str()).or_insert(*at);
        }
    }
    worst
}

/// The time from `since` to the first successful write of each tenant, the worst of them.
fn resumed_after(
    answers: &[(String, Instant, bool)],
    since: Instant,
    keys: &[String],
) -> Result<Duration> {
    let mut worst = Duration::ZERO;
    for key in keys {
        let first = answers
            .iter()
            .filter(|(k, at, ok)| k == key && *at >= since && *ok)
            .map(|(_, at, _)| *at)
            .min()
            .ok_or_else(|| anyhow!("{key}: no write succeeded after the kill"))?;
        worst = worst.max(first.duration_since(since));
    }
    Ok(worst)
}

/// The tenants whose primary is on `node`.
fn primaries_on(api: &Api, node: u64) -> Result<Vec<String>> {
    Ok(replica_sets(api)?
        .iter()
        .filter(|s| s["primary"].as_u64() == Some(node))
        .filter_map(|s| s["shard_key"].as_str().map(str::to_owned))
        .collect())
}

/// The node of a 3-node swarm holding the most primaries, and the tenants whose primary it is.
fn busiest_primary(api: &Api) -> Result<(u64, Vec<String>)> {
    let victim = (1..=3u64)
        .max_by_key(|n| primaries_on(api, *n).map(|v| v.len()).unwrap_or(0))
        .ok_or_else(|| anyhow!("no nodes"))?;
    let hit = primaries_on(api, victim)?;
    ensure!(!hit.is_empty(), "node {victim} holds no primary");
    Ok((victim, hit))
}

/// Every acknowledged id of every tenant in `seen` is there, read through `api`.
fn check_acked_present(api: &Api, seen: &Seen) -> Result<usize> {
    common::check_acked_present(api, &seen.acked)
}

#[test]
fn a_primary_killed_mid_stream_loses_no_acknowledged_write() -> Result<()> {
    const TENANTS: usize = 6;
    let mut swarm = Swarm::start(3)?;
    let api1 = swarm.api(1)?;
    phase!("3 nodes, replication_factor 2, {TENANTS} tenants");
    create(&api1, TENANTS, 2)?;
    // a node holding primaries, not the one the checks read through at the end
    let (victim, hit) = busiest_primary(&api1)?;
    let survivors: Vec<u64> = swarm.ids().into_iter().filter(|n| *n != victim).collect();

    phase!("a stream of wait=true writes and reads through every node");
    let stream = Stream::start(apis(&swarm, &swarm.ids())?, TENANTS);
    std::thread::sleep(Duration::from_secs(3));

    phase!("kill -9 node {victim}, primary of {hit:?}");
    swarm.kill9(victim)?;
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let seen = stream.finish()?;
    let resumed = resumed_after(&seen.writes, killed, &hit)?;
    let (read_gap, read_key) = longest_refusal(&seen.reads, killed);
    let (write_gap, write_key) = longest_refusal(&seen.writes, killed);
    tessera_tests::log_phase(format_args!(
        "FIGURE writes resumed {} ms after the kill; longest read refusal {} ms ({read_key}); longest write refusal {} ms ({write_key})",
        resumed.as_millis(),
        read_gap.as_millis(),
        write_gap.as_millis()
    ));
    ensure!(
        resumed < Duration::from_secs(3),
        "writes resumed after {resumed:?}"
    );
    ensure!(
        read_gap <= Duration::from_secs(2),
        "reads of {read_key} refused for {read_gap:?}"
    );

    phase!("no acknowledged write lost, read through the survivors");
    let survivor = swarm.api(survivors[0])?;
    let checked = check_acked_present(&survivor, &seen)?;
    ensure!(checked > 0, "nothing was acknowledged");
    for key in &hit {
        let shard = replica_sets(&survivor)?
            .into_iter()
            .find(|s| s["shard_key"] == json!(key))
            .ok_or_else(|| anyhow!("no shard {key}"))?;
        ensure!(
            shard["primary"].as_u64() != Some(victim),
            "{key} still has its primary on the killed node: {shard}"
        );
    }

    phase!("restart node {victim}: it catches up, every replica identical");
    swarm.restart(victim)?;
    wait_identical(&survivor, Duration::from_secs(30))?;
    check_acked_present(&swarm.api(victim)?, &seen)?;
    Ok(())
}

#[test]
fn replication_factor_three_survives_two_successive_kills() -> Result<()> {
    const TENANTS: usize = 3;
    let mut swarm = Swarm::start_with(SwarmOptions::new(5).arg("--max-voters").arg("5"))?;
    let api1 = swarm.api(1)?;
    phase!("5 nodes (5 voters), replication_factor 3, {TENANTS} tenants");
    create(&api1, TENANTS, 3)?;
    let key = tenant(0);
    let shard = replica_sets(&api1)?
        .into_iter()
        .find(|s| s["shard_key"] == json!(key))
        .ok_or_else(|| anyhow!("no shard {key}"))?;
    let holders: Vec<u64> = shard["replicas"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["peer_id"].as_u64()).collect())
        .unwrap_or_default();
    ensure!(holders.len() == 3, "{shard}");
    let first = shard["primary"]
        .as_u64()
        .ok_or_else(|| anyhow!("{shard}"))?;
    let outsiders: Vec<u64> = swarm
        .ids()
        .into_iter()
        .filter(|n| !holders.contains(n))
        .collect();
    let clients = apis(&swarm, &outsiders)?;

    let stream = Stream::start(clients.clone(), TENANTS);
    std::thread::sleep(Duration::from_secs(2));
    phase!("kill -9 node {first}, the primary of {key}");
    swarm.kill9(first)?;
    std::thread::sleep(Duration::from_secs(4));
    let second = replica_sets(&clients[0])?
        .into_iter()
        .find(|s| s["shard_key"] == json!(key))
        .and_then(|s| s["primary"].as_u64())
        .ok_or_else(|| anyhow!("no primary for {key}"))?;
    ensure!(second != first, "no new primary for {key}");
    phase!("kill -9 node {second}, the next primary of {key}");
    swarm.kill9(second)?;
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let seen = stream.finish()?;
    let resumed = resumed_after(&seen.writes, killed, std::slice::from_ref(&key))?;
    tessera_tests::log_phase(format_args!(
        "FIGURE rf3: writes of {key} resumed {} ms after the second kill",
        resumed.as_millis()
    ));
    ensure!(
        resumed < Duration::from_secs(3),
        "resumed after {resumed:?}"
    );
    check_acked_present(&clients[0], &seen)?;

    phase!("both come back and catch up");
    swarm.restart(first)?;
    swarm.restart(second)?;
    wait_identical(&clients[0], Duration::from_secs(40))?;
    Ok(())
}

#[test]
fn a_primary_cut_off_by_a_partition_acknowledges_nothing_the_majority_lacks() -> Result<()> {
    const TENANTS: usize = 4;
    let swarm = Swarm::start(3)?;
    let api1 = swarm.api(1)?;
    phase!("3 nodes, replication_factor 2, {TENANTS} tenants");
    create(&api1, TENANTS, 2)?;
    let (victim, hit) = busiest_primary(&api1)?;
    let majority: Vec<u64> = swarm.ids().into_iter().filter(|n| *n != victim).collect();

    phase!("writes to every tenant through the node {victim} itself, and through the others");
    let through_victim = Stream::start(vec![swarm.api(victim)?], TENANTS);
    let through_majority = Stream::start(apis(&swarm, &majority)?, TENANTS);
    std::thread::sleep(Duration::from_secs(2));
    phase!("cut node {victim} (primary of {hit:?}) off from the others");
    let cut = CutOff::port(swarm.node(victim)?.p2p_addr.port())?;
    let cut_at = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let seen_victim = through_victim.finish()?;
    let seen_majority = through_majority.finish()?;
    let late_acks = seen_victim
        .writes
        .iter()
        .filter(|(_, at, ok)| *ok && *at > cut_at + Duration::from_secs(1))
        .count();
    ensure!(
        late_acks == 0,
        "the cut-off node acknowledged {late_acks} writes long after the cut"
    );

    phase!("everything either side acknowledged is on the majority side");
    let reader = swarm.api(majority[0])?;
    for key in &hit {
        let shard = replica_sets(&reader)?
            .into_iter()
            .find(|s| s["shard_key"] == json!(key))
            .ok_or_else(|| anyhow!("no shard {key}"))?;
        ensure!(
            shard["primary"].as_u64() != Some(victim),
            "{key} not failed over: {shard}"
        );
    }
    let resumed = resumed_after(&seen_majority.writes, cut_at, &hit)?;
    tessera_tests::log_phase(format_args!(
        "FIGURE partition: writes through the majority resumed {} ms after the cut",
        resumed.as_millis()
    ));
    check_acked_present(&reader, &seen_victim)?;
    check_acked_present(&reader, &seen_majority)?;

    phase!("heal: the cut-off node catches up, every replica identical");
    drop(cut);
    wait_identical(&reader, Duration::from_secs(30))?;
    check_acked_present(&swarm.api(victim)?, &seen_majority)?;
    Ok(())
}

#[test]
fn a_corrupt_replica_is_rebuilt_from_its_in_sync_copy() -> Result<()> {
    let mut swarm = Swarm::start(3)?;
    let api1 = swarm.api(1)?;
    phase!("3 nodes, replication_factor 2, one tenant with 40 points in 40 records");
    create(&api1, 1, 2)?;
    let key = tenant(0);
    for id in 0..40u64 {
        let body = json!({"points": [{"id": id, "vector": [1.0, id as f32, 0.5, 0.25]}],
                          "shard_key": key});
        let (status, answer) = api1.put("/collections/c/points?wait=true", &body)?;
        ensure!(status == 200, "{status} {answer}");
    }
    wait_identical(&api1, Duration::from_secs(10))?;
    let shard = replica_sets(&api1)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no shard"))?;
    let uid = api1.ok_get("/collections/c")?;
    let holders: Vec<u64> = shard["replicas"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["peer_id"].as_u64()).collect())
        .unwrap_or_default();
    for victim in holders {
        phase!("stop node {victim}, flip a byte in the middle of its replica's wal, restart it");
        let data = swarm.node(victim)?.data_dir;
        swarm.stop(victim)?;
        let wal = find_wal(&data.join("collections"))?;
        let mut bytes = std::fs::read(&wal)?;
        ensure!(bytes.len() > 200, "{} is too short", wal.display());
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x5a;
        std::fs::write(&wal, &bytes)?;
        swarm.restart(victim)?;
        phase!("the damaged replica is failed, replaced by a copy of the other, identical again");
        wait_identical(&api1, Duration::from_secs(30))?;
        let (status, body) = swarm.api(victim)?.post(
            "/collections/c/points/count",
            &json!({"shard_key": key, "exact": true}),
        )?;
        ensure!(
            status == 200 && body["result"]["count"] == 40,
            "{status} {body} ({uid})"
        );
    }
    Ok(())
}

/// The one replica WAL under a node's collections directory.
fn find_wal(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "wal.log") {
                found.push(p);
            }
        }
    }
    ensure!(
        found.len() == 1,
        "one wal expected under {}: {found:?}",
        dir.display()
    );
    Ok(found.remove(0))
}

#[test]
fn a_shard_key_moved_under_write_load_loses_nothing() -> Result<()> {
    const TENANTS: usize = 3;
    let swarm = Swarm::start(3)?;
    let api1 = swarm.api(1)?;
    phase!("3 nodes, replication_factor 1, {TENANTS} tenants, writes through every node");
    create(&api1, TENANTS, 1)?;
    let key = tenant(0);
    let shard = replica_sets(&api1)?
        .into_iter()
        .find(|s| s["shard_key"] == json!(key))
        .ok_or_else(|| anyhow!("no shard {key}"))?;
    let shard_id = shard["shard_id"]
        .as_u64()
        .ok_or_else(|| anyhow!("{shard}"))?;
    let from = shard["primary"]
        .as_u64()
        .ok_or_else(|| anyhow!("{shard}"))?;
    let to = swarm
        .ids()
        .into_iter()
        .find(|n| *n != from)
        .ok_or_else(|| anyhow!("no other node"))?;
    let stream = Stream::start(apis(&swarm, &swarm.ids())?, TENANTS);
    std::thread::sleep(Duration::from_secs(2));
    phase!("move {key} (shard {shard_id}) from node {from} to node {to}");
    let (status, body) = api1.post(
        "/collections/c/cluster",
        &json!({"move_shard": {"shard_id": shard_id, "from_peer_id": from, "to_peer_id": to}}),
    )?;
    ensure!(status == 200, "{status} {body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = replica_sets(&api1)?
            .into_iter()
            .find(|s| s["shard_key"] == json!(key))
            .ok_or_else(|| anyhow!("no shard {key}"))?;
        let nodes: Vec<u64> = s["replicas"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["peer_id"].as_u64()).collect())
            .unwrap_or_default();
        if nodes == vec![to] && s["replicas"][0]["state"] == "Active" {
            break;
        }
        ensure!(Instant::now() < deadline, "not moved: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let seen = stream.finish()?;
    let (refused, _) = longest_refusal(&seen.writes, Instant::now() - Duration::from_secs(60));
    tessera_tests::log_phase(format_args!(
        "FIGURE move under load: longest write refusal {} ms",
        refused.as_millis()
    ));
    phase!("every acknowledged write of every tenant is there, read through every node");
    for id in swarm.ids() {
        check_acked_present(&swarm.api(id)?, &seen)?;
    }
    Ok(())
}

/// Waits until every shard has 2 replicas, all Active and none on `lost`.
fn wait_restored(reader: &Api, lost: u64, within: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let shards = replica_sets(reader)?;
        let restored = shards.iter().all(|s| {
            let rs = s["replicas"].as_array().cloned().unwrap_or_default();
            rs.len() == 2
                && rs
                    .iter()
                    .all(|r| r["state"] == "Active" && r["peer_id"] != lost)
        });
        if restored {
            return Ok(());
        }
        ensure!(
            started.elapsed() < within,
            "replication factor not restored without node {lost} within {within:?}: {shards:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_gone_past_the_replica_timeout_has_its_replicas_rebuilt_elsewhere() -> Result<()> {
    const TENANTS: usize = 3;
    let mut swarm = Swarm::start_with(SwarmOptions::new(3).arg("--replica-timeout").arg("3"))?;
    let api1 = swarm.api(1)?;
    phase!("3 nodes, replication_factor 2, --replica-timeout 3");
    create(&api1, TENANTS, 2)?;
    let leader = swarm.wait_for_leader(Duration::from_secs(10))?;
    // a node holding replicas that is not the metadata leader
    let victim = swarm
        .ids()
        .into_iter()
        .filter(|n| *n != leader)
        .max_by_key(|n| {
            replica_sets(&api1)
                .map(|s| {
                    s.iter()
                        .filter(|s| {
                            s["replicas"]
                                .as_array()
                                .is_some_and(|a| a.iter().any(|r| r["peer_id"] == *n))
                        })
                        .count()
                })
                .unwrap_or(0)
        })
        .ok_or_else(|| anyhow!("no follower"))?;
    let survivors: Vec<u64> = swarm.ids().into_iter().filter(|n| *n != victim).collect();
    let stream = Stream::start(apis(&swarm, &survivors)?, TENANTS);
    std::thread::sleep(Duration::from_secs(1));
    phase!("kill -9 node {victim} for good");
    swarm.kill9(victim)?;
    let killed = Instant::now();
    let reader = swarm.api(survivors[0])?;
    wait_restored(&reader, victim, Duration::from_secs(30))?;
    tessera_tests::log_phase(format_args!(
        "FIGURE replicas of a lost node rebuilt {} ms after the kill (replica timeout 3 s)",
        killed.elapsed().as_millis()
    ));
    let seen = stream.finish()?;
    wait_identical(&reader, Duration::from_secs(10))?;
    for id in &survivors {
        check_acked_present(&swarm.api(*id)?, &seen)?;
    }
    Ok(())
}

/// An operator removes a dead node with `DELETE /cluster/peer/{id}?force=true`: its tenants are
/// served by their other replicas at once (a primary there fails over), and their replicas are
/// rebuilt on the nodes left without waiting for the replica timeout (60 s here). Nothing
/// acknowledged is lost, and no shard points at the removed node afterwards.
#[test]
fn a_forcibly_removed_nodes_tenants_are_served_by_their_other_replicas() -> Result<()> {
    const TENANTS: usize = 3;
    let mut swarm = Swarm::start_with(SwarmOptions::new(4))?;
    let api1 = swarm.api(1)?;
    phase!("4 nodes, replication_factor 2, the default replica timeout (60 s)");
    create(&api1, TENANTS, 2)?;
    let leader = swarm.wait_for_leader(Duration::from_secs(10))?;
    let (victim, _) = busiest_primary(&api1)?;
    let victim = if victim == leader {
        // the metadata leader's loss is another test; take a follower holding replicas
        swarm
            .ids()
            .into_iter()
            .find(|n| *n != leader && primaries_on(&api1, *n).is_ok_and(|p| !p.is_empty()))
            .unwrap_or(victim)
    } else {
        victim
    };
    let survivors: Vec<u64> = swarm.ids().into_iter().filter(|n| *n != victim).collect();
    let reader = swarm.api(survivors[0])?;
    let stream = Stream::start(apis(&swarm, &survivors)?, TENANTS);
    std::thread::sleep(Duration::from_secs(1));
    phase!("kill -9 node {victim}, then remove it with force=true");
    swarm.kill9(victim)?;
    let removed = Instant::now();
    let (st, v) = reader.delete(&format!("/cluster/peer/{victim}"))?;
    ensure!(
        st == 400,
        "a peer holding replicas is not removed without force: {st} {v}"
    );
    let (st, v) = reader.delete(&format!("/cluster/peer/{victim}?force=true"))?;
    ensure!(st == 200, "forced removal: {st} {v}");
    // well before the 60 s replica timeout
    wait_restored(&reader, victim, Duration::from_secs(40))?;
    tessera_tests::log_phase(format_args!(
        "FIGURE replicas of a removed node rebuilt {} ms after its removal",
        removed.elapsed().as_millis()
    ));
    let seen = stream.finish()?;
    let (refused, why) = longest_refusal(&seen.writes, removed - Duration::from_secs(1));
    tessera_tests::log_phase(format_args!(
        "FIGURE forced removal: longest write refusal {} ms ({why})",
        refused.as_millis()
    ));
    wait_identical(&reader, Duration::from_secs(10))?;
    for id in &survivors {
        check_acked_present(&swarm.api(*id)?, &seen)?;
        ensure!(
            !swarm.cluster(*id)?.peers.contains_key(&victim),
            "node {id} still lists the removed node"
        );
    }
    Ok(())
}

/// A backup cut off by a partition is dropped from the in-sync set before the primary
/// acknowledges a write without it; from then on it must not answer reads with what it held
/// before (its own metadata still says it is in sync: it confirms its view with the metadata
/// leader first, and cannot).
#[test]
fn a_backup_cut_off_by_a_partition_serves_no_read_older_than_an_acknowledged_write() -> Result<()> {
    let swarm = Swarm::start(3)?;
    let api1 = swarm.api(1)?;
    phase!("3 nodes, replication_factor 2, one tenant");
    create(&api1, 1, 2)?;
    let key = tenant(0);
    wait_identical(&api1, Duration::from_secs(30))?;
    let shard = replica_sets(&api1)?
        .into_iter()
        .find(|s| s["shard_key"] == json!(key))
        .ok_or_else(|| anyhow!("no shard {key}"))?;
    let primary = shard["primary"]
        .as_u64()
        .ok_or_else(|| anyhow!("no primary: {shard}"))?;
    let backup = common::replica_nodes(&shard)
        .into_iter()
        .find(|n| *n != primary)
        .ok_or_else(|| anyhow!("no backup: {shard}"))?;
    let (writer, reader) = (swarm.api(primary)?, swarm.api(backup)?);
    let write = |version: u64| -> Result<()> {
        let body = json!({"points": [{"id": 1, "vector": [1.0, 0.5, 0.5, 0.25],
                                      "payload": {"version": version}}],
                          "shard_key": key});
        let (status, answer) = writer.put("/collections/c/points?wait=true", &body)?;
        ensure!(
            status == 200,
            "write of version {version}: {status} {answer}"
        );
        Ok(())
    };
    let read = || -> Result<(u16, Option<u64>)> {
        let body = json!({"ids": [1], "with_payload": true, "shard_key": key});
        let (status, answer) = reader.post("/collections/c/points", &body)?;
        Ok((status, answer["result"][0]["payload"]["version"].as_u64()))
    };
    write(1)?;
    ensure!(
        read()? == (200, Some(1)),
        "the backup's node does not read version 1"
    );

    phase!(
        "cut the backup (node {backup}) off; version 2 acknowledged by the primary (node {primary})"
    );
    let cut = CutOff::port(swarm.node(backup)?.p2p_addr.port())?;
    write(2)?;
    let mut answers = BTreeMap::<String, usize>::new();
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let (status, version) = read()?;
        ensure!(
            status != 200 || version == Some(2),
            "a stale read on the cut-off node: {status}, version {version:?} after version 2 was acknowledged"
        );
        *answers.entry(format!("{status}")).or_default() += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    tessera_tests::log_phase(format_args!(
        "FIGURE reads on the cut-off backup's node by status: {answers:?}"
    ));

    phase!("heal: the backup catches up and reads version 2");
    drop(cut);
    wait_identical(&api1, Duration::from_secs(30))?;
    let started = Instant::now();
    loop {
        match read()? {
            (200, Some(2)) => break,
            (200, other) => anyhow::bail!("a stale read after heal: {other:?}"),
            _ if started.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            other => anyhow::bail!("the healed node still does not read: {other:?}"),
        }
    }
    Ok(())
}
