//! Shard RPC: how a replica on this node serves a read or a write ([`serve_read`],
//! [`serve_write`]), for the router's local calls and for calls from other nodes alike, and the
//! wire form of those calls ([`ShardRpc`], [`ShardReply`]). Reads and writes are plain data
//! ([`ReadOp`], `WriteOp`), so a local replica and a remote one run exactly the same code
//! ([`run_read`]).
//!
//! On the wire every payload and filter travels as JSON text (bincode cannot carry
//! `serde_json::Value`), inside bincode frames with a version byte (`tessera_cluster::codec`).
//!
//! Architecture invariant: the serving node checks the shard key (tenant) of every request
//! against the replica it owns, exactly as for a local call, and runs reads through its own
//! fair scheduler under the tenant the request is attributed to.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_cluster::meta::{NodeId, ShardId, ShardKey};
use tessera_cluster::{Error, Result};
use tessera_shard::actor::WriteOp;
use tessera_shard::filter::{Filter, WireFilter};
use tessera_shard::manager::ShardManager;
use tessera_shard::point::{Payload, PointId};
use tessera_shard::replication::{BoxFuture, ReplicaStatus, Replicate};
use tessera_shard::store::{Hit, PayloadSelector, Record, SearchParams, ShardData};
use tessera_shard::wal::WalPoint;

use crate::quota::Quotas;

mod write_wire;
pub use write_wire::{WirePoint, WireSelector, WireWrite};

/// How long a call to a shard on another node may take before it fails (503).
pub const SHARD_CALL_DEADLINE: Duration = Duration::from_secs(5);

/// The scheduler queue of requests attributed to no tenant (e.g. an admin's read of several
/// tenants' keys at once).
pub const UNATTRIBUTED: &str = "_unattributed";

/// One replica of this node: the collection's uid, the shard, and the key it must own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalShard {
    pub uid: u64,
    pub shard: ShardId,
    pub key: Option<ShardKey>,
}

/// What serving shard calls needs of the replica sets: implemented by the replication layer
/// above the catalog ([`crate::replication`]), which knows the metadata and the link.
pub trait ReplicaSets: Send + Sync {
    /// How a write to this node's replica is replicated: None for a shard with one replica;
    /// an error (503) when this node's replica is not the shard's primary.
    fn for_write(&self, uid: u64, shard: ShardId) -> Result<Option<Arc<dyn Replicate>>>;
    /// Before a write to this node's replica: when the replica set as this node sees it has no
    /// in-sync backup, confirms that view is current (a read barrier) and still names this
    /// node the primary. A primary with backups needs no such check: they refuse the records of
    /// a deposed epoch. One without would otherwise acknowledge writes alone on a stale view
    /// after it was deposed (a restarted node that has not caught up with its failover).
    fn confirm_sole_primary(&self, uid: u64, shard: ShardId) -> BoxFuture<'_, Result<()>>;
    /// The replica set, for bringing a returning replica in; this node must be the primary.
    fn for_rejoin(&self, uid: u64, shard: ShardId) -> Result<Arc<dyn Replicate>>;
    /// Refuses (503) a read of this node's replica when it is not in the in-sync set, as the
    /// metadata stands once this node has confirmed its view is current (a read barrier).
    fn check_readable(&self, uid: u64, shard: ShardId) -> BoxFuture<'_, Result<()>>;
    /// Refuses to copy the shard's points to `node` while its replica is in sync there (a
    /// late or repeated catch-up must not overwrite a replica that serves reads).
    fn check_copy(&self, uid: u64, shard: ShardId, node: NodeId) -> Result<()>;
    /// Refuses a record of an epoch older than the shard's in this node's metadata.
    fn check_epoch(&self, uid: u64, shard: ShardId, epoch: u64) -> Result<()>;
}

