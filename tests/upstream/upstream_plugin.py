"""pytest plugin for BIOMERO 2.8.3's own unit tests run with biomero_rs
switched on (``-p upstream_plugin``; see test_upstream.py).

- Checks at start that ``biomero`` really uses biomero_rs (activated by
  ``BIOMERO_RS_ACTIVATE=1`` through the installed ``.pth`` file).
- Applies ``known_failures.txt``: each listed test is deselected or marked
  as a strict xfail, with its reason.
- With ``BIOMERO_RS_UPSTREAM_BACKEND=postgres``: whenever a fixture has set
  ``SQLALCHEMY_URL=sqlite:///:memory:`` (as the upstream fixtures do), it
  points it, and the EngineManager, at this test's fresh Postgres database
  instead (see ``_Database``).
"""

import os
import uuid
from pathlib import Path

import pytest

MEMORY = "sqlite:///:memory:"
BACKEND = os.environ.get("BIOMERO_RS_UPSTREAM_BACKEND", "sqlite")
PG_SERVER = os.environ.get("BIOMERO_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
KNOWN = Path(__file__).with_name("known_failures.txt")


def read_known(path=KNOWN, backend=BACKEND):
    """{test: (action, reason)} of known_failures.txt for ``backend``. A line
    is ``ACTION TEST REASON``: ACTION ``xfail`` (strict) or ``deselect``,
    optionally ``@sqlite`` or ``@postgres`` for one backend only; TEST is
    ``file.py::[Class::]name[params]``."""
    known = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        action, _, only = parts[0].partition("@") if parts else ("", "", "")
        if len(parts) < 3 or action not in ("xfail", "deselect") or only not in ("", "sqlite", "postgres"):
            raise ValueError(f"{path.name}:{n}: expected 'xfail|deselect[@backend] FILE::TEST REASON', got {line!r}")
        if only in ("", backend):
            known[parts[1]] = (action, parts[2])
    return known


def _name(item):
    """``file.py::[Class::]test[params]``."""
    return item.nodeid.rsplit("/", 1)[-1]


def pytest_sessionstart(session):
    import biomero.slurm_client as sc

    import biomero_rs

    if not biomero_rs.is_active() or sc.WorkflowTracker is not biomero_rs.WorkflowTracker:
        raise pytest.UsageError("biomero is not switched to biomero_rs: is BIOMERO_RS_ACTIVATE=1 set "
                                "and biomero_rs_activate.pth installed?")


def pytest_collection_modifyitems(session, config, items):
    known = read_known()
    seen = set()
    keep, dropped = [], []
    for item in items:
        entry = known.get(_name(item))
        if entry is None:
            keep.append(item)
            continue
        seen.add(_name(item))
        action, reason = entry
        if action == "deselect":
            dropped.append(item)
        else:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
            keep.append(item)
    stale = set(known) - seen
    if stale:
        raise pytest.UsageError(f"known_failures.txt names tests that do not exist: {sorted(stale)}")
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


class _Database:
    """One Postgres database for the run, emptied before each test (a new
    ``public`` schema, no connection left from the test before): as fresh as
    a new database, without the cost of CREATE DATABASE per test. Each test
    gets its own URL (``application_name``), so no pool or cache of
    biomero_rs carries over either."""

    def __init__(self):
        self.name = None
        self.admin_conn = None
        self.count = 0
        self.url = None

    @staticmethod
    def _connect(dbname):
        import psycopg2

        conn = psycopg2.connect(f"{PG_SERVER}/{dbname}")
        conn.autocommit = True
        return conn

    def create(self):
        self.name = f"biomero_upstream_{uuid.uuid4().hex[:12]}"
        server = self._connect("postgres")
        try:
            server.cursor().execute(f'CREATE DATABASE "{self.name}"')
        finally:
            server.close()
        self.admin_conn = self._connect(self.name)

    def fresh(self):
        """The URL of this test's (empty) database."""
        if self.url is None:
            self.count += 1
            with self.admin_conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            self.url = f"{PG_SERVER}/{self.name}?application_name=biomero_upstream_{self.count}"
        return self.url

    def end_test(self):
        if self.url is None:
            return
        from biomero_rs import _core, compat

        # The upstream fixtures of test_slurm_client never close the engine
        # (on sqlite:///:memory: it lives on); this test's database goes, so
        # it does.
        if compat.EngineManager._url == self.url:
            compat.EngineManager.close_engine()
        _core.close_store(self.url)
        self.url = None

    def drop(self):
        if self.admin_conn is not None:
            self.admin_conn.close()
        if self.name:
            server = self._connect("postgres")
            try:
                server.cursor().execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                server.close()


_dbs = _Database()


def pytest_configure(config):
    if BACKEND == "postgres":
        _dbs.create()


def pytest_unconfigure(config):
    if BACKEND == "postgres":
        _dbs.drop()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    yield
    if BACKEND != "postgres" or os.environ.get("SQLALCHEMY_URL") != MEMORY:
        return
    from biomero_rs import compat

    url = _dbs.fresh()
    os.environ["SQLALCHEMY_URL"] = url
    try:
        engine_url = compat.EngineManager.url()
    except RuntimeError:
        engine_url = None
    if engine_url == MEMORY:
        compat.EngineManager.close_engine()
        compat.EngineManager.create_scoped_session(url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if BACKEND == "postgres":
        _dbs.end_test()
