"""Reliability under concurrency, crashes, database faults and bad input (issue 7).

Each test runs on SQLite and on Postgres unless noted. The sizes fit CI;
``BIOMERO_STRESS=1`` runs the larger manual setting (more processes, threads,
commands and kills).

The same file is also the worker program of the multi-process tests:
``python test_reliability.py <worker> <json config>``.
"""

import collections
import json
import logging
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

import pytest

import biomero_rs
from biomero_rs import (
    AggregateNotFoundError,
    DatabaseError,
    JobAccounting,
    JobProgress,
    WorkflowAnalytics,
    WorkflowProgress,
    WorkflowTracker,
)
from conftest import BACKENDS, Database, _pg_admin

HERE = Path(__file__).resolve().parent
STRESS = os.environ.get("BIOMERO_STRESS", "") not in ("", "0")

# K processes x T threads x N commands each.
PROCS, THREADS, COMMANDS = (6, 4, 120) if STRESS else (3, 3, 20)
KILLS = 100 if STRESS else 15

P = "biomero.eventsourcing:"
TASK_CREATED = P + "Task.TaskCreated"
TASK_ADDED = P + "WorkflowRun.TaskAdded"
WORKFLOW_INITIATED = P + "WorkflowRun.WorkflowInitiated"

# Task names that take each branch of the WorkflowProgress status rules.
TASK_NAMES = [
    "_SLURM_Image_Transfer.py",
    "convert_omezarr_to_zarr",
    "SLURM_Get_Results.py",
    "SLURM_Import_Results.py",
    "SLURM_Run_Workflow.py",
    "cellpose",
    "Stardist ü",
]
STATUSES = ["RUNNING", "COMPLETED", "PENDING", "JOB_STATUS", "IMPORTED", "FAILED", "TRANSFERRING"]


# ------------------------------------------------------------------ helpers


def uuid_tag(u):
    return {"_type_": "uuid_hex", "_data_": uuid.UUID(str(u)).hex}


def canon(fields):
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)


class Ev:
    """One row of the events table, read with the backend's own Python driver."""

    __slots__ = ("id", "oid", "version", "topic", "state")

    def __init__(self, id_, oid, version, topic, state):
        self.id, self.oid, self.version, self.topic, self.state = id_, oid, version, topic, state

    def fields(self):
        """The state without what the store adds (timestamp, originator_topic)."""
        return {k: v for k, v in self.state.items() if k not in ("timestamp", "originator_topic")}

    def __repr__(self):
        return f"Ev(id={self.id}, {self.oid}, v{self.version}, {self.topic.split(':')[-1]})"


def read_log(db):
    """Every event in id order. Postgres: through psycopg2, independent of
    biomero_rs. SQLite: through biomero_rs's notification log, never Python's
    sqlite3 module, because two SQLite libraries in one process on the same
    file corrupt it (see test_python_sqlite3_in_the_same_process_...)."""
    if db.backend == "sqlite":
        log = WorkflowTracker(db.url, views=[]).notification_log
        out, start = [], 1
        while True:
            page = log.select(start, 1000)
            if not page:
                return out
            out += [Ev(n.id, n.originator_id, n.originator_version, n.topic, json.loads(n.state.decode("utf-8")))
                    for n in page]
            start = page[-1].id + 1
    rows = db.rows(
        "SELECT id, originator_id, originator_version, topic, state FROM workflowtracker_events ORDER BY id"
    )
    return [Ev(id_, uuid.UUID(str(oid)), version, topic, json.loads(bytes(state).decode("utf-8")))
            for id_, oid, version, topic, state in rows]


def log_position(db):
    """(number of events, highest notification id)."""
    if db.backend == "sqlite":
        st = biomero_rs.status(db.url)
        return st["events"], st["max_notification_id"]
    return tuple(db.rows("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM workflowtracker_events")[0])


def event_count(db):
    return log_position(db)[0]


def check_log(events):
    """The log holds whole commands only, in a consistent order:
    notification ids strictly increasing; per aggregate, versions 0, 1, 2, ...
    in id order starting with its created event; every TaskCreated directly
    followed by the TaskAdded of the same command (and no TaskAdded without
    its TaskCreated); every task's workflow exists."""
    problems = []
    ids = [e.id for e in events]
    if any(b <= a for a, b in zip(ids, ids[1:])):
        problems.append("notification ids are not strictly increasing")
    by_agg = collections.defaultdict(list)
    for e in events:
        by_agg[e.oid].append(e)
    kinds = {}
    for oid, evs in by_agg.items():
        versions = [e.version for e in evs]
        if versions != list(range(len(evs))):
            problems.append(f"{oid}: versions in id order are {versions[:20]}")
        first = evs[0].topic
        if first not in (WORKFLOW_INITIATED, TASK_CREATED):
            problems.append(f"{oid}: starts with {first}")
            continue
        kind = "WorkflowRun" if first == WORKFLOW_INITIATED else "Task"
        kinds[oid] = kind
        wrong = [e for e in evs if not e.topic.startswith(f"{P}{kind}.")]
        if wrong:
            problems.append(f"{oid}: {kind} with foreign events {wrong[:3]}")
        created_again = [e for e in evs[1:] if e.topic in (WORKFLOW_INITIATED, TASK_CREATED)]
        if created_again:
            problems.append(f"{oid}: created twice {created_again[:3]}")
    pos = {e.id: i for i, e in enumerate(events)}
    added = {}
    for e in events:
        if e.topic == TASK_ADDED:
            tid = uuid.UUID(e.state["task_id"]["_data_"])
            if tid in added:
                problems.append(f"task {tid} added twice")
            added[tid] = e
    for e in events:
        if e.topic != TASK_CREATED:
            continue
        wf = uuid.UUID(e.state["workflow_id"]["_data_"])
        a = added.pop(e.oid, None)
        if a is None:
            problems.append(f"TaskCreated {e} has no TaskAdded (a split add_task_to_workflow)")
            continue
        if pos[a.id] != pos[e.id] + 1 or a.id <= e.id:
            problems.append(f"TaskCreated {e} and its TaskAdded {a} are not adjacent")
        if a.oid != wf:
            problems.append(f"TaskCreated {e} names workflow {wf} but was added to {a.oid}")
        if kinds.get(wf) != "WorkflowRun":
            problems.append(f"TaskCreated {e}: workflow {wf} does not exist")
    for tid, a in added.items():
        problems.append(f"TaskAdded {a} of task {tid} without its TaskCreated")
    assert not problems, "log is not made of whole commands:\n" + "\n".join(problems[:30])


_VIEW_OBJECTS = {}


def snapshot(url):
    """The four view tables through the view classes, in a stable order."""
    if url not in _VIEW_OBJECTS:
        _VIEW_OBJECTS[url] = (JobAccounting(url), JobProgress(url), WorkflowProgress(url), WorkflowAnalytics(url))
    ja, jp, wp, wa = _VIEW_OBJECTS[url]
    return {
        "biomero_job_view": [r.to_dict() for r in ja.list_jobs()],
        "biomero_job_progress_view": [r.to_dict() for r in jp.list_job_progress()],
        "biomero_workflow_progress_view": sorted(
            (r.to_dict() for r in wp.list_workflows()), key=lambda d: str(d["workflow_id"])
        ),
        "biomero_task_execution": sorted(
            (r.to_dict() for r in wa.list_task_executions()), key=lambda d: str(d["task_id"])
        ),
    }


def diff_snapshots(a, b):
    lines = []
    for table in a:
        ra, rb = a[table], b[table]
        if ra == rb:
            continue
        only_a = [r for r in ra if r not in rb]
        only_b = [r for r in rb if r not in ra]
        lines.append(f"{table}: {len(ra)} rows live, {len(rb)} rebuilt")
        lines += [f"  live only:    {r}" for r in only_a[:5]]
        lines += [f"  rebuilt only: {r}" for r in only_b[:5]]
    return "\n".join(lines)


def assert_views_equal_rebuild(url):
    """Every view row equals what a from-scratch rebuild over the log gives."""
    live = snapshot(url)
    biomero_rs.rebuild_views(url)
    rebuilt = snapshot(url)
    assert live == rebuilt, "views differ from a rebuild:\n" + diff_snapshots(live, rebuilt)
    return rebuilt


