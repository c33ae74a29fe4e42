//! One chaos run: a swarm, the workload through every node, the nemesis schedule drawn from the
//! seed, then heal, the reads of the healed cluster, the checks and the figures.
//!
//! ```text
//! <out>/run-<seed>/plan.json      the fault schedule
//! <out>/run-<seed>/history.jsonl  every operation and fault
//! <out>/run-<seed>/report.json    figures, violations, the command that reproduces the run
//! <out>/run-<seed>/node-<id>.log  the nodes' logs, kept when the run found something
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::check::{self, Final, Violation};
use crate::client::NodeClient;
use crate::figures::{self, Figures};
use crate::fixture::{self, tenant};
use crate::history::{self, Head, Kind, Recorder};
use crate::nemesis::{self, Nemesis, Step};
use crate::net::Table;
use crate::signals;
use crate::workload::{Shared, Workers};
use crate::{NodeState, Swarm, SwarmOptions};

/// How a run is made.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub nodes: usize,
    /// How long the workload and the nemesis run.
    pub duration: Duration,
    pub seed: u64,
    pub nemeses: Vec<Nemesis>,
    pub tenants: usize,
    pub replication_factor: u32,
    /// Where the run's directory goes.
    pub out: PathBuf,
    /// A workload request gives up (and ends unknown) after this long.
    pub request_timeout: Duration,
    /// How long the healed cluster may take to settle and converge.
    pub heal_timeout: Duration,
    /// Extra environment for every node (test-only fault switches).
    pub node_env: Vec<(String, String)>,
}

impl RunConfig {
    pub fn new(nodes: usize, duration: Duration, seed: u64, nemeses: Vec<Nemesis>) -> RunConfig {
        RunConfig {
            nodes,
            duration,
            seed,
            nemeses,
            tenants: 6,
            replication_factor: 2,
            out: PathBuf::from("target/chaos"),
            request_timeout: Duration::from_secs(5),
            heal_timeout: Duration::from_secs(90),
            node_env: Vec::new(),
        }
    }

    /// The command that runs this very run again.
    pub fn command(&self) -> String {
        format!(
            "cargo run -p tessera-chaos --release -- run --nodes {} --seconds {} --seed {} --nemesis {} --tenants {}",
            self.nodes,
            self.duration.as_secs(),
            self.seed,
            nemesis::list_name(&self.nemeses),
            self.tenants
        )
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub seed: u64,
    pub nodes: usize,
    pub seconds: u64,
    pub nemesis: String,
    pub command: String,
    pub figures: Figures,
    /// How many violations of each invariant (all of them).
    pub by_invariant: BTreeMap<String, usize>,
    /// The violations (at most 100 listed; `by_invariant` counts them all).
    pub violations: Vec<String>,
    pub dir: String,
}

impl RunReport {
    pub fn clean(&self) -> bool {
        self.figures.violations == 0
    }
}

/// Most violations a report lists.
const MAX_LISTED: usize = 100;

/// Runs one seeded run; see the module doc. An `Err` is a run that could not be made (the
/// swarm did not start, the history could not be written), not a finding.
pub fn run(cfg: &RunConfig) -> Result<RunReport> {
    let dir = cfg.out.join(format!("run-{}", cfg.seed));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    if cfg.nemeses.iter().any(|n| n.is_network()) {
        crate::net::require_nft()?;
    }
    let plan = nemesis::plan(cfg.seed, cfg.nodes, &cfg.nemeses, cfg.duration);
    std::fs::write(
        dir.join("plan.json"),
        serde_json::to_vec_pretty(&plan).context("encode plan")?,
    )
    .context("write plan.json")?;
    let mut opts = SwarmOptions::new(cfg.nodes);
    for (k, v) in &cfg.node_env {
        opts = opts.env(k, v);
    }
    let mut swarm = Swarm::start_with(opts).context("start the swarm")?;
    let _tracked = signals::Tracked::new(&swarm);
    let api = swarm.api(1)?;
    fixture::create_collection(&api, cfg.replication_factor.min(cfg.nodes as u32))?;
    for t in 0..cfg.tenants {
        api.ok_put("/collections/c/shards", &json!({"shard_key": tenant(t)}))?;
    }
    fixture::wait_identical(&api, cfg.heal_timeout).context("the tenants' shards at start")?;

    let history_path = dir.join("history.jsonl");
    let history = Arc::new(Recorder::create(&history_path)?);
    let clients = swarm
        .ids()
        .into_iter()
        .map(|id| NodeClient::new(id, swarm.node(id)?.http_addr, cfg.request_timeout))
        .collect::<Result<Vec<_>>>()?;
    let table = Table::new(&format!("s{}", cfg.seed));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + cfg.duration;
    let shared = Arc::new(Shared {
        clients,
        history: history.clone(),
        stop: stop.clone(),
        deadline,
    });
    let started = Instant::now();
    let workers = Workers::start(shared, cfg.tenants, cfg.seed);
    let mut incidents = Vec::new();
    let driven = drive(
        &mut swarm,
        &table,
        &plan,
        &history,
        deadline,
        &mut incidents,
    );
    let healed = heal_all(&mut swarm, &table);
    stop.store(true, Ordering::SeqCst);
    let joined = workers.join();
    let seconds = started.elapsed().as_secs_f64();
    history.flush()?;
    driven?;
    healed?;
    joined?;
    if signals::stopping() {
        bail!("interrupted");
    }

    let fin = read_final(&swarm, cfg.heal_timeout, &history, &mut incidents)?;
    history.flush()?;
    let events = history::read(&history_path)?;
    let all = history::ops(&events);
    let mut violations = check::check_all(&events, &fin);
    violations.extend(incidents);
    let durability = check::durability::check(&all, &fin);
    let isolation = check::isolation::check(&all, &fin);
    let mut figures = figures::measure(&events, &all, seconds);
    figures.acked_writes_lost = durability.lost;
    figures.acked_deletes_resurrected = durability.resurrected;
    figures.cross_tenant_results = isolation.cross_tenant;
    figures.divergent_replicas = fin.divergent.len();
    figures.violations = violations.len();
    let mut by_invariant = BTreeMap::new();
    for v in &violations {
        *by_invariant.entry(v.invariant.to_owned()).or_insert(0) += 1;
    }
    figures.stale_reads = by_invariant.get("stale_read").copied().unwrap_or(0);
    let report = RunReport {
        by_invariant,
        seed: cfg.seed,
        nodes: cfg.nodes,
        seconds: cfg.duration.as_secs(),
        nemesis: nemesis::list_name(&cfg.nemeses),
        command: cfg.command(),
        figures,
        violations: violations
            .iter()
            .take(MAX_LISTED)
            .map(|v| format!("{}: {}", v.invariant, v.detail))
            .collect(),
        dir: dir.display().to_string(),
    };
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&report).context("encode report")?,
    )
    .context("write report.json")?;
    if !report.clean() {
        keep_logs(&swarm, &dir);
    }
    Ok(report)
}

