//! HNSW core benchmark: build with hnsw_rs, extract, then measure recall@k and single-thread QPS
//! of the compact search over a range of `ef`, plus brute force.
//!
//! ```text
//! cargo run --release -p tessera-index --bin index-bench -- --data <dir> \
//!     [--metric cosine|dot|euclid] [--m 16] [--ef-construct 100] [--k 10] \
//!     [--efs 16,32,64,128,256] [--reps 5] [--csv <file>] [--graph-cache <file>] \
//!     [--hnsw-rs] [--kernels]
//! ```
//! `<dir>` holds base.fvecs, query.fvecs and groundtruth.ivecs (ground truth by the metric).
//! QPS is queries over the fastest of `--reps` passes over all queries, by thread CPU time (and by
//! wall time in the last column); recall comes from the first pass.
//! * `--csv` writes `engine,ef,recall,qps,qps_wall` rows (bench/run.sh reads them);
//! * `--graph-cache` loads the graph from the file if it exists (through `from_bytes`), else
//!   builds it and saves it there (`to_bytes`);
//! * `--hnsw-rs` also times hnsw_rs's own search, on a second graph built with its `DistDot`
//!   (unit-length data only);
//! * `--kernels` times the distance kernels on data in cache;
//! * environment `INDEX_BENCH_NO_BRUTE=1` skips brute force.
#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use hnsw_rs::prelude::{DistDot, Hnsw};
use tessera_index::{CompactGraph, DEFAULT_EF, GraphParams, Metric, brute_force};

struct Args {
    data: PathBuf,
    metric: Metric,
    params: GraphParams,
    k: usize,
    efs: Vec<usize>,
    reps: usize,
    csv: Option<PathBuf>,
    hnsw_rs: bool,
    kernels: bool,
    graph_cache: Option<PathBuf>,
}

const USAGE: &str = "usage: index-bench --data <dir> [--metric cosine|dot|euclid] [--m 16] \
[--ef-construct 100] [--k 10] [--efs 16,32,64,128,256] [--reps 5] [--csv <file>] [--hnsw-rs] [--kernels] [--graph-cache <file>]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        data: PathBuf::new(),
        metric: Metric::Cosine,
        params: GraphParams::default(),
        k: 10,
        efs: vec![16, 32, 64, 128, 256],
        reps: 5,
        csv: None,
        hnsw_rs: false,
        kernels: false,
        graph_cache: None,
    };
    let mut have_data = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--hnsw-rs" {
            a.hnsw_rs = true;
            continue;
        }
        if flag == "--kernels" {
            a.kernels = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let val = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<usize>()
                .map_err(|e| format!("bad value {v:?} for {flag}: {e}"))
        };
        match flag.as_str() {
            "--data" => {
                a.data = PathBuf::from(&val);
                have_data = true;
            }
            "--metric" => {
                a.metric = match val.as_str() {
                    "cosine" => Metric::Cosine,
                    "dot" => Metric::Dot,
                    "euclid" => Metric::Euclid,
                    _ => return Err(format!("unknown metric {val:?}")),
                }
            }
            "--m" => a.params.m = num(&val)?,
            "--ef-construct" => a.params.ef_construct = num(&val)?,
            "--k" => a.k = num(&val)?,
            "--reps" => a.reps = num(&val)?.max(1),
            "--efs" => {
                a.efs = val
                    .split(',')
                    .map(|s| num(s.trim()))
                    .collect::<Result<_, _>>()?
            }
            "--csv" => a.csv = Some(PathBuf::from(&val)),
            "--graph-cache" => a.graph_cache = Some(PathBuf::from(&val)),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if !have_data {
        return Err(USAGE.to_string());
    }
    Ok(a)
}

