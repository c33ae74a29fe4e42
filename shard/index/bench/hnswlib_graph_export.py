#!/usr/bin/env python3
"""Diagnostic: build hnswlib's graph and write it in tessera's CompactGraph format (version 1).

usage: hnswlib_graph_export.py --data DIR --out FILE [--m 16] [--ef-construct 100]

`index-bench --data DIR --graph-cache FILE` then searches hnswlib's graph with tessera's search
code, which separates the two questions "is our search loop as fast as hnswlib's?" (same graph)
and "is hnsw_rs's graph as good as hnswlib's?" (same search code). Parses hnswlib 0.8's
`save_index` layout (hnswalg.h `saveIndex`).
"""

import argparse
import os
import struct
import tempfile
import zlib

import hnswlib
import numpy as np

from hnswlib_bench import read_vecs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construct", type=int, default=100)
    a = ap.parse_args()

    base = read_vecs(os.path.join(a.data, "base.fvecs"), np.float32)
    n, dim = base.shape
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construct, random_seed=100)
    index.add_items(base, np.arange(n), num_threads=os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "h.bin")
        index.save_index(path)
        raw = open(path, "rb").read()

    hdr = struct.Struct("<QQQQQQiIQQQdQ")
    (off_l0, _max_el, count, size_el, label_off, off_data, maxlevel, entry_internal,
     max_m, max_m0, _m, _mult, _efc) = hdr.unpack_from(raw, 0)
    pos = hdr.size
    l0 = np.frombuffer(raw, dtype=np.uint8, count=count * size_el, offset=pos).reshape(count, size_el)
    pos += count * size_el
    labels = l0[:, label_off:label_off + 8].copy().view(np.uint64).ravel().astype(np.int64)
    assert off_l0 == 0 and count == n and sorted(labels.tolist()) == list(range(n))
    links0 = l0[:, :4 * (max_m0 + 1)].copy().view(np.uint32)
    size_links = max_m * 4 + 4
    levels = np.zeros(count, dtype=np.int64)
    upper = {}  # (internal id, level) -> list of internal ids
    for i in range(count):
        (ll_size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        lv = ll_size // size_links
        levels[i] = lv
        for l in range(1, lv + 1):
            base_off = pos + (l - 1) * size_links
            (c,) = struct.unpack_from("<I", raw, base_off)
            c &= 0xFFFF
            upper[(i, l)] = list(struct.unpack_from(f"<{c}I", raw, base_off + 4))
        pos += ll_size
    assert pos == len(raw)

    to_label = labels
    internal_of = np.empty(n, dtype=np.int64)
    internal_of[labels] = np.arange(n)
    # row = label; tiny components flushed as CompactGraph::build does (|x| < 1e-20 * |v|)
    norms = np.sqrt((base.astype(np.float32) ** 2).sum(axis=1, keepdims=True))
    thr = np.maximum(norms * np.float32(1e-20), np.finfo(np.float32).tiny)
    vectors = np.where(np.abs(base) < thr, np.float32(0), base).astype(np.float32)
    out = bytearray()
    out += b"TSXGRAPH" + bytes([1, 0]) + bytes(6)
    out += struct.pack("<QQII", dim, n, int(to_label[entry_internal]), maxlevel)
    out += vectors.astype("<f4").tobytes()
    offsets = [0]
    nbrs = []
    for lab in range(n):
        i = internal_of[lab]
        c = int(links0[i, 0]) & 0xFFFF
        nbrs.extend(int(to_label[x]) for x in links0[i, 1:1 + c])
        offsets.append(len(nbrs))
    out += np.asarray(offsets, dtype="<u4").tobytes()
    out += struct.pack("<Q", len(nbrs)) + np.asarray(nbrs, dtype="<u4").tobytes()
    for l in range(1, maxlevel + 1):
        nodes = sorted(int(lab) for lab in range(n) if levels[internal_of[lab]] >= l)
        offs = [0]
        nb = []
        for lab in nodes:
            nb.extend(int(to_label[x]) for x in upper[(int(internal_of[lab]), l)])
            offs.append(len(nb))
        out += struct.pack("<Q", len(nodes)) + np.asarray(nodes, dtype="<u4").tobytes()
        out += np.asarray(offs, dtype="<u4").tobytes()
        out += struct.pack("<Q", len(nb)) + np.asarray(nb, dtype="<u4").tobytes()
    out += struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF)
    with open(a.out, "wb") as f:
        f.write(out)
    deg = np.asarray(offsets[1:]) - np.asarray(offsets[:-1])
    print(f"wrote {a.out}: {n} nodes, {maxlevel} upper layers, layer-0 links/node {deg.mean():.1f}")


if __name__ == "__main__":
    main()
