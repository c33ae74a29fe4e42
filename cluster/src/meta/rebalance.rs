//! Rebalancing: which shard replicas move from the most loaded nodes onto the least loaded ones
//! (a node that joined empty), decided over the metadata alone.
//!
//! Properties, each tested below: a move goes from a node holding at least two replicas more
//! than its target (so it narrows the spread, never just swaps it); it never touches a shard with
//! a replica catching up or a move in flight, never puts a second replica of a shard on one node,
//! never moves one shard twice in a plan, and involves only the nodes it is given (reachable
//! members). Backups move before primaries (a primary hands over first, which bumps the epoch).

use std::collections::{BTreeMap, BTreeSet};

use super::{MetadataState, NodeId, ShardId, ShardKey, ShardMeta};

/// One replica to move: the shard (of collection `collection`, uid `uid`, in its epoch
/// `epoch`), from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    pub collection: String,
    pub uid: u64,
    pub shard: ShardId,
    pub key: Option<ShardKey>,
    pub from: NodeId,
    pub to: NodeId,
    pub epoch: u64,
}

/// Plans at most `max_moves` moves among `nodes`, each one from the most loaded node that has a
/// shard to give to the least loaded node that may take it. Load is the number of replicas a
/// node holds, counting moves in flight as done (so a plan made while earlier moves run does
/// not move more than they left to do); replicas on nodes outside `nodes` are neither counted
/// nor moved.
pub fn plan_rebalance(
    state: &MetadataState,
    nodes: &BTreeSet<NodeId>,
    max_moves: usize,
) -> Vec<PlannedMove> {
    let mut load: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for c in state.collections.values() {
        for s in c.shards.values() {
            // a move in flight counts as done: its source is on its way out
            let leaving = s.moving.map(|m| m.from);
            for r in s.replicas.iter().filter(|r| Some(r.node) != leaving) {
                if let Some(held) = load.get_mut(&r.node) {
                    *held += 1;
                }
            }
        }
    }
    let mut moved: BTreeSet<(u64, ShardId)> = BTreeSet::new();
    let mut plan = Vec::new();
    while plan.len() < max_moves {
        let mut by_load: Vec<(usize, NodeId)> = load.iter().map(|(n, l)| (*l, *n)).collect();
        by_load.sort_unstable();
        let mut found = None;
        'pairs: for (hi_load, hi) in by_load.iter().rev() {
            for (lo_load, lo) in &by_load {
                if *hi_load < lo_load + 2 {
                    break;
                }
                if let Some(m) = candidate(state, *hi, *lo, &moved) {
                    found = Some(m);
                    break 'pairs;
                }
            }
        }
        let Some(m) = found else { break };
        if let Some(l) = load.get_mut(&m.from) {
            *l -= 1;
        }
        if let Some(l) = load.get_mut(&m.to) {
            *l += 1;
        }
        moved.insert((m.uid, m.shard));
        plan.push(m);
    }
    plan
}

