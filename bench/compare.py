#!/usr/bin/env python
"""biomero_rs side by side with the reference (biomero 2.8.3 on eventsourcing
9.5.4 + eventsourcing_sqlalchemy 1.0.1), the raw limit of the database, and
the same-writes limit of the workload.

    python bench/compare.py [--backend sqlite|postgres|all] [--workflows N]
                            [--seed S] [--rounds R] [--quick]
                            [--rs-path DIR] [--rs-baseline DIR]

One run, per backend and per round, each on a fresh database:

* ``raw``: single-row inserts, one transaction each, into a table shaped like
  ``workflowtracker_events`` (the database's commit limit for one client);
  on SQLite with the journal/synchronous settings of each side;
* ``biomero_rs``: the seeded workload through ``biomero_rs.WorkflowTracker``
  with all four views (on SQLite also with ``?synchronous=normal``);
* ``same writes``: the rows biomero_rs writes for each command of the
  workload, written by hand (see below);
* ``reference``: the same workload through biomero 2.8.3's ``WorkflowTracker``
  in an eventsourcing ``SingleThreadedRunner`` with the four view
  ProcessApplications of ``biomero.views`` (as ``SlurmClient`` sets it up).

Every measurement runs in its own worker process (the reference's
``EngineManager`` is process-global state), which issues the commands and
times each one with ``time.perf_counter_ns``. The order of the contenders is
reversed every other round. Afterwards the event and view-row counts of every
run are compared, so all really did the same work, and so is the content of
biomero_rs's and the same-writes runs (log and view rows, with the ids and
timestamps of each run numbered or masked; the reference on the columns its
view tables have).

The same-writes limit
---------------------

``raw`` is what the database commits of one small row at a time; a command of
this workload writes more than that: its events, a row of up to four views,
and the eight rows of the tracking tables (each view's position in the log,
under two application names). ``same writes`` is the physical limit of exactly
that work with this database and these settings:

1. Once per backend (untimed), a prep worker runs the seeded workload through
   biomero_rs (default settings) on a scratch database and records, after each
   command, the new rows of the log (every column but ``id``, in id order) and,
   for every other table, the rows inserted or changed (and which columns
   changed) and the rows deleted (a snapshot after each command, diffed by the
   primary key the catalog names). Nothing is specific to a view. The writes
   go to ``same_writes_<backend>.json`` in the bench's temporary directory
   (bytes as hex; Postgres values in their type's text form, with the
   declared types).
2. The timed worker creates the schema with ``biomero_rs.WorkflowTracker(url)``
   (and closes it), then writes each command's rows in one transaction: a
   prepared INSERT per event, ``INSERT ... ON CONFLICT (pk) DO UPDATE SET``
   the columns that changed per changed row (not all of them: rewriting the
   index entries of unchanged columns costs SQLite ~10% more pages per commit
   than biomero_rs writes), DELETE per deleted row. SQLite: Python's
   ``sqlite3`` (the same library), WAL + synchronous=FULL as biomero_rs's
   default URL, ``BEGIN IMMEDIATE`` ... ``COMMIT``, statements cached.
   Postgres: ``PREPARE``d once, each command ONE simple query ``BEGIN; LOCK
   TABLE workflowtracker_events IN EXCLUSIVE MODE; EXECUTE ...; COMMIT`` (one
   round trip; biomero_rs takes the same lock). The statements are built
   before the clock starts.
3. Its final database must equal the prep run's exactly (every table, row and
   column); the report says so. ``% of same writes`` is biomero_rs's
   throughput over that of the same-writes run of the same round (median over
   rounds); the target is 90%. ``biomero_rs normal`` (synchronous=NORMAL) has
   no same-writes run to be held against.

Then ``repository.get`` of a task with 1,000 events (written once by
biomero_rs; the same rows are read by both sides): ``biomero_rs`` gets it
again and again from one tracker, which keeps what it read and reads only
the events after it (as BIOMERO polls a task); ``biomero_rs cold`` gets it
from a new tracker each time (the whole history read and decoded). The log
holds that task alone, so its events lie together. ``biomero_rs cold,
10,000-event log`` gets the same task, cold, from a log where its events
alternate with those of 9 other tasks polled beside it (as in a database of
several running workflows; Postgres's statistics refreshed by ``ANALYZE``).

``--rs-baseline DIR`` measures another build of biomero_rs (e.g. that of an
earlier commit, installed with ``pip install --target DIR``) in the same run:
each measurement of ``biomero_rs`` (and ``biomero_rs normal``) is paired with
one of ``biomero_rs baseline``, whose worker has DIR first on PYTHONPATH (as
``--rs-path`` does for ``biomero_rs``), the two in alternating order, and the
report adds ours/baseline ratios per case; the baseline is also held against
the same-writes limit (recorded with biomero_rs, not the baseline).

Postgres: ``--pg postgresql://postgres@127.0.0.1:5432`` (default, or
BIOMERO_BENCH_PG); the script creates and drops its own ``biomero_bench_*``
databases. Absolute numbers depend on the machine (above all on its fsync
latency); the ratios are what carries over.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = " baseline"  # label suffix of the runs on the --rs-baseline build
SLOWER = 0.05  # ours more than this much slower than the baseline is flagged
PG_DEFAULT = os.environ.get("BIOMERO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
VIEW_TABLES = (
    "biomero_job_view",
    "biomero_job_progress_view",
    "biomero_workflow_progress_view",
    "biomero_task_execution",
)
EVENTS_TABLE = "workflowtracker_events"

# ------------------------------------------------------------------ workload


class Ref:
    """The id an earlier command returned under this name."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


