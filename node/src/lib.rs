//! The tessera node: HTTP API, router, catalog (metadata + shard manager), configuration.
//!
//! `main.rs` is thin: it parses the CLI and calls [`start`]; harnesses start nodes the same way.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod cert_cli;
pub mod config;
pub mod quota;
pub mod router;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::api::AppState;
use crate::catalog::Catalog;
use crate::config::NodeConfig;
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
    let catalog = Arc::new(
        Catalog::open(config.clone())
            .await
            .map_err(|e| anyhow::anyhow!("open catalog: {e}"))?,
    );
    let router = Arc::new(Router {
        catalog: catalog.clone(),
    });
    let app = api::http(AppState {
        catalog: catalog.clone(),
        router,
        prom: metrics_recorder(),
    });
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("bind http {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    tracing::info!(%http_addr, data_dir = %config.data_dir.display(), "tessera serving");
    let serve = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("http server")?;
        catalog.shards.shutdown().await;
        tracing::info!("tessera stopped");
        Ok(())
    });
    Ok(Running { http_addr, serve })
}
