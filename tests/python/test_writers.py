"""Commands in one round trip on Postgres, and writers in several processes
on both backends: what each writer relies on is checked under the log's
lock, so the views stay exactly what a rebuild gives, whatever the others
do; on SQLite writers queue in the kernel (the `<file>-writer` turn)."""

import fcntl
import logging
import multiprocessing
import os
import socket
import threading
import time

import pytest

import biomero_rs
from biomero_rs import WorkflowTracker

from conftest import BACKENDS, Database

VIEW_TABLES = [
    "biomero_job_view",
    "biomero_job_progress_view",
    "biomero_workflow_progress_view",
    "biomero_task_execution",
]


def view_rows(db):
    return {t: sorted(map(repr, db.rows(f"SELECT * FROM {t}"))) for t in VIEW_TABLES}


def assert_views_are_a_rebuild(db):
    """The live rows equal those of a rebuild from the log, and verify agrees."""
    assert biomero_rs.verify(db.url) == []
    before = view_rows(db)
    biomero_rs.rebuild_views(db.url)
    assert view_rows(db) == before


class CountingProxy:
    """A TCP proxy to the Postgres server that counts the client's sends
    (each one a round trip: the client waits for the answer before the next)."""

    def __init__(self, host="127.0.0.1", port=5432):
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.sends = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, count):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if count:
                    with self.lock:
                        self.sends += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


@pytest.fixture
def pg_db(tmp_path):
    if "postgres" not in BACKENDS:
        pytest.skip("Postgres is not under test")
    d = Database("postgres", tmp_path)
    yield d
    d.drop()


def test_a_postgres_command_is_one_round_trip(pg_db):
    proxy = CountingProxy()
    try:
        url = pg_db.url.replace(":5432/", f":{proxy.port}/")
        t = WorkflowTracker(url)
        wf = t.initiate_workflow("w", "d", 1, 2)
        t.start_workflow(wf)
        task = t.add_task_to_workflow(wf, "cellpose", "1", {"image_ids": [1]}, {})
        t.start_task(task)
        t.add_job_id(task, 4242)
        before = proxy.sends
        n = 40
        for i in range(n):
            if i % 2:
                t.update_task_status(task, "RUNNING")
            else:
                t.update_task_progress(task, f"{i}%")
        sends = proxy.sends - before
        t.close()
    finally:
        proxy.close()
    assert sends == n, f"{sends} round trips for {n} commands"
    assert pg_db.rows("SELECT count(*) FROM workflowtracker_events")[0][0] == 5 + 1 + n
    assert_views_are_a_rebuild(pg_db)


def test_one_round_trip_sees_what_another_writer_did(pg_db, caplog):
    """Two trackers on one task: each command of one after the other's is
    refused in one round trip (the other touched what its facts say) and
    runs the usual way; the views stay exact."""
    a, b = WorkflowTracker(pg_db.url), WorkflowTracker(pg_db.url)
    wf = a.initiate_workflow("w", "d", 1, 2)
    task = a.add_task_to_workflow(wf, "cellpose", "1", {"image_ids": [1]}, {})
    a.add_job_id(task, 7)
    a.update_task_status(task, "PENDING")
    with caplog.at_level(logging.DEBUG, logger="biomero.eventsourcing"):
        for i in range(6):
            b.update_task_progress(task, f"{10 * i}%")
            a.update_task_status(task, f"RUNNING{i}")
            b.add_job_id(task, 100 + i)  # a's facts (the job id) change under it
            a.update_task_progress(task, f"{10 * i + 5}%")
    refused = [r for r in caplog.records if "not in one round trip" in r.getMessage()]
    assert refused, "the other writer's events were never noticed"
    # a's last command was applied with b's latest job id, not its own old one.
    assert pg_db.rows("SELECT slurm_job_id, progress FROM biomero_job_progress_view WHERE slurm_job_id = 105") == [
        (105, "55%")
    ]
    a.close()
    b.close()
    assert_views_are_a_rebuild(pg_db)


