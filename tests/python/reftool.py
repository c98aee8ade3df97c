#!/usr/bin/env python
"""Drives the reference package (biomero 2.8.3 on eventsourcing 9.5 and
eventsourcing_sqlalchemy 1.0.1) against one database, in its own process.

    reftool.py write URL     stdin: a workload (JSON, tagged), or
                             {"refs": {"name": "uuid hex"}, "workload": [...]}
                             to continue on ids of an earlier run;
                             stdout: {"name": "uuid hex", ...}
    reftool.py read URL      stdin: ["uuid hex", ...],  stdout: [snapshot, ...] (tagged)
    reftool.py reencode URL  stdout: every stored event with the reference's
                             re-encoding of it (hex bytes)
    reftool.py run URL       several in one process (the reference takes a
                             while to import): stdin {"write": workload?,
                             "read": ["uuid hex"] | "written"?, "reencode": true?},
                             stdout {"ids", "snapshots", "events"} as asked
    reftool.py views URL     the reference WITH its four view listeners (as
                             BIOMERO's SlurmClient wires them) runs a workload;
                             stdin {"workload": [...], "refs": {...}?,
                             "queries": [[view, method, args...], ...]?,
                             "checkpoints": [step index, ...]?};
                             stdout {"ids", "errors", "tables", "memory",
                             "checkpoints", "notifications", "queries"}
                             (see ``do_views``)

The reference is set up as BIOMERO's ``SlurmClient.initialize_analytics_system``
does it: ``SQLALCHEMY_URL``, ``PERSISTENCE_MODULE=eventsourcing_sqlalchemy``, a
scoped session from ``biomero.database.EngineManager.create_scoped_session``
whose topic goes into ``SQLALCHEMY_SCOPED_SESSION_TOPIC``, and the
``WorkflowTracker`` taken from an eventsourcing ``SingleThreadedRunner``.

The module is also imported by the tests (without touching the reference) for
the shared parts: the tagged JSON encoding of values, the workload runner and
the aggregate snapshot, so both implementations run and are read the same way.

Tagged encoding (exact, so that values compare with ``==``): str, bool, None
and int are plain JSON; everything else is a one-key object:
``{"$float": repr}``, ``{"$uuid": hex}``, ``{"$datetime": isoformat}``,
``{"$decimal": str}``, ``{"$date": isoformat}``, ``{"$dict": [[key, value], ...]}`` (key order kept),
``{"$tuple": [...]}``; lists are lists. Only in workloads: ``{"$ref": name}``
is the UUID an earlier command returned under ``"as": name``, ``{"$refstr":
name}`` its ``str``, and ``{"$result": {...}}`` an object with those
attributes (a fabric ``Result``).

To keep each run short, the reference's modules are imported without the
``biomero`` package's ``__init__`` (see ``_import_reference``); the
WorkflowTracker, EngineManager and eventsourcing classes are the installed ones.
"""

import datetime
import decimal
import json
import os
import sys
import types
import uuid

# ------------------------------------------------------------ tagged values


class Ref:
    """In a workload: the UUID an earlier step returned under ``"as": name``."""

    def __init__(self, name):
        self.name = name


class StrRef(Ref):
    """In a workload: the text (``str(uuid)``) of an earlier step's id."""


class ResultArg:
    """In a workload: an object with these attributes (like a fabric ``Result``)."""

    def __init__(self, **fields):
        self.fields = fields


