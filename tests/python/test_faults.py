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
    try:
        with WorkflowTracker("sqlite:///:memory:", views=[]) as t:
            return " ".join(str(t.initiate_workflow("x", None, 1, 1)) for _ in range(20))
    finally:
        biomero_rs._core.close_store("sqlite:///:memory:")  # the next user gets an empty one


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


# ---------------------------------------------------------- read-only SQLite

READ_ONLY_SCRIPT = r"""
import sys, json, biomero_rs
from biomero_rs import WorkflowTracker, WorkflowProgress, DatabaseError
url, wf = sys.argv[1], sys.argv[2]
out = {}
t = WorkflowTracker(url)
out["name"] = t.repository.get(wf).name
out["log"] = len(t.notification_log.select(1, 100))
out["events"] = biomero_rs.status(url)["events"]
out["view"] = WorkflowProgress(url).get_workflow(wf).name
for what, call in [("initiate", lambda: t.initiate_workflow("x", "d", 1, 2)),
                   ("update", lambda: t.start_workflow(wf)),
                   ("rebuild", lambda: biomero_rs.rebuild_views(url))]:
    try:
        call()
        out[what] = "wrote"
    except DatabaseError as e:
        out[what] = str(e)
print(json.dumps(out))
"""


def _populated_sqlite(path):
    url = f"sqlite:///{path}"
    with WorkflowTracker(url) as t:
        wf = t.initiate_workflow("ro", "d", 1, 2)
        t.add_task_to_workflow(wf, "task", "1", {}, {})
    return url, str(wf)


def _check_read_only(out, why):
    import json

    out = json.loads(out)
    assert out["name"] == "ro" and out["view"] == "ro"
    assert out["log"] == 3 and out["events"] == 3
    for what in ("initiate", "update", "rebuild"):
        assert "read-only" in out[what] and why in out[what], out[what]


