"""biomero_rs's log records follow Python's logging configuration whenever it
changes, under the reference's logger names (biomero.eventsourcing for the
tracker, biomero.views for the projectors)."""

import json
import logging
import logging.config
import os
import subprocess
import sys

import biomero_rs


def commands(url):
    t = biomero_rs.WorkflowTracker(url)
    wf = t.initiate_workflow("wf", "d", 1, 2)
    task = t.add_task_to_workflow(wf, "cellpose", "1", {}, {})
    t.add_job_id(task, 77)
    t.update_task_status(task, "RUNNING")
    return wf, task


def names(records, needle):
    return {r.name for r in records if needle in r.getMessage()}


def test_caplog_after_a_first_command_captures_debug_records(sqlite_db, caplog):
    commands(sqlite_db.url)  # the levels as they were (WARNING) are cached here
    with caplog.at_level(logging.DEBUG):
        wf, _ = commands(sqlite_db.url)
    assert names(caplog.records, f"Initiating workflow: name=wf") == {"biomero.eventsourcing"}
    assert any(r.name == "biomero.views" and r.levelno == logging.DEBUG for r in caplog.records)
    caplog.clear()
    commands(sqlite_db.url)  # back to WARNING: no debug record
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]


def test_a_config_for_the_reference_logger_names_captures_our_records(sqlite_db):
    commands(sqlite_db.url)
    seen = {"biomero.eventsourcing": [], "biomero.views": []}

    class Keep(logging.Handler):
        def emit(self, record):
            seen[self.name].append(record)

    config = {"version": 1, "disable_existing_loggers": False,
              "handlers": {n: {"()": Keep} for n in seen},
              "loggers": {n: {"level": "DEBUG", "handlers": [n], "propagate": False} for n in seen}}
    try:
        logging.config.dictConfig(config)
        commands(sqlite_db.url)
    finally:
        for n in seen:
            lg = logging.getLogger(n)
            lg.handlers.clear()
            lg.setLevel(logging.NOTSET)
            lg.propagate = True
    assert any("[WFT] Adding job_id to task" in r.getMessage() for r in seen["biomero.eventsourcing"])
    assert any(r.getMessage().startswith("[JA]") for r in seen["biomero.views"])
    assert all(r.name == "biomero.views" for r in seen["biomero.views"])


def test_basic_config_after_a_first_command_in_a_fresh_process(sqlite_db):
    code = """
import json, logging, sys, biomero_rs
t = biomero_rs.WorkflowTracker(sys.argv[1])
t.initiate_workflow("before", "d", 1, 2)
records = []
class H(logging.Handler):
    def emit(self, r): records.append([r.name, r.levelname, r.getMessage()])
logging.basicConfig(level=logging.DEBUG, handlers=[H()])
t.initiate_workflow("after", "d", 1, 2)
logging.getLogger().setLevel(logging.INFO)
t.initiate_workflow("quiet", "d", 1, 2)
print(json.dumps(records))
"""
    env = {k: v for k, v in os.environ.items() if k != "BIOMERO_RS_ACTIVATE"}
    proc = subprocess.run([sys.executable, "-c", code, sqlite_db.url], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    msgs = [m for _, _, m in records]
    assert any("name=after" in m for m in msgs)
    assert not any("name=before" in m or "name=quiet" in m for m in msgs)
    assert {n for n, lvl, m in records if "[WFT]" in m} == {"biomero.eventsourcing"}
    assert any(n == "biomero.views" and lvl == "DEBUG" for n, lvl, _ in records)
