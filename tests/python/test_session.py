"""EngineManager.get_session(): SQL text with bound parameters, compared with
SQLAlchemy's own session on the same database."""

import datetime
import uuid

import pytest

import biomero_rs
from biomero_rs import compat

sqlalchemy = pytest.importorskip("sqlalchemy")
text = sqlalchemy.text


@pytest.fixture(autouse=True)
def fresh_engine_manager():
    compat.EngineManager.close_engine()
    yield
    compat.EngineManager.close_engine()


def history(url):
    t = biomero_rs.WorkflowTracker(url)
    wf = t.initiate_workflow("cellpose run", "v1", 3, 7)
    task = t.add_task_to_workflow(wf, "cellpose", "1.0", {"ids": [1]}, {})
    t.add_job_id(task, "4242")
    t.update_task_status(task, "RUNNING")
    return wf, task


def sqlalchemy_rows(db, sql, params):
    engine = sqlalchemy.create_engine(db.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(r) for r in result.fetchall()]
    finally:
        engine.dispose()


QUERIES = [
    ("SELECT MIN(id) FROM workflowtracker_events WHERE topic LIKE :pattern", {"pattern": "%TaskStatusUpdated%"}),
    ("SELECT COUNT(*) AS n, MAX(id) AS top FROM workflowtracker_events WHERE id >= :a AND id <= :b", {"a": 2, "b": 4}),
    ("SELECT slurm_job_id, status FROM biomero_job_progress_view WHERE slurm_job_id = :j", {"j": 4242}),
    ("SELECT task_name, task_version, user_id, status FROM biomero_task_execution WHERE task_name = :n OR task_name = :n",
     {"n": "cellpose"}),
    ("SELECT name, \"user\" FROM biomero_workflow_progress_view WHERE name = :name", {"name": "nothing"}),
]


@pytest.mark.parametrize("sql,params", QUERIES)
def test_bound_queries_answer_as_sqlalchemy(db, sql, params):
    history(db.url)
    compat.EngineManager.create_scoped_session(db.url)
    with compat.EngineManager.get_session() as session:
        rows = session.execute(text(sql), params).fetchall()
    assert [tuple(r) for r in rows] == sqlalchemy_rows(db, sql, params)
    with compat.EngineManager.get_session() as session:
        first = session.execute(text(sql), params).scalar()
    expected = sqlalchemy_rows(db, sql, params)
    assert first == (expected[0][0] if expected else None)


def test_find_analytics_start_id_finds_the_cutoff_on_postgres(db):
    """SlurmClient._find_analytics_start_id's own query (Postgres JSON
    operators, ``::json`` casts next to ``:cutoff``)."""
    if db.backend != "postgres":
        pytest.skip("the query uses Postgres JSON operators")
    history(db.url)
    sql = ("SELECT MIN(id) FROM workflowtracker_events "
           "WHERE (convert_from(state, 'UTF8')::json->>'timestamp')::json->>'_data_' >= :cutoff")
    compat.EngineManager.create_scoped_session(db.url)
    for cutoff in ["2000-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00"]:
        with compat.EngineManager.get_session() as session:
            got = session.execute(text(sql), {"cutoff": cutoff}).scalar()
        assert got == sqlalchemy_rows(db, sql, {"cutoff": cutoff})[0][0]
    with compat.EngineManager.get_session() as session:
        assert session.execute(text(sql), {"cutoff": "2000-01-01"}).scalar() == 1


def test_rows_have_column_attributes_and_types(db):
    history(db.url)
    compat.EngineManager.create_scoped_session(db.url)
    with compat.EngineManager.get_session() as session:
        row = session.execute(
            text("SELECT task_id, start_time, user_id FROM biomero_task_execution WHERE user_id = :u"), {"u": 3}
        ).one()
    assert row.user_id == 3 and row._mapping["user_id"] == 3
    expected = sqlalchemy_rows(db, "SELECT task_id, start_time, user_id FROM biomero_task_execution", {})[0]
    assert tuple(row) == expected
    if db.backend == "postgres":
        assert isinstance(row.task_id, uuid.UUID) and isinstance(row.start_time, datetime.datetime)


def test_a_session_sees_its_writes_and_commit_applies_them(db):
    compat.EngineManager.create_scoped_session(db.url)
    with compat.EngineManager.get_session() as session:
        session.execute(text("CREATE TABLE biomero_probe (x INTEGER, y TEXT)"))
        result = session.execute(text("INSERT INTO biomero_probe (x, y) VALUES (:x, :y)"), {"x": 1, "y": "a:b"})
        assert result.rowcount == 1
        session.execute(text("INSERT INTO biomero_probe (x, y) VALUES (:x, :y)"), {"x": 2, "y": None})
        assert session.execute(text("SELECT COUNT(*) FROM biomero_probe")).scalar() == 2
        session.rollback()
        session.execute(text("CREATE TABLE biomero_probe (x INTEGER, y TEXT)"))
        session.execute(text("INSERT INTO biomero_probe (x, y) VALUES (:x, :y)"), {"x": 5, "y": "kept"})
        session.commit()
    with compat.EngineManager.get_session() as session:
        session.execute(text("INSERT INTO biomero_probe (x, y) VALUES (:x, :y)"), {"x": 6, "y": "dropped"})
    assert db.rows("SELECT x, y FROM biomero_probe") == [(5, "kept")]


def test_bad_statements_and_parameters_are_named(db):
    compat.EngineManager.create_scoped_session(db.url)
    session = compat.EngineManager.get_session()
    with pytest.raises(ValueError, match="'missing'"):
        session.execute(text("SELECT :missing"), {})
    with pytest.raises(TypeError, match=r"params\[0\]"):
        session.execute(text("SELECT :x"), {"x": object()})
    with pytest.raises(TypeError, match="params"):
        session.execute(text("SELECT :x"), [1])
    with pytest.raises(ValueError, match="statement"):
        session.execute("  ")
    with pytest.raises(biomero_rs.DatabaseError):
        session.execute(text("SELECT * FROM no_such_table"))
    with pytest.raises(RuntimeError, match="no rows"):
        session.execute(text("CREATE TABLE biomero_probe (x INTEGER)")).scalar()
