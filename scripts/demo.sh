#!/usr/bin/env bash
# Installs biomero_rs into .venv (release build) and runs the demo: simulated
# BIOMERO workflows written into an embedded SQLite file, then the four
# biomero_* views printed as tables. Extra arguments go to `biomero-rs demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
"$ROOT/.venv/bin/biomero-rs" demo "$@"
