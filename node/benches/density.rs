//! Tenant density: create many shard keys in one collection, then upsert 100 points into each.
//! Prints time per creation, RSS, disk and open file descriptors per shard key.
//! `cargo bench -p tessera-node --bench density` (env: BENCH_TENANTS=10000 BENCH_DIM=64 BENCH_POINTS_PER=100).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::*;
use serde_json::json;

fn main() {
    let tenants = env_usize("BENCH_TENANTS", 10_000);
    let dim = env_usize("BENCH_DIM", 64);
    let per = env_usize("BENCH_POINTS_PER", 100);
    let s = Server::start(&[]);
    s.call(
        "PUT",
        "/collections/d",
        Some(&json!({"vectors": {"size": dim, "distance": "Cosine"}, "sharding_method": "custom"})),
    );
    let (rss0, disk0, fds0) = (s.rss_bytes(), s.disk_bytes(), s.open_fds());
    println!("density bench: {tenants} shard keys, then {per} points of dim {dim} each");
    println!(
        "baseline: rss {:.1} MiB, disk {:.1} KiB, open fds {fds0}",
        rss0 as f64 / 1048576.0,
        disk0 as f64 / 1024.0
    );

    let mut lat = Vec::with_capacity(tenants);
    let t = Instant::now();
    for i in 0..tenants {
        let t = Instant::now();
        s.call(
            "PUT",
            "/collections/d/shards",
            Some(&json!({"shard_key": format!("tenant-{i}")})),
        );
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let (rss1, disk1, fds1) = (s.rss_bytes(), s.disk_bytes(), s.open_fds());
    println!(
        "create: {tenants} shard keys in {total:.1} s; per key mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms (HTTP round trip included)",
        total * 1000.0 / tenants as f64,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    println!(
        "empty shard keys: rss +{:.1} KiB per key, disk +{:.2} KiB per key, open fds {fds1} (was {fds0})",
        (rss1.saturating_sub(rss0)) as f64 / 1024.0 / tenants as f64,
        (disk1.saturating_sub(disk0)) as f64 / 1024.0 / tenants as f64
    );

    let data = clustered(per, dim, 4, 3);
    let t = Instant::now();
    for i in 0..tenants {
        let points: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(j, v)| json!({"id": j, "vector": v, "payload": {"n": j}}))
            .collect();
        s.call(
            "PUT",
            "/collections/d/points?wait=true",
            Some(&json!({"points": points, "shard_key": format!("tenant-{i}")})),
        );
    }
    let secs = t.elapsed().as_secs_f64();
    let (rss2, disk2, fds2) = (s.rss_bytes(), s.disk_bytes(), s.open_fds());
    println!(
        "filled: {} points in {secs:.1} s; rss {:.1} MiB (+{:.1} KiB per key), disk {:.1} MiB (+{:.1} KiB per key), open fds {fds2}",
        tenants * per,
        rss2 as f64 / 1048576.0,
        (rss2.saturating_sub(rss1)) as f64 / 1024.0 / tenants as f64,
        disk2 as f64 / 1048576.0,
        (disk2.saturating_sub(disk1)) as f64 / 1024.0 / tenants as f64
    );
    let q = &data[0];
    let t = Instant::now();
    for i in 0..200 {
        s.call("POST", "/collections/d/points/query", Some(&json!({"query": q, "limit": 10, "shard_key": format!("tenant-{}", i * 37 % tenants)})));
    }
    println!(
        "query one tenant of {tenants}: mean {:.2} ms over 200 queries",
        t.elapsed().as_secs_f64() * 1000.0 / 200.0
    );
}
