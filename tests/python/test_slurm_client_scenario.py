"""The real biomero 2.8.3 SlurmClient (constructed as its own unit tests
construct it, SSH mocked) with biomero_rs switched on by activate(): tracking,
job accounting, progress and analytics on; initialize_analytics_system with
reset_tables=True, a full workflow through slurmClient.workflowTracker as the
BIOMERO scripts drive it, a conversion job; the views equal a rebuild."""

import copy
import datetime
import uuid
from unittest import mock

import pytest

import biomero_rs

sc = pytest.importorskip("biomero.slurm_client")
fabric = pytest.importorskip("fabric")

VIEW_TABLES = {
    "biomero_job_view": "slurm_job_id",
    "biomero_job_progress_view": "slurm_job_id",
    "biomero_workflow_progress_view": "workflow_id",
    "biomero_task_execution": "task_id",
}


@pytest.fixture
def activated():
    biomero_rs.activate()
    biomero_rs.EngineManager.close_engine()
    yield
    biomero_rs.EngineManager.close_engine()
    biomero_rs.deactivate()


def result(stdout, command="sbatch job.sh"):
    return fabric.Result(connection=None, stdout=stdout, stderr="", command=command, env={"A": "1"}, exited=0)


@pytest.fixture
def client(db, activated, monkeypatch):
    monkeypatch.setenv("SQLALCHEMY_URL", db.url)
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing_sqlalchemy")
    with mock.patch("biomero.slurm_client.Connection.create_session"), \
            mock.patch("biomero.slurm_client.Connection.open"), \
            mock.patch("biomero.slurm_client.Connection.put"), \
            mock.patch("biomero.slurm_client.SlurmClient.run"):
        c = sc.SlurmClient(
            host="localhost", port=8022, user="slurm",
            slurm_data_path="/data", slurm_images_path="/images", slurm_script_path="/scripts",
            slurm_converters_path="/converters", slurm_script_repo="repo-url",
            slurm_model_paths={"cellpose": "cellpose"}, slurm_model_images={"cellpose": "img"},
            slurm_model_repos={"cellpose": "https://github.com/example/cellpose"},
            track_workflows=True, enable_job_accounting=True, enable_job_progress=True,
            enable_workflow_analytics=True, sqlalchemy_url=db.url,
        )
    return c


def tables(db):
    out = {}
    for table, key in VIEW_TABLES.items():
        rows = db.rows(f"SELECT * FROM {table} ORDER BY {key}")
        out[table] = [tuple(str(v) if isinstance(v, uuid.UUID) else v for v in r) for r in rows]
    return out


def run_scripts_workflow(client):
    """What the BIOMERO scripts (SLURM_Run_Workflow.py) do through the
    client's tracker and run methods, plus a conversion job."""
    wft = client.workflowTracker
    wf = wft.initiate_workflow("cellpose", "Segment cells\nwith cellpose", 52, 3)
    wft.start_workflow(wf)
    transfer = wft.add_task_to_workflow(wf, "_SLURM_Image_Transfer.py", "2.1.0",
                                        {"Data_Type": "Image", "IDs": [1, 2, 3]}, {"Email": False})
    wft.start_task(transfer)
    wft.complete_task(transfer, "Transferred 3 images")

    with mock.patch.object(client, "run_commands", return_value=result("Submitted batch job 5678\n")):
        conversion = client.run_conversion_workflow_job("data_in_2024", "zarr", "tiff", wf_id=wf)
    assert conversion.job_id == 5678
    with mock.patch.object(client, "run_commands", return_value=result("Submitted batch job 7788\n")):
        standalone = client.run_conversion_workflow_job("other_data", "zarr", "tiff")
    wft.update_task_status(conversion.task_id, "COMPLETED")
    wft.update_task_progress(conversion.task_id, "100%")
    wft.complete_task(conversion.task_id, "conversion done")

    with mock.patch.object(client, "run_commands", return_value=result("Submitted batch job 1234\n")), \
            mock.patch.object(client, "get_workflow_command", return_value=("sbatch cellpose.sh", {"A": "1"})), \
            mock.patch.object(client, "_get_server_managed_params", return_value={"model": "cyto2"}):
        res, job_id, wf_again, task = client.run_workflow("cellpose", "v1.2.3", "data_in_2024", wf_id=wf,
                                                          diameter=30)
    assert (job_id, wf_again) == (1234, wf)
    for status, progress in [("PENDING", None), ("RUNNING", "10%"), ("RUNNING", "55%"), ("COMPLETED", "100%")]:
        wft.update_task_status(task, status)
        if progress:
            wft.update_task_progress(task, progress)
    wft.complete_task(task, "Job completed")
    failed = wft.add_task_to_workflow(wf, "SLURM_Get_Results.py", None, {"job": 1234}, {})
    wft.start_task(failed)
    wft.fail_task(failed, "Unzip failed")
    wft.complete_workflow(wf)
    return wf, task, conversion, standalone


