//! The view classes (`JobAccounting`, `JobProgress`, `WorkflowProgress`,
//! `WorkflowAnalytics`) with the reference's query methods, and the immutable
//! row models (`JobView`, `JobProgressView`, `WorkflowProgressView`,
//! `TaskExecution`).

use crate::app::db::Lease;
use crate::projections::views::job_accounting::{self, JobViewRow};
use crate::projections::views::job_progress::{self, JobProgressRow};
use crate::projections::views::workflow_analytics::{self, TaskExecutionRow};
use crate::projections::views::workflow_progress::{self, WorkflowProgressRow};
use crate::projections::View;
use crate::python::args::url_arg;
use crate::python::convert::*;
use crate::python::errors::IntoPy;
use crate::store::{self, Tx};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

/// Runs a read query with the GIL released.
fn read<T: Send>(
    py: Python<'_>,
    s: &Lease,
    f: impl FnMut(&mut dyn Tx) -> crate::Result<T> + Send,
) -> PyResult<T> {
    let s = s.store().py()?;
    py.allow_threads(|| store::read_tx(s, f)).py()
}

fn job_id_filter(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    // Slurm ids arrive as int or as their text.
    if let Ok(s) = obj.extract::<String>() {
        return Ok(s.trim().parse().ok());
    }
    int_arg(arg, obj).map(Some)
}

/// A view's ``recorder``: the table names BIOMERO's view reset reads
/// (``tracking_table_name``, ``events_table_name``).
#[pyclass(module = "biomero_rs._core", frozen)]
pub struct Recorder {
    /// The table holding the view's tracking position.
    #[pyo3(get)]
    tracking_table_name: &'static str,
    /// The table of the stored events.
    #[pyo3(get)]
    events_table_name: &'static str,
}

/// Shared parts of the four view classes.
struct ViewBase {
    store: Lease,
    view: View,
}

impl ViewBase {
    fn new(py: Python<'_>, url: Option<&Bound<'_, PyAny>>, view: View) -> PyResult<ViewBase> {
        let url = url_arg(url)?;
        let store = py
            .allow_threads(|| Lease::open_with_views(url.as_deref(), "view object"))
            .py()?;
        Ok(ViewBase { store, view })
    }

    fn recorder(&self) -> Recorder {
        Recorder {
            tracking_table_name: self.view.tracking_table(),
            events_table_name: self.view.events_table(),
        }
    }

    /// Brings this view up to date with the log (the reference's
    /// `pull_and_process`). `start` above 1 (BIOMERO's SlurmClient passes the
    /// first event at or after its rebuild cutoff) rebuilds this view from
    /// that notification, included: its table is emptied and every event
    /// from `start` on is applied, with facts from the whole log.
    fn pull_and_process(&self, py: Python<'_>, start: Option<i64>) -> PyResult<u64> {
        let view = [self.view];
        let s = self.store.store().py()?;
        py.allow_threads(|| match start {
            Some(first) if first > 1 => {
                crate::migrations::ensure_view_tables_in(s)?;
                crate::app::rebuild::rebuild_from(s, &view, None, first)
            }
            _ => crate::app::rebuild::catch_up(s, &view),
        })
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

            /// The projector's name in ``views=``.
            #[classattr]
            #[allow(non_snake_case)]
            fn VIEW_NAME() -> &'static str {
                $view.name()
            }

            /// The table names of this view, as eventsourcing's recorder
            /// gives them (for BIOMERO's view reset).
            #[getter]
            fn recorder(&self) -> Recorder {
                self.base.recorder()
            }

            /// Bring this view up to date with the log, as eventsourcing's
            /// ``pull_and_process`` does (the arguments are accepted for its
            /// signature: the view reads from its own tracking position).
            ///
            /// Returns:
            ///     How many events were read.
            ///
            /// Raises:
            ///     DatabaseError: The database failed; the view keeps its last
            ///         committed position.
            #[pyo3(signature = (leader_name=None, start=None))]
            fn pull_and_process(
                &self,
                py: Python<'_>,
                leader_name: Option<&Bound<'_, PyAny>>,
                start: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<u64> {
                let _ = leader_name;
                let start = match start {
                    Some(s) if !s.is_none() => Some(int_arg("start", s)?),
                    _ => None,
                };
                self.base.pull_and_process(py, start)
            }

            fn __repr__(&self) -> String {
                format!(
                    "{}(url={:?})",
                    stringify!($cls),
                    self.base.store.shared().masked_url()
                )
            }

            /// Releases the database (its connections close when no other
            /// object of this process uses them); later queries raise
            /// ValueError. Also what `with` does on exit.
            fn close(&self, py: Python<'_>) {
                py.allow_threads(|| self.base.store.close())
            }

            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            #[pyo3(signature = (*_exc))]
            fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
                self.close(py);
                false
            }
        }
    };
}

