//! An in-process transport for in-process clusters and tests of cluster logic: nodes attach to a
//! shared [`MemoryHub`] under an address, serve their handler once their services exist
//! ([`Transport::serve`]), and calls go straight to the handler (in its own task, with the same
//! deadline, error and panic semantics as QUIC, and the same frame-size limit).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use super::quic::DEFAULT_MAX_FRAME_BYTES;
use super::{
    AddressBook, BoxFuture, Counters, Handler, NodeId, PeerInfo, Service, Transport, TransportStats,
};
use crate::error::{Error, ErrorKind, Result};

/// A node on the hub: its id and handler (none until it serves: calls to it are unavailable, as
/// to a node still starting).
type Registered = (NodeId, Option<Arc<dyn Handler>>);

/// The shared "network" of in-process nodes: address to handler.
#[derive(Default)]
pub struct MemoryHub {
    nodes: RwLock<HashMap<SocketAddr, Registered>>,
}

impl std::fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHub")
            .field("nodes", &self.nodes.read().len())
            .finish()
    }
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> Arc<MemoryHub> {
        Arc::new(MemoryHub::default())
    }

    /// A conventional address for node `id` (127.0.0.1, port 10000 + id mod 50000), for tests
    /// that need distinct addresses without binding anything.
    pub fn addr_of(id: NodeId) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10_000 + (id % 50_000) as u16))
    }

    /// Registers node `id` at `addr` serving `handler` (replacing any previous registration: a
    /// restart) and returns its transport. Every registered node is in the new transport's
    /// address book; later ones are added with [`Transport::set_peer`] or found by the hub.
    pub fn register(
        self: &Arc<Self>,
        id: NodeId,
        addr: SocketAddr,
        handler: Arc<dyn Handler>,
    ) -> MemoryTransport {
        let transport = self.attach(id, addr);
        self.nodes.write().insert(addr, (id, Some(handler)));
        transport
    }

    /// Puts node `id` on the hub at `addr` without a handler yet (replacing any previous
    /// registration: a restart): it can call at once and is served once it calls
    /// [`Transport::serve`].
    pub fn attach(self: &Arc<Self>, id: NodeId, addr: SocketAddr) -> MemoryTransport {
        self.nodes.write().insert(addr, (id, None));
        MemoryTransport {
            inner: Arc::new(Inner {
                hub: self.clone(),
                id,
                addr,
                book: AddressBook::default(),
                counters: Counters::default(),
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            }),
        }
    }

    /// Takes the node at `addr` off the hub (it is down: calls to it fail with `Unavailable`).
    pub fn unregister(&self, addr: SocketAddr) {
        self.nodes.write().remove(&addr);
    }

    fn lookup_id(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes
            .read()
            .iter()
            .find(|(_, (n, _))| *n == id)
            .map(|(a, _)| *a)
    }
}

struct Inner {
    hub: Arc<MemoryHub>,
    id: NodeId,
    addr: SocketAddr,
    book: AddressBook,
    counters: Counters,
    max_frame_bytes: usize,
}

/// One node's view of a [`MemoryHub`]. Cheap to clone.
#[derive(Clone)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("id", &self.inner.id)
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl MemoryTransport {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's address on the hub.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }
}

impl Transport for MemoryTransport {
    fn call(
        &self,
        to: NodeId,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        let addr = self
            .inner
            .book
            .get(to)
            .ok()
            .or_else(|| self.inner.hub.lookup_id(to));
        match addr {
            Some(addr) => self.call_addr(addr, service, body, deadline),
            None => {
                let e = Error::unavailable(format!("no address known for node {to}"));
                self.inner.counters.outcome::<()>(&Err(e.clone()));
                Box::pin(async move { Err(e) })
            }
        }
    }

