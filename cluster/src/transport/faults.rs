//! Fault injection over any [`Transport`], for tests: partitions between sets of nodes, isolated
//! nodes, a fraction of requests or replies lost, added delay. One [`Faults`] is shared by the
//! [`FaultyTransport`] of every node of a test cluster, so a rule applies to both directions.
//!
//! What each fault looks like to the caller:
//! - partition / isolation: `Unavailable` at once (as an unreachable peer whose connection fails);
//! - a lost request: nothing reaches the handler, the call ends with `Timeout` at its deadline;
//! - a lost reply: the handler runs, the call still ends with `Timeout` at its deadline;
//! - delay: added before the request is sent, and counted against the deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{BoxFuture, Handler, NodeId, Service, Transport, TransportStats};
use crate::error::{Error, Result};

/// Which part of one call a targeted loss takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lose {
    /// The request never reaches the handler (the peer died before it could act).
    Request,
    /// The handler runs, its reply is lost (the peer acted, then died).
    Reply,
    /// The request arrives this long after it was sent, whatever the caller's deadline: the
    /// caller gives up at its deadline, the handler runs later (a message from the past).
    Late(Duration),
}

/// The next `remaining` calls of `service` to `to` lose their request or their reply.
#[derive(Debug)]
struct Loss {
    service: Service,
    to: NodeId,
    what: Lose,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Rules {
    losses: Vec<Loss>,
    partitions: Vec<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    isolated: BTreeSet<NodeId>,
    drop_requests: f64,
    drop_replies: f64,
    delay: Duration,
    rng: u64,
}

impl Rules {
    /// splitmix64: deterministic for a seed, so a failing test can be replayed.
    fn next_f64(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn cut(&self, from: NodeId, to: Option<NodeId>) -> Option<String> {
        if self.isolated.contains(&from) {
            return Some(format!("node {from} is isolated"));
        }
        let to = to?;
        if self.isolated.contains(&to) {
            return Some(format!("node {to} is isolated"));
        }
        self.partitions
            .iter()
            .any(|(a, b)| {
                (a.contains(&from) && b.contains(&to)) || (b.contains(&from) && a.contains(&to))
            })
            .then(|| format!("nodes {from} and {to} are partitioned"))
    }
}

/// The fault rules of a test cluster, shared by every node's [`FaultyTransport`].
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Rules>,
}

impl Faults {
    /// No faults; random choices seeded with `seed`.
    pub fn new(seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            rules: Mutex::new(Rules {
                rng: seed,
                ..Rules::default()
            }),
        })
    }

    /// Cuts every call between a node of `a` and a node of `b`, both directions.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.rules
            .lock()
            .partitions
            .push((a.iter().copied().collect(), b.iter().copied().collect()));
    }

    /// Cuts every call from or to `node`.
    pub fn isolate(&self, node: NodeId) {
        self.rules.lock().isolated.insert(node);
    }

    /// Loses a fraction (0.0 to 1.0) of requests before they reach a handler.
    pub fn drop_requests(&self, fraction: f64) {
        self.rules.lock().drop_requests = fraction.clamp(0.0, 1.0);
    }

    /// Loses a fraction (0.0 to 1.0) of replies after the handler ran.
    pub fn drop_replies(&self, fraction: f64) {
        self.rules.lock().drop_replies = fraction.clamp(0.0, 1.0);
    }

    /// Loses the request or the reply of the next `count` calls of `service` to node `to`:
    /// an interleaving chosen exactly, not by chance.
    pub fn lose(&self, service: Service, to: NodeId, what: Lose, count: usize) {
        self.rules.lock().losses.push(Loss {
            service,
            to,
            what,
            remaining: count,
        });
    }

    /// Delays every call by `delay` before it is sent.
    pub fn delay(&self, delay: Duration) {
        self.rules.lock().delay = delay;
    }

    /// Ends the isolation of `node` and every partition that involves it.
    pub fn heal_node(&self, node: NodeId) {
        let mut rules = self.rules.lock();
        rules.isolated.remove(&node);
        rules
            .partitions
            .retain(|(a, b)| !a.contains(&node) && !b.contains(&node));
    }

    /// Removes every fault (partitions, isolation, drops, delay).
    pub fn heal(&self) {
        let mut rules = self.rules.lock();
        let rng = rules.rng;
        *rules = Rules {
            rng,
            ..Rules::default()
        };
    }
}

enum Verdict {
    Cut(String),
    Pass {
        delay: Duration,
        drop_request: bool,
        drop_reply: bool,
    },
}

