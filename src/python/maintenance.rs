//! Module functions for operators: rebuild, catch-up, migrations, status.

use crate::python::errors::{to_py, IntoPy};
use crate::python::tracker::{url_arg, views_arg};
use crate::store;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn open(url: Option<String>) -> crate::Result<std::sync::Arc<dyn store::EventStore>> {
    let url = store::resolve_url(url.as_deref())?;
    store::open(&url)
}

/// Empties the chosen view tables and replays every event from the first.
/// `progress(done, total)` is called after each batch. Returns the number of
/// events replayed.
#[pyfunction]
#[pyo3(signature = (url=None, views=None, progress=None))]
pub fn rebuild_views(
    py: Python<'_>,
    url: Option<&Bound<'_, PyAny>>,
    views: Option<&Bound<'_, PyAny>>,
    progress: Option<PyObject>,
) -> PyResult<u64> {
    let url = url_arg(url)?;
    let views = views_arg(views)?;
    if let Some(p) = &progress {
        if !p.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "progress: expected a callable (done, total)",
            ));
        }
    }
    let mut failure: Option<PyErr> = None;
    let result = py.allow_threads(|| {
        let store = open(url)?;
        let mut cb = |done: u64, total: u64| -> crate::Result<()> {
            let Some(p) = &progress else { return Ok(()) };
            Python::with_gil(|py| match p.call1(py, (done, total)) {
                Ok(_) => Ok(()),
                Err(e) => {
                    failure = Some(e);
                    Err(crate::Error::Cancelled(
                        "the progress callback raised".into(),
                    ))
                }
            })
        };
        crate::rebuild::rebuild(store.as_ref(), &views, Some(&mut cb))
    });
    match (result, failure) {
        (_, Some(e)) => Err(e),
        (r, None) => r.map_err(to_py),
    }
}

/// Applies events written since each view's tracking position. Returns how
/// many events were read.
#[pyfunction]
#[pyo3(signature = (url=None, views=None))]
pub fn catch_up(
    py: Python<'_>,
    url: Option<&Bound<'_, PyAny>>,
    views: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    let url = url_arg(url)?;
    let views = views_arg(views)?;
    py.allow_threads(|| {
        let store = open(url)?;
        crate::rebuild::catch_up(store.as_ref(), &views)
    })
    .py()
}

/// Creates or upgrades the view tables.
#[pyfunction]
#[pyo3(signature = (url=None))]
pub fn run_migrations(py: Python<'_>, url: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let url = url_arg(url)?;
    py.allow_threads(|| {
        let store = open(url)?;
        crate::migrations::run(store.as_ref())
    })
    .py()
}

/// The startup path of the migrations: runs them when BIOMERO_RUN_MIGRATIONS
/// is 1 (the default), adopting an unstamped schema that matches BIOMERO's
/// baseline; with 0 it changes nothing and only checks.
#[pyfunction]
#[pyo3(signature = (url=None))]
pub fn ensure_view_tables(py: Python<'_>, url: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let url = url_arg(url)?;
    py.allow_threads(|| {
        let store = open(url)?;
        crate::migrations::ensure_view_tables_in(store.as_ref())
    })
    .py()
}

/// Where the log and each projector stand, as a dict.
#[pyfunction]
#[pyo3(signature = (url=None))]
pub fn status<'py>(
    py: Python<'py>,
    url: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let url = url_arg(url)?;
    let s = py
        .allow_threads(|| {
            let store = open(url)?;
            crate::rebuild::status(store.as_ref())
        })
        .py()?;
    let d = PyDict::new(py);
    d.set_item("backend", s.backend)?;
    d.set_item("url", s.url)?;
    d.set_item("events", s.events)?;
    d.set_item("max_notification_id", s.max_notification_id)?;
    d.set_item("topics", s.topics.into_pyobject(py)?)?;
    let views = PyDict::new(py);
    for (name, pos, lag) in s.views {
        let v = PyDict::new(py);
        v.set_item("position", pos)?;
        v.set_item("lag", lag)?;
        views.set_item(name, v)?;
    }
    d.set_item("views", views)?;
    Ok(d)
}

/// Runs SQL statements (no parameters) in one transaction on the database of
/// `url`. For the drop-in `EngineManager.get_session()`.
#[pyfunction]
pub fn execute_sql(py: Python<'_>, url: &str, sql: &str) -> PyResult<()> {
    py.allow_threads(|| {
        let store = store::open(url)?;
        // The SQL may drop view tables: check them again on next use.
        crate::migrations::forget(store.as_ref());
        store::write_tx(store.as_ref(), |tx| tx.execute_batch(sql))
    })
    .py()
}

/// Forgets this process's pool for `url` (it closes when unused).
#[pyfunction]
pub fn close_store(url: &str) {
    store::close(url);
}
