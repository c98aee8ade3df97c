//! The row models (`JobView`, `JobProgressView`, `WorkflowProgressView`,
//! `TaskExecution`), made from the view definitions: one base class,
//! `_Row`, holds a row's values; each view gets a subclass at import with
//! one read-only attribute per column of its definition. The constructor
//! (keyword-only), `to_dict`, `repr`, equality, hashing and pickling work
//! from the columns, so a column added to a view shows up here by itself.

use crate::projections::view::{Cells, Column, ViewSpec};
use crate::projections::View;
use crate::python::convert::{int_arg, naive_to_py, str_arg, uuid_arg, uuid_to_py};
use crate::store::{Kind, Sql};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyTuple, PyType};
use std::hash::{Hash, Hasher};

/// The base of the row models: a view and the row's values, in column
/// order. Immutable; compares, hashes and pickles by value.
#[pyclass(module = "biomero_rs._core", name = "_Row", subclass, frozen)]
pub struct Row {
    view: View,
    cells: Vec<Sql>,
}

/// A row's values on their way from Rust to a model's constructor.
#[pyclass(module = "biomero_rs._core", frozen)]
struct RawRow {
    view: View,
    cells: std::sync::Mutex<Option<Vec<Sql>>>,
}

/// The model class of each view, in the order of [`View::ALL`].
static MODELS: GILOnceCell<Vec<Py<PyType>>> = GILOnceCell::new();

fn spec_of_class(cls: &Bound<'_, PyType>) -> PyResult<View> {
    let name: String = cls.getattr("_view")?.extract()?;
    View::parse(&name).map_err(|e| PyTypeError::new_err(e.to_string()))
}

/// A cell as Python holds it.
fn cell_to_py<'py>(py: Python<'py>, v: &Sql) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::IntoPyObjectExt;
    Ok(match v {
        Sql::Null => py.None().into_bound(py),
        Sql::Int(i) => i.into_bound_py_any(py)?,
        Sql::Real(f) => f.into_bound_py_any(py)?,
        Sql::Text(s) => s.into_bound_py_any(py)?,
        Sql::Uuid(u) | Sql::Originator(u) => uuid_to_py(py, u)?,
        Sql::Time(t) => naive_to_py(py, t)?,
    })
}

/// A cell as `to_dict(json=True)` holds it: UUIDs as their canonical text,
/// datetimes as ISO 8601 text.
fn cell_to_json<'py>(py: Python<'py>, v: &Sql) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::IntoPyObjectExt;
    match v {
        Sql::Uuid(u) | Sql::Originator(u) => u.hyphenated().to_string().into_bound_py_any(py),
        Sql::Time(_) => cell_to_py(py, v)?.call_method0("isoformat"),
        _ => cell_to_py(py, v),
    }
}

/// A `datetime.datetime`, as naive UTC (an aware one is converted to UTC).
fn naive_arg(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<chrono::NaiveDateTime> {
    let py = obj.py();
    let datetime = py.import("datetime")?;
    if !obj.is_instance(&datetime.getattr("datetime")?)? {
        return Err(PyTypeError::new_err(format!(
            "{arg}: expected datetime.datetime, got {}",
            obj.get_type().name()?
        )));
    }
    let mut t = obj.clone();
    if !t.getattr("tzinfo")?.is_none() {
        let utc = datetime.getattr("timezone")?.getattr("utc")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", py.None())?;
        t = t
            .call_method1("astimezone", (utc,))?
            .call_method("replace", (), Some(&kwargs))?;
    }
    let text: String = t.call_method1("isoformat", ("T",))?.extract()?;
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|e| PyValueError::new_err(format!("{arg}: {e}")))
}

/// A constructor argument for column `c` (None where the column may be
/// NULL).
fn cell_from_py(c: &Column, obj: &Bound<'_, PyAny>) -> PyResult<Sql> {
    if obj.is_none() && c.nullable {
        return Ok(Sql::Null);
    }
    Ok(match c.kind {
        Kind::Int => Sql::Int(int_arg(c.name, obj)?),
        Kind::Text => Sql::Text(str_arg(c.name, obj)?),
        Kind::Uuid => Sql::Uuid(uuid_arg(c.name, obj)?),
        Kind::Time => Sql::Time(naive_arg(c.name, obj)?),
        Kind::Real => Sql::Real(
            obj.extract()
                .map_err(|_| PyTypeError::new_err(format!("{}: expected float", c.name)))?,
        ),
    })
}

