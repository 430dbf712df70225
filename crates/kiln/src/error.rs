//! The error type of the builder crate, and the diagnostics building records.
//!
//! Every public error of the crate prints the same human sentence in `Debug` as in
//! `Display` (`crate::debug_fmt`), so `fn main() -> Result<(), kiln::Error>` ending with
//! `?` shows `Error: <the message>`, not a nested structure. docs/errors.md lists the
//! families.

use crate::debug_fmt::debug_as_display;
use kiln_ir::{Loc, ShapeError};
use std::fmt;

/// A shape or usage error recorded while building, with the user's call site.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// The user's source location that built the failing op.
    pub loc: Loc,
    /// The op (primitive or composite) that failed.
    pub op: &'static str,
    /// The message, naming the shapes and dtypes involved.
    pub message: String,
    /// The typed inference error, when the failure came from shape/dtype inference.
    pub error: Option<ShapeError>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.loc, self.message)
    }
}

/// Anything that can go wrong when checking, evaluating or moving data in and out of kiln.
#[derive(thiserror::Error)]
pub enum Error {
    /// The graph has diagnostics (shape, dtype or usage errors recorded while building).
    #[error("{}", format_diagnostics(.0))]
    Check(Vec<Diagnostic>),
    /// Evaluation by the reference interpreter failed.
    #[error(transparent)]
    Eval(Box<kiln_interp::EvalError>),
    /// Tensors from different graphs were combined in one request.
    #[error("tensors from different graphs were passed to {0}")]
    MixedGraphs(&'static str),
    /// A host array could not be built.
    #[error(transparent)]
    Array(#[from] kiln_ir::ArrayError),
    /// Reading or writing a `.npy` file failed.
    #[error("{path}: {message}")]
    Npy {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Compiling or running an executable failed.
    #[error(transparent)]
    Runtime(Box<kiln_runtime::RuntimeError>),
    /// A graph edit failed (an internal invariant was violated by a transform).
    #[error(transparent)]
    Graph(Box<kiln_ir::GraphError>),
    /// Loading or saving a state dict failed: a `.safetensors` file could not be read or
    /// written, or its keys, dtypes or shapes do not match the model.
    #[error(transparent)]
    StateDict(#[from] StateDictError),
    /// The data pipeline failed (a CSV file, a data set, a loader).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// [`Error::Io`] for `path` (shown on one line).
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: kiln_fs::one_line(&path.as_ref().display().to_string()),
            source,
        }
    }
}

/// Why a state dict could not be loaded, saved or applied.
#[derive(thiserror::Error)]
pub enum StateDictError {
    /// A `.safetensors` file could not be read or written.
    #[error(transparent)]
    File(#[from] crate::safetensors_file::SafetensorsError),
    /// A tensor of a `.safetensors` file cannot be a kiln array (an unsupported dtype).
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        /// The file.
        path: String,
        /// The tensor's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The dict does not fit the model, in PyTorch's terms: keys the model has and the
    /// dict lacks (`missing`), keys the dict has and the model lacks (`unexpected`, only an
    /// error when loading strictly), and tensors whose dtype or shape differ (`mismatched`,
    /// always an error). Nothing was loaded.
    #[error("{}", format_mismatch(.missing, .unexpected, .mismatched))]
    Mismatch {
        /// Keys of the model the dict lacks.
        missing: Vec<String>,
        /// Keys of the dict the model lacks.
        unexpected: Vec<String>,
        /// `key: expected f32[8, 4], got f32[4, 8]`, one per tensor.
        mismatched: Vec<String>,
    },
}

fn format_mismatch(missing: &[String], unexpected: &[String], mismatched: &[String]) -> String {
    let list = |keys: &[String]| {
        keys.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing keys {}", list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected keys {}", list(unexpected)));
    }
    if !mismatched.is_empty() {
        parts.push(format!("size mismatch for {}", mismatched.join(", ")));
    }
    format!(
        "the state dict does not match the model: {}",
        parts.join("; ")
    )
}

debug_as_display!(Error, StateDictError);

fn format_diagnostics(d: &[Diagnostic]) -> String {
    let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    format!("{} error(s) in graph:\n{}", d.len(), lines.join("\n"))
}

impl From<kiln_interp::EvalError> for Error {
    fn from(e: kiln_interp::EvalError) -> Error {
        Error::Eval(Box::new(e))
    }
}

impl From<kiln_runtime::RuntimeError> for Error {
    fn from(e: kiln_runtime::RuntimeError) -> Error {
        Error::Runtime(Box::new(e))
    }
}

impl From<kiln_ir::GraphError> for Error {
    fn from(e: kiln_ir::GraphError) -> Error {
        Error::Graph(Box::new(e))
    }
}
