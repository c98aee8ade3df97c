//! The Python bindings (`biomero_rs._core`): thin wrappers, no business logic.

mod convert;
mod errors;
mod tracker;

use pyo3::prelude::*;
use std::sync::OnceLock;

static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// Forgets cached logger levels after `logging` configuration changed.
#[pyfunction]
fn reset_logging_cache() {
    if let Some(h) = LOG_RESET.get() {
        h.reset();
    }
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
    m.add_function(wrap_pyfunction!(reset_logging_cache, m)?)?;
    m.add_class::<tracker::WorkflowTracker>()?;
    m.add_class::<tracker::Repository>()?;
    m.add_class::<tracker::NotificationLog>()?;
    m.add_class::<tracker::Notification>()?;
    m.add_class::<tracker::WorkflowRun>()?;
    m.add_class::<tracker::Task>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
