//! The multi-node acceptance of the cluster, on a 3-node swarm of real processes over QUIC with
//! mutual TLS: placement of 30 shard keys, routed reads and writes from every node, per-node
//! counters proving no stray fan-out, the official qdrant-client suite against each node, a
//! process without a cluster certificate refused, kill -9 of a node (its tenants 503 fast, the
//! others unaffected, everything back after a restart) and of the metadata leader, and the
//! removal of a peer: refused while it holds replicas, done once it holds none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use tessera_chaos::{Api, Swarm};
use tessera_tests::{phase, tessera_bin};

const KEYS: usize = 30;
const POINTS_PER_KEY: u64 = 12;
const DIM: usize = 4;

fn key(i: usize) -> String {
    format!("tenant-{i:02}")
}

fn points(k: usize) -> Value {
    let pts: Vec<Value> = (0..POINTS_PER_KEY)
        .map(|i| {
            json!({"id": i, "vector": [1.0, i as f32, k as f32, 0.5],
                   "payload": {"tenant": key(k), "i": i}})
        })
        .collect();
    json!({"points": pts, "shard_key": key(k)})
}

/// Shard keys whose replica is on the node `api` talks to.
fn local_keys(api: &Api) -> Result<BTreeSet<String>> {
    let r = api.ok_get("/collections/c/cluster")?;
    Ok(r["local_shards"]
        .as_array()
        .ok_or_else(|| anyhow!("no local_shards: {r}"))?
        .iter()
        .filter_map(|s| s["shard_key"].as_str().map(str::to_owned))
        .collect())
}

/// The shard keys this node served shard requests for, from its Prometheus counters.
fn served_keys(api: &Api) -> Result<BTreeMap<String, u64>> {
    let (status, text) = api.raw_text(reqwest::Method::GET, "/metrics", None)?;
    ensure!(status == 200, "/metrics: {status}");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if !line.starts_with("tessera_shard_requests_total{") {
            continue;
        }
        let Some(k) = line
            .split("shard_key=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0);
        *out.entry(k.to_owned()).or_default() += n;
    }
    Ok(out)
}

fn count(api: &Api, k: &str) -> Result<(u16, Value)> {
    api.post("/collections/c/points/count", &json!({"shard_key": k}))
}

/// Runs the qdrant-client guide suite against one node (the venv made by tests/run.sh).
fn qdrant_client_suite(url: &str) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("TESSERA_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    if !python.exists() {
        bail!(
            "{} missing: run tests/run.sh (it makes the venv with the pinned clients)",
            python.display()
        );
    }
    let out = Command::new(python)
        .current_dir(root.join("tests/python"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-W",
            "error",
            "-p",
            "no:cacheprovider",
            "test_multitenancy_guide.py",
        ])
        .env("TESSERA_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("run pytest")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "qdrant-client suite against {url} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    phase!(
        "qdrant-client suite against {url}: {}",
        text.lines().last().unwrap_or("")
    );
    Ok(())
}

#[test]
fn three_nodes_place_route_refuse_strangers_and_survive_kills() {
    let mut swarm = Swarm::start(3).expect("start a 3-node swarm");
    if let Err(e) = scenario(&mut swarm) {
        panic!("{e:#}\n{}", swarm.log_tails());
    }
}

