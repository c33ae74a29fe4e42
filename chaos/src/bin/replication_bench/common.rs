//! What both phases use: points and upserts, counts and scrolls, the replica sets of
//! `/admin/collections/{c}/replicas`, and percentiles.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
pub(crate) use tessera_chaos::synthetic_vector as vector;
use tessera_chaos::{Api, Swarm};

use crate::{Config, SCROLL_MAX_PAGES, SCROLL_PAGE, SLOW_POLL};

/// The encoded body of an upsert of points `ids` to shard key `key`.
pub(crate) fn upsert_body(key: &str, ids: std::ops::Range<u64>, dim: usize) -> Result<Vec<u8>> {
    let points: Vec<Value> = ids
        .map(|id| json!({"id": id, "vector": vector(id, dim), "payload": {"i": id}}))
        .collect();
    serde_json::to_vec(&json!({"points": points, "shard_key": key})).context("encode upsert")
}

/// One `wait=true` upsert: the status, and the error text of a refusal.
pub(crate) fn upsert(api: &Api, collection: &str, body: Vec<u8>) -> (u16, Option<String>) {
    let path = format!("/collections/{collection}/points?wait=true");
    match api.raw(reqwest::Method::PUT, &path, Some(body)) {
        Ok((200, _)) => (200, None),
        Ok((st, v)) => {
            let msg = tessera_tests::error_message(&v).unwrap_or_else(|_| v.to_string());
            (st, Some(msg))
        }
        Err(e) => (0, Some(format!("{e:#}"))),
    }
}

pub(crate) fn key_name(i: usize) -> String {
    format!("k{i}")
}

pub(crate) fn create_collection(
    swarm: &Swarm,
    name: &str,
    rf: u32,
    cfg: &Config,
) -> Result<Vec<String>> {
    let ids = swarm.ids();
    swarm.api(ids[0])?.ok_put(
        &format!("/collections/{name}"),
        &json!({"vectors": {"size": cfg.dim, "distance": "Cosine"},
                "sharding_method": "custom", "replication_factor": rf}),
    )?;
    let keys: Vec<String> = (0..cfg.keys).map(key_name).collect();
    for (i, k) in keys.iter().enumerate() {
        swarm.api(ids[i % ids.len()])?.ok_put(
            &format!("/collections/{name}/shards"),
            &json!({"shard_key": k}),
        )?;
    }
    Ok(keys)
}

/// The exact count of `key`'s points, through `api`.
pub(crate) fn count(api: &Api, collection: &str, key: &str) -> Result<u64> {
    let r = api.ok_post(
        &format!("/collections/{collection}/points/count"),
        &json!({"shard_key": key, "exact": true}),
    )?;
    r["count"]
        .as_u64()
        .ok_or_else(|| anyhow!("count of {collection}/{key}: {r}"))
}

/// Every point id of `key`, through `api`.
pub(crate) fn scroll_ids(api: &Api, collection: &str, key: &str) -> Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    let mut offset = Value::Null;
    for _ in 0..SCROLL_MAX_PAGES {
        let r = api.ok_post(
            &format!("/collections/{collection}/points/scroll"),
            &json!({"shard_key": key, "limit": SCROLL_PAGE, "with_payload": false,
                    "with_vector": false, "offset": offset}),
        )?;
        for p in r["points"].as_array().into_iter().flatten() {
            let id = p["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("a point id that is not a number: {p}"))?;
            out.insert(id);
        }
        offset = r["next_page_offset"].clone();
        if offset.is_null() {
            return Ok(out);
        }
    }
    bail!("scroll of {collection}/{key} did not end within {SCROLL_MAX_PAGES} pages")
}

// ---------------------------------------------------------------------------------------------
// replica sets

#[derive(Debug, Clone)]
pub(crate) struct ReplicaRow {
    pub(crate) peer: u64,
    pub(crate) state: String,
    pub(crate) points: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) digest: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ShardRow {
    pub(crate) shard_id: u64,
    pub(crate) key: String,
    pub(crate) epoch: u64,
    pub(crate) primary: Option<u64>,
    pub(crate) replicas: Vec<ReplicaRow>,
}

