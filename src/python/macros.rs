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