def tag(v):
    """A Python value as exact, comparable JSON."""
    if isinstance(v, StrRef):
        return {"$refstr": v.name}
    if isinstance(v, Ref):
        return {"$ref": v.name}
    if isinstance(v, ResultArg):
        return {"$result": tag(dict(v.fields))}
    if v is None or isinstance(v, (bool, str)):
        if type(v) not in (type(None), bool, str):
            return {"$other": type(v).__name__, "repr": repr(v)}
        return v
    if type(v) is int:
        return v
    if type(v) is float:
        return {"$float": repr(v)}
    if isinstance(v, uuid.UUID):
        return {"$uuid": v.hex}
    if type(v) is datetime.datetime:
        return {"$datetime": v.isoformat()}
    if type(v) is datetime.date:
        return {"$date": v.isoformat()}
    if type(v) is decimal.Decimal:
        return {"$decimal": str(v)}
    if isinstance(v, dict):
        out = {"$dict": [[tag(k), tag(x)] for k, x in v.items()]}
        if type(v) is not dict:
            out["$type"] = type(v).__name__
        return out
    if type(v) is list:
        return [tag(x) for x in v]
    if type(v) is tuple:
        return {"$tuple": [tag(x) for x in v]}
    return {"$other": type(v).__name__, "repr": repr(v)}


def untag(v, refs=None):
    """The Python value of tagged JSON; ``$ref`` names resolve through ``refs``."""
    if isinstance(v, list):
        return [untag(x, refs) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) != 1 and "$dict" not in v:
        raise ValueError(f"not a tagged value: {v!r}")
    ((key, data),) = list(v.items())[:1]
    if key == "$float":
        return float(data)
    if key == "$uuid":
        return uuid.UUID(data)
    if key == "$datetime":
        return datetime.datetime.fromisoformat(data)
    if key == "$date":
        return datetime.date.fromisoformat(data)
    if key == "$decimal":
        return decimal.Decimal(data)
    if key == "$dict":
        return {untag(k, refs): untag(x, refs) for k, x in data}
    if key == "$tuple":
        return tuple(untag(x, refs) for x in data)
    if key == "$ref":
        return refs[data]
    if key == "$refstr":
        return str(refs[data])
    if key == "$result":
        return types.SimpleNamespace(**untag(data, refs))
    raise ValueError(f"unknown tag {key!r}")


def dumps(v) -> str:
    """Tagged JSON text of a value (NaN and friends only appear inside tags)."""
    return json.dumps(tag(v), allow_nan=False, ensure_ascii=False)


def loads(text: str, refs=None):
    return untag(json.loads(text), refs)


# ----------------------------------------------------------------- workload
#
# A workload is a list of steps {"cmd": name, "args": [tagged...], "as": name?}.
# The same runner drives biomero_rs's tracker and the reference's.


def step(cmd, *args, as_=None):
    """One workload step, tagged (JSON-ready)."""
    out = {"cmd": cmd, "args": tag(list(args))}
    if as_:
        out["as"] = as_
    return out


def run_workload(tracker, workload, refs=None):
    """Runs the steps; returns {name: UUID} of the ids returned under "as"
    (and of the given ``refs``, ids from an earlier run)."""
    refs = dict(refs or {})
    for step in workload:
        args = untag(step.get("args", []), refs)
        result = getattr(tracker, step["cmd"])(*args)
        if "as" in step:
            if not isinstance(result, uuid.UUID):
                raise AssertionError(f"{step['cmd']} returned {result!r}, not a UUID")
            refs[step["as"]] = result
    return refs


WORKFLOW_ATTRS = ("id", "version", "created_on", "modified_on",
                  "name", "description", "user", "group", "tasks")
TASK_ATTRS = ("id", "version", "created_on", "modified_on",
              "workflow_id", "task_name", "task_version", "input_data", "params",
              "job_ids", "results", "result_message", "status", "progress")


def snapshot(agg, absent_as_none=()):
    """Every attribute of a WorkflowRun or Task, tagged. Attributes named in
    ``absent_as_none`` read as None when the object lacks them (the reference's
    Task has no ``progress`` until its first ProgressUpdated)."""
    kind = type(agg).__name__
    if kind not in ("WorkflowRun", "Task"):
        raise AssertionError(f"unexpected aggregate class {type(agg)!r}")
    attrs = WORKFLOW_ATTRS if kind == "WorkflowRun" else TASK_ATTRS
    out = {"kind": kind}
    for a in attrs:
        if a in absent_as_none and not hasattr(agg, a):
            out[a] = None
        else:
            out[a] = tag(getattr(agg, a))
    return out


