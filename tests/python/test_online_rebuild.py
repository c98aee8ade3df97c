"""Rebuilds beside the live tables: readers in other processes see the old
rows until the switch and all the new ones after it; a rebuild killed at any
moment leaves the live rows as they were and nothing behind; one rebuild at
a time; Postgres grants, owner, indexes and comments stay. And `check`."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import biomero_rs
from biomero_rs import RebuildRunningError, WorkflowTracker

VIEW_TABLES = ["biomero_job_view", "biomero_job_progress_view", "biomero_workflow_progress_view",
               "biomero_task_execution"]
TRACKING = ["jobaccounting_tracking", "jobprogress_tracking", "workflowprogress_tracking",
            "workflowanalytics_tracking"]
CLI = [sys.executable, "-m", "biomero_rs"]


def make_log(db, workflows=150, extra=0):
    """`workflows` workflows of three tasks each, some failed, then `extra`
    progress events of one task appended in bulk (to make the rebuild long)."""
    with WorkflowTracker(db.url) as t:
        for i in range(workflows):
            wf = t.initiate_workflow(f"wf{i}", "d", 1 + i % 4, 2)
            for step in ("transfer", "run", "results"):
                task = t.add_task_to_workflow(wf, step, "1", {}, {})
                t.start_task(task)
                if step == "run":
                    t.add_job_id(task, str(1000 + i))
                    t.update_task_status(task, "RUNNING")
                    t.update_task_progress(task, "50%")
                if i % 7 == 0 and step == "results":
                    t.fail_task(task, "boom")
                else:
                    t.complete_task(task, "ok")
            t.complete_workflow(wf)
    if extra:
        where = "WHERE topic = 'biomero.eventsourcing:Task.ProgressUpdated'"
        oid, topic, state = db.rows(f"SELECT originator_id, topic, state FROM workflowtracker_events {where} "
                                    "ORDER BY id LIMIT 1")[0]
        last = db.rows("SELECT MAX(originator_version) FROM workflowtracker_events WHERE originator_id = ?",
                       (oid,))[0][0]
        db.insert_events([(oid, last + 1 + i, topic, state) for i in range(extra)])
        biomero_rs.catch_up(db.url)


def snapshot(db):
    """Every row of the view and tracking tables, as the driver reads them."""
    return {t: sorted(db.rows(f"SELECT * FROM {t}"), key=repr) for t in VIEW_TABLES + TRACKING}


def table_names(db):
    if db.backend == "sqlite":
        return sorted(r[0] for r in db.rows("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"))
    return sorted(r[0] for r in db.rows(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'i') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
        "AND left(n.nspname, 13) <> 'pg_toast_temp'"))


READER = r"""
import json, sys, time
backend, url, tables = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
user = sys.argv[4] if len(sys.argv) > 4 else None
if backend == "sqlite":
    import sqlite3
    conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
    def counts():
        return [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables]
else:
    import psycopg2
    conn = psycopg2.connect(url, user=user) if user else psycopg2.connect(url)
    conn.autocommit = True
    def counts():
        with conn.cursor() as cur:
            out = []
            for t in tables:
                cur.execute(f"SELECT COUNT(*) FROM {t}")
                out.append(cur.fetchone()[0])
            return out
low, polls, errors = None, 0, []
print("ready", flush=True)
import select
while True:
    try:
        c = counts()
        low = c if low is None else [min(a, b) for a, b in zip(low, c)]
        polls += 1
    except Exception as e:
        errors.append(repr(e))
    if select.select([sys.stdin], [], [], 0)[0]:
        break
print(json.dumps({"low": low, "polls": polls, "errors": errors[:5]}), flush=True)
"""


def start_reader(db, user=None):
    args = [sys.executable, "-c", READER, db.backend, db.url, ",".join(VIEW_TABLES)] + ([user] if user else [])
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def stop_reader(p):
    p.stdin.write("\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def counts(db):
    return [db.rows(f"SELECT COUNT(*) FROM {t}")[0][0] for t in VIEW_TABLES]


def test_readers_never_see_fewer_rows_while_commands_go_on(db):
    make_log(db, workflows=150, extra=60_000)
    before = counts(db)
    reader = start_reader(db)
    stop, written, errors = threading.Event(), [], []

    def writer():
        with WorkflowTracker(db.url) as t:
            while not stop.is_set():
                try:
                    wf = t.initiate_workflow("during", "d", 1, 2)
                    t.add_task_to_workflow(wf, "run", "1", {}, {})
                    written.append(wf)
                except Exception as e:
                    errors.append(repr(e))
                time.sleep(0.005)

    th = threading.Thread(target=writer)
    th.start()
    try:
        n = biomero_rs.rebuild_views(db.url)
    finally:
        stop.set()
        th.join()
    seen = stop_reader(reader)
    assert errors == [] and written
    assert seen["errors"] == [] and seen["polls"] > 5
    assert all(low >= b for low, b in zip(seen["low"], before)), (seen, before)
    assert n >= 60_000
    status = biomero_rs.status(db.url)
    assert all(v["lag"] == 0 for v in status["views"].values())
    assert biomero_rs.verify(db.url) == []
    with biomero_rs.WorkflowProgress(db.url) as v:
        assert all(v.get_workflow(wf).name == "during" for wf in written)


KILLED = r"""
import sys, biomero_rs
print("go", flush=True)
def progress(done, total):
    print(done, total, flush=True)