def test_full_scenario_with_reset_tables(client, db):
    # The runner's tracker, and fabric's copy of it, are biomero_rs objects on one store.
    assert isinstance(client.workflowTracker, biomero_rs.WorkflowTracker)
    assert copy.copy(client.workflowTracker) is client.workflowTracker
    for listener in (client.jobAccounting, client.jobProgress, client.wfProgress, client.workflowAnalytics):
        assert type(listener).__module__ == "biomero_rs._core"

    wf, task, conversion, standalone = run_scripts_workflow(client)
    before = tables(db)

    # The views as BIOMERO's readers see them.
    assert client.jobAccounting.get_jobs(user=52) == {52: [1234, 5678]}
    assert client.jobAccounting.get_jobs(user=-1) == {-1: [7788]}
    assert client.jobAccounting.get_task_id(1234) == task
    assert client.jobProgress.get_job_progress(1234).status == "COMPLETED"
    wf_row = client.wfProgress.get_workflow(wf)
    assert (wf_row.status, wf_row.user, wf_row.group, wf_row.name) == (biomero_rs.workflow_status.DONE, 52, 3,
                                                                       "cellpose")
    standalone_row = client.wfProgress.get_workflow(standalone.wf_id)
    assert (standalone_row.user, standalone_row.group, standalone_row.name) == (-1, -1, "conversion")
    assert client.workflowAnalytics.get_task_counts() == {
        ("CONVERT_ZARR_TO_TIFF", "latest"): 2, ("SLURM_Get_Results.py", None): 1,
        ("_SLURM_Image_Transfer.py", "2.1.0"): 1, ("cellpose", "v1.2.3"): 1}
    assert client.workflowAnalytics.get_task_failures() == {("SLURM_Get_Results.py", None): ["Unzip failed"]}

    # The conversion job's events are stored as the reference stores them.
    run = client.workflowTracker.repository.get(standalone.wf_id)
    assert (run.name, run.description, run.user, run.group) == ("conversion", -1, -1, -1)
    stored = client.workflowTracker.repository.get(conversion.task_id)
    assert stored.job_ids == [5678]
    assert stored.results[0]["stdout"] == "Submitted batch job 5678\n"

    # The views equal a rebuild from the log.
    biomero_rs.rebuild_views(db.url)
    assert tables(db) == before

    # initialize_analytics_system(reset_tables=True): BIOMERO's own reset path
    # drops the tracking and view tables, restarts and brings every listener up to date.
    client.initialize_analytics_system(reset_tables=True)
    assert tables(db) == before
    assert client.jobAccounting.get_jobs(user=52) == {52: [1234, 5678]}
    # ... and tracking goes on.
    wft = client.workflowTracker
    wf2 = wft.initiate_workflow("again", None, 7, 8)
    assert client.wfProgress.get_workflow(wf2).status == "INITIALIZING"
    after = tables(db)
    biomero_rs.rebuild_views(db.url)
    assert tables(db) == after


