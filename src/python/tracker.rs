//! `WorkflowTracker`, its `repository` and `notification_log`, and the
//! aggregate and notification classes they return. Thin: argument checks,
//! conversion, and the GIL released around the Rust call.

use crate::app::tracker::Tracker;
use crate::domain::aggregates::{Aggregate, TaskState, WorkflowRunState};
use crate::domain::Value;
use crate::python::args::{url_arg, views_arg};
use crate::python::convert::*;
use crate::python::errors::IntoPy;
use crate::store::Notification as StoredNotification;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;

/// Records BIOMERO's workflows and tasks as events, as
/// ``biomero.eventsourcing.WorkflowTracker`` does, and projects the views in
/// the same transaction.
///
/// Args:
///     url: The database URL (``sqlite:///file.db``, ``postgresql://...``);
///         None reads the ``SQLALCHEMY_URL`` environment variable.
///     views: The names of the views each command projects (see
///         ``biomero_rs.ALL``); None for all four, ``[]`` for none.
///
/// Every command is one transaction: its events, the view rows and the
/// views' tracking positions commit together or not at all. A command that
/// loses a race for an aggregate's next version is retried.
///
/// Raises:
///     ValueError: The URL or a view name is not valid.
///     TypeError: An argument has the wrong type.
///     DatabaseError: The database cannot be reached.
#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct WorkflowTracker {
    pub inner: Arc<Tracker>,
}

#[pymethods]
impl WorkflowTracker {
    #[new]
    #[pyo3(signature = (url=None, *, views=None))]
    fn new(
        py: Python<'_>,
        url: Option<&Bound<'_, PyAny>>,
        views: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let url = url_arg(url)?;
        let views = views_arg(views)?;
        let tracker = py
            .allow_threads(|| Tracker::open(url.as_deref(), views))
            .py()?;
        Ok(WorkflowTracker {
            inner: Arc::new(tracker),
        })
    }

