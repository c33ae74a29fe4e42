//! The compact, read-only HNSW layout and its search.

use crate::search::{Near, Scored, Scratch, with_scratch};
use crate::{Metric, kernels};

/// One layer above layer 0: only the nodes whose level reaches it, sorted by id, with their
/// neighbour lists in CSR form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UpperLayer {
    /// node ids on this layer, strictly increasing
    pub nodes: Vec<u32>,
    /// `nodes.len() + 1` offsets into `neighbors`
    pub offsets: Vec<u32>,
    pub neighbors: Vec<u32>,
}

impl UpperLayer {
    #[inline]
    fn neighbors_of(&self, node: u32) -> &[u32] {
        match self.nodes.binary_search(&node) {
            Ok(i) => {
                let (s, e) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
                &self.neighbors[s..e]
            }
            Err(_) => &[],
        }
    }

    fn memory_bytes(&self) -> usize {
        4 * (self.nodes.capacity() + self.offsets.capacity() + self.neighbors.capacity())
    }
}

/// An immutable HNSW graph over `len()` vectors with local ids `0..len()`.
///
/// Invariants (established by `build`, checked by `from_bytes`): `vectors.len() == n * dim`;
/// `l0_offsets` has `n + 1` non-decreasing entries ending at `l0_neighbors.len()`; every
/// neighbour id is `< n`; each upper layer's nodes are a subset of the layer below, its neighbour
/// ids are nodes of the same layer; `entry < n` is a node of the top layer when `n > 0`.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactGraph {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) n: usize,
    pub(crate) vectors: Vec<f32>,
    pub(crate) entry: u32,
    pub(crate) l0_offsets: Vec<u32>,
    pub(crate) l0_neighbors: Vec<u32>,
    /// `upper[i]` is layer `i + 1`
    pub(crate) upper: Vec<UpperLayer>,
}

