//! Placement changes of a shard (Qdrant's `POST /collections/{c}/cluster`): a replica added on
//! another node catches up through the keeper like any returning replica; a move records its
//! intent in the metadata, and the metadata leader drops the source once the new replica is in
//! sync (see `rebalance.rs`); a drop never takes the last in-sync replica, and
//! hands the primary over first. The leader also rebuilds, elsewhere, the replicas of a node
//! gone longer than the replica timeout.

use std::collections::BTreeMap;

use tessera_cluster::meta::{CollectionMeta, Command, NodeId, ReplicaState, ShardId, ShardMeta};
use tessera_cluster::{Error, Result};

use super::Replication;

/// A change of a shard's placement (Qdrant's `POST /collections/{c}/cluster` operations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOp {
    /// `move_shard`: a replica on `to` catches up, then the one on `from` is dropped (the
    /// primary moves with it).
    Move {
        shard: ShardId,
        from: NodeId,
        to: NodeId,
    },
    /// `replicate_shard`: a new replica on `to`, copied from the shard's primary.
    Replicate {
        shard: ShardId,
        from: NodeId,
        to: NodeId,
    },
    /// `abort_transfer`: the replica on `to` that is still catching up is dropped.
    Abort { shard: ShardId, to: NodeId },
    /// `drop_replica`: the replica on `peer` is dropped (the primary is handed over first).
    Drop { shard: ShardId, peer: NodeId },
}

impl Replication {
    /// Applies a placement change to `collection`'s shard. Answers once the change is committed;
    /// a move's second half (dropping the source once the new replica is in sync) is the
    /// metadata leader's, from the intent the move recorded.
    pub async fn cluster_op(&self, collection: &str, op: ClusterOp) -> Result<()> {
        let shard = match &op {
            ClusterOp::Move { shard, .. }
            | ClusterOp::Replicate { shard, .. }
            | ClusterOp::Abort { shard, .. }
            | ClusterOp::Drop { shard, .. } => *shard,
        };
        let (c, s) = self.collection_shard(collection, shard)?;
        let members = self
            .catalog
            .meta
            .raft()
            .map(|r| r.metrics().nodes.keys().copied().collect::<Vec<_>>())
            .unwrap_or_else(|| vec![self.me()]);
        let bad = |m: String| Err(Error::bad_request(format!("Bad request: {m}")));
        let change = |command| self.change(command);
        match op {
            ClusterOp::Replicate { from, to, .. } | ClusterOp::Move { from, to, .. } => {
                if !s.in_sync().any(|n| n == from) {
                    return bad(format!(
                        "peer {from} holds no in-sync replica of shard {}",
                        s.id
                    ));
                }
                if !members.contains(&to) {
                    return bad(format!("peer {to} is not a member of the cluster"));
                }
                if s.state_on(to).is_some() {
                    return bad(format!(
                        "peer {to} holds a replica of shard {} already",
                        s.id
                    ));
                }
                if matches!(op, ClusterOp::Move { .. }) {
                    if let Some(m) = s.moving {
                        return bad(format!(
                            "shard {} is moving from peer {} to peer {} already",
                            s.id, m.from, m.to
                        ));
                    }
                    change(Command::MoveReplica {
                        collection: c.name.clone(),
                        uid: c.uid,
                        shard: s.id,
                        from,
                        to,
                        epoch: s.epoch,
                    })
                    .await?;
                } else {
                    change(Command::AddReplica {
                        collection: c.name.clone(),
                        uid: c.uid,
                        shard: s.id,
                        node: to,
                        epoch: s.epoch,
                    })
                    .await?;
                }
                Ok(())
            }
            ClusterOp::Abort { to, .. } => match s.state_on(to) {
                Some(ReplicaState::Partial | ReplicaState::Dead) => {
                    change(Command::RemoveReplica {
                        collection: c.name.clone(),
                        uid: c.uid,
                        shard: s.id,
                        node: to,
                        epoch: s.epoch,
                    })
                    .await
                }
                _ => bad(format!(
                    "no transfer of shard {} to peer {to} to abort",
                    s.id
                )),
            },
            ClusterOp::Drop { peer, .. } => self.drop_replica(&c, &s, peer).await,
        }
    }

    /// A collection and one of its shards, as this node's metadata has them now.
    fn collection_shard(
        &self,
        collection: &str,
        shard: ShardId,
    ) -> Result<(CollectionMeta, ShardMeta)> {
        let st = self.catalog.meta.read();
        let c = st.collection(collection)?;
        let s = c
            .shards
            .get(&shard)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Shard {shard} not found")))?;
        Ok((c.clone(), s))
    }

