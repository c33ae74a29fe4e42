//! Behaviour of the public API: exactness of brute force, recall of built graphs, filters,
//! persistence (including corrupt input), edge sizes and every metric.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_index::{
    CompactGraph, DEFAULT_EF, GraphParams, IndexError, Metric, brute_force, distance,
    score_from_distance,
};

const ALL: &dyn Fn(u32) -> bool = &|_| true;

/// `n` points around `clusters` random centres (a realistic, clustered shape).
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    clustered_spread(n, dim, clusters, 0.3, seed)
}

/// `n` data points and `nq` queries drawn from the same mixture (queries are not data points).
fn data_and_queries(
    n: usize,
    nq: usize,
    dim: usize,
    clusters: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut all = clustered(n + nq, dim, clusters, seed);
    let queries = all.split_off(n * dim);
    (all, queries)
}

/// As [`clustered`], with noise of `spread` around each centre (centres are in [-1, 1]^dim).
fn clustered_spread(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        for j in 0..dim {
            out.push(centres[c * dim + j] + rng.random_range(-spread..spread));
        }
    }
    out
}

fn normalise(v: &mut [f32], dim: usize) {
    for row in v.chunks_exact_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|x| *x /= n);
        }
    }
}

/// Reference top-k by a naive f64 computation, ties by id.
fn naive_top(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    q: &[f32],
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<u32> {
    let mut all: Vec<(f64, u32)> = vectors
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| accept(*i as u32))
        .map(|(i, r)| {
            let d = match metric {
                Metric::Cosine | Metric::Dot => -r
                    .iter()
                    .zip(q)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>(),
                Metric::Euclid => r
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                    .sum::<f64>(),
            };
            (d, i as u32)
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, i)| i).collect()
}

fn recall(graph: &CompactGraph, data: &[f32], queries: &[f32], k: usize, ef: usize) -> f64 {
    let dim = graph.dim();
    let mut hits = 0;
    let mut total = 0;
    for q in queries.chunks_exact(dim) {
        let truth: HashSet<u32> = brute_force(data, dim, graph.metric(), q, k, ALL)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let got = graph.search(q, k, ef, ALL);
        hits += got.iter().filter(|(i, _)| truth.contains(i)).count();
        total += truth.len();
    }
    hits as f64 / total as f64
}

fn build(data: &[f32], dim: usize, metric: Metric) -> CompactGraph {
    CompactGraph::build(data, dim, metric, GraphParams::default()).expect("valid input builds")
}

#[test]
fn brute_force_is_exact_for_every_metric_and_filter() {
    let dim = 24;
    let (data, queries) = data_and_queries(600, 20, dim, 8, 1);
    let odd = |i: u32| i % 2 == 1;
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclid] {
        for q in queries.chunks_exact(dim) {
            for accept in [ALL, &odd as &dyn Fn(u32) -> bool] {
                let got = brute_force(&data, dim, metric, q, 10, accept);
                let ids: Vec<u32> = got.iter().map(|(i, _)| *i).collect();
                assert_eq!(
                    ids,
                    naive_top(&data, dim, metric, q, 10, accept),
                    "{metric:?}"
                );
                assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "best first");
                for (i, d) in got {
                    let row = &data[i as usize * dim..(i as usize + 1) * dim];
                    assert!((d - distance(metric, q, row)).abs() < 1e-4);
                    assert!(accept(i));
                }
            }
        }
    }
    assert!(brute_force(&data, dim, Metric::Dot, &[0.0; 3], 5, ALL).is_empty());
    assert!(brute_force(&data, dim, Metric::Dot, &data[..dim], 0, ALL).is_empty());
}

