"""The biomero-rs command in scripts: global options anywhere, --json on every
command, no file created by a read on a missing SQLite path, quiet ends on
closed pipes, ``python -m biomero_rs``, and an interrupted rebuild that says
how to finish."""

import json
import os
import subprocess
import sys

import pytest

import biomero_rs
from biomero_rs import cli as cli_module
from test_cli import EXE, cli

COMMANDS = ["migrate", "rebuild", "catch-up", "status", "check", "verify", "demo"]


def _parser_commands():
    parser = cli_module.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def _written(url):
    t = biomero_rs.WorkflowTracker(url)
    wf = t.initiate_workflow("wf", "d", 1, 2)
    task = t.add_task_to_workflow(wf, "cellpose", "1", {}, {})
    t.add_job_id(task, "77")
    return wf


def test_global_options_before_or_after_the_command(db):
    _written(db.url)
    for args in (["--url", db.url, "status", "--json"], ["--json", "--url", db.url, "status"],
                 ["status", "--url", db.url, "--json"], ["--url", db.url, "--json", "status"]):
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert json.loads(r.stdout)["events"] == 4
    r = cli("--quiet", "--url", db.url, "catch-up")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    r = cli("--url", "sqlite:///ignored.db", "status", "--url", db.url, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["backend"] == db.backend


@pytest.mark.parametrize("command", _parser_commands())
def test_every_command_takes_the_global_options(command):
    r = cli(command, "--help")
    assert r.returncode == 0
    for option in ("--url", "--json", "--quiet"):
        assert option in r.stdout, (command, option)


def test_every_command_prints_json(db, tmp_path):
    _written(db.url)
    outputs = {}
    for command in ["migrate", "catch-up", "rebuild", "status", "check", "verify"]:
        r = cli(command, "--json", "--url", db.url)
        assert r.returncode == 0, (command, r.stderr)
        outputs[command] = json.loads(r.stdout)
        assert r.stderr == ""  # no progress bar mixed in
    assert outputs["rebuild"]["events"] == 4 and outputs["rebuild"]["views"] == list(biomero_rs.ALL)
    assert outputs["catch-up"] == {"events": 0}
    assert outputs["migrate"] == {"applied": []}
    assert outputs["status"]["events"] == 4
    assert outputs["verify"] == []  # no differences
    assert outputs["check"]["ok"] is True and outputs["check"]["problems"] == []
    r = cli("demo", "--json", "--workflows", "2", "--db", str(tmp_path / "d.db"))
    assert r.returncode == 0, r.stderr
    demo = json.loads(r.stdout)
    assert demo["workflows"] == 2 and demo["events"] > 0
    assert len(demo["tables"]["biomero_workflow_progress_view"]) == 2
    assert set(demo["tables"]) == {"biomero_workflow_progress_view", "biomero_job_view",
                                   "biomero_job_progress_view", "biomero_task_execution"}


def test_demo_writes_into_an_explicit_url(db):
    _written(db.url)
    r = cli("--url", db.url, "demo", "--json", "--workflows", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["events"] > 4 and len(out["tables"]["biomero_workflow_progress_view"]) == 2  # added, not replaced
    assert "://" in out["db"]


def test_every_subcommand_is_covered_by_the_json_test():
    assert set(_parser_commands()) == set(COMMANDS), "a new command needs a --json test"


@pytest.mark.parametrize("command", ["status", "catch-up", "rebuild", "verify", "check"])
def test_reads_on_a_missing_sqlite_file_fail_and_create_nothing(tmp_path, command):
    path = tmp_path / "typo.db"
    r = cli(command, "--url", f"sqlite:///{path}", cwd=tmp_path)
    assert r.returncode == 1
    assert "no such SQLite database" in r.stderr and str(path) in r.stderr
    assert os.listdir(tmp_path) == []
    r = cli(command, "--url", "sqlite:///typo.db", cwd=tmp_path)  # relative to the working directory
    assert r.returncode == 1 and os.listdir(tmp_path) == []


def test_migrate_creates_a_new_sqlite_file(tmp_path):
    r = cli("migrate", "--url", f"sqlite:///{tmp_path / 'new.db'}")
    assert r.returncode == 0 and (tmp_path / "new.db").exists()


@pytest.mark.parametrize("args", [["status", "--json"], ["status"], ["demo", "--workflows", "3"]])
def test_closed_pipe_ends_quietly_with_the_sigpipe_status(tmp_path, args):
    db = tmp_path / "p.db"
    _written(f"sqlite:///{db}")
    extra = ["--db", str(tmp_path / "demo.db")] if args[0] == "demo" else ["--url", f"sqlite:///{db}"]
    proc = subprocess.Popen([EXE, *args, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={k: v for k, v in os.environ.items() if k != "SQLALCHEMY_URL"})
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(timeout=120)
    assert err == "", err
    assert code == cli_module.EXIT_BROKEN_PIPE == 128 + 13


def test_closed_pipe_through_a_shell_pipeline(tmp_path):
    r = subprocess.run(f'"{EXE}" demo --workflows 60 --db "{tmp_path / "d.db"}" | head -1; '
                       'echo "status=${PIPESTATUS[0]}"',
                       shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and r.stderr == "", r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("wrote ")
    # 141 when head had exited before the output ended; 0 when it all fitted in the pipe first
    assert lines[1] in (f"status={cli_module.EXIT_BROKEN_PIPE}", "status=0")


def test_python_dash_m_runs_the_cli(sqlite_db):
    _written(sqlite_db.url)
    r = subprocess.run([sys.executable, "-m", "biomero_rs", "--json", "status", "--url", sqlite_db.url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["events"] == 4
    r = subprocess.run([sys.executable, "-m", "biomero_rs", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and biomero_rs.__version__ in r.stdout


def test_an_interrupted_rebuild_says_how_far_it_got_and_leaves_the_views(sqlite_db, monkeypatch, capsys):
    """Ctrl-C after the first batch (10,000 events) of a rebuild: the views
    are as they were before it."""
    t = biomero_rs.WorkflowTracker(sqlite_db.url + "?synchronous=normal", views=[])
    wf = t.initiate_workflow("big", None, 1, 2)
    task = t.add_task_to_workflow(wf, "t", "1", {}, {})
    for i in range(12_000):
        t.update_task_progress(task, f"{i}%")
    total = biomero_rs.status(sqlite_db.url)["events"]
    lags = {k: v["lag"] for k, v in biomero_rs.status(sqlite_db.url)["views"].items()}
    real_call = cli_module.ProgressBar.__call__

    def interrupting(self, done, total):
        real_call(self, done, total)
        if 0 < done < total:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.ProgressBar, "__call__", interrupting)
    code = cli_module.main(["rebuild", "--quiet", "--url", sqlite_db.url])
    err = capsys.readouterr().err
    assert code == cli_module.EXIT_INTERRUPTED
    assert {k: v["lag"] for k, v in biomero_rs.status(sqlite_db.url)["views"].items()} == lags
    assert lags["workflow_progress"] == total
    assert f"after 10,000 of {total:,} events" in err and "as they were" in err
    monkeypatch.undo()
    assert cli_module.main(["rebuild", "--quiet", "--url", sqlite_db.url]) == 0
    assert all(v["lag"] == 0 for v in biomero_rs.status(sqlite_db.url)["views"].values())
