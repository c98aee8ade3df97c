"""What BIOMERO's own callers pass, stored exactly as the reference stores it
(both directions against biomero 2.8.3), and copies of the tracker and the
views (fabric's Connection copies what is assigned to it)."""

import copy
import json
import uuid

import pytest

import biomero_rs
import reftool
from reftool import Ref, ResultArg, step
from test_compat import assert_same_snapshots, by_name, reference, rs_snapshots

# Event-only fields take any JSON-storable value; job ids keep their type.
WORKLOAD = [
    # SlurmClient.run_conversion_workflow_job: initiate_workflow("conversion", -1, -1, -1)
    step("initiate_workflow", "conversion", -1, -1, -1, as_="conv"),
    step("add_task_to_workflow", Ref("conv"), "CONVERT_ZARR_TO_TIFF", "latest", {"folder": "data"}, {}, as_="ct"),
    step("start_task", Ref("ct")),
    step("add_job_id", Ref("ct"), 5678),
    step("add_result", Ref("ct"), ResultArg(command="sbatch c.sh", env={}, stdout="Submitted batch job 5678\n",
                                            stderr="")),
    step("complete_task", Ref("ct"), {"converted": 3, "failed": []}),
    step("initiate_workflow", "described", {"model": "cyto2", "ids": [1, 2], "ok": True}, 3, 7, as_="wf"),
    step("initiate_workflow", "float description", 2.5, 3, 7, as_="wf_float"),
    step("initiate_workflow", "null description", None, 3, 7, as_="wf_none"),
    step("add_task_to_workflow", Ref("wf"), "cellpose", "1.0", ["list", "input"], {"x": [1, {"y": None}]},
         as_="t"),
    step("add_job_id", Ref("t"), "12345"),
    step("complete_task", Ref("t"), 0),
    step("fail_workflow", Ref("wf"), 137),
    step("fail_workflow", Ref("wf_float"), ["a", "b"]),
]


@pytest.fixture(params=["biomero_rs writes", "reference writes"])
def direction(request):
    return request.param


def test_event_only_values_are_stored_as_the_reference_stores_them(db, direction):
    if direction == "biomero_rs writes":
        tracker = biomero_rs.WorkflowTracker(db.url)
        ids = reftool.run_workload(tracker, json.loads(json.dumps(WORKLOAD)))
        out = reference(db, read=[u.hex for u in ids.values()], reencode=True)
    else:
        out = reference(db, write=WORKLOAD, read="written", reencode=True)
        ids = {k: uuid.UUID(v) for k, v in out["ids"].items()}
        tracker = biomero_rs.WorkflowTracker(db.url)
    want = by_name(ids, out["snapshots"])
    got = rs_snapshots(tracker, ids)
    assert_same_snapshots(got, want)
    assert got["conv"]["description"] == -1 and got["ct"]["job_ids"] == [5678]
    assert got["ct"]["result_message"] == {"$dict": [["converted", 3], ["failed", []]]}
    assert got["wf_float"]["description"] == {"$float": "2.5"}
    # Every stored event: the other side's decode + encode gives the same bytes.
    events = out["events"]
    assert len(events) == len(tracker.notification_log.select(1, 1000)) == sum(
        2 if s["cmd"] == "add_task_to_workflow" else 1 for s in WORKLOAD)
    for e in events:
        state = bytes.fromhex(e["state"])
        assert bytes.fromhex(e["reencoded"]) == state, e["topic"]
        assert biomero_rs._core.reencode_state(e["topic"], state) == state, e["topic"]
    job_ids = [json.loads(bytes.fromhex(e["state"]))["job_id"] for e in events if e["topic"].endswith("JobIdAdded")]
    assert job_ids == [5678, "12345"]


def test_values_no_json_can_hold_are_refused_naming_the_argument(sqlite_db):
    t = biomero_rs.WorkflowTracker(sqlite_db.url)
    wf = t.initiate_workflow("wf", "d", 1, 2)
    task = t.add_task_to_workflow(wf, "x", "1", {}, {})
    for call, arg in [(lambda: t.initiate_workflow("n", object(), 1, 2), "description"),
                      (lambda: t.complete_task(task, {1, 2}), "message"),
                      (lambda: t.fail_workflow(wf, b"bytes"), "error_message"),
                      (lambda: t.initiate_workflow("n", {"k": object()}, 1, 2), 'description["k"]')]:
        with pytest.raises(TypeError, match=arg.replace("[", r"\[").replace("]", r"\]")):
            call()
    # Fields of typed view columns keep their checks.
    with pytest.raises(TypeError, match="user"):
        t.initiate_workflow("n", "d", "1", 2)
    with pytest.raises(TypeError, match="status"):
        t.update_task_status(task, 5)
    with pytest.raises(TypeError, match="slurm_job_id"):
        t.add_job_id(task, 1.5)
    assert len(t.notification_log.select(1, 100)) == 3  # nothing was written by the refused calls


def test_copies_share_the_store(db):
    fabric = pytest.importorskip("fabric")
    tracker = biomero_rs.WorkflowTracker(db.url)
    views = [biomero_rs.JobAccounting(db.url), biomero_rs.JobProgress(db.url), biomero_rs.WorkflowProgress(db.url),
             biomero_rs.WorkflowAnalytics(db.url)]
    # fabric's Connection copies a value assigned to an attribute.
    conn = fabric.Connection("localhost")
    conn.workflowTracker = tracker
    conn.jobAccounting = views[0]
    wf = conn.workflowTracker.initiate_workflow("through fabric", "d", 1, 2)
    task = conn.workflowTracker.add_task_to_workflow(wf, "x", "1", {}, {})
    conn.workflowTracker.add_job_id(task, 42)
    assert conn.jobAccounting.get_jobs() == {1: [42]}
    for obj in [tracker, *views]:
        for c in (copy.copy(obj), copy.deepcopy(obj), copy.deepcopy({"k": obj})["k"]):
            assert type(c) is type(obj)
    assert copy.deepcopy(tracker).repository.get(wf).name == "through fabric"
    assert copy.copy(views[2]).get_workflow(wf).name == "through fabric"
    assert copy.deepcopy(views[3]).get_task_counts() == {("x", "1"): 1}
    copy.copy(tracker).complete_workflow(wf)
    assert views[2].get_workflow(wf).status == biomero_rs.workflow_status.DONE