#[test]
fn graph_recall_on_clustered_data() {
    let dim = 32;
    let mut data = clustered_spread(2100, dim, 20, 1.0, 3);
    let queries = data.split_off(2000 * dim);
    // Queries from other centres than the data: a harder, out-of-distribution set.
    let far = clustered(100, dim, 20, 4);
    for metric in [Metric::Euclid, Metric::Cosine] {
        let (mut d, mut q, mut f) = (data.clone(), queries.clone(), far.clone());
        if metric == Metric::Cosine {
            normalise(&mut d, dim);
            normalise(&mut q, dim);
            normalise(&mut f, dim);
        }
        let g = build(&d, dim, metric);
        assert_eq!((g.len(), g.dim(), g.metric()), (2000, dim, metric));
        assert_eq!(g.reachable_from_entry(), 2000);
        for (ef, min) in [(16, 0.9), (DEFAULT_EF, 0.95), (64, 0.95)] {
            let r = recall(&g, &d, &q, 10, ef);
            assert!(r > min, "{metric:?} recall@10 at ef {ef} = {r}");
        }
        let r = recall(&g, &d, &f, 10, 128);
        assert!(
            r > 0.9,
            "{metric:?} out-of-distribution recall@10 at ef 128 = {r}"
        );
        // Results are best first and carry the true internal distance.
        for qv in q.chunks_exact(dim).take(10) {
            let got = g.search(qv, 10, 64, ALL);
            assert_eq!(got.len(), 10);
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
            for (i, dd) in got {
                assert!((dd - distance(metric, qv, g.vector(i))).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn accept_filter_returns_only_accepted_and_still_k_at_30_percent() {
    let dim = 16;
    let (data, queries) = data_and_queries(3000, 50, dim, 30, 5);
    let g = build(&data, dim, Metric::Euclid);
    let pass = |i: u32| i % 10 < 3; // 30 %
    let mut hits = 0;
    for q in queries.chunks_exact(dim) {
        let got = g.search(q, 10, 32, &pass);
        assert_eq!(got.len(), 10, "k accepted results when 30 % pass");
        assert!(got.iter().all(|(i, _)| pass(*i)));
        let truth: HashSet<u32> = naive_top(&data, dim, Metric::Euclid, q, 10, &pass)
            .into_iter()
            .collect();
        hits += got.iter().filter(|(i, _)| truth.contains(i)).count();
    }
    let r = hits as f64 / 500.0;
    assert!(r > 0.85, "filtered recall {r}");
    // A filter that passes nothing returns nothing; one that passes 1 node finds it (all nodes
    // are reachable, and the search does not stop before it has an accepted result).
    assert!(g.search(&data[..dim], 10, 32, &|_| false).is_empty());
    let got = g.search(&data[..dim], 10, 32, &|i| i == 2999);
    assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2999]);
}

#[test]
fn persistence_round_trip_gives_equal_results() {
    let dim = 20;
    let data = clustered(800, dim, 10, 7);
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclid] {
        let g = build(&data, dim, metric);
        let bytes = g.to_bytes();
        let back = CompactGraph::from_bytes(&bytes).expect("round trip");
        assert_eq!(back, g);
        assert_eq!(back.memory_bytes(), g.memory_bytes());
        for q in clustered(10, dim, 10, 8).chunks_exact(dim) {
            assert_eq!(back.search(q, 5, 40, ALL), g.search(q, 5, 40, ALL));
        }
    }
}

#[test]
fn from_bytes_rejects_every_truncation_and_corruption() {
    let dim = 6;
    let data = clustered(60, dim, 3, 9);
    let bytes = build(&data, dim, Metric::Dot).to_bytes();
    for len in 0..bytes.len() {
        assert!(
            CompactGraph::from_bytes(&bytes[..len]).is_err(),
            "prefix {len}"
        );
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            assert!(
                CompactGraph::from_bytes(&b).is_err(),
                "flip {flip:#x} at {i}"
            );
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(CompactGraph::from_bytes(&longer).is_err());
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert!(matches!(
        CompactGraph::from_bytes(&v2),
        Err(IndexError::UnsupportedVersion(2))
    ));
    assert!(CompactGraph::from_bytes(&[]).is_err());
    assert!(CompactGraph::from_bytes(&[0xff; 64]).is_err());
}

/// Rewrites the trailing checksum so that only the structural checks can catch an edit.
fn reseal(b: &mut [u8]) {
    let n = b.len() - 4;
    let crc = crc32fast::hash(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn from_bytes_checks_structure_behind_a_valid_checksum() {
    let dim = 4;
    let data = clustered(200, dim, 4, 10);
    let g = build(&data, dim, Metric::Euclid);
    let bytes = g.to_bytes();
    let header = 40;
    let l0 = header + 200 * dim * 4;
    // Any single-byte change in the header or links, resealed, is either rejected or decodes to
    // a graph whose search does not panic.
    for i in (0..header).chain(l0..bytes.len() - 4) {
        for v in [0x00u8, 0x7f, 0xff] {
            let mut b = bytes.clone();
            if b[i] == v {
                continue;
            }
            b[i] = v;
            reseal(&mut b);
            if let Ok(g2) = CompactGraph::from_bytes(&b) {
                let _ = g2.search(&data[..dim], 5, 16, ALL);
            }
        }
    }
    // A neighbour id out of range is rejected.
    let mut b = bytes.clone();
    let first_neighbour = l0 + 4 * 201 + 8;
    b[first_neighbour..first_neighbour + 4].copy_from_slice(&1000u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        CompactGraph::from_bytes(&b),
        Err(IndexError::Corrupt(_))
    ));
    // A huge declared length is rejected without allocating it.
    let mut b = bytes.clone();
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut b);
    assert!(CompactGraph::from_bytes(&b).is_err());
}

#[test]
fn empty_and_single_vector_graphs() {
    let p = GraphParams::default();
    let g0 = CompactGraph::build(&[], 8, Metric::Cosine, p).expect("empty builds");
    assert_eq!((g0.len(), g0.is_empty(), g0.dim()), (0, true, 8));
    assert!(g0.search(&[0.5; 8], 10, 64, ALL).is_empty());
    let back = CompactGraph::from_bytes(&g0.to_bytes()).expect("empty round trip");
    assert_eq!(back, g0);

    let one = [0.0, 3.0, 4.0];
    let g1 = CompactGraph::build(&one, 3, Metric::Euclid, p).expect("one builds");
    assert_eq!(g1.len(), 1);
    assert_eq!(g1.vector(0), &one);
    let got = g1.search(&[0.0, 0.0, 0.0], 10, 64, ALL);
    assert_eq!(got, vec![(0, 25.0)]);
    assert_eq!(score_from_distance(Metric::Euclid, got[0].1), 5.0);
    assert!(g1.search(&[0.0; 3], 10, 64, &|_| false).is_empty());
    let back = CompactGraph::from_bytes(&g1.to_bytes()).expect("one round trip");
    assert_eq!(back.search(&[0.0; 3], 1, 1, ALL), got);

    // Small graphs (fewer points than M) are complete.
    for n in 2..20 {
        let data = clustered(n, 5, 2, n as u64);
        let g = build(&data, 5, Metric::Euclid);
        assert_eq!(g.reachable_from_entry(), n);
        assert_eq!(g.search(&data[..5], 100, 10, ALL).len(), n);
    }
}

#[test]
fn build_threads_serial_is_deterministic_and_pools_work() {
    let dim = 16;
    let (data, queries) = data_and_queries(1500, 50, dim, 15, 15);
    let p = GraphParams::default();
    let serial = |_| {
        CompactGraph::build_with_stats(&data, dim, Metric::Cosine, p, 1)
            .expect("serial build")
            .0
    };
    let (a, b) = (serial(0), serial(1));
    assert_eq!(a, b, "serial insertion gives the same graph every time");
    let (pooled, stats) =
        CompactGraph::build_with_stats(&data, dim, Metric::Cosine, p, 2).expect("pooled build");
    assert_eq!(pooled.len(), 1500);
    assert!(!stats.hnsw_insert.is_zero());
    for g in [&a, &pooled] {
        assert!(recall(g, &data, &queries, 10, 64) > 0.9);
    }
}

#[test]
fn duplicate_and_zero_vectors_build_and_search() {
    let dim = 8;
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclid] {
        let same: Vec<f32> = (0..400).flat_map(|_| [0.5f32; 8]).collect();
        let g = build(&same, dim, metric);
        assert_eq!(g.search(&[0.5; 8], 10, 32, ALL).len(), 10, "{metric:?}");
        let zeros = vec![0.0f32; 300 * dim];
        let g = build(&zeros, dim, metric);
        assert_eq!(g.search(&[1.0; 8], 5, 16, ALL).len(), 5, "{metric:?}");
    }
}

#[test]
fn dot_metric_orders_by_true_inner_product() {
    let dim = 16;
    let mut rng = StdRng::seed_from_u64(11);
    // Unnormalised: norms vary from 0.1 to 10.
    let data: Vec<f32> = (0..1500)
        .flat_map(|_| {
            let s = rng.random_range(0.1f32..10.0);
            (0..dim)
                .map(|_| rng.random_range(-1.0f32..1.0) * s)
                .collect::<Vec<_>>()
        })
        .collect();
    let queries: Vec<f32> = (0..30 * dim)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let g = build(&data, dim, Metric::Dot);
    let mut agree = 0;
    for q in queries.chunks_exact(dim) {
        let exact = brute_force(&data, dim, Metric::Dot, q, 10, ALL);
        let ids: Vec<u32> = exact.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, naive_top(&data, dim, Metric::Dot, q, 10, ALL));
        // The score is the inner product itself, highest first.
        let scores: Vec<f32> = exact
            .iter()
            .map(|(_, d)| score_from_distance(Metric::Dot, *d))
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]));
        let (i0, d0) = exact[0];
        let row = &data[i0 as usize * dim..(i0 as usize + 1) * dim];
        let ip: f32 = row.iter().zip(q).map(|(a, b)| a * b).sum();
        assert!((score_from_distance(Metric::Dot, d0) - ip).abs() < 1e-3);
        let truth: HashSet<u32> = ids.into_iter().collect();
        agree += g
            .search(q, 10, 64, ALL)
            .iter()
            .filter(|(i, _)| truth.contains(i))
            .count();
    }
    let r = agree as f64 / 300.0;
    assert!(r > 0.8, "MIPS graph agreement {r}");
}

