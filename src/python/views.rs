//! The view classes (`JobAccounting`, `JobProgress`, `WorkflowProgress`,
//! `WorkflowAnalytics`) with the reference's query methods, and the immutable
//! row models (`JobView`, `JobProgressView`, `WorkflowProgressView`,
//! `TaskExecution`).

use crate::projections::queries::{
    self, JobProgressRow, JobViewRow, TaskExecutionRow, WorkflowProgressRow,
};
use crate::projections::View;
use crate::python::convert::*;
use crate::python::errors::IntoPy;
use crate::python::tracker::url_arg;
use crate::store::{self, EventStore, Tx};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::sync::Arc;

fn open_view_store(url: Option<String>) -> crate::Result<Arc<dyn EventStore>> {
    let url = store::resolve_url(url.as_deref())?;
    let s = store::open(&url)?;
    crate::migrations::ensure_view_tables_in(s.as_ref())?;
    Ok(s)
}

/// Runs a read query with the GIL released.
fn read<T: Send>(
    py: Python<'_>,
    s: &Arc<dyn EventStore>,
    f: impl FnMut(&mut dyn Tx) -> crate::Result<T> + Send,
) -> PyResult<T> {
    py.allow_threads(|| store::read_tx(s.as_ref(), f)).py()
}

fn job_id_filter(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    // Slurm ids arrive as int or as their text.
    if let Ok(s) = obj.extract::<String>() {
        return Ok(s.trim().parse().ok());
    }
    int_arg(arg, obj).map(Some)
}

/// The reference's `recorder` attributes that BIOMERO's reset path reads.
#[pyclass(module = "biomero_rs._core", frozen)]
pub struct Recorder {
    #[pyo3(get)]
    tracking_table_name: &'static str,
    #[pyo3(get)]
    events_table_name: &'static str,
}

/// Shared parts of the four view classes.
struct ViewBase {
    store: Arc<dyn EventStore>,
    view: View,
}

impl ViewBase {
    fn new(py: Python<'_>, url: Option<&Bound<'_, PyAny>>, view: View) -> PyResult<ViewBase> {
        let url = url_arg(url)?;
        let store = py.allow_threads(|| open_view_store(url)).py()?;
        Ok(ViewBase { store, view })
    }

    fn recorder(&self) -> Recorder {
        Recorder {
            tracking_table_name: self.view.tracking_table(),
            events_table_name: self.view.events_table(),
        }
    }

    /// Brings this view up to date with the log (the reference's
    /// `pull_and_process`; `start` is accepted for its signature: views are
    /// always complete from the first event).
    fn pull_and_process(&self, py: Python<'_>) -> PyResult<u64> {
        let view = [self.view];
        py.allow_threads(|| crate::rebuild::catch_up(self.store.as_ref(), &view))
            .py()
    }
}

macro_rules! view_common {
    ($cls:ident, $view:expr) => {
        #[pymethods]
        impl $cls {
            #[new]
            #[pyo3(signature = (url=None, *_args, **_kwargs))]
            fn new(
                py: Python<'_>,
                url: Option<&Bound<'_, PyAny>>,
                _args: &Bound<'_, PyTuple>,
                _kwargs: Option<&Bound<'_, PyDict>>,
            ) -> PyResult<Self> {
                // eventsourcing passes `env=` positionally/by keyword; a str is a URL.
                let url = url.filter(|u| u.extract::<String>().is_ok() || u.is_none());
                Ok($cls {
                    base: ViewBase::new(py, url, $view)?,
                })
            }

            /// The projector name in `views=`.
            #[classattr]
            #[allow(non_snake_case)]
            fn VIEW_NAME() -> &'static str {
                $view.name()
            }

            #[getter]
            fn recorder(&self) -> Recorder {
                self.base.recorder()
            }

            #[pyo3(signature = (leader_name=None, start=None))]
            fn pull_and_process(
                &self,
                py: Python<'_>,
                leader_name: Option<&Bound<'_, PyAny>>,
                start: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<u64> {
                let _ = (leader_name, start);
                self.base.pull_and_process(py)
            }

            fn __repr__(&self) -> String {
                format!(
                    "{}(url={:?})",
                    stringify!($cls),
                    self.base.store.masked_url()
                )
            }
        }
    };
}

#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct JobAccounting {
    base: ViewBase,
}
view_common!(JobAccounting, View::JobAccounting);

