//! Tests of the metadata Raft group: the storage against openraft's conformance suite, the log
//! journal on its own, and in-process clusters of three nodes over the in-memory transport
//! ([`MemoryHub`]) with faults ([`FaultyTransport`]), the same `Service::Raft` path as over QUIC.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, StorageIOError, Vote};

use super::*;
use crate::ErrorKind;
use crate::meta::{
    Applied, CollectionParams, Command, Distance, HnswParams, MetadataState, ShardKey,
    ShardingMethod, place,
};
use crate::transport::faults::{Faults, FaultyTransport};
use crate::transport::memory::MemoryHub;
use crate::transport::{PeerInfo, Service, Transport, handler_fn};

/// Runs a test body under a deadline, so a hung election fails the test instead of the CI job.
async fn bounded<F: Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .expect("test exceeded its time bound");
}

// ---------------------------------------------------------------- storage

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> std::result::Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::IO {
            source: StorageIOError::write_logs(&e),
        })?;
        let raft_dir = dir.path().join("raft");
        let log = LogStore::open(&raft_dir).map_err(|e| StorageError::IO {
            source: StorageIOError::read_logs(&e),
        })?;
        let sm = StateMachine::open(&raft_dir, 1, 16).map_err(|e| StorageError::IO {
            source: StorageIOError::read_state_machine(&e),
        })?;
        Ok((dir, log, sm))
    }
}

#[test]
fn storage_passes_openraft_conformance_suite() {
    // the suite makes its own runtimes, so it runs on a plain thread under a deadline
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Suite::test_all(Builder).map_err(|e| e.to_string()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(240))
        .expect("conformance suite exceeded its time bound");
    result.expect("conformance suite");
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

fn command_entry(term: u64, index: u64, name: &str) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(LogCommand(create_collection(name, index))),
    }
}

async fn indexes(log: &mut LogStore) -> Vec<(u64, u64)> {
    log.try_get_log_entries(0..)
        .await
        .expect("read log")
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_journal_survives_reopen_truncate_purge_and_torn_tail() {
    bounded(30, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_dir = dir.path().join("raft");
        tracing::info!("append, truncate a conflicting suffix, vote, commit");
        {
            let mut log = LogStore::open(&raft_dir).expect("open");
            log.blocking_append((1..=5).map(|i| command_entry(1, i, &format!("c{i}"))))
                .await
                .expect("append");
            log.truncate(log_id(1, 4)).await.expect("truncate");
            log.blocking_append([blank(2, 4)]).await.expect("append");
            log.save_vote(&Vote::new(2, 1)).await.expect("vote");
            log.save_committed(Some(log_id(2, 4)))
                .await
                .expect("commit");
        }
        let mut log = LogStore::open(&raft_dir).expect("reopen");
        assert_eq!(
            indexes(&mut log).await,
            vec![(1, 1), (1, 2), (1, 3), (2, 4)]
        );
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(2, 1)));
        assert_eq!(
            log.read_committed().await.expect("committed"),
            Some(log_id(2, 4))
        );
        let entries = log.try_get_log_entries(2..3).await.expect("read");
        assert_eq!(
            entries[0].payload,
            EntryPayload::Normal(LogCommand(create_collection("c2", 2)))
        );

        tracing::info!("purge rewrites the journal with what is live");
        log.purge(log_id(1, 2)).await.expect("purge");
        drop(log);
        let mut log = LogStore::open(&raft_dir).expect("reopen after purge");
        assert_eq!(indexes(&mut log).await, vec![(1, 3), (2, 4)]);
        let st = log.get_log_state().await.expect("state");
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(st.last_log_id, Some(log_id(2, 4)));
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(2, 1)));

        tracing::info!("a torn tail is cut on open, the whole records before it stay");
        log.blocking_append([blank(2, 5)]).await.expect("append");
        drop(log);
        let path = raft_dir.join("log");
        let bytes = std::fs::read(&path).expect("read journal");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("tear the tail");
        let mut log = LogStore::open(&raft_dir).expect("reopen torn");
        assert_eq!(indexes(&mut log).await, vec![(1, 3), (2, 4)]);

        tracing::info!("purging everything leaves the purge point as the last log id");
        log.purge(log_id(2, 4)).await.expect("purge all");
        drop(log);
        let mut log = LogStore::open(&raft_dir).expect("reopen empty");
        assert!(indexes(&mut log).await.is_empty());
        let st = log.get_log_state().await.expect("state");
        assert_eq!(st.last_log_id, Some(log_id(2, 4)));
    })
    .await;
}

