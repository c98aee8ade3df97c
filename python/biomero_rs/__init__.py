"""biomero_rs: BIOMERO's workflow tracking (event store and biomero_* views) in Rust.

Switch BIOMERO by changing imports::

    from biomero_rs import WorkflowTracker
    tracker = WorkflowTracker("sqlite:///biomero.db")
    wf = tracker.initiate_workflow("Cellpose", "v1", user=3, group=7)
"""

from biomero_rs._core import (
    Notification,
    Task,
    WorkflowRun,
    WorkflowTracker,
    __version__,
    reset_logging_cache,
)
from biomero_rs.constants import workflow_status
from biomero_rs.exceptions import (
    AggregateNotFoundError,
    BiomeroError,
    ConcurrencyError,
    DatabaseError,
)

#: Every view, the default of ``views=``.
ALL = ("job_accounting", "job_progress", "workflow_progress", "workflow_analytics")

__all__ = [
    "ALL",
    "AggregateNotFoundError",
    "BiomeroError",
    "ConcurrencyError",
    "DatabaseError",
    "Notification",
    "Task",
    "WorkflowRun",
    "WorkflowTracker",
    "__version__",
    "reset_logging_cache",
    "workflow_status",
]
