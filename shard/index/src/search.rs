//! Per-thread search scratch: an epoch-stamped visited array and the two heaps, reused across
//! queries (and across graphs: the visited array grows to the largest graph searched on the thread).

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A node with its internal distance to the query. Ordered by distance (total order, so NaN
/// cannot break a heap), then by id, so results are deterministic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scored {
    pub d: f32,
    pub id: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

/// Min-heap adapter: `BinaryHeap<Near>` pops the closest node first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Near(pub Scored);
impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Near {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.cmp(&self.0)
    }
}

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
    fn heaps_order_as_intended() {
        let mut near = BinaryHeap::new();
        let mut far = BinaryHeap::new();
        for (d, id) in [(0.5f32, 1u32), (-1.0, 2), (3.0, 3)] {
            near.push(Near(Scored { d, id }));
            far.push(Scored { d, id });
        }
        assert_eq!(near.pop().map(|n| n.0.id), Some(2));
        assert_eq!(far.pop().map(|s| s.id), Some(3));
    }
}