#[test]
fn metrics_and_scores() {
    let a = [1.0, 2.0, 3.0];
    let b = [4.0, -5.0, 6.0];
    assert_eq!(distance(Metric::Dot, &a, &b), -12.0);
    assert_eq!(distance(Metric::Cosine, &a, &b), -12.0);
    assert_eq!(distance(Metric::Euclid, &a, &b), 9.0 + 49.0 + 9.0);
    assert_eq!(score_from_distance(Metric::Dot, -12.0), 12.0);
    assert_eq!(score_from_distance(Metric::Cosine, -0.5), 0.5);
    assert_eq!(score_from_distance(Metric::Euclid, 25.0), 5.0);
    assert_eq!(score_from_distance(Metric::Euclid, -1e-9), 0.0);
}

#[test]
fn invalid_input_is_an_error_not_a_panic() {
    let p = GraphParams::default();
    let v = [1.0f32; 8];
    let bad = |params: GraphParams| CompactGraph::build(&v, 4, Metric::Dot, params).is_err();
    assert!(bad(GraphParams { m: 0, ..p }));
    assert!(bad(GraphParams { m: 1, ..p }));
    assert!(bad(GraphParams { m: 257, ..p }));
    assert!(bad(GraphParams { m: usize::MAX, ..p }));
    assert!(bad(GraphParams {
        ef_construct: 0,
        ..p
    }));
    assert!(!bad(GraphParams { m: 256, ..p }));
    assert!(CompactGraph::build(&v, 0, Metric::Dot, p).is_err());
    assert!(CompactGraph::build(&v, 3, Metric::Dot, p).is_err());
    let mut nan = v;
    nan[5] = f32::NAN;
    assert!(matches!(
        CompactGraph::build(&nan, 4, Metric::Euclid, p),
        Err(IndexError::NonFinite { index: 1 })
    ));
    let huge = [3e38f32; 8];
    assert!(matches!(
        CompactGraph::build(&huge, 4, Metric::Dot, p),
        Err(IndexError::Overflow)
    ));
    // Queries of the wrong size or with NaN give no results.
    let g = CompactGraph::build(&clustered(50, 4, 2, 12), 4, Metric::Euclid, p).expect("builds");
    assert!(g.search(&[1.0; 3], 5, 16, ALL).is_empty());
    assert!(g.search(&[f32::NAN; 4], 5, 16, ALL).is_empty());
    assert!(g.search(&[1.0; 4], 0, 16, ALL).is_empty());
}