    /// Drops `peer`'s replica of `s`: never the last in-sync one; the primary hands over to
    /// another in-sync replica first.
    pub(super) async fn drop_replica(
        &self,
        c: &CollectionMeta,
        s: &ShardMeta,
        peer: NodeId,
    ) -> Result<()> {
        let Some(state) = s.state_on(peer) else {
            return Err(Error::bad_request(format!(
                "Bad request: peer {peer} holds no replica of shard {}",
                s.id
            )));
        };
        let others: Vec<NodeId> = s.in_sync().filter(|n| *n != peer).collect();
        if state == ReplicaState::Active && others.is_empty() {
            return Err(Error::bad_request(format!(
                "Bad request: the replica on peer {peer} is the last in-sync one of shard {}",
                s.id
            )));
        }
        let mut epoch = s.epoch;
        if s.primary() == Some(peer) {
            self.change(Command::PromoteReplica {
                collection: c.name.clone(),
                uid: c.uid,
                shard: s.id,
                node: others[0],
                epoch,
            })
            .await?;
            epoch += 1;
        }
        self.change(Command::RemoveReplica {
            collection: c.name.clone(),
            uid: c.uid,
            shard: s.id,
            node: peer,
            epoch,
        })
        .await
    }
}

impl Replication {
    /// One round of re-replication on the leader: a replica on a node unreachable for longer
    /// than the replica timeout (or no longer a member) is replaced by a new one on a reachable
    /// node that holds none of the shard, copied from the in-sync replicas. Never the primary,
    /// and never where no in-sync replica is left to copy from.
    pub(super) async fn rereplicate_round(&self) {
        let Some(timeout) = self
            .catalog
            .config
            .cluster
            .as_ref()
            .map(|c| c.replica_timeout)
        else {
            return;
        };
        let (Some(raft), Some(link)) = (self.catalog.meta.raft(), self.catalog.link()) else {
            return;
        };
        if let Err(e) = crate::peer::membership::replace_lost_voters(
            raft,
            link,
            self.catalog.max_voters(),
            timeout,
        )
        .await
        {
            tracing::warn!(error = %e, "replacing lost voters failed; retried next round");
        }
        let members: Vec<NodeId> = raft.metrics().nodes.keys().copied().collect();
        let gone = |n: NodeId| {
            n != self.me()
                && (!members.contains(&n) || link.down_for(n).is_some_and(|d| d >= timeout))
        };
        let (collections, mut load) = {
            let st = self.catalog.meta.read();
            let mut load: BTreeMap<NodeId, usize> = members.iter().map(|m| (*m, 0)).collect();
            for c in st.collections.values() {
                for s in c.shards.values() {
                    for r in &s.replicas {
                        *load.entry(r.node).or_default() += 1;
                    }
                }
            }
            (st.collections.values().cloned().collect::<Vec<_>>(), load)
        };
        for c in &collections {
            for s in c.shards.values() {
                let Some(dead) = s.replicas.iter().map(|r| r.node).find(|n| gone(*n)) else {
                    continue;
                };
                // the new replica of a move, lost: the move is abandoned (the source stays),
                // not rebuilt elsewhere as one copy too many
                if s.moving.is_some_and(|m| m.to == dead) {
                    let aborted = self
                        .change(Command::RemoveReplica {
                            collection: c.name.clone(),
                            uid: c.uid,
                            shard: s.id,
                            node: dead,
                            epoch: s.epoch,
                        })
                        .await;
                    match aborted {
                        Ok(()) => {
                            tracing::warn!(collection = %c.name, shard = s.id, lost = dead, "move abandoned: its new replica's node is gone")
                        }
                        Err(e) => {
                            tracing::debug!(collection = %c.name, shard = s.id, error = %e, "abandoning a move not done")
                        }
                    }
                    continue;
                }
                let copyable = s.in_sync().any(|n| !gone(n) && self.up(n));
                if s.primary() == Some(dead) || !copyable {
                    continue;
                }
                let target = load
                    .iter()
                    .filter(|(n, _)| {
                        members.contains(n)
                            && !gone(**n)
                            && self.up(**n)
                            && s.state_on(**n).is_none()
                    })
                    .min_by_key(|(n, l)| (**l, **n))
                    .map(|(n, _)| *n);
                let Some(target) = target else {
                    tracing::debug!(collection = %c.name, shard = s.id, dead, "no node to rebuild a replica on");
                    continue;
                };
                let done = async {
                    self.change(Command::AddReplica {
                        collection: c.name.clone(),
                        uid: c.uid,
                        shard: s.id,
                        node: target,
                        epoch: s.epoch,
                    })
                    .await?;
                    self.change(Command::RemoveReplica {
                        collection: c.name.clone(),
                        uid: c.uid,
                        shard: s.id,
                        node: dead,
                        epoch: s.epoch,
                    })
                    .await
                }
                .await;
                match done {
                    Ok(()) => {
                        *load.entry(target).or_default() += 1;
                        metrics::counter!("tessera_replicas_rebuilt_total").increment(1);
                        tracing::warn!(collection = %c.name, shard = s.id, lost = dead, rebuilt_on = target, "replica of a gone node rebuilt elsewhere");
                    }
                    Err(e) => {
                        tracing::debug!(collection = %c.name, shard = s.id, error = %e, "re-replication not done")
                    }
                }
            }
        }
    }
}
