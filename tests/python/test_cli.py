"""The biomero-rs command, through its installed entry point."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import biomero_rs

EXE = shutil.which("biomero-rs", path=str(Path(sys.executable).parent)) or shutil.which("biomero-rs")


def cli(*args, env=None, cwd=None):
    assert EXE, "the biomero-rs entry point is not installed"
    full_env = {k: v for k, v in os.environ.items() if k != "SQLALCHEMY_URL"}
    full_env.update(env or {})
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


@pytest.mark.parametrize("command", ["migrate", "rebuild", "catch-up", "status", "demo"])
def test_every_command_has_help(command):
    r = cli(command, "--help")
    assert r.returncode == 0 and "usage: biomero-rs " + command in r.stdout


def test_demo_writes_an_sqlite_file_and_prints_the_four_views(tmp_path):
    r = cli("demo", "--workflows", "3", "--db", str(tmp_path / "demo.db"))
    assert r.returncode == 0, r.stderr
    for table in ["biomero_workflow_progress_view", "biomero_job_view", "biomero_job_progress_view",
                  "biomero_task_execution"]:
        assert table in r.stdout
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert len(biomero_rs.WorkflowProgress(url).list_workflows()) == 3
    assert "(3 rows)" in r.stdout


def test_status_rebuild_catch_up_migrate_on_a_database(db):
    t = biomero_rs.WorkflowTracker(db.url, views=[])
    wf = t.initiate_workflow("wf", "d", 1, 2)
    t.add_task_to_workflow(wf, "cellpose", "1", {}, {})

    r = cli("status", "--json", "--url", db.url)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["events"] == 3 and s["backend"] == db.backend
    assert s["topics"]["biomero.eventsourcing:Task.TaskCreated"] == 1

    r = cli("catch-up", "--views", "workflow_progress", env={"SQLALCHEMY_URL": db.url})
    assert r.returncode == 0 and "applied 3 events" in r.stdout, r.stderr
    assert biomero_rs.status(db.url)["views"]["workflow_progress"]["lag"] == 0
    assert biomero_rs.status(db.url)["views"]["job_accounting"]["lag"] == 3

    r = cli("rebuild", "--url", db.url)
    assert r.returncode == 0, r.stderr
    assert "3/3 events" in r.stderr and "rebuilt" in r.stdout
    assert all(v["lag"] == 0 for v in biomero_rs.status(db.url)["views"].values())

    r = cli("status", "--url", db.url)
    assert r.returncode == 0 and "WorkflowRun.WorkflowInitiated" in r.stdout

    r = cli("migrate", "--url", db.url)
    assert r.returncode == 0, r.stderr


def test_errors_exit_non_zero_with_a_message_and_no_password():
    r = cli("status", "--url", "mysql://root:topsecret@localhost/db")
    assert r.returncode == 1
    assert "mysql" in r.stderr and "topsecret" not in r.stderr + r.stdout
    r = cli("status")
    assert r.returncode != 0 and "SQLALCHEMY_URL" in r.stderr
    r = cli("rebuild", "--url", "postgresql://bio:topsecret@127.0.0.1:1/x", "--quiet")
    assert r.returncode == 1 and "127.0.0.1:1" in r.stderr and "topsecret" not in r.stderr
    r = cli("no-such-command")
    assert r.returncode == 2
