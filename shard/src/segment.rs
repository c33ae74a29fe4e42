//! Segments: the units a shard's vectors are searched in.
//!
//! A shard appends new points to its one *tail* segment, searched by exact scan. When the tail
//! reaches the indexing threshold it is *sealed* (no more appends) and a graph is built for it in
//! the background; sealed segments are merged into larger ones over time. Deletes and overwrites
//! never change a sealed segment's vectors: they set a tombstone bit, and tombstoned points are
//! skipped by every search and dropped when the segment is rebuilt.

use std::sync::Arc;

use tessera_index::{CompactGraph, Metric};

use crate::point::PointId;

/// A set of local offsets, as bits.
#[derive(Debug, Clone, Default)]
pub struct BitSet {
    words: Vec<u64>,
    ones: usize,
}

impl BitSet {
    pub fn with_len(len: usize) -> BitSet {
        BitSet {
            words: vec![0; len.div_ceil(64)],
            ones: 0,
        }
    }
    pub fn get(&self, i: u32) -> bool {
        let i = i as usize;
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
    /// Sets bit `i`, growing as needed; returns whether it was newly set.
    pub fn set(&mut self, i: u32) -> bool {
        let i = i as usize;
        if i / 64 >= self.words.len() {
            self.words.resize(i / 64 + 1, 0);
        }
        let w = &mut self.words[i / 64];
        let bit = 1u64 << (i % 64);
        let fresh = *w & bit == 0;
        *w |= bit;
        if fresh {
            self.ones += 1;
        }
        fresh
    }
    pub fn count(&self) -> usize {
        self.ones
    }
    /// Every bit of `0..len` set.
    pub fn full(len: usize) -> BitSet {
        let mut words = vec![u64::MAX; len.div_ceil(64)];
        if !len.is_multiple_of(64)
            && let Some(last) = words.last_mut()
        {
            *last = (1u64 << (len % 64)) - 1;
        }
        BitSet { words, ones: len }
    }
    /// Clears bit `i`; returns whether it was set.
    pub fn unset(&mut self, i: u32) -> bool {
        let i = i as usize;
        let Some(w) = self.words.get_mut(i / 64) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        let was = *w & bit != 0;
        *w &= !bit;
        if was {
            self.ones -= 1;
        }
        was
    }
}

/// Where a segment's vectors live.
#[derive(Debug)]
pub enum Vectors {
    /// Contiguous rows, searched by exact scan.
    Plain(Vec<f32>),
    /// Inside a graph, which holds its own copy of the rows.
    Graph(Arc<CompactGraph>),
}

#[derive(Debug)]
pub struct Segment {
    /// Unique within the shard for the shard's lifetime.
    pub id: u64,
    pub dim: usize,
    /// Local offset -> point id.
    pub ids: Vec<PointId>,
    pub vectors: Vectors,
    pub deleted: BitSet,
    /// Sealed segments take no appends (they may be waiting for their graph).
    pub sealed: bool,
    /// The file its graph is persisted in ([`crate::segfile`]), once it has one.
    pub file: Option<String>,
}

impl Segment {
    pub fn new_tail(id: u64, dim: usize) -> Segment {
        Segment {
            id,
            dim,
            ids: Vec::new(),
            vectors: Vectors::Plain(Vec::new()),
            deleted: BitSet::default(),
            sealed: false,
            file: None,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn live(&self) -> usize {
        self.ids.len() - self.deleted.count()
    }

    pub fn is_indexed(&self) -> bool {
        matches!(self.vectors, Vectors::Graph(_))
    }

    pub fn vector(&self, off: u32) -> &[f32] {
        match &self.vectors {
            Vectors::Plain(v) => {
                let s = off as usize * self.dim;
                &v[s..s + self.dim]
            }
            Vectors::Graph(g) => g.vector(off),
        }
    }

    /// Appends a point to an unsealed plain segment; returns its offset.
    pub fn push(&mut self, id: PointId, vector: &[f32]) -> u32 {
        debug_assert!(!self.sealed && vector.len() == self.dim);
        let off = self.ids.len() as u32;
        self.ids.push(id);
        if let Vectors::Plain(v) = &mut self.vectors {
            v.extend_from_slice(vector);
        }
        off
    }

    /// Nearest `k` live points accepted by `accept`, by internal distance, best first.
    pub fn search(
        &self,
        metric: Metric,
        query: &[f32],
        k: usize,
        ef: usize,
        exact: bool,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let live = |off: u32| !self.deleted.get(off) && accept(off);
        match &self.vectors {
            Vectors::Plain(v) => tessera_index::brute_force(v, self.dim, metric, query, k, &live),
            Vectors::Graph(g) if exact => exact_scan(self, metric, query, k, &live),
            Vectors::Graph(g) => g.search(query, k, ef, &live),
        }
    }

    /// Exact scan over the offsets `offs` only (a selective filter's matches).
    pub fn search_among(
        &self,
        metric: Metric,
        query: &[f32],
        k: usize,
        offs: &[u32],
    ) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = offs
            .iter()
            .map(|&o| (o, tessera_index::distance(metric, query, self.vector(o))))
            .collect();
        top_k(&mut out, k);
        out
    }

    pub fn memory_bytes(&self) -> usize {
        let vectors = match &self.vectors {
            Vectors::Plain(v) => v.capacity() * 4,
            Vectors::Graph(g) => g.memory_bytes(),
        };
        vectors
            + self.ids.capacity() * std::mem::size_of::<PointId>()
            + self.deleted.words.len() * 8
    }
}

fn exact_scan(
    seg: &Segment,
    metric: Metric,
    query: &[f32],
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<(u32, f32)> {
    let offs: Vec<u32> = (0..seg.len() as u32).filter(|o| accept(*o)).collect();
    seg.search_among(metric, query, k, &offs)
}

/// Keeps the best `k` by distance (ties by lower offset), sorted best first.
pub fn top_k(v: &mut Vec<(u32, f32)>, k: usize) {
    let cmp = |a: &(u32, f32), b: &(u32, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
    if v.len() > k && k > 0 {
        v.select_nth_unstable_by(k - 1, cmp);
        v.truncate(k);
    } else if k == 0 {
        v.clear();
    }
    v.sort_unstable_by(cmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_counts_once() {
        let mut b = BitSet::with_len(3);
        assert!(b.set(2));
        assert!(!b.set(2));
        assert!(b.set(200));
        assert!(b.get(200) && b.get(2) && !b.get(1) && !b.get(100_000));
        assert_eq!(b.count(), 2);
        let mut f = BitSet::full(70);
        assert_eq!(f.count(), 70);
        assert!(f.get(69) && !f.get(70));
        assert!(f.unset(69) && !f.unset(69) && !f.unset(500));
        assert_eq!(f.count(), 69);
    }

    #[test]
    fn tail_search_skips_tombstones() {
        let mut s = Segment::new_tail(1, 2);
        s.push(PointId::Num(1), &[1.0, 0.0]);
        s.push(PointId::Num(2), &[0.9, 0.1]);
        s.push(PointId::Num(3), &[0.0, 1.0]);
        s.deleted.set(0);
        let r = s.search(Metric::Euclid, &[1.0, 0.0], 2, 16, false, &|_| true);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
    }
}
