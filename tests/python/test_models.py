"""Row models and aggregates behave as Python values: equality, hashing,
pickling, copying, repr and JSON; aggregates compare and show themselves as
eventsourcing's do (checked against the reference package)."""

import copy
import datetime
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import biomero_rs



def _write(url):
    t = biomero_rs.WorkflowTracker(url)
    wf = t.initiate_workflow("Cellpose run", "v1", 3, 7)
    task = t.add_task_to_workflow(wf, "cellpose", "1.0", {"image_ids": [1, 2], "x": 2.5}, {"model": None})
    t.start_task(task)
    t.add_job_id(task, "12345")
    t.update_task_status(task, "RUNNING")
    t.update_task_progress(task, "43%")
    t.fail_task(task, "Out of memory")
    return t, wf, task


def _rows(url):
    return (
        biomero_rs.JobAccounting(url).list_jobs()
        + biomero_rs.JobProgress(url).list_job_progress()
        + biomero_rs.WorkflowProgress(url).list_workflows()
        + biomero_rs.WorkflowAnalytics(url).list_task_executions()
    )


def test_row_models_are_hashable_picklable_copyable_values(db):
    _write(db.url)
    rows = _rows(db.url)
    assert {type(r).__name__ for r in rows} == {"JobView", "JobProgressView", "WorkflowProgressView",
                                               "TaskExecution"}
    again = _rows(db.url)
    for row, same in zip(rows, again):
        assert row == same and row is not same
        assert hash(row) == hash(same)
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(row, protocol=protocol))
            assert back == row and type(back) is type(row) and back.to_dict() == row.to_dict()
        assert copy.copy(row) == row and copy.deepcopy(row) == row
    assert len(set(rows + again)) == len(rows)


def test_row_models_are_immutable(sqlite_db):
    _write(sqlite_db.url)
    for row in _rows(sqlite_db.url):
        name = next(iter(row.to_dict()))
        with pytest.raises(AttributeError):
            setattr(row, name, None)
        with pytest.raises(AttributeError):
            row.extra = 1


def test_row_repr_shows_every_column_and_evaluates_back(sqlite_db):
    _write(sqlite_db.url)
    for row in _rows(sqlite_db.url):
        text = repr(row)
        for name, value in row.to_dict().items():
            assert f"{name}={value!r}" in text
        ns = {type(row).__name__: type(row), "UUID": uuid.UUID, "datetime": datetime}
        assert eval(text.replace("(", "(**dict(", 1) + ")", ns) == row


def test_to_dict_json_is_accepted_by_json_dumps(db):
    _t, wf, task = _write(db.url)
    rows = _rows(db.url)
    with pytest.raises(TypeError):
        json.dumps([r.to_dict() for r in rows])  # UUID and datetime objects as today
    for row in rows:
        plain, js = row.to_dict(), row.to_dict(json=True)
        assert list(plain) == list(js)
        assert json.loads(json.dumps(js)) == js
        for k, v in plain.items():
            if isinstance(v, uuid.UUID):
                assert js[k] == str(v) and uuid.UUID(js[k]) == v
            elif isinstance(v, datetime.datetime):
                assert js[k] == v.isoformat() and datetime.datetime.fromisoformat(js[k]) == v
            else:
                assert js[k] == v
    wp = biomero_rs.WorkflowProgress(db.url).get_workflow(wf)
    assert wp.to_dict(json=True)["workflow_id"] == str(wf)


def test_row_models_cross_process_boundaries(sqlite_db):
    _write(sqlite_db.url)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        rows = pool.apply(_list_jobs, (sqlite_db.url,))
    assert rows == biomero_rs.JobAccounting(sqlite_db.url).list_jobs() and rows


def _list_jobs(url):
    return biomero_rs.JobAccounting(url).list_jobs()


def test_row_models_construct_by_keyword_and_check_arguments():
    tid = uuid.uuid4()
    row = biomero_rs.JobView(slurm_job_id=5, user=3, group=7, task_id=tid)
    assert row == biomero_rs.JobView(slurm_job_id=5, user=3, group=7, task_id=str(tid))
    assert biomero_rs.JobView(slurm_job_id=5, user=3, group=7).task_id is None
    with pytest.raises(TypeError, match="group"):
        biomero_rs.JobView(slurm_job_id=5, user=3)
    with pytest.raises(TypeError, match="slurm_job_id"):
        biomero_rs.JobView(slurm_job_id="5", user=3, group=7)
    with pytest.raises(TypeError, match="start_time"):
        biomero_rs.TaskExecution(task_id=tid, task_name="t", status="S", start_time="2024-01-01")
    aware = datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    te = biomero_rs.TaskExecution(task_id=tid, task_name="t", status="S", start_time=aware)
    assert te.start_time == datetime.datetime(2024, 1, 1, 10)


def test_aggregates_compare_by_state_pickle_copy_and_are_unhashable(db):
    t, wf, task = _write(db.url)
    for agg_id in (wf, task):
        a, b = t.repository.get(agg_id), t.repository.get(agg_id)
        assert a == b and a is not b and not (a != b)
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(a, protocol=protocol))
            assert back == a and type(back) is type(a) and repr(back) == repr(a)
        assert copy.copy(a) == a and copy.deepcopy(a) == a
        with pytest.raises(TypeError):
            hash(a)
        with pytest.raises(AttributeError):
            a.version = 99
    w, k = t.repository.get(wf), t.repository.get(task)
    assert w != k and w != 1
    t.update_task_status(task, "DONE")
    assert t.repository.get(task) != k


def test_aggregates_behave_like_the_reference(sqlite_db, tmp_path):
    """Equality, copy, pickle and repr, next to eventsourcing's aggregates on the same events."""
    _t, wf, task = _write(sqlite_db.url)
    script = f"""
import copy, json, pickle, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import reftool
runner, t = reftool.reference_tracker({sqlite_db.url!r})
out = {{}}
for name, i in (("wf", {str(wf)!r}), ("task", {str(task)!r})):
    a, b = t.repository.get(i), t.repository.get(i)
    out[name] = {{
        "repr": repr(a), "eq": a == b, "is": a is b,
        "pickle_eq": pickle.loads(pickle.dumps(a)) == a,
        "copy_eq": copy.copy(a) == a, "deepcopy_eq": copy.deepcopy(a) == a,
    }}
wf, task = t.repository.get({str(wf)!r}), t.repository.get({str(task)!r})
out["cross"] = wf == task
print(json.dumps(out))
"""
    path = tmp_path / "ref_models.py"
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    t = biomero_rs.WorkflowTracker(sqlite_db.url)
    for name, i in (("wf", wf), ("task", task)):
        a, b = t.repository.get(i), t.repository.get(i)
        ours = {
            "repr": repr(a), "eq": a == b, "is": a is b,
            "pickle_eq": pickle.loads(pickle.dumps(a)) == a,
            "copy_eq": copy.copy(a) == a, "deepcopy_eq": copy.deepcopy(a) == a,
        }
        assert ours == ref[name]
    assert (t.repository.get(wf) == t.repository.get(task)) == ref["cross"]