/// `GET /admin/collections/{c}/replicas`, parsed.
pub(crate) fn replicas(api: &Api, collection: &str) -> Result<Vec<ShardRow>> {
    let r = api.ok_get(&format!("/admin/collections/{collection}/replicas"))?;
    let shards = r["shards"]
        .as_array()
        .ok_or_else(|| anyhow!("replicas of {collection} without shards: {r}"))?;
    shards
        .iter()
        .map(|s| {
            let replicas = s["replicas"]
                .as_array()
                .ok_or_else(|| anyhow!("a shard without replicas: {s}"))?
                .iter()
                .map(|x| {
                    Ok(ReplicaRow {
                        peer: x["peer_id"]
                            .as_u64()
                            .ok_or_else(|| anyhow!("a replica without peer_id: {x}"))?,
                        state: x["state"].as_str().unwrap_or("?").to_owned(),
                        points: x["points_count"].as_u64(),
                        last_seq: x["last_seq"].as_u64(),
                        digest: x["digest"].as_str().map(str::to_owned),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ShardRow {
                shard_id: s["shard_id"].as_u64().unwrap_or(0),
                key: match &s["shard_key"] {
                    Value::String(k) => k.clone(),
                    other => other.to_string(),
                },
                epoch: s["epoch"].as_u64().unwrap_or(0),
                primary: s["primary"].as_u64(),
                replicas,
            })
        })
        .collect()
}

pub(crate) fn all_active(shards: &[ShardRow]) -> bool {
    shards
        .iter()
        .all(|s| s.replicas.iter().all(|r| r.state == "Active"))
}

/// Why the shards are not converged (every replica Active, answering, with one digest and one
/// size per shard), or None.
pub(crate) fn not_converged(shards: &[ShardRow]) -> Option<String> {
    for s in shards {
        let first = s.replicas.first()?;
        for r in &s.replicas {
            if r.state != "Active" || r.digest.is_none() {
                return Some(format!("{}: {}", s.key, describe(s)));
            }
            if r.digest != first.digest || r.points != first.points {
                return Some(format!("{}: digests differ: {}", s.key, describe(s)));
            }
        }
    }
    None
}

pub(crate) fn describe(s: &ShardRow) -> String {
    let rows: Vec<String> = s
        .replicas
        .iter()
        .map(|r| {
            format!(
                "n{} {} points={} seq={} digest={}",
                r.peer,
                r.state,
                r.points.map_or("-".into(), |p| p.to_string()),
                r.last_seq.map_or("-".into(), |p| p.to_string()),
                r.digest.as_deref().unwrap_or("-")
            )
        })
        .collect();
    format!(
        "epoch {} primary {:?} [{}]",
        s.epoch,
        s.primary,
        rows.join("; ")
    )
}

/// Polls the replica sets through `api` until `done` holds, at most `timeout`: the time it
/// took, or the last state seen.
pub(crate) fn wait_replicas(
    api: &Api,
    collection: &str,
    timeout: Duration,
    done: impl Fn(&[ShardRow]) -> Option<String>,
) -> std::result::Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    let max = timeout.as_millis() / SLOW_POLL.as_millis() + 1;
    for _ in 0..max {
        match replicas(api, collection) {
            Ok(shards) => match done(&shards) {
                None => return Ok(started.elapsed()),
                Some(why) => last = why,
            },
            Err(e) => last = format!("{e:#}"),
        }
        if started.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(SLOW_POLL);
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------------
// figures

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) struct Lat {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

pub(crate) fn lat(ms: &[f64]) -> Lat {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    Lat {
        p50: percentile(&s, 0.50),
        p99: percentile(&s, 0.99),
        max: s.last().copied().unwrap_or(f64::NAN),
        n: s.len(),
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
