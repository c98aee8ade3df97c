"""The exceptions biomero_rs raises (besides TypeError/ValueError for bad arguments)."""


class BiomeroError(Exception):
    """Base class of biomero_rs errors."""


class AggregateNotFoundError(BiomeroError, KeyError):
    """No WorkflowRun or Task has this id."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class ConcurrencyError(BiomeroError):
    """Other writers kept winning the same aggregate version; retries ran out."""


class DatabaseError(BiomeroError):
    """A connection or server fault. The message names the backend, never a password."""


class RebuildRunningError(DatabaseError):
    """Another rebuild of the same database is running; the message names it
    (pid, host, since when). Raised only when the caller asked not to wait."""


__all__ = ["BiomeroError", "AggregateNotFoundError", "ConcurrencyError", "DatabaseError", "RebuildRunningError"]