biomero_rs.rebuild_views(sys.argv[1], progress=progress)
print("finished", flush=True)
"""


def hold_log_lock(db):
    """Another writer holding the log's lock (the switch waits for it)."""
    if db.backend == "sqlite":
        import sqlite3

        c = sqlite3.connect(db.url[len("sqlite:///"):], isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        return c
    import psycopg2

    c = psycopg2.connect(db.url)
    c.cursor().execute("LOCK TABLE workflowtracker_events IN EXCLUSIVE MODE")
    return c


@pytest.mark.parametrize("moment", ["start", "first batch", "half way", "waiting to switch"])
def test_kill_9_leaves_the_live_rows_as_they_were(db, moment):
    make_log(db, workflows=60, extra=50_000)
    # Rows that a rebuild would change: the kill must leave them as they are.
    db.execute("UPDATE biomero_workflow_progress_view SET name = 'stale'")
    before, names = snapshot(db), table_names(db)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, db.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    lock = None
    try:
        if moment == "start":
            time.sleep(0.05)
        else:
            first = proc.stdout.readline().split()
            total = int(first[1])
            if moment == "waiting to switch":
                lock = hold_log_lock(db)
            while True:
                line = proc.stdout.readline().split()
                assert line and line[0] != "finished", "the rebuild ended before the kill"
                done = int(line[0])
                if moment == "first batch" and done > 0:
                    break
                if moment == "half way" and done >= total // 2:
                    break
                if done >= total:
                    time.sleep(0.5)  # now waiting for the lock
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if lock is not None:
            lock.rollback() if db.backend == "postgres" else lock.execute("ROLLBACK")
            lock.close()
    assert snapshot(db) == before
    biomero_rs.rebuild_views(db.url, wait=False)  # no stale lock
    assert table_names(db) == names
    after = snapshot(db)
    assert after != before and all(r[2] != "stale" for r in db.rows("SELECT * FROM biomero_workflow_progress_view"))
    assert biomero_rs.verify(db.url) == []


REBUILD = r"""
import sys, biomero_rs
print("go", flush=True)
try:
    n = biomero_rs.rebuild_views(sys.argv[1], wait=sys.argv[2] == "wait")
    print("finished", n, flush=True)
except biomero_rs.RebuildRunningError as e:
    print("refused", e, flush=True)
"""


def test_one_rebuild_at_a_time(db):
    make_log(db, workflows=30, extra=150_000 if db.backend == "sqlite" else 60_000)
    first = subprocess.Popen([sys.executable, "-c", REBUILD, db.url, "wait"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "go"
    deadline = time.monotonic() + 30
    while biomero_rs.check(db.url)["rebuild"] is None:
        assert first.poll() is None and time.monotonic() < deadline, "the first rebuild did not start"
        time.sleep(0.005)
    holder = biomero_rs.check(db.url)["rebuild"]
    assert f"pid {first.pid} " in holder and "since" in holder
    # A second one started now: refused (naming the first), or waiting.
    with pytest.raises(RebuildRunningError) as refused:
        biomero_rs.rebuild_views(db.url, wait=False)
    assert f"pid {first.pid} " in str(refused.value) and "host" in str(refused.value)
    waiting = subprocess.Popen([sys.executable, "-c", REBUILD, db.url, "wait"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = waiting.communicate(timeout=300)
    assert "finished" in out1, err1
    assert "finished" in out2, err2
    assert biomero_rs.verify(db.url) == []
    assert biomero_rs.check(db.url)["rebuild"] is None


def test_partial_rebuild_and_pull_and_process_switch_too(db):
    make_log(db, workflows=20)
    with WorkflowTracker(db.url) as t:
        late = t.initiate_workflow("late", "d", 1, 2)
    first = db.rows("SELECT MIN(id) FROM workflowtracker_events WHERE originator_id = ?",
                    (db.rows("SELECT originator_id FROM workflowtracker_events ORDER BY id DESC LIMIT 1")[0][0],))[0][0]
    names = table_names(db)
    with biomero_rs.WorkflowProgress(db.url) as v:
        v.pull_and_process(start=first)
        assert [w.workflow_id for w in v.list_workflows()] == [late]
    assert table_names(db) == names
    assert biomero_rs.status(db.url)["views"]["workflow_progress"]["lag"] == 0


# ------------------------------------------------------------------ Postgres


@pytest.fixture
def pg_db(db):
    if db.backend != "postgres":
        pytest.skip("Postgres only")
    return db


def test_postgres_keeps_grants_owner_indexes_and_comments(pg_db):
    import uuid

    import psycopg2

    from conftest import _pg_admin

    db = pg_db
    make_log(db, workflows=60, extra=60_000)
    role = f"biomero_ro_{uuid.uuid4().hex[:8]}"
    owner = f"biomero_own_{uuid.uuid4().hex[:8]}"
    _pg_admin(f"CREATE ROLE {role} LOGIN")
    _pg_admin(f"CREATE ROLE {owner}")
    try:
        for sql in [f"GRANT USAGE ON SCHEMA public TO {role}",
                    *[f"GRANT SELECT ON {t} TO {role}" for t in VIEW_TABLES],
                    f"GRANT {owner} TO CURRENT_USER",
                    f"ALTER TABLE biomero_job_view OWNER TO {owner}",
                    "COMMENT ON TABLE biomero_task_execution IS 'one row per task'",
                    "COMMENT ON COLUMN biomero_task_execution.status IS 'the last status'",
                    "CREATE INDEX operator_status_ix ON biomero_task_execution (status)"]:
            db.execute(sql)

        def catalog():
            return db.rows(
                "SELECT c.relname, c.oid, c.relowner::regrole::text, c.relacl::text, "
                "obj_description(c.oid, 'pg_class'), "
                "(SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes i "
                " WHERE i.tablename = c.relname), "
                "(SELECT string_agg(coalesce(col_description(c.oid, a.attnum), ''), ',' ORDER BY a.attnum) "
                " FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0) "
                "FROM pg_class c WHERE c.relname = ANY(%s) ORDER BY 1", (VIEW_TABLES,))

        before_catalog = catalog()
        before = counts(db)
        reader = start_reader(db, user=role)
        biomero_rs.rebuild_views(db.url)
        seen = stop_reader(reader)
        assert seen["errors"] == [] and seen["polls"] > 5
        assert all(low >= b for low, b in zip(seen["low"], before))
        assert catalog() == before_catalog
        c = psycopg2.connect(db.url, user=role)
        with c.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM biomero_task_execution")
            assert cur.fetchone()[0] == before[3]
        c.close()
    finally:
        for r in (role, owner):
            try:
                db.execute(f"REASSIGN OWNED BY {r} TO CURRENT_USER")
                db.execute(f"DROP OWNED BY {r}")
            except Exception:
                pass
        db.drop()
        _pg_admin(f"DROP ROLE IF EXISTS {role}")
        _pg_admin(f"DROP ROLE IF EXISTS {owner}")


# --------------------------------------------------------------------- check


def run_cli(*args, env=None):
    p = subprocess.run(CLI + list(args), capture_output=True, text=True, env={**os.environ, **(env or {})},
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_check_exit_codes(db):
    make_log(db, workflows=5)
    assert run_cli("check", "--url", db.url)[0] == 0
    # Events written without views: lag.
    with WorkflowTracker(db.url, views=[]) as t:
        for _ in range(3):
            open_wf = t.initiate_workflow("open", "d", 1, 2)
    code, out, _ = run_cli("check", "--url", db.url)
    assert code == 1
    assert "workflow_progress: 3 events behind the log" in out
    assert run_cli("check", "--url", db.url, "--max-lag", "3")[0] == 0
    assert run_cli("check", "--url", db.url, "--max-lag", "2")[0] == 1
    code, out, _ = run_cli("check", "--url", db.url, "--max-lag", "3", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["views"]["workflow_progress"]["lag"] == 3
    biomero_rs.catch_up(db.url)
    assert run_cli("check", "--url", db.url)[0] == 0
    # Unfinished work fails only --idle.
    code, out, _ = run_cli("check", "--url", db.url, "--idle")
    assert code == 1 and "busy: 3 unfinished workflows, the oldest started" in out
    with WorkflowTracker(db.url) as t:
        task = t.add_task_to_workflow(open_wf, "run", "1", {}, {})
    code, out, _ = run_cli("check", "--url", db.url, "--idle", "--json")
    data = json.loads(out)
    assert code == 1 and data["unfinished"]["tasks"]["count"] == 1
    assert any("1 unfinished tasks" in p for p in data["problems"])
    code, _, err = run_cli("check", "--url", db.url, "--max-lag", "-1")
    assert code == 1 and "--max-lag" in err
    del task


def test_check_is_read_only(tmp_path):
    import sqlite3

    missing = tmp_path / "missing.db"
    code, _, err = run_cli("check", "--url", f"sqlite:///{missing}")
    assert code == 1 and "no such SQLite database" in err and not missing.exists()
    with pytest.raises(ValueError, match="does not exist"):
        biomero_rs.check(f"sqlite:///{missing}")
    assert not missing.exists()
    other = tmp_path / "other.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE x (a)")
    c.commit()
    c.close()
    code, out, _ = run_cli("check", "--url", f"sqlite:///{other}")
    assert code == 1 and "view tables missing" in out
    c = sqlite3.connect(other)
    assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["x"]
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    c.close()
    with pytest.raises(TypeError, match="idle"):
        biomero_rs.check(f"sqlite:///{other}", idle="yes")
    with pytest.raises(ValueError, match="max_lag"):
        biomero_rs.check(f"sqlite:///{other}", max_lag=-2)


def test_check_on_an_empty_postgres_database_creates_nothing(pg_db):
    c = biomero_rs.check(pg_db.url)
    assert not c["ok"] and any("view tables missing" in p for p in c["problems"])
    assert pg_db.rows("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'")[0][0] == 0
