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

pub fn to_py(err: Error) -> PyErr {
    Python::with_gil(|py| match err {
        Error::NotFound(id) => raise(
            py,
            "AggregateNotFoundError",
            format!("aggregate not found: {id}"),
        ),
        Error::InvalidValue(m) | Error::Encode(m) => PyValueError::new_err(m),
        Error::InvalidType(m) => PyTypeError::new_err(m),
        e @ Error::Conflict { .. } => raise(py, "ConcurrencyError", e.to_string()),
        Error::Concurrency(m) => raise(py, "ConcurrencyError", m),
        e @ Error::Database { .. } => raise(py, "DatabaseError", e.to_string()),
        e @ (Error::Decode(_) | Error::Cancelled(_)) => raise(py, "BiomeroError", e.to_string()),
    })
}

/// `?`-friendly conversion of crate results.
pub trait IntoPy<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for crate::error::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
