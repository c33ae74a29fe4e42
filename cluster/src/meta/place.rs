//! Placement of new shards' replicas over the nodes.

use std::collections::BTreeMap;

use super::{NodeId, ShardId, ShardPlacement};
use crate::error::{Error, Result};

/// Picks `replicas` distinct nodes for each of `count` new shards, least loaded first (ties by
/// lower node id), counting the shards placed so far in this call. `load` is the number of
/// replicas each candidate node already holds.
pub fn place(
    load: &BTreeMap<NodeId, usize>,
    first_id: ShardId,
    count: u32,
    replicas: u32,
) -> Result<Vec<ShardPlacement>> {
    if (replicas as usize) > load.len() {
        return Err(Error::bad_request(format!(
            "replication_factor {replicas} is more than the {} nodes of the cluster",
            load.len()
        )));
    }
    let mut load = load.clone();
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let mut nodes: Vec<(usize, NodeId)> = load.iter().map(|(n, l)| (*l, *n)).collect();
        nodes.sort_unstable();
        let mut chosen: Vec<NodeId> = nodes
            .iter()
            .take(replicas as usize)
            .map(|(_, n)| *n)
            .collect();
        for n in &chosen {
            *load.entry(*n).or_default() += 1;
        }
        // the first is the primary: turned by the shard id, so that primaries spread over the
        // nodes even when every shard lands on the same ones (replication_factor = nodes)
        chosen.sort_unstable();
        if !chosen.is_empty() {
            let turn = ((first_id + i) as usize) % chosen.len();
            chosen.rotate_left(turn);
        }
        out.push(ShardPlacement {
            id: first_id + i,
            nodes: chosen,
        });
    }
    Ok(out)
}
