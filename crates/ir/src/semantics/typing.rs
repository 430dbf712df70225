//! The scalar typing rules of the elementwise primitives: which dtypes a unary or binary op
//! accepts and which dtype it produces, as each op declares it ([`DTypeRule`], in the op
//! lists of `op.rs`). Graph shape inference and the kernel-IR verifier both apply these
//! rules and word the error their own way.

use crate::dtype::{DType, DTypeClass};
use crate::op::{BinaryOp, DTypeRule, UnaryOp};

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

/// Applies an op's declared [`DTypeRule`] to its operand dtype `x`.
fn apply(
    op: &'static str,
    binary: bool,
    rule: DTypeRule,
    x: DType,
) -> Result<DType, DTypeRuleError> {
    match rule {
        DTypeRule::Same(needs) => require(op, binary, needs, x, x),
        DTypeRule::ToBool(Some(needs)) => require(op, binary, needs, x, DType::Bool),
        DTypeRule::ToBool(None) => Ok(DType::Bool),
    }
}

/// The dtype a unary op produces from an operand of dtype `x`.
pub fn unary_dtype(op: UnaryOp, x: DType) -> Result<DType, DTypeRuleError> {
    apply(op.name(), false, op.dtype_rule(), x)
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
    apply(op.name(), true, op.dtype_rule(), lhs)
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
            binary_dtype(BinaryOp::Eq, DType::Bool, DType::Bool),
            Ok(DType::Bool)
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
