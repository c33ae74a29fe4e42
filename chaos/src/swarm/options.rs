//! How a swarm is started, and what the harness knows of each node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{JOIN_TIMEOUT, READY_TIMEOUT};

/// How to start a swarm.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    /// Number of nodes, 1..=[`MAX_NODES`].
    pub nodes: usize,
    /// Extra flags for every node's `tessera serve` (after the cluster flags the swarm sets).
    pub args: Vec<String>,
    /// An API key for every node, given as `TESSERA_API_KEY` (flags are visible to other local
    /// users); the swarm's own clients and [`Swarm::api`] send it.
    pub api_key: Option<String>,
    pub ready_timeout: Duration,
    pub join_timeout: Duration,
    /// Keep the root directory (certificates, data, logs) when the swarm is dropped.
    pub keep_root: bool,
    /// Environment variables set for every node, after the caller's `TESSERA_*` variables are
    /// removed (the test-only fault switches of the node).
    pub env: Vec<(String, String)>,
}

impl SwarmOptions {
    pub fn new(nodes: usize) -> SwarmOptions {
        SwarmOptions {
            nodes,
            args: Vec::new(),
            api_key: None,
            ready_timeout: READY_TIMEOUT,
            join_timeout: JOIN_TIMEOUT,
            keep_root: false,
            env: Vec::new(),
        }
    }

    /// Adds a flag (or a flag's value) to every node's command line.
    pub fn arg(mut self, arg: &str) -> SwarmOptions {
        self.args.push(arg.to_owned());
        self
    }

    pub fn api_key(mut self, key: &str) -> SwarmOptions {
        self.api_key = Some(key.to_owned());
        self
    }

    pub fn keep_root(mut self, keep: bool) -> SwarmOptions {
        self.keep_root = keep;
        self
    }

    /// Sets `name=value` in every node's environment.
    pub fn env(mut self, name: &str, value: &str) -> SwarmOptions {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What the harness last did to a node's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Started and not signalled since.
    Running,
    /// SIGSTOPped: alive, holding its ports, running no code.
    Paused,
    /// Killed, stopped, or found exited.
    Down,
}

/// One node of the swarm, as the harness knows it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its cluster node id (`--node-id`), 1..=N.
    pub id: u64,
    pub http_addr: SocketAddr,
    pub p2p_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub tls_dir: PathBuf,
    pub log_path: PathBuf,
    /// The process id while it runs or is paused.
    pub pid: Option<u32>,
    pub state: NodeState,
    /// How many times it was spawned.
    pub starts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_up() {
        let o = SwarmOptions::new(3)
            .arg("--max-voters")
            .arg("5")
            .api_key("k")
            .keep_root(true)
            .env("TESSERA_X", "1");
        assert_eq!(o.nodes, 3);
        assert_eq!(o.args, ["--max-voters", "5"]);
        assert_eq!(o.api_key.as_deref(), Some("k"));
        assert!(o.keep_root);
        assert_eq!(o.env, [("TESSERA_X".to_owned(), "1".to_owned())]);
    }
}