    /// The names of the views this tracker projects in each command (a new list).
    #[getter]
    fn views(&self) -> Vec<&'static str> {
        self.inner.views().iter().map(|v| v.name()).collect()
    }

    /// The aggregates: ``repository.get(id)`` returns a ``WorkflowRun`` or
    /// ``Task`` snapshot, and ``id in repository`` tells whether one exists.
    #[getter]
    fn repository(&self) -> Repository {
        Repository {
            inner: self.inner.clone(),
        }
    }

    /// The event log in order: ``notification_log.select(start, limit)``
    /// returns stored events as ``Notification`` objects.
    #[getter]
    fn notification_log(&self) -> NotificationLog {
        NotificationLog {
            inner: self.inner.clone(),
        }
    }

    /// Start recording a new workflow and return its id.
    ///
    /// Args:
    ///     name: The workflow's name.
    ///     description: Its description, or None.
    ///     user: The OMERO user id.
    ///     group: The OMERO group id.
    ///
    /// Returns:
    ///     The new workflow's ``uuid.UUID``.
    ///
    /// Raises:
    ///     TypeError: An argument has the wrong type.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn initiate_workflow(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        description: &Bound<'_, PyAny>,
        user: &Bound<'_, PyAny>,
        group: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let name = str_arg("name", name)?;
        // Only in the event (no view column): any JSON-storable value, as the reference.
        let description = to_value(description, "description")?;
        let user = int_arg("user", user)?;
        let group = int_arg("group", group)?;
        let t = &self.inner;
        let id = py
            .allow_threads(|| t.initiate_workflow(name, description, user, group))
            .py()?;
        Ok(uuid_to_py(py, &id)?.unbind())
    }

    /// Create a task, add it to a workflow and return the task's id.
    ///
    /// Args:
    ///     workflow_id: The workflow (``uuid.UUID`` or its text).
    ///     task_name: The task's name (a script or Slurm workflow).
    ///     task_version: Its version, or None.
    ///     input_data: The task's input, a JSON-like dict (str keys; str,
    ///         int, float, bool, None, list, dict, ``uuid.UUID``,
    ///         ``datetime`` and ``Decimal`` values).
    ///     kwargs: The task's parameters, a dict as ``input_data``.
    ///
    /// Returns:
    ///     The new task's ``uuid.UUID``.
    ///
    /// Raises:
    ///     AggregateNotFoundError: No workflow has this id.
    ///     TypeError, ValueError: An argument cannot be stored; the message
    ///         names it and the key path.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn add_task_to_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &Bound<'_, PyAny>,
        task_name: &Bound<'_, PyAny>,
        task_version: &Bound<'_, PyAny>,
        input_data: &Bound<'_, PyAny>,
        kwargs: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let workflow_id = uuid_arg("workflow_id", workflow_id)?;
        let task_name = str_arg("task_name", task_name)?;
        let task_version = opt_str_arg("task_version", task_version)?;
        let input_data = to_value(input_data, "input_data")?;
        let params = to_value(kwargs, "kwargs")?;
        let t = &self.inner;
        let id = py
            .allow_threads(|| {
                t.add_task_to_workflow(workflow_id, task_name, task_version, input_data, params)
            })
            .py()?;
        Ok(uuid_to_py(py, &id)?.unbind())
    }

    /// Record that a workflow started.
    ///
    /// Args:
    ///     workflow_id: The workflow (``uuid.UUID`` or its text).
    ///
    /// Raises:
    ///     AggregateNotFoundError: No workflow has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn start_workflow(&self, py: Python<'_>, workflow_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        py.allow_threads(|| self.inner.start_workflow(id)).py()
    }

    /// Record that a workflow completed.
    ///
    /// Args:
    ///     workflow_id: The workflow (``uuid.UUID`` or its text).
    ///
    /// Raises:
    ///     AggregateNotFoundError: No workflow has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn complete_workflow(&self, py: Python<'_>, workflow_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        py.allow_threads(|| self.inner.complete_workflow(id)).py()
    }

    /// Record that a workflow failed.
    ///
    /// Args:
    ///     workflow_id: The workflow (``uuid.UUID`` or its text).
    ///     error_message: Why it failed, or None.
    ///
    /// Raises:
    ///     AggregateNotFoundError: No workflow has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn fail_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &Bound<'_, PyAny>,
        error_message: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        // Only in the event (no view column): any JSON-storable value.
        let msg = to_value(error_message, "error_message")?;
        py.allow_threads(|| self.inner.fail_workflow(id, msg)).py()
    }

    /// Record that a task started.
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///
    /// Raises:
    ///     AggregateNotFoundError: No task has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn start_task(&self, py: Python<'_>, task_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        py.allow_threads(|| self.inner.start_task(id)).py()
    }

    /// Record that a task completed.
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///     message: The result message, or None.
    ///
    /// Raises:
    ///     AggregateNotFoundError: No task has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn complete_task(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
        message: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        // Only in the event (no view column): any JSON-storable value.
        let msg = to_value(message, "message")?;
        py.allow_threads(|| self.inner.complete_task(id, msg)).py()
    }

    /// Record that a task failed.
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///     error_message: Why it failed, or None.
    ///
    /// Raises:
    ///     AggregateNotFoundError: No task has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn fail_task(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
        error_message: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        let msg = opt_str_arg("error_message", error_message)?;
        py.allow_threads(|| self.inner.fail_task(id, msg)).py()
    }

    /// Record a Slurm job id for a task.
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///     slurm_job_id: The job id, a str or an int (stored as its
    ///         decimal text, as the reference does).
    ///
    /// Raises:
    ///     AggregateNotFoundError: No task has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn add_job_id(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
        slurm_job_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        let job = job_id_arg("slurm_job_id", slurm_job_id)?;
        py.allow_threads(|| self.inner.add_job_id(id, job)).py()
    }

    /// Record a command's result for a task.
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///     result: A fabric ``Result`` (``command``, ``env``, ``stdout``,
    ///         ``stderr`` attributes) or a mapping with those keys.
    ///
    /// Raises:
    ///     AggregateNotFoundError: No task has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn add_result(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
        result: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        let result = result_arg(result)?;
        py.allow_threads(|| self.inner.add_result(id, result)).py()
    }

    /// Record a task's new status (such as ``'RUNNING'``).
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///     status: The status text.
    ///
    /// Raises:
    ///     AggregateNotFoundError: No task has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn update_task_status(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
        status: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        let status = Value::Str(str_arg("status", status)?);
        py.allow_threads(|| self.inner.update_task_status(id, status))
            .py()
    }

    /// Record a task's progress (such as ``'43%'``).
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///     progress: The progress text, or None.
    ///
    /// Raises:
    ///     AggregateNotFoundError: No task has this id.
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed; nothing was recorded.
    ///     ConcurrencyError: Other writers kept winning; nothing was recorded.
    fn update_task_progress(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
        progress: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        let progress = opt_str_arg("progress", progress)?;
        py.allow_threads(|| self.inner.update_task_progress(id, progress))
            .py()
    }

    /// Apply to this tracker's views the events they have not seen yet
    /// (written by a tracker without these views, or by Python BIOMERO
    /// without listeners).
    ///
    /// Returns:
    ///     How many events were read.
    ///
    /// Raises:
    ///     DatabaseError: The database failed; the views keep their last
    ///         committed position.
    fn catch_up(&self, py: Python<'_>) -> PyResult<u64> {
        py.allow_threads(|| self.inner.catch_up()).py()
    }

    /// Releases the database (its connections close when no other object of
    /// this process uses them); later calls raise ValueError. Also what
    /// `with WorkflowTracker(url) as t:` does on exit.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.inner.close())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkflowTracker(url={:?}, views={:?})",
            self.inner.store().masked_url(),
            self.views()
        )
    }
}

