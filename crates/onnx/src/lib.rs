//! ONNX import: turns an ONNX `ModelProto` into a kiln graph. Initializers become named
//! parameters (floats) or constants, `dim_param` names become kiln symbols so dynamic-batch
//! models compile once, shape sub-graphs are resolved while importing, and every op maps to
//! kiln primitives and composites (the list: [`supported_ops`], `kiln import --list-ops`).
//!
//! ```no_run
//! let m = kiln_onnx::import_file("model.onnx".as_ref(), &kiln_onnx::ImportOptions::default())?;
//! let exe = m.compile(kiln::Backend::Cpu)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod error;
pub mod fuzzing;
mod import;
pub mod limits;
mod narrow;
mod ops;
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations
)]
pub mod proto;
pub mod tensor;
mod value;

pub use error::{NodeRef, OnnxError};
pub use import::symbol_name;

use kiln::{Backend, Executable, Graph, Tensor};
use kiln_ir::Array;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Fixed sizes for named dims (`dim_param` names, after [`symbol_name`]; unnamed dims are
    /// called `<input>_<axis>`): `batch = 1` compiles for batch 1 only.
    pub dims: HashMap<String, u64>,
    /// Make float initializers constants instead of parameters (a frozen model).
    pub initializers_as_constants: bool,
    /// Graph inputs fixed to a value at import time (they become constants): for models
    /// whose shape inputs must be known, such as a `Reshape` target fed as an input.
    pub constant_inputs: HashMap<String, Array>,
}

/// An imported model: a kiln graph with its inputs, outputs and parameters.
#[derive(Debug)]
pub struct Imported {
    /// The graph (parameter values included).
    pub graph: Graph,
    /// Graph inputs, in the model's order (initializers and constant inputs excluded).
    pub inputs: Vec<(String, Tensor)>,
    /// Graph outputs, in the model's order.
    pub outputs: Vec<(String, Tensor)>,
    /// Names of the initializers that became parameters.
    pub parameters: Vec<String>,
    /// The opset of the default domain.
    pub opset: i64,
}

impl Imported {
    /// Compiles the model's outputs for `backend`.
    pub fn compile(&self, backend: Backend) -> Result<Executable, kiln::Error> {
        let outs: Vec<(&str, &Tensor)> =
            self.outputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        kiln::compile(&outs, backend)
    }

    /// The parameter values (initializers that became parameters), by ONNX name.
    pub fn parameter_values(&self) -> HashMap<String, Array> {
        self.graph.param_values()
    }
}

/// Imports a serialized ONNX model.
pub fn import(bytes: &[u8], options: &ImportOptions) -> Result<Imported, OnnxError> {
    import::import_bytes(bytes, options)
}

/// Reads and imports an `.onnx` file (at most [`limits::MAX_MODEL_BYTES`]).
pub fn import_file(path: &Path, options: &ImportOptions) -> Result<Imported, OnnxError> {
    let io = |e: std::io::Error| OnnxError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limits::MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    import(&bytes, options)
}

/// The ONNX op types (default domain) kiln imports.
pub fn supported_ops() -> Vec<&'static str> {
    ops::OPS.iter().map(|(name, _)| *name).collect()
}