/// The ``biomero_job_view`` table: which user and group each Slurm job
/// belongs to, and its task. Queries as ``biomero.views.JobAccounting``.
///
/// ``JobAccounting(url=None)``: ``url`` is the database URL, None reads
/// ``SQLALCHEMY_URL``; other arguments (eventsourcing's ``env=``) are
/// accepted and ignored. Creates or checks the view tables.
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database cannot be reached.
#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct JobAccounting {
    base: ViewBase,
}
view_common!(JobAccounting, View::JobAccounting);

/// The ``biomero_job_progress_view`` table: each Slurm job's last status
/// and progress. Queries as ``biomero.views.JobProgress``.
///
/// ``JobProgress(url=None)``: ``url`` is the database URL, None reads
/// ``SQLALCHEMY_URL``; other arguments (eventsourcing's ``env=``) are
/// accepted and ignored. Creates or checks the view tables.
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database cannot be reached.
#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct JobProgress {
    base: ViewBase,
}
view_common!(JobProgress, View::JobProgress);

/// The ``biomero_workflow_progress_view`` table: each workflow's status,
/// progress and current task. Queries as ``biomero.views.WorkflowProgress``.
///
/// ``WorkflowProgress(url=None)``: ``url`` is the database URL, None reads
/// ``SQLALCHEMY_URL``; other arguments (eventsourcing's ``env=``) are
/// accepted and ignored. Creates or checks the view tables.
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database cannot be reached.
#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct WorkflowProgress {
    base: ViewBase,
}
view_common!(WorkflowProgress, View::WorkflowProgress);

/// The ``biomero_task_execution`` table: one row per task with its times,
/// status and error type. Queries as ``biomero.views.WorkflowAnalytics``.
///
/// ``WorkflowAnalytics(url=None)``: ``url`` is the database URL, None reads
/// ``SQLALCHEMY_URL``; other arguments (eventsourcing's ``env=``) are
/// accepted and ignored. Creates or checks the view tables.
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database cannot be reached.
#[pyclass(module = "biomero_rs._core", subclass, frozen)]
pub struct WorkflowAnalytics {
    base: ViewBase,
}
view_common!(WorkflowAnalytics, View::WorkflowAnalytics);

#[pymethods]
impl JobAccounting {
    /// Return Slurm job ids by user.
    ///
    /// Args:
    ///     user: Only this OMERO user's, or None for all.
    ///     group: Only this OMERO group's, or None for all.
    ///
    /// Returns:
    ///     Without filters, ``{user: [job ids]}`` for every user (in the
    ///     order of their lowest job id); with a filter, one entry keyed by
    ///     the ``user`` argument as given (None when only ``group`` is given)
    ///     holding the matching job ids. Job ids ascending, as the reference.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
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
            job_accounting::get_jobs(tx, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, jobs) in rows {
            d.set_item(k, PyList::new(py, jobs)?)?;
        }
        Ok(d)
    }

    /// Return the id of the task that ran a Slurm job.
    ///
    /// Args:
    ///     job_id: The Slurm job id (int or its text).
    ///
    /// Returns:
    ///     The task's ``uuid.UUID``, or None for an unknown job (or text
    ///     that is not a number).
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
    fn get_task_id<'py>(
        &self,
        py: Python<'py>,
        job_id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(job) = job_id_filter("job_id", job_id)? else {
            return Ok(None);
        };
        let id = read(py, &self.base.store, |tx| {
            job_accounting::get_task_id(tx, job)
        })?;
        id.map(|u| uuid_to_py(py, &u)).transpose()
    }

    /// Return every row of ``biomero_job_view``, by ``slurm_job_id``.
    ///
    /// Returns:
    ///     A list of ``JobView``.
    ///
    /// Raises:
    ///     DatabaseError: The database failed.
    fn list_jobs(&self, py: Python<'_>) -> PyResult<Vec<JobView>> {
        let rows = read(py, &self.base.store, job_accounting::all_jobs)?;
        Ok(rows.into_iter().map(|r| JobView { r }).collect())
    }
}

