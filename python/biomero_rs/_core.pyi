"""Type stubs of the native module biomero_rs._core."""

import datetime
import uuid
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union

__version__: str

UUIDLike = Union[uuid.UUID, str]
_V = TypeVar("_V")

class WorkflowRun:
    id: uuid.UUID
    version: int
    created_on: datetime.datetime
    modified_on: datetime.datetime
    name: str
    description: Any
    user: int
    group: int
    tasks: List[uuid.UUID]

class Task:
    id: uuid.UUID
    version: int
    created_on: datetime.datetime
    modified_on: datetime.datetime
    workflow_id: uuid.UUID
    task_name: str
    task_version: Optional[str]
    input_data: Dict[str, Any]
    params: Dict[str, Any]
    job_ids: List[Union[str, int]]
    results: List[Dict[str, Any]]
    result_message: Optional[str]
    status: Optional[str]
    progress: Optional[str]

class Notification:
    id: int
    originator_id: uuid.UUID
    originator_version: int
    topic: str
    state: bytes

class Repository:
    def get(self, aggregate_id: UUIDLike) -> Union[WorkflowRun, Task]: ...
    def __contains__(self, aggregate_id: UUIDLike) -> bool: ...

class NotificationLog:
    def select(self, start: int, limit: int) -> List[Notification]: ...

class WorkflowTracker:
    def __init__(self, url: Optional[str] = None, *, views: Optional[Iterable[str]] = None) -> None: ...
    @property
    def views(self) -> List[str]: ...
    @property
    def repository(self) -> Repository: ...
    @property
    def notification_log(self) -> NotificationLog: ...
    def initiate_workflow(self, name: str, description: Any, user: int, group: int) -> uuid.UUID: ...
    def add_task_to_workflow(
        self,
        workflow_id: UUIDLike,
        task_name: str,
        task_version: Optional[str],
        input_data: Dict[str, Any],
        kwargs: Dict[str, Any],
    ) -> uuid.UUID: ...
    def start_workflow(self, workflow_id: UUIDLike) -> None: ...
    def complete_workflow(self, workflow_id: UUIDLike) -> None: ...
    def fail_workflow(self, workflow_id: UUIDLike, error_message: Any) -> None: ...
    def start_task(self, task_id: UUIDLike) -> None: ...
    def complete_task(self, task_id: UUIDLike, message: Any) -> None: ...
    def fail_task(self, task_id: UUIDLike, error_message: Optional[str]) -> None: ...
    def add_job_id(self, task_id: UUIDLike, slurm_job_id: Union[int, str]) -> None: ...
    def add_result(self, task_id: UUIDLike, result: Any) -> None: ...
    def update_task_status(self, task_id: UUIDLike, status: str) -> None: ...
    def update_task_progress(self, task_id: UUIDLike, progress: Optional[str]) -> None: ...
    def catch_up(self) -> int: ...
    def __copy__(self) -> "WorkflowTracker": ...
    def __deepcopy__(self, memo: Any) -> "WorkflowTracker": ...

class Recorder:
    tracking_table_name: str
    events_table_name: str

class _View:
    VIEW_NAME: str
    def __init__(self, url: Optional[str] = None, *args: Any, **kwargs: Any) -> None: ...
    @property
    def recorder(self) -> Recorder: ...
    def pull_and_process(self, leader_name: Optional[str] = None, start: Optional[int] = None) -> int: ...
    def __copy__(self: _V) -> _V: ...
    def __deepcopy__(self: _V, memo: Any) -> _V: ...

class JobView:
    __tablename__: str
    slurm_job_id: int
    user: int
    group: int
    task_id: Optional[uuid.UUID]
    def to_dict(self) -> Dict[str, Any]: ...

class JobProgressView:
    __tablename__: str
    slurm_job_id: int
    status: str
    progress: Optional[str]
    def to_dict(self) -> Dict[str, Any]: ...

class WorkflowProgressView:
    __tablename__: str
    workflow_id: uuid.UUID
    status: Optional[str]
    progress: Optional[str]
    user: Optional[int]
    group: Optional[int]
    name: Optional[str]
    task: Optional[str]
    main_task_name: Optional[str]
    start_time: datetime.datetime
    def to_dict(self) -> Dict[str, Any]: ...

class TaskExecution:
    __tablename__: str
    task_id: uuid.UUID
    task_name: str
    task_version: Optional[str]
    user_id: Optional[int]
    group_id: Optional[int]
    status: str
    start_time: datetime.datetime
    end_time: Optional[datetime.datetime]
    error_type: Optional[str]
    def to_dict(self) -> Dict[str, Any]: ...

class JobAccounting(_View):
    def get_jobs(self, user: Optional[int] = None, group: Optional[int] = None) -> Dict[Optional[int], List[int]]: ...
    def get_task_id(self, job_id: Union[int, str]) -> Optional[uuid.UUID]: ...
    def list_jobs(self) -> List[JobView]: ...

class JobProgress(_View):
    def get_job_progress(self, slurm_job_id: Union[int, str]) -> Optional[JobProgressView]: ...
    def list_job_progress(self) -> List[JobProgressView]: ...

class WorkflowProgress(_View):
    def get_workflow(self, workflow_id: UUIDLike) -> Optional[WorkflowProgressView]: ...
    def list_workflows(self, user: Optional[int] = None, group: Optional[int] = None) -> List[WorkflowProgressView]: ...

TaskKey = Tuple[str, Optional[str]]

class WorkflowAnalytics(_View):
    def get_task_counts(self, user: Optional[int] = None, group: Optional[int] = None) -> Dict[TaskKey, int]: ...
    def get_average_task_duration(
        self, user: Optional[int] = None, group: Optional[int] = None
    ) -> Dict[TaskKey, float]: ...
    def get_task_failures(self, user: Optional[int] = None, group: Optional[int] = None) -> Dict[TaskKey, List[str]]: ...
    def get_task_usage_over_time(
        self, task_name: str, user: Optional[int] = None, group: Optional[int] = None
    ) -> Dict[Union[str, datetime.date], int]: ...
    def get_task_execution(self, task_id: UUIDLike) -> Optional[TaskExecution]: ...
    def list_task_executions(self) -> List[TaskExecution]: ...

def rebuild_views(
    url: Optional[str] = None,
    views: Optional[Iterable[str]] = None,
    progress: Optional[Callable[[int, int], Any]] = None,
) -> int: ...
def catch_up(url: Optional[str] = None, views: Optional[Iterable[str]] = None) -> int: ...
def run_migrations(url: Optional[str] = None) -> List[str]: ...
def ensure_view_tables(url: Optional[str] = None) -> None: ...
def status(url: Optional[str] = None) -> Dict[str, Any]: ...
def execute_sql(url: str, sql: str) -> None: ...
def close_store(url: str) -> None: ...
def execute_statements(
    url: str, statements: List[Tuple[str, List[Any]]], commit: bool
) -> Tuple[List[str], List[Tuple[Any, ...]], int]: ...
def reencode_state(topic: str, state: bytes) -> bytes: ...
def reset_logging_cache() -> None: ...
