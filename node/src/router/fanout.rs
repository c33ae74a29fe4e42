//! The fan-out of a routed request: each target shard called where its replica is, on this node
//! through the shard RPC's local serving path, on another node over the [`Link`], concurrently.
//!
//! Architecture invariant: a local call and a remote one run the same serving code
//! ([`crate::shard_rpc::serve_read`] / [`crate::shard_rpc::serve_write`]); the link only carries
//! the call.

use std::sync::Arc;

use tessera_cluster::meta::{NodeId, ShardId, ShardKey};
use tessera_cluster::{Error, Result};
use tessera_shard::actor::WriteOp;
use tokio::task::JoinSet;

use crate::access::Scope;
use crate::catalog::Catalog;
use crate::context::Target;
use crate::peer::Link;
use crate::quota::Quotas;
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
    /// The node holding the replica a request uses (one replica per shard for now).
    fn node_of(&self, scope: &Scope, shard: ShardId) -> NodeId {
        scope
            .nodes
            .get(&shard)
            .copied()
            .unwrap_or(self.catalog.node_id)
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
}

pub(super) async fn write_all(
    reach: &Reach,
    scope: &Scope,
    jobs: Vec<(Target, WriteOp)>,
) -> Result<u64> {
    let mut set = JoinSet::new();
    let uid = scope.uid;
    for (Target { shard, key }, op) in jobs {
        let node = reach.node_of(scope, shard);
        if node == reach.catalog.node_id {
            let shards = reach.catalog.shards.clone();
            set.spawn(
                async move { serve_write(&shards, LocalShard { uid, shard, key }, op).await },
            );
        } else {
            let link = reach.link_to(node)?.clone();
            let rpc = ShardRpc::Write {
                uid,
                shard,
                key,
                op: WireWrite::from_op(&op),
            };
            set.spawn(async move {
                match link.call(node, &rpc).await? {
                    ShardReply::Seq(n) => Ok(n),
                    ShardReply::Read(_) => Err(wrong_reply()),
                }
            });
        }
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
    let uid = scope.uid;
    let tenant = scope
        .tenant
        .clone()
        .unwrap_or_else(|| UNATTRIBUTED.to_owned());
    let weight = reach.quotas.admission.quota(&tenant).weight;
    for Target { shard, key } in scope.targets.iter().cloned() {
        let node = reach.node_of(&scope, shard);
        let tenant = tenant.clone();
        if node == reach.catalog.node_id {
            let (shards, quotas, op) = (
                reach.catalog.shards.clone(),
                reach.quotas.clone(),
                op.clone(),
            );
            set.spawn(async move {
                let r = serve_read(
                    &shards,
                    &quotas,
                    LocalShard {
                        uid,
                        shard,
                        key: key.clone(),
                    },
                    &tenant,
                    weight,
                    op,
                )
                .await;
                r.map(|v| (key, v))
            });
        } else {
            let link = reach.link_to(node)?.clone();
            let rpc = ShardRpc::Read {
                uid,
                shard,
                key: key.clone(),
                tenant,
                weight,
                op: WireRead::from_op(&op),
            };
            set.spawn(async move {
                match link.call(node, &rpc).await? {
                    ShardReply::Read(r) => r.into_reply().map(|v| (key, v)),
                    ShardReply::Seq(_) => Err(wrong_reply()),
                }
            });
        }
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.map_err(|e| Error::internal(format!("read task: {e}")))??);
    }
    Ok(out)
}