// ---------------------------------------------------------------- cluster helpers

fn params() -> CollectionParams {
    CollectionParams {
        dim: 4,
        distance: Distance::Cosine,
        sharding_method: ShardingMethod::Custom,
        shard_number: 2,
        replication_factor: 2,
        write_consistency_factor: 1,
        hnsw: HnswParams::default(),
        on_disk_payload: false,
    }
}

fn create_collection(name: &str, uid: u64) -> Command {
    Command::CreateCollection {
        name: name.to_string(),
        uid,
        params: params(),
        shards: vec![],
    }
}

/// A shard key for `collection`, placed on the least loaded of `nodes` (the leader's job).
fn create_shard_key(state: &MetadataState, collection: &str, key: &str, nodes: &[u64]) -> Command {
    let first_id = state
        .collections
        .get(collection)
        .map(|c| c.next_shard_id)
        .unwrap_or(0);
    let load: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    Command::CreateShardKey {
        collection: collection.to_string(),
        key: ShardKey::Str(key.to_string()),
        shards: place(&load, first_id, 2, 2).expect("place"),
    }
}

fn addr(id: u64) -> MetaNode {
    MetaNode::new(
        MemoryHub::addr_of(id).to_string(),
        format!("node-{id}:6333"),
    )
}

fn fast_settings() -> RaftSettings {
    RaftSettings {
        propose_timeout_ms: 3000,
        membership_timeout_ms: 10_000,
        ..RaftSettings::default()
    }
}

struct TestCluster {
    hub: Arc<MemoryHub>,
    faults: Arc<Faults>,
    base: tempfile::TempDir,
    settings: RaftSettings,
    running: BTreeMap<u64, MetaRaft>,
}

impl TestCluster {
    fn new(settings: RaftSettings) -> TestCluster {
        TestCluster {
            hub: MemoryHub::new(),
            faults: Faults::new(7),
            base: tempfile::tempdir().expect("tempdir"),
            settings,
            running: BTreeMap::new(),
        }
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.base.path().join(format!("node-{id}"))
    }

    /// Starts node `id` as a node does: bind the transport, start Raft on it, then serve Raft
    /// RPCs with it.
    async fn start(&mut self, id: u64) -> MetaRaft {
        let memory = Arc::new(self.hub.attach(id, MemoryHub::addr_of(id)));
        let transport: Arc<dyn Transport> =
            Arc::new(FaultyTransport::new(memory, id, self.faults.clone()));
        let raft = MetaRaft::start(
            id,
            addr(id),
            &self.dir(id),
            transport.clone(),
            self.settings.clone(),
        )
        .await
        .expect("start node");
        let served = raft.clone();
        transport
            .serve(handler_fn(
                move |_from: PeerInfo, service: Service, body: Vec<u8>| {
                    let raft = served.clone();
                    async move {
                        match service {
                            Service::Raft => raft.handle_rpc_bytes(&body).await,
                            Service::Shard
                            | Service::Replication
                            | Service::Transfer
                            | Service::Admin => Err(crate::Error::bad_request(format!(
                                "service {service:?} is not served"
                            ))),
                        }
                    }
                },
            ))
            .expect("serve raft");
        self.running.insert(id, raft.clone());
        raft
    }

    /// Cuts node `id` off: calls to and from it fail as unreachable.
    fn isolate(&self, id: u64) {
        self.faults.isolate(id);
    }

    /// Reconnects an isolated node.
    fn heal(&self, id: u64) {
        self.faults.heal_node(id);
    }

    async fn stop(&mut self, id: u64) {
        self.hub.unregister(MemoryHub::addr_of(id));
        if let Some(r) = self.running.remove(&id) {
            r.shutdown().await.expect("shutdown");
        }
    }

    fn node(&self, id: u64) -> &MetaRaft {
        self.running.get(&id).expect("node is running")
    }