#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct JobProgress {
    base: ViewBase,
}
view_common!(JobProgress, View::JobProgress);

#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct WorkflowProgress {
    base: ViewBase,
}
view_common!(WorkflowProgress, View::WorkflowProgress);

#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct WorkflowAnalytics {
    base: ViewBase,
}
view_common!(WorkflowAnalytics, View::WorkflowAnalytics);

#[pymethods]
impl JobAccounting {
    /// `{user: [job ids]}`; see PROJECTIONS.md for the key rule.
    #[pyo3(signature = (user=None, group=None))]
    fn get_jobs<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let user = opt_int_arg("user", user)?;
        let group = opt_int_arg("group", group)?;
        let rows = read(py, &self.base.store, |tx| {
            queries::get_jobs(tx, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, jobs) in rows {
            d.set_item(k, PyList::new(py, jobs)?)?;
        }
        Ok(d)
    }

    /// The task of a Slurm job, or None.
    fn get_task_id<'py>(
        &self,
        py: Python<'py>,
        job_id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(job) = job_id_filter("job_id", job_id)? else {
            return Ok(None);
        };
        let id = read(py, &self.base.store, |tx| queries::get_task_id(tx, job))?;
        id.map(|u| uuid_to_py(py, &u)).transpose()
    }

    /// Every row, by slurm_job_id.
    fn list_jobs(&self, py: Python<'_>) -> PyResult<Vec<JobView>> {
        let rows = read(py, &self.base.store, queries::all_jobs)?;
        Ok(rows.into_iter().map(|r| JobView { r }).collect())
    }
}

#[pymethods]
impl JobProgress {
    fn get_job_progress(
        &self,
        py: Python<'_>,
        slurm_job_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<JobProgressView>> {
        let Some(job) = job_id_filter("slurm_job_id", slurm_job_id)? else {
            return Ok(None);
        };
        let row = read(py, &self.base.store, |tx| {
            queries::get_job_progress(tx, job)
        })?;
        Ok(row.map(|r| JobProgressView { r }))
    }

    /// Every row, by slurm_job_id.
    fn list_job_progress(&self, py: Python<'_>) -> PyResult<Vec<JobProgressView>> {
        let rows = read(py, &self.base.store, queries::all_job_progress)?;
        Ok(rows.into_iter().map(|r| JobProgressView { r }).collect())
    }
}

#[pymethods]
impl WorkflowProgress {
    fn get_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<WorkflowProgressView>> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        let row = read(py, &self.base.store, |tx| queries::get_workflow(tx, id))?;
        Ok(row.map(|r| WorkflowProgressView { r }))
    }

    /// Workflows, newest start_time first, optionally of one user/group.
    #[pyo3(signature = (user=None, group=None))]
    fn list_workflows(
        &self,
        py: Python<'_>,
        user: Option<&Bound<'_, PyAny>>,
        group: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<WorkflowProgressView>> {
        let user = opt_int_arg("user", user)?;
        let group = opt_int_arg("group", group)?;
        let rows = read(py, &self.base.store, |tx| {
            queries::list_workflows(tx, user, group)
        })?;
        Ok(rows
            .into_iter()
            .map(|r| WorkflowProgressView { r })
            .collect())
    }
}

fn key_tuple<'py>(py: Python<'py>, k: (String, Option<String>)) -> PyResult<Bound<'py, PyTuple>> {
    (k.0, k.1).into_pyobject(py)
}

