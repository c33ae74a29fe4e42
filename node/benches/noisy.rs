//! Noisy neighbours (issue 5), on one node: tenant B runs a steady light query load alone, then
//! again while tenant A floods with bulk upserts and queries from many clients at once. Prints B's
//! latency alone and under the flood, A's accepted rates against its quota and the 429 counts; it
//! asserts nothing. Targets: B's p99 under the flood at most 1.25x alone, A's accepted rates
//! within 10 % of its quota.
//!
//! `cargo bench -p tessera-node --bench noisy` (env, defaults shown: BENCH_DIM=128
//! BENCH_A_POINTS=20000 BENCH_B_POINTS=20000 BENCH_PHASE_S=20 BENCH_WARMUP_S=3 BENCH_SETTLE_S=60
//! BENCH_B_QPS=40 BENCH_B_THREADS=2 BENCH_A_WRITERS=16 BENCH_A_READERS=16 BENCH_A_BATCH=100
//! BENCH_A_WRITE_RPS=20 BENCH_A_WRITE_BURST=5 BENCH_A_READ_RPS=100 BENCH_A_READ_BURST=10
//! BENCH_A_SEARCHES=4 BENCH_A_BACKOFF_MS=10 BENCH_ROUNDS=3).
//!
//! A run alternates `BENCH_ROUNDS` pairs of phases (B alone, then B under A's flood) and pools
//! each kind's samples, so a drift of the machine over the run (other load, CPU frequency) falls
//! on both sides alike and the p99 rests on a few thousand samples rather than a few hundred.
//!
//! B's latency is open loop: each of B's threads sends on a fixed schedule, and a request's
//! latency runs from its scheduled send time to the end of the response body, so time spent
//! waiting behind a slow previous request counts (no coordinated omission). The time from the
//! actual send is printed as well.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const KEY: &str = "noisy-bench-admin-key";
const COLLECTION: &str = "/collections/bench";
/// A's point ids start here, so they never meet B's.
const A_ID_BASE: usize = 1 << 40;

struct Knobs {
    dim: usize,
    a_points: usize,
    b_points: usize,
    phase: Duration,
    warmup: Duration,
    settle: Duration,
    b_qps: usize,
    b_threads: usize,
    a_writers: usize,
    a_readers: usize,
    a_batch: usize,
    a_write_rps: usize,
    a_write_burst: usize,
    a_read_rps: usize,
    a_read_burst: usize,
    a_searches: usize,
    a_backoff: Duration,
    rounds: usize,
}

impl Knobs {
    fn from_env() -> Knobs {
        let secs = |name, default| Duration::from_secs(env_usize(name, default) as u64);
        Knobs {
            dim: env_usize("BENCH_DIM", 128),
            a_points: env_usize("BENCH_A_POINTS", 20_000),
            b_points: env_usize("BENCH_B_POINTS", 20_000),
            phase: secs("BENCH_PHASE_S", 20),
            warmup: secs("BENCH_WARMUP_S", 3),
            settle: secs("BENCH_SETTLE_S", 60),
            b_qps: env_usize("BENCH_B_QPS", 40).max(1),
            b_threads: env_usize("BENCH_B_THREADS", 2).max(1),
            a_writers: env_usize("BENCH_A_WRITERS", 16),
            a_readers: env_usize("BENCH_A_READERS", 16),
            a_batch: env_usize("BENCH_A_BATCH", 100).max(1),
            a_write_rps: env_usize("BENCH_A_WRITE_RPS", 20).max(1),
            a_write_burst: env_usize("BENCH_A_WRITE_BURST", 5).max(1),
            a_read_rps: env_usize("BENCH_A_READ_RPS", 100).max(1),
            a_read_burst: env_usize("BENCH_A_READ_BURST", 10).max(1),
            a_searches: env_usize("BENCH_A_SEARCHES", 4).max(1),
            a_backoff: Duration::from_millis(env_usize("BENCH_A_BACKOFF_MS", 10) as u64),
            rounds: env_usize("BENCH_ROUNDS", 3).max(1),
        }
    }
}

