//! Per-thread search scratch: an epoch-stamped visited array and the two heaps, reused across
//! queries (and across graphs: the visited array grows to the largest graph searched on the thread).

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A node with its internal distance to the query, packed into one `u64` so heap comparisons are
/// a single integer compare: the distance's bits mapped to an order-preserving `u32` (the order of
/// `f32::total_cmp`, so even a NaN cannot break a heap) in the high half, the id in the low half
/// (ties go to the lower id, so results are deterministic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Scored(u64);

impl Scored {
    #[inline(always)]
    pub fn new(d: f32, id: u32) -> Scored {
        let b = d.to_bits();
        let ordered = if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        };
        Scored((u64::from(ordered) << 32) | u64::from(id))
    }

    #[inline(always)]
    pub fn d(self) -> f32 {
        let ordered = (self.0 >> 32) as u32;
        let b = if ordered & 0x8000_0000 != 0 {
            ordered & 0x7fff_ffff
        } else {
            !ordered
        };
        f32::from_bits(b)
    }

    #[inline(always)]
    pub fn id(self) -> u32 {
        self.0 as u32
    }
}

/// Min-heap adapter: `BinaryHeap<Near>` pops the closest node first.
pub(crate) type Near = Reverse<Scored>;

#[derive(Default)]
pub(crate) struct Scratch {
    marks: Vec<u16>,
    epoch: u16,
    /// candidates still to expand, closest first
    pub cand: BinaryHeap<Near>,
    /// best accepted results so far, worst on top
    pub top: BinaryHeap<Scored>,
    /// unvisited neighbours of the node being expanded
    pub batch: Vec<u32>,
    /// the query, with tiny components flushed
    pub query: Vec<f32>,
    /// final results before conversion
    pub best: Vec<Scored>,
}

impl Scratch {
    /// Starts a new query over a graph of `n` nodes: nothing is visited afterwards.
    pub fn begin(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
        self.cand.clear();
        self.top.clear();
        self.batch.clear();
    }

    /// Marks `id` visited; returns true if it was not visited before in this query.
    #[inline(always)]
    pub fn first_visit(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }

    /// Bytes held by this scratch (for tests and diagnostics).
    #[cfg(test)]
    pub fn capacity_bytes(&self) -> usize {
        self.marks.capacity() * 2
    }
}

thread_local! {
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch. The scratch is taken out of the thread-local for the
/// duration, so an `accept` callback that searches again on the same thread simply gets a fresh
/// (empty) one; a panic inside `f` loses the scratch but never poisons anything.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.try_with(Cell::take).unwrap_or_default();
    let r = f(&mut s);
    // Fails only while the thread is being torn down; the scratch is then just dropped.
    let _ = SCRATCH.try_with(|c| c.set(s));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_reset_visits_and_wrap_cleanly() {
        let mut s = Scratch::default();
        s.begin(10);
        assert!(s.first_visit(3));
        assert!(!s.first_visit(3));
        for _ in 0..70_000 {
            s.begin(10);
            assert!(s.first_visit(3));
        }
        s.begin(20);
        assert!(s.first_visit(19));
        assert!(s.capacity_bytes() >= 40);
    }

    #[test]
    fn nested_use_gets_a_fresh_scratch() {
        let r = with_scratch(|outer| {
            outer.begin(4);
            assert!(outer.first_visit(1));
            with_scratch(|inner| {
                inner.begin(4);
                inner.first_visit(1)
            })
        });
        assert!(r);
    }

    #[test]
    fn packed_scores_round_trip_and_order_like_total_cmp() {
        let ds = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-38,
            2.0,
            f32::MAX,
            f32::INFINITY,
        ];
        for (i, &a) in ds.iter().enumerate() {
            let s = Scored::new(a, 7);
            assert_eq!(s.d().to_bits(), a.to_bits());
            assert_eq!(s.id(), 7);
            for &b in &ds[i + 1..] {
                assert!(Scored::new(a, 9) < Scored::new(b, 1), "{a} < {b}");
            }
        }
        assert!(Scored::new(1.0, 1) < Scored::new(1.0, 2));
    }

    #[test]
    fn heaps_order_as_intended() {
        let mut near = BinaryHeap::new();
        let mut far = BinaryHeap::new();
        for (d, id) in [(0.5f32, 1u32), (-1.0, 2), (3.0, 3)] {
            near.push(Reverse(Scored::new(d, id)));
            far.push(Scored::new(d, id));
        }
        assert_eq!(near.pop().map(|n| n.0.id()), Some(2));
        assert_eq!(far.pop().map(|s| s.id()), Some(3));
    }
}
