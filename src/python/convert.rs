//! Python objects to and from the domain's values. Errors name the argument
//! and the key path (`input_data['a'][2]`).

use crate::domain::events::format_timestamp;
use crate::domain::Value;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple, PyType,
};
use uuid::Uuid;

const MAX_DEPTH: usize = 200;

static UUID_CLS: GILOnceCell<Py<PyType>> = GILOnceCell::new();
static DATETIME_CLS: GILOnceCell<Py<PyType>> = GILOnceCell::new();
static DATE_CLS: GILOnceCell<Py<PyType>> = GILOnceCell::new();
static DECIMAL_CLS: GILOnceCell<Py<PyType>> = GILOnceCell::new();

fn uuid_cls(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID_CLS.import(py, "uuid", "UUID")
}
fn datetime_cls(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DATETIME_CLS.import(py, "datetime", "datetime")
}
fn date_cls(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DATE_CLS.import(py, "datetime", "date")
}
fn decimal_cls(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DECIMAL_CLS.import(py, "decimal", "Decimal")
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

// ------------------------------------------------------------ arguments

/// A `uuid.UUID` or its text.
pub fn uuid_arg(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Uuid> {
    let py = obj.py();
    if obj.is_instance(uuid_cls(py)?)? {
        let bytes = obj.getattr("bytes")?;
        let bytes = bytes.downcast::<PyBytes>()?;
        return Uuid::from_slice(bytes.as_bytes())
            .map_err(|e| PyValueError::new_err(format!("{arg}: {e}")));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        let text = s
            .to_cow()
            .map_err(|_| PyValueError::new_err(format!("{arg}: not a valid UUID string")))?;
        return crate::domain::codec::parse_uuid(&text)
            .ok_or_else(|| PyValueError::new_err(format!("{arg}: {text:?} is not a valid UUID")));
    }
    Err(PyTypeError::new_err(format!(
        "{arg}: expected a uuid.UUID or str, got {}",
        type_name(obj)
    )))
}

/// A `str` (never None).
pub fn str_arg(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if obj.is_none() {
        return Err(PyTypeError::new_err(format!(
            "{arg}: expected str, got None"
        )));
    }
    let s = obj.downcast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!("{arg}: expected str, got {}", type_name(obj)))
    })?;
    s.to_cow()
        .map(|c| c.into_owned())
        .map_err(|_| surrogate_err(arg))
}

/// A `str` or None.
pub fn opt_str_arg(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    str_arg(arg, obj).map(Value::Str)
}

/// An `int` (not a bool).
pub fn int_arg(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{arg}: expected int, got {}",
            type_name(obj)
        )));
    }
    obj.extract::<i64>().map_err(|_| {
        PyValueError::new_err(format!(
            "{arg}: {} is outside the 64-bit integer range",
            obj
        ))
    })
}

/// Optional int filter arguments of the view queries.
pub fn opt_int_arg(arg: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => int_arg(arg, o).map(Some),
    }
}

/// A Slurm job id: a non-empty str, or an int stored as an int (as the
/// reference stores what it is given).
pub fn job_id_arg(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        return to_value(obj, arg); // any size, as JSON holds it
    }
    if obj.is_instance_of::<PyString>() {
        let s = str_arg(arg, obj)?;
        if s.is_empty() {
            return Err(PyValueError::new_err(format!("{arg}: empty job id")));
        }
        return Ok(Value::Str(s));
    }
    Err(PyTypeError::new_err(format!(
        "{arg}: expected str or int, got {}",
        type_name(obj)
    )))
}

fn surrogate_err(path: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{path}: string contains a lone surrogate, which UTF-8 (and so the store) cannot hold"
    ))
}

/// Any JSON-storable Python object, as eventsourcing's transcoder stores it.
pub fn to_value(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    to_value_at(obj, path, 0)
}

