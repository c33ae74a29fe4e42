//! tessera-chaos: real `tessera` processes in a local cluster, and the faults that test it.
//!
//! - [`swarm`]: [`Swarm`], N nodes on 127.0.0.1 over real QUIC with mutual TLS (certificates
//!   from `tessera cert`), node 1 bootstrapping and the others joining it; SIGKILL, SIGSTOP,
//!   SIGCONT, SIGTERM and restart per node; who leads.
//! - [`view`]: a node's `GET /cluster` as data, and the choice of a leader from several views.
//! - [`process`]: bounded child processes and signals through the `kill` command.
//! - the chaos suite: [`run`] (one seeded run: swarm, [`workload`] through every node,
//!   [`nemesis`] schedule with real partitions from [`net`], [`history`], [`check`],
//!   [`figures`]), [`client`] (timeouts and the ok/fail/unknown of each answer), [`signals`]
//!   (SIGINT/SIGTERM leave nothing behind), [`fixture`] (collection, tenants, replica view).
//! - [`deploy_lint`]: the checks of `deploy/` (flags and `TESSERA_*` variables that must exist,
//!   YAML that must be well formed), run by `tests/deploy_files.rs` against the real binary.
//!
//! The HTTP client ([`Api`]) and the lookup of the binary (`$TESSERA_BIN` or
//! `target/debug/tessera`) are the single-node harness's, from `tessera-tests`.

pub mod check;
pub mod client;
pub mod deploy_lint;
pub mod figures;
pub mod fixture;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod process;
pub mod run;
pub mod signals;
pub mod swarm;
pub mod view;
pub mod workload;

pub use swarm::{NodeInfo, NodeState, Swarm, SwarmOptions};

/// A deterministic vector of `dim` components in [-0.5, 0.5) for `seed` (xorshift), the data of
/// the benchmarks: the same seed gives the same vector on every run and machine.
pub fn synthetic_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f32 / 10_000.0 - 0.5
        })
        .collect()
}
pub use tessera_tests::Api;
pub use view::{ClusterView, PeerView};