def test_read_only_sqlite_mode_ro(tmp_path):
    url, wf = _populated_sqlite(tmp_path / "ro.db")
    proc = subprocess.run(
        [sys.executable, "-c", READ_ONLY_SCRIPT, url + "?mode=ro", wf],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    _check_read_only(proc.stdout, "mode=ro")
    # Nothing was written.
    with WorkflowTracker(url) as t:
        assert len(t.notification_log.select(1, 100)) == 3


def _as_nobody(args):
    """Runs the system Python as user nobody (root passes every permission
    check, so unwritable files need another user)."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("runuser") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, runuser and /usr/bin/python3")
    pkg = os.path.dirname(os.path.dirname(biomero_rs.__file__))
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", "env", f"PYTHONPATH={pkg}", "/usr/bin/python3", *args],
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("case", ["file", "folder"])
def test_read_only_sqlite_file_or_folder(case):
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="biomero_ro_")
    try:
        os.chmod(d, 0o777)
        url, wf = _populated_sqlite(os.path.join(d, "ro.db"))
        os.chmod(os.path.join(d, "ro.db"), 0o644)  # nobody cannot write it
        if case == "folder":
            os.chmod(os.path.join(d, "ro.db"), 0o666)
            os.chmod(d, 0o755)  # nor create files next to it
        proc = _as_nobody(["-c", READ_ONLY_SCRIPT, url, wf])
        if "No module named" in proc.stderr:
            pytest.skip("the system Python cannot import this build")
        assert proc.returncode == 0, proc.stderr
        _check_read_only(proc.stdout, "not writable")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------ bounded waits


def test_a_server_that_never_answers_fails_within_connect_timeout():
    """A socket that accepts connections (the kernel's backlog) but never
    answers: the whole set-up is bounded by connect_timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        port = s.getsockname()[1]
        url = f"postgresql://u@127.0.0.1:{port}/db?connect_timeout=2"
        for make in (lambda: WorkflowTracker(url), lambda: biomero_rs.status(url)):
            start = time.monotonic()
            with pytest.raises(DatabaseError, match="connect_timeout=2"):
                make()
            assert time.monotonic() - start < 5


PG_BIN = "/usr/lib/postgresql/15/bin"


class PrivateCluster:
    """A Postgres cluster of this test's own (never the shared server)."""

    def __init__(self, password=None):
        import pathlib
        import pwd
        import shutil
        import tempfile

        if os.geteuid() != 0 or not os.path.exists(f"{PG_BIN}/initdb") or not shutil.which("runuser"):
            pytest.skip("needs root and a local PostgreSQL 15 installation")
        pwd.getpwnam("postgres")
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="biomero_pg_"))
        tmp.chmod(0o777)
        self.tmp = tmp
        self.dir = tmp / "pgdata"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        if password:
            (tmp / "pw").write_text(password + "\n")
            (tmp / "pw").chmod(0o644)
            self._pg(f"{PG_BIN}/initdb", "-D", str(self.dir), "-A", "scram-sha-256", "-U", "postgres",
                     f"--pwfile={tmp / 'pw'}")
        else:
            self._pg(f"{PG_BIN}/initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres")
        self._pg(f"{PG_BIN}/pg_ctl", "-D", str(self.dir), "-w", "-l", str(tmp / "pg.log"),
                 "-o", f"-p {self.port} -k {tmp} -c listen_addresses=127.0.0.1", "start")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args):
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=120)

    def pids(self):
        with open(self.dir / "postmaster.pid") as f:
            main = int(f.readline())
        kids = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True).stdout.split()
        return [main, *map(int, kids)]

    def signal_all(self, sig):
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self):
        self.signal_all(signal.SIGCONT)
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", str(self.dir),
                        "-m", "immediate", "stop"], capture_output=True, timeout=60)
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def test_a_stopped_server_fails_a_command_within_the_bound_and_recovers():
    cluster = PrivateCluster()
    try:
        url = cluster.url + "?connect_timeout=2&command_timeout=3"
        t = WorkflowTracker(url)
        wf = t.initiate_workflow("w", "d", 1, 2)
        cluster.signal_all(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(DatabaseError, match="command_timeout") as failed:
                t.start_workflow(wf)
            elapsed = time.monotonic() - start
            assert elapsed < 3 + 2 + 3, elapsed
            # The command went in one round trip, COMMIT included: the
            # server, stopped, may still commit it when it resumes.
            assert "may have been recorded" in str(failed.value)
        finally:
            cluster.signal_all(signal.SIGCONT)
        t.start_workflow(wf)  # the next command after recovery works
        # The stalled command either committed or not; the log and the
        # views agree with each other either way.
        version = t.repository.get(wf).version
        assert version in (1, 2), version
        assert biomero_rs.verify(cluster.url) == []
        t.close()
    finally:
        cluster.stop()


def test_pgpassword_and_pgpass_are_honoured(tmp_path):
    """A server that asks for a password: the URL's, else PGPASSWORD, else a
    matching line of the password file (ignored when others may read it)."""
    cluster = PrivateCluster(password="S3cr3t-pw")
    code = "import biomero_rs,sys; biomero_rs.status(sys.argv[1]); print('ok')"

    def connect(url, **env):
        full = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
        full.update(env)
        return subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                              timeout=60, env=full)

    try:
        url = cluster.url
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"127.0.0.1:{cluster.port}:*:postgres:S3cr3t-pw\n")
        pgpass.chmod(0o600)
        none = connect(url, PGPASSFILE=str(tmp_path / "missing"))
        assert none.returncode != 0 and "password" in none.stderr
        assert connect(url.replace("postgres@", "postgres:S3cr3t-pw@")).stdout.strip() == "ok"
        assert connect(url, PGPASSWORD="S3cr3t-pw").stdout.strip() == "ok"
        wrong = connect(url, PGPASSWORD="wrong-pw")
        assert wrong.returncode != 0 and "wrong-pw" not in wrong.stderr
        assert connect(url, PGPASSFILE=str(pgpass)).stdout.strip() == "ok"
        pgpass.chmod(0o644)  # readable by others: libpq ignores it
        assert connect(url, PGPASSFILE=str(pgpass)).returncode != 0
    finally:
        cluster.stop()


def test_a_lock_wait_is_not_a_stalled_server(db):
    """A command waiting longer than command_timeout for the log's lock
    (held by another session) keeps waiting: the server still answers."""
    if db.backend != "postgres":
        pytest.skip("postgres")
    import psycopg2

    url = db.url + "?command_timeout=1"
    t = WorkflowTracker(url)
    wf = t.initiate_workflow("w", "d", 1, 2)
    holder = psycopg2.connect(db.url)
    cur = holder.cursor()
    cur.execute("LOCK TABLE workflowtracker_events IN EXCLUSIVE MODE")
    threading.Timer(2.5, holder.rollback).start()
    start = time.monotonic()
    t.start_workflow(wf)
    assert time.monotonic() - start >= 2
    holder.close()
    t.close()


# ------------------------------------------------------------ interruptible

EVENTS = int(os.environ.get("BIOMERO_FAULTS_EVENTS", "120000"))


