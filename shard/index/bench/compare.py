#!/usr/bin/env python3
"""Merges index-bench and hnswlib_bench.py CSVs (one or more rounds each) and prints the
side-by-side table and our QPS / hnswlib's QPS at a target recall.

usage: compare.py --ours a.csv [b.csv ...] --theirs c.csv [d.csv ...] [--recall 0.95]

Per engine and ef, recall comes from the first file (the graph is the same in every round) and
QPS is the best over the rounds. QPS at the target recall is interpolated between the two ef
points around it (log QPS linear in recall); the smallest ef reaching it is shown as well.
"""

import argparse
import csv
import math


def load(paths, engine):
    rows = {}
    for path in paths:
        with open(path) as f:
            for r in csv.DictReader(f):
                if r["engine"] != engine:
                    continue
                ef = int(r["ef"])
                recall, qps = float(r["recall"]), float(r["qps"])
                if ef in rows:
                    rows[ef] = (rows[ef][0], max(rows[ef][1], qps))
                else:
                    rows[ef] = (recall, qps)
    return dict(sorted(rows.items()))


def at_recall(rows, target):
    """(interpolated QPS, smallest ef reaching target, its QPS); None where unreachable."""
    pts = list(rows.items())
    for i, (ef, (rec, qps)) in enumerate(pts):
        if rec >= target:
            if i == 0:
                return qps, ef, qps
            _, (r0, q0) = pts[i - 1]
            t = (target - r0) / (rec - r0) if rec > r0 else 1.0
            return math.exp(math.log(q0) + t * (math.log(qps) - math.log(q0))), ef, qps
    return None, None, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", nargs="+", required=True)
    ap.add_argument("--theirs", nargs="+", required=True)
    ap.add_argument("--recall", type=float, default=0.95)
    a = ap.parse_args()
    ours = load(a.ours, "tessera")
    theirs = load(a.theirs, "hnswlib")

    print("| ef | tessera recall@10 | tessera QPS | hnswlib recall@10 | hnswlib QPS | QPS ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for ef in sorted(set(ours) | set(theirs)):
        o, t = ours.get(ef), theirs.get(ef)
        cells = [str(ef)]
        cells += [f"{o[0]:.4f}", f"{o[1]:.0f}"] if o else ["-", "-"]
        cells += [f"{t[0]:.4f}", f"{t[1]:.0f}"] if t else ["-", "-"]
        cells.append(f"{o[1] / t[1]:.2f}" if o and t else "-")
        print("| " + " | ".join(cells) + " |")
    print()

    oq, oef, oqe = at_recall(ours, a.recall)
    tq, tef, tqe = at_recall(theirs, a.recall)
    if oq is None or tq is None:
        print(f"recall {a.recall} not reached by {'tessera' if oq is None else 'hnswlib'}: no ratio")
        return 1
    print(f"at recall@10 = {a.recall}: tessera {oq:.0f} QPS, hnswlib {tq:.0f} QPS (interpolated)")
    print(f"RATIO tessera/hnswlib = {oq / tq:.2f} (interpolated)")
    print(f"smallest ef reaching {a.recall}: tessera ef={oef} ({oqe:.0f} QPS), "
          f"hnswlib ef={tef} ({tqe:.0f} QPS): ratio {oqe / tqe:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