def assert_no_view_lag(url):
    st = biomero_rs.status(url)
    lagging = {name: v for name, v in st["views"].items() if v["lag"] != 0}
    assert not lagging, f"views behind the log: {lagging}"


def run_worker(kind, config, **popen):
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), kind, json.dumps(config)],
        cwd=str(HERE),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ------------------------------------------------------ the command mix
#
# Every command returns the events it must have written, as
# (originator_id hex, topic, canonical fields); the tests compare these,
# as a multiset, with the log.


def expected(oid, topic, **fields):
    return (uuid.UUID(str(oid)).hex, P + topic, canon(fields))


def do_command(tr, rnd, token, workflows, tasks, job_base):
    """One random command on the shared aggregates. Returns (name, events,
    new workflow or None, new task or None)."""
    r = rnd.random()
    if r < 0.06 or not workflows:
        name, desc, user, group = f"wf-{token}", f"desc {token} ü", rnd.randint(0, 5), rnd.randint(0, 5)
        wf = tr.initiate_workflow(name, desc, user, group)
        return "initiate_workflow", [
            expected(wf, "WorkflowRun.WorkflowInitiated", name=name, description=desc, user=user, group=group)
        ], wf, None
    wf = rnd.choice(workflows)
    if r < 0.16 or not tasks:
        tname = rnd.choice(TASK_NAMES)
        version = rnd.choice(["1.0", None, "2.1"])
        inp, params = {"token": token, "ids": [1, 2]}, {"n": rnd.randint(0, 9), "gpu": True}
        t = tr.add_task_to_workflow(wf, tname, version, inp, params)
        return "add_task_to_workflow", [
            expected(t, "Task.TaskCreated", workflow_id=uuid_tag(wf), task_name=tname, task_version=version,
                     input_data=inp, params=params),
            expected(wf, "WorkflowRun.TaskAdded", task_id=uuid_tag(t)),
        ], None, t
    if r < 0.20:
        op = "start_workflow" if r < 0.18 else "complete_workflow" if r < 0.19 else "fail_workflow"
        if op == "start_workflow":
            tr.start_workflow(wf)
            return op, [expected(wf, "WorkflowRun.WorkflowStarted")], None, None
        if op == "complete_workflow":
            tr.complete_workflow(wf)
            return op, [expected(wf, "WorkflowRun.WorkflowCompleted")], None, None
        msg = f"failed {token}"
        tr.fail_workflow(wf, msg)
        return op, [expected(wf, "WorkflowRun.WorkflowFailed", error_message=msg)], None, None
    t = rnd.choice(tasks)
    if r < 0.40:
        status = rnd.choice(STATUSES)
        tr.update_task_status(t, status)
        return "update_task_status", [expected(t, "Task.StatusUpdated", status=status)], None, None
    if r < 0.58:
        progress = rnd.choice([f"{rnd.randint(0, 100)}%", "43.5%", None])
        tr.update_task_progress(t, progress)
        return "update_task_progress", [expected(t, "Task.ProgressUpdated", progress=progress)], None, None
    if r < 0.72:
        job = job_base + rnd.randint(0, 9_999)
        job = rnd.choice([job, str(job), f"{job}_{rnd.randint(1, 9)}"]) if rnd.random() < 0.3 else job
        tr.add_job_id(t, job)
        return "add_job_id", [expected(t, "Task.JobIdAdded", job_id=job)], None, None
    if r < 0.78:
        tr.start_task(t)
        return "start_task", [expected(t, "Task.TaskStarted")], None, None
    if r < 0.84:
        res = {"command": f"sbatch {token}", "env": {"A": "1"}, "stdout": "ok\n", "stderr": ""}
        tr.add_result(t, res)
        return "add_result", [expected(t, "Task.ResultAdded", result=res)], None, None
    if r < 0.92:
        msg = f"done {token}"
        tr.complete_task(t, msg)
        return "complete_task", [expected(t, "Task.TaskCompleted", result=msg)], None, None
    msg = rnd.choice([f"error {token}", "OOM", None])
    tr.fail_task(t, msg)
    return "fail_task", [expected(t, "Task.TaskFailed", error_message=msg)], None, None


def setup_shared(url, n_workflows=2, tasks_per_workflow=2):
    """The aggregates every writer shares; returns (workflows, tasks, events)."""
    tr = WorkflowTracker(url)
    workflows, tasks, events = [], [], []
    for w in range(n_workflows):
        wf = tr.initiate_workflow(f"shared {w}", "shared", 3, 7)
        events.append(expected(wf, "WorkflowRun.WorkflowInitiated", name=f"shared {w}", description="shared",
                               user=3, group=7))
        workflows.append(wf)
        for i in range(tasks_per_workflow):
            tname = TASK_NAMES[(w * tasks_per_workflow + i) % len(TASK_NAMES)]
            t = tr.add_task_to_workflow(wf, tname, "1.0", {}, {})
            events.append(expected(t, "Task.TaskCreated", workflow_id=uuid_tag(wf), task_name=tname,
                                   task_version="1.0", input_data={}, params={}))
            events.append(expected(wf, "WorkflowRun.TaskAdded", task_id=uuid_tag(t)))
            tasks.append(t)
    return workflows, tasks, events


# ================================================================ workers


