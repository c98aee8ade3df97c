#!/usr/bin/env python
"""biomero_rs side by side with the reference (biomero 2.8.3 on eventsourcing
9.5.4 + eventsourcing_sqlalchemy 1.0.1), and the raw limit of the database.

    python bench/compare.py [--backend sqlite|postgres|all] [--workflows N]
                            [--seed S] [--rounds R] [--quick]
                            [--rs-path DIR] [--rs-baseline DIR]

One run, per backend and per round, each on a fresh database:

* ``raw``: single-row inserts, one transaction each, into a table shaped like
  ``workflowtracker_events`` (the database's commit limit for one client);
  on SQLite with the journal/synchronous settings of each side;
* ``biomero_rs``: the seeded workload through ``biomero_rs.WorkflowTracker``
  with all four views (on SQLite also with ``?synchronous=normal``);
* ``reference``: the same workload through biomero 2.8.3's ``WorkflowTracker``
  in an eventsourcing ``SingleThreadedRunner`` with the four view
  ProcessApplications of ``biomero.views`` (as ``SlurmClient`` sets it up).

Every measurement runs in its own worker process (the reference's
``EngineManager`` is process-global state), which issues the commands and
times each one with ``time.perf_counter_ns``. The order of the contenders is
reversed every other round. Afterwards the event and view-row counts of both
sides are compared, so both really did the same work.

Then ``repository.get`` of a task with 1,000 events (written once by
biomero_rs; the same rows are read by both sides).

``--rs-baseline DIR`` measures another build of biomero_rs (e.g. that of an
earlier commit, installed with ``pip install --target DIR``) in the same run:
each measurement of ``biomero_rs`` (and ``biomero_rs normal``) is paired with
one of ``biomero_rs baseline``, whose worker has DIR first on PYTHONPATH (as
``--rs-path`` does for ``biomero_rs``), the two in alternating order, and the
report adds ours/baseline ratios per case.

Postgres: ``--pg postgresql://postgres@127.0.0.1:5432`` (default, or
BIOMERO_BENCH_PG); the script creates and drops its own ``biomero_bench_*``
databases. Absolute numbers depend on the machine (above all on its fsync
latency); the ratios are what carries over.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
    else:
        from biomero.database import EngineManager

        runner, tracker = reference_tracker(url, views=False)
        repo = tracker.repository
        done = EngineManager.rollback  # end the scoped session's read, as BIOMERO does
    for i in range(reps + 5):
        t0 = perf()
        task = repo.get(task_id)
        t1 = perf()
        done()
        if i >= 5:  # warm-up
            lat.append(t1 - t0)
    assert task.version == 999 and len(task.job_ids) == 0, (task.version,)
    if impl != "rs":
        runner.stop()
        EngineManager.close_engine()
    return {"lat": lat}


def worker_prep_get(url, n_events, sqlite_path):
    """A workflow with one task of ``n_events`` events (TaskCreated + progress
    updates), written by biomero_rs without views into ``sqlite_path`` (with
    synchronous=normal, to be quick), then, for Postgres, the same rows copied
    into the events table of ``url`` in one transaction."""
    import sqlite3

    import biomero_rs

    t = biomero_rs.WorkflowTracker(f"sqlite:///{sqlite_path}?synchronous=normal", views=[])
    wf = t.initiate_workflow("get-bench", "one long task", 1, 1)
    task = t.add_task_to_workflow(wf, "cellpose", "1.0", {"image_ids": [1, 2, 3]}, {"d": 1.5})
    for i in range(n_events - 1):
        t.update_task_progress(task, f"{i % 100}%")
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


def worker_main(argv):
    kind, args = argv[0], json.loads(argv[1])
    fn = {"run": worker_run, "get": worker_get, "prep_get": worker_prep_get,
          "raw_sqlite": worker_raw_sqlite, "raw_pg": worker_raw_pg}[kind]
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
                    r["counts"] = self.counts("sqlite", path)
                    return r
                return go

            # Each contender next to the raw run of its own settings, so that
            # the two see the same machine (see paired ratios in report()).
            return self.with_baseline([
                ("raw WAL+FULL", raw("WAL", "FULL")),
                ("biomero_rs", run("rs")),
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
                    r["counts"] = self.counts("postgres", name)
                    return r
                finally:
                    self.drop_pg(name)
            return go

        return self.with_baseline(
            [("raw 1 client", raw_pg), ("biomero_rs", run_pg("rs")), ("reference", run_pg("ref"))],
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
        o = self.opts
        path = self.fresh_sqlite()
        if backend == "sqlite":
            url = f"sqlite:///{path}"
            ref_url, name = url, None
        else:
            name = self.fresh_pg()
            url = f"{o.pg}/{name}"
            ref_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
        try:
            task = self.worker("prep_get", url=url, n_events=1000, sqlite_path=path)["task"]
            out = {}
            for rnd in range(o.rounds):
                order = [("biomero_rs", "rs", url, False), ("reference", "ref", ref_url, False)]
                if self.base_env is not None:
                    order.insert(1, ("biomero_rs" + BASELINE, "rs", url, True))
                if rnd % 2:
                    order.reverse()
                for label, impl, u, base in order:
                    r = self.worker("get", base=base, impl=impl, url=u, task_hex=task, reps=o.get_reps)
                    out.setdefault(label, []).extend(r["lat"])
            return out
        finally:
            if name:
                self.drop_pg(name)

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
        for rnd in range(self.opts.rounds):
            order = cs if rnd % 2 == 0 else list(reversed(cs))
            for label, go in order:
                t0 = time.time()
                r = go()
                agg = results.setdefault((backend, label), {"rates": [], "lat": [], "counts": []})
                agg["rates"].append(r["n"] / (r["wall"] / 1e9))
                agg["lat"].extend(r["lat"])
                agg["n"] = r["n"]
                agg["info"] = r.get("info", {})
                if "counts" in r:
                    agg["counts"].append(r["counts"])
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
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
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
    ("sqlite", "reference"): "pysqlite default",
    ("postgres", "raw 1 client"): "autocommit INSERT",
    ("postgres", "biomero_rs"): "1 tx per command",
    ("postgres", "reference"): "SQLAlchemy scoped session",
}
# Which raw rate each contender is held against (same durability settings).
RAW_OF = {
    ("sqlite", "biomero_rs"): "raw WAL+FULL",
    ("sqlite", "biomero_rs normal"): "raw WAL+NORMAL",
    ("sqlite", "reference"): "raw DELETE+FULL",
    ("postgres", "biomero_rs"): "raw 1 client",
    ("postgres", "reference"): "raw 1 client",
}


def paired(a, b):
    """The median over rounds of a's rate / b's rate in the same round (each
    round runs the two close together, so machine drift cancels)."""
    return statistics.median(x / y for x, y in zip(a["rates"], b["rates"]))


def report(results, gets, opts):
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
        if label.startswith("raw") and "sqlite" in info:
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
        rows.append([backend, label, settings, agg["n"], f"{rate:,.0f}",
                     f"{pct(lat, 0.5):.3f}", f"{pct(lat, 0.99):.3f}", vs_ref, of_raw])
    print()
    print(f"== Commands (workflows={opts.workflows}, seed={opts.seed}, rounds={opts.rounds}; "
          f"raw = single-row insert per transaction) ==")
    print(table(["backend", "contender", "durability settings", "ops/round", "cmd/s",
                 "p50 ms", "p99 ms", "ratio vs reference", "% of raw"], rows))
    print("cmd/s: median over rounds; p50/p99: over every command of every round; ratio vs "
          "reference and % of raw (the raw rate of the same settings): median over rounds of "
          "the ratio within each round.")

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

    grows = []
    for backend, g in gets.items():
        ref = sorted(g.get("reference", []))
        for label in ("biomero_rs", "biomero_rs" + BASELINE, "reference"):
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
    for name, b, label, rawl, need in checks:
        share = share_of(b, label, rawl)
        if share is None:
            continue
        a, r = rate(b, label), rate(b, rawl)
        print(f"{name}: {100 * share:.1f}% (medians {a:,.0f} vs {r:,.0f}/s) -> "
              f"{'met' if share >= need else 'MISSED'}")
    for backend, g in gets.items():
        rs = sorted(g.get("biomero_rs", []))
        if rs:
            m = pct(rs, 0.5)
            print(f"{backend} repository.get 1,000 events < 1 ms median: {m:.3f} ms -> "
                  f"{'met' if m < 1 else 'MISSED'}")
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
    report(results, gets, opts)
    print(f"Run took {time.time() - t0:.0f} s on {os.cpu_count()} CPUs; load average "
          f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")
    for backend, why in bench.failures:
        print(f"INCOMPLETE: {backend} failed ({why}); see the log above.")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
