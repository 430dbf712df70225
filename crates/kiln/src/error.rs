//! The error type of the builder crate, and the diagnostics building records.

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
#[derive(Debug, thiserror::Error)]
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
}

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