/// Applies a write to a replica on this node (for a local request or a remote node's): as the
/// shard's primary, through its replica set.
pub async fn serve_write(
    shards: &ShardManager,
    sets: &dyn ReplicaSets,
    replica: LocalShard,
    op: WriteOp,
) -> Result<u64> {
    count_shard_request(replica.key.as_ref(), "write");
    sets.confirm_sole_primary(replica.uid, replica.shard)
        .await?;
    let repl = sets.for_write(replica.uid, replica.shard)?;
    let (seq, short) = shards
        .write_replicated((replica.uid, replica.shard), replica.key.as_ref(), op, repl)
        .await?;
    match short {
        None => Ok(seq),
        Some(message) => Err(Error::unavailable(message)),
    }
}

/// Runs a read on a replica on this node, through the fair scheduler under `tenant`.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one read: where, for whom, what"
)]
pub async fn serve_read(
    shards: &ShardManager,
    sets: &dyn ReplicaSets,
    quotas: &Quotas,
    replica: LocalShard,
    tenant: &str,
    weight: u32,
    op: Arc<ReadOp>,
) -> Result<ReadReply> {
    count_shard_request(replica.key.as_ref(), "read");
    sets.check_readable(replica.uid, replica.shard).await?;
    let data = shards.reader((replica.uid, replica.shard), replica.key.as_ref())?;
    quotas
        .scheduler
        .run(tenant, weight, 1, move || run_read(&data, &op))
        .await
}

/// Serves one shard call from another node: decodes it, runs it as a local call would, and
/// encodes the answer.
pub async fn serve_remote(
    shards: &ShardManager,
    sets: &dyn ReplicaSets,
    quotas: &Quotas,
    body: &[u8],
) -> Result<Vec<u8>> {
    let reply = match tessera_cluster::codec::decode::<ShardRpc>(body)? {
        ShardRpc::Write {
            uid,
            shard,
            key,
            op,
        } => ShardReply::Seq(
            serve_write(shards, sets, LocalShard { uid, shard, key }, op.into_op()?).await?,
        ),
        ShardRpc::Replicate {
            uid,
            shard,
            key,
            epoch,
            record,
        } => {
            sets.check_epoch(uid, shard, epoch)?;
            ShardReply::Seq(
                shards
                    .apply_replicated((uid, shard), key.as_ref(), epoch, Arc::new(record))
                    .await?,
            )
        }
        ShardRpc::ReplicateBatch {
            uid,
            shard,
            key,
            epoch,
            records,
        } => {
            sets.check_epoch(uid, shard, epoch)?;
            let mut last = 0;
            for record in records {
                last = shards
                    .apply_replicated((uid, shard), key.as_ref(), epoch, Arc::new(record))
                    .await?;
            }
            ShardReply::Seq(last)
        }
        ShardRpc::Status {
            uid,
            shard,
            key,
            epoch,
        } => {
            if epoch > 0 {
                sets.check_epoch(uid, shard, epoch)?;
            }
            ShardReply::Status(shards.status((uid, shard), key.as_ref(), epoch).await?)
        }
        ShardRpc::Copy {
            uid,
            shard,
            key,
            node,
            after,
            max_bytes,
        } => {
            sets.check_copy(uid, shard, node)?;
            if after.is_none() {
                // the records written while the copy runs must still be here for its rejoin
                shards.pin_tail((uid, shard), key.as_ref(), node).await?;
            }
            let max_bytes = (max_bytes as usize).clamp(1 << 10, MAX_COPY_PAGE_BYTES);
            let (last_seq, points, next) =
                shards.export_page((uid, shard), key.as_ref(), after.as_ref(), max_bytes)?;
            ShardReply::Copy {
                last_seq,
                points,
                next,
            }
        }
        ShardRpc::Segments {
            uid,
            shard,
            key,
            node,
        } => {
            sets.check_copy(uid, shard, node)?;
            let files = shards.segment_files((uid, shard), key.as_ref())?;
            let points = shards
                .data((uid, shard))
                .map(|d| d.len() as u64)
                .unwrap_or(0);
            ShardReply::Segments { files, points }
        }
        ShardRpc::SegmentChunk {
            uid,
            shard,
            key,
            node,
            name,
            offset,
            max_bytes,
        } => {
            sets.check_copy(uid, shard, node)?;
            let max = (max_bytes as usize).clamp(1 << 10, MAX_COPY_PAGE_BYTES);
            // a few MiB from the page cache at most: short enough to read in place
            ShardReply::Bytes(shards.read_segment(
                (uid, shard),
                key.as_ref(),
                &name,
                offset,
                max,
            )?)
        }
        ShardRpc::Rejoin {
            uid,
            shard,
            key,
            node,
            from_seq,
        } => {
            let repl = sets.for_rejoin(uid, shard)?;
            shards
                .rejoin((uid, shard), key.as_ref(), node, from_seq, repl)
                .await?;
            ShardReply::Done
        }
        ShardRpc::Read {
            uid,
            shard,
            key,
            tenant,
            weight,
            op,
        } => {
            let reply = serve_read(
                shards,
                sets,
                quotas,
                LocalShard { uid, shard, key },
                &tenant,
                weight.max(1),
                Arc::new(op.into_op()?),
            )
            .await?;
            ShardReply::Read(WireReply::from_reply(&reply))
        }
    };
    tessera_cluster::codec::encode(&reply)
}

