//! The tessera node: HTTP API, router, catalog (metadata + shard manager), configuration.
//!
//! `main.rs` is thin: it parses the CLI and calls [`start`]; process harnesses start nodes the
//! same way, in-process harnesses through [`start_with`] and a transport of their own.
//!
//! Modules depend one way, each only on those before it (config and auth are below them all):
//! ```text
//! context -> access -> quota -> shard_rpc -> peer -> catalog -> replication -> router -> api
//! ```
//! (`audit` uses `context`; `revocation` uses the router.) This file is on top: it builds the
//! parts in that order and wires them together.
//!
//! Architecture invariant: no part is bound late through a shared cell. The transport is bound
//! first and serves only once Raft, the catalog and the router exist
//! ([`tessera_cluster::transport::Transport::serve`]).

pub mod access;
pub mod api;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cert_cli;
pub mod config;
pub mod context;
pub mod identity;
pub mod peer;
pub mod quota;
pub mod read_barrier;
pub mod replication;
pub mod revocation;
pub mod router;
pub mod shard_rpc;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tessera_cluster::raft::{MetaNode, MetaRaft, RaftSettings};
use tessera_cluster::transport::Transport;
use tessera_cluster::transport::certs::NodeTls;
use tessera_cluster::transport::quic::{QuicConfig, QuicTransport};

use crate::api::AppState;
use crate::audit::{AuditLog, AuditTarget};
use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::config::{ClusterConfig, NodeConfig};
use crate::peer::{Link, PeerService};
use crate::quota::Quotas;
use crate::revocation::Revocations;
use crate::router::Router;

/// A running node: where it listens, and the task serving it.
pub struct Running {
    pub http_addr: SocketAddr,
    /// None: no gRPC listener (`grpc_addr` off).
    pub grpc_addr: Option<SocketAddr>,
    pub serve: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Installs the process-wide Prometheus recorder (once; later calls reuse it).
pub fn metrics_recorder() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// Opens the node's data, binds its HTTP listener and serves until `shutdown` completes. A
/// cluster member (`config.cluster`) talks to its peers over QUIC with mutual TLS.
pub async fn start(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let config = settle(config)?;
    let transport = match &config.cluster {
        Some(cluster) => Some(bind_quic(config.node_id, cluster)?),
        None => None,
    };
    run(config, transport, shutdown).await
}

/// Starts a cluster member that talks to its peers through `transport` (bound, not serving yet:
/// the node serves it once its parts exist), e.g. the in-memory hub of an in-process cluster.
/// `config.cluster` says whether it bootstraps or joins; its `p2p_addr` and `tls_dir` are not
/// used, the transport has its own address.
pub async fn start_with(
    config: NodeConfig,
    transport: Arc<dyn Transport>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    anyhow::ensure!(
        config.cluster.is_some(),
        "start_with needs cluster settings (bootstrap or join)"
    );
    run(settle(config)?, Some(transport), shutdown).await
}

/// Creates the data dir and settles the node's id against it, before anything uses the id.
fn settle(mut config: NodeConfig) -> anyhow::Result<NodeConfig> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let given = (!config.node_id_from_data_dir).then_some(config.node_id);
    config.node_id = identity::settle_node_id(&config.data_dir, given)?;
    Ok(config)
}

/// Binds the QUIC endpoint of a cluster member (not serving yet).
fn bind_quic(node_id: u64, cluster: &ClusterConfig) -> anyhow::Result<Arc<dyn Transport>> {
    let tls = NodeTls::load_dir(&cluster.tls_dir)
        .map_err(|e| anyhow::anyhow!("load tls dir {}: {e}", cluster.tls_dir.display()))?;
    let mut quic = QuicConfig::new(cluster.p2p_addr);
    quic.node_id = Some(node_id);
    let transport = QuicTransport::bind(quic, &tls, None)
        .map_err(|e| anyhow::anyhow!("bind p2p {}: {e}", cluster.p2p_addr))?;
    Ok(Arc::new(transport))
}

