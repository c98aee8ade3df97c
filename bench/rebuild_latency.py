"""Command latency while a rebuild runs, next to the same commands without one.

    .venv/bin/python bench/rebuild_latency.py            # --backend sqlite|postgres|all, --events N
    .venv/bin/python bench/rebuild_latency.py --baseline-python OTHER/bin/python

A log of N events (default 1,000,000: workflows of a task with many
progress updates, bulk-inserted) is rebuilt by `rebuild_views` in another
process, while this process runs commands (progress updates of its own
task, all four views) one after the other and times each; 300 commands run
before the rebuild and 300 after it. Prints, per backend: the rebuild's
seconds, and count, p50, p99 and max ms of the commands before, during and
after it.

The rebuild fills temporary tables beside the live ones on a connection of
its own, without a lock commands wait for, and switches in one short
transaction at the end: commands wait only for that transaction.

With ``--baseline-python``, the same log is also rebuilt (with no commands
running) by another build of biomero_rs (an interpreter that has it
installed) and by this one, and the ratio of their times is printed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))

import biomero_rs  # noqa: E402
from biomero_rs import WorkflowTracker  # noqa: E402

REBUILD = r"""
import sys, time, biomero_rs
t0 = time.monotonic()
print("go", flush=True)
biomero_rs.rebuild_views(sys.argv[1])
print(time.monotonic() - t0, flush=True)
"""


class Db:
    def __init__(self, backend, tmp, pg):
        self.backend = backend
        self.pg = pg
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp}/bench.db"
            self.name = None
        else:
            self.name = f"biomero_bench_{uuid.uuid4().hex[:10]}"
            self._admin(f'CREATE DATABASE "{self.name}"')
            self.url = f"{pg}/{self.name}"

    def _admin(self, sql):
        import psycopg2

        c = psycopg2.connect(self.pg_server() + "/postgres")
        c.autocommit = True
        c.cursor().execute(sql)
        c.close()

    def pg_server(self):
        return self.pg

    def drop(self):
        if self.name:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def insert(self, rows):
        sql = ("INSERT INTO workflowtracker_events (originator_id, originator_version, topic, state) "
               "VALUES ")
        if self.backend == "sqlite":
            import sqlite3

            c = sqlite3.connect(self.url[len("sqlite:///"):])
            c.executemany(sql + "(?, ?, ?, ?)", rows)
            c.commit()
            c.close()
        else:
            import psycopg2
            import psycopg2.extras

            c = psycopg2.connect(self.url)
            with c.cursor() as cur:
                psycopg2.extras.execute_values(cur, sql + "%s", rows, page_size=5000)
            c.commit()
            c.close()

    def one(self, sql):
        if self.backend == "sqlite":
            import sqlite3

            c = sqlite3.connect(self.url[len("sqlite:///"):])
            r = c.execute(sql).fetchall()
            c.close()
            return r
        import psycopg2

        c = psycopg2.connect(self.url)
        with c.cursor() as cur:
            cur.execute(sql)
            r = cur.fetchall()
        c.close()
        return r


def build_log(db, n):
    """n events: 200 workflows, each a task whose progress is updated many times."""
    with WorkflowTracker(db.url, views=[]) as t:
        for w in range(200):
            wf = t.initiate_workflow(f"wf{w}", "d", 1 + w % 5, 1)
            task = t.add_task_to_workflow(wf, "SLURM_Run_Workflow.py", "1", {}, {})
            t.start_task(task)
            t.add_job_id(task, str(1000 + w))
            t.update_task_progress(task, "1%")
    have = db.one("SELECT COUNT(*) FROM workflowtracker_events")[0][0]
    where = "WHERE topic = 'biomero.eventsourcing:Task.ProgressUpdated'"
    progress = db.one(
        f"SELECT originator_id, MAX(originator_version) FROM workflowtracker_events {where} GROUP BY originator_id"
    )
    topic, state = db.one(f"SELECT topic, state FROM workflowtracker_events {where} LIMIT 1")[0]
    per = max(0, (n - have) // len(progress))
    rows = []
    for oid, ver in progress:
        rows += [(oid, ver + 1 + i, topic, state) for i in range(per)]
        if len(rows) >= 100_000:
            db.insert(rows)
            rows = []
    if rows:
        db.insert(rows)
    if db.backend == "postgres":
        # As autovacuum would soon after a load like this: the planner needs
        # the table's statistics (the commands' guarded insert scans the
        # table with a plan made without them).
        import psycopg2

        c = psycopg2.connect(db.url)
        c.autocommit = True
        c.cursor().execute("ANALYZE workflowtracker_events")
        c.close()


def timed_commands(tracker, task, until=None, count=None):
    out = []
    i = 0
    while (until is None or until()) and (count is None or i < count):
        t0 = time.perf_counter()
        tracker.update_task_progress(task, f"{i % 100}%")
        out.append((time.perf_counter() - t0) * 1000)
        i += 1
    return out


def summary(ms):
    ms = sorted(ms)
    if not ms:
        return "no commands"
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{len(ms):6d} commands  p50 {statistics.median(ms):8.2f} ms  p99 {p99:8.2f} ms  max {ms[-1]:8.2f} ms"


def idle_rebuild(python, url):
    """Seconds of one rebuild run by `python` with nothing else running."""
    out = subprocess.run([python, "-c", REBUILD, url], capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def run(backend, events, pg, baseline=None):
    tmp = tempfile.mkdtemp(prefix="biomero_lat_")
    db = Db(backend, tmp, pg)
    try:
        build_log(db, events)
        biomero_rs.run_migrations(db.url)
        total = db.one("SELECT COUNT(*) FROM workflowtracker_events")[0][0]
        tracker = WorkflowTracker(db.url)
        wf = tracker.initiate_workflow("bench", "d", 1, 1)
        task = tracker.add_task_to_workflow(wf, "SLURM_Run_Workflow.py", "1", {}, {})
        before = timed_commands(tracker, task, count=300)
        proc = subprocess.Popen([sys.executable, "-c", REBUILD, db.url], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "go"
        during = timed_commands(tracker, task, until=lambda: proc.poll() is None)
        seconds = float(proc.stdout.read().split()[-1])
        proc.wait()
        after = timed_commands(tracker, task, count=300)
        tracker.close()
        if baseline:
            theirs = idle_rebuild(baseline, db.url)
            ours = idle_rebuild(sys.executable, db.url)
            print(f"{backend}: rebuild alone: {ours:.2f} s, baseline build {theirs:.2f} s "
                  f"(ours/baseline {ours / theirs:.2f}x)")
        print(f"{backend}: rebuild of {total:,} events took {seconds:.2f} s while commands ran")
        print(f"  before the rebuild: {summary(before)}")
        print(f"  during the rebuild: {summary(during)}")
        print(f"  after the rebuild:  {summary(after)}")
    finally:
        db.drop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="all", choices=["sqlite", "postgres", "all"])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--baseline-python", help="an interpreter with another build of biomero_rs, "
                    "whose rebuild time is printed beside ours")
    ap.add_argument("--pg", default=os.environ.get("BIOMERO_TEST_PG", "postgresql://postgres@127.0.0.1:5432"))
    a = ap.parse_args()
    for b in (["sqlite", "postgres"] if a.backend == "all" else [a.backend]):
        run(b, a.events, a.pg, a.baseline_python)


if __name__ == "__main__":
    main()