fn preload(s: &Server, key: &str, first_id: usize, data: &[Vec<f32>]) -> f64 {
    let t = Instant::now();
    for (b, chunk) in data.chunks(256).enumerate() {
        let points: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = first_id + b * 256 + i;
                json!({"id": id, "vector": v, "payload": {"group": id % 10}})
            })
            .collect();
        s.call(
            "PUT",
            &format!("{COLLECTION}/points?wait=true"),
            Some(&json!({"points": points, "shard_key": key})),
        );
    }
    t.elapsed().as_secs_f64()
}

/// Polls the collection until it is green (no index build or merge due) and
/// `indexed_vectors_count` and `segments_count` stay unchanged for 5 s, or `bound` passes.
/// Returns (indexed, segments, seconds waited).
fn settle(s: &Server, bound: Duration) -> (u64, u64, f64) {
    let t = Instant::now();
    let mut last = (u64::MAX, u64::MAX);
    let mut stable_since = Instant::now();
    loop {
        let info = s.call("GET", COLLECTION, None);
        let green = info["result"]["status"] == "green";
        let now = (
            info["result"]["indexed_vectors_count"]
                .as_u64()
                .unwrap_or(0),
            info["result"]["segments_count"].as_u64().unwrap_or(0),
        );
        if now != last || !green {
            last = now;
            stable_since = Instant::now();
        }
        if stable_since.elapsed() >= Duration::from_secs(5) || t.elapsed() >= bound {
            return (last.0, last.1, t.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What B's steady load saw in one phase.
#[derive(Default)]
struct BRun {
    /// Milliseconds from the scheduled send time to the end of the body, for answered queries.
    from_schedule: Vec<f64>,
    /// Milliseconds from the actual send.
    from_send: Vec<f64>,
    /// Sends that started more than 1 ms after their scheduled time.
    late_sends: u64,
    throttled: u64,
    errors: u64,
    first_error: Option<String>,
}

impl BRun {
    fn merge(&mut self, o: BRun) {
        self.from_schedule.extend(o.from_schedule);
        self.from_send.extend(o.from_send);
        self.late_sends += o.late_sends;
        self.throttled += o.throttled;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn sort(&mut self) {
        self.from_schedule.sort_by(f64::total_cmp);
        self.from_send.sort_by(f64::total_cmp);
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.from_schedule, q)
    }

    fn max(&self) -> f64 {
        self.from_schedule.last().copied().unwrap_or(0.0)
    }
}

/// B's open-loop load: `qps` queries per second over `threads` threads for `dur`, each thread on
/// its own fixed schedule (the threads are offset evenly). Every loop ends at `dur`.
fn b_load(
    base: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    qps: usize,
    threads: usize,
    dur: Duration,
) -> BRun {
    let interval = Duration::from_secs_f64(threads as f64 / qps as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let bodies = bodies.clone();
            let url = format!("{base}{COLLECTION}/points/query");
            std::thread::spawn(move || {
                let http = keyed_client(&tenant_token("b"));
                let first = start + interval.mul_f64(t as f64 / threads as f64);
                let mut run = BRun::default();
                for i in 0u32.. {
                    let scheduled = first + interval * i;
                    if scheduled >= start + dur {
                        break;
                    }
                    let now = Instant::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    }
                    let sent = Instant::now();
                    if sent.duration_since(scheduled) > Duration::from_millis(1) {
                        run.late_sends += 1;
                    }
                    let body = bodies[(i as usize * threads + t) % bodies.len()].clone();
                    let resp = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send();
                    let outcome = match resp {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let text = r.text();
                            match (status, text) {
                                (200, Ok(_)) => Ok(()),
                                (429, _) => Err((true, "429".to_string())),
                                (st, Ok(t)) => Err((false, format!("{st} {t}"))),
                                (st, Err(e)) => Err((false, format!("{st} body: {e}"))),
                            }
                        }
                        Err(e) => Err((false, format!("transport: {e}"))),
                    };
                    let done = Instant::now();
                    match outcome {
                        Ok(()) => {
                            run.from_schedule
                                .push(done.duration_since(scheduled).as_secs_f64() * 1000.0);
                            run.from_send
                                .push(done.duration_since(sent).as_secs_f64() * 1000.0);
                        }
                        Err((throttled, msg)) => {
                            if throttled {
                                run.throttled += 1;
                            } else {
                                run.errors += 1;
                            }
                            run.first_error.get_or_insert(msg);
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut all = BRun::default();
    for h in handles {
        all.merge(h.join().unwrap());
    }
    all.sort();
    all
}

/// What one kind of A's flood (writes or reads) got back.
#[derive(Default, Clone)]
struct ACount {
    attempts: u64,
    accepted: u64,
    throttled: u64,
    /// 429 answers without a Retry-After header (or with one that is not whole seconds).
    no_retry_after: u64,
    /// Other errors (status or transport).
    errors: u64,
    first_error: Option<String>,
    first_429: Option<String>,
}

impl ACount {
    fn merge(&mut self, o: ACount) {
        self.attempts += o.attempts;
        self.accepted += o.accepted;
        self.throttled += o.throttled;
        self.no_retry_after += o.no_retry_after;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        if self.first_429.is_none() {
            self.first_429 = o.first_429;
        }
    }
}

/// One of A's flood clients: sends `next_body()` to `url` back to back until `deadline`. After a
/// refusal it sends the same body again, after what Retry-After-Ms says (with jitter) or, when
/// told to ignore it, after `backoff`: a noisy tenant.
fn a_client(
    method: reqwest::Method,
    url: &str,
    deadline: Instant,
    backoff: Duration,
    mut next_body: impl FnMut() -> Vec<u8>,
) -> ACount {
    let http = keyed_client(&tenant_token("a"));
    let mut c = ACount::default();
    // a refused request is sent again as it was, as a bulk loader retries its batch
    let mut pending: Option<Vec<u8>> = None;
    while Instant::now() < deadline {
        c.attempts += 1;
        let body = pending.get_or_insert_with(&mut next_body).clone();
        let resp = http
            .request(method.clone(), url)
            .header("content-type", "application/json")
            .body(body)
            .send();
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let retry_after_ms = r
                    .headers()
                    .get("retry-after-ms")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .or(retry_after.map(|s| s * 1000));
                let text = r.text().unwrap_or_default();
                match status {
                    200 => {
                        c.accepted += 1;
                        pending = None;
                    }
                    429 => {
                        c.throttled += 1;
                        if retry_after.is_none() {
                            c.no_retry_after += 1;
                        }
                        c.first_429
                            .get_or_insert_with(|| format!("Retry-After {retry_after:?}: {text}"));
                        match retry_after_ms.filter(|_| obey_retry_after()) {
                            // as client SDKs do: wait what the server says (Retry-After-Ms when
                            // given), with jitter so the clients do not come back in step
                            Some(ms) => {
                                let jitter = 1.0 + (c.attempts % 97) as f64 / 194.0;
                                let wait = Duration::from_secs_f64(ms as f64 / 1000.0 * jitter);
                                let left = deadline.saturating_duration_since(Instant::now());
                                std::thread::sleep(wait.min(left));
                            }
                            None => std::thread::sleep(backoff),
                        }
                    }
                    st => {
                        c.errors += 1;
                        c.first_error.get_or_insert_with(|| format!("{st} {text}"));
                        std::thread::sleep(backoff);
                    }
                }
            }
            Err(e) => {
                c.errors += 1;
                c.first_error
                    .get_or_insert_with(|| format!("transport: {e}"));
                std::thread::sleep(backoff);
            }
        }
    }
    c
}

/// CPU used during a phase: the server, this benchmark process, and the whole machine's busy
/// share (other people's work included).
#[derive(Default)]
struct Cpu {
    server_s: f64,
    bench_s: f64,
    /// Busy share of the machine, summed over `phases` (see [`Cpu::busy`]).
    machine_busy: f64,
    phases: u32,
}

impl Cpu {
    fn add(&mut self, o: &Cpu) {
        self.server_s += o.server_s;
        self.bench_s += o.bench_s;
        self.machine_busy += o.machine_busy;
        self.phases += o.phases;
    }

    /// The machine's busy share, averaged over the phases.
    fn busy(&self) -> f64 {
        self.machine_busy / f64::from(self.phases.max(1))
    }
}

struct CpuMark {
    server: f64,
    bench: f64,
    machine: (u64, u64),
}

fn cpu_mark(s: &Server) -> CpuMark {
    CpuMark {
        server: s.cpu_secs(),
        bench: proc_cpu_secs("/proc/self/stat"),
        machine: machine_cpu_ticks(),
    }
}

fn cpu_since(s: &Server, m: &CpuMark) -> Cpu {
    let now = cpu_mark(s);
    let busy = now.machine.0.saturating_sub(m.machine.0) as f64;
    let total = now.machine.1.saturating_sub(m.machine.1).max(1) as f64;
    Cpu {
        server_s: now.server - m.server,
        bench_s: now.bench - m.bench,
        machine_busy: busy / total,
        phases: 1,
    }
}

fn counter(v: &Value, kind: &str, field: &str) -> u64 {
    v["result"][kind][field]
        .as_u64()
        .or_else(|| v[kind][field].as_u64())
        .unwrap_or(0)
}

/// One flood phase: A's clients start with B's load and stop at the same deadline. Returns what
/// B saw and what A's writers and readers got.
fn flood_phase(
    s: &Server,
    k: &Knobs,
    round: usize,
    b_bodies: &Arc<Vec<Vec<u8>>>,
    a_bodies: &Arc<Vec<Vec<u8>>>,
    flood_vectors: &Arc<Vec<String>>,
) -> (BRun, ACount, ACount) {
    let deadline = Instant::now() + k.phase + Duration::from_millis(50);
    let mut writers = Vec::new();
    for w in 0..k.a_writers {
        let url = format!("{}{COLLECTION}/points?wait=true", s.base);
        let vectors = flood_vectors.clone();
        let (batch, backoff) = (k.a_batch, k.a_backoff);
        let first = A_ID_BASE + k.a_points + w * 100_000_000 + round * 10_000_000;
        writers.push(std::thread::spawn(move || {
            let mut seq = 0usize;
            a_client(reqwest::Method::PUT, &url, deadline, backoff, || {
                let points: Vec<String> = (0..batch)
                    .map(|i| {
                        let id = first + seq + i;
                        format!(
                            "{{\"id\":{id},\"vector\":{},\"payload\":{{\"group\":{}}}}}",
                            vectors[id % vectors.len()],
                            id % 10
                        )
                    })
                    .collect();
                seq += batch;
                format!("{{\"points\":[{}],\"shard_key\":\"a\"}}", points.join(",")).into_bytes()
            })
        }));
    }
    let mut readers = Vec::new();
    for r in 0..k.a_readers {
        let url = format!("{}{COLLECTION}/points/query", s.base);
        let bodies = a_bodies.clone();
        let backoff = k.a_backoff;
        readers.push(std::thread::spawn(move || {
            let mut i = r;
            a_client(reqwest::Method::POST, &url, deadline, backoff, || {
                i += 1;
                bodies[i % bodies.len()].clone()
            })
        }));
    }
    let flood = b_load(&s.base, b_bodies, k.b_qps, k.b_threads, k.phase);
    let mut a_w = ACount::default();
    for h in writers {
        a_w.merge(h.join().unwrap());
    }
    let mut a_r = ACount::default();
    for h in readers {
        a_r.merge(h.join().unwrap());
    }
    (flood, a_w, a_r)
}

fn main() {
    let k = Knobs::from_env();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "noisy bench: one node, {cores} cores, dim {}, A {} points, B {} points, phases of {} s; A's clients {} Retry-After",
        k.dim,
        k.a_points,
        k.b_points,
        k.phase.as_secs(),
        if obey_retry_after() { "obey" } else { "ignore" }
    );
    // tenants use tenant-bound tokens (HS256 with the api key), as tessera's tenants do: a
    // flood over its rate is refused from the headers, before its body is parsed
    let s = Server::start_with_api_key(KEY, &["--jwt-rbac"]);
    s.call(
        "PUT",
        COLLECTION,
        Some(
            &json!({"vectors": {"size": k.dim, "distance": "Cosine"}, "sharding_method": "custom"}),
        ),
    );
    for key in ["a", "b"] {
        s.call(
            "PUT",
            &format!("{COLLECTION}/shards"),
            Some(&json!({"shard_key": key})),
        );
    }
    // unlimited while preloading (and a check that the quota API is there before the long part)
    let unlimited = json!({
        "read_rps": null, "read_burst": null, "write_rps": null, "write_burst": null,
        "write_bytes_per_s": null, "max_concurrent_searches": null, "max_points": null,
        "max_bytes": null, "max_batch": null, "max_limit": null, "weight": 1
    });
    for t in ["a", "b"] {
        s.call(
            "PUT",
            &format!("/admin/tenants/{t}/quota"),
            Some(&unlimited),
        );
    }

    // --- preload
    let b_data = clustered(k.b_points, k.dim, 64, 11);
    let a_data = clustered(k.a_points, k.dim, 64, 12);
    let b_secs = preload(&s, "b", 0, &b_data);
    let a_secs = preload(&s, "a", A_ID_BASE, &a_data);
    println!(
        "preload: B {} points in {b_secs:.1} s, A {} points in {a_secs:.1} s (batches of 256, wait=true)",
        k.b_points, k.a_points
    );
    let (indexed, segments, waited) = settle(&s, k.settle);
    println!(
        "settled after {waited:.1} s more: {indexed} of {} vectors indexed, {segments} segments, rss {:.0} MiB",
        k.a_points + k.b_points,
        s.rss_bytes() as f64 / 1048576.0
    );

    // --- quotas: A tight, B generous, equal weights
    let a_quota = json!({
        "read_rps": k.a_read_rps, "read_burst": k.a_read_burst,
        "write_rps": k.a_write_rps, "write_burst": k.a_write_burst,
        "max_concurrent_searches": k.a_searches, "weight": 1
    });
    let b_quota = json!({
        "read_rps": (k.b_qps * 10).max(100), "read_burst": (k.b_qps * 10).max(100),
        "max_concurrent_searches": 16, "weight": 1
    });
    s.call("PUT", "/admin/tenants/a/quota", Some(&a_quota));
    s.call("PUT", "/admin/tenants/b/quota", Some(&b_quota));
    let a_quota_now = s.call("GET", "/admin/tenants/a/quota", None);
    let b_quota_now = s.call("GET", "/admin/tenants/b/quota", None);
    println!("quota a: {a_quota_now}");
    println!("quota b: {b_quota_now}");

    let query_bodies = |seed: u64, key: &str| -> Arc<Vec<Vec<u8>>> {
        Arc::new(
            clustered(500, k.dim, 64, seed)
                .iter()
                .map(|q| {
                    serde_json::to_vec(&json!({"query": q, "limit": 10, "shard_key": key})).unwrap()
                })
                .collect(),
        )
    };
    let b_bodies = query_bodies(21, "b");
    let a_bodies = query_bodies(22, "a");

    // --- rounds of B alone, then B under A's flood (after an unrecorded warm-up of B)
    let flood_vectors: Arc<Vec<String>> = Arc::new(
        clustered(2_000, k.dim, 64, 13)
            .iter()
            .map(|v| serde_json::to_string(v).unwrap())
            .collect(),
    );
    let _ = b_load(&s.base, &b_bodies, k.b_qps, k.b_threads, k.warmup);
    let usage_before = s.call("GET", "/admin/tenants/a/usage", None);
    let (mut alone, mut flood) = (BRun::default(), BRun::default());
    let (mut a_w, mut a_r) = (ACount::default(), ACount::default());
    let (mut cpu_alone, mut cpu_flood) = (Cpu::default(), Cpu::default());
    let mut flood_secs = 0.0;
    for round in 0..k.rounds {
        if round > 0 {
            // B alone means A quiet: its last flood's index builds finish first
            let (_, _, waited) = settle(&s, k.settle);
            println!(
                "round {}: A's index builds settled in {waited:.1} s",
                round + 1
            );
        }
        let mark = cpu_mark(&s);
        let mut a = b_load(&s.base, &b_bodies, k.b_qps, k.b_threads, k.phase);
        cpu_alone.add(&cpu_since(&s, &mark));
        let started = Instant::now();
        let mark = cpu_mark(&s);
        let (mut f, w, r) = flood_phase(&s, &k, round, &b_bodies, &a_bodies, &flood_vectors);
        cpu_flood.add(&cpu_since(&s, &mark));
        flood_secs += started.elapsed().as_secs_f64();
        println!(
            "round {}: B p50 / p99 alone {:.2} / {:.2} ms, under the flood {:.2} / {:.2} ms ({:.2}x); A accepted {} writes, {} reads",
            round + 1,
            a.p(0.5),
            a.p(0.99),
            f.p(0.5),
            f.p(0.99),
            f.p(0.99) / a.p(0.99).max(f64::MIN_POSITIVE),
            w.accepted,
            r.accepted
        );
        alone.merge(std::mem::take(&mut a));
        flood.merge(std::mem::take(&mut f));
        a_w.merge(w);
        a_r.merge(r);
    }
    alone.sort();
    flood.sort();
    let usage_after = s.call("GET", "/admin/tenants/a/usage", None);
    let b_usage = s.call("GET", "/admin/tenants/b/usage", None);

    // --- report
    let t = k.phase.as_secs_f64() * k.rounds as f64;
    let bursts = k.rounds as f64;
    let ratio = if alone.p(0.99) > 0.0 {
        flood.p(0.99) / alone.p(0.99)
    } else {
        f64::NAN
    };
    // the buckets are full when a flood starts (they refill while B runs alone): one burst per
    // round plus the rate over the flood phases is what the quota allows
    let w_allowed = (bursts * k.a_write_burst as f64 + k.a_write_rps as f64 * t) / t;
    let r_allowed = (bursts * k.a_read_burst as f64 + k.a_read_rps as f64 * t) / t;
    let w_rate = a_w.accepted as f64 / t;
    let r_rate = a_r.accepted as f64 / t;
    let dev = |got: f64, allowed: f64| (got - allowed) / allowed * 100.0;
    let srv = |kind: &str, field: &str| {
        counter(&usage_after, kind, field).saturating_sub(counter(&usage_before, kind, field))
    };
    println!();
    println!(
        "B: {} queries/s open loop from {} threads, limit 10, {} rounds of two {} s phases; A: {} upsert clients (batches of {}, wait=true) and {} query clients, {} ms sleep after a refusal, floods {:.1} s in all",
        k.b_qps,
        k.b_threads,
        k.rounds,
        k.phase.as_secs(),
        k.a_writers,
        k.a_batch,
        k.a_readers,
        k.a_backoff.as_millis(),
        flood_secs
    );
    println!();
    println!("| B query latency (ms, from scheduled send) | alone | under A's flood |");
    println!("|---|---:|---:|");
    println!(
        "| answered | {} | {} |",
        alone.from_schedule.len(),
        flood.from_schedule.len()
    );
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        println!("| {name} | {:.2} | {:.2} |", alone.p(q), flood.p(q));
    }
    println!("| max | {:.2} | {:.2} |", alone.max(), flood.max());
    println!(
        "| p50 / p99 from actual send | {:.2} / {:.2} | {:.2} / {:.2} |",
        percentile(&alone.from_send, 0.5),
        percentile(&alone.from_send, 0.99),
        percentile(&flood.from_send, 0.5),
        percentile(&flood.from_send, 0.99)
    );
    println!(
        "| sends > 1 ms behind schedule | {} | {} |",
        alone.late_sends, flood.late_sends
    );
    println!(
        "| B 429 / other errors | {} / {} | {} / {} |",
        alone.throttled, alone.errors, flood.throttled, flood.errors
    );
    println!(
        "| CPU s: server / bench process | {:.1} / {:.1} | {:.1} / {:.1} |",
        cpu_alone.server_s, cpu_alone.bench_s, cpu_flood.server_s, cpu_flood.bench_s
    );
    println!(
        "| machine busy (all processes) | {:.0} % | {:.0} % |",
        cpu_alone.busy() * 100.0,
        cpu_flood.busy() * 100.0
    );
    println!();
    println!("**B p99 under flood / alone: {ratio:.2}x** (target <= 1.25x)");
    println!();
    println!("| A during the flood | writes (upserts) | reads (queries) |");
    println!("|---|---:|---:|");
    println!(
        "| quota | write_rps {}, burst {} | read_rps {}, burst {}, {} concurrent |",
        k.a_write_rps, k.a_write_burst, k.a_read_rps, k.a_read_burst, k.a_searches
    );
    println!(
        "| attempts (offered /s) | {} ({:.0}/s) | {} ({:.0}/s) |",
        a_w.attempts,
        a_w.attempts as f64 / t,
        a_r.attempts,
        a_r.attempts as f64 / t
    );
    println!("| accepted | {} | {} |", a_w.accepted, a_r.accepted);
    println!(
        "| **accepted rate vs allowed (rate + a burst per flood)** | **{w_rate:.2}/s vs {w_allowed:.2}/s ({:+.1} %)** | **{r_rate:.2}/s vs {r_allowed:.2}/s ({:+.1} %)** |",
        dev(w_rate, w_allowed),
        dev(r_rate, r_allowed)
    );
    println!(
        "| accepted rate vs bare rate | {:+.1} % | {:+.1} % |",
        dev(w_rate, k.a_write_rps as f64),
        dev(r_rate, k.a_read_rps as f64)
    );
    println!("| 429 | {} | {} |", a_w.throttled, a_r.throttled);
    println!(
        "| 429 without Retry-After | {} | {} |",
        a_w.no_retry_after, a_r.no_retry_after
    );
    println!("| other errors | {} | {} |", a_w.errors, a_r.errors);
    println!(
        "| server usage delta: accepted / throttled | {} / {} | {} / {} |",
        srv("writes", "accepted"),
        srv("writes", "throttled"),
        srv("reads", "accepted"),
        srv("reads", "throttled")
    );
    println!();
    for (who, run) in [("B alone", &alone), ("B under flood", &flood)] {
        if let Some(e) = &run.first_error {
            println!("{who}, first failure: {e}");
        }
    }
    for (what, c) in [("A writes", &a_w), ("A reads", &a_r)] {
        if let Some(e) = &c.first_429 {
            println!(
                "{what}, first 429: {}",
                e.chars().take(300).collect::<String>()
            );
        }
        if let Some(e) = &c.first_error {
            println!(
                "{what}, first error: {}",
                e.chars().take(300).collect::<String>()
            );
        }
    }
    println!("GET /admin/tenants/a/usage at the end: {usage_after}");
    println!("GET /admin/tenants/b/usage at the end: {b_usage}");
}

/// A token bound to `tenant` (its shard key), signed with the node's api key.
fn tenant_token(tenant: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"tenant_id": tenant, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

/// Whether A's clients wait out `Retry-After` (with jitter), as SDKs do (`BENCH_A_OBEY_RETRY_AFTER`,
/// default 1); 0 makes them retry after `BENCH_A_BACKOFF_MS` whatever the server says.
fn obey_retry_after() -> bool {
    env_usize("BENCH_A_OBEY_RETRY_AFTER", 1) != 0
}
