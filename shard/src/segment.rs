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
    /// Built with a graph per value of the partition field ([`Groups`]).
    Grouped(Arc<Groups>),
}

/// A segment built for per-tenant search (Qdrant's `payload_m`): its points grouped by the
/// value of the partition field (the collection's `is_tenant` keyword index), each group large
/// enough with a graph of its own, so a query pinned to one tenant walks that tenant's graph
/// (or scans its points) and nothing else. With `hnsw_config.m > 0` there is also a graph over
/// the whole segment, for queries not pinned to a tenant; with `m: 0` those scan exactly.
#[derive(Debug)]
pub struct Groups {
    /// The graph over every point (`m > 0`); it holds the rows.
    pub global: Option<CompactGraph>,
    /// The rows when there is no global graph.
    pub rows: Vec<f32>,
    /// The field the points are grouped by (None: no groups).
    pub field: Option<String>,
    pub by_value: std::collections::HashMap<String, Group>,
}

/// One value's points of a [`Groups`] segment.
#[derive(Debug)]
pub struct Group {
    /// Segment offsets of the group's points, ascending; graph node `i` is `offs[i]`.
    pub offs: Vec<u32>,
    /// Built when the group has at least [`GROUP_GRAPH_MIN`] points; smaller ones are scanned.
    pub graph: Option<CompactGraph>,
}

/// Smallest group that gets a graph of its own: a scan of fewer points is as fast.
pub const GROUP_GRAPH_MIN: usize = 1000;

impl Groups {
    fn vector(&self, dim: usize, off: u32) -> &[f32] {
        match &self.global {
            Some(g) => g.vector(off),
            None => {
                let s = off as usize * dim;
                &self.rows[s..s + dim]
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.global.as_ref().map_or(0, |g| g.memory_bytes())
            + self.rows.capacity() * 4
            + self
                .by_value
                .iter()
                .map(|(k, g)| {
                    k.len()
                        + g.offs.capacity() * 4
                        + g.graph.as_ref().map_or(0, |g| g.memory_bytes())
                })
                .sum::<usize>()
    }
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

    /// Whether the segment is in its final, built form (a graph, or groups).
    pub fn is_indexed(&self) -> bool {
        matches!(self.vectors, Vectors::Graph(_) | Vectors::Grouped(_))
    }

    pub fn vector(&self, off: u32) -> &[f32] {
        match &self.vectors {
            Vectors::Plain(v) => {
                let s = off as usize * self.dim;
                &v[s..s + self.dim]
            }
            Vectors::Graph(g) => g.vector(off),
            Vectors::Grouped(g) => g.vector(self.dim, off),
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
    /// `tenant`: (field, value) such that every accepted point has that value in that field
    /// (the filter pins it), so a segment grouped by that field searches that group only.
    #[allow(clippy::too_many_arguments, reason = "one search's parameters")]
    pub fn search(
        &self,
        metric: Metric,
        query: &[f32],
        k: usize,
        ef: usize,
        exact: bool,
        tenant: Option<(&str, &str)>,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let live = |off: u32| !self.deleted.get(off) && accept(off);
        match &self.vectors {
            Vectors::Plain(v) => tessera_index::brute_force(v, self.dim, metric, query, k, &live),
            Vectors::Graph(_) if exact => exact_scan(self, metric, query, k, &live),
            Vectors::Graph(g) => g.search(query, k, ef, &live),
            Vectors::Grouped(gs) => match tenant.filter(|(f, _)| gs.field.as_deref() == Some(*f)) {
                Some((_, v)) => {
                    let Some(group) = gs.by_value.get(v) else {
                        // no point of this segment has that value
                        return Vec::new();
                    };
                    match &group.graph {
                        Some(g) if !exact => {
                            let offs = &group.offs;
                            g.search(query, k, ef, &|i: u32| live(offs[i as usize]))
                                .into_iter()
                                .map(|(i, d)| (offs[i as usize], d))
                                .collect()
                        }
                        _ => {
                            let offs: Vec<u32> =
                                group.offs.iter().copied().filter(|o| live(*o)).collect();
                            self.search_among(metric, query, k, &offs)
                        }
                    }
                }
                None => match &gs.global {
                    Some(g) if !exact => g.search(query, k, ef, &live),
                    Some(_) => exact_scan(self, metric, query, k, &live),
                    None => tessera_index::brute_force(&gs.rows, self.dim, metric, query, k, &live),
                },
            },
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
            Vectors::Grouped(g) => g.memory_bytes(),
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
        let r = s.search(Metric::Euclid, &[1.0, 0.0], 2, 16, false, None, &|_| true);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
    }
}
