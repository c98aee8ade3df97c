"""Processes and faults (issue 14): fork safety, close(), read-only SQLite,
URL errors without user-info, bounded waits and interruptible waits.

Each test runs on SQLite and on Postgres where it applies. The
SIGINT-during-rebuild test uses BIOMERO_FAULTS_EVENTS events (default
120,000; the issue's setting is 1,000,000).
"""

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

import biomero_rs
from biomero_rs import (
    DatabaseError,
    JobAccounting,
    JobProgress,
    WorkflowAnalytics,
    WorkflowProgress,
    WorkflowTracker,
)

VIEW_LISTS = [
    (JobAccounting, "list_jobs"),
    (JobProgress, "list_job_progress"),
    (WorkflowProgress, "list_workflows"),
    (WorkflowAnalytics, "list_task_executions"),
]


def view_rows(url):
    """Every row of the four views, as sorted dicts."""
    out = {}
    for cls, method in VIEW_LISTS:
        with cls(url) as v:
            out[cls.__name__] = sorted(
                (sorted((k, repr(x)) for k, x in r.to_dict().items()) for r in getattr(v, method)()),
            )
    return out


def assert_views_equal_a_rebuild(url):
    live = view_rows(url)
    biomero_rs.rebuild_views(url)
    assert view_rows(url) == live


def workflow_steps(tracker, tag, tasks=2):
    """A small workflow: ids of the workflow and its tasks."""
    wf = tracker.initiate_workflow(f"wf-{tag}", "d", 3, 7)
    tracker.start_workflow(wf)
    ids = [str(wf)]
    for i in range(tasks):
        t = tracker.add_task_to_workflow(wf, "SLURM_Run_Workflow.py", "1.0", {"i": i}, {})
        tracker.start_task(t)
        tracker.add_job_id(t, str(abs(hash((tag, i))) % 10**8))
        tracker.update_task_status(t, "RUNNING")
        tracker.update_task_progress(t, "50%")
        tracker.update_task_status(t, "COMPLETED")
        tracker.complete_task(t, "ok")
        ids.append(str(t))
    tracker.complete_workflow(wf)
    return ids


# --------------------------------------------------------------- fork safety

_INHERITED = None
_URL = None


def _fork_job(i):
    """One pool job: a workflow through the inherited tracker, one through a
    tracker made in the worker."""
    ids = workflow_steps(_INHERITED, f"inh-{i}")
    with WorkflowTracker(_URL) as fresh:
        ids += workflow_steps(fresh, f"new-{i}")
    return os.getpid(), ids


def test_fork_pool_with_inherited_and_fresh_trackers(db):
    global _INHERITED, _URL
    _URL = db.url
    _INHERITED = WorkflowTracker(db.url)
    parent_ids = workflow_steps(_INHERITED, "before")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        pending = pool.map_async(_fork_job, range(8), chunksize=1)
        # The parent writes while the workers do.
        for i in range(6):
            parent_ids += workflow_steps(_INHERITED, f"parent-{i}", tasks=1)
        results = pending.get(timeout=120)
    ids = parent_ids + [x for _, r in results for x in r]
    assert len(ids) == len(set(ids)), "a workflow or task id repeated"
    assert len({pid for pid, _ in results}) > 1
    # Every aggregate is complete and readable in the parent.
    for i in ids:
        assert _INHERITED.repository.get(uuid.UUID(i)).version >= 1
    assert_views_equal_a_rebuild(db.url)
    _INHERITED.close()


def test_gunicorn_style_preload(db):
    """A tracker made before fork (gunicorn --preload); 4 forked workers
    write through it while the parent writes too."""
    tracker = WorkflowTracker(db.url)
    workflow_steps(tracker, "master")
    r, w = os.pipe()
    children = []
    for k in range(4):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                ids = []
                for j in range(3):
                    ids += workflow_steps(tracker, f"worker-{k}-{j}")
                os.write(w, ("\n".join(ids) + "\n").encode())
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    os.close(w)
    parent_ids = []
    for j in range(5):
        parent_ids += workflow_steps(tracker, f"master-{j}")
    deadline = time.monotonic() + 120
    for pid in children:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                break
            if time.monotonic() > deadline:
                for p in children:
                    os.kill(p, signal.SIGKILL)
                pytest.fail("a forked worker hung")
            time.sleep(0.05)
    with os.fdopen(r) as f:
        child_ids = f.read().split()
    assert len(child_ids) == 4 * 3 * 3
    ids = parent_ids + child_ids
    assert len(ids) == len(set(ids))
    # The parent's connections still work after its children wrote and exited.
    workflow_steps(tracker, "after")
    assert_views_equal_a_rebuild(db.url)
    tracker.close()


