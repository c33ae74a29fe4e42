//! A local swarm of real `tessera` processes: N cluster members on 127.0.0.1 over real QUIC with
//! mutual TLS, and the faults a nemesis injects into them.
//!
//! ```text
//! <root>/ca/                 ca.pem, ca.key          (tessera cert ca)
//! <root>/n<id>/tls/          ca.pem, node.pem, node.key   (tessera cert node --name node-<id>)
//! <root>/n<id>/data/         the node's data dir
//! <root>/n<id>/node.log      stdout and stderr, appended across restarts
//! ```
//!
//! Nodes are named by their cluster node id, `1..=N`. Node 1 starts with `--bootstrap`, every
//! other node with `--join <node 1's p2p address>`, one by one: each must answer `/readyz` and
//! then appear in node 1's `GET /cluster` before the next starts. A node keeps its ports, data,
//! certificate and flags across [`Swarm::restart`]. Every wait is bounded in time; a failed wait
//! says what it waited for and carries the log tail of the node concerned.
//!
//! Dropping a [`Swarm`] SIGKILLs every child it started and removes the root directory (unless
//! [`SwarmOptions::keep_root`]); when the drop happens during a panic, the tail of every node's
//! log goes to stderr first.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::blocking::Client;
use serde_json::Value;
use tessera_tests::Api;

use crate::process::{Signal, send_signal, wait_bounded};
use crate::view::{ClusterView, pick_leader, settled};

/// How long a node may take from spawn to answering `/readyz`.
pub const READY_TIMEOUT: Duration = tessera_tests::READY_TIMEOUT;
/// How long a started node may take to appear in the first node's `/cluster`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = tessera_tests::STOP_TIMEOUT;
/// How long `tessera cert ...` may take.
const CERT_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of one probe (`/readyz`, `/cluster`) during a wait: a paused or partitioned node
/// must not hold a wait for the 30 s of a test request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two probes of a wait.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(50);
/// Most nodes one swarm starts (ports, certificates and processes are per node).
pub const MAX_NODES: usize = 64;
/// How many times a node is started on fresh ports when another process took one of its ports
/// between the probe and the bind.
const PORT_ATTEMPTS: usize = 3;
/// How long a settled cluster must stay unchanged (same leader, term and commit) before
/// [`Swarm::wait_settled`] believes it: a membership change commits its joint configuration
/// first and appends the final one right after, and a fault in between can halt the group
/// (a 2-voter old configuration has no majority without both).
const QUIET: Duration = Duration::from_millis(500);
/// Bytes of a node's log that [`Swarm::log_tail`] returns.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

mod options;
pub mod orphans;
mod os;

pub use options::{NodeInfo, NodeState, SwarmOptions};
pub use os::free_ports;
use os::{check_output, is_port_clash, max_probes, read_tail};

struct Member {
    info: NodeInfo,
    child: Option<Child>,
}

/// N real `tessera` processes forming one cluster. See the module doc.
pub struct Swarm {
    bin: PathBuf,
    opts: SwarmOptions,
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    members: Vec<Member>,
    probe: Client,
}

impl Swarm {
    /// Starts `nodes` nodes with default options.
    pub fn start(nodes: usize) -> Result<Swarm> {
        Swarm::start_with(SwarmOptions::new(nodes))
    }

    /// Makes the certificates, then starts the nodes one by one; see the module doc.
    pub fn start_with(opts: SwarmOptions) -> Result<Swarm> {
        let mut swarm = Swarm::prepare(opts)?;
        swarm.start_all()?;
        Ok(swarm)
    }

    /// Everything but the processes: the root dir, the CA, each node's certificate, ports and
    /// command line. [`Swarm::start_all`] starts them.
    pub fn prepare(opts: SwarmOptions) -> Result<Swarm> {
        if opts.nodes == 0 || opts.nodes > MAX_NODES {
            bail!("a swarm has 1..={MAX_NODES} nodes, not {}", opts.nodes);
        }
        let bin = tessera_tests::tessera_bin()?;
        let root = tempfile::Builder::new()
            .prefix(orphans::ROOT_PREFIX)
            .tempdir()
            .context("create the swarm's root dir")?;
        let root_path = root.path().to_path_buf();
        // so that a later runner can stop these nodes if this process dies by SIGKILL
        orphans::claim(&root_path)?;
        let mut swarm = Swarm {
            bin,
            probe: probe_client(opts.api_key.as_deref())?,
            opts,
            root: Some(root),
            root_path,
            members: Vec::new(),
        };
        swarm.make_certs()?;
        let ports = free_ports(swarm.opts.nodes)?;
        for (i, (http, p2p)) in ports.into_iter().enumerate() {
            let id = i as u64 + 1;
            let dir = swarm.root_path.join(format!("n{id}"));
            swarm.members.push(Member {
                info: NodeInfo {
                    id,
                    http_addr: http,
                    p2p_addr: p2p,
                    data_dir: dir.join("data"),
                    tls_dir: dir.join("tls"),
                    log_path: dir.join("node.log"),
                    pid: None,
                    state: NodeState::Down,
                    starts: 0,
                },
                child: None,
            });
        }
        Ok(swarm)
    }

