//! Primary–backup replication of shard data (the PacificA model, with Raft-managed replica sets).
//!
//! Each shard's replica set lives in the metadata ([`ShardMeta`]): `replicas[0]` is the primary,
//! `Active` replicas are the in-sync set, and the epoch grows with every change of primary.
//! - **Writes** go to the primary ([`Replication::for_write`]). Its actor logs a record and
//!   sends it to every in-sync backup at once ([`ShardReplicator::send`]); it is acknowledged
//!   when every one has it durable. A backup that does not answer in [`REPLICATION_DEADLINE`] is
//!   dropped from the in-sync set through the metadata leader *before* the write is
//!   acknowledged; if that cannot be committed (the primary is cut off, or deposed), the
//!   primary's replica fails and acknowledges nothing more.
//! - **Failover** ([`failover_loop`]): the metadata leader promotes the in-sync backup with the
//!   highest sequence when a primary's node stops answering pings; a node whose primary replica
//!   failed asks for the same. Records carry their epoch, and every replica refuses epochs older
//!   than the newest it has seen, so a deposed primary's writes never complete.
//! - **Catch-up** ([`keeper_loop`]): a replica out of the in-sync set, on a live node, catches up
//!   from the primary (the records it lacks from the primary's tail, or else a full copy, page
//!   by page), and the primary brings it in between two writes once its digest equals its own.
//!
//! Architecture invariant: in-sync membership changes only through epoch-guarded metadata
//! commands ([`Command::SetReplicaState`], [`Command::PromoteReplica`]); a replica serves reads
//! only while it is `Active`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tessera_cluster::meta::{CollectionMeta, Command, NodeId, ReplicaState, ShardId, ShardMeta};
use tessera_cluster::request::MetaRequest;
use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::replication::{BoxFuture, RejoinError, ReplicaStatus, Replicate, digest_of};
use tessera_shard::store::ShardData;
use tokio::task::JoinSet;

use crate::catalog::Catalog;
use crate::peer::Link;
use crate::shard_rpc::{ReplicaSets, ShardReply, ShardRpc};

mod copy;
mod placement;
pub use placement::ClusterOp;
mod rebalance;
pub use rebalance::{MAX_REBALANCE_MOVES, MoveStatus, RebalanceMove};

/// A backup that has not made a record durable in this long is dropped from the in-sync set.
pub const REPLICATION_DEADLINE: Duration = Duration::from_secs(2);
/// How often the metadata leader looks for primaries on nodes that stopped answering.
const FAILOVER_EVERY: Duration = Duration::from_millis(200);
/// How often a node looks for its replicas that are out of the in-sync set.
const KEEPER_EVERY: Duration = Duration::from_millis(500);
/// Deadline of a replica-set change (the metadata leader commits it).
const CHANGE_DEADLINE: Duration = Duration::from_secs(3);
/// Bytes of records per batch a primary sends a rejoining replica.
const REJOIN_BATCH_BYTES: usize = 4 << 20;
/// Deadline of a rejoin (the primary sends the tail and commits the change).
const REJOIN_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline of a status query during failover.
const STATUS_DEADLINE: Duration = Duration::from_secs(1);

/// The replica sets as this node sees them (its metadata view, its link), and which shards'
/// backups it has checked in their current epoch as the primary.
pub struct Replication {
    catalog: Arc<Catalog>,
    /// Itself, for the replicators it hands to shard actors.
    this: std::sync::Weak<Replication>,
    /// Per shard this node is primary of: the epoch whose backups it has checked.
    synced: DashMap<(u64, ShardId), u64>,
}

/// Where a shard is: its collection's name, the shard's replica set and the collection's write
/// consistency factor.
struct View {
    collection: String,
    uid: u64,
    shard: ShardMeta,
    write_consistency: u32,
}

impl Replication {
    pub fn new(catalog: Arc<Catalog>) -> Arc<Replication> {
        Arc::new_cyclic(|this| Replication {
            catalog,
            this: this.clone(),
            synced: DashMap::new(),
        })
    }

    fn me(&self) -> NodeId {
        self.catalog.node_id
    }

    fn link(&self) -> Result<&Arc<Link>> {
        self.catalog
            .link()
            .ok_or_else(|| Error::internal("a replicated shard on a node without a cluster link"))
    }

