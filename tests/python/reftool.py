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
``{"$decimal": str}``, ``{"$dict": [[key, value], ...]}`` (key order kept),
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


def main(argv):
    if len(argv) != 3 or argv[1] not in ("write", "read", "reencode", "run"):
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
    else:
        result = do_run(url, stdin)
    json.dump(result, sys.stdout, allow_nan=False, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
