//! Shared by the benchmarks: start a real tessera process and talk JSON to it.
#![allow(clippy::print_stdout, clippy::unwrap_used, dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The gRPC address (the port after the HTTP one, tessera's default).
    pub grpc: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::blocking::Client,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "serve",
                "--http-addr",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .args(["--log", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/readyz")).send().is_err() {
            assert!(Instant::now() < deadline, "tessera did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            base,
            grpc: format!("http://127.0.0.1:{}", port + 1),
            dir,
            http,
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url),
            "POST" => self.http.post(url),
            "DELETE" => self.http.delete(url),
            _ => panic!("method {method}"),
        };
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        let resp = req.send().unwrap();
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_bytes(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            let Ok(md) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            // allocated blocks, as du counts them
            let own = std::os::unix::fs::MetadataExt::blocks(&md) * 512;
            if md.is_dir() {
                own + std::fs::read_dir(p)
                    .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                    .unwrap_or(0)
            } else {
                own
            }
        }
        walk(&self.dir.path().join("data"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic clustered unit vectors (a Gaussian mixture), like ../shared/tools/make_synthetic.py.
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let gauss = move |rng: &mut rand::rngs::StdRng| -> f32 {
        // Box-Muller
        let u1: f32 = rng.random_range(1e-7..1.0);
        let u2: f32 = rng.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    };
    let centers: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| gauss(&mut rng)).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centers[rng.random_range(0..clusters)];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.6 * gauss(&mut rng)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A blocking client that sends `api-key: key` on every request (keep-alive, 120 s timeout).
pub fn keyed_client(key: &str) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(key).unwrap();
    value.set_sensitive(true);
    headers.insert("api-key", value);
    reqwest::blocking::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

impl Server {
    /// Starts a node with `--api-key key`; `call` then sends the key (admin) on every request.
    pub fn start_with_api_key(key: &str, extra: &[&str]) -> Server {
        let mut args = vec!["--api-key", key];
        args.extend_from_slice(extra);
        let mut s = Server::start(&args);
        s.http = keyed_client(key);
        s
    }

    /// CPU time (user + system) the server process has used so far, in seconds.
    pub fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(&format!("/proc/{}/stat", self.pid()))
    }
}

/// User + system CPU seconds of a process from its `/proc/<pid>/stat` (clock ticks of 1/100 s,
/// as on every Linux we run on); 0 when unreadable.
pub fn proc_cpu_secs(stat_path: &str) -> f64 {
    let s = std::fs::read_to_string(stat_path).unwrap_or_default();
    // fields after the command name, which is in parentheses and may contain spaces
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

/// Busy and total CPU ticks of the whole machine, from the first line of `/proc/stat`.
pub fn machine_cpu_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Creates `collection` (cosine, custom sharding) with shard key `key` and upserts `data` in
/// batches of 100 (wait=true); the batch latencies in ms, sorted, and the seconds it took.
pub fn load(s: &Server, collection: &str, key: &str, data: &[Vec<f32>]) -> (Vec<f64>, f64) {
    let dim = data.first().map_or(0, Vec::len);
    s.call(
        "PUT",
        &format!("/collections/{collection}"),
        Some(&serde_json::json!({"vectors": {"size": dim, "distance": "Cosine"}, "sharding_method": "custom"})),
    );
    s.call(
        "PUT",
        &format!("/collections/{collection}/shards"),
        Some(&serde_json::json!({ "shard_key": key })),
    );
    let started = Instant::now();
    let mut lat = Vec::new();
    for (b, chunk) in data.chunks(100).enumerate() {
        let points: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({"id": b * 100 + i, "vector": v, "payload": {"group": (b * 100 + i) % 10}}))
            .collect();
        let t = Instant::now();
        s.call(
            "PUT",
            &format!("/collections/{collection}/points?wait=true"),
            Some(&serde_json::json!({"points": points, "shard_key": key})),
        );
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (lat, secs)
}

/// Waits until all but the last tail of `n` points are in graphs and the segment count has not
/// changed for `stable` (merges settled); the seconds it took and the segment count.
pub fn wait_indexed(s: &Server, collection: &str, n: usize, stable: Duration) -> (f64, u64) {
    let t = Instant::now();
    let info = |s: &Server| s.call("GET", &format!("/collections/{collection}"), None);
    while t.elapsed() < Duration::from_secs(1800) {
        let indexed = info(s)["result"]["indexed_vectors_count"]
            .as_u64()
            .unwrap_or(0);
        if indexed as usize + 5_000 >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let indexed_after = t.elapsed().as_secs_f64();
    let mut last = 0;
    let mut stable_since = Instant::now();
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(900) && stable_since.elapsed() < stable {
        std::thread::sleep(Duration::from_secs(1));
        let seg = info(s)["result"]["segments_count"].as_u64().unwrap_or(0);
        if seg != last {
            last = seg;
            stable_since = Instant::now();
        }
    }
    (indexed_after, last)
}

/// `clients` threads, each sending `per` REST queries (limit 10, shard key `tenant`, payloads if
/// asked) for the vectors of `qs` in turn; every latency in ms, unsorted, and the seconds it took.
pub fn rest_queries(
    s: &Server,
    qs: &std::sync::Arc<Vec<Vec<f32>>>,
    clients: usize,
    per: usize,
    with_payload: bool,
) -> (Vec<f64>, f64) {
    let bodies: Vec<Value> = qs
        .iter()
        .map(|q| serde_json::json!({"query": q, "limit": 10, "shard_key": "tenant", "with_payload": with_payload}))
        .collect();
    rest_bodies(s, &std::sync::Arc::new(bodies), clients, per)
}

/// `clients` threads, each sending `per` of the query `bodies` in turn to
/// `/collections/bench/points/query`; every latency in ms, unsorted, and the seconds it took.
pub fn rest_bodies(
    s: &Server,
    bodies: &std::sync::Arc<Vec<Value>>,
    clients: usize,
    per: usize,
) -> (Vec<f64>, f64) {
    let t = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (bodies, base) = (bodies.clone(), s.base.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let body = &bodies[(c * per + i) % bodies.len()];
                    let t = Instant::now();
                    let r = http
                        .post(format!("{base}/collections/bench/points/query"))
                        .json(body)
                        .send()
                        .unwrap();
                    assert!(r.status().is_success());
                    let _ = r.bytes();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    let lat = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (lat, t.elapsed().as_secs_f64())
}