    fn view(&self, uid: u64, shard: ShardId) -> Result<View> {
        let st = self.catalog.meta.read();
        let c = st
            .collections
            .values()
            .find(|c| c.uid == uid)
            .ok_or_else(|| Error::unavailable(format!("collection {uid} is not known here")))?;
        let s = c
            .shards
            .get(&shard)
            .ok_or_else(|| Error::unavailable(format!("shard {shard} is not known here")))?;
        Ok(View {
            collection: c.name.clone(),
            uid: c.uid,
            shard: s.clone(),
            write_consistency: c.params.write_consistency_factor,
        })
    }

    /// Whether `node` is this node or a peer that answers its pings.
    /// Whether `node` answers: this node, or a member the link reaches. A node removed from
    /// the membership is never up (it is no longer pinged, and must not keep a primary).
    fn up(&self, node: NodeId) -> bool {
        node == self.me()
            || (self
                .catalog
                .meta
                .raft()
                .is_none_or(|r| r.metrics().nodes.contains_key(&node))
                && self
                    .catalog
                    .link()
                    .is_some_and(|l| l.check_up(node).is_ok()))
    }

    /// A replica-set change, through the metadata leader, bounded in time: a node cut off
    /// from the majority learns so in [`CHANGE_DEADLINE`], not never.
    async fn change(&self, command: Command) -> Result<()> {
        match tokio::time::timeout(
            CHANGE_DEADLINE,
            self.catalog.submit(MetaRequest::Replicas(command)),
        )
        .await
        {
            Ok(done) => done.map(|_| ()),
            Err(_) => Err(Error::unavailable(format!(
                "the metadata leader did not commit a replica-set change within {CHANGE_DEADLINE:?}"
            ))),
        }
    }

    /// Drops `node`'s replica from the in-sync set of `view`'s shard (in its epoch).
    async fn drop_backup(&self, view: &View, node: NodeId, why: &Error) -> Result<()> {
        tracing::warn!(
            collection = %view.collection,
            shard = view.shard.id,
            backup = node,
            epoch = view.shard.epoch,
            error = %why,
            "backup dropped from the in-sync set"
        );
        metrics::counter!("tessera_replicas_dropped_total").increment(1);
        self.change(Command::SetReplicaState {
            collection: view.collection.clone(),
            uid: view.uid,
            shard: view.shard.id,
            node,
            state: ReplicaState::Dead,
            epoch: view.shard.epoch,
        })
        .await
    }

    /// A shard call to `node`'s replica, or to this node's own.
    async fn status_of(
        &self,
        node: NodeId,
        uid: u64,
        shard: &ShardMeta,
        epoch: u64,
    ) -> Result<ReplicaStatus> {
        if node == self.me() {
            return self
                .catalog
                .shards
                .status((uid, shard.id), shard.key.as_ref(), epoch)
                .await;
        }
        let rpc = ShardRpc::Status {
            uid,
            shard: shard.id,
            key: shard.key.clone(),
            epoch,
        };
        match self
            .link()?
            .call_within(node, &rpc, STATUS_DEADLINE)
            .await?
        {
            ShardReply::Status(s) => Ok(s),
            _ => Err(Error::internal("a replica answered a status query wrongly")),
        }
    }

    /// Sends one record to the replica on `node`.
    async fn send_record(
        link: &Link,
        node: NodeId,
        uid: u64,
        shard: &ShardMeta,
        record: &[u8],
    ) -> Result<u64> {
        let rpc = ShardRpc::Replicate {
            uid,
            shard: shard.id,
            key: shard.key.clone(),
            epoch: shard.epoch,
            record: record.to_vec(),
        };
        match link.call_within(node, &rpc, REPLICATION_DEADLINE).await? {
            ShardReply::Seq(s) => Ok(s),
            _ => Err(Error::internal("a backup answered a record wrongly")),
        }
    }
}

impl ReplicaSets for Replication {
    fn for_write(&self, uid: u64, shard: ShardId) -> Result<Option<Arc<dyn Replicate>>> {
        let view = self.view(uid, shard)?;
        if view.shard.replicas.len() <= 1 {
            return Ok(None);
        }
        if view.shard.primary() != Some(self.me()) {
            return Err(not_primary(&view, self.me()));
        }
        self.replicator(uid, shard, view.shard.epoch).map(Some)
    }

