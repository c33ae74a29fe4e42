//! An in-process cluster: N tessera nodes started with [`tessera_node::start_with`] in this
//! process, talking over one in-memory [`MemoryHub`] through a [`FaultyTransport`] each, so a
//! test can partition, isolate and heal nodes deterministically and in milliseconds. Each node
//! has its own temporary data directory and a real HTTP listener on `127.0.0.1:0`, so tests drive
//! it with the same [`Api`] as a real process.
//!
//! The nodes run on a runtime the cluster owns; tests are plain `#[test]` functions that make
//! blocking HTTP calls. This is beside, not instead of, the real-process tests in `chaos/` (real
//! QUIC, kill -9): it tests the cluster logic, not the binary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tessera_cluster::transport::Transport;
use tessera_cluster::transport::faults::{Faults, FaultyTransport};
use tessera_cluster::transport::memory::MemoryHub;
use tessera_node::config::{ClusterConfig, NodeConfig};

use crate::Api;

/// How often the cluster's state is probed while waiting.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// One node of a [`TestCluster`].
struct Member {
    api: Api,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serve: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// N nodes in this process over the memory hub, with faults.
pub struct TestCluster {
    runtime: tokio::runtime::Runtime,
    hub: Arc<MemoryHub>,
    faults: Arc<Faults>,
    members: BTreeMap<u64, Member>,
    /// Data directories of every node (kept until the cluster is dropped).
    _base: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `nodes` nodes (ids 1..=nodes): node 1 bootstraps, the others join through it, and
    /// this returns once every node sees all of them as members (voters, up to three) and a
    /// leader.
    pub fn start(nodes: u64) -> Result<TestCluster> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("build the cluster's runtime")?;
        let hub = MemoryHub::new();
        let faults = Faults::new(1);
        let base = tempfile::tempdir().context("tempdir for the cluster")?;
        let mut members = BTreeMap::new();
        for id in 1..=nodes {
            let mut config = NodeConfig::new(
                "127.0.0.1:0".parse().context("loopback address")?,
                &base.path().join(format!("node-{id}")),
            );
            config.node_id = id;
            config.read_threads = 2;
            config.cluster = Some(ClusterConfig {
                p2p_addr: MemoryHub::addr_of(id),
                tls_dir: base.path().join("no-tls"),
                bootstrap: id == 1,
                join: (id != 1).then(|| MemoryHub::addr_of(1)),
                max_voters: 3,
                join_token: None,
                replica_timeout: Duration::from_secs(60),
                auto_rebalance: false,
                transfer_rate: 1 << 30,
            });
            let memory = Arc::new(hub.attach(id, MemoryHub::addr_of(id)));
            let transport: Arc<dyn Transport> =
                Arc::new(FaultyTransport::new(memory, id, faults.clone()));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let running = runtime
                .block_on(tessera_node::start_with(config, transport, async move {
                    let _ = stopped.await;
                }))
                .with_context(|| format!("start node {id}"))?;
            members.insert(
                id,
                Member {
                    api: Api::new(running.http_addr)?,
                    stop: Some(stop),
                    serve: Some(running.serve),
                },
            );
        }
        let cluster = TestCluster {
            runtime,
            hub,
            faults,
            members,
            _base: base,
        };
        cluster.wait_formed(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The ids of the nodes.
    /// The fault rules every node's transport applies (targeted losses, drops, delay).
    pub fn faults(&self) -> &tessera_cluster::transport::faults::Faults {
        &self.faults
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members.keys().copied().collect()
    }

    /// The HTTP client of node `id`.
    pub fn api(&self, id: u64) -> Result<&Api> {
        self.members
            .get(&id)
            .map(|m| &m.api)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    /// Node `id`'s answer to `GET /cluster` (its `result`).
    pub fn view(&self, id: u64) -> Result<Value> {
        self.api(id)?.ok_get("/cluster")
    }

    /// The leader node `id` knows of, if any.
    pub fn leader_seen_by(&self, id: u64) -> Result<Option<u64>> {
        Ok(self.view(id)?["raft_info"]["leader"].as_u64())
    }

    /// Waits until the nodes in `among` agree on one leader that is itself among them.
    pub fn wait_for_leader(&self, among: &[u64], timeout: Duration) -> Result<u64> {
        let started = Instant::now();
        loop {
            let seen: Vec<Option<u64>> = among
                .iter()
                .map(|id| self.leader_seen_by(*id))
                .collect::<Result<_>>()?;
            if let Some(Some(leader)) = seen.first()
                && among.contains(leader)
                && seen.iter().all(|l| *l == Some(*leader))
            {
                return Ok(*leader);
            }
            if started.elapsed() > timeout {
                bail!("no agreed leader among {among:?} within {timeout:?}: {seen:?}");
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// Waits until every node sees every node as a member (a voter, up to three), and a leader.
    fn wait_formed(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let ids = self.ids();
        loop {
            let mut formed = true;
            for id in &ids {
                let view = self.view(*id)?;
                let peers = view["peers"].as_object().cloned().unwrap_or_default();
                // up to three voters: a learner still being promoted cannot vote yet
                let voters = peers.values().filter(|p| p["voter"] == true).count();
                let ready = self.api(*id)?.get("/readyz")?.0 == 200;
                formed &= peers.len() == ids.len() && voters == ids.len().min(3) && ready;
            }
            if formed {
                self.wait_for_leader(&ids, timeout)?;
                return Ok(());
            }
            if started.elapsed() > timeout {
                let views: Vec<String> = ids
                    .iter()
                    .map(|id| match self.view(*id) {
                        Ok(view) => format!("node {id}: {view}"),
                        Err(e) => format!("node {id}: {e:#}"),
                    })
                    .collect();
                bail!(
                    "the cluster did not form within {timeout:?}:\n{}",
                    views.join("\n")
                );
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// Cuts node `id` off: calls to and from it fail as to an unreachable peer.
    pub fn isolate(&self, id: u64) {
        self.faults.isolate(id);
    }

    /// Cuts every call between the nodes of `left` and those of `right`.
    pub fn partition(&self, left: &[u64], right: &[u64]) {
        self.faults.partition(left, right);
    }

    /// Ends every partition and isolation.
    pub fn heal(&self) {
        self.faults.heal();
    }

    /// Sends one call from a stranger on the hub (claiming node id `claims`, at `addr`) to
    /// node `to`: what a holder of a cluster certificate that is no member could try.
    pub fn call_as_stranger(
        &self,
        claims: u64,
        addr: std::net::SocketAddr,
        to: u64,
        service: tessera_cluster::transport::Service,
        body: Vec<u8>,
    ) -> tessera_cluster::Result<Vec<u8>> {
        let stranger = self.hub.attach(claims, addr);
        let result = self.runtime.block_on(stranger.call_addr(
            MemoryHub::addr_of(to),
            service,
            body,
            Duration::from_secs(5),
        ));
        self.hub.unregister(addr);
        result
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.faults.heal();
        for member in self.members.values_mut() {
            if let Some(stop) = member.stop.take() {
                let _ = stop.send(());
            }
        }
        for member in self.members.values_mut() {
            if let Some(serve) = member.serve.take() {
                let _ = self
                    .runtime
                    .block_on(async { tokio::time::timeout(Duration::from_secs(10), serve).await });
            }
        }
    }
}
