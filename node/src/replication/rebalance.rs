//! Rebalancing and the completion of moves.
//!
//! - [`Replication::rebalance`] (`POST /admin/rebalance`): plans moves of replicas from the most
//!   loaded reachable members onto the least loaded ones ([`plan_rebalance`], pure), at most
//!   `max_moves` at a time, and starts each as a move ([`Command::MoveReplica`]).
//! - The metadata leader's move round finishes every move whose new replica is in sync: it
//!   drops the source (a primary hands over first). The intent is in the metadata, so a move
//!   finishes whichever node asked for it and whichever node leads by then.
//! - With `auto_rebalance`, the leader runs a bounded rebalance round every
//!   [`AUTO_REBALANCE_EVERY`] while every member is reachable.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tessera_cluster::meta::{
    CollectionMeta, Command, NodeId, PlannedMove, ReplicaState, ShardMeta, ShardMove,
    plan_rebalance,
};
use tessera_cluster::raft::MetaRaft;
use tessera_cluster::{Error, Result};

use super::Replication;

/// How often the metadata leader looks for moves to finish.
const MOVES_EVERY: Duration = Duration::from_millis(300);
/// How often the metadata leader runs an automatic rebalance round (when enabled).
pub const AUTO_REBALANCE_EVERY: Duration = Duration::from_secs(10);
/// Most moves in flight an automatic round tops up to.
const AUTO_MOVES_IN_FLIGHT: usize = 2;
/// Most moves one `POST /admin/rebalance` starts.
pub const MAX_REBALANCE_MOVES: usize = 64;

/// What became of one planned move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveStatus {
    /// A dry run: planned, not started.
    Planned,
    /// Committed: the new replica is catching up, the source goes once it is in sync.
    Started,
    /// Refused when it was started (the shard changed meanwhile): why.
    Refused(String),
}

/// One move of a rebalance plan and what became of it.
#[derive(Debug, Clone)]
pub struct RebalanceMove {
    pub planned: PlannedMove,
    pub status: MoveStatus,
}

impl Replication {
    /// The members that may give or take replicas now: those that answer (this node too).
    fn rebalance_nodes(&self) -> BTreeSet<NodeId> {
        let Some(raft) = self.catalog.meta.raft() else {
            return BTreeSet::from([self.me()]);
        };
        raft.metrics()
            .nodes
            .keys()
            .copied()
            .filter(|n| self.up(*n))
            .collect()
    }

    /// Plans at most `max_moves` moves from the most to the least loaded reachable members and,
    /// unless `dry_run`, starts them. Answers once each is committed (or refused); the copies
    /// run on, and the metadata leader drops each source once its new replica is in sync.
    pub async fn rebalance(&self, max_moves: usize, dry_run: bool) -> Result<Vec<RebalanceMove>> {
        if max_moves == 0 || max_moves > MAX_REBALANCE_MOVES {
            return Err(Error::bad_request(format!(
                "Bad request: max_moves must be between 1 and {MAX_REBALANCE_MOVES}, got {max_moves}"
            )));
        }
        let nodes = self.rebalance_nodes();
        let plan = plan_rebalance(&self.catalog.meta.read(), &nodes, max_moves);
        let mut out = Vec::with_capacity(plan.len());
        for planned in plan {
            let status = if dry_run {
                MoveStatus::Planned
            } else {
                match self.start_move(&planned).await {
                    Ok(()) => MoveStatus::Started,
                    Err(e) => {
                        tracing::info!(collection = %planned.collection, shard = planned.shard, from = planned.from, to = planned.to, error = %e, "rebalance move refused");
                        MoveStatus::Refused(e.message)
                    }
                }
            };
            out.push(RebalanceMove { planned, status });
        }
        Ok(out)
    }

    async fn start_move(&self, m: &PlannedMove) -> Result<()> {
        self.change(Command::MoveReplica {
            collection: m.collection.clone(),
            uid: m.uid,
            shard: m.shard,
            from: m.from,
            to: m.to,
            epoch: m.epoch,
        })
        .await?;
        metrics::counter!("tessera_rebalance_moves_total").increment(1);
        tracing::info!(collection = %m.collection, shard = m.shard, from = m.from, to = m.to, "rebalance move started");
        Ok(())
    }

    /// Every shard with a move in flight.
    fn moving_shards(&self) -> Vec<(CollectionMeta, ShardMeta, ShardMove)> {
        let st = self.catalog.meta.read();
        st.collections
            .values()
            .flat_map(|c| {
                c.shards
                    .values()
                    .filter_map(move |s| s.moving.map(|m| (c.clone(), s.clone(), m)))
            })
            .collect()
    }

    /// One round on the metadata leader: every move whose new replica is in sync loses its
    /// source (a primary hands over to an in-sync replica first).
    async fn finish_moves_round(&self) {
        for (c, s, m) in self.moving_shards() {
            if s.state_on(m.to) != Some(ReplicaState::Active) {
                continue;
            }
            match self.drop_replica(&c, &s, m.from).await {
                Ok(()) => {
                    metrics::counter!("tessera_shard_moves_total").increment(1);
                    tracing::info!(collection = %c.name, shard = s.id, from = m.from, to = m.to, "shard moved");
                }
                Err(e) => {
                    tracing::debug!(collection = %c.name, shard = s.id, error = %e, "move not finished yet; retried next round")
                }
            }
        }
    }

    /// One automatic round: while every member answers, tops the moves in flight up to
    /// [`AUTO_MOVES_IN_FLIGHT`] from a rebalance plan (which moves only where a node holds at
    /// least two replicas more than another).
    async fn auto_rebalance_round(&self) {
        let Some(raft) = self.catalog.meta.raft() else {
            return;
        };
        if raft.metrics().nodes.keys().any(|n| !self.up(*n)) {
            return;
        }
        let in_flight = {
            let st = self.catalog.meta.read();
            st.collections
                .values()
                .flat_map(|c| c.shards.values())
                .filter(|s| s.in_transfer())
                .count()
        };
        let room = AUTO_MOVES_IN_FLIGHT.saturating_sub(in_flight);
        if room == 0 {
            return;
        }
        match self.rebalance(room, false).await {
            Ok(moves) if !moves.is_empty() => {
                tracing::info!(moves = moves.len(), "automatic rebalance round")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "automatic rebalance round failed"),
        }
    }
}

/// The metadata leader's rounds of this module, for the life of the process: finishing moves,
/// and the automatic rebalance when it is enabled.
pub(super) fn spawn_loop(repl: Arc<Replication>, raft: MetaRaft) {
    let auto = repl
        .catalog
        .config
        .cluster
        .as_ref()
        .is_some_and(|c| c.auto_rebalance);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MOVES_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_auto = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            if raft.leader().map(|(id, _)| id) != Some(repl.me()) {
                continue;
            }
            repl.finish_moves_round().await;
            if auto && last_auto.elapsed() >= AUTO_REBALANCE_EVERY {
                last_auto = tokio::time::Instant::now();
                repl.auto_rebalance_round().await;
            }
        }
    });
}
