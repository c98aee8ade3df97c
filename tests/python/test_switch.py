"""Switching a live BIOMERO 2.8.3 database to biomero_rs and back (issue 13).

The reference runs in subprocesses (``reftool.py views``: biomero 2.8.3
with its four listeners, as BIOMERO's SlurmClient wires them); biomero_rs
runs in this process with the BIOMERO_* switches unset. "Right" means: the
four view tables equal what a rebuild from the whole log gives
(docs/projections.md applied to the whole log; the rebuild itself is checked
against the reference in test_differential.py).
"""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import biomero_rs
import reftool
from conftest import run_reference
from reftool import ResultArg, step
from test_migrations import _cli as cli  # the same runner of the command
from test_migrations import HEAD, execute, tables  # the same SQL helpers

ENV_VARS = ("BIOMERO_RUN_MIGRATIONS", "BIOMERO_ALLOW_AUTO_STAMP")
VIEW_TABLES = {
    "biomero_job_view": "slurm_job_id",
    "biomero_job_progress_view": "slurm_job_id",
    "biomero_workflow_progress_view": "workflow_id",
    "biomero_task_execution": "task_id",
}
TRACKING = [
    "jobaccounting_tracking",
    "jobprogress_tracking",
    "workflowprogress_tracking",
    "workflowanalytics_tracking",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def view_rows(db):
    """Every row of the four tables, as text, in key order."""
    out = {}
    for table, key in VIEW_TABLES.items():
        rows = db.rows(f"SELECT * FROM {table} ORDER BY {key}")
        out[table] = [tuple(None if c is None else str(c) for c in r) for r in rows]
    return out


def rebuilt_rows(db):
    """The rows a full rebuild gives (the tables are rebuilt in place)."""
    biomero_rs.rebuild_views(db.url)
    return view_rows(db)


def assert_views_right(db):
    live = view_rows(db)
    expected = rebuilt_rows(db)
    assert live == expected
    return live


def event_count(db):
    return db.rows("SELECT COUNT(*) FROM workflowtracker_events")[0][0]


def max_id(db):
    return db.rows("SELECT MAX(id) FROM workflowtracker_events")[0][0]


def std_positions(db):
    return [
        db.rows(f"SELECT notification_id FROM {t} WHERE application_name = 'WorkflowTracker'")[0][0]
        for t in TRACKING
    ]


def reference(db, workload, refs=None):
    job = {"workload": workload}
    if refs:
        job["refs"] = refs
    out = json.loads(run_reference("views", db.sqlalchemy_url, input=json.dumps(job)))
    assert out["errors"] == []
    return out


def run_rs(db, workload, refs):
    tracker = biomero_rs.WorkflowTracker(db.url)
    import uuid

    ids = reftool.run_workload(tracker, workload, {k: uuid.UUID(v) for k, v in refs.items()})
    return {k: v.hex for k, v in ids.items()}


# A workflow with an infrastructure task then its main task; one of each
# kind of step. The names are the switch points.
WORKLOAD = [
    ("initiate", step("initiate_workflow", "Cellpose run", "segment", 5, 7, as_="wf")),
    ("add_task", step("add_task_to_workflow", reftool.Ref("wf"), "_SLURM_Image_Transfer.py", "1.0",
                      {"ids": [1]}, {}, as_="t1")),
    ("add_task2", step("add_task_to_workflow", reftool.Ref("wf"), "cellpose", "2.1", {"ids": [1]}, {},
                       as_="t2")),
    ("start", step("start_workflow", reftool.Ref("wf"))),
    ("start_task", step("start_task", reftool.Ref("t2"))),
    ("job_id", step("add_job_id", reftool.Ref("t2"), "4242")),
    ("status", step("update_task_status", reftool.Ref("t2"), "RUNNING")),
    ("progress", step("update_task_progress", reftool.Ref("t2"), "43%")),
    ("result", step("add_result", reftool.Ref("t2"),
                    ResultArg(ok=True, stdout="done", stderr="", command="sbatch", env={}))),
    ("completion", step("complete_task", reftool.Ref("t2"), "finished")),
    ("wf_done", step("complete_workflow", reftool.Ref("wf"))),
]
NAMES = [n for n, _ in WORKLOAD]
STEPS = [s for _, s in WORKLOAD]


@pytest.mark.parametrize("point", ["add_task", "job_id", "status", "progress", "result", "completion"])
def test_switch_after_each_kind_of_step(db, point):
    cut = NAMES.index(point) + 1
    out = reference(db, STEPS[:cut])
    assert biomero_rs.status(db.url)["events"] == len(out["notifications"])
    before = event_count(db)
    run_rs(db, STEPS[cut:], out["ids"])
    assert event_count(db) > before
    rows = assert_views_right(db)
    assert len(rows["biomero_workflow_progress_view"]) == 1
    # The rows a dashboard user sees, spelled out.
    wf = rows["biomero_workflow_progress_view"][0]
    assert wf[3:5] == ("5", "7") and wf[7] == "cellpose"
    tasks = rows["biomero_task_execution"]
    assert [t[3:5] for t in tasks] == [("5", "7"), ("5", "7")]


def test_python_database_is_adopted_and_corrected_without_env_vars(db):
    # Python stopped right after add_task_to_workflow: its rows lag (the
    # main task and the task's user/group are in memory only).
    out = reference(db, STEPS[:3])
    lagging = view_rows(db)
    assert lagging != rebuilt_rows_copy(db)
    assert db.rows("SELECT user_id FROM biomero_task_execution") != [(5,), (5,)]
    tracker = biomero_rs.WorkflowTracker(db.url)  # adopts, corrects
    assert db.rows("SELECT version_num FROM alembic_version_biomero") == [(HEAD,)]
    rows = view_rows(db)
    assert sorted(r[3] for r in rows["biomero_task_execution"]) == ["5", "5"]
    assert rows["biomero_workflow_progress_view"][0][7] == "cellpose"
    assert rows == rebuilt_rows(db)
    # Metabase's "workflow execution count per user" sees the workflow.
    assert db.rows('SELECT "user", COUNT(*) FROM biomero_workflow_progress_view GROUP BY "user"') == [
        (5, 1)
    ]
    # It continues.
    import uuid

    tracker.add_job_id(uuid.UUID(out["ids"]["t2"]), "99")
    assert_views_right(db)


def rebuilt_rows_copy(db):
    """What a rebuild would give, computed on a copy (the original untouched)."""
    if db.backend == "sqlite":
        import shutil
        import tempfile
        from conftest import Database

        src = db.url[len("sqlite:///"):]
        d = tempfile.mkdtemp()
        dst = os.path.join(d, "copy.db")
        with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
            a.backup(b)
        copy = type("C", (), {})()
        copy.url = f"sqlite:///{dst}"
        copy.backend = "sqlite"
        copy.rows = lambda sql, params=(): Database.rows(copy, sql, params)
        return rebuilt_rows(copy)
    from conftest import PG_SERVER, _pg_admin, Database
    import uuid

    name = f"biomero_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{db.name}"')
    try:
        copy = Database.__new__(Database)
        copy.backend, copy.name, copy.url = "postgres", name, f"{PG_SERVER}/{name}"
        rows = rebuilt_rows(copy)
        biomero_rs.close_store(copy.url) if hasattr(biomero_rs, "close_store") else None
        return rows
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_python_rs_python_rs(db):
    out1 = reference(db, STEPS[:3])
    refs = run_rs(db, STEPS[3:6], out1["ids"])
    n_after_rs = event_count(db)
    assert std_positions(db) == [max_id(db)] * 4
    # Python again, on what biomero_rs wrote: it continues from the
    # positions biomero_rs recorded, neither missing nor reprocessing.
    out3 = reference(db, STEPS[6:8], refs)
    assert len(out3["notifications"]) == n_after_rs + 2
    assert std_positions(db) == [max_id(db)] * 4
    # And biomero_rs again: corrects what Python left, continues.
    run_rs(db, STEPS[8:], out3["ids"])
    assert event_count(db) == n_after_rs + 2 + (len(STEPS) - 8)
    ids = [r[0] for r in db.rows("SELECT id FROM workflowtracker_events ORDER BY id")]
    assert ids == sorted(set(ids))
    assert std_positions(db) == [max_id(db)] * 4
    rows = assert_views_right(db)
    assert rows["biomero_workflow_progress_view"][0][1:3] == ("DONE", "100%")


def test_catch_up_corrects_too(db):
    reference(db, STEPS[:3])
    assert biomero_rs.catch_up(db.url) >= 0
    rows = view_rows(db)
    assert sorted(r[3] for r in rows["biomero_task_execution"]) == ["5", "5"]
    assert rows == rebuilt_rows(db)


def test_python_ignores_the_own_positions(db):
    out = reference(db, STEPS[:3])
    run_rs(db, STEPS[3:5], out["ids"])
    own = db.rows("SELECT application_name, notification_id FROM jobaccounting_tracking "
                  "ORDER BY application_name")
    assert [r[0] for r in own] == ["WorkflowTracker", "biomero_rs"]
    assert own[0][1] == own[1][1] == max_id(db)


# --------------------------------------------------------------- adoption

SUBPROCESS_START = """
    import sys, biomero_rs
    try:
        biomero_rs.WorkflowTracker(sys.argv[1])
    except biomero_rs.BiomeroError as e:
        print(str(e))
        sys.exit(3)
    print("started")
"""


def start_in_subprocess(url, env=None):
    full = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(SUBPROCESS_START), url],
                          capture_output=True, text=True, env=full, timeout=120)


