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
/// panics on NaN), so inner products are shifted by a bound on `|a| * |b|`: `shift - dot` with
/// `shift = max |x|^2` over the data set is `>= 0` by Cauchy-Schwarz (clamped for rounding).
/// A constant shift changes neither comparisons between distances to the same point nor the
/// neighbour-selection heuristic's `dist(e, d) <= dist(e, q)` test, so the graph is the one the
/// unshifted `-dot` would give. Euclid uses the squared L2 distance, which orders like L2.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BuildDistance {
    metric: Metric,
    shift: f32,
}

impl Distance<f32> for BuildDistance {
    #[inline]
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        match self.metric {
            // `f32::max` also maps a NaN to 0, so hnsw_rs can never see one.
            Metric::Cosine | Metric::Dot => (self.shift - kernels::dot(va, vb)).max(0.0),
            Metric::Euclid => kernels::l2_sq(va, vb).max(0.0),
        }
    }
}

/// Validates input and parameters; returns the number of vectors and the largest squared norm.
fn validate(vectors: &[f32], dim: usize, params: GraphParams) -> Result<(usize, f32), IndexError> {
    if dim == 0 {
        return Err(IndexError::ZeroDimension);
    }
    if vectors.len() % dim != 0 {
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
    /// Insertion runs on rayon (`parallel_insert`): inside `ThreadPool::install` it uses that pool,
    /// otherwise rayon's global pool (one thread per core).
    pub fn build(
        vectors: &[f32],
        dim: usize,
        metric: Metric,
        params: GraphParams,
    ) -> Result<CompactGraph, IndexError> {
        Self::build_with_stats(vectors, dim, metric, params).map(|(g, _)| g)
    }

    /// [`CompactGraph::build`], also returning how long each phase took.
    pub fn build_with_stats(
        vectors: &[f32],
        dim: usize,
        metric: Metric,
        params: GraphParams,
    ) -> Result<(CompactGraph, BuildStats), IndexError> {
        let t0 = Instant::now();
        let (n, max_norm_sq) = validate(vectors, dim, params)?;
        if n == 0 {
            return Ok((CompactGraph::empty(dim, metric), BuildStats::default()));
        }
        let dist = BuildDistance {
            metric,
            shift: max_norm_sq,
        };
        let hnsw: Hnsw<'static, f32, BuildDistance> =
            Hnsw::new(params.m, n, HNSW_MAX_LAYERS, params.ef_construct, dist);
        // The first insert sets the entry point. hnsw_rs lets a second concurrent insert that sees
        // no entry point yet return without linking, so the first point goes in alone.
        let rows: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).zip(0..).collect();
        if let Some((first, rest)) = rows.split_first() {
            hnsw.insert_slice(*first);
            hnsw.parallel_insert_slice(&rest.to_vec());
        }
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
    vectors: &[f32],
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
    // raw[l][i]: neighbours of node i on layer l (only for l <= level[i])
    let mut raw: Vec<Vec<Vec<u32>>> = vec![vec![Vec::new(); n]; max_level + 1];
    for point in pi {
        let id = point.get_origin_id();
        let lv = point.get_point_id().0;
        if id >= n || level[id] != u8::MAX || usize::from(lv) > max_level {
            return Err(IndexError::Extraction("unexpected point id or level"));
        }
        level[id] = lv;
        // A point can also hold "projection" links above its own level; they are never used.
        for (l, layer) in point
            .get_neighborhood_id()
            .into_iter()
            .enumerate()
            .take(usize::from(lv) + 1)
        {
            raw[l][id] = layer
                .into_iter()
                .filter_map(|nb| u32::try_from(nb.d_id).ok())
                .collect();
        }
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

    let mut l0_offsets = Vec::with_capacity(n + 1);
    let mut l0_neighbors = Vec::with_capacity(raw[0].iter().map(Vec::len).sum());
    l0_offsets.push(0u32);
    for (i, list) in raw[0].iter().enumerate() {
        l0_neighbors.extend(clean(0, i, list));
        l0_offsets.push(offset(l0_neighbors.len())?);
    }
    let mut upper = Vec::with_capacity(max_level);
    for (l, lists) in raw.iter().enumerate().skip(1) {
        let mut layer = UpperLayer {
            nodes: Vec::new(),
            offsets: vec![0],
            neighbors: Vec::new(),
        };
        for (i, list) in lists.iter().enumerate() {
            if usize::from(level[i]) >= l {
                layer.nodes.push(offset(i)?);
                layer.neighbors.extend(clean(l, i, list));
                layer.offsets.push(offset(layer.neighbors.len())?);
            }
        }
        upper.push(layer);
    }
    Ok(CompactGraph {
        dim,
        metric,
        n,
        vectors: vectors.to_vec(),
        entry,
        l0_offsets,
        l0_neighbors,
        upper,
    })
}

fn offset(x: usize) -> Result<u32, IndexError> {
    u32::try_from(x).map_err(|_| IndexError::Extraction("graph too large for u32 offsets"))
}
