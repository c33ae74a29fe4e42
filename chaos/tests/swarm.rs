//! The swarm harness against the real `tessera` binary: its preparation (certificates, ports,
//! command lines), the faults it injects into one node, a three-node cluster forming, a member
//! that comes back on new addresses, and a newcomer that claims a member's id.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_chaos::{NodeState, Swarm, SwarmOptions};
use tessera_tests::phase;

#[test]
fn prepare_makes_a_ca_a_certificate_per_node_and_distinct_ports() {
    phase!("prepare a swarm of 3 without starting it: certs, dirs, ports, flags");
    let swarm = Swarm::prepare(SwarmOptions::new(3)).expect("prepare a swarm of 3");
    let root = swarm.root().to_path_buf();
    assert!(root.join("ca/ca.pem").is_file() && root.join("ca/ca.key").is_file());
    let ca = std::fs::read(root.join("ca/ca.pem")).expect("read ca.pem");
    assert_eq!(swarm.ids(), vec![1, 2, 3]);

    let mut http = BTreeSet::new();
    let mut p2p = BTreeSet::new();
    for id in swarm.ids() {
        let n = swarm.node(id).expect("node info");
        assert_eq!(n.id, id);
        assert_eq!(n.state, NodeState::Down);
        assert_eq!(n.pid, None);
        for f in ["ca.pem", "node.pem", "node.key"] {
            assert!(n.tls_dir.join(f).is_file(), "node {id} lacks {f}");
        }
        assert_eq!(
            std::fs::read(n.tls_dir.join("ca.pem")).expect("read node ca.pem"),
            ca,
            "node {id} trusts the swarm's CA"
        );
        assert!(n.http_addr.ip().is_loopback() && n.p2p_addr.ip().is_loopback());
        http.insert(n.http_addr.port());
        p2p.insert(n.p2p_addr.port());
    }
    assert_eq!(http.len(), 3, "HTTP ports distinct: {http:?}");
    assert_eq!(p2p.len(), 3, "p2p ports distinct: {p2p:?}");

    phase!("node 1 bootstraps, the others join node 1's p2p address");
    let first_p2p = swarm.node(1).expect("node 1").p2p_addr.to_string();
    let line1 = swarm.command_line(1).expect("node 1 flags");
    assert!(line1.iter().any(|a| a == "--bootstrap"), "{line1:?}");
    assert!(!line1.iter().any(|a| a == "--join"), "{line1:?}");
    for id in [2, 3] {
        let line = swarm.command_line(id).expect("flags");
        let join = line.iter().position(|a| a == "--join").expect("--join");
        assert_eq!(line[join + 1], first_p2p);
        assert!(!line.iter().any(|a| a == "--bootstrap"), "{line:?}");
        let node_id = line
            .iter()
            .position(|a| a == "--node-id")
            .expect("--node-id");
        assert_eq!(line[node_id + 1], id.to_string());
    }
    assert!(swarm.node(0).is_err() && swarm.node(4).is_err());

    phase!("dropping the swarm removes its root");
    drop(swarm);
    assert!(!root.exists());
}

#[test]
fn one_node_is_paused_resumed_killed_restarted_and_stopped() {
    phase!("one node with cluster flags and an API key");
    let mut swarm =
        Swarm::start_with(SwarmOptions::new(1).api_key("chaos-key")).expect("start 1 node");
    let api = swarm.api(1).expect("api");
    api.ok_get("/collections")
        .expect("the swarm's client sends the key");
    let (status, _) = tessera_tests::Api::new(swarm.node(1).expect("node").http_addr)
        .expect("client")
        .get("/collections")
        .expect("GET");
    assert_eq!(status, 401, "without the key the node refuses");
    assert_eq!(
        swarm
            .wait_for_leader(Duration::from_secs(30))
            .expect("leader"),
        1
    );

    phase!("pause: the node holds its port but answers nothing; no leader among running nodes");
    swarm.pause(1).expect("pause");
    assert_eq!(swarm.node(1).expect("node").state, NodeState::Paused);
    assert!(swarm.cluster(1).is_err(), "a paused node does not answer");
    assert_eq!(swarm.leader().expect("leader query"), None);
    assert!(swarm.pause(1).is_err(), "pausing twice is refused");

    phase!("resume: it answers again");
    swarm.resume(1).expect("resume");
    swarm
        .wait_for_leader(Duration::from_secs(30))
        .expect("leader after resume");

    phase!("kill -9 and restart on the same port and data");
    let before = swarm.node(1).expect("node");
    swarm.kill9(1).expect("kill -9");
    assert_eq!(swarm.node(1).expect("node").state, NodeState::Down);
    assert!(swarm.kill9(1).is_err(), "a dead node cannot be killed");
    swarm.restart(1).expect("restart");
    let after = swarm.node(1).expect("node");
    assert_eq!(after.http_addr, before.http_addr);
    assert_eq!(after.p2p_addr, before.p2p_addr);
    assert_eq!(after.starts, 2);
    assert_ne!(after.pid, before.pid);
    swarm.check_alive().expect("nothing crashed");

    phase!("a paused node still stops on SIGTERM (it is resumed to act on it)");
    swarm.pause(1).expect("pause");
    let started = Instant::now();
    let status = swarm.stop(1).expect("stop");
    assert!(status.success(), "graceful exit: {status}");
    assert!(started.elapsed() < tessera_chaos::swarm::STOP_TIMEOUT);
    assert!(swarm.running().is_empty());
    assert!(
        swarm.log_tail(1).contains("swarm: start #2 of node 1"),
        "the log keeps every start"
    );
}

