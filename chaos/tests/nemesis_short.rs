//! The short chaos suite CI runs: 3 seeded runs of 60 s on 3 nodes under kill -9, SIGSTOP and
//! real network partitions (nftables), each checked by every invariant of the checker
//! (`tessera_chaos::check`). It fails on any violation, except those of the invariants listed in
//! [`OPEN_BUGS`], which are printed with their seeds (see docs/reliability.md). Without nftables
//! or root it fails, saying so: it never skips.
//!
//! The same runs by hand: `cargo run -p tessera-chaos --release -- run --nodes 3 --seconds 60
//! --seed 1 --runs 3 --nemesis kill,pause,partition`.

use std::time::Duration;

use anyhow::{Result, ensure};
use tessera_chaos::nemesis::Nemesis;
use tessera_chaos::run::{RunConfig, run};

/// Invariants a known, open tessera bug still violates; their violations are reported, not
/// failed on (docs/reliability.md). None now: `stale_read` was listed until nodes
/// confirmed their metadata with the leader's read index before serving a read.
const OPEN_BUGS: &[&str] = &[];
const SEEDS: [u64; 3] = [1, 2, 3];
const SECONDS: u64 = 60;

#[test]
fn three_seeded_runs_under_kill_pause_and_partition_violate_no_invariant() -> Result<()> {
    tessera_chaos::net::require_nft()?;
    tessera_chaos::net::clean_stale()?;
    tessera_chaos::swarm::orphans::clean_orphans()?;
    let nemeses = vec![Nemesis::Kill, Nemesis::Pause, Nemesis::Partition];
    let mut failures = Vec::new();
    let mut faults = 0;
    for seed in SEEDS {
        let mut cfg = RunConfig::new(3, Duration::from_secs(SECONDS), seed, nemeses.clone());
        cfg.out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nemesis_short");
        let r = run(&cfg)?;
        let f = &r.figures;
        tessera_tests::log_phase(format_args!(
            "FIGURE seed {seed}: lost {} resurrected {} cross-tenant {} divergent {} | violations {:?} | faults {} | ops ok {} fail {} unknown {} ({:.0}/s) | min availability {:.1}% | failover p50 {:?} p99 {:?} ms | {}",
            f.acked_writes_lost,
            f.acked_deletes_resurrected,
            f.cross_tenant_results,
            f.divergent_replicas,
            r.by_invariant,
            f.faults,
            f.ops_ok,
            f.ops_fail,
            f.ops_unknown,
            f.ops_per_s,
            f.min_availability,
            f.failover_p50_ms.map(|x| x.round()),
            f.failover_p99_ms.map(|x| x.round()),
            r.dir
        ));
        faults += f.faults;
        ensure!(f.ops_ok > 0, "seed {seed}: no operation succeeded");
        let hard: Vec<&String> = r
            .by_invariant
            .keys()
            .filter(|k| !OPEN_BUGS.contains(&k.as_str()))
            .collect();
        if !hard.is_empty() {
            let listed: Vec<&String> = r
                .violations
                .iter()
                .filter(|v| !OPEN_BUGS.iter().any(|b| v.starts_with(b)))
                .take(10)
                .collect();
            failures.push(format!(
                "seed {seed} violates {hard:?}: {listed:#?}\n  history: {}\n  reproduce: {}",
                r.dir, r.command
            ));
        }
    }
    ensure!(faults > 0, "no fault was injected in {} runs", SEEDS.len());
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