class _Counting(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.retries = 0
        self.repeated = 0

    def emit(self, record):
        msg = record.getMessage()
        if "version conflict" in msg:
            self.retries += 1
            if "retry 1/" not in msg:
                self.repeated += 1


def worker_concurrency(cfg):
    """K x T writers: waits for the go file, runs its commands, prints a JSON
    report of what succeeded (with the events each wrote), what failed, and
    how many version conflicts were retried."""
    logging.getLogger("biomero_rs").setLevel(logging.ERROR)
    counting = _Counting()
    logging.getLogger("biomero.eventsourcing").setLevel(logging.DEBUG)
    logging.getLogger("biomero.eventsourcing").addHandler(counting)
    logging.getLogger("biomero.eventsourcing").propagate = False
    biomero_rs.reset_logging_cache()
    url, k = cfg["url"], cfg["k"]
    workflows = [uuid.UUID(w) for w in cfg["workflows"]]
    tasks = [uuid.UUID(t) for t in cfg["tasks"]]
    views = cfg.get("views")
    report = {"events": [], "commands": collections.Counter(), "errors": []}
    lock = threading.Lock()

    def thread(th):
        rnd = random.Random(cfg["seed"] * 1000 + th)
        try:
            tr = WorkflowTracker(url) if views is None else WorkflowTracker(url, views=views)
        except Exception as e:  # noqa: BLE001 - reported to the parent
            with lock:
                report["errors"].append(f"open: {type(e).__name__}: {e}")
            return
        my_workflows, my_tasks = list(workflows), list(tasks)
        for i in range(cfg["commands"]):
            token = f"p{k}t{th}c{i}"
            try:
                name, events, new_wf, new_task = do_command(
                    tr, rnd, token, my_workflows, my_tasks, job_base=1_000_000 + k * 100_000 + th * 10_000
                )
            except Exception as e:  # noqa: BLE001 - reported to the parent
                with lock:
                    report["errors"].append(f"{token}: {type(e).__name__}: {e}")
                continue
            if new_wf:
                my_workflows.append(new_wf)
            if new_task:
                my_tasks.append(new_task)
            with lock:
                report["events"].extend(events)
                report["commands"][name] += 1

    Path(cfg["ready"]).touch()
    deadline = time.monotonic() + 120
    while not os.path.exists(cfg["go"]) and time.monotonic() < deadline:
        time.sleep(0.002)
    threads = [threading.Thread(target=thread, args=(th,)) for th in range(cfg["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report["retries"] = counting.retries
    report["repeated_retries"] = counting.repeated
    print(json.dumps(report))


def worker_crash(cfg):
    """Writes until killed: random commands from two threads on a few shared
    workflows and tasks, and now and then its own new ones. With
    ``rebuild``, a third thread rebuilds the views in a loop meanwhile."""
    logging.getLogger("biomero_rs").setLevel(logging.ERROR)
    biomero_rs.reset_logging_cache()
    url = cfg["url"]
    workflows = [uuid.UUID(w) for w in cfg["workflows"]]
    tasks = [uuid.UUID(t) for t in cfg["tasks"]]
    started = threading.Event()

    def writer(th):
        rnd = random.Random(cfg["seed"] * 10 + th)
        tr = WorkflowTracker(url)
        my_workflows, my_tasks = list(workflows), list(tasks)
        i = 0
        while True:
            i += 1
            _, _, new_wf, new_task = do_command(tr, rnd, f"s{cfg['seed']}t{th}c{i}", my_workflows, my_tasks,
                                                job_base=2_000_000 + th * 10_000)
            if new_wf:
                my_workflows.append(new_wf)
            if new_task:
                my_tasks.append(new_task)
            started.set()

    def rebuilder():
        while True:
            biomero_rs.rebuild_views(url)

    for th in range(2):
        threading.Thread(target=writer, args=(th,), daemon=True).start()
    started.wait(60)
    if cfg.get("rebuild"):
        threading.Thread(target=rebuilder, daemon=True).start()
    Path(cfg["ready"]).touch()
    time.sleep(60)  # killed long before


# =============================================================== concurrency


@pytest.mark.parametrize("views_mode", ["all", "mixed"])
def test_concurrent_processes_and_threads_on_shared_aggregates(db, tmp_path, views_mode):
    """K processes x T threads issue interleaved commands on the same workflows
    and tasks. Nothing is lost or duplicated, versions are contiguous,
    notification ids increase, no command fails (conflicts are retried inside;
    SQLite waits instead of "database is locked"), and the views equal a
    rebuild. In "mixed" mode one process writes with only two of the views, so
    the others must catch up on its events before applying their own."""
    workflows, tasks, setup_events = setup_shared(db.url)
    ready = [tmp_path / f"ready-{k}" for k in range(PROCS)]
    go = tmp_path / "go"
    procs = []
    for k in range(PROCS):
        cfg = {
            "url": db.url, "k": k, "threads": THREADS, "commands": COMMANDS, "seed": 1000 + k,
            "workflows": [str(w) for w in workflows], "tasks": [str(t) for t in tasks],
            "ready": str(ready[k]), "go": str(go),
            "views": ["job_accounting", "workflow_progress"] if views_mode == "mixed" and k == 1 else None,
        }
        procs.append(run_worker("concurrency", cfg))
    try:
        wait_for(lambda: all(r.exists() for r in ready) or any(p.poll() is not None for p in procs), 120,
                 "the writer processes to start")
        go.touch()
        reports = []
        for k, p in enumerate(procs):
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, f"process {k} exited {p.returncode}:\n{err[-3000:]}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    errors = [e for r in reports for e in r["errors"]]
    assert not [e for e in errors if "locked" in e.lower()], errors
    assert not errors, f"{len(errors)} commands failed:\n" + "\n".join(errors[:20])
    commands = sum((collections.Counter(r["commands"]) for r in reports), collections.Counter())
    assert sum(commands.values()) == PROCS * THREADS * COMMANDS, commands
    retries = sum(r["retries"] for r in reports)
    print(f"{db.backend}/{views_mode}: {dict(commands)}; {retries} version conflicts retried")
    # A retry queues on the log's lock before it reloads, so it cannot lose again.
    assert sum(r["repeated_retries"] for r in reports) == 0

    # No lost or duplicated events: the log is exactly what the successful
    # commands wrote, as a multiset.
    log = read_log(db)
    want = collections.Counter(setup_events)
    for r in reports:
        want.update(tuple(e) for e in r["events"])
    got = collections.Counter((e.oid.hex, e.topic, canon(e.fields())) for e in log)
    lost, extra = want - got, got - want
    assert not lost and not extra, (
        f"{sum(lost.values())} events lost, {sum(extra.values())} unexpected:\n"
        f"lost: {list(lost)[:5]}\nextra: {list(extra)[:5]}"
    )
    check_log(log)

    # The notification log through the API: ids strictly increasing, in pages.
    tr = WorkflowTracker(db.url, views=[])
    ids, start = [], 1
    while True:
        page = tr.notification_log.select(start, 97)
        if not page:
            break
        ids += [n.id for n in page]
        start = page[-1].id + 1
    assert ids == [e.id for e in log]
    assert all(b > a for a, b in zip(ids, ids[1:]))
    # Aggregates load at the version of their last event.
    last = {}
    for e in log:
        last[e.oid] = e.version
    for oid in workflows + tasks:
        assert tr.repository.get(oid).version == last[oid]

    if views_mode == "mixed":
        biomero_rs.catch_up(db.url)
    assert_no_view_lag(db.url)
    rebuilt = assert_views_equal_rebuild(db.url)
    assert len(rebuilt["biomero_task_execution"]) == sum(1 for e in log if e.topic == TASK_CREATED)


def test_hot_aggregate_never_runs_out_of_retries(db, caplog):
    """Twelve threads update one task at once: no ConcurrencyError, no lost
    update, and no command needs a second retry."""
    caplog.set_level(logging.DEBUG, logger="biomero.eventsourcing")
    biomero_rs.reset_logging_cache()
    try:
        tr = WorkflowTracker(db.url)
        wf = tr.initiate_workflow("hot", "d", 1, 2)
        t = tr.add_task_to_workflow(wf, "cellpose", "1", {}, {})
        tr.add_job_id(t, 31337)
        n_threads, per_thread = (24, 40) if STRESS else (12, 12)
        errors = []

        def work(k):
            own = WorkflowTracker(db.url)
            for i in range(per_thread):
                try:
                    if i % 2:
                        own.update_task_status(t, f"S{k}-{i}")
                    else:
                        own.update_task_progress(t, f"{(k + i) % 100}%")
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(f"{type(e).__name__}: {e}")

        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(300)
        messages = [r.getMessage() for r in caplog.records if "version conflict" in r.getMessage()]
    finally:
        caplog.set_level(logging.WARNING, logger="biomero.eventsourcing")
        biomero_rs.reset_logging_cache()
    assert not errors, errors[:5]
    assert tr.repository.get(t).version == 1 + n_threads * per_thread
    assert [m for m in messages if "retry 1/" not in m] == []
    check_log(read_log(db))
    assert_no_view_lag(db.url)
    assert_views_equal_rebuild(db.url)


@pytest.mark.skipif("sqlite" not in BACKENDS, reason="SQLite backend not selected")
def test_sqlite_waits_for_a_held_write_lock_instead_of_failing(tmp_path):
    """Another process holds SQLite's write lock for 2 s (as a long Python
    BIOMERO transaction would): commands and rebuilds wait for it (busy
    timeout), none fails with "database is locked"."""
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    tr = WorkflowTracker(url)
    wf = tr.initiate_workflow("w", "d", 1, 2)
    t = tr.add_task_to_workflow(wf, "t", "1", {}, {})
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\n"
         "time.sleep(2)\n"
         "c.execute('COMMIT')\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        results = []

        def command(fn):
            start = time.monotonic()
            try:
                fn()
                results.append(("ok", time.monotonic() - start))
            except Exception as e:  # noqa: BLE001 - reported below
                results.append((f"{type(e).__name__}: {e}", time.monotonic() - start))

        threads = [
            threading.Thread(target=command, args=(lambda: tr.update_task_status(t, "RUNNING"),)),
            threading.Thread(target=command, args=(lambda: WorkflowTracker(url).initiate_workflow("x", "d", 1, 2),)),
            threading.Thread(target=command, args=(lambda: biomero_rs.rebuild_views(url),)),
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        holder.wait(30)
        holder.stdout.close()
    assert [r for r, _ in results] == ["ok"] * 3, results
    assert max(elapsed for _, elapsed in results) > 1.0, results  # they did wait for the lock
    assert tr.repository.get(t).status == "RUNNING"


# ==================================================================== crash


def test_sigkill_at_random_points_leaves_whole_commands(db, tmp_path):
    """A writer process (two writing threads; every third round also a thread
    rebuilding the views) is killed with SIGKILL at a random moment, many
    times. After each kill the log holds whole commands only and the views
    equal a rebuild."""
    workflows, tasks, _ = setup_shared(db.url, n_workflows=2, tasks_per_workflow=2)
    rnd = random.Random(7)
    killed_with_events = 0
    for round_ in range(KILLS):
        rebuild = round_ % 3 == 2
        ready = tmp_path / f"ready-{round_}"
        cfg = {"url": db.url, "seed": round_, "workflows": [str(w) for w in workflows],
               "tasks": [str(t) for t in tasks], "ready": str(ready), "rebuild": rebuild}
        before = event_count(db)
        p = run_worker("crash", cfg)
        try:
            wait_for(lambda: ready.exists() or p.poll() is not None, 60, "the writer to start")
            assert p.poll() is None, f"writer died by itself:\n{p.stderr.read()[-3000:]}"
            time.sleep(rnd.uniform(0.0, 0.4))
            os.kill(p.pid, signal.SIGKILL)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        p.stdout.close()
        p.stderr.close()
        assert p.returncode == -signal.SIGKILL
        if event_count(db) > before:
            killed_with_events += 1
        check_log(read_log(db))
        if rebuild:
            # An interrupted rebuild resumes with a catch-up (what every
            # tracker does when it opens).
            biomero_rs.catch_up(db.url)
        else:
            # Events and view rows commit together: no view is behind.
            assert_no_view_lag(db.url)
        assert_views_equal_rebuild(db.url)
    assert killed_with_events >= KILLS // 2, "the writer was mostly killed before writing anything"
    # The store is still fully usable.
    tr = WorkflowTracker(db.url)
    tr.update_task_status(tasks[0], "AFTER")
    assert tr.repository.get(tasks[0]).status == "AFTER"


@pytest.mark.skipif("sqlite" not in BACKENDS, reason="SQLite backend not selected")
def test_python_sqlite3_in_the_same_process_does_not_lose_biomero_rs_writes(tmp_path):
    """BIOMERO code that reads the same SQLite file with SQLAlchemy/sqlite3 in a
    process that also writes with biomero_rs (while other processes write)."""
    import sqlite3

    path = tmp_path / "shared.db"
    url = f"sqlite:///{path}"
    tr = WorkflowTracker(url)
    wf = tr.initiate_workflow("w", "d", 1, 2)
    t = tr.add_task_to_workflow(wf, "t", "1", {}, {})
    want = 3
    other = (f"import biomero_rs\ntr = biomero_rs.WorkflowTracker({url!r})\n"
             f"for i in range(10):\n    tr.update_task_status({str(t)!r}, f'other {{i}}')\n")
    for round_ in range(3):
        subprocess.run([sys.executable, "-c", other], check=True, timeout=120)
        want += 10
        conn = sqlite3.connect(str(path))
        conn.execute("SELECT COUNT(*) FROM workflowtracker_events").fetchone()
        conn.close()
        tr.update_task_status(t, f"this process {round_}")
        want += 1
    count = (f"import sqlite3; print(sqlite3.connect({str(path)!r})"
             f".execute('SELECT COUNT(*) FROM workflowtracker_events').fetchone()[0])")
    out = subprocess.run([sys.executable, "-c", count], capture_output=True, text=True, check=True, timeout=60)
    assert int(out.stdout) == want, "committed events were lost"


# ========================================================= database faults


def _cluster():
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return versions[-1] if versions else None


def _pg_ctl(action):
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _cluster(), "main", action],
        capture_output=True, text=True, timeout=60,
    )


def _pg_is_up():
    try:
        _pg_admin("SELECT 1")
        return True
    except Exception:  # noqa: BLE001
        return False


def _ensure_pg_running():
    if not _pg_is_up():
        _pg_ctl("start")
    wait_for(_pg_is_up, 60, "the Postgres server to accept connections again")


@pytest.mark.skipif("postgres" not in BACKENDS, reason="Postgres backend not selected")
@pytest.mark.skipif(_cluster() is None, reason="no local Postgres cluster to restart")
def test_postgres_restart_while_writers_run(tmp_path):
    """The server stops for ~2 s and comes back while three threads write.
    During the outage commands fail with DatabaseError (nothing else); after
    it the same tracker works again without restarting Python; every command
    that returned has its event in the log; no command's event is there twice."""
    d = Database("postgres", tmp_path)
    # A short connect timeout bounds how long a command waits during the outage.
    url = d.url + "?connect_timeout=1"
    try:
        tracker = WorkflowTracker(url)
        wf = tracker.initiate_workflow("before", "outage", 1, 2)
        tasks = [tracker.add_task_to_workflow(wf, f"t{i}", "1", {}, {}) for i in range(3)]
        views_before = WorkflowAnalytics(url)
        ok, failed = [], []
        lock = threading.Lock()
        stop = threading.Event()
        phase = {"name": "before"}

        def writer(n):
            i = 0
            while not stop.is_set():
                i += 1
                token = f"w{n}-{i}"
                what = "wf" if i % 4 == 0 else "status"
                try:
                    if what == "wf":
                        oid = tracker.initiate_workflow(token, "outage", 1, 2)
                    else:
                        oid = tasks[n]
                        tracker.update_task_status(oid, token)
                    with lock:
                        ok.append((what, oid, token, phase["name"]))
                except Exception as e:  # noqa: BLE001 - checked below
                    with lock:
                        failed.append((token, phase["name"], e))
                time.sleep(0.003)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            phase["name"] = "outage"
            stop_res = _pg_ctl("stop")
            assert stop_res.returncode == 0, stop_res.stderr
            time.sleep(2.5)
            start_res = _pg_ctl("start")
            assert start_res.returncode == 0, start_res.stderr
            _ensure_pg_running()
            phase["name"] = "after"
            wait_for(lambda: sum(1 for o in ok if o[3] == "after") >= 15, 60,
                     "commands to succeed after the restart")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            _ensure_pg_running()

        phases = collections.Counter(ph for *_, ph in ok)
        print(f"succeeded by phase: {dict(phases)}; failed: {len(failed)}; e.g. {failed[0][2] if failed else None}")
        assert failed, "no command failed although the server was down"
        wrong = [(tok, ph, f"{type(e).__name__}: {e}") for tok, ph, e in failed if not isinstance(e, DatabaseError)]
        assert not wrong, f"failures other than DatabaseError: {wrong[:5]}"
        assert all(ph != "before" for _, ph, _ in failed), [f for f in failed if f[1] == "before"][:3]
        assert any(ph == "after" for *_, ph in ok)
        # The same objects work without restarting the Python process.
        tracker.update_task_status(tasks[0], "FINAL")
        assert tracker.repository.get(tasks[0]).status == "FINAL"
        assert views_before.get_task_counts() == {("t0", "1"): 1, ("t1", "1"): 1, ("t2", "1"): 1}

        # Nothing committed is lost; nothing is there twice.
        log = read_log(d)
        check_log(log)
        statuses = collections.Counter(
            (e.oid, e.state["status"]) for e in log if e.topic == P + "Task.StatusUpdated"
        )
        names = collections.Counter(e.state["name"] for e in log if e.topic == WORKFLOW_INITIATED)
        for what, oid, token, _ in ok:
            if what == "wf":
                assert names[token] == 1, f"initiate_workflow {token} returned {oid} but is not in the log"
                assert any(e.oid == oid for e in log)
            else:
                assert statuses[(oid, token)] == 1, f"update_task_status {token} returned but is not in the log"
        for token, _, _ in failed:
            assert names[token] + sum(n for (o, s), n in statuses.items() if s == token) <= 1, token
        assert_no_view_lag(url)
        assert_views_equal_rebuild(url)
    finally:
        _ensure_pg_running()
        d.drop()


# ================================================================ bad input

SECRET = "pw-" + uuid.uuid4().hex[:10]


class Raises:
    def __init__(self, exc, pattern=None, forbidden=()):
        self.exc, self.pattern, self.forbidden = exc, pattern, forbidden

    def __repr__(self):
        return f"Raises({self.exc.__name__}, {self.pattern!r})"


class Accept:
    """A documented accept; ``check(ctx, result)`` verifies what was kept."""

    def __init__(self, check=None, writes=True):
        self.check, self.writes = check, writes

    def __repr__(self):
        return "Accept()"


class Ctx:
    def __init__(self, db):
        self.db = db
        self.url = db.url
        self.backend = db.backend
        self.tr = WorkflowTracker(db.url)
        self.wf = self.tr.initiate_workflow("bad-input wf", "d", 1, 2)
        self.task = self.tr.add_task_to_workflow(self.wf, "cellpose", "1.0", {}, {})
        self.tr.add_job_id(self.task, 4242)

    def get(self, oid):
        return self.tr.repository.get(oid)

    @property
    def db_dir(self):
        return Path(self.url[len("sqlite:///"):]).parent if self.backend == "sqlite" else Path("/tmp")

    def not_a_database(self):
        path = self.db_dir / "not-a-database.db"
        path.write_text("this is not an SQLite database\n" * 200)
        return path

    def views_analytics(self):
        return WorkflowAnalytics(self.url)

    def log_position(self):
        return log_position(self.db)


BIG = 10 * 1024 * 1024
BIG_TEXT = "x" * (BIG - 3) + "end"
SQL_META = "'; DROP TABLE workflowtracker_events; --"
NAN, INF = float("nan"), float("inf")
DEEP = {}
_d = DEEP
for _ in range(300):
    _d["k"] = {}
    _d = _d["k"]


def _check_big_description(ctx, wf):
    assert ctx.get(wf).description == BIG_TEXT


def _check_big_input(ctx, t):
    assert ctx.get(t).input_data == {"blob": BIG_TEXT}


def _check_big_error(ctx, _):
    row = ctx.views_analytics().get_task_execution(ctx.task)
    assert row.error_type == BIG_TEXT


def _check_non_finite(ctx, t):
    got = ctx.get(t).input_data
    assert math.isnan(got["nan"]) and got["inf"] == INF and got["ninf"] == -INF


def _check_big_ints(ctx, t):
    assert ctx.get(t).input_data == {"big": 2**70, "neg": -(2**64), "i64": 2**63 - 1}


def _check_sql_meta_name(ctx, wf):
    assert ctx.get(wf).name == SQL_META
    assert WorkflowProgress(ctx.url).get_workflow(wf).name == SQL_META


def _check_job_array_id(ctx, _):
    assert ctx.get(ctx.task).job_ids[-1] == "12345_7"
    assert JobAccounting(ctx.url).get_task_id("12345_7") is None


def _check_job_beyond_32(ctx, _):
    assert ctx.get(ctx.task).job_ids[-1] == 2**40  # an int, as the reference stores it
    assert JobAccounting(ctx.url).get_task_id(2**40) is None


def _check_job_beyond_64(ctx, _):
    assert ctx.get(ctx.task).job_ids[-1] == 2**70


def _check_empty_name(ctx, wf):
    assert ctx.get(wf).name == ""
    assert WorkflowProgress(ctx.url).get_workflow(wf).name == ""


def _check_nul_kept(ctx, wf):
    assert ctx.get(wf).description == "a\x00b"


def _check_sql_meta_status(ctx, _):
    assert ctx.get(ctx.task).status == SQL_META
    assert ctx.views_analytics().get_task_execution(ctx.task).status == SQL_META


def _check_result(ctx, _):
    assert ctx.get(ctx.task).results[-1] == {"command": SQL_META, "env": {"ü": "\x00"}, "stdout": "\u2028",
                                             "stderr": ""}


def _check_unicode_names(ctx, wf):
    assert ctx.get(wf).name == "漢字 🎉 \u2028 é"


def _check_urn_uuid(ctx, _):
    assert ctx.get(ctx.wf).version >= 1


def _is_none(ctx, result):
    assert result is None


def _is_empty(ctx, result):
    assert not result


def _pg_url(db, user_part):
    rest = db.url.split("://", 1)[1].split("@", 1)[-1]
    return f"postgresql://{user_part}@{rest}"


# (id, call(ctx), expectation). A TypeError/ValueError message must name the
# argument (the pattern); a rejected call must write nothing.
BAD_INPUT = [
    # --- WorkflowTracker constructor
    ("tracker-url-int", lambda c: WorkflowTracker(5), Raises(TypeError, r"\burl\b")),
    ("tracker-url-bytes", lambda c: WorkflowTracker(b"sqlite://"), Raises(TypeError, r"\burl\b")),
    ("tracker-url-empty", lambda c: WorkflowTracker(""), Raises(ValueError, r"\burl\b")),
    ("tracker-url-mysql-with-password", lambda c: WorkflowTracker(f"mysql://root:{SECRET}@localhost/db"),
     Raises(ValueError, r"mysql", forbidden=(SECRET,))),
    ("tracker-url-typo-scheme", lambda c: WorkflowTracker(f"postgresq://u:{SECRET}@localhost/db"),
     Raises(ValueError, r"postgresq", forbidden=(SECRET,))),
    ("tracker-url-bad-port", lambda c: WorkflowTracker(f"postgresql://u:{SECRET}@localhost:notaport/db"),
     Raises(ValueError, r"port", forbidden=(SECRET,))),
    ("tracker-url-sslmode-require", lambda c: WorkflowTracker(f"postgresql://u:{SECRET}@localhost/db?sslmode=require"),
     Raises(ValueError, r"sslmode", forbidden=(SECRET,))),
    ("tracker-url-unreachable-with-password",
     lambda c: WorkflowTracker(f"postgresql://u:{SECRET}@127.0.0.1:1/db?connect_timeout=1"),
     Raises(DatabaseError, r"postgres", forbidden=(SECRET,))),
    ("tracker-url-nul", lambda c: WorkflowTracker("sqlite:///a\x00b.db"), Raises(ValueError, r"\burl\b")),
    ("tracker-url-sqlite-folder", lambda c: WorkflowTracker(f"sqlite:///{c.db_dir}"), Raises(DatabaseError, r"sqlite")),
    ("tracker-url-sqlite-not-a-database", lambda c: WorkflowTracker(f"sqlite:///{c.not_a_database()}"),
     Raises(DatabaseError, r"not a database")),
    ("tracker-url-surrogate", lambda c: WorkflowTracker("sqlite:///\ud800.db"), Raises(ValueError, r"\burl\b")),
    ("tracker-views-str", lambda c: WorkflowTracker(c.url, views="job_accounting"), Raises(TypeError, r"views")),
    ("tracker-views-unknown", lambda c: WorkflowTracker(c.url, views=["job_accounting", "nope"]),
     Raises(ValueError, r"views.*nope")),
    ("tracker-views-int-item", lambda c: WorkflowTracker(c.url, views=[1]), Raises(TypeError, r"views")),
    ("tracker-views-not-iterable", lambda c: WorkflowTracker(c.url, views=5), Raises(TypeError, r"views")),
    ("tracker-extra-positional", lambda c: WorkflowTracker(c.url, ["job_accounting"]), Raises(TypeError)),
    # --- initiate_workflow
    ("initiate-name-int", lambda c: c.tr.initiate_workflow(123, "d", 1, 2), Raises(TypeError, r"\bname\b")),
    ("initiate-name-none", lambda c: c.tr.initiate_workflow(None, "d", 1, 2), Raises(TypeError, r"\bname\b")),
    ("initiate-name-empty", lambda c: c.tr.initiate_workflow("", "d", 1, 2), Accept(_check_empty_name)),
    ("initiate-name-surrogate", lambda c: c.tr.initiate_workflow("a\ud800", "d", 1, 2),
     Raises(ValueError, r"\bname\b.*surrogate")),
    ("initiate-name-sql-meta", lambda c: c.tr.initiate_workflow(SQL_META, "d", 1, 2), Accept(_check_sql_meta_name)),
    ("initiate-name-unicode", lambda c: c.tr.initiate_workflow("漢字 🎉 \u2028 é", "d", 1, 2),
     Accept(_check_unicode_names)),
    ("initiate-description-bytes", lambda c: c.tr.initiate_workflow("n", b"d", 1, 2),
     Raises(TypeError, r"\bdescription\b")),
    ("initiate-description-10MB", lambda c: c.tr.initiate_workflow("n", BIG_TEXT, 1, 2),
     Accept(_check_big_description)),
    ("initiate-description-nul", lambda c: c.tr.initiate_workflow("n", "a\x00b", 1, 2), Accept(_check_nul_kept)),
    ("initiate-description-lone-low-surrogate", lambda c: c.tr.initiate_workflow("n", "\udc00", 1, 2),
     Raises(ValueError, r"\bdescription\b")),
    ("initiate-user-str", lambda c: c.tr.initiate_workflow("n", "d", "3", 2), Raises(TypeError, r"\buser\b")),
    ("initiate-user-bool", lambda c: c.tr.initiate_workflow("n", "d", True, 2), Raises(TypeError, r"\buser\b")),
    ("initiate-user-none", lambda c: c.tr.initiate_workflow("n", "d", None, 2), Raises(TypeError, r"\buser\b")),
    ("initiate-user-float", lambda c: c.tr.initiate_workflow("n", "d", 1.0, 2), Raises(TypeError, r"\buser\b")),
    ("initiate-user-nan", lambda c: c.tr.initiate_workflow("n", "d", NAN, 2), Raises(TypeError, r"\buser\b")),
    ("initiate-group-inf", lambda c: c.tr.initiate_workflow("n", "d", 1, INF), Raises(TypeError, r"\bgroup\b")),
    ("initiate-user-beyond-32-bits", lambda c: c.tr.initiate_workflow("n", "d", 2**31, 2),
     Raises(ValueError, r"\buser\b")),
    ("initiate-user-below-32-bits", lambda c: c.tr.initiate_workflow("n", "d", -(2**31) - 1, 2),
     Raises(ValueError, r"\buser\b")),
    ("initiate-group-beyond-64-bits", lambda c: c.tr.initiate_workflow("n", "d", 1, 2**64),
     Raises(ValueError, r"\bgroup\b")),
    ("initiate-user-beyond-128-bits", lambda c: c.tr.initiate_workflow("n", "d", -(2**130), 2),
     Raises(ValueError, r"\buser\b")),
    ("initiate-missing-argument", lambda c: c.tr.initiate_workflow("n", "d", 1), Raises(TypeError, r"group")),
    ("initiate-unknown-keyword", lambda c: c.tr.initiate_workflow("n", "d", 1, 2, colour=3), Raises(TypeError)),
    # --- add_task_to_workflow
    ("add-task-workflow-id-malformed", lambda c: c.tr.add_task_to_workflow("not-a-uuid", "t", "1", {}, {}),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-short-hex", lambda c: c.tr.add_task_to_workflow(c.wf.hex[:-1], "t", "1", {}, {}),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-empty", lambda c: c.tr.add_task_to_workflow("", "t", "1", {}, {}),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-nul", lambda c: c.tr.add_task_to_workflow(str(c.wf) + "\x00", "t", "1", {}, {}),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-surrogate", lambda c: c.tr.add_task_to_workflow("\ud800" * 32, "t", "1", {}, {}),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-int", lambda c: c.tr.add_task_to_workflow(c.wf.int, "t", "1", {}, {}),
     Raises(TypeError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-none", lambda c: c.tr.add_task_to_workflow(None, "t", "1", {}, {}),
     Raises(TypeError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-nil-uuid", lambda c: c.tr.add_task_to_workflow(uuid.UUID(int=0), "t", "1", {}, {}),
     Raises(AggregateNotFoundError, r"00000000-0000-0000-0000-000000000000")),
    ("add-task-workflow-id-unknown", lambda c: c.tr.add_task_to_workflow(uuid.uuid4(), "t", "1", {}, {}),
     Raises(AggregateNotFoundError)),
    ("add-task-workflow-id-is-a-task", lambda c: c.tr.add_task_to_workflow(c.task, "t", "1", {}, {}),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("add-task-workflow-id-urn-form", lambda c: c.tr.add_task_to_workflow(c.wf.urn, "t", "1", {}, {}),
     Accept(_check_urn_uuid)),
    ("add-task-name-none", lambda c: c.tr.add_task_to_workflow(c.wf, None, "1", {}, {}),
     Raises(TypeError, r"\btask_name\b")),
    ("add-task-version-int", lambda c: c.tr.add_task_to_workflow(c.wf, "t", 1, {}, {}),
     Raises(TypeError, r"\btask_version\b")),
    ("add-task-input-set", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {"s": {1, 2}}, {}),
     Raises(TypeError, r"\binput_data\b")),
    ("add-task-input-int-key", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {1: "a"}, {}),
     Raises(TypeError, r"\binput_data\b")),
    ("add-task-input-surrogate-value", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {"k": "\udc00"}, {}),
     Raises(ValueError, r"\binput_data\b")),
    ("add-task-kwargs-surrogate-key", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {}, {"\ud800": 1}),
     Raises(ValueError, r"\bkwargs\b")),
    ("add-task-kwargs-object", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {}, {"o": object()}),
     Raises(TypeError, r"\bkwargs\b")),
    ("add-task-kwargs-too-deep", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {}, DEEP),
     Raises(ValueError, r"\bkwargs\b")),
    ("add-task-input-reserved-typed-shape",
     lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {"x": {"_type_": "uuid_hex", "_data_": "zz"}}, {}),
     Raises(ValueError, r"\binput_data\b")),
    ("add-task-input-nan-inf", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1",
                                                                   {"nan": NAN, "inf": INF, "ninf": -INF}, {}),
     Accept(_check_non_finite)),
    ("add-task-input-big-ints", lambda c: c.tr.add_task_to_workflow(
        c.wf, "t", "1", {"big": 2**70, "neg": -(2**64), "i64": 2**63 - 1}, {}), Accept(_check_big_ints)),
    ("add-task-input-10MB", lambda c: c.tr.add_task_to_workflow(c.wf, "t", "1", {"blob": BIG_TEXT}, {}),
     Accept(_check_big_input)),
    # --- task and workflow commands
    ("start-workflow-unknown", lambda c: c.tr.start_workflow(uuid.uuid4()), Raises(AggregateNotFoundError)),
    ("start-workflow-on-task", lambda c: c.tr.start_workflow(c.task), Raises(ValueError)),
    ("complete-workflow-malformed", lambda c: c.tr.complete_workflow("{" + "g" * 32 + "}"),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("fail-workflow-message-bytes", lambda c: c.tr.fail_workflow(c.wf, b"5"), Raises(TypeError, r"\berror_message\b")),
    ("start-task-nil-uuid", lambda c: c.tr.start_task(str(uuid.UUID(int=0))), Raises(AggregateNotFoundError)),
    ("start-task-on-workflow", lambda c: c.tr.start_task(c.wf), Raises(ValueError)),
    ("complete-task-message-set", lambda c: c.tr.complete_task(c.task, {"done"}), Raises(TypeError, r"\bmessage\b")),
    ("fail-task-message-10MB", lambda c: c.tr.fail_task(c.task, BIG_TEXT), Accept(_check_big_error)),
    ("add-job-id-array-id", lambda c: c.tr.add_job_id(c.task, "12345_7"), Accept(_check_job_array_id)),
    ("add-job-id-beyond-32-bits", lambda c: c.tr.add_job_id(c.task, 2**40), Accept(_check_job_beyond_32)),
    ("add-job-id-beyond-64-bits", lambda c: c.tr.add_job_id(c.task, 2**70), Accept(_check_job_beyond_64)),
    ("add-job-id-empty", lambda c: c.tr.add_job_id(c.task, ""), Raises(ValueError, r"\bslurm_job_id\b")),
    ("add-job-id-none", lambda c: c.tr.add_job_id(c.task, None), Raises(TypeError, r"\bslurm_job_id\b")),
    ("add-job-id-float", lambda c: c.tr.add_job_id(c.task, 12345.0), Raises(TypeError, r"\bslurm_job_id\b")),
    ("add-job-id-nan", lambda c: c.tr.add_job_id(c.task, NAN), Raises(TypeError, r"\bslurm_job_id\b")),
    ("add-job-id-bool", lambda c: c.tr.add_job_id(c.task, True), Raises(TypeError, r"\bslurm_job_id\b")),
    ("add-job-id-unknown-task", lambda c: c.tr.add_job_id(uuid.uuid4(), 1), Raises(AggregateNotFoundError)),
    ("add-result-str", lambda c: c.tr.add_result(c.task, "stdout"), Raises(TypeError, r"\bresult\b")),
    ("add-result-missing-key", lambda c: c.tr.add_result(c.task, {"command": "x", "env": {}}),
     Raises(ValueError, r"\bresult\b.*stdout")),
    ("add-result-sql-meta-and-nul", lambda c: c.tr.add_result(
        c.task, {"command": SQL_META, "env": {"ü": "\x00"}, "stdout": "\u2028", "stderr": ""}),
     Accept(_check_result)),
    ("update-status-none", lambda c: c.tr.update_task_status(c.task, None), Raises(TypeError, r"\bstatus\b")),
    ("update-status-int", lambda c: c.tr.update_task_status(c.task, 3), Raises(TypeError, r"\bstatus\b")),
    ("update-status-surrogate", lambda c: c.tr.update_task_status(c.task, "\ud834"),
     Raises(ValueError, r"\bstatus\b")),
    ("update-status-sql-meta", lambda c: c.tr.update_task_status(c.task, SQL_META), Accept(_check_sql_meta_status)),
    ("update-progress-nan", lambda c: c.tr.update_task_progress(c.task, NAN), Raises(TypeError, r"\bprogress\b")),
    ("update-progress-not-a-number", lambda c: c.tr.update_task_progress(c.task, "43.5%"), Accept()),
    ("update-status-task-id-bytes", lambda c: c.tr.update_task_status(c.task.bytes, "RUNNING"),
     Raises(TypeError, r"\btask_id\b")),
    # --- reading
    ("repository-get-malformed", lambda c: c.tr.repository.get("zz"), Raises(ValueError, r"\baggregate_id\b")),
    ("repository-get-nil", lambda c: c.tr.repository.get(uuid.UUID(int=0)), Raises(AggregateNotFoundError)),
    ("repository-get-none", lambda c: c.tr.repository.get(None), Raises(TypeError, r"\baggregate_id\b")),
    ("select-start-zero", lambda c: c.tr.notification_log.select(0, 10), Raises(ValueError, r"\bstart\b")),
    ("select-limit-negative", lambda c: c.tr.notification_log.select(1, -1), Raises(ValueError, r"\blimit\b")),
    ("select-limit-beyond-64-bits", lambda c: c.tr.notification_log.select(1, 2**64),
     Raises(ValueError, r"\blimit\b")),
    ("select-limit-inf", lambda c: c.tr.notification_log.select(1, INF), Raises(TypeError, r"\blimit\b")),
    ("select-start-str", lambda c: c.tr.notification_log.select("1", 10), Raises(TypeError, r"\bstart\b")),
    # --- views
    ("job-accounting-url-unsupported", lambda c: JobAccounting(f"oracle://u:{SECRET}@h/db"),
     Raises(ValueError, r"oracle", forbidden=(SECRET,))),
    ("job-progress-url-missing-folder", lambda c: JobProgress("sqlite:////no/such/folder/x.db"),
     Raises(ValueError, r"\burl\b")),
    ("workflow-progress-url-unreachable", lambda c: WorkflowProgress(
        f"postgresql://bio:{SECRET}@127.0.0.1:1/db?connect_timeout=1"),
     Raises(DatabaseError, r"postgres", forbidden=(SECRET,))),
    ("get-jobs-user-str", lambda c: JobAccounting(c.url).get_jobs(user="1"), Raises(TypeError, r"\buser\b")),
    ("get-jobs-group-beyond-64-bits", lambda c: JobAccounting(c.url).get_jobs(group=2**64),
     Raises(ValueError, r"\bgroup\b")),
    ("get-task-id-array-id", lambda c: JobAccounting(c.url).get_task_id("12345_7"), Accept(_is_none, writes=False)),
    ("get-task-id-none", lambda c: JobAccounting(c.url).get_task_id(None), Raises(TypeError, r"\bjob_id\b")),
    ("get-job-progress-beyond-32-bits", lambda c: JobProgress(c.url).get_job_progress(2**40),
     Accept(_is_none, writes=False)),
    ("get-job-progress-beyond-64-bits", lambda c: JobProgress(c.url).get_job_progress(2**64),
     Raises(ValueError, r"\bslurm_job_id\b")),
    ("get-workflow-malformed", lambda c: WorkflowProgress(c.url).get_workflow("x" * 32),
     Raises(ValueError, r"\bworkflow_id\b")),
    ("get-workflow-nil", lambda c: WorkflowProgress(c.url).get_workflow(uuid.UUID(int=0)),
     Accept(_is_none, writes=False)),
    ("list-workflows-user-float", lambda c: WorkflowProgress(c.url).list_workflows(user=1.5),
     Raises(TypeError, r"\buser\b")),
    ("task-usage-name-none", lambda c: WorkflowAnalytics(c.url).get_task_usage_over_time(None),
     Raises(TypeError, r"\btask_name\b")),
    ("task-usage-name-sql-meta", lambda c: WorkflowAnalytics(c.url).get_task_usage_over_time(SQL_META),
     Accept(_is_empty, writes=False)),
    ("task-counts-group-nan", lambda c: WorkflowAnalytics(c.url).get_task_counts(group=NAN),
     Raises(TypeError, r"\bgroup\b")),
    ("task-execution-unknown", lambda c: WorkflowAnalytics(c.url).get_task_execution(uuid.uuid4()),
     Accept(_is_none, writes=False)),
    # --- module functions
    ("rebuild-views-unknown-view", lambda c: biomero_rs.rebuild_views(c.url, views=["bogus"]),
     Raises(ValueError, r"views")),
    ("rebuild-views-progress-not-callable", lambda c: biomero_rs.rebuild_views(c.url, progress=5),
     Raises(TypeError, r"\bprogress\b")),
    ("rebuild-views-url-int", lambda c: biomero_rs.rebuild_views(5), Raises(TypeError, r"\burl\b")),
    ("catch-up-url-unsupported", lambda c: biomero_rs.catch_up(f"mssql://sa:{SECRET}@h/db"),
     Raises(ValueError, r"mssql", forbidden=(SECRET,))),
    ("catch-up-views-str", lambda c: biomero_rs.catch_up(c.url, views="job_progress"), Raises(TypeError, r"views")),
    ("status-url-empty", lambda c: biomero_rs.status(""), Raises(ValueError, r"\burl\b")),
    ("status-url-list", lambda c: biomero_rs.status([c.url]), Raises(TypeError, r"\burl\b")),
    ("run-migrations-url-no-scheme", lambda c: biomero_rs.run_migrations("biomero.db"),
     Raises(ValueError, r"\burl\b")),
    ("run-migrations-url-unreachable", lambda c: biomero_rs.run_migrations(
        f"postgresql+psycopg2://bio:{SECRET}@127.0.0.1:1/db?connect_timeout=1"),
     Raises(DatabaseError, r"postgres", forbidden=(SECRET,))),
]