fn to_value_at(obj: &Bound<'_, PyAny>, path: &str, depth: usize) -> PyResult<Value> {
    let py = obj.py();
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "{path}: nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.downcast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(match obj.extract::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(
                py.get_type::<PyInt>()
                    .call_method1("__repr__", (obj,))?
                    .extract()?,
            ),
        });
    }
    if let Ok(f) = obj.downcast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return s
            .to_cow()
            .map(|s| Value::Str(s.into_owned()))
            .map_err(|_| surrogate_err(path));
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        let mut items = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = match k.downcast::<PyString>() {
                Ok(s) => s.to_cow().map_err(|_| surrogate_err(path))?.into_owned(),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "{path}: key {} is a {}, but only str keys can be stored exactly",
                        k.repr()?,
                        type_name(&k)
                    )))
                }
            };
            let child = format!("{path}[{key:?}]");
            items.push((key, to_value_at(&v, &child, depth + 1)?));
        }
        if items.len() == 2
            && items.iter().any(|(k, _)| k == "_type_")
            && items.iter().any(|(k, _)| k == "_data_")
        {
            return Err(PyValueError::new_err(format!(
                "{path}: a dict of exactly '_type_' and '_data_' is reserved for typed values and cannot be stored"
            )));
        }
        return Ok(Value::Dict(items));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, v) in obj.try_iter()?.enumerate() {
            items.push(to_value_at(&v?, &format!("{path}[{i}]"), depth + 1)?);
        }
        return Ok(Value::List(items));
    }
    if obj.is_instance(uuid_cls(py)?)? {
        return uuid_arg(path, obj).map(Value::Uuid);
    }
    if obj.is_instance(datetime_cls(py)?)? {
        return Ok(Value::DateTime(obj.call_method0("isoformat")?.extract()?));
    }
    if obj.is_instance(decimal_cls(py)?)? {
        return Ok(Value::Decimal(obj.str()?.extract()?));
    }
    Err(PyTypeError::new_err(format!(
        "{path}: object of type {} cannot be stored (store str, int, float, bool, None, list, dict, \
         uuid.UUID, datetime or Decimal)",
        type_name(obj)
    )))
}

/// A fabric `Result` (attributes) or a mapping with the same keys, as the
/// reference's ResultDict. Anything else (a str, a list, ...) is a TypeError.
pub fn result_arg(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    let is_mapping = obj.downcast::<PyMapping>().is_ok();
    let keys = ["command", "env", "stdout", "stderr"];
    if !is_mapping && !keys.iter().all(|k| obj.hasattr(*k).unwrap_or(false)) {
        return Err(PyTypeError::new_err(format!(
            "result: expected an object with command, env, stdout and stderr attributes (a fabric Result) \
             or a mapping with those keys, got {}",
            type_name(obj)
        )));
    }
    let mut items = Vec::with_capacity(4);
    for key in keys {
        let v = if is_mapping {
            match obj.get_item(key) {
                Ok(v) => v,
                Err(e) if e.is_instance_of::<PyKeyError>(py) => {
                    return Err(PyValueError::new_err(format!(
                        "result: mapping has no {key:?} key"
                    )))
                }
                Err(e) => return Err(e),
            }
        } else {
            obj.getattr(key)?
        };
        items.push((key.to_owned(), to_value(&v, &format!("result.{key}"))?));
    }
    Ok(Value::Dict(items))
}

// ---------------------------------------------------------------- back

pub fn uuid_to_py<'py>(py: Python<'py>, u: &Uuid) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("bytes", PyBytes::new(py, u.as_bytes()))?;
    uuid_cls(py)?.call((), Some(&kwargs))
}

/// An aware UTC datetime.
pub fn aware_to_py<'py>(py: Python<'py>, t: &DateTime<Utc>) -> PyResult<Bound<'py, PyAny>> {
    datetime_cls(py)?.call_method1("fromisoformat", (format_timestamp(t),))
}

/// A naive UTC datetime.
pub fn naive_to_py<'py>(py: Python<'py>, t: &NaiveDateTime) -> PyResult<Bound<'py, PyAny>> {
    datetime_cls(py)?.call_method1(
        "fromisoformat",
        (t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),),
    )
}

pub fn date_to_py<'py>(py: Python<'py>, d: &NaiveDate) -> PyResult<Bound<'py, PyAny>> {
    date_cls(py)?.call_method1("fromisoformat", (d.format("%Y-%m-%d").to_string(),))
}

pub fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::BigInt(s) => py.get_type::<PyInt>().call1((s.as_str(),))?,
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Dict(items) => {
            let d = PyDict::new(py);
            for (k, item) in items {
                d.set_item(k, value_to_py(py, item)?)?;
            }
            d.into_any()
        }
        Value::Uuid(u) => uuid_to_py(py, u)?,
        Value::DateTime(text) => {
            datetime_cls(py)?.call_method1("fromisoformat", (text.as_str(),))?
        }
        Value::Decimal(text) => decimal_cls(py)?.call1((text.as_str(),))?,
    })
}

/// A value as the Python attribute that shows it.
pub trait ToPy {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
}

impl ToPy for Uuid {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_to_py(py, self)
    }
}

impl ToPy for i64 {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
}

impl ToPy for DateTime<Utc> {
    /// An aware UTC `datetime`.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        aware_to_py(py, self)
    }
}

impl ToPy for Value {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, self)
    }
}

impl<T: ToPy> ToPy for Vec<T> {
    /// A new list.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items = self
            .iter()
            .map(|v| v.to_py(py))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any())
    }
}
