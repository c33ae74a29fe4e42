//! What the fault tests and the chaos runner share: a collection `c` of custom-sharded tenants
//! (one shard key each), a light stream of acknowledged writes, the replica view and the checks
//! on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use serde_json::{Value, json};

use crate::{Api, Swarm};

pub const DIM: usize = 4;
/// Most writes one tenant's writer makes (bounded in count and in time).
const MAX_WRITES: u64 = 4000;
const MAX_STREAM: Duration = Duration::from_secs(120);

pub fn tenant(i: usize) -> String {
    format!("tenant-{i:02}")
}

/// Collection `c`, custom-sharded, with `replication_factor`.
pub fn create_collection(api: &Api, replication_factor: u32) -> Result<()> {
    api.ok_put(
        "/collections/c",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}, "sharding_method": "custom",
                "replication_factor": replication_factor}),
    )?;
    Ok(())
}

pub fn apis(swarm: &Swarm, ids: &[u64]) -> Result<Vec<Api>> {
    ids.iter().map(|id| swarm.api(*id)).collect()
}

/// One writer per tenant, `wait=true` upserts of one point each, going round `apis`, with
/// `pause` between two writes; what was acknowledged is remembered.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, BTreeSet<u64>>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    pub fn start(apis: Vec<Api>, tenants: usize, pause: Duration) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..tenants)
            .map(|t| {
                let (stop, acked, apis) = (stop.clone(), acked.clone(), apis.clone());
                std::thread::spawn(move || write_stream(&apis, &tenant(t), pause, &stop, &acked))
            })
            .collect();
        Writers {
            stop,
            acked,
            threads,
        }
    }

    /// Stops the writers; every tenant's acknowledged ids.
    pub fn finish(self) -> Result<BTreeMap<String, BTreeSet<u64>>> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().map_err(|_| anyhow!("a writer panicked"))?;
        }
        Arc::try_unwrap(self.acked)
            .map_err(|_| anyhow!("writers still shared"))?
            .into_inner()
            .map_err(|_| anyhow!("writers' lock poisoned"))
    }
}

fn write_stream(
    apis: &[Api],
    key: &str,
    pause: Duration,
    stop: &AtomicBool,
    acked: &Mutex<BTreeMap<String, BTreeSet<u64>>>,
) {
    let started = Instant::now();
    for id in 0..MAX_WRITES {
        if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_STREAM {
            return;
        }
        if let Some(200) = upsert_one(&apis[id as usize % apis.len()], key, id) {
            acked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.to_owned())
                .or_default()
                .insert(id);
        }
        std::thread::sleep(pause);
    }
}

/// One `wait=true` upsert of point `id` to tenant `key` of `c`: its status, or None when the
/// node did not answer at all (down: the client's choice of node, not tessera's answer).
pub fn upsert_one(api: &Api, key: &str, id: u64) -> Option<u16> {
    let body = json!({"points": [{"id": id, "vector": [1.0, id as f32, 0.5, 0.25],
                                  "payload": {"tenant": key}}],
                      "shard_key": key});
    api.put("/collections/c/points?wait=true", &body)
        .ok()
        .map(|(status, _)| status)
}

/// Every shard of `c` with its replica set, from node `api`'s admin view.
pub fn replica_sets(api: &Api) -> Result<Vec<Value>> {
    let view = api.ok_get("/admin/collections/c/replicas")?;
    Ok(view["shards"].as_array().cloned().unwrap_or_default())
}

/// The nodes of a shard's replicas, as the admin view lists them.
pub fn replica_nodes(shard: &Value) -> Vec<u64> {
    shard["replicas"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["peer_id"].as_u64()).collect())
        .unwrap_or_default()
}

/// The shards whose replicas are not all Active with one points count, one digest and one last
/// sequence, as node `api`'s admin view shows them (empty: converged).
pub fn divergent(api: &Api) -> Result<Vec<Value>> {
    let shards = replica_sets(api)?;
    Ok(shards
        .into_iter()
        .filter(|s| {
            let rs = s["replicas"].as_array().cloned().unwrap_or_default();
            let same = |f: &str| rs.windows(2).all(|w| w[0][f] == w[1][f]);
            !(rs.iter()
                .all(|r| r["state"] == "Active" && !r["digest"].is_null())
                && same("digest")
                && same("points_count")
                && same("last_seq"))
        })
        .collect())
}

/// Waits until every shard's replicas are all Active with one points count and one digest.
pub fn wait_identical(api: &Api, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let rounds = within.as_millis() / 200 + 1;
    let mut pending = Vec::new();
    for _ in 0..rounds {
        pending = divergent(api)?;
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("replicas not identical within {within:?}: {pending:?}")
}

/// Every acknowledged id of every tenant is there, read through `api`; how many were checked.
pub fn check_acked_present(api: &Api, acked: &BTreeMap<String, BTreeSet<u64>>) -> Result<usize> {
    let mut total = 0;
    for (key, ids) in acked {
        let ids: Vec<u64> = ids.iter().copied().collect();
        for chunk in ids.chunks(500) {
            let got = api.ok_post(
                "/collections/c/points",
                &json!({"ids": chunk, "shard_key": key, "with_payload": false}),
            )?;
            let found: BTreeSet<u64> = got
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
                .unwrap_or_default();
            let lost: Vec<&u64> = chunk.iter().filter(|id| !found.contains(id)).collect();
            ensure!(lost.is_empty(), "{key}: acknowledged writes lost: {lost:?}");
            total += chunk.len();
        }
    }
    Ok(total)
}

/// The shard keys node `api` lists for `c`.
pub fn listed_keys(api: &Api) -> Result<BTreeSet<String>> {
    let v = api.ok_get("/collections/c/shards")?;
    Ok(v["shard_keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}