/// Reads an .fvecs/.ivecs file: per row, an i32 dimension then that many 4-byte values.
fn read_vecs(path: &Path) -> Result<(Vec<[u8; 4]>, usize), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut words = bytes
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .peekable();
    let dim = match words.peek() {
        Some(w) => usize::try_from(i32::from_le_bytes(*w))
            .map_err(|_| format!("{}: negative dimension", path.display()))?,
        None => return Ok((Vec::new(), 0)),
    };
    if dim == 0 || bytes.len() % (4 * (dim + 1)) != 0 {
        return Err(format!("{}: ragged file", path.display()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4);
    while let Some(d) = words.next() {
        if usize::try_from(i32::from_le_bytes(d)).ok() != Some(dim) {
            return Err(format!("{}: mixed dimensions", path.display()));
        }
        out.extend(words.by_ref().take(dim));
    }
    Ok((out, dim))
}

fn fvecs(path: &Path) -> Result<(Vec<f32>, usize), String> {
    let (w, d) = read_vecs(path)?;
    Ok((w.into_iter().map(f32::from_le_bytes).collect(), d))
}

fn ivecs(path: &Path) -> Result<(Vec<u32>, usize), String> {
    let (w, d) = read_vecs(path)?;
    let ids = w
        .into_iter()
        .map(|x| u32::try_from(i32::from_le_bytes(x)).map_err(|_| "negative id".to_string()))
        .collect::<Result<_, _>>()?;
    Ok((ids, d))
}

struct Row {
    engine: &'static str,
    ef: usize,
    recall: f64,
    /// from thread CPU time (robust to other processes on the machine)
    qps: f64,
    /// from wall-clock time
    qps_wall: f64,
}

/// Best (fastest) pass of a measurement, in CPU time and in wall time.
struct Timing {
    recall: f64,
    qps: f64,
    qps_wall: f64,
}

/// Runs `search` over all queries `reps` times; recall from the first pass, QPS from the fastest
/// pass (by thread CPU time, and separately by wall time).
fn measure(
    queries: &[f32],
    dim: usize,
    gt: &[u32],
    gt_k: usize,
    k: usize,
    reps: usize,
    mut search: impl FnMut(&[f32]) -> Vec<u32>,
) -> Timing {
    let nq = queries.len() / dim;
    let mut hits = 0usize;
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    for rep in 0..reps {
        let t = Instant::now();
        let c = ThreadTime::now();
        for (qi, q) in queries.chunks_exact(dim).enumerate() {
            let res = search(q);
            if rep == 0 {
                let truth: HashSet<u32> = gt[qi * gt_k..qi * gt_k + k].iter().copied().collect();
                hits += res.iter().take(k).filter(|id| truth.contains(id)).count();
            }
            std::hint::black_box(&res);
        }
        best_cpu = best_cpu.min(c.elapsed());
        best = best.min(t.elapsed());
    }
    Timing {
        recall: hits as f64 / (nq * k) as f64,
        qps: nq as f64 / best_cpu.as_secs_f64().max(1e-9),
        qps_wall: nq as f64 / best.as_secs_f64().max(1e-9),
    }
}

fn run(a: Args) -> Result<(), String> {
    let (base, dim) = fvecs(&a.data.join("base.fvecs"))?;
    let (queries, qdim) = fvecs(&a.data.join("query.fvecs"))?;
    let (gt, gt_k) = ivecs(&a.data.join("groundtruth.ivecs"))?;
    let n = base.len() / dim.max(1);
    let nq = queries.len() / qdim.max(1);
    if qdim != dim || gt.len() / gt_k.max(1) != nq || gt_k < a.k {
        return Err("query / ground truth files do not match the base".into());
    }
    println!(
        "## HNSW core: {} ({} base x {}-d, {} queries), metric {:?}, M={}, ef_construct={}, k={}",
        a.data
            .file_name()
            .map_or("?".into(), |s| s.to_string_lossy()),
        n,
        dim,
        nq,
        a.metric,
        a.params.m,
        a.params.ef_construct,
        a.k
    );
    println!(
        "threads: rayon {} for build, 1 for search; best of {} passes over all queries",
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        a.reps
    );

    if a.kernels {
        kernel_bench(&base, dim);
    }
    let cached = match &a.graph_cache {
        Some(p) if p.exists() => {
            let t = Instant::now();
            let bytes = std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()))?;
            let g = CompactGraph::from_bytes(&bytes).map_err(|e| format!("load graph: {e}"))?;
            if g.len() != n || g.dim() != dim || g.metric() != a.metric {
                return Err(format!("{} holds a different graph", p.display()));
            }
            println!(
                "graph loaded from cache ({} bytes) in {:.3} s: build time not measured",
                bytes.len(),
                t.elapsed().as_secs_f64()
            );
            Some(g)
        }
        _ => None,
    };
    let g = match cached {
        Some(g) => g,
        None => {
            let t = Instant::now();
            let (g, stats) = CompactGraph::build_with_stats(&base, dim, a.metric, a.params, 0)
                .map_err(|e| format!("build: {e}"))?;
            let total = t.elapsed();
            println!(
                "build: hnsw_rs insert {:.2} s, extraction {:.3} s, drop hnsw_rs {:.3} s, total {:.2} s ({:.1} ms per 1000 vectors)",
                stats.hnsw_insert.as_secs_f64(),
                stats.extract.as_secs_f64(),
                stats.drop_hnsw.as_secs_f64(),
                total.as_secs_f64(),
                total.as_secs_f64() * 1e6 / n.max(1) as f64
            );
            if let Some(p) = &a.graph_cache {
                std::fs::write(p, g.to_bytes())
                    .map_err(|e| format!("write {}: {e}", p.display()))?;
            }
            g
        }
    };
    let mem = g.memory_bytes();
    println!(
        "index memory: {} bytes, {:.0} bytes/vector (raw vectors {} bytes/vector); layers above 0: {}; layer-0 links/node {:.1}; reachable from entry {}/{}",
        mem,
        mem as f64 / n.max(1) as f64,
        dim * 4,
        g.max_level(),
        (0..n as u32).map(|i| g.neighbors(i).len()).sum::<usize>() as f64 / n.max(1) as f64,
        g.reachable_from_entry(),
        n
    );

    let mut rows = Vec::new();
    let accept_all = |_: u32| true;
    let mut push = |engine: &'static str, ef: usize, t: Timing| {
        rows.push(Row {
            engine,
            ef,
            recall: t.recall,
            qps: t.qps,
            qps_wall: t.qps_wall,
        })
    };
    for &ef in &a.efs {
        let t = measure(&queries, dim, &gt, gt_k, a.k, a.reps, |q| {
            g.search(q, a.k, ef, &accept_all)
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        });
        push("tessera", ef, t);
    }
    if std::env::var_os("INDEX_BENCH_NO_BRUTE").is_none() {
        let t = measure(&queries, dim, &gt, gt_k, a.k, a.reps.min(2), |q| {
            brute_force(&base, dim, a.metric, q, a.k, &accept_all)
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        });
        push("brute", 0, t);
    }

    if a.hnsw_rs {
        let t = Instant::now();
        let h: Hnsw<'static, f32, DistDot> =
            Hnsw::new(a.params.m, n, 16, a.params.ef_construct, DistDot);
        let mut flushed = base.clone();
        for row in flushed.chunks_exact_mut(dim) {
            tessera_index::flush_tiny_components(row);
        }
        let rows_in: Vec<(&[f32], usize)> = flushed.chunks_exact(dim).zip(0..).collect();
        h.parallel_insert_slice(&rows_in);
        println!("hnsw_rs (DistDot) build {:.2} s", t.elapsed().as_secs_f64());
        let mut fq = queries.clone();
        for row in fq.chunks_exact_mut(dim) {
            tessera_index::flush_tiny_components(row);
        }
        for &ef in &a.efs {
            let t = measure(&fq, dim, &gt, gt_k, a.k, a.reps.min(2), |q| {
                h.search(q, a.k, ef)
                    .into_iter()
                    .map(|nb| nb.d_id as u32)
                    .collect()
            });
            push("hnsw_rs", ef, t);
        }
    }

    println!();
    println!(
        "| engine | ef | recall@{} | QPS (1 thread, CPU time) | us/query | QPS (wall) |",
        a.k
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let ef = if r.engine.starts_with("brute") {
            "-".to_string()
        } else {
            r.ef.to_string()
        };
        println!(
            "| {} | {} | {:.4} | {:.0} | {:.1} | {:.0} |",
            r.engine,
            ef,
            r.recall,
            r.qps,
            1e6 / r.qps,
            r.qps_wall
        );
    }
    println!("DEFAULT_EF = {DEFAULT_EF}");
    if let Some(path) = &a.csv {
        let mut s = String::from("engine,ef,recall,qps,qps_wall\n");
        for r in &rows {
            s.push_str(&format!(
                "{},{},{:.5},{:.1},{:.1}\n",
                r.engine, r.ef, r.recall, r.qps, r.qps_wall
            ));
        }
        std::fs::write(path, s).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// ns per distance: our kernels against anndists' simdeez-dispatched ones (AVX2 at run time).
fn kernel_bench(base: &[f32], dim: usize) {
    use hnsw_rs::prelude::{DistL2, Distance};
    // 256 rows stay in L2: this measures arithmetic, not memory. Rows are flushed as in a graph
    // (`raw` variants show the cost of subnormal products on unflushed data).
    let mut flushed: Vec<f32> = base.iter().take(256 * dim).copied().collect();
    for row in flushed.chunks_exact_mut(dim) {
        tessera_index::flush_tiny_components(row);
    }
    let raw_rows: Vec<&[f32]> = base.chunks_exact(dim).take(256).collect();
    let rows: Vec<&[f32]> = flushed.chunks_exact(dim).collect();
    if rows.is_empty() {
        return;
    }
    let time = |name: &str, rows: &[&[f32]], f: &dyn Fn(&[f32], &[f32]) -> f32| {
        let q = rows[0];
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = ThreadTime::now();
            let mut acc = 0f32;
            for _ in 0..200 {
                for r in rows {
                    acc += f(std::hint::black_box(q), r);
                }
            }
            std::hint::black_box(acc);
            best = best.min(t.elapsed().as_secs_f64() * 1e9 / (200 * rows.len()) as f64);
        }
        println!("kernel {name}: {best:.1} ns per {dim}-d distance");
    };
    let dot = |a: &[f32], b: &[f32]| tessera_index::distance(Metric::Dot, a, b);
    let l2 = |a: &[f32], b: &[f32]| tessera_index::distance(Metric::Euclid, a, b);
    time("tessera dot", &rows, &dot);
    time("tessera l2sq", &rows, &l2);
    time("anndists DistDot (1-dot)", &rows, &|a, b| {
        DistDot.eval(a, b)
    });
    time("anndists DistL2 (sqrt)", &rows, &|a, b| DistL2.eval(a, b));
    time("tessera dot, raw rows", &raw_rows, &dot);
    time("anndists DistDot, raw rows", &raw_rows, &|a, b| {
        DistDot.eval(a, b)
    });
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
