//! Module functions for operators: rebuild, catch-up, migrations, status.

use crate::app::db::Lease;
use crate::python::args::{url_arg, views_arg};
use crate::python::errors::{raise_pending, to_py, IntoPy};
use crate::store;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The shared store of a URL for one call; released after it.
fn open(url: Option<String>) -> crate::Result<Lease> {
    Lease::open(url.as_deref(), "call")
}

/// The cutoff of `since=`: an aware datetime, a naive one (UTC), a date
/// (midnight UTC) or an ISO text of either.
fn since_arg(obj: &Bound<'_, PyAny>) -> PyResult<chrono::DateTime<chrono::Utc>> {
    use pyo3::exceptions::{PyTypeError, PyValueError};
    let py = obj.py();
    let dt = py.import("datetime")?;
    let datetime = dt.getattr("datetime")?;
    let value = if obj.is_instance_of::<pyo3::types::PyString>() {
        let text: String = obj.extract()?;
        datetime
            .call_method1("fromisoformat", (text.trim(),))
            .map_err(|_| {
                PyValueError::new_err(format!(
                    "since: {text:?} is not an ISO date or datetime (e.g. 2024-06-01 or \
                     2024-06-01T08:00:00+00:00)"
                ))
            })?
    } else if obj.is_instance(&datetime)? {
        obj.clone()
    } else if obj.is_instance(&dt.getattr("date")?)? {
        datetime.call_method1("combine", (obj, dt.getattr("time")?.call0()?))?
    } else {
        return Err(PyTypeError::new_err(format!(
            "since: expected a datetime, a date or an ISO text, got {}",
            obj.get_type().name()?
        )));
    };
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    let value = if value.getattr("tzinfo")?.is_none() {
        let kw = PyDict::new(py);
        kw.set_item("tzinfo", &utc)?;
        value.call_method("replace", (), Some(&kw))?
    } else {
        value.call_method1("astimezone", (&utc,))?
    };
    let text: String = value.call_method0("isoformat")?.extract()?;
    crate::domain::events::parse_timestamp(&text)
        .ok_or_else(|| PyValueError::new_err(format!("since: cannot read {text:?}")))
}

/// Rebuild the chosen views from the event log, beside the live tables.
///
/// The new rows are built in temporary tables on a connection of the
/// rebuild's own while commands go on and readers keep seeing the old rows;
/// then one short transaction applies the events appended meanwhile and
/// makes the live tables equal to the new rows (only the rows that differ
/// are written). Until then nothing visible changes: an interrupted rebuild
/// leaves the views exactly as they were. One rebuild at a time runs per
/// database.
///
/// Args:
///     url: The database URL; None reads ``SQLALCHEMY_URL``.
///     views: The names of the views to rebuild; None for all four.
///     progress: Called as ``progress(done, total)`` after each batch of
///         events.
///     since: A cutoff (an aware datetime, a naive one in UTC, a date or an
///         ISO text): the views get the rows of the events from the first
///         one whose timestamp is at or after it (that event included),
///         while the facts the projectors look up still come from the whole
///         log; a cutoff after the last event replays everything.
///     wait: While another rebuild of the database runs: True (the
///         default) waits for it to end, False raises
///         ``RebuildRunningError`` naming it (pid, host, since when).
///
/// Returns:
///     The number of events applied.
///
/// Raises:
///     ValueError, TypeError: An argument is not valid.
///     RebuildRunningError: ``wait=False`` and another rebuild runs.
///     DatabaseError: The database failed; the views are as they were.
///     Whatever ``progress`` raises (such as ``KeyboardInterrupt``) stops
///     the rebuild the same way.
#[pyfunction]
#[pyo3(signature = (url=None, views=None, progress=None, since=None, wait=None))]
pub fn rebuild_views(
    py: Python<'_>,
    url: Option<&Bound<'_, PyAny>>,
    views: Option<&Bound<'_, PyAny>>,
    progress: Option<PyObject>,
    since: Option<&Bound<'_, PyAny>>,
    wait: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    let wait = match wait {
        Some(w) => crate::python::args::bool_arg(w, "wait")?,
        None => true,
    };
    let url = url_arg(url)?;
    let views = views_arg(views)?;
    let since = match since {
        Some(s) if !s.is_none() => Some(since_arg(s)?),
        _ => None,
    };
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
        let start = match since {
            Some(cutoff) => crate::app::rebuild::Start::Since(cutoff),
            None => crate::app::rebuild::Start::All,
        };
        crate::app::rebuild::run(store.store()?, &views, start, Some(&mut cb), wait)
    });
    match (result, failure) {
        (_, Some(e)) => Err(e),
        (r, None) => r.py(),
    }
}

