//! The QUIC transport: one quinn endpoint per node, serving and calling, with mutual TLS 1.3
//! under the cluster CA.
//!
//! - The server requires a client certificate that chains to the cluster CA; the client verifies
//!   the server's chain against the same CA under the fixed name [`certs::SERVER_NAME`], so peers
//!   are dialled by IP. A process without a cluster certificate fails the handshake.
//! - One bidirectional stream per call ([`super::frame`]); each incoming stream is served in its own
//!   task; quinn's stream limit bounds concurrent streams per connection.
//! - Connections are cached per peer address and re-established when broken. The stateless-reset
//!   key is derived from the node's private key, so a peer restarted on the same address resets
//!   stale connections at once instead of letting callers wait for an idle timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, Endpoint, EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use rustls::RootCertStore;
use rustls::crypto::tls13::{Hkdf, OkmBlock};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::certs::{self, NodeTls, crypto_provider};
use super::frame::{self, LENGTH_PREFIX_LEN};
use super::{
    AddressBook, BoxFuture, Counters, Handler, NodeId, PeerInfo, Service, Transport, TransportStats,
};
use crate::error::{Error, ErrorKind, Result};

/// Default UDP port of the node-to-node transport.
pub const DEFAULT_PORT: u16 = 6335;
/// ALPN protocol of tessera's node-to-node transport; both sides must agree on it.
pub const ALPN: &[u8] = b"tessera/1";
/// Default limit on one frame (request or reply payload).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;

/// Settings of a [`QuicTransport`]. Every limit has a default in [`QuicConfig::new`].
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// UDP address to bind (port 0 picks one).
    pub bind: SocketAddr,
    /// This node's id, sent with every call so handlers know who calls (`None` before joining).
    pub node_id: Option<NodeId>,
    /// Largest request or reply payload, in bytes, accepted or sent.
    pub max_frame_bytes: usize,
    /// Concurrent streams (calls) a peer may have open on one connection to us.
    pub max_concurrent_streams: u32,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// Keep-alive interval of outgoing connections (below `idle_timeout`).
    pub keep_alive: Duration,
    /// Time a caller has to send its whole request once it opened a stream.
    pub request_read_timeout: Duration,
    /// Cap on the time a handler may run, whatever deadline the caller sent.
    pub max_handler_time: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl QuicConfig {
    /// Defaults: 64 MiB frames, 256 streams per connection, 30 s idle timeout, 5 s keep-alive.
    pub fn new(bind: SocketAddr) -> QuicConfig {
        QuicConfig {
            bind,
            node_id: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_concurrent_streams: 256,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            request_read_timeout: Duration::from_secs(30),
            max_handler_time: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

fn roots(ca: &rustls::pki_types::CertificateDer<'static>) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| Error::bad_request(format!("cluster CA certificate: {e}")))?;
    Ok(Arc::new(roots))
}

fn transport_config(config: &QuicConfig, keep_alive: bool) -> Result<Arc<TransportConfig>> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(config.max_concurrent_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(config.idle_timeout).map_err(|e| tls_err("idle timeout", e))?,
    ));
    if keep_alive {
        t.keep_alive_interval(Some(config.keep_alive));
    }
    Ok(Arc::new(t))
}

/// The quinn server config: TLS 1.3 only, client certificate required and checked against the CA.
fn server_config(tls: &NodeTls, config: &QuicConfig) -> Result<quinn::ServerConfig> {
    let provider = crypto_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&tls.ca)?, provider.clone())
        .build()
        .map_err(|e| tls_err("client verifier", e))?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("server tls", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![tls.cert.clone()], tls.key_der())
        .map_err(|e| tls_err("server certificate", e))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(crypto).map_err(|e| tls_err("quic server tls", e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(transport_config(config, false)?);
    Ok(server)
}

/// The quinn client config: TLS 1.3 only, server checked against the CA, our certificate offered.
fn client_config(tls: &NodeTls, config: &QuicConfig) -> Result<quinn::ClientConfig> {
    let mut crypto = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("client tls", e))?
        .with_root_certificates(roots(&tls.ca)?)
        .with_client_auth_cert(vec![tls.cert.clone()], tls.key_der())
        .map_err(|e| tls_err("client certificate", e))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(crypto).map_err(|e| tls_err("quic client tls", e))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(transport_config(config, true)?);
    Ok(client)
}

