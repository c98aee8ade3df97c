"""The drop-in layer: BIOMERO 2.8.3's own SlurmClient.initialize_analytics_system,
run with only its imports switched to biomero_rs."""

import uuid

import pytest

import biomero_rs
from biomero_rs import compat


@pytest.fixture(autouse=True)
def fresh_engine_manager():
    compat.EngineManager.close_engine()
    yield
    compat.EngineManager.close_engine()


@pytest.fixture
def slurm_client_module(monkeypatch):
    """biomero.slurm_client with the names it imports replaced by biomero_rs's."""
    sc = pytest.importorskip("biomero.slurm_client")
    for name in [
        "WorkflowTracker",
        "NoOpWorkflowTracker",
        "JobAccounting",
        "JobProgress",
        "WorkflowAnalytics",
        "WorkflowProgress",
        "EngineManager",
        "JobProgressView",
        "JobView",
        "TaskExecution",
        "WorkflowProgressView",
        "System",
        "SingleThreadedRunner",
    ]:
        monkeypatch.setattr(sc, name, getattr(biomero_rs, name))
    return sc


ANALYTICS_METHODS = [
    "initialize_analytics_system",
    "setup_listeners",
    "get_listeners",
    "_find_analytics_start_id",
    "bring_listener_uptodate",
    "_get_config_value",
    "_CONFIG_ENV_VARS",
]


def make_client(module, url, enabled=True):
    """An object with SlurmClient's own analytics methods (unchanged code from
    biomero 2.8.3) but no SSH connection, configured as BIOMERO's config would."""
    client_cls = type("AnalyticsClient", (), {n: vars(module.SlurmClient)[n] for n in ANALYTICS_METHODS})
    client = client_cls()
    client.sqlalchemy_url = url
    client.track_workflows = enabled
    client.enable_job_accounting = True
    client.enable_job_progress = True
    client.enable_workflow_analytics = True
    client.analytics_rebuild_start_time = None
    client.analytics_rebuild_days_ago = None
    return client


def write_history(url):
    """Events written without any view (as a BIOMERO without listeners would)."""
    t = biomero_rs.WorkflowTracker(url, views=[])
    wf = t.initiate_workflow("cellpose run", "v1", 3, 7)
    task = t.add_task_to_workflow(wf, "cellpose", "1.0", {"ids": [1]}, {})
    t.add_job_id(task, "4242")
    t.update_task_status(task, "RUNNING")
    t.update_task_progress(task, "50%")
    t.update_task_status(task, "RUNNING")
    return wf, task


def snapshot(url):
    return (
        [r.to_dict() for r in biomero_rs.JobAccounting(url).list_jobs()],
        [r.to_dict() for r in biomero_rs.JobProgress(url).list_job_progress()],
        [r.to_dict() for r in biomero_rs.WorkflowProgress(url).list_workflows()],
        [r.to_dict() for r in biomero_rs.WorkflowAnalytics(url).list_task_executions()],
    )


def test_initialize_analytics_system_with_reset_rebuilds_everything(db, slurm_client_module, monkeypatch):
    monkeypatch.setenv("SQLALCHEMY_URL", db.url)
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing_sqlalchemy")
    wf, task = write_history(db.url)
    # Rows that are wrong on purpose: the reset must not keep them.
    biomero_rs.WorkflowTracker(db.url)  # creates the views from the log
    client = make_client(slurm_client_module, db.url)

    client.initialize_analytics_system(reset_tables=True)

    assert isinstance(client.workflowTracker, biomero_rs.WorkflowTracker)
    assert sorted(client.workflowTracker.views) == sorted(biomero_rs.ALL)
    assert isinstance(client.jobAccounting, biomero_rs.JobAccounting)
    # Everything from notification 1 on is in the views.
    assert client.jobAccounting.get_jobs() == {3: [4242]}
    assert client.jobAccounting.get_task_id(4242) == task
    assert client.jobProgress.get_job_progress(4242).status == "RUNNING"
    row = client.wfProgress.get_workflow(wf)
    assert (row.status, row.progress, row.name) == ("JOB_RUNNING", "70.0%", "cellpose run")
    assert client.workflowAnalytics.get_task_counts() == {("cellpose", "1.0"): 1}
    s = biomero_rs.status(db.url)
    assert all(v["lag"] == 0 for v in s["views"].values())

    # The tracker the client got projects new commands in their transaction.
    client.workflowTracker.update_task_status(task, "COMPLETED")
    client.workflowTracker.complete_workflow(wf)
    assert client.jobProgress.get_job_progress(4242).status == "COMPLETED"
    assert client.wfProgress.get_workflow(wf).status == "DONE"

    before = snapshot(db.url)
    biomero_rs.rebuild_views(db.url)
    assert snapshot(db.url) == before


def test_initialize_without_reset_catches_up(db, slurm_client_module, monkeypatch):
    monkeypatch.setenv("SQLALCHEMY_URL", db.url)
    wf, _ = write_history(db.url)
    client = make_client(slurm_client_module, db.url)
    client.initialize_analytics_system(reset_tables=False)
    assert client.wfProgress.get_workflow(wf).progress == "70.0%"


def test_tracking_disabled_gives_the_no_op_tracker(db, slurm_client_module, monkeypatch):
    monkeypatch.setenv("SQLALCHEMY_URL", db.url)
    client = make_client(slurm_client_module, db.url, enabled=False)
    client.initialize_analytics_system(reset_tables=False)
    assert isinstance(client.workflowTracker, biomero_rs.NoOpWorkflowTracker)
    assert client.workflowTracker.initiate_workflow("x", "y", 1, 2) is None


def test_runner_shapes(db):
    system = biomero_rs.System(pipes=[[biomero_rs.WorkflowTracker, biomero_rs.JobAccounting]])
    runner = biomero_rs.SingleThreadedRunner(system, env={"SQLALCHEMY_URL": db.url})
    runner.start()
    tracker = runner.get(biomero_rs.WorkflowTracker)
    assert tracker.views == ["job_accounting"]
    listener = runner.get(biomero_rs.JobAccounting)
    assert listener.recorder.tracking_table_name == "jobaccounting_tracking"
    assert listener.recorder.events_table_name == "jobaccounting_events"
    with pytest.raises(KeyError):
        runner.get(biomero_rs.JobProgress)
    runner.stop()
    with pytest.raises(ValueError):
        biomero_rs.System(pipes=[])


def test_engine_manager_session_runs_sql(db):
    from sqlalchemy import text

    compat.EngineManager.create_scoped_session(db.url)
    with compat.EngineManager.get_session() as session:
        session.execute(text("CREATE TABLE biomero_dropin_probe (x INTEGER)"))
        session.execute("DROP TABLE IF EXISTS biomero_dropin_probe")
        session.commit()
    with compat.EngineManager.get_session() as session:
        session.execute("CREATE TABLE biomero_dropin_probe2 (x INTEGER)")
        session.rollback()
    names = {r[0] for r in db.rows(
        "SELECT name FROM sqlite_master WHERE type='table'" if db.backend == "sqlite"
        else "SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert "biomero_dropin_probe" not in names and "biomero_dropin_probe2" not in names
    assert "biomero_job_view" in names


def test_workflow_status_constants_match_the_reference():
    from biomero.constants import workflow_status as ref

    for name in [n for n in vars(ref) if n.isupper()]:
        assert getattr(biomero_rs.workflow_status, name) == getattr(ref, name)


def test_no_op_tracker_accepts_anything():
    t = biomero_rs.NoOpWorkflowTracker()
    assert t.add_task_to_workflow(uuid.uuid4(), "x", "1", {}, {}) is None