/// Apply the events written since each view's tracking position.
///
/// Args:
///     url: The database URL; None reads ``SQLALCHEMY_URL``.
///     views: The names of the views to bring up to date; None for all four.
///
/// Returns:
///     How many events were read.
///
/// Raises:
///     ValueError, TypeError: An argument is not valid.
///     DatabaseError: The database failed; the views keep their last
///         committed position.
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
        crate::app::rebuild::catch_up(store.store()?, &views)
    })
    .py()
}

/// Create or upgrade the ``biomero_*`` view tables to this version's schema.
///
/// Args:
///     url: The database URL; None reads ``SQLALCHEMY_URL``.
///
/// Returns:
///     The names of the migrations applied (empty when up to date).
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database failed or holds tables this version
///         cannot adopt; nothing changed.
#[pyfunction]
#[pyo3(signature = (url=None))]
pub fn run_migrations(py: Python<'_>, url: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let url = url_arg(url)?;
    py.allow_threads(|| {
        let store = open(url)?;
        crate::migrations::run(store.store()?)
    })
    .py()
}

/// Make sure the view tables exist, as a process does at startup.
///
/// Runs the migrations when ``BIOMERO_RUN_MIGRATIONS`` is 1 (the default),
/// adopting an unstamped schema that matches BIOMERO's baseline; with
/// ``BIOMERO_RUN_MIGRATIONS=0`` it changes nothing and only checks.
///
/// Args:
///     url: The database URL; None reads ``SQLALCHEMY_URL``.
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database failed, the tables are missing, or they
///         hold a schema this version cannot adopt; nothing changed.
#[pyfunction]
#[pyo3(signature = (url=None))]
pub fn ensure_view_tables(py: Python<'_>, url: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let url = url_arg(url)?;
    py.allow_threads(|| {
        let store = open(url)?;
        crate::migrations::ensure_view_tables_in(store.store()?)
    })
    .py()
}

/// Report where the event log and each view stand.
///
/// Args:
///     url: The database URL; None reads ``SQLALCHEMY_URL``.
///
/// Returns:
///     A dict: ``backend``, ``url`` (password masked), ``events``,
///     ``max_notification_id``, ``topics`` (``{topic: count}``),
///     ``views`` (``{name: {"position": id, "lag": events behind}}``),
///     and for a database file or server ``unfinished``
///     (``{"workflows"|"tasks": {"count", "oldest"}}``: workflows neither
///     DONE nor FAILED, tasks without an end time) and ``rebuild`` (the
///     rebuild running now, or None).
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database failed.
#[pyfunction]
#[pyo3(signature = (url=None))]
pub fn status<'py>(
    py: Python<'py>,
    url: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let url = url_arg(url)?;
    let s = py
        .allow_threads(|| {
            let store = open(url.clone())?;
            crate::app::rebuild::status(store.store()?)
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
    // Unfinished work and a running rebuild, read-only on the side (an
    // in-memory database has neither a second connection nor a lock file).
    let url = store::resolve_url(url.as_deref()).py()?;
    if let Ok(h) = py.allow_threads(|| crate::app::check::health(&url)) {
        add_health(py, &d, &h)?;
    }
    Ok(d)
}

fn unfinished_to_py<'py>(
    py: Python<'py>,
    u: &crate::app::check::Unfinished,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("count", u.count)?;
    match &u.oldest {
        Some(t) => d.set_item("oldest", crate::python::convert::naive_to_py(py, t)?)?,
        None => d.set_item("oldest", py.None())?,
    }
    Ok(d)
}

/// The `unfinished` and `rebuild` entries of `status` and `check`.
fn add_health<'py>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    h: &crate::app::check::Health,
) -> PyResult<()> {
    let u = PyDict::new(py);
    u.set_item("workflows", unfinished_to_py(py, &h.workflows)?)?;
    u.set_item("tasks", unfinished_to_py(py, &h.tasks)?)?;
    d.set_item("unfinished", u)?;
    d.set_item("rebuild", h.rebuild.as_deref())?;
    Ok(())
}

