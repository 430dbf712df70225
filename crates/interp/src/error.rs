//! Typed errors of the reference interpreter.

use kiln_ir::{ArrayError, DType, DimError, GraphError, NodeId};
use std::fmt;

/// Which kind of fed value an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A graph input (`Op::Input`).
    Input,
    /// A parameter (`Op::Parameter`).
    Parameter,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Input => "input",
            ValueKind::Parameter => "parameter",
        })
    }
}

/// Why evaluation failed. Errors raised while computing one node name it (`n12: ...`) when
/// they come from [`crate::eval`]; from [`crate::eval_op`] the node is `None`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A needed input was not fed.
    #[error("input `{name}` was not fed")]
    MissingInput {
        /// Input name.
        name: String,
    },
    /// A needed parameter has no value.
    #[error("parameter `{name}` has no value")]
    MissingParam {
        /// Parameter name.
        name: String,
    },
    /// A fed value has the wrong dtype.
    #[error("{kind} `{name}` has dtype {got}, expected {expected}")]
    DTypeMismatch {
        /// Input or parameter.
        kind: ValueKind,
        /// Its name.
        name: String,
        /// The declared dtype.
        expected: DType,
        /// The fed dtype.
        got: DType,
    },
    /// A fed value has the wrong rank or shape.
    #[error("{kind} `{name}` has shape {got:?}, expected {expected}")]
    ShapeMismatch {
        /// Input or parameter.
        kind: ValueKind,
        /// Its name.
        name: String,
        /// The declared shape, with the symbol values used when any were bound.
        expected: String,
        /// The fed shape.
        got: Vec<usize>,
    },
    /// Two inputs give one symbol different values.
    #[error(
        "symbol `{symbol}` is {first} from input `{first_input}` but {second} from input `{second_input}`"
    )]
    SymbolConflict {
        /// The symbol.
        symbol: String,
        /// Value bound first.
        first: u64,
        /// Input that bound it first.
        first_input: String,
        /// Conflicting value.
        second: u64,
        /// Input giving the conflicting value.
        second_input: String,
    },
    /// A symbol appears in the fed inputs only inside expressions it cannot be solved from.
    #[error(
        "symbol `{symbol}` cannot be bound: input `{input}` uses it only in `{dim}` together with other unbound symbols"
    )]
    UnsolvableSymbol {
        /// The symbol.
        symbol: String,
        /// An input declaring it.
        input: String,
        /// The dimension expression it appears in.
        dim: String,
    },
    /// A node's shape cannot be evaluated under the bindings (an unbound symbol, overflow).
    #[error("{node}: cannot evaluate shape {shape}: {source}")]
    Shape {
        /// The node.
        node: NodeId,
        /// Its symbolic shape.
        shape: String,
        /// Why.
        source: DimError,
    },
    /// A gather or scatter index is negative or not below the indexed axis' size.
    #[error("{}{op}: index {index} is out of range for axis {axis} of size {axis_size}", at(.node))]
    IndexOutOfRange {
        /// The node, when known.
        node: Option<NodeId>,
        /// `gather` or `scatter_add`.
        op: &'static str,
        /// The offending index value.
        index: i64,
        /// The indexed axis.
        axis: usize,
        /// Its size.
        axis_size: usize,
    },
    /// Integer division or remainder by zero.
    #[error("{}{op}: integer division by zero", at(.node))]
    DivisionByZero {
        /// The node, when known.
        node: Option<NodeId>,
        /// `div` or `rem`.
        op: &'static str,
    },
    /// `argmax`/`argmin` over an empty axis has no answer.
    #[error("{}{op}: axis {axis} is empty, so there is no index to return", at(.node))]
    EmptyArgReduce {
        /// The node, when known.
        node: Option<NodeId>,
        /// `argmax` or `argmin`.
        op: &'static str,
        /// The reduced axis.
        axis: usize,
    },
    /// `eval_op` was asked to evaluate a source whose value only a graph evaluation has.
    #[error("{}{op} `{name}` has no value outside a graph evaluation; use `eval`", at(.node))]
    SourceOp {
        /// The node, when known.
        node: Option<NodeId>,
        /// `input` or `param`.
        op: &'static str,
        /// The source's name.
        name: String,
    },
    /// The operands do not fit the op, or the result dtype/shape does not fit the operands
    /// (only for graphs built without inference, or direct `eval_op` calls).
    #[error("{}{op}: {msg}", at(.node))]
    Malformed {
        /// The node, when known.
        node: Option<NodeId>,
        /// Op name.
        op: &'static str,
        /// Explanation naming the shapes and dtypes involved.
        msg: String,
    },
    /// An array could not be built (element count overflow and the like).
    #[error("{}{source}", at(.node))]
    Array {
        /// The node, when known.
        node: Option<NodeId>,
        /// The array error.
        source: ArrayError,
    },
    /// A node's value does not fit in memory (checked before computing it).
    #[error(
        "{node}: {op} result of {elements} elements needs {bytes} bytes of working memory, which cannot be allocated"
    )]
    OutOfMemory {
        /// The node.
        node: NodeId,
        /// Op name.
        op: &'static str,
        /// Elements of the result.
        elements: usize,
        /// Working bytes requested (saturated at `u64::MAX`).
        bytes: u64,
    },
    /// The graph itself is unusable (an unknown output id, a cycle).
    #[error(transparent)]
    Graph(#[from] GraphError),
}

fn at(node: &Option<NodeId>) -> String {
    node.map(|n| format!("{n}: ")).unwrap_or_default()
}

impl From<ArrayError> for EvalError {
    fn from(source: ArrayError) -> EvalError {
        EvalError::Array { node: None, source }
    }
}

impl EvalError {
    /// The same error attributed to `id` if it names no node yet.
    pub fn at(mut self, id: NodeId) -> EvalError {
        match &mut self {
            EvalError::IndexOutOfRange { node, .. }
            | EvalError::DivisionByZero { node, .. }
            | EvalError::EmptyArgReduce { node, .. }
            | EvalError::SourceOp { node, .. }
            | EvalError::Malformed { node, .. }
            | EvalError::Array { node, .. } => {
                node.get_or_insert(id);
            }
            EvalError::MissingInput { .. }
            | EvalError::MissingParam { .. }
            | EvalError::DTypeMismatch { .. }
            | EvalError::ShapeMismatch { .. }
            | EvalError::SymbolConflict { .. }
            | EvalError::UnsolvableSymbol { .. }
            | EvalError::Shape { .. }
            | EvalError::OutOfMemory { .. }
            | EvalError::Graph(_) => {}
        }
        self
    }

    /// The node the error is attributed to, if any.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            EvalError::IndexOutOfRange { node, .. }
            | EvalError::DivisionByZero { node, .. }
            | EvalError::EmptyArgReduce { node, .. }
            | EvalError::SourceOp { node, .. }
            | EvalError::Malformed { node, .. }
            | EvalError::Array { node, .. } => *node,
            EvalError::Shape { node, .. } | EvalError::OutOfMemory { node, .. } => Some(*node),
            EvalError::MissingInput { .. }
            | EvalError::MissingParam { .. }
            | EvalError::DTypeMismatch { .. }
            | EvalError::ShapeMismatch { .. }
            | EvalError::SymbolConflict { .. }
            | EvalError::UnsolvableSymbol { .. }
            | EvalError::Graph(_) => None,
        }
    }

    pub(crate) fn malformed(op: &'static str, msg: impl Into<String>) -> EvalError {
        EvalError::Malformed {
            node: None,
            op,
            msg: msg.into(),
        }
    }
}
