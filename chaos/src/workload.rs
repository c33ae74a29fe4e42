//! The workload of a run: one worker per tenant (its shard key of collection `c`), going through
//! every node, and an admin worker changing shard keys and quotas. Every operation goes into the
//! history as an invoke and a completion.
//!
//! A tenant's points are ids `base(t) + 0..POOL`, their payload `{"tenant": <key>, "v": <op>}`
//! where `<op>` is the id of the operation that wrote it last (every write a new version). One
//! worker per tenant, one operation at a time: what a tenant's points should hold is fully
//! determined by its history, which is what the checker relies on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::client::{Answer, NodeClient};
use crate::fixture::{DIM, tenant};
use crate::history::{Head, Kind, Recorder};
use crate::synthetic_vector;

/// Points per tenant: small, so points are written over and deleted again.
pub const POOL: u64 = 64;
/// Most operations one worker makes (the time bound usually ends it first).
const MAX_OPS: u64 = 1_000_000;
/// Pause between two operations of a worker.
const PAUSE: Duration = Duration::from_millis(15);
/// Pause between two admin operations.
const ADMIN_PAUSE: Duration = Duration::from_millis(1500);
/// Extra shard keys the admin worker creates and deletes.
pub const EXTRA_KEYS: usize = 4;
/// The name of extra shard key `i`.
pub fn extra_key(i: usize) -> String {
    format!("x-{i}")
}

/// The first point id of tenant `t`.
pub fn base(t: usize) -> u64 {
    (t as u64 + 1) * 1_000_000
}

/// Which tenant a point id belongs to.
pub fn tenant_of(id: u64) -> Option<usize> {
    let t = (id / 1_000_000).checked_sub(1)?;
    (id % 1_000_000 < POOL).then_some(t as usize)
}

/// Everything the workers share.
pub struct Shared {
    pub clients: Vec<NodeClient>,
    pub history: Arc<Recorder>,
    pub stop: Arc<AtomicBool>,
    pub deadline: Instant,
}

impl Shared {
    fn done(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }
}

/// Does one operation: records its invoke, sends it, records its completion.
fn invoke(
    s: &Shared,
    head: Head<'_>,
    asked: Value,
    send: impl FnOnce(&NodeClient) -> Answer,
    client: &NodeClient,
    keep: impl FnOnce(&Answer) -> Value,
) -> Result<Answer> {
    let op = s.history.next_op();
    s.history.record(op, Kind::Invoke, &head, asked)?;
    let a = send(client);
    let value = if a.ok() { keep(&a) } else { a.summary() };
    s.history.record(op, a.kind, &head, value)?;
    Ok(a)
}

/// The points of a read's answer as the history keeps them: id, tenant, version.
fn points_of(list: &Value) -> Value {
    let pts: Vec<Value> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    json!({"id": p["id"], "tenant": p["payload"]["tenant"], "v": p["payload"]["v"]})
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(pts)
}

/// One tenant's worker: `seed` decides every choice it makes.
pub fn tenant_worker(s: Arc<Shared>, t: usize, seed: u64) -> Result<()> {
    let key = tenant(t);
    let process = format!("w{t}");
    let mut rng = StdRng::seed_from_u64(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for _ in 0..MAX_OPS {
        if s.done() {
            break;
        }
        let client = &s.clients[rng.random_range(0..s.clients.len())];
        let head = |f| Head {
            process: &process,
            f,
            tenant: Some(&key),
            node: Some(client.node),
        };
        let ids = |rng: &mut StdRng, max: usize| -> Vec<u64> {
            let n = rng.random_range(1..=max);
            let mut v: Vec<u64> = (0..n)
                .map(|_| base(t) + rng.random_range(0..POOL))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let roll = rng.random_range(0..100);
        match roll {
            0..=34 => {
                let pts = ids(&mut rng, 3);
                upsert(&s.history, client, &process, &key, &pts)?;
            }
            35..=44 => {
                let pts = ids(&mut rng, 2);
                let body = json!({"points": pts, "shard_key": key});
                write(&s.history, head("delete"), &pts, client, |c, _| {
                    c.post("/collections/c/points/delete?wait=true", &body)
                })?;
            }
            45..=54 => {
                let pts = ids(&mut rng, 2);
                write(&s.history, head("set_payload"), &pts, client, |c, v| {
                    let body = json!({"points": pts, "shard_key": key, "payload": {"v": v}});
                    c.post("/collections/c/points/payload?wait=true", &body)
                })?;
            }
            55..=69 => {
                let pts = ids(&mut rng, 4);
                let body = json!({"ids": pts, "shard_key": key, "with_payload": true});
                invoke(
                    &s,
                    head("get"),
                    json!({"ids": pts}),
                    |c| c.post("/collections/c/points", &body),
                    client,
                    |a| points_of(&a.body),
                )?;
            }
            70..=81 => {
                let q = synthetic_vector(rng.random(), DIM);
                let body = json!({"query": q, "limit": 10, "shard_key": key, "with_payload": true});
                invoke(
                    &s,
                    head("search"),
                    json!({}),
                    |c| c.post("/collections/c/points/query", &body),
                    client,
                    |a| points_of(&a.body["points"]),
                )?;
            }
            82..=91 => {
                let body = json!({"limit": 100, "shard_key": key, "with_payload": true});
                invoke(
                    &s,
                    head("scroll"),
                    json!({}),
                    |c| c.post("/collections/c/points/scroll", &body),
                    client,
                    |a| points_of(&a.body["points"]),
                )?;
            }
            _ => {
                let body = json!({"shard_key": key, "exact": true});
                invoke(
                    &s,
                    head("count"),
                    json!({}),
                    |c| c.post("/collections/c/points/count", &body),
                    client,
                    |a| json!({"count": a.body["count"]}),
                )?;
            }
        }
        std::thread::sleep(PAUSE);
    }
    Ok(())
}

/// A `wait=true` upsert of points `ids` of tenant `key` (shard key) through `client`, each at
/// the version of the operation's id, recorded in `history` as process `process`.
pub fn upsert(
    history: &Recorder,
    client: &NodeClient,
    process: &str,
    key: &str,
    ids: &[u64],
) -> Result<Answer> {
    let head = Head {
        process,
        f: "upsert",
        tenant: Some(key),
        node: Some(client.node),
    };
    write(history, head, ids, client, |c, v| {
        let points: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"id": id, "vector": synthetic_vector(*id ^ v, DIM),
                       "payload": {"tenant": key, "v": v}})
            })
            .collect();
        let body = json!({"points": points, "shard_key": key});
        c.put("/collections/c/points?wait=true", &body)
    })
}