/// ``tracker.repository``: the ``WorkflowRun`` and ``Task`` aggregates by id.
#[pyclass(module = "biomero_rs._core", frozen)]
pub struct Repository {
    inner: Arc<Tracker>,
}

#[pymethods]
impl Repository {
    /// Return a snapshot of the aggregate with this id at its latest version.
    ///
    /// Args:
    ///     aggregate_id: A workflow or task id (``uuid.UUID`` or its text).
    ///
    /// Returns:
    ///     A ``WorkflowRun`` or a ``Task`` (check with ``isinstance``).
    ///
    /// Raises:
    ///     AggregateNotFoundError: No aggregate has this id (also a ``KeyError``).
    ///     TypeError, ValueError: ``aggregate_id`` is not a UUID.
    ///     DatabaseError: The database failed.
    fn get(&self, py: Python<'_>, aggregate_id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let id = uuid_arg("aggregate_id", aggregate_id)?;
        let agg = py.allow_threads(|| self.inner.get(id)).py()?;
        Ok(match agg {
            Aggregate::WorkflowRun(w) => Py::new(py, WorkflowRun { s: w })?.into_any(),
            Aggregate::Task(t) => Py::new(py, Task { s: t })?.into_any(),
        })
    }

    /// Whether a workflow or task has this id.
    fn __contains__(&self, py: Python<'_>, aggregate_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let id = uuid_arg("aggregate_id", aggregate_id)?;
        match py.allow_threads(|| self.inner.get(id)) {
            Ok(_) => Ok(true),
            Err(crate::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(crate::python::errors::to_py(e)),
        }
    }
}

/// ``tracker.notification_log``: the stored events in the order they were
/// recorded, numbered from 1.
#[pyclass(module = "biomero_rs._core", frozen)]
pub struct NotificationLog {
    inner: Arc<Tracker>,
}

#[pymethods]
impl NotificationLog {
    /// Return up to ``limit`` stored events, from notification id ``start`` on.
    ///
    /// Args:
    ///     start: The first notification id (1 is the first event).
    ///     limit: The most events to return (0 or more).
    ///
    /// Returns:
    ///     A list of ``Notification`` objects, by id.
    ///
    /// Raises:
    ///     ValueError: ``start`` is below 1 or ``limit`` is negative.
    ///     TypeError: An argument is not an int.
    ///     DatabaseError: The database failed.
    fn select(
        &self,
        py: Python<'_>,
        start: &Bound<'_, PyAny>,
        limit: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Notification>> {
        let start = int_arg("start", start)?;
        let limit = int_arg("limit", limit)?;
        if start < 1 {
            return Err(PyValueError::new_err(format!(
                "start: notification ids start at 1, got {start}"
            )));
        }
        if limit < 0 {
            return Err(PyValueError::new_err(format!(
                "limit: must not be negative, got {limit}"
            )));
        }
        let rows = py
            .allow_threads(|| self.inner.select(start, limit as usize))
            .py()?;
        Ok(rows.into_iter().map(|n| Notification { n }).collect())
    }
}

/// One stored event, as ``notification_log.select()`` returns it: its
/// position in the log, its aggregate and version, its topic and its
/// encoded state (the bytes eventsourcing stores).
#[pyclass(module = "biomero_rs._core", frozen)]
pub struct Notification {
    n: StoredNotification,
}

#[pymethods]
impl Notification {
    /// The position in the log (from 1).
    #[getter]
    fn id(&self) -> i64 {
        self.n.id
    }
    /// The id of the workflow or task the event belongs to.
    #[getter]
    fn originator_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_to_py(py, &self.n.event.originator_id)
    }
    /// The aggregate's version this event made (from 1).
    #[getter]
    fn originator_version(&self) -> i64 {
        self.n.event.originator_version
    }
    /// The event's class, as eventsourcing names it
    /// (``biomero.eventsourcing:Task.TaskCreated``).
    #[getter]
    fn topic(&self) -> &str {
        &self.n.event.topic
    }
    /// The event's stored JSON state, as bytes.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.n.event.state)
    }
    fn __repr__(&self) -> String {
        format!(
            "Notification(id={}, originator_id=UUID('{}'), originator_version={}, topic={:?})",
            self.n.id,
            self.n.event.originator_id,
            self.n.event.originator_version,
            self.n.event.topic
        )
    }
}

