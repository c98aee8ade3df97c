"""biomero_rs: BIOMERO's workflow tracking (event store and biomero_* views) in Rust.

Switch BIOMERO by changing imports::

    from biomero_rs import WorkflowTracker, WorkflowProgress
    tracker = WorkflowTracker("sqlite:///biomero.db")
    wf = tracker.initiate_workflow("Cellpose", "v1", 3, 7)
    WorkflowProgress("sqlite:///biomero.db").get_workflow(wf)
"""

from biomero_rs._core import (
    JobAccounting,
    JobProgress,
    JobProgressView,
    JobView,
    Notification,
    Task,
    TaskExecution,
    WorkflowAnalytics,
    WorkflowProgress,
    WorkflowProgressView,
    WorkflowRun,
    WorkflowTracker,
    __version__,
    catch_up,
    check,
    rebuild_views,
    reset_logging_cache,
    run_migrations,
    status,
    verify,
    view_definitions,
)
from biomero_rs import logsync as _logsync  # levels follow logging's configuration
from biomero_rs.activation import activate, deactivate, is_active
from biomero_rs.compat import (
    EngineManager,
    NoOpWorkflowTracker,
    SingleThreadedRunner,
    System,
)
from biomero_rs.constants import workflow_status
from biomero_rs.exceptions import (
    AggregateNotFoundError,
    BiomeroError,
    ConcurrencyError,
    DatabaseError,
    RebuildRunningError,
)

#: Every view, the default of ``views=`` (the names of the core's registry).
ALL = tuple(str(d["name"]) for d in view_definitions())

__all__ = [
    "ALL",
    "AggregateNotFoundError",
    "BiomeroError",
    "ConcurrencyError",
    "DatabaseError",
    "EngineManager",
    "JobAccounting",
    "JobProgress",
    "JobProgressView",
    "JobView",
    "NoOpWorkflowTracker",
    "Notification",
    "RebuildRunningError",
    "SingleThreadedRunner",
    "System",
    "Task",
    "TaskExecution",
    "WorkflowAnalytics",
    "WorkflowProgress",
    "WorkflowProgressView",
    "WorkflowRun",
    "WorkflowTracker",
    "__version__",
    "activate",
    "catch_up",
    "check",
    "deactivate",
    "is_active",
    "rebuild_views",
    "reset_logging_cache",
    "run_migrations",
    "status",
    "verify",
    "view_definitions",
    "workflow_status",
]