#[pymethods]
impl WorkflowAnalytics {
    #[pyo3(signature = (user=None, group=None))]
    fn get_task_counts<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (user, group) = (opt_int_arg("user", user)?, opt_int_arg("group", group)?);
        let m = read(py, &self.base.store, |tx| {
            queries::get_task_counts(tx, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(key_tuple(py, k)?, v)?;
        }
        Ok(d)
    }

    /// Mean seconds (with microseconds) per (name, version) over finished tasks.
    #[pyo3(signature = (user=None, group=None))]
    fn get_average_task_duration<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (user, group) = (opt_int_arg("user", user)?, opt_int_arg("group", group)?);
        let m = read(py, &self.base.store, |tx| {
            queries::get_average_task_duration(tx, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(key_tuple(py, k)?, v)?;
        }
        Ok(d)
    }

    #[pyo3(signature = (user=None, group=None))]
    fn get_task_failures<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (user, group) = (opt_int_arg("user", user)?, opt_int_arg("group", group)?);
        let m = read(py, &self.base.store, |tx| {
            queries::get_task_failures(tx, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(key_tuple(py, k)?, PyList::new(py, v)?)?;
        }
        Ok(d)
    }

    /// `{datetime.date: count}` of `task_name` by start_time date.
    #[pyo3(signature = (task_name, user=None, group=None))]
    fn get_task_usage_over_time<'py>(
        &self,
        py: Python<'py>,
        task_name: &Bound<'py, PyAny>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let name = str_arg("task_name", task_name)?;
        let (user, group) = (opt_int_arg("user", user)?, opt_int_arg("group", group)?);
        let m = read(py, &self.base.store, |tx| {
            queries::get_task_usage_over_time(tx, &name, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(date_to_py(py, &k)?, v)?;
        }
        Ok(d)
    }

    fn get_task_execution(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<TaskExecution>> {
        let id = uuid_arg("task_id", task_id)?;
        let row = read(py, &self.base.store, |tx| {
            queries::get_task_execution(tx, id)
        })?;
        Ok(row.map(|r| TaskExecution { r }))
    }

    /// Every row, by task_id.
    fn list_task_executions(&self, py: Python<'_>) -> PyResult<Vec<TaskExecution>> {
        let rows = read(py, &self.base.store, queries::all_task_executions)?;
        Ok(rows.into_iter().map(|r| TaskExecution { r }).collect())
    }
}

// ------------------------------------------------------------- row models

/// One column of a row model: its Python value, its JSON-ready value, and
/// the constructor's reading of it.
trait Column: Sized {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
    /// What `to_dict(json=True)` holds: the value `json.dumps` accepts.
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.to_py(py)
    }
    fn from_py(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self>;
}

impl Column for i64 {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
    fn from_py(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        int_arg(arg, obj)
    }
}

impl Column for String {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
    fn from_py(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        str_arg(arg, obj)
    }
}

impl Column for uuid::Uuid {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_to_py(py, self)
    }
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.hyphenated().to_string().into_pyobject(py)?.into_any())
    }
    fn from_py(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        uuid_arg(arg, obj)
    }
}

impl Column for chrono::NaiveDateTime {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        naive_to_py(py, self)
    }
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.to_py(py)?.call_method0("isoformat")
    }
    fn from_py(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        naive_arg(arg, obj)
    }
}

impl<T: Column> Column for Option<T> {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Some(v) => v.to_py(py),
            None => Ok(py.None().into_bound(py)),
        }
    }
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Some(v) => v.to_json(py),
            None => Ok(py.None().into_bound(py)),
        }
    }
    fn from_py(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if obj.is_none() {
            return Ok(None);
        }
        T::from_py(arg, obj).map(Some)
    }
}

/// A `datetime.datetime`, as naive UTC (an aware one is converted to UTC).
fn naive_arg(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<chrono::NaiveDateTime> {
    let py = obj.py();
    let datetime = py.import("datetime")?;
    if !obj.is_instance(&datetime.getattr("datetime")?)? {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{arg}: expected datetime.datetime, got {}",
            obj.get_type().name()?
        )));
    }
    let mut t = obj.clone();
    if !t.getattr("tzinfo")?.is_none() {
        let utc = datetime.getattr("timezone")?.getattr("utc")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", py.None())?;
        t = t
            .call_method1("astimezone", (utc,))?
            .call_method("replace", (), Some(&kwargs))?;
    }
    let text: String = t.call_method1("isoformat", ("T",))?.extract()?;
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{arg}: {e}")))
}

