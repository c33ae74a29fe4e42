//! The shard's side of primary–backup replication: what the actor needs from whoever knows the
//! replica set ([`Replicate`], implemented by the node over the cluster link and the metadata),
//! the primary's ring of recent records a returning replica catches up from ([`Tail`]), and the
//! order-independent digest that proves two replicas identical ([`digest_of`]).
//!
//! Invariants: a record is sent to the backups and logged here before it is applied here; a
//! backup takes records only in sequence (`seq == last_seq + 1`) and only from a primary whose
//! epoch is not older than the newest it has seen (its fence); a replica whose digest and
//! sequence equal the primary's holds exactly the primary's points.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tessera_core::{Error, NodeId, Result};

use crate::point::PointId;
use crate::store::ShardData;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The replica set as the primary's node knows it, for one write or one rejoin. Every method
/// runs inside the primary actor's turn, so no other write of the shard interleaves.
pub trait Replicate: Send + Sync {
    /// The epoch this replica is the primary in: its own fence is raised to it, so a deposed
    /// primary's record that arrives late is refused by the new primary's actor too.
    fn epoch(&self) -> u64;

    /// Before a write is logged: refuses (nothing changed anywhere) unless this replica is the
    /// shard's primary in the current epoch and enough in-sync replicas are reachable for the
    /// collection's `write_consistency_factor`. The first write of an epoch also checks that
    /// every in-sync backup holds exactly what this replica holds (`data`), and drops those
    /// that do not.
    fn prepare<'a>(&'a self, data: &'a ShardData) -> BoxFuture<'a, Result<()>>;

    /// Sends a record (already encoded, sequence `seq`) to every in-sync backup and answers
    /// once each has it durable, or has been dropped from the in-sync set through the metadata
    /// leader. An error means the record's fate is unknown: the caller fails the replica.
    /// `Ok(Some(msg))`: the record is safe on the remaining in-sync set, which is smaller than
    /// the write consistency factor; the write is applied and answered with `msg` (a 503).
    fn send(&self, seq: u64, record: Arc<Vec<u8>>) -> BoxFuture<'_, Result<Option<String>>>;

    /// Brings the replica on `node` from its state (after `tail`, the records it lacks) into
    /// the in-sync set: sends the records, checks that its digest equals `digest` (this
    /// replica's), and commits it `Active` in the metadata.
    fn rejoin(
        &self,
        node: NodeId,
        tail: Vec<Arc<Vec<u8>>>,
        digest: u64,
    ) -> BoxFuture<'_, Result<(), RejoinError>>;
}

/// Why a rejoin did not bring a replica into the in-sync set.
#[derive(Debug)]
pub enum RejoinError {
    /// Nothing changed: the replica stays out of the in-sync set.
    Refused(Error),
    /// Its commit as in sync may or may not have happened (the metadata leader did not answer
    /// in time). The primary cannot know whether its next writes must reach that replica before
    /// they are acknowledged, so its actor fails and acknowledges nothing more: were the commit
    /// to land later, writes acknowledged meanwhile without that replica would be missing from
    /// an in-sync replica, and lost if it were promoted.
    Unknown(Error),
}

impl From<Error> for RejoinError {
    fn from(e: Error) -> RejoinError {
        RejoinError::Refused(e)
    }
}

/// What a replica reports of itself to the primary and to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStatus {
    pub last_seq: u64,
    pub digest: u64,
    pub points: u64,
    /// The newest epoch this replica has seen; it refuses records of older ones.
    pub fence: u64,
}

/// The most recent records of a replica, for a returning replica's catch-up: bounded in bytes,
/// oldest dropped first.
pub struct Tail {
    records: VecDeque<(u64, Arc<Vec<u8>>)>,
    bytes: usize,
    max_bytes: usize,
    /// Per node a copy runs to: the records after this sequence are kept (up to
    /// [`PINNED_TAIL_BYTES`]) until the instant or that node's rejoin, for the rejoin to replay.
    pins: std::collections::BTreeMap<u64, (u64, std::time::Instant)>,
}

