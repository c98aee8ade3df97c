//! The Python bindings (`biomero_rs._core`): thin wrappers, no business logic.

mod args;
mod convert;
mod errors;
mod macros;
mod maintenance;
mod rows;
mod sqlite_guard;
mod tracker;
mod views;

use pyo3::prelude::*;
use std::sync::OnceLock;

static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// The Python logger of a Rust log target: the tracker's records go to
/// `biomero.eventsourcing` and the projectors' to `biomero.views`, the
/// loggers the reference uses for the same records (so a logging
/// configuration, or `caplog`, written for BIOMERO captures them); every
/// other target keeps its module path (`biomero_rs.store.postgres`, ...).
pub fn python_logger_name(target: &str) -> &str {
    let under = |prefix: &str| {
        target == prefix
            || target
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with("::"))
    };
    if under("biomero_rs::app::tracker") {
        "biomero.eventsourcing"
    } else if under("biomero_rs::projections") {
        "biomero.views"
    } else {
        target
    }
}

/// pyo3-log's logger, with the targets renamed by [`python_logger_name`].
struct ReferenceNames(pyo3_log::Logger);

impl log::Log for ReferenceNames {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        let renamed = log::Metadata::builder()
            .level(metadata.level())
            .target(python_logger_name(metadata.target()))
            .build();
        self.0.enabled(&renamed)
    }

    fn log(&self, record: &log::Record<'_>) {
        self.0.log(
            &log::Record::builder()
                .args(*record.args())
                .level(record.level())
                .target(python_logger_name(record.target()))
                .file(record.file())
                .line(record.line())
                .module_path(record.module_path())
                .build(),
        )
    }

    fn flush(&self) {}
}

/// Forget the cached Python logger levels, so that a change of ``logging``
/// configuration made after import takes effect for biomero_rs's messages.
/// (biomero_rs calls it itself whenever ``logging`` changes a level.)
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
        let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels)?
            .filter(log::LevelFilter::Trace);
        let handle = logger.reset_handle();
        if log::set_boxed_logger(Box::new(ReferenceNames(logger))).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
            let _ = LOG_RESET.set(handle);
        }
    }
    crate::sys::interrupt::set_hook(errors::check_signals);
    sqlite_guard::install();
    m.add_function(wrap_pyfunction!(reset_logging_cache, m)?)?;
    m.add_function(wrap_pyfunction!(reencode_state, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::rebuild_views, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance::check, m)?)?;
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