def make_workload(n_workflows: int, seed: int, concurrent: int = 4):
    """The seeded workload: a list of (command, args, name-or-None).

    Each workflow: initiate, start, 1-3 tasks (add, start, job id, PENDING,
    RUNNING, progress updates, COMPLETED + result + complete, or FAILED +
    fail), then complete or fail the workflow. Up to ``concurrent`` workflows
    are in flight at once and their steps interleave, as on a busy server.
    """
    rng = random.Random(seed)
    job = 4_100_000
    task_names = ["_SLURM_Image_Transfer.py", "convert_image", "cellpose", "stardist",
                  "SLURM_Get_Results.py", "SLURM_Run_Workflow.py"]
    per_wf = []
    for w in range(n_workflows):
        wf = f"w{w}"
        steps = [("initiate_workflow",
                  (f"Workflow {w}", f"Segment images of dataset {rng.randint(1, 999)}",
                   rng.randint(1, 20), rng.randint(1, 5)), wf),
                 ("start_workflow", (Ref(wf),), None)]
        failed = False
        for t in range(rng.randint(1, 3)):
            tk = f"{wf}t{t}"
            job += 1
            n_images = rng.randint(1, 8)
            steps += [
                ("add_task_to_workflow",
                 (Ref(wf), rng.choice(task_names), f"v{rng.randint(1, 3)}.{rng.randint(0, 9)}",
                  {"image_ids": [rng.randint(1, 10**6) for _ in range(n_images)],
                   "data_type": "Image", "email": False},
                  {"diameter": rng.choice([0, 17.5, 30]), "use_gpu": True,
                   "model_type": "cyto2"}), tk),
                ("start_task", (Ref(tk),), None),
                ("add_job_id", (Ref(tk), job), None),
                ("update_task_status", (Ref(tk), "PENDING"), None),
                ("update_task_status", (Ref(tk), "RUNNING"), None),
            ]
            pct = 0.0
            for _ in range(rng.randint(2, 6)):
                pct = min(100.0, pct + rng.uniform(5, 40))
                steps.append(("update_task_progress", (Ref(tk), f"{pct:.0f}%"), None))
            if rng.random() < 0.15:
                steps += [("update_task_status", (Ref(tk), "FAILED"), None),
                          ("fail_task", (Ref(tk), f"Slurm job {job} failed: exit 1"), None)]
                failed = True
                break
            steps += [("update_task_status", (Ref(tk), "COMPLETED"), None),
                      ("add_result", (Ref(tk), {
                          "command": f"sbatch --job-name={tk} job.sh", "env": {"X": "1"},
                          "stdout": f"Submitted batch job {job}\n", "stderr": ""}), None),
                      ("complete_task", (Ref(tk), "Job completed"), None)]
        if failed:
            steps.append(("fail_workflow", (Ref(wf), "A task failed"), None))
        else:
            steps.append(("complete_workflow", (Ref(wf),), None))
        per_wf.append(steps)

    out, active, pending = [], [], list(reversed(per_wf))
    while active or pending:
        while pending and len(active) < concurrent:
            active.append(pending.pop())
        i = rng.randrange(len(active))
        out.append(active[i].pop(0))
        if not active[i]:
            active.pop(i)
    return out


def resolve(v, refs):
    if isinstance(v, Ref):
        return refs[v.name]
    if isinstance(v, dict) and set(v) == {"command", "env", "stdout", "stderr"}:
        return types.SimpleNamespace(**v)  # like a fabric Result
    return v


def run_timed(tracker, workload):
    """Runs the workload; returns (per-command latencies in ns, wall ns)."""
    refs, lat = {}, []
    perf = time.perf_counter_ns
    start = perf()
    for cmd, args, name in workload:
        fn = getattr(tracker, cmd)
        a = [resolve(x, refs) for x in args]
        t0 = perf()
        r = fn(*a)
        lat.append(perf() - t0)
        if name:
            refs[name] = r
    return lat, perf() - start


# ------------------------------------------------------------------ workers
# Each runs in its own process and prints one JSON line.


def reference_tracker(url, views=True):
    """biomero 2.8.3's WorkflowTracker, set up as SlurmClient does."""
    os.environ["SQLALCHEMY_URL"] = url
    os.environ["PERSISTENCE_MODULE"] = "eventsourcing_sqlalchemy"
    from eventsourcing.system import SingleThreadedRunner, System

    from biomero.database import EngineManager
    from biomero.eventsourcing import WorkflowTracker

    if views:
        from biomero.views import JobAccounting, JobProgress, WorkflowAnalytics, WorkflowProgress

        pipes = [[WorkflowTracker, JobAccounting], [WorkflowTracker, JobProgress],
                 [WorkflowTracker, WorkflowProgress], [WorkflowTracker, WorkflowAnalytics]]
    else:
        pipes = [[WorkflowTracker]]
    topic = EngineManager.create_scoped_session(sqlalchemy_url=url)
    runner = SingleThreadedRunner(System(pipes=pipes), env={
        "SQLALCHEMY_SCOPED_SESSION_TOPIC": topic,
        "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy",
    })
    runner.start()
    return runner, runner.get(WorkflowTracker)


def reference_settings():
    """What the reference's SQLite connections actually run with."""
    from sqlalchemy import text

    from biomero.database import EngineManager

    eng = EngineManager._engine
    if eng.dialect.name != "sqlite":
        return {}
    with eng.connect() as c:
        return {"journal_mode": c.execute(text("PRAGMA journal_mode")).scalar(),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                    c.execute(text("PRAGMA synchronous")).scalar())}


def worker_run(impl, url, n_workflows, seed):
    workload = make_workload(n_workflows, seed)
    info = {}
    if impl == "rs":
        import biomero_rs

        tracker = biomero_rs.WorkflowTracker(url)  # all four views
        info["module"] = biomero_rs._core.__file__
        lat, wall = run_timed(tracker, workload)
    else:
        runner, tracker = reference_tracker(url)
        lat, wall = run_timed(tracker, workload)
        info.update(reference_settings())
        from biomero.database import EngineManager

        runner.stop()
        EngineManager.close_engine()
    return {"lat": lat, "wall": wall, "n": len(lat), "info": info}


def worker_get(impl, url, task_hex, reps):
    task_id = uuid.UUID(task_hex)
    perf = time.perf_counter_ns
    lat = []
    if impl == "rs":
        import biomero_rs

        repo = biomero_rs.WorkflowTracker(url, views=[]).repository
        done = lambda: None  # noqa: E731  (each get is its own read transaction)
    elif impl == "rs_cold":
        import biomero_rs

        repo = None  # a new tracker before each get (untimed): nothing of the task in memory
        done = lambda: None  # noqa: E731
    else:
        from biomero.database import EngineManager

        runner, tracker = reference_tracker(url, views=False)
        repo = tracker.repository
        done = EngineManager.rollback  # end the scoped session's read, as BIOMERO does
    for i in range(reps + 5):
        if impl == "rs_cold":
            repo = biomero_rs.WorkflowTracker(url, views=[]).repository
        t0 = perf()
        task = repo.get(task_id)
        t1 = perf()
        done()
        if i >= 5:  # warm-up
            lat.append(t1 - t0)
    assert task.version == 999 and len(task.job_ids) == 0, (task.version,)
    if impl not in ("rs", "rs_cold"):
        runner.stop()
        EngineManager.close_engine()
    return {"lat": lat}


def worker_prep_get(url, n_events, sqlite_path, others=0):
    """A workflow with one task of ``n_events`` events (TaskCreated + progress
    updates), written by biomero_rs without views into ``sqlite_path`` (with
    synchronous=normal, to be quick), then, for Postgres, the same rows copied
    into the events table of ``url`` in one transaction. With ``others``, as
    many more tasks of the workflow get their progress updates in turn with
    it (as tasks polled side by side do), so the task's events are spread
    over a log ``others + 1`` times as long."""
    import sqlite3

    import biomero_rs

    t = biomero_rs.WorkflowTracker(f"sqlite:///{sqlite_path}?synchronous=normal", views=[])
    wf = t.initiate_workflow("get-bench", "one long task", 1, 1)
    task = t.add_task_to_workflow(wf, "cellpose", "1.0", {"image_ids": [1, 2, 3]}, {"d": 1.5})
    side = [t.add_task_to_workflow(wf, "cellpose", "1.0", {"image_ids": [k]}, {"d": 1.5})
            for k in range(others)]
    for i in range(n_events - 1):
        t.update_task_progress(task, f"{i % 100}%")
        for s in side:
            t.update_task_progress(s, f"{i % 100}%")
    if url.startswith("postgresql"):
        import psycopg2

        biomero_rs.WorkflowTracker(url, views=[])  # creates the events table
        src = sqlite3.connect(sqlite_path)
        rows = src.execute(f"SELECT originator_id, originator_version, topic, state "
                           f"FROM {EVENTS_TABLE} ORDER BY id").fetchall()
        src.close()
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
                f"VALUES (%s, %s, %s, %s)",
                [(str(uuid.UUID(bytes=bytes(o))), v, tp, psycopg2.Binary(st)) for o, v, tp, st in rows])
        conn.close()
    return {"task": task.hex}


