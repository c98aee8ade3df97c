//! `WorkflowTracker`, its `repository` and `notification_log`, and the
//! aggregate and notification classes they return. Thin: argument checks,
//! conversion, and the GIL released around the Rust call.

use crate::domain::aggregates::{Aggregate, TaskState, WorkflowRunState};
use crate::domain::Value;
use crate::projections::{parse_views, View};
use crate::python::convert::*;
use crate::python::errors::IntoPy;
use crate::store::Notification as StoredNotification;
use crate::tracker::Tracker;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use std::sync::Arc;

/// Reads `views=`: None for all four, else an iterable of names.
pub fn views_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<View>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(View::ALL.to_vec());
    };
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "views: expected a list of view names, got a str",
        ));
    }
    let mut names = Vec::new();
    for item in obj
        .try_iter()
        .map_err(|_| PyTypeError::new_err("views: expected a list of view names"))?
    {
        let item = item?;
        names.push(str_arg("views", &item)?);
    }
    parse_views(names.iter().map(String::as_str)).py()
}

pub fn url_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => str_arg("url", o).map(Some),
    }
}

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

    /// The names of the views this tracker projects in each command.
    #[getter]
    fn views(&self) -> Vec<&'static str> {
        self.inner.views().iter().map(|v| v.name()).collect()
    }

    #[getter]
    fn repository(&self) -> Repository {
        Repository {
            inner: self.inner.clone(),
        }
    }

    #[getter]
    fn notification_log(&self) -> NotificationLog {
        NotificationLog {
            inner: self.inner.clone(),
        }
    }

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

    fn start_workflow(&self, py: Python<'_>, workflow_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        py.allow_threads(|| self.inner.start_workflow(id)).py()
    }

    fn complete_workflow(&self, py: Python<'_>, workflow_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        py.allow_threads(|| self.inner.complete_workflow(id)).py()
    }

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

    fn start_task(&self, py: Python<'_>, task_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uuid_arg("task_id", task_id)?;
        py.allow_threads(|| self.inner.start_task(id)).py()
    }

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

    /// Applies events written without this tracker's views; returns how many.
    fn catch_up(&self, py: Python<'_>) -> PyResult<u64> {
        py.allow_threads(|| self.inner.catch_up()).py()
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkflowTracker(url={:?}, views={:?})",
            self.inner.store().masked_url(),
            self.views()
        )
    }
}

/// `tracker.repository`: `get(id)` of WorkflowRun and Task aggregates.
#[pyclass(module = "biomero_rs._core", frozen)]
pub struct Repository {
    inner: Arc<Tracker>,
}

#[pymethods]
impl Repository {
    fn get(&self, py: Python<'_>, aggregate_id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let id = uuid_arg("aggregate_id", aggregate_id)?;
        let agg = py.allow_threads(|| self.inner.get(id)).py()?;
        Ok(match agg {
            Aggregate::WorkflowRun(w) => Py::new(py, WorkflowRun { s: w })?.into_any(),
            Aggregate::Task(t) => Py::new(py, Task { s: t })?.into_any(),
        })
    }

    fn __contains__(&self, py: Python<'_>, aggregate_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let id = uuid_arg("aggregate_id", aggregate_id)?;
        match py.allow_threads(|| self.inner.get(id)) {
            Ok(_) => Ok(true),
            Err(crate::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(crate::python::errors::to_py(e)),
        }
    }
}

/// `tracker.notification_log`: `select(start, limit)`.
#[pyclass(module = "biomero_rs._core", frozen)]
pub struct NotificationLog {
    inner: Arc<Tracker>,
}

#[pymethods]
impl NotificationLog {
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

#[pyclass(module = "biomero_rs._core", frozen)]
pub struct Notification {
    n: StoredNotification,
}

#[pymethods]
impl Notification {
    #[getter]
    fn id(&self) -> i64 {
        self.n.id
    }
    #[getter]
    fn originator_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_to_py(py, &self.n.event.originator_id)
    }
    #[getter]
    fn originator_version(&self) -> i64 {
        self.n.event.originator_version
    }
    #[getter]
    fn topic(&self) -> &str {
        &self.n.event.topic
    }
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

#[pyclass(module = "biomero_rs._core", frozen)]
pub struct WorkflowRun {
    s: WorkflowRunState,
}

#[pymethods]
impl WorkflowRun {
    #[getter]
    fn id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_to_py(py, &self.s.id)
    }
    #[getter]
    fn version(&self) -> i64 {
        self.s.version
    }
    #[getter]
    fn created_on<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        aware_to_py(py, &self.s.created_on)
    }
    #[getter]
    fn modified_on<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        aware_to_py(py, &self.s.modified_on)
    }
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.name)
    }
    #[getter]
    fn description<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.description)
    }
    #[getter]
    fn user<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.user)
    }
    #[getter]
    fn group<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.group)
    }
    #[getter]
    fn tasks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .s
            .tasks
            .iter()
            .map(|u| uuid_to_py(py, u))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    fn __repr__(&self) -> String {
        format!(
            "WorkflowRun(id=UUID('{}'), version={}, tasks={})",
            self.s.id,
            self.s.version,
            self.s.tasks.len()
        )
    }
}

#[pyclass(module = "biomero_rs._core", frozen)]
pub struct Task {
    s: TaskState,
}

#[pymethods]
impl Task {
    #[getter]
    fn id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_to_py(py, &self.s.id)
    }
    #[getter]
    fn version(&self) -> i64 {
        self.s.version
    }
    #[getter]
    fn created_on<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        aware_to_py(py, &self.s.created_on)
    }
    #[getter]
    fn modified_on<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        aware_to_py(py, &self.s.modified_on)
    }
    #[getter]
    fn workflow_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_to_py(py, &self.s.workflow_id)
    }
    #[getter]
    fn task_name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.task_name)
    }
    #[getter]
    fn task_version<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.task_version)
    }
    #[getter]
    fn input_data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.input_data)
    }
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.params)
    }
    #[getter]
    fn job_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &Value::List(self.s.job_ids.clone()))
    }
    #[getter]
    fn results<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &Value::List(self.s.results.clone()))
    }
    #[getter]
    fn result_message<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.result_message)
    }
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.status)
    }
    #[getter]
    fn progress<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.s.progress)
    }
    fn __repr__(&self) -> String {
        format!(
            "Task(id=UUID('{}'), version={}, workflow_id=UUID('{}'))",
            self.s.id, self.s.version, self.s.workflow_id
        )
    }
}

crate::python::views::copy_is_self!(WorkflowTracker);
