//! Replicated writes for replication_factor 1, 2 and 3: sequential and concurrent `wait=true`
//! upserts, then every acknowledged point checked through every node.

use std::collections::{BTreeMap, BTreeSet};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use tessera_chaos::{Api, Swarm};

use crate::common::{
    Lat, all_active, count, create_collection, lat, ms, not_converged, replicas, scroll_ids,
    upsert, upsert_body, wait_replicas,
};
use crate::{CLIENTS_MAX_TIME, CONVERGE_TIMEOUT, Checks, Config, WARMUP_WRITES};

/// One write of a concurrent client: its key, its first point id, its latency (None: refused).
pub(crate) struct ClientWrite {
    key: String,
    from: u64,
    ms: Option<f64>,
}

/// One FIGURE line of writes of `batch` points at replication factor `rf`.
fn print_writes(rf: u32, batch: u64, how: &str, l: &Lat, secs: f64) {
    println!(
        "FIGURE rf{rf} write b{batch} {how} p50 {:.2} ms p99 {:.2} ms max {:.2} ms \
         {:.0} writes/s {:.0} points/s (n={})",
        l.p50,
        l.p99,
        l.max,
        l.n as f64 / secs,
        (l.n as u64 * batch) as f64 / secs,
        l.n
    );
}

pub(crate) fn writes_phase(swarm: &Swarm, cfg: &Config, checks: &mut Checks) -> Result<()> {
    let ids = swarm.ids();
    let apis: Vec<Api> = ids.iter().map(|id| swarm.api(*id)).collect::<Result<_>>()?;
    // p50 per (batch, rf), for the ratios
    let mut p50s: BTreeMap<(u64, u32), f64> = BTreeMap::new();
    for rf in [1u32, 2, 3] {
        let coll = format!("writes_rf{rf}");
        let keys = create_collection(swarm, &coll, rf, cfg)?;
        if let Err(why) = wait_replicas(&apis[0], &coll, CONVERGE_TIMEOUT, |s| {
            (!all_active(s)).then(|| "not all Active".to_owned())
        }) {
            bail!("{coll}: the new shards' replicas are not Active: {why}");
        }
        let shards = replicas(&apis[0], &coll)?;
        let placement: Vec<String> = shards
            .iter()
            .map(|s| {
                let nodes: Vec<String> = s.replicas.iter().map(|r| r.peer.to_string()).collect();
                format!("{} on [{}]", s.key, nodes.join(","))
            })
            .collect();
        eprintln!(
            "# rf{rf}: replicas (primary first): {}",
            placement.join(", ")
        );
        let mut expected: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let mut next_id = 0u64;
        let mut refused = 0usize;

        // a warm-up through every node, uncounted
        for i in 0..WARMUP_WRITES {
            let key = &keys[i % keys.len()];
            let body = upsert_body(key, next_id..next_id + 1, cfg.dim)?;
            let (st, err) = upsert(&apis[i % apis.len()], &coll, body);
            if st == 200 {
                expected.entry(key.clone()).or_default().insert(next_id);
            } else {
                refused += 1;
                eprintln!("# rf{rf} warm-up write refused: {st} {err:?}");
            }
            next_id += 1;
        }

        for batch in [1u64, 16] {
            let mut lat_ms = Vec::with_capacity(cfg.writes);
            let started = Instant::now();
            for i in 0..cfg.writes {
                let key = &keys[i % keys.len()];
                let body = upsert_body(key, next_id..next_id + batch, cfg.dim)?;
                let t = Instant::now();
                let (st, err) = upsert(&apis[i % apis.len()], &coll, body);
                let took = t.elapsed();
                if st == 200 {
                    lat_ms.push(ms(took));
                    expected
                        .entry(key.clone())
                        .or_default()
                        .extend(next_id..next_id + batch);
                } else {
                    refused += 1;
                    eprintln!("# rf{rf} batch {batch} write refused: {st} {err:?}");
                }
                next_id += batch;
            }
            let secs = started.elapsed().as_secs_f64();
            let l = lat(&lat_ms);
            p50s.insert((batch, rf), l.p50);
            print_writes(rf, batch, "sequential", &l, secs);
        }

        // concurrent clients, 16 points a write, each through one node
        let batch = 16u64;
        let per_client = cfg.client_writes as u64 * batch;
        let base = next_id;
        let stop_at = Instant::now() + CLIENTS_MAX_TIME;
        let started = Instant::now();
        let handles: Vec<JoinHandle<Result<Vec<ClientWrite>>>> = (0..cfg.clients)
            .map(|c| {
                let api = apis[c % apis.len()].clone();
                let (coll, keys, dim, n) = (coll.clone(), keys.clone(), cfg.dim, cfg.client_writes);
                let first = base + c as u64 * per_client;
                std::thread::spawn(move || -> Result<Vec<ClientWrite>> {
                    let mut out = Vec::with_capacity(n);
                    for i in 0..n {
                        if Instant::now() >= stop_at {
                            break;
                        }
                        let key = &keys[(i + c) % keys.len()];
                        let from = first + i as u64 * batch;
                        let body = upsert_body(key, from..from + batch, dim)?;
                        let t = Instant::now();
                        let (st, _) = upsert(&api, &coll, body);
                        let took = ms(t.elapsed());
                        out.push(ClientWrite {
                            key: key.clone(),
                            from,
                            ms: (st == 200).then_some(took),
                        });
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut lat_ms = Vec::new();
        for h in handles {
            let rows = h
                .join()
                .map_err(|_| anyhow!("a client thread panicked"))??;
            for w in rows {
                match w.ms {
                    Some(took) => {
                        lat_ms.push(took);
                        expected
                            .entry(w.key)
                            .or_default()
                            .extend(w.from..w.from + batch);
                    }
                    None => refused += 1,
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let l = lat(&lat_ms);
        print_writes(rf, batch, &format!("{} clients", cfg.clients), &l, secs);
        checks.check(
            refused == 0,
            format!("rf{rf}: every write acknowledged ({refused} refused)"),
        );

        // every acknowledged point is there, seen through every node, and the replicas agree
        let converged = wait_replicas(&apis[0], &coll, CONVERGE_TIMEOUT, not_converged);
        checks.check(
            converged.is_ok(),
            format!(
                "rf{rf}: replicas Active with equal digests ({})",
                converged
                    .as_ref()
                    .map_or_else(|w| w.clone(), |d| format!("{d:?}"))
            ),
        );
        let mut mismatches = Vec::new();
        for (key, want) in &expected {
            for (i, api) in apis.iter().enumerate() {
                let n = count(api, &coll, key)?;
                if n != want.len() as u64 {
                    mismatches.push(format!(
                        "{key} via n{}: {n} of {} points",
                        ids[i],
                        want.len()
                    ));
                }
            }
            let got = scroll_ids(&apis[0], &coll, key)?;
            if &got != want {
                mismatches.push(format!(
                    "{key}: {} acknowledged ids missing, {} unexpected",
                    want.difference(&got).count(),
                    got.difference(want).count()
                ));
            }
        }
        checks.check(
            mismatches.is_empty(),
            format!(
                "rf{rf}: every acknowledged point present, through every node ({})",
                if mismatches.is_empty() {
                    format!(
                        "{} points",
                        expected.values().map(BTreeSet::len).sum::<usize>()
                    )
                } else {
                    mismatches.join("; ")
                }
            ),
        );
    }
    for batch in [1u64, 16] {
        let base = p50s.get(&(batch, 1)).copied().unwrap_or(f64::NAN);
        let r = |rf: u32| p50s.get(&(batch, rf)).copied().unwrap_or(f64::NAN) / base;
        println!(
            "FIGURE ratio write b{batch} sequential p50 rf2/rf1 {:.2} rf3/rf1 {:.2}",
            r(2),
            r(3)
        );
    }
    Ok(())
}