#[pymethods]
impl JobProgress {
    /// Return the last status and progress of a Slurm job.
    ///
    /// Args:
    ///     slurm_job_id: The Slurm job id (int or its text).
    ///
    /// Returns:
    ///     A ``JobProgressView``, or None for an unknown job.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
    fn get_job_progress(
        &self,
        py: Python<'_>,
        slurm_job_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<JobProgressView>> {
        let Some(job) = job_id_filter("slurm_job_id", slurm_job_id)? else {
            return Ok(None);
        };
        let row = read(py, &self.base.store, |tx| {
            job_progress::get_job_progress(tx, job)
        })?;
        Ok(row.map(|r| JobProgressView { r }))
    }

    /// Return every row of ``biomero_job_progress_view``, by ``slurm_job_id``.
    ///
    /// Returns:
    ///     A list of ``JobProgressView``.
    ///
    /// Raises:
    ///     DatabaseError: The database failed.
    fn list_job_progress(&self, py: Python<'_>) -> PyResult<Vec<JobProgressView>> {
        let rows = read(py, &self.base.store, job_progress::all_job_progress)?;
        Ok(rows.into_iter().map(|r| JobProgressView { r }).collect())
    }
}

#[pymethods]
impl WorkflowProgress {
    /// Return the progress row of a workflow.
    ///
    /// Args:
    ///     workflow_id: The workflow (``uuid.UUID`` or its text).
    ///
    /// Returns:
    ///     A ``WorkflowProgressView``, or None for an unknown workflow.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
    fn get_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<WorkflowProgressView>> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        let row = read(py, &self.base.store, |tx| {
            workflow_progress::get_workflow(tx, id)
        })?;
        Ok(row.map(|r| WorkflowProgressView { r }))
    }

    /// Return the workflows' progress rows, newest ``start_time`` first.
    ///
    /// Args:
    ///     user: Only this OMERO user's, or None for all.
    ///     group: Only this OMERO group's, or None for all.
    ///
    /// Returns:
    ///     A list of ``WorkflowProgressView``.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
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
            workflow_progress::list_workflows(tx, user, group)
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
    /// Count task executions by task name and version.
    ///
    /// Args:
    ///     user: Only this OMERO user's, or None for all.
    ///     group: Only this OMERO group's, or None for all.
    ///
    /// Returns:
    ///     ``{(task_name, task_version): count}``.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
    #[pyo3(signature = (user=None, group=None))]
    fn get_task_counts<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (user, group) = (opt_int_arg("user", user)?, opt_int_arg("group", group)?);
        let m = read(py, &self.base.store, |tx| {
            workflow_analytics::get_task_counts(tx, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(key_tuple(py, k)?, v)?;
        }
        Ok(d)
    }

    /// Return the mean duration of finished tasks by task name and version.
    ///
    /// Args:
    ///     user: Only this OMERO user's, or None for all.
    ///     group: Only this OMERO group's, or None for all.
    ///
    /// Returns:
    ///     ``{(task_name, task_version): seconds}``, the mean of ``end_time -
    ///     start_time`` (with microseconds) over the rows with an ``end_time``:
    ///     a ``float`` on SQLite and a ``decimal.Decimal`` on Postgres, as the
    ///     reference's query returns it on each.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
    #[pyo3(signature = (user=None, group=None))]
    fn get_average_task_duration<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (user, group) = (opt_int_arg("user", user)?, opt_int_arg("group", group)?);
        let m = read(py, &self.base.store, |tx| {
            workflow_analytics::get_average_task_duration(tx, user, group)
        })?;
        // As the reference: SQLite's AVG gives a float, Postgres's a numeric.
        let as_decimal = self.base.store.shared().backend() == crate::store::Backend::Postgres;
        let d = PyDict::new(py);
        for (k, v) in m {
            if as_decimal {
                let text = crate::domain::Value::Decimal(v.to_string());
                d.set_item(key_tuple(py, k)?, value_to_py(py, &text)?)?;
            } else {
                d.set_item(key_tuple(py, k)?, v)?;
            }
        }
        Ok(d)
    }