/// The parts of a cluster member that exist before the catalog: Raft on the transport, and the
/// link to peers.
struct Member {
    raft: MetaRaft,
    link: Arc<Link>,
    transport: Arc<dyn Transport>,
    config: ClusterConfig,
}

/// Starts the Raft member on `transport` (bootstrapping a new cluster if asked) and the link.
async fn start_member(
    config: &NodeConfig,
    cluster: &ClusterConfig,
    transport: Arc<dyn Transport>,
    http_addr: SocketAddr,
) -> anyhow::Result<Member> {
    let p2p_addr = transport
        .local_addr()
        .map_err(|e| anyhow::anyhow!("p2p address: {e}"))?;
    let me = MetaNode::new(p2p_addr.to_string(), http_addr.to_string());
    let raft = MetaRaft::start(
        config.node_id,
        me,
        &config.data_dir,
        transport.clone(),
        RaftSettings::default(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("start metadata raft: {e}"))?;
    let link = Arc::new(Link::new(transport.clone(), Some(raft.clone())));
    peer::membership::learn_addresses(&link, &raft.metrics().nodes);
    if cluster.bootstrap {
        raft.initialize_single()
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    }
    Ok(Member {
        raft,
        link,
        transport,
        config: cluster.clone(),
    })
}

async fn run(
    config: NodeConfig,
    transport: Option<Arc<dyn Transport>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("bind http {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    let grpc_listener = match config.grpc_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind grpc {addr} (choose it with --grpc-addr, or turn gRPC off with --grpc-addr off)"))?,
        ),
        None => None,
    };
    let grpc_addr = grpc_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    let member = match (&config.cluster, transport) {
        (Some(cluster), Some(transport)) => {
            Some(start_member(&config, cluster, transport, http_addr).await?)
        }
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            anyhow::bail!("a transport goes with cluster settings, and only with them")
        }
    };
    let catalog = Arc::new(match &member {
        Some(m) => Catalog::open_raft(config.clone(), m.raft.clone(), m.link.clone())
            .await
            .map_err(|e| anyhow::anyhow!("open catalog: {e}"))?,
        None => Catalog::open(config.clone())
            .await
            .map_err(|e| anyhow::anyhow!("open catalog: {e}"))?,
    });
    let auth = Arc::new(
        Authenticator::new(config.auth.clone())
            .map_err(|e| anyhow::anyhow!("authentication settings: {e}"))?,
    );
    if !auth.is_enabled() {
        tracing::warn!("no api_key or jwks configured: every caller has full access");
    }
    watch_jwks(auth.clone());
    let audit = Arc::new(match &config.audit_log {
        Some(target) => AuditLog::open(&AuditTarget::parse(target))?,
        None => AuditLog::disabled(),
    });
    let quotas = Arc::new(
        Quotas::new(config.quota.clone(), config.read_threads)
            .map_err(|e| anyhow::anyhow!("quota defaults: {e}"))?,
    );
    quotas
        .follow(&catalog.meta.read())
        .map_err(|e| anyhow::anyhow!("tenant quotas: {e}"))?;
    quotas.spawn_upkeep();
    let replication = replication::Replication::new(catalog.clone());
    let router = Arc::new(
        Router::start(
            catalog.clone(),
            quotas.clone(),
            member.as_ref().map(|m| m.link.clone()),
            replication.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    if let Some(m) = &member {
        serve_peers(m, &catalog, &quotas, &replication)?;
    }
    let state = AppState {
        catalog: catalog.clone(),
        router: router.clone(),
        prom: metrics_recorder(),
        auth,
        audit,
        revocations: Arc::new(Revocations::default()),
    };
    let app = api::http(state.clone());
    // one shutdown signal for both listeners
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let stop_signal = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // read now: a bad certificate or key stops the node before it serves anything
    let tls = config
        .api_tls
        .as_ref()
        .map(api::listener::tls_acceptor)
        .transpose()?;
    let grpc = match grpc_listener {
        Some(listener) => {
            let grpc_tls = config.api_tls.clone();
            let signal = stop_signal(stopped.clone());
            Some(tokio::spawn(async move {
                let served = api::grpc::serve(listener, state, grpc_tls.as_ref(), signal).await;
                if let Err(e) = &served {
                    tracing::error!(error = %e, "grpc server stopped");
                }
                served
            }))
        }
        None => None,
    };
    let shutdown = stop_signal(stopped);
    tracing::info!(node = config.node_id, cluster = member.is_some(), %http_addr, grpc_addr = ?grpc_addr, tls = config.api_tls.is_some(), data_dir = %config.data_dir.display(), "tessera serving");
    let limits = api::listener::HttpLimits {
        header_timeout: std::time::Duration::from_millis(config.http_header_timeout_ms),
        body_timeout: std::time::Duration::from_millis(config.http_body_timeout_ms),
        max_connections: config.http_max_connections,
    };
    let serve = tokio::spawn(async move {
        api::listener::serve(listener, app, limits, tls, shutdown)
            .await
            .context("http server")?;
        if let Some(grpc) = grpc {
            match grpc.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "grpc server"),
                Err(e) => tracing::warn!(error = %e, "grpc server task"),
            }
        }
        router.stop();
        if let Some(m) = &member {
            if let Err(e) = m.raft.shutdown().await {
                tracing::warn!(error = %e, "metadata raft shutdown");
            }
            m.transport.shutdown().await;
        }
        catalog.shards.shutdown().await;
        tracing::info!("tessera stopped");
        Ok(())
    });
    Ok(Running {
        http_addr,
        grpc_addr,
        serve,
    })
}

