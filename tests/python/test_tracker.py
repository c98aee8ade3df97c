"""The Python API of biomero_rs's WorkflowTracker, end to end on each backend
(docs/storage.md): every command and event, the notification log, the
aggregates' state, argument checking, URLs, logging, the memory database."""

import datetime
import json
import logging
import re
import threading
import uuid
from types import SimpleNamespace

import pytest

import biomero_rs
from biomero_rs import (
    AggregateNotFoundError,
    BiomeroError,
    DatabaseError,
    WorkflowTracker,
)

UTC = datetime.timezone.utc
P = "biomero.eventsourcing:"

# docs/storage.md: the keys of each event's state, in order.
STATE_KEYS = {
    P + "WorkflowRun.WorkflowInitiated": ["timestamp", "originator_topic", "name", "description", "user", "group"],
    P + "WorkflowRun.TaskAdded": ["timestamp", "task_id"],
    P + "WorkflowRun.WorkflowStarted": ["timestamp"],
    P + "WorkflowRun.WorkflowCompleted": ["timestamp"],
    P + "WorkflowRun.WorkflowFailed": ["timestamp", "error_message"],
    P + "Task.TaskCreated": ["timestamp", "originator_topic", "workflow_id", "task_name", "task_version",
                             "input_data", "params"],
    P + "Task.JobIdAdded": ["timestamp", "job_id"],
    P + "Task.StatusUpdated": ["timestamp", "status"],
    P + "Task.ProgressUpdated": ["timestamp", "progress"],
    P + "Task.ResultAdded": ["timestamp", "result"],
    P + "Task.TaskStarted": ["timestamp"],
    P + "Task.TaskCompleted": ["timestamp", "result"],
    P + "Task.TaskFailed": ["timestamp", "error_message"],
}


def now():
    return datetime.datetime.now(UTC)


def all_notifications(tracker):
    return tracker.notification_log.select(1, 1_000_000)


def load_state(n):
    """The state bytes as Python's json reads them (key order kept)."""
    return json.loads(n.state.decode("utf-8"), object_pairs_hook=dict)


def ts(text_or_tagged):
    if isinstance(text_or_tagged, dict):
        assert text_or_tagged["_type_"] == "datetime_iso"
        text_or_tagged = text_or_tagged["_data_"]
    return datetime.datetime.fromisoformat(text_or_tagged)


def assert_aware_utc(t):
    assert isinstance(t, datetime.datetime), t
    assert t.tzinfo is not None and t.utcoffset() == datetime.timedelta(0), t


def fabric_result(**kw):
    from fabric import Result

    return Result(connection=None, **kw)


@pytest.fixture
def tracker(db):
    return WorkflowTracker(db.url)


# ------------------------------------------------------------------ commands