/// A [`Transport`] that applies the shared [`Faults`] to the calls of node `local`.
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    local: NodeId,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for FaultyTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyTransport")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl FaultyTransport {
    /// Wraps `inner`, the transport of node `local`.
    pub fn new(inner: Arc<dyn Transport>, local: NodeId, faults: Arc<Faults>) -> FaultyTransport {
        FaultyTransport {
            inner,
            local,
            faults,
        }
    }

    fn verdict(&self, to: Option<NodeId>, service: Service) -> Verdict {
        let mut rules = self.faults.rules.lock();
        if let Some(why) = rules.cut(self.local, to) {
            return Verdict::Cut(why);
        }
        let mut drop_request = rules.drop_requests > 0.0 && rules.next_f64() < rules.drop_requests;
        let mut drop_reply = rules.drop_replies > 0.0 && rules.next_f64() < rules.drop_replies;
        if let Some(loss) = rules.losses.iter_mut().find(|l| {
            l.remaining > 0
                && l.service == service
                && Some(l.to) == to
                && !matches!(l.what, Lose::Late(_))
        }) {
            loss.remaining -= 1;
            match loss.what {
                Lose::Request => drop_request = true,
                Lose::Reply => drop_reply = true,
                // taken in `call` before the verdict
                Lose::Late(_) => {}
            }
        }
        rules.losses.retain(|l| l.remaining > 0);
        Verdict::Pass {
            delay: rules.delay,
            drop_request,
            drop_reply,
        }
    }

    fn faulty(
        &self,
        to: Option<NodeId>,
        what: String,
        service: Service,
        call: BoxFuture<'static, Result<Vec<u8>>>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        let verdict = self.verdict(to, service);
        Box::pin(async move {
            let (delay, drop_request, drop_reply) = match verdict {
                Verdict::Cut(why) => {
                    return Err(Error::unavailable(format!("{what}: {why} (injected)")));
                }
                Verdict::Pass {
                    delay,
                    drop_request,
                    drop_reply,
                } => (delay, drop_request, drop_reply),
            };
            let lost = || {
                Error::timeout(format!(
                    "{what}: no reply within {deadline:?} (injected loss)"
                ))
            };
            let start = tokio::time::Instant::now();
            if drop_request {
                tokio::time::sleep(deadline).await;
                return Err(lost());
            }
            if delay >= deadline {
                tokio::time::sleep(deadline).await;
                return Err(lost());
            }
            tokio::time::sleep(delay).await;
            let r = call.await;
            if drop_reply {
                tokio::time::sleep_until(start + deadline).await;
                return Err(lost());
            }
            r
        })
    }
}

impl Transport for FaultyTransport {
    fn call(
        &self,
        to: NodeId,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        if let Some(late) = self.take_late(to, service) {
            // delivered later by a task of its own; the caller sees a lost request
            let inner = self.inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(late).await;
                let _ = inner.call(to, service, body, late + deadline).await;
            });
            return Box::pin(async move {
                tokio::time::sleep(deadline).await;
                Err(Error::timeout(format!(
                    "call {service:?} to node {to}: no reply within {deadline:?} (injected: delivered late)"
                )))
            });
        }
        let budget = self.remaining(deadline);
        let call = self.inner.call(to, service, body, budget);
        self.faulty(
            Some(to),
            format!("call {service:?} to node {to}"),
            service,
            call,
            deadline,
        )
    }

    fn call_addr(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        let to = self
            .inner
            .peers()
            .into_iter()
            .find(|(_, a)| *a == addr)
            .map(|(id, _)| id);
        let budget = self.remaining(deadline);
        let call = self.inner.call_addr(addr, service, body, budget);
        self.faulty(
            to,
            format!("call {service:?} to {addr}"),
            service,
            call,
            deadline,
        )
    }

    fn set_peer(&self, id: NodeId, addr: SocketAddr) {
        self.inner.set_peer(id, addr);
    }

    fn remove_peer(&self, id: NodeId) {
        self.inner.remove_peer(id);
    }

    fn peers(&self) -> Vec<(NodeId, SocketAddr)> {
        self.inner.peers()
    }

    fn stats(&self) -> TransportStats {
        self.inner.stats()
    }

    fn serve(&self, handler: Arc<dyn Handler>) -> Result<()> {
        self.inner.serve(handler)
    }

    fn local_addr(&self) -> Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        self.inner.shutdown()
    }
}

impl FaultyTransport {
    /// The deadline left to the inner call once the injected delay is spent.
    /// Takes a pending late delivery of `service` to `to`, if one is set.
    fn take_late(&self, to: NodeId, service: Service) -> Option<Duration> {
        let mut rules = self.faults.rules.lock();
        let at = rules.losses.iter().position(|l| {
            l.remaining > 0 && l.service == service && l.to == to && matches!(l.what, Lose::Late(_))
        })?;
        let loss = &mut rules.losses[at];
        loss.remaining -= 1;
        let Lose::Late(late) = loss.what else {
            return None;
        };
        rules.losses.retain(|l| l.remaining > 0);
        Some(late)
    }