SPREAD_OTHERS = 9
COLD_SPREAD = "biomero_rs cold, 10,000-event log"


def analyze_pg(url):
    """ANALYZE of the events table (as autovacuum would do after a load),
    so the planner knows the log holds many aggregates."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"ANALYZE {EVENTS_TABLE}")
    conn.close()


def raw_row():
    state = (b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-27T04:40:48.699730+00:00"},'
             b'"progress":"42%"}')
    return "biomero.eventsourcing:Task.ProgressUpdated", state


def worker_raw_sqlite(path, journal, sync, seconds):
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: 1 statement = 1 transaction
    mode = conn.execute(f"PRAGMA journal_mode={journal}").fetchone()[0]
    conn.execute(f"PRAGMA synchronous={sync}")
    got_sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    conn.execute(
        "CREATE TABLE raw_events (id INTEGER PRIMARY KEY, originator_id BINARY(16) NOT NULL, "
        "originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL)")
    conn.execute("CREATE UNIQUE INDEX raw_events_idx ON raw_events (originator_id, originator_version)")
    topic, state = raw_row()
    sql = "INSERT INTO raw_events (originator_id, originator_version, topic, state) VALUES (?,?,?,?)"
    lat, perf = [], time.perf_counter_ns
    end = perf() + int(seconds * 1e9)
    start = perf()
    while True:
        row = (uuid.uuid4().bytes, 0, topic, state)
        t0 = perf()
        conn.execute(sql, row)
        t1 = perf()
        lat.append(t1 - t0)
        if t1 >= end and len(lat) >= 50:
            break
    wall = perf() - start
    conn.close()
    return {"lat": lat, "wall": wall, "n": len(lat),
            "info": {"journal_mode": mode, "synchronous": got_sync, "sqlite": sqlite3.sqlite_version}}


def worker_raw_pg(url, seconds):
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True  # 1 statement = 1 transaction
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE raw_events (id bigserial PRIMARY KEY, originator_id uuid NOT NULL, "
        "originator_version bigint NOT NULL, topic text NOT NULL, state bytea NOT NULL)")
    cur.execute("CREATE UNIQUE INDEX raw_events_idx ON raw_events (originator_id, originator_version)")
    cur.execute("SHOW synchronous_commit")
    sc = cur.fetchone()[0]
    cur.execute("SHOW fsync")
    fs = cur.fetchone()[0]
    topic, state = raw_row()
    sql = "INSERT INTO raw_events (originator_id, originator_version, topic, state) VALUES (%s,%s,%s,%s)"
    lat, perf = [], time.perf_counter_ns
    end = perf() + int(seconds * 1e9)
    start = perf()
    while True:
        row = (str(uuid.uuid4()), 0, topic, psycopg2.Binary(state))
        t0 = perf()
        cur.execute(sql, row)
        t1 = perf()
        lat.append(t1 - t0)
        if t1 >= end and len(lat) >= 50:
            break
    wall = perf() - start
    conn.close()
    return {"lat": lat, "wall": wall, "n": len(lat),
            "info": {"synchronous_commit": sc, "fsync": fs}}


# ---------------------------------------------------------------- same writes
# The physical limit of the workload: the rows biomero_rs writes per command
# (recorded once, untimed, by worker_prep_same_writes), written again by hand
# (worker_same_writes): prepared statements, one transaction per command, on
# Postgres in one round trip per command.


def pg_literal(cur, v):
    return "NULL" if v is None else cur.mogrify("%s", (v,)).decode()


def db_catalog(conn, backend):
    """{table: {"columns": [...], "pk": [...], "types": [...]}} of every table
    of the database, in catalog order (the primary key from the catalog;
    ``types``: Postgres's declared types, for PREPARE)."""
    out = {}
    if backend == "sqlite":
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY rowid")]
        for t in names:
            info = conn.execute(f'PRAGMA table_info("{t}")').fetchall()  # cid, name, type, nn, dflt, pk
            out[t] = {"columns": [r[1] for r in info], "types": [r[2] for r in info],
                      "pk": [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]}
        return out
    cur = conn.cursor()
    cur.execute("SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.oid")
    for oid, t in cur.fetchall():
        cur.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (oid,))
        cols = cur.fetchall()
        cur.execute("SELECT a.attname FROM pg_index i "
                    "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
                    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                    "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord", (oid,))
        out[t] = {"columns": [c for c, _ in cols], "types": [ty for _, ty in cols],
                  "pk": [r[0] for r in cur.fetchall()]}
    return out


def db_rows(conn, backend, table, columns, where=""):
    """The rows of ``table``: Python values on SQLite (its storage classes),
    each value's text form on Postgres (which its type's input function reads
    back exactly)."""
    if backend == "sqlite":
        cols = ", ".join(f'"{c}"' for c in columns)
        return conn.execute(f'SELECT {cols} FROM "{table}" {where}').fetchall()
    cols = ", ".join(f'"{c}"::text' for c in columns)
    cur = conn.cursor()
    cur.execute(f'SELECT {cols} FROM "{table}" {where}')
    return cur.fetchall()


def db_snapshot(conn, backend, cat, tables):
    """{table: {primary key: row}} of ``tables``."""
    snap = {}
    for t in tables:
        cols, pk = cat[t]["columns"], cat[t]["pk"]
        ix = [cols.index(c) for c in pk]
        snap[t] = {tuple(r[i] for i in ix): tuple(r) for r in db_rows(conn, backend, t, cols)}
    return snap


def db_digest(conn, backend):
    """sha256 of every row and column of every table (the log in id order,
    other tables by primary key)."""
    import hashlib

    cat = db_catalog(conn, backend)
    h = hashlib.sha256()
    for t, c in cat.items():
        rows = db_rows(conn, backend, t, c["columns"])
        h.update(json.dumps([t, c["columns"], sorted(json.dumps(enc_row(r)) for r in rows)]).encode())
    return h.hexdigest()


def enc_row(row):
    """JSON of a row: bytes as {"hex": ...}, everything else as is."""
    return [{"hex": v.hex()} if isinstance(v, (bytes, memoryview)) else v for v in row]


def dec_row(row):
    return tuple(bytes.fromhex(v["hex"]) if isinstance(v, dict) else v for v in row)