/// Counts the shard requests this node serves, by shard key: the routing test reads them to
/// prove that nodes without a tenant's shards get no request for it.
fn count_shard_request(key: Option<&ShardKey>, kind: &'static str) {
    let key = key.map(|k| k.to_string()).unwrap_or_else(|| "_auto".into());
    metrics::counter!("tessera_shard_requests_total", "shard_key" => key, "kind" => kind)
        .increment(1);
}

/// A read of one shard.
#[derive(Debug, Clone)]
pub enum ReadOp {
    Retrieve {
        ids: Vec<PointId>,
        filter: Option<Filter>,
        with_payload: PayloadSelector,
        with_vector: bool,
    },
    Scroll {
        offset: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_payload: PayloadSelector,
        with_vector: bool,
    },
    Count {
        filter: Option<Filter>,
    },
    VectorOf {
        id: PointId,
        filter: Option<Filter>,
    },
    Search(SearchParams),
}

/// What a read of one shard answers.
#[derive(Debug, Clone)]
pub enum ReadReply {
    Records(Vec<Record>),
    Page(Vec<Record>, Option<PointId>),
    Count(usize),
    Vector(Option<Vec<f32>>),
    Hits(Vec<Hit>),
}

impl ReadReply {
    /// The records of a retrieve, None for another kind of reply.
    pub fn into_records(self) -> Option<Vec<Record>> {
        match self {
            ReadReply::Records(records) => Some(records),
            ReadReply::Page(..)
            | ReadReply::Count(_)
            | ReadReply::Vector(_)
            | ReadReply::Hits(_) => None,
        }
    }

    /// The page of a scroll and the id that starts the next one.
    pub fn into_page(self) -> Option<(Vec<Record>, Option<PointId>)> {
        match self {
            ReadReply::Page(records, next) => Some((records, next)),
            ReadReply::Records(_)
            | ReadReply::Count(_)
            | ReadReply::Vector(_)
            | ReadReply::Hits(_) => None,
        }
    }

    /// The number of a count.
    pub fn into_count(self) -> Option<usize> {
        match self {
            ReadReply::Count(count) => Some(count),
            ReadReply::Records(_)
            | ReadReply::Page(..)
            | ReadReply::Vector(_)
            | ReadReply::Hits(_) => None,
        }
    }

    /// The vector of a point lookup (itself None when the shard has no such point).
    pub fn into_vector(self) -> Option<Option<Vec<f32>>> {
        match self {
            ReadReply::Vector(vector) => Some(vector),
            ReadReply::Records(_)
            | ReadReply::Page(..)
            | ReadReply::Count(_)
            | ReadReply::Hits(_) => None,
        }
    }

    /// The nearest points of a search.
    pub fn into_hits(self) -> Option<Vec<Hit>> {
        match self {
            ReadReply::Hits(hits) => Some(hits),
            ReadReply::Records(_)
            | ReadReply::Page(..)
            | ReadReply::Count(_)
            | ReadReply::Vector(_) => None,
        }
    }
}