    /// Starts every node that has never run, in id order: each must answer `/readyz`, be
    /// listed by node 1's `/cluster`, and the cluster must settle ([`Swarm::wait_settled`])
    /// before the next starts, so no two membership changes overlap and the swarm is handed
    /// over with no change in flight.
    pub fn start_all(&mut self) -> Result<()> {
        for id in self.ids() {
            if self.member(id)?.info.starts > 0 {
                continue;
            }
            self.start_new_member(id)?;
            self.wait_until_listed(1, id, self.opts.join_timeout)?;
            self.wait_settled(self.opts.join_timeout)?;
        }
        Ok(())
    }

    /// Starts node `id` for the first time (a swarm [`Swarm::prepare`]d with more nodes than it
    /// starts at once: a node that joins later), as [`Swarm::start_all`] starts each: `/readyz`,
    /// listed by node 1, the cluster settled.
    pub fn start_member(&mut self, id: u64) -> Result<()> {
        if self.member(id)?.info.starts > 0 {
            bail!("node {id} has been started before; restart it instead");
        }
        self.start_new_member(id)?;
        self.wait_until_listed(1, id, self.opts.join_timeout)?;
        self.wait_settled(self.opts.join_timeout)?;
        Ok(())
    }

    /// Waits until the running nodes agree on a settled cluster (see [`crate::view::settled`]:
    /// every node started so far listed, one leader named by all, everything applied) and it
    /// stays so, with the same leader, term and commit, for a quiet period of 500 ms. Returns
    /// the leader. Every running node must answer.
    pub fn wait_settled(&self, timeout: Duration) -> Result<u64> {
        let members: BTreeSet<u64> = self
            .members
            .iter()
            .filter(|m| m.info.starts > 0)
            .map(|m| m.info.id)
            .collect();
        let started = Instant::now();
        let mut calm: Option<((u64, u64, u64), Instant)> = None;
        let mut last = String::from("no probe yet");
        for _ in 0..max_probes(timeout) {
            let running = self.running();
            let views: Vec<ClusterView> = running
                .iter()
                .filter_map(|id| match self.cluster(*id) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        last = format!("node {id}: {e:#}");
                        None
                    }
                })
                .collect();
            if views.len() == running.len() {
                match settled(&views, &members) {
                    Ok(leader) => {
                        let lv = views.iter().find(|v| v.peer_id == leader);
                        let key = (leader, lv.map_or(0, |v| v.term), lv.map_or(0, |v| v.commit));
                        match calm {
                            Some((k, since)) if k == key => {
                                if since.elapsed() >= QUIET {
                                    return Ok(leader);
                                }
                            }
                            _ => calm = Some((key, Instant::now())),
                        }
                        last = format!("settled on {key:?}, waiting out the quiet period");
                    }
                    Err(why) => {
                        calm = None;
                        last = why;
                    }
                }
            } else {
                calm = None;
            }
            if started.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(PROBE_EVERY);
        }
        bail!(
            "the cluster did not settle within {timeout:?}: {last}\n{}",
            self.log_tails()
        )
    }

    fn make_certs(&self) -> Result<()> {
        let ca = self.root_path.join("ca");
        self.tessera_cert(&["cert", "ca", "--out"], &[&ca])?;
        for id in 1..=self.opts.nodes {
            let tls = self.root_path.join(format!("n{id}")).join("tls");
            let name = format!("node-{id}");
            let mut cmd = Command::new(&self.bin);
            cmd.args(["cert", "node", "--ca-dir"])
                .arg(&ca)
                .arg("--out")
                .arg(&tls)
                .args(["--name", &name]);
            check_output(&mut cmd, CERT_TIMEOUT)?;
        }
        Ok(())
    }

    fn tessera_cert(&self, args: &[&str], paths: &[&Path]) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).args(paths);
        check_output(&mut cmd, CERT_TIMEOUT).map(|_| ())
    }

    /// The directory holding the CA, every node's TLS dir, data dir and log.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// The `tessera` binary the nodes run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Node ids, `1..=N`.
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.info.id).collect()
    }

    /// Ids of the nodes the harness believes are running (not paused, not down).
    pub fn running(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.info.state == NodeState::Running)
            .map(|m| m.info.id)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn node(&self, id: u64) -> Result<NodeInfo> {
        Ok(self.member(id)?.info.clone())
    }

    /// An HTTP client for node `id` (sending the swarm's API key, if any).
    pub fn api(&self, id: u64) -> Result<Api> {
        let api = Api::new(self.member(id)?.info.http_addr)?;
        Ok(match &self.opts.api_key {
            Some(k) => api.with_key(k),
            None => api,
        })
    }

    /// SIGKILL (`kill -KILL`): no flush, no goodbye to peers. Waits (bounded) for the process to
    /// be reaped.
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        let m = self.member_mut(id)?;
        let Some(mut child) = m.child.take() else {
            bail!("node {id} is not running");
        };
        m.info.state = NodeState::Down;
        m.info.pid = None;
        send_signal(child.id(), Signal::Kill)?;
        match wait_bounded(&mut child, STOP_TIMEOUT)? {
            Some(_) => Ok(()),
            None => bail!("node {id} did not die within {STOP_TIMEOUT:?} of SIGKILL"),
        }
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing, as a hung or partitioned node.
    pub fn pause(&mut self, id: u64) -> Result<()> {
        let m = self.member_mut(id)?;
        let (Some(child), NodeState::Running) = (&m.child, m.info.state) else {
            bail!("node {id} is not running (it is {:?})", m.info.state);
        };
        send_signal(child.id(), Signal::Stop)?;
        m.info.state = NodeState::Paused;
        Ok(())
    }

    /// SIGCONT to a paused node.
    pub fn resume(&mut self, id: u64) -> Result<()> {
        let m = self.member_mut(id)?;
        let (Some(child), NodeState::Paused) = (&m.child, m.info.state) else {
            bail!("node {id} is not paused (it is {:?})", m.info.state);
        };
        send_signal(child.id(), Signal::Cont)?;
        m.info.state = NodeState::Running;
        Ok(())
    }

    /// SIGTERM (graceful shutdown; a paused node is resumed so it can act on it) and a bounded
    /// wait; SIGKILL and an error with the log tail if it does not exit in [`STOP_TIMEOUT`].
    pub fn stop(&mut self, id: u64) -> Result<ExitStatus> {
        let m = self.member_mut(id)?;
        let Some(mut child) = m.child.take() else {
            bail!("node {id} is not running");
        };
        let was_paused = m.info.state == NodeState::Paused;
        m.info.state = NodeState::Down;
        m.info.pid = None;
        let pid = child.id();
        let sent = send_signal(pid, Signal::Term).and_then(|()| {
            if was_paused {
                send_signal(pid, Signal::Cont)
            } else {
                Ok(())
            }
        });
        if let Err(e) = sent {
            child.kill().ok();
            child.wait().ok();
            return Err(e.context(format!("stop node {id}")));
        }
        if let Some(status) = wait_bounded(&mut child, STOP_TIMEOUT)? {
            return Ok(status);
        }
        child.kill().ok();
        child.wait().ok();
        bail!(
            "node {id} did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed); log tail:\n{}",
            self.log_tail(id)
        )
    }

    /// Starts node `id` again on the same ports, data, certificate and flags (its original
    /// `--bootstrap` or `--join` included), stopping it first if it runs, and waits for
    /// `/readyz`. Whether it is back in the cluster is [`Swarm::wait_until_listed`]'s question.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        if self.member(id)?.child.is_some() {
            self.stop(id)?;
        }
        self.spawn(id)?;
        self.wait_ready(id)
    }

    /// Restarts node `id` (stopping it first if it runs) on new HTTP and p2p ports, as a member
    /// rescheduled onto another address would be; its data and identity stay.
    pub fn restart_moved(&mut self, id: u64) -> Result<()> {
        if self.member(id)?.child.is_some() {
            self.stop(id)?;
        }
        let (http, p2p) = free_ports(1)?
            .pop()
            .ok_or_else(|| anyhow!("no free ports"))?;
        let m = self.member_mut(id)?;
        m.info.http_addr = http;
        m.info.p2p_addr = p2p;
        self.spawn(id)?;
        self.wait_ready(id)
    }

    /// Asks every running node for its view of the cluster and returns the node that claims to
    /// lead in the highest term (see [`pick_leader`]); None while there is none, e.g. during an
    /// election. Nodes that do not answer within a probe's bound are skipped.
    pub fn leader(&self) -> Result<Option<u64>> {
        Ok(pick_leader(&self.views()))
    }

    /// Polls [`Swarm::leader`] until there is one, at most `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        let started = Instant::now();
        for _ in 0..max_probes(timeout) {
            if let Some(l) = self.leader()? {
                return Ok(l);
            }
            if started.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(PROBE_EVERY);
        }
        let views: Vec<String> = self.views().iter().map(|v| format!("{v:?}")).collect();
        bail!(
            "no leader within {timeout:?} among running nodes {:?}; views:\n{}\n{}",
            self.running(),
            views.join("\n"),
            self.log_tails()
        )
    }

    /// Node `id`'s answer to `GET /cluster`, within a probe's bound.
    pub fn cluster(&self, id: u64) -> Result<ClusterView> {
        let url = format!("http://{}/cluster", self.member(id)?.info.http_addr);
        let resp = self
            .probe
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .with_context(|| format!("GET {url}: body is not JSON"))?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {body}");
        }
        ClusterView::parse(&body["result"]).with_context(|| format!("GET {url}"))
    }

    /// Waits until node `observer`'s `/cluster` lists node `member`, at most `timeout`.
    pub fn wait_until_listed(&self, observer: u64, member: u64, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        for _ in 0..max_probes(timeout) {
            match self.cluster(observer) {
                Ok(v) if v.peers.contains_key(&member) => return Ok(()),
                Ok(v) => last = format!("{v:?}"),
                Err(e) => last = format!("{e:#}"),
            }
            if started.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(PROBE_EVERY);
        }
        let mut msg = format!(
            "node {member} not listed in node {observer}'s /cluster within {timeout:?}; \
             last answer: {last}\n--- node {observer} log tail ---\n{}",
            self.log_tail(observer)
        );
        if member != observer {
            msg += &format!(
                "\n--- node {member} log tail ---\n{}",
                self.log_tail(member)
            );
        }
        Err(anyhow!(msg))
    }

    /// Fails, naming the node and its log tail, if a node the harness believes running or paused
    /// has exited on its own (a crash); such a node is marked down.
    pub fn check_alive(&mut self) -> Result<()> {
        let mut dead = Vec::new();
        for m in &mut self.members {
            if let Some(c) = &mut m.child
                && let Some(status) = c.try_wait().context("poll tessera process")?
            {
                m.child = None;
                m.info.state = NodeState::Down;
                m.info.pid = None;
                dead.push((m.info.id, status));
            }
        }
        if dead.is_empty() {
            return Ok(());
        }
        let mut msg = String::new();
        for (id, status) in dead {
            msg += &format!(
                "node {id} exited on its own ({status}); log tail:\n{}\n",
                self.log_tail(id)
            );
        }
        Err(anyhow!(msg))
    }

    /// The last few KB of node `id`'s log (or why it cannot be read).
    pub fn log_tail(&self, id: u64) -> String {
        match self.member(id) {
            Ok(m) => read_tail(&m.info.log_path, LOG_TAIL_BYTES),
            Err(e) => format!("<{e:#}>"),
        }
    }

    /// Every node's log tail, each under a header.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            out += &format!(
                "----- node {} log tail ({}) -----\n{}\n",
                m.info.id,
                m.info.log_path.display(),
                read_tail(&m.info.log_path, LOG_TAIL_BYTES)
            );
        }
        out
    }

    fn views(&self) -> Vec<ClusterView> {
        self.running()
            .into_iter()
            .filter_map(|id| self.cluster(id).ok())
            .collect()
    }

    fn member(&self, id: u64) -> Result<&Member> {
        let n = self.members.len();
        id.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.members.get(i))
            .ok_or_else(|| anyhow!("no node {id} in a swarm of {n} (ids are 1..={n})"))
    }

    fn member_mut(&mut self, id: u64) -> Result<&mut Member> {
        let n = self.members.len();
        id.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.members.get_mut(i))
            .ok_or_else(|| anyhow!("no node {id} in a swarm of {n} (ids are 1..={n})"))
    }

    /// First start of a node: on fresh ports again if another process took one of its ports
    /// between the probe and the bind.
    fn start_new_member(&mut self, id: u64) -> Result<()> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            self.spawn(id)?;
            match self.wait_ready(id) {
                Ok(()) => return Ok(()),
                Err(e) if is_port_clash(&format!("{e:#}")) => {
                    let (http, p2p) = free_ports(1)?
                        .pop()
                        .ok_or_else(|| anyhow!("free_ports(1) gave no ports"))?;
                    let m = self.member_mut(id)?;
                    m.info.http_addr = http;
                    m.info.p2p_addr = p2p;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no start attempt")))
            .with_context(|| format!("start node {id}: ports taken in {PORT_ATTEMPTS} attempts"))
    }

    /// The arguments node `id` is started with (after the binary), the same at every start:
    /// `serve`, its id, addresses, dirs, `--bootstrap` (node 1) or `--join <node 1's p2p>`, the
    /// swarm's extra flags.
    pub fn command_line(&self, id: u64) -> Result<Vec<String>> {
        let m = self.member(id)?;
        let extra = &self.opts.args;
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--node-id".into(),
            id.to_string(),
            "--http-addr".into(),
            m.info.http_addr.to_string(),
            "--p2p-addr".into(),
            m.info.p2p_addr.to_string(),
            // gRPC on an ephemeral port: the default (the HTTP port's next) can be another
            // node's HTTP port, as the OS hands out probe ports in sequence
            "--grpc-addr".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            m.info.data_dir.display().to_string(),
            "--tls-dir".into(),
            m.info.tls_dir.display().to_string(),
        ];
        // node 1 founds the cluster, the others join it; kept at restarts, where a member
        // with data must tolerate them
        if id == 1 {
            args.push("--bootstrap".into());
        } else {
            args.extend(["--join".into(), self.member(1)?.info.p2p_addr.to_string()]);
        }
        args.extend(extra.iter().cloned());
        if !extra
            .iter()
            .any(|a| a == "--log" || a.starts_with("--log="))
        {
            args.extend(["--log".into(), "info,hnsw_rs=warn".into()]);
        }
        Ok(args)
    }

    fn spawn(&mut self, id: u64) -> Result<()> {
        let bin = self.bin.clone();
        let api_key = self.opts.api_key.clone();
        let env = self.opts.env.clone();
        let args = self.command_line(id)?;
        let m = self.member_mut(id)?;
        if m.child.is_some() {
            bail!("node {id} is already running");
        }
        m.info.starts += 1;
        let log_path = &m.info.log_path;
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create node dir {}", dir.display()))?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("open log {}", log_path.display()))?;
        writeln!(
            log,
            "===== swarm: start #{} of node {id}: tessera {} =====",
            m.info.starts,
            args.join(" ")
        )
        .with_context(|| format!("write log {}", log_path.display()))?;
        let mut cmd = Command::new(&bin);
        // only the flags above (and the swarm's API key) configure the node, never the
        // environment of whoever runs the tests
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TESSERA_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("NO_COLOR", "1");
        if let Some(k) = &api_key {
            cmd.env("TESSERA_API_KEY", k);
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone log handle")?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {} for node {id}", bin.display()))?;
        m.info.pid = Some(child.id());
        m.info.state = NodeState::Running;
        m.child = Some(child);
        Ok(())
    }

    /// Polls `/readyz` until 200; fails early (with the log tail) if the process exits, and kills
    /// it if it is not ready in time.
    fn wait_ready(&mut self, id: u64) -> Result<()> {
        let timeout = self.opts.ready_timeout;
        let url = format!("http://{}/readyz", self.member(id)?.info.http_addr);
        let started = Instant::now();
        for _ in 0..max_probes(timeout) {
            let m = self.member_mut(id)?;
            if let Some(c) = &mut m.child
                && let Some(status) = c.try_wait().context("poll tessera process")?
            {
                m.child = None;
                m.info.state = NodeState::Down;
                m.info.pid = None;
                bail!(
                    "node {id} exited before it was ready ({status}); log tail:\n{}",
                    self.log_tail(id)
                );
            }
            if let Ok(r) = self.probe.get(&url).send()
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(PROBE_EVERY);
        }
        let tail = self.log_tail(id);
        self.kill9(id).ok();
        bail!("node {id} not ready on {url} within {timeout:?}; log tail:\n{tail}")
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== swarm in {} =====\n{}===== end of swarm logs =====",
                self.root_path.display(),
                self.log_tails()
            );
        }
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                // SIGKILL also ends a SIGSTOPped process
                c.kill().ok();
                c.wait().ok();
            }
        }
        if self.opts.keep_root
            && let Some(root) = self.root.take()
        {
            let kept = root.keep();
            eprintln!("swarm: kept {}", kept.display());
        }
    }
}

/// A client for probes: short timeout, the swarm's API key.
fn probe_client(api_key: Option<&str>) -> Result<Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(k) = api_key {
        let v = reqwest::header::HeaderValue::from_str(k).context("api key as a header value")?;
        headers.insert("api-key", v);
    }
    Client::builder()
        .timeout(PROBE_TIMEOUT)
        .connect_timeout(PROBE_TIMEOUT)
        .default_headers(headers)
        .build()
        .context("build probe client")
}
