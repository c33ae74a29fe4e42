//! tessera-chaos: real `tessera` processes in a local cluster, and the faults that test it.
//!
//! - [`swarm`]: [`Swarm`], N nodes on 127.0.0.1 over real QUIC with mutual TLS (certificates
//!   from `tessera cert`), node 1 bootstrapping and the others joining it; SIGKILL, SIGSTOP,
//!   SIGCONT, SIGTERM and restart per node; who leads.
//! - [`view`]: a node's `GET /cluster` as data, and the choice of a leader from several views.
//! - [`process`]: bounded child processes and signals through the `kill` command.
//! - [`deploy_lint`]: the checks of `deploy/` (flags and `TESSERA_*` variables that must exist,
//!   YAML that must be well formed), run by `tests/deploy_files.rs` against the real binary.
//!
//! The HTTP client ([`Api`]) and the lookup of the binary (`$TESSERA_BIN` or
//! `target/debug/tessera`) are the single-node harness's, from `tessera-tests`.

pub mod deploy_lint;
pub mod process;
pub mod swarm;
pub mod view;

pub use swarm::{NodeInfo, NodeState, Swarm, SwarmOptions};
pub use tessera_tests::Api;
pub use view::{ClusterView, PeerView};
