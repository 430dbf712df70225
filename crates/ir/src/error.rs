//! Typed errors of shape and dtype inference.

use crate::dim::Dim;
use crate::dtype::DType;
use crate::shape::Shape;

/// Why an op cannot be applied to its operands. Messages name the op and every shape involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Wrong number of operands.
    #[error("{op}: expected {expected} operand(s), got {got}")]
    Arity {
        /// Op name.
        op: &'static str,
        /// Expected count (e.g. `2`, `at least 2`).
        expected: String,
        /// Supplied count.
        got: usize,
    },
    /// Two shapes cannot be broadcast together.
    #[error(
        "{op}: shapes {lhs} and {rhs} are not broadcastable (dimension {lhs_dim} vs {rhs_dim})"
    )]
    Broadcast {
        /// Op name.
        op: &'static str,
        /// Left shape.
        lhs: Shape,
        /// Right shape.
        rhs: Shape,
        /// Offending left dim.
        lhs_dim: Dim,
        /// Offending right dim.
        rhs_dim: Dim,
    },
    /// Operand dtypes differ where they must agree.
    #[error("{op}: dtype mismatch: {lhs} vs {rhs}")]
    DTypeMismatch {
        /// Op name.
        op: &'static str,
        /// Left dtype.
        lhs: DType,
        /// Right dtype.
        rhs: DType,
    },
    /// A dtype the op does not accept.
    #[error("{op}: {role} has dtype {got}, expected {expected}")]
    DType {
        /// Op name.
        op: &'static str,
        /// Which operand.
        role: &'static str,
        /// The dtype given.
        got: DType,
        /// What is accepted.
        expected: &'static str,
    },
    /// Matrix product inner dims differ.
    #[error("matmul: inner dimensions differ: {lhs} @ {rhs} ({lhs_dim} vs {rhs_dim})")]
    MatmulInner {
        /// Left shape.
        lhs: Shape,
        /// Right shape.
        rhs: Shape,
        /// Left inner dim.
        lhs_dim: Dim,
        /// Right inner dim.
        rhs_dim: Dim,
    },
    /// Reshape to a different element count.
    #[error("reshape: cannot reshape {from} ({from_numel} elements) to {to} ({to_numel} elements)")]
    Reshape {
        /// Source shape.
        from: Shape,
        /// Target shape.
        to: Shape,
        /// Source element count.
        from_numel: Dim,
        /// Target element count.
        to_numel: Dim,
    },
    /// An axis index out of range.
    #[error("{op}: axis {axis} is out of range for shape {shape}")]
    Axis {
        /// Op name.
        op: &'static str,
        /// Axis given.
        axis: usize,
        /// The operand's shape.
        shape: Shape,
    },
    /// Anything else, with the shapes named in the message.
    #[error("{op}: {msg}")]
    Invalid {
        /// Op name.
        op: &'static str,
        /// Explanation naming the shapes involved.
        msg: String,
    },
}

impl ShapeError {
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> ShapeError {
        ShapeError::Invalid {
            op,
            msg: msg.into(),
        }
    }
}
