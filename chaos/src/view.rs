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
    /// Members it knows, by id.
    pub peers: BTreeMap<u64, PeerView>,
    pub term: u64,
    /// Index of its last committed log entry.
    pub commit: u64,
    /// Index of its last applied entry (tessera's addition; Qdrant's shape has none).
    pub applied: Option<u64>,
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
            peers.insert(
                id,
                PeerView {
                    uri: v["uri"].as_str().unwrap_or_default().to_owned(),
                    p2p: v["p2p"].as_str().map(str::to_owned),
                    voter: v["voter"].as_bool(),
                    reachable: v["reachable"].as_bool(),
                },
            );
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
            applied: raft["applied"].as_u64(),
            leader,
            role: raft["role"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Whether this node says it is the leader (its role, not only the `leader` field).
    pub fn claims_leadership(&self) -> bool {
        self.role.eq_ignore_ascii_case("leader") && self.leader.is_none_or(|l| l == self.peer_id)
    }
}

/// One member as another node sees it. Qdrant's shape has only `uri`; tessera adds the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerView {
    /// Its HTTP URI (empty when the node gave none).
    pub uri: String,
    /// Its p2p (QUIC) address.
    pub p2p: Option<String>,
    /// Whether it votes in the metadata group (false: a learner).
    pub voter: Option<bool>,
    /// Whether the answering node reaches it (answers pings).
    pub reachable: Option<bool>,
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

/// Whether the answering nodes agree on a settled cluster: each lists every node of `members`
/// (and all list the same set), one of them claims leadership and every one names it, and each
/// has applied everything the leader has committed. `Ok(leader)`, or why not.
///
/// Views are a snapshot: a membership change whose next step the leader has not yet appended
/// looks settled too, so callers ask again after a quiet period ([`crate::Swarm::wait_settled`]).
pub fn settled(
    views: &[ClusterView],
    members: &std::collections::BTreeSet<u64>,
) -> std::result::Result<u64, String> {
    let Some(leader_view) = views
        .iter()
        .filter(|v| v.claims_leadership())
        .max_by_key(|v| v.term)
    else {
        return Err("no node claims leadership".into());
    };
    let leader = leader_view.peer_id;
    let listed: std::collections::BTreeSet<u64> = leader_view.peers.keys().copied().collect();
    if !members.is_subset(&listed) {
        return Err(format!(
            "leader {leader} lists {listed:?}, not all of {members:?}"
        ));
    }
    for v in views {
        let theirs: std::collections::BTreeSet<u64> = v.peers.keys().copied().collect();
        if theirs != listed {
            return Err(format!(
                "node {} lists {theirs:?}, leader {leader} lists {listed:?}",
                v.peer_id
            ));
        }
        if v.leader != Some(leader) {
            return Err(format!(
                "node {} names leader {:?}, not {leader}",
                v.peer_id, v.leader
            ));
        }
        let applied = v.applied.unwrap_or(v.commit);
        if applied < leader_view.commit {
            return Err(format!(
                "node {} applied {applied} of the leader's {}",
                v.peer_id, leader_view.commit
            ));
        }
    }
    Ok(leader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(peer: u64, term: u64, leader: Value, role: &str) -> Value {
        json!({
            "status": "enabled",
            "peer_id": peer,
            "peers": {
                "1": {"uri": "http://127.0.0.1:1/", "p2p": "127.0.0.1:2", "voter": true, "reachable": false},
                "2": {"uri": "x"},
                "3": {},
            },
            "raft_info": {"term": term, "commit": 7, "leader": leader, "role": role},
        })
    }

    #[test]
    fn parses_qdrant_shape_with_and_without_a_leader() {
        let v = ClusterView::parse(&view(2, 3, json!(1), "Follower")).expect("parses");
        assert_eq!(v.peer_id, 2);
        assert_eq!(v.peers.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            v.peers[&1],
            PeerView {
                uri: "http://127.0.0.1:1/".into(),
                p2p: Some("127.0.0.1:2".into()),
                voter: Some(true),
                reachable: Some(false),
            }
        );
        assert_eq!(v.peers[&3], PeerView::default());
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
    fn settled_needs_one_leader_named_by_all_and_everything_applied() {
        let members = std::collections::BTreeSet::from([1, 2, 3]);
        let at = |peer: u64, leader: u64, role: &str, applied: u64| {
            let mut v = view(peer, 2, json!(leader), role);
            v["raft_info"]["commit"] = json!(7);
            v["raft_info"]["applied"] = json!(applied);
            ClusterView::parse(&v).expect("parses")
        };
        let good = [
            at(1, 1, "Leader", 7),
            at(2, 1, "Follower", 7),
            at(3, 1, "Follower", 7),
        ];
        assert_eq!(settled(&good, &members), Ok(1));
        // a node with a paused peer answers for itself only: still settled
        assert_eq!(settled(&good[..2], &members), Ok(1));

        let lagging = [at(1, 1, "Leader", 7), at(2, 1, "Follower", 6)];
        assert!(settled(&lagging, &members).is_err());
        let split = [at(1, 1, "Leader", 7), at(2, 3, "Follower", 7)];
        assert!(settled(&split, &members).is_err());
        let leaderless = [at(2, 1, "Follower", 7), at(3, 1, "Follower", 7)];
        assert!(settled(&leaderless, &members).is_err());
        let more = std::collections::BTreeSet::from([1, 2, 3, 4]);
        assert!(settled(&good, &more).is_err(), "node 4 is not listed yet");
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