fn scenario(swarm: &mut Swarm) -> Result<()> {
    let ids = swarm.ids();
    let apis: BTreeMap<u64, Api> = ids
        .iter()
        .map(|id| Ok((*id, swarm.api(*id)?)))
        .collect::<Result<_>>()?;
    let api = |id: u64| -> Result<&Api> { apis.get(&id).ok_or_else(|| anyhow!("no node {id}")) };

    phase!("a custom-sharded collection and {KEYS} shard keys, asked of every node in turn");
    api(2)?.ok_put(
        "/collections/c",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}, "sharding_method": "custom"}),
    )?;
    let started = Instant::now();
    for k in 0..KEYS {
        let via = ids[k % ids.len()];
        api(via)?.ok_put("/collections/c/shards", &json!({"shard_key": key(k)}))?;
    }
    let secs = started.elapsed().as_secs_f64();
    phase!(
        "FIGURE shard-key creation on 3 nodes: {KEYS} keys in {secs:.2} s = {:.1} keys/s ({:.1} ms each)",
        KEYS as f64 / secs,
        secs * 1000.0 / KEYS as f64
    );

    phase!("placement is spread and every node shows the same map");
    let mut holder: BTreeMap<String, u64> = BTreeMap::new();
    for id in &ids {
        for k in local_keys(api(*id)?)? {
            ensure!(holder.insert(k.clone(), *id).is_none(), "{k} held twice");
        }
    }
    ensure!(holder.len() == KEYS, "every key has a replica: {holder:?}");
    for id in &ids {
        let n = holder.values().filter(|h| *h == id).count();
        ensure!(
            n >= KEYS / 6,
            "node {id} holds {n} of {KEYS} keys: not spread"
        );
        let r = api(*id)?.ok_get("/collections/c/cluster")?;
        let remote = r["remote_shards"].as_array().map(Vec::len).unwrap_or(0);
        ensure!(
            remote == KEYS - n,
            "node {id} lists the other nodes' shards"
        );
    }

    phase!("writes and reads of every tenant through every node");
    for k in 0..KEYS {
        let via = ids[(k + 1) % ids.len()];
        api(via)?.ok_put("/collections/c/points?wait=true", &points(k))?;
    }
    let before: Vec<BTreeMap<String, u64>> = ids
        .iter()
        .map(|id| served_keys(api(*id)?))
        .collect::<Result<_>>()?;
    for id in &ids {
        for k in 0..KEYS {
            let (st, v) = count(api(*id)?, &key(k))?;
            ensure!(
                st == 200 && v["result"]["count"] == POINTS_PER_KEY,
                "{id} {k}: {v}"
            );
            let r = api(*id)?.ok_post(
                "/collections/c/points/query",
                &json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 3, "shard_key": key(k), "with_payload": true}),
            )?;
            for p in r["points"].as_array().into_iter().flatten() {
                ensure!(p["payload"]["tenant"] == key(k), "{k} via {id}: {p}");
            }
        }
    }
    phase!("routing counters: a node served requests only for the keys it holds");
    for (n, id) in ids.iter().enumerate() {
        let after = served_keys(api(*id)?)?;
        for (k, c) in &after {
            if k == "_auto" {
                continue;
            }
            let grew = c.saturating_sub(before[n].get(k).copied().unwrap_or(0));
            if holder.get(k) != Some(id) {
                ensure!(
                    *c == 0,
                    "node {id} served {c} requests for {k}, held by {:?}",
                    holder.get(k)
                );
            } else {
                ensure!(
                    grew >= 6,
                    "node {id} served only {grew} of the reads of its key {k}"
                );
            }
        }
    }

    phase!("the official qdrant-client suite against each node");
    for id in &ids {
        let info = swarm.node(*id)?;
        qdrant_client_suite(&format!("http://{}", info.http_addr))?;
    }

    phase!("a process with a certificate from another CA cannot join");
    stranger_is_refused(swarm)?;

    phase!("kill -9 a node: its tenants 503 within 2 s, the others unaffected");
    let leader = swarm.wait_for_leader(Duration::from_secs(10))?;
    let victim = *ids
        .iter()
        .find(|id| **id != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    let observer = *ids
        .iter()
        .find(|id| **id != victim)
        .ok_or_else(|| anyhow!("no observer"))?;
    let victim_key = holder
        .iter()
        .find(|(_, h)| **h == victim)
        .map(|(k, _)| k.clone())
        .ok_or_else(|| anyhow!("victim holds nothing"))?;
    let safe_keys: Vec<String> = holder
        .iter()
        .filter(|(_, h)| **h != victim)
        .map(|(k, _)| k.clone())
        .collect();
    swarm.kill9(victim)?;
    let killed = Instant::now();
    let mut first_503 = None;
    while killed.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        let (st, body) = count(api(observer)?, &victim_key)?;
        ensure!(
            t.elapsed() < Duration::from_secs(6),
            "a request for a dead node's tenant hung {:?}",
            t.elapsed()
        );
        if st == 503 {
            first_503 = Some(killed.elapsed());
            tessera_tests::error_message(&body)?;
            break;
        }
        ensure!(st == 200, "unexpected {st} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let first_503 = first_503.ok_or_else(|| anyhow!("never 503 for the dead node's tenant"))?;
    phase!(
        "FIGURE kill -9 to first 503 for its tenant: {} ms",
        first_503.as_millis()
    );
    ensure!(
        first_503 <= Duration::from_secs(2),
        "503 took {first_503:?}"
    );
    for k in &safe_keys {
        let (st, v) = count(api(observer)?, k)?;
        ensure!(
            st == 200 && v["result"]["count"] == POINTS_PER_KEY,
            "{k} while {victim} is down: {st} {v}"
        );
    }
    phase!("restart: its data and membership come back");
    swarm.restart(victim)?;
    let back = Instant::now();
    loop {
        let (st, v) = count(api(observer)?, &victim_key)?;
        if st == 200 {
            ensure!(v["result"]["count"] == POINTS_PER_KEY, "{v}");
            break;
        }
        ensure!(
            back.elapsed() < Duration::from_secs(20),
            "{victim_key} never back: {st} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for k in 0..KEYS {
        let (st, v) = count(api(victim)?, &key(k))?;
        ensure!(
            st == 200 && v["result"]["count"] == POINTS_PER_KEY,
            "after restart {k}: {st} {v}"
        );
    }

    phase!("kill -9 the metadata leader: a new one, and metadata writes succeed again");
    let leader = swarm.wait_for_leader(Duration::from_secs(10))?;
    let other = *ids
        .iter()
        .find(|id| **id != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    swarm.kill9(leader)?;
    let killed = Instant::now();
    let mut n = 0;
    let elapsed = loop {
        n += 1;
        let (st, v) = api(other)?.put(
            "/collections/c/shards",
            &json!({"shard_key": format!("after-{n}")}),
        )?;
        if st == 200 {
            break killed.elapsed();
        }
        ensure!(
            killed.elapsed() < Duration::from_secs(20),
            "no metadata write after the leader died: {st} {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    phase!(
        "FIGURE leader kill -9 to the next successful metadata write: {} ms ({n} attempts)",
        elapsed.as_millis()
    );
    let new_leader = swarm.wait_for_leader(Duration::from_secs(10))?;
    ensure!(new_leader != leader, "a new leader");
    swarm.restart(leader)?;
    swarm.wait_for_leader(Duration::from_secs(10))?;

    phase!("deleting a shard key removes it on every node; a peer holding replicas stays");
    let gone = key(0);
    let holder_of_gone = holder[&gone];
    api(other)?.ok_post("/collections/c/shards/delete", &json!({"shard_key": gone}))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &ids {
        loop {
            let (st, _) = count(api(*id)?, &gone)?;
            let listed = local_keys(api(*id)?)?.contains(&gone);
            if st == 404 && !listed {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{gone} still there on node {id}: {st}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (st, v) = api(other)?.delete(&format!("/cluster/peer/{holder_of_gone}"))?;
    ensure!(
        st == 400,
        "removing a peer that holds replicas must be refused: {st} {v}"
    );
    ensure!(
        swarm.cluster(other)?.peers.len() == 3,
        "membership unchanged"
    );

    phase!("a peer emptied of its replicas is removed; the two left keep serving and placing");
    let leader = swarm.wait_for_leader(Duration::from_secs(10))?;
    let target = *ids
        .iter()
        .find(|id| **id != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    let keeper = leader;
    let held: Vec<String> = holder
        .iter()
        .filter(|(k, n)| **n == target && **k != gone)
        .map(|(k, _)| k.clone())
        .collect();
    for k in &held {
        api(keeper)?.ok_post("/collections/c/shards/delete", &json!({"shard_key": k}))?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !local_keys(api(target)?)?.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "node {target} still holds replicas after {} keys were deleted",
            held.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, v) = api(keeper)?.delete(&format!("/cluster/peer/{target}"))?;
    ensure!(st == 200, "removing the empty peer {target}: {st} {v}");
    let left: Vec<u64> = ids.iter().copied().filter(|id| *id != target).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &left {
        loop {
            let view = swarm.cluster(*id)?;
            if view.peers.len() == 2 && !view.peers.contains_key(&target) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "node {id} still lists peer {target}: {view:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    swarm.stop(target)?;
    // metadata writes reach a majority of the two voters left, and new keys land on them
    let fresh = "after-removal";
    api(left[1])?.ok_put("/collections/c/shards", &json!({"shard_key": fresh}))?;
    let mut body = points(0);
    body["shard_key"] = json!(fresh);
    api(left[0])?.ok_put("/collections/c/points?wait=true", &body)?;
    for id in &left {
        let (st, v) = count(api(*id)?, fresh)?;
        ensure!(
            st == 200 && v["result"]["count"] == POINTS_PER_KEY,
            "new key through node {id}: {st} {v}"
        );
    }
    for k in (0..KEYS)
        .map(key)
        .filter(|k| *k != gone && !held.contains(k))
    {
        let (st, v) = count(api(left[0])?, &k)?;
        ensure!(
            st == 200 && v["result"]["count"] == POINTS_PER_KEY,
            "{k} after the removal: {st} {v}"
        );
    }

    phase!("the removed node restarted on its data dir is refused, not re-admitted");
    swarm.restart(target).ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // its calls are refused: it is no member, and its id is retired for any join
        let log = swarm.log_tail(target);
        if log.contains("was removed from the cluster")
            || log.contains("the caller is not a member of this cluster")
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "node {target} was not refused:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    for id in &left {
        let view = swarm.cluster(*id)?;
        ensure!(
            !view.peers.contains_key(&target),
            "node {id} re-admitted the removed peer {target}: {view:?}"
        );
    }
    Ok(())
}

/// A node whose certificate comes from another CA tries to join: the handshake fails, it never
/// appears in the membership, and it cannot call a shard.
fn stranger_is_refused(swarm: &Swarm) -> Result<()> {
    let bin = tessera_bin()?;
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new(&bin).args(args).output()?;
        ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let ca = dir.path().join("ca");
    let tls = dir.path().join("tls");
    let (ca_s, tls_s) = (
        ca.to_string_lossy().into_owned(),
        tls.to_string_lossy().into_owned(),
    );
    run(&["cert", "ca", "--out", &ca_s])?;
    run(&[
        "cert", "node", "--ca-dir", &ca_s, "--out", &tls_s, "--name", "stranger",
    ])?;
    let seed = swarm.node(1)?.p2p_addr.to_string();
    let ports = tessera_chaos::swarm::free_ports(1)?;
    let (http, p2p) = ports[0];
    let log = std::fs::File::create(dir.path().join("stranger.log"))?;
    let mut child = Command::new(&bin)
        .args(["serve", "--node-id", "99", "--http-addr", &http.to_string()])
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args([
            "--p2p-addr",
            &p2p.to_string(),
            "--tls-dir",
            &tls_s,
            "--join",
            &seed,
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    std::thread::sleep(Duration::from_secs(3));
    let view = swarm.cluster(1)?;
    let _ = child.kill();
    let _ = child.wait();
    ensure!(
        !view.peers.contains_key(&99),
        "the stranger joined: {view:?}"
    );
    ensure!(view.peers.len() == 3, "membership changed: {view:?}");
    let log = std::fs::read_to_string(dir.path().join("stranger.log")).unwrap_or_default();
    ensure!(
        log.contains("join failed"),
        "the stranger's join attempts should fail at the handshake:\n{log}"
    );
    Ok(())
}
