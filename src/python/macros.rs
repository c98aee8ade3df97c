//! Macros the Python classes share.

/// `copy.copy` and `copy.deepcopy` (fabric's `Connection` copies the values
/// assigned to its attributes): the object is immutable and holds only its
/// store, so a copy is the object itself, on the same store.
macro_rules! copy_is_self {
    ($($cls:ident),+) => {$(
        #[pymethods]
        impl $cls {
            /// The object itself (immutable; it shares its store).
            fn __copy__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            /// The object itself (immutable; it shares its store).
            fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
                slf
            }
        }
    )+};
}
pub(crate) use copy_is_self;

/// The read-only attributes of a Python class whose state is the struct in
/// field `$state`: one getter per listed field, its doc comment as the
/// attribute's documentation, the value converted by
/// [`ToPy`](crate::python::convert::ToPy); and `$cls::FIELDS`, the names in
/// order (for `repr`). The one way the bindings expose getters (the row
/// models' attributes come from the view definitions, see `rows.rs`).
macro_rules! getters {
    ($cls:ident . $state:ident { $( $(#[doc = $doc:literal])* $field:ident, )* }) => {
        #[pyo3::pymethods]
        impl $cls {
            $(
                $(#[doc = $doc])*
                #[getter]
                fn $field<'py>(
                    &self,
                    py: pyo3::Python<'py>,
                ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                    $crate::python::convert::ToPy::to_py(&self.$state.$field, py)
                }
            )*
        }

        impl $cls {
            /// The attribute names, in order.
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}
pub(crate) use getters;
