//! Graph construction with hnsw_rs and extraction into [`CompactGraph`].

use std::time::{Duration, Instant};

use hnsw_rs::prelude::{Distance, Hnsw};

use crate::graph::{CompactGraph, UpperLayer};
use crate::{GraphParams, IndexError, MAX_M, Metric, kernels};

/// Wall-clock time of each phase of [`CompactGraph::build_with_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// validation and hnsw_rs insertion (the bulk of the cost)
    pub hnsw_insert: Duration,
    /// copying the graph into the compact layout
    pub extract: Duration,
    /// freeing the hnsw_rs structure
    pub drop_hnsw: Duration,
}

/// hnsw_rs keeps at most 16 layers (levels 0..=15).
const HNSW_MAX_LAYERS: usize = 16;

/// The build-time distance handed to hnsw_rs. hnsw_rs asserts that distances are `>= 0` (and
/// panics on NaN), and only ever compares distances with each other, so any monotone transform of
/// the metric builds the same graph:
/// * Euclid: the L2 distance (anndists' SIMD kernel when the CPU has AVX2; squared L2 otherwise).
/// * Cosine: vectors are unit length, so `|a - b|^2 = 2 - 2 a.b` orders like `-dot`: L2 again.
/// * Dot (vectors of any length): `shift - dot` with `shift = max |x|^2` over the data set, which
///   is `>= 0` by Cauchy-Schwarz (clamped for rounding). A constant shift changes neither the
///   comparisons between distances to one point nor the neighbour-selection test
///   `dist(e, d) <= dist(e, q)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BuildDistance {
    metric: Metric,
    shift: f32,
    simd: bool,
}

impl Distance<f32> for BuildDistance {
    #[inline]
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        // `f32::max` also maps a NaN to 0, so hnsw_rs can never see one.
        match (self.metric, self.simd) {
            (Metric::Euclid | Metric::Cosine, true) => kernels::l2_sq_simd(va, vb),
            (Metric::Euclid, false) => kernels::l2_sq(va, vb).max(0.0),
            (Metric::Cosine | Metric::Dot, _) => (self.shift - kernels::dot(va, vb)).max(0.0),
        }
    }
}

/// Validates input and parameters; returns the number of vectors and the largest squared norm.
fn validate(vectors: &[f32], dim: usize, params: GraphParams) -> Result<(usize, f32), IndexError> {
    if dim == 0 {
        return Err(IndexError::ZeroDimension);
    }
    if !vectors.len().is_multiple_of(dim) {
        return Err(IndexError::RaggedSlab {
            len: vectors.len(),
            dim,
        });
    }
    let n = vectors.len() / dim;
    if n >= u32::MAX as usize {
        return Err(IndexError::TooManyVectors(n));
    }
    if !(2..=MAX_M).contains(&params.m) {
        return Err(IndexError::InvalidParams {
            name: "m",
            value: params.m,
            reason: "must be in 2..=256",
        });
    }
    if params.ef_construct == 0 {
        return Err(IndexError::InvalidParams {
            name: "ef_construct",
            value: 0,
            reason: "must be at least 1",
        });
    }
    let mut max_norm_sq = 0f32;
    for (index, row) in vectors.chunks_exact(dim).enumerate() {
        if !row.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NonFinite { index });
        }
        max_norm_sq = max_norm_sq.max(kernels::dot(row, row));
    }
    // |a - b|^2 <= 4 max|x|^2 and |a.b| <= max|x|^2: all distances stay finite.
    if !(4.0 * max_norm_sq).is_finite() {
        return Err(IndexError::Overflow);
    }
    Ok((n, max_norm_sq))
}

impl CompactGraph {
    /// Builds an HNSW graph with hnsw_rs over `n = vectors.len() / dim` vectors (row `i` gets local
    /// id `i`), then extracts it into the compact layout and drops the hnsw_rs structure.
    ///
    /// The graph stores its own copy of the vectors with tiny components flushed to zero (see
    /// [`crate::flush_tiny_components`]). Errors: zero `dim`, a slab that is not a multiple of
    /// `dim`, `m` outside 2..=256, `ef_construct == 0`, non-finite components, or norms so large that
    /// distances would overflow f32.
    ///
    /// Insertion runs on rayon (hnsw_rs's `parallel_insert`): inside `ThreadPool::install` it uses
    /// that pool, otherwise rayon's global pool (one thread per core), and the calling thread
    /// blocks until it is done. To bound a build to a known number of cores use
    /// [`CompactGraph::build_with_stats`] with `threads`.
    pub fn build(
        vectors: &[f32],
        dim: usize,
        metric: Metric,
        params: GraphParams,
    ) -> Result<CompactGraph, IndexError> {
        Self::build_with_stats(vectors, dim, metric, params, 0).map(|(g, _)| g)
    }

