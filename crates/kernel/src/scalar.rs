//! Typed scalar constants and the semantics of every scalar op on them (the executor's
//! arithmetic), matching the graph interpreter: floats compute in `f64` and round to the
//! dtype, integers compute in `i64` and wrap to their width, integer `div` floors and `rem`
//! takes the divisor's sign, `max`/`min` propagate NaN, casts truncate toward zero.

use kiln_ir::semantics::{
    BinaryKind as Kind, bool_binary, float_binary, float_unary, int_binary, int_unary,
};
use kiln_ir::{BinaryOp, DType, UnaryOp};
use std::fmt;
use std::hash::{Hash, Hasher};

/// One typed scalar value: a constant in a kernel body, an accumulator init, a fill value.
///
/// Equality and hashing compare bits, so `-0.0 != 0.0` and a NaN equals itself; that keeps
/// programs `Eq` and makes print/parse round trips exact.
#[derive(Clone, Copy, Debug)]
pub enum Scalar {
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `i32`
    I32(i32),
    /// `i64`
    I64(i64),
    /// `u32`
    U32(u32),
    /// `bool`
    Bool(bool),
}

/// Error applying a scalar op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalarError {
    /// Integer `div` or `rem` by zero.
    #[error("integer {0} by zero")]
    DivisionByZero(&'static str),
    /// The op is not defined for the operand dtype(s).
    #[error("{op} is not defined for {dtype}")]
    Unsupported {
        /// Op name.
        op: &'static str,
        /// The offending dtype (the left operand's for binary ops).
        dtype: DType,
    },
}

impl Scalar {
    /// The dtype.
    pub fn dtype(self) -> DType {
        match self {
            Scalar::F32(_) => DType::F32,
            Scalar::F64(_) => DType::F64,
            Scalar::I32(_) => DType::I32,
            Scalar::I64(_) => DType::I64,
            Scalar::U32(_) => DType::U32,
            Scalar::Bool(_) => DType::Bool,
        }
    }

    /// Zero (or `false`) of a dtype.
    pub fn zero(dtype: DType) -> Scalar {
        Scalar::from_i64(dtype, 0)
    }

    /// `value` converted to `dtype` as a cast would: floats round to nearest, float to integer
    /// truncates toward zero (saturating at the `i64` range, NaN to 0) then wraps, to bool is
    /// `!= 0` (NaN is true).
    pub fn from_f64(dtype: DType, value: f64) -> Scalar {
        match dtype {
            DType::F32 => Scalar::F32(value as f32),
            DType::F64 => Scalar::F64(value),
            DType::I32 => Scalar::I32(value as i64 as i32),
            DType::I64 => Scalar::I64(value as i64),
            DType::U32 => Scalar::U32(value as i64 as u32),
            DType::Bool => Scalar::Bool(value != 0.0),
        }
    }

    /// `value` converted to `dtype`: integers wrap to the width, floats round to nearest,
    /// to bool is `!= 0`.
    pub fn from_i64(dtype: DType, value: i64) -> Scalar {
        match dtype {
            DType::F32 => Scalar::F32(value as f32),
            DType::F64 => Scalar::F64(value as f64),
            DType::I32 => Scalar::I32(value as i32),
            DType::I64 => Scalar::I64(value),
            DType::U32 => Scalar::U32(value as u32),
            DType::Bool => Scalar::Bool(value != 0),
        }
    }