def _bulk_log(db, n):
    """n events: workflows with one task each and many progress updates,
    copied with raw SQL from events the tracker wrote."""
    with WorkflowTracker(db.url, views=[]) as t:
        wf = t.initiate_workflow("big", "d", 1, 2)
        task = t.add_task_to_workflow(wf, "SLURM_Run_Workflow.py", "1", {}, {})
        t.start_task(task)
        t.add_job_id(task, "4242")
        t.update_task_progress(task, "1%")
    rows = db.rows("SELECT originator_id, topic, state FROM workflowtracker_events WHERE topic = ?",
                   ("biomero.eventsourcing:Task.ProgressUpdated",))
    _, topic, state = rows[0]
    last = db.rows("SELECT MAX(originator_version) FROM workflowtracker_events "
                   "WHERE originator_id = ?", (rows[0][0],))[0][0]
    db.insert_events([(rows[0][0], last + 1 + i, topic, state) for i in range(n - 6)])


def _wait_until_rebuilding(db, proc):
    """Returns once the rebuild in `proc` is under way: it holds the
    database's rebuild lock (named by `check`), and has read for a moment
    (a short one: a release build rebuilds these logs in a fraction of a
    second)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the rebuild ended before it could be interrupted"
        if biomero_rs.check(db.url)["rebuild"] is not None:
            time.sleep(0.03)
            return
        time.sleep(0.01)
    pytest.fail("the rebuild did not start")


REBUILD_SCRIPT = r"""
import sys, time, biomero_rs
biomero_rs.run_migrations(sys.argv[1])
print("go", flush=True)
try:
    biomero_rs.rebuild_views(sys.argv[1])
    print("finished")
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
    sys.exit(3)
"""


def test_sigint_during_a_rebuild_without_callback(db):
    _bulk_log(db, EVENTS)
    biomero_rs.catch_up(db.url)
    before = view_rows(db.url)
    proc = subprocess.Popen([sys.executable, "-c", REBUILD_SCRIPT, db.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    _wait_until_rebuilding(db, proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert float(out.split()[-1]) - sent < 1.0
    # The live views are as they were, with nothing to catch up.
    assert view_rows(db.url) == before
    status = biomero_rs.status(db.url)
    assert all(v["lag"] == 0 for v in status["views"].values())
    assert status["rebuild"] is None
    biomero_rs.rebuild_views(db.url)
    assert view_rows(db.url) == before


# ------------------------------------------------ commands during a rebuild


def test_a_command_during_a_rebuild_is_projected_at_once_and_kept_by_the_switch(db):
    """Between two batches of a rebuild, a command projects its events into
    the live views at once (the rebuild holds no lock it waits for); the
    switch applies them to the new rows too."""
    _bulk_log(db, 30_000)
    biomero_rs.catch_up(db.url)
    t = WorkflowTracker(db.url, views=["WorkflowProgress"])
    seen = []

    def progress(done, total):
        if done and done < total and not seen:
            wf = t.initiate_workflow("during", "d", 1, 2)
            with WorkflowProgress(db.url) as v:
                seen.append((wf, v.get_workflow(wf)))

    biomero_rs.rebuild_views(db.url, progress=progress)
    (wf, live_row), = seen
    assert live_row is not None and live_row.name == "during"
    with WorkflowProgress(db.url) as v:
        assert v.get_workflow(wf).name == "during"
    status = biomero_rs.status(db.url)
    assert all(v["lag"] == 0 for v in status["views"].values())
    assert_views_equal_a_rebuild(db.url)
    t.close()


COMMAND_SCRIPT = r"""
import sys, time, biomero_rs
t = biomero_rs.WorkflowTracker(sys.argv[1])
wf = sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
print("go", flush=True)
try:
    t.start_workflow(wf)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
    sys.exit(3)
"""


def test_sigint_during_a_lock_wait(db):
    """A command waiting for another writer's lock (Postgres: the log's
    table lock; SQLite: the write lock, in SQLite's busy handler) stops on
    Ctrl-C within a second, and nothing is written."""
    with WorkflowTracker(db.url) as t:
        wf = t.initiate_workflow("w", "d", 1, 2)
    proc = subprocess.Popen([sys.executable, "-c", COMMAND_SCRIPT, db.url, str(wf)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    if db.backend == "sqlite":
        import sqlite3

        holder = sqlite3.connect(db.url[len("sqlite:///"):], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        import psycopg2

        holder = psycopg2.connect(db.url)
        holder.cursor().execute("LOCK TABLE workflowtracker_events IN EXCLUSIVE MODE")
    try:
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "go"
        time.sleep(1.5)
        assert proc.poll() is None, "the command did not wait for the lock"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 3, (out, err)
        assert float(out.split()[-1]) - sent < 1.0
    finally:
        holder.rollback() if db.backend == "postgres" else holder.execute("ROLLBACK")
        holder.close()
    with WorkflowTracker(db.url) as t:
        assert t.repository.get(wf).version == 0  # the interrupted command wrote nothing
        t.start_workflow(wf)
