//! The view classes (`JobAccounting`, `JobProgress`, `WorkflowProgress`,
//! `WorkflowAnalytics`) with the reference's query methods; their rows come
//! back as the row models of `rows.rs`.

use crate::app::db::Lease;
use crate::projections::views::job_accounting;
use crate::projections::views::job_progress;
use crate::projections::views::workflow_analytics;
use crate::projections::views::workflow_progress;
use crate::projections::View;
use crate::python::args::url_arg;
use crate::python::convert::*;
use crate::python::errors::IntoPy;
use crate::python::rows::model;
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

/// The views whose reset this process asked for, by database URL: BIOMERO's
/// `SlurmClient.initialize_analytics_system(reset_tables=True)` drops the
/// view and tracking tables through `EngineManager`'s session and then calls
/// each view's `pull_and_process(start=...)`. The drop-in session does not
/// drop them (readers would see no table, then a partial one); it records the
/// reset here, and the next `pull_and_process` of any of these views
/// rebuilds all of them at once, beside the live tables, from `start`.
type PendingResets = std::sync::Mutex<std::collections::HashMap<String, Vec<View>>>;

fn pending_resets() -> &'static PendingResets {
    static PENDING: crate::sys::process::ProcessLocal<PendingResets> =
        crate::sys::process::ProcessLocal::new();
    PENDING.get_or_init(Default::default)
}

fn reset_key(url: &str) -> String {
    url.trim().to_owned()
}

/// The view whose view table or tracking table `table` is.
fn view_of_table(table: &str) -> Option<View> {
    View::ALL.into_iter().find(|v| {
        v.view_table().eq_ignore_ascii_case(table) || v.tracking_table().eq_ignore_ascii_case(table)
    })
}

/// The name of the view whose view table or tracking table ``table`` is,
/// else None (for the drop-in ``EngineManager`` session).
#[pyfunction]
pub fn view_of_table_name(table: &str) -> Option<&'static str> {
    view_of_table(table).map(View::name)
}

/// Records that the views of ``tables`` (view or tracking tables) are to be
/// rebuilt by the next ``pull_and_process`` of any of them on ``url`` (see
/// [`pending_resets`]). Returns the names of the views recorded.
#[pyfunction]
pub fn defer_view_reset(url: &str, tables: Vec<String>) -> Vec<&'static str> {
    let mut pending = pending_resets().lock().unwrap_or_else(|e| e.into_inner());
    let views = pending.entry(reset_key(url)).or_default();
    let mut named = Vec::new();
    for view in tables.iter().filter_map(|t| view_of_table(t)) {
        if !views.contains(&view) {
            views.push(view);
        }
        if !named.contains(&view.name()) {
            named.push(view.name());
        }
    }
    if !named.is_empty() {
        log::info!(
            "biomero_rs: the reset of {} is deferred: the next pull_and_process rebuilds them \
             beside the live tables and switches at once (the tables are not dropped)",
            named.join(", ")
        );
    }
    named
}

