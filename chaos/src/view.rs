//! What one node says about the cluster (`GET /cluster`, Qdrant's shape), and who leads.
//!
//! Pure: parsing and the choice of a leader from several nodes' views are plain functions over
//! JSON, tested without processes.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

/// `result` of `GET /cluster` on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The answering node's id.
    pub peer_id: u64,
    /// Members it knows, by id, with their `uri` (empty when the node gave none).
    pub peers: BTreeMap<u64, String>,
    pub term: u64,
    pub commit: u64,
    /// The leader it knows of, if any.
    pub leader: Option<u64>,
    /// Its own Raft role as it names it (`Leader`, `Follower`, `Candidate`, ...).
    pub role: String,
}

impl ClusterView {
    /// Reads the `result` object of `GET /cluster`.
    pub fn parse(result: &Value) -> Result<ClusterView> {
        let peer_id = id_of(&result["peer_id"])
            .ok_or_else(|| anyhow!("/cluster: peer_id is not a node id: {}", result["peer_id"]))?;
        let Some(peers_obj) = result["peers"].as_object() else {
            bail!("/cluster: peers is not an object: {}", result["peers"]);
        };
        let mut peers = BTreeMap::new();
        for (k, v) in peers_obj {
            let id = k
                .parse::<u64>()
                .map_err(|_| anyhow!("/cluster: peer key {k:?} is not a node id"))?;
            let uri = v["uri"].as_str().unwrap_or_default().to_owned();
            peers.insert(id, uri);
        }
        let raft = &result["raft_info"];
        if !raft.is_object() {
            bail!("/cluster: raft_info is not an object: {raft}");
        }
        let leader = match &raft["leader"] {
            Value::Null => None,
            v => Some(id_of(v).ok_or_else(|| anyhow!("/cluster: raft_info.leader is {v}"))?),
        };
        Ok(ClusterView {
            peer_id,
            peers,
            term: raft["term"].as_u64().unwrap_or(0),
            commit: raft["commit"].as_u64().unwrap_or(0),
            leader,
            role: raft["role"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Whether this node says it is the leader (its role, not only the `leader` field).
    pub fn claims_leadership(&self) -> bool {
        self.role.eq_ignore_ascii_case("leader") && self.leader.is_none_or(|l| l == self.peer_id)
    }
}

/// A node id as JSON: a number, or a string of digits (JSON object keys are strings).
fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The leader among the views of live nodes: the node that claims leadership in the highest
/// term. A node that only names a leader (a follower) is not enough: after the leader dies its
/// followers keep naming it until an election, and a node that is paused or killed cannot
/// answer, so it cannot claim anything.
pub fn pick_leader(views: &[ClusterView]) -> Option<u64> {
    views
        .iter()
        .filter(|v| v.claims_leadership())
        .max_by_key(|v| v.term)
        .map(|v| v.peer_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(peer: u64, term: u64, leader: Value, role: &str) -> Value {
        json!({
            "status": "enabled",
            "peer_id": peer,
            "peers": {"1": {"uri": "http://127.0.0.1:1/"}, "2": {"uri": "x"}, "3": {}},
            "raft_info": {"term": term, "commit": 7, "leader": leader, "role": role},
        })
    }

    #[test]
    fn parses_qdrant_shape_with_and_without_a_leader() {
        let v = ClusterView::parse(&view(2, 3, json!(1), "Follower")).expect("parses");
        assert_eq!(v.peer_id, 2);
        assert_eq!(v.peers.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(v.peers[&1], "http://127.0.0.1:1/");
        assert_eq!(v.peers[&3], "");
        assert_eq!((v.term, v.commit, v.leader), (3, 7, Some(1)));
        assert!(!v.claims_leadership());

        let v = ClusterView::parse(&view(2, 4, Value::Null, "Candidate")).expect("parses");
        assert_eq!(v.leader, None);
    }

    #[test]
    fn malformed_views_are_errors_not_panics() {
        for bad in [
            json!({}),
            json!({"peer_id": "one", "peers": {}, "raft_info": {}}),
            json!({"peer_id": 1, "peers": [], "raft_info": {}}),
            json!({"peer_id": 1, "peers": {"x": {}}, "raft_info": {}}),
            json!({"peer_id": 1, "peers": {}, "raft_info": 5}),
            json!({"peer_id": 1, "peers": {}, "raft_info": {"leader": true}}),
        ] {
            assert!(ClusterView::parse(&bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_leader_is_who_claims_it_in_the_highest_term() {
        let parse = |v| ClusterView::parse(&v).expect("parses");
        // an old leader that has not yet heard of the new term, and the new one
        let views = [
            parse(view(1, 2, json!(1), "Leader")),
            parse(view(2, 3, json!(3), "Follower")),
            parse(view(3, 3, json!(3), "Leader")),
        ];
        assert_eq!(pick_leader(&views), Some(3));
        // followers naming a leader that cannot answer (killed, paused): no leader yet
        let views = [
            parse(view(2, 3, json!(1), "Follower")),
            parse(view(3, 3, json!(1), "Follower")),
        ];
        assert_eq!(pick_leader(&views), None);
        assert_eq!(pick_leader(&[]), None);
        // a node whose role says leader but names another node is not believed
        assert_eq!(pick_leader(&[parse(view(2, 3, json!(1), "Leader"))]), None);
    }
}