/// HMAC key for QUIC stateless resets, derived from the node's private key so that it survives a
/// restart (see the module doc). Uses the HKDF of our one rustls provider.
struct ResetKey {
    hkdf: &'static dyn Hkdf,
    key: OkmBlock,
}

impl ResetKey {
    fn derive(tls: &NodeTls) -> Result<ResetKey> {
        let hkdf = match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
            rustls::SupportedCipherSuite::Tls13(suite) => suite.hkdf_provider,
            rustls::SupportedCipherSuite::Tls12(_) => {
                return Err(Error::internal("no TLS 1.3 HKDF for the reset key"));
            }
        };
        let key = hkdf
            .extract_from_secret(
                Some(b"tessera quic stateless reset"),
                tls.key.secret_pkcs8_der(),
            )
            .expand_block(&[b"reset key"]);
        Ok(ResetKey { hkdf, key })
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let tag = self.hkdf.hmac_sign(&self.key, data);
        let tag = tag.as_ref();
        let n = tag.len().min(signature_out.len());
        signature_out[..n].copy_from_slice(&tag[..n]);
    }

    fn signature_len(&self) -> usize {
        self.hkdf.hmac_sign(&self.key, b"").as_ref().len()
    }

    fn verify(
        &self,
        data: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), quinn::crypto::CryptoError> {
        let tag = self.hkdf.hmac_sign(&self.key, data);
        let tag = tag.as_ref();
        let diff = tag.len() ^ signature.len();
        let acc = tag
            .iter()
            .zip(signature)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 && acc == 0 {
            Ok(())
        } else {
            Err(quinn::crypto::CryptoError)
        }
    }
}

/// Random 8-byte connection ids that any endpoint accepts as plausible. quinn's default generator
/// checks ids with a random key per process, so a restarted node would silently drop the packets
/// of its previous life's connections instead of answering them with a stateless reset.
struct RandomCids {
    random: &'static dyn rustls::crypto::SecureRandom,
    counter: u64,
}

const CID_LEN: usize = 8;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut cid = [0u8; CID_LEN];
        if self.random.fill(&mut cid).is_err() {
            // never expected from ring; a counter still keeps ids distinct
            self.counter = self.counter.wrapping_add(1);
            cid = self.counter.to_be_bytes();
        }
        quinn::ConnectionId::new(&cid)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The endpoint config: a stateless-reset key derived from the node key, and connection ids a
/// restarted endpoint answers with a reset (see [`RandomCids`]).
fn endpoint_config(tls: &NodeTls) -> Result<EndpointConfig> {
    let random = crypto_provider().secure_random;
    let mut config = EndpointConfig::new(Arc::new(ResetKey::derive(tls)?));
    config.cid_generator(move || Box::new(RandomCids { random, counter: 0 }));
    Ok(config)
}

type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

