//! Vector index engine for tessera shards.
//!
//! Graphs are **built** with hnsw_rs (mandated; `parallel_insert`), then **extracted** into
//! [`CompactGraph`]: an immutable layout with neighbour lists in flat `u32` arrays and all vectors in
//! one contiguous slab. Queries run on our own search code (epoch-stamped visited array and heaps
//! reused per thread, no allocation per query apart from the result), which is several times faster
//! than searching hnsw_rs directly. The hnsw_rs structure (about 3.4 KB per vector) is dropped right
//! after extraction.
//!
//! Distances are "lower is better" internally (see [`distance`]); [`score_from_distance`] turns them
//! into the score a Qdrant-compatible API returns.

mod brute;
mod build;
mod codec;
mod graph;
mod kernels;
mod search;

pub use brute::brute_force;
pub use build::BuildStats;
pub use graph::CompactGraph;

/// Default `ef` for layer-0 search (callers use `max(DEFAULT_EF, k)`). With the default
/// [`GraphParams`] on docs-384 (20 000 real 384-d embeddings) recall@10 is 0.95 at ef 24 and about
/// 0.975 at 40 (docs/benchmarks.md); the margin covers build-to-build variation (parallel inserts
/// are not deterministic) and the slow loss of recall as shards grow. Qdrant's own default is
/// `ef_construct` (100): higher recall, about 2x slower.
pub const DEFAULT_EF: usize = 40;

/// Largest `m` hnsw_rs accepts (it calls `process::exit` above this).
pub const MAX_M: usize = 256;

/// Similarity used by a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Cosine similarity. The caller has already L2-normalised stored vectors and queries, so this
    /// is the inner product; internal distance `-dot`.
    Cosine,
    /// Raw inner product (vectors not normalised, maximum inner product search); internal
    /// distance `-dot`.
    Dot,
    /// Euclidean; internal distance is the squared L2 distance.
    Euclid,
}

/// Internal distance between two vectors, lower is better: `-dot` for [`Metric::Cosine`] and
/// [`Metric::Dot`], squared L2 for [`Metric::Euclid`]. Only the common prefix of `a` and `b` is
/// compared; callers check dimensions at their boundary.
#[inline]
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => -kernels::dot(a, b),
        Metric::Euclid => kernels::l2_sq(a, b),
    }
}

/// Sets the components of `v` smaller than `1e-20 * |v|` (and subnormal ones) to zero.
///
/// Such components change no distance by more than 1e-20 relative, far below f32 resolution, but
/// real embeddings contain a few (docs-384 has about two per vector near 1e-36), and each product
/// with one is a subnormal float, which the CPU handles in microcode: distance kernels run about
/// 2.3x slower on unflushed data. [`CompactGraph::build`] and [`CompactGraph::search`] flush their
/// own copies; callers that run [`brute_force`] over their own slab should store vectors flushed.
pub fn flush_tiny_components(v: &mut [f32]) {
    kernels::flush_tiny(v)
}

/// Converts an internal distance to the score Qdrant returns: the inner product for
/// [`Metric::Cosine`] / [`Metric::Dot`] (higher is better), the Euclidean distance for
/// [`Metric::Euclid`] (lower is better).
#[inline]
pub fn score_from_distance(metric: Metric, d: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => -d,
        Metric::Euclid => d.max(0.0).sqrt(),
    }
}

/// HNSW construction parameters (Qdrant's names and defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphParams {
    /// Links per node on the upper layers; layer 0 keeps up to `2 * m`. Valid range 2..=[`MAX_M`].
    pub m: usize,
    /// Candidate list size during construction (at least 1).
    pub ef_construct: usize,
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams {
            m: 16,
            ef_construct: 100,
        }
    }
}

/// Errors of this crate. Every error is caused by the input (parameters, vectors or bytes).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("dimension must be positive")]
    ZeroDimension,
    #[error("vector slab of {len} floats is not a multiple of dimension {dim}")]
    RaggedSlab { len: usize, dim: usize },
    #[error("too many vectors for one graph: {0}")]
    TooManyVectors(usize),
    #[error("invalid graph parameter {name} = {value}: {reason}")]
    InvalidParams {
        name: &'static str,
        value: usize,
        reason: &'static str,
    },
    #[error("vector {index} has a non-finite component")]
    NonFinite { index: usize },
    #[error("vector norms are too large for f32 distances")]
    Overflow,
    #[error("graph extraction from hnsw_rs failed: {0}")]
    Extraction(&'static str),
    #[error("corrupt index bytes: {0}")]
    Corrupt(&'static str),
    #[error("unsupported index format version {0}")]
    UnsupportedVersion(u8),
}