/// Runs a read on a replica's data (on the caller's pool).
pub fn run_read(data: &ShardData, op: &ReadOp) -> ReadReply {
    match op {
        ReadOp::Retrieve {
            ids,
            filter,
            with_payload,
            with_vector,
        } => ReadReply::Records(data.retrieve(ids, filter.as_ref(), with_payload, *with_vector)),
        ReadOp::Scroll {
            offset,
            limit,
            filter,
            with_payload,
            with_vector,
        } => {
            let (recs, next) = data.scroll(
                offset.as_ref(),
                *limit,
                filter.as_ref(),
                with_payload,
                *with_vector,
            );
            ReadReply::Page(recs, next)
        }
        ReadOp::Count { filter } => ReadReply::Count(data.count(filter.as_ref())),
        ReadOp::VectorOf { id, filter } => ReadReply::Vector(data.vector_of(id, filter.as_ref())),
        ReadOp::Search(p) => ReadReply::Hits(data.search(p)),
    }
}

/// One shard request between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub enum ShardRpc {
    Write {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        op: WireWrite,
    },
    Read {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        /// The tenant the request is attributed to (the serving node's scheduler queue).
        tenant: String,
        weight: u32,
        op: WireRead,
    },
    /// A record from the shard's primary in `epoch`, for this node's backup replica.
    Replicate {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        epoch: u64,
        record: Vec<u8>,
    },
    /// Records in sequence from the shard's primary (a returning replica's catch-up), applied
    /// one after the other; answers the last one's sequence.
    ReplicateBatch {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        epoch: u64,
        records: Vec<Vec<u8>>,
    },
    /// The replica's sequence, digest and size; a nonzero `epoch` (a primary's) raises its fence.
    Status {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        epoch: u64,
    },
    /// A page of the primary's points, for a returning replica's copy.
    Copy {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        /// The node the copy is for.
        node: NodeId,
        after: Option<PointId>,
        max_bytes: u64,
    },
    /// To the primary: bring the replica on `node`, which holds everything up to `from_seq`,
    /// into the in-sync set.
    Rejoin {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        node: NodeId,
        from_seq: u64,
    },
    /// To the primary: its segment files (name, size) and points count, for a copy to `node`
    /// to bring the built graphs along.
    Segments {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        node: NodeId,
    },
    /// To the primary: up to `max_bytes` of its segment file `name` from `offset`.
    SegmentChunk {
        uid: u64,
        shard: ShardId,
        key: Option<ShardKey>,
        node: NodeId,
        name: String,
        offset: u64,
        max_bytes: u64,
    },
}

impl ShardRpc {
    /// The transport service the call rides on: client reads and writes on `Shard`, the
    /// replicas' own traffic (records, status, copies, rejoins) on `Replication`.
    pub fn service(&self) -> tessera_cluster::transport::Service {
        use tessera_cluster::transport::Service;
        match self {
            ShardRpc::Write { .. } | ShardRpc::Read { .. } => Service::Shard,
            ShardRpc::Replicate { .. }
            | ShardRpc::ReplicateBatch { .. }
            | ShardRpc::Status { .. }
            | ShardRpc::Copy { .. }
            | ShardRpc::Rejoin { .. }
            | ShardRpc::Segments { .. }
            | ShardRpc::SegmentChunk { .. } => Service::Replication,
        }
    }
}

/// Largest page of a copy between replicas (well under the transport's frame limit).
pub const MAX_COPY_PAGE_BYTES: usize = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub enum ShardReply {
    Seq(u64),
    Read(WireReply),
    Status(ReplicaStatus),
    Copy {
        last_seq: u64,
        points: Vec<(WalPoint, u64)>,
        next: Option<PointId>,
    },
    Done,
    Segments {
        files: Vec<(String, u64)>,
        points: u64,
    },
    Bytes(Vec<u8>),
}

/// Filters cross between nodes in their binary wire form (typed values, bounded depth and size
/// on decode), never as JSON text.
fn filter_out(filter: &Option<Filter>) -> Option<WireFilter> {
    filter.as_ref().map(WireFilter::from)
}