/// Sleeps `d` in slices, returning early when the runner is asked to stop.
fn nap(d: Duration) {
    let until = Instant::now() + d;
    for _ in 0..(d.as_millis() / 100 + 1) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || signals::stopping() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Plays the schedule: quiet, fault, hold, heal, step after step. A node that exits on its
/// own is an incident (a crash is a bug) and is started again.
fn drive(
    swarm: &mut Swarm,
    table: &Table,
    plan: &[Step],
    history: &Recorder,
    deadline: Instant,
    incidents: &mut Vec<Violation>,
) -> Result<()> {
    for (i, step) in plan.iter().enumerate() {
        nap(Duration::from_millis(step.quiet_ms));
        if signals::stopping() {
            return Ok(());
        }
        crashed(swarm, incidents)?;
        let (active, targets) = nemesis::inject(swarm, table, &step.fault)
            .with_context(|| format!("inject {:?}", step.fault))?;
        let head = Head {
            process: "nemesis",
            f: step.fault.name(),
            tenant: None,
            node: targets.first().copied(),
        };
        let fault = serde_json::to_value(&step.fault).context("encode fault")?;
        history.record(
            i as u64,
            Kind::Info,
            &head,
            json!({"phase": "start", "fault": fault, "targets": targets}),
        )?;
        nap(Duration::from_millis(step.hold_ms));
        nemesis::heal(swarm, table, &active).with_context(|| format!("heal {:?}", step.fault))?;
        signals::track(swarm);
        history.record(i as u64, Kind::Info, &head, json!({"phase": "healed"}))?;
    }
    // the workload runs to its deadline, faults or not
    nap(deadline.saturating_duration_since(Instant::now()));
    crashed(swarm, incidents)
}

fn crashed(swarm: &mut Swarm, incidents: &mut Vec<Violation>) -> Result<()> {
    if let Err(e) = swarm.check_alive() {
        incidents.push(Violation::new("crash", format!("{e:#}")));
        for id in swarm.ids() {
            if swarm.node(id)?.state == NodeState::Down {
                swarm.restart(id)?;
            }
        }
        signals::track(swarm);
    }
    Ok(())
}

/// Undoes whatever may still be in force: the table, paused and stopped nodes.
fn heal_all(swarm: &mut Swarm, table: &Table) -> Result<()> {
    table.heal()?;
    for id in swarm.ids() {
        match swarm.node(id)?.state {
            NodeState::Paused => swarm.resume(id)?,
            NodeState::Down => swarm.restart(id)?,
            NodeState::Running => {}
        }
    }
    signals::track(swarm);
    Ok(())
}

/// Reads the healed cluster: waits for it to settle and its replicas to converge (what still
/// differs at the end is kept), then every tenant's points through every node, and every
/// node's shard keys. What cannot be read is an incident.
fn read_final(
    swarm: &Swarm,
    within: Duration,
    history: &Recorder,
    incidents: &mut Vec<Violation>,
) -> Result<Final> {
    let mut fin = Final::default();
    if let Err(e) = swarm.wait_settled(within) {
        incidents.push(Violation::new("liveness", format!("after heal: {e:#}")));
    }
    let deadline = Instant::now() + within;
    for _ in 0..(within.as_millis() / 250 + 1) {
        match swarm.api(1).and_then(|a| fixture::divergent(&a)) {
            Ok(d) => fin.divergent = d,
            Err(e) => {
                fin.divergent = vec![json!({"error": format!("{e:#}")})];
            }
        }
        if fin.divergent.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let tenants: BTreeSet<String> = match swarm.api(1).and_then(|a| fixture::listed_keys(&a)) {
        Ok(k) => k.into_iter().filter(|k| k.starts_with("tenant-")).collect(),
        Err(e) => {
            incidents.push(Violation::new("liveness", format!("list keys: {e:#}")));
            BTreeSet::new()
        }
    };
    for id in swarm.ids() {
        let api = match swarm.api(id) {
            Ok(a) => a,
            Err(e) => {
                incidents.push(Violation::new("liveness", format!("node {id}: {e:#}")));
                continue;
            }
        };
        match fixture::listed_keys(&api) {
            Ok(k) => {
                note(history, "final_keys", None, id, json!(k))?;
                fin.keys_per_node.insert(id, k);
            }
            Err(e) => incidents.push(Violation::new(
                "liveness",
                format!("node {id} lists no keys after heal: {e:#}"),
            )),
        }
        let mut per_tenant = BTreeMap::new();
        for t in &tenants {
            match scroll_tenant(&api, t) {
                Ok(points) => {
                    let ids: BTreeSet<u64> =
                        points.iter().filter_map(|p| p["id"].as_u64()).collect();
                    note(history, "final_scroll", Some(t), id, json!(ids))?;
                    if !fin.points.contains_key(t) {
                        fin.points.insert(t.clone(), held(&points));
                    }
                    per_tenant.insert(t.clone(), ids);
                }
                Err(e) => {
                    fin.unread.insert(t.clone());
                    incidents.push(Violation::new(
                        "liveness",
                        format!("scroll of {t} through node {id} after heal: {e:#}"),
                    ))
                }
            }
        }
        fin.ids_per_node.insert(id, per_tenant);
    }
    Ok(fin)
}

/// Every point of tenant `t` with its payload, by pages of 50 (under any `max_limit` quota the
/// admin worker sets), bounded in pages.
pub fn scroll_tenant(api: &crate::Api, t: &str) -> Result<Vec<serde_json::Value>> {
    const PAGE: usize = 50;
    const MAX_PAGES: usize = 1000;
    let mut out = Vec::new();
    let mut offset = serde_json::Value::Null;
    for _ in 0..MAX_PAGES {
        let r = api.ok_post(
            "/collections/c/points/scroll",
            &json!({"limit": PAGE, "with_payload": true, "offset": offset, "shard_key": t}),
        )?;
        let points = r["points"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("scroll of {t} without points: {r}"))?;
        out.extend(points.iter().cloned());
        offset = r["next_page_offset"].clone();
        if offset.is_null() {
            return Ok(out);
        }
    }
    bail!("scroll of {t} did not end within {MAX_PAGES} pages")
}

/// The points of a scroll as the checker takes them: per id, its payload's version and tenant.
pub fn held(points: &[serde_json::Value]) -> BTreeMap<u64, check::Held> {
    points
        .iter()
        .filter_map(|p| {
            let payload = &p["payload"];
            Some((
                p["id"].as_u64()?,
                (
                    payload["v"].as_u64(),
                    payload["tenant"].as_str().map(str::to_owned),
                ),
            ))
        })
        .collect()
}

/// Records what a read of the healed cluster returned (process `final`, kind info).
fn note(
    history: &Recorder,
    f: &str,
    tenant: Option<&str>,
    node: u64,
    value: serde_json::Value,
) -> Result<()> {
    let head = Head {
        process: "final",
        f,
        tenant,
        node: Some(node),
    };
    history.record(0, Kind::Info, &head, value)
}

/// Copies the nodes' logs next to the history.
fn keep_logs(swarm: &Swarm, dir: &Path) {
    for id in swarm.ids() {
        if let Ok(n) = swarm.node(id) {
            let _ = std::fs::copy(&n.log_path, dir.join(format!("node-{id}.log")));
        }
    }
}
