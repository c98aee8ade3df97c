"""docs/switch-over.md, step by step: every ``biomero-rs`` command of its
shell blocks runs, in the order of the procedure, against a database that
biomero 2.8.3 with its listeners wrote, and every test the document names
exists."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import biomero_rs
from test_switch import STEPS, reference, tables

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "switch-over.md"


def doc_commands():
    """The biomero-rs lines of the document's sh blocks, in order."""
    text = DOC.read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        lines += [ln.strip() for ln in block.splitlines() if ln.strip()]
    return lines


def run(line, url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOMERO_")}
    env["SQLALCHEMY_URL"] = url
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run(line, shell=True, capture_output=True, text=True, env=env, timeout=120)


def test_the_document_is_linked_and_its_commands_are_the_tested_ones():
    assert "docs/switch-over.md" in (ROOT / "README.md").read_text()
    commands = doc_commands()
    assert commands[0] == "pip install biomero_rs"
    rs = [c.split()[1] for c in commands[1:]]
    assert rs == ["verify", "catch-up", "verify", "rebuild", "rebuild", "rebuild", "check", "check", "check"]


def test_every_named_test_exists():
    text = DOC.read_text()
    named = re.findall(r"(test_[a-z_]+\.py)(?:::(test_[a-z0-9_]+))?", text)
    more = re.findall(r"`(test_[a-z0-9_]+)`", text)
    here = Path(__file__).parent
    defined = {}
    for f in here.glob("test_*.py"):
        tree = ast.parse(f.read_text())
        defined[f.name] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    everything = set().union(*defined.values())
    assert named
    for file, name in named:
        assert file in defined, file
        if name:
            assert name in defined[file], f"{file}::{name}"
    for name in more:
        assert name in everything, name


def test_the_procedure_on_a_python_database(db):
    commands = doc_commands()[1:]
    verify, catch_up, verify_again, *rebuilds, check_lag, check_idle, check_json = commands
    out = reference(db, STEPS[:3])  # Python 2.8.3 stopped mid-workflow
    before = tables(db)
    # 3. Look before switching: read-only, lists the rows Python left lagging.
    looked = run(verify, db.url)
    assert looked.returncode == 1, looked.stderr
    assert "user_id" in looked.stdout and tables(db) == before
    # 4. The switch (no BIOMERO_* variable): adopts and corrects.
    started = run(catch_up, db.url)
    assert started.returncode == 0, started.stderr
    assert "alembic_version_biomero" in tables(db)
    # 5. Verify.
    done = run(verify_again, db.url)
    assert done.returncode == 0 and "the views are right" in done.stdout, done.stdout
    # Rebuilds: full, since a date, last N days.
    for line in rebuilds:
        r = run(line, db.url)
        assert r.returncode == 0, r.stderr
    assert run(verify, db.url).returncode == 0  # the last one covered every event
    # Checks: current, but Python stopped mid-workflow, so not idle.
    assert run(check_lag, db.url).returncode == 0
    busy = run(check_idle, db.url)
    assert busy.returncode == 1 and "unfinished workflows" in busy.stdout, busy.stdout
    assert run(check_json, db.url).returncode == 0
    # Back to Python, which continues; then switching again corrects it.
    ids = dict(out["ids"])
    reference(db, STEPS[3:6], ids)
    assert run(catch_up, db.url).returncode == 0
    assert run(verify, db.url).returncode == 0


def test_activation_variable_switches_the_unmodified_slurm_client():
    try:
        import biomero_rs.activation  # noqa: F401
    except ImportError:
        pytest.skip("this build has no BIOMERO_RS_ACTIVATE hook")
    env = dict(os.environ, BIOMERO_RS_ACTIVATE="1")
    code = ("import biomero.slurm_client as s, biomero_rs; "
            "print(s.WorkflowTracker is biomero_rs.WorkflowTracker)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "True"