/// The first shard (by collection name, then shard id) with a replica on `from` that may move
/// to `to`: a backup if there is one, else a primary.
fn candidate(
    state: &MetadataState,
    from: NodeId,
    to: NodeId,
    moved: &BTreeSet<(u64, ShardId)>,
) -> Option<PlannedMove> {
    let movable =
        |s: &ShardMeta| !s.in_transfer() && s.state_on(from).is_some() && s.state_on(to).is_none();
    for primaries in [false, true] {
        for c in state.collections.values() {
            let found = c.shards.values().find(|s| {
                movable(s)
                    && (s.primary() == Some(from)) == primaries
                    && !moved.contains(&(c.uid, s.id))
            });
            if let Some(s) = found {
                return Some(PlannedMove {
                    collection: c.name.clone(),
                    uid: c.uid,
                    shard: s.id,
                    key: s.key.clone(),
                    from,
                    to,
                    epoch: s.epoch,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    /// A custom-sharded collection `c` with one shard per key, placed on `placed[i]`.
    fn state(placed: &[&[NodeId]]) -> MetadataState {
        let mut st = MetadataState::default();
        let params = CollectionParams {
            shard_number: 1,
            ..super::super::tests::params(ShardingMethod::Custom)
        };
        st.apply(
            1,
            &Command::CreateCollection {
                name: "c".into(),
                uid: 9,
                params,
                shards: vec![],
            },
        )
        .expect("collection");
        for (i, nodes) in placed.iter().enumerate() {
            st.apply(
                2 + i as u64,
                &Command::CreateShardKey {
                    collection: "c".into(),
                    key: ShardKey::Num(i as u64),
                    shards: vec![ShardPlacement {
                        id: i as u32,
                        nodes: nodes.to_vec(),
                    }],
                },
            )
            .expect("key");
        }
        st
    }

    fn nodes(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    /// Applies a plan's moves as if each finished, and returns each node's load.
    fn after(st: &MetadataState, plan: &[PlannedMove]) -> BTreeMap<NodeId, usize> {
        let mut st = st.clone();
        for m in plan {
            let s = st
                .collections
                .get_mut(&m.collection)
                .and_then(|c| c.shards.get_mut(&m.shard))
                .expect("shard");
            let r = s
                .replicas
                .iter_mut()
                .find(|r| r.node == m.from)
                .expect("from");
            r.node = m.to;
            let mut seen = BTreeSet::new();
            assert!(
                s.replicas.iter().all(|r| seen.insert(r.node)),
                "two replicas of shard {} on one node: {:?}",
                s.id,
                s.replicas
            );
        }
        let mut load = BTreeMap::new();
        for s in st.collections["c"].shards.values() {
            for r in &s.replicas {
                *load.entry(r.node).or_insert(0) += 1;
            }
        }
        load
    }

    #[test]
    fn an_empty_node_takes_replicas_until_the_spread_is_one() {
        let st = state(&[&[1], &[1], &[1], &[2], &[2], &[2], &[3], &[3], &[3]]);
        let plan = plan_rebalance(&st, &nodes(&[1, 2, 3, 4]), 10);
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert!(plan.iter().all(|m| m.to == 4));
        let load = after(&st, &plan);
        assert_eq!(load.get(&4), Some(&2));
        let (max, min) = (load.values().max(), load.values().min());
        assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{load:?}");
        // at most max_moves at a time
        assert_eq!(plan_rebalance(&st, &nodes(&[1, 2, 3, 4]), 1).len(), 1);
        assert!(plan_rebalance(&st, &nodes(&[1, 2, 3, 4]), 0).is_empty());
        // balanced already: nothing to do
        assert!(plan_rebalance(&st, &nodes(&[1, 2, 3]), 10).is_empty());
    }

    #[test]
    fn replicated_shards_never_get_two_replicas_on_one_node_and_backups_go_first() {
        let st = state(&[&[1, 2], &[2, 3], &[3, 1], &[1, 2], &[2, 3], &[3, 1]]);
        let plan = plan_rebalance(&st, &nodes(&[1, 2, 3, 4]), 10);
        assert_eq!(plan.len(), 3, "12 replicas over 4 nodes: 3 each: {plan:?}");
        let load = after(&st, &plan);
        assert!(load.values().all(|l| *l == 3), "{load:?}");
        let shards: BTreeSet<ShardId> = plan.iter().map(|m| m.shard).collect();
        assert_eq!(shards.len(), plan.len(), "a shard moved twice");
        let primaries_moved = plan
            .iter()
            .filter(|m| st.collections["c"].shards[&m.shard].primary() == Some(m.from))
            .count();
        assert_eq!(primaries_moved, 0, "backups were there to move: {plan:?}");
    }

    #[test]
    fn shards_in_transfer_and_nodes_outside_the_set_are_left_alone() {
        let mut st = state(&[&[1], &[1], &[1], &[1]]);
        // shard 0 is moving, shard 1 has a replica catching up
        st.apply(
            10,
            &Command::MoveReplica {
                collection: "c".into(),
                uid: 9,
                shard: 0,
                from: 1,
                to: 2,
                epoch: 1,
            },
        )
        .expect("move");
        st.apply(
            11,
            &Command::AddReplica {
                collection: "c".into(),
                uid: 9,
                shard: 1,
                node: 3,
                epoch: 1,
            },
        )
        .expect("add");
        let plan = plan_rebalance(&st, &nodes(&[1, 2, 3, 4]), 10);
        // loads 3 (shard 0 counted on node 2, where it moves), 1, 1, 0
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(plan.iter().all(|m| m.shard >= 2), "{plan:?}");
        // once that move is under way too, nothing more is planned
        let mut st2 = st.clone();
        let m = &plan[0];
        st2.apply(
            12,
            &Command::MoveReplica {
                collection: "c".into(),
                uid: 9,
                shard: m.shard,
                from: m.from,
                to: m.to,
                epoch: m.epoch,
            },
        )
        .expect("second move");
        assert!(plan_rebalance(&st2, &nodes(&[1, 2, 3, 4]), 10).is_empty());
        // node 4 unreachable (not in the set): it takes nothing; node 1 gone: nothing moves off it
        assert!(
            plan_rebalance(&st, &nodes(&[1, 2, 3]), 10)
                .iter()
                .all(|m| m.to != 4)
        );
        assert!(plan_rebalance(&st, &nodes(&[2, 3, 4]), 10).is_empty());
    }
}
