"""The benchmark command still runs: ``bench/compare.py --quick --backend
sqlite`` (biomero_rs against the reference biomero 2.8.3, the raw SQLite
limit and the same-writes limit) exits 0 and prints its tables."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ROOT / "bench" / "compare.py"


@pytest.mark.timeout(60)
def test_compare_quick_sqlite_runs(tmp_path):
    env = dict(os.environ)
    env.pop("SQLALCHEMY_URL", None)
    env["TMPDIR"] = str(tmp_path)  # its databases go under pytest's tmp dir
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--backend", "sqlite"],
        capture_output=True,
        text=True,
        env=env,
        timeout=57,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    for header in (
        "== Commands",
        "| backend | contender",
        "cmd/s",
        "p50 ms",
        "p99 ms",
        "ratio vs reference",
        "% of raw",
        "% of same writes",
        "== repository.get of a task with 1,000 events ==",
        "median ms",
        "== Targets ==",
        "SQLite commands/s vs the same-writes limit >= 90%:",
    ):
        assert header in out, f"missing {header!r} in:\n{out}"
    for contender in ("raw WAL+FULL", "raw WAL+NORMAL", "raw DELETE+FULL",
                      "biomero_rs normal", "same writes", "reference"):
        assert contender in out, f"missing row {contender!r} in:\n{out}"
    assert "identical" in out, out  # both sides wrote the same events and view rows
    assert "DIFFERENT" not in out, out
    # the hand-written writes ended in exactly biomero_rs's recorded database
    assert "ids and timestamps included): 1 of 1 run(s);" in out, out


@pytest.mark.timeout(60)
def test_writers_quick_sqlite_runs(tmp_path):
    """``bench/writers.py --quick --backend sqlite``: 1 and 8 writer processes,
    biomero_rs and raw, every command's event counted."""
    env = dict(os.environ)
    env.pop("SQLALCHEMY_URL", None)
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "writers.py"), "--quick", "--backend", "sqlite"],
        capture_output=True,
        text=True,
        env=env,
        timeout=57,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    for row in ("| raw 1 ", "| raw 8 ", "| biomero_rs 1 ", "| biomero_rs 8 ", "vs 1 writer",
                "8 writers vs 1 >= 1.0x and above the raw ratio"):
        assert row in out, f"missing {row!r} in:\n{out}"
    assert "sqlite: all 4 runs match" in out, out