def test_find_analytics_start_id_uses_the_session(client, db):
    """SlurmClient._find_analytics_start_id runs its Postgres SQL through
    EngineManager.get_session() with a bound :cutoff (on SQLite the SQL
    fails and it falls back to 1, as with the reference)."""
    run_scripts_workflow(client)
    client.analytics_rebuild_start_time = "2000-01-01"
    assert client._find_analytics_start_id() == 1
    client.analytics_rebuild_start_time = (datetime.datetime.now(datetime.timezone.utc)
                                           + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    expected = 1  # no event after tomorrow: MIN(id) is NULL -> 1
    assert client._find_analytics_start_id() == expected
    if db.backend == "postgres":
        first = db.rows("SELECT MIN(id) FROM workflowtracker_events")[0][0]
        client.analytics_rebuild_start_time = "1999-01-01"
        assert client._find_analytics_start_id() == first


def test_memory_database_is_new_after_close_engine(activated, monkeypatch):
    """On sqlite:///:memory:, close_engine() ends the database: the next
    engine is a new, empty one (as a new SQLAlchemy engine is)."""
    url = "sqlite:///:memory:"
    monkeypatch.setenv("SQLALCHEMY_URL", url)
    biomero_rs.EngineManager.create_scoped_session()
    t = biomero_rs.WorkflowTracker()
    wf = t.initiate_workflow("a", "b", 1, 2)
    assert len(t.notification_log.select(1, 10)) == 1
    assert biomero_rs.WorkflowProgress().get_workflow(wf) is not None
    biomero_rs.EngineManager.close_engine()
    biomero_rs.EngineManager.create_scoped_session()
    fresh = biomero_rs.WorkflowTracker()
    assert fresh.notification_log.select(1, 10) == []
    assert biomero_rs.WorkflowProgress().get_workflow(wf) is None
    fresh.initiate_workflow("c", "d", 1, 2)
    assert len(fresh.notification_log.select(1, 10)) == 1


def test_reset_tables_on_the_memory_database(activated, monkeypatch):
    """SlurmClient(init_slurm=True) on sqlite:///:memory: (upstream's
    test_sqlalchemy_tables_exist): the reset drops the tables, closes the
    engine (a new, empty memory database) and starts again with every
    tracking and view table in place."""
    from sqlalchemy import text

    monkeypatch.setenv("SQLALCHEMY_URL", "sqlite:///:memory:")
    with mock.patch("biomero.slurm_client.Connection.create_session"), \
            mock.patch("biomero.slurm_client.Connection.open"), \
            mock.patch("biomero.slurm_client.Connection.put"), \
            mock.patch("biomero.slurm_client.Connection.run"):
        c = sc.SlurmClient(host="localhost", port=8022, user="slurm", slurm_data_path="d", slurm_images_path="i",
                           slurm_script_path="s", slurm_converters_path="c", slurm_script_repo="repo-url",
                           slurm_model_paths={"wf": "path"}, slurm_model_images={"wf": "image"},
                           slurm_model_repos={"wf": "https://github.com/example/workflow1"},
                           track_workflows=True, enable_job_accounting=True, enable_job_progress=True,
                           enable_workflow_analytics=True, init_slurm=True)
    with biomero_rs.EngineManager.get_session() as session:
        names = {r[0] for r in session.execute(text("SELECT name FROM sqlite_master WHERE type = :t"),
                                               {"t": "table"}).fetchall()}
    listeners = (c.jobAccounting, c.jobProgress, c.wfProgress, c.workflowAnalytics)
    assert {listener.recorder.tracking_table_name for listener in listeners} <= names
    assert set(VIEW_TABLES) <= names
    wf = c.workflowTracker.initiate_workflow("after reset", None, 1, 2)
    assert c.wfProgress.get_workflow(wf).status == "INITIALIZING"


def test_reset_tables_rebuilds_beside_the_live_tables(client, db):
    """BIOMERO's reset path (its DROP TABLE of the view and tracking tables,
    then pull_and_process of each listener) rebuilds the views beside the
    live tables: the tables are never dropped (an operator's index stays,
    a reader in another thread never sees fewer rows) and the rows are
    derived again (a row broken by hand is right afterwards)."""
    import threading

    run_scripts_workflow(client)
    before = tables(db)
    db.rows("SELECT 1")  # the driver is importable
    db.execute("CREATE INDEX operator_ix ON biomero_task_execution (status)")
    db.execute("UPDATE biomero_workflow_progress_view SET name = 'broken'")
    counts = {t: len(rows) for t, rows in before.items()}
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append({t: db.rows(f"SELECT COUNT(*) FROM {t}")[0][0] for t in counts})
            except Exception as e:  # a missing table would land here
                errors.append(repr(e))

    th = threading.Thread(target=reader)
    th.start()
    try:
        client.initialize_analytics_system(reset_tables=True)
    finally:
        stop.set()
        th.join()
    assert errors == []
    assert seen and all(s[t] >= counts[t] for s in seen for t in counts)
    assert tables(db) == before
    if db.backend == "sqlite":
        ix = db.rows("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'operator_ix'")
    else:
        ix = db.rows("SELECT indexname FROM pg_indexes WHERE indexname = 'operator_ix'")
    assert ix, "the view table was dropped"

