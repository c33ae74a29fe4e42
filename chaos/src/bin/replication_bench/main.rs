//! Replicated writes and failover on a local 3-node swarm of real `tessera` processes (QUIC with
//! mutual TLS on loopback). A benchmark command, not a test: it prints `FIGURE` lines, and exits
//! 1 when a check fails (an acknowledged write missing, replicas that do not converge, a
//! failover that never happens), 2 when the swarm itself could not be driven.
//!
//! ```sh
//! cargo build --release -p tessera-node --bin tessera -p tessera-chaos --bin replication_bench
//! TESSERA_BIN=target/release/tessera target/release/replication_bench [--kills 20] [--writes 300]
//!     [--clients 4] [--client-writes 150] [--keys 3] [--dim 128] [--writer-pause-ms 2]
//!     [--victim primary|backup] [--failover-rf 2|3] [--only writes|failover|transfer] [--keep]
//!     [--transfer-points 100000] [--transfer-rate 64]
//! ```
//!
//! 1. **Writes** for replication_factor 1, 2 and 3, each in a custom-sharded collection of its own
//!    with `--keys` shard keys: `--writes` sequential `wait=true` upserts of 1 point, then of 16
//!    points, sent through every node in turn and over the keys in turn; then `--clients`
//!    threads, each sending `--client-writes` upserts of 16 points through one node. p50/p99
//!    latency and throughput per RF, and the p50 ratios RF2/RF1 and RF3/RF1. Then every count
//!    must match what was acknowledged and every shard's replicas must be Active with equal
//!    digests.
//! 2. **Failover**, `--kills` times, in an RF 2 collection (`--failover-rf 3`: RF 3): the primary
//!    of one shard key (from `GET /admin/collections/{c}/replicas`) is killed with SIGKILL while a
//!    writer upserts one point at a time (`wait=true`) to that key through another node, retrying
//!    a refused point until it is acknowledged. Before each kill every node must reach every
//!    other (`/cluster`) and every replica must be Active. Failover time: from the kill (the
//!    process reaped) to the acknowledgement of the first write *sent* after it. The killed node
//!    is restarted; recovery time: from the restart to every replica of the collection Active
//!    again and every node reaching the restarted one (with the slowest write meanwhile); then
//!    the writer stops and the replicas must reach equal digests and sizes. At the end every
//!    acknowledged id must be there, and nothing else. With `--victim backup` the shard's backup
//!    is killed instead: the figure is then the write stall while the primary drops it from the
//!    in-sync set, and the primary must stay in its epoch.
//!
//! 3. **Transfer** (`--only transfer`, a swarm of its own with `--replica-timeout 10`): a shard
//!    key of `--transfer-points` points on one node, indexed; while one client searches it
//!    without pause, `replicate_shard` copies it to a second node: points/s and MiB/s of the
//!    copy, and search p50/p99 before and during it. Then the second node is killed: the time
//!    from the replica timeout's end to the shard's replica rebuilt Active on the third node.
//!
//! Every loop is bounded in count and in time.
#![allow(clippy::print_stdout)]

mod common;
mod failover;
mod transfer;
mod writes;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use tessera_chaos::{Swarm, SwarmOptions};

const NODES: usize = 3;
/// Upserts before each timed phase, not counted.
const WARMUP_WRITES: usize = 20;
/// How long a collection's replicas may take to become Active with equal digests.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a failover may take before it counts as failed.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restarted node's replicas may take to be Active again.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);
/// How many writes the writer must have had acknowledged before the kill, and within how long.
const WRITER_WARM: usize = 5;
const WRITER_WARM_TIMEOUT: Duration = Duration::from_secs(20);
/// A writer stops by itself after this long or this many attempts, whatever the main thread does.
const WRITER_MAX_TIME: Duration = Duration::from_secs(300);
const WRITER_MAX_ATTEMPTS: usize = 200_000;
/// How long a stopping writer retries the point it had not got acknowledged yet.
const WRITER_FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause of the writer after a refused write.
const WRITER_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Bound on one phase of concurrent clients.
const CLIENTS_MAX_TIME: Duration = Duration::from_secs(300);
/// Polling interval of the waits.
const POLL: Duration = Duration::from_millis(5);
const SLOW_POLL: Duration = Duration::from_millis(100);
/// Most points one scroll page asks for, and most pages.
const SCROLL_PAGE: usize = 1000;
const SCROLL_MAX_PAGES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    Writes,
    Failover,
    Transfer,
}

#[derive(Debug, Clone)]
struct Config {
    kills: usize,
    writes: usize,
    clients: usize,
    client_writes: usize,
    keys: usize,
    dim: usize,
    writer_pause: Duration,
    /// Kill the shard's backup instead of its primary.
    kill_backup: bool,
    /// replication_factor of the failover collection.
    failover_rf: u32,
    only: Only,
    keep: bool,
    /// Points of the shard the transfer phase copies.
    transfer_points: usize,
    /// `--transfer-rate` of the nodes in the transfer phase (MiB/s).
    transfer_rate: usize,
}

