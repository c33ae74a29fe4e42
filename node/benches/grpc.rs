//! gRPC and REST side by side on one node, same data, same run: query p50/p99 and QPS with 1 and
//! 8 concurrent clients over each front door (the official Rust client over gRPC, reqwest over
//! REST, both from Rust so the load generator is not the bottleneck), rounds interleaved so drift
//! of the machine affects both alike, and the ratios gRPC / REST.
//! `cargo bench -p tessera-node --bench grpc` (env: BENCH_POINTS=20000 BENCH_DIM=128
//! BENCH_QUERIES=4000 BENCH_ROUNDS=2).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::QueryPointsBuilder;

struct Run {
    qps: f64,
    p50: f64,
    p99: f64,
}

fn summary(mut lat: Vec<f64>, secs: f64) -> Run {
    lat.sort_by(f64::total_cmp);
    Run {
        qps: lat.len() as f64 / secs,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}

fn rest(s: &Server, qs: &Arc<Vec<Vec<f32>>>, clients: usize, per: usize) -> Run {
    let (lat, secs) = rest_queries(s, qs, clients, per, true);
    summary(lat, secs)
}

fn grpc(
    rt: &tokio::runtime::Runtime,
    s: &Server,
    qs: &Arc<Vec<Vec<f32>>>,
    clients: usize,
    per: usize,
) -> Run {
    rt.block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                // one connection per client, as each REST client thread has its own
                let client = Qdrant::from_url(&s.grpc).build().unwrap();
                let qs = qs.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per);
                    for i in 0..per {
                        let q = qs[(c * per + i) % qs.len()].clone();
                        let t = Instant::now();
                        let r = client
                            .query(
                                QueryPointsBuilder::new("bench")
                                    .query(q)
                                    .limit(10)
                                    .with_payload(true)
                                    .shard_key_selector("tenant".to_string()),
                            )
                            .await
                            .unwrap();
                        assert_eq!(r.result.len(), 10);
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    lat
                })
            })
            .collect();
        let mut lat = Vec::new();
        for task in tasks {
            lat.extend(task.await.unwrap());
        }
        summary(lat, t.elapsed().as_secs_f64())
    })
}

fn main() {
    let n = env_usize("BENCH_POINTS", 20_000);
    let dim = env_usize("BENCH_DIM", 128);
    let queries = env_usize("BENCH_QUERIES", 4000);
    let rounds = env_usize("BENCH_ROUNDS", 2);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("grpc bench: {n} points, dim {dim}, cosine, one node, {cores} cores");
    let data = clustered(n, dim, 64, 7);
    let qs = Arc::new(clustered(200, dim, 64, 8));
    let s = Server::start(&[]);
    load(&s, "bench", "tenant", &data);
    let (indexed_after, segments) = wait_indexed(&s, "bench", n, Duration::from_secs(10));
    println!("indexed {indexed_after:.1} s after the load, {segments} segments");
    // the client's runtime: as many workers as the REST side has threads at most
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(1))
        .enable_all()
        .build()
        .unwrap();
    // warm both paths (connections, caches)
    rest(&s, &qs, 1, 200);
    grpc(&rt, &s, &qs, 1, 200);
    for clients in [1usize, 8] {
        let per = (queries / clients).max(1);
        let (mut r, mut g) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            r.push(rest(&s, &qs, clients, per));
            g.push(grpc(&rt, &s, &qs, clients, per));
        }
        let mean =
            |runs: &[Run], f: fn(&Run) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
        let (rq, rp50, rp99) = (
            mean(&r, |x| x.qps),
            mean(&r, |x| x.p50),
            mean(&r, |x| x.p99),
        );
        let (gq, gp50, gp99) = (
            mean(&g, |x| x.qps),
            mean(&g, |x| x.p50),
            mean(&g, |x| x.p99),
        );
        println!(
            "{clients} client(s): REST {rq:.0} QPS p50 {rp50:.3} ms p99 {rp99:.3} ms | gRPC {gq:.0} QPS p50 {gp50:.3} ms p99 {gp99:.3} ms | gRPC/REST: QPS {:.2}x, p50 {:.2}x, p99 {:.2}x",
            gq / rq,
            gp50 / rp50,
            gp99 / rp99
        );
    }
}
