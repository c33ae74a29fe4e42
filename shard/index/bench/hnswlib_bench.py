#!/usr/bin/env python3
"""hnswlib baseline for the HNSW core benchmark (same data, same table as `index-bench`).

usage: hnswlib_bench.py --data DIR [--m 16] [--ef-construct 100] [--k 10]
                        [--efs 16,32,64,128,256] [--reps 5] [--csv FILE] [--index-cache FILE]

DIR holds base.fvecs, query.fvecs, groundtruth.ivecs (vectors L2-normalised, so space 'ip').
Build uses all cores; search is single-threaded (set_num_threads(1)). Rows "hnswlib" pass all
queries in one knn_query call (hnswlib loops over them in C++ on this thread); rows
"hnswlib-per-call" make one call per query. QPS is the number of queries over the fastest of `reps`
passes, by thread CPU time (robust on a shared machine) and by wall time.
"""

import argparse
import os
import time

import hnswlib
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        return np.zeros((0, 0), dtype=dtype)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)
    if not (rows[:, 0] == dim).all():
        raise SystemExit(f"{path}: mixed dimensions")
    return np.ascontiguousarray(rows[:, 1:]).view(dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construct", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--efs", default="16,32,64,128,256")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--csv")
    ap.add_argument("--index-cache", help="load the index from this file if it exists, else save it there")
    a = ap.parse_args()
    efs = [int(x) for x in a.efs.split(",")]

    base = read_vecs(os.path.join(a.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(a.data, "query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(a.data, "groundtruth.ivecs"), np.int32)
    n, dim = base.shape
    print(f"## hnswlib: "
          f"{os.path.basename(os.path.normpath(a.data))} ({n} base x {dim}-d, {len(queries)} queries), "
          f"space ip, M={a.m}, ef_construction={a.ef_construct}, k={a.k}")

    index = hnswlib.Index(space="ip", dim=dim)
    if a.index_cache and os.path.exists(a.index_cache):
        index.load_index(a.index_cache, max_elements=n)
        print("index loaded from cache: build time not measured")
    else:
        t = time.perf_counter()
        index.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construct, random_seed=100)
        index.add_items(base, np.arange(n), num_threads=os.cpu_count() or 1)
        build_s = time.perf_counter() - t
        print(f"build: {build_s:.2f} s ({build_s * 1e6 / max(n, 1):.1f} ms per 1000 vectors, "
              f"{os.cpu_count()} threads)")
        if a.index_cache:
            index.save_index(a.index_cache)

    index.set_num_threads(1)
    truth = [set(row[: a.k].tolist()) for row in gt]
    qrows = [queries[i : i + 1] for i in range(len(queries))]
    rows = []
    nq = len(queries)
    for ef in efs:
        index.set_ef(max(ef, a.k))
        # Batch call (one knn_query over all queries, run on this thread): hnswlib's own speed,
        # without Python's per-call cost. This is the row run.sh compares against.
        best_cpu = best_wall = float("inf")
        for _ in range(a.reps):
            c, t = time.thread_time(), time.perf_counter()
            labels, _ = index.knn_query(queries, k=a.k, num_threads=1)
            best_cpu = min(best_cpu, time.thread_time() - c)
            best_wall = min(best_wall, time.perf_counter() - t)
        hits = sum(len(truth[i] & set(labels[i].tolist())) for i in range(nq))
        rows.append(("hnswlib", ef, hits / (nq * a.k), nq / best_cpu, nq / best_wall))

    for ef in efs:
        index.set_ef(max(ef, a.k))
        # One knn_query call per query (includes pybind11/numpy overhead per call).
        best_cpu = best_wall = float("inf")
        for _ in range(a.reps):
            c, t = time.thread_time(), time.perf_counter()
            out = [index.knn_query(q, k=a.k, num_threads=1)[0] for q in qrows]
            best_cpu = min(best_cpu, time.thread_time() - c)
            best_wall = min(best_wall, time.perf_counter() - t)
        hits = sum(len(truth[i] & set(l[0].tolist())) for i, l in enumerate(out))
        rows.append(("hnswlib-per-call", ef, hits / (nq * a.k), nq / best_cpu, nq / best_wall))

    print()
    print(f"| engine | ef | recall@{a.k} | QPS (1 thread, CPU time) | us/query | QPS (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for engine, ef, recall, qps, qps_wall in rows:
        print(f"| {engine} | {ef} | {recall:.4f} | {qps:.0f} | {1e6 / qps:.1f} | {qps_wall:.0f} |")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("engine,ef,recall,qps,qps_wall\n")
            for engine, ef, recall, qps, qps_wall in rows:
                f.write(f"{engine},{ef},{recall:.5f},{qps:.1f},{qps_wall:.1f}\n")


if __name__ == "__main__":
    main()
