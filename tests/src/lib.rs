//! Helpers to start real `tessera` processes and talk to them over HTTP.
//!
//! A [`Node`] is one `tessera serve` child process on `127.0.0.1` with its data in a directory the
//! test owns (a tempdir). Its stderr goes to a log file next to the data directory; the log is
//! printed when a test panics while the node is alive, so a failure carries the server's view.
//! Every wait here is bounded in attempts and in time.
//!
//! [`Api`] is the HTTP side: JSON requests answering `(status, body)`, cheap to clone and `Send`,
//! so a writer thread can keep its own while the test kills and restarts the process.
//!
//! [`TestCluster`] is the in-process counterpart: N nodes in this process over the in-memory
//! transport with faults, driven through the same [`Api`].

pub mod cluster;

pub use cluster::TestCluster;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// How long a node may take from spawn to answering `/readyz` (WAL replay included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound on any single HTTP request a test makes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of the server log printed when a test fails.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// Logs a phase of a test with the time since the first phase, e.g.
/// `phase!("kill {i}: SIGKILL while the writer is mid-stream, to lose in-flight batches")`.
#[macro_export]
macro_rules! phase {
    ($($arg:tt)*) => {
        $crate::log_phase(format_args!($($arg)*))
    };
}

#[doc(hidden)]
pub fn log_phase(msg: std::fmt::Arguments<'_>) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!("[{:>8.3}s] {msg}", t.as_secs_f64());
}

/// The `tessera` binary: `$TESSERA_BIN`, else `$CARGO_TARGET_DIR/debug/tessera`, else the
/// workspace's `target/debug/tessera`. tests/run.sh builds it before `cargo test`.
pub fn tessera_bin() -> Result<PathBuf> {
    let path = if let Some(p) = std::env::var_os("TESSERA_BIN") {
        PathBuf::from(p)
    } else if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(t).join("debug").join("tessera")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tessera")
    };
    if !path.is_file() {
        bail!(
            "tessera binary not found at {} (build it with `cargo build --workspace --bins`, \
             or set TESSERA_BIN)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `tessera <args>` that is expected to end by itself (a refused start, a CLI command),
/// without the test's own `TESSERA_*` variables, killed if it is still running after 30 s.
pub fn run_tessera_briefly(args: &[&str]) -> Result<std::process::Output> {
    const LIMIT: Duration = Duration::from_secs(30);
    let mut cmd = Command::new(tessera_bin()?);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TESSERA_") {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn tessera")?;
    let started = Instant::now();
    while child.try_wait().context("wait for tessera")?.is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tessera {args:?} was still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().context("collect tessera's output")
}

/// A port that was free a moment ago on 127.0.0.1 (the OS picks it: bind to port 0).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()
        .context("local addr of probe listener")?
        .port())
}