    /// [`CompactGraph::build`] with control over insertion threads, also returning how long each
    /// phase took. `threads`: 0 = the current rayon pool (as `build`); 1 = serial insertion on the
    /// calling thread (no rayon; the graph is then the same on every run); n > 1 = a dedicated
    /// rayon pool of n threads for this build (serial if it cannot be created).
    pub fn build_with_stats(
        vectors: &[f32],
        dim: usize,
        metric: Metric,
        params: GraphParams,
        threads: usize,
    ) -> Result<(CompactGraph, BuildStats), IndexError> {
        let t0 = Instant::now();
        let (n, max_norm_sq) = validate(vectors, dim, params)?;
        if n == 0 {
            return Ok((CompactGraph::empty(dim, metric), BuildStats::default()));
        }
        // Flushed copy: the graph's own slab (hnsw_rs keeps another copy until it is dropped).
        let mut vectors = vectors.to_vec();
        for row in vectors.chunks_exact_mut(dim) {
            kernels::flush_tiny(row);
        }
        let vectors = vectors;
        let dist = BuildDistance {
            metric,
            shift: max_norm_sq,
            simd: kernels::simd_l2_available(),
        };
        let hnsw: Hnsw<'static, f32, BuildDistance> =
            Hnsw::new(params.m, n, HNSW_MAX_LAYERS, params.ef_construct, dist);
        // The first insert sets the entry point. hnsw_rs lets a second concurrent insert that sees
        // no entry point yet return without linking, so the first point goes in alone.
        let rows: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).zip(0..).collect();
        if let Some((first, rest)) = rows.split_first() {
            hnsw.insert_slice(*first);
            let rest = rest.to_vec();
            let pool = match threads {
                0 | 1 => None,
                t => rayon::ThreadPoolBuilder::new().num_threads(t).build().ok(),
            };
            match (threads, pool) {
                (0, _) => hnsw.parallel_insert_slice(&rest),
                (_, Some(pool)) => pool.install(|| hnsw.parallel_insert_slice(&rest)),
                (_, None) => rest.iter().for_each(|r| hnsw.insert_slice(*r)),
            }
        }
        drop(rows);
        let t1 = Instant::now();
        let graph = extract(&hnsw, vectors, dim, metric, n)?;
        let t2 = Instant::now();
        drop(hnsw);
        let stats = BuildStats {
            hnsw_insert: t1 - t0,
            extract: t2 - t1,
            drop_hnsw: t2.elapsed(),
        };
        Ok((graph, stats))
    }
}

/// Copies hnsw_rs's graph (all layers) into the compact layout.
fn extract(
    hnsw: &Hnsw<'static, f32, BuildDistance>,
    vectors: Vec<f32>,
    dim: usize,
    metric: Metric,
    n: usize,
) -> Result<CompactGraph, IndexError> {
    let pi = hnsw.get_point_indexation();
    if pi.get_nb_point() != n {
        return Err(IndexError::Extraction("point count differs from input"));
    }
    let max_level = usize::from(hnsw.get_max_level_observed());
    let mut level: Vec<u8> = vec![u8::MAX; n];
    // raw[i][l]: neighbours of node i on layer l, for l <= level[i]
    let mut raw: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for point in pi {
        let id = point.get_origin_id();
        let lv = point.get_point_id().0;
        if id >= n || level[id] != u8::MAX || usize::from(lv) > max_level {
            return Err(IndexError::Extraction("unexpected point id or level"));
        }
        level[id] = lv;
        // A point can also hold "projection" links above its own level; they are never used.
        raw[id] = point
            .get_neighborhood_id()
            .into_iter()
            .take(usize::from(lv) + 1)
            .map(|layer| {
                layer
                    .into_iter()
                    .filter_map(|nb| u32::try_from(nb.d_id).ok())
                    .collect()
            })
            .collect();
    }
    if level.contains(&u8::MAX) {
        return Err(IndexError::Extraction("a vector is missing from the graph"));
    }
    // Any node of the top layer is a valid entry point; hnsw_rs uses the first to reach it.
    let entry = pi
        .get_layer_iterator(max_level)
        .next()
        .map(|p| p.get_origin_id())
        .and_then(|id| u32::try_from(id).ok())
        .filter(|&id| (id as usize) < n)
        .ok_or(IndexError::Extraction("no entry point on the top layer"))?;

    // Keep, per layer, neighbours that exist on that layer, without self-loops or duplicates,
    // in hnsw_rs's order (closest first).
    let clean = |l: usize, i: usize, list: &[u32]| -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(list.len());
        for &nb in list {
            let ok = (nb as usize) < n
                && nb as usize != i
                && usize::from(level[nb as usize]) >= l
                && !out.contains(&nb);
            if ok {
                out.push(nb);
            }
        }
        out
    };

    let list = |i: usize, l: usize| -> &[u32] { raw[i].get(l).map_or(&[], Vec::as_slice) };
    let mut l0_offsets = Vec::with_capacity(n + 1);
    let mut l0_neighbors = Vec::with_capacity((0..n).map(|i| list(i, 0).len()).sum());
    l0_offsets.push(0u32);
    for i in 0..n {
        l0_neighbors.extend(clean(0, i, list(i, 0)));
        l0_offsets.push(offset(l0_neighbors.len())?);
    }
    let mut upper = Vec::with_capacity(max_level);
    for l in 1..=max_level {
        let mut layer = UpperLayer {
            nodes: Vec::new(),
            offsets: vec![0],
            neighbors: Vec::new(),
        };
        for i in (0..n).filter(|&i| usize::from(level[i]) >= l) {
            layer.nodes.push(offset(i)?);
            layer.neighbors.extend(clean(l, i, list(i, l)));
            layer.offsets.push(offset(layer.neighbors.len())?);
        }
        upper.push(layer);
    }
    drop(raw);
    Ok(CompactGraph::from_parts(
        dim,
        metric,
        vectors,
        entry,
        l0_offsets,
        l0_neighbors,
        upper,
    ))
}

fn offset(x: usize) -> Result<u32, IndexError> {
    u32::try_from(x).map_err(|_| IndexError::Extraction("graph too large for u32 offsets"))
}
