//! The chaos runner: seeded runs of a real tessera swarm under nemeses, each checked.
//!
//! ```text
//! cargo run -p tessera-chaos --release -- run --nodes 3 --minutes 5 --seed 1 \
//!     --nemesis kill,pause,restart,leader,partition,isolate,oneway,bridge
//! cargo run -p tessera-chaos --release -- run --nodes 3 --minutes 5 --seed 1 --runs 100 --parallel 2 --nemesis all
//! ```
//!
//! The nodes are `target/debug/tessera` (or `$TESSERA_BIN`): build it first with
//! `cargo build -p tessera-node --bin tessera`. Exit status 0 when every run is clean, 1 when
//! any run violated an invariant, 2 when a run could not be made.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use tessera_chaos::nemesis;
use tessera_chaos::run::{RunConfig, RunReport, run};

mod batch;

#[derive(Parser)]
#[command(
    name = "tessera-chaos",
    about = "seeded chaos runs of a real tessera swarm"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One run, or a batch of `--runs` runs with seeds seed, seed+1, ...
    Run(RunArgs),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Length of each run in minutes (or use --seconds).
    #[arg(long, conflicts_with = "seconds")]
    minutes: Option<u64>,
    /// Length of each run in seconds.
    #[arg(long)]
    seconds: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Comma list of kill, pause, restart, leader, partition, isolate, oneway, bridge; or all.
    #[arg(long, default_value = "kill,pause,partition")]
    nemesis: String,
    /// Tenants (shard keys), one worker each.
    #[arg(long, default_value_t = 6)]
    tenants: usize,
    #[arg(long, default_value_t = 2)]
    replication_factor: u32,
    /// How many seeded runs.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// How many runs at once (each its own swarm, ports and data dirs).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Where histories, reports and the batch summary go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
}

impl RunArgs {
    fn config(&self, seed: u64) -> Result<RunConfig> {
        let secs = match (self.minutes, self.seconds) {
            (Some(m), _) => m * 60,
            (None, Some(s)) => s,
            (None, None) => 60,
        };
        if secs < 10 {
            bail!("a run lasts at least 10 s");
        }
        let mut cfg = RunConfig::new(
            self.nodes,
            Duration::from_secs(secs),
            seed,
            nemesis::parse_list(&self.nemesis)?,
        );
        cfg.tenants = self.tenants;
        cfg.replication_factor = self.replication_factor;
        cfg.out = self.out.clone();
        Ok(cfg)
    }
}

fn print_report(r: &RunReport) {
    let f = &r.figures;
    println!(
        "seed {}: {} | lost {} resurrected {} cross-tenant {} divergent {} | ops ok {} fail {} unknown {} ({:.1}/s) | faults {} | min availability {:.1}% | failover p50 {} p99 {}",
        r.seed,
        if r.clean() { "clean" } else { "VIOLATIONS" },
        f.acked_writes_lost,
        f.acked_deletes_resurrected,
        f.cross_tenant_results,
        f.divergent_replicas,
        f.ops_ok,
        f.ops_fail,
        f.ops_unknown,
        f.ops_per_s,
        f.faults,
        f.min_availability,
        batch::ms(f.failover_p50_ms),
        batch::ms(f.failover_p99_ms),
    );
    if !r.by_invariant.is_empty() {
        println!("  violations by invariant: {:?}", r.by_invariant);
    }
    for v in r.violations.iter().take(10) {
        println!("  {v}");
    }
    println!("  history and report: {}", r.dir);
    println!("  reproduce: {}", r.command);
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Run(args) => match run_all(&args) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("tessera-chaos: {e:#}");
                2
            }
        },
    };
    std::process::exit(code);
}

/// Every run of the batch; whether all were clean.
fn run_all(args: &RunArgs) -> Result<bool> {
    tessera_chaos::signals::install()?;
    match tessera_chaos::net::clean_stale() {
        Ok(removed) if !removed.is_empty() => {
            println!("removed stale nftables tables of dead runners: {removed:?}")
        }
        Ok(_) => {}
        // without nft only the process nemeses can run; a network one fails in its run
        Err(e) => eprintln!("tessera-chaos: could not look for stale nftables tables: {e:#}"),
    }
    match tessera_chaos::swarm::orphans::clean_orphans() {
        Ok(c) if !c.killed.is_empty() || !c.roots.is_empty() => println!(
            "stopped nodes {:?} of dead runners and deleted their roots {:?}",
            c.killed, c.roots
        ),
        Ok(_) => {}
        Err(e) => eprintln!("tessera-chaos: could not look for nodes of dead runners: {e:#}"),
    }
    let seeds: Vec<u64> = (0..args.runs.max(1)).map(|i| args.seed + i).collect();
    let configs = seeds
        .iter()
        .map(|s| args.config(*s))
        .collect::<Result<Vec<_>>>()?;
    let results = batch::run_batch(&configs, args.parallel.max(1), |cfg| {
        let r = run(cfg);
        match &r {
            Ok(report) => print_report(report),
            Err(e) => println!(
                "seed {}: could not run: {e:#}\n  reproduce: {}",
                cfg.seed,
                cfg.command()
            ),
        }
        r
    });
    if configs.len() > 1 {
        let (json, md) = batch::write_summary(&args.out, &configs, &results)?;
        println!("summary: {} and {}", json.display(), md.display());
        println!("{}", std::fs::read_to_string(&md).unwrap_or_default());
    }
    let errors = results.iter().filter(|r| r.is_err()).count();
    if errors > 0 {
        bail!("{errors} run(s) could not be made");
    }
    Ok(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(RunReport::clean)))
}