# ---------------------------------------------------------------- reference


def _import_reference():
    """biomero.database and biomero.eventsourcing, without running the
    package's ``__init__`` (which imports SlurmClient, fabric's SSH stack and
    more, and takes seconds): a bare package module stands in for it, so the
    submodules load from the installed package as they are."""
    import importlib.util
    import types as _types

    if "biomero" not in sys.modules:
        spec = importlib.util.find_spec("biomero")
        pkg = _types.ModuleType("biomero")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__file__ = spec.origin
        sys.modules["biomero"] = pkg
    import biomero.database
    import biomero.eventsourcing

    return biomero.database.EngineManager, biomero.eventsourcing.WorkflowTracker


def reference_tracker(url):
    """The reference's WorkflowTracker, set up as SlurmClient does."""
    os.environ["SQLALCHEMY_URL"] = url
    persistence_module = os.environ.setdefault("PERSISTENCE_MODULE", "eventsourcing_sqlalchemy")
    from eventsourcing.system import SingleThreadedRunner, System

    EngineManager, WorkflowTracker = _import_reference()
    topic = EngineManager.create_scoped_session(sqlalchemy_url=url)
    runner = SingleThreadedRunner(System(pipes=[[WorkflowTracker]]), env={
        "SQLALCHEMY_SCOPED_SESSION_TOPIC": topic,
        "PERSISTENCE_MODULE": persistence_module,
    })
    runner.start()
    return runner, runner.get(WorkflowTracker)


def close_reference(runner):
    runner.stop()
    EngineManager, _ = _import_reference()
    EngineManager.close_engine()


def do_write(tracker, data):
    """``data``: a workload, or {"refs": {name: hex}, "workload": [...]}."""
    refs = {}
    if isinstance(data, dict):
        refs = {name: uuid.UUID(h) for name, h in data["refs"].items()}
        data = data["workload"]
    refs = run_workload(tracker, data, refs)
    return {name: u.hex for name, u in refs.items()}


def do_read(tracker, hex_ids):
    EngineManager, _ = _import_reference()
    out = []
    for hex_id in hex_ids:
        agg = tracker.repository.get(uuid.UUID(hex_id))
        out.append(snapshot(agg, absent_as_none=("progress",)))
    EngineManager.rollback()
    return out


def do_reencode(tracker):
    """Every stored event: the bytes as the reference reads them, and the
    reference's mapper decoding then encoding them again."""
    EngineManager, _ = _import_reference()
    out = []
    start = 1
    while True:
        page = tracker.recorder.select_notifications(start=start, limit=500)
        for n in page:
            domain_event = tracker.mapper.to_domain_event(n)
            again = tracker.mapper.to_stored_event(domain_event)
            out.append({
                "id": n.id,
                "originator_id": uuid.UUID(str(n.originator_id)).hex,
                "originator_version": n.originator_version,
                "topic": n.topic,
                "state": bytes(n.state).hex(),
                "reencoded_topic": again.topic,
                "reencoded": bytes(again.state).hex(),
            })
        if len(page) < 500:
            break
        start = page[-1].id + 1
    EngineManager.rollback()
    return out


def do_run(url, job):
    """``job``: {"write": workload?, "read": [hex] | "written"?, "reencode": bool?}.
    Reading and re-encoding use a fresh reference set-up (new engine and
    session) after the write, so they read what is stored, not a cache."""
    result = {}
    if "write" in job:
        runner, tracker = reference_tracker(url)
        try:
            result["ids"] = do_write(tracker, job["write"])
        finally:
            close_reference(runner)
    if "read" in job or job.get("reencode"):
        runner, tracker = reference_tracker(url)
        try:
            if "read" in job:
                ids = job["read"]
                if ids == "written":
                    ids = list(result["ids"].values())
                result["snapshots"] = do_read(tracker, ids)
            if job.get("reencode"):
                result["events"] = do_reencode(tracker)
        finally:
            close_reference(runner)
    return result