    /// The value as `f64` (exact except for 64-bit integers beyond 2^53; bool is 0 or 1).
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::F32(v) => f64::from(v),
            Scalar::F64(v) => v,
            Scalar::I32(v) => f64::from(v),
            Scalar::I64(v) => v as f64,
            Scalar::U32(v) => f64::from(v),
            Scalar::Bool(v) => f64::from(u8::from(v)),
        }
    }

    /// The value of an integer or bool scalar as `i64`; `None` for floats.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Scalar::I32(v) => Some(i64::from(v)),
            Scalar::I64(v) => Some(v),
            Scalar::U32(v) => Some(i64::from(v)),
            Scalar::Bool(v) => Some(i64::from(v)),
            Scalar::F32(_) | Scalar::F64(_) => None,
        }
    }

    /// Converts to `dtype` with cast semantics (see [`Scalar::from_f64`]).
    pub fn cast(self, dtype: DType) -> Scalar {
        match self {
            Scalar::F32(_) | Scalar::F64(_) => Scalar::from_f64(dtype, self.to_f64()),
            Scalar::Bool(b) if dtype.is_float() => Scalar::from_f64(dtype, f64::from(u8::from(b))),
            Scalar::I32(_) | Scalar::I64(_) | Scalar::U32(_) | Scalar::Bool(_) => {
                Scalar::from_i64(dtype, self.as_i64().unwrap_or(0))
            }
        }
    }

    /// The bits of the value, widened to 64 (used for equality and hashing).
    fn bits(self) -> u64 {
        match self {
            Scalar::F32(v) => u64::from(v.to_bits()),
            Scalar::F64(v) => v.to_bits(),
            Scalar::I32(v) => u64::from(v as u32),
            Scalar::I64(v) => v as u64,
            Scalar::U32(v) => u64::from(v),
            Scalar::Bool(v) => u64::from(v),
        }
    }

    /// Applies a unary op.
    pub fn unary(op: UnaryOp, x: Scalar) -> Result<Scalar, ScalarError> {
        let unsupported = || ScalarError::Unsupported {
            op: op.name(),
            dtype: x.dtype(),
        };
        match x {
            Scalar::F32(_) | Scalar::F64(_) => {
                let v = x.to_f64();
                if op == UnaryOp::IsNan {
                    return Ok(Scalar::Bool(v.is_nan()));
                }
                let f = float_unary(op).ok_or_else(unsupported)?;
                Ok(Scalar::from_f64(x.dtype(), f(v)))
            }
            Scalar::I32(_) | Scalar::I64(_) | Scalar::U32(_) => {
                let f = int_unary(op).ok_or_else(unsupported)?;
                Ok(Scalar::from_i64(x.dtype(), f(x.as_i64().unwrap_or(0))))
            }
            Scalar::Bool(b) => match op {
                UnaryOp::Not => Ok(Scalar::Bool(!b)),
                _ => Err(unsupported()),
            },
        }
    }

    /// Applies a binary op; both operands must share a dtype.
    pub fn binary(op: BinaryOp, a: Scalar, b: Scalar) -> Result<Scalar, ScalarError> {
        let unsupported = || ScalarError::Unsupported {
            op: op.name(),
            dtype: a.dtype(),
        };
        if a.dtype() != b.dtype() {
            return Err(unsupported());
        }
        let dtype = a.dtype();
        match (a, b) {
            (Scalar::F32(_) | Scalar::F64(_), _) => {
                let (x, y) = (a.to_f64(), b.to_f64());
                match float_binary(op).ok_or_else(unsupported)? {
                    Kind::Arith(f) => Ok(Scalar::from_f64(dtype, f(x, y))),
                    Kind::Cmp(f) => Ok(Scalar::Bool(f(x, y))),
                }
            }
            (Scalar::Bool(x), Scalar::Bool(y)) => match bool_binary(op).ok_or_else(unsupported)? {
                Kind::Arith(f) => Ok(Scalar::Bool(f(x, y))),
                Kind::Cmp(f) => Ok(Scalar::Bool(f(x, y))),
            },
            _ => {
                let (x, y) = (a.as_i64().unwrap_or(0), b.as_i64().unwrap_or(0));
                if matches!(op, BinaryOp::Div | BinaryOp::Rem) && y == 0 {
                    return Err(ScalarError::DivisionByZero(op.name()));
                }
                match int_binary(op).ok_or_else(unsupported)? {
                    Kind::Arith(f) => Ok(Scalar::from_i64(dtype, f(x, y))),
                    Kind::Cmp(f) => Ok(Scalar::Bool(f(x, y))),
                }
            }
        }
    }

    /// The value printed without its dtype: `1.5`, `-inf`, `nan`, `3`, `true`. Floats use the
    /// shortest text that parses back to the same bits; a NaN other than the canonical one
    /// prints as `nan(0x7fc00001)` with its bit pattern.
    pub fn value_text(self) -> String {
        match self {
            Scalar::F32(v) => {
                if v.is_nan() && v.to_bits() != f32::NAN.to_bits() {
                    format!("nan(0x{:08x})", v.to_bits())
                } else {
                    float_text(f64::from(v), format!("{v:?}"))
                }
            }
            Scalar::F64(v) => {
                if v.is_nan() && v.to_bits() != f64::NAN.to_bits() {
                    format!("nan(0x{:016x})", v.to_bits())
                } else {
                    float_text(v, format!("{v:?}"))
                }
            }
            Scalar::I32(v) => v.to_string(),
            Scalar::I64(v) => v.to_string(),
            Scalar::U32(v) => v.to_string(),
            Scalar::Bool(v) => v.to_string(),
        }
    }
}

fn float_text(v: f64, debug: String) -> String {
    if v.is_nan() { "nan".to_string() } else { debug }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Scalar) -> bool {
        self.dtype() == other.dtype() && self.bits() == other.bits()
    }
}
impl Eq for Scalar {}
impl Hash for Scalar {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.dtype().hash(state);
        self.bits().hash(state);
    }
}

