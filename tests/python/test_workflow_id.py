"""biomero_task_execution.workflow_id (migration views_003): the workflow a
task was created for (its TaskCreated event's workflow_id), so that a
dashboard can join a task to its workflow. Filled live, by full and partial
rebuilds and by the correction after another writer; compared by verify;
in the TaskExecution model; a database of Python BIOMERO 2.8.3 (which knows
no such column) is adopted and upgraded on the first start, and 2.8.3 goes
on reading and writing the table after it exists (its rows leave the column
NULL until biomero_rs's next start corrects them). The reference runs in
subprocesses (``reftool.py views``)."""

import datetime
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import biomero_rs
import reftool
from test_migrations import HEAD, execute
from test_switch import STEPS, assert_views_right, reference, run_rs

TASKS = "SELECT task_id, workflow_id FROM biomero_task_execution"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("BIOMERO_RUN_MIGRATIONS", "BIOMERO_ALLOW_AUTO_STAMP"):
        monkeypatch.delenv(name, raising=False)


def _uuid(v):
    return None if v is None else uuid.UUID(str(v))


def workflow_ids(db):
    """{task id: workflow id or None} as the table holds them."""
    return {_uuid(t): _uuid(w) for t, w in db.rows(TASKS)}


def start_in_subprocess(db):
    """A new process starts biomero_rs on the database (migrations, catch-up,
    correction), as an OMERO script does."""
    code = textwrap.dedent(f"""
        import biomero_rs
        biomero_rs.WorkflowTracker({db.url!r}).close()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def one_task_then_closed(db):
    """A workflow with one task written by biomero_rs, whose store this
    process then closes (the next start is a fresh one)."""
    tracker = biomero_rs.WorkflowTracker(db.url)
    wf = tracker.initiate_workflow("wf", "d", 5, 7)
    task = tracker.add_task_to_workflow(wf, "cellpose", "1", {}, {})
    tracker.close()
    biomero_rs._core.close_store(db.url)
    return wf, task


def test_filled_live_and_shown_by_the_model(db):
    tracker = biomero_rs.WorkflowTracker(db.url)
    wf = tracker.initiate_workflow("wf", "d", 5, 7)
    t1 = tracker.add_task_to_workflow(wf, "cellpose", "1", {}, {})
    other = tracker.initiate_workflow("other", "d", 5, 7)
    t2 = tracker.add_task_to_workflow(other, "stardist", "1", {}, {})
    assert workflow_ids(db) == {t1: wf, t2: other}
    row = biomero_rs.WorkflowAnalytics(db.url).get_task_execution(t1)
    assert row.workflow_id == wf
    assert row.to_dict()["workflow_id"] == wf
    assert row.to_dict(json=True)["workflow_id"] == str(wf)
    assert biomero_rs.TaskExecution(**row.to_dict()) == row
    assert biomero_rs.TaskExecution(**{**row.to_dict(), "workflow_id": None}).workflow_id is None
    assert_views_right(db)


def test_filled_by_full_and_partial_rebuilds(db):
    tracker = biomero_rs.WorkflowTracker(db.url)
    wf = tracker.initiate_workflow("wf", "d", 5, 7)
    t1 = tracker.add_task_to_workflow(wf, "first", "1", {}, {})
    time.sleep(0.01)
    cutoff = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.01)
    t2 = tracker.add_task_to_workflow(wf, "second", "1", {}, {})
    execute(db, "UPDATE biomero_task_execution SET workflow_id = NULL")
    biomero_rs.rebuild_views(db.url)
    assert workflow_ids(db) == {t1: wf, t2: wf}
    execute(db, "UPDATE biomero_task_execution SET workflow_id = NULL")
    biomero_rs.rebuild_views(db.url, since=cutoff)
    # Only the task created after the cutoff has a row; its workflow comes
    # from its own TaskCreated.
    assert workflow_ids(db) == {t2: wf}


def test_verify_compares_it(db):
    tracker = biomero_rs.WorkflowTracker(db.url)
    wf = tracker.initiate_workflow("wf", "d", 5, 7)
    task = tracker.add_task_to_workflow(wf, "cellpose", "1", {}, {})
    assert biomero_rs.verify(db.url) == []
    execute(db, "UPDATE biomero_task_execution SET workflow_id = NULL")
    diffs = biomero_rs.verify(db.url)
    assert [(d["table"], d["column"], _uuid(d["key"])) for d in diffs] == [
        ("biomero_task_execution", "workflow_id", task)
    ]
    assert diffs[0]["live"] is None and _uuid(diffs[0]["expected"]) == wf


def test_python_database_is_adopted_upgraded_and_filled_on_the_first_start(db):
    out = reference(db, STEPS[:3])  # Python 2.8.3 made the database and its rows
    columns = [r[0] for r in db.rows(
        "SELECT name FROM pragma_table_info('biomero_task_execution')" if db.backend == "sqlite" else
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'biomero_task_execution'")]
    assert "workflow_id" not in columns
    start_in_subprocess(db)
    assert db.rows("SELECT version_num FROM alembic_version_biomero") == [(HEAD,)]
    wf = uuid.UUID(out["ids"]["wf"])
    t1, t2 = uuid.UUID(out["ids"]["t1"]), uuid.UUID(out["ids"]["t2"])
    assert workflow_ids(db) == {t1: wf, t2: wf}
    assert_views_right(db)


def test_python_goes_on_reading_and_writing_after_the_column_exists(db):
    out = reference(db, STEPS[:2])
    start_in_subprocess(db)  # adopts, adds the column, fills the rows
    wf, t1 = uuid.UUID(out["ids"]["wf"]), uuid.UUID(out["ids"]["t1"])
    assert workflow_ids(db) == {t1: wf}
    # Python BIOMERO 2.8.3 writes again: its listener leaves the new column
    # NULL, and it reads the table as before.
    more = reference(db, STEPS[2:3], refs=out["ids"])
    t2 = uuid.UUID(more["ids"]["t2"])
    assert more["errors"] == []
    assert workflow_ids(db)[t2] is None
    # Python read the table through its own model, the new row included.
    read_by_python = reftool.untag(more["tables"])["tasks"]
    assert {r["task_id"] for r in read_by_python} == {t1, t2}
    # biomero_rs's next start corrects the rows it projected.
    start_in_subprocess(db)
    assert workflow_ids(db) == {t1: wf, t2: wf}
    assert_views_right(db)
    # And a command of biomero_rs after Python's works on the same rows.
    run_rs(db, STEPS[3:5], more["ids"])
    assert workflow_ids(db) == {t1: wf, t2: wf}
    assert_views_right(db)


def test_a_database_of_an_earlier_biomero_rs_is_upgraded_and_filled(db):
    wf, task = one_task_then_closed(db)
    # The database as the release before views_003 left it: biomero_rs's
    # own positions are at the end of the log, the column does not exist.
    previous = biomero_rs.view_definitions()  # (the column's migration is the head)
    assert any(c["name"] == "workflow_id" and c["since"] == HEAD
               for d in previous for c in d["columns"])
    execute(db, "DROP INDEX IF EXISTS ix_biomero_task_execution_workflow_id",
            "ALTER TABLE biomero_task_execution DROP COLUMN workflow_id",
            "UPDATE alembic_version_biomero SET version_num = 'views_002'")
    start_in_subprocess(db)
    assert db.rows("SELECT version_num FROM alembic_version_biomero") == [(HEAD,)]
    assert workflow_ids(db) == {task: wf}
    assert_views_right(db)


def test_run_migrations_0_refuses_tables_without_the_column(db):
    reference(db, STEPS[:2])
    code = f"import biomero_rs; biomero_rs.WorkflowTracker({db.url!r})"
    env = {**__import__("os").environ, "BIOMERO_RUN_MIGRATIONS": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0
    assert "biomero_task_execution.workflow_id" in out.stderr and "biomero-rs migrate" in out.stderr


def test_a_dropped_column_is_made_again_at_head(db):
    wf, task = one_task_then_closed(db)
    execute(db, "DROP INDEX IF EXISTS ix_biomero_task_execution_workflow_id",
            "ALTER TABLE biomero_task_execution DROP COLUMN workflow_id")
    start_in_subprocess(db)
    assert db.rows("SELECT version_num FROM alembic_version_biomero") == [(HEAD,)]
    assert workflow_ids(db) == {task: wf}  # and filled again


def test_rows_leave_other_comparisons_to_the_other_object():
    from unittest import mock

    row = biomero_rs.JobView(slurm_job_id=5, user=3, group=7)
    assert row == mock.ANY and mock.ANY == row
    assert row != 5 and (row == 5) is False