    /// Bootstraps node 1, adds 2 and 3 as learners, promotes all three to voters.
    async fn form_three(&mut self) {
        for id in 1..=3 {
            self.start(id).await;
        }
        let n1 = self.node(1).clone();
        assert!(n1.initialize_single().await.expect("bootstrap"));
        assert!(
            !n1.initialize_single().await.expect("bootstrap again"),
            "a second bootstrap is a no-op"
        );
        n1.wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        for id in 2..=3 {
            n1.add_learner(id, addr(id)).await.expect("add learner");
        }
        let m = n1.metrics();
        assert_eq!(m.learners, BTreeSet::from([2, 3]));
        n1.change_membership(BTreeSet::from([1, 2, 3]), false)
            .await
            .expect("promote");
        let m = n1.metrics();
        assert_eq!(m.voters, BTreeSet::from([1, 2, 3]));
        assert!(m.learners.is_empty());
    }

    /// The running node that says it is the leader (and is agreed on by itself).
    async fn leader(&self) -> MetaRaft {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for r in self.running.values() {
                if r.metrics().role == Role::Leader {
                    return r.clone();
                }
            }
            assert!(Instant::now() < deadline, "no leader within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes through any running node, forwarding on NotLeader and retrying while there is
    /// no leader, as the node's HTTP layer will.
    async fn propose(&self, command: Command) -> std::result::Result<Applied, MetaRaftError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut target = *self.running.keys().next().expect("a running node");
        loop {
            let r = match self.running.get(&target) {
                Some(r) => r.propose(command.clone()).await,
                None => Err(MetaRaftError::NotLeader {
                    leader_id: None,
                    leader: None,
                }),
            };
            match r {
                Err(MetaRaftError::NotLeader {
                    leader_id: Some(l), ..
                }) if self.running.contains_key(&l) && l != target => target = l,
                Err(MetaRaftError::Other(e)) if e.kind == ErrorKind::Unavailable => {
                    assert!(Instant::now() < deadline, "metadata unavailable: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(MetaRaftError::NotLeader { .. }) => {
                    assert!(Instant::now() < deadline, "no leader to take a write");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // ask whoever is running who leads now
                    let known = self
                        .running
                        .values()
                        .filter_map(|r| r.metrics().leader)
                        .find(|l| self.running.contains_key(l));
                    if let Some(l) = known {
                        target = l;
                    }
                }
                other => return other,
            }
        }
    }

    /// Waits until every running node has applied what `leader` has applied, and checks they hold
    /// the same collections.
    async fn converge(&self, leader: &MetaRaft) {
        // the state is applied before openraft's metrics report it: take the later of the two
        let index = leader
            .metrics()
            .applied_index
            .unwrap_or(0)
            .max(leader.state().read().applied);
        for r in self.running.values() {
            r.wait_applied(index, Duration::from_secs(15))
                .await
                .expect("follower catches up");
            assert_eq!(
                r.state().read().collections,
                leader.state().read().collections,
                "node {} diverged",
                r.id()
            );
        }
    }
}

// ---------------------------------------------------------------- cluster tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_refuse_and_fail_over() {
    bounded(90, async {
        let mut c = TestCluster::new(fast_settings());
        tracing::info!("bootstrap one node, join two learners, promote them");
        c.form_three().await;
        let mut events = c.node(3).subscribe();

        tracing::info!("a collection and a shard key are applied on all three");
        let leader = c.leader().await;
        let applied = c
            .propose(create_collection("docs", 100))
            .await
            .expect("create collection");
        assert_eq!(applied, Applied::CollectionCreated { uid: 100 });
        let key = create_shard_key(&leader.state().snapshot(), "docs", "acme", &[1, 2, 3]);
        let applied = c.propose(key).await.expect("create shard key");
        assert_eq!(
            applied,
            Applied::ShardsCreated {
                uid: 100,
                shards: vec![0, 1]
            }
        );
        c.converge(&leader).await;
        for r in c.running.values() {
            let st = r.state().snapshot();
            let docs = st.collection("docs").expect("collection everywhere");
            assert_eq!(
                docs.shards_of_key(&ShardKey::Str("acme".into())),
                Some(&[0, 1][..])
            );
        }

        tracing::info!("a follower names the leader instead of writing");
        let follower = c
            .running
            .values()
            .find(|r| r.id() != leader.id())
            .expect("a follower")
            .clone();
        match follower.propose(create_collection("nope", 1)).await {
            Err(MetaRaftError::NotLeader {
                leader_id,
                leader: Some(node),
            }) => {
                assert_eq!(leader_id, Some(leader.id()));
                assert_eq!(node, addr(leader.id()));
            }
            other => panic!("expected NotLeader, got {other:?}"),
        }
        let err: crate::Error = MetaRaftError::NotLeader {
            leader_id: None,
            leader: None,
        }
        .into();
        assert_eq!(err.kind, ErrorKind::Unavailable);

        tracing::info!("a command apply refuses is answered with its error and changes nothing");
        let before = leader.state().snapshot().collections;
        let err = c
            .propose(create_collection("docs", 101))
            .await
            .expect_err("duplicate collection");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        let err = c
            .propose(Command::DeleteCollection {
                name: "missing".into(),
            })
            .await
            .expect_err("missing collection");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        c.converge(&leader).await;
        for r in c.running.values() {
            assert_eq!(r.state().read().collections, before);
        }

        tracing::info!("node 3 saw every command, refused ones with their error, in log order");
        let mut seen = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if let MetaEvent::Applied { index, result, .. } = ev {
                seen.push((index, result.is_ok()));
            }
        }
        assert_eq!(
            seen.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![true, true, false, false]
        );
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));