def test_one_round_trip_sees_another_writer_on_the_same_workflow(pg_db, caplog):
    """No version conflict this time: the other writer appends to the
    workflow and to a sibling task, whose facts (the workflow's tasks and
    their latest progress) this writer's command relies on. The check in
    the round trip refuses it; it runs the usual way with what the other
    wrote."""
    a, b = WorkflowTracker(pg_db.url), WorkflowTracker(pg_db.url)
    wf = a.initiate_workflow("w", "d", 1, 2)
    a.start_workflow(wf)
    t1 = a.add_task_to_workflow(wf, "cellpose", "1", {"image_ids": [1]}, {})
    a.add_job_id(t1, 11)
    a.update_task_progress(t1, "10%")
    t2 = b.add_task_to_workflow(wf, "stardist", "1", {"image_ids": [2]}, {})
    b.add_job_id(t2, 22)
    b.update_task_progress(t2, "80%")
    with caplog.at_level(logging.DEBUG, logger="biomero.eventsourcing"):
        caplog.clear()
        a.update_task_status(t1, "RUNNING")  # reads the workflow's latest task progress
    messages = [r.getMessage() for r in caplog.records]
    assert any("update_task_status: not in one round trip" in m for m in messages), messages
    assert not any("version conflict" in m for m in messages), messages
    a.close()
    b.close()
    assert_views_are_a_rebuild(pg_db)


def _writer(url, n, seed):
    t = WorkflowTracker(url)
    wf = t.initiate_workflow(f"w{seed}", "d", seed, 1)
    t.start_workflow(wf)
    task = t.add_task_to_workflow(wf, "cellpose", "1", {"image_ids": [seed]}, {})
    t.start_task(task)
    t.add_job_id(task, 1000 + seed)
    for i in range(n):
        if i % 2:
            t.update_task_status(task, "RUNNING")
        else:
            t.update_task_progress(task, f"{i % 100}%")
    t.complete_task(task, "done")
    t.complete_workflow(wf)
    t.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_writers_in_several_processes(backend, tmp_path):
    """Six processes (forked, as gunicorn and multiprocessing do) write at
    once: nothing is lost and the views equal a rebuild."""
    d = Database(backend, tmp_path)
    try:
        WorkflowTracker(d.url).close()  # tables first
        ctx = multiprocessing.get_context("fork")
        n = 60
        procs = [ctx.Process(target=_writer, args=(d.url, n, s)) for s in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        events = d.rows("SELECT count(*) FROM workflowtracker_events")[0][0]
        assert events == 6 * (n + 8)
        assert sorted(r[0] for r in d.rows("SELECT status FROM biomero_workflow_progress_view")) == [
            "DONE"
        ] * 6
        assert_views_are_a_rebuild(d)
    finally:
        d.drop()


def test_sqlite_writers_wait_in_the_kernel_queue(sqlite_db):
    """A command waits while another writer holds the turn, and starts as
    soon as it is released (no polling interval)."""
    t = WorkflowTracker(sqlite_db.url)
    wf = t.initiate_workflow("w", "d", 1, 2)
    path = sqlite_db.url[len("sqlite:///"):] + "-writer"
    assert os.path.exists(path)
    holder = open(path, "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    done = []

    def command():
        t.start_workflow(wf)
        done.append(time.monotonic())

    th = threading.Thread(target=command)
    th.start()
    time.sleep(0.3)
    assert not done, "the command did not wait for the writer ahead"
    released = time.monotonic()
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    th.join(10)
    assert done and done[0] - released < 0.25
    assert t.repository.get(wf).version == 1
    t.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_get_reads_on_from_what_it_has_seen(backend, tmp_path):
    """repository.get keeps the aggregates it read and reads only the events
    after them: what another writer appended shows at once, and a database
    dropped and made again is read whole."""
    d = Database(backend, tmp_path)
    try:
        a, b = WorkflowTracker(d.url), WorkflowTracker(d.url)
        wf = a.initiate_workflow("w", "d", 1, 2)
        task = a.add_task_to_workflow(wf, "cellpose", "1", {"image_ids": [1]}, {})
        assert a.repository.get(task).version == 0
        for i in range(5):
            b.update_task_progress(task, f"{i}%")
            got = a.repository.get(task)
            assert (got.version, got.progress) == (i + 1, f"{i}%")
        b.add_job_id(task, 99)
        assert a.repository.get(task).job_ids == [99]
        # The same ids in a new log: task at version 0 with other values.
        a.close()
        b.close()
        rows = d.rows("SELECT originator_id, originator_version, topic, state FROM workflowtracker_events "
                      "WHERE originator_version = 0 ORDER BY id")
        c = WorkflowTracker(d.url)
        assert c.repository.get(task).version == 6
        d.execute("DELETE FROM workflowtracker_events")
        d.insert_events([tuple(r) for r in rows])
        got = c.repository.get(task)
        assert (got.version, got.job_ids, got.progress) == (0, [], None)
        c.close()
    finally:
        d.drop()