struct Inner {
    endpoint: Endpoint,
    config: QuicConfig,
    /// Installed on the endpoint once the transport serves.
    server_config: quinn::ServerConfig,
    book: AddressBook,
    conns: Mutex<HashMap<SocketAddr, Slot>>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The quinn implementation of [`Transport`]. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("local_addr", &self.inner.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl QuicTransport {
    /// Binds the endpoint and, when `handler` is given, serves incoming calls with it at once;
    /// without one the transport only calls until [`Transport::serve`] installs a handler (a
    /// node binds first and serves once its services exist). Must run inside a tokio runtime.
    pub fn bind(
        config: QuicConfig,
        tls: &NodeTls,
        handler: Option<Arc<dyn Handler>>,
    ) -> Result<QuicTransport> {
        let server = server_config(tls, &config)?;
        let socket = std::net::UdpSocket::bind(config.bind)
            .map_err(|e| Error::unavailable(format!("bind udp {}: {e}", config.bind)))?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| Error::internal("quic transport needs a tokio runtime"))?;
        let endpoint_config = endpoint_config(tls)?;
        // no server config until serving: connection attempts are refused, as by a node that
        // is not up yet
        let mut endpoint = Endpoint::new(endpoint_config, None, socket, runtime)
            .map_err(|e| Error::unavailable(format!("quic endpoint on {}: {e}", config.bind)))?;
        endpoint.set_default_client_config(client_config(tls, &config)?);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            endpoint,
            config,
            server_config: server,
            book: AddressBook::default(),
            conns: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
            shutdown,
            server: Mutex::new(None),
        });
        let transport = QuicTransport { inner };
        if let Some(handler) = handler {
            transport.start_serving(handler)?;
        }
        Ok(transport)
    }

    /// Accepts connections and serves their calls with `handler`; refused if already serving.
    fn start_serving(&self, handler: Arc<dyn Handler>) -> Result<()> {
        let inner = &self.inner;
        let mut server = inner.server.lock();
        if server.is_some() {
            return Err(Error::conflict("the quic transport is already serving"));
        }
        if *inner.shutdown.borrow() {
            return Err(Error::unavailable("the quic transport is shut down"));
        }
        inner
            .endpoint
            .set_server_config(Some(inner.server_config.clone()));
        *server = Some(tokio::spawn(accept_loop(inner.clone(), handler)));
        info!(addr = ?inner.endpoint.local_addr().ok(), "quic transport serving");
        Ok(())
    }

    /// The bound UDP address (the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|e| Error::internal(format!("local address: {e}")))
    }

    /// Stops serving: refuses new connections and streams, lets in-flight requests finish for
    /// up to `shutdown_grace`, then closes every connection and waits briefly for the closes to
    /// reach peers (so they reconnect at once instead of timing out).
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.endpoint.set_server_config(None);
        inner.shutdown.send_replace(true);
        let server = inner.server.lock().take();
        if let Some(task) = server
            && tokio::time::timeout(inner.config.shutdown_grace, task)
                .await
                .is_err()
        {
            warn!("in-flight requests still running after the shutdown grace period");
        }
        inner.endpoint.close(VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), inner.endpoint.wait_idle()).await;
        info!("quic transport stopped");
    }

    async fn connection(&self, addr: SocketAddr) -> Result<(quinn::Connection, bool)> {
        let slot = self.inner.conns.lock().entry(addr).or_default().clone();
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok((conn.clone(), false));
        }
        *guard = None;
        let connecting = self
            .inner
            .endpoint
            .connect(addr, certs::SERVER_NAME)
            .map_err(|e| Error::unavailable(format!("connect to {addr}: {e}")))?;
        let conn = connecting
            .await
            .map_err(|e| Error::unavailable(format!("connect to {addr}: {e}")))?;
        Counters::add(&self.inner.counters.connects, 1);
        debug!(peer = %addr, "connected");
        *guard = Some(conn.clone());
        Ok((conn, true))
    }

    async fn forget(&self, addr: SocketAddr, conn: &quinn::Connection) {
        let slot = self.inner.conns.lock().get(&addr).cloned();
        if let Some(slot) = slot {
            let mut guard = slot.lock().await;
            if guard.as_ref().map(quinn::Connection::stable_id) == Some(conn.stable_id()) {
                *guard = None;
            }
        }
    }

    async fn call_inner(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>> {
        let max = self.inner.config.max_frame_bytes;
        let request =
            frame::encode_request(service, self.inner.config.node_id, deadline, &body, max)?;
        drop(body);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (conn, fresh) = self.connection(addr).await?;
            match exchange(&conn, &request, max).await {
                Ok(reply) => {
                    Counters::add(&self.inner.counters.bytes_sent, request.len() as u64);
                    Counters::add(&self.inner.counters.bytes_received, reply.len() as u64 + 4);
                    return frame::decode_reply(&reply);
                }
                Err(Failure::Connection(e)) => {
                    self.forget(addr, &conn).await;
                    // A cached connection that the peer no longer knows (restarted: stateless
                    // reset) or closed did not carry this request to a handler: retry once on a
                    // fresh connection.
                    let stale = matches!(
                        e,
                        ConnectionError::Reset
                            | ConnectionError::ApplicationClosed(_)
                            | ConnectionError::ConnectionClosed(_)
                            | ConnectionError::TimedOut
                    );
                    if !fresh && stale && attempt == 1 {
                        debug!(peer = %addr, error = %e, "cached connection is stale, reconnecting");
                        continue;
                    }
                    return Err(Error::unavailable(format!(
                        "call {service:?} to {addr}: {e}"
                    )));
                }
                Err(Failure::Stream(e)) => return Err(e),
            }
        }
    }
}

