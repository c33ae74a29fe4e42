//! Shard transfer: a large indexed shard copied onto another node while a client searches it,
//! then rebuilt on a third node when the copy's node is lost for good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::json;
use tessera_chaos::{Api, Swarm};

use crate::common::{
    ShardRow, lat, ms, not_converged, replicas, upsert, upsert_body, vector, wait_replicas,
};
use crate::{Checks, Config};

/// The nodes' `--replica-timeout` in this phase.
pub(crate) const REPLICA_TIMEOUT: Duration = Duration::from_secs(10);
const COLLECTION: &str = "transfer";
const KEY: &str = "big";
/// Points per upsert while loading.
const LOAD_BATCH: u64 = 500;
/// How long the indexing of the loaded shard may take.
const INDEX_TIMEOUT: Duration = Duration::from_secs(900);
/// How long a copy (or a rebuild) may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(900);
/// Searches before the copy, for the baseline.
const BASELINE: Duration = Duration::from_secs(10);
/// The searcher stops by itself after this long.
const SEARCHER_MAX_TIME: Duration = Duration::from_secs(1800);

/// A client that searches the shard without pause until stopped: (when, latency ms, ok).
struct Searcher {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, f64, bool)>>>,
    handle: std::thread::JoinHandle<()>,
}

impl Searcher {
    fn start(api: Api, dim: usize) -> Searcher {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop2, log2) = (stop.clone(), log.clone());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) && started.elapsed() < SEARCHER_MAX_TIME {
                let body = json!({"query": vector(1_000_000_000 + i, dim), "limit": 10,
                                  "shard_key": KEY});
                let t = Instant::now();
                let ok = api
                    .ok_post(&format!("/collections/{COLLECTION}/points/query"), &body)
                    .is_ok();
                let took = ms(t.elapsed());
                if let Ok(mut l) = log2.lock() {
                    l.push((t, took, ok));
                }
                i += 1;
            }
        });
        Searcher { stop, log, handle }
    }

    /// Latencies of the searches sent in `from..to`, and how many failed.
    fn between(&self, from: Instant, to: Instant) -> (Vec<f64>, usize) {
        let l = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        let inside: Vec<&(Instant, f64, bool)> =
            l.iter().filter(|(t, _, _)| *t >= from && *t < to).collect();
        let failed = inside.iter().filter(|(_, _, ok)| !ok).count();
        (inside.iter().map(|(_, m, _)| *m).collect(), failed)
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

fn shard_of(shards: &[ShardRow]) -> Result<&ShardRow> {
    shards
        .iter()
        .find(|s| s.key == KEY)
        .ok_or_else(|| anyhow!("no shard of key {KEY}"))
}

/// Every replica of the key Active on exactly `nodes`, converged.
fn placed_on(shards: &[ShardRow], nodes: &[u64]) -> Option<String> {
    let s = shards.iter().find(|s| s.key == KEY)?;
    let mut on: Vec<u64> = s.replicas.iter().map(|r| r.peer).collect();
    on.sort_unstable();
    let mut want = nodes.to_vec();
    want.sort_unstable();
    if on != want {
        return Some(format!("replicas on {on:?}, not {want:?}"));
    }
    not_converged(std::slice::from_ref(s))
}

pub(crate) fn transfer_phase(swarm: &mut Swarm, cfg: &Config, checks: &mut Checks) -> Result<()> {
    let ids = swarm.ids();
    let [a, b, c] = ids[..] else {
        bail!("the transfer phase needs 3 nodes");
    };
    let api = swarm.api(a)?;
    let n = cfg.transfer_points as u64;
    api.ok_put(
        &format!("/collections/{COLLECTION}"),
        &json!({"vectors": {"size": cfg.dim, "distance": "Cosine"},
                "sharding_method": "custom", "replication_factor": 1}),
    )?;
    api.ok_put(
        &format!("/collections/{COLLECTION}/shards"),
        &json!({"shard_key": KEY, "placement": [a]}),
    )?;
    let load = Instant::now();
    let mut from = 0;
    while from < n {
        let to = (from + LOAD_BATCH).min(n);
        let (st, err) = upsert(&api, COLLECTION, upsert_body(KEY, from..to, cfg.dim)?);
        if st != 200 {
            bail!("load upsert {from}..{to}: {st} {err:?}");
        }
        from = to;
    }
    let load_s = load.elapsed().as_secs_f64();
    // indexed: every point in a graph, for a while (merges done)
    let indexed = Instant::now();
    let mut steady = 0;
    loop {
        let info = api.ok_get(&format!("/collections/{COLLECTION}"))?;
        let done = info["indexed_vectors_count"].as_u64().unwrap_or(0) >= n;
        steady = if done { steady + 1 } else { 0 };
        if steady >= 20 {
            break;
        }
        if indexed.elapsed() > INDEX_TIMEOUT {
            bail!("{n} points not indexed within {INDEX_TIMEOUT:?}: {info}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "# transfer: {n} points of {}-d loaded on node {a} in {load_s:.1} s, indexed {:.1} s later",
        cfg.dim,
        indexed.elapsed().as_secs_f64()
    );

    let searcher = Searcher::start(swarm.api(a)?, cfg.dim);
    std::thread::sleep(BASELINE);
    let shard = shard_of(&replicas(&api, COLLECTION)?)?.shard_id;
    let copy_started = Instant::now();
    api.ok_post(
        &format!("/collections/{COLLECTION}/cluster"),
        &json!({"replicate_shard": {"shard_id": shard, "from_peer_id": a, "to_peer_id": b}}),
    )?;
    let copied = wait_replicas(&api, COLLECTION, COPY_TIMEOUT, |s| placed_on(s, &[a, b]));
    let copy_ended = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (base, base_failed) = searcher.between(copy_started - BASELINE, copy_started);
    let (during, during_failed) = searcher.between(copy_started, copy_ended);
    searcher.finish();
    let took = match copied {
        Ok(t) => t,
        Err(why) => {
            checks.check(false, format!("the copy to node {b} did not finish: {why}"));
            return Ok(());
        }
    };
    let secs = took.as_secs_f64();
    let vector_mib = (n as f64) * cfg.dim as f64 * 4.0 / (1 << 20) as f64;
    let (lb, ld) = (lat(&base), lat(&during));
    println!(
        "FIGURE transfer points={n} dim={} rate_limit_mib_s={} secs={secs:.2} points_per_s={:.0} \
         vector_mib_per_s={:.1}",
        cfg.dim,
        cfg.transfer_rate,
        n as f64 / secs,
        vector_mib / secs
    );
    println!(
        "FIGURE transfer_search baseline_p50_ms={:.2} baseline_p99_ms={:.2} (n={}) \
         during_p50_ms={:.2} during_p99_ms={:.2} (n={}) p99_ratio={:.2} failed={}",
        lb.p50,
        lb.p99,
        lb.n,
        ld.p50,
        ld.p99,
        ld.n,
        ld.p99 / lb.p99,
        base_failed + during_failed
    );
    checks.check(
        base_failed + during_failed == 0,
        format!(
            "{} searches failed during the copy",
            base_failed + during_failed
        ),
    );
    let b_info = swarm
        .api(b)?
        .ok_get(&format!("/admin/collections/{COLLECTION}/replicas"))?;
    eprintln!("# after the copy: {b_info}");

    // the copy's node is lost for good: its replica is rebuilt on the third node
    swarm.kill9(b)?;
    let killed = Instant::now();
    let rebuilt = wait_replicas(&api, COLLECTION, REPLICA_TIMEOUT + COPY_TIMEOUT, |s| {
        placed_on(s, &[a, c])
    });
    match rebuilt {
        Ok(_) => {
            let total = killed.elapsed();
            println!(
                "FIGURE rebuild points={n} replica_timeout_s={} kill_to_active_s={:.2} \
                 after_timeout_s={:.2}",
                REPLICA_TIMEOUT.as_secs(),
                total.as_secs_f64(),
                total.saturating_sub(REPLICA_TIMEOUT).as_secs_f64()
            );
        }
        Err(why) => checks.check(
            false,
            format!("node {b}'s replica not rebuilt on {c}: {why}"),
        ),
    }
    let count = api.ok_post(
        &format!("/collections/{COLLECTION}/points/count"),
        &json!({"shard_key": KEY, "exact": true}),
    )?;
    checks.check(
        count["count"].as_u64() == Some(n),
        format!("count after the rebuild: {count}"),
    );
    Ok(())
}