/// Check, read-only and fast, that the views are current: for health checks
/// and for gating an upgrade on running work.
///
/// Nothing is created, adopted or migrated (an SQLite file that does not
/// exist is an error, not created).
///
/// Args:
///     url: The database URL; None reads ``SQLALCHEMY_URL``.
///     max_lag: How many events a view may be behind the log (default 0).
///     idle: Also require that no workflow or task is unfinished (a
///         workflow whose status is neither DONE nor FAILED, a task without
///         an end time).
///
/// Returns:
///     A dict: ``ok`` (no problem), ``problems`` (one line each),
///     ``backend``, ``url`` (password masked), ``schema`` (``revision``,
///     ``head``, ``missing_tables``), ``max_notification_id``, ``views``
///     (``{name: {"position", "own_position", "lag"}}``), ``unfinished``
///     (``{"workflows"|"tasks": {"count", "oldest"}}``), ``rebuild`` (the
///     rebuild running now, or None), ``max_lag``, ``idle`` and ``seconds``
///     (how long the check took).
///
/// Raises:
///     ValueError, TypeError: An argument is not valid, or the SQLite file
///         does not exist.
///     DatabaseError: The database cannot be read.
#[pyfunction]
#[pyo3(signature = (url=None, max_lag=None, idle=None))]
pub fn check<'py>(
    py: Python<'py>,
    url: Option<&Bound<'_, PyAny>>,
    max_lag: Option<&Bound<'_, PyAny>>,
    idle: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let url = store::resolve_url(url_arg(url)?.as_deref()).py()?;
    let max_lag = match max_lag {
        Some(m) if !m.is_none() => {
            let n = crate::python::convert::int_arg("max_lag", m)?;
            u64::try_from(n).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "max_lag: expected a number of events, 0 or more, got {n}"
                ))
            })?
        }
        _ => 0,
    };
    let idle = match idle {
        Some(i) if !i.is_none() => crate::python::args::bool_arg(i, "idle")?,
        _ => false,
    };
    let t0 = std::time::Instant::now();
    let h = py.allow_threads(|| crate::app::check::health(&url)).py()?;
    let limits = crate::app::check::Limits { max_lag, idle };
    let problems = crate::app::check::problems(&h, limits);
    let seconds = t0.elapsed().as_secs_f64();
    let parsed = store::DbUrl::parse(&url).py()?;
    let d = PyDict::new(py);
    d.set_item("ok", problems.is_empty())?;
    d.set_item("problems", problems)?;
    d.set_item(
        "backend",
        match parsed {
            store::DbUrl::Sqlite { .. } => "sqlite",
            store::DbUrl::Postgres(_) => "postgres",
        },
    )?;
    d.set_item("url", parsed.masked())?;
    let schema = PyDict::new(py);
    schema.set_item("revision", h.stamp.as_deref())?;
    schema.set_item("head", h.head)?;
    schema.set_item("missing_tables", h.missing_tables.clone())?;
    d.set_item("schema", schema)?;
    d.set_item("max_notification_id", h.max_notification_id)?;
    let views = PyDict::new(py);
    for v in &h.views {
        let e = PyDict::new(py);
        e.set_item("position", v.position)?;
        e.set_item("own_position", v.own)?;
        e.set_item("lag", v.lag)?;
        views.set_item(v.view.name(), e)?;
    }
    d.set_item("views", views)?;
    add_health(py, &d, &h)?;
    d.set_item("max_lag", max_lag)?;
    d.set_item("idle", idle)?;
    d.set_item("seconds", seconds)?;
    Ok(d)
}

/// Run SQL statements (no parameters) in one transaction on the database of
/// ``url``; used by the drop-in ``EngineManager.get_session()``.
///
/// Args:
///     url: The database URL.
///     sql: One or more statements separated by ``;``.
///
/// Raises:
///     DatabaseError: A statement failed; none of them took effect.
#[pyfunction]
pub fn execute_sql(py: Python<'_>, url: &str, sql: &str) -> PyResult<()> {
    py.allow_threads(|| {
        let store = open(Some(url.to_owned()))?;
        // The SQL may drop view tables: check them again on next use.
        crate::migrations::forget(store.store()?);
        store::write_tx(store.store()?, |tx| tx.execute_batch(sql))
    })
    .py()
}

