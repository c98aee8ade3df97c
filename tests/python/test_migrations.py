"""View-table migrations (issue 6): the revisions in migrations/, the version
stamp in alembic_version_biomero, adoption of schemas made by Python BIOMERO,
BIOMERO_RUN_MIGRATIONS / BIOMERO_ALLOW_AUTO_STAMP, concurrent starters and
`biomero-rs migrate`. Every test runs on SQLite and Postgres (fixture `db`).

Startup-path checks run in subprocesses: the environment is then exactly what
the test says, and the per-process "already at head" memory starts empty.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import biomero_rs

# The revisions, as the migration files name them (NNNN_<id>.sql).
ALL_REVISIONS = [
    p.stem.split("_", 1)[1]
    for p in sorted((Path(__file__).resolve().parents[2] / "migrations" / "sqlite").glob("*.sql"))
]
BASELINE = ALL_REVISIONS[0]
HEAD = ALL_REVISIONS[-1]
VIEW_TABLES = [
    "biomero_job_view",
    "biomero_job_progress_view",
    "biomero_workflow_progress_view",
    "biomero_task_execution",
]
HEAD_INDEXES = {
    "ix_biomero_task_execution_start_time",
    "ix_biomero_workflow_progress_view_user_start_time",
}
ENV_VARS = ("BIOMERO_RUN_MIGRATIONS", "BIOMERO_ALLOW_AUTO_STAMP")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------ helpers


def execute(db, *statements):
    """Runs statements (SQL text, or (SQL, params)) and commits."""
    if db.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.url[len("sqlite:///"):])
    else:
        import psycopg2

        conn = psycopg2.connect(db.url)
    try:
        cur = conn.cursor()
        for s in statements:
            sql, params = (s, ()) if isinstance(s, str) else s
            if db.backend == "postgres":
                sql = sql.replace("?", "%s")
            cur.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def tables(db):
    if db.backend == "sqlite":
        rows = db.rows("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = db.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


def indexes(db):
    if db.backend == "sqlite":
        rows = db.rows("SELECT name FROM sqlite_master WHERE type = 'index'")
    else:
        rows = db.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    return {r[0] for r in rows}


def stamp(db):
    """The rows of alembic_version_biomero, or None without the table."""
    if "alembic_version_biomero" not in tables(db):
        return None
    return [r[0] for r in db.rows("SELECT version_num FROM alembic_version_biomero")]


def view_rows(db):
    out = {}
    for t in VIEW_TABLES:
        rows = db.rows(f"SELECT * FROM {t}")
        out[t] = sorted(tuple(str(c) for c in r) for r in rows)
    return out


def create_all(db):
    """The view tables exactly as biomero 2.8.3 makes them (SQLAlchemy
    create_all of biomero.database.Base), with no version stamp."""
    from sqlalchemy import create_engine

    from biomero.database import Base

    engine = create_engine(db.sqlalchemy_url)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def stamped_baseline(db):
    """A database the reference's Alembic track left at baseline_001."""
    create_all(db)
    execute(
        db,
        "CREATE TABLE alembic_version_biomero (version_num VARCHAR(32) NOT NULL, "
        "CONSTRAINT alembic_version_biomero_pkc PRIMARY KEY (version_num))",
        ("INSERT INTO alembic_version_biomero (version_num) VALUES (?)", (BASELINE,)),
    )


def python(code, *args, env=None, timeout=60):
    """Runs `code` in a fresh interpreter with the BIOMERO_* switches unset
    except those in `env`."""
    full = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
    )


START_TRACKER = """
    import sys, biomero_rs
    t = biomero_rs.WorkflowTracker(sys.argv[1])
    print("started", ",".join(t.views))
"""