def open_db(backend, url):
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///").split("?")[0], isolation_level=None)
        return conn
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def content_shape(conn, backend):
    """What a run wrote, comparable between runs (whose ids and times differ):
    the log as (aggregate, version, topic) in id order, aggregates numbered by
    their first event; every row and column of the view tables, with uuids
    numbered the same way and timestamps masked (see shape_digest)."""
    import datetime

    def uuid_hex(v):
        if isinstance(v, (bytes, memoryview)) and len(v) == 16:
            return bytes(v).hex()
        if isinstance(v, uuid.UUID):
            return v.hex
        if isinstance(v, str) and UUID_RE.match(v):
            return v.replace("-", "").lower()
        return None

    agg = {}
    log_ = []
    log_cols = ["originator_id", "originator_version", "topic"]
    for o, v, topic in db_rows(conn, backend, EVENTS_TABLE, log_cols, 'ORDER BY "id"'):
        n = agg.setdefault(uuid_hex(o), len(agg))
        log_.append([n, int(v), topic])

    def norm(v):
        h = uuid_hex(v)
        if h is not None:
            return f"aggregate {agg[h]}" if h in agg else "uuid"
        if isinstance(v, datetime.datetime) or (isinstance(v, str) and TIME_RE.match(v)):
            return "time"
        return v

    cat = db_catalog(conn, backend)
    views = {t: {"columns": cat[t]["columns"],
                 "rows": [enc_row([norm(v) for v in r])
                          for r in db_rows(conn, backend, t, cat[t]["columns"])]}
             for t in VIEW_TABLES}
    return {"log": log_, "views": views}


def shape_digest(shape, columns=None):
    """A short sha256 of a content_shape, of the columns ``columns[table]``
    only when given."""
    import hashlib

    views = {}
    for t, v in shape["views"].items():
        keep = [i for i, c in enumerate(v["columns"]) if columns is None or c in columns[t]]
        views[t] = sorted(json.dumps([r[i] for i in keep]) for r in v["rows"])
    return hashlib.sha256(json.dumps([shape["log"], views]).encode()).hexdigest()[:12]


def worker_prep_same_writes(backend, url, n_workflows, seed, out_path):
    """Runs the workload through biomero_rs (default settings) on a scratch
    database and records, after each command, the rows it wrote: the new rows
    of the log (every column but the primary key, in id order) and, for every
    other table, the rows inserted or changed (with the columns that changed,
    or null for a new row) and the primary keys of the rows deleted (a
    snapshot after each command, diffed by primary key)."""
    import biomero_rs

    tracker = biomero_rs.WorkflowTracker(url)  # all four views
    conn = open_db(backend, url)
    cat = db_catalog(conn, backend)
    ev = cat[EVENTS_TABLE]
    ev_cols = [c for c in ev["columns"] if c not in ev["pk"]]
    (ev_id,) = ev["pk"]
    others = [t for t in VIEW_TABLES if t in cat] + [t for t in cat if t != EVENTS_TABLE and
                                                     t not in VIEW_TABLES]
    for t in others:
        if not cat[t]["pk"]:
            raise RuntimeError(f"table {t} has no primary key: its changes cannot be replayed")
    before = db_snapshot(conn, backend, cat, others)
    last_id = 0
    refs, commands = {}, []
    for cmd, args, name in make_workload(n_workflows, seed):
        r = getattr(tracker, cmd)(*[resolve(x, refs) for x in args])
        if name:
            refs[name] = r
        rows = db_rows(conn, backend, EVENTS_TABLE, [ev_id] + ev_cols,
                       # the table's column, not the text form db_rows selects under that name
                       f'WHERE "{ev_id}" > {int(last_id)} ORDER BY "{EVENTS_TABLE}"."{ev_id}"')
        if rows:
            last_id = int(rows[-1][0])
        after = db_snapshot(conn, backend, cat, others)
        upsert, delete = {}, {}
        for t in others:
            b, a = before[t], after[t]
            cols = cat[t]["columns"]
            ch = [{"row": enc_row(row), "changed": None if k not in b else
                   [c for c, x, y in zip(cols, b[k], row) if x != y]}
                  for k, row in a.items() if b.get(k) != row]
            gone = [enc_row(k) for k in b if k not in a]
            if ch:
                upsert[t] = ch
            if gone:
                delete[t] = gone
        before = after
        commands.append({"command": cmd, "events": [enc_row(r[1:]) for r in rows],
                         "upsert": upsert, "delete": delete})
    tracker.close()
    del tracker
    digest = db_digest(conn, backend)
    conn.close()
    tables = {t: cat[t] for t in others}
    ev_types = [ev["types"][ev["columns"].index(c)] for c in ev_cols]
    plan = {"backend": backend, "events": {"table": EVENTS_TABLE, "columns": ev_cols, "types": ev_types},
            "tables": tables, "commands": commands, "digest": digest}
    with open(out_path, "w") as f:
        json.dump(plan, f)
    written = sorted({t for c in commands for t in (*c["upsert"], *c["delete"])})
    return {"commands": len(commands), "events": sum(len(c["events"]) for c in commands),
            "rows": sum(len(v) for c in commands for v in c["upsert"].values()),
            "deleted": sum(len(v) for c in commands for v in c["delete"].values()),
            "tables": written}


def same_writes_statements(plan, backend):
    """(insert of a log row, upsert(table, changed columns or None), {table:
    delete}) SQL, with ``?`` (SQLite) or ``$n`` (Postgres) parameters. The
    upsert inserts every column and on conflict sets the columns that changed
    (all of them for a new row, where no conflict happens): setting unchanged
    indexed columns too would rewrite their index entries, about 10% more
    pages per commit on SQLite than biomero_rs writes."""
    def params(n):
        return ", ".join("?" if backend == "sqlite" else f"${i + 1}" for i in range(n))

    def q(cs):
        return ", ".join(f'"{c}"' for c in cs)

    ev = plan["events"]
    ins = f'INSERT INTO "{ev["table"]}" ({q(ev["columns"])}) VALUES ({params(len(ev["columns"]))})'
    def up(t, changed):
        cols, pk = plan["tables"][t]["columns"], plan["tables"][t]["pk"]
        rest = [x for x in (cols if changed is None else changed) if x not in pk]
        tail = (f"DO UPDATE SET {', '.join(f'{q([x])} = excluded.{q([x])}' for x in rest)}"
                if rest else "DO NOTHING")
        return (f'INSERT INTO "{t}" ({q(cols)}) VALUES ({params(len(cols))}) '
                f"ON CONFLICT ({q(pk)}) {tail}")

    dl = {}
    for t, c in plan["tables"].items():
        cols, pk = c["columns"], c["pk"]
        if backend == "sqlite":
            cond = " AND ".join(f'{q([x])} = ?' for x in pk)
        else:
            cond = " AND ".join(f'{q([x])} = ${i + 1}' for i, x in enumerate(pk))
        dl[t] = f'DELETE FROM "{t}" WHERE {cond}'
    return ins, up, dl