/// Forget this process's connection pool for ``url`` and close its idle
/// connections now (trackers and views still open connect again on their
/// next call). ``EngineManager.close_engine()`` calls it.
///
/// Args:
///     url: The database URL.
#[pyfunction]
pub fn close_store(url: &str) {
    for closed in store::close(url) {
        // The next store on this URL may be a new database (memory).
        crate::migrations::forget(closed.as_ref());
    }
}

/// A bound value of an ad-hoc statement.
fn any_param(obj: &Bound<'_, PyAny>, i: usize) -> PyResult<store::Sql> {
    use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
    use store::Sql;
    let py = obj.py();
    Ok(if obj.is_none() {
        Sql::Null
    } else if let Ok(b) = obj.downcast::<PyBool>() {
        Sql::Int(b.is_true().into())
    } else if obj.is_instance_of::<PyInt>() {
        Sql::Int(crate::python::convert::int_arg(
            &format!("params[{i}]"),
            obj,
        )?)
    } else if let Ok(f) = obj.downcast::<PyFloat>() {
        Sql::Real(f.value())
    } else if obj.is_instance_of::<PyString>() {
        Sql::Text(crate::python::convert::str_arg(
            &format!("params[{i}]"),
            obj,
        )?)
    } else if obj.is_instance(&py.import("uuid")?.getattr("UUID")?)? {
        Sql::Uuid(crate::python::convert::uuid_arg(
            &format!("params[{i}]"),
            obj,
        )?)
    } else if obj.is_instance(&py.import("datetime")?.getattr("datetime")?)? {
        // Aware times are taken in UTC; naive ones as they are (UTC).
        let t = if obj.getattr("tzinfo")?.is_none() {
            obj.clone()
        } else {
            let utc = py.import("datetime")?.getattr("timezone")?.getattr("utc")?;
            let kw = pyo3::types::PyDict::new(py);
            kw.set_item("tzinfo", py.None())?;
            obj.call_method1("astimezone", (utc,))?
                .call_method("replace", (), Some(&kw))?
        };
        let text: String = t.call_method1("isoformat", (" ",))?.extract()?;
        Sql::Time(
            chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f").map_err(|e| {
                pyo3::exceptions::PyValueError::new_err(format!("params[{i}]: {text}: {e}"))
            })?,
        )
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "params[{i}]: cannot bind a {} (bind None, bool, int, float, str, uuid.UUID or datetime)",
            obj.get_type().name()?
        )));
    })
}

fn any_cell_to_py<'py>(py: Python<'py>, cell: store::AnyCell) -> PyResult<Bound<'py, PyAny>> {
    use crate::python::convert::{date_to_py, naive_to_py, uuid_to_py};
    use store::AnyCell;
    Ok(match cell {
        AnyCell::Null => py.None().into_bound(py),
        AnyCell::Bool(b) => pyo3::types::PyBool::new(py, b).to_owned().into_any(),
        AnyCell::Int(i) => i.into_pyobject(py)?.into_any(),
        AnyCell::Real(f) => f.into_pyobject(py)?.into_any(),
        AnyCell::Text(s) => s.into_pyobject(py)?.into_any(),
        AnyCell::Bytes(b) => pyo3::types::PyBytes::new(py, &b).into_any(),
        AnyCell::Uuid(u) => uuid_to_py(py, &u)?,
        AnyCell::Time(t) => naive_to_py(py, &t)?,
        AnyCell::TimeTz(t) => {
            let utc = py.import("datetime")?.getattr("timezone")?.getattr("utc")?;
            let kw = PyDict::new(py);
            kw.set_item("tzinfo", utc)?;
            naive_to_py(py, &t)?.call_method("replace", (), Some(&kw))?
        }
        AnyCell::Date(d) => date_to_py(py, &d)?,
    })
}