# The reference with its four view projectors, as BIOMERO's docs wire them:
# it creates the view tables with create_all (no stamp) and fills them.
REFERENCE_WITH_VIEWS = """
    import json, os, sys
    url = sys.argv[1]
    os.environ["SQLALCHEMY_URL"] = url
    os.environ.setdefault("PERSISTENCE_MODULE", "eventsourcing_sqlalchemy")
    from eventsourcing.system import SingleThreadedRunner, System
    from biomero.database import EngineManager
    from biomero.eventsourcing import WorkflowTracker
    from biomero.views import JobAccounting, JobProgress, WorkflowAnalytics, WorkflowProgress

    topic = EngineManager.create_scoped_session(sqlalchemy_url=url)
    system = System(pipes=[[WorkflowTracker, v] for v in
                           (JobAccounting, JobProgress, WorkflowProgress, WorkflowAnalytics)])
    runner = SingleThreadedRunner(system, env={
        "SQLALCHEMY_SCOPED_SESSION_TOPIC": topic,
        "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy",
    })
    runner.start()
    wft = runner.get(WorkflowTracker)
    wf = wft.initiate_workflow("cellpose", "segmentation", 5, 7)
    task = wft.add_task_to_workflow(wf, "_SLURM_Image_Transfer.py", "1.0", {"ids": [1, 2]}, {})
    wft.start_workflow(wf)
    wft.start_task(task)
    wft.add_job_id(task, "4242")
    wft.update_task_status(task, "RUNNING")
    wft.update_task_progress(task, "50%")
    runner.stop()
    EngineManager.close_engine()
    print(json.dumps({"workflow": wf.hex, "task": task.hex}))
"""


# -------------------------------------------------------------------- tests


def test_fresh_database_is_created_and_stamped_at_head(db):
    assert biomero_rs.run_migrations(db.url) == ALL_REVISIONS
    assert set(VIEW_TABLES) <= tables(db)
    assert stamp(db) == [HEAD]
    assert HEAD_INDEXES <= indexes(db)
    # Nothing to do the second time, nor for a tracker or a view.
    assert biomero_rs.run_migrations(db.url) == []
    wft = biomero_rs.WorkflowTracker(db.url)
    wf = wft.initiate_workflow("wf", "d", 1, 2)
    assert biomero_rs.WorkflowProgress(db.url).get_workflow(wf) is not None
    assert stamp(db) == [HEAD]


def test_fresh_database_via_tracker_startup(db):
    out = python(START_TRACKER, db.url)
    assert out.returncode == 0, out.stderr
    assert stamp(db) == [HEAD]
    assert HEAD_INDEXES <= indexes(db)