pub static DCOUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
fn prefetch_mode() -> u32 {
    static M: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *M.get_or_init(|| {
        std::env::var("PF")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}
/// Internal distance, monomorphised per metric so the search loop has no metric branch.
trait Kernel {
    fn dist(a: &[f32], b: &[f32]) -> f32;
}
struct NegDot;
impl Kernel for NegDot {
    #[inline(always)]
    fn dist(a: &[f32], b: &[f32]) -> f32 {
        -kernels::dot(a, b)
    }
}
struct L2Sq;
impl Kernel for L2Sq {
    #[inline(always)]
    fn dist(a: &[f32], b: &[f32]) -> f32 {
        kernels::l2_sq(a, b)
    }
}

impl CompactGraph {
    /// An empty graph (no vectors).
    pub fn empty(dim: usize, metric: Metric) -> CompactGraph {
        CompactGraph {
            dim,
            metric,
            n: 0,
            vectors: Vec::new(),
            entry: 0,
            l0_offsets: vec![0],
            l0_neighbors: Vec::new(),
            upper: Vec::new(),
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Number of layers above layer 0.
    pub fn max_level(&self) -> usize {
        self.upper.len()
    }

    /// The vector with local id `local`.
    ///
    /// # Panics
    /// If `local >= len()` (local ids come from this graph's own results).
    pub fn vector(&self, local: u32) -> &[f32] {
        let s = local as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    /// All vectors, row `i` is local id `i`.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Layer-0 neighbours of `local` (empty for an unknown id).
    pub fn neighbors(&self, local: u32) -> &[u32] {
        let i = local as usize;
        match (self.l0_offsets.get(i), self.l0_offsets.get(i + 1)) {
            (Some(&s), Some(&e)) => &self.l0_neighbors[s as usize..e as usize],
            _ => &[],
        }
    }

    /// Number of nodes reachable from the entry point over layer-0 links (diagnostic: nodes that
    /// are not can only be found by brute force).
    pub fn reachable_from_entry(&self) -> usize {
        if self.n == 0 {
            return 0;
        }
        let mut seen = vec![false; self.n];
        let mut stack = vec![self.entry];
        seen[self.entry as usize] = true;
        let mut count = 1;
        while let Some(c) = stack.pop() {
            for &nb in self.neighbors(c) {
                if !seen[nb as usize] {
                    seen[nb as usize] = true;
                    count += 1;
                    stack.push(nb);
                }
            }
        }
        count
    }

    /// Heap bytes held by the graph (vectors, links) plus the struct itself. The per-thread search
    /// scratch (2 bytes per node of the largest graph a thread searched) is not included.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 4 * (self.vectors.capacity()
                + self.l0_offsets.capacity()
                + self.l0_neighbors.capacity())
            + self.upper.capacity() * std::mem::size_of::<UpperLayer>()
            + self
                .upper
                .iter()
                .map(UpperLayer::memory_bytes)
                .sum::<usize>()
    }

    /// Top-`k` nearest by internal distance, best first. Only nodes with `accept(local) == true`
    /// are returned, but rejected nodes are still traversed, so tombstones and filters do not cut
    /// the graph. Layer 0 is searched with `max(ef, k)` *accepted* results, so a filter that passes
    /// a fair fraction of the nodes still yields `k` results when that many are reachable.
    ///
    /// Returns an empty vector if `k == 0`, the graph is empty, `query.len() != dim()` or the
    /// query has a non-finite component (callers validate queries at their boundary).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        if k == 0 || self.n == 0 || query.len() != self.dim || !query.iter().all(|x| x.is_finite())
        {
            return Vec::new();
        }
        let ef = ef.max(k);
        with_scratch(|s| match self.metric {
            Metric::Cosine | Metric::Dot => self.search_with::<NegDot>(s, query, k, ef, accept),
            Metric::Euclid => self.search_with::<L2Sq>(s, query, k, ef, accept),
        })
    }

    fn search_with<K: Kernel>(
        &self,
        s: &mut Scratch,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        // Greedy descent through the upper layers (filters do not apply there).
        let mut cur = self.entry;
        let mut cur_d = K::dist(query, self.vector(cur));
        for layer in self.upper.iter().rev() {
            let mut changed = true;
            while changed {
                changed = false;
                for &nb in layer.neighbors_of(cur) {
                    let d = K::dist(query, self.vector(nb));
                    if d < cur_d {
                        cur_d = d;
                        cur = nb;
                        changed = true;
                    }
                }
            }
        }
        self.search_layer0::<K>(s, query, ef, accept, Scored { d: cur_d, id: cur });
        let mut out: Vec<(u32, f32)> = Vec::with_capacity(k.min(s.top.len()));
        let mut all: Vec<Scored> = s.top.drain().collect();
        all.sort_unstable();
        out.extend(all.into_iter().take(k).map(|c| (c.id, c.d)));
        out
    }

    /// hnswlib's `searchBaseLayerST`: expand the closest candidate until it is farther than the
    /// worst of `ef` accepted results.
    fn search_layer0<K: Kernel>(
        &self,
        s: &mut Scratch,
        query: &[f32],
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
        start: Scored,
    ) {
        s.begin(self.n);
        s.first_visit(start.id);
        s.cand.push(Near(start));
        if accept(start.id) {
            s.top.push(start);
        }
        let mut bound = if s.top.len() >= ef {
            start.d
        } else {
            f32::INFINITY
        };
        while let Some(Near(c)) = s.cand.pop() {
            if c.d > bound {
                break;
            }
            // Collect unvisited neighbours first, then compute distances in one run.
            let mut batch = std::mem::take(&mut s.batch);
            batch.clear();
            for &nb in self.neighbors(c.id) {
                if s.first_visit(nb) {
                    batch.push(nb);
                }
            }
            let mode = prefetch_mode();
            if mode == 1 {
                for &nb in &batch {
                    std::hint::black_box(self.vectors[nb as usize * self.dim]);
                }
            } else if mode == 2 {
                for &nb in &batch {
                    let b = nb as usize * self.dim;
                    std::hint::black_box(self.vectors[b]);
                    std::hint::black_box(self.vectors[b + self.dim / 2]);
                }
            }
            for (bi, &nb) in batch.iter().enumerate() {
                if mode == 3 {
                    if let Some(&nx) = batch.get(bi + 1) {
                        std::hint::black_box(self.vectors[nx as usize * self.dim]);
                    }
                }
                DCOUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let d = K::dist(query, self.vector(nb));
                if d < bound {
                    let e = Scored { d, id: nb };
                    s.cand.push(Near(e));
                    if accept(nb) {
                        s.top.push(e);
                        if s.top.len() > ef {
                            s.top.pop();
                        }
                        if s.top.len() >= ef {
                            bound = s.top.peek().map_or(f32::INFINITY, |w| w.d);
                        }
                    }
                }
            }
            s.batch = batch;
        }
    }
}
