//! The figures of a run, from its history and its checks: acknowledged writes lost,
//! cross-tenant results and divergent replicas (all must be 0), availability per tenant during
//! faults, failover times, operations per second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{Event, Kind, Op};

/// One run's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    pub acked_writes_lost: usize,
    pub acked_deletes_resurrected: usize,
    pub cross_tenant_results: usize,
    pub divergent_replicas: usize,
    /// Reads that missed an acknowledged write (or saw a deleted point).
    pub stale_reads: usize,
    /// Every violated invariant, of any kind.
    pub violations: usize,
    pub faults: usize,
    pub ops_ok: usize,
    pub ops_fail: usize,
    pub ops_unknown: usize,
    /// Acknowledged operations per second of workload.
    pub ops_per_s: f64,
    /// Per tenant: % of its operations answered (ok, or a definite 4xx such as "no point with
    /// that id") while a fault was in force, over the operations sent to nodes the fault did
    /// not take down or pause (clients go round every node; those sent to a dead node are
    /// the client's bad luck, not the cluster's availability).
    pub availability_during_faults: BTreeMap<String, f64>,
    /// The lowest of those.
    pub min_availability: f64,
    /// Per fault and tenant whose writes were interrupted: from the fault's start to the
    /// tenant's first acknowledged write after the interruption, in ms.
    pub failover_ms: Vec<f64>,
    pub failover_p50_ms: Option<f64>,
    pub failover_p99_ms: Option<f64>,
}

/// A fault's window: from its start to its heal (ms since the run began).
#[derive(Debug, Clone)]
pub struct Window {
    pub start: f64,
    pub end: f64,
    /// The nodes the fault took down or paused (none for a network fault).
    pub down: Vec<u64>,
}

/// The fault windows of a history (a fault never healed lasts to the end).
pub fn windows(events: &[Event]) -> Vec<Window> {
    let end = events.last().map_or(0.0, |e| e.time_ms);
    let mut open: BTreeMap<u64, (f64, Vec<u64>)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.kind == Kind::Info && e.process == "nemesis")
    {
        match e.value["phase"].as_str() {
            Some("start") => {
                let process_fault = matches!(e.f.as_str(), "kill" | "pause" | "restart" | "leader");
                let down = if process_fault {
                    e.value["targets"]
                        .as_array()
                        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                open.insert(e.op, (e.time_ms, down));
            }
            Some("healed") => {
                if let Some((start, down)) = open.remove(&e.op) {
                    out.push(Window {
                        start,
                        end: e.time_ms,
                        down,
                    });
                }
            }
            _ => {}
        }
    }
    out.extend(
        open.into_values()
            .map(|(start, down)| Window { start, end, down }),
    );
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    out
}

/// The `q` quantile (0..=1) of `xs`, nearest rank; None if empty.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Counts, availability and failover times of the workers' operations (`w*`) in `all`,
/// over a workload of `seconds`.
pub fn measure(events: &[Event], all: &[Op], seconds: f64) -> Figures {
    let mut f = Figures::default();
    let work: Vec<&Op> = all
        .iter()
        .filter(|o| o.invoke.process.starts_with('w'))
        .collect();
    for o in &work {
        match o.outcome() {
            Kind::Ok => f.ops_ok += 1,
            Kind::Fail => f.ops_fail += 1,
            _ => f.ops_unknown += 1,
        }
    }
    f.ops_per_s = if seconds > 0.0 {
        f.ops_ok as f64 / seconds
    } else {
        0.0
    };
    let wins = windows(events);
    f.faults = wins.len();
    let during = |o: &Op| {
        wins.iter().any(|w| {
            o.invoke.time_ms >= w.start
                && o.invoke.time_ms <= w.end
                && !o.invoke.node.is_some_and(|n| w.down.contains(&n))
        })
    };
    let mut per_tenant: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for o in work.iter().filter(|o| during(o)) {
        let Some(t) = o.tenant() else { continue };
        let e = per_tenant.entry(t.to_owned()).or_default();
        e.1 += 1;
        let answered = match o.outcome() {
            Kind::Ok => true,
            Kind::Fail => o.result()["status"]
                .as_u64()
                .is_some_and(|s| (400..500).contains(&s)),
            _ => false,
        };
        if answered {
            e.0 += 1;
        }
    }
    f.availability_during_faults = per_tenant
        .into_iter()
        .map(|(t, (ok, n))| (t, 100.0 * ok as f64 / n.max(1) as f64))
        .collect();
    f.min_availability = f
        .availability_during_faults
        .values()
        .copied()
        .fold(100.0, f64::min);
    let mut by_tenant: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in work.iter().filter(|o| super::check::is_write(o.f())) {
        if let Some(t) = o.tenant() {
            by_tenant.entry(t).or_default().push(o);
        }
    }
    for w in &wins {
        for writes in by_tenant.values() {
            let first_bad = writes.iter().find(|o| {
                o.invoke.time_ms >= w.start && o.invoke.time_ms <= w.end && o.outcome() != Kind::Ok
            });
            let Some(bad) = first_bad else { continue };
            if let Some(good) = writes
                .iter()
                .find(|o| o.invoke.time_ms > bad.invoke.time_ms && o.outcome() == Kind::Ok)
            {
                f.failover_ms.push(good.end_ms() - w.start);
            }
        }
    }
    f.failover_p50_ms = quantile(&f.failover_ms, 0.5);
    f.failover_p99_ms = quantile(&f.failover_ms, 0.99);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::op;
    use serde_json::json;

    fn info(op: u64, phase: &str, t: f64) -> Event {
        Event {
            op,
            kind: Kind::Info,
            process: "nemesis".into(),
            f: "kill".into(),
            tenant: None,
            node: Some(1),
            value: json!({"phase": phase, "targets": [9]}),
            time_ms: t,
        }
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), None);
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), Some(50.0));
        assert_eq!(quantile(&xs, 0.99), Some(99.0));
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
    }

    #[test]
    fn availability_and_failover_come_from_the_fault_windows() {
        // ops at time = op id (ms); a fault from 10 to 20
        let events = vec![info(0, "start", 10.0), info(0, "healed", 20.0)];
        let all = vec![
            op(5, "upsert", "t", &[1], Kind::Ok, json!({})),
            op(12, "upsert", "t", &[1], Kind::Unknown, json!({})),
            op(14, "get", "t", &[1], Kind::Fail, json!({})),
            op(16, "upsert", "t", &[1], Kind::Ok, json!({})),
            op(18, "get", "t", &[1], Kind::Ok, json!([])),
            // to the killed node: not counted
            {
                let mut o = op(19, "get", "t", &[1], Kind::Fail, json!({"status": null}));
                o.invoke.node = Some(9);
                o
            },
        ];
        let f = measure(&events, &all, 2.0);
        assert_eq!(f.faults, 1);
        assert_eq!(f.ops_ok, 3);
        assert_eq!(f.ops_per_s, 1.5);
        assert_eq!(f.availability_during_faults["t"], 50.0);
        assert_eq!(f.failover_ms, [6.0]);
    }
}