/// A write: the history notes the ids it touches and the version it writes, its op id (which
/// `send` is given to put in the payload).
fn write(
    history: &Recorder,
    head: Head<'_>,
    ids: &[u64],
    client: &NodeClient,
    send: impl FnOnce(&NodeClient, u64) -> Answer,
) -> Result<Answer> {
    let op = history.next_op();
    history.record(op, Kind::Invoke, &head, json!({"ids": ids, "v": op}))?;
    let a = send(client, op);
    let value = if a.ok() { json!({}) } else { a.summary() };
    history.record(op, a.kind, &head, value)?;
    Ok(a)
}

/// The admin worker: creates and deletes extra shard keys and changes tenants' quotas.
pub fn admin_worker(s: Arc<Shared>, tenants: usize, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x61_646d_696e);
    for _ in 0..MAX_OPS {
        if s.done() {
            break;
        }
        let client = &s.clients[rng.random_range(0..s.clients.len())];
        let key = extra_key(rng.random_range(0..EXTRA_KEYS));
        let head = |f, tenant| Head {
            process: "admin",
            f,
            tenant,
            node: Some(client.node),
        };
        match rng.random_range(0..3) {
            0 => {
                let body = json!({"shard_key": key});
                invoke(
                    &s,
                    head("create_key", Some(&key)),
                    json!({"key": key}),
                    |c| c.put("/collections/c/shards", &body),
                    client,
                    |_| json!({}),
                )?;
            }
            1 => {
                let body = json!({"shard_key": key});
                invoke(
                    &s,
                    head("delete_key", Some(&key)),
                    json!({"key": key}),
                    |c| c.post("/collections/c/shards/delete", &body),
                    client,
                    |_| json!({}),
                )?;
            }
            _ => {
                let t = tenant(rng.random_range(0..tenants.max(1)));
                let limit = [Value::from(100), Value::from(1000), Value::Null]
                    [rng.random_range(0..3)]
                .clone();
                let body = json!({"max_limit": limit});
                invoke(
                    &s,
                    head("set_quota", Some(&t)),
                    body.clone(),
                    |c| c.put(&format!("/admin/tenants/{t}/quota"), &body),
                    client,
                    |_| json!({}),
                )?;
            }
        }
        std::thread::sleep(ADMIN_PAUSE);
    }
    Ok(())
}

/// The workers of a run, started.
pub struct Workers {
    threads: Vec<(String, JoinHandle<Result<()>>)>,
}

impl Workers {
    pub fn start(shared: Arc<Shared>, tenants: usize, seed: u64) -> Workers {
        let mut threads = Vec::new();
        for t in 0..tenants {
            let s = shared.clone();
            threads.push((
                format!("w{t}"),
                std::thread::spawn(move || tenant_worker(s, t, seed)),
            ));
        }
        let s = shared.clone();
        threads.push((
            "admin".to_owned(),
            std::thread::spawn(move || admin_worker(s, tenants, seed)),
        ));
        Workers { threads }
    }

    /// Waits for every worker (they stop at the deadline or the stop flag).
    pub fn join(self) -> Result<()> {
        for (name, t) in self.threads {
            t.join()
                .map_err(|_| anyhow!("worker {name} panicked"))?
                .map_err(|e| anyhow!("worker {name}: {e:#}"))?;
        }
        Ok(())
    }
}