def test_database_of_python_biomero_is_adopted_and_upgraded(db):
    # Python BIOMERO 2.8.3 with its views: events, view rows, tracking rows,
    # view tables made by create_all and no stamp.
    out = python(REFERENCE_WITH_VIEWS, db.sqlalchemy_url, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    ids = json.loads(out.stdout.strip().splitlines()[-1])
    assert stamp(db) is None
    before = view_rows(db)
    assert len(before["biomero_job_view"]) == 1 and len(before["biomero_task_execution"]) == 1
    events = db.rows("SELECT COUNT(*) FROM workflowtracker_events")[0][0]
    tables_before, indexes_before = tables(db), indexes(db)

    # The startup path adopts it by itself (no BIOMERO_* variable), as the
    # reference's startup migrator does: stamped baseline_001 without
    # touching the tables, then upgraded.
    adopted = python(
        "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
        + textwrap.dedent(START_TRACKER),
        db.url,
    )
    assert adopted.returncode == 0, adopted.stderr
    assert "adopted the existing view tables" in adopted.stderr
    assert f"applied view-table revision {HEAD}" in adopted.stderr
    assert f"applied view-table revision {BASELINE}" not in adopted.stderr
    assert stamp(db) == [HEAD]
    assert HEAD_INDEXES <= indexes(db)
    # Data kept: the rows the reference left are complete here (its last
    # event, a progress update, wrote them), so the correction keeps them;
    # the columns added after the baseline are filled from the log.
    after = view_rows(db)
    assert {t: [r[:len(before[t][0])] for r in rows] for t, rows in after.items()} == before
    assert all(r[-1] is not None for r in after["biomero_task_execution"])
    assert db.rows("SELECT COUNT(*) FROM workflowtracker_events")[0][0] == events

    # And biomero_rs keeps working on it, as does the reference's reading of it.
    wft = biomero_rs.WorkflowTracker(db.url)
    wft.update_task_status(ids["task"], "COMPLETED")
    status = dict(db.rows("SELECT status, task_name FROM biomero_task_execution"))
    assert "COMPLETED" in status


def test_create_all_schema_is_adopted_by_explicit_migrate(db):
    create_all(db)
    execute(
        db,
        (
            "INSERT INTO biomero_job_progress_view (slurm_job_id, status, progress) VALUES (?, ?, ?)",
            (77, "RUNNING", "10%"),
        ),
    )
    assert biomero_rs.run_migrations(db.url) == ALL_REVISIONS[1:]  # baseline stamped, not applied
    assert stamp(db) == [HEAD]
    assert HEAD_INDEXES <= indexes(db)
    assert db.rows("SELECT slurm_job_id, status, progress FROM biomero_job_progress_view") == [
        (77, "RUNNING", "10%")
    ]


def test_partial_schema_gets_the_missing_tables(db):
    create_all(db)
    execute(db, "DROP TABLE biomero_task_execution", "DROP TABLE biomero_job_view")
    assert biomero_rs.run_migrations(db.url) == ALL_REVISIONS[1:]
    assert set(VIEW_TABLES) <= tables(db)
    assert stamp(db) == [HEAD]
    assert HEAD_INDEXES <= indexes(db)


def test_foreign_table_is_not_adopted(db):
    execute(db, "CREATE TABLE biomero_task_execution (task_id INTEGER PRIMARY KEY, note VARCHAR)")
    with pytest.raises(biomero_rs.DatabaseError, match="biomero_task_execution.task_name: expected"):
        biomero_rs.run_migrations(db.url)
    assert stamp(db) is None
    assert "biomero_job_view" not in tables(db)  # rolled back as a whole


def test_database_stamped_baseline_by_reference_alembic_is_upgraded(db):
    stamped_baseline(db)
    execute(
        db,
        (
            "INSERT INTO biomero_job_view (slurm_job_id, \"user\", \"group\") VALUES (?, ?, ?)",
            (1, 2, 3),
        ),
    )
    assert not HEAD_INDEXES & indexes(db)
    # The startup path upgrades a stamped database without any permission.
    out = python(START_TRACKER, db.url)
    assert out.returncode == 0, out.stderr
    assert stamp(db) == [HEAD]
    assert HEAD_INDEXES <= indexes(db)
    assert db.rows('SELECT slurm_job_id, "user", "group" FROM biomero_job_view') == [(1, 2, 3)]
    assert biomero_rs.run_migrations(db.url) == []


def test_stamped_database_with_a_dropped_table_is_repaired(db):
    assert biomero_rs.run_migrations(db.url) == ALL_REVISIONS
    execute(db, "DROP TABLE biomero_task_execution")
    out = python(START_TRACKER, db.url)
    assert out.returncode == 0, out.stderr
    assert "biomero_task_execution" in tables(db)
    assert HEAD_INDEXES <= indexes(db)
    assert stamp(db) == [HEAD]


def test_unknown_revision_is_refused(db):
    stamped_baseline(db)
    execute(db, "UPDATE alembic_version_biomero SET version_num = 'zz_from_the_future'")
    with pytest.raises(biomero_rs.DatabaseError, match="zz_from_the_future"):
        biomero_rs.run_migrations(db.url)


def test_run_migrations_0_touches_nothing(db):
    # Fresh database: no view table is created; a clear error says what to do.
    out = python(START_TRACKER, db.url, env={"BIOMERO_RUN_MIGRATIONS": "0"})
    assert out.returncode != 0
    assert "BIOMERO_RUN_MIGRATIONS=0" in out.stderr and "biomero-rs migrate" in out.stderr
    assert not set(VIEW_TABLES) & tables(db)
    assert stamp(db) is None

    # At baseline_001 the tables lack the columns later revisions add: the
    # tracker refuses to start (its writes would fail) and says which and
    # what to do; nothing is upgraded.
    stamped_baseline(db)
    before_indexes = indexes(db)
    out = python(START_TRACKER, db.url, env={"BIOMERO_RUN_MIGRATIONS": "0"})
    assert out.returncode != 0
    assert "biomero_task_execution.workflow_id" in out.stderr and "biomero-rs migrate" in out.stderr
    assert stamp(db) == [BASELINE]
    assert indexes(db) == before_indexes

    # Unstamped create_all tables likewise (not stamped).
    execute(db, "DROP TABLE alembic_version_biomero")
    out = python(START_TRACKER, db.url, env={"BIOMERO_RUN_MIGRATIONS": "0"})
    assert out.returncode != 0 and "biomero-rs migrate" in out.stderr
    assert stamp(db) is None

    # Migrated by hand to head, the tracker starts and changes nothing.
    assert biomero_rs.run_migrations(db.url)
    out = python(START_TRACKER, db.url, env={"BIOMERO_RUN_MIGRATIONS": "0"})
    assert out.returncode == 0, out.stderr
    assert stamp(db) == [HEAD]

    # A bad value is an error, not a guess.
    out = python(START_TRACKER, db.url, env={"BIOMERO_RUN_MIGRATIONS": "maybe"})
    assert out.returncode != 0 and "BIOMERO_RUN_MIGRATIONS" in out.stderr


RACE = """
    import json, logging, sys, time
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    import biomero_rs
    url, start, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    while time.time() < start:
        time.sleep(0.001)
    if mode == "run":
        print(json.dumps(biomero_rs.run_migrations(url)))
    else:
        biomero_rs.WorkflowTracker(url)
        print(json.dumps(None))
"""


def _race(db, mode, n=8):
    start = time.time() + 0.8
    full = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RACE), db.url, str(start), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full,
        )
        for _ in range(n)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append((json.loads(out.strip().splitlines()[-1]), err))
    return results