#[test]
fn tiny_components_are_flushed_without_changing_results() {
    let dim = 8;
    let mut data = clustered(300, dim, 4, 13);
    for row in data.chunks_exact_mut(dim) {
        row[3] = 1e-37; // subnormal products with any query component below ~0.1
    }
    let g = build(&data, dim, Metric::Dot);
    assert!(g.vectors().iter().all(|x| *x == 0.0 || x.abs() > 1e-30));
    let mut q = data[..dim].to_vec();
    q[1] = 1e-38;
    let exact = brute_force(&data, dim, Metric::Dot, &q, 10, ALL);
    let got = g.search(&q, 10, 100, ALL);
    assert_eq!(
        got.iter().map(|x| x.0).collect::<Vec<_>>(),
        exact.iter().map(|x| x.0).collect::<Vec<_>>()
    );
    let mut v = vec![1.0, 1e-30, -1e-25, 0.5];
    tessera_index::flush_tiny_components(&mut v);
    assert_eq!(v, vec![1.0, 0.0, 0.0, 0.5]);
}

#[test]
fn graphs_are_shared_across_threads_and_reentrant() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompactGraph>();
    let dim = 12;
    let data = clustered(1000, dim, 10, 14);
    let g = build(&data, dim, Metric::Euclid);
    let single: Vec<_> = data
        .chunks_exact(dim)
        .take(40)
        .map(|q| g.search(q, 5, 32, ALL))
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (g, data, single) = (&g, &data, &single);
            s.spawn(move || {
                for (i, q) in data.chunks_exact(dim).take(40).enumerate() {
                    assert_eq!(&g.search(q, 5, 32, ALL), &single[i], "thread {t}");
                }
            });
        }
    });
    // An accept callback that itself searches (same thread) gets its own scratch.
    let nested = |i: u32| !g.search(&data[..dim], 1, 8, ALL).is_empty() && i.is_multiple_of(2);
    let got = g.search(&data[..dim], 5, 32, &nested);
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|(i, _)| i % 2 == 0));
}
