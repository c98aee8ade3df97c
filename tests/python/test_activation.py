"""biomero_rs.activate()/deactivate()/is_active() and the BIOMERO_RS_ACTIVATE
start-up hook, on the real, unmodified biomero 2.8.3."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import biomero_rs
from biomero_rs import activation

pytest.importorskip("biomero")

# (module, name) pairs that activation must rebind, and to what.
REBOUND = [
    (module, name)
    for module in ["biomero", "biomero.slurm_client", "biomero.eventsourcing", "biomero.views",
                   "biomero.database", "eventsourcing.system"]
    for name in [n for names in activation.ORIGINS.values() for n in names]
]


def bindings():
    """{(module, name): object} for every REBOUND pair the module has."""
    out = {}
    for module, name in REBOUND:
        m = sys.modules.get(module)
        if m is not None and hasattr(m, name):
            out[(module, name)] = getattr(m, name)
    return out


@pytest.fixture
def biomero_imported():
    import biomero.slurm_client  # noqa: F401

    activation.deactivate()
    before = bindings()
    yield before
    activation.deactivate()
    assert bindings() == before


def test_activate_after_import_rebinds_every_name_and_deactivate_restores(biomero_imported):
    before = biomero_imported
    # What slurm_client took, and the names on the defining modules and the package.
    for key in [("biomero.slurm_client", n) for n in ("WorkflowTracker", "NoOpWorkflowTracker", "JobAccounting",
                                                      "JobProgress", "WorkflowProgress", "WorkflowAnalytics",
                                                      "EngineManager", "JobView", "JobProgressView",
                                                      "WorkflowProgressView", "TaskExecution", "System",
                                                      "SingleThreadedRunner")] + [
            ("biomero.eventsourcing", "WorkflowTracker"), ("biomero.views", "JobProgress"),
            ("biomero.database", "EngineManager"), ("eventsourcing.system", "System"),
            ("biomero", "WorkflowTracker"), ("biomero", "WorkflowAnalytics")]:
        assert key in before and before[key] is not getattr(biomero_rs, key[1]), key
    assert not biomero_rs.is_active()

    biomero_rs.activate()
    biomero_rs.activate()  # idempotent
    assert biomero_rs.is_active()
    after = bindings()
    assert set(after) == set(before)
    for (module, name), obj in after.items():
        assert obj is getattr(biomero_rs, name), (module, name)
    # Names that are the reference's own elsewhere in biomero are rebound too.
    import biomero.views

    assert biomero.views.EngineManager is biomero_rs.EngineManager

    biomero_rs.deactivate()
    biomero_rs.deactivate()  # idempotent
    assert not biomero_rs.is_active()
    assert bindings() == before
    assert not any(type(f).__name__ == "Finder" for f in sys.meta_path)


def purelib() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def run_python(code: str, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "BIOMERO_RS_ACTIVATE"}
    full.update(env)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                          timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys
state = {"early": sorted(m for m in sys.modules if "biomero" in m),
         "finders": [type(f).__module__ for f in sys.meta_path]}
import biomero.slurm_client as sc
import biomero, biomero.database, eventsourcing.system
state["after_biomero"] = sorted(m for m in sys.modules if m.startswith("biomero_rs"))
import biomero_rs
from importlib.resources import files
state["resources"] = files("biomero").joinpath("__init__.py").is_file()
state["active"] = biomero_rs.is_active()
state["switched"] = [sc.WorkflowTracker is biomero_rs.WorkflowTracker,
                     sc.EngineManager is biomero_rs.EngineManager,
                     biomero.WorkflowAnalytics is biomero_rs.WorkflowAnalytics,
                     biomero.database.TaskExecution is biomero_rs.TaskExecution,
                     eventsourcing.system.SingleThreadedRunner is biomero_rs.SingleThreadedRunner]
print(json.dumps(state))
"""


def test_pth_file_is_installed():
    pth = purelib() / "biomero_rs_activate.pth"
    assert pth.is_file(), "biomero_rs_activate.pth is not installed: run scripts/env.sh (or install the wheel)"
    shipped = Path(__file__).resolve().parents[2] / "python" / "biomero_rs_activate.pth"
    assert pth.read_text() == shipped.read_text()


def test_env_switch_activates_when_biomero_is_imported():
    state = run_python(PROBE, BIOMERO_RS_ACTIVATE="1")
    # Until biomero is imported only the tiny hook module is loaded.
    assert state["early"] == ["_biomero_rs_hook"]
    assert "_biomero_rs_hook" in state["finders"]
    assert "biomero_rs" in state["after_biomero"]
    assert state["active"] is True
    assert state["switched"] == [True] * 5
    assert state["resources"] is True


@pytest.mark.parametrize("value", [None, "", "0", "false", "off"])
def test_env_switch_off_imports_nothing(value):
    env = {} if value is None else {"BIOMERO_RS_ACTIVATE": value}
    state = run_python(PROBE, **env)
    assert state["early"] == []
    assert "_biomero_rs_hook" not in state["finders"]
    assert state["after_biomero"] == []
    assert state["active"] is False
    assert state["switched"] == [False] * 5


def test_activate_before_import_and_the_reference_decides_nothing():
    code = """
import json, sys, biomero_rs
biomero_rs.activate()
assert "biomero" not in sys.modules
from biomero.eventsourcing import NoOpWorkflowTracker, WorkflowTracker
from eventsourcing.system import System
import biomero_rs
ok = [WorkflowTracker is biomero_rs.WorkflowTracker, NoOpWorkflowTracker is biomero_rs.NoOpWorkflowTracker,
      System is biomero_rs.System]
biomero_rs.deactivate()
import biomero.eventsourcing as es
ok.append(es.WorkflowTracker.__module__ == "biomero.eventsourcing")
print(json.dumps(ok))
"""
    assert run_python(code) == [True, True, True, True]


def test_cli_status_reports_activation(sqlite_db):
    import shutil

    exe = shutil.which("biomero-rs", path=str(Path(sys.executable).parent))
    assert exe, "the biomero-rs entry point is not installed"
    biomero_rs.WorkflowTracker(sqlite_db.url).initiate_workflow("wf", "d", 1, 2)
    base = {k: v for k, v in os.environ.items() if k not in ("BIOMERO_RS_ACTIVATE", "SQLALCHEMY_URL")}
    for value, expected in [(None, "off"), ("0", "off"), ("1", "on")]:
        env = dict(base) if value is None else dict(base, BIOMERO_RS_ACTIVATE=value)
        text = subprocess.run([exe, "status", "--url", sqlite_db.url], capture_output=True, text=True, env=env,
                              timeout=120)
        assert text.returncode == 0, text.stderr
        assert f"activation: {expected}" in text.stdout.splitlines()
        js = subprocess.run([exe, "status", "--json", "--url", sqlite_db.url], capture_output=True, text=True,
                            env=env, timeout=120)
        assert js.returncode == 0, js.stderr
        assert json.loads(js.stdout)["activation"] == expected