#[test]
fn swarm_of_three_forms_a_cluster() {
    phase!("three nodes: 1 bootstraps, 2 and 3 join it over QUIC");
    let swarm = Swarm::start(3).expect("start a swarm of 3");

    phase!("every node lists all three peers");
    for observer in swarm.ids() {
        for member in swarm.ids() {
            swarm
                .wait_until_listed(observer, member, Duration::from_secs(30))
                .expect("listed");
        }
    }

    phase!("one leader, and every node names it");
    let leader = swarm
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    assert_eq!(
        swarm
            .wait_settled(Duration::from_secs(30))
            .expect("settled"),
        leader
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<_> = swarm
            .ids()
            .into_iter()
            .map(|id| swarm.cluster(id).expect("/cluster"))
            .collect();
        let leaders: Vec<u64> = views
            .iter()
            .filter(|v| v.claims_leadership())
            .map(|v| v.peer_id)
            .collect();
        assert!(
            leaders.len() <= 1 || views.iter().map(|v| v.term).collect::<BTreeSet<_>>().len() > 1,
            "two leaders in one term: {views:?}"
        );
        // with the default max_voters of 3, every member votes
        let agreed = views.iter().all(|v| {
            v.leader == Some(leader)
                && v.peers.len() == 3
                && v.peers.values().all(|p| p.voter != Some(false))
        });
        let ids: BTreeSet<u64> = views.iter().map(|v| v.peer_id).collect();
        assert_eq!(
            ids,
            BTreeSet::from([1, 2, 3]),
            "each node answers as itself"
        );
        if agreed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes do not agree on leader {leader}: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `check` holds, at most `timeout`; panics with `what` and the last state.
fn eventually<T: std::fmt::Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let v = probe();
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {timeout:?}; last: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_leader_is_replaced_and_rejoins_when_restarted() {
    let mut swarm = Swarm::start(3).expect("start a swarm of 3");
    let old = swarm
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");

    phase!("kill -9 the leader {old}: the others elect one of themselves");
    swarm.kill9(old).expect("kill -9");
    let new = swarm
        .wait_for_leader(Duration::from_secs(30))
        .expect("a new leader");
    assert_ne!(new, old);
    eventually(
        Duration::from_secs(10),
        "the new leader sees the old one unreachable",
        || swarm.cluster(new).ok(),
        |v| {
            v.as_ref()
                .and_then(|v| v.peers.get(&old))
                .and_then(|p| p.reachable)
                == Some(false)
        },
    );

    phase!("restart {old} with its original flags: it follows {new} and is reachable again");
    swarm.restart(old).expect("restart");
    eventually(
        Duration::from_secs(30),
        "the restarted node follows the new leader",
        || swarm.cluster(old).ok(),
        |v| {
            v.as_ref()
                .is_some_and(|v| v.leader == Some(new) && !v.claims_leadership())
        },
    );
    eventually(
        Duration::from_secs(30),
        "the new leader reaches the restarted node",
        || swarm.cluster(new).ok(),
        |v| {
            v.as_ref()
                .and_then(|v| v.peers.get(&old))
                .and_then(|p| p.reachable)
                == Some(true)
        },
    );

    phase!("a metadata change made through the restarted node reaches every node");
    swarm
        .api(old)
        .expect("api")
        .ok_put(
            "/collections/after_restart",
            &serde_json::json!({"vectors": {"size": 4, "distance": "Cosine"}}),
        )
        .expect("create a collection through the restarted node");
    for id in swarm.ids() {
        let api = swarm.api(id).expect("api");
        eventually(
            Duration::from_secs(10),
            "the collection is on every node",
            || api.get("/collections/after_restart").map(|r| r.0).ok(),
            |s| *s == Some(200),
        );
    }
    swarm.check_alive().expect("no node crashed");
}

#[test]
fn a_paused_leader_loses_leadership_and_follows_after_resume() {
    let mut swarm = Swarm::start(3).expect("start a swarm of 3");
    let old = swarm
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");

    phase!("SIGSTOP the leader {old}: it holds its sockets, the others elect a new leader");
    swarm.pause(old).expect("pause");
    let new = swarm
        .wait_for_leader(Duration::from_secs(30))
        .expect("a new leader among the running nodes");
    assert_ne!(new, old);

    phase!("SIGCONT: {old} learns the newer term and follows {new}");
    swarm.resume(old).expect("resume");
    let v = eventually(
        Duration::from_secs(30),
        "the resumed node follows the new leader",
        || swarm.cluster(old).ok(),
        |v| {
            v.as_ref()
                .is_some_and(|v| v.leader == Some(new) && !v.claims_leadership())
        },
    );
    let leader_view = swarm.cluster(new).expect("/cluster of the new leader");
    assert!(
        leader_view.term >= v.as_ref().map_or(0, |v| v.term),
        "the leader's term is the newest"
    );
    assert_eq!(swarm.leader().expect("leader"), Some(new));
    swarm.check_alive().expect("no node crashed");
}

#[test]
fn a_member_restarted_on_new_ports_is_reached_there() {
    phase!("three nodes, a custom collection with a shard key on a follower");
    let mut swarm = Swarm::start(3).expect("start a swarm of 3");
    let leader = swarm
        .wait_settled(Duration::from_secs(30))
        .expect("settled");
    let mover = *swarm
        .ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let admin = swarm.api(leader).expect("api");
    admin
        .ok_put(
            "/collections/c",
            &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom"}),
        )
        .expect("collection");
    let mut moved_key = None;
    for i in 0..6 {
        let k = format!("k{i}");
        admin
            .ok_put("/collections/c/shards", &json!({"shard_key": k}))
            .expect("shard key");
        let local = swarm
            .api(mover)
            .expect("api")
            .ok_get("/collections/c/cluster")
            .expect("cluster");
        let here = local["local_shards"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["shard_key"] == json!(k)));
        if here {
            moved_key = Some(k);
            break;
        }
    }
    let key = moved_key.expect("one of 6 keys placed on the follower");
    let points: Vec<_> = (0..5)
        .map(|i| json!({"id": i, "vector": [1.0, i as f32]}))
        .collect();
    admin
        .ok_put(
            "/collections/c/points?wait=true",
            &json!({"points": points, "shard_key": key}),
        )
        .expect("upsert");

    phase!("node {mover} restarts on new HTTP and p2p ports");
    let before = swarm.node(mover).expect("node");
    swarm.restart_moved(mover).expect("restart on new ports");
    let after = swarm.node(mover).expect("node");
    assert_ne!(before.p2p_addr, after.p2p_addr);

    phase!("every other node learns the new addresses and reaches its shard there");
    for other in swarm.ids().into_iter().filter(|id| *id != mover) {
        let _ = eventually(
            Duration::from_secs(15),
            "the new addresses in the membership",
            || swarm.cluster(other).map(|v| v.peers.get(&mover).cloned()),
            |p| {
                p.as_ref().ok().and_then(|p| p.as_ref()).is_some_and(|p| {
                    p.p2p.as_deref() == Some(after.p2p_addr.to_string().as_str())
                        && p.uri.contains(&after.http_addr.to_string())
                })
            },
        );
        let api = swarm.api(other).expect("api");
        let _ = eventually(
            Duration::from_secs(15),
            "the moved node's shard counted through another node",
            || api.post("/collections/c/points/count", &json!({"shard_key": key})),
            |r| {
                r.as_ref()
                    .is_ok_and(|(st, v)| *st == 200 && v["result"]["count"] == json!(5))
            },
        );
    }
}

/// A `tessera serve` child that is killed when dropped (also when the test fails).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process with a fresh certificate of the swarm's CA and a data dir of its own in
/// `dir`, joining through node 1, with `extra` flags; its log is `dir/node.log`.
fn spawn_newcomer(swarm: &Swarm, dir: &std::path::Path, extra: &[&str]) -> Child {
    let made = std::process::Command::new(swarm.bin())
        .args(["cert", "node", "--ca-dir"])
        .arg(swarm.root().join("ca"))
        .arg("--out")
        .arg(dir.join("tls"))
        .args(["--name", "newcomer"])
        .output()
        .expect("tessera cert node");
    assert!(made.status.success(), "{made:?}");
    let ports = tessera_chaos::swarm::free_ports(1).expect("ports");
    let (http, p2p) = ports[0];
    let log = std::fs::File::create(dir.join("node.log")).expect("log");
    Child(
        std::process::Command::new(swarm.bin())
            .arg("serve")
            .args(["--http-addr", &http.to_string()])
            // an ephemeral gRPC port: the derived HTTP + 1 may be a swarm node's port
            .args(["--grpc-addr", "127.0.0.1:0"])
            .args(["--p2p-addr", &p2p.to_string(), "--join"])
            .arg(swarm.node(1).expect("node 1").p2p_addr.to_string())
            .arg("--tls-dir")
            .arg(dir.join("tls"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn the newcomer"),
    )
}

/// Waits (bounded) for `needle` in the newcomer's log; its text.
fn newcomer_log_says(dir: &std::path::Path, needle: &str) -> String {
    eventually(
        Duration::from_secs(30),
        needle,
        || std::fs::read_to_string(dir.join("node.log")).unwrap_or_default(),
        |t| t.contains(needle),
    )
}

#[test]
fn a_join_needs_the_join_token_when_the_cluster_has_one() {
    phase!("two nodes sharing a join token; a newcomer with the CA's certificate but no token");
    let swarm = Swarm::start_with(
        SwarmOptions::new(2)
            .arg("--join-token")
            .arg("t0ken-for-tests"),
    )
    .expect("start a swarm of 2 with a join token");
    swarm
        .wait_settled(Duration::from_secs(30))
        .expect("settled");
    let dir = swarm.root().join("no-token");
    let _newcomer = spawn_newcomer(&swarm, &dir, &["--node-id", "7"]);
    let text = newcomer_log_says(&dir, "join refused");
    assert!(text.contains("join token"), "{text}");
    let view = swarm.cluster(1).expect("cluster view");
    assert!(!view.peers.contains_key(&7), "{view:?}");

    phase!("with the token it joins");
    let dir = swarm.root().join("with-token");
    let _member = spawn_newcomer(
        &swarm,
        &dir,
        &["--node-id", "8", "--join-token", "t0ken-for-tests"],
    );
    let _ = eventually(
        Duration::from_secs(30),
        "node 8 in node 1's membership",
        || swarm.cluster(1).map(|v| v.peers.contains_key(&8)),
        |listed| matches!(listed, Ok(true)),
    );
}

#[test]
fn a_newcomer_claiming_a_members_id_is_refused() {
    phase!("two nodes; a third process with a certificate of the same CA claims node 2's id");
    let swarm = Swarm::start(2).expect("start a swarm of 2");
    swarm
        .wait_settled(Duration::from_secs(30))
        .expect("settled");
    let node2 = swarm.node(2).expect("node 2");
    let dir = swarm.root().join("impostor");
    let _impostor = spawn_newcomer(&swarm, &dir, &["--node-id", "2"]);

    phase!("its join is refused for good, loudly, naming the id");
    let text = newcomer_log_says(&dir, "join refused");
    // refused for its key (the id is bound to node 2's certificate) or, without bindings, for
    // the id
    assert!(
        text.contains("node id 2 is bound to another certificate")
            || text.contains("node id 2 is already held"),
        "{text}"
    );

    phase!("node 2 keeps its place and its addresses on every member");
    for id in [1, 2] {
        let view = swarm.cluster(id).expect("cluster view");
        let peer = view.peers.get(&2).expect("node 2 listed");
        assert_eq!(
            peer.p2p.as_deref(),
            Some(node2.p2p_addr.to_string().as_str()),
            "{view:?}"
        );
    }
}

#[test]
fn a_member_id_is_bound_to_its_certificate_key() {
    let mut swarm = Swarm::start(3).expect("start a 3-node swarm");
    let api1 = swarm.api(1).expect("api");
    phase!("a tenant placed on node 1 only, read through node 3");
    api1.ok_put(
        "/collections/c",
        &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom"}),
    )
    .expect("collection");
    api1.ok_put(
        "/collections/c/shards",
        &json!({"shard_key": "acme", "placement": [1]}),
    )
    .expect("key");
    api1.ok_put(
        "/collections/c/points?wait=true",
        &json!({"points": [{"id": 1, "vector": [1.0, 0.0]}], "shard_key": "acme"}),
    )
    .expect("write");
    let count = |swarm: &Swarm| {
        swarm
            .api(3)
            .expect("api")
            .post("/collections/c/points/count", &json!({"shard_key": "acme"}))
            .expect("count")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&swarm).0 != 200 {
        assert!(Instant::now() < deadline, "node 3 never served the tenant");
        std::thread::sleep(Duration::from_millis(100));
    }
    // node 3's key is bound once it has called a peer (it has: the count above)
    std::thread::sleep(Duration::from_secs(1));

    phase!("node 3 comes back with a new key under a certificate of the same CA");
    swarm.stop(3).expect("stop");
    let n3 = swarm.node(3).expect("node 3");
    std::fs::remove_file(n3.tls_dir.join("node.pem")).expect("remove cert");
    std::fs::remove_file(n3.tls_dir.join("node.key")).expect("remove key");
    let out = std::process::Command::new(swarm.bin())
        .args(["cert", "node", "--ca-dir"])
        .arg(swarm.root().join("ca"))
        .arg("--out")
        .arg(&n3.tls_dir)
        .args(["--name", "node-3"])
        .output()
        .expect("tessera cert node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    swarm.restart(3).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = swarm.log_tail(1) + &swarm.log_tail(2);
        // refused at its join (it rejoins on restart) or at its first call
        if log.contains("not the one this node id is bound to")
            || log.contains("the node id is bound to another certificate")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes 1 and 2 did not refuse node 3's new key:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = count(&swarm);
    assert_ne!(
        status, 200,
        "node 3 read the tenant under another key: {body}"
    );
}

#[test]
fn a_removed_node_id_cannot_join_again() {
    phase!("three nodes; node 3 is removed, then a process joins under id 3");
    let mut swarm = Swarm::start(3).expect("start a swarm of 3");
    swarm
        .wait_settled(Duration::from_secs(30))
        .expect("settled");
    let (status, body) = swarm
        .api(1)
        .expect("api")
        .delete("/cluster/peer/3")
        .expect("remove");
    assert_eq!(status, 200, "{body}");
    swarm.stop(3).expect("stop node 3");
    let dir = swarm.root().join("returning");
    let _back = spawn_newcomer(&swarm, &dir, &["--node-id", "3"]);
    let text = newcomer_log_says(&dir, "join refused");
    assert!(
        text.contains("node id 3 was removed from the cluster"),
        "{text}"
    );
    let view = swarm.cluster(1).expect("cluster view");
    assert!(!view.peers.contains_key(&3), "{view:?}");
}

#[test]
fn a_voter_lost_past_the_replica_timeout_is_replaced_by_a_learner() {
    phase!("four nodes: three voters and a learner, --replica-timeout 3");
    let mut swarm = Swarm::start_with(SwarmOptions::new(4).arg("--replica-timeout").arg("3"))
        .expect("start a swarm of 4");
    let leader = swarm
        .wait_settled(Duration::from_secs(30))
        .expect("settled");
    let view = swarm.cluster(leader).expect("view");
    let learner = *view
        .peers
        .iter()
        .find(|(_, p)| p.voter == Some(false))
        .expect("a learner")
        .0;
    let victim = *view
        .peers
        .iter()
        .find(|(id, p)| **id != leader && p.voter == Some(true))
        .expect("a follower voter")
        .0;
    phase!("kill -9 voter {victim}; learner {learner} takes its vote");
    swarm.kill9(victim).expect("kill");
    // the change goes through a joint configuration (old and new voters together) first: wait
    // for the final one
    let _ = eventually(
        Duration::from_secs(20),
        "the learner a voter and the lost voter a learner",
        || {
            swarm.cluster(leader).map(|v| {
                (
                    v.peers.get(&learner).and_then(|p| p.voter),
                    v.peers.get(&victim).and_then(|p| p.voter),
                )
            })
        },
        |voters| matches!(voters, Ok((Some(true), Some(false)))),
    );
    let view = swarm.cluster(leader).expect("view");
    assert_eq!(
        view.peers.get(&victim).and_then(|p| p.voter),
        Some(false),
        "the lost voter stays a learner: {view:?}"
    );
    phase!("metadata changes still commit");
    swarm
        .api(leader)
        .expect("api")
        .ok_put(
            "/collections/after",
            &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom"}),
        )
        .expect("a collection after the change");
}
