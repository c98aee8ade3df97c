"""Partial rebuilds from a cutoff (issue 13): ``rebuild_views(url, since=...)``,
``biomero-rs rebuild --since/--days`` and the view classes'
``pull_and_process(start=...)`` as BIOMERO 2.8.3's SlurmClient calls it after
its reset, on both backends.

Definition: the view tables are emptied and every event from the first one
whose timestamp is at or after the cutoff is applied (that event included);
facts a projector looks up come from the whole log; a cutoff after the last
event is a full replay. The first event is the one the reference's SQL
(``SELECT MIN(id) ... WHERE timestamp >= :cutoff``, Postgres only) finds;
on SQLite it is computed here from the stored states.
"""

import datetime
import json
import time
import uuid

import pytest

import biomero_rs
from biomero_rs import compat
from test_migrations import _cli as cli
from test_switch import view_rows

sqlalchemy = pytest.importorskip("sqlalchemy")

REFERENCE_START_SQL = (
    "SELECT MIN(id) FROM workflowtracker_events "
    "WHERE (convert_from(state, 'UTF8')::json->>'timestamp')::json->>'_data_' >= :cutoff"
)


def two_phases(url):
    """Workflow A entirely before the cutoff, workflow B initiated before it
    and given its task after it, workflow C entirely after it. Returns the
    cutoff (aware UTC) and the ids."""
    t = biomero_rs.WorkflowTracker(url)
    a = t.initiate_workflow("A", "old", 1, 10)
    ta = t.add_task_to_workflow(a, "cellpose", "1.0", {}, {})
    t.add_job_id(ta, "100")
    t.update_task_status(ta, "COMPLETED")
    t.complete_task(ta, "ok")
    t.complete_workflow(a)
    b = t.initiate_workflow("B", "straddles", 2, 20)
    time.sleep(0.02)
    cutoff = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.02)
    tb = t.add_task_to_workflow(b, "stardist", "2.0", {}, {})
    t.add_job_id(tb, "200")
    t.update_task_status(tb, "RUNNING")
    t.update_task_progress(tb, "43%")
    c = t.initiate_workflow("C", "new", 3, 30)
    tc = t.add_task_to_workflow(c, "_SLURM_Image_Transfer.py", "1.0", {}, {})
    t.add_job_id(tc, "300")
    t.update_task_status(tc, "RUNNING")
    return cutoff, dict(a=a, ta=ta, b=b, tb=tb, c=c, tc=tc)


def first_at_or_after(db, cutoff):
    """The definition's first event, read from the stored states."""
    for id_, state in db.rows("SELECT id, state FROM workflowtracker_events ORDER BY id"):
        data = json.loads(bytes(state).decode("utf-8"))["timestamp"]["_data_"]
        if datetime.datetime.fromisoformat(data) >= cutoff:
            return id_
    return None


def reference_first(db, cutoff_text):
    """The reference's start id (its SQL, through the drop-in EngineManager
    with a bound parameter, as SlurmClient._find_analytics_start_id runs it)."""
    compat.EngineManager.close_engine()
    compat.EngineManager.create_scoped_session(db.url)
    try:
        with compat.EngineManager.get_session() as session:
            return session.execute(sqlalchemy.text(REFERENCE_START_SQL), {"cutoff": cutoff_text}).scalar()
    finally:
        compat.EngineManager.close_engine()


def expected_rows(full, ids, kept_workflows, kept_tasks):
    """The full rebuild's rows restricted to what the cutoff keeps."""
    wf = {str(ids[k]) for k in kept_workflows} | {ids[k].hex for k in kept_workflows}
    tasks = {str(ids[k]) for k in kept_tasks} | {ids[k].hex for k in kept_tasks}
    jobs = {r[0] for r in full["biomero_job_view"] if r[3] in tasks}
    return {
        "biomero_job_view": [r for r in full["biomero_job_view"] if r[0] in jobs],
        "biomero_job_progress_view": [r for r in full["biomero_job_progress_view"] if r[0] in jobs],
        "biomero_workflow_progress_view": [r for r in full["biomero_workflow_progress_view"] if r[0] in wf],
        "biomero_task_execution": [r for r in full["biomero_task_execution"] if r[0] in tasks],
    }


def test_rebuild_since_a_time(db):
    cutoff, ids = two_phases(db.url)
    total = db.rows("SELECT MAX(id) FROM workflowtracker_events")[0][0]
    full = view_rows(db)
    first = first_at_or_after(db, cutoff)
    assert 1 < first < total
    if db.backend == "postgres":
        assert reference_first(db, cutoff.isoformat()) == first
    # Each spelling of the same cutoff.
    for since in (cutoff, cutoff.replace(tzinfo=None), cutoff.isoformat()):
        n = biomero_rs.rebuild_views(db.url, since=since)
        assert n == total - first + 1  # the first event included
        rows = view_rows(db)
        assert rows == expected_rows(full, ids, ["c"], ["tb", "tc"])
    # Facts from the whole log: B's task has B's owner though B began before.
    tb = [r for r in rows["biomero_task_execution"] if r[1] == "stardist"][0]
    assert tb[3:5] == ("2", "20")
    assert biomero_rs.verify(db.url) != []  # partial on purpose
    # A cutoff after the last event: a full replay, as in the reference.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    assert biomero_rs.rebuild_views(db.url, since=later) == total
    assert view_rows(db) == full
    assert biomero_rs.verify(db.url) == []


