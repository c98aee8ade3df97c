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
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Type

from biomero_rs import _core

logger = logging.getLogger("biomero_rs.compat")


class NoOpWorkflowTracker:
    """Every method is accepted and does nothing (tracking disabled)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        def no_op_function(*args: Any, **kwargs: Any) -> None:
            logger.debug(f"[No-op] Called function: {name} with args: {args}, kwargs: {kwargs}")
            return None

        return no_op_function


class Session:
    """A small session on the EngineManager's database.

    ``execute()`` takes a SQL string or a SQLAlchemy ``text()`` (no bound
    parameters); statements run together in one transaction at ``commit()``;
    ``rollback()`` and leaving the ``with`` block without commit discard them.
    """

    def __init__(self, url: str):
        self._url = url
        self._pending: List[str] = []

    def execute(self, statement: Any, params: Optional[Dict[str, Any]] = None) -> None:
        """Queue ``statement`` (SQL text or SQLAlchemy ``text()``) for :meth:`commit`.

        Raises:
            NotImplementedError: ``params`` were given (bound parameters are not supported).
            ValueError: The statement is empty.
        """
        if params:
            raise NotImplementedError("Session.execute: bound parameters are not supported")
        sql = str(statement).strip()
        if not sql:
            raise ValueError("statement: empty SQL")
        self._pending.append(sql.rstrip(";"))

    def commit(self) -> None:
        """Run the queued statements in one transaction.

        Raises:
            DatabaseError: A statement failed; none took effect.
        """
        pending, self._pending = self._pending, []
        if pending:
            _core.execute_sql(self._url, ";\n".join(pending) + ";")

    def rollback(self) -> None:
        """Discard the queued statements."""
        self._pending = []

    def close(self) -> None:
        """Discard the queued statements; the session can be used again."""
        self._pending = []

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


__all__ = ["EngineManager", "NoOpWorkflowTracker", "Session", "SingleThreadedRunner", "System"]
