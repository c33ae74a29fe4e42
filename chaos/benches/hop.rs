//! One QUIC hop: query latency and throughput through the node that holds a tenant's shard
//! versus through a node that holds none of it (the router forwards over QUIC with mutual TLS).
//! Prints figures; asserts nothing.
//!
//! `cargo build --release -p tessera-node --bin tessera && \
//!  TESSERA_BIN=target/release/tessera cargo bench -p tessera-chaos --bench hop`
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_chaos::{Swarm, synthetic_vector as vector};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(base: &str, clients: usize, per_client: usize, dim: usize) -> (f64, f64, f64) {
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let url = format!("{base}/collections/bench/points/query");
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut lat = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let body = json!({"query": vector((c * 1_000_000 + i) as u64 + 7, dim), "limit": 10, "shard_key": "t"});
                    let t = Instant::now();
                    let r = http.post(&url).json(&body).send().unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    let _: Value = r.json().unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.len() as f64 / secs,
    )
}

fn main() {
    let dim = env_usize("BENCH_DIM", 128);
    let points = env_usize("BENCH_POINTS", 20_000);
    let queries = env_usize("BENCH_QUERIES", 2_000);
    let swarm = Swarm::start(3).unwrap();
    let api = swarm.api(1).unwrap();
    api.ok_put(
        "/collections/bench",
        &json!({"vectors": {"size": dim, "distance": "Cosine"}, "sharding_method": "custom"}),
    )
    .unwrap();
    api.ok_put("/collections/bench/shards", &json!({"shard_key": "t"}))
        .unwrap();
    for start in (0..points).step_by(500) {
        let pts: Vec<Value> = (start..(start + 500).min(points))
            .map(|i| json!({"id": i, "vector": vector(i as u64, dim)}))
            .collect();
        api.ok_put(
            "/collections/bench/points?wait=true",
            &json!({"points": pts, "shard_key": "t"}),
        )
        .unwrap();
    }
    let holder = swarm
        .ids()
        .into_iter()
        .find(|id| {
            let r = swarm
                .api(*id)
                .unwrap()
                .ok_get("/collections/bench/cluster")
                .unwrap();
            !r["local_shards"].as_array().unwrap().is_empty()
        })
        .unwrap();
    let other = swarm.ids().into_iter().find(|id| *id != holder).unwrap();
    // let the background index builds finish
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = swarm
            .api(holder)
            .unwrap()
            .ok_get("/collections/bench")
            .unwrap();
        if r["indexed_vectors_count"].as_u64().unwrap_or(0) + 5_000 >= points as u64
            || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "hop bench: 3 nodes, {points} x {dim}-d points in one shard key on node {holder}; {queries} queries per row, limit 10"
    );
    println!("| through | clients | p50 ms | p99 ms | QPS |");
    println!("|---|---:|---:|---:|---:|");
    for clients in [1usize, 8] {
        for (name, id) in [
            ("holder (local)", holder),
            ("other node (one QUIC hop)", other),
        ] {
            let base = format!("http://{}", swarm.node(id).unwrap().http_addr);
            run(&base, clients, 50, dim); // warm-up
            let (p50, p99, qps) = run(&base, clients, queries / clients, dim);
            println!("| {name} | {clients} | {p50:.2} | {p99:.2} | {qps:.0} |");
        }
    }
}
