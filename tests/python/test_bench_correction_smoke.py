"""The correction benchmark still runs: ``bench/correction.py --quick``
(a 2,000-event log, 20 and 200 foreign events, SQLite) exits 0, prints its
table, and every corrected database verifies."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_correction_bench_quick_runs(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("SQLALCHEMY_URL", None)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "correction.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=115)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    assert "| N foreign events | correction s |" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and ln.endswith("| right |")]
    assert len(rows) == 2, out