def test_ids_differ_between_parent_and_child():
    """The id generator is not copied by fork."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, biomero_rs_new_ids().encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        child = set(f.read().split())
    assert not child & set(biomero_rs_new_ids().split())


def biomero_rs_new_ids():
    with WorkflowTracker("sqlite:///:memory:", views=[]) as t:
        return " ".join(str(t.initiate_workflow("x", None, 1, 1)) for _ in range(20))


# ------------------------------------------------------------ close / with


def test_close_and_context_manager(db):
    with WorkflowTracker(db.url) as t:
        wf = t.initiate_workflow("w", "d", 1, 2)
        assert not t.closed
    assert t.closed
    with pytest.raises(ValueError, match="closed"):
        t.start_workflow(wf)
    with pytest.raises(ValueError, match="closed"):
        t.repository.get(wf)
    t.close()  # twice is fine
    for cls, method in VIEW_LISTS:
        with cls(db.url) as v:
            getattr(v, method)()
        with pytest.raises(ValueError, match="closed"):
            getattr(v, method)()
    # A new object works after the others closed.
    with WorkflowProgress(db.url) as v:
        assert v.get_workflow(wf).name == "w"


def _open_fds(path):
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(path):
                fds.append(fd)
        except OSError:
            pass
    return fds


def test_close_releases_the_sqlite_file(sqlite_db):
    path = sqlite_db.url[len("sqlite:///"):]
    t = WorkflowTracker(sqlite_db.url)
    v = WorkflowProgress(sqlite_db.url)
    t.initiate_workflow("w", "d", 1, 2)
    v.list_workflows()
    assert _open_fds(path)
    t.close()
    assert _open_fds(path), "the view object still uses the database"
    v.close()
    assert not _open_fds(path)
    # del without close releases too.
    t = WorkflowTracker(sqlite_db.url)
    t.initiate_workflow("w", "d", 1, 2)
    del t
    import gc

    gc.collect()
    assert not _open_fds(path)


def test_close_store_closes_what_the_process_opened(sqlite_db):
    path = sqlite_db.url[len("sqlite:///"):]
    t = WorkflowTracker(sqlite_db.url)
    wf = t.initiate_workflow("w", "d", 1, 2)
    assert _open_fds(path)
    biomero_rs._core.close_store(sqlite_db.url)  # EngineManager.close_engine()
    assert not _open_fds(path)
    t.start_workflow(wf)  # connects again
    assert t.repository.get(wf).version == 1
    t.close()
    assert not _open_fds(path)


def test_close_releases_postgres_sessions(db):
    if db.backend != "postgres":
        pytest.skip("postgres")
    name = db.url.rsplit("/", 1)[1]

    def sessions():
        return db.rows(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()",
            (name,),
        )[0][0]

    t = WorkflowTracker(db.url)
    t.initiate_workflow("w", "d", 1, 2)
    assert sessions() >= 1
    t.close()
    deadline = time.monotonic() + 5
    while sessions() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions() == 0


# --------------------------------------------------------------- URL errors


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:S3cr3t!pw/db",
        "postgresql+psycopg2://alice:S3cr3t!pw@host:S3cr3t!pw/db",
        "alice:S3cr3t!pw@localhost/db",
    ],
)
def test_url_errors_never_echo_user_info(url, tmp_path):
    calls = [
        lambda: WorkflowTracker(url),
        lambda: biomero_rs.status(url),
        lambda: WorkflowProgress(url),
        lambda: JobAccounting(url),
    ]
    for call in calls:
        with pytest.raises((ValueError, DatabaseError)) as e:
            call()
        assert "S3cr3t" not in str(e.value) and "alice" not in str(e.value), str(e.value)
    cli = subprocess.run(
        [sys.executable, "-m", "biomero_rs.cli", "status", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode != 0
    assert "S3cr3t" not in cli.stdout + cli.stderr and "alice" not in cli.stdout + cli.stderr