def _nul_expectation(arg):
    """NUL characters in values the views copy into text columns: kept on
    SQLite; refused up front on Postgres, whose text columns cannot hold them."""

    def pick(ctx):
        if ctx.backend == "postgres":
            return Raises(ValueError, rf"\b{arg}\b.*NUL")
        return Accept()

    return pick


# Backend-dependent expectations.
BAD_INPUT += [
    ("initiate-name-nul", lambda c: c.tr.initiate_workflow("a\x00b", "d", 1, 2), _nul_expectation("name")),
    ("add-task-name-nul", lambda c: c.tr.add_task_to_workflow(c.wf, "t\x00", "1", {}, {}),
     _nul_expectation("task_name")),
    ("update-status-nul", lambda c: c.tr.update_task_status(c.task, "RUN\x00"), _nul_expectation("status")),
    ("update-progress-nul", lambda c: c.tr.update_task_progress(c.task, "5\x00%"), _nul_expectation("progress")),
    ("fail-task-message-nul", lambda c: c.tr.fail_task(c.task, "e\x00"), _nul_expectation("error_message")),
]

assert len(BAD_INPUT) >= 30


@pytest.fixture(scope="module", params=BACKENDS)
def bad_ctx(request, tmp_path_factory):
    """One database per backend shared by the bad-input cases."""
    d = Database(request.param, tmp_path_factory.mktemp(f"bad-{request.param}"))
    yield Ctx(d)
    d.drop()


