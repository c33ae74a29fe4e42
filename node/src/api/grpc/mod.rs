//! Qdrant's gRPC API (`qdrant.Qdrant`, `qdrant.Collections`, `qdrant.Points`), so the Rust, Go,
//! Java and .NET clients and Python's `prefer_grpc=True` reach tessera.
//!
//! The message types and service traits are those tonic-build generated from the `.proto` files
//! Qdrant publishes, as its Rust client ships them (`qdrant-client`, pinned in Cargo.toml).
//!
//! There is one request layer under both front doors: a gRPC request is turned into the REST
//! body it means ([`to_json`]) and handed to the same operation the REST handler calls (the
//! `pub async fn`s of [`crate::api`]'s modules), whose typed answer is written back as Qdrant's
//! message ([`to_proto`]). Authentication (the `api-key` and `authorization` metadata, read
//! exactly as REST reads those headers), early quota admission, the audit line and the per-tenant
//! figures are the REST middleware's own functions ([`edge`]).
//!
//! Methods tessera does not serve on REST either (vector updates, vector names, cluster setup)
//! answer `UNIMPLEMENTED` naming themselves.

pub mod batch;
pub mod collections;
pub mod edge;
pub mod groups;
pub mod incoming;
pub mod points;
pub mod to_json;
pub mod to_proto;

use std::future::Future;
use std::time::Duration;

use qdrant_client::qdrant as pb;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding::Gzip;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::api::AppState;
use crate::config::TlsFiles;

/// How often an idle client connection is pinged, and how long its answer may take.
const KEEPALIVE: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams (calls in flight) one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// The services, on one node's state.
#[derive(Clone)]
pub struct Grpc {
    pub app: AppState,
}

/// Serves the gRPC API on `listener` until `shutdown` completes. Messages are bounded by the
/// node's body limit and open connections by its connection limit, as on REST; a client's
/// `grpc-timeout` is honoured.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    tls: Option<&TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limit = app.catalog.config.max_body_bytes;
    let max_connections = app.catalog.config.http_max_connections;
    let grpc = Grpc { app };
    let mut server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    if let Some(tls) = tls {
        server = server.tls_config(ServerTlsConfig::new().identity(identity(tls)?))?;
    }
    // gzip both ways, as Qdrant serves it (clients opt in, e.g. Python's grpc_compression)
    let router = server
        .add_service(pb::qdrant_server::QdrantServer::new(grpc.clone()))
        .add_service(
            pb::collections_server::CollectionsServer::new(grpc.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(Gzip)
                .send_compressed(Gzip),
        )
        .add_service(
            pb::points_server::PointsServer::new(grpc)
                .max_decoding_message_size(limit)
                .accept_compressed(Gzip)
                .send_compressed(Gzip),
        );
    router
        .serve_with_incoming_shutdown(incoming::bounded(listener, max_connections), shutdown)
        .await?;
    Ok(())
}

/// The certificate and key of `tls`, read now so a bad file stops the node at start.
pub fn identity(tls: &TlsFiles) -> anyhow::Result<Identity> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("read tls file {}: {e}", p.display()))
    };
    Ok(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
}

#[tonic::async_trait]
impl pb::qdrant_server::Qdrant for Grpc {
    async fn health_check(
        &self,
        _request: tonic::Request<pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<pb::HealthCheckReply>, tonic::Status> {
        Ok(tonic::Response::new(pb::HealthCheckReply {
            title: crate::api::service::TITLE.to_string(),
            version: crate::api::QDRANT_API_VERSION.to_string(),
            commit: option_env!("TESSERA_COMMIT").map(str::to_string),
        }))
    }
}