enum Failure {
    /// The connection is gone: the caller may reconnect.
    Connection(ConnectionError),
    /// This call failed, the connection is fine.
    Stream(Error),
}

fn write_failure(addr: SocketAddr, e: quinn::WriteError) -> Failure {
    match e {
        quinn::WriteError::ConnectionLost(c) => Failure::Connection(c),
        other => Failure::Stream(Error::unavailable(format!("send to {addr}: {other}"))),
    }
}

fn read_failure(addr: SocketAddr, e: quinn::ReadExactError) -> Failure {
    match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => {
            Failure::Connection(c)
        }
        quinn::ReadExactError::FinishedEarly(_) => {
            Failure::Stream(Error::bad_request(format!("truncated reply from {addr}")))
        }
        quinn::ReadExactError::ReadError(other) => Failure::Stream(Error::unavailable(format!(
            "read reply from {addr}: {other}"
        ))),
    }
}

/// One call on an open connection: a stream, the request out, the reply payload back.
async fn exchange(
    conn: &quinn::Connection,
    request: &[u8],
    max: usize,
) -> std::result::Result<Vec<u8>, Failure> {
    let addr = conn.remote_address();
    let (mut send, mut recv) = conn.open_bi().await.map_err(Failure::Connection)?;
    let written = match send.write_all(request).await {
        Ok(()) => {
            // finishing only fails when the stream is already closed; the read below says why
            let _ = send.finish();
            Ok(())
        }
        // the server stopped reading (it refused the request): its reply says why
        Err(quinn::WriteError::Stopped(code)) => Err(Failure::Stream(Error::unavailable(format!(
            "{addr} stopped reading the request (code {code})"
        )))),
        Err(e) => return Err(write_failure(addr, e)),
    };
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    if let Err(e) = recv.read_exact(&mut prefix).await {
        return Err(written.err().unwrap_or_else(|| read_failure(addr, e)));
    }
    let len = frame::check_length(prefix, max).map_err(|e| {
        Failure::Stream(Error::bad_request(format!(
            "reply from {addr}: {}",
            e.message
        )))
    })?;
    let mut reply = vec![0u8; len];
    recv.read_exact(&mut reply)
        .await
        .map_err(|e| read_failure(addr, e))?;
    Ok(reply)
}

async fn accept_loop(inner: Arc<Inner>, handler: Arc<dyn Handler>) {
    let mut shutdown = inner.shutdown.subscribe();
    // every task holds a clone; when all are dropped, `idle` yields None
    let (alive, mut idle) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            incoming = inner.endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                tokio::spawn(serve_connection(inner.clone(), handler.clone(), incoming, alive.clone()));
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    drop(alive);
    let _ = idle.recv().await;
}