fn filter_in(filter: Option<WireFilter>) -> Result<Option<Filter>> {
    filter.map(Filter::try_from).transpose()
}

fn payload_out(payload: &Payload) -> String {
    String::from_utf8_lossy(&tessera_shard::wal::payload_to_json(payload)).into_owned()
}

fn payload_in(text: &str) -> Result<Payload> {
    tessera_shard::wal::payload_from_json(text.as_bytes())
}

#[derive(Debug, Serialize, Deserialize)]
pub enum WireRead {
    Retrieve {
        ids: Vec<PointId>,
        filter: Option<WireFilter>,
        with_payload: PayloadSelector,
        with_vector: bool,
    },
    Scroll {
        offset: Option<PointId>,
        limit: u64,
        filter: Option<WireFilter>,
        with_payload: PayloadSelector,
        with_vector: bool,
    },
    Count {
        filter: Option<WireFilter>,
    },
    VectorOf {
        id: PointId,
        filter: Option<WireFilter>,
    },
    Search {
        vector: Vec<f32>,
        filter: Option<WireFilter>,
        k: u64,
        ef: u64,
        exact: bool,
        with_payload: PayloadSelector,
        with_vector: bool,
        exclude: Option<PointId>,
    },
}

impl WireRead {
    pub fn from_op(op: &ReadOp) -> WireRead {
        match op.clone() {
            ReadOp::Retrieve {
                ids,
                filter,
                with_payload,
                with_vector,
            } => WireRead::Retrieve {
                ids,
                filter: filter_out(&filter),
                with_payload,
                with_vector,
            },
            ReadOp::Scroll {
                offset,
                limit,
                filter,
                with_payload,
                with_vector,
            } => WireRead::Scroll {
                offset,
                limit: limit as u64,
                filter: filter_out(&filter),
                with_payload,
                with_vector,
            },
            ReadOp::Count { filter } => WireRead::Count {
                filter: filter_out(&filter),
            },
            ReadOp::VectorOf { id, filter } => WireRead::VectorOf {
                id,
                filter: filter_out(&filter),
            },
            ReadOp::Search(p) => WireRead::Search {
                filter: filter_out(&p.filter),
                vector: p.vector,
                k: p.k as u64,
                ef: p.ef as u64,
                exact: p.exact,
                with_payload: p.with_payload,
                with_vector: p.with_vector,
                exclude: p.exclude,
            },
        }
    }