    fn confirm_sole_primary(&self, uid: u64, shard: ShardId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Ok(before) = self.view(uid, shard) else {
                return Ok(());
            };
            let me = self.me();
            let alone = before.shard.in_sync().all(|n| n == me);
            if before.shard.replicas.len() <= 1 || !alone {
                return Ok(());
            }
            self.catalog.read_barrier().await?;
            let now = self.view(uid, shard)?;
            if now.shard.epoch != before.shard.epoch || now.shard.primary() != Some(me) {
                return Err(not_primary(&now, me));
            }
            Ok(())
        })
    }

    fn for_rejoin(&self, uid: u64, shard: ShardId) -> Result<Arc<dyn Replicate>> {
        let view = self.view(uid, shard)?;
        if view.shard.primary() != Some(self.me()) {
            return Err(not_primary(&view, self.me()));
        }
        self.replicator(uid, shard, view.shard.epoch)
    }

    fn check_readable(&self, uid: u64, shard: ShardId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // a node cut off, paused or restarted may not know yet that its replica was
            // dropped from the in-sync set: it reads only a current view
            self.catalog.read_barrier().await?;
            let Ok(view) = self.view(uid, shard) else {
                // not in this node's metadata yet (a shard just created): as before replication
                return Ok(());
            };
            match view.shard.state_on(self.me()) {
                Some(ReplicaState::Active) => Ok(()),
                // the replica moved away: what is left here is not kept current
                None if !view.shard.replicas.is_empty() => Err(Error::unavailable(format!(
                    "this node holds no replica of shard {shard} any more; retry"
                ))),
                None => Ok(()),
                Some(state) => Err(Error::unavailable(format!(
                    "the replica of shard {shard} on this node is {state:?}; it serves reads once it has caught up"
                ))),
            }
        })
    }

    fn check_copy(&self, uid: u64, shard: ShardId, node: NodeId) -> Result<()> {
        let view = self.view(uid, shard)?;
        if view.shard.state_on(node) == Some(ReplicaState::Active) {
            return Err(Error::conflict(format!(
                "the replica of shard {shard} on node {node} is in sync; it is not overwritten with a copy"
            )));
        }
        Ok(())
    }

    fn check_epoch(&self, uid: u64, shard: ShardId, epoch: u64) -> Result<()> {
        let view = self.view(uid, shard)?;
        if epoch < view.shard.epoch {
            return Err(Error::conflict(format!(
                "stale epoch {epoch} for shard {shard}: it is at epoch {}",
                view.shard.epoch
            )));
        }
        Ok(())
    }
}

/// The answer of a node that is not (or no longer) a shard's primary: a 503 the router retries.
fn not_primary(view: &View, me: NodeId) -> Error {
    Error::unavailable(format!(
        "node {me} is not the primary of shard {} (epoch {}); retry",
        view.shard.id, view.shard.epoch
    ))
}

impl Replication {
    fn replicator(&self, uid: u64, shard: ShardId, epoch: u64) -> Result<Arc<dyn Replicate>> {
        let repl = self
            .this
            .upgrade()
            .ok_or_else(|| Error::unavailable("the node is stopping"))?;
        Ok(Arc::new(ShardReplicator {
            repl,
            uid,
            shard,
            epoch,
        }))
    }
}

/// One shard's replica set, seen from its primary in one epoch, for the primary actor.
struct ShardReplicator {
    repl: Arc<Replication>,
    uid: u64,
    shard: ShardId,
    epoch: u64,
}

impl ShardReplicator {
    /// The shard's view, if this node is still its primary in this replicator's epoch.
    fn current(&self) -> Result<View> {
        let view = self.repl.view(self.uid, self.shard)?;
        if view.shard.epoch != self.epoch || view.shard.primary() != Some(self.repl.me()) {
            return Err(not_primary(&view, self.repl.me()));
        }
        Ok(view)
    }

    fn backups(&self, view: &View) -> Vec<NodeId> {
        view.shard
            .in_sync()
            .filter(|n| *n != self.repl.me())
            .collect()
    }

    /// The first write of an epoch: every in-sync backup must hold exactly what the primary
    /// holds (same sequence and digest); one that does not, or does not answer, is dropped and
    /// catches up. The status query raises each backup's fence to this epoch, so the deposed
    /// primary's records are refused from here on.
    async fn sync(&self, view: &View, data: &ShardData) -> Result<()> {
        let own = (data.last_seq(), digest_of(data));
        for node in self.backups(view) {
            let theirs = self
                .repl
                .status_of(node, self.uid, &view.shard, self.epoch)
                .await;
            let differs = match &theirs {
                Ok(s) => (s.last_seq, s.digest) != own,
                Err(_) => true,
            };
            if differs {
                let why = match theirs {
                    Ok(s) => Error::conflict(format!(
                        "backup at sequence {} differs from the primary at {}",
                        s.last_seq, own.0
                    )),
                    Err(e) => e,
                };
                self.repl.drop_backup(view, node, &why).await?;
            }
        }
        self.repl.synced.insert((self.uid, self.shard), self.epoch);
        Ok(())
    }
}