impl Row {
    fn spec(&self) -> &'static ViewSpec {
        self.view.spec()
    }
}

#[pymethods]
impl Row {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // A row read from the database (`model`): its view is known.
        if args.len() == 1 && kwargs.is_none() {
            if let Ok(raw) = args.get_item(0)?.downcast::<RawRow>() {
                let raw = raw.get();
                let cells = raw.cells.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(cells) = cells {
                    return Ok(Row {
                        view: raw.view,
                        cells,
                    });
                }
            }
        }
        let view = spec_of_class(cls)?;
        let spec = view.spec();
        let model = spec.model;
        if !args.is_empty() {
            return Err(PyTypeError::new_err(format!(
                "{model}() takes keyword arguments only (one per column)"
            )));
        }
        if let Some(kw) = kwargs {
            for key in kw.keys() {
                let key: String = key.extract()?;
                if !spec.columns.iter().any(|c| c.name == key) {
                    return Err(PyTypeError::new_err(format!(
                        "{model}() got an unexpected keyword argument '{key}'"
                    )));
                }
            }
        }
        let mut cells = Vec::with_capacity(spec.columns.len());
        for c in spec.columns {
            let given = match kwargs {
                Some(kw) => kw.get_item(c.name)?,
                None => None,
            };
            cells.push(match given {
                Some(v) => cell_from_py(c, &v)?,
                None if c.nullable => Sql::Null,
                None => {
                    return Err(PyTypeError::new_err(format!(
                        "{model}() missing required keyword argument: '{}'",
                        c.name
                    )))
                }
            });
        }
        Ok(Row { view, cells })
    }

    /// Return the row as a dict of column name to value.
    ///
    /// With ``json=True`` the values are the ones ``json.dumps`` accepts:
    /// UUIDs as their canonical text (``'0e4b...-...'``) and datetimes as
    /// ISO 8601 text (``datetime.isoformat()``); other values are
    /// unchanged.
    #[pyo3(signature = (*, json = false))]
    fn to_dict<'py>(&self, py: Python<'py>, json: bool) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (c, v) in self.spec().columns.iter().zip(&self.cells) {
            let v = if json {
                cell_to_json(py, v)?
            } else {
                cell_to_py(py, v)?
            };
            d.set_item(c.name, v)?;
        }
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = Vec::with_capacity(self.cells.len());
        for (c, v) in self.spec().columns.iter().zip(&self.cells) {
            parts.push(format!("{}={}", c.name, cell_to_py(py, v)?.repr()?));
        }
        Ok(format!("{}({})", self.spec().model, parts.join(", ")))
    }

    /// Equal to a row of the same view with the same values; other objects
    /// decide for themselves (`NotImplemented`).
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> PyObject {
        let py = other.py();
        match other.downcast::<Row>() {
            Ok(o) => {
                let o = o.get();
                let same = o.view == self.view && o.cells == self.cells;
                same.into_pyobject(py)
                    .map(|b| b.to_owned().into_any().unbind())
                    .unwrap_or_else(|_| py.NotImplemented())
            }
            Err(_) => py.NotImplemented(),
        }
    }

    fn __hash__(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.view.hash(&mut h);
        for c in &self.cells {
            match c {
                Sql::Null => 0u8.hash(&mut h),
                Sql::Int(i) => i.hash(&mut h),
                Sql::Real(f) => f.to_bits().hash(&mut h),
                Sql::Text(s) => s.hash(&mut h),
                Sql::Uuid(u) | Sql::Originator(u) => u.hash(&mut h),
                Sql::Time(t) => t.hash(&mut h),
            }
        }
        h.finish()
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let kwargs = slf.get().to_dict(py, false)?;
        let newobj = py.import("copyreg")?.getattr("__newobj_ex__")?;
        let args = (slf.get_type(), PyTuple::empty(py), kwargs).into_pyobject(py)?;
        Ok((newobj, args))
    }
}

