//! Exact search over a contiguous slab.

use std::collections::BinaryHeap;

use crate::search::Scored;
use crate::{Metric, distance, kernels};

/// Exact top-`k` by internal distance over `vectors` (row `i` has local id `i`), best first; ties
/// go to the lower id. Only rows with `accept(i) == true` are considered. Returns an empty vector
/// if `dim == 0` or `query.len() != dim`; a trailing partial row is ignored. Distances are those
/// of [`distance`] with the query's tiny components flushed (see [`crate::flush_tiny_components`];
/// store `vectors` flushed too for full speed).
pub fn brute_force(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    query: &[f32],
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<(u32, f32)> {
    if k == 0 || dim == 0 || query.len() != dim {
        return Vec::new();
    }
    let mut q = query.to_vec();
    kernels::flush_tiny(&mut q);
    let query = &q[..];
    let mut top: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
    for (i, row) in vectors.chunks_exact(dim).enumerate() {
        let Ok(id) = u32::try_from(i) else { break };
        if !accept(id) {
            continue;
        }
        let e = Scored::new(distance(metric, query, row), id);
        if top.len() < k {
            top.push(e);
        } else if top.peek().is_some_and(|w| e < *w) {
            top.pop();
            top.push(e);
        }
    }
    top.into_sorted_vec()
        .into_iter()
        .map(|s| (s.id(), s.d()))
        .collect()
}
