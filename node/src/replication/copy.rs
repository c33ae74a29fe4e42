//! A replica's catch-up from its primary: the records it lacks from the primary's tail when it
//! can, else a snapshot transfer: the primary's segment files first (built graphs and their
//! vectors, so nothing is built again), then its points page by page (payloads, versions, and the
//! vectors of points not in those files), then the records written meanwhile from the tail, after
//! which the primary brings the replica into the in-sync set.
//!
//! A transfer reads from the primary at most the node's `transfer_rate` bytes per second, so that
//! searches on both nodes keep their share.

use std::time::{Duration, Instant};

use tessera_cluster::meta::{CollectionMeta, Command, NodeId, ReplicaState, ShardMeta};
use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::actor::CopyPage;

use super::{REJOIN_DEADLINE, Replication};
use crate::shard_rpc::{ShardReply, ShardRpc};

/// Bytes of points per page of a copy.
const COPY_PAGE_BYTES: u64 = 8 << 20;
/// Bytes of a segment file per chunk of a copy.
const SEGMENT_CHUNK_BYTES: u64 = 4 << 20;

/// Paces a transfer to a rate: after `bytes` more, waits until they fit in it.
struct Pace {
    started: Instant,
    bytes: u64,
    rate: u64,
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            started: Instant::now(),
            bytes: 0,
            rate: rate.max(1),
        }
    }

    async fn spent(&mut self, bytes: u64) {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Replication {
    fn transfer_rate(&self) -> u64 {
        self.catalog
            .config
            .cluster
            .as_ref()
            .map(|c| c.transfer_rate)
            .unwrap_or(u64::MAX)
    }

    /// Brings this node's out-of-sync replica of `s` back: from its own state plus the
    /// primary's tail if it can, else from a snapshot transfer.
    pub(super) async fn catch_up(
        &self,
        c: &CollectionMeta,
        s: &ShardMeta,
        failed: bool,
    ) -> Result<()> {
        let me = self.me();
        // the round's picture may be older than the metadata now: a replica brought in
        // meanwhile has nothing to catch up
        let now = self.view(c.uid, s.id)?.shard;
        if now.state_on(me) == Some(ReplicaState::Active) && !failed {
            return Ok(());
        }
        let Some(primary) = s.primary() else {
            return Ok(());
        };
        if !self.up(primary) {
            return Ok(());
        }
        if failed {
            let spec = self.catalog.spec(c, s.id, s.key.clone());
            self.catalog.shards.reset(spec).await?;
        }
        if s.state_on(me) == Some(ReplicaState::Dead) {
            self.change(Command::SetReplicaState {
                collection: c.name.clone(),
                uid: c.uid,
                shard: s.id,
                node: me,
                state: ReplicaState::Partial,
                epoch: s.epoch,
            })
            .await?;
        }
        let link = self.link()?;
        let shards = &self.catalog.shards;
        let id = (c.uid, s.id);
        let own = shards.status(id, s.key.as_ref(), s.epoch).await?;
        let rejoin = |from_seq| ShardRpc::Rejoin {
            uid: c.uid,
            shard: s.id,
            key: s.key.clone(),
            node: me,
            from_seq,
        };
        let started = Instant::now();
        if !failed && own.last_seq > 0 {
            match link
                .call_within(primary, &rejoin(own.last_seq), REJOIN_DEADLINE)
                .await
            {
                Ok(_) => return Ok(()),
                // the tail does not reach back, or this replica differs: a full copy
                Err(e) if e.kind == ErrorKind::Conflict => {
                    tracing::info!(collection = %c.name, shard = s.id, error = %e, "catching up from the tail is not possible; copying the primary's shard")
                }
                // anything else (the primary not reachable yet, a timeout) is tried again next
                // round, from the tail: a copy is the last resort, not the first
                Err(e) => return Err(e),
            }
        }
        let mut pace = Pace::new(self.transfer_rate());
        let (segments, seg_bytes) = self.copy_segments(c, s, primary, &mut pace).await?;
        // the points, page by page; the first page's sequence is where the tail goes on from
        let mut after = None;
        let mut first_seq = None;
        let mut copied = 0usize;
        let mut segments = Some(segments);
        loop {
            // a rejoin that answered late may have brought the replica in meanwhile: an
            // in-sync replica is never overwritten
            if self.view(c.uid, s.id)?.shard.state_on(me) == Some(ReplicaState::Active) {
                return Ok(());
            }
            let rpc = ShardRpc::Copy {
                uid: c.uid,
                shard: s.id,
                key: s.key.clone(),
                node: me,
                after: after.clone(),
                max_bytes: COPY_PAGE_BYTES,
            };
            let ShardReply::Copy {
                last_seq,
                points,
                next,
            } = link.call(primary, &rpc).await?
            else {
                return Err(Error::internal("the primary answered a copy wrongly"));
            };
            copied += points.len();
            let bytes: u64 = points
                .iter()
                .map(|(p, _)| (p.vector.len() * 4 + p.payload_json.len() + 16) as u64)
                .sum();
            let page = CopyPage {
                last_seq,
                points,
                first: first_seq.is_none(),
                last: next.is_none(),
                segments: segments.take().unwrap_or_default(),
            };
            first_seq.get_or_insert(last_seq);
            shards.install(id, s.key.as_ref(), s.epoch, page).await?;
            pace.spent(bytes).await;
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let from = first_seq.unwrap_or(0);
        link.call_within(primary, &rejoin(from), REJOIN_DEADLINE)
            .await?;
        metrics::counter!("tessera_replica_copies_total").increment(1);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        tracing::info!(
            collection = %c.name,
            shard = s.id,
            points = copied,
            segment_bytes = seg_bytes,
            ms = (secs * 1000.0) as u64,
            points_per_s = (copied as f64 / secs) as u64,
            mib_per_s = format!("{:.1}", pace.bytes as f64 / secs / (1 << 20) as f64),
            "replica copied from the primary"
        );
        Ok(())
    }

    /// Fetches the primary's segment files into this replica's folder; answers the names that
    /// arrived whole and their bytes. A file the primary merged away meanwhile is skipped: its
    /// points come with the pages and are indexed here.
    async fn copy_segments(
        &self,
        c: &CollectionMeta,
        s: &ShardMeta,
        primary: NodeId,
        pace: &mut Pace,
    ) -> Result<(Vec<String>, u64)> {
        let link = self.link()?;
        let shards = &self.catalog.shards;
        let me = self.me();
        let ShardReply::Segments { files, .. } = link
            .call(
                primary,
                &ShardRpc::Segments {
                    uid: c.uid,
                    shard: s.id,
                    key: s.key.clone(),
                    node: me,
                },
            )
            .await?
        else {
            return Err(Error::internal(
                "the primary answered a segment list wrongly",
            ));
        };
        let mut arrived = Vec::new();
        let mut total = 0u64;
        'files: for (name, len) in files {
            let mut offset = 0u64;
            loop {
                let rpc = ShardRpc::SegmentChunk {
                    uid: c.uid,
                    shard: s.id,
                    key: s.key.clone(),
                    node: me,
                    name: name.clone(),
                    offset,
                    max_bytes: SEGMENT_CHUNK_BYTES,
                };
                let bytes = match link.call(primary, &rpc).await {
                    Ok(ShardReply::Bytes(b)) => b,
                    Ok(_) => return Err(Error::internal("the primary answered a chunk wrongly")),
                    Err(e) if e.kind == ErrorKind::NotFound => {
                        tracing::debug!(file = %name, "segment file merged away during the copy");
                        continue 'files;
                    }
                    Err(e) => return Err(e),
                };
                let n = bytes.len() as u64;
                let done = n == 0 || offset + n >= len;
                if n == 0 && offset < len {
                    // the file shrank: it is not the one listed
                    continue 'files;
                }
                if let Err(e) = shards.receive_segment((c.uid, s.id), &name, offset, &bytes, done) {
                    // the pages bring these points too; they are indexed here instead
                    tracing::warn!(file = %name, error = %e, "segment file not copied");
                    continue 'files;
                }
                offset += n;
                total += n;
                pace.spent(n).await;
                if done {
                    break;
                }
            }
            arrived.push(name);
        }
        Ok((arrived, total))
    }
}
