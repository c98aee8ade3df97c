"""The stubs against the runtime: the README's examples type-check under
``mypy --strict`` (and run), and every attribute that is read-only at
runtime is read-only for mypy too. (``mypy --strict -p biomero_rs`` and
``mypy.stubtest`` themselves run in scripts/test.sh.)"""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import biomero_rs

api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[2]


def _mypy(tmp_path, *files):
    out, err, code = api.run(["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / ".mypy_cache"),
                              *map(str, files)])
    return out + err, code


def _readme_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_examples_type_check_strictly_and_run(tmp_path):
    blocks = _readme_blocks()
    assert blocks, "README.md has no python examples"
    files = []
    for i, block in enumerate(blocks):
        f = tmp_path / f"readme_example_{i}.py"
        f.write_text(block)
        files.append(f)
    out, code = _mypy(tmp_path, *files)
    assert code == 0, out
    for f in files:
        r = subprocess.run([sys.executable, str(f)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "SQLALCHEMY_URL"})
        assert r.returncode == 0, (f.read_text(), r.stderr)


def _read_only_attributes():
    """(class name, attribute) of every data descriptor without a setter."""
    found = []
    for name in biomero_rs.__all__:
        cls = getattr(biomero_rs, name)
        if not inspect.isclass(cls) or not cls.__module__.startswith("biomero_rs._core"):
            continue
        for attr, obj in vars(cls).items():
            if inspect.isgetsetdescriptor(obj) or isinstance(obj, property):
                found.append((name, attr))
    return found


def test_runtime_read_only_attributes_are_read_only_in_the_stubs(tmp_path):
    attrs = _read_only_attributes()
    assert ("Task", "status") in attrs and ("JobView", "task_id") in attrs
    lines = ["from typing import Any", "import biomero_rs", ""]
    for i, (cls, attr) in enumerate(attrs):
        lines.append(f"def f{i}(x: biomero_rs.{cls}, v: Any) -> None:")
        lines.append(f"    x.{attr} = v  # line-{i}")
    f = tmp_path / "assign.py"
    f.write_text("\n".join(lines) + "\n")
    out, code = _mypy(tmp_path, f)
    assert code == 1
    error_lines = {int(m) for m in re.findall(r"assign\.py:(\d+): error", out)}
    text = f.read_text().splitlines()
    for i, (cls, attr) in enumerate(attrs):
        lineno = next(n for n, t in enumerate(text, 1) if t.endswith(f"# line-{i}"))
        assert lineno in error_lines, f"mypy accepts assigning {cls}.{attr}:\n{out}"
    for (cls, attr) in attrs:  # and the runtime refuses them all
        with pytest.raises((AttributeError, TypeError)):
            setattr(_instance(getattr(biomero_rs, cls)), attr, None)


def _instance(cls):
    import datetime
    import uuid

    samples = {
        "JobView": dict(slurm_job_id=1, user=2, group=3),
        "JobProgressView": dict(slurm_job_id=1, status="RUNNING"),
        "WorkflowProgressView": dict(workflow_id=uuid.uuid4(), start_time=datetime.datetime(2024, 1, 1)),
        "TaskExecution": dict(task_id=uuid.uuid4(), task_name="t", status="S",
                              start_time=datetime.datetime(2024, 1, 1)),
    }
    if cls.__name__ in samples:
        return cls(**samples[cls.__name__])
    return _tracked(cls)


def _tracked(cls, _cache={}):
    if not _cache:
        import tempfile

        url = f"sqlite:///{tempfile.mkdtemp()}/ro.db"
        t = biomero_rs.WorkflowTracker(url)
        wf = t.initiate_workflow("n", None, 1, 2)
        task = t.add_task_to_workflow(wf, "x", None, {}, {})
        _cache.update({
            "WorkflowTracker": t, "WorkflowRun": t.repository.get(wf), "Task": t.repository.get(task),
            "Notification": t.notification_log.select(1, 1)[0],
            "JobAccounting": biomero_rs.JobAccounting(url), "JobProgress": biomero_rs.JobProgress(url),
            "WorkflowProgress": biomero_rs.WorkflowProgress(url),
            "WorkflowAnalytics": biomero_rs.WorkflowAnalytics(url),
        })
    return _cache[cls.__name__]
