//! The scalar typing rules of the elementwise primitives: which dtypes a unary or binary op
//! accepts and which dtype it produces. Graph shape inference and the kernel-IR verifier
//! both apply these rules and word the error their own way.

use crate::dtype::DType;
use crate::op::{BinaryOp, UnaryOp};

/// A class of dtypes an op accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DTypeClass {
    /// Integers and floats (not bool).
    Numeric,
    /// `f32` or `f64`.
    Float,
    /// `bool` or an integer.
    BoolOrInt,
}

impl DTypeClass {
    /// True if `dtype` belongs to the class.
    pub fn contains(self, dtype: DType) -> bool {
        match self {
            DTypeClass::Numeric => dtype.is_numeric(),
            DTypeClass::Float => dtype.is_float(),
            DTypeClass::BoolOrInt => dtype == DType::Bool || dtype.is_int(),
        }
    }
}

/// Why a scalar op does not apply to its operands' dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DTypeRuleError {
    /// The two operands of a binary op have different dtypes.
    #[error("{op} operands differ in dtype: {lhs} vs {rhs}")]
    Mismatch {
        /// Op name.
        op: &'static str,
        /// Left dtype.
        lhs: DType,
        /// Right dtype.
        rhs: DType,
    },
    /// The operand dtype is outside the class the op accepts.
    #[error("{op} needs {}, got {got}", needs_phrase(*.needs, *.binary))]
    Needs {
        /// Op name.
        op: &'static str,
        /// True for a binary op (whose operands share the dtype `got`).
        binary: bool,
        /// The accepted class.
        needs: DTypeClass,
        /// The operand dtype given.
        got: DType,
    },
}

fn needs_phrase(needs: DTypeClass, binary: bool) -> &'static str {
    match (needs, binary) {
        (DTypeClass::Numeric, false) => "a numeric operand",
        (DTypeClass::Float, false) => "a float operand",
        (DTypeClass::BoolOrInt, false) => "a bool or integer operand",
        (DTypeClass::Numeric, true) => "numeric operands",
        (DTypeClass::Float, true) => "float operands",
        (DTypeClass::BoolOrInt, true) => "bool or integer operands",
    }
}

fn require(
    op: &'static str,
    binary: bool,
    needs: DTypeClass,
    got: DType,
    out: DType,
) -> Result<DType, DTypeRuleError> {
    if needs.contains(got) {
        Ok(out)
    } else {
        Err(DTypeRuleError::Needs {
            op,
            binary,
            needs,
            got,
        })
    }
}

/// The dtype a unary op produces from an operand of dtype `x`.
pub fn unary_dtype(op: UnaryOp, x: DType) -> Result<DType, DTypeRuleError> {
    let need = |needs, out| require(op.name(), false, needs, x, out);
    match op {
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign => need(DTypeClass::Numeric, x),
        UnaryOp::Not => need(DTypeClass::BoolOrInt, x),
        UnaryOp::IsNan => need(DTypeClass::Float, DType::Bool),
        UnaryOp::Exp
        | UnaryOp::Log
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Recip
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tanh
        | UnaryOp::Atan
        | UnaryOp::Sigmoid
        | UnaryOp::Erf
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round => need(DTypeClass::Float, x),
    }
}

/// The dtype a binary op produces from operands of dtypes `lhs` and `rhs` (which must be
/// equal).
pub fn binary_dtype(op: BinaryOp, lhs: DType, rhs: DType) -> Result<DType, DTypeRuleError> {
    if lhs != rhs {
        return Err(DTypeRuleError::Mismatch {
            op: op.name(),
            lhs,
            rhs,
        });
    }
    let need = |needs, out| require(op.name(), true, needs, lhs, out);
    match op {
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Rem
        | BinaryOp::Max
        | BinaryOp::Min => need(DTypeClass::Numeric, lhs),
        BinaryOp::Pow => need(DTypeClass::Float, lhs),
        BinaryOp::Eq | BinaryOp::Ne => Ok(DType::Bool),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            need(DTypeClass::Numeric, DType::Bool)
        }
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => need(DTypeClass::BoolOrInt, lhs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_messages() {
        assert_eq!(unary_dtype(UnaryOp::IsNan, DType::F32), Ok(DType::Bool));
        assert_eq!(unary_dtype(UnaryOp::Not, DType::I32), Ok(DType::I32));
        assert_eq!(
            unary_dtype(UnaryOp::Exp, DType::I32)
                .unwrap_err()
                .to_string(),
            "exp needs a float operand, got i32"
        );
        assert_eq!(
            binary_dtype(BinaryOp::Lt, DType::I64, DType::I64),
            Ok(DType::Bool)
        );
        assert_eq!(
            binary_dtype(BinaryOp::Add, DType::F32, DType::I32)
                .unwrap_err()
                .to_string(),
            "add operands differ in dtype: f32 vs i32"
        );
        assert_eq!(
            binary_dtype(BinaryOp::Xor, DType::F32, DType::F32)
                .unwrap_err()
                .to_string(),
            "xor needs bool or integer operands, got f32"
        );
    }
}
