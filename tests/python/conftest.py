"""Shared fixtures: a fresh database per test on each backend, and the
reference package (biomero 2.8.3) run in a subprocess.

Backends come from BIOMERO_TEST_BACKENDS (default "sqlite,postgres"); the
Postgres server is BIOMERO_TEST_PG (default postgresql://postgres@127.0.0.1:5432).
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REFTOOL = HERE / "reftool.py"
PG_SERVER = os.environ.get("BIOMERO_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
BACKENDS = [b for b in os.environ.get("BIOMERO_TEST_BACKENDS", "sqlite,postgres").split(",") if b]


def _pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_SERVER + "/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


class Database:
    """A fresh, empty database of one backend."""

    def __init__(self, backend: str, tmp_path: Path):
        self.backend = backend
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'biomero.db'}"
            self.name = None
        else:
            self.name = f"biomero_test_{uuid.uuid4().hex[:12]}"
            _pg_admin(f'CREATE DATABASE "{self.name}"')
            self.url = f"{PG_SERVER}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        """The same database as the reference package spells it."""
        if self.backend == "postgres":
            return self.url.replace("postgresql://", "postgresql+psycopg2://", 1)
        return self.url

    def drop(self) -> None:
        if self.name:
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def execute(self, sql: str) -> None:
        """Runs one statement through the backend's Python driver and commits."""
        if self.backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.url[len("sqlite:///"):])
            try:
                conn.execute(sql)
                conn.commit()
            finally:
                conn.close()
            return
        import psycopg2

        conn = psycopg2.connect(self.url)
        try:
            conn.cursor().execute(sql)
            conn.commit()
        finally:
            conn.close()

    def insert_events(self, rows) -> None:
        """Appends `(originator_id, originator_version, topic, state)` rows to
        the events table in bulk, as a load would (no projection)."""
        sql = "INSERT INTO workflowtracker_events (originator_id, originator_version, topic, state) VALUES "
        if self.backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.url[len("sqlite:///"):])
            conn.executemany(sql + "(?, ?, ?, ?)", rows)
            conn.commit()
            conn.close()
            return
        import psycopg2
        import psycopg2.extras

        conn = psycopg2.connect(self.url)
        with conn.cursor() as cur:
            psycopg2.extras.execute_values(cur, sql + "%s", rows, page_size=5000)
        conn.commit()
        conn.close()

    def rows(self, sql: str, params=()):
        """Rows of a raw SQL query, through the backend's Python driver."""
        if self.backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.url[len("sqlite:///"):])
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        import psycopg2

        conn = psycopg2.connect(self.url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall()
        finally:
            conn.close()


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    """A fresh database on each backend under test, dropped afterwards."""
    d = Database(request.param, tmp_path)
    yield d
    d.drop()


@pytest.fixture
def sqlite_db(tmp_path):
    d = Database("sqlite", tmp_path)
    yield d


def run_reference(*args: str, input: str = None, env: dict = None) -> str:
    """Runs tests/python/reftool.py (the reference package) in a fresh process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PERSISTENCE_MODULE", "eventsourcing_sqlalchemy")
    proc = subprocess.run(
        [sys.executable, str(REFTOOL), *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(f"reference run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout
