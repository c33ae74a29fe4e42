//! Failover: kill -9 of a shard's primary (or backup) under a writer, restart, convergence, and
//! at the end every acknowledged write checked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use tessera_chaos::{Api, Swarm};

use crate::common::{
    all_active, count, create_collection, describe, lat, ms, not_converged, replicas, scroll_ids,
    upsert, upsert_body, wait_replicas,
};
use crate::{
    CONVERGE_TIMEOUT, Checks, Config, FAILOVER_TIMEOUT, POLL, RECOVERY_TIMEOUT,
    WRITER_FINISH_TIMEOUT, WRITER_MAX_ATTEMPTS, WRITER_MAX_TIME, WRITER_RETRY_PAUSE, WRITER_WARM,
    WRITER_WARM_TIMEOUT,
};

/// One write attempt of the failover writer.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    sent: Instant,
    done: Instant,
    status: u16,
    error: Option<String>,
}

pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
    handle: JoinHandle<Result<WriterOut>>,
}

pub(crate) struct WriterOut {
    /// Ids acknowledged (200 to a `wait=true` upsert).
    acked: Vec<u64>,
    /// An id refused at the last attempt, whose write may or may not have applied.
    unknown: Option<u64>,
    next_id: u64,
}

pub(crate) fn lock(log: &Mutex<Vec<Attempt>>) -> std::sync::MutexGuard<'_, Vec<Attempt>> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writer {
    /// Upserts one point at a time to `key` through `api` from id `first`, each id again until
    /// it is acknowledged, until stopped (or its own bounds).
    fn start(
        api: Api,
        collection: String,
        key: String,
        first: u64,
        dim: usize,
        pause: Duration,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop2, log2) = (stop.clone(), log.clone());
        let handle = std::thread::spawn(move || -> Result<WriterOut> {
            let started = Instant::now();
            let mut acked = Vec::new();
            let mut id = first;
            let mut pending = false;
            let mut finishing: Option<Instant> = None;
            for _ in 0..WRITER_MAX_ATTEMPTS {
                if finishing.is_none()
                    && (stop2.load(Ordering::Relaxed) || started.elapsed() >= WRITER_MAX_TIME)
                {
                    finishing = Some(Instant::now());
                }
                match finishing {
                    Some(_) if !pending => break,
                    Some(t) if t.elapsed() >= WRITER_FINISH_TIMEOUT => break,
                    _ => {}
                }
                let body = upsert_body(&key, id..id + 1, dim)?;
                let sent = Instant::now();
                let (status, error) = upsert(&api, &collection, body);
                let done = Instant::now();
                lock(&log2).push(Attempt {
                    sent,
                    done,
                    status,
                    error,
                });
                if status == 200 {
                    acked.push(id);
                    id += 1;
                    pending = false;
                    std::thread::sleep(pause);
                } else {
                    pending = true;
                    std::thread::sleep(WRITER_RETRY_PAUSE);
                }
            }
            Ok(WriterOut {
                acked,
                unknown: pending.then_some(id),
                next_id: id + 1,
            })
        });
        Writer { stop, log, handle }
    }

    fn acked_count(&self) -> usize {
        lock(&self.log).iter().filter(|a| a.status == 200).count()
    }

    /// The first acknowledged attempt sent at or after `t`.
    fn first_ok_sent_after(&self, t: Instant) -> Option<Attempt> {
        lock(&self.log)
            .iter()
            .find(|a| a.status == 200 && a.sent >= t)
            .cloned()
    }

    fn finish(self) -> Result<(WriterOut, Vec<Attempt>)> {
        self.stop.store(true, Ordering::Relaxed);
        let out = self
            .handle
            .join()
            .map_err(|_| anyhow!("the writer thread panicked"))??;
        let log = std::mem::take(&mut *lock(&self.log));
        Ok((out, log))
    }
}

pub(crate) struct KillRecord {
    failover_ms: Option<f64>,
    recovery_ms: Option<f64>,
    refused: usize,
    victim_led: bool,
    stall_ms: f64,
    reachable_ms: Option<f64>,
    /// A replica left the in-sync set again after all were Active (before the writer stopped).
    dropped_again: bool,
}

