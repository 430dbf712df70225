//! `kiln._kiln`, the extension module behind the `kiln` Python package: load `.kiln` files
//! and ONNX models into `kiln.Module`s and run them on NumPy arrays.
//!
//! The package around it (`python/kiln/`) re-exports these names, defines the exception
//! classes and carries the type stubs. Panics never reach Python as crashes: PyO3 turns a
//! panic into an exception at the boundary, and kiln's library code returns typed errors,
//! which become `kiln.KilnError` and its subclasses (`errors.rs`).

mod arrays;
mod errors;
mod module;

use errors::{Kind, Stage, raise};
use kiln_runtime::Backend;
use module::Module;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

fn backend_of(name: &str) -> PyResult<Backend> {
    name.parse().map_err(|e: kiln_runtime::RuntimeError| {
        pyo3::exceptions::PyValueError::new_err(e.to_string())
    })
}

/// Loads a `.kiln` file to run on `backend` ("cpu", "gpu" or "interp"). The file is
/// treated as hostile: anything malformed raises `FormatError`.
#[pyfunction]
#[pyo3(signature = (path, backend = "cpu"))]
fn load(py: Python<'_>, path: PathBuf, backend: &str) -> PyResult<Module> {
    let backend = backend_of(backend)?;
    let exe = py
        .detach(|| kiln_runtime::load(&path, backend).map_err(Box::new))
        .map_err(|e| errors::runtime(py, &e, Stage::Build))?;
    Ok(Module::new(exe))
}

/// Imports an ONNX model and compiles it for `backend`. `dims` fixes named dimensions
/// (`{"batch": 1}`); the others stay symbolic. A malformed file raises `FormatError`, an
/// operator kiln does not import raises `CompileError`.
#[pyfunction]
#[pyo3(signature = (path, backend = "cpu", dims = None))]
fn import_onnx(
    py: Python<'_>,
    path: PathBuf,
    backend: &str,
    dims: Option<HashMap<String, u64>>,
) -> PyResult<Module> {
    let backend = backend_of(backend)?;
    let options = kiln_onnx::ImportOptions {
        dims: dims.unwrap_or_default(),
        ..Default::default()
    };
    // The builder's graph is not `Send`, so import and compile keep the GIL.
    let imported = kiln_onnx::import_file(&path, &options).map_err(|e| {
        let kind = match e {
            kiln_onnx::OnnxError::UnsupportedOp { .. } => Kind::Compile,
            _ => Kind::Format,
        };
        raise(py, kind, e.to_string())
    })?;
    let exe = imported
        .compile(backend)
        .map_err(|e| errors::kiln(py, &e, Stage::Build))?;
    Ok(Module::new(exe))
}

#[pymodule]
fn _kiln(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(import_onnx, m)?)?;
    m.add_class::<Module>()?;
    m.add_class::<module::TensorSpec>()?;
    m.add_class::<module::PySignature>()?;
    m.add_class::<module::LoadReport>()?;
    Ok(())
}