/// Serves peers' calls on the member's transport, follows the Raft log with the catalog, pings
/// peers, and joins the cluster if asked: the last step of a member's start.
fn serve_peers(
    member: &Member,
    catalog: &Arc<Catalog>,
    quotas: &Arc<Quotas>,
    replication: &Arc<replication::Replication>,
) -> anyhow::Result<()> {
    let service = Arc::new(PeerService {
        raft: member.raft.clone(),
        link: member.link.clone(),
        shards: catalog.shards.clone(),
        sets: replication.clone(),
        quotas: quotas.clone(),
        meta: catalog.clone(),
        max_voters: member.config.max_voters,
        join_token: member.config.join_token.clone(),
        binding: Default::default(),
    });
    member
        .transport
        .serve(service.handler())
        .map_err(|e| anyhow::anyhow!("serve p2p: {e}"))?;
    tokio::spawn(catalog.clone().follow_raft());
    peer::membership::spawn_background(&member.raft, &member.link, &member.config);
    replication::spawn_loops(replication.clone());
    Ok(())
}

/// How often the JWKS file's modification time is checked.
const JWKS_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Reloads the JWKS on SIGHUP and whenever the file changes, without a restart. A file that
/// fails to load leaves the previous keys in force.
fn watch_jwks(auth: Arc<Authenticator>) {
    let Some(path) = auth
        .config()
        .jwks_path
        .clone()
        .filter(|_| auth.config().jwt_rbac)
    else {
        return;
    };
    let reload = move |auth: &Authenticator, why: &str| match auth.reload_jwks() {
        Ok(report) => {
            tracing::info!(why, kids = ?report.loaded, skipped = report.skipped.len(), "jwks loaded")
        }
        Err(e) => tracing::error!(why, error = %e, "jwks reload failed; previous keys stay"),
    };
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    tokio::spawn(async move {
        let mut last = mtime(&path);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let signalled = match hup.as_mut() {
                Some(h) => tokio::select! {
                    _ = h.recv() => true,
                    _ = tokio::time::sleep(JWKS_POLL) => false,
                },
                None => {
                    tokio::time::sleep(JWKS_POLL).await;
                    false
                }
            };
            #[cfg(not(unix))]
            let signalled = {
                tokio::time::sleep(JWKS_POLL).await;
                false
            };
            let now = mtime(&path);
            if signalled {
                last = now;
                reload(&auth, "SIGHUP");
            } else if now != last {
                last = now;
                reload(&auth, "file changed");
            }
        }
    });
}