/// Takes the pending resets of `url` when `view` is among them.
fn take_resets(url: &str, view: View) -> Vec<View> {
    let mut pending = pending_resets().lock().unwrap_or_else(|e| e.into_inner());
    match pending.get(&reset_key(url)) {
        Some(views) if views.contains(&view) => pending.remove(&reset_key(url)).unwrap_or_default(),
        _ => Vec::new(),
    }
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
    /// `pull_and_process`). After a reset of this view (see
    /// [`pending_resets`]), or with `start` above 1 (BIOMERO's SlurmClient
    /// passes the first event at or after its rebuild cutoff), rebuilds it
    /// beside the live table from that notification, included, with facts
    /// from the whole log, and switches at once.
    fn pull_and_process(&self, py: Python<'_>, start: Option<i64>) -> PyResult<u64> {
        let s = self.store.store().py()?;
        let reset = take_resets(self.store.url(), self.view);
        let first = start.unwrap_or(1).max(1);
        py.allow_threads(|| {
            if !reset.is_empty() {
                let done = crate::app::rebuild::rebuild_from(s, &reset, None, first);
                if done.is_err() {
                    // Still to do: the next call tries again.
                    let mut pending = pending_resets().lock().unwrap_or_else(|e| e.into_inner());
                    let views = pending.entry(reset_key(self.store.url())).or_default();
                    views.extend(
                        reset
                            .iter()
                            .filter(|v| !views.contains(v))
                            .copied()
                            .collect::<Vec<_>>(),
                    );
                }
                done
            } else if first > 1 {
                crate::app::rebuild::rebuild_from(s, &[self.view], None, first)
            } else {
                crate::app::rebuild::catch_up(s, &[self.view])
            }
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
    fn list_jobs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let rows = read(py, &self.base.store, job_accounting::all_jobs)?;
        rows.iter()
            .map(|r| model(py, View::JobAccounting, r))
            .collect()
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
    fn get_job_progress<'py>(
        &self,
        py: Python<'py>,
        slurm_job_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(job) = job_id_filter("slurm_job_id", slurm_job_id)? else {
            return Ok(None);
        };
        let row = read(py, &self.base.store, |tx| {
            job_progress::get_job_progress(tx, job)
        })?;
        row.map(|r| model(py, View::JobProgress, &r)).transpose()
    }

    /// Return every row of ``biomero_job_progress_view``, by ``slurm_job_id``.
    ///
    /// Returns:
    ///     A list of ``JobProgressView``.
    ///
    /// Raises:
    ///     DatabaseError: The database failed.
    fn list_job_progress<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let rows = read(py, &self.base.store, job_progress::all_job_progress)?;
        rows.iter()
            .map(|r| model(py, View::JobProgress, r))
            .collect()
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
    fn get_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let id = uuid_arg("workflow_id", workflow_id)?;
        let row = read(py, &self.base.store, |tx| {
            workflow_progress::get_workflow(tx, id)
        })?;
        row.map(|r| model(py, View::WorkflowProgress, &r))
            .transpose()
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
    fn list_workflows<'py>(
        &self,
        py: Python<'py>,
        user: Option<&Bound<'_, PyAny>>,
        group: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let user = opt_int_arg("user", user)?;
        let group = opt_int_arg("group", group)?;
        let rows = read(py, &self.base.store, |tx| {
            workflow_progress::list_workflows(tx, user, group)
        })?;
        rows.iter()
            .map(|r| model(py, View::WorkflowProgress, r))
            .collect()
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
    fn get_task_execution<'py>(
        &self,
        py: Python<'py>,
        task_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let id = uuid_arg("task_id", task_id)?;
        let row = read(py, &self.base.store, |tx| {
            workflow_analytics::get_task_execution(tx, id)
        })?;
        row.map(|r| model(py, View::WorkflowAnalytics, &r))
            .transpose()
    }

    /// Return every row of ``biomero_task_execution``, by ``task_id``.
    ///
    /// Returns:
    ///     A list of ``TaskExecution``.
    ///
    /// Raises:
    ///     DatabaseError: The database failed.
    fn list_task_executions<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let rows = read(
            py,
            &self.base.store,
            workflow_analytics::all_task_executions,
        )?;
        rows.iter()
            .map(|r| model(py, View::WorkflowAnalytics, r))
            .collect()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Recorder>()?;
    m.add_function(wrap_pyfunction!(view_of_table_name, m)?)?;
    m.add_function(wrap_pyfunction!(defer_view_reset, m)?)?;
    m.add_class::<JobAccounting>()?;
    m.add_class::<JobProgress>()?;
    m.add_class::<WorkflowProgress>()?;
    m.add_class::<WorkflowAnalytics>()?;
    crate::python::rows::register(m)?;
    Ok(())
}

crate::python::macros::copy_is_self!(
    JobAccounting,
    JobProgress,
    WorkflowProgress,
    WorkflowAnalytics
);