// ------------------------------------------------------------- aggregates

/// Exact text of a UTC time for pickling (nanoseconds kept).
fn time_value(t: &chrono::DateTime<chrono::Utc>) -> Value {
    Value::DateTime(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

/// The pickled fields every aggregate has.
fn common_fields(
    id: &uuid::Uuid,
    version: i64,
    created_on: &chrono::DateTime<chrono::Utc>,
    modified_on: &chrono::DateTime<chrono::Utc>,
) -> Vec<(String, Value)> {
    vec![
        ("id".to_owned(), Value::Uuid(*id)),
        ("version".to_owned(), Value::Int(version)),
        ("created_on".to_owned(), time_value(created_on)),
        ("modified_on".to_owned(), time_value(modified_on)),
    ]
}

/// The fields of a pickled aggregate (see `__reduce__`), in order.
struct PickledFields(Vec<(String, Value)>);

impl PickledFields {
    fn read(state: &[u8]) -> PyResult<PickledFields> {
        let bad =
            |why: &str| PyValueError::new_err(format!("state: not a pickled aggregate ({why})"));
        match crate::domain::codec::decode(state).map_err(|e| bad(&e.to_string()))? {
            Value::Dict(items) => Ok(PickledFields(items)),
            _ => Err(bad("expected a dict")),
        }
    }

    fn take(&mut self, key: &str) -> PyResult<Value> {
        let i = self.0.iter().position(|(k, _)| k == key).ok_or_else(|| {
            PyValueError::new_err(format!("state: pickled aggregate has no {key:?}"))
        })?;
        Ok(self.0.remove(i).1)
    }

    fn uuid(&mut self, key: &str) -> PyResult<uuid::Uuid> {
        match self.take(key)? {
            Value::Uuid(u) => Ok(u),
            _ => Err(PyValueError::new_err(format!("state: {key} is not a UUID"))),
        }
    }

    fn int(&mut self, key: &str) -> PyResult<i64> {
        self.take(key)?
            .as_i64()
            .ok_or_else(|| PyValueError::new_err(format!("state: {key} is not an int")))
    }

    fn time(&mut self, key: &str) -> PyResult<chrono::DateTime<chrono::Utc>> {
        match self.take(key)? {
            Value::DateTime(t) => chrono::DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| PyValueError::new_err(format!("state: {key}: {e}"))),
            _ => Err(PyValueError::new_err(format!("state: {key} is not a time"))),
        }
    }

    fn list(&mut self, key: &str) -> PyResult<Vec<Value>> {
        match self.take(key)? {
            Value::List(items) => Ok(items),
            _ => Err(PyValueError::new_err(format!("state: {key} is not a list"))),
        }
    }
}

/// `Class(name=repr(value), ...)` from the getters' Python values, as
/// eventsourcing's aggregates show themselves.
fn aggregate_repr(obj: &Bound<'_, PyAny>, names: &[&str]) -> PyResult<String> {
    let cls = obj.get_type().name()?;
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        parts.push(format!("{name}={}", obj.getattr(*name)?.repr()?));
    }
    Ok(format!("{cls}({})", parts.join(", ")))
}