def journal_mode(db):
    return db.rows("PRAGMA journal_mode")[0][0]


def test_foreign_event_table_is_refused_before_anything_changes(db):
    execute(db, "CREATE TABLE workflowtracker_events (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    before = tables(db)
    if db.backend == "sqlite":
        assert journal_mode(db) == "delete"
    out = start_in_subprocess(db.url)
    assert out.returncode == 3, out.stderr
    assert "workflowtracker_events.payload: expected no such column" in out.stdout
    assert "workflowtracker_events.originator_id: expected" in out.stdout
    assert "changed nothing" in out.stdout
    assert tables(db) == before
    if db.backend == "sqlite":
        assert journal_mode(db) == "delete"


def test_view_table_of_another_shape_is_refused_naming_each_difference(db):
    from sqlalchemy import create_engine

    from biomero.database import Base

    engine = create_engine(db.sqlalchemy_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    execute(db, "DROP TABLE biomero_job_progress_view",
            "CREATE TABLE biomero_job_progress_view (slurm_job_id INTEGER NOT NULL PRIMARY KEY, "
            "status TEXT, extra INTEGER)")
    before = tables(db)
    out = start_in_subprocess(db.url)
    assert out.returncode == 3, out.stderr
    msg = out.stdout
    assert "biomero_job_progress_view.status: expected" in msg and "NOT NULL" in msg
    assert "biomero_job_progress_view.progress: expected" in msg and "found no such column" in msg
    assert "biomero_job_progress_view.extra: expected no such column" in msg
    assert "drop these tables" in msg
    assert tables(db) == before  # no stamp, no event table
    assert "alembic_version_biomero" not in tables(db)
    # BIOMERO_RUN_MIGRATIONS=0 only checks: the same refusal.
    out = start_in_subprocess(db.url, {"BIOMERO_RUN_MIGRATIONS": "0"})
    assert out.returncode == 3 and "biomero_job_progress_view.extra" in out.stdout
    assert tables(db) == before


def test_run_migrations_0_on_a_python_database_only_checks(db):
    # Python's tables lack the columns biomero_rs's later revisions add:
    # the start is refused, naming them and the fix, and nothing changes.
    reference(db, STEPS[:3])
    before = tables(db)
    out = start_in_subprocess(db.url, {"BIOMERO_RUN_MIGRATIONS": "0"})
    text = out.stdout + out.stderr
    assert "biomero_task_execution.workflow_id" in text and "biomero-rs migrate" in text
    assert tables(db) == before
    assert "alembic_version_biomero" not in before


# ----------------------------------------------------------------- verify




def test_verify_reports_a_row_changed_by_hand(db):
    out = reference(db, STEPS[:3])
    run_rs(db, STEPS[3:], out["ids"])
    assert biomero_rs.verify(db.url) == []
    ok = cli("verify", "--url", db.url)
    assert ok.returncode == 0 and "the views are right" in ok.stdout, ok.stderr
    import uuid

    t2 = uuid.UUID(out["ids"]["t2"])
    execute(db, "UPDATE biomero_job_progress_view SET status = 'HACKED' WHERE slurm_job_id = 4242",
            "DELETE FROM biomero_job_view",
            "INSERT INTO biomero_job_progress_view (slurm_job_id, status) VALUES (777, 'STRAY')")
    diffs = biomero_rs.verify(db.url)
    by = {(d["table"], d["column"], d["key"]): d for d in diffs}
    assert len(diffs) == 3, diffs
    d = by[("biomero_job_progress_view", "status", 4242)]
    assert (d["live"], d["expected"]) == ("HACKED", "RUNNING")
    d = by[("biomero_job_view", None, 4242)]
    assert d["live"] is None
    assert d["expected"] == {"slurm_job_id": 4242, "user": 5, "group": 7, "task_id": t2}
    d = by[("biomero_job_progress_view", None, 777)]
    assert d["expected"] is None and d["live"]["status"] == "STRAY"
    bad = cli("verify", "--url", db.url)
    assert bad.returncode == 1
    assert "HACKED" in bad.stdout and "3 differences" in bad.stdout
    as_json = json.loads(cli("verify", "--url", db.url, "--json").stdout)
    assert len(as_json) == 3
    # verify changed nothing: the hand-made rows are still there.
    assert db.rows("SELECT status FROM biomero_job_progress_view WHERE slurm_job_id = 4242") == [("HACKED",)]
    # A rebuild repairs it.
    biomero_rs.rebuild_views(db.url)
    assert biomero_rs.verify(db.url) == []


def test_verify_is_read_only_on_a_python_database(db):
    reference(db, STEPS[:3])
    before = tables(db)
    if db.backend == "sqlite":
        execute(db, "PRAGMA journal_mode=DELETE")
        mode = journal_mode(db)
    out = cli("verify", "--url", db.url, "--json")
    # Python left rows that lag (docs/projections.md, "Rules for every view"): verify shows them.
    assert out.returncode == 1, out.stderr
    diffs = json.loads(out.stdout)
    assert {(d["table"], d["column"]) for d in diffs} >= {
        ("biomero_task_execution", "user_id"),
        ("biomero_workflow_progress_view", "main_task_name"),
    }
    assert tables(db) == before
    assert "alembic_version_biomero" not in tables(db)
    if db.backend == "sqlite":
        assert journal_mode(db) == mode
    assert db.rows("SELECT COUNT(*) FROM jobaccounting_tracking WHERE application_name = 'biomero_rs'") == [(0,)]


# -------------------------------------------------------------- timestamps


@pytest.mark.skipif("postgres" not in __import__("conftest").BACKENDS, reason="Postgres not under test")
def test_timestamps_on_a_postgres_not_in_utc(tmp_path):
    """A database whose TimeZone is Europe/Amsterdam (a per-database
    setting; the shared server is not touched): biomero_rs's time columns
    hold what Python 2.8.3 writes for the same events (Amsterdam wall
    time), in live commands, corrections and rebuilds; the view models
    return the stored wall time."""
    import datetime
    import uuid
    from zoneinfo import ZoneInfo

    from conftest import Database, _pg_admin

    db = Database("postgres", tmp_path)
    try:
        _pg_admin(f"ALTER DATABASE \"{db.name}\" SET TimeZone = 'Europe/Amsterdam'")
        steps = STEPS[:4] + [step("complete_task", reftool.Ref("t1"), "ok")]
        out = reference(db, steps)
        times = "SELECT task_id::text, start_time, end_time FROM biomero_task_execution ORDER BY 1"
        wf_times = "SELECT workflow_id::text, start_time FROM biomero_workflow_progress_view"
        python_tasks, python_wf = db.rows(times), db.rows(wf_times)
        # What Python wrote is Amsterdam time (not UTC) for these events.
        created = {}
        for n in out["notifications"]:
            ts = json.loads(n["state"])["timestamp"]["_data_"]
            created.setdefault(n["originator_id"], datetime.datetime.fromisoformat(ts))
        ams = ZoneInfo("Europe/Amsterdam")
        wf_hex = out["ids"]["wf"]
        expected_wf = created[wf_hex].astimezone(ams).replace(tzinfo=None)
        assert python_wf == [(str(uuid.UUID(wf_hex)), expected_wf)]
        assert expected_wf != created[wf_hex].replace(tzinfo=None)
        # Corrected on adoption: times unchanged.
        tracker = biomero_rs.WorkflowTracker(db.url)
        assert db.rows(times) == python_tasks and db.rows(wf_times) == python_wf
        # A full rebuild writes the same times.
        biomero_rs.rebuild_views(db.url)
        assert db.rows(times) == python_tasks and db.rows(wf_times) == python_wf
        # Live commands too: a new task's start_time is its TaskCreated time
        # in Amsterdam, its end_time its TaskCompleted time.
        t3 = tracker.add_task_to_workflow(uuid.UUID(wf_hex), "stardist", "1", {}, {})
        tracker.complete_task(t3, "ok")
        ev = tracker.repository.get(t3)
        row = db.rows("SELECT start_time, end_time FROM biomero_task_execution WHERE task_id = %s",
                      (str(t3),))[0]
        assert row[0] == ev.created_on.astimezone(ams).replace(tzinfo=None)
        assert row[1] == ev.modified_on.astimezone(ams).replace(tzinfo=None)
        # The view model returns the stored wall time, as SQLAlchemy's does.
        view = biomero_rs.WorkflowProgress(db.url).get_workflow(uuid.UUID(wf_hex))
        assert view.start_time == expected_wf
        assert biomero_rs.verify(db.url) == []
    finally:
        db.drop()
