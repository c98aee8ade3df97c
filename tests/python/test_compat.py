"""Compatibility with the reference package (biomero 2.8.3 on eventsourcing
9.5.4 / eventsourcing_sqlalchemy 1.0.1), run in its own process by reftool.py,
on each backend (docs/storage.md):

(a) a store the reference wrote is read by biomero_rs with equal state;
(b) a store biomero_rs wrote is read by the reference with equal state;
(c) byte identity of the event state both ways;
and both writing the same aggregates in turns.

Both sides run the same workload (WORKLOAD below, as tagged JSON), and both
readers are compared through the same exact snapshot (reftool.snapshot)."""

import datetime
import decimal
import json
import uuid

import pytest

import biomero_rs
import biomero_rs._core
import reftool
from conftest import BACKENDS, Database, run_reference
from reftool import Ref, ResultArg, StrRef, step

UTC = datetime.timezone.utc

# Values whose floats have a unique repr; unicode and escapes, nested UUIDs and
# datetimes, caller's key order, NaN/Infinity, integers beyond 64 bits.
INPUT_DATA = {
    "zeta": 1,
    "alpha": 2,
    "mid": {"z": [], "a": {}},
    "ids": [101, 202, 303],
    "data_type": "Image",
    "uuids": [uuid.UUID("724e55e5-8b04-4a2f-a7b2-cc652e955e43"), {"deep": [uuid.UUID(int=2**128 - 1)]}],
    "times": {
        "utc": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        "no_fraction": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "naive": datetime.datetime(1999, 12, 31, 23, 59, 59, 1),
        "plus2": datetime.datetime(2030, 1, 1, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        "minus530": datetime.datetime(2030, 1, 1, 12, 30, 15, 500000,
                                      tzinfo=datetime.timezone(-datetime.timedelta(hours=5, minutes=30))),
    },
    "floats": [0.1, 1.5, -2.25, 1e-07, 1e16, 1.5e16, 1e15, 123456789.125, 0.30000000000000004,
               -0.0, 0.0, 5e-324, 2.5e-300, 1.7976931348623157e308, 100.0, 1e22, 0.0001, 1e-05],
    "nan": float("nan"),
    "inf": float("inf"),
    "ninf": float("-inf"),
    "ints": [0, -1, 2**31, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**100, -(10**40)],
    "bools": [True, False, None],
    "unicode": "ü é 漢字 🎉 \u2028\u2029 \ufeff \x7f",
    "escapes": "quote\" backslash\\ slash/ nl\n cr\r tab\t bs\b ff\f nul\x00 us\x1f",
    "ключ": "значение",
    "": "empty key",
    "a\"b\\c\n": "escaped key",
    "decimal": decimal.Decimal("3.140"),
    "tuple": ("x", 1, 2.5),
}
PARAMS = {
    "model": "cyto2",
    "diameter": 30.5,
    "use_gpu": True,
    "email": None,
    "nested": {"when": datetime.datetime(2024, 1, 1, tzinfo=UTC), "ids": [uuid.UUID(int=7)]},
}

WORKLOAD = [
    step("initiate_workflow", "Cellpose ü 🎉", "Segment \"cells\"\nwith\ttabs", 3, 7, as_="wf"),
    step("add_task_to_workflow", Ref("wf"), "_SLURM_Image_Transfer.py", "1.0", INPUT_DATA, PARAMS, as_="t1"),
    step("add_task_to_workflow", Ref("wf"), "cellpose", None, {}, {}, as_="t2"),
    step("start_workflow", Ref("wf")),
    step("start_task", Ref("t1")),
    step("add_job_id", Ref("t1"), "12345"),
    step("add_job_id", Ref("t1"), 678),
    step("add_result", Ref("t1"), ResultArg(command="sbatch --job-name=ü job.sh",
                                            env={"SLURM": "1", "N": [1, 2.5]},
                                            stdout="Submitted batch job 12345\n", stderr="")),
    step("update_task_status", Ref("t1"), "PENDING"),
    step("update_task_progress", Ref("t1"), None),
    step("update_task_status", Ref("t1"), "RUNNING"),
    step("update_task_progress", Ref("t1"), "42%"),
    step("update_task_status", Ref("t1"), "COMPLETED"),
    step("complete_task", Ref("t1"), "Task completed ✓"),
    step("start_task", Ref("t2")),
    step("fail_task", Ref("t2"), "Exit code 137: ∅"),
    step("fail_workflow", Ref("wf"), "t2 failed"),
    step("initiate_workflow", "empty", None, 0, 0, as_="wf2"),
    step("add_task_to_workflow", Ref("wf2"), "never started", "2", [], None, as_="t3"),
    step("start_workflow", Ref("wf2")),
    step("complete_workflow", Ref("wf2")),
]
AGGREGATES = ["wf", "t1", "t2", "wf2", "t3"]


def n_events(workload):
    """add_task_to_workflow saves two events, every other command one."""
    return sum(2 if s["cmd"] == "add_task_to_workflow" else 1 for s in workload)

# Values only the reference writes (biomero_rs refuses to store them as given)
# but a store can hold: they must be read all the same.
REF_ONLY = [
    step("initiate_workflow", "legacy", "d", 1, 1, as_="wf_legacy"),
    step("add_task_to_workflow", Ref("wf_legacy"), "legacy task", "0", {1: "int key", 2.5: "float key"},
         {"k": "v"}, as_="t_legacy"),
    step("update_task_progress", Ref("t_legacy"), 50),
    step("update_task_status", Ref("t_legacy"), None),
    # A str workflow id: the reference stores it as a plain JSON string.
    step("add_task_to_workflow", StrRef("wf_legacy"), "str workflow id", "0", {}, {}, as_="t_strwf"),
]
STR_WF = "t_strwf"  # compared by its own (xfail) test below


def normalise(v):
    """A value as JSON gives it back (tuples become lists)."""
    if isinstance(v, dict):
        return {k: normalise(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [normalise(x) for x in v]
    return v


def reference(db, **job):
    """One reftool process: {"write": ..., "read": ..., "reencode": ...}."""
    return json.loads(run_reference("run", db.sqlalchemy_url, input=json.dumps(job)))


def by_name(names, snapshots):
    return dict(zip(names, snapshots))


def rs_snapshots(tracker, ids):
    return {k: reftool.snapshot(tracker.repository.get(u)) for k, u in ids.items()}


def assert_same_snapshots(got, want):
    assert set(got) == set(want)
    for k in want:
        for attr in want[k]:
            assert got[k][attr] == want[k][attr], f"{k}.{attr}"
        assert got[k] == want[k], k


def check_expected(snaps, ids):
    """The shared workload's state, from the workload itself (so that equal
    snapshots are not equally wrong)."""
    t1 = snaps["t1"]
    assert t1["input_data"] == reftool.tag(normalise(INPUT_DATA))
    assert t1["params"] == reftool.tag(normalise(PARAMS))
    assert t1["workflow_id"] == {"$uuid": ids["wf"].hex}
    assert t1["version"] == 10 and t1["status"] == "COMPLETED" and t1["progress"] == "42%"
    assert t1["result_message"] == "Task completed ✓"
    assert t1["job_ids"] == ["12345", 678]  # an int job id stays an int, as the reference stores it
    assert t1["results"] == [reftool.tag({"command": "sbatch --job-name=ü job.sh",
                                          "env": {"SLURM": "1", "N": [1, 2.5]},
                                          "stdout": "Submitted batch job 12345\n", "stderr": ""})]
    assert snaps["wf"]["tasks"] == [{"$uuid": ids["t1"].hex}, {"$uuid": ids["t2"].hex}]
    assert snaps["wf"]["name"] == "Cellpose ü 🎉" and snaps["wf"]["version"] == 4
    assert snaps["t2"]["result_message"] == "Exit code 137: ∅" and snaps["t2"]["task_version"] is None
    assert snaps["t3"]["input_data"] == [] and snaps["t3"]["params"] is None and snaps["t3"]["progress"] is None
    assert snaps["wf2"]["description"] is None and snaps["wf2"]["version"] == 3
    for s in snaps.values():
        for attr in ("created_on", "modified_on"):
            t = datetime.datetime.fromisoformat(s[attr]["$datetime"])
            assert t.utcoffset() == datetime.timedelta(0)
        assert s["created_on"]["$datetime"] <= s["modified_on"]["$datetime"]


# ------------------------------------------------------------------ stores


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def ref_store(backend, tmp_path_factory):
    """A store written by the reference: the shared workload, then REF_ONLY."""
    d = Database(backend, tmp_path_factory.mktemp("ref_store"))
    try:
        out = reference(d, write=WORKLOAD + REF_ONLY, read="written", reencode=True)
        ids = {k: uuid.UUID(v) for k, v in out["ids"].items()}
        yield d, ids, by_name(ids, out["snapshots"]), out["events"]
    finally:
        d.drop()


@pytest.fixture(scope="module")
def rs_store(backend, tmp_path_factory):
    """A store written by biomero_rs: the shared workload."""
    d = Database(backend, tmp_path_factory.mktemp("rs_store"))
    try:
        tracker = biomero_rs.WorkflowTracker(d.url)
        ids = reftool.run_workload(tracker, json.loads(json.dumps(WORKLOAD)))
        out = reference(d, read=[u.hex for u in ids.values()], reencode=True)
        yield d, ids, by_name(ids, out["snapshots"]), out["events"]
    finally:
        d.drop()


# ------------------------------------------------------------------- tests


def test_a_reference_store_is_read_by_biomero_rs(ref_store):
    db, ids, want, _ = ref_store
    assert set(ids) == set(AGGREGATES) | {"wf_legacy", "t_legacy", STR_WF}
    check_expected(want, ids)
    want = {k: v for k, v in want.items() if k != STR_WF}
    got = rs_snapshots(biomero_rs.WorkflowTracker(db.url, views=[]), {k: ids[k] for k in want})
    check_expected(got, ids)
    assert_same_snapshots(got, want)
    # The reference stored an int job id as an int; it reads back as one.
    assert want["t1"]["job_ids"] == ["12345", 678]
    assert got["t_legacy"]["input_data"] == {"$dict": [["1", "int key"], ["2.5", "float key"]]}
    assert (got["t_legacy"]["progress"], got["t_legacy"]["status"]) == (50, None)


def test_a_reference_store_is_read_by_biomero_rs_with_views(ref_store):
    """After run_migrations adopts the reference's view tables, opening with
    every view (the default) catches the views up on the reference's events
    and changes no aggregate and no event."""
    db, ids, _, events = ref_store
    ids = {k: u for k, u in ids.items() if k != STR_WF}
    before = rs_snapshots(biomero_rs.WorkflowTracker(db.url, views=[]), ids)
    biomero_rs.run_migrations(db.url)
    tracker = biomero_rs.WorkflowTracker(db.url)
    assert rs_snapshots(tracker, ids) == before
    _check_same_log(_rs_log(db), events)


def test_b_biomero_rs_store_is_read_by_reference(rs_store):
    db, ids, want, _ = rs_store
    assert set(ids) == set(AGGREGATES)
    got = rs_snapshots(biomero_rs.WorkflowTracker(db.url), ids)
    check_expected(got, ids)
    assert_same_snapshots(want, got)
    assert got["t1"]["job_ids"] == ["12345", 678]  # as given, like the reference


def _rs_log(db):
    return biomero_rs.WorkflowTracker(db.url, views=[]).notification_log.select(1, 100_000)


def _check_same_log(rs_log, ref_events):
    assert [(n.id, n.originator_id.hex, n.originator_version, n.topic) for n in rs_log] == [
        (e["id"], e["originator_id"], e["originator_version"], e["topic"]) for e in ref_events]
    for n, e in zip(rs_log, ref_events):
        assert n.state == bytes.fromhex(e["state"]), n.topic


def test_c_biomero_rs_bytes_equal_the_reference_encoding(rs_store):
    """For every event biomero_rs wrote, the reference's decode + encode gives
    back exactly biomero_rs's bytes."""
    db, ids, _, events = rs_store
    rs_log = _rs_log(db)
    assert len(rs_log) == n_events(WORKLOAD)
    _check_same_log(rs_log, events)
    failures = []
    for e in events:
        if e["reencoded_topic"] != e["topic"]:
            failures.append(f"{e['id']}: topic {e['topic']} re-encoded as {e['reencoded_topic']}")
        if e["reencoded"] != e["state"]:
            failures.append(f"{e['id']} {e['topic']}:\n  biomero_rs: {bytes.fromhex(e['state'])!r}\n"
                            f"  reference:  {bytes.fromhex(e['reencoded'])!r}")
    assert not failures, "\n".join(failures)


def test_c_reference_bytes_equal_the_biomero_rs_encoding(ref_store):
    """For every event the reference wrote, biomero_rs's decode + encode gives
    back exactly the reference's bytes."""
    db, ids, _, events = ref_store
    # The reference reproduces its own bytes (the workload's floats have a
    # unique repr), so any difference below is biomero_rs's.
    assert all(e["reencoded"] == e["state"] for e in events)
    rs_log = _rs_log(db)
    assert len(rs_log) == n_events(WORKLOAD + REF_ONLY)
    _check_same_log(rs_log, events)
    failures = []
    for n in rs_log:
        if n.originator_id == ids[STR_WF]:
            continue  # see test_c_str_workflow_id_written_by_reference_is_kept
        again = biomero_rs._core.reencode_state(n.topic, n.state)
        if again != n.state:
            failures.append(f"{n.id} {n.topic}:\n  reference:  {n.state!r}\n  biomero_rs: {again!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.xfail(strict=True, reason="biomero_rs reads a TaskCreated workflow_id stored as a str "
                   "(the reference stores what it is given) as a UUID: Task.workflow_id is a UUID where "
                   "the reference has the str, and it re-encodes as uuid_hex (Payload::TaskCreated."
                   "workflow_id is a Uuid; reported)")
def test_c_str_workflow_id_written_by_reference_is_kept(ref_store):
    db, ids, want, _ = ref_store
    n = [n for n in _rs_log(db) if n.originator_id == ids[STR_WF]][0]
    assert b'"workflow_id":"' + str(ids["wf_legacy"]).encode() + b'"' in n.state
    got = reftool.snapshot(biomero_rs.WorkflowTracker(db.url, views=[]).repository.get(ids[STR_WF]))
    assert want[STR_WF]["workflow_id"] == str(ids["wf_legacy"])
    assert got == want[STR_WF]
    assert biomero_rs._core.reencode_state(n.topic, n.state) == n.state


def test_writers_take_turns_on_the_same_aggregates(db):
    """biomero_rs, then the reference, then biomero_rs again write to the same
    workflow and tasks; both read the same state, and every event is
    byte-identical to the reference's encoding."""
    first = WORKLOAD[:5]     # initiate, two tasks, start_workflow, start_task t1
    second = WORKLOAD[5:12]  # job ids, result, status/progress on t1 (reference)
    third = WORKLOAD[12:]    # the rest
    tracker = biomero_rs.WorkflowTracker(db.url)
    ids = reftool.run_workload(tracker, json.loads(json.dumps(first)))
    ref_ids = reference(db, write={"refs": {k: u.hex for k, u in ids.items()}, "workload": second})["ids"]
    assert {k: uuid.UUID(v) for k, v in ref_ids.items()} == ids
    ids = reftool.run_workload(tracker, json.loads(json.dumps(third)), ids)
    assert set(ids) == set(AGGREGATES)

    got = rs_snapshots(tracker, ids)
    check_expected(got, ids)
    assert got["t1"]["job_ids"] == ["12345", 678]  # the second part was the reference's
    out = reference(db, read=[u.hex for u in ids.values()], reencode=True)
    want = by_name(ids, out["snapshots"])
    assert_same_snapshots(got, want)

    events = out["events"]
    _check_same_log(tracker.notification_log.select(1, 100_000), events)
    assert [e["id"] for e in events] == list(range(1, n_events(WORKLOAD) + 1))
    for e in events:
        assert e["reencoded"] == e["state"], e["topic"]
        state = bytes.fromhex(e["state"])
        assert biomero_rs._core.reencode_state(e["topic"], state) == state
