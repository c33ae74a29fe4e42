//! The fan-out of a routed request: each target shard called where its replica is, on this node
//! through the shard RPC's local serving path, on another node over the [`Link`], concurrently.
//!
//! Architecture invariant: a local call and a remote one run the same serving code
//! ([`crate::shard_rpc::serve_read`] / [`crate::shard_rpc::serve_write`]); the link only carries
//! the call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_cluster::meta::{NodeId, ShardId, ShardKey};
use tessera_cluster::{Error, Result};
use tessera_shard::actor::WriteOp;
use tokio::task::JoinSet;

use crate::access::Scope;
use crate::catalog::Catalog;
use crate::context::{ReadConsistency, Target};
use crate::peer::Link;
use crate::quota::Quotas;
use crate::replication::{Replication, retryable};
use crate::shard_rpc::{
    LocalShard, ReadOp, ReadReply, ShardReply, ShardRpc, UNATTRIBUTED, WireRead, WireWrite,
    serve_read, serve_write,
};

/// What a routed job reaches: the shards (local, or on other nodes over the cluster link),
/// and the pool its CPU work runs on.
#[derive(Clone)]
pub struct Reach {
    pub catalog: Arc<Catalog>,
    pub quotas: Arc<Quotas>,
    pub link: Option<Arc<Link>>,
    pub replication: Arc<Replication>,
}

fn wrong_reply() -> Error {
    Error::internal("a shard answered a different kind of read")
}

/// The shards' answers of one kind (`pick` unwraps it); another kind is an internal error.
pub(super) fn replies<T>(
    parts: Vec<(Option<ShardKey>, ReadReply)>,
    pick: impl Fn(ReadReply) -> Option<T>,
) -> Result<Vec<(Option<ShardKey>, T)>> {
    parts
        .into_iter()
        .map(|(k, r)| pick(r).map(|v| (k, v)).ok_or_else(wrong_reply))
        .collect()
}

impl Reach {
    /// The nodes to try for a shard, best first (see [`Scope::nodes`]); this node when the
    /// scope has none (a single node).
    fn nodes_of(&self, scope: &Scope, shard: ShardId) -> Vec<NodeId> {
        match scope.nodes.get(&shard) {
            Some(nodes) if !nodes.is_empty() => nodes.clone(),
            _ => vec![self.catalog.node_id],
        }
    }

    /// Whether the shard has more than one replica: only then is a 503 worth retrying (a
    /// single replica's tenant gets its 503 at once, there is nothing to fail over to).
    fn replicated(&self, uid: u64, shard: ShardId) -> bool {
        let st = self.catalog.meta.read();
        st.collections
            .values()
            .find(|c| c.uid == uid)
            .and_then(|c| c.shards.get(&shard))
            .is_some_and(|s| s.replicas.len() > 1)
    }

    /// The shard's primary in this node's metadata now (it changes on failover).
    fn primary_now(&self, uid: u64, shard: ShardId) -> Option<NodeId> {
        let st = self.catalog.meta.read();
        st.collections
            .values()
            .find(|c| c.uid == uid)?
            .shards
            .get(&shard)?
            .primary()
    }

    fn link_to(&self, node: NodeId) -> Result<&Arc<Link>> {
        let link = self.link.as_ref().ok_or_else(|| {
            Error::unavailable(format!(
                "shard on node {node} and this node is not in a cluster"
            ))
        })?;
        link.check_up(node)?;
        Ok(link)
    }

    fn retry_for(&self, uid: u64, shard: ShardId) -> Duration {
        if self.replicated(uid, shard) {
            FAILOVER_RETRY_FOR
        } else {
            Duration::ZERO
        }
    }

