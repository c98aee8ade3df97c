"""Rebuild and catch-up of the views, on stores written by the reference
package (biomero 2.8.3 without listeners) and by biomero_rs."""

import json
import random
import uuid

import pytest

import biomero_rs
import reftool
from conftest import run_reference
from reftool import step


def workload(seed: int, workflows: int = 6):
    """BIOMERO-shaped commands with every naming rule of the projectors."""
    rng = random.Random(seed)
    steps = []
    job = 5000
    for w in range(workflows):
        wf = f"wf{w}"
        steps.append(step("initiate_workflow", f"workflow {w}", "v1", rng.randint(1, 3), rng.randint(10, 12), as_=wf))
        steps.append(step("start_workflow", reftool.Ref(wf)))
        names = ["_SLURM_Image_Transfer.py", "convert_omezarr", rng.choice(["cellpose", "stardist"]),
                 "SLURM_Get_Results.py", "SLURM_Import_Results.py"]
        for t, name in enumerate(names):
            task = f"{wf}t{t}"
            steps.append(step("add_task_to_workflow", reftool.Ref(wf), name, "1.0", {"i": t}, {}, as_=task))
            steps.append(step("start_task", reftool.Ref(task)))
            job += 1
            steps.append(step("add_job_id", reftool.Ref(task), str(job)))
            for _ in range(rng.randint(1, 3)):
                steps.append(step("update_task_status", reftool.Ref(task), rng.choice(["PENDING", "RUNNING"])))
                steps.append(step("update_task_progress", reftool.Ref(task), f"{rng.randint(0, 100)}%"))
            if name == "SLURM_Import_Results.py":
                steps.append(step("update_task_status", reftool.Ref(task), "IMPORTED"))
            if rng.random() < 0.2:
                steps.append(step("fail_task", reftool.Ref(task), "boom"))
                steps.append(step("fail_workflow", reftool.Ref(wf), "task failed"))
                break
            steps.append(step("update_task_status", reftool.Ref(task), "COMPLETED"))
            steps.append(step("complete_task", reftool.Ref(task), "done"))
        else:
            steps.append(step("complete_workflow", reftool.Ref(wf)))
    return steps


def rows(url):
    return {
        "jobs": [r.to_dict() for r in biomero_rs.JobAccounting(url).list_jobs()],
        "job_progress": [r.to_dict() for r in biomero_rs.JobProgress(url).list_job_progress()],
        "workflows": [r.to_dict() for r in biomero_rs.WorkflowProgress(url).list_workflows()],
        "tasks": [r.to_dict() for r in biomero_rs.WorkflowAnalytics(url).list_task_executions()],
    }


def comparable(table_rows, names):
    """Rows with ids replaced by workload names and times by their presence,
    in a stable order (two runs of one workload differ only in those)."""
    out = []
    for r in table_rows:
        r = dict(r)
        for k, v in r.items():
            if isinstance(v, uuid.UUID):
                r[k] = names[v]
            elif k in ("start_time", "end_time"):
                r[k] = v is not None
        out.append(r)
    return sorted(out, key=repr)


def write_with_reference(url, steps, refs=None):
    """The reference (no listeners) runs the steps; returns {name: UUID}."""
    payload = {"refs": {k: v.hex for k, v in refs.items()}, "workload": steps} if refs else steps
    out = run_reference("write", url, input=json.dumps(payload))
    return {name: uuid.UUID(h) for name, h in json.loads(out).items()}