def test_rebuild_since_bad_values(db):
    two_phases(db.url)
    with pytest.raises(ValueError, match="since"):
        biomero_rs.rebuild_views(db.url, since="yesterday")
    with pytest.raises(TypeError, match="since"):
        biomero_rs.rebuild_views(db.url, since=12)
    assert biomero_rs.verify(db.url) == []  # nothing was emptied


def test_cli_rebuild_since_date_and_days(db):
    cutoff, ids = two_phases(db.url)
    total = db.rows("SELECT MAX(id) FROM workflowtracker_events")[0][0]
    full = view_rows(db)
    today = cutoff.date().isoformat()
    tomorrow = (cutoff + datetime.timedelta(days=1)).date().isoformat()
    if db.backend == "postgres":
        assert reference_first(db, today) == 1
        assert reference_first(db, tomorrow) is None
    # Every event is from today: from the first one, which is everything.
    out = cli("rebuild", "--url", db.url, "--since", today)
    assert out.returncode == 0, out.stderr
    assert f"from {total:,} events (cutoff {today})" in out.stdout
    assert view_rows(db) == full
    out = cli("rebuild", "--url", db.url, "--since", tomorrow, "--json")  # after the last: full
    assert out.returncode == 0 and json.loads(out.stdout)["events"] == total
    out = cli("rebuild", "--url", db.url, "--days", "1", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["events"] == total
    assert view_rows(db) == full
    out = cli("rebuild", "--url", db.url, "--days", "0", "--json")  # from now: nothing is newer
    assert out.returncode == 0 and json.loads(out.stdout)["events"] == total
    out = cli("rebuild", "--url", db.url, "--days", "1", "--since", today)
    assert out.returncode == 2  # one or the other
    out = cli("rebuild", "--url", db.url, "--since", "not-a-date")
    assert out.returncode == 1 and "since" in out.stderr


@pytest.mark.skipif("postgres" not in __import__("conftest").BACKENDS, reason="Postgres not under test")
def test_slurm_client_reset_path_with_a_cutoff(tmp_path):
    """SlurmClient.setup_listeners(reset_tables=True) with biomero_rs's
    classes: drop the view, tracking and listener event tables, find the
    start id with the reference's SQL, then pull_and_process(start=...) on
    each view class. Postgres (the reference's SQL is Postgres-only)."""
    from conftest import Database

    db = Database("postgres", tmp_path)
    try:
        cutoff, ids = two_phases(db.url)
        full = view_rows(db)
        start = reference_first(db, cutoff.isoformat())
        classes = [biomero_rs.JobAccounting, biomero_rs.JobProgress, biomero_rs.WorkflowProgress,
                   biomero_rs.WorkflowAnalytics]
        listeners = [cls(db.url) for cls in classes]
        tables = [t for l in listeners for t in (l.recorder.tracking_table_name, l.recorder.events_table_name)]
        tables += ["biomero_task_execution", "biomero_job_progress_view", "biomero_workflow_progress_view",
                   "biomero_job_view"]
        compat.EngineManager.create_scoped_session(db.url)
        with compat.EngineManager.get_session() as session:
            for t in tables:
                session.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {t}"))
            session.commit()
        compat.EngineManager.close_engine()
        for cls in classes:
            cls(db.url).pull_and_process(leader_name="WorkflowTracker", start=start)
        assert view_rows(db) == expected_rows(full, ids, ["c"], ["tb", "tc"])
        # Then the tracker continues from there.
        biomero_rs.WorkflowTracker(db.url).update_task_status(ids["tc"], "COMPLETED")
        assert db.rows("SELECT status FROM biomero_job_progress_view WHERE slurm_job_id = 300") == [
            ("COMPLETED",)
        ]
    finally:
        db.drop()


def test_slurm_client_start_id_on_both_backends(db, monkeypatch):
    """BIOMERO 2.8.3's own SlurmClient._find_analytics_start_id (its
    Postgres-only SQL) through biomero_rs's EngineManager: on Postgres as
    written, on SQLite in SQLite's JSON functions, so that both honour
    analytics_rebuild_start_time and analytics_rebuild_days_ago."""
    import types

    import biomero.slurm_client as sc

    cutoff, _ = two_phases(db.url)
    monkeypatch.setattr(sc, "EngineManager", compat.EngineManager)
    compat.EngineManager.close_engine()
    compat.EngineManager.create_scoped_session(db.url)
    try:
        client = types.SimpleNamespace(analytics_rebuild_start_time=cutoff.isoformat(),
                                       analytics_rebuild_days_ago=None)
        first = sc.SlurmClient._find_analytics_start_id(client)
        assert first == first_at_or_after(db, cutoff) > 1
        client.analytics_rebuild_start_time = cutoff.date().isoformat()
        assert sc.SlurmClient._find_analytics_start_id(client) == 1
        client.analytics_rebuild_days_ago = 1  # overrides the date
        assert sc.SlurmClient._find_analytics_start_id(client) == 1
        client.analytics_rebuild_days_ago = -1  # tomorrow: after the last event, so 1
        assert sc.SlurmClient._find_analytics_start_id(client) == 1
    finally:
        compat.EngineManager.close_engine()
    # And the view classes rebuild from it: equal to rebuild_views(since=).
    for cls in (biomero_rs.JobAccounting, biomero_rs.JobProgress, biomero_rs.WorkflowProgress,
                biomero_rs.WorkflowAnalytics):
        cls(db.url).pull_and_process(leader_name="WorkflowTracker", start=first)
    by_classes = view_rows(db)
    biomero_rs.rebuild_views(db.url, since=cutoff)
    assert view_rows(db) == by_classes
