"""The observable behaviour behind BIOMERO 2.8.3's own unit tests that read
the reference's internals (tests/upstream/known_failures.txt): the same
commands, run by biomero_rs and by the reference with its four listeners,
compared after every command (biomero_rs's view rows against the state the
reference's listeners hold, which is what those tests assert), and the
reference's query methods with the filters those tests use.

Where an upstream test writes the listeners' memory or calls
update_view_table() by hand (start/end times, error types), the workload
gets the same rows through commands (start, complete, fail)."""

import collections
import datetime
import uuid

import pytest

from reftool import Ref, step
from test_differential import (
    BACKENDS,
    EventLog,
    ReferenceRun,
    _scratch_dir,
    assert_tables_equal,
    check_query_answers,
    normalised,
    run_rs,
)


def task(wf, name, as_, version="v1"):
    return step("add_task_to_workflow", Ref(wf), name, version, {"foo": "bar"}, {"bar": "baz"}, as_=as_)


def wf(name, user, group, as_):
    return step("initiate_workflow", name, "Test Description", user, group, as_=as_)


WORKLOAD = [
    # test_job_acc_workflow_initiated / _task_added / _job_id_added (job id "12345")
    wf("Test Workflow", 1, 2, "ja_wf"),
    task("ja_wf", "task", "ja_t"),
    step("add_job_id", Ref("ja_t"), "12345"),
    # test_job_acc_get_jobs_for_user / _for_group / _all: rows (job, user, group) via commands
    wf("jobs u1g2", 1, 2, "jobs_a"), task("jobs_a", "task", "jobs_ta"),
    step("add_job_id", Ref("jobs_ta"), 100), step("add_job_id", Ref("jobs_ta"), 200),
    wf("jobs u2g3", 2, 3, "jobs_b"), task("jobs_b", "task", "jobs_tb"), step("add_job_id", Ref("jobs_tb"), 300),
    wf("jobs u1g2 b", 1, 2, "jobs_c"), task("jobs_c", "task", "jobs_tc"), step("add_job_id", Ref("jobs_tc"), 400),
    wf("jobs u2g2", 2, 2, "jobs_d"), task("jobs_d", "task", "jobs_td"), step("add_job_id", Ref("jobs_td"), 500),
    wf("jobs u2g3 b", 2, 3, "jobs_e"), task("jobs_e", "task", "jobs_te"), step("add_job_id", Ref("jobs_te"), 600),
    # test_job_progress_job_id_added / _status_updated / _progress_updated / _update_view_table
    wf("Test Workflow", 1, 2, "jp_wf"), task("jp_wf", "task", "jp_t1"),
    step("add_job_id", Ref("jp_t1"), 200),
    step("update_task_status", Ref("jp_t1"), "InProgress"),
    step("update_task_status", Ref("jp_t1"), "COMPLETED"),
    task("jp_wf", "task", "jp_t2"),
    step("add_job_id", Ref("jp_t2"), 12346),
    step("update_task_progress", Ref("jp_t2"), "50%"),
    step("update_task_progress", Ref("jp_t2"), "100%"),
    # test_workflow_progress_* (initiated, task added, status/progress, completed, failed)
    wf("Test Workflow", 1, 2, "wp_wf"), task("wp_wf", "task", "wp_t"),
    step("update_task_status", Ref("wp_t"), "InProgress"),
    step("update_task_progress", Ref("wp_t"), "50%"),
    wf("Test Workflow", 1, 2, "wp_done"), step("complete_workflow", Ref("wp_done")),
    wf("Test Workflow", 1, 2, "wp_fail"), step("fail_workflow", Ref("wp_fail"), "Test error message"),
    # test_workflow_progress_all_statuses
    wf("Test Workflow", 1, 2, "all_wf"),
    *[s for i, name in enumerate(["_SLURM_Image_Transfer.py", "convert_image", "SLURM_Get_Results.py",
                                  "SLURM_Run_Workflow.py", "unknown_task"])
      for s in (task("all_wf", name, f"all_t{i}"), step("update_task_status", Ref(f"all_t{i}"), "InProgress"))],
    task("all_wf", "some_task", "all_last"),
    step("update_task_progress", Ref("all_last"), "43%"),
    step("update_task_status", Ref("all_last"), "InProgress"),
    # test_workflow_progress_roi_postprocessing
    wf("Test Workflow", 1, 2, "roi_wf"),
    task("roi_wf", "SLURM_Get_Results.py", "roi_t1"), step("update_task_status", Ref("roi_t1"), "POSTPROCESSING"),
    task("roi_wf", "SLURM_Import_Results.py", "roi_t2"), step("update_task_status", Ref("roi_t2"), "POSTPROCESSING"),
    # test_wfanalytics_* (workflow initiated, task added/created/completed/failed, update_view_table)
    wf("Test Workflow", 1, 2, "wa_wf"), task("wa_wf", "task", "wa_t1"),
    step("start_task", Ref("wa_t1")), step("update_task_status", Ref("wa_t1"), "RUNNING"),
    step("complete_task", Ref("wa_t1"), "done"),
    task("wa_wf", "task", "wa_t2"), step("start_task", Ref("wa_t2")),
    step("fail_task", Ref("wa_t2"), "TaskError"),
    # test_wfanalytics_get_task_counts / average duration / failures / usage, with filters
    wf("Test Workflow 1", 1, 2, "f1"), wf("Test Workflow 2", 3, 4, "f2"), wf("Test Workflow 3", 1, 3, "f3"),
    task("f1", "task1", "f_t1"), task("f1", "task1", "f_t2"), task("f2", "task1", "f_t3"),
    task("f2", "task2", "f_t4"), task("f3", "task3", "f_t5"),
    *[step("start_task", Ref(t)) for t in ("f_t1", "f_t2", "f_t3", "f_t4", "f_t5")],
    step("complete_task", Ref("f_t1"), "ok"), step("fail_task", Ref("f_t2"), "ErrorB"),
    step("fail_task", Ref("f_t3"), "ErrorC"), step("complete_task", Ref("f_t4"), "ok"),
    step("fail_task", Ref("f_t5"), "ErrorD"),
]

