#!/usr/bin/env sh
# Rebuild benchmark (issue 5): generates SQLite logs of N/4 and N events
# (default N = 1,000,000) and rebuilds the four views of each in a fresh
# process, printing events, seconds, events/s and peak RSS (VmHWM).
#
#   bench/rebuild.sh [--events N] [--dir DIR] [--sizes a,b,...] [--reuse]
#
# Release build; no Python needed. Honours CARGO_TARGET_DIR.
set -eu
cd "$(dirname "$0")/.."
exec cargo run --release --example rebuild_bench -- "$@"