/// A JSON HTTP client for one node.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::blocking::Client,
    /// Sent with every request (credentials, `X-Tenant-Id`).
    headers: Vec<(String, String)>,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Result<Api> {
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("build http client")?;
        Ok(Api {
            base: format!("http://{addr}"),
            http,
            headers: Vec::new(),
        })
    }

    /// The same client, sending `name: value` with every request.
    pub fn with_header(&self, name: &str, value: &str) -> Api {
        let mut api = self.clone();
        api.headers.push((name.to_owned(), value.to_owned()));
        api
    }

    /// The same client, authenticating with `api-key: credential` (a static key or a JWT).
    pub fn with_key(&self, credential: &str) -> Api {
        self.with_header("api-key", credential)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `body` as-is (any bytes, for malformed input) and returns status and parsed body; a
    /// body that is not JSON comes back as a JSON string.
    pub fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value)> {
        let (status, text) = self.raw_text(method, path, body)?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// Sends `body` as-is and returns status and the body's text, unparsed (serde_json's default
    /// float parsing may be off by one ulp; tests of exact numbers read the text themselves).
    pub fn raw_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, String)> {
        let mut req = self.http.request(method.clone(), self.url(path));
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .with_context(|| format!("read body of {method} {path}"))?;
        Ok((status, text))
    }

    /// Sends a JSON body and returns status, the response's `Retry-After` header (if any) and
    /// the parsed body.
    pub fn post_with_retry_after(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Option<String>, Value)> {
        let mut req = self.http.post(self.url(path));
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let resp = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).context("encode body")?)
            .send()
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp
            .text()
            .with_context(|| format!("read body of POST {path}"))?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, retry, v))
    }

    fn json(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<(u16, Value)> {
        let bytes = serde_json::to_vec(body).context("encode request body")?;
        self.raw(method, path, Some(bytes))
    }

    pub fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.raw(reqwest::Method::GET, path, None)
    }

    pub fn delete(&self, path: &str) -> Result<(u16, Value)> {
        self.raw(reqwest::Method::DELETE, path, None)
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.json(reqwest::Method::PUT, path, body)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.json(reqwest::Method::POST, path, body)
    }

    /// A request that must succeed: its `result`, or an error naming the request and the answer.
    pub fn ok(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let (status, v) = self.json(method.clone(), path, body)?;
        if status != 200 {
            bail!("{method} {path} {body}: expected 200, got {status}: {v}");
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{method} {path}: 200 without `result`: {v}"))
    }

    pub fn ok_put(&self, path: &str, body: &Value) -> Result<Value> {
        self.ok(reqwest::Method::PUT, path, body)
    }

    pub fn ok_post(&self, path: &str, body: &Value) -> Result<Value> {
        self.ok(reqwest::Method::POST, path, body)
    }

    pub fn ok_get(&self, path: &str) -> Result<Value> {
        let (status, v) = self.get(path)?;
        if status != 200 {
            bail!("GET {path}: expected 200, got {status}: {v}");
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| anyhow!("GET {path}: 200 without `result`: {v}"))
    }

    /// Every point of a collection (optionally of one shard key) with payload and vector, by
    /// paging scroll; in the server's order (point id, then shard key). Bounded in pages.
    pub fn scroll_all(&self, collection: &str, shard_key: Option<&Value>) -> Result<Vec<Value>> {
        const PAGE: usize = 256;
        const MAX_PAGES: usize = 1000;
        let mut out = Vec::new();
        let mut offset = Value::Null;
        for _ in 0..MAX_PAGES {
            let mut body = serde_json::json!({
                "limit": PAGE, "with_payload": true, "with_vector": true, "offset": offset,
            });
            if let Some(k) = shard_key {
                body["shard_key"] = k.clone();
            }
            let r = self.ok_post(&format!("/collections/{collection}/points/scroll"), &body)?;
            let points = r["points"]
                .as_array()
                .ok_or_else(|| anyhow!("scroll result without points: {r}"))?;
            out.extend(points.iter().cloned());
            offset = r["next_page_offset"].clone();
            if offset.is_null() {
                return Ok(out);
            }
        }
        bail!("scroll of {collection} did not end within {MAX_PAGES} pages")
    }
}

/// The error message of a Qdrant error body `{"status":{"error":".."},"time":..}`, or an error
/// explaining how the body has another shape.
pub fn error_message(body: &Value) -> Result<String> {
    let msg = body
        .pointer("/status/error")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("not a Qdrant error body (no status.error string): {body}"))?;
    if !body.get("time").is_some_and(Value::is_number) {
        bail!("Qdrant error body without a numeric `time`: {body}");
    }
    if body.get("result").is_some() {
        bail!("Qdrant error body must not carry `result`: {body}");
    }
    Ok(msg.to_string())
}

