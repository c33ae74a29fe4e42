//! Distance kernels.
//!
//! * Portable kernels ([`dot`], [`l2_sq`]) in safe Rust that LLVM vectorises on the baseline target
//!   (no `-C target-cpu`, so SSE2 on x86_64): 16 independent lanes (four SIMD accumulators) over
//!   `[f32; 16]` chunks. Two details matter for the code LLVM emits: iterating over arrays
//!   (`as_chunks`) rather than slices, and a plain sequential sum of the 16 lanes at the end (a
//!   hand-written pairwise tree makes the SLP vectoriser split the loop into 2-lane operations,
//!   twice as slow). They give exact distances: [`crate::distance`], brute force, reported scores,
//!   the Dot build distance.
//! * anndists' simdeez kernel ([`l2_sq_simd`]), used for graph traversal (and the Cosine / Euclid
//!   build distance) when the CPU has AVX2; see there for why it wins in the search.
//!
//! `index-bench --kernels` measures both on the benchmark data. Real embeddings contain a few
//! components near 1e-36 whose products are subnormal floats, which cost every kernel about 2.3x;
//! [`flush_tiny`] removes them.

const LANES: usize = 16;

/// Inner product. Only the common prefix of `a` and `b` is used.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<LANES>();
    let (cb, rb) = b[..n].as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// Squared Euclidean distance. Only the common prefix of `a` and `b` is used.
#[inline]
pub(crate) fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<LANES>();
    let (cb, rb) = b[..n].as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for j in 0..LANES {
            let d = x[j] - y[j];
            acc[j] += d * d;
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        tail += d * d;
    }
    acc.iter().sum::<f32>() + tail
}

/// Squared L2 distance with anndists' simdeez kernel (`DistL2`, which returns the square root):
/// simdeez picks AVX-512, AVX2+FMA or SSE4.1 at run time. In cache it is about as fast as the
/// portable kernels (20 vs 25 ns per 384-d distance), but in the search, where vectors come from
/// memory, it gives about 1.5x the queries per second: with one 64-byte load per cache line instead
/// of four 16-byte ones, the out-of-order window spans more vectors and keeps more cache misses in
/// flight. Same length required (anndists asserts it); inputs must be finite (it asserts the sum
/// is `>= 0`), which `build`, `from_bytes` and `search` guarantee.
#[inline]
pub(crate) fn l2_sq_simd(a: &[f32], b: &[f32]) -> f32 {
    use hnsw_rs::prelude::{DistL2, Distance};
    let d = DistL2.eval(a, b);
    d * d
}

/// Whether [`l2_sq_simd`] runs vectorised on this CPU (anndists takes its simdeez path only with
/// AVX2; otherwise it falls back to a scalar loop and the portable kernels are faster).
#[inline]
pub(crate) fn simd_l2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Components smaller than this fraction of the vector's L2 norm are set to zero.
pub(crate) const TINY_RELATIVE: f32 = 1e-20;

/// Sets components with `|x| < 1e-20 * |v|` (and subnormal ones) to zero. See
/// [`crate::flush_tiny_components`].
pub(crate) fn flush_tiny(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    let threshold = (norm * TINY_RELATIVE).max(f32::MIN_POSITIVE);
    for x in v.iter_mut() {
        if x.abs() < threshold {
            *x = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_naive_sums_for_every_tail_length() {
        for n in 0..100usize {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
            let nd: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            let nl: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from((x - y) * (x - y)))
                .sum();
            assert!((f64::from(dot(&a, &b)) - nd).abs() < 1e-3, "dot n={n}");
            assert!((f64::from(l2_sq(&a, &b)) - nl).abs() < 1e-3, "l2 n={n}");
        }
    }
}