# ------------------------------------------------ reference with its views

VIEW_MODELS = {
    # table key: (model name in biomero.database, columns in order)
    "jobs": ("JobView", ("slurm_job_id", "user", "group", "task_id")),
    "job_progress": ("JobProgressView", ("slurm_job_id", "status", "progress")),
    "workflows": ("WorkflowProgressView", ("workflow_id", "status", "progress", "user", "group",
                                           "name", "task", "main_task_name", "start_time")),
    "tasks": ("TaskExecution", ("task_id", "task_name", "task_version", "user_id", "group_id",
                                "status", "start_time", "end_time", "error_type")),
}


def _naive_utc(t):
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def reference_with_views(url):
    """The reference's WorkflowTracker with the four listeners, in the
    System BIOMERO's ``SlurmClient.initialize_analytics_system`` builds:
    pipes [[WorkflowTracker, JobAccounting], [WorkflowTracker, JobProgress],
    [WorkflowTracker, WorkflowProgress], [WorkflowTracker, WorkflowAnalytics]]
    on a SingleThreadedRunner. Returns (runner, tracker, {name: listener})."""
    os.environ["SQLALCHEMY_URL"] = url
    persistence_module = os.environ.setdefault("PERSISTENCE_MODULE", "eventsourcing_sqlalchemy")
    from eventsourcing.system import SingleThreadedRunner, System

    EngineManager, WorkflowTracker = _import_reference()
    import biomero.views as views

    listeners = {
        "job_accounting": views.JobAccounting,
        "job_progress": views.JobProgress,
        "workflow_progress": views.WorkflowProgress,
        "workflow_analytics": views.WorkflowAnalytics,
    }
    topic = EngineManager.create_scoped_session(sqlalchemy_url=url)
    runner = SingleThreadedRunner(System(pipes=[[WorkflowTracker, cls] for cls in listeners.values()]), env={
        "SQLALCHEMY_SCOPED_SESSION_TOPIC": topic,
        "PERSISTENCE_MODULE": persistence_module,
    })
    runner.start()
    return runner, runner.get(WorkflowTracker), {k: runner.get(cls) for k, cls in listeners.items()}


def _view_tables():
    """Every row of the four biomero_* tables, read through biomero's own
    SQLAlchemy models, in primary key order."""
    import biomero.database as bdb

    out = {}
    with bdb.EngineManager.get_session() as session:
        for key, (model_name, columns) in VIEW_MODELS.items():
            model = getattr(bdb, model_name)
            pk = getattr(model, columns[0])
            out[key] = [{c: getattr(r, c) for c in columns} for r in session.query(model).order_by(pk).all()]
        session.rollback()
    return out


def _view_memory(listeners):
    """The rows the listeners' in-memory state stands for: what each table
    would hold if every listener wrote its state after every event (the
    reference defers some writes to the next event of the row, fix 2 of
    docs/projections.md)."""
    ja, jp = listeners["job_accounting"], listeners["job_progress"]
    wfp, wfa = listeners["workflow_progress"], listeners["workflow_analytics"]
    jobs = [{"slurm_job_id": int(j), "user": u, "group": g, "task_id": t}
            for j, (t, u, g) in ja.jobs.items()]
    job_progress = [{"slurm_job_id": int(j), "status": s["status"], "progress": s["progress"]}
                    for j, s in jp.job_status.items()]
    workflows = []
    for wf_id, info in wfp.workflows.items():
        workflows.append({
            "workflow_id": wf_id, "status": info["status"], "progress": info["progress"],
            "user": info["user"], "group": info["group"], "name": info["name"], "task": info["task"],
            "main_task_name": wfp._determine_main_task_name(wf_id),
            "start_time": _naive_utc(info["start_time"]),
        })
    tasks = []
    for task_id, info in wfa.tasks.items():
        owner = wfa.workflows.get(info.get("wf_id")) if info.get("wf_id") else None
        tasks.append({
            "task_id": task_id, "task_name": info.get("task_name"), "task_version": info.get("task_version"),
            "user_id": owner["user"] if owner else None, "group_id": owner["group"] if owner else None,
            "status": info.get("status"), "start_time": _naive_utc(info.get("start_time")),
            "end_time": _naive_utc(info.get("end_time")), "error_type": info.get("error_type"),
        })
    out = {"jobs": jobs, "job_progress": job_progress, "workflows": workflows, "tasks": tasks}
    for key, (_, columns) in VIEW_MODELS.items():
        out[key].sort(key=lambda r: str(r[columns[0]]))
    return out


