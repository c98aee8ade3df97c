#!/usr/bin/env python
"""Writers in several processes: what do they lose to each other?

    python bench/writers.py [--backend sqlite|postgres|all] [--writers 1,8]
                            [--seconds S] [--rounds R] [--quick]
                            [--pg URL] [--rs-path DIR] [--rs-baseline DIR]

Per backend, per round and per number of writers N (default 1 and 8), each
measurement on a fresh database (SQLite: one new file shared by all N
writers, default durable settings; Postgres: one new database):

* ``raw``: N processes each doing single-row INSERT transactions into one
  table shaped like ``workflowtracker_events`` (SQLite: WAL +
  synchronous=FULL, autocommit, a 60 s busy timeout; Postgres: autocommit):
  what the database itself loses (or gains, by group commit) with N writers;
* ``biomero_rs``: N processes each with its own ``biomero_rs.WorkflowTracker``
  (all four views) and its own workflow: initiate_workflow, start_workflow,
  add_task_to_workflow, start_task, add_job_id, then update_task_status
  ("RUNNING") and update_task_progress alternately, as a server polling its
  Slurm jobs does, until the time is up.

The tables are created before the writers start (by a separate process), so
migration is not timed. Every writer is its own process: it connects, does
its set-up (raw: one insert; biomero_rs: the five commands up to add_job_id)
and reports ready; when all are ready the parent counts the events written so
far (the set-up events) and hands every writer the same start time. From it,
each writer issues commands for ``--seconds`` (default 3), timing each one
with ``time.perf_counter_ns``. Throughput = the commands of all writers / the
time from the common start to the end of the last writer. "vs 1 writer" is
the median over rounds of N-writer / 1-writer throughput within the same
round (of the same contender). Afterwards the events in the table, minus the
set-up events, must equal the commands counted (each polling command writes
one event), so the work was really done. The order of the measurements is
reversed every other round.

The target: with 8 writers, biomero_rs keeps at least the throughput of 1
writer (ratio >= 1.0x), and its ratio is above that of the raw inserts (it
loses less to contention than the database's bare commit does).

``--rs-baseline DIR`` measures another build of biomero_rs (installed with
``pip install --target DIR``) in the same run: after each measurement of
``biomero_rs`` comes one of ``biomero_rs baseline`` with the same N, whose
writers have DIR first on PYTHONPATH, and the report adds ours/baseline
ratios.

Postgres: ``--pg postgresql://postgres@127.0.0.1:5432`` (default, or
BIOMERO_BENCH_PG); the script creates and drops its own ``biomero_bench_*``
databases. Absolute numbers depend on the machine (its cores and its fsync
latency); the ratios are what carries over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (its helpers and databases)
from compare import log, paired, pct, raw_row, table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = " baseline"  # label suffix of the runs on the --rs-baseline build
SLOWER = 0.05  # ours more than this much slower than the baseline is flagged
PG_DEFAULT = os.environ.get("BIOMERO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
EVENTS_TABLE = "workflowtracker_events"
RAW_TABLE = "raw_events"
TARGET_RATIO = 1.0

# ------------------------------------------------------------------ workers
# Each runs in its own process. "prep" prints one JSON line; "write" prints a
# "ready" JSON line, waits for the start time on stdin, then prints its result.


def worker_prep(impl, backend, url, path):
    """Creates the tables (and, for raw SQLite, switches the file to WAL)."""
    if impl == "rs":
        import biomero_rs

        biomero_rs.WorkflowTracker(url)  # creates the events, view and tracking tables
        return {"module": biomero_rs._core.__file__}
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(path, isolation_level=None)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # persistent in the file
        conn.execute(
            f"CREATE TABLE {RAW_TABLE} (id INTEGER PRIMARY KEY, originator_id BINARY(16) NOT NULL, "
            "originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL)")
        conn.execute(f"CREATE UNIQUE INDEX {RAW_TABLE}_idx ON {RAW_TABLE} (originator_id, originator_version)")
        conn.close()
        return {"journal_mode": mode}
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {RAW_TABLE} (id bigserial PRIMARY KEY, originator_id uuid NOT NULL, "
            "originator_version bigint NOT NULL, topic text NOT NULL, state bytea NOT NULL)")
        cur.execute(f"CREATE UNIQUE INDEX {RAW_TABLE}_idx ON {RAW_TABLE} (originator_id, originator_version)")
    conn.close()
    return {}


def barrier(info):
    """Reports ready, then waits for the common start time and sleeps until it."""
    sys.stdout.write(json.dumps({"ready": True, "info": info}) + "\n")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit("no start time on stdin (the parent gave up)")
    t_start = float(line)
    time.sleep(max(0.0, t_start - time.time()))
    return t_start


def timed_loop(commands, seconds, t_start):
    """Calls commands[i % len] until ``seconds`` have passed; a command that
    raises is counted as an error, not as a command."""
    lat, perf = [], time.perf_counter_ns
    errors, first_error = 0, None
    skew = time.time() - t_start  # how late this writer started
    end = perf() + int(seconds * 1e9)
    i, k = 0, len(commands)
    while True:
        fn = commands[i % k]
        t0 = perf()
        try:
            fn(i)
        except Exception as e:  # e.g. "database is locked": report, keep going
            errors += 1
            if first_error is None:
                first_error = f"{type(e).__name__}: {e}"
        else:
            lat.append(perf() - t0)
        i += 1
        if perf() >= end:
            break
    return {"lat": lat, "n": len(lat), "t_end": time.time(), "skew": skew,
            "errors": errors, "first_error": first_error}


def worker_write(impl, backend, url, path, seconds, writer):
    if impl == "rs":
        import biomero_rs

        tracker = biomero_rs.WorkflowTracker(url)  # all four views
        # set-up (and warm-up): this writer's own workflow with one running task
        wf = tracker.initiate_workflow(f"Writer {writer}", "multi-writer bench", 1 + writer, 1)
        tracker.start_workflow(wf)
        task = tracker.add_task_to_workflow(
            wf, "cellpose", "v1.2", {"image_ids": [1000 + writer, 2000 + writer], "data_type": "Image",
                                     "email": False},
            {"diameter": 30, "use_gpu": True, "model_type": "cyto2"})
        tracker.start_task(task)
        tracker.add_job_id(task, 4_100_000 + writer)
        commands = [lambda i: tracker.update_task_status(task, "RUNNING"),
                    lambda i: tracker.update_task_progress(task, f"{(i // 2) % 101}%")]
        info = {"module": biomero_rs._core.__file__}
    elif backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(path, timeout=60, isolation_level=None)  # autocommit, busy timeout
        conn.execute("PRAGMA synchronous=FULL")
        info = {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
                "sqlite": sqlite3.sqlite_version}
        topic, state = raw_row()
        sql = f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) VALUES (?,?,?,?)"
        commands = [lambda i: conn.execute(sql, (uuid.uuid4().bytes, 0, topic, state))]
        commands[0](0)  # warm-up
    else:
        import psycopg2

        conn = psycopg2.connect(url)
        conn.autocommit = True  # 1 statement = 1 transaction
        cur = conn.cursor()
        cur.execute("SHOW synchronous_commit")
        sc = cur.fetchone()[0]
        cur.execute("SHOW fsync")
        info = {"synchronous_commit": sc, "fsync": cur.fetchone()[0]}
        topic, state = raw_row()
        sql = f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) VALUES (%s,%s,%s,%s)"
        blob = psycopg2.Binary(state)
        commands = [lambda i: cur.execute(sql, (str(uuid.uuid4()), 0, topic, blob))]
        commands[0](0)  # warm-up
    t_start = barrier(info)
    out = timed_loop(commands, seconds, t_start)
    out["info"] = info
    return out


def worker_main(argv):
    kind, args = argv[0], json.loads(argv[1])
    fn = {"prep": worker_prep, "write": worker_write}[kind]
    out = fn(**args)
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


# ------------------------------------------------------------------ parent


class WorkerError(RuntimeError):
    pass


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.tmp = tempfile.mkdtemp(prefix="biomero_bench_")
        self.env = dict(os.environ)
        self.env.pop("SQLALCHEMY_URL", None)
        self.base_env = None  # the workers of the baseline build (--rs-baseline)
        if opts.rs_baseline:
            self.base_env = dict(self.env)
            self.base_env["PYTHONPATH"] = opts.rs_baseline + os.pathsep + self.env.get("PYTHONPATH", "")
        if opts.rs_path:
            self.env["PYTHONPATH"] = opts.rs_path + os.pathsep + self.env.get("PYTHONPATH", "")

    def cmdline(self, kind, args):
        return [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(args)]

    def worker(self, kind, base=False, **args):
        """Runs ``kind`` in a fresh process to its end; ``base``: with the baseline build."""
        proc = subprocess.run(self.cmdline(kind, args), capture_output=True, text=True,
                              env=self.base_env if base else self.env, timeout=600)
        if proc.returncode != 0:
            raise WorkerError(f"worker {kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # -- databases

    # The same databases as compare.py's.
    fresh_sqlite = compare.Bench.fresh_sqlite
    pg_admin = compare.Bench.pg_admin
    fresh_pg = compare.Bench.fresh_pg
    drop_pg = compare.Bench.drop_pg

    def count(self, backend, where, table):
        if backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(where, timeout=60)
            try:
                return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            finally:
                conn.close()
        import psycopg2

        conn = psycopg2.connect(f"{self.opts.pg}/{where}")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM {table}")
                return cur.fetchone()[0]
        finally:
            conn.close()

    # -- one measurement: N writers on one fresh database

    def measure(self, backend, impl, n, base=False):
        if backend == "sqlite":
            path = self.fresh_sqlite()
            url, where = f"sqlite:///{path}", path
        else:
            path, where = None, self.fresh_pg()
            url = f"{self.opts.pg}/{where}"
        table = EVENTS_TABLE if impl == "rs" else RAW_TABLE
        try:
            self.worker("prep", base=base, impl=impl, backend=backend, url=url, path=path)
            r = self.run_writers(impl, backend, url, path, n, base,
                                 lambda: self.count(backend, where, table))
            r["events"] = self.count(backend, where, table) - r["setup_events"]
            return r
        finally:
            if backend == "postgres":
                self.drop_pg(where)

    def run_writers(self, impl, backend, url, path, n, base, count_setup):
        env = self.base_env if base else self.env
        procs, errs = [], []
        watchdog = threading.Timer(300 + 3 * self.opts.seconds, lambda: [p.kill() for p in procs])
        watchdog.daemon = True
        try:
            for i in range(n):
                err = open(os.path.join(self.tmp, f"writer{i}.err"), "w+")
                errs.append(err)
                args = dict(impl=impl, backend=backend, url=url, path=path,
                            seconds=self.opts.seconds, writer=i)
                procs.append(subprocess.Popen(self.cmdline("write", args), stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=err, text=True, env=env))
            watchdog.start()
            infos = [self.await_ready(p, e) for p, e in zip(procs, errs)]
            setup_events = count_setup()  # all writers are idle at the barrier
            t_start = time.time() + 0.05 + 0.002 * n  # time to hand it to every writer
            for p, e in zip(procs, errs):
                try:
                    p.stdin.write(f"{t_start!r}\n")
                    p.stdin.close()
                except OSError:  # it died at the barrier
                    p.wait()
                    raise WorkerError(f"writer failed at the start ({p.returncode}):\n{tail(e)}") from None
            outs = []
            for p, e in zip(procs, errs):
                text = p.stdout.read()
                if p.wait() != 0:
                    raise WorkerError(f"writer failed ({p.returncode}):\n{tail(e)}")
                outs.append(json.loads(text.strip().splitlines()[-1]))
        finally:
            watchdog.cancel()
            for p in procs:  # only on an error are any still running
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for e in errs:
                e.close()
        t_end = max(o["t_end"] for o in outs)
        n_cmds = sum(o["n"] for o in outs)
        first_error = next((o["first_error"] for o in outs if o["first_error"]), None)
        return {"n": n_cmds, "wall": t_end - t_start, "lat": [x for o in outs for x in o["lat"]],
                "per_writer": [o["n"] for o in outs], "skew": max(o["skew"] for o in outs),
                "errors": sum(o["errors"] for o in outs), "first_error": first_error,
                "setup_events": setup_events, "info": infos[0]}

    def await_ready(self, p, err):
        while True:
            line = p.stdout.readline()
            if not line:
                p.wait()
                raise WorkerError(f"writer failed before the start ({p.returncode}):\n{tail(err)}")
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("ready"):
                return msg["info"]

    # -- rounds

    def contenders(self):
        """[(label, impl, base)]: raw, biomero_rs and (with --rs-baseline) its baseline."""
        cs = [("raw", "raw", False), ("biomero_rs", "rs", False)]
        if self.base_env is not None:
            cs.append(("biomero_rs" + BASELINE, "rs", True))
        return cs

    def order(self):
        """Each contender at every N; a baseline measurement right after ours of the same N."""
        out = []
        for label, impl, base in self.contenders():
            if base:
                continue
            for n in self.opts.writers:
                out.append((label, impl, False, n))
                if impl == "rs" and self.base_env is not None:
                    out.append(("biomero_rs" + BASELINE, "rs", True, n))
        return out

    def run(self, backends):
        results = {}  # (backend, label, n) -> {"rates": [...], "lat": [...], "checks": [...], ...}
        self.failures = []
        try:
            for backend in backends:
                try:
                    self.run_backend(backend, results)
                except WorkerError as e:  # e.g. the server went away: report what was measured
                    log(f"[{backend}] FAILED, its figures are incomplete: {e}")
                    self.failures.append((backend, str(e).splitlines()[0]))
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return results

    def run_backend(self, backend, results):
        base_order = self.order()
        for rnd in range(self.opts.rounds):
            order = base_order if rnd % 2 == 0 else list(reversed(base_order))
            for label, impl, base, n in order:
                t0 = time.time()
                r = self.measure(backend, impl, n, base)
                agg = results.setdefault((backend, label, n), {
                    "rates": [], "lat": [], "checks": [], "errors": 0, "first_error": None, "skew": 0.0})
                agg["rates"].append(r["n"] / r["wall"])
                agg["lat"].extend(r["lat"])
                agg["cmds"] = agg.get("cmds", []) + [r["n"]]
                agg["checks"].append((r["events"], r["n"]))
                agg["errors"] += r["errors"]
                agg["first_error"] = agg["first_error"] or r["first_error"]
                agg["skew"] = max(agg["skew"], r["skew"])
                agg["fewest"] = min(agg.get("fewest", r["n"]), min(r["per_writer"]))
                agg["most"] = max(agg.get("most", 0), max(r["per_writer"]))
                agg["info"] = r["info"]
                per = r["per_writer"]
                log(f"[{backend} round {rnd + 1}/{self.opts.rounds}] {label} x{n}: "
                    f"{agg['rates'][-1]:,.0f} cmd/s over {r['wall']:.2f} s (per writer {min(per)}-{max(per)}, "
                    f"start skew {1e3 * r['skew']:.1f} ms, errors {r['errors']}; "
                    f"{time.time() - t0:.1f} s)")


def tail(f):
    f.flush()
    f.seek(0)
    return f.read()[-3000:]


def settings(backend, label, info):
    if label == "raw" and backend == "sqlite" and "sqlite" in info:
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(info["synchronous"], info["synchronous"])
        return f"journal_mode={info['journal_mode'].upper()}, synchronous={sync}, autocommit (sqlite3 {info['sqlite']})"
    if label == "raw" and backend == "postgres" and "fsync" in info:
        return f"autocommit (synchronous_commit={info['synchronous_commit']}, fsync={info['fsync']})"
    if backend == "sqlite":
        return "journal_mode=WAL, synchronous=FULL (default URL)"
    return "1 tx per command"


def report(results, opts):
    ws = opts.writers
    lo, hi = ws[0], ws[-1]
    backends = list(dict.fromkeys(b for b, _, _ in results))
    for backend in backends:
        rows = []
        for (b, label, n), agg in results.items():
            if b != backend:
                continue
            lat = sorted(agg["lat"])
            one = results.get((backend, label, lo))
            vs1 = f"{paired(agg, one):.2f}x" if one and n != lo else ("1.00x" if one else "")
            raw = results.get((backend, "raw", n))
            of_raw = f"{100 * paired(agg, raw):.1f}%" if raw and label != "raw" else ""
            rows.append([f"{label} {n}", settings(backend, label, agg.get("info", {})),
                         f"{statistics.median(agg['cmds']):,.0f}", f"{statistics.median(agg['rates']):,.0f}",
                         f"{agg['fewest']:,}-{agg['most']:,}", f"{pct(lat, 0.5):.3f}", f"{pct(lat, 0.99):.3f}",
                         vs1, of_raw, agg["errors"]])
        rows.sort(key=lambda r: (r[0].rsplit(" ", 1)[0] != "raw", r[0].rsplit(" ", 1)[0],
                                 int(r[0].rsplit(" ", 1)[1])))
        print()
        print(f"== {backend}: N writers in N processes, {opts.seconds:g} s each, rounds={opts.rounds} "
              f"(raw = single-row insert per transaction, all writers on one table) ==")
        print(table(["writers", "settings", "commands/round", "cmd/s", "per writer", "p50 ms", "p99 ms",
                     f"vs {lo} writer", "% of raw (same N)", "errors"], rows))
    print()
    print("cmd/s: all writers' commands / time from the common start to the last writer's end, "
          "median over rounds; per writer: the fewest and most commands of one writer in any round (fairness); p50/p99: over every command of every writer and round; "
          f"vs {lo} writer and % of raw: median over rounds of the ratio within each round.")
    errs = [(k, agg["first_error"]) for k, agg in results.items() if agg["first_error"]]
    for (b, label, n), e in errs:
        print(f"first error, {b} {label} {n}: {e}")

    # the work was really done
    print()
    print("== Work done: events written (after the run, minus the set-up events) == commands counted ==")
    for backend in backends:
        bad, runs = [], 0
        for (b, label, n), agg in results.items():
            if b != backend:
                continue
            for events, cmds in agg["checks"]:
                runs += 1
                if events != cmds:
                    bad.append(f"{label} {n}: {events} events vs {cmds} commands")
        print(f"{backend}: " + ("; ".join(bad) + " -> MISMATCH" if bad else f"all {runs} runs match"))

    if opts.rs_baseline:
        report_baseline(results, opts)

    print()
    print("== Targets ==")
    for backend in backends:
        rs1, rsn = results.get((backend, "biomero_rs", lo)), results.get((backend, "biomero_rs", hi))
        raw1, rawn = results.get((backend, "raw", lo)), results.get((backend, "raw", hi))
        if not (rs1 and rsn and raw1 and rawn) or lo == hi:
            continue
        r, rr = paired(rsn, rs1), paired(rawn, raw1)
        ok = r >= TARGET_RATIO and r > rr
        extra = ""
        b1, bn = results.get((backend, "biomero_rs" + BASELINE, lo)), results.get((backend, "biomero_rs" + BASELINE, hi))
        if b1 and bn:
            extra = f"; baseline {paired(bn, b1):.2f}x"
        print(f"{backend}: {hi} writers vs {lo} >= {TARGET_RATIO:.1f}x and above the raw ratio: "
              f"biomero_rs {r:.2f}x, raw {rr:.2f}x{extra} -> {'met' if ok else 'MISSED'}")
    mods = {}
    for (_, label, _), agg in results.items():
        m = agg.get("info", {}).get("module")
        if m:
            mods.setdefault(m, label)
    for m, who in mods.items():
        size = os.path.getsize(m) if os.path.exists(m) else 0
        print(f"{who} module: {m} ({size / 1e6:.1f} MB)")
        if size > 20e6:
            print("  (that size suggests a debug build: measure a release build, "
                  "`maturin develop --release`)")
    print(f"Absolute numbers vary between machines (cores, fsync latency); compare ratios. "
          f"This machine: {os.cpu_count()} CPUs for up to {hi} writers.")


def report_baseline(results, opts):
    """One line per N: ours / the baseline build's."""
    print()
    print(f"== biomero_rs vs baseline ({opts.rs_baseline}) ==")
    slower = []
    for (backend, label, n), agg in results.items():
        base = results.get((backend, label + BASELINE, n))
        if not base:
            continue
        ratio = paired(agg, base)
        flag = ratio < 1 - SLOWER
        la, lb = sorted(agg["lat"]), sorted(base["lat"])
        print(f"{backend} {label} {n} writer(s): {statistics.median(agg['rates']):,.0f} vs "
              f"{statistics.median(base['rates']):,.0f} cmd/s -> ours/baseline {ratio:.3f} (throughput); "
              f"p99 {pct(la, 0.99):.3f} vs {pct(lb, 0.99):.3f} ms{' SLOWER by more than 5%' if flag else ''}")
        if flag:
            slower.append(f"{backend} {n}")
    print("Median over rounds of the ratio within each round. Slower by more than 5%: "
          + (", ".join(slower) if slower else "none") + ".")


