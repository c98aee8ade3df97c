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

    /// `{date: count}` of `task_name` by start_time date: the date as
    /// `'YYYY-MM-DD'` text on SQLite, a `datetime.date` on Postgres (as the
    /// reference's query returns it on each).
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
        // As the reference: SQLite's date() gives text, Postgres's a date.
        let as_text = self.base.store.backend() == crate::store::Backend::Sqlite;
        let d = PyDict::new(py);
        for (k, v) in m {
            if as_text {
                d.set_item(k.format("%Y-%m-%d").to_string(), v)?;
            } else {
                d.set_item(date_to_py(py, &k)?, v)?;
            }
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

fn opt_time<'py>(
    py: Python<'py>,
    t: &Option<chrono::NaiveDateTime>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    t.as_ref().map(|t| naive_to_py(py, t)).transpose()
}

fn opt_uuid<'py>(py: Python<'py>, u: &Option<uuid::Uuid>) -> PyResult<Option<Bound<'py, PyAny>>> {
    u.as_ref().map(|u| uuid_to_py(py, u)).transpose()
}

/// Defines a frozen row model: one getter per column (converted by the given
/// expression), `to_dict()`, `__repr__`, `__eq__` and `__tablename__`.
macro_rules! row_model {
    ($cls:ident, $row:ty, $table:expr, [$($field:ident => |$py:ident, $r:ident| $conv:expr),* $(,)?]) => {
        #[pyclass(module = "biomero_rs._core", frozen, eq)]
        #[derive(PartialEq)]
        pub struct $cls {
            r: $row,
        }

        #[pymethods]
        impl $cls {
            #[classattr]
            fn __tablename__() -> &'static str {
                $table
            }

            $(
                #[getter]
                fn $field<'py>(&self, $py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    let $r = &self.r;
                    Ok($conv.into_pyobject($py)?.into_any())
                }
            )*

            fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let d = PyDict::new(py);
                $( d.set_item(stringify!($field), self.$field(py)?)?; )*
                Ok(d)
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                let mut parts = Vec::new();
                $( parts.push(format!("{}={}", stringify!($field), self.$field(py)?.repr()?)); )*
                Ok(format!("{}({})", stringify!($cls), parts.join(", ")))
            }
        }
    };
}

row_model!(JobView, JobViewRow, "biomero_job_view", [
    slurm_job_id => |py, r| r.slurm_job_id,
    user => |py, r| r.user,
    group => |py, r| r.group,
    task_id => |py, r| opt_uuid(py, &r.task_id)?,
]);

row_model!(JobProgressView, JobProgressRow, "biomero_job_progress_view", [
    slurm_job_id => |py, r| r.slurm_job_id,
    status => |py, r| r.status.as_str(),
    progress => |py, r| r.progress.as_deref(),
]);

row_model!(WorkflowProgressView, WorkflowProgressRow, "biomero_workflow_progress_view", [
    workflow_id => |py, r| uuid_to_py(py, &r.workflow_id)?,
    status => |py, r| r.status.as_deref(),
    progress => |py, r| r.progress.as_deref(),
    user => |py, r| r.user,
    group => |py, r| r.group,
    name => |py, r| r.name.as_deref(),
    task => |py, r| r.task.as_deref(),
    main_task_name => |py, r| r.main_task_name.as_deref(),
    start_time => |py, r| naive_to_py(py, &r.start_time)?,
]);

row_model!(TaskExecution, TaskExecutionRow, "biomero_task_execution", [
    task_id => |py, r| uuid_to_py(py, &r.task_id)?,
    task_name => |py, r| r.task_name.as_str(),
    task_version => |py, r| r.task_version.as_deref(),
    user_id => |py, r| r.user_id,
    group_id => |py, r| r.group_id,
    status => |py, r| r.status.as_str(),
    start_time => |py, r| naive_to_py(py, &r.start_time)?,
    end_time => |py, r| opt_time(py, &r.end_time)?,
    error_type => |py, r| r.error_type.as_deref(),
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

/// `copy.copy` and `copy.deepcopy` (fabric's `Connection` copies the values
/// assigned to its attributes): the object is immutable and holds only its
/// store, so a copy is the object itself, on the same store.
macro_rules! copy_is_self {
    ($($cls:ident),+) => {$(
        #[pymethods]
        impl $cls {
            /// The object itself (immutable; it shares its store).
            fn __copy__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            /// The object itself (immutable; it shares its store).
            fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
                slf
            }
        }
    )+};
}
pub(crate) use copy_is_self;

copy_is_self!(
    JobAccounting,
    JobProgress,
    WorkflowProgress,
    WorkflowAnalytics
);