    fn remaining(&self, deadline: Duration) -> Duration {
        deadline.saturating_sub(self.faults.rules.lock().delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::transport::memory::MemoryHub;
    use crate::transport::{PeerInfo, handler_fn};
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Cluster {
        faults: Arc<Faults>,
        nodes: Vec<FaultyTransport>,
        served: Arc<AtomicU64>,
    }

    fn cluster(n: u64) -> Cluster {
        let hub = MemoryHub::new();
        let faults = Faults::new(42);
        let served = Arc::new(AtomicU64::new(0));
        let nodes = (1..=n)
            .map(|id| {
                let served = served.clone();
                let h = handler_fn(move |_from: PeerInfo, _s, body: Vec<u8>| {
                    served.fetch_add(1, Ordering::SeqCst);
                    async move { Ok(body) }
                });
                let t = hub.register(id, MemoryHub::addr_of(id), h);
                for peer in 1..=n {
                    t.set_peer(peer, MemoryHub::addr_of(peer));
                }
                FaultyTransport::new(Arc::new(t), id, faults.clone())
            })
            .collect();
        Cluster {
            faults,
            nodes,
            served,
        }
    }

    const D: Duration = Duration::from_millis(500);

    async fn ok(c: &Cluster, from: u64, to: u64) -> bool {
        c.nodes[(from - 1) as usize]
            .call(to, Service::Shard, b"x".to_vec(), D)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn partition_isolation_and_heal() {
        tokio::time::timeout(Duration::from_secs(10), async {
            let c = cluster(3);
            tracing::info!("partition {{1}} | {{2,3}}: cut both ways, fast, 2-3 still talk");
            c.faults.partition(&[1], &[2, 3]);
            let t0 = std::time::Instant::now();
            let e = c.nodes[0]
                .call(2, Service::Raft, vec![], D)
                .await
                .expect_err("cut");
            assert_eq!(e.kind, ErrorKind::Unavailable);
            assert!(
                t0.elapsed() < Duration::from_millis(100),
                "partition fails fast"
            );
            assert!(!ok(&c, 3, 1).await);
            assert!(ok(&c, 2, 3).await);
            // call_addr is cut too (the id is found in the address book)
            let e = c.nodes[1]
                .call_addr(MemoryHub::addr_of(1), Service::Admin, vec![], D)
                .await
                .expect_err("cut by address");
            assert_eq!(e.kind, ErrorKind::Unavailable);

            tracing::info!("heal: everything flows again");
            c.faults.heal();
            assert!(ok(&c, 1, 2).await && ok(&c, 3, 1).await);

            tracing::info!("isolate 2: nobody reaches it and it reaches nobody; heal_node ends it");
            c.faults.isolate(2);
            assert!(!ok(&c, 1, 2).await && !ok(&c, 2, 3).await);
            assert!(ok(&c, 1, 3).await);
            c.faults.heal_node(2);
            assert!(ok(&c, 1, 2).await && ok(&c, 2, 3).await);
        })
        .await
        .expect("test within its time bound");
    }

    #[tokio::test]
    async fn drops_and_delay() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let c = cluster(2);
            tracing::info!("all requests lost: Timeout at the deadline, handler never runs");
            c.faults.drop_requests(1.0);
            let before = c.served.load(Ordering::SeqCst);
            let e = c.nodes[0]
                .call(2, Service::Shard, vec![], Duration::from_millis(50))
                .await
                .expect_err("lost");
            assert_eq!(e.kind, ErrorKind::Timeout);
            assert_eq!(c.served.load(Ordering::SeqCst), before);

            tracing::info!("all replies lost: the handler ran, the caller times out");
            c.faults.heal();
            c.faults.drop_replies(1.0);
            let e = c.nodes[0]
                .call(2, Service::Shard, vec![], Duration::from_millis(50))
                .await
                .expect_err("lost reply");
            assert_eq!(e.kind, ErrorKind::Timeout);
            assert_eq!(c.served.load(Ordering::SeqCst), before + 1);

            tracing::info!("half the requests lost: some pass, some fail");
            c.faults.heal();
            c.faults.drop_requests(0.5);
            let mut passed = 0;
            for _ in 0..40 {
                if c.nodes[0]
                    .call(2, Service::Shard, vec![], Duration::from_millis(5))
                    .await
                    .is_ok()
                {
                    passed += 1;
                }
            }
            assert!((5..=35).contains(&passed), "passed {passed} of 40");

            tracing::info!(
                "delay: calls take at least the delay; a delay over the deadline times out"
            );
            c.faults.heal();
            c.faults.delay(Duration::from_millis(100));
            let t0 = std::time::Instant::now();
            assert!(ok(&c, 1, 2).await);
            assert!(t0.elapsed() >= Duration::from_millis(100));
            let e = c.nodes[0]
                .call(2, Service::Shard, vec![], Duration::from_millis(50))
                .await
                .expect_err("delay over deadline");
            assert_eq!(e.kind, ErrorKind::Timeout);
            c.faults.heal();
            let t0 = std::time::Instant::now();
            assert!(ok(&c, 1, 2).await);
            assert!(t0.elapsed() < Duration::from_millis(100));
        })
        .await
        .expect("test within its time bound");
    }
}