    /// One write to a shard's primary: on this node, or over the link.
    async fn write_at(&self, node: NodeId, uid: u64, target: &Target, op: &WriteOp) -> Result<u64> {
        let Target { shard, key } = target.clone();
        if node == self.catalog.node_id {
            return serve_write(
                &self.catalog.shards,
                &*self.replication,
                LocalShard { uid, shard, key },
                op.clone(),
            )
            .await;
        }
        let link = self.link_to(node)?;
        let rpc = ShardRpc::Write {
            uid,
            shard,
            key,
            op: WireWrite::from_op(op),
        };
        match link.call(node, &rpc).await? {
            ShardReply::Seq(n) => Ok(n),
            _ => Err(wrong_reply()),
        }
    }

    /// A write to a shard through its primary, retried (every write is idempotent) while the
    /// shard fails over: a 503 from a primary that is down, failed or deposed is tried again
    /// at the primary the metadata names next, for up to [`FAILOVER_RETRY_FOR`].
    async fn write_one(&self, scope: &Scope, target: Target, op: WriteOp) -> Result<u64> {
        let deadline = Instant::now() + self.retry_for(scope.uid, target.shard);
        let mut node = self.nodes_of(scope, target.shard)[0];
        loop {
            match self.write_at(node, scope.uid, &target, &op).await {
                Err(e) if retryable(&e) && Instant::now() < deadline => {
                    tracing::debug!(shard = target.shard, node, error = %e, "write retried");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    node = self.primary_now(scope.uid, target.shard).unwrap_or(node);
                }
                done => return done,
            }
        }
    }
}

/// How long a request retries a shard whose replicas are failing over.
const FAILOVER_RETRY_FOR: Duration = Duration::from_secs(4);
/// Pause between two tries.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub(super) async fn write_all(
    reach: &Reach,
    scope: &Scope,
    jobs: Vec<(Target, WriteOp)>,
) -> Result<u64> {
    let mut set = JoinSet::new();
    for (target, op) in jobs {
        let (reach, scope) = (reach.clone(), scope.clone());
        set.spawn(async move { reach.write_one(&scope, target, op).await });
    }
    let mut seq = 0;
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(s)) => seq = seq.max(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::internal(format!("write task: {e}")));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(seq),
    }
}

impl Reach {
    /// A read of one shard at the first of its in-sync replicas that answers; while none does
    /// (a failover), tried again for up to [`FAILOVER_RETRY_FOR`].
    async fn read_one(
        &self,
        uid: u64,
        target: Target,
        nodes: Vec<NodeId>,
        tenant: &str,
        weight: u32,
        op: Arc<ReadOp>,
    ) -> Result<ReadReply> {
        let deadline = Instant::now() + self.retry_for(uid, target.shard);
        let mut nodes = nodes;
        loop {
            let mut last = None;
            for node in &nodes {
                match self
                    .read_at(*node, uid, &target, tenant, weight, op.clone())
                    .await
                {
                    Err(e) if retryable(&e) => last = Some(e),
                    done => return done,
                }
            }
            let e = last.unwrap_or_else(|| Error::unavailable("no replica to read from"));
            if Instant::now() >= deadline {
                return Err(e);
            }
            tracing::debug!(shard = target.shard, error = %e, "read retried");
            tokio::time::sleep(RETRY_PAUSE).await;
            nodes = self.readers_now(uid, target.shard).unwrap_or(nodes);
        }
    }