impl Config {
    fn parse(args: impl Iterator<Item = String>) -> Result<Config> {
        let mut c = Config {
            kills: 20,
            writes: 300,
            clients: 4,
            client_writes: 150,
            keys: 3,
            dim: 128,
            writer_pause: Duration::from_millis(2),
            kill_backup: false,
            failover_rf: 2,
            only: Only::All,
            keep: false,
            transfer_points: 100_000,
            transfer_rate: 64,
        };
        let mut args = args;
        while let Some(a) = args.next() {
            let mut value = |name: &str| -> Result<usize> {
                let v = args.next().ok_or_else(|| anyhow!("{name} needs a value"))?;
                v.parse::<usize>()
                    .with_context(|| format!("{name} {v}: not a count"))
            };
            match a.as_str() {
                "--kills" => c.kills = value("--kills")?,
                "--writes" => c.writes = value("--writes")?,
                "--clients" => c.clients = value("--clients")?,
                "--client-writes" => c.client_writes = value("--client-writes")?,
                "--keys" => c.keys = value("--keys")?,
                "--dim" => c.dim = value("--dim")?,
                "--writer-pause-ms" => {
                    c.writer_pause = Duration::from_millis(value("--writer-pause-ms")? as u64)
                }
                "--only" => {
                    let v = args.next().unwrap_or_default();
                    c.only = match v.as_str() {
                        "writes" => Only::Writes,
                        "failover" => Only::Failover,
                        "transfer" => Only::Transfer,
                        _ => bail!("--only takes writes, failover or transfer, not {v:?}"),
                    }
                }
                "--victim" => {
                    let v = args.next().unwrap_or_default();
                    c.kill_backup = match v.as_str() {
                        "primary" => false,
                        "backup" => true,
                        _ => bail!("--victim takes primary or backup, not {v:?}"),
                    }
                }
                "--failover-rf" => {
                    c.failover_rf = match value("--failover-rf")? {
                        2 => 2,
                        3 => 3,
                        n => bail!("--failover-rf takes 2 or 3, not {n}"),
                    }
                }
                "--keep" => c.keep = true,
                "--transfer-points" => c.transfer_points = value("--transfer-points")?,
                "--transfer-rate" => c.transfer_rate = value("--transfer-rate")?,
                "-h" | "--help" => bail!(
                    "usage: replication_bench [--kills N] [--writes N] [--clients N] \
                     [--client-writes N] [--keys N] [--dim N] [--writer-pause-ms N] \
                     [--victim primary|backup] [--failover-rf 2|3] [--only writes|failover|transfer] [--keep] \
                     [--transfer-points N] [--transfer-rate MIB_PER_S]"
                ),
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        ensure!((1..=10_000).contains(&c.kills), "--kills must be 1..=10000");
        ensure!(
            (1..=100_000).contains(&c.writes),
            "--writes must be 1..=100000"
        );
        ensure!((1..=64).contains(&c.clients), "--clients must be 1..=64");
        ensure!(
            (1..=100_000).contains(&c.client_writes),
            "--client-writes must be 1..=100000"
        );
        ensure!((1..=100).contains(&c.keys), "--keys must be 1..=100");
        ensure!((1..=4096).contains(&c.dim), "--dim must be 1..=4096");
        Ok(c)
    }
}

/// Checks that failed; the run goes on, and exits 1 at the end.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        if ok {
            println!("CHECK ok {what}");
        } else {
            println!("CHECK FAILED {what}");
            self.failed.push(what);
        }
    }
}

fn main() -> ExitCode {
    let cfg = match Config::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("replication_bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(checks) if checks.failed.is_empty() => {
            println!("RESULT ok: every check passed");
            ExitCode::SUCCESS
        }
        Ok(checks) => {
            println!("RESULT FAILED: {} check(s):", checks.failed.len());
            for f in &checks.failed {
                println!("  - {f}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            println!("RESULT ERROR: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cfg: &Config) -> Result<Checks> {
    if std::env::var_os("TESSERA_BIN").is_none() {
        bail!(
            "set TESSERA_BIN to a release build (TESSERA_BIN=target/release/tessera): \
             without it the harness runs target/debug/tessera"
        );
    }
    let mut opts = SwarmOptions::new(NODES).keep_root(cfg.keep);
    if cfg.only == Only::Transfer {
        // a lost node's replicas are rebuilt after this long (the rebuild figure)
        opts = opts
            .arg("--replica-timeout")
            .arg(&transfer::REPLICA_TIMEOUT.as_secs().to_string())
            .arg("--transfer-rate")
            .arg(&cfg.transfer_rate.to_string());
    }
    let mut swarm = Swarm::start_with(opts).context("start a 3-node swarm")?;
    println!(
        "replication_bench: {NODES} nodes of {} on loopback (QUIC, mutual TLS), {} shard keys per \
         collection, {}-d vectors; {}",
        swarm.bin().display(),
        cfg.keys,
        cfg.dim,
        machine_note()
    );
    let mut checks = Checks::default();
    let outcome = (|| -> Result<()> {
        if cfg.only == Only::Transfer {
            return transfer::transfer_phase(&mut swarm, cfg, &mut checks);
        }
        if cfg.only != Only::Failover {
            writes::writes_phase(&swarm, cfg, &mut checks)?;
        }
        if cfg.only != Only::Writes {
            failover::failover_phase(&mut swarm, cfg, &mut checks)?;
        }
        Ok(())
    })();
    if outcome.is_err() || !checks.failed.is_empty() {
        eprintln!("{}", swarm.log_tails());
    }
    outcome.map(|()| checks)
}

fn machine_note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    format!("{cores} cores, load average {load} at the start")
}