/// One `tessera serve` process (and the way to start it again on the same port and data).
pub struct Node {
    bin: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    addr: SocketAddr,
    api: Api,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    /// Starts `tessera serve` with data in `data_dir` on a free port and waits until it is ready.
    /// The log goes to `<data_dir>.log` (appended across restarts). If another process takes
    /// the port between the probe and tessera's bind, it tries again on a new port (3 times).
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Result<Node> {
        const ATTEMPTS: usize = 3;
        let bin = tessera_bin()?;
        let log_path = data_dir.with_extension("log");
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let mut node = Node {
                bin: bin.clone(),
                data_dir: data_dir.to_path_buf(),
                log_path: log_path.clone(),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                addr,
                api: Api::new(addr)?,
                child: None,
                starts: 0,
            };
            match node.spawn_and_wait() {
                Ok(()) => return Ok(node),
                Err(e) if format!("{e:#}").contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no start attempt"))).context(format!(
            "start tessera: no free port in {ATTEMPTS} attempts"
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn api(&self) -> Api {
        self.api.clone()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id of the running child (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether the process is still running (not exited, not reaped).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("node on {} is already running", self.addr);
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open log {}", self.log_path.display()))?;
        writeln!(
            log,
            "===== harness: start #{} of tessera on {} =====",
            self.starts, self.addr
        )
        .with_context(|| format!("write log {}", self.log_path.display()))?;
        let mut cmd = Command::new(&self.bin);
        // the test's own TESSERA_* settings (TESSERA_BIN, a developer's TESSERA_DATA_DIR, ...)
        // must not reach the server: only the flags below configure it
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TESSERA_") {
                cmd.env_remove(&k);
            }
        }
        // plain-text logs, without hnsw_rs's per-build chatter, unless the test asks otherwise
        cmd.env("NO_COLOR", "1");
        let mut args = self.extra_args.clone();
        if !args.iter().any(|a| a == "--log" || a.starts_with("--log=")) {
            args.extend(["--log".to_string(), "info,hnsw_rs=warn".to_string()]);
        }
        cmd.arg("serve")
            .arg("--http-addr")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone log handle")?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls `/readyz` until it answers 200; fails early if the process exits.
    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let probe = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .context("build probe client")?;
        let url = self.api.url("/readyz");
        let max_attempts = READY_TIMEOUT.as_millis() / 20;
        for _ in 0..max_attempts {
            if started.elapsed() > READY_TIMEOUT {
                break;
            }
            if let Some(c) = &mut self.child
                && let Some(status) = c.try_wait().context("poll tessera process")?
            {
                self.child = None;
                bail!(
                    "tessera exited before it was ready ({status}); log tail:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = probe.get(&url).send()
                && r.status().is_success()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let tail = self.log_tail();
        self.kill9().ok();
        bail!(
            "tessera on {} not ready within {:?}; log tail:\n{tail}",
            self.addr,
            READY_TIMEOUT
        )
    }

    /// SIGKILL (`Child::kill`) and reap: the process gets no chance to flush or clean up.
    pub fn kill9(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            bail!("node on {} is not running", self.addr);
        };
        c.kill().context("SIGKILL tessera")?;
        c.wait().context("reap tessera after SIGKILL")?;
        Ok(())
    }

    /// SIGTERM (graceful shutdown) and wait, bounded; SIGKILL and an error if it does not exit.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("node on {} is not running", self.addr);
        };
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .context("run kill -TERM")?;
        if !st.success() {
            c.kill().ok();
            c.wait().ok();
            bail!("kill -TERM {} failed: {st}", c.id());
        }
        let started = Instant::now();
        while started.elapsed() < STOP_TIMEOUT {
            if let Some(status) = c.try_wait().context("poll tessera after SIGTERM")? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        c.kill().ok();
        c.wait().ok();
        bail!(
            "tessera did not exit within {STOP_TIMEOUT:?} of SIGTERM; log tail:\n{}",
            self.log_tail()
        )
    }

    /// Starts the process again on the same address and data (stopping it first if running).
    /// [`Node::api`] afterwards has a fresh connection pool; older clones still work, as the
    /// address is the same.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.api = Api::new(self.addr)?;
        self.spawn_and_wait()
    }

    /// The last few KB of the server log.
    pub fn log_tail(&self) -> String {
        let read = || -> std::io::Result<String> {
            let mut f = File::open(&self.log_path)?;
            let len = f.metadata()?.len();
            f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        read().unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- tessera log tail ({}) -----\n{}\n----- end of tessera log -----",
                self.log_path.display(),
                self.log_tail()
            );
        }
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// A vector of `dim` values uniform in [-1, 1), exactly representable as f32 (and so exactly
/// round-tripped through JSON).
pub fn random_vector(rng: &mut impl rand::Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A JSON vector as f32s, or an error naming what it was.
pub fn as_vector(v: &Value) -> Result<Vec<f32>> {
    v.as_array()
        .ok_or_else(|| anyhow!("not a vector: {v}"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| anyhow!("not a number in vector: {x}"))
        })
        .collect()
}

/// Runs `scenario` against a fresh node (data in a fresh tempdir, `extra_args` on its command
/// line). An error panics while the node is still alive, so the panic prints the server log.
pub fn with_node(extra_args: &[&str], scenario: impl FnOnce(&mut Node) -> Result<()>) {
    let tmp = tempfile::tempdir().expect("create a tempdir for the node's data");
    let mut node = Node::start(&tmp.path().join("data"), extra_args).expect("start tessera");
    if let Err(e) = scenario(&mut node) {
        panic!("{e:#}");
    }
    drop(node);
    drop(tmp);
}

/// Where two JSON values differ, as `pointer: left != right` lines (at most `max`).
pub fn json_diff(left: &Value, right: &Value, max: usize) -> Vec<String> {
    fn walk(l: &Value, r: &Value, at: &str, out: &mut Vec<String>, max: usize) {
        if out.len() >= max || l == r {
            return;
        }
        match (l, r) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    let (x, y) = (
                        a.get(k).unwrap_or(&Value::Null),
                        b.get(k).unwrap_or(&Value::Null),
                    );
                    walk(x, y, &format!("{at}/{k}"), out, max);
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(x, y, &format!("{at}/{i}"), out, max);
                }
            }
            _ => {
                let short = |v: &Value| {
                    let s = v.to_string();
                    if s.len() > 300 {
                        format!("{}...({} bytes)", &s[..300], s.len())
                    } else {
                        s
                    }
                };
                out.push(format!("{at}: {} != {}", short(l), short(r)))
            }
        }
    }
    let mut out = Vec::new();
    walk(left, right, "", &mut out, max);
    out
}