impl Replicate for ShardReplicator {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn prepare<'a>(&'a self, data: &'a ShardData) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let view = self.current()?;
            let backups = self.backups(&view);
            let reachable = 1 + backups.iter().filter(|n| self.repl.up(**n)).count();
            if (reachable as u32) < view.write_consistency {
                return Err(Error::unavailable(format!(
                    "only {reachable} in-sync replica(s) of shard {} are reachable; the collection's write_consistency_factor is {}",
                    self.shard, view.write_consistency
                )));
            }
            let synced = self.repl.synced.get(&(self.uid, self.shard)).map(|e| *e);
            if synced != Some(self.epoch) {
                self.sync(&view, data).await?;
            }
            Ok(())
        })
    }

    fn send(&self, seq: u64, record: Arc<Vec<u8>>) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move {
            let view = self.current()?;
            let backups = self.backups(&view);
            if backups.is_empty() {
                return short_of(&view, 1);
            }
            let link = self.repl.link()?.clone();
            if unsafe_ack_before_backup() {
                // the test-only fault: the backups are sent the record, nobody waits
                for node in backups {
                    let (link, record, shard, uid) =
                        (link.clone(), record.clone(), view.shard.clone(), self.uid);
                    tokio::spawn(async move {
                        let _ = Replication::send_record(&link, node, uid, &shard, &record).await;
                    });
                }
                return short_of(&view, view.shard.in_sync().count());
            }
            let mut calls = JoinSet::new();
            for node in backups {
                let (link, record, shard, uid) =
                    (link.clone(), record.clone(), view.shard.clone(), self.uid);
                calls.spawn(async move {
                    let done = Replication::send_record(&link, node, uid, &shard, &record).await;
                    (node, done)
                });
            }
            let mut acked = 1usize;
            let mut failed = Vec::new();
            while let Some(joined) = calls.join_next().await {
                match joined {
                    Ok((_, Ok(s))) if s == seq => acked += 1,
                    Ok((node, Ok(s))) => failed.push((
                        node,
                        Error::internal(format!("backup answered sequence {s} for {seq}")),
                    )),
                    Ok((node, Err(e))) => failed.push((node, e)),
                    Err(e) => return Err(Error::internal(format!("replication task: {e}"))),
                }
            }
            for (node, why) in failed {
                // a stale epoch here means this node was deposed: the drop is refused too
                self.repl.drop_backup(&view, node, &why).await?;
            }
            short_of(&view, acked)
        })
    }

    fn rejoin(
        &self,
        node: NodeId,
        tail: Vec<Arc<Vec<u8>>>,
        digest: u64,
    ) -> BoxFuture<'_, Result<(), RejoinError>> {
        Box::pin(async move {
            let view = self.current()?;
            if !view.shard.replicas.iter().any(|r| r.node == node) {
                return Err(RejoinError::Refused(Error::not_found(format!(
                    "node {node} holds no replica of shard {}",
                    self.shard
                ))));
            }
            if view.shard.state_on(node) == Some(ReplicaState::Active) {
                // in sync already (a rejoin asked again by a node whose metadata lags): it has
                // every write, and replaying older records at it would only be refused
                return Ok(());
            }
            let link = self.repl.link()?;
            // in batches of about BATCH_BYTES: one round trip each, not one per record
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut bytes = 0usize;
            for (i, record) in tail.iter().enumerate() {
                bytes += record.len();
                batch.push(record.to_vec());
                if bytes >= REJOIN_BATCH_BYTES || i + 1 == tail.len() {
                    let rpc = ShardRpc::ReplicateBatch {
                        uid: self.uid,
                        shard: self.shard,
                        key: view.shard.key.clone(),
                        epoch: self.epoch,
                        records: std::mem::take(&mut batch),
                    };
                    link.call_within(node, &rpc, REJOIN_DEADLINE).await?;
                    bytes = 0;
                }
            }
            let theirs = self
                .repl
                .status_of(node, self.uid, &view.shard, self.epoch)
                .await?;
            if theirs.digest != digest {
                return Err(RejoinError::Refused(Error::conflict(format!(
                    "the replica on node {node} differs from the primary after catching up; it needs a full copy"
                ))));
            }
            self.repl
                .change(Command::SetReplicaState {
                    collection: view.collection.clone(),
                    uid: self.uid,
                    shard: self.shard,
                    node,
                    state: ReplicaState::Active,
                    epoch: self.epoch,
                })
                .await
                .map_err(|e| match e.kind {
                    // the leader may commit it after all
                    ErrorKind::Unavailable | ErrorKind::Timeout => RejoinError::Unknown(e),
                    _ => RejoinError::Refused(e),
                })?;
            tracing::info!(
                collection = %view.collection,
                shard = self.shard,
                replica = node,
                records = tail.len(),
                epoch = self.epoch,
                "replica caught up and back in the in-sync set"
            );
            Ok(())
        })
    }
}

