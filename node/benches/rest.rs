//! End-to-end REST benchmark on one node: upsert throughput (batches of 100, wait=true), then query
//! p50/p99 and QPS with 1, 8 and 32 concurrent clients, and recall@10 against exact search; then,
//! in the same run, a dense hybrid query (two prefetches of 50 fused by RRF) beside the plain one.
//! `cargo bench -p tessera-node --bench rest` (env: BENCH_POINTS=100000 BENCH_DIM=384 BENCH_QUERIES=2000).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

fn main() {
    let n = env_usize("BENCH_POINTS", 100_000);
    let dim = env_usize("BENCH_DIM", 384);
    let queries = env_usize("BENCH_QUERIES", 2000);
    println!(
        "rest bench: {n} points, dim {dim}, cosine, one node, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let data = clustered(n, dim, 64, 7);
    let qs = clustered(200, dim, 64, 8);
    let s = Server::start(&[]);
    let (lat, secs) = load(&s, "bench", "tenant", &data);
    println!(
        "upsert: {n} points in {secs:.1} s = {:.0} points/s; batch latency p50 {:.2} ms p99 {:.2} ms",
        n as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let (indexed_after, segments) = wait_indexed(&s, "bench", n, Duration::from_secs(20));
    println!("indexing: all but the tail in graphs after {indexed_after:.1} s more");
    println!(
        "segments after indexing: {segments}, rss {:.0} MiB",
        s.rss_bytes() as f64 / 1048576.0
    );

    // recall@10 against exact search
    let mut recall = 0.0;
    for q in qs.iter().take(100) {
        let body = |exact: bool| json!({"query": q, "limit": 10, "shard_key": "tenant", "params": {"exact": exact}});
        let ids = |v: serde_json::Value| -> Vec<u64> {
            v["result"]["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_u64().unwrap())
                .collect()
        };
        let approx = ids(s.call(
            "POST",
            "/collections/bench/points/query",
            Some(&body(false)),
        ));
        let exact = ids(s.call("POST", "/collections/bench/points/query", Some(&body(true))));
        recall += approx.iter().filter(|i| exact.contains(i)).count() as f64 / 10.0;
    }
    println!(
        "recall@10 (default hnsw_ef, vs exact): {:.3}",
        recall / 100.0
    );

    // two dense prefetches fused by RRF (what a hybrid recipe sends, with a second dense vector
    // standing in for the sparse one) beside the plain query, same vectors, same run
    let hybrid: Vec<serde_json::Value> = qs
        .iter()
        .zip(qs.iter().cycle().skip(1))
        .map(|(a, b)| {
            json!({"prefetch": [{"query": a, "limit": 50}, {"query": b, "limit": 50}],
                   "query": {"fusion": "rrf"}, "limit": 10, "shard_key": "tenant"})
        })
        .collect();
    let hybrid = Arc::new(hybrid);
    let qs = Arc::new(qs);
    for clients in [1usize, 8] {
        let per = (queries / clients).max(1);
        let (mut plain, _) = rest_queries(&s, &qs, clients, per, false);
        let (mut fused, secs) = rest_bodies(&s, &hybrid, clients, per);
        plain.sort_by(f64::total_cmp);
        fused.sort_by(f64::total_cmp);
        println!(
            "hybrid (2 x 50 prefetched, rrf), {clients} clients: {:.0} QPS, p50 {:.2} ms, p99 {:.2} ms; plain p50 {:.2} ms; ratio p50 {:.2}x",
            fused.len() as f64 / secs,
            percentile(&fused, 0.5),
            percentile(&fused, 0.99),
            percentile(&plain, 0.5),
            percentile(&fused, 0.5) / percentile(&plain, 0.5)
        );
    }
    for clients in [1usize, 8, 32] {
        let per = (queries / clients).max(1);
        let (mut lat, secs) = rest_queries(&s, &qs, clients, per, false);
        lat.sort_by(f64::total_cmp);
        println!(
            "query, {clients:>2} clients: {:.0} QPS, p50 {:.2} ms, p99 {:.2} ms ({} queries)",
            lat.len() as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
    }
}