    /// Return the error types of failed tasks by task name and version.
    ///
    /// Args:
    ///     user: Only this OMERO user's, or None for all.
    ///     group: Only this OMERO group's, or None for all.
    ///
    /// Returns:
    ///     ``{(task_name, task_version): [error types]}``, distinct and sorted.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
    #[pyo3(signature = (user=None, group=None))]
    fn get_task_failures<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'py, PyAny>>,
        group: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (user, group) = (opt_int_arg("user", user)?, opt_int_arg("group", group)?);
        let m = read(py, &self.base.store, |tx| {
            workflow_analytics::get_task_failures(tx, user, group)
        })?;
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(key_tuple(py, k)?, PyList::new(py, v)?)?;
        }
        Ok(d)
    }

    /// Count the executions of one task by day.
    ///
    /// Args:
    ///     task_name: The task's name.
    ///     user: Only this OMERO user's, or None for all.
    ///     group: Only this OMERO group's, or None for all.
    ///
    /// Returns:
    ///     ``{date: count}`` by ``start_time`` date (UTC): the date as
    ///     ``'YYYY-MM-DD'`` text on SQLite and a ``datetime.date`` on
    ///     Postgres, as the reference's query returns it on each.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
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
            workflow_analytics::get_task_usage_over_time(tx, &name, user, group)
        })?;
        // As the reference: SQLite's date() gives text, Postgres's a date.
        let as_text = self.base.store.shared().backend() == crate::store::Backend::Sqlite;
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

    /// Return the execution row of a task.
    ///
    /// Args:
    ///     task_id: The task (``uuid.UUID`` or its text).
    ///
    /// Returns:
    ///     A ``TaskExecution``, or None for an unknown task.
    ///
    /// Raises:
    ///     TypeError, ValueError: An argument has the wrong type or value.
    ///     DatabaseError: The database failed.
    fn get_task_execution(
        &self,
        py: Python<'_>,
        task_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<TaskExecution>> {
        let id = uuid_arg("task_id", task_id)?;
        let row = read(py, &self.base.store, |tx| {
            workflow_analytics::get_task_execution(tx, id)
        })?;
        Ok(row.map(|r| TaskExecution { r }))
    }

    /// Return every row of ``biomero_task_execution``, by ``task_id``.
    ///
    /// Returns:
    ///     A list of ``TaskExecution``.
    ///
    /// Raises:
    ///     DatabaseError: The database failed.
    fn list_task_executions(&self, py: Python<'_>) -> PyResult<Vec<TaskExecution>> {
        let rows = read(
            py,
            &self.base.store,
            workflow_analytics::all_task_executions,
        )?;
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
    ($(#[$doc:meta])* $cls:ident, $row:ident, $table:expr, [$($field:ident $(= $def:tt)?: $fdoc:literal),* $(,)?]) => {
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
                #[doc = $fdoc]
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
    slurm_job_id: "The Slurm job id.",
    user: "The OMERO user id.",
    group: "The OMERO group id.",
    task_id = None: "The id of the task that ran the job, or None.",
]);

row_model!(
    /// A row of ``biomero_job_progress_view``: the last status and progress
    /// of a Slurm job.
    ///
    /// Immutable; compares, hashes and pickles by value.
    JobProgressView, JobProgressRow, "biomero_job_progress_view", [
    slurm_job_id: "The Slurm job id.",
    status: "The job's last status (such as ``'RUNNING'``).",
    progress = None: "The job's last progress (such as ``'43%'``), or None.",
]);

row_model!(
    /// A row of ``biomero_workflow_progress_view``: a workflow's status,
    /// progress, owner and current task. ``start_time`` is naive UTC.
    ///
    /// Immutable; compares, hashes and pickles by value.
    WorkflowProgressView, WorkflowProgressRow, "biomero_workflow_progress_view", [
    workflow_id: "The workflow's id.",
    status = None: "The workflow's status (``'JOB_RUNNING'``, ``'DONE'``, ...), or None.",
    progress = None: "The workflow's progress (such as ``'67.2%'``), or None.",
    user = None: "The OMERO user id, or None.",
    group = None: "The OMERO group id, or None.",
    name = None: "The workflow's name, or None.",
    task = None: "The name of the task running now, or None.",
    main_task_name = None: "The name of the workflow's main (Slurm) task, or None.",
    start_time: "When the workflow was initiated (naive UTC ``datetime``).",
]);

row_model!(
    /// A row of ``biomero_task_execution``: one task's name, version, owner,
    /// status, times (naive UTC) and error type.
    ///
    /// Immutable; compares, hashes and pickles by value.
    TaskExecution, TaskExecutionRow, "biomero_task_execution", [
    task_id: "The id of the task.",
    task_name: "The task's name.",
    task_version = None: "The task's version, or None.",
    user_id = None: "The OMERO user id, or None.",
    group_id = None: "The OMERO group id, or None.",
    status: "The task's status (``'CREATED'``, ``'COMPLETED'``, ``'FAILED'``, ...).",
    start_time: "When the task was created (naive UTC ``datetime``).",
    end_time = None: "When the task completed or failed (naive UTC ``datetime``), or None.",
    error_type = None: "Why the task failed, or None.",
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

crate::python::macros::copy_is_self!(
    JobAccounting,
    JobProgress,
    WorkflowProgress,
    WorkflowAnalytics
);