pub(crate) fn failover_phase(swarm: &mut Swarm, cfg: &Config, checks: &mut Checks) -> Result<()> {
    let coll = "failover";
    let keys = create_collection(swarm, coll, cfg.failover_rf, cfg)?;
    let rf = cfg.failover_rf;
    let ids = swarm.ids();
    let api0 = swarm.api(ids[0])?;
    if let Err(why) = wait_replicas(&api0, coll, CONVERGE_TIMEOUT, |s| {
        (!all_active(s)).then(|| "not all Active".to_owned())
    }) {
        bail!("{coll}: the new shards' replicas are not Active: {why}");
    }
    let mut acked: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut unknown: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    // some points in every key first, so a copy or a tail has something to carry
    let mut next_id = 0u64;
    for (i, key) in keys.iter().enumerate() {
        let body = upsert_body(key, next_id..next_id + 100, cfg.dim)?;
        let (st, err) = upsert(&swarm.api(ids[i % ids.len()])?, coll, body);
        ensure!(st == 200, "seeding {key}: {st} {err:?}");
        acked
            .entry(key.clone())
            .or_default()
            .extend(next_id..next_id + 100);
        next_id += 100;
    }

    let mut records = Vec::new();
    for kill in 0..cfg.kills {
        let key = keys[kill % keys.len()].clone();
        if let Err(why) = wait_reachable(swarm, RECOVERY_TIMEOUT) {
            bail!(
                "before kill {}: the nodes do not all reach each other: {why}",
                kill + 1
            );
        }
        let shards = replicas(&api0_or_live(swarm)?, coll)?;
        let shard = shards
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| anyhow!("no shard of {key} in {shards:?}"))?;
        let primary_before = shard
            .primary
            .ok_or_else(|| anyhow!("{key} has no primary: {}", describe(shard)))?;
        let victim = if cfg.kill_backup {
            shard
                .replicas
                .iter()
                .map(|r| r.peer)
                .find(|p| *p != primary_before)
                .ok_or_else(|| anyhow!("{key} has no backup: {}", describe(shard)))?
        } else {
            primary_before
        };
        let role = if cfg.kill_backup { "backup" } else { "primary" };
        let epoch_before = shard.epoch;
        // the writer goes through the node after the victim (never the victim)
        let via = ids[(ids
            .iter()
            .position(|i| *i == victim)
            .ok_or_else(|| anyhow!("node {victim} is not a swarm node"))?
            + 1)
            % ids.len()];
        let via_api = swarm.api(via)?;
        let leader = swarm.wait_for_leader(Duration::from_secs(10))?;
        let writer = Writer::start(
            via_api.clone(),
            coll.to_owned(),
            key.clone(),
            next_id,
            cfg.dim,
            cfg.writer_pause,
        );
        let warm_until = Instant::now() + WRITER_WARM_TIMEOUT;
        while writer.acked_count() < WRITER_WARM && Instant::now() < warm_until {
            std::thread::sleep(POLL);
        }
        let warm = writer.acked_count() >= WRITER_WARM;

        swarm.kill9(victim)?;
        let killed = Instant::now();
        let mut first = None;
        let deadline = killed + FAILOVER_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(a) = writer.first_ok_sent_after(killed) {
                first = Some(a);
                break;
            }
            std::thread::sleep(POLL);
        }
        let failover_ms = first.as_ref().map(|a| ms(a.done - killed));

        swarm.restart(victim)?;
        let restarted = Instant::now();
        let recovered = wait_replicas(&via_api, coll, RECOVERY_TIMEOUT, |s| {
            (!all_active(s)).then(|| {
                s.iter()
                    .filter(|x| !x.replicas.iter().all(|r| r.state == "Active"))
                    .map(|x| format!("{}: {}", x.key, describe(x)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
        });
        let recovery_ms = recovered.as_ref().ok().map(|_| ms(restarted.elapsed()));
        // Active in the metadata is not yet reachable: every node's pinger must see the
        // restarted node answer, or a primary drops it again at its next write
        let reachable = wait_reachable(swarm, RECOVERY_TIMEOUT);
        let reachable_ms = reachable.as_ref().ok().map(|_| ms(restarted.elapsed()));

        let (out, log) = writer.finish()?;
        let dropped_again =
            recovered.is_ok() && !replicas(&via_api, coll).is_ok_and(|s| all_active(&s));
        next_id = out.next_id;
        acked.entry(key.clone()).or_default().extend(&out.acked);
        if let Some(u) = out.unknown {
            unknown.entry(key.clone()).or_default().insert(u);
        }
        let after_kill: Vec<&Attempt> = log.iter().filter(|a| a.sent >= killed).collect();
        let refused_between = after_kill.iter().take_while(|a| a.status != 200).count();
        let refused_total = log.iter().filter(|a| a.status != 200).count();
        for a in log.iter().filter(|a| a.status != 200) {
            let text = a.error.clone().unwrap_or_default();
            *errors
                .entry(format!("{} {}", a.status, shorten(&text)))
                .or_default() += 1;
        }
        let slowest = log
            .iter()
            .map(|a| ms(a.done - a.sent))
            .fold(0.0f64, f64::max);
        // the writer's latency before the kill, and its slowest write while the restarted
        // node caught up (the primary replays the missed records inside its turn)
        let before: Vec<f64> = log
            .iter()
            .filter(|a| a.status == 200 && a.done < killed)
            .map(|a| ms(a.done - a.sent))
            .collect();
        let steady_p50 = lat(&before).p50;
        let stall_ms = log
            .iter()
            .filter(|a| a.sent >= restarted)
            .map(|a| ms(a.done - a.sent))
            .fold(0.0f64, f64::max);

        let converged = wait_replicas(&via_api, coll, CONVERGE_TIMEOUT, not_converged);
        let after = replicas(&via_api, coll)?;
        let now = after.iter().find(|s| s.key == key);
        eprintln!(
            "# kill {}/{}: {role} n{victim} of {key} (epoch {epoch_before}{}) killed, writer via n{via}: \
             first write sent after the kill acknowledged in {} ({refused_between} refused in between, \
             {refused_total} refused in all, slowest attempt {slowest:.0} ms, {} acknowledged, \
             p50 {steady_p50:.2} ms before the kill); now primary {:?} epoch {:?}; all Active {} \
             after the restart (slowest write meanwhile {stall_ms:.0} ms), every node reaching \
             it after {}{}; {}",
            kill + 1,
            cfg.kills,
            if victim == leader {
                ", the metadata leader"
            } else {
                ""
            },
            failover_ms.map_or("NEVER".into(), |m| format!("{m:.0} ms")),
            out.acked.len(),
            now.and_then(|s| s.primary),
            now.map(|s| s.epoch),
            recovery_ms.map_or("NEVER".into(), |m| format!("{m:.0} ms")),
            reachable_ms.map_or("NEVER".into(), |m| format!("{m:.0} ms")),
            if dropped_again {
                " (a replica was dropped from the in-sync set again meanwhile)"
            } else {
                ""
            },
            match &converged {
                Ok(_) => "digests equal".to_owned(),
                Err(why) => format!("NOT CONVERGED: {why}"),
            }
        );
        checks.check(
            warm,
            format!("kill {}: writer acknowledged before the kill", kill + 1),
        );
        checks.check(
            failover_ms.is_some(),
            format!(
                "kill {}: a write acknowledged within {FAILOVER_TIMEOUT:?} of killing n{victim}",
                kill + 1
            ),
        );
        if cfg.kill_backup {
            checks.check(
                now.is_some_and(|s| s.epoch == epoch_before && s.primary == Some(primary_before)),
                format!(
                    "kill {}: {key} kept its primary n{primary_before} in epoch {epoch_before}",
                    kill + 1
                ),
            );
        } else {
            checks.check(
                now.is_some_and(|s| s.epoch > epoch_before && s.primary != Some(victim)),
                format!("kill {}: {key} got a new primary in a new epoch", kill + 1),
            );
        }
        if let Err(why) = &recovered {
            checks.check(
                false,
                format!(
                    "kill {}: replicas Active within {RECOVERY_TIMEOUT:?} of the restart: {why}",
                    kill + 1
                ),
            );
        }
        if let Err(why) = &reachable {
            checks.check(
                false,
                format!(
                    "kill {}: every node reaches every peer within {RECOVERY_TIMEOUT:?} of the restart: {why}",
                    kill + 1
                ),
            );
        }
        if let Err(why) = &converged {
            checks.check(
                false,
                format!("kill {}: replicas converged: {why}", kill + 1),
            );
        }
        swarm.check_alive()?;
        records.push(KillRecord {
            failover_ms,
            recovery_ms,
            refused: refused_between,
            victim_led: victim == leader,
            stall_ms,
            reachable_ms,
            dropped_again,
        });
    }

    // figures
    let what = if cfg.kill_backup {
        "backup-loss"
    } else {
        "failover"
    };
    let fo: Vec<f64> = records.iter().filter_map(|r| r.failover_ms).collect();
    let l = lat(&fo);
    println!(
        "FIGURE {what} rf{rf} kill -9 of the {} to the first acknowledged write: p50 {:.0} ms \
         p99 {:.0} ms max {:.0} ms (n={} of {} kills)",
        if cfg.kill_backup { "backup" } else { "primary" },
        l.p50,
        l.p99,
        l.max,
        l.n,
        records.len()
    );
    for (name, led) in [("metadata leader", true), ("not the leader", false)] {
        let v: Vec<f64> = records
            .iter()
            .filter(|r| r.victim_led == led)
            .filter_map(|r| r.failover_ms)
            .collect();
        if !v.is_empty() {
            let l = lat(&v);
            println!(
                "FIGURE {what} rf{rf} victim {name}: p50 {:.0} ms max {:.0} ms (n={})",
                l.p50, l.max, l.n
            );
        }
    }
    let refused: Vec<f64> = records.iter().map(|r| r.refused as f64).collect();
    let lr = lat(&refused);
    println!(
        "FIGURE {what} rf{rf} writes refused between the kill and the first acknowledged one: \
         total {} p50 {:.0} max {:.0} per kill",
        records.iter().map(|r| r.refused).sum::<usize>(),
        lr.p50,
        lr.max
    );
    let rec: Vec<f64> = records.iter().filter_map(|r| r.recovery_ms).collect();
    let lrec = lat(&rec);
    println!(
        "FIGURE {what} rf{rf} restart to every replica Active: p50 {:.0} ms p99 {:.0} ms max {:.0} ms (n={})",
        lrec.p50, lrec.p99, lrec.max, lrec.n
    );
    let reach: Vec<f64> = records.iter().filter_map(|r| r.reachable_ms).collect();
    let lre = lat(&reach);
    println!(
        "FIGURE {what} rf{rf} restart to every node reaching every peer: p50 {:.0} ms max {:.0} ms \
         (n={}); a replica dropped again after all were Active: {} of {} kills",
        lre.p50,
        lre.max,
        lre.n,
        records.iter().filter(|r| r.dropped_again).count(),
        records.len()
    );
    let stalls: Vec<f64> = records.iter().map(|r| r.stall_ms).collect();
    let ls = lat(&stalls);
    println!(
        "FIGURE {what} rf{rf} slowest write while the restarted node caught up: p50 {:.0} ms \
         max {:.0} ms (n={})",
        ls.p50, ls.max, ls.n
    );
    for (e, n) in &errors {
        eprintln!("# refusal seen {n}x: {e}");
    }

    // every acknowledged write is there, and nothing that was never written
    let live = api0_or_live(swarm)?;
    let mut lost = 0usize;
    let mut extra = 0usize;
    let mut total = 0usize;
    let mut detail = Vec::new();
    for key in &keys {
        let want = acked.get(key).cloned().unwrap_or_default();
        let maybe = unknown.get(key).cloned().unwrap_or_default();
        let got = scroll_ids(&live, coll, key)?;
        let n = count(&live, coll, key)?;
        for id in swarm.ids() {
            let via = count(&swarm.api(id)?, coll, key)?;
            if via != n {
                detail.push(format!(
                    "{key}: count {via} through n{id}, {n} through another"
                ));
            }
        }
        let l = want.difference(&got).count();
        let x = got
            .iter()
            .filter(|id| !want.contains(id) && !maybe.contains(id))
            .count();
        total += want.len();
        lost += l;
        extra += x;
        if l > 0 || x > 0 || n != got.len() as u64 {
            detail.push(format!(
                "{key}: {} acknowledged, {} present, count {n}, {l} lost, {x} never written",
                want.len(),
                got.len()
            ));
        }
    }
    println!(
        "FIGURE {what} rf{rf} acknowledged writes {total} lost {lost} unexpected {extra} \
         (unknown outcome {})",
        unknown.values().map(BTreeSet::len).sum::<usize>()
    );
    checks.check(
        detail.is_empty(),
        format!(
            "{what}: every acknowledged write present, count == acknowledged ids ({})",
            if detail.is_empty() {
                format!("{total} ids")
            } else {
                detail.join("; ")
            }
        ),
    );
    Ok(())
}

/// An API client of the first node the harness believes running.
pub(crate) fn api0_or_live(swarm: &Swarm) -> Result<Api> {
    let id = swarm
        .running()
        .first()
        .copied()
        .ok_or_else(|| anyhow!("no node is running"))?;
    swarm.api(id)
}

/// An error text cut to its first 160 characters, numbers kept (they are few).
pub(crate) fn shorten(s: &str) -> String {
    let one_line = s.replace('\n', " ");
    match one_line.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

/// Waits until every running node's `/cluster` says it reaches every other member: the time it
/// took, or what was still unreachable.
fn wait_reachable(swarm: &Swarm, timeout: Duration) -> std::result::Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    let max = timeout.as_millis() / POLL.as_millis() + 1;
    for _ in 0..max {
        let mut missing = Vec::new();
        for id in swarm.running() {
            match swarm.cluster(id) {
                Ok(view) => missing.extend(
                    view.peers
                        .iter()
                        .filter(|(p, v)| **p != id && v.reachable == Some(false))
                        .map(|(p, _)| format!("n{id} does not reach n{p}")),
                ),
                Err(e) => missing.push(format!("n{id}: {e:#}")),
            }
        }
        if missing.is_empty() {
            return Ok(started.elapsed());
        }
        last = missing.join(", ");
        if started.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(POLL);
    }
    Err(last)
}