def worker_same_writes(backend, url, plan_path):
    """The recorded writes of each command, in one transaction per command."""
    import biomero_rs

    tracker = biomero_rs.WorkflowTracker(url)  # creates the schema, writes nothing else
    tracker.close()
    del tracker
    with open(plan_path) as f:
        plan = json.load(f)
    ins, up, dl = same_writes_statements(plan, backend)
    cmds = plan["commands"]
    lat, perf, info = [], time.perf_counter_ns, {}
    if backend == "sqlite":
        import sqlite3

        conn = open_db(backend, url)  # autocommit: BEGIN/COMMIT are ours; statements cached
        info["journal_mode"] = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")
        info["synchronous"] = conn.execute("PRAGMA synchronous").fetchone()[0]
        info["sqlite"] = sqlite3.sqlite_version
        work = []
        for c in cmds:  # decoded before the clock starts
            steps = [(ins, [dec_row(r) for r in c["events"]])] if c["events"] else []
            order = list(c["upsert"]) + [t for t in c["delete"] if t not in c["upsert"]]
            for t in order:
                for u in c["upsert"].get(t, []):
                    steps.append((up(t, u["changed"]), [dec_row(u["row"])]))
                if t in c["delete"]:
                    steps.append((dl[t], [dec_row(r) for r in c["delete"][t]]))
            merged = []  # neighbours with the same statement: one executemany
            for sql, rows in steps:
                if merged and merged[-1][0] == sql:
                    merged[-1][1].extend(rows)
                else:
                    merged.append((sql, list(rows)))
            work.append(merged)
        ex, exm = conn.execute, conn.executemany
        start = perf()
        for steps in work:
            t0 = perf()
            ex("BEGIN IMMEDIATE")
            for sql, rows in steps:
                if len(rows) == 1:
                    ex(sql, rows[0])
                else:
                    exm(sql, rows)
            ex("COMMIT")
            lat.append(perf() - t0)
        wall = perf() - start
    else:
        conn = open_db(backend, url)  # autocommit: one execute = one simple query = one round trip
        cur = conn.cursor()
        names = {}

        def prepare(name, types, sql):
            cur.execute(f"PREPARE {name} ({', '.join(types)}) AS {sql}")
            names[sql] = name

        prepare("sw_ins", plan["events"]["types"], ins)
        for i, (t, c) in enumerate(plan["tables"].items()):
            prepare(f"sw_del{i}", [c["types"][c["columns"].index(k)] for k in c["pk"]], dl[t])

        def upsert(t, row, changed):
            sql = up(t, changed)
            if sql not in names:
                prepare(f"sw_up{len(names)}", plan["tables"][t]["types"], sql)
            return call(sql, row)

        cur.execute("SHOW synchronous_commit")
        info["synchronous_commit"] = cur.fetchone()[0]
        cur.execute("SHOW fsync")
        info["fsync"] = cur.fetchone()[0]

        def call(sql, row):
            return f"EXECUTE {names[sql]}({', '.join(pg_literal(cur, v) for v in row)})"

        work = []
        for c in cmds:  # the query strings (and statements), made before the clock starts
            parts = ["BEGIN", f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE"]
            parts += [call(ins, r) for r in c["events"]]
            for t in list(c["upsert"]) + [t for t in c["delete"] if t not in c["upsert"]]:
                parts += [upsert(t, u["row"], u["changed"]) for u in c["upsert"].get(t, [])]
                parts += [call(dl[t], r) for r in c["delete"].get(t, [])]
            work.append("; ".join(parts + ["COMMIT"]))
        ex = cur.execute
        start = perf()
        for sql in work:
            t0 = perf()
            ex(sql)
            lat.append(perf() - t0)
        wall = perf() - start
    info["exact"] = db_digest(conn, backend) == plan["digest"]
    conn.close()
    return {"lat": lat, "wall": wall, "n": len(lat), "info": info}


def worker_main(argv):
    kind, args = argv[0], json.loads(argv[1])
    fn = {"run": worker_run, "get": worker_get, "prep_get": worker_prep_get,
          "raw_sqlite": worker_raw_sqlite, "raw_pg": worker_raw_pg,
          "prep_same_writes": worker_prep_same_writes, "same_writes": worker_same_writes}[kind]
    out = fn(**args)
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


# ------------------------------------------------------------------ parent


class WorkerError(Exception):
    pass


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.tmp = tempfile.mkdtemp(prefix="biomero_bench_")
        self.env = dict(os.environ)
        self.env.pop("SQLALCHEMY_URL", None)
        self.env["PERSISTENCE_MODULE"] = "eventsourcing_sqlalchemy"
        self.base_env = None  # the workers of the baseline build (--rs-baseline)
        self.plans = {}  # backend -> (JSON file of the writes of each command, its summary)
        if opts.rs_baseline:
            self.base_env = dict(self.env)
            self.base_env["PYTHONPATH"] = opts.rs_baseline + os.pathsep + self.env.get("PYTHONPATH", "")
        if opts.rs_path:
            self.env["PYTHONPATH"] = opts.rs_path + os.pathsep + self.env.get("PYTHONPATH", "")

    def worker(self, kind, base=False, **args):
        """Runs ``kind`` in a fresh process; ``base``: with the baseline build."""
        env = self.base_env if base else self.env
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(args)],
            capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            raise WorkerError(f"worker {kind} {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # -- databases

    def fresh_sqlite(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        return os.path.join(d, "bench.db")

    @contextlib.contextmanager
    def fresh_db(self, backend, sqlite_path=None):
        """The URL of a fresh database: an SQLite file (``sqlite_path`` or a
        new one), or a Postgres database dropped afterwards."""
        if backend == "sqlite":
            yield f"sqlite:///{sqlite_path or self.fresh_sqlite()}"
            return
        name = self.fresh_pg()
        try:
            yield f"{self.opts.pg}/{name}"
        finally:
            self.drop_pg(name)

    def pg_admin(self, sql):
        import psycopg2

        conn = psycopg2.connect(self.opts.pg + "/postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def fresh_pg(self):
        name = f"biomero_bench_{uuid.uuid4().hex[:12]}"
        self.pg_admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_pg(self, name):
        try:
            self.pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as e:  # keep the first error (if any) visible
            log(f"warning: could not drop database {name}: {e}")

    def counts(self, backend, where):
        """Event and view-row counts of a finished run (both sides must match)."""
        tables = (EVENTS_TABLE,) + VIEW_TABLES
        if backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(where)
            try:
                return [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]
            finally:
                conn.close()
        import psycopg2

        conn = psycopg2.connect(f"{self.opts.pg}/{where}")
        try:
            with conn.cursor() as cur:
                out = []
                for t in tables:
                    cur.execute(f"SELECT count(*) FROM {t}")
                    out.append(cur.fetchone()[0])
                return out
        finally:
            conn.close()

    def checked(self, r, backend, where):
        """``r`` with the counts and the content shape of the finished run."""
        r["counts"] = self.counts(backend, where)
        conn = open_db(backend, f"sqlite:///{where}" if backend == "sqlite" else f"{self.opts.pg}/{where}")
        try:
            r["shape"] = content_shape(conn, backend)
        finally:
            conn.close()
        return r

    def prep_same_writes(self, backend):
        """Records (untimed, once per backend) what biomero_rs writes per
        command, on a scratch database with its default settings."""
        o = self.opts
        path = os.path.join(self.tmp, f"same_writes_{backend}.json")
        with self.fresh_db(backend) as url:
            t0 = time.time()
            r = self.worker("prep_same_writes", backend=backend, url=url, n_workflows=o.workflows,
                            seed=o.seed, out_path=path)
        log(f"[{backend}] same writes recorded: {r['commands']} commands, {r['events']} event rows, "
            f"{r['rows']} row upserts, {r['deleted']} deletes ({time.time() - t0:.1f} s)")
        self.plans[backend] = (path, r)

    # -- contenders: (label, function returning a result dict)

    def contenders(self, backend):
        o = self.opts
        raw_s = o.raw_seconds
        if backend == "sqlite":
            def raw(journal, sync):
                return lambda: self.worker("raw_sqlite", path=self.fresh_sqlite(), journal=journal,
                                           sync=sync, seconds=raw_s)

            def run(impl, query="", base=False):
                def go():
                    path = self.fresh_sqlite()
                    r = self.worker("run", base=base, impl=impl, url=f"sqlite:///{path}{query}",
                                    n_workflows=o.workflows, seed=o.seed)
                    return self.checked(r, "sqlite", path)
                return go

            def same():
                path = self.fresh_sqlite()
                r = self.worker("same_writes", backend="sqlite", url=f"sqlite:///{path}",
                                plan_path=self.plans["sqlite"][0])
                return self.checked(r, "sqlite", path)

            # Each contender next to the raw run of its own settings, so that
            # the two see the same machine (see paired ratios in report()).
            return self.with_baseline([
                ("raw WAL+FULL", raw("WAL", "FULL")),
                ("biomero_rs", run("rs")),
                ("same writes", same),
                ("raw WAL+NORMAL", raw("WAL", "NORMAL")),
                ("biomero_rs normal", run("rs", "?synchronous=normal")),
                ("raw DELETE+FULL", raw("DELETE", "FULL")),
                ("reference", run("ref")),
            ], {"biomero_rs": run("rs", base=True),
                "biomero_rs normal": run("rs", "?synchronous=normal", base=True)})

        def raw_pg():
            name = self.fresh_pg()
            try:
                return self.worker("raw_pg", url=f"{o.pg}/{name}", seconds=raw_s)
            finally:
                self.drop_pg(name)

        def run_pg(impl, base=False):
            def go():
                name = self.fresh_pg()
                try:
                    url = f"{o.pg}/{name}"
                    if impl == "ref":
                        url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
                    r = self.worker("run", base=base, impl=impl, url=url, n_workflows=o.workflows,
                                    seed=o.seed)
                    return self.checked(r, "postgres", name)
                finally:
                    self.drop_pg(name)
            return go

        def same_pg():
            name = self.fresh_pg()
            try:
                r = self.worker("same_writes", backend="postgres", url=f"{o.pg}/{name}",
                                plan_path=self.plans["postgres"][0])
                return self.checked(r, "postgres", name)
            finally:
                self.drop_pg(name)

        return self.with_baseline(
            [("raw 1 client", raw_pg), ("biomero_rs", run_pg("rs")), ("same writes", same_pg),
             ("reference", run_pg("ref"))],
            {"biomero_rs": run_pg("rs", base=True)})

    def with_baseline(self, cs, base):
        """``cs`` with, right after each contender named in ``base``, its run
        on the baseline build (when --rs-baseline is given); reversing the list
        in odd rounds then also swaps the order of each pair."""
        if self.base_env is None:
            return cs
        out = []
        for label, go in cs:
            out.append((label, go))
            if label in base:
                out.append((label + BASELINE, base[label]))
        return out

    def get_bench(self, backend):
        def one_task(url):
            ref_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
            c = [("biomero_rs", "rs", url, False), ("biomero_rs cold", "rs_cold", url, False),
                 ("reference", "ref", ref_url, False)]
            if self.base_env is not None:
                c.insert(1, ("biomero_rs" + BASELINE, "rs", url, True))
            return c

        def spread(url):
            c = [(COLD_SPREAD, "rs_cold", url, False)]
            if self.base_env is not None:
                c.append((COLD_SPREAD + BASELINE, "rs_cold", url, True))
            return c

        out = {}
        self.get_rounds(backend, 0, one_task, out)
        # The same task in a log of many aggregates: its 1,000 events among
        # those of 9 other tasks (10,000 in all), as in a database with
        # several workflows (on Postgres with its statistics refreshed).
        self.get_rounds(backend, SPREAD_OTHERS, spread, out)
        return out

    def get_rounds(self, backend, others, contenders, out):
        """Gets of a 1,000-event task (``worker_prep_get`` with ``others``)
        on a fresh database, by each of ``contenders(url)`` (label, impl,
        url, baseline?) in every round, the order reversed every other
        round; the latencies go to ``out[label]``."""
        o = self.opts
        path = self.fresh_sqlite()
        with self.fresh_db(backend, path) as url:
            task = self.worker("prep_get", url=url, n_events=1000, sqlite_path=path,
                               others=others)["task"]
            if others and backend == "postgres":
                analyze_pg(url)
            for rnd in range(o.rounds):
                order = contenders(url)
                if rnd % 2:
                    order.reverse()
                for label, impl, u, base in order:
                    r = self.worker("get", base=base, impl=impl, url=u, task_hex=task, reps=o.get_reps)
                    out.setdefault(label, []).extend(r["lat"])

    def run(self, backends):
        results = {}  # (backend, label) -> {"rates": [...], "lat": [...], "info":..., "counts": [...]}
        gets = {}
        self.failures = []
        try:
            for backend in backends:
                try:
                    self.run_backend(backend, results, gets)
                except WorkerError as e:  # e.g. the server went away: report what was measured
                    log(f"[{backend}] FAILED, its figures are incomplete: {e}")
                    self.failures.append((backend, str(e).splitlines()[0]))
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return results, gets

    def run_backend(self, backend, results, gets):
        cs = self.contenders(backend)
        self.prep_same_writes(backend)
        for rnd in range(self.opts.rounds):
            order = cs if rnd % 2 == 0 else list(reversed(cs))
            for label, go in order:
                t0 = time.time()
                r = go()
                agg = results.setdefault((backend, label), {"rates": [], "lat": [], "counts": [],
                                                            "shapes": [], "exact": []})
                agg["rates"].append(r["n"] / (r["wall"] / 1e9))
                agg["lat"].extend(r["lat"])
                agg["n"] = r["n"]
                agg["info"] = r.get("info", {})
                if "counts" in r:
                    agg["counts"].append(r["counts"])
                if "shape" in r:
                    agg["shapes"].append(r["shape"])
                if "exact" in r.get("info", {}):
                    agg["exact"].append(r["info"]["exact"])
                log(f"[{backend} round {rnd + 1}/{self.opts.rounds}] {label}: "
                    f"{agg['rates'][-1]:,.0f}/s ({time.time() - t0:.1f} s)")
        log(f"[{backend}] repository.get of a 1,000-event task ...")
        gets[backend] = self.get_bench(backend)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pct(sorted_ns, q):
    if not sorted_ns:
        return float("nan")
    i = min(len(sorted_ns) - 1, max(0, int(round(q * (len(sorted_ns) - 1)))))
    return sorted_ns[i] / 1e6


def table(headers, rows):
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line, sep]
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(out)


SETTINGS = {
    ("sqlite", "raw WAL+FULL"): "journal_mode=WAL, synchronous=FULL",
    ("sqlite", "raw WAL+NORMAL"): "journal_mode=WAL, synchronous=NORMAL",
    ("sqlite", "raw DELETE+FULL"): "journal_mode=DELETE, synchronous=FULL",
    ("sqlite", "biomero_rs"): "journal_mode=WAL, synchronous=FULL (default URL)",
    ("sqlite", "biomero_rs normal"): "journal_mode=WAL, synchronous=NORMAL (?synchronous=normal)",
    ("sqlite", "same writes"): "journal_mode=WAL, synchronous=FULL",
    ("sqlite", "reference"): "pysqlite default",
    ("postgres", "raw 1 client"): "autocommit INSERT",
    ("postgres", "biomero_rs"): "1 tx per command",
    ("postgres", "same writes"): "1 tx and 1 round trip per command",
    ("postgres", "reference"): "SQLAlchemy scoped session",
}
# Which raw rate each contender is held against (same durability settings).
RAW_OF = {
    ("sqlite", "biomero_rs"): "raw WAL+FULL",
    ("sqlite", "biomero_rs normal"): "raw WAL+NORMAL",
    ("sqlite", "reference"): "raw DELETE+FULL",
    ("sqlite", "same writes"): "raw WAL+FULL",
    ("postgres", "biomero_rs"): "raw 1 client",
    ("postgres", "same writes"): "raw 1 client",
    ("postgres", "reference"): "raw 1 client",
}
# Which runs are held against the same-writes limit (the same settings: on
# SQLite biomero_rs's default URL; ``biomero_rs normal`` has no such limit).
SAME = "same writes"
SAME_OF = {
    ("sqlite", "biomero_rs"): SAME,
    ("postgres", "biomero_rs"): SAME,
}
SAME_TARGET = 0.9


def paired(a, b):
    """The median over rounds of a's rate / b's rate in the same round (each
    round runs the two close together, so machine drift cancels)."""
    return statistics.median(x / y for x, y in zip(a["rates"], b["rates"]))


def report_content(results, backend):
    """Whether biomero_rs's runs and the same-writes runs wrote the same
    content (and the reference, on the columns its tables have)."""
    digests, ours, ref = {}, None, None  # digest -> labels
    for (b, label), agg in results.items():
        if b != backend or not agg.get("shapes"):
            continue
        if label == "reference":
            ref = agg["shapes"]
            continue
        ours = ours or agg["shapes"][0]
        for sh in agg["shapes"]:
            digests.setdefault(shape_digest(sh), []).append(label)
    if not digests:
        return
    groups = "; ".join(f"{', '.join(dict.fromkeys(ls))} = {d}" for d, ls in digests.items())
    print(f"{backend}: content after each run (the log's (aggregate, version, topic) in id order; every "
          f"row and column of the view tables; uuids numbered by their aggregate's first event, "
          f"timestamps masked): {'identical' if len(digests) == 1 else 'DIFFERENT'} ({groups})")
    if ref:
        cols = {t: [c for c in v["columns"] if c in ref[0]["views"][t]["columns"]]
                for t, v in ours["views"].items()}
        missing = [f"{t}.{c}" for t, v in ours["views"].items() for c in v["columns"] if c not in cols[t]]
        want = shape_digest(ours, cols)
        same = all(shape_digest(sh, cols) == want for sh in ref)
        print(f"{backend}: the reference's content, on the columns its view tables have"
              f"{' (not ' + ', '.join(missing) + ')' if missing else ''}: "
              f"{'identical' if same else 'DIFFERENT'}")


def report(results, gets, opts, plans=None):
    rows = []
    for (backend, label), agg in results.items():
        lat = sorted(agg["lat"])
        rate = statistics.median(agg["rates"])
        ours = label.removesuffix(BASELINE)
        settings = SETTINGS.get((backend, ours), "")
        info = agg.get("info", {})
        if label == "reference" and info.get("journal_mode"):
            settings = (f"journal_mode={info['journal_mode']}, synchronous={info['synchronous']} "
                        f"(pysqlite default)")
        if (label.startswith("raw") or label == SAME) and "sqlite" in info:
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(info["synchronous"], info["synchronous"])
            settings = f"journal_mode={info['journal_mode']}, synchronous={sync} (sqlite3 {info['sqlite']})"
        if backend == "postgres" and "synchronous_commit" in info:
            settings += f" (synchronous_commit={info['synchronous_commit']}, fsync={info['fsync']})"
        vs_ref = ""
        ref = results.get((backend, "reference"))
        if label.startswith("biomero_rs") and ref:
            vs_ref = f"{paired(agg, ref):.1f}x"
        of_raw = ""
        raw = results.get((backend, RAW_OF.get((backend, ours), "")))
        if raw:
            of_raw = f"{100 * paired(agg, raw):.1f}%"
        of_same = ""
        same = results.get((backend, SAME_OF.get((backend, ours), "")))
        if same:
            of_same = f"{100 * paired(agg, same):.1f}%"
        rows.append([backend, label, settings, agg["n"], f"{rate:,.0f}",
                     f"{pct(lat, 0.5):.3f}", f"{pct(lat, 0.99):.3f}", vs_ref, of_raw, of_same])
    print()
    print(f"== Commands (workflows={opts.workflows}, seed={opts.seed}, rounds={opts.rounds}; "
          f"raw = single-row insert per transaction; same writes = biomero_rs's rows by hand) ==")
    print(table(["backend", "contender", "durability settings", "ops/round", "cmd/s",
                 "p50 ms", "p99 ms", "ratio vs reference", "% of raw", "% of same writes"], rows))
    print("cmd/s: median over rounds; p50/p99: over every command of every round; ratio vs "
          "reference, % of raw (the raw rate of the same settings) and % of same writes (the "
          "rows biomero_rs writes per command, written by hand with prepared statements in one "
          "transaction per command, on Postgres in one round trip): median over rounds of the "
          "ratio within each round.")

    # the same work on both sides
    print()
    for backend in dict.fromkeys(b for b, _ in results):
        seen = {label: agg["counts"] for (b, label), agg in results.items() if b == backend and agg["counts"]}
        if not seen:
            continue
        distinct = {json.dumps(c) for cs in seen.values() for c in cs}
        first = next(iter(seen.values()))[0]
        state = "identical" if len(distinct) == 1 else "DIFFERENT: " + json.dumps(seen)
        print(f"{backend}: events and view rows after each run ({EVENTS_TABLE}, "
              f"{', '.join(VIEW_TABLES)}) = {first}: {state}")
        report_content(results, backend)
        same = results.get((backend, SAME))
        if same and same["exact"]:
            ok = sum(same["exact"])
            plan = (plans or {}).get(backend, (None, {}))[1]
            print(f"{backend}: same writes' database at the end = that of biomero_rs's recorded run "
                  f"exactly (every table, row and column, ids and timestamps included): "
                  f"{ok} of {len(same['exact'])} run(s)"
                  f"{'' if ok == len(same['exact']) else ' -> NOT EXACT'}; it replays "
                  f"{plan.get('events', '?')} event rows, {plan.get('rows', '?')} row upserts and "
                  f"{plan.get('deleted', '?')} deletes into {', '.join(plan.get('tables', []))}")

    grows = []
    for backend, g in gets.items():
        ref = sorted(g.get("reference", []))
        for label in ("biomero_rs", "biomero_rs cold", "biomero_rs" + BASELINE, COLD_SPREAD,
                      COLD_SPREAD + BASELINE, "reference"):
            if label.endswith(BASELINE) and label not in g:
                continue
            lat = sorted(g.get(label, []))
            ratio = ""
            if label.startswith("biomero_rs") and ref:
                ratio = f"{pct(ref, 0.5) / pct(lat, 0.5):.0f}x"
            grows.append([backend, label, len(lat), f"{pct(lat, 0.5):.3f}", f"{pct(lat, 0.99):.3f}", ratio])
    print()
    print("== repository.get of a task with 1,000 events ==")
    print(table(["backend", "implementation", "gets", "median ms", "p99 ms", "ratio vs reference"], grows))

    if opts.rs_baseline:
        report_baseline(results, gets, opts)

    # targets of the issue
    print()
    print("== Targets ==")

    def rate(b, label):
        agg = results.get((b, label))
        return statistics.median(agg["rates"]) if agg else None

    def share_of(b, label, rawl):
        a, r = results.get((b, label)), results.get((b, rawl))
        return paired(a, r) if a and r else None

    checks = [
        ("SQLite WAL+FULL >= 50% of raw", "sqlite", "biomero_rs", "raw WAL+FULL", 0.5),
        ("SQLite synchronous=normal >= 25% of raw", "sqlite", "biomero_rs normal", "raw WAL+NORMAL", 0.25),
        ("Postgres >= 50% of raw 1-client", "postgres", "biomero_rs", "raw 1 client", 0.5),
    ]
    for b, label in SAME_OF:
        for lb in (label, label + BASELINE):
            if (b, lb) in results:
                checks.append((f"{'SQLite' if b == 'sqlite' else 'Postgres'} commands/s vs the "
                               f"same-writes limit >= {100 * SAME_TARGET:.0f}%"
                               f"{' (baseline build)' if lb.endswith(BASELINE) else ''}",
                               b, lb, SAME_OF[(b, label)], SAME_TARGET))
    for name, b, label, rawl, need in checks:
        share = share_of(b, label, rawl)
        if share is None:
            continue
        a, r = rate(b, label), rate(b, rawl)
        print(f"{name}: {100 * share:.1f}% (medians {a:,.0f} vs {r:,.0f}/s) -> "
              f"{'met' if share >= need else 'MISSED'}")
    goal = {"sqlite": 0.3, "postgres": 0.6}
    for backend, g in gets.items():
        for label in ("biomero_rs", "biomero_rs cold", COLD_SPREAD):
            rs = sorted(g.get(label, []))
            if rs:
                m = pct(rs, 0.5)
                need = goal.get(backend, 1.0)
                print(f"{backend} repository.get 1,000 events ({label}) <= {need} ms median: "
                      f"{m:.3f} ms -> {'met' if m <= need else 'MISSED'}")
    mods = {}  # module -> the contender that loaded it
    for (_, label), agg in results.items():
        if agg.get("info", {}).get("module"):
            mods.setdefault(agg["info"]["module"], "biomero_rs" + BASELINE if label.endswith(BASELINE)
                            else "biomero_rs")
    for m, who in mods.items():
        size = os.path.getsize(m) if os.path.exists(m) else 0
        print(f"{who} module: {m} ({size / 1e6:.1f} MB)")
        if size > 20e6:
            print("  (that size suggests a debug build: measure a release build, "
                  "`maturin develop --release`)")
    print("Absolute numbers vary between machines (mostly with fsync latency); compare ratios.")


def report_baseline(results, gets, opts):
    """One line per case: ours / the baseline build's."""
    print()
    print(f"== biomero_rs vs baseline ({opts.rs_baseline}) ==")
    slower = []
    for (backend, label), agg in results.items():
        base = results.get((backend, label + BASELINE))
        if not base:
            continue
        ratio = paired(agg, base)  # throughput: above 1 is faster
        flag = ratio < 1 - SLOWER
        print(f"{backend} commands, {label}: {statistics.median(agg['rates']):,.0f} vs "
              f"{statistics.median(base['rates']):,.0f} cmd/s -> ours/baseline {ratio:.3f} "
              f"(throughput){' SLOWER by more than 5%' if flag else ''}")
        if flag:
            slower.append(f"{backend} {label}")
        same = results.get((backend, SAME_OF.get((backend, label), "")))
        if same:
            print(f"{backend} commands, {label}, % of the same-writes limit: "
                  f"{100 * paired(agg, same):.1f}% vs baseline {100 * paired(base, same):.1f}%")
    for backend, g in gets.items():
        rs, base = sorted(g.get("biomero_rs", [])), sorted(g.get("biomero_rs" + BASELINE, []))
        if not rs or not base:
            continue
        ratio = pct(rs, 0.5) / pct(base, 0.5)  # latency: above 1 is slower
        flag = ratio > 1 + SLOWER
        print(f"{backend} repository.get: {pct(rs, 0.5):.3f} vs {pct(base, 0.5):.3f} ms median -> "
              f"ours/baseline {ratio:.3f} (latency){' SLOWER by more than 5%' if flag else ''}")
        if flag:
            slower.append(f"{backend} repository.get")
    print("Commands: median over rounds of the ratio within each round; gets: ratio of the medians. "
          "Slower by more than 5%: " + (", ".join(slower) if slower else "none") + ".")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    p.add_argument("--workflows", type=int, default=None, help="workflows per run (default 40; quick 2)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=None, help="rounds of alternation (default 3; quick 1)")
    p.add_argument("--raw-seconds", type=float, default=None, help="duration of each raw run (default 3)")
    p.add_argument("--get-reps", type=int, default=None, help="timed gets per process (default 200)")
    p.add_argument("--pg", default=PG_DEFAULT, help="Postgres server URL without database")
    p.add_argument("--rs-path", default=None, help="directory to put first on PYTHONPATH for biomero_rs")
    p.add_argument("--rs-baseline", default=None,
                   help="directory of another biomero_rs build to measure next to it (\"biomero_rs baseline\")")
    p.add_argument("--quick", action="store_true", help="small workload, a smoke test")
    opts = p.parse_args(argv)
    if opts.workflows is None:
        opts.workflows = 2 if opts.quick else 40
    if opts.rounds is None:
        opts.rounds = 1 if opts.quick else 3
    if opts.raw_seconds is None:
        opts.raw_seconds = 0.3 if opts.quick else 3.0
    if opts.get_reps is None:
        opts.get_reps = 10 if opts.quick else 200
    backends = ["sqlite", "postgres"] if opts.backend == "all" else [opts.backend]
    wl = make_workload(opts.workflows, opts.seed)
    log(f"workload: {opts.workflows} workflows, {len(wl)} commands, seed {opts.seed}; "
        f"backends {backends}; {opts.rounds} round(s)")
    load0 = os.getloadavg()
    t0 = time.time()
    bench = Bench(opts)
    results, gets = bench.run(backends)
    report(results, gets, opts, bench.plans)
    print(f"Run took {time.time() - t0:.0f} s on {os.cpu_count()} CPUs; load average "
          f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")
    for backend, why in bench.failures:
        print(f"INCOMPLETE: {backend} failed ({why}); see the log above.")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