    pub fn into_op(self) -> Result<ReadOp> {
        let size = |n: u64| usize::try_from(n).map_err(|_| Error::bad_request("size out of range"));
        Ok(match self {
            WireRead::Retrieve {
                ids,
                filter,
                with_payload,
                with_vector,
            } => ReadOp::Retrieve {
                ids,
                filter: filter_in(filter)?,
                with_payload,
                with_vector,
            },
            WireRead::Scroll {
                offset,
                limit,
                filter,
                with_payload,
                with_vector,
            } => ReadOp::Scroll {
                offset,
                limit: size(limit)?,
                filter: filter_in(filter)?,
                with_payload,
                with_vector,
            },
            WireRead::Count { filter } => ReadOp::Count {
                filter: filter_in(filter)?,
            },
            WireRead::VectorOf { id, filter } => ReadOp::VectorOf {
                id,
                filter: filter_in(filter)?,
            },
            WireRead::Search {
                vector,
                filter,
                k,
                ef,
                exact,
                with_payload,
                with_vector,
                exclude,
            } => ReadOp::Search(SearchParams {
                vector,
                filter: filter_in(filter)?,
                k: size(k)?,
                ef: size(ef)?,
                exact,
                with_payload,
                with_vector,
                exclude,
            }),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireRecord {
    pub id: PointId,
    pub version: u64,
    pub payload: Option<String>,
    pub vector: Option<Vec<f32>>,
}

impl WireRecord {
    fn from_record(record: &Record) -> WireRecord {
        WireRecord {
            id: record.id.clone(),
            version: record.version,
            payload: record.payload.as_ref().map(payload_out),
            vector: record.vector.clone(),
        }
    }

    fn into_record(self) -> Result<Record> {
        Ok(Record {
            id: self.id,
            version: self.version,
            payload: self.payload.as_deref().map(payload_in).transpose()?,
            vector: self.vector,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum WireReply {
    Records(Vec<WireRecord>),
    Page(Vec<WireRecord>, Option<PointId>),
    Count(u64),
    Vector(Option<Vec<f32>>),
    Hits(Vec<(f32, WireRecord)>),
}

impl WireReply {
    pub fn from_reply(reply: &ReadReply) -> WireReply {
        let recs = |v: &[Record]| v.iter().map(WireRecord::from_record).collect();
        match reply {
            ReadReply::Records(v) => WireReply::Records(recs(v)),
            ReadReply::Page(v, next) => WireReply::Page(recs(v), next.clone()),
            ReadReply::Count(n) => WireReply::Count(*n as u64),
            ReadReply::Vector(v) => WireReply::Vector(v.clone()),
            ReadReply::Hits(h) => WireReply::Hits(
                h.iter()
                    .map(|h| (h.distance, WireRecord::from_record(&h.record)))
                    .collect(),
            ),
        }
    }

    pub fn into_reply(self) -> Result<ReadReply> {
        let recs = |v: Vec<WireRecord>| -> Result<Vec<Record>> {
            v.into_iter().map(WireRecord::into_record).collect()
        };
        Ok(match self {
            WireReply::Records(v) => ReadReply::Records(recs(v)?),
            WireReply::Page(v, next) => ReadReply::Page(recs(v)?, next),
            WireReply::Count(n) => ReadReply::Count(n as usize),
            WireReply::Vector(v) => ReadReply::Vector(v),
            WireReply::Hits(h) => ReadReply::Hits(
                h.into_iter()
                    .map(|(distance, r)| {
                        Ok(Hit {
                            distance,
                            record: r.into_record()?,
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_cluster::codec::{decode, encode};
    use tessera_shard::actor::NewPoint;
    use tessera_shard::filter::parse_filter;

    #[test]
    fn reads_and_writes_round_trip_through_the_wire() {
        let filter = parse_filter(&serde_json::json!({
            "must": [{"key": "a", "match": {"value": "x"}}, {"has_id": [1, 2]}],
            "should": [{"key": "n", "range": {"gte": 1.5}}],
        }))
        .expect("filter");
        let op = ReadOp::Search(SearchParams {
            vector: vec![1.0, 2.0],
            filter: Some(filter.clone()),
            k: 7,
            ef: 40,
            exact: false,
            with_payload: PayloadSelector::Include(vec!["a".into()]),
            with_vector: true,
            exclude: Some(PointId::Num(3)),
        });
        let wire = encode(&WireRead::from_op(&op)).expect("encode");
        let back = decode::<WireRead>(&wire)
            .expect("decode")
            .into_op()
            .expect("op");
        match back {
            ReadOp::Search(p) => {
                assert_eq!(p.filter, Some(filter.clone()));
                assert_eq!((p.k, p.ef, p.exclude), (7, 40, Some(PointId::Num(3))));
            }
            other => panic!("wrong op {other:?}"),
        }
        let mut payload = Payload::new();
        payload.insert("a".into(), serde_json::json!({"deep": [1, 2.5, "x", null]}));
        let w = WriteOp::UpsertWhere(
            vec![NewPoint {
                id: PointId::Str("p".into()),
                vector: vec![0.5],
                payload: payload.clone(),
            }],
            filter,
        );
        let wire = encode(&WireWrite::from_op(&w)).expect("encode");
        match decode::<WireWrite>(&wire)
            .expect("decode")
            .into_op()
            .expect("op")
        {
            WriteOp::UpsertWhere(p, _) => assert_eq!(p[0].payload, payload),
            other => panic!("wrong op {other:?}"),
        }
        assert!(decode::<ShardRpc>(b"garbage").is_err());
    }
}
