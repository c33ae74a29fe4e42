//! Node-to-node transport: one request, one reply, with a deadline, between tessera nodes.
//!
//! Raft RPCs, shard RPCs, replication and shard transfer all ride the same [`Transport`], told apart
//! by [`Service`]. Bodies are opaque bytes (callers encode them with [`crate::codec`]); errors
//! travel typed, so a handler's [`Error`] arrives at the caller with the same kind and message.
//!
//! Implementations:
//! - [`quic::QuicTransport`]: quinn with mutual TLS 1.3 under the cluster CA ([`certs`]).
//! - [`memory::MemoryHub`] / [`memory::MemoryTransport`]: in-process, for tests of cluster logic.
//! - [`faults::FaultyTransport`]: wraps any transport and injects partitions, isolation, drops and
//!   delay, driven by a shared [`faults::Faults`].
//!
//! A node binds its transport first and serves it once its services exist ([`Transport::serve`]),
//! so nothing on the serving side is bound late through a shared cell.
//!
//! Architecture invariant: nothing here knows what a body means. The frame format is in [`frame`].

pub mod certs;
pub mod faults;
pub mod frame;
pub mod memory;
pub mod quic;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use crate::error::{Error, Result};
pub use crate::meta::NodeId;

/// A boxed, sendable future: what the dyn-compatible traits here return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which service a call is for, so every kind of inter-node traffic shares one transport.
/// Encoded as one byte on the wire; unknown bytes are refused as `BadRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Service {
    /// Metadata Raft RPCs (append entries, vote, install snapshot).
    Raft = 1,
    /// Shard reads and writes routed to a replica.
    Shard = 2,
    /// Primary-to-backup replication of shard writes.
    Replication = 3,
    /// Shard transfer (snapshot and WAL tail) to a catching-up replica.
    Transfer = 4,
    /// Cluster administration: join, forwarding to the leader, health.
    Admin = 5,
}

impl Service {
    /// The wire byte of this service.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The service of a wire byte, if it names one.
    pub fn from_u8(b: u8) -> Option<Service> {
        match b {
            1 => Some(Service::Raft),
            2 => Some(Service::Shard),
            3 => Some(Service::Replication),
            4 => Some(Service::Transfer),
            5 => Some(Service::Admin),
            _ => None,
        }
    }
}

/// Who is calling, as the serving side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The caller's address (UDP source address for QUIC).
    pub addr: SocketAddr,
    /// The node id the caller says it has. Over QUIC the caller is authenticated only as "holds a
    /// certificate of the cluster CA"; the id itself is the caller's claim, which the metadata
    /// binds to `key` (see [`crate::meta::MetadataState::node_keys`]).
    pub node: Option<NodeId>,
    /// The caller's identity: the SHA-256 of its certificate's public key (SPKI), verified by the
    /// TLS handshake. None: a transport without certificates.
    pub key: Option<KeyId>,
}

/// A node's identity: the SHA-256 of the public key (SPKI) of its certificate. A certificate
/// renewed over the same key keeps it.
pub type KeyId = [u8; 32];

/// The identity of the holder of a DER certificate, if it parses.
pub fn key_id_of_cert(der: &[u8]) -> Option<KeyId> {
    let der = rustls::pki_types::CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    let spki = cert.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    digest.as_ref().try_into().ok()
}