def _all_text(exc):
    parts = []
    for e in traceback.TracebackException.from_exception(exc).format():
        parts.append(e)
    parts.append(repr(exc))
    parts.append(repr(getattr(exc, "args", ())))
    return "".join(parts)


# Cases that store 10 MB values run on a database of their own, so that the
# other cases' rebuild comparisons stay fast.
OWN_DATABASE = {"initiate-description-10MB", "add-task-input-10MB", "fail-task-message-10MB"}


@pytest.fixture
def case_ctx(request, bad_ctx, tmp_path):
    if request.node.callspec.params["case_id"] not in OWN_DATABASE:
        yield bad_ctx
        return
    d = Database(bad_ctx.backend, tmp_path)
    yield Ctx(d)
    d.drop()


@pytest.mark.parametrize("case_id, call, expect", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(case_ctx, monkeypatch, case_id, call, expect):
    ctx = case_ctx
    monkeypatch.delenv("SQLALCHEMY_URL", raising=False)
    monkeypatch.delenv("PERSISTENCE_MODULE", raising=False)
    if callable(expect) and not isinstance(expect, (Raises, Accept)):
        expect = expect(ctx)
    before = ctx.log_position()
    before_views = snapshot(ctx.url)
    if isinstance(expect, Raises):
        started = time.monotonic()
        with pytest.raises(expect.exc) as ei:
            call(ctx)
        elapsed = time.monotonic() - started
        # Bad input fails at once, never after a pool's connection wait.
        assert elapsed < 10, f"took {elapsed:.1f}s to fail"
        msg = str(ei.value)
        if expect.pattern:
            assert re.search(expect.pattern, msg), f"message does not match {expect.pattern!r}: {msg!r}"
        assert len(msg) < 2000, f"message of {len(msg)} characters"
        text = _all_text(ei.value)
        for secret in expect.forbidden:
            assert secret not in text, f"secret shown in: {text}"
        # A rejected call writes nothing: not to the log, not to the views
        # (so they still equal a rebuild, which the last test checks).
        assert ctx.log_position() == before
        assert snapshot(ctx.url) == before_views
        return
    result = call(ctx)
    if expect.check:
        expect.check(ctx, result)
    if not expect.writes:
        assert ctx.log_position() == before
        assert snapshot(ctx.url) == before_views
    else:
        check_log(read_log(ctx.db))
    # The store and views stay consistent.
    assert_no_view_lag(ctx.url)
    assert_views_equal_rebuild(ctx.url)
    # The tracker still works.
    ctx.tr.update_task_progress(ctx.task, "1%")


def test_bad_input_left_the_store_whole(bad_ctx):
    """After every bad-input case of this backend: whole commands, and views
    that equal a rebuild."""
    check_log(read_log(bad_ctx.db))
    assert_no_view_lag(bad_ctx.url)
    assert_views_equal_rebuild(bad_ctx.url)


@pytest.mark.skipif("postgres" not in BACKENDS, reason="Postgres backend not selected")
def test_event_with_nul_written_by_another_writer_does_not_stop_the_projectors(tmp_path):
    d = Database("postgres", tmp_path)
    try:
        tr = WorkflowTracker(d.url)
        wf = tr.initiate_workflow("w", "d", 1, 2)
        t = tr.add_task_to_workflow(wf, "t", "1", {}, {})
        tr.add_job_id(t, 77)
        # What biomero 2.8.3 stores for update_task_status(t, "RUN\0") (bytea, JSON-escaped).
        state = json.dumps({"timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"},
                            "status": "RUN\x00"}, separators=(",", ":"), ensure_ascii=False).encode()
        import psycopg2

        conn = psycopg2.connect(d.url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO workflowtracker_events (originator_id, originator_version, topic, state) "
                            "VALUES (%s, 2, %s, %s)", (str(t), P + "Task.StatusUpdated", state))
        finally:
            conn.close()
        tr.update_task_status(t, "RUNNING")
        assert_views_equal_rebuild(d.url)
    finally:
        d.drop()