FILTERS = [[], [1], [None, 2], [1, 2], [3], [None, 4], [3, 4], [2], [None, 3], [999]]
QUERIES = (
    [["job_accounting", "get_jobs", *f] for f in FILTERS]
    + [["job_accounting", "get_task_id", j] for j in (12345, 100, 200, 600, 1)]
    + [["workflow_analytics", m, *f] for m in ("get_task_counts", "get_task_failures", "get_average_task_duration")
       for f in FILTERS]
    + [["workflow_analytics", "get_task_usage_over_time", n, *f] for n in ("task1", "task2", "task")
       for f in FILTERS]
)


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """One reference run per backend, all started at once."""
    job = {"workload": WORKLOAD, "queries": QUERIES, "checkpoints": list(range(len(WORKLOAD)))}
    runs = {b: ReferenceRun(b, _scratch_dir(tmp_path_factory, f"upstream_eq_{b}"), job) for b in BACKENDS}
    yield runs
    for r in runs.values():
        r.close()


def test_same_commands_give_the_reference_listeners_state_after_every_command(db, reference_runs):
    ref = reference_runs[db.backend].result()
    rs = run_rs(db.url, WORKLOAD, QUERIES, list(range(len(WORKLOAD))))
    assert rs["errors"] == [] and ref["errors"] == [], (rs["errors"], ref["errors"])
    rs_names = {uuid.UUID(str(v)): k for k, v in rs["ids"].items()}
    ref_names = {v: k for k, v in ref["ids"].items()}
    rs_log, ref_log = EventLog(rs["notifications"]), EventLog(ref["notifications"])
    assert rs_log.topics() == ref_log.topics()
    assert len(rs["checkpoints"]) == len(ref["checkpoints"]) == len(WORKLOAD)
    for i, (mine, theirs) in enumerate(zip(rs["checkpoints"], ref["checkpoints"])):
        assert_tables_equal(normalised(theirs, ref_names, ref_log), normalised(mine, rs_names, rs_log),
                            f"after step {i} {WORKLOAD[i]['cmd']}")
    # The final rows: the reference's in-memory state; the failed task's error type is in both.
    final = normalised(rs["tables"], rs_names, rs_log)
    assert final["tasks"]["wa_t2"]["error_type"] == "TaskError"
    assert final["job_progress"][200]["status"] == "COMPLETED"
    assert final["workflows"]["all_wf"]["progress"] == "67.2%"
    # Job queries: the reference's answers (its job rows are never late).
    jobs = [i for i, q in enumerate(QUERIES) if q[0] == "job_accounting"]
    check_query_answers([QUERIES[i] for i in jobs], {**ref, "queries": [ref["queries"][i] for i in jobs]},
                        {**rs, "queries": [rs["queries"][i] for i in jobs]}, ref_names, rs_names, db.backend)
    # Analytics queries with user/group filters: the answer the reference's
    # state gives (its table lags behind it for task owners, docs/projections.md
    # fix 2, so its own filtered answers miss rows); durations from each
    # side's own times.
    for q, answer in zip(QUERIES, rs["queries"]):
        if q[0] != "workflow_analytics":
            continue
        method, args = q[1], q[2:]
        if method == "get_task_failures":
            answer = {k: sorted(v) for k, v in answer.items()}
        if method == "get_average_task_duration":  # float on SQLite, Decimal on Postgres (checked below)
            answer = {k: float(v) for k, v in answer.items()}
        if method == "get_task_usage_over_time":
            key_type = str if db.backend == "sqlite" else datetime.date
            assert all(type(k) is key_type for k in answer), (q, answer)
            answer = {datetime.date.fromisoformat(str(k)): v for k, v in answer.items()}
        assert answer == analytics_answer(method, ref["memory"]["tasks"], args, rs["tables"]["tasks"]), q


