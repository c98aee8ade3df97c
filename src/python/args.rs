//! The arguments entry points share: `url=`, `views=` and flags.

use crate::projections::{parse_views, View};
use crate::python::convert::str_arg;
use crate::python::errors::IntoPy;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Reads `views=`: None for all four, else an iterable of names.
pub fn views_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<View>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(View::ALL.to_vec());
    };
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "views: expected a list of view names, got a str",
        ));
    }
    let mut names = Vec::new();
    for item in obj
        .try_iter()
        .map_err(|_| PyTypeError::new_err("views: expected a list of view names"))?
    {
        let item = item?;
        names.push(str_arg("views", &item)?);
    }
    parse_views(names.iter().map(String::as_str)).py()
}

pub fn url_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => str_arg("url", o).map(Some),
    }
}

/// Reads a flag argument: a `bool` only (so that `wait="no"` is an error,
/// not True).
pub fn bool_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
    obj.downcast::<pyo3::types::PyBool>()
        .map(|b| b.is_true())
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{name}: expected True or False, got {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into())
            ))
        })
}
