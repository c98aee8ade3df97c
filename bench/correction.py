#!/usr/bin/env python
"""The correction after another writer scales with that writer's events, not
with the log.

    python bench/correction.py [--events 1000000] [--foreign 10,100,1000,10000]
                               [--backend sqlite|postgres] [--pg URL] [--quick]

1. A base log of ``--events`` events (BIOMERO-shaped workflows: initiate,
   start, a task with a job id, status and progress updates, completion;
   19 events per workflow) is written once by biomero_rs without
   views, then projected with one full rebuild (its time is printed: the
   alternative to a correction).
2. For each N in ``--foreign``, on a fresh copy of that database: N more
   events are appended without views and the four ``WorkflowTracker``
   tracking rows are moved to the end of the log, which is exactly what
   Python BIOMERO with its listeners leaves (it projects its events and
   advances those rows; biomero_rs's own rows stay behind). Then
   ``biomero_rs.catch_up(url)`` is timed: it finds the foreign events,
   re-derives the rows of the aggregates they touched, and records the
   positions. ``verify`` afterwards must report no difference.

Printed: per N the correction time, the time per foreign event, and the
ratio to the full rebuild; then a partial rebuild from a cutoff (``since=``
the timestamp of the event at 90% and at 99% of the log) against the full
rebuild. Measure a release build
(``maturin develop --release``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid

import biomero_rs
from biomero_rs import _core

TRACKING = ["jobaccounting_tracking", "jobprogress_tracking", "workflowprogress_tracking",
            "workflowanalytics_tracking"]


def write_workflows(url: str, events: int, first_job: int) -> int:
    """Appends BIOMERO-shaped workflows without views until at least
    `events` events are written; returns how many were written."""
    t = biomero_rs.WorkflowTracker(url, views=[])
    written = 0
    job = first_job
    while written < events:
        wf = t.initiate_workflow("cellpose run", "v1", 3 + job % 5, 7)
        t.start_workflow(wf)
        task = t.add_task_to_workflow(wf, "cellpose", "1.0", {"image_ids": [job]}, {})
        t.start_task(task)
        t.add_job_id(task, str(job))
        for pct in (10, 30, 50, 70, 90):
            t.update_task_status(task, "RUNNING")
            t.update_task_progress(task, f"{pct}%")
        t.update_task_status(task, "COMPLETED")
        t.complete_task(task, "ok")
        t.complete_workflow(wf)
        written += 19  # 1+1+2+1+1+10+1+1+1 (the task: TaskCreated and TaskAdded)
        job += 1
    return written


class Sqlite:
    def __init__(self, root: str):
        self.root = root

    def url(self, name: str) -> str:
        return f"sqlite:///{os.path.join(self.root, name + '.db')}?synchronous=normal"

    def path(self, name: str) -> str:
        return os.path.join(self.root, name + ".db")

    def copy(self, src: str, dst: str) -> None:
        _core.close_store(self.url(src))
        with sqlite3.connect(self.path(src)) as a, sqlite3.connect(self.path(dst)) as b:
            a.backup(b)

    def execute(self, name: str, sql: str) -> None:
        with sqlite3.connect(self.path(name)) as c:
            c.execute(sql)

    def timestamp(self, name: str, id_: int) -> str:
        with sqlite3.connect(self.path(name)) as c:
            (state,) = c.execute("SELECT state FROM workflowtracker_events WHERE id = ?", (id_,)).fetchone()
        return str(json.loads(bytes(state))["timestamp"]["_data_"])

    def drop(self, name: str) -> None:
        _core.close_store(self.url(name))
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path(name) + suffix):
                os.remove(self.path(name) + suffix)


class Postgres:
    def __init__(self, server: str):
        self.server = server.rstrip("/")
        self.prefix = f"biomero_bench_{uuid.uuid4().hex[:8]}_"
        self.made: list = []

    def _admin(self, sql: str) -> None:
        import psycopg2

        c = psycopg2.connect(self.server + "/postgres")
        c.autocommit = True
        try:
            c.cursor().execute(sql)
        finally:
            c.close()

    def url(self, name: str) -> str:
        if self.prefix + name not in self.made:
            self._admin(f'CREATE DATABASE "{self.prefix}{name}"')
            self.made.append(self.prefix + name)
        return f"{self.server}/{self.prefix}{name}"

    def copy(self, src: str, dst: str) -> None:
        _core.close_store(self.url(src))
        self._admin(f'CREATE DATABASE "{self.prefix}{dst}" TEMPLATE "{self.prefix}{src}"')
        self.made.append(self.prefix + dst)

    def execute(self, name: str, sql: str) -> None:
        import psycopg2

        c = psycopg2.connect(self.url(name))
        try:
            c.cursor().execute(sql)
            c.commit()
        finally:
            c.close()

    def timestamp(self, name: str, id_: int) -> str:
        import psycopg2

        c = psycopg2.connect(self.url(name))
        try:
            cur = c.cursor()
            cur.execute("SELECT state FROM workflowtracker_events WHERE id = %s", (id_,))
            return str(json.loads(bytes(cur.fetchone()[0]))["timestamp"]["_data_"])
        finally:
            c.close()

    def drop(self, name: str) -> None:
        _core.close_store(self.url(name))
        self._admin(f'DROP DATABASE IF EXISTS "{self.prefix}{name}" WITH (FORCE)')
        self.made.remove(self.prefix + name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="events in the base log")
    p.add_argument("--foreign", default="10,100,1000,10000", help="comma-separated N")
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg", default=os.environ.get("BIOMERO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    p.add_argument("--quick", action="store_true", help="a 2,000-event log, N = 20,200 (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.foreign = 2_000, "20,200"
    ns = [int(x) for x in args.foreign.split(",") if x.strip()]
    root = tempfile.mkdtemp(prefix="biomero_correction_")
    db = Sqlite(root) if args.backend == "sqlite" else Postgres(args.pg)
    try:
        t0 = time.perf_counter()
        written = write_workflows(db.url("base"), args.events, first_job=1)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        biomero_rs.rebuild_views(db.url("base"))
        rebuild_s = time.perf_counter() - t0
        print(f"== correction after N foreign events ({args.backend}) ==")
        print(f"base log: {written:,} events (written in {write_s:.1f}s); "
              f"full rebuild: {rebuild_s:.3f}s")
        print("| N foreign events | correction s | ms per foreign event | vs full rebuild | verify |")
        print("|---:|---:|---:|---:|---|")
        for n in ns:
            name = f"n{n}"
            db.copy("base", name)
            url = db.url(name)
            added = write_workflows(url, n, first_job=10_000_000)
            _core.close_store(url)
            # What Python's listeners leave: their tracking rows at the end.
            for t in TRACKING:
                db.execute(name, f"UPDATE {t} SET notification_id = (SELECT MAX(id) FROM "
                                 f"workflowtracker_events) WHERE application_name = 'WorkflowTracker'")
            t0 = time.perf_counter()
            biomero_rs.catch_up(url)
            secs = time.perf_counter() - t0
            diffs = biomero_rs.verify(url)
            print(f"| {added:,} | {secs:.4f} | {1000 * secs / added:.3f} | "
                  f"{100 * secs / rebuild_s:.2f}% | {'right' if not diffs else f'{len(diffs)} differences'} |")
            db.drop(name)
            if diffs:
                return 1
        # A partial rebuild from a cutoff, against the full one.
        print()
        print(f"== partial rebuild from a cutoff ({args.backend}) ==")
        print("| replayed | rebuild s | vs full rebuild |")
        print("|---:|---:|---:|")
        url = db.url("base")
        top = biomero_rs.status(url)["max_notification_id"]
        for frac in (0.10, 0.01):
            first = max(1, int(top * (1 - frac)))
            cutoff = db.timestamp("base", first)
            t0 = time.perf_counter()
            n = biomero_rs.rebuild_views(url, since=cutoff)
            secs = time.perf_counter() - t0
            print(f"| {n:,} events (last {frac:.0%}) | {secs:.3f} | {100 * secs / rebuild_s:.1f}% |")
        return 0
    finally:
        if isinstance(db, Postgres):
            for name in list(db.made):
                db._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