/// The environment variable of a TEST-ONLY fault injection: when it is set to
/// [`UNSAFE_ACK_VALUE`], a primary acknowledges a write as soon as it has it itself, before any
/// backup does, and never drops a backup that does not answer (the bug replication exists to
/// prevent: a failover then loses acknowledged writes). The chaos suite sets it to prove its
/// checker catches lost writes. Never set it anywhere else.
pub const UNSAFE_ACK_ENV: &str = "TESSERA_UNSAFE_ACK_BEFORE_BACKUP";
/// The only value that turns it on (a bare `1` does not: the switch must be meant).
pub const UNSAFE_ACK_VALUE: &str = "lose-acknowledged-writes";

/// Whether the test-only fault of [`UNSAFE_ACK_ENV`] is on (read once; a warning is logged).
fn unsafe_ack_before_backup() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var(UNSAFE_ACK_ENV).is_ok_and(|v| v == UNSAFE_ACK_VALUE);
        if on {
            tracing::warn!(
                "{UNSAFE_ACK_ENV} is set: TEST-ONLY fault injection, writes are acknowledged before any backup has them and acknowledged writes WILL be lost at failover"
            );
        }
        on
    })
}

/// The answer for a record safe on `acked` in-sync replicas: None when that meets the write
/// consistency factor, else the 503's message.
fn short_of(view: &View, acked: usize) -> Result<Option<String>> {
    if acked as u32 >= view.write_consistency {
        return Ok(None);
    }
    Ok(Some(format!(
        "the write is applied on {acked} replica(s) of shard {}, fewer than the collection's write_consistency_factor {}",
        view.shard.id, view.write_consistency
    )))
}

/// Every replicated shard of the metadata: (collection, uid, shard).
fn replicated_shards(catalog: &Catalog) -> Vec<(CollectionMeta, ShardMeta)> {
    let st = catalog.meta.read();
    st.collections
        .values()
        .flat_map(|c| {
            c.shards
                .values()
                .filter(|s| s.replicas.len() > 1)
                .map(move |s| (c.clone(), s.clone()))
        })
        .collect()
}

