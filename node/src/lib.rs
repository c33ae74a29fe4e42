//! The tessera node: HTTP API, router, catalog (metadata + shard manager), configuration.
//!
//! `main.rs` is thin: it parses the CLI and calls [`start`]; harnesses start nodes the same way.

pub mod access;
pub mod api;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cert_cli;
pub mod cluster;
pub mod config;
pub mod http_server;
pub mod identity;
pub mod quota;
pub mod remote;
pub mod revocation;
pub mod router;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::api::AppState;
use crate::audit::{AuditLog, AuditTarget};
use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::config::NodeConfig;
use crate::quota::Quotas;
use crate::revocation::Revocations;
use crate::router::Router;

/// A running node: where it listens, and the task serving it.
pub struct Running {
    pub http_addr: SocketAddr,
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

/// Opens the node's data, binds its HTTP listener and serves until `shutdown` completes.
pub async fn start(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let mut config = config;
    config.node_id = identity::settle_node_id(&config.data_dir, config.requested_node_id)?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("bind http {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    let cluster = match &config.cluster {
        Some(cc) => Some(
            cluster::ClusterNode::start(config.node_id, cc, http_addr, &config.data_dir).await?,
        ),
        None => None,
    };
    let catalog = Arc::new(match &cluster {
        Some(c) => Catalog::open_raft(config.clone(), c.raft.clone())
            .await
            .map_err(|e| anyhow::anyhow!("open catalog: {e}"))?,
        None => Catalog::open(config.clone())
            .await
            .map_err(|e| anyhow::anyhow!("open catalog: {e}"))?,
    });
    if let Some(c) = &cluster {
        catalog.set_link(c.link.clone());
    }
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
    let router = Arc::new(
        Router::start(
            catalog.clone(),
            quotas.clone(),
            cluster.as_ref().map(|c| c.link.clone()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    if let Some(c) = &cluster {
        c.serve(catalog.clone(), quotas);
    }
    let app = api::http(AppState {
        catalog: catalog.clone(),
        router: router.clone(),
        prom: metrics_recorder(),
        auth,
        audit,
        revocations: Arc::new(Revocations::default()),
    });
    tracing::info!(node = config.node_id, cluster = cluster.is_some(), %http_addr, data_dir = %config.data_dir.display(), "tessera serving");
    let limits = http_server::HttpLimits {
        header_timeout: std::time::Duration::from_millis(config.http_header_timeout_ms),
        body_timeout: std::time::Duration::from_millis(config.http_body_timeout_ms),
        max_connections: config.http_max_connections,
    };
    let serve = tokio::spawn(async move {
        http_server::serve(listener, app, limits, shutdown)
            .await
            .context("http server")?;
        router.stop();
        if let Some(c) = &cluster {
            if let Err(e) = c.raft.shutdown().await {
                tracing::warn!(error = %e, "metadata raft shutdown");
            }
            c.link.transport.shutdown().await;
        }
        catalog.shards.shutdown().await;
        tracing::info!("tessera stopped");
        Ok(())
    });
    Ok(Running { http_addr, serve })
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