    /// A read of one shard under a read consistency: the plain read for one replica; else
    /// as many distinct in-sync replicas as it asks for (others tried when one fails), and
    /// only the values in enough of their answers ([`merge::agreed`]).
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one read: where, how consistent, for whom, what"
    )]
    async fn read_consistent(
        &self,
        uid: u64,
        target: Target,
        nodes: Vec<NodeId>,
        consistency: ReadConsistency,
        tenant: &str,
        weight: u32,
        op: Arc<ReadOp>,
    ) -> Result<ReadReply> {
        if consistency == ReadConsistency::One {
            return self.read_one(uid, target, nodes, tenant, weight, op).await;
        }
        let in_sync = self.readers_now(uid, target.shard).unwrap_or(nodes);
        let Some((ask, keep)) = consistency.plan(in_sync.len()) else {
            return Err(Error::unavailable(format!(
                "read consistency {consistency:?} asks for more replicas of shard {} than its {} in-sync one(s)",
                target.shard,
                in_sync.len()
            )));
        };
        let mut answers = Vec::with_capacity(ask);
        let mut last = None;
        for node in &in_sync {
            if answers.len() == ask {
                break;
            }
            match self
                .read_at(*node, uid, &target, tenant, weight, op.clone())
                .await
            {
                Ok(r) => answers.push(r),
                Err(e) if retryable(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        if answers.len() < ask {
            return Err(Error::unavailable(format!(
                "read consistency {consistency:?} needs {ask} replicas of shard {}, {} answered{}",
                target.shard,
                answers.len(),
                last.map(|e| format!(": {}", e.message)).unwrap_or_default()
            )));
        }
        super::merge::agreed(answers, keep).ok_or_else(wrong_reply)
    }

    /// The in-sync replicas of a shard in this node's metadata now.
    fn readers_now(&self, uid: u64, shard: ShardId) -> Option<Vec<NodeId>> {
        let st = self.catalog.meta.read();
        let s = st
            .collections
            .values()
            .find(|c| c.uid == uid)?
            .shards
            .get(&shard)?;
        Some(super::readers(
            s,
            self.catalog.node_id,
            self.link.as_deref(),
        ))
    }

    async fn read_at(
        &self,
        node: NodeId,
        uid: u64,
        target: &Target,
        tenant: &str,
        weight: u32,
        op: Arc<ReadOp>,
    ) -> Result<ReadReply> {
        let Target { shard, key } = target.clone();
        if node == self.catalog.node_id {
            return serve_read(
                &self.catalog.shards,
                &*self.replication,
                &self.quotas,
                LocalShard { uid, shard, key },
                tenant,
                weight,
                op,
            )
            .await;
        }
        let link = self.link_to(node)?;
        let rpc = ShardRpc::Read {
            uid,
            shard,
            key,
            tenant: tenant.to_owned(),
            weight,
            op: WireRead::from_op(&op),
        };
        match link.call(node, &rpc).await? {
            ShardReply::Read(r) => r.into_reply(),
            _ => Err(wrong_reply()),
        }
    }
}

/// Most reads of one request in flight at once, across its target shards.
const MAX_READS_IN_FLIGHT: usize = 64;

/// Runs `op` on every target shard, concurrently: local replicas through the node's fair
/// scheduler (the CPU pool is shared across tenants by weight, so a flooding tenant waits in its
/// own queue), remote ones over the cluster link.
pub(super) async fn read_all(
    reach: &Reach,
    scope: Scope,
    op: ReadOp,
) -> Result<Vec<(Option<ShardKey>, ReadReply)>> {
    let op = Arc::new(op);
    let mut set = JoinSet::new();
    let tenant = scope
        .tenant
        .clone()
        .unwrap_or_else(|| UNATTRIBUTED.to_owned());
    let weight = reach.quotas.admission.quota(&tenant).weight;
    // one request over many shards (a collection of thousands of shard keys) keeps a bounded
    // number of its reads in flight: its jobs wait here, not in its tenant's queue, which they
    // would overflow (429 on every try)
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_READS_IN_FLIGHT));
    for target in scope.targets.iter().cloned() {
        let nodes = reach.nodes_of(&scope, target.shard);
        let (reach, tenant, op, uid) = (reach.clone(), tenant.clone(), op.clone(), scope.uid);
        let consistency = scope.consistency;
        let in_flight = in_flight.clone();
        set.spawn(async move {
            let _permit = in_flight
                .acquire_owned()
                .await
                .map_err(|_| Error::internal("read fan-out closed"))?;
            let key = target.key.clone();
            reach
                .read_consistent(uid, target, nodes, consistency, &tenant, weight, op)
                .await
                .map(|r| (key, r))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.map_err(|e| Error::internal(format!("read task: {e}")))??);
    }
    Ok(out)
}