def run_every_command(tr):
    """Every command once or more; returns the ids and what was passed."""
    wf = tr.initiate_workflow("Cellpose ü", "segments cells", 3, 7)
    t1 = tr.add_task_to_workflow(wf, "_SLURM_Image_Transfer.py", "1.0",
                                 {"ids": [1, 2], "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)},
                                 {"x": 1.5, "nested": {"u": uuid.UUID(int=5)}})
    t2 = tr.add_task_to_workflow(wf, "cellpose", None, {}, {})
    tr.start_workflow(wf)
    tr.start_task(t1)
    tr.add_job_id(t1, "12345")
    tr.add_job_id(t1, 678)  # stored as an int, as the reference stores it
    tr.update_task_status(t1, "PENDING")
    tr.update_task_progress(t1, "10%")
    tr.update_task_status(t1, "COMPLETED")
    tr.update_task_progress(t1, "100%")
    tr.add_result(t1, fabric_result(command="sbatch job.sh", env={"A": "1"},
                                     stdout="Submitted batch job 12345\n", stderr=""))
    tr.add_result(t1, {"command": "squeue", "env": {}, "stdout": "", "stderr": "warn"})
    tr.complete_task(t1, "Task completed ✓")
    tr.start_task(t2)
    tr.fail_task(t2, "boom")
    tr.fail_workflow(wf, "workflow failed")
    wf2 = tr.initiate_workflow("second", None, 1, 2)
    tr.start_workflow(wf2)
    tr.complete_workflow(wf2)
    return wf, t1, t2, wf2


EXPECTED_LOG = [
    # (aggregate, version, topic) in commit order
    ("wf", 0, "WorkflowRun.WorkflowInitiated"),
    ("t1", 0, "Task.TaskCreated"),
    ("wf", 1, "WorkflowRun.TaskAdded"),
    ("t2", 0, "Task.TaskCreated"),
    ("wf", 2, "WorkflowRun.TaskAdded"),
    ("wf", 3, "WorkflowRun.WorkflowStarted"),
    ("t1", 1, "Task.TaskStarted"),
    ("t1", 2, "Task.JobIdAdded"),
    ("t1", 3, "Task.JobIdAdded"),
    ("t1", 4, "Task.StatusUpdated"),
    ("t1", 5, "Task.ProgressUpdated"),
    ("t1", 6, "Task.StatusUpdated"),
    ("t1", 7, "Task.ProgressUpdated"),
    ("t1", 8, "Task.ResultAdded"),
    ("t1", 9, "Task.ResultAdded"),
    ("t1", 10, "Task.TaskCompleted"),
    ("t2", 1, "Task.TaskStarted"),
    ("t2", 2, "Task.TaskFailed"),
    ("wf", 4, "WorkflowRun.WorkflowFailed"),
    ("wf2", 0, "WorkflowRun.WorkflowInitiated"),
    ("wf2", 1, "WorkflowRun.WorkflowStarted"),
    ("wf2", 2, "WorkflowRun.WorkflowCompleted"),
]


def test_every_command_writes_its_events_in_order(db, tracker):
    wf, t1, t2, wf2 = run_every_command(tracker)
    ids = {"wf": wf, "t1": t1, "t2": t2, "wf2": wf2}
    for v in ids.values():
        assert isinstance(v, uuid.UUID)
    assert len(set(ids.values())) == 4

    log = all_notifications(tracker)
    got = [(n.originator_id, n.originator_version, n.topic) for n in log]
    want = [(ids[a], v, P + t) for a, v, t in EXPECTED_LOG]
    assert got == want
    assert {P + t for _, _, t in EXPECTED_LOG} == set(STATE_KEYS), "every event type is covered"
    assert [n.id for n in log] == list(range(1, len(want) + 1))
    for n in log:
        assert isinstance(n.originator_id, uuid.UUID)
        assert isinstance(n.state, bytes)

    # The state bytes: key order of docs/storage.md, compact JSON exactly as
    # Python's json module writes it, typed values wrapped.
    for n in log:
        state = load_state(n)
        assert list(state) == STATE_KEYS[n.topic], n.topic
        again = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert again == n.state, n.topic
        assert state["timestamp"]["_type_"] == "datetime_iso"
        assert_aware_utc(ts(state["timestamp"]))
        if "originator_topic" in state:
            assert state["originator_topic"] == n.topic.rsplit(".", 1)[0]
    by_topic = {}
    for n in log:
        by_topic.setdefault(n.topic.split(":")[1], []).append(load_state(n))
    assert by_topic["Task.TaskCreated"][0]["workflow_id"] == {"_type_": "uuid_hex", "_data_": wf.hex}
    assert by_topic["Task.TaskCreated"][0]["params"] == {
        "x": 1.5, "nested": {"u": {"_type_": "uuid_hex", "_data_": uuid.UUID(int=5).hex}}}
    assert by_topic["Task.TaskCreated"][0]["input_data"]["when"] == {
        "_type_": "datetime_iso", "_data_": "2024-05-06T07:08:09+00:00"}
    assert by_topic["Task.TaskCreated"][1]["task_version"] is None
    assert [s["task_id"] for s in by_topic["WorkflowRun.TaskAdded"]] == [
        {"_type_": "uuid_hex", "_data_": t.hex} for t in (t1, t2)]
    assert [s["job_id"] for s in by_topic["Task.JobIdAdded"]] == ["12345", 678]
    assert by_topic["Task.ResultAdded"][0]["result"] == {
        "command": "sbatch job.sh", "env": {"A": "1"}, "stdout": "Submitted batch job 12345\n", "stderr": ""}
    assert list(by_topic["Task.ResultAdded"][1]["result"]) == ["command", "env", "stdout", "stderr"]
    assert by_topic["Task.TaskCompleted"][0]["result"] == "Task completed ✓"
    assert "✓".encode() in log[15].state, "non-ASCII is written as is"
    assert by_topic["WorkflowRun.WorkflowInitiated"][1]["description"] is None

    # The same rows, read from the table with the backend's own driver.
    rows = db.rows("SELECT id, originator_id, originator_version, topic, state "
                   "FROM workflowtracker_events ORDER BY id")
    assert len(rows) == len(log)
    for (rid, oid, over, topic, state), n in zip(rows, log):
        if db.backend == "sqlite":
            assert isinstance(oid, bytes) and len(oid) == 16
            oid = uuid.UUID(bytes=oid)
        else:
            oid = uuid.UUID(str(oid))
        assert (rid, oid, over, topic, bytes(state)) == (
            n.id, n.originator_id, n.originator_version, n.topic, n.state)


def test_notification_log_select_pages(tracker):
    wf = tracker.initiate_workflow("w", "d", 1, 1)
    for i in range(4):
        tracker.add_task_to_workflow(wf, f"t{i}", "1", {}, {})
    log = all_notifications(tracker)
    assert len(log) == 9
    assert [n.id for n in tracker.notification_log.select(3, 2)] == [3, 4]
    assert [n.id for n in tracker.notification_log.select(8, 10)] == [8, 9]
    assert tracker.notification_log.select(10, 10) == []
    assert tracker.notification_log.select(1, 0) == []
    page = tracker.notification_log.select(2, 1)[0]
    assert (page.id, page.topic, page.state) == (log[1].id, log[1].topic, log[1].state)
    with pytest.raises(ValueError, match="start"):
        tracker.notification_log.select(0, 10)
    with pytest.raises(ValueError, match="limit"):
        tracker.notification_log.select(1, -1)
    with pytest.raises(TypeError, match="start"):
        tracker.notification_log.select("1", 10)


# --------------------------------------------------------------------- state


def test_repository_state(tracker):
    before = now() - datetime.timedelta(milliseconds=1)
    wf, t1, t2, wf2 = run_every_command(tracker)
    after = now() + datetime.timedelta(milliseconds=1)
    log = all_notifications(tracker)

    def stamps(agg_id):
        return [ts(load_state(n)["timestamp"]) for n in log if n.originator_id == agg_id]

    w = tracker.repository.get(wf)
    assert type(w).__name__ == "WorkflowRun"
    assert isinstance(w, biomero_rs.WorkflowRun)
    assert w.id == wf and isinstance(w.id, uuid.UUID)
    assert w.version == 4
    assert (w.name, w.description, w.user, w.group) == ("Cellpose ü", "segments cells", 3, 7)
    assert w.tasks == [t1, t2] and all(isinstance(x, uuid.UUID) for x in w.tasks)
    for t in (w.created_on, w.modified_on):
        assert_aware_utc(t)
        assert before <= t <= after
    assert w.created_on == stamps(wf)[0]
    assert w.modified_on == stamps(wf)[-1]
    assert w.created_on < w.modified_on

    w2 = tracker.repository.get(wf2)
    assert (w2.version, w2.description, w2.tasks) == (2, None, [])

    t = tracker.repository.get(t1)
    assert type(t).__name__ == "Task"
    assert isinstance(t, biomero_rs.Task)
    assert t.id == t1 and t.workflow_id == wf and isinstance(t.workflow_id, uuid.UUID)
    assert t.version == 10
    assert (t.task_name, t.task_version) == ("_SLURM_Image_Transfer.py", "1.0")
    assert t.input_data == {"ids": [1, 2], "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)}
    assert list(t.input_data) == ["ids", "when"]
    assert t.params == {"x": 1.5, "nested": {"u": uuid.UUID(int=5)}}
    assert isinstance(t.params["nested"]["u"], uuid.UUID)
    assert t.job_ids == ["12345", 678]
    assert t.results == [
        {"command": "sbatch job.sh", "env": {"A": "1"}, "stdout": "Submitted batch job 12345\n", "stderr": ""},
        {"command": "squeue", "env": {}, "stdout": "", "stderr": "warn"},
    ]
    assert all(type(r) is dict for r in t.results)
    assert t.result_message == "Task completed ✓"
    assert t.status == "COMPLETED"
    assert t.progress == "100%"
    assert t.created_on == stamps(t1)[0] and t.modified_on == stamps(t1)[-1]
    assert_aware_utc(t.created_on)
    assert_aware_utc(t.modified_on)

    t_2 = tracker.repository.get(t2)
    assert (t_2.version, t_2.task_version, t_2.input_data, t_2.params) == (2, None, {}, {})
    assert (t_2.job_ids, t_2.results, t_2.status, t_2.progress) == ([], [], None, None)
    assert t_2.result_message == "boom"  # fail_task sets the result message

    # repository.get returns fresh objects: an old one does not change.
    tracker.update_task_status(t1, "AGAIN")
    assert t.status == "COMPLETED" and tracker.repository.get(t1).status == "AGAIN"
    assert tracker.repository.get(t1).version == 11


def test_fresh_task_and_workflow(tracker):
    t0 = now() - datetime.timedelta(milliseconds=1)
    wf = tracker.initiate_workflow("w", "", 0, 0)
    t = tracker.add_task_to_workflow(wf, "n", "v", {"k": None}, {"p": [True, False]})
    task = tracker.repository.get(t)
    assert task.version == 0 and task.created_on == task.modified_on
    assert t0 <= task.created_on <= now()
    assert (task.job_ids, task.results, task.result_message, task.status, task.progress) == ([], [], None, None, None)
    assert task.input_data == {"k": None} and task.params == {"p": [True, False]}
    w = tracker.repository.get(wf)
    assert (w.version, w.description, w.user, w.group, w.tasks) == (1, "", 0, 0, [t])
    assert w.modified_on >= w.created_on


def test_str_uuids_are_accepted(tracker):
    wf = tracker.initiate_workflow("w", "d", 1, 2)
    forms = [str(wf), wf.hex, str(wf).upper(), "urn:uuid:" + str(wf), "{" + str(wf) + "}"]
    for f in forms:
        assert tracker.repository.get(f).id == wf
    t = tracker.add_task_to_workflow(wf.hex, "t", "1", {}, {})
    assert tracker.repository.get(wf).tasks == [t]
    ts_ = str(t)
    tracker.start_workflow(str(wf))
    tracker.start_task(ts_)
    tracker.add_job_id(t.hex, "1")
    tracker.update_task_status(ts_.upper(), "RUNNING")
    tracker.update_task_progress(ts_, "5%")
    tracker.add_result(ts_, {"command": "c", "env": {}, "stdout": "", "stderr": ""})
    tracker.complete_task(ts_, "ok")
    tracker.fail_task(ts_, "late failure")
    tracker.complete_workflow(str(wf))
    tracker.fail_workflow(str(wf), "x")
    assert tracker.repository.get(t).version == 7
    assert tracker.repository.get(wf).version == 4
    assert wf in tracker.repository and str(wf) in tracker.repository
    assert uuid.uuid4() not in tracker.repository


def test_keyword_arguments_use_the_reference_names(tracker):
    tr = tracker
    wf = tr.initiate_workflow(name="n", description=None, user=1, group=2)
    t = tr.add_task_to_workflow(workflow_id=wf, task_name="t", task_version="1",
                                input_data={"a": 1}, kwargs={"b": 2})
    tr.start_workflow(workflow_id=wf)
    tr.start_task(task_id=t)
    tr.add_job_id(task_id=t, slurm_job_id="5")
    tr.add_result(task_id=t, result={"command": "c", "env": {}, "stdout": "", "stderr": ""})
    tr.update_task_status(task_id=t, status="RUNNING")
    tr.update_task_progress(task_id=t, progress="1%")
    tr.complete_task(task_id=t, message="m")
    tr.fail_task(task_id=t, error_message="e")
    tr.complete_workflow(workflow_id=wf)
    tr.fail_workflow(workflow_id=wf, error_message="e")
    task = tr.repository.get(aggregate_id=t)
    assert (task.params, task.input_data, task.version, task.result_message) == ({"b": 2}, {"a": 1}, 7, "e")
    assert tr.repository.get(wf).version == 4
    log = tr.notification_log.select(start=1, limit=3)
    assert [n.id for n in log] == [1, 2, 3]


# -------------------------------------------------------------------- errors


def _check(fn, exc, *patterns, forbidden=()):
    """Calls fn; returns None when it raised exc with a message matching every
    pattern (regex) and containing none of `forbidden`, else a description."""
    try:
        fn()
    except exc as e:
        msg = str(e)
        for p in patterns:
            if not re.search(p, msg):
                return f"message {msg!r} does not match {p!r}"
        for f in forbidden:
            if f in msg:
                return f"message {msg!r} shows {f!r}"
        return None
    except Exception as e:  # noqa: BLE001
        return f"raised {type(e).__name__}: {e}, not {exc.__name__}"
    return f"did not raise {exc.__name__}"


def _run_cases(cases):
    failures = []
    for name, fn, exc, *patterns in cases:
        problem = _check(fn, exc, *patterns)
        if problem:
            failures.append(f"{name}: {problem}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def populated(tracker):
    wf = tracker.initiate_workflow("w", "d", 1, 2)
    t = tracker.add_task_to_workflow(wf, "t", "1", {"a": 1}, {})
    tracker.add_job_id(t, "7")
    return tracker, wf, t


def _assert_nothing_written(tracker, before, wf, t):
    assert len(all_notifications(tracker)) == before
    assert tracker.repository.get(wf).version == 1
    assert tracker.repository.get(t).version == 1


def test_unknown_ids(populated):
    tr, wf, t = populated
    before = len(all_notifications(tr))
    u = uuid.uuid4()
    res = {"command": "c", "env": {}, "stdout": "", "stderr": ""}
    calls = {
        "repository.get": lambda: tr.repository.get(u),
        "add_task_to_workflow": lambda: tr.add_task_to_workflow(u, "t", "1", {}, {}),
        "start_workflow": lambda: tr.start_workflow(u),
        "complete_workflow": lambda: tr.complete_workflow(u),
        "fail_workflow": lambda: tr.fail_workflow(u, "e"),
        "start_task": lambda: tr.start_task(u),
        "complete_task": lambda: tr.complete_task(u, "m"),
        "fail_task": lambda: tr.fail_task(u, "e"),
        "add_job_id": lambda: tr.add_job_id(u, "1"),
        "add_result": lambda: tr.add_result(u, res),
        "update_task_status": lambda: tr.update_task_status(u, "s"),
        "update_task_progress": lambda: tr.update_task_progress(u, "p"),
    }
    _run_cases([(name, fn, AggregateNotFoundError, re.escape(str(u))) for name, fn in calls.items()])
    for fn in calls.values():
        with pytest.raises(KeyError):
            fn()
        with pytest.raises(BiomeroError):
            fn()
    assert issubclass(AggregateNotFoundError, KeyError)
    # add_task_to_workflow of an unknown workflow leaves no orphan TaskCreated.
    _assert_nothing_written(tr, before, wf, t)


def test_wrong_aggregate_kind_is_refused(populated):
    tr, wf, t = populated
    before = len(all_notifications(tr))
    _run_cases([
        ("start_task(workflow)", lambda: tr.start_task(wf), ValueError),
        ("add_job_id(workflow)", lambda: tr.add_job_id(wf, "1"), ValueError),
        ("update_task_status(workflow)", lambda: tr.update_task_status(wf, "x"), ValueError),
        ("start_workflow(task)", lambda: tr.start_workflow(t), ValueError),
        ("fail_workflow(task)", lambda: tr.fail_workflow(t, "x"), ValueError),
        ("add_task_to_workflow(task)", lambda: tr.add_task_to_workflow(t, "n", "1", {}, {}),
         ValueError, "workflow_id"),
    ])
    _assert_nothing_written(tr, before, wf, t)


def test_malformed_uuids_name_the_argument(populated):
    tr, wf, t = populated
    before = len(all_notifications(tr))
    cases = []
    for bad in ["not-a-uuid", "", "1234", wf.hex + "0", "g" * 32]:
        cases += [
            (f"get {bad!r}", lambda b=bad: tr.repository.get(b), ValueError, "aggregate_id"),
            (f"add_task {bad!r}", lambda b=bad: tr.add_task_to_workflow(b, "t", "1", {}, {}),
             ValueError, "workflow_id"),
            (f"start_workflow {bad!r}", lambda b=bad: tr.start_workflow(b), ValueError, "workflow_id"),
            (f"complete_workflow {bad!r}", lambda b=bad: tr.complete_workflow(b), ValueError, "workflow_id"),
            (f"fail_workflow {bad!r}", lambda b=bad: tr.fail_workflow(b, "e"), ValueError, "workflow_id"),
            (f"start_task {bad!r}", lambda b=bad: tr.start_task(b), ValueError, "task_id"),
            (f"complete_task {bad!r}", lambda b=bad: tr.complete_task(b, "m"), ValueError, "task_id"),
            (f"fail_task {bad!r}", lambda b=bad: tr.fail_task(b, "e"), ValueError, "task_id"),
            (f"add_job_id {bad!r}", lambda b=bad: tr.add_job_id(b, "1"), ValueError, "task_id"),
            (f"update_task_status {bad!r}", lambda b=bad: tr.update_task_status(b, "s"), ValueError, "task_id"),
            (f"update_task_progress {bad!r}", lambda b=bad: tr.update_task_progress(b, "p"),
             ValueError, "task_id"),
            (f"add_result {bad!r}", lambda b=bad: tr.add_result(b, {"command": "", "env": {}, "stdout": "",
                                                                     "stderr": ""}), ValueError, "task_id"),
        ]
    _run_cases(cases)
    _assert_nothing_written(tr, before, wf, t)


def test_wrong_types_name_the_argument(populated):
    tr, wf, t = populated
    before = len(all_notifications(tr))
    res = {"command": "c", "env": {}, "stdout": "", "stderr": ""}
    _run_cases([
        ("initiate name int", lambda: tr.initiate_workflow(5, "d", 1, 2), TypeError, "name"),
        ("initiate name None", lambda: tr.initiate_workflow(None, "d", 1, 2), TypeError, "name"),
        ("initiate description object", lambda: tr.initiate_workflow("n", object(), 1, 2), TypeError, "description"),
        ("initiate user str", lambda: tr.initiate_workflow("n", "d", "1", 2), TypeError, "user"),
        ("initiate user bool", lambda: tr.initiate_workflow("n", "d", True, 2), TypeError, "user"),
        ("initiate user None", lambda: tr.initiate_workflow("n", "d", None, 2), TypeError, "user"),
        ("initiate group float", lambda: tr.initiate_workflow("n", "d", 1, 2.0), TypeError, "group"),
        ("initiate user beyond 32 bits", lambda: tr.initiate_workflow("n", "d", 2**40, 2), ValueError, "user"),
        ("initiate group beyond 64 bits", lambda: tr.initiate_workflow("n", "d", 1, 2**70), ValueError, "group"),
        ("add_task workflow_id int", lambda: tr.add_task_to_workflow(5, "t", "1", {}, {}),
         TypeError, "workflow_id"),
        ("add_task workflow_id None", lambda: tr.add_task_to_workflow(None, "t", "1", {}, {}),
         TypeError, "workflow_id"),
        ("add_task task_name None", lambda: tr.add_task_to_workflow(wf, None, "1", {}, {}),
         TypeError, "task_name"),
        ("add_task task_name bytes", lambda: tr.add_task_to_workflow(wf, b"t", "1", {}, {}),
         TypeError, "task_name"),
        ("add_task task_version int", lambda: tr.add_task_to_workflow(wf, "t", 1, {}, {}),
         TypeError, "task_version"),
        ("start_workflow bytes", lambda: tr.start_workflow(wf.bytes), TypeError, "workflow_id"),
        ("start_task int", lambda: tr.start_task(t.int), TypeError, "task_id"),
        ("fail_workflow message set", lambda: tr.fail_workflow(wf, {5}), TypeError, "error_message"),
        ("complete_task message bytes", lambda: tr.complete_task(t, b"m"), TypeError, "message"),
        ("fail_task message int", lambda: tr.fail_task(t, 5), TypeError, "error_message"),
        ("add_job_id None", lambda: tr.add_job_id(t, None), TypeError, "slurm_job_id"),
        ("add_job_id float", lambda: tr.add_job_id(t, 1.5), TypeError, "slurm_job_id"),
        ("add_job_id empty", lambda: tr.add_job_id(t, ""), ValueError, "slurm_job_id"),
        ("update_task_status None", lambda: tr.update_task_status(t, None), TypeError, "status"),
        ("update_task_status int", lambda: tr.update_task_status(t, 3), TypeError, "status"),
        ("update_task_progress int", lambda: tr.update_task_progress(t, 50), TypeError, "progress"),
        ("add_result int", lambda: tr.add_result(t, 42), TypeError, "result"),
        ("add_result None", lambda: tr.add_result(t, None), TypeError, "result"),
        ("add_result str", lambda: tr.add_result(t, "Submitted batch job 1"), TypeError, "result"),
        ("add_result list", lambda: tr.add_result(t, ["ls", {}, "", ""]), TypeError, "result"),
        ("add_result missing key", lambda: tr.add_result(t, {"command": "c", "env": {}, "stdout": ""}),
         ValueError, "result", "stderr"),
        ("add_result object missing attr",
         lambda: tr.add_result(t, SimpleNamespace(command="c", env={}, stdout="")), TypeError, "result"),
        ("add_result env not storable", lambda: tr.add_result(t, dict(res, env={"k": object()})),
         TypeError, r"result\.env", "object"),
        ("repository.get int", lambda: tr.repository.get(5), TypeError, "aggregate_id"),
        ("repository.get None", lambda: tr.repository.get(None), TypeError, "aggregate_id"),
    ])
    _assert_nothing_written(tr, before, wf, t)


KEY = r"\[['\"]{}['\"]\]"


def test_unstorable_values_are_refused_with_their_key_path(populated):
    tr, wf, t = populated
    before = len(all_notifications(tr))

    def add(input_data, kwargs):
        return lambda: tr.add_task_to_workflow(wf, "t", "1", input_data, kwargs)

    deep = []
    for _ in range(300):
        deep = [deep]
    _run_cases([
        ("set in list", add({"a": [1, 2, {3}]}, {}), TypeError,
         r"input_data" + KEY.format("a") + r"\[2\]", "set"),
        ("object nested", add({}, {"outer": {"inner": object()}}), TypeError,
         r"kwargs" + KEY.format("outer") + KEY.format("inner"), "object"),
        ("bytes", add({"b": b"x"}, {}), TypeError, r"input_data" + KEY.format("b"), "bytes"),
        ("date (not datetime)", add({"d": datetime.date(2024, 1, 1)}, {}), TypeError,
         r"input_data" + KEY.format("d")),
        ("non-str key", add({1: "x"}, {}), TypeError, "input_data"),
        ("tuple key", add({}, {("a",): 1}), TypeError, "kwargs"),
        ("whole input_data unstorable", add(object(), {}), TypeError, "input_data"),
        ("reserved typed-value shape", add({"x": {"_type_": "uuid_hex", "_data_": "00"}}, {}),
         ValueError, r"input_data" + KEY.format("x")),
        ("lone surrogate value", add({"s": "\ud800"}, {}), ValueError, "input_data"),
        ("lone surrogate in name", lambda: tr.initiate_workflow("\udcff", "d", 1, 2), ValueError, "name"),
        ("nested too deep", add({"deep": deep}, {}), ValueError, "input_data"),
    ])
    _assert_nothing_written(tr, before, wf, t)


def test_values_that_python_stores_are_kept(tracker):
    """Values the reference stores (its json module plus uuid/datetime/decimal
    transcodings) come back equal, with dict key order kept."""
    import decimal

    wf = tracker.initiate_workflow("w", "d", 1, 2)
    inp = {
        "z": 1, "a": 2, "big": 2**100, "neg": -(2**64), "i64": [2**63 - 1, -(2**63)],
        "floats": [0.1, 1e-07, 1e16, -0.0, 5e-324, 1.7976931348623157e308],
        "inf": float("inf"), "ninf": float("-inf"),
        "uni": "ü 漢字 🎉 \u2028 \x7f \x00 \"\\\n",
        "naive": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "tz": datetime.datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=datetime.timezone(datetime.timedelta(hours=-3))),
        "dec": decimal.Decimal("1.10"),
        "tuple": (1, "a"),
        "empty": [{}, []],
        "nan": float("nan"),
    }
    t = tracker.add_task_to_workflow(wf, "t", "1", inp, {"u": [uuid.UUID(int=1)]})
    got = tracker.repository.get(t).input_data
    assert list(got) == list(inp)
    nan = got.pop("nan")
    assert nan != nan
    want = dict(inp, tuple=[1, "a"])
    del want["nan"]
    assert got == want
    assert [type(x) for x in got["floats"]] == [float] * 6
    assert str(got["floats"][3]) == "-0.0"
    assert got["naive"].tzinfo is None
    assert got["tz"].utcoffset() == datetime.timedelta(hours=-3)
    assert isinstance(got["dec"], decimal.Decimal) and str(got["dec"]) == "1.10"
    assert tracker.repository.get(t).params == {"u": [uuid.UUID(int=1)]}


# ---------------------------------------------------------------------- URLs


def test_bad_urls_name_the_scheme_and_hide_the_password():
    secret = "hunter2secret"
    failures = []
    for url, fragment in [
        (f"mysql://root:{secret}@localhost/db", "mysql"),
        (f"mysql+pymysql://root:{secret}@localhost/db", "mysql+pymysql"),
        (f"postgresq://u:{secret}@localhost/db", "postgresq"),
        (f"oracle://u:{secret}@h/db", "oracle"),
        ("", "url"),
        ("   ", "url"),
        ("biomero.db", "url"),
        (f"http://u:{secret}@example.org/", "http"),
        (f"postgresql://u:{secret}@localhost:notaport/db", "port"),
    ]:
        problem = _check(lambda: WorkflowTracker(url), ValueError, re.escape(fragment), forbidden=(secret,))
        if problem:
            failures.append(f"{url!r}: {problem}")
    for bad in [5, b"sqlite://", ["sqlite://"]]:
        problem = _check(lambda: WorkflowTracker(bad), TypeError, "url")
        if problem:
            failures.append(f"{bad!r}: {problem}")
    assert not failures, "\n".join(failures)


def test_unencoded_special_characters_in_password_never_shown():
    # The user info ends at the last '@', so these parse (and fail to connect,
    # or fail on the bad port) without any part of the password in the message.
    for url in [
        "postgresql://u:hunter/2@127.0.0.1:1/db",
        "postgresql://u:hun?ter@127.0.0.1:1/db",
        "postgresql://u:hun@ter@127.0.0.1:notaport/db",
    ]:
        with pytest.raises((ValueError, DatabaseError)) as ei:
            WorkflowTracker(url)
        msg = str(ei.value)
        assert "hunter" not in msg and "hun" not in msg and "ter@" not in msg, msg


def test_connection_failure_is_a_database_error_without_password(caplog):
    caplog.set_level(logging.DEBUG)
    biomero_rs.reset_logging_cache()
    secret = "s3cr3t-pw"
    try:
        with pytest.raises(DatabaseError) as ei:
            WorkflowTracker(f"postgresql://bio:{secret}@127.0.0.1:1/biomero?connect_timeout=1")
    finally:
        caplog.set_level(logging.WARNING)
        biomero_rs.reset_logging_cache()
    assert isinstance(ei.value, BiomeroError)
    msg = str(ei.value)
    assert "postgres" in msg.lower() and secret not in msg
    assert all(secret not in r.getMessage() for r in caplog.records)


@pytest.mark.skipif("postgres" not in __import__("conftest").BACKENDS, reason="needs the Postgres server")
def test_server_refusal_is_a_database_error_without_password():
    from conftest import PG_SERVER

    secret = "pw-" + uuid.uuid4().hex[:8]
    scheme, rest = PG_SERVER.split("://", 1)
    user = rest.rsplit("@", 1)[0].split(":", 1)[0] if "@" in rest else "postgres"
    url = f"{scheme}://{user}:{secret}@{rest.rsplit('@', 1)[-1]}"
    with pytest.raises(DatabaseError) as ei:
        WorkflowTracker(url + "/no_such_database_" + uuid.uuid4().hex[:8])
    assert "no_such_database" in str(ei.value) and secret not in str(ei.value)


def test_url_falls_back_to_sqlalchemy_url(db, monkeypatch):
    monkeypatch.setenv("SQLALCHEMY_URL", db.url)
    wf = WorkflowTracker().initiate_workflow("from env", "d", 1, 2)
    assert WorkflowTracker(db.url).repository.get(wf).name == "from env"
    assert db.rows("SELECT COUNT(*) FROM workflowtracker_events")[0][0] == 1
    # An explicit url wins over the environment.
    monkeypatch.setenv("SQLALCHEMY_URL", "mysql://u:pw@h/db")
    assert WorkflowTracker(db.url).repository.get(wf).name == "from env"
    assert WorkflowTracker(url=db.url).repository.get(wf).name == "from env"
    with pytest.raises(ValueError, match="mysql"):
        WorkflowTracker()
    monkeypatch.delenv("SQLALCHEMY_URL")
    with pytest.raises(ValueError, match="SQLALCHEMY_URL"):
        WorkflowTracker()


def test_persistence_module(db, monkeypatch):
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    with pytest.raises(ValueError, match="PERSISTENCE_MODULE") as ei:
        WorkflowTracker(db.url)
    assert "eventsourcing.popo" in str(ei.value)
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing_sqlalchemy")
    wf = WorkflowTracker(db.url).initiate_workflow("w", "d", 1, 2)
    monkeypatch.delenv("PERSISTENCE_MODULE")
    assert WorkflowTracker(db.url).repository.get(wf).version == 0


def test_memory_database_is_one_database_per_process():
    a = WorkflowTracker("sqlite:///:memory:")
    b = WorkflowTracker("sqlite:///:memory:")
    start = len(all_notifications(a))
    wf = a.initiate_workflow("in memory", "d", 1, 2)
    assert b.repository.get(wf).name == "in memory"
    t = b.add_task_to_workflow(wf, "t", "1", {}, {})
    assert a.repository.get(wf).tasks == [t]
    assert len(all_notifications(a)) == len(all_notifications(b)) == start + 3
    # A tracker made later still sees it.
    assert WorkflowTracker("sqlite:///:memory:").repository.get(t).workflow_id == wf


# ------------------------------------------------------------------- logging


def test_logging_debug_lines_like_the_reference(tracker, caplog):
    # The reference's logger name; no cache reset: levels are followed.
    caplog.set_level(logging.DEBUG, logger="biomero.eventsourcing")
    try:
        caplog.clear()
        wf = tracker.initiate_workflow("Name", "Desc", 3, 7)
        tracker.initiate_workflow("Other", None, 4, 8)
        t = tracker.add_task_to_workflow(wf, "task.py", "1.2", {}, {})
        tracker.start_workflow(wf)
        tracker.start_task(t)
        tracker.add_job_id(t, 12345)
        tracker.update_task_status(t, "RUNNING")
        tracker.update_task_progress(t, "50%")
        tracker.add_result(t, {"command": "cmd", "env": {}, "stdout": "", "stderr": ""})
        tracker.complete_task(t, "done")
        tracker.fail_task(t, "oops")
        tracker.complete_workflow(wf)
        tracker.fail_workflow(wf, "bad")
        records = [r for r in caplog.records if "[WFT]" in r.getMessage()]
    finally:
        caplog.set_level(logging.WARNING, logger="biomero.eventsourcing")
    for r in records:
        assert r.name == "biomero.eventsourcing", r.name
        assert r.levelno == logging.DEBUG
    msgs = [r.getMessage() for r in records]
    # The reference's f-strings (biomero/eventsourcing.py).
    expected = [
        "[WFT] Initiating workflow: name=Name, description=Desc, user=3, group=7",
        "[WFT] Initiating workflow: name=Other, description=None, user=4, group=8",
        f"[WFT] Adding task to workflow: workflow_id={wf}, task_name=task.py, task_version=1.2",
        f"[WFT] Starting workflow: workflow_id={wf}",
        f"[WFT] Starting task: task_id={t}",
        f"[WFT] Adding job_id to task: task_id={t}, slurm_job_id=12345",
        f"[WFT] Adding status to task: task_id={t}, status=RUNNING",
        f"[WFT] Adding progress to task: task_id={t}, progress=50%",
        f"[WFT] Adding result to task: task_id={t}, result=",
        f"[WFT] Completing task: task_id={t}, message=done",
        f"[WFT] Failing task: task_id={t}, error_message=oops",
        f"[WFT] Completing workflow: workflow_id={wf}",
        f"[WFT] Failing workflow: workflow_id={wf}, error_message=bad",
    ]
    assert len(msgs) == len(expected), msgs
    for got, want in zip(msgs, expected):
        if want.endswith("result="):
            assert got.startswith(want), got
        else:
            assert got == want


def test_no_debug_lines_above_debug_level(tracker, caplog):
    caplog.set_level(logging.INFO, logger="biomero_rs")
    biomero_rs.reset_logging_cache()
    caplog.clear()
    wf = tracker.initiate_workflow("n", "d", 1, 2)
    tracker.start_workflow(wf)
    assert not [r for r in caplog.records if "[WFT]" in r.getMessage()]


# --------------------------------------------------------------- concurrency


def test_concurrent_writers_on_one_task_lose_nothing(db):
    tr = WorkflowTracker(db.url)
    wf = tr.initiate_workflow("w", "d", 1, 2)
    t = tr.add_task_to_workflow(wf, "t", "1", {}, {})
    errors = []
    n_threads, per_thread = 4, 5

    def work(k):
        try:
            own = WorkflowTracker(db.url)
            for i in range(per_thread):
                own.update_task_progress(t, f"{k}-{i}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert tr.repository.get(t).version == n_threads * per_thread
    progress = [load_state(n)["progress"] for n in all_notifications(tr) if n.originator_id == t
                and n.topic.endswith("ProgressUpdated")]
    assert sorted(progress) == sorted(f"{k}-{i}" for k in range(n_threads) for i in range(per_thread))
    versions = [n.originator_version for n in all_notifications(tr) if n.originator_id == t]
    assert versions == list(range(n_threads * per_thread + 1))
