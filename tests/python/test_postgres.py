"""Postgres specifics: URL forms, unreachable servers, lost connections, threads."""

import logging
import os
import threading
import time
import uuid

import pytest

import biomero_rs
from conftest import BACKENDS, PG_SERVER, Database, _pg_admin

pytestmark = pytest.mark.skipif("postgres" not in BACKENDS, reason="Postgres backend not selected")


@pytest.fixture
def pg(tmp_path):
    d = Database("postgres", tmp_path)
    yield d
    d.drop()


def _host_port_db(d):
    rest = d.url.split("@", 1)[1]  # 127.0.0.1:5432/name
    hostport, name = rest.split("/", 1)
    host, port = hostport.split(":")
    return host, port, name


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://postgres@{host}:{port}/{db}",
        "postgres://postgres@{host}:{port}/{db}",
        "postgresql+psycopg2://postgres@{host}:{port}/{db}",
        "postgresql+psycopg://postgres@{host}:{port}/{db}",
        "postgresql://postgres@/{db}?host=/var/run/postgresql",
        "postgresql+psycopg2://postgres:p%40ss%3Aw%2Frd@{host}:{port}/{db}?connect_timeout=3",
        "postgresql://postgres@{host}:{port}/{db}?sslmode=disable",
        "postgresql://postgres@{host}:{port}/{db}?sslmode=prefer&application_name=biomero",
    ],
)
def test_url_forms_reach_the_same_database(pg, template):
    if "/var/run/postgresql" in template and not os.path.exists("/var/run/postgresql/.s.PGSQL.5432"):
        pytest.skip("no local Postgres socket")
    host, port, name = _host_port_db(pg)
    url = template.format(host=host, port=port, db=name)
    tracker = biomero_rs.WorkflowTracker(url)
    wf = tracker.initiate_workflow("wf", "d", 1, 2)
    # The event is in the database the fixture created, read by another driver.
    rows = pg.rows("SELECT originator_id FROM workflowtracker_events")
    assert [uuid.UUID(str(r[0])) for r in rows] == [wf]


def test_sslmode_require_is_refused_clearly_not_downgraded(pg):
    host, port, name = _host_port_db(pg)
    with pytest.raises(ValueError) as e:
        biomero_rs.WorkflowTracker(f"postgresql://postgres:topsecret@{host}:{port}/{name}?sslmode=require")
    msg = str(e.value)
    assert "sslmode=require" in msg and "topsecret" not in msg


def test_unreachable_server_fails_fast_naming_host_and_port_not_password(caplog):
    caplog.set_level(logging.DEBUG)
    biomero_rs.reset_logging_cache()
    start = time.monotonic()
    with pytest.raises(biomero_rs.DatabaseError) as e:
        biomero_rs.WorkflowTracker("postgresql://bio:hunter2secret@127.0.0.1:5999/biomero")
    elapsed = time.monotonic() - start
    msg = str(e.value)
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert "127.0.0.1:5999" in msg and "postgres" in msg
    assert "hunter2secret" not in msg
    assert all("hunter2secret" not in r.getMessage() for r in caplog.records)


def test_connect_timeout_parameter_bounds_a_failed_connect():
    # Nothing listens on port 9: the failure comes at once, within the 1 s connect timeout.
    start = time.monotonic()
    with pytest.raises(biomero_rs.DatabaseError):
        biomero_rs.WorkflowTracker("postgresql://bio:pw@127.0.0.1:9/biomero?connect_timeout=1")
    assert time.monotonic() - start < 10


def test_commands_survive_terminated_connections(pg):
    tracker = biomero_rs.WorkflowTracker(pg.url)
    wf = tracker.initiate_workflow("wf", "d", 1, 2)
    task = tracker.add_task_to_workflow(wf, "t", "1", {}, {})
    for round_ in range(3):
        _pg_admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{pg.name}' AND pid <> pg_backend_pid()"
        )
        tracker.update_task_status(task, f"RUNNING{round_}")
    assert tracker.repository.get(task).status == "RUNNING2"
    assert tracker.repository.get(task).version == 3


def test_one_tracker_is_safe_from_many_threads(pg):
    tracker = biomero_rs.WorkflowTracker(pg.url)
    wf = tracker.initiate_workflow("wf", "d", 1, 2)
    tasks = [tracker.add_task_to_workflow(wf, f"t{i}", "1", {}, {}) for i in range(4)]
    errors = []

    def work(task):
        try:
            for i in range(10):
                tracker.update_task_progress(task, f"{i}%")
                tracker.update_task_status(task, "RUNNING")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in tasks for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for t in tasks:
        assert tracker.repository.get(t).version == 40
    ids = [n.id for n in tracker.notification_log.select(1, 10_000)]
    assert ids == sorted(ids) and len(ids) == 1 + 2 * 4 + 4 * 40
