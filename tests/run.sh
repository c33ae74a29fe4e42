#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (real tessera processes), then the Python
# suite that drives a real tessera with the official qdrant-client (pinned in
# tests/python/requirements.txt, installed into .venv when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TESSERA_PYTHON:-}" ] && ! .venv/bin/python -c "import qdrant_client, jwt, pytest" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
fi
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2
PY=${TESSERA_PYTHON:-.venv/bin/python}
TESSERA_BIN="$PWD/target/debug/tessera" "$PY" -m pytest -W error -q tests/python