        tracing::info!("a linearizable read on the leader; a follower is told to forward");
        leader.ensure_linearizable().await.expect("leader read");
        assert!(matches!(
            follower.ensure_linearizable().await,
            Err(MetaRaftError::NotLeader { .. })
        ));

        tracing::info!("lose the leader: a new one is elected and takes writes again");
        let old = leader.id();
        let lost_at = Instant::now();
        c.stop(old).await;
        let applied = c
            .propose(create_collection("after-failover", 200))
            .await
            .expect("write after failover");
        let took = lost_at.elapsed();
        assert_eq!(applied, Applied::CollectionCreated { uid: 200 });
        let new_leader = c.leader().await;
        assert_ne!(new_leader.id(), old);
        tracing::info!(
            ms = took.as_millis() as u64,
            "leader loss to next committed write"
        );
        eprintln!(
            "leader loss to next committed write: {} ms (new leader: node {})",
            took.as_millis(),
            new_leader.id()
        );
        // measured about 1.2 s (openraft 0.9: leader lease of election_timeout_max, then a
        // random election timeout, then one vote round); the bound leaves room for a busy CI box
        assert!(
            took < Duration::from_secs(5),
            "failover took {took:?}, expected about 1.2 s"
        );
        c.converge(&new_leader).await;
        for r in c.running.values() {
            r.shutdown().await.expect("shutdown");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_nodes_recover_from_disk_and_catch_up() {
    bounded(90, async {
        let mut c = TestCluster::new(fast_settings());
        c.form_three().await;
        for i in 0..5 {
            c.propose(create_collection(&format!("c{i}"), i))
                .await
                .expect("write");
        }
        let leader = c.leader().await;
        c.converge(&leader).await;

        tracing::info!("stop a follower; the other two keep taking writes");
        let down = c
            .running
            .keys()
            .copied()
            .find(|id| *id != leader.id())
            .expect("a follower");
        let before = c.node(down).state().snapshot();
        let applied_before = c.node(down).metrics().applied_index.expect("applied");
        c.stop(down).await;
        for i in 5..10 {
            c.propose(create_collection(&format!("c{i}"), i))
                .await
                .expect("write with one node down");
        }

        tracing::info!("restart it cut off: it rebuilds its state from its own log");
        c.isolate(down);
        let restarted = c.start(down).await;
        restarted
            .wait_applied(applied_before, Duration::from_secs(10))
            .await
            .expect("local replay");
        assert_eq!(restarted.state().read().collections, before.collections);

        tracing::info!("reconnect it: it catches up with what it missed");
        c.heal(down);
        let leader = c.leader().await;
        c.converge(&leader).await;
        assert_eq!(restarted.state().read().collections.len(), 10);

        tracing::info!("restart the whole cluster; --bootstrap again is a no-op and writes work");
        for id in [1, 2, 3] {
            c.stop(id).await;
        }
        for id in [1, 2, 3] {
            c.start(id).await;
        }
        assert!(
            !c.node(1)
                .initialize_single()
                .await
                .expect("bootstrap after restart"),
            "bootstrap after a restart changes nothing"
        );
        c.propose(create_collection("after-restart", 99))
            .await
            .expect("write after full restart");
        let leader = c.leader().await;
        c.converge(&leader).await;
        assert_eq!(leader.state().read().collections.len(), 11);
        assert_eq!(leader.metrics().voters, BTreeSet::from([1, 2, 3]));
        for r in c.running.values() {
            r.shutdown().await.expect("shutdown");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot_after_compaction() {
    bounded(90, async {
        let mut c = TestCluster::new(RaftSettings {
            snapshot_every_logs: 10,
            logs_kept_after_snapshot: 0,
            // a few kilobytes of state travel in many chunks
            snapshot_chunk_bytes: 512,
            ..fast_settings()
        });
        c.form_three().await;
        let leader = c.leader().await;

        tracing::info!("cut a follower off and write past two snapshots");
        let lagging = c
            .running
            .keys()
            .copied()
            .find(|id| *id != leader.id())
            .expect("a follower");
        c.isolate(lagging);
        for i in 0..25 {
            c.propose(create_collection(&format!("c{i}"), i))
                .await
                .expect("write with a follower cut off");
        }
        let leader = c.leader().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while leader.metrics().purged_index.unwrap_or(0) < 20 {
            assert!(Instant::now() < deadline, "leader never compacted its log");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let m = leader.metrics();
        assert!(m.snapshot_index.unwrap_or(0) >= 20, "{m:?}");

        tracing::info!("reconnect it: the entries it needs are gone, so it gets the snapshot");
        let mut events = c.node(lagging).subscribe();
        c.heal(lagging);
        let leader = c.leader().await;
        c.converge(&leader).await;
        let lm = c.node(lagging).metrics();
        assert!(
            lm.snapshot_index.is_some(),
            "lagging node installed no snapshot: {lm:?}"
        );
        assert_eq!(c.node(lagging).state().read().collections.len(), 25);
        let mut installed = false;
        while let Ok(ev) = events.try_recv() {
            installed |= matches!(ev, MetaEvent::SnapshotInstalled { .. });
        }
        assert!(installed, "no SnapshotInstalled event");

        tracing::info!("a node restarted from a compacted log starts from its snapshot");
        c.stop(lagging).await;
        let restarted = c.start(lagging).await;
        let leader = c.leader().await;
        c.propose(create_collection("after", 1000))
            .await
            .expect("write");
        c.converge(&leader).await;
        assert_eq!(restarted.state().read().collections.len(), 26);
        for r in c.running.values() {
            r.shutdown().await.expect("shutdown");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_without_quorum_answers_unavailable_quickly() {
    bounded(60, async {
        let mut c = TestCluster::new(fast_settings());
        c.form_three().await;
        c.propose(create_collection("before", 1))
            .await
            .expect("write");
        let leader = c.leader().await;

        tracing::info!("cut both followers off: the leader keeps its role but loses its quorum");
        let followers: Vec<u64> = c
            .running
            .keys()
            .copied()
            .filter(|id| *id != leader.id())
            .collect();
        for f in &followers {
            c.isolate(*f);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let asked = Instant::now();
        let err = leader
            .propose(create_collection("no-quorum", 2))
            .await
            .expect_err("no quorum");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(asked.elapsed() < Duration::from_millis(500));
        let err = leader.ensure_linearizable().await.expect_err("no quorum");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

        tracing::info!("heal: a leader is found again and writes resume");
        for f in &followers {
            c.heal(*f);
        }
        c.propose(create_collection("after", 3))
            .await
            .expect("write after heal");
        let leader = c.leader().await;
        c.converge(&leader).await;
        assert!(!leader.state().read().collections.contains_key("no-quorum"));
        for r in c.running.values() {
            r.shutdown().await.expect("shutdown");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_bytes_round_trip_and_garbage_is_refused() {
    bounded(30, async {
        let mut c = TestCluster::new(fast_settings());
        let n1 = c.start(1).await;
        n1.initialize_single().await.expect("bootstrap");
        n1.wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        let err = n1
            .handle_rpc_bytes(&[1, 0xff, 0xff, 0xff])
            .await
            .expect_err("garbage");
        assert_eq!(err.kind, ErrorKind::BadRequest);
        let err = n1.handle_rpc_bytes(&[]).await.expect_err("empty");
        assert_eq!(err.kind, ErrorKind::BadRequest);
        // a stale vote request is answered, not refused
        let rpc = RaftRpc::Vote(openraft::raft::VoteRequest::new(Vote::new(0, 9), None));
        let reply = n1
            .handle_rpc_bytes(&encode_rpc(&rpc).expect("encode"))
            .await
            .expect("served");
        match decode_reply(&reply).expect("decode") {
            RaftReply::Vote(Ok(v)) => assert!(!v.vote_granted),
            other => panic!("unexpected reply {other:?}"),
        }
        n1.shutdown().await.expect("shutdown");
    })
    .await;
}