@pytest.mark.parametrize("mode", ["run", "tracker"])
def test_eight_processes_starting_at_once_migrate_once(db, mode):
    results = _race(db, mode)
    applied_logs = [
        line.rsplit(" ", 1)[-1]
        for _, err in results
        for line in err.splitlines()
        if "applied view-table revision" in line
    ]
    assert sorted(applied_logs) == sorted(ALL_REVISIONS)
    if mode == "run":
        union = [rev for applied, _ in results for rev in applied]
        assert sorted(union) == sorted(ALL_REVISIONS)
        # Whoever applied, applied the whole path in one transaction.
        assert [a for a, _ in results if a] == [ALL_REVISIONS]
    assert stamp(db) == [HEAD]
    assert HEAD_INDEXES <= indexes(db)


def _cli(*args, env=None):
    exe = Path(sys.executable).parent / "biomero-rs"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "biomero_rs.cli"]
    full = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full.update(env or {})
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=full, timeout=60)


def test_cli_migrate(db):
    out = _cli("migrate", "--url", db.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"applied: {', '.join(ALL_REVISIONS)}"
    out = _cli("migrate", "--url", db.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "view tables are up to date"
    assert stamp(db) == [HEAD]


def test_cli_catch_up_adopts_a_create_all_schema(db):
    create_all(db)
    out = _cli("catch-up", "--url", db.url)
    assert out.returncode == 0, out.stderr
    assert stamp(db) == [HEAD]
    out = _cli("migrate", "--url", db.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "view tables are up to date"