/// A constructor argument: `None` (or left out, where it may be) is Python's None.
fn column<T: Column>(arg: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<T> {
    match obj {
        Some(o) => T::from_py(arg, o),
        None => Python::with_gil(|py| T::from_py(arg, &py.None().into_bound(py))),
    }
}

/// Defines an immutable row model: a keyword-only constructor, one read-only
/// attribute per column, `to_dict()`, `__repr__`, `__eq__`, `__hash__`,
/// pickling (and so `copy`) and `__tablename__`. A field written `name = None`
/// may be left out of the constructor.
macro_rules! row_model {
    ($(#[$doc:meta])* $cls:ident, $row:ident, $table:expr, [$($field:ident $(= $def:tt)?),* $(,)?]) => {
        $(#[$doc])*
        #[pyclass(module = "biomero_rs._core", frozen, eq, hash)]
        #[derive(PartialEq, Eq, Hash)]
        pub struct $cls {
            r: $row,
        }

        #[pymethods]
        impl $cls {
            #[new]
            #[pyo3(signature = (*, $($field $(= $def)?),*))]
            #[allow(clippy::too_many_arguments)]
            fn new($($field: Option<&Bound<'_, PyAny>>),*) -> PyResult<Self> {
                Ok($cls {
                    r: $row {
                        $($field: column(stringify!($field), $field)?),*
                    },
                })
            }

            /// The name of the table this row comes from.
            #[classattr]
            fn __tablename__() -> &'static str {
                $table
            }

            $(
                #[getter]
                fn $field<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    self.r.$field.to_py(py)
                }
            )*

            /// Return the row as a dict of column name to value.
            ///
            /// With ``json=True`` the values are the ones ``json.dumps``
            /// accepts: UUIDs as their canonical text
            /// (``'0e4b...-...'``) and datetimes as ISO 8601 text
            /// (``datetime.isoformat()``); other values are unchanged.
            #[pyo3(signature = (*, json = false))]
            fn to_dict<'py>(&self, py: Python<'py>, json: bool) -> PyResult<Bound<'py, PyDict>> {
                let d = PyDict::new(py);
                $(
                    let v = if json { self.r.$field.to_json(py)? } else { self.r.$field.to_py(py)? };
                    d.set_item(stringify!($field), v)?;
                )*
                Ok(d)
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                let mut parts = Vec::new();
                $( parts.push(format!("{}={}", stringify!($field), self.r.$field.to_py(py)?.repr()?)); )*
                Ok(format!("{}({})", stringify!($cls), parts.join(", ")))
            }

            fn __reduce__<'py>(
                slf: &Bound<'py, Self>,
            ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
                let py = slf.py();
                let kwargs = PyDict::new(py);
                let this = slf.get();
                $( kwargs.set_item(stringify!($field), this.r.$field.to_py(py)?)?; )*
                let newobj = py.import("copyreg")?.getattr("__newobj_ex__")?;
                let args = (slf.get_type(), PyTuple::empty(py), kwargs).into_pyobject(py)?;
                Ok((newobj, args))
            }
        }
    };
}

row_model!(
    /// A row of ``biomero_job_view``: which user and group a Slurm job
    /// belongs to, and its task.
    ///
    /// Immutable; compares, hashes and pickles by value.
    JobView, JobViewRow, "biomero_job_view", [
    slurm_job_id,
    user,
    group,
    task_id = None,
]);

row_model!(
    /// A row of ``biomero_job_progress_view``: the last status and progress
    /// of a Slurm job.
    ///
    /// Immutable; compares, hashes and pickles by value.
    JobProgressView, JobProgressRow, "biomero_job_progress_view", [
    slurm_job_id,
    status,
    progress = None,
]);

row_model!(
    /// A row of ``biomero_workflow_progress_view``: a workflow's status,
    /// progress, owner and current task. ``start_time`` is naive UTC.
    ///
    /// Immutable; compares, hashes and pickles by value.
    WorkflowProgressView, WorkflowProgressRow, "biomero_workflow_progress_view", [
    workflow_id,
    status = None,
    progress = None,
    user = None,
    group = None,
    name = None,
    task = None,
    main_task_name = None,
    start_time,
]);

row_model!(
    /// A row of ``biomero_task_execution``: one task's name, version, owner,
    /// status, times (naive UTC) and error type.
    ///
    /// Immutable; compares, hashes and pickles by value.
    TaskExecution, TaskExecutionRow, "biomero_task_execution", [
    task_id,
    task_name,
    task_version = None,
    user_id = None,
    group_id = None,
    status,
    start_time,
    end_time = None,
    error_type = None,
]);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Recorder>()?;
    m.add_class::<JobAccounting>()?;
    m.add_class::<JobProgress>()?;
    m.add_class::<WorkflowProgress>()?;
    m.add_class::<WorkflowAnalytics>()?;
    m.add_class::<JobView>()?;
    m.add_class::<JobProgressView>()?;
    m.add_class::<WorkflowProgressView>()?;
    m.add_class::<TaskExecution>()?;
    Ok(())
}
