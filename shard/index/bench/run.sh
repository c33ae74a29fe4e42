#!/usr/bin/env bash
# HNSW core benchmark: tessera-index (Rust) against hnswlib (Python, C++) on the same data, in
# the same run, on the same machine, then the ratio of single-thread QPS at recall@10 = 0.95.
#
# usage: shard/index/bench/run.sh [DATA_DIR]
#   DATA_DIR   holds base.fvecs, query.fvecs, groundtruth.ivecs
#              (default: shared/data/docs-384 next to the repository)
# environment:
#   ROUNDS=3                      alternating rounds of both benchmarks; best QPS per ef is kept
#   EFS=16,20,24,28,32,40,48,64,128,256
#   REPS=5                        passes over all queries per round (fastest counts)
#   M=16 EF_CONSTRUCT=100         graph parameters for both engines
#   VENV=<repo>/.venv             Python venv; created from requirements.txt if missing
#   CARGO_TARGET_DIR              honoured as usual
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
data=${1:-$repo/../shared/data/docs-384}
[[ -f $data/base.fvecs ]] || { echo "no base.fvecs in $data (pass the data directory)" >&2; exit 2; }
rounds=${ROUNDS:-3}
efs=${EFS:-16,20,24,28,32,40,48,64,128,256}
reps=${REPS:-5}
m=${M:-16}
efc=${EF_CONSTRUCT:-100}
venv=${VENV:-$repo/.venv}

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import hnswlib, numpy' 2>/dev/null; then
    echo "== setting up $venv (hnswlib builds from source, about a minute)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel
    "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
py=$venv/bin/python

echo "== building index-bench (release)"
(cd "$repo" && cargo build -q --release -p tessera-index --bin index-bench)
bin=${CARGO_TARGET_DIR:-$repo/target}/release/index-bench

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
    echo
    echo "== round $r of $rounds: tessera"
    "$bin" --data "$data" --m "$m" --ef-construct "$efc" --efs "$efs" --reps "$reps" \
        --graph-cache "$work/tessera.graph" --csv "$work/ours-$r.csv"
    echo
    echo "== round $r of $rounds: hnswlib"
    "$py" "$here/hnswlib_bench.py" --data "$data" --m "$m" --ef-construct "$efc" --efs "$efs" \
        --reps "$reps" --index-cache "$work/hnswlib.bin" --csv "$work/theirs-$r.csv"
done

echo
echo "== best of $rounds rounds (QPS from thread CPU time, single thread)"
"$py" "$here/compare.py" --ours "$work"/ours-*.csv --theirs "$work"/theirs-*.csv --recall 0.95