def analytics_answer(method, rows, args, own_rows):
    """What WorkflowAnalytics.<method>(*args) answers over ``rows`` (the
    reference's query semantics); average durations from ``own_rows``."""
    name = args[0] if method == "get_task_usage_over_time" else None
    user, group = ((args[1:] if name else args) + [None, None])[:2]

    def chosen(rs):
        return [r for r in rs if (user is None or r["user_id"] == user) and (group is None or r["group_id"] == group)]

    sel = chosen(rows)
    key = lambda r: (r["task_name"], r["task_version"])  # noqa: E731
    if method == "get_task_counts":
        return dict(collections.Counter(key(r) for r in sel))
    if method == "get_task_failures":
        out = collections.defaultdict(set)
        for r in sel:
            if r["error_type"] is not None:
                out[key(r)].add(r["error_type"])
        return {k: sorted(v) for k, v in out.items()}
    if method == "get_task_usage_over_time":
        return dict(collections.Counter(r["start_time"].date() for r in sel if r["task_name"] == name))
    assert method == "get_average_task_duration", method
    assert {key(r) for r in sel if r["end_time"] is not None} == {key(r) for r in chosen(own_rows)
                                                                  if r["end_time"] is not None}
    d = collections.defaultdict(list)
    for r in chosen(own_rows):
        if r["end_time"] is not None:
            d[key(r)].append((r["end_time"] - r["start_time"]).total_seconds())
    return {k: pytest.approx(sum(v) / len(v), abs=1e-6) for k, v in d.items()}


def shape(v):
    """The types in a value, recursively (dict keys and values, list and
    tuple items), for comparing return types."""
    if isinstance(v, dict):
        return ("dict", frozenset(shape(k) for k in v), frozenset(shape(x) for x in v.values()))
    if isinstance(v, list):
        return ("list", frozenset(shape(x) for x in v))
    if isinstance(v, tuple):
        return ("tuple", tuple(shape(x) for x in v))
    return type(v).__name__


def test_every_query_method_returns_the_reference_types(db, reference_runs):
    """Each of the reference's query methods (JobAccounting.get_jobs,
    get_task_id; WorkflowAnalytics.get_task_counts, get_task_failures,
    get_average_task_duration, get_task_usage_over_time) returns values of
    the reference's types on this backend, down to dict keys and list items."""
    ref = reference_runs[db.backend].result()
    rs = run_rs(db.url, WORKLOAD, QUERIES, [])
    compared = collections.Counter()
    for q, a_ref, a_rs in zip(QUERIES, ref["queries"], rs["queries"]):
        assert type(a_rs) is type(a_ref), (q, a_rs, a_ref)
        if a_ref and a_rs:
            assert shape(a_rs) == shape(a_ref), (q, a_rs, a_ref)
            compared[q[1]] += 1
        elif a_ref is None or a_rs is None:
            assert a_ref is a_rs is None or (q[1] == "get_task_id"), q
    assert set(compared) == {q[1] for q in QUERIES}, compared
