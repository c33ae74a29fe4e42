#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (real tessera processes), then the Python
# suite that drives a real tessera with the official qdrant-client. Needs the virtualenv that
# .ci/run makes (.venv with tests/python/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2
PY=${TESSERA_PYTHON:-.venv/bin/python}
TESSERA_BIN="$PWD/target/debug/tessera" "$PY" -m pytest -W error -q tests/python
