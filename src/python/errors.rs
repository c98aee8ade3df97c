//! The one place where Rust errors become Python exceptions. The exception
//! classes live in `biomero_rs.exceptions` (Python), so that
//! `AggregateNotFoundError` can also be a `KeyError`.

use crate::error::Error;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

fn raise(py: Python<'_>, class: &str, msg: String) -> PyErr {
    match py
        .import("biomero_rs.exceptions")
        .and_then(|m| m.getattr(class))
    {
        Ok(cls) => PyErr::from_type(cls.downcast_into().expect("exception class"), msg),
        Err(e) => e,
    }
}

thread_local! {
    /// The exception a signal handler raised during a wait in Rust.
    static PENDING: std::cell::RefCell<Option<PyErr>> = const { std::cell::RefCell::new(None) };
}

/// The interrupt hook of the core (`crate::interrupt`): runs Python's signal
/// handlers (in the main thread); true when one raised (Ctrl-C). A handler
/// may also have run, and raised, inside Python code the core called
/// meanwhile (a logging handler, which leaves the exception set): that
/// exception stops the call too, at once rather than at its end.
pub fn check_signals() -> bool {
    Python::with_gil(|py| {
        let raised = PyErr::take(py).map_or_else(|| py.check_signals(), Err);
        match raised {
            Ok(()) => false,
            Err(e) => {
                PENDING.with(|p| *p.borrow_mut() = Some(e));
                true
            }
        }
    })
}

pub fn to_py(err: Error) -> PyErr {
    Python::with_gil(|py| match err {
        Error::Interrupted => PENDING
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| pyo3::exceptions::PyKeyboardInterrupt::new_err("interrupted")),
        Error::NotFound(id) => raise(
            py,
            "AggregateNotFoundError",
            format!("aggregate not found: {id}"),
        ),
        Error::InvalidValue(m) | Error::Encode(m) => PyValueError::new_err(m),
        Error::InvalidType(m) => PyTypeError::new_err(m),
        e @ Error::Conflict { .. } => raise(py, "ConcurrencyError", e.to_string()),
        Error::Concurrency(m) => raise(py, "ConcurrencyError", m),
        Error::RebuildRunning(m) => raise(py, "RebuildRunningError", m),
        e @ Error::Database { .. } => raise(py, "DatabaseError", e.to_string()),
        e @ (Error::Decode(_) | Error::Cancelled(_) | Error::NotInOneTrip) => {
            raise(py, "BiomeroError", e.to_string())
        }
    })
}

/// `?`-friendly conversion of crate results.
pub trait IntoPy<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for crate::error::Result<T> {
    fn py(self) -> PyResult<T> {
        let value = self.map_err(to_py)?;
        raise_pending()?;
        Ok(value)
    }
}

/// A signal handler may have raised (Ctrl-C) inside Python code a call ran
/// meanwhile (a logging handler): that exception, to raise instead of
/// returning a result with an exception set.
pub fn raise_pending() -> PyResult<()> {
    match Python::with_gil(PyErr::take) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
