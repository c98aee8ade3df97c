//! The Python bindings (`biomero_rs._core`): thin wrappers, no business logic.

mod convert;
mod errors;
mod maintenance;
mod sqlite_guard;
mod tracker;
mod views;

use pyo3::prelude::*;
use std::sync::OnceLock;

static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// Forget the cached Python logger levels, so that a change of ``logging``
/// configuration made after import takes effect for biomero_rs's messages.
#[pyfunction]
fn reset_logging_cache() {
    if let Some(h) = LOG_RESET.get() {
        h.reset();
    }
}

/// Decode stored ``state`` bytes of an event and encode them again, as
/// biomero_rs would write that event (a check of byte compatibility).
///
/// Args:
///     topic: The event's topic (``biomero.eventsourcing:Task.TaskCreated``).
///     state: The stored state bytes.
///
/// Returns:
///     The re-encoded state bytes.
///
/// Raises:
///     ValueError: The topic is unknown.
///     BiomeroError: The bytes cannot be decoded.
#[pyfunction]
fn reencode_state<'py>(
    py: Python<'py>,
    topic: &str,
    state: &[u8],
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    use crate::domain::{Event, Upcasters};
    let up = Upcasters::standard();
    let event = Event::decode(uuid::Uuid::nil(), 0, topic, state, up)
        .map_err(errors::to_py)?
        .ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!("topic: unknown topic {topic:?}"))
        })?;
    Ok(pyo3::types::PyBytes::new(py, &event.encode_state(up)))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    if LOG_RESET.get().is_none() {
        let handle = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels)?
            .filter(log::LevelFilter::Trace)
            .install()
            .ok();
        if let Some(h) = handle {
            let _ = LOG_RESET.set(h);
        }
    }
    crate::interrupt::set_hook(errors::check_signals);
    sqlite_guard::install();
    m.add_function(wrap_pyfunction!(reset_logging_cache, m)?)?;
    m.add_function(wrap_pyfunction!(reencode_state, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::rebuild_views, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::catch_up, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::verify, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::run_migrations, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::ensure_view_tables, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::status, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::execute_sql, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::close_store, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::execute_statements, m)?)?;
    m.add_class::<tracker::WorkflowTracker>()?;
    m.add_class::<tracker::Repository>()?;
    m.add_class::<tracker::NotificationLog>()?;
    m.add_class::<tracker::Notification>()?;
    m.add_class::<tracker::WorkflowRun>()?;
    m.add_class::<tracker::Task>()?;
    views::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
