# Sourced by the scripts: makes .venv with maturin, and builds biomero_rs into it.
# BIOMERO_RS_PROFILE=release|dev (default release) picks the Rust build profile.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
# The Python module links the system SQLite library (libsqlite3-dev).
if ! { ldconfig -p 2>/dev/null | grep -q "libsqlite3.so " || ls /usr/lib/*/libsqlite3.so /usr/lib/libsqlite3.so >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing libsqlite3-dev"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsqlite3-dev >/dev/null
  else
    echo "the SQLite development library is missing: install libsqlite3-dev (Debian/Ubuntu) or sqlite-devel" >&2
    exit 1
  fi
fi
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
"$VPY" -m pip install -q --upgrade pip >/dev/null
"$VPY" -m pip install -q "maturin>=1.5,<2" "$@"
echo "== building biomero_rs (${BIOMERO_RS_PROFILE:-release})"
if [ "${BIOMERO_RS_PROFILE:-release}" = "release" ]; then
  "$ROOT/.venv/bin/maturin" develop --release -q
else
  "$ROOT/.venv/bin/maturin" develop -q
fi
# An editable install (maturin develop) leaves out the wheel's top-level
# start-up file; BIOMERO_RS_ACTIVATE=1 needs it beside the package.
cp "$ROOT/python/biomero_rs_activate.pth" "$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