/// `(Class._from_state, (bytes,))`: what pickle and copy rebuild the aggregate from.
fn aggregate_reduce<'py>(
    obj: &Bound<'py, PyAny>,
    fields: Vec<(String, Value)>,
) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
    let bytes = crate::domain::codec::encode(&Value::Dict(fields));
    Ok((
        obj.get_type().getattr("_from_state")?,
        (PyBytes::new(obj.py(), bytes.as_bytes()),),
    ))
}

/// A workflow as ``tracker.repository.get(workflow_id)`` returns it: a
/// snapshot of the ``WorkflowRun`` aggregate at its latest version.
///
/// Attributes are read-only (record changes through ``WorkflowTracker``).
/// Two snapshots are equal when their state is, as eventsourcing's
/// aggregates compare; like those, they are not hashable. They pickle and
/// copy.
#[pyclass(module = "biomero_rs._core", frozen, eq)]
#[derive(PartialEq)]
pub struct WorkflowRun {
    s: WorkflowRunState,
}

crate::python::macros::getters!(WorkflowRun.s {
    /// The workflow's id (a ``uuid.UUID``).
    id,
    /// The number of events recorded for the workflow.
    version,
    /// When the workflow was initiated (aware UTC ``datetime``).
    created_on,
    /// When the workflow's last event happened (aware UTC ``datetime``).
    modified_on,
    /// The workflow's name.
    name,
    /// The workflow's description, or None.
    description,
    /// The OMERO user id.
    user,
    /// The OMERO group id.
    group,
    /// The ids of the workflow's tasks, in the order they were added (a new list).
    tasks,
});

