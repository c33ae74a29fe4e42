//! The compact, read-only HNSW layout and its search.

use std::cmp::Reverse;

use crate::search::{Scored, Scratch, with_scratch};
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
    /// squared norm of each vector (Cosine / Dot only; derived, not persisted)
    pub(crate) norms_sq: Vec<f32>,
}

/// Ordering key of a node for the current query, lower is better. Monomorphised per metric and
/// kernel so the search loop has no branch on either.
trait Scorer {
    /// True when keys are exact internal distances (no rescoring of the results needed).
    const EXACT: bool;
    fn key(&self, v: &[f32], id: u32) -> f32;
}

/// `-dot`, portable kernel.
struct ExactDot<'a>(&'a [f32]);
impl Scorer for ExactDot<'_> {
    const EXACT: bool = true;
    #[inline(always)]
    fn key(&self, v: &[f32], _: u32) -> f32 {
        -kernels::dot(self.0, v)
    }
}

/// Squared L2, portable kernel.
struct ExactL2<'a>(&'a [f32]);
impl Scorer for ExactL2<'_> {
    const EXACT: bool = true;
    #[inline(always)]
    fn key(&self, v: &[f32], _: u32) -> f32 {
        kernels::l2_sq(self.0, v)
    }
}

/// `|q - v|^2 - |v|^2 = |q|^2 - 2 q.v`: orders like `-dot`, computed with the SIMD L2 kernel.
struct SimdDot<'a> {
    q: &'a [f32],
    norms_sq: &'a [f32],
}
impl Scorer for SimdDot<'_> {
    const EXACT: bool = false;
    #[inline(always)]
    fn key(&self, v: &[f32], id: u32) -> f32 {
        kernels::l2_sq_simd(self.q, v) - self.norms_sq[id as usize]
    }
}

/// Squared L2 with the SIMD kernel (within a few ulp of the exact one).
struct SimdL2<'a>(&'a [f32]);
impl Scorer for SimdL2<'_> {
    const EXACT: bool = false;
    #[inline(always)]
    fn key(&self, v: &[f32], _: u32) -> f32 {
        kernels::l2_sq_simd(self.0, v)
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
            norms_sq: Vec::new(),
        }
    }

    /// Assembles a graph from validated parts: derives the norms and trims capacity.
    pub(crate) fn from_parts(
        dim: usize,
        metric: Metric,
        vectors: Vec<f32>,
        entry: u32,
        l0_offsets: Vec<u32>,
        l0_neighbors: Vec<u32>,
        upper: Vec<UpperLayer>,
    ) -> CompactGraph {
        let n = vectors.len() / dim.max(1);
        let norms_sq = match metric {
            Metric::Cosine | Metric::Dot => vectors
                .chunks_exact(dim.max(1))
                .map(|v| kernels::dot(v, v))
                .collect(),
            Metric::Euclid => Vec::new(),
        };
        let mut g = CompactGraph {
            dim,
            metric,
            n,
            vectors,
            entry,
            l0_offsets,
            l0_neighbors,
            upper,
            norms_sq,
        };
        g.shrink_to_fit();
        g
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.vectors.shrink_to_fit();
        self.l0_offsets.shrink_to_fit();
        self.l0_neighbors.shrink_to_fit();
        for l in &mut self.upper {
            l.nodes.shrink_to_fit();
            l.offsets.shrink_to_fit();
            l.neighbors.shrink_to_fit();
        }
        self.upper.shrink_to_fit();
        self.norms_sq.shrink_to_fit();
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
                + self.l0_neighbors.capacity()
                + self.norms_sq.capacity())
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
        with_scratch(|s| {
            let mut q = std::mem::take(&mut s.query);
            q.clear();
            q.extend_from_slice(query);
            kernels::flush_tiny(&mut q);
            // Same bound as for stored vectors (build / from_bytes): no distance can overflow.
            let out = if (4.0 * kernels::dot(&q, &q)).is_finite() {
                match (self.metric, kernels::simd_l2_available()) {
                    (Metric::Cosine | Metric::Dot, true) => {
                        let sc = SimdDot {
                            q: &q,
                            norms_sq: &self.norms_sq,
                        };
                        self.search_with(s, &sc, &q, k, ef, accept)
                    }
                    (Metric::Cosine | Metric::Dot, false) => {
                        self.search_with(s, &ExactDot(&q), &q, k, ef, accept)
                    }
                    (Metric::Euclid, true) => self.search_with(s, &SimdL2(&q), &q, k, ef, accept),
                    (Metric::Euclid, false) => self.search_with(s, &ExactL2(&q), &q, k, ef, accept),
                }
            } else {
                Vec::new()
            };
            s.query = q;
            out
        })
    }

    fn search_with<S: Scorer>(
        &self,
        s: &mut Scratch,
        sc: &S,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        // Greedy descent through the upper layers (filters do not apply there).
        let mut cur = self.entry;
        let mut cur_d = sc.key(self.vector(cur), cur);
        for layer in self.upper.iter().rev() {
            let mut changed = true;
            while changed {
                changed = false;
                for &nb in layer.neighbors_of(cur) {
                    let d = sc.key(self.vector(nb), nb);
                    if d < cur_d {
                        cur_d = d;
                        cur = nb;
                        changed = true;
                    }
                }
            }
        }
        self.search_layer0(s, sc, ef, accept, Scored::new(cur_d, cur));
        let mut best = std::mem::take(&mut s.best);
        best.clear();
        best.extend(s.top.drain());
        best.sort_unstable();
        best.truncate(k);
        if !S::EXACT {
            // Keys came from the SIMD L2 kernel: report exact internal distances (and order by
            // them) for the k results.
            for e in &mut best {
                let id = e.id();
                *e = Scored::new(crate::distance(self.metric, query, self.vector(id)), id);
            }
            best.sort_unstable();
        }
        let out = best.iter().map(|c| (c.id(), c.d())).collect();
        s.best = best;
        out
    }

    /// hnswlib's `searchBaseLayerST`: expand the closest candidate until it is farther than the
    /// worst of `ef` accepted results.
    fn search_layer0<S: Scorer>(
        &self,
        s: &mut Scratch,
        sc: &S,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
        start: Scored,
    ) {
        s.begin(self.n);
        s.first_visit(start.id());
        s.cand.push(Reverse(start));
        if accept(start.id()) {
            s.top.push(start);
        }
        let mut bound = if s.top.len() >= ef {
            start.d()
        } else {
            f32::INFINITY
        };
        while let Some(Reverse(c)) = s.cand.pop() {
            if c.d() > bound {
                break;
            }
            // Collect unvisited neighbours first, then compute distances in one run.
            let mut batch = std::mem::take(&mut s.batch);
            batch.clear();
            for &nb in self.neighbors(c.id()) {
                if s.first_visit(nb) {
                    batch.push(nb);
                }
            }
            for &nb in &batch {
                let d = sc.key(self.vector(nb), nb);
                if d < bound {
                    let e = Scored::new(d, nb);
                    s.cand.push(Reverse(e));
                    if accept(nb) {
                        s.top.push(e);
                        if s.top.len() > ef {
                            s.top.pop();
                        }
                        if s.top.len() >= ef {
                            bound = s.top.peek().map_or(f32::INFINITY, |w| w.d());
                        }
                    }
                }
            }
            s.batch = batch;
        }
    }
}
