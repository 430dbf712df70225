//! kiln errors as Python exceptions: the classes live in `kiln/_errors.py` (so `InputError`
//! can be both a `KilnError` and a `ValueError`); this file picks the class for an error.

use kiln_runtime::RuntimeError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The exception classes of `kiln._errors`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// `kiln.KilnError`: a run that failed, anything not below.
    Kiln,
    /// `kiln.InputError` (a `ValueError`): inputs or a state dict that do not fit.
    Input,
    /// `kiln.FormatError`: a file that cannot be read or is malformed.
    Format,
    /// `kiln.CompileError`: building a module's code failed.
    Compile,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Kiln => "KilnError",
            Kind::Input => "InputError",
            Kind::Format => "FormatError",
            Kind::Compile => "CompileError",
        }
    }
}

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// A Python exception of class `kind` with `message`.
pub(crate) fn raise(py: Python<'_>, kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    let class = ERRORS
        .get_or_try_init(py, || py.import("kiln._errors").map(Bound::unbind))
        .and_then(|m| m.bind(py).getattr(kind.class_name()))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, message),
        Err(e) => e,
    }
}

/// What an operation was doing when a runtime error happened: it decides the class of the
/// errors that are neither input nor format errors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stage {
    /// Loading or compiling a module.
    Build,
    /// Running it.
    Run,
}

/// The exception for a runtime error.
pub(crate) fn runtime(py: Python<'_>, e: &RuntimeError, stage: Stage) -> PyErr {
    let kind = match (e, stage) {
        (RuntimeError::Input(_), _) => Kind::Input,
        (RuntimeError::Format(_), _) => Kind::Format,
        (RuntimeError::UnknownBackend(_), _) => return PyValueError::new_err(e.to_string()),
        (_, Stage::Build) => Kind::Compile,
        (_, Stage::Run) => Kind::Kiln,
    };
    raise(py, kind, e.to_string())
}

/// The exception for an error of the `kiln` crate.
pub(crate) fn kiln(py: Python<'_>, e: &kiln::Error, stage: Stage) -> PyErr {
    match e {
        kiln::Error::Runtime(r) => runtime(py, r, stage),
        kiln::Error::StateDict(_) | kiln::Error::Array(_) => raise(py, Kind::Input, e.to_string()),
        kiln::Error::Check(_) => raise(py, Kind::Compile, e.to_string()),
        _ => raise(py, Kind::Kiln, e.to_string()),
    }
}