/// Runs `statements` (each `(sql, params)`, placeholders `?1`/`$1` as the
/// backend wants them) in one transaction on the database of `url`, and
/// commits it when `commit` is true, else rolls it back. Returns the column
/// names, the rows (tuples) and the changed-row count of the last statement.
/// For the drop-in `EngineManager.get_session()`.
#[pyfunction]
pub fn execute_statements<'py>(
    py: Python<'py>,
    url: &str,
    statements: Vec<(String, Vec<Bound<'py, PyAny>>)>,
    commit: bool,
) -> PyResult<(Vec<String>, Bound<'py, pyo3::types::PyList>, u64)> {
    let mut bound = Vec::with_capacity(statements.len());
    for (sql, params) in statements {
        let params = params
            .iter()
            .enumerate()
            .map(|(i, p)| any_param(p, i))
            .collect::<PyResult<Vec<_>>>()?;
        bound.push((sql, params));
    }
    let mut last = store::AnyRows::default();
    let outcome = py.allow_threads(|| {
        let store = open(Some(url.to_owned()))?;
        // The SQL may drop view tables: check them again on next use.
        crate::migrations::forget(store.store()?);
        store::write_tx(store.store()?, |tx| {
            for (sql, params) in &bound {
                let sql = crate::app::verify::reference_sql_for(tx.backend(), sql);
                last = tx.query_any(&sql, params)?;
            }
            if commit {
                Ok(())
            } else {
                Err(crate::Error::Cancelled("rolled back".into()))
            }
        })
    });
    match outcome {
        Ok(()) | Err(crate::Error::Cancelled(_)) => raise_pending()?,
        Err(e) => return Err(to_py(e)),
    }
    let rows = pyo3::types::PyList::empty(py);
    for row in last.rows {
        let cells = row
            .into_iter()
            .map(|c| any_cell_to_py(py, c))
            .collect::<PyResult<Vec<_>>>()?;
        rows.append(pyo3::types::PyTuple::new(py, cells)?)?;
    }
    Ok((last.columns, rows, last.affected))
}

fn sql_to_py<'py>(py: Python<'py>, v: &store::Sql) -> PyResult<Bound<'py, PyAny>> {
    use crate::python::convert::{naive_to_py, uuid_to_py};
    use pyo3::IntoPyObjectExt;
    Ok(match v {
        store::Sql::Null => py.None().into_bound(py),
        store::Sql::Int(i) => i.into_bound_py_any(py)?,
        store::Sql::Real(f) => f.into_bound_py_any(py)?,
        store::Sql::Text(s) => s.into_bound_py_any(py)?,
        store::Sql::Uuid(u) | store::Sql::Originator(u) => uuid_to_py(py, u)?,
        store::Sql::Time(t) => naive_to_py(py, t)?,
    })
}

fn cell_to_py<'py>(py: Python<'py>, c: &crate::app::verify::Cell) -> PyResult<Bound<'py, PyAny>> {
    use crate::app::verify::Cell;
    match c {
        Cell::Absent => Ok(py.None().into_bound(py)),
        Cell::Value(v) => sql_to_py(py, v),
        Cell::Row(cols) => {
            let d = PyDict::new(py);
            for (name, v) in cols {
                d.set_item(*name, sql_to_py(py, v)?)?;
            }
            Ok(d.into_any())
        }
    }
}

/// Compare the four view tables, row by row, with what the event log gives
/// (a rebuild into temporary tables of a transaction that is rolled back).
///
/// Read-only: nothing is created, adopted, migrated or stamped, and an
/// SQLite file's journal mode stays.
///
/// Args:
///     url: The database URL; None reads ``SQLALCHEMY_URL``.
///
/// Returns:
///     The differences (empty when the views are right), each a dict with
///     ``table``, ``key`` (the row's primary key), ``column`` (None for a
///     missing or extra row), ``live`` and ``expected`` (the column's
///     values, or the whole row as a dict and None).
///
/// Raises:
///     ValueError: The URL is not valid.
///     DatabaseError: The database failed.
#[pyfunction]
#[pyo3(signature = (url=None))]
pub fn verify<'py>(
    py: Python<'py>,
    url: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let url = url_arg(url)?;
    let diffs = py
        .allow_threads(|| {
            let url = store::resolve_url(url.as_deref())?;
            crate::app::verify::verify(&url)
        })
        .py()?;
    let mut out = Vec::with_capacity(diffs.len());
    for d in &diffs {
        let item = PyDict::new(py);
        item.set_item("table", d.table)?;
        item.set_item("key", sql_to_py(py, &d.key)?)?;
        item.set_item("column", d.column)?;
        item.set_item("live", cell_to_py(py, &d.live)?)?;
        item.set_item("expected", cell_to_py(py, &d.expected)?)?;
        out.push(item);
    }
    Ok(out)
}