def _notifications(tracker):
    """Every stored event: id, originator, topic and the stored state (text)."""
    out = []
    start = 1
    while True:
        page = tracker.recorder.select_notifications(start=start, limit=500)
        for n in page:
            out.append({"id": n.id, "originator_id": uuid.UUID(str(n.originator_id)).hex,
                        "topic": n.topic, "state": bytes(n.state).decode("utf-8")})
        if len(page) < 500:
            break
        start = page[-1].id + 1
    return out


def do_views(url, job):
    """``job``: {"workload": [...], "refs": {name: hex}?, "queries": [...]?,
    "checkpoints": [step index, ...]?}.
    Runs the workload step by step through the reference with its listeners.
    A step that raises (the reference's projectors raise inside the command,
    after its events are stored) is recorded in "errors" as
    {"step", "type", "message"} and the run goes on. Returns "ids" (name ->
    hex), "errors", "tables" (the four tables as biomero's models read them),
    "memory" (the listeners' in-memory rows), "checkpoints" (the same after
    each step named in "checkpoints"), "notifications" and "queries" (each
    [view, method, *args] called on the listener, tagged result)."""
    EngineManager, _ = _import_reference()
    runner, tracker, listeners = reference_with_views(url)
    try:
        refs = {name: uuid.UUID(h) for name, h in job.get("refs", {}).items()}
        errors, checkpoints = [], []
        wanted = set(job.get("checkpoints", []))
        for i, st in enumerate(job["workload"]):
            try:
                refs.update(run_workload(tracker, [st], refs))
            except Exception as e:  # noqa: BLE001 - recorded for the caller
                errors.append({"step": i, "type": type(e).__name__, "message": str(e)})
                EngineManager.rollback()
            if i in wanted:
                checkpoints.append(tag(_view_memory(listeners)))
        EngineManager.rollback()
        queries = []
        for view, method, *args in job.get("queries", []):
            result = getattr(listeners[view], method)(*untag(args))
            EngineManager.rollback()
            queries.append(tag(result))
        return {
            "ids": {name: u.hex for name, u in refs.items()},
            "errors": errors,
            "tables": tag(_view_tables()),
            "memory": tag(_view_memory(listeners)),
            "checkpoints": checkpoints,
            "notifications": _notifications(tracker),
            "queries": queries,
        }
    finally:
        close_reference(runner)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("write", "read", "reencode", "run", "views"):
        print(__doc__, file=sys.stderr)
        return 2
    command, url = argv[1], argv[2]
    stdin = json.loads(sys.stdin.read()) if command != "reencode" else None
    if command == "write":
        result = do_run(url, {"write": stdin})["ids"]
    elif command == "read":
        result = do_run(url, {"read": stdin})["snapshots"]
    elif command == "reencode":
        result = do_run(url, {"reencode": True})["events"]
    elif command == "views":
        result = do_views(url, stdin)
    else:
        result = do_run(url, stdin)
    json.dump(result, sys.stdout, allow_nan=False, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
