//! Scalar semantics of the elementwise primitives, shared by every evaluator (the graph
//! interpreter, the kernel-IR executor, constant folding): floats compute in `f64` and are
//! rounded to their dtype by the caller, integers compute in `i64` and wrap, integer
//! division floors and `rem` takes the divisor's sign, `max`/`min` propagate NaN.
//!
//! `erf` is a high-accuracy `f64` error function (relative error below 1e-14 everywhere):
//! a series of positive terms for `|x| < 2.5`, `1 - erfc(x)` from erfc's continued fraction
//! for `2.5 <= |x| < 6`, exactly 1 beyond.
//!
//! The typing rules of these ops ([`unary_dtype`], [`binary_dtype`]) and the Threefry-2x32
//! block function of random bits ([`threefry`]) live here too, so every evaluator and the
//! verifiers share them.

pub mod threefry;
mod typing;

pub use crate::dtype::DTypeClass;
pub use typing::{DTypeRuleError, binary_dtype, unary_dtype};

use crate::op::{BinaryOp, UnaryOp};
use std::f64::consts::FRAC_2_SQRT_PI;

const SERIES_LIMIT: f64 = 2.5;
const ONE_FROM: f64 = 6.0;
const CF_DEPTH: u32 = 60;

/// The error function `erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt`.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let v = if a < SERIES_LIMIT {
        erf_series(a)
    } else if a < ONE_FROM {
        1.0 - erfc_continued_fraction(a)
    } else {
        1.0
    };
    v.copysign(x)
}

fn erf_series(a: f64) -> f64 {
    let a2 = a * a;
    let mut term = a;
    let mut sum = a;
    let mut n = 0.0;
    while term > sum * 1e-17 {
        term *= 2.0 * a2 / (2.0 * n + 3.0);
        sum += term;
        n += 1.0;
    }
    FRAC_2_SQRT_PI * (-a2).exp() * sum
}

fn erfc_continued_fraction(a: f64) -> f64 {
    let mut f = a;
    for k in (1..=CF_DEPTH).rev() {
        f = a + f64::from(k) / 2.0 / f;
    }
    0.5 * FRAC_2_SQRT_PI * (-a * a).exp() / f
}

