"""The drop-in layer: enough of eventsourcing's ``System``/``SingleThreadedRunner``
and biomero's ``EngineManager``/``NoOpWorkflowTracker`` that BIOMERO's
``SlurmClient.initialize_analytics_system`` runs after switching its imports to
biomero_rs.

There are no listener processes here: the views named in the pipes are
projected by the tracker inside each command's transaction.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

from biomero_rs import _core

logger = logging.getLogger("biomero_rs.compat")


# The reference's logger for the tracker's records.
_tracker_logger = logging.getLogger("biomero.eventsourcing")


class NoOpWorkflowTracker:
    """Every method is accepted and does nothing (tracking disabled)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        def no_op_function(*args: Any, **kwargs: Any) -> None:
            _tracker_logger.debug(f"[No-op] Called function: {name} with args: {args}, kwargs: {kwargs}")
            return None

        return no_op_function


# SQLAlchemy's rule for `:name` in text(): not after ':', a word character
# or a backslash, and not followed by ':' (so `::json` casts stay).
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def _bound_sql(statement: Any, params: Optional[Mapping[str, Any]], postgres: bool) -> Tuple[str, List[Any]]:
    """``statement`` (a str or SQLAlchemy ``text()``) with its ``:name``
    parameters numbered as the backend wants them, and their values."""
    values: Dict[str, Any] = {}
    bindparams = getattr(statement, "_bindparams", None)
    if isinstance(bindparams, Mapping):
        for name, bp in bindparams.items():
            if getattr(bp, "value", None) is not None:
                values[name] = bp.value
    if params is not None:
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a mapping of parameter names to values, got {type(params).__name__}")
        values.update(params)
    sql = getattr(statement, "text", statement)
    if not isinstance(sql, str):
        raise TypeError(
            f"statement: expected SQL text (a str or sqlalchemy.text()), got {type(statement).__name__}"
        )
    if not sql.strip():
        raise ValueError("statement: empty SQL")
    order: List[str] = []

    def number(m: "re.Match[str]") -> str:
        name = m.group(1)
        if name not in values:
            raise ValueError(f"params: no value for the bound parameter {name!r}")
        if name not in order:
            order.append(name)
        return f"{'$' if postgres else '?'}{order.index(name) + 1}"

    text = _BIND.sub(number, sql).replace("\\:", ":")
    return text, [values[n] for n in order]


# Statements that only read: not repeated at commit.
_READ_ONLY = re.compile(r"\s*(select|values|show|explain)\b", re.IGNORECASE)

# BIOMERO's view reset: ``DROP TABLE [IF EXISTS] <table>`` of a view or
# tracking table.
_DROP_TABLE = re.compile(r'\s*drop\s+table\s+(?:if\s+exists\s+)?"?([a-z_][a-z0-9_]*)"?\s*;?\s*$', re.IGNORECASE)


class Row(tuple):  # type: ignore[type-arg]
    """A result row: a tuple whose columns are also attributes, as
    SQLAlchemy's ``Row`` (``row.name``, ``row._mapping["name"]``)."""

    __slots__ = ()
    _fields: Tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(f"row has no column {name!r} (columns: {', '.join(self._fields)})") from None

    @property
    def _mapping(self) -> Dict[str, Any]:
        return dict(zip(self._fields, self))

    def _asdict(self) -> Dict[str, Any]:
        return self._mapping