def parse_writers(s):
    try:
        ws = sorted({int(x) for x in s.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {s!r}") from None
    if not ws or ws[0] < 1:
        raise argparse.ArgumentTypeError("writer counts must be >= 1")
    return ws


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    p.add_argument("--writers", type=parse_writers, default=[1, 8],
                   help="numbers of writer processes, comma-separated (default 1,8); "
                        "ratios are against the smallest")
    p.add_argument("--seconds", type=float, default=None, help="duration of each measurement (default 3; quick 0.5)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of alternation (default 3; quick 1)")
    p.add_argument("--pg", default=PG_DEFAULT, help="Postgres server URL without database")
    p.add_argument("--rs-path", default=None, help="directory to put first on PYTHONPATH for biomero_rs")
    p.add_argument("--rs-baseline", default=None,
                   help="directory of another biomero_rs build to measure next to it (\"biomero_rs baseline\")")
    p.add_argument("--quick", action="store_true", help="short runs, a smoke test")
    opts = p.parse_args(argv)
    if opts.seconds is None:
        opts.seconds = 0.5 if opts.quick else 3.0
    if opts.rounds is None:
        opts.rounds = 1 if opts.quick else 3
    backends = ["sqlite", "postgres"] if opts.backend == "all" else [opts.backend]
    log(f"writers {opts.writers}, {opts.seconds:g} s each; backends {backends}; {opts.rounds} round(s)")
    load0 = os.getloadavg()
    t0 = time.time()
    bench = Bench(opts)
    results = bench.run(backends)
    report(results, opts)
    print(f"Run took {time.time() - t0:.0f} s on {os.cpu_count()} CPUs; load average "
          f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")
    for backend, why in bench.failures:
        print(f"INCOMPLETE: {backend} failed ({why}); see the log above.")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