# ============================================================ no passwords


@pytest.mark.parametrize("with_server", ["no-server", "server"])
def test_no_password_in_any_exception_or_log_record(caplog, monkeypatch, tmp_path, with_server):
    """Failing connects, bad URLs and working connections whose URL has a
    password: the password (plain or percent-encoded) never appears in an
    exception's text, repr, args, chained causes, or any log record at DEBUG
    on the root logger (biomero_rs and the Rust crates under it)."""
    secret = "Sx" + uuid.uuid4().hex[:12]
    encoded = f"p%40{secret}%3A"  # p@<secret>:
    plain = f"p@{secret}:"
    texts = []
    caplog.set_level(logging.DEBUG)
    biomero_rs.reset_logging_cache()

    def attempt(fn):
        try:
            r = fn()
            texts.append(repr(r))
            return r
        except Exception as e:  # noqa: BLE001 - all texts are checked below
            texts.append(_all_text(e))
            return None

    try:
        if with_server == "no-server":
            for url in [
                f"postgresql://bio:{secret}@127.0.0.1:1/biomero?connect_timeout=1",
                f"postgresql+psycopg2://bio:{encoded}@127.0.0.1:1/biomero?connect_timeout=1",
                f"postgres://bio@127.0.0.1:1/biomero?password={secret}&connect_timeout=1",
                f"postgresql://bio:{secret}@no-such-host.invalid/biomero?connect_timeout=1",
                f"mysql://root:{secret}@localhost/db",
                f"postgresql://u:{secret}@localhost:notaport/db",
                f"postgresql://u:{secret}@localhost:99999/db",
                f"postgresql://u:{secret}@[::1/db",
                f"postgresql://u:{secret}@localhost/db?sslmode=require",
                f"postgresql://u:{secret}@localhost/db?sslmode=bogus",
                f"postgresql://u:{secret}@localhost/db?unknown=1",
                f"postgresql://u:{secret}@localhost/db?connect_timeout=soon",
                f"sqlite://u:{secret}@/x.db",
                f"sqlite:///x.db?password={secret}",
            ]:
                attempt(lambda: WorkflowTracker(url))
                attempt(lambda: JobAccounting(url))
                attempt(lambda: biomero_rs.status(url))
                attempt(lambda: biomero_rs.rebuild_views(url))
            monkeypatch.setenv("SQLALCHEMY_URL", f"postgresql://bio:{secret}@127.0.0.1:1/biomero?connect_timeout=1")
            attempt(lambda: WorkflowTracker())
            attempt(lambda: biomero_rs.catch_up())
            attempt(lambda: biomero_rs.run_migrations())
        else:
            if "postgres" not in BACKENDS:
                pytest.skip("Postgres backend not selected")
            d = Database("postgres", tmp_path)
            try:
                # Trust auth ignores the password: the connection works.
                url = _pg_url(d, f"postgres:{encoded}")
                tr = attempt(lambda: WorkflowTracker(url))
                assert tr is not None, texts
                texts.append(repr(tr))
                wf = tr.initiate_workflow("w", "d", 1, 2)
                t = tr.add_task_to_workflow(wf, "cellpose", "1", {}, {})
                tr.add_job_id(t, 99)
                tr.update_task_status(t, "RUNNING")
                attempt(lambda: tr.start_task(uuid.uuid4()))
                attempt(lambda: tr.add_task_to_workflow(t, "x", "1", {}, {}))
                for cls in (JobAccounting, JobProgress, WorkflowProgress, WorkflowAnalytics):
                    texts.append(repr(attempt(lambda: cls(url))))
                texts.append(repr(attempt(lambda: biomero_rs.status(url))))
                attempt(lambda: biomero_rs.rebuild_views(url))
                # Connections dropped by the server under a working store.
                _pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          f"WHERE datname = '{d.name}' AND pid <> pg_backend_pid()")
                attempt(lambda: tr.update_task_status(t, "AFTER"))
                # A database that does not exist, and a role that does not.
                attempt(lambda: WorkflowTracker(_pg_url(d, f"postgres:{secret}").rsplit("/", 1)[0]
                                                + "/no_such_db_" + uuid.uuid4().hex[:6]))
                attempt(lambda: WorkflowTracker(_pg_url(d, f"nobody_{uuid.uuid4().hex[:6]}:{secret}")))
            finally:
                d.drop()
    finally:
        caplog.set_level(logging.WARNING)
        biomero_rs.reset_logging_cache()

    records = caplog.records
    assert texts
    if with_server == "server":
        # The capture works: the commands' debug lines are there.
        assert any("[WFT]" in r.getMessage() for r in records), [r.getMessage() for r in records][:10]
    for needle in (secret, encoded, plain):
        leaked = [t for t in texts if needle in t]
        assert not leaked, f"{needle!r} shown in exception text:\n{leaked[0]}"
        leaked_logs = [r for r in records if needle in r.getMessage() or needle in repr(r.args)]
        assert not leaked_logs, f"{needle!r} in log record: {leaked_logs[0].name}: {leaked_logs[0].getMessage()}"


# ================================================================== workers

if __name__ == "__main__":
    kind, config = sys.argv[1], json.loads(sys.argv[2])
    {"concurrency": worker_concurrency, "crash": worker_crash}[kind](config)