def test_rebuild_of_a_reference_store_equals_the_live_projection(db, tmp_path):
    steps = workload(seed=7)
    # The reference (no listeners) writes the log.
    ref_ids = write_with_reference(db.sqlalchemy_url, steps)
    # Garbage rows that a rebuild must replace.
    biomero_rs.run_migrations(db.url)
    biomero_rs._core.execute_sql(db.url, 'INSERT INTO biomero_job_progress_view (slurm_job_id, status, progress) '
                                         "VALUES (99999, 'STALE', '1%')")
    seen = []
    n = biomero_rs.rebuild_views(db.url, progress=lambda done, total: seen.append((done, total)))
    assert n == len(biomero_rs.WorkflowTracker(db.url, views=[]).notification_log.select(1, 100_000))
    assert seen[0][0] == 0 and seen[-1] == (n, n)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    rebuilt = rows(db.url)

    # biomero_rs runs the same commands live, projecting in each command.
    live_url = f"sqlite:///{tmp_path / 'live.db'}"
    live_ids = reftool.run_workload(biomero_rs.WorkflowTracker(live_url), steps)
    live = rows(live_url)

    ref_names = {v: k for k, v in ref_ids.items()}
    live_names = {v: k for k, v in live_ids.items()}
    for table in live:
        assert comparable(rebuilt[table], ref_names) == comparable(live[table], live_names), table
    assert 99999 not in [r["slurm_job_id"] for r in rebuilt["job_progress"]]
    assert all(v["lag"] == 0 for v in biomero_rs.status(db.url)["views"].values())


def test_catch_up_applies_events_written_by_the_reference(db):
    steps = workload(seed=11, workflows=4)
    half = len(steps) // 2
    # biomero_rs with all views writes the first half ...
    tracker = biomero_rs.WorkflowTracker(db.url)
    ids = reftool.run_workload(tracker, steps[:half])
    # ... Python BIOMERO (no listeners) the rest, on the same aggregates.
    more = write_with_reference(db.sqlalchemy_url, steps[half:], refs=ids)
    lagging = biomero_rs.status(db.url)["views"]
    assert all(v["lag"] > 0 for v in lagging.values())

    applied = biomero_rs.catch_up(db.url)
    assert applied == lagging["job_accounting"]["lag"]
    caught_up = rows(db.url)
    biomero_rs.rebuild_views(db.url)
    assert rows(db.url) == caught_up
    assert all(v["lag"] == 0 for v in biomero_rs.status(db.url)["views"].values())
    assert set(more) >= set(ids)


def test_a_tracker_with_views_catches_up_before_its_first_command(db):
    writer = biomero_rs.WorkflowTracker(db.url, views=["job_accounting"])
    wf = writer.initiate_workflow("wf", "d", 5, 6)
    task = writer.add_task_to_workflow(wf, "cellpose", "1", {}, {})
    writer.add_job_id(task, "77")
    assert biomero_rs.WorkflowProgress(db.url).get_workflow(wf) is None
    full = biomero_rs.WorkflowTracker(db.url)  # all views: catches up on open
    assert biomero_rs.WorkflowProgress(db.url).get_workflow(wf).task == "cellpose"
    full.update_task_status(task, "RUNNING")
    assert biomero_rs.JobProgress(db.url).get_job_progress(77).status == "RUNNING"


def test_rebuild_of_chosen_views_leaves_the_others(db):
    t = biomero_rs.WorkflowTracker(db.url)
    wf = t.initiate_workflow("wf", "d", 5, 6)
    task = t.add_task_to_workflow(wf, "cellpose", "1", {}, {})
    t.add_job_id(task, "78")
    biomero_rs._core.execute_sql(db.url, "DELETE FROM biomero_job_view")
    biomero_rs.rebuild_views(db.url, views=["job_progress", "workflow_progress"])
    assert biomero_rs.JobAccounting(db.url).get_jobs() == {}
    biomero_rs.rebuild_views(db.url, views=["job_accounting"])
    assert biomero_rs.JobAccounting(db.url).get_jobs() == {5: [78]}


def test_progress_callback_errors_stop_the_rebuild_and_propagate(db):
    t = biomero_rs.WorkflowTracker(db.url)
    t.initiate_workflow("wf", "d", 1, 2)

    def boom(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        biomero_rs.rebuild_views(db.url, progress=boom)
    with pytest.raises(TypeError, match="progress"):
        biomero_rs.rebuild_views(db.url, progress=42)
    with pytest.raises(ValueError, match="views"):
        biomero_rs.rebuild_views(db.url, views=["no_such_view"])
    # A later catch-up completes the views.
    biomero_rs.catch_up(db.url)
    assert len(biomero_rs.WorkflowProgress(db.url).list_workflows()) == 1