/// Prints the typed form used in kernel bodies: `f32(0.0)`, `i64(-3)`, `bool(true)`.
impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.dtype(), self.value_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::semantics::erf;

    #[test]
    fn integer_semantics_follow_python() {
        let div = |a, b| Scalar::binary(BinaryOp::Div, Scalar::I32(a), Scalar::I32(b));
        let rem = |a, b| Scalar::binary(BinaryOp::Rem, Scalar::I32(a), Scalar::I32(b));
        assert_eq!(div(7, 2), Ok(Scalar::I32(3)));
        assert_eq!(div(-7, 2), Ok(Scalar::I32(-4)));
        assert_eq!(rem(-7, 2), Ok(Scalar::I32(1)));
        assert_eq!(rem(7, -2), Ok(Scalar::I32(-1)));
        assert_eq!(div(i32::MIN, -1), Ok(Scalar::I32(i32::MIN)));
        assert_eq!(div(1, 0), Err(ScalarError::DivisionByZero("div")));
        let sub = Scalar::binary(BinaryOp::Sub, Scalar::U32(0), Scalar::U32(1));
        assert_eq!(sub, Ok(Scalar::U32(u32::MAX)));
        let mul = Scalar::binary(BinaryOp::Mul, Scalar::U32(1 << 31), Scalar::U32(3));
        assert_eq!(mul, Ok(Scalar::U32(1 << 31)));
    }

    #[test]
    fn float_semantics() {
        let max = Scalar::binary(BinaryOp::Max, Scalar::F32(f32::NAN), Scalar::F32(1.0));
        assert!(matches!(max, Ok(Scalar::F32(v)) if v.is_nan()));
        let rem = Scalar::binary(BinaryOp::Rem, Scalar::F64(-7.5), Scalar::F64(2.0));
        assert_eq!(rem, Ok(Scalar::F64(0.5)));
        assert_eq!(
            Scalar::unary(UnaryOp::Round, Scalar::F32(2.5)),
            Ok(Scalar::F32(2.0))
        );
        assert_eq!(
            Scalar::unary(UnaryOp::Round, Scalar::F32(3.5)),
            Ok(Scalar::F32(4.0))
        );
        assert_eq!(
            Scalar::unary(UnaryOp::Sign, Scalar::F32(-0.0)),
            Ok(Scalar::F32(-0.0))
        );
        assert_eq!(
            Scalar::unary(UnaryOp::Sigmoid, Scalar::F64(-1000.0)),
            Ok(Scalar::F64(0.0))
        );
        assert_eq!(
            Scalar::unary(UnaryOp::IsNan, Scalar::F64(f64::NAN)),
            Ok(Scalar::Bool(true))
        );
        assert!(Scalar::unary(UnaryOp::Exp, Scalar::I32(1)).is_err());
    }

    #[test]
    fn casts_truncate_and_wrap() {
        assert_eq!(Scalar::F32(-2.7).cast(DType::I32), Scalar::I32(-2));
        assert_eq!(Scalar::F64(f64::NAN).cast(DType::I64), Scalar::I64(0));
        assert_eq!(Scalar::F64(f64::NAN).cast(DType::Bool), Scalar::Bool(true));
        assert_eq!(Scalar::I64(1 << 32).cast(DType::I32), Scalar::I32(0));
        assert_eq!(Scalar::I32(-1).cast(DType::U32), Scalar::U32(u32::MAX));
        assert_eq!(Scalar::Bool(true).cast(DType::F32), Scalar::F32(1.0));
        assert_eq!(
            Scalar::U32(u32::MAX).cast(DType::F64),
            Scalar::F64(4294967295.0)
        );
    }

    #[test]
    fn erf_matches_reference_values() {
        // erf values from the defining integral at 30 digits (mpmath), rounded to f64.
        let cases = [
            (0.0, 0.0),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (2.9, 0.9999589021219005),
            (3.0, 0.9999779095030014),
            (4.0, 0.9999999845827421),
            (-1.5, -0.9661051464753108),
            (7.0, 1.0),
        ];
        for (x, want) in cases {
            let got = erf(x);
            assert!((got - want).abs() <= 2e-15, "erf({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn scalar_text() {
        assert_eq!(Scalar::F32(0.0).to_string(), "f32(0.0)");
        assert_eq!(Scalar::F32(f32::NEG_INFINITY).to_string(), "f32(-inf)");
        assert_eq!(Scalar::F64(f64::NAN).to_string(), "f64(nan)");
        assert_eq!(
            Scalar::F32(f32::from_bits(0x7fc0_0001)).to_string(),
            "f32(nan(0x7fc00001))"
        );
        assert_eq!(Scalar::I64(-3).to_string(), "i64(-3)");
        assert_eq!(Scalar::Bool(true).to_string(), "bool(true)");
        assert_ne!(Scalar::F32(0.0), Scalar::F32(-0.0));
        assert_eq!(Scalar::F32(f32::NAN), Scalar::F32(f32::NAN));
    }
}