#[pymethods]
impl WorkflowRun {
    /// Rebuilds a pickled snapshot (the inverse of ``__reduce__``).
    #[classmethod]
    fn _from_state(_cls: &Bound<'_, pyo3::types::PyType>, state: &[u8]) -> PyResult<Self> {
        let mut f = PickledFields::read(state)?;
        let tasks = f
            .list("tasks")?
            .into_iter()
            .map(|v| match v {
                Value::Uuid(u) => Ok(u),
                _ => Err(PyValueError::new_err("state: tasks holds a non-UUID")),
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(WorkflowRun {
            s: WorkflowRunState {
                id: f.uuid("id")?,
                version: f.int("version")?,
                created_on: f.time("created_on")?,
                modified_on: f.time("modified_on")?,
                name: f.take("name")?,
                description: f.take("description")?,
                user: f.take("user")?,
                group: f.take("group")?,
                tasks,
            },
        })
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let s = &slf.get().s;
        let mut fields = common_fields(&s.id, s.version, &s.created_on, &s.modified_on);
        fields.extend([
            ("name".to_owned(), s.name.clone()),
            ("description".to_owned(), s.description.clone()),
            ("user".to_owned(), s.user.clone()),
            ("group".to_owned(), s.group.clone()),
            (
                "tasks".to_owned(),
                Value::List(s.tasks.iter().copied().map(Value::Uuid).collect()),
            ),
        ]);
        aggregate_reduce(slf.as_any(), fields)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        aggregate_repr(slf.as_any(), WorkflowRun::FIELDS)
    }
}

/// A task as ``tracker.repository.get(task_id)`` returns it: a snapshot of
/// the ``Task`` aggregate at its latest version.
///
/// Attributes are read-only (record changes through ``WorkflowTracker``).
/// Two snapshots are equal when their state is, as eventsourcing's
/// aggregates compare; like those, they are not hashable. They pickle and
/// copy.
#[pyclass(module = "biomero_rs._core", frozen, eq)]
#[derive(PartialEq)]
pub struct Task {
    s: TaskState,
}

crate::python::macros::getters!(Task.s {
    /// The task's id (a ``uuid.UUID``).
    id,
    /// The number of events recorded for the task.
    version,
    /// When the task was added (aware UTC ``datetime``).
    created_on,
    /// When the task's last event happened (aware UTC ``datetime``).
    modified_on,
    /// The id of the workflow the task belongs to.
    workflow_id,
    /// The task's name (the script or Slurm workflow).
    task_name,
    /// The task's version, or None.
    task_version,
    /// The task's input data, as given (a new dict).
    input_data,
    /// The task's parameters, as given (a new dict).
    params,
    /// The Slurm job ids added to the task, in order (a new list).
    job_ids,
    /// The command results added to the task, as dicts (a new list).
    results,
    /// The message of ``complete_task``/``fail_task``, or None.
    result_message,
    /// The last status set, or None.
    status,
    /// The last progress set (such as ``'43%'``), or None.
    progress,
});

#[pymethods]
impl Task {
    #[classmethod]
    fn _from_state(_cls: &Bound<'_, pyo3::types::PyType>, state: &[u8]) -> PyResult<Self> {
        let mut f = PickledFields::read(state)?;
        Ok(Task {
            s: TaskState {
                id: f.uuid("id")?,
                version: f.int("version")?,
                created_on: f.time("created_on")?,
                modified_on: f.time("modified_on")?,
                workflow_id: f.uuid("workflow_id")?,
                task_name: f.take("task_name")?,
                task_version: f.take("task_version")?,
                input_data: f.take("input_data")?,
                params: f.take("params")?,
                job_ids: f.list("job_ids")?,
                results: f.list("results")?,
                result_message: f.take("result_message")?,
                status: f.take("status")?,
                progress: f.take("progress")?,
            },
        })
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let s = &slf.get().s;
        let mut fields = common_fields(&s.id, s.version, &s.created_on, &s.modified_on);
        fields.extend([
            ("workflow_id".to_owned(), Value::Uuid(s.workflow_id)),
            ("task_name".to_owned(), s.task_name.clone()),
            ("task_version".to_owned(), s.task_version.clone()),
            ("input_data".to_owned(), s.input_data.clone()),
            ("params".to_owned(), s.params.clone()),
            ("job_ids".to_owned(), Value::List(s.job_ids.clone())),
            ("results".to_owned(), Value::List(s.results.clone())),
            ("result_message".to_owned(), s.result_message.clone()),
            ("status".to_owned(), s.status.clone()),
            ("progress".to_owned(), s.progress.clone()),
        ]);
        aggregate_reduce(slf.as_any(), fields)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        aggregate_repr(slf.as_any(), Task::FIELDS)
    }
}

crate::python::macros::copy_is_self!(WorkflowTracker);