async fn serve_connection(
    inner: Arc<Inner>,
    handler: Arc<dyn Handler>,
    incoming: quinn::Incoming,
    alive: tokio::sync::mpsc::Sender<()>,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            Counters::add(&inner.counters.handshake_failures, 1);
            warn!(peer = %remote, error = %e, "refused a connection at the handshake");
            return;
        }
    };
    debug!(peer = %remote, "accepted a connection");
    // the peer's identity, from the certificate its handshake proved it holds the key of
    let key = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().and_then(|c| super::key_id_of_cert(c)));
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    tokio::spawn(serve_stream(inner.clone(), handler.clone(), (remote, key), send, recv, alive.clone()));
                }
                Err(e) => {
                    debug!(peer = %remote, error = %e, "connection ended");
                    break;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

async fn serve_stream(
    inner: Arc<Inner>,
    handler: Arc<dyn Handler>,
    (remote, key): (SocketAddr, Option<super::KeyId>),
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    _alive: tokio::sync::mpsc::Sender<()>,
) {
    let max = inner.config.max_frame_bytes;
    let read = async {
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        recv.read_exact(&mut prefix)
            .await
            .map_err(|e| Error::bad_request(format!("read request: {e}")))?;
        let len = frame::check_length(prefix, max)?;
        let mut payload = vec![0u8; len];
        recv.read_exact(&mut payload)
            .await
            .map_err(|e| Error::bad_request(format!("read request: {e}")))?;
        Ok::<_, Error>(payload)
    };
    let payload = match tokio::time::timeout(inner.config.request_read_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(Error::timeout("request not received in time")),
    };
    let result = match payload {
        Ok(payload) => match frame::decode_request(&payload) {
            Ok(request) => {
                Counters::add(&inner.counters.served, 1);
                Counters::add(&inner.counters.bytes_received, payload.len() as u64 + 4);
                let from = PeerInfo {
                    addr: remote,
                    node: request.from,
                    key,
                };
                let deadline = request.deadline.min(inner.config.max_handler_time);
                let service = request.service;
                let body = request.body.to_vec();
                drop(payload);
                super::run_handler(&handler, from, service, body, deadline).await
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = &result
        && matches!(e.kind, ErrorKind::BadRequest | ErrorKind::PayloadTooLarge)
    {
        debug!(peer = %remote, error = %e, "refused a request frame");
        // do not read the rest of a refused request
        let _ = recv.stop(VarInt::from_u32(0));
    }
    let reply = frame::encode_reply(&result, max);
    Counters::add(&inner.counters.bytes_sent, reply.len() as u64);
    if send.write_all(&reply).await.is_ok() && send.finish().is_ok() {
        // keep the task (and so a graceful shutdown) alive until the peer has the reply
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    }
}

impl Transport for QuicTransport {
    fn call(
        &self,
        to: NodeId,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        let addr = self.inner.book.get(to);
        let this = self.clone();
        Box::pin(async move {
            let r = match addr {
                Ok(addr) => this.call_addr(addr, service, body, deadline).await,
                Err(e) => {
                    this.inner.counters.outcome::<()>(&Err(e.clone()));
                    Err(e)
                }
            };
            r.map_err(|e| Error::new(e.kind, format!("node {to}: {}", e.message)))
        })
    }

    fn call_addr(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        let this = self.clone();
        Box::pin(async move {
            let r = match tokio::time::timeout(
                deadline,
                this.call_inner(addr, service, body, deadline),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Error::timeout(format!(
                    "call {service:?} to {addr}: no reply within {deadline:?}"
                ))),
            };
            this.inner.counters.outcome(&r);
            r
        })
    }

    fn set_peer(&self, id: NodeId, addr: SocketAddr) {
        self.inner.book.set(id, addr);
    }

    fn remove_peer(&self, id: NodeId) {
        if let Ok(addr) = self.inner.book.get(id) {
            self.inner.book.remove(id);
            // close the cached connection unless another id still uses that address
            if !self.inner.book.list().iter().any(|(_, a)| *a == addr)
                && let Some(slot) = self.inner.conns.lock().remove(&addr)
                && let Ok(guard) = slot.try_lock()
                && let Some(conn) = guard.as_ref()
            {
                conn.close(VarInt::from_u32(0), b"peer removed");
            }
        }
    }

    fn peers(&self) -> Vec<(NodeId, SocketAddr)> {
        self.inner.book.list()
    }

    fn stats(&self) -> TransportStats {
        self.inner.counters.snapshot()
    }

    fn serve(&self, handler: Arc<dyn Handler>) -> Result<()> {
        self.start_serving(handler)
    }

    fn local_addr(&self) -> Result<SocketAddr> {
        QuicTransport::local_addr(self)
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move { QuicTransport::shutdown(&this).await })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::transport::certs::ClusterCa;
    use crate::transport::handler_fn;

    const D: Duration = Duration::from_secs(5);
    const BOUND: Duration = Duration::from_secs(30);

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    struct Server {
        transport: QuicTransport,
        addr: SocketAddr,
        served: Arc<AtomicU64>,
    }

    /// echo, except: "fail" -> a typed error, "slow" -> sleeps, "who" -> the caller's id
    fn handler(served: Arc<AtomicU64>) -> Arc<dyn Handler> {
        handler_fn(move |from: PeerInfo, service, body: Vec<u8>| {
            served.fetch_add(1, Ordering::SeqCst);
            async move {
                match body.as_slice() {
                    b"fail" => Err(Error::new(
                        ErrorKind::TooManyRequests { retry_after_ms: 7 },
                        "tenant acme is over its rate",
                    )),
                    b"slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(vec![])
                    }
                    b"who" => Ok(format!("{:?} {service:?}", from.node).into_bytes()),
                    _ => Ok(body),
                }
            }
        })
    }

    fn serve(tls: &NodeTls, config: QuicConfig) -> Server {
        let served = Arc::new(AtomicU64::new(0));
        let transport =
            QuicTransport::bind(config, tls, Some(handler(served.clone()))).expect("bind server");
        let addr = transport.local_addr().expect("addr");
        Server {
            transport,
            addr,
            served,
        }
    }

    /// Binds a server on a fixed address, waiting for the previous owner to let it go.
    async fn serve_at(tls: &NodeTls, addr: SocketAddr) -> Server {
        for _ in 0..500 {
            let served = Arc::new(AtomicU64::new(0));
            match QuicTransport::bind(QuicConfig::new(addr), tls, Some(handler(served.clone()))) {
                Ok(transport) => {
                    return Server {
                        transport,
                        addr,
                        served,
                    };
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        panic!("{addr} stayed in use");
    }

    fn client(tls: &NodeTls, id: NodeId) -> QuicTransport {
        let mut config = QuicConfig::new(local());
        config.node_id = Some(id);
        QuicTransport::bind(config, tls, None).expect("bind client")
    }

    fn pki() -> (ClusterCa, NodeTls, NodeTls) {
        let ca = ClusterCa::generate().expect("ca");
        let server = ca.issue_node("node-1", &[]).expect("server cert");
        let client = ca.issue_node("node-2", &[]).expect("client cert");
        (ca, server, client)
    }

    async fn bounded<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(BOUND, f)
            .await
            .expect("test within its time bound")
    }

    #[tokio::test]
    async fn mtls_round_trip_errors_deadline_and_concurrency() {
        bounded(async {
            let (_ca, server_tls, client_tls) = pki();
            let server = serve(&server_tls, QuicConfig::new(local()));
            let client = client(&client_tls, 2);
            client.set_peer(1, server.addr);

            tracing::info!("a call over mutual TLS reaches the handler with the caller's id");
            let r = client.call(1, Service::Raft, b"who".to_vec(), D).await.expect("call");
            assert_eq!(r, b"Some(2) Raft");
            let big = vec![7u8; 1 << 20];
            let r = client.call(1, Service::Transfer, big.clone(), D).await.expect("1 MiB");
            assert_eq!(r, big);

            tracing::info!("a handler's error arrives with its kind and message");
            let e = client.call(1, Service::Shard, b"fail".to_vec(), D).await.expect_err("fails");
            assert_eq!(e.kind, ErrorKind::TooManyRequests { retry_after_ms: 7 });
            assert!(e.message.contains("tenant acme is over its rate"), "{}", e.message);

            tracing::info!("a call past its deadline is a Timeout, and the connection still works");
            let t0 = std::time::Instant::now();
            let e = client
                .call(1, Service::Shard, b"slow".to_vec(), Duration::from_millis(200))
                .await
                .expect_err("slow");
            assert_eq!(e.kind, ErrorKind::Timeout);
            assert!(t0.elapsed() < Duration::from_secs(2));
            client.call(1, Service::Shard, b"ok".to_vec(), D).await.expect("after timeout");

            tracing::info!("64 concurrent calls share one connection");
            let mut set = tokio::task::JoinSet::new();
            for i in 0..64u32 {
                let c = client.clone();
                set.spawn(async move {
                    let body = i.to_be_bytes().to_vec();
                    let r = c.call(1, Service::Shard, body.clone(), D).await;
                    (r, body)
                });
            }
            while let Some(joined) = set.join_next().await {
                let (r, body) = joined.expect("task");
                assert_eq!(r.expect("concurrent call"), body);
            }
            assert_eq!(client.stats().connects, 1);

            tracing::info!("latency of a small call on loopback");
            let n = 200;
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let t = std::time::Instant::now();
                client.call(1, Service::Shard, vec![1; 64], D).await.expect("call");
                times.push(t.elapsed());
            }
            times.sort();
            eprintln!(
                "quic loopback round trip, 64-byte body, {n} calls (debug build): p50 {:?} p99 {:?}",
                times[n / 2],
                times[n * 99 / 100]
            );

            let s = client.stats();
            assert_eq!(s.calls, 5 + 64 + n as u64);
            assert_eq!(client.peers(), vec![(1, server.addr)]);
            assert_eq!(s.failures, 2);
            assert_eq!(s.timeouts, 1);
            assert!(s.bytes_sent > 1 << 20 && s.bytes_received > 1 << 20);
            tracing::info!("a removed peer is no longer callable by id");
            client.remove_peer(1);
            let e = client.call(1, Service::Shard, vec![], D).await.expect_err("removed");
            assert_eq!(e.kind, ErrorKind::Unavailable);
            client.shutdown().await;
            server.transport.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn peers_without_a_cluster_certificate_are_refused() {
        bounded(async {
            let (ca, server_tls, _) = pki();
            let foreign = ClusterCa::generate().expect("foreign ca");
            let server = serve(&server_tls, QuicConfig::new(local()));
            let short = Duration::from_secs(3);

            tracing::info!("a client whose certificate comes from a foreign CA is refused");
            let mut forged = foreign.issue_node("intruder", &[]).expect("foreign cert");
            forged.ca = ca.cert_der().clone(); // it trusts our server: only its own cert is wrong
            let intruder = client(&forged, 66);
            let e = intruder
                .call_addr(server.addr, Service::Shard, b"x".to_vec(), short)
                .await
                .expect_err("foreign client");
            assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");

            tracing::info!("a client presenting no certificate is refused");
            let mut crypto = rustls::ClientConfig::builder_with_provider(crypto_provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls13")
                .with_root_certificates(roots(ca.cert_der()).expect("roots"))
                .with_no_client_auth();
            crypto.alpn_protocols = vec![ALPN.to_vec()];
            let mut anon = Endpoint::client(local()).expect("endpoint");
            anon.set_default_client_config(quinn::ClientConfig::new(Arc::new(
                QuicClientConfig::try_from(crypto).expect("quic tls"),
            )));
            let attempt = async {
                let conn = anon
                    .connect(server.addr, certs::SERVER_NAME)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                let request = frame::encode_request(Service::Shard, None, short, b"x", 1 << 20)
                    .map_err(|e| e.to_string())?;
                exchange(&conn, &request, 1 << 20)
                    .await
                    .map(|_| ())
                    .map_err(|_| "refused".to_string())
            };
            let r = tokio::time::timeout(short, attempt).await;
            assert!(!matches!(r, Ok(Ok(()))), "an anonymous client got a reply");

            tracing::info!("a server with a foreign certificate is refused by the client");
            let fake = serve(
                &foreign.issue_node("fake", &[]).expect("cert"),
                QuicConfig::new(local()),
            );
            let honest = client(&ca.issue_node("node-3", &[]).expect("cert"), 3);
            let e = honest
                .call_addr(fake.addr, Service::Shard, b"x".to_vec(), short)
                .await
                .expect_err("foreign server");
            assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");

            assert_eq!(
                server.served.load(Ordering::SeqCst),
                0,
                "no handler ran for intruders"
            );
            assert_eq!(fake.served.load(Ordering::SeqCst), 0);
            assert!(server.transport.stats().handshake_failures >= 1);

            tracing::info!("and the real server still serves cluster members");
            honest
                .call_addr(server.addr, Service::Shard, b"x".to_vec(), short)
                .await
                .expect("member call");
            server.transport.shutdown().await;
            fake.transport.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn bad_and_oversized_frames_are_refused_and_the_server_keeps_serving() {
        bounded(async {
            let (_ca, server_tls, client_tls) = pki();
            let mut config = QuicConfig::new(local());
            config.max_frame_bytes = 4096;
            let server = serve(&server_tls, config);
            let client = client(&client_tls, 2);

            tracing::info!("a request over the server's limit is refused with PayloadTooLarge");
            let e = client
                .call_addr(server.addr, Service::Shard, vec![0; 100_000], D)
                .await
                .expect_err("too large");
            assert_eq!(e.kind, ErrorKind::PayloadTooLarge, "{e:?}");
            client
                .call_addr(server.addr, Service::Shard, b"ok".to_vec(), D)
                .await
                .expect("still serves");

            tracing::info!("a request over the caller's own limit never leaves it");
            let mut small = QuicConfig::new(local());
            small.max_frame_bytes = 16;
            let tiny = QuicTransport::bind(small, &client_tls, None).expect("bind");
            let e = tiny
                .call_addr(server.addr, Service::Shard, vec![0; 100], D)
                .await
                .expect_err("too large locally");
            assert_eq!(e.kind, ErrorKind::PayloadTooLarge);

            tracing::info!("garbage frames get BadRequest, truncated ones are dropped, no panic");
            let (conn, _) = client.connection(server.addr).await.expect("conn");
            for garbage in [
                vec![0, 0, 0, 3, 9, 9, 9],
                vec![0, 0, 0, 15, 1, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                vec![0, 0, 0, 2, 1, 1],
            ] {
                let reply = exchange(&conn, &garbage, 4096)
                    .await
                    .map_err(|_| ())
                    .expect("reply");
                let e = frame::decode_reply(&reply).expect_err("bad request");
                assert_eq!(e.kind, ErrorKind::BadRequest, "{e:?}");
            }
            let (mut send, _recv) = conn.open_bi().await.expect("stream");
            send.write_all(&[0, 0, 1, 0, 1, 2]).await.expect("write");
            send.finish().expect("finish");
            drop(send);
            client
                .call_addr(server.addr, Service::Shard, b"ok".to_vec(), D)
                .await
                .expect("still serves");
            server.transport.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_restarted_peer_works_on_the_next_call() {
        bounded(async {
            let (_ca, server_tls, client_tls) = pki();
            let server = serve(&server_tls, QuicConfig::new(local()));
            let addr = server.addr;
            let client = client(&client_tls, 2);
            client.set_peer(1, addr);
            client
                .call(1, Service::Raft, b"a".to_vec(), D)
                .await
                .expect("first");

            tracing::info!("the peer stops: calls fail fast with Unavailable or time out");
            server.transport.shutdown().await;
            drop(server);
            let e = client
                .call(1, Service::Raft, b"b".to_vec(), Duration::from_millis(300))
                .await
                .expect_err("down");
            assert!(
                matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
                "{e:?}"
            );

            tracing::info!("the peer restarts on the same address: the next call succeeds");
            let restarted = serve_at(&server_tls, addr).await;
            client
                .call(1, Service::Raft, b"c".to_vec(), D)
                .await
                .expect("after restart");
            assert_eq!(restarted.served.load(Ordering::SeqCst), 1);

            tracing::info!(
                "a crash (no goodbye): the new endpoint resets the stale connection at once"
            );
            // the old endpoint moves off the address without closing its connections, as if killed
            // (quinn keeps the previous socket after a rebind: move twice to let the address go)
            for _ in 0..2 {
                let elsewhere = std::net::UdpSocket::bind(local()).expect("bind elsewhere");
                restarted
                    .transport
                    .inner
                    .endpoint
                    .rebind(elsewhere)
                    .expect("rebind");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let again = serve_at(&server_tls, addr).await;
            let t0 = std::time::Instant::now();
            client
                .call(1, Service::Raft, b"d".to_vec(), D)
                .await
                .expect("after crash");
            let took = t0.elapsed();
            eprintln!("first call after a peer crash and restart took {took:?}");
            assert!(
                took < Duration::from_secs(3),
                "reconnected without waiting for idle timeout"
            );
            assert_eq!(again.served.load(Ordering::SeqCst), 1);
            assert_eq!(client.stats().connects, 3);

            again.transport.shutdown().await;
            restarted.transport.shutdown().await;
            client.shutdown().await;
        })
        .await;
    }

    #[test]
    fn reset_key_survives_a_restart_and_differs_per_node() {
        use quinn::crypto::HmacKey;
        let (_ca, a, b) = pki();
        let k1 = ResetKey::derive(&a).expect("key");
        let k2 = ResetKey::derive(&a.clone()).expect("same key");
        let other = ResetKey::derive(&b).expect("other key");
        let mut s1 = vec![0u8; k1.signature_len()];
        let mut s3 = vec![0u8; other.signature_len()];
        k1.sign(b"cid", &mut s1);
        other.sign(b"cid", &mut s3);
        assert_eq!(s1.len(), 32);
        assert!(k2.verify(b"cid", &s1).is_ok());
        assert!(k2.verify(b"cid2", &s1).is_err());
        assert!(k2.verify(b"cid", &s1[..16]).is_err());
        assert_ne!(s1, s3);
    }
}