    fn call_addr(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let r = async {
                if body.len() > inner.max_frame_bytes {
                    return Err(Error::new(
                        ErrorKind::PayloadTooLarge,
                        format!("frame of {} bytes is over the limit", body.len()),
                    ));
                }
                let handler = match inner.hub.nodes.read().get(&addr) {
                    None => return Err(Error::unavailable(format!("no node at {addr}"))),
                    Some((id, None)) => {
                        return Err(Error::unavailable(format!(
                            "node {id} at {addr} is not serving yet"
                        )));
                    }
                    Some((_, Some(handler))) => handler.clone(),
                };
                Counters::add(&inner.counters.bytes_sent, body.len() as u64);
                let from = PeerInfo {
                    addr: inner.addr,
                    node: Some(inner.id),
                    key: Some(super::memory_key_id(inner.id)),
                };
                let reply = super::run_handler(&handler, from, service, body, deadline).await?;
                Counters::add(&inner.counters.bytes_received, reply.len() as u64);
                Ok(reply)
            }
            .await;
            inner.counters.outcome(&r);
            r
        })
    }

    fn set_peer(&self, id: NodeId, addr: SocketAddr) {
        self.inner.book.set(id, addr);
    }

    fn remove_peer(&self, id: NodeId) {
        self.inner.book.remove(id);
    }

    fn peers(&self) -> Vec<(NodeId, SocketAddr)> {
        self.inner.book.list()
    }

    fn stats(&self) -> TransportStats {
        self.inner.counters.snapshot()
    }

    fn serve(&self, handler: Arc<dyn Handler>) -> Result<()> {
        let mut nodes = self.inner.hub.nodes.write();
        match nodes.get_mut(&self.inner.addr) {
            Some((id, slot)) if *id == self.inner.id => {
                *slot = Some(handler);
                Ok(())
            }
            Some(_) | None => Err(Error::unavailable(format!(
                "node {} is no longer on the hub at {}",
                self.inner.id, self.inner.addr
            ))),
        }
    }

    fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.inner.addr)
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut nodes = inner.hub.nodes.write();
            if nodes
                .get(&inner.addr)
                .is_some_and(|(id, _)| *id == inner.id)
            {
                nodes.remove(&inner.addr);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::handler_fn;

    fn echo(id: NodeId) -> Arc<dyn Handler> {
        handler_fn(move |from: PeerInfo, service, body: Vec<u8>| async move {
            match body.as_slice() {
                b"fail" => Err(Error::conflict("told to fail")),
                b"slow" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(vec![])
                }
                b"panic" => panic!("handler panics on purpose"),
                _ => Ok(format!("{id}<-{:?}:{service:?}:{}", from.node, body.len()).into_bytes()),
            }
        })
    }

    #[tokio::test]
    async fn memory_transport_semantics() {
        tokio::time::timeout(Duration::from_secs(10), async {
            let hub = MemoryHub::new();
            let a = hub.register(1, MemoryHub::addr_of(1), echo(1));
            let _b = hub.register(2, MemoryHub::addr_of(2), echo(2));
            let d = Duration::from_secs(1);

            tracing::info!("a call reaches the handler, which sees the caller's id");
            let r = a
                .call(2, Service::Shard, b"hi".to_vec(), d)
                .await
                .expect("call");
            assert_eq!(r, b"2<-Some(1):Shard:2");
            a.set_peer(2, MemoryHub::addr_of(2));
            assert_eq!(a.peers(), vec![(2, MemoryHub::addr_of(2))]);

            tracing::info!("errors keep kind and message; panics and overruns are classified");
            let e = a
                .call(2, Service::Raft, b"fail".to_vec(), d)
                .await
                .expect_err("fails");
            assert_eq!(e, Error::conflict("told to fail"));
            let e = a
                .call(2, Service::Raft, b"panic".to_vec(), d)
                .await
                .expect_err("panics");
            assert_eq!(e.kind, ErrorKind::Internal);
            let e = a
                .call(
                    2,
                    Service::Raft,
                    b"slow".to_vec(),
                    Duration::from_millis(50),
                )
                .await
                .expect_err("slow");
            assert_eq!(e.kind, ErrorKind::Timeout);

            tracing::info!("a node off the hub is unavailable, and back after re-registering");
            hub.unregister(MemoryHub::addr_of(2));
            let e = a
                .call(2, Service::Raft, b"x".to_vec(), d)
                .await
                .expect_err("down");
            assert_eq!(e.kind, ErrorKind::Unavailable);
            let e = a
                .call(9, Service::Raft, b"x".to_vec(), d)
                .await
                .expect_err("unknown");
            assert_eq!(e.kind, ErrorKind::Unavailable);
            let _b = hub.register(2, MemoryHub::addr_of(2), echo(2));
            a.call(2, Service::Raft, b"x".to_vec(), d)
                .await
                .expect("back");

            tracing::info!("a node attached without a handler is unavailable until it serves");
            let c = hub.attach(3, MemoryHub::addr_of(3));
            let e = a
                .call(3, Service::Raft, b"x".to_vec(), d)
                .await
                .expect_err("not serving");
            assert_eq!(e.kind, ErrorKind::Unavailable);
            c.serve(echo(3)).expect("serve");
            a.call(3, Service::Raft, b"x".to_vec(), d)
                .await
                .expect("served");
            c.shutdown().await;

            let s = a.stats();
            assert_eq!(s.calls, 9);
            assert_eq!(s.failures, 6);
            assert_eq!(s.timeouts, 1);
        })
        .await
        .expect("test within its time bound");
    }
}