class Result:
    """What ``Session.execute`` returns: the rows of a query (``scalar()``,
    ``fetchone()``, ``fetchall()``, ``first()``, ``one()``, iteration) or the
    changed-row count of a write (``rowcount``)."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Tuple[Any, ...]], rowcount: int):
        self._columns = tuple(columns)
        row_cls = type("Row", (Row,), {"__slots__": (), "_fields": self._columns})
        self._rows: List[Row] = [row_cls(r) for r in rows]
        self.rowcount = rowcount if not self._columns else -1
        self.returns_rows = bool(self._columns)

    def _check(self) -> None:
        if not self.returns_rows:
            raise RuntimeError("this statement returns no rows (see rowcount)")

    def keys(self) -> List[str]:
        """Return the column names (empty for a statement without rows)."""
        return list(self._columns)

    def fetchone(self) -> Optional[Row]:
        """Return the next row, or None when none is left.

        Raises:
            RuntimeError: The statement returns no rows.
        """
        self._check()
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int = 1) -> List[Row]:
        """Return the next ``size`` rows (fewer at the end).

        Raises:
            RuntimeError: The statement returns no rows.
        """
        self._check()
        out, self._rows = self._rows[:size], self._rows[size:]
        return out

    def fetchall(self) -> List[Row]:
        """Return the rows not fetched yet.

        Raises:
            RuntimeError: The statement returns no rows.
        """
        self._check()
        out, self._rows = self._rows, []
        return out

    def all(self) -> List[Row]:
        """As :meth:`fetchall`: the rows not fetched yet."""
        return self.fetchall()

    def first(self) -> Optional[Row]:
        """Return the next row, or None, and discard the rest.

        Raises:
            RuntimeError: The statement returns no rows.
        """
        self._check()
        out = self._rows[0] if self._rows else None
        self._rows = []
        return out

    def scalar(self) -> Any:
        """The first column of the first row, or None without rows."""
        row = self.first()
        return None if row is None else row[0]

    def one(self) -> Row:
        """Return the only row.

        Raises:
            ValueError: There is not exactly one row.
        """
        rows = self.fetchall()
        if len(rows) != 1:
            raise ValueError(f"expected exactly one row, got {len(rows)}")
        return rows[0]

    def one_or_none(self) -> Optional[Row]:
        """Return the only row, or None without rows.

        Raises:
            ValueError: There is more than one row.
        """
        rows = self.fetchall()
        if len(rows) > 1:
            raise ValueError(f"expected at most one row, got {len(rows)}")
        return rows[0] if rows else None

    def scalar_one(self) -> Any:
        """Return the first column of the only row.

        Raises:
            ValueError: There is not exactly one row.
        """
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        """Return the first column of the only row, or None without rows.

        Raises:
            ValueError: There is more than one row.
        """
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> List[Any]:
        """Return the first column of every row not fetched yet."""
        return [r[0] for r in self.fetchall()]

    def mappings(self) -> List[Dict[str, Any]]:
        """Return the rows not fetched yet as dicts of column name to value."""
        return [r._mapping for r in self.fetchall()]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class Session:
    """A small session on the EngineManager's database, as SQLAlchemy's.

    ``execute(statement, params)`` takes a SQL string or a SQLAlchemy
    ``text()`` with ``:name`` parameters bound from ``params`` and returns a
    :class:`Result` at once. The statements of a session form one
    transaction: ``commit()`` applies them; ``rollback()``, ``close()`` and
    leaving the ``with`` block without commit discard them. Each
    ``execute`` sees the session's earlier statements.

    ``DROP TABLE`` of a view table or a tracking table (BIOMERO's view reset)
    is not run: at ``commit()`` the view is marked for a rebuild, which its
    next ``pull_and_process`` does beside the live table, switching at once,
    so that readers never see the table missing, empty or partial.
    """

    def __init__(self, url: str):
        self._url = url
        self._postgres = url.strip().lower().startswith("postgres")
        self._pending: List[Tuple[str, List[Any]]] = []
        self._resets: List[str] = []

    def execute(self, statement: Any, params: Optional[Mapping[str, Any]] = None) -> Result:
        """Run ``statement`` (SQL text or SQLAlchemy ``text()``, with ``:name``
        parameters from ``params``) in this session's transaction and return
        its rows; writes take effect at :meth:`commit`.

        Raises:
            TypeError: ``params`` is not a mapping, or a value cannot be bound.
            ValueError: A parameter is missing or the statement is empty.
            DatabaseError: The statement failed.
        """
        sql, values = _bound_sql(statement, params, self._postgres)
        drop = _DROP_TABLE.match(sql)
        if drop is not None and _core.view_of_table_name(drop.group(1)) is not None:
            # A view reset (SlurmClient's reset_tables): the table stays and
            # the view is rebuilt beside it by its next pull_and_process.
            self._resets.append(drop.group(1))
            return Result([], [], 0)
        columns, rows, rowcount = _core.execute_statements(self._url, [*self._pending, (sql, values)], False)
        if not columns or not _READ_ONLY.match(sql):
            self._pending.append((sql, values))
        return Result(columns, rows, rowcount)

    def commit(self) -> None:
        """Run the queued statements in one transaction.

        Raises:
            DatabaseError: A statement failed; none took effect.
        """
        pending, self._pending = self._pending, []
        resets, self._resets = self._resets, []
        if pending:
            _core.execute_statements(self._url, pending, True)
        if resets:
            _core.defer_view_reset(self._url, resets)

    def rollback(self) -> None:
        """Discard the queued statements."""
        self._pending = []
        self._resets = []

    def close(self) -> None:
        """Discard the queued statements; the session can be used again."""
        self._pending = []
        self._resets = []

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EngineManager:
    """Holds the database URL of the process, as biomero's EngineManager."""

    _url: Optional[str] = None
    _topic: Optional[str] = None
    _lock = threading.Lock()

    @classmethod
    def create_scoped_session(cls, sqlalchemy_url: Optional[str] = None) -> str:
        """Set the process's database URL (once) and make sure the view tables exist.

        Args:
            sqlalchemy_url: The database URL; None reads ``SQLALCHEMY_URL``.

        Returns:
            A topic string for ``SQLALCHEMY_SCOPED_SESSION_TOPIC``, as biomero's.

        Raises:
            ValueError: No URL was given and ``SQLALCHEMY_URL`` is not set.
            DatabaseError: The database failed or its view tables are missing.
        """
        with cls._lock:
            if cls._url is None:
                url = sqlalchemy_url or os.getenv("SQLALCHEMY_URL")
                if not url:
                    raise ValueError("sqlalchemy_url: no database URL given and SQLALCHEMY_URL is not set")
                _core.ensure_view_tables(url)
                cls._url = url
                cls._topic = f"biomero_rs.compat:EngineManager#{id(cls)}"
            assert cls._topic is not None
            return cls._topic

    @classmethod
    def url(cls) -> str:
        """Return the process's database URL.

        Raises:
            RuntimeError: Neither ``create_scoped_session()`` ran nor ``SQLALCHEMY_URL`` is set.
        """
        if cls._url is None:
            url = os.getenv("SQLALCHEMY_URL")
            if not url:
                raise RuntimeError("EngineManager: call create_scoped_session() first or set SQLALCHEMY_URL")
            return url
        return cls._url

    @classmethod
    def get_session(cls) -> Session:
        """Return a new :class:`Session` on the process's database (see :meth:`url`)."""
        return Session(cls.url())

    @classmethod
    def commit(cls) -> None:
        """Each biomero_rs command commits itself; nothing to do."""

    @classmethod
    def safe_commit(cls) -> None:
        """As :meth:`commit`: each biomero_rs command commits itself."""

    @classmethod
    def rollback(cls) -> None:
        """Each biomero_rs command is atomic; nothing to roll back."""

    @classmethod
    def remove_session(cls) -> None:
        """Sessions are not kept."""

    @classmethod
    def close_engine(cls) -> None:
        """Forget the process's database URL and release its connection pool."""
        with cls._lock:
            if cls._url is not None:
                _core.close_store(cls._url)
            cls._url = None
            cls._topic = None


class System:
    """``System(pipes=[[WorkflowTracker, JobAccounting], ...])``: the leader
    and the views that follow it."""

    def __init__(self, pipes: Sequence[Sequence[type]]):
        if not pipes:
            raise ValueError("pipes: at least one pipe is needed")
        self.pipes = [list(p) for p in pipes]
        self.leader = self.pipes[0][0]
        self.followers: List[Type[Any]] = []
        for pipe in self.pipes:
            if not pipe or pipe[0] is not self.leader:
                raise ValueError("pipes: every pipe must start with the same tracker class")
            for cls in pipe[1:]:
                if cls not in self.followers:
                    self.followers.append(cls)


class SingleThreadedRunner:
    """Starts the tracker with the views of the system's pipes."""

    def __init__(self, system: System, env: Optional[Dict[str, str]] = None):
        self.system = system
        self.env = dict(env or {})
        self._apps: Dict[type, Any] = {}

    def _url(self) -> str:
        return self.env.get("SQLALCHEMY_URL") or EngineManager.url()

    def start(self) -> None:
        """Open the leader (the tracker, projecting the followers' views) and the followers.

        Raises:
            NotImplementedError: ``PERSISTENCE_MODULE`` is not ``eventsourcing_sqlalchemy``.
            RuntimeError: No database URL is known (see ``EngineManager.url``).
        """
        module = self.env.get("PERSISTENCE_MODULE")
        if module and module != "eventsourcing_sqlalchemy":
            raise NotImplementedError(f"Can't handle {module}; only eventsourcing_sqlalchemy is supported")
        url = self._url()
        views: List[str] = [cls.VIEW_NAME for cls in self.system.followers]
        self._apps[self.system.leader] = self.system.leader(url, views=views)
        for cls in self.system.followers:
            self._apps[cls] = cls(url)

    def get(self, cls: Type[Any]) -> Any:
        """Return the running instance of ``cls`` (the tracker or a view class).

        Raises:
            KeyError: ``cls`` is not part of the system, or ``start()`` has not run.
        """
        try:
            return self._apps[cls]
        except KeyError:
            raise KeyError(f"{cls.__name__} is not running in this system (call start() first)") from None

    def stop(self) -> None:
        """Forget the running instances (each command already committed)."""
        self._apps.clear()

    def __enter__(self) -> "SingleThreadedRunner":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["EngineManager", "NoOpWorkflowTracker", "Result", "Row", "Session", "SingleThreadedRunner", "System"]