impl Replication {
    /// Promotes the in-sync backup with the highest sequence among those that answer (the
    /// primary is down or failed). Epoch-guarded: a promotion decided twice applies once.
    async fn failover(&self, c: &CollectionMeta, s: &ShardMeta) -> Result<()> {
        let primary = s.primary();
        let mut best: Option<(u64, NodeId)> = None;
        for node in s.in_sync().filter(|n| Some(*n) != primary) {
            if !self.up(node) {
                continue;
            }
            match self.status_of(node, c.uid, s, 0).await {
                Ok(st) if best.is_none_or(|(seq, _)| st.last_seq > seq) => {
                    best = Some((st.last_seq, node))
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(node, error = %e, "candidate did not answer"),
            }
        }
        let Some((seq, node)) = best else {
            return Err(Error::unavailable(format!(
                "shard {} of {} has no reachable in-sync backup to promote",
                s.id, c.name
            )));
        };
        self.change(Command::PromoteReplica {
            collection: c.name.clone(),
            uid: c.uid,
            shard: s.id,
            node,
            epoch: s.epoch,
        })
        .await?;
        metrics::counter!("tessera_failovers_total").increment(1);
        tracing::warn!(
            collection = %c.name,
            shard = s.id,
            old_primary = ?primary,
            new_primary = node,
            sequence = seq,
            epoch = s.epoch + 1,
            "primary replaced"
        );
        Ok(())
    }

    /// One round of the leader's failover: every replicated shard whose primary's node is
    /// down gets a new primary.
    async fn failover_round(&self) {
        for (c, s) in replicated_shards(&self.catalog) {
            let Some(primary) = s.primary() else { continue };
            if primary == self.me() || self.up(primary) {
                continue;
            }
            if let Err(e) = self.failover(&c, &s).await {
                tracing::debug!(collection = %c.name, shard = s.id, error = %e, "failover not done");
            }
        }
    }

    /// One round of this node's keeper: its failed replicas leave the in-sync set (a failed
    /// primary is replaced), and its out-of-sync replicas catch up from their primaries.
    async fn keeper_round(&self) {
        let me = self.me();
        for (c, s) in replicated_shards(&self.catalog) {
            let Some(state) = s.state_on(me) else {
                continue;
            };
            let failed = self.catalog.shards.failed((c.uid, s.id));
            let done = if s.primary() == Some(me) {
                if failed {
                    match self.failover(&c, &s).await {
                        Err(e) if e.kind == ErrorKind::Unavailable => {
                            self.reopen_sole_primary(&c, &s).await
                        }
                        done => done,
                    }
                } else {
                    Ok(())
                }
            } else if failed && state == ReplicaState::Active {
                let why = Error::unavailable("the replica failed on its node");
                let view = View {
                    collection: c.name.clone(),
                    uid: c.uid,
                    shard: s.clone(),
                    write_consistency: c.params.write_consistency_factor,
                };
                self.drop_backup(&view, me, &why).await
            } else if state != ReplicaState::Active {
                self.catch_up(&c, &s, failed).await
            } else {
                Ok(())
            };
            if let Err(e) = done {
                tracing::debug!(collection = %c.name, shard = s.id, error = %e, "replica upkeep not done");
            }
        }
    }

    /// A failed primary that no in-sync backup can replace (none is in sync) reloads its
    /// replica from its own disk and goes on as the primary: it holds every
    /// acknowledged write, and left as it is the shard would stay unavailable for good. Only
    /// when the current metadata (a read barrier) still names it the primary and no other
    /// replica in sync: otherwise a backup is promoted, or this node was deposed.
    async fn reopen_sole_primary(&self, c: &CollectionMeta, s: &ShardMeta) -> Result<()> {
        self.catalog.read_barrier().await?;
        let now = self.view(c.uid, s.id)?.shard;
        let me = self.me();
        if now.primary() != Some(me) || now.epoch != s.epoch || now.in_sync().any(|n| n != me) {
            return Ok(());
        }
        tracing::warn!(
            collection = %c.name,
            shard = s.id,
            epoch = s.epoch,
            "the failed primary has no in-sync backup to hand over to; reopening it from its own data"
        );
        let spec = self.catalog.spec(c, s.id, s.key.clone());
        self.catalog.shards.reopen(spec).await
    }

    /// Every replica of a shard with its state and status (None: it did not answer), for
    /// operators and the cluster view. `epoch` 0: no fence is raised.
    pub async fn replica_statuses(
        &self,
        uid: u64,
        s: &ShardMeta,
    ) -> BTreeMap<NodeId, Option<ReplicaStatus>> {
        let mut out = BTreeMap::new();
        for r in &s.replicas {
            let status = if self.up(r.node) {
                self.status_of(r.node, uid, s, 0).await.ok()
            } else {
                None
            };
            out.insert(r.node, status);
        }
        out
    }
}

/// Runs on every member: the failover rounds while this node is the metadata leader, and the
/// keeper rounds always, for the life of the process.
pub fn spawn_loops(repl: Arc<Replication>) {
    let Some(raft) = repl.catalog.meta.raft().cloned() else {
        return;
    };
    rebalance::spawn_loop(repl.clone(), raft.clone());
    let leader_side = repl.clone();
    let raft_for_leader = raft.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FAILOVER_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if raft_for_leader.leader().map(|(id, _)| id) == Some(leader_side.me()) {
                leader_side.failover_round().await;
                leader_side.rereplicate_round().await;
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEEPER_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            repl.keeper_round().await;
        }
    });
}

/// Whether an error means "try another replica / again shortly" rather than a final answer.
pub fn retryable(e: &Error) -> bool {
    e.kind == ErrorKind::Unavailable
}