/// The identity a memory-transport node presents (tests): derived from its id, so a node that
/// attaches under another id presents another key.
pub fn memory_key_id(node: NodeId) -> KeyId {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("memory-node-{node}").as_bytes(),
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The serving side: answers one request. Each incoming request runs in its own task, so a
/// handler may await freely; it is cancelled when the caller's deadline passes.
pub trait Handler: Send + Sync + 'static {
    /// Answers `body` sent to `service` by `from`. An `Err` reaches the caller with the same kind
    /// and message.
    fn handle(
        &self,
        from: PeerInfo,
        service: Service,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>>>;
}

struct FnHandler<F>(F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(PeerInfo, Service, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>>> + Send + 'static,
{
    fn handle(
        &self,
        from: PeerInfo,
        service: Service,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        Box::pin((self.0)(from, service, body))
    }
}

/// A [`Handler`] from an async closure, for small servers and tests.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(PeerInfo, Service, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// The calling side, shared by every implementation. Dyn-compatible: use `Arc<dyn Transport>`.
///
/// Every call has a deadline (the time allowed for the whole call, connecting included): past it
/// the call fails with `Timeout`. A peer that cannot be reached fails with `Unavailable`. A call
/// may reach the handler and still fail (reply lost), so handlers of non-idempotent requests must
/// deduplicate (sequence numbers, epochs).
pub trait Transport: Send + Sync + 'static {
    /// Calls `service` on node `to`, found in the address book.
    fn call(
        &self,
        to: NodeId,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>>;

    /// Calls `service` on the node at `addr`, for joining before node ids are known.
    fn call_addr(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>>;

    /// Records (or changes) the address of node `id`.
    fn set_peer(&self, id: NodeId, addr: SocketAddr);

    /// Forgets node `id`.
    fn remove_peer(&self, id: NodeId);

    /// The address book: every known node and its address.
    fn peers(&self) -> Vec<(NodeId, SocketAddr)>;

    /// Counters since start.
    fn stats(&self) -> TransportStats;

    /// Starts serving incoming calls with `handler`. A transport is bound before the services
    /// it serves exist (Raft calls out while it starts, the catalog needs the link), so serving
    /// is a separate step taken once they do; until then calls to this node fail with
    /// `Unavailable`, as to a node still starting. Serving a second time is refused (QUIC) or
    /// replaces the handler (memory).
    fn serve(&self, handler: Arc<dyn Handler>) -> Result<()>;

    /// The address peers reach this node at (the real port when bound to port 0).
    fn local_addr(&self) -> Result<SocketAddr>;

    /// Stops serving and closes connections; calls to this node fail afterwards.
    fn shutdown(&self) -> BoxFuture<'static, ()>;
}

/// Counters of a transport, as a plain snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed, whatever the reason (handler errors included).
    pub failures: u64,
    /// Calls that failed with `Timeout`.
    pub timeouts: u64,
    /// Request bytes sent (frames).
    pub bytes_sent: u64,
    /// Reply bytes received (frames).
    pub bytes_received: u64,
    /// Requests served to peers.
    pub served: u64,
    /// Connections established by this side.
    pub connects: u64,
    /// Incoming connections refused at the handshake (no or foreign certificate, wrong ALPN).
    pub handshake_failures: u64,
}

/// The live counters behind [`TransportStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub served: AtomicU64,
    pub connects: AtomicU64,
    pub handshake_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn outcome<T>(&self, r: &Result<T>) {
        Counters::add(&self.calls, 1);
        if let Err(e) = r {
            Counters::add(&self.failures, 1);
            if e.kind == crate::error::ErrorKind::Timeout {
                Counters::add(&self.timeouts, 1);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            calls: g(&self.calls),
            failures: g(&self.failures),
            timeouts: g(&self.timeouts),
            bytes_sent: g(&self.bytes_sent),
            bytes_received: g(&self.bytes_received),
            served: g(&self.served),
            connects: g(&self.connects),
            handshake_failures: g(&self.handshake_failures),
        }
    }
}

/// Node id to address, shared by the implementations.
#[derive(Debug, Default)]
pub(crate) struct AddressBook {
    map: RwLock<HashMap<NodeId, SocketAddr>>,
}

impl AddressBook {
    pub(crate) fn set(&self, id: NodeId, addr: SocketAddr) {
        self.map.write().insert(id, addr);
    }
    pub(crate) fn remove(&self, id: NodeId) {
        self.map.write().remove(&id);
    }
    pub(crate) fn get(&self, id: NodeId) -> Result<SocketAddr> {
        self.map
            .read()
            .get(&id)
            .copied()
            .ok_or_else(|| Error::unavailable(format!("no address known for node {id}")))
    }
    pub(crate) fn list(&self) -> Vec<(NodeId, SocketAddr)> {
        let mut v: Vec<_> = self.map.read().iter().map(|(k, v)| (*k, *v)).collect();
        v.sort();
        v
    }
}

/// Runs a handler in its own task, bounded by `deadline`: a panic becomes `Internal`, an overrun
/// becomes `Timeout` (and the handler is cancelled).
pub(crate) async fn run_handler(
    handler: &Arc<dyn Handler>,
    from: PeerInfo,
    service: Service,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<Vec<u8>> {
    let task = tokio::spawn(handler.handle(from, service, body));
    let abort = task.abort_handle();
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(?service, peer = %from.addr, error = %e, "handler task failed");
            Err(Error::internal(format!("handler failed: {e}")))
        }
        Err(_) => {
            abort.abort();
            Err(Error::timeout(format!(
                "{service:?} handler exceeded the deadline of {deadline:?}"
            )))
        }
    }
}
