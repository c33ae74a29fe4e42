//! A batch of runs, `parallel` at a time, and its summary (JSON and a markdown table).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use serde_json::json;
use tessera_chaos::figures::quantile;
use tessera_chaos::run::{RunConfig, RunReport};

/// Runs every config, `parallel` at once; the results in config order.
pub fn run_batch(
    configs: &[RunConfig],
    parallel: usize,
    one: impl Fn(&RunConfig) -> Result<RunReport> + Sync,
) -> Vec<Result<RunReport>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunReport>>>> =
        Mutex::new((0..configs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallel.min(configs.len()) {
            s.spawn(|| {
                for _ in 0..configs.len() {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(cfg) = configs.get(i) else { return };
                    if tessera_chaos::signals::stopping() {
                        return;
                    }
                    let r = one(cfg);
                    if let Some(slot) = results.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i)
                    {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .zip(configs)
        .map(|(r, c)| {
            r.unwrap_or_else(|| Err(anyhow::anyhow!("seed {} not run (stopped)", c.seed)))
        })
        .collect()
}

/// A duration in ms for the table, `-` when there is none.
pub fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{:.0} ms", x))
}

/// Writes `summary.json` and `summary.md` into `out`; their paths.
pub fn write_summary(
    out: &Path,
    configs: &[RunConfig],
    results: &[Result<RunReport>],
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let reports: Vec<&RunReport> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let sum = |f: fn(&RunReport) -> usize| reports.iter().map(|r| f(r)).sum::<usize>();
    let failovers: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.figures.failover_ms.iter().copied())
        .collect();
    let first = configs.first();
    let summary = json!({
        "runs": configs.len(),
        "made": reports.len(),
        "clean": reports.iter().filter(|r| r.clean()).count(),
        "nodes": first.map(|c| c.nodes),
        "seconds_each": first.map(|c| c.duration.as_secs()),
        "seeds": configs.iter().map(|c| c.seed).collect::<Vec<_>>(),
        "acked_writes_lost": sum(|r| r.figures.acked_writes_lost),
        "acked_deletes_resurrected": sum(|r| r.figures.acked_deletes_resurrected),
        "cross_tenant_results": sum(|r| r.figures.cross_tenant_results),
        "divergent_replicas": sum(|r| r.figures.divergent_replicas),
        "stale_reads": sum(|r| r.figures.stale_reads),
        "violations": sum(|r| r.figures.violations),
        "faults": sum(|r| r.figures.faults),
        "failover_p50_ms": quantile(&failovers, 0.5),
        "failover_p99_ms": quantile(&failovers, 0.99),
        "reports": reports,
        "not_made": results.iter().zip(configs).filter_map(|(r, c)| r.as_ref().err().map(|e| json!({"seed": c.seed, "error": format!("{e:#}")}))).collect::<Vec<_>>(),
    });
    let json_path = out.join("summary.json");
    std::fs::write(
        &json_path,
        serde_json::to_vec_pretty(&summary).context("encode summary")?,
    )
    .context("write summary.json")?;
    let mut md = String::from(
        "| seed | result | acked writes lost | deletes resurrected | cross-tenant results | divergent replicas | stale reads | violations | faults | ops ok/fail/unknown | ops/s | min tenant availability during faults | failover p50 | failover p99 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (r, c) in results.iter().zip(configs) {
        match r {
            Ok(r) => {
                let f = &r.figures;
                md += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{}/{} | {:.1} | {:.1}% | {} | {} |\n",
                    r.seed,
                    if r.clean() { "clean" } else { "**violations**" },
                    f.acked_writes_lost,
                    f.acked_deletes_resurrected,
                    f.cross_tenant_results,
                    f.divergent_replicas,
                    f.stale_reads,
                    f.violations,
                    f.faults,
                    f.ops_ok,
                    f.ops_fail,
                    f.ops_unknown,
                    f.ops_per_s,
                    f.min_availability,
                    ms(f.failover_p50_ms),
                    ms(f.failover_p99_ms),
                );
            }
            Err(e) => {
                md += &format!(
                    "| {} | not made: {} | | | | | | | | | | | | |\n",
                    c.seed,
                    format!("{e:#}").lines().next().unwrap_or("")
                )
            }
        }
    }
    md += &format!(
        "| **all** | {}/{} clean | {} | {} | {} | {} | {} | {} | {} | | | | {} | {} |\n",
        reports.iter().filter(|r| r.clean()).count(),
        configs.len(),
        sum(|r| r.figures.acked_writes_lost),
        sum(|r| r.figures.acked_deletes_resurrected),
        sum(|r| r.figures.cross_tenant_results),
        sum(|r| r.figures.divergent_replicas),
        sum(|r| r.figures.stale_reads),
        sum(|r| r.figures.violations),
        sum(|r| r.figures.faults),
        ms(quantile(&failovers, 0.5)),
        ms(quantile(&failovers, 0.99)),
    );
    let md_path = out.join("summary.md");
    std::fs::write(&md_path, &md).context("write summary.md")?;
    Ok((json_path, md_path))
}