/// The attribute of column `index`: a read-only `property` whose
/// docstring is the column's.
fn field<'py>(
    py: Python<'py>,
    index: usize,
    column: &'static Column,
) -> PyResult<Bound<'py, PyAny>> {
    let get = pyo3::types::PyCFunction::new_closure(
        py,
        None,
        None,
        move |args: &Bound<'_, PyTuple>,
              _kwargs: Option<&Bound<'_, PyDict>>|
              -> PyResult<PyObject> {
            let obj = args.get_item(0)?;
            let row = obj.downcast::<Row>()?;
            let cell = row.get().cells.get(index).ok_or_else(|| {
                pyo3::exceptions::PyAttributeError::new_err(format!(
                    "{} is not a column of this row",
                    column.name
                ))
            })?;
            Ok(cell_to_py(args.py(), cell)?.unbind())
        },
    )?;
    let builtins = py.import("builtins")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("doc", column.doc)?;
    builtins.getattr("property")?.call((get,), Some(&kwargs))
}

/// A row of `view` as its model.
pub fn model<'py, R: Cells>(py: Python<'py>, view: View, row: &R) -> PyResult<Bound<'py, PyAny>> {
    let models = MODELS
        .get(py)
        .ok_or_else(|| PyTypeError::new_err("the row models are not registered"))?;
    let cls = models[view as usize].bind(py);
    let raw = RawRow {
        view,
        cells: std::sync::Mutex::new(Some(row.cells())),
    };
    cls.call1((raw,))
}

/// The name of a column kind, as `view_definitions()` gives it.
fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Int => "int",
        Kind::Real => "float",
        Kind::Text => "str",
        Kind::Uuid => "uuid",
        Kind::Time => "datetime",
    }
}

/// Every view's definition, in the registry's order: its names, tables,
/// model and columns (the CLI, the package's ``ALL`` and the tests that
/// compare the stubs and migrations with the definitions read it).
///
/// Returns:
///     A list of dicts: ``name``, ``class_name``, ``table``,
///     ``tracking_table``, ``model`` and ``columns`` (dicts of ``name``,
///     ``kind`` (``'int'``, ``'str'``, ``'uuid'``, ``'datetime'``),
///     ``nullable``, ``key``, ``sqlite`` and ``postgres`` (the SQL types),
///     ``since`` (the migration that added it, None for the baseline) and
///     ``doc``), the key column first.
#[pyfunction]
pub fn view_definitions(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let mut out = Vec::new();
    for view in View::ALL {
        let spec = view.spec();
        let d = PyDict::new(py);
        d.set_item("name", spec.name)?;
        d.set_item("class_name", spec.class_name)?;
        d.set_item("table", spec.table)?;
        d.set_item("tracking_table", spec.tracking_table)?;
        d.set_item("model", spec.model)?;
        let mut cols = Vec::new();
        for (i, c) in spec.columns.iter().enumerate() {
            let cd = PyDict::new(py);
            cd.set_item("name", c.name)?;
            cd.set_item("kind", kind_name(c.kind))?;
            cd.set_item("nullable", c.nullable)?;
            cd.set_item("key", i == 0)?;
            cd.set_item("sqlite", c.sqlite)?;
            cd.set_item("postgres", c.postgres)?;
            cd.set_item("since", c.since)?;
            cd.set_item("doc", c.doc)?;
            cols.push(cd);
        }
        d.set_item("columns", cols)?;
        out.push(d);
    }
    Ok(out)
}

/// Makes the model class of every view and adds it to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<Row>();
    // Importable for pickle (protocols below 4 rebuild a model through
    // `_Row.__new__`), but not part of the module's public names.
    m.setattr("_Row", &base)?;
    let builtins = py.import("builtins")?;
    let mut models = Vec::new();
    for view in View::ALL {
        let spec = view.spec();
        let ns = PyDict::new(py);
        ns.set_item("__module__", "biomero_rs._core")?;
        ns.set_item("__qualname__", spec.model)?;
        let mut doc = format!("{}\n\nAttributes:", spec.model_doc);
        for c in spec.columns {
            doc.push_str(&format!("\n    {}: {}", c.name, c.doc));
        }
        ns.set_item("__doc__", doc)?;
        ns.set_item("__slots__", PyTuple::empty(py))?;
        ns.set_item("__tablename__", spec.table)?;
        ns.set_item("_view", spec.name)?;
        for (index, column) in spec.columns.iter().enumerate() {
            ns.set_item(column.name, field(py, index, column)?)?;
        }
        let cls = builtins
            .getattr("type")?
            .call1((spec.model, (base.clone(),), ns))?
            .downcast_into::<PyType>()?;
        m.add(spec.model, &cls)?;
        models.push(cls.unbind());
    }
    let _ = MODELS.set(py, models);
    m.add_function(wrap_pyfunction!(view_definitions, m)?)?;
    Ok(())
}
