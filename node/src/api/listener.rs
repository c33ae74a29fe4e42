//! The HTTP listener: accepts HTTP/1.1 connections and serves the API on them, with the limits a
//! server facing the open network needs against slow and idle clients.
//!
//! `axum::serve` sets no timer on hyper, so hyper's header timeout never fires: a client that
//! opens a connection and never finishes its headers (slowloris), or sends a body shorter than
//! its `Content-Length`, holds a connection and a task forever. Here:
//! - a request's headers must arrive within `header_timeout` (this also closes keep-alive
//!   connections idle for that long: hyper starts the timer when it waits for the next request);
//! - its body within `body_timeout` (the read then fails and the request is refused);
//! - at most `max_connections` are open at once; further connections wait in the kernel's listen
//!   backlog until one closes, so idle connections cannot exhaust memory or file descriptors.
//!
//! Shutdown is graceful: the listener stops accepting, connections finish the request in flight
//! and close, bounded by [`DRAIN_TIMEOUT`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_layer::Layer;

/// How long shutdown waits for open connections to finish before dropping them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's read buffer per connection (bounds a request head), and its most headers; both
/// above the API's limits ([`super::error::MAX_HEADER_BYTES`], [`super::error::MAX_HEADERS`]), which answer first.
const HYPER_READ_BUFFER_BYTES: usize = 1 << 20;
const HYPER_MAX_HEADERS: usize = 512;

/// What the listener allows a client.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// The TLS acceptor of a PEM certificate chain and key (HTTP/1.1 only, as the listener), read
/// now so a bad file stops the node at start.
pub fn tls_acceptor(tls: &crate::config::TlsFiles) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("read tls certificate {}: {e}", tls.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in {}",
        tls.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| anyhow::anyhow!("read tls key {}: {e}", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("tls certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then
/// drains open connections. A TLS handshake must finish within the header timeout.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = RequestBodyTimeoutLayer::new(limits.body_timeout).layer(app);
    // HTTP/1.1 only, as Qdrant's REST port: protocol sniffing (h1 or h2c) would read the first
    // bytes outside any timeout, so a client that sends nothing would never be cut off
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // above the API's own header limits, so oversized headers get its 431 with Qdrant's
        // error JSON rather than hyper's empty one
        .max_buf_size(HYPER_READ_BUFFER_BYTES)
        .max_headers(HYPER_MAX_HEADERS);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error
                    tracing::warn!(error = %e, "accepting an http connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(service.clone());
        match &tls {
            None => {
                let connection =
                    graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "http connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let (acceptor, builder, watcher) =
                    (acceptor.clone(), builder.clone(), graceful.watcher());
                let handshake_timeout = limits.header_timeout;
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    };
                    let connection =
                        watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "https connection ended with an error");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("http connections still open after the drain timeout; closing them");
        }
    }
    Ok(())
}