/// `1 / (1 + e^-x)`, written so neither branch overflows.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// -1, 0 or 1; a zero keeps its sign and NaN stays NaN.
fn sign_f(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// The `f64` function of a unary op on floats (`None` for `not`, `is_nan`).
#[inline]
pub fn float_unary(op: UnaryOp) -> Option<fn(f64) -> f64> {
    let f: fn(f64) -> f64 = match op {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
        UnaryOp::Recip => |x| 1.0 / x,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Atan => f64::atan,
        UnaryOp::Asin => f64::asin,
        UnaryOp::Sigmoid => sigmoid,
        UnaryOp::Erf => erf,
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        UnaryOp::Round => f64::round_ties_even,
        UnaryOp::Sign => sign_f,
        UnaryOp::Not | UnaryOp::IsNan => return None,
    };
    Some(f)
}

/// The `i64` function of a unary op on integers (`None` where integers do not apply).
pub fn int_unary(op: UnaryOp) -> Option<fn(i64) -> i64> {
    let f: fn(i64) -> i64 = match op {
        UnaryOp::Neg => i64::wrapping_neg,
        UnaryOp::Abs => i64::wrapping_abs,
        UnaryOp::Sign => i64::signum,
        UnaryOp::Not => |x| !x,
        UnaryOp::Exp
        | UnaryOp::Log
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Recip
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tanh
        | UnaryOp::Atan
        | UnaryOp::Asin
        | UnaryOp::Sigmoid
        | UnaryOp::Erf
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::IsNan => return None,
    };
    Some(f)
}

/// How a binary op combines two values: into a value of the same type, or a comparison.
#[derive(Clone, Copy, Debug)]
pub enum BinaryKind<T> {
    /// Same-type arithmetic or logic.
    Arith(fn(T, T) -> T),
    /// A comparison producing `bool`.
    Cmp(fn(T, T) -> bool),
}

/// Maximum that propagates NaN.
pub fn max_f(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Minimum that propagates NaN.
pub fn min_f(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Remainder with the sign of the divisor, from the exact `fmod`.
pub fn rem_f(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

/// Floor division of integers; `b != 0` is checked by the caller.
pub fn floor_div_i(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let q = a.wrapping_div(b);
    if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
        q.wrapping_sub(1)
    } else {
        q
    }
}

/// Remainder with the divisor's sign; `b != 0` is checked by the caller.
pub fn rem_i(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r.wrapping_add(b)
    } else {
        r
    }
}

/// A binary op on floats computed in `f64`.
#[inline]
pub fn float_binary(op: BinaryOp) -> Option<BinaryKind<f64>> {
    Some(match op {
        BinaryOp::Add => BinaryKind::Arith(|x, y| x + y),
        BinaryOp::Sub => BinaryKind::Arith(|x, y| x - y),
        BinaryOp::Mul => BinaryKind::Arith(|x, y| x * y),
        BinaryOp::Div => BinaryKind::Arith(|x, y| x / y),
        BinaryOp::Rem => BinaryKind::Arith(rem_f),
        BinaryOp::Pow => BinaryKind::Arith(f64::powf),
        BinaryOp::Max => BinaryKind::Arith(max_f),
        BinaryOp::Min => BinaryKind::Arith(min_f),
        BinaryOp::Eq => BinaryKind::Cmp(|x, y| x == y),
        BinaryOp::Ne => BinaryKind::Cmp(|x, y| x != y),
        BinaryOp::Lt => BinaryKind::Cmp(|x, y| x < y),
        BinaryOp::Le => BinaryKind::Cmp(|x, y| x <= y),
        BinaryOp::Gt => BinaryKind::Cmp(|x, y| x > y),
        BinaryOp::Ge => BinaryKind::Cmp(|x, y| x >= y),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => return None,
    })
}

/// A binary op on integers computed in `i64` (division by zero is the caller's check).
pub fn int_binary(op: BinaryOp) -> Option<BinaryKind<i64>> {
    Some(match op {
        BinaryOp::Add => BinaryKind::Arith(i64::wrapping_add),
        BinaryOp::Sub => BinaryKind::Arith(i64::wrapping_sub),
        BinaryOp::Mul => BinaryKind::Arith(i64::wrapping_mul),
        BinaryOp::Div => BinaryKind::Arith(floor_div_i),
        BinaryOp::Rem => BinaryKind::Arith(rem_i),
        BinaryOp::Max => BinaryKind::Arith(i64::max),
        BinaryOp::Min => BinaryKind::Arith(i64::min),
        BinaryOp::And => BinaryKind::Arith(|x, y| x & y),
        BinaryOp::Or => BinaryKind::Arith(|x, y| x | y),
        BinaryOp::Xor => BinaryKind::Arith(|x, y| x ^ y),
        BinaryOp::Eq => BinaryKind::Cmp(|x, y| x == y),
        BinaryOp::Ne => BinaryKind::Cmp(|x, y| x != y),
        BinaryOp::Lt => BinaryKind::Cmp(|x, y| x < y),
        BinaryOp::Le => BinaryKind::Cmp(|x, y| x <= y),
        BinaryOp::Gt => BinaryKind::Cmp(|x, y| x > y),
        BinaryOp::Ge => BinaryKind::Cmp(|x, y| x >= y),
        BinaryOp::Pow => return None,
    })
}

/// A binary op on `bool`.
pub fn bool_binary(op: BinaryOp) -> Option<BinaryKind<bool>> {
    Some(match op {
        BinaryOp::And => BinaryKind::Arith(|x, y| x & y),
        BinaryOp::Or => BinaryKind::Arith(|x, y| x | y),
        BinaryOp::Xor => BinaryKind::Arith(|x, y| x ^ y),
        BinaryOp::Eq => BinaryKind::Cmp(|x, y| x == y),
        BinaryOp::Ne => BinaryKind::Cmp(|x, y| x != y),
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Rem
        | BinaryOp::Pow
        | BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::Lt
        | BinaryOp::Le
        | BinaryOp::Gt
        | BinaryOp::Ge => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::erf;

    /// Reference values from mpmath at 40 digits, rounded to f64.
    const REFERENCE: [(f64, f64); 25] = [
        (1e-300, 1.1283791670955126e-300),
        (1e-10, 1.1283791670955126e-10),
        (0.001, 0.0011283787909692365),
        (0.1, 0.1124629160182849),
        (0.25, 0.27632639016823696),
        (0.5, 0.5204998778130465),
        (0.75, 0.7111556336535151),
        (1.0, 0.8427007929497149),
        (1.25, 0.9229001282564583),
        (1.5, 0.9661051464753108),
        (1.75, 0.9866716712191824),
        (2.0, 0.9953222650189527),
        (2.25, 0.9985372834133188),
        (2.49, 0.9995707121322661),
        (2.5, 0.999593047982555),
        (2.51, 0.9996142945182758),
        (2.75, 0.9998993780778803),
        (3.0, 0.9999779095030014),
        (3.5, 0.9999992569016276),
        (4.0, 0.9999999845827421),
        (4.5, 0.9999999998033839),
        (5.0, 0.9999999999984626),
        (5.5, 0.9999999999999927),
        (5.9, 0.9999999999999999),
        (6.0, 1.0),
    ];

    #[test]
    fn matches_reference_values() {
        for (x, want) in REFERENCE {
            for (x, want) in [(x, want), (-x, -want)] {
                let got = erf(x);
                let rel = ((got - want) / want).abs();
                assert!(rel < 1e-14, "erf({x}) = {got}, want {want} (rel {rel:e})");
            }
        }
    }

    #[test]
    fn brief_values_and_specials() {
        assert!((erf(0.5) - 0.5204998778130465).abs() < 1e-15);
        assert!((erf(1.0) - 0.8427007929497149).abs() < 1e-15);
        assert!((erf(2.0) - 0.9953222650189527).abs() < 1e-15);
        assert!((erf(-3.0) + 0.9999779095030014).abs() < 1e-15);
        assert_eq!(erf(0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(erf(-0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert_eq!(erf(30.0), 1.0);
        assert!(erf(f64::NAN).is_nan());
    }

    #[test]
    fn is_odd_and_monotone_on_a_grid() {
        let mut prev = erf(-7.0);
        for i in -7000..=7000 {
            let x = f64::from(i) / 1000.0;
            let y = erf(x);
            assert_eq!(y, -erf(-x));
            assert!(y >= prev, "erf not monotone at {x}");
            prev = y;
        }
    }
}