/// Most bytes of records a tail keeps while pinned by a copy: a copy that falls further behind
/// the writes starts again.
pub const PINNED_TAIL_BYTES: usize = 512 << 20;
/// How long a copy's pin lasts after its last page.
pub const PIN_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Bytes of recent records a replica of a replicated shard keeps for catch-up (a replica
/// further behind gets a full copy).
pub const TAIL_BYTES: usize = 16 << 20;

impl Tail {
    pub fn new(max_bytes: usize) -> Tail {
        Tail {
            records: VecDeque::new(),
            bytes: 0,
            max_bytes,
            pins: std::collections::BTreeMap::new(),
        }
    }

    /// For a copy to `node` taken at `from` or later: keeps the records after `from` for
    /// [`PIN_FOR`] or until [`Tail::unpin`], within [`PINNED_TAIL_BYTES`].
    pub fn pin(&mut self, node: u64, from: u64) {
        self.pins
            .insert(node, (from, std::time::Instant::now() + PIN_FOR));
    }

    /// `node`'s copy has rejoined: its records need not be kept for it any more.
    pub fn unpin(&mut self, node: u64) {
        self.pins.remove(&node);
    }

    /// Whether the oldest record may go: past the limit, and not needed by a live pin.
    fn may_drop(&mut self, seq: u64) -> bool {
        let now = std::time::Instant::now();
        self.pins.retain(|_, (_, until)| now < *until);
        let pinned = self.pins.values().any(|(from, _)| seq > *from);
        self.bytes
            > if pinned {
                PINNED_TAIL_BYTES
            } else {
                self.max_bytes
            }
    }

    pub fn push(&mut self, seq: u64, record: Arc<Vec<u8>>) {
        if self
            .records
            .back()
            .is_some_and(|(last, _)| *last + 1 != seq)
        {
            // a gap (a state installed from a copy): older records no longer lead here
            self.clear();
        }
        self.bytes += record.len();
        self.records.push_back((seq, record));
        while let Some(&(seq, _)) = self.records.front()
            && self.may_drop(seq)
            && let Some((_, r)) = self.records.pop_front()
        {
            self.bytes -= r.len();
        }
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }

    /// The sequence of the oldest record kept.
    pub fn first_seq(&self) -> Option<u64> {
        self.records.front().map(|(s, _)| *s)
    }

    /// The records after `from` up to `last`, if the ring still holds all of them.
    pub fn after(&self, from: u64, last: u64) -> Option<Vec<Arc<Vec<u8>>>> {
        if from >= last {
            return Some(Vec::new());
        }
        let first = self.records.front()?.0;
        if first > from + 1 || self.records.back()?.0 != last {
            return None;
        }
        Some(
            self.records
                .iter()
                .filter(|(s, _)| *s > from)
                .map(|(_, r)| r.clone())
                .collect(),
        )
    }
}

/// A stable 64-bit hash (FNV-1a, then a finaliser): the same on every node and every build.
pub struct StableHash(u64);

impl Default for StableHash {
    fn default() -> StableHash {
        StableHash(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHash {
    pub fn bytes(&mut self, b: &[u8]) -> &mut StableHash {
        for x in b {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut StableHash {
        self.bytes(&v.to_le_bytes())
    }

    pub fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One point's share of a replica digest: its id, version, vector and payload.
pub fn point_hash(id: &PointId, version: u64, vector: &[f32], payload_json: &[u8]) -> u64 {
    let mut h = StableHash::default();
    match id {
        PointId::Num(n) => h.u64(0).u64(*n),
        PointId::Uuid(s) => h.u64(1).bytes(s.as_bytes()),
        PointId::Str(s) => h.u64(2).bytes(s.as_bytes()),
    };
    h.u64(version);
    for x in vector {
        h.bytes(&x.to_bits().to_le_bytes());
    }
    h.u64(payload_json.len() as u64).bytes(payload_json);
    h.finish()
}

/// The digest of a replica: the wrapping sum of its points' hashes, so it does not depend on
/// the order points are stored in.
pub fn digest_of(data: &ShardData) -> u64 {
    data.fold_points(0u64, |acc, id, version, vector, payload_json| {
        acc.wrapping_add(point_hash(id, version, vector, payload_json))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_answers_only_an_unbroken_run() {
        let mut t = Tail::new(100);
        for s in 1..=5 {
            t.push(s, Arc::new(vec![0; 10]));
        }
        assert_eq!(t.after(2, 5).map(|v| v.len()), Some(3));
        assert_eq!(t.after(0, 5).map(|v| v.len()), Some(5));
        assert_eq!(t.after(5, 5).map(|v| v.len()), Some(0));
        assert!(
            t.after(2, 6).is_none(),
            "the ring does not reach the last record"
        );
        for s in 6..=15 {
            t.push(s, Arc::new(vec![0; 10]));
        }
        assert!(t.after(2, 15).is_none(), "the oldest were dropped");
        assert_eq!(t.after(10, 15).map(|v| v.len()), Some(5));
        t.push(40, Arc::new(vec![0; 10]));
        assert!(t.after(15, 40).is_none(), "a gap clears the ring");
        assert_eq!(t.after(39, 40).map(|v| v.len()), Some(1));
    }

    #[test]
    fn a_pinned_tail_keeps_what_a_copy_needs() {
        let rec = || Arc::new(vec![0u8; 100]);
        let mut t = Tail::new(1000);
        for seq in 1..=5 {
            t.push(seq, rec());
        }
        t.pin(2, 5);
        for seq in 6..=40 {
            t.push(seq, rec());
        }
        // records up to the pin went as usual; everything after it stayed
        assert_eq!(t.first_seq(), Some(6));
        assert_eq!(t.after(5, 40).map(|v| v.len()), Some(35));
        t.unpin(2);
        t.push(41, rec());
        assert_eq!(t.first_seq(), Some(32), "unpinned: back to its limit");
    }

    #[test]
    fn point_hashes_see_every_part() {
        let id = PointId::Num(7);
        let base = point_hash(&id, 1, &[1.0, 2.0], b"{}");
        assert_ne!(base, point_hash(&PointId::Num(8), 1, &[1.0, 2.0], b"{}"));
        assert_ne!(base, point_hash(&id, 2, &[1.0, 2.0], b"{}"));
        assert_ne!(base, point_hash(&id, 1, &[1.0, 2.5], b"{}"));
        assert_ne!(base, point_hash(&id, 1, &[1.0, 2.0], b"{\"a\":1}"));
        assert_ne!(
            base,
            point_hash(&PointId::Str("7".into()), 1, &[1.0, 2.0], b"{}")
        );
        assert_eq!(base, point_hash(&id, 1, &[1.0, 2.0], b"{}"), "stable");
    }
}
