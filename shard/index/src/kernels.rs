//! Distance kernels in safe Rust, written so that LLVM vectorises them on the baseline target (no
//! `-C target-cpu`): 16 independent lanes (four SIMD accumulators on SSE2) over `[f32; 16]`
//! chunks. Measured on the 384-d benchmark data (`index-bench --kernels`): about 25 ns per
//! distance, against about 45 ns for anndists' simdeez (AVX2) kernels, whose single accumulator
//! is latency-bound. Two details matter for the code LLVM emits: iterating over arrays
//! (`as_chunks`) rather than slices, and a plain sequential sum of the 16 lanes at the end (a
//! hand-written pairwise tree makes the SLP vectoriser split the loop into 2-lane operations,
//! twice as slow).

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
