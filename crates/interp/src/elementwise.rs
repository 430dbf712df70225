//! Elementwise ops: unary, binary (with broadcasting), select and cast.

use crate::error::EvalError;
use crate::vals::{Vals, broadcast_strides, typed, view_offsets};
use kiln_ir::semantics::{
    BinaryKind, bool_binary, float_binary, float_unary, int_binary, int_unary,
};
use kiln_ir::{Array, BinaryOp, DType, Data, UnaryOp};

fn no_kernel(op: &'static str, x: DType) -> EvalError {
    EvalError::malformed(op, format!("not defined for dtype {x}"))
}

/// An elementwise unary op. Integers wrap (`abs(i32::MIN) == i32::MIN`), `not` is bitwise
/// on integers and logical on bool, `is_nan` maps floats to bool.
pub(crate) fn unary(u: UnaryOp, x: &Array) -> Result<Vals, EvalError> {
    let bad = || no_kernel(u.name(), x.dtype());
    Ok(match Vals::of(x) {
        Vals::F(v) if u == UnaryOp::IsNan => Vals::B(v.iter().map(|x| x.is_nan()).collect()),
        Vals::F(v) => {
            let f = float_unary(u).ok_or_else(bad)?;
            Vals::F(v.into_iter().map(f).collect())
        }
        Vals::I(v) => {
            let f = int_unary(u).ok_or_else(bad)?;
            Vals::I(v.into_iter().map(f).collect())
        }
        Vals::B(v) if u == UnaryOp::Not => Vals::B(v.iter().map(|b| !b).collect()),
        Vals::B(_) => return Err(bad()),
    })
}

fn apply<T: Copy>(
    k: BinaryKind<T>,
    x: &[T],
    y: &[T],
    ix: &[usize],
    iy: &[usize],
    wrap: fn(Vec<T>) -> Vals,
) -> Vals {
    let pairs = ix.iter().zip(iy).map(|(&i, &j)| (x[i], y[j]));
    match k {
        BinaryKind::Arith(f) => wrap(pairs.map(|(a, b)| f(a, b)).collect()),
        BinaryKind::Cmp(f) => Vals::B(pairs.map(|(a, b)| f(a, b)).collect()),
    }
}

/// An elementwise binary op, operands broadcast to `out_shape`. Integer `div`/`rem` by zero
/// is an error; float division follows IEEE.
pub(crate) fn binary(
    b: BinaryOp,
    x: &Array,
    y: &Array,
    out_shape: &[usize],
) -> Result<Vals, EvalError> {
    let ix = view_offsets(out_shape, 0, &broadcast_strides(x.shape(), out_shape));
    let iy = view_offsets(out_shape, 0, &broadcast_strides(y.shape(), out_shape));
    let bad = || no_kernel(b.name(), x.dtype());
    Ok(match (Vals::of(x), Vals::of(y)) {
        (Vals::F(x), Vals::F(y)) => {
            apply(float_binary(b).ok_or_else(bad)?, &x, &y, &ix, &iy, Vals::F)
        }
        (Vals::I(x), Vals::I(y)) => {
            if matches!(b, BinaryOp::Div | BinaryOp::Rem) && iy.iter().any(|&j| y[j] == 0) {
                return Err(EvalError::DivisionByZero {
                    node: None,
                    op: b.name(),
                });
            }
            apply(int_binary(b).ok_or_else(bad)?, &x, &y, &ix, &iy, Vals::I)
        }
        (Vals::B(x), Vals::B(y)) => {
            apply(bool_binary(b).ok_or_else(bad)?, &x, &y, &ix, &iy, Vals::B)
        }
        _ => {
            return Err(EvalError::malformed(
                b.name(),
                format!("operand dtypes differ: {} vs {}", x.dtype(), y.dtype()),
            ));
        }
    })
}

/// `cond ? a : b` elementwise, all three broadcast to `out_shape`; any dtype.
pub(crate) fn select(
    cond: &Array,
    a: &Array,
    b: &Array,
    out_shape: &[usize],
) -> Result<Array, EvalError> {
    let c = cond.as_bool()?;
    let ic = view_offsets(out_shape, 0, &broadcast_strides(cond.shape(), out_shape));
    let ia = view_offsets(out_shape, 0, &broadcast_strides(a.shape(), out_shape));
    let ib = view_offsets(out_shape, 0, &broadcast_strides(b.shape(), out_shape));
    let data = typed!(a.dtype(), |get, wrap| {
        let (va, vb) = (get(a)?, get(b)?);
        wrap(
            ic.iter()
                .zip(ia.iter().zip(&ib))
                .map(|(&k, (&i, &j))| if c[k] { va[i] } else { vb[j] })
                .collect(),
        )
    });
    Ok(Array::new(out_shape, data)?)
}

/// Float to integer conversion: truncate toward zero (saturating at the `i64` range, NaN to
/// 0), then wrap to the target width, as `Array::from_f64_cast` does.
fn float_to_i64(x: f64) -> i64 {
    x as i64
}

/// Converts every element to `to`: floats round to nearest, float to integer truncates toward
/// zero then wraps, integers wrap, bool is 0/1, and anything to bool is `!= 0` (NaN is true).
pub(crate) fn cast(x: &Array, to: DType) -> Result<Array, EvalError> {
    fn conv<T: Copy, U>(v: &[T], f: impl Fn(T) -> U) -> Vec<U> {
        v.iter().map(|&x| f(x)).collect()
    }
    let data = match (x.data(), to) {
        (Data::F32(v), DType::F32) => Data::F32(v.clone()),
        (Data::F32(v), DType::F64) => Data::F64(conv(v, f64::from)),
        (Data::F32(v), DType::I32) => Data::I32(conv(v, |x| float_to_i64(f64::from(x)) as i32)),
        (Data::F32(v), DType::I64) => Data::I64(conv(v, |x| float_to_i64(f64::from(x)))),
        (Data::F32(v), DType::U32) => Data::U32(conv(v, |x| float_to_i64(f64::from(x)) as u32)),
        (Data::F32(v), DType::Bool) => Data::Bool(conv(v, |x| x != 0.0)),
        (Data::F64(v), DType::F32) => Data::F32(conv(v, |x| x as f32)),
        (Data::F64(v), DType::F64) => Data::F64(v.clone()),
        (Data::F64(v), DType::I32) => Data::I32(conv(v, |x| float_to_i64(x) as i32)),
        (Data::F64(v), DType::I64) => Data::I64(conv(v, float_to_i64)),
        (Data::F64(v), DType::U32) => Data::U32(conv(v, |x| float_to_i64(x) as u32)),
        (Data::F64(v), DType::Bool) => Data::Bool(conv(v, |x| x != 0.0)),
        (Data::I32(v), DType::F32) => Data::F32(conv(v, |x| x as f32)),
        (Data::I32(v), DType::F64) => Data::F64(conv(v, f64::from)),
        (Data::I32(v), DType::I32) => Data::I32(v.clone()),
        (Data::I32(v), DType::I64) => Data::I64(conv(v, i64::from)),
        (Data::I32(v), DType::U32) => Data::U32(conv(v, |x| x as u32)),
        (Data::I32(v), DType::Bool) => Data::Bool(conv(v, |x| x != 0)),
        (Data::I64(v), DType::F32) => Data::F32(conv(v, |x| x as f32)),
        (Data::I64(v), DType::F64) => Data::F64(conv(v, |x| x as f64)),
        (Data::I64(v), DType::I32) => Data::I32(conv(v, |x| x as i32)),
        (Data::I64(v), DType::I64) => Data::I64(v.clone()),
        (Data::I64(v), DType::U32) => Data::U32(conv(v, |x| x as u32)),
        (Data::I64(v), DType::Bool) => Data::Bool(conv(v, |x| x != 0)),
        (Data::U32(v), DType::F32) => Data::F32(conv(v, |x| x as f32)),
        (Data::U32(v), DType::F64) => Data::F64(conv(v, f64::from)),
        (Data::U32(v), DType::I32) => Data::I32(conv(v, |x| x as i32)),
        (Data::U32(v), DType::I64) => Data::I64(conv(v, i64::from)),
        (Data::U32(v), DType::U32) => Data::U32(v.clone()),
        (Data::U32(v), DType::Bool) => Data::Bool(conv(v, |x| x != 0)),
        (Data::Bool(v), DType::F32) => Data::F32(conv(v, |x| if x { 1.0 } else { 0.0 })),
        (Data::Bool(v), DType::F64) => Data::F64(conv(v, |x| if x { 1.0 } else { 0.0 })),
        (Data::Bool(v), DType::I32) => Data::I32(conv(v, i32::from)),
        (Data::Bool(v), DType::I64) => Data::I64(conv(v, i64::from)),
        (Data::Bool(v), DType::U32) => Data::U32(conv(v, u32::from)),
        (Data::Bool(v), DType::Bool) => Data::Bool(v.clone()),
    };
    Ok(Array::new(x.shape(), data)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{f32s, f64s, i32s, i64s, u32s};

    fn un(u: UnaryOp, x: &Array) -> Array {
        let dt = if u == UnaryOp::IsNan {
            DType::Bool
        } else {
            x.dtype()
        };
        crate::eval_op(&kiln_ir::Op::Unary(u), &[x], dt, x.shape()).unwrap()
    }

    fn bin(b: BinaryOp, x: &Array, y: &Array, shape: &[usize]) -> Result<Array, EvalError> {
        let dt = if b.is_comparison() {
            DType::Bool
        } else {
            x.dtype()
        };
        crate::eval_op(&kiln_ir::Op::Binary(b), &[x, y], dt, shape)
    }

    #[test]
    fn float_unaries() {
        let x = f32s(&[4], &[-2.0, -0.5, 0.25, 4.0]);
        assert_eq!(
            un(UnaryOp::Neg, &x).as_f32().unwrap(),
            &[2.0, 0.5, -0.25, -4.0]
        );
        assert_eq!(
            un(UnaryOp::Abs, &x).as_f32().unwrap(),
            &[2.0, 0.5, 0.25, 4.0]
        );
        assert_eq!(
            un(UnaryOp::Recip, &x).as_f32().unwrap(),
            &[-0.5, -2.0, 4.0, 0.25]
        );
        assert_eq!(
            un(UnaryOp::Floor, &x).as_f32().unwrap(),
            &[-2.0, -1.0, 0.0, 4.0]
        );
        assert_eq!(
            un(UnaryOp::Ceil, &x).as_f32().unwrap(),
            &[-2.0, -0.0, 1.0, 4.0]
        );
        assert_eq!(
            un(UnaryOp::Sign, &x).as_f32().unwrap(),
            &[-1.0, -1.0, 1.0, 1.0]
        );
        let p = f32s(&[3], &[0.25, 4.0, 1.0]);
        assert_eq!(un(UnaryOp::Sqrt, &p).as_f32().unwrap(), &[0.5, 2.0, 1.0]);
        assert_eq!(un(UnaryOp::Rsqrt, &p).as_f32().unwrap(), &[2.0, 0.5, 1.0]);
        assert_eq!(
            un(UnaryOp::Log, &p).as_f32().unwrap(),
            &[(0.25f64.ln()) as f32, 4f64.ln() as f32, 0.0]
        );
        let e = un(UnaryOp::Exp, &f64s(&[2], &[0.0, 1.0]));
        assert_eq!(e.as_f64().unwrap(), &[1.0, std::f64::consts::E]);
        let t = un(UnaryOp::Tanh, &f64s(&[3], &[0.0, 0.5, -30.0]));
        assert_eq!(t.as_f64().unwrap(), &[0.0, 0.5f64.tanh(), -1.0]);
        let s = un(UnaryOp::Sin, &f64s(&[1], &[std::f64::consts::FRAC_PI_2]));
        assert_eq!(s.as_f64().unwrap(), &[1.0]);
        let c = un(UnaryOp::Cos, &f64s(&[1], &[0.0]));
        assert_eq!(c.as_f64().unwrap(), &[1.0]);
        let e = un(UnaryOp::Erf, &f32s(&[2], &[0.5, -1.0]));
        assert_eq!(
            e.as_f32().unwrap(),
            &[0.5204998778130465f64 as f32, -0.8427007929497149f64 as f32]
        );
    }

    #[test]
    fn round_is_half_to_even_and_sign_keeps_nan() {
        let x = f32s(&[6], &[0.5, 1.5, 2.5, -0.5, -1.5, 2.6]);
        assert_eq!(
            un(UnaryOp::Round, &x).as_f32().unwrap(),
            &[0.0, 2.0, 2.0, -0.0, -2.0, 3.0]
        );
        let s = un(UnaryOp::Sign, &f64s(&[3], &[f64::NAN, 0.0, -3.0]));
        let s = s.as_f64().unwrap();
        assert!(s[0].is_nan());
        assert_eq!(&s[1..], &[0.0, -1.0]);
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        let s = un(UnaryOp::Sigmoid, &f64s(&[4], &[0.0, 800.0, -800.0, 2.0]));
        assert_eq!(
            s.as_f64().unwrap(),
            &[0.5, 1.0, 0.0, 1.0 / (1.0 + (-2.0f64).exp())]
        );
        let s = un(UnaryOp::Sigmoid, &f32s(&[1], &[-100.0]));
        assert_eq!(s.as_f32().unwrap(), &[(-100.0f64).exp() as f32]);
    }

    #[test]
    fn is_nan_and_not() {
        let n = un(UnaryOp::IsNan, &f32s(&[3], &[f32::NAN, 1.0, f32::INFINITY]));
        assert_eq!(n.as_bool().unwrap(), &[true, false, false]);
        let b = un(
            UnaryOp::Not,
            &Array::from_bool(&[2], vec![true, false]).unwrap(),
        );
        assert_eq!(b.as_bool().unwrap(), &[false, true]);
        assert_eq!(
            un(UnaryOp::Not, &i32s(&[2], &[0, 5])).as_i32().unwrap(),
            &[-1, -6]
        );
        assert_eq!(
            un(UnaryOp::Not, &u32s(&[1], &[0])).as_u32().unwrap(),
            &[u32::MAX]
        );
    }

    #[test]
    fn integer_unaries_wrap() {
        let x = i32s(&[4], &[i32::MIN, -3, 0, 7]);
        assert_eq!(
            un(UnaryOp::Neg, &x).as_i32().unwrap(),
            &[i32::MIN, 3, 0, -7]
        );
        assert_eq!(un(UnaryOp::Abs, &x).as_i32().unwrap(), &[i32::MIN, 3, 0, 7]);
        assert_eq!(un(UnaryOp::Sign, &x).as_i32().unwrap(), &[-1, -1, 0, 1]);
        assert_eq!(
            un(UnaryOp::Neg, &u32s(&[2], &[1, 0])).as_u32().unwrap(),
            &[u32::MAX, 0]
        );
        assert_eq!(
            un(UnaryOp::Abs, &i64s(&[1], &[i64::MIN])).as_i64().unwrap(),
            &[i64::MIN]
        );
    }

    #[test]
    fn float_binaries_broadcast_and_round_once() {
        let a = f32s(&[2, 1], &[1.0, 2.0]);
        let b = f32s(&[3], &[10.0, 20.0, 30.0]);
        let s = bin(BinaryOp::Add, &a, &b, &[2, 3]).unwrap();
        assert_eq!(s.shape(), &[2, 3]);
        assert_eq!(s.as_f32().unwrap(), &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
        let d = bin(BinaryOp::Sub, &b, &a, &[2, 3]).unwrap();
        assert_eq!(d.as_f32().unwrap(), &[9.0, 19.0, 29.0, 8.0, 18.0, 28.0]);
        let third = bin(BinaryOp::Div, &f32s(&[], &[1.0]), &f32s(&[], &[3.0]), &[]).unwrap();
        assert_eq!(third.as_f32().unwrap(), &[1.0f32 / 3.0]);
        let p = bin(
            BinaryOp::Pow,
            &f64s(&[2], &[2.0, 9.0]),
            &f64s(&[1], &[0.5]),
            &[2],
        )
        .unwrap();
        assert_eq!(p.as_f64().unwrap(), &[2f64.sqrt(), 3.0]);
        let m = bin(
            BinaryOp::Mul,
            &f32s(&[1, 1], &[2.0]),
            &f32s(&[2], &[3.0, -1.0]),
            &[1, 2],
        )
        .unwrap();
        assert_eq!(m.as_f32().unwrap(), &[6.0, -2.0]);
        let z = bin(
            BinaryOp::Div,
            &f32s(&[2], &[1.0, -1.0]),
            &f32s(&[1], &[0.0]),
            &[2],
        )
        .unwrap();
        assert_eq!(z.as_f32().unwrap(), &[f32::INFINITY, f32::NEG_INFINITY]);
    }

    #[test]
    fn float_rem_takes_divisor_sign() {
        let a = f64s(&[4], &[5.5, -5.5, 5.5, -5.5]);
        let b = f64s(&[4], &[2.0, 2.0, -2.0, -2.0]);
        let r = bin(BinaryOp::Rem, &a, &b, &[4]).unwrap();
        assert_eq!(r.as_f64().unwrap(), &[1.5, 0.5, -0.5, -1.5]);
    }

    #[test]
    fn max_min_propagate_nan() {
        let a = f32s(&[3], &[1.0, f32::NAN, 3.0]);
        let b = f32s(&[3], &[2.0, 0.0, f32::NAN]);
        let m = bin(BinaryOp::Max, &a, &b, &[3]).unwrap();
        let m = m.as_f32().unwrap();
        assert_eq!(m[0], 2.0);
        assert!(m[1].is_nan() && m[2].is_nan());
        let m = bin(BinaryOp::Min, &a, &b, &[3]).unwrap();
        let m = m.as_f32().unwrap();
        assert_eq!(m[0], 1.0);
        assert!(m[1].is_nan() && m[2].is_nan());
    }

    #[test]
    fn comparisons_with_nan() {
        let a = f32s(&[3], &[1.0, f32::NAN, 2.0]);
        let b = f32s(&[3], &[1.0, f32::NAN, 1.0]);
        let r = |op| bin(op, &a, &b, &[3]).unwrap().as_bool().unwrap().to_vec();
        assert_eq!(r(BinaryOp::Eq), vec![true, false, false]);
        assert_eq!(r(BinaryOp::Ne), vec![false, true, true]);
        assert_eq!(r(BinaryOp::Lt), vec![false, false, false]);
        assert_eq!(r(BinaryOp::Le), vec![true, false, false]);
        assert_eq!(r(BinaryOp::Gt), vec![false, false, true]);
        assert_eq!(r(BinaryOp::Ge), vec![true, false, true]);
    }

    #[test]
    fn integer_division_floors_and_rem_follows_divisor() {
        let a = i32s(&[4], &[7, -7, 7, -7]);
        let b = i32s(&[4], &[2, 2, -2, -2]);
        assert_eq!(
            bin(BinaryOp::Div, &a, &b, &[4]).unwrap().as_i32().unwrap(),
            &[3, -4, -4, 3]
        );
        assert_eq!(
            bin(BinaryOp::Rem, &a, &b, &[4]).unwrap().as_i32().unwrap(),
            &[1, 1, -1, -1]
        );
        let m = bin(
            BinaryOp::Div,
            &i32s(&[1], &[i32::MIN]),
            &i32s(&[1], &[-1]),
            &[1],
        )
        .unwrap();
        assert_eq!(m.as_i32().unwrap(), &[i32::MIN]);
        let e = bin(
            BinaryOp::Div,
            &i64s(&[2], &[1, 2]),
            &i64s(&[2], &[1, 0]),
            &[2],
        );
        assert_eq!(
            e,
            Err(EvalError::DivisionByZero {
                node: None,
                op: "div"
            })
        );
        let e = bin(BinaryOp::Rem, &u32s(&[1], &[1]), &u32s(&[1], &[0]), &[1]);
        assert_eq!(
            e,
            Err(EvalError::DivisionByZero {
                node: None,
                op: "rem"
            })
        );
    }

    #[test]
    fn integer_arithmetic_wraps_per_dtype() {
        let a = i32s(&[2], &[i32::MAX, 3]);
        let b = i32s(&[2], &[1, -5]);
        assert_eq!(
            bin(BinaryOp::Add, &a, &b, &[2]).unwrap().as_i32().unwrap(),
            &[i32::MIN, -2]
        );
        let u = bin(BinaryOp::Sub, &u32s(&[1], &[0]), &u32s(&[1], &[1]), &[1]).unwrap();
        assert_eq!(u.as_u32().unwrap(), &[u32::MAX]);
        let u = bin(
            BinaryOp::Mul,
            &u32s(&[1], &[u32::MAX]),
            &u32s(&[1], &[u32::MAX]),
            &[1],
        )
        .unwrap();
        assert_eq!(u.as_u32().unwrap(), &[1]);
        let u = bin(
            BinaryOp::Lt,
            &u32s(&[1], &[u32::MAX]),
            &u32s(&[1], &[1]),
            &[1],
        )
        .unwrap();
        assert_eq!(u.as_bool().unwrap(), &[false]);
        let x = bin(
            BinaryOp::Xor,
            &i64s(&[2], &[0b1100, -1]),
            &i64s(&[1], &[0b1010]),
            &[2],
        )
        .unwrap();
        assert_eq!(x.as_i64().unwrap(), &[0b0110, !0b1010]);
        let m = bin(BinaryOp::Max, &i64s(&[2], &[-3, 4]), &i64s(&[], &[0]), &[2]).unwrap();
        assert_eq!(m.as_i64().unwrap(), &[0, 4]);
    }

    #[test]
    fn bool_logic() {
        let a = Array::from_bool(&[4], vec![false, false, true, true]).unwrap();
        let b = Array::from_bool(&[4], vec![false, true, false, true]).unwrap();
        let r = |op| bin(op, &a, &b, &[4]).unwrap().as_bool().unwrap().to_vec();
        assert_eq!(r(BinaryOp::And), vec![false, false, false, true]);
        assert_eq!(r(BinaryOp::Or), vec![false, true, true, true]);
        assert_eq!(r(BinaryOp::Xor), vec![false, true, true, false]);
        assert_eq!(r(BinaryOp::Eq), vec![true, false, false, true]);
        assert_eq!(r(BinaryOp::Ne), vec![false, true, true, false]);
    }

    #[test]
    fn select_broadcasts_every_operand() {
        let c = Array::from_bool(&[2, 1], vec![true, false]).unwrap();
        let a = i32s(&[3], &[1, 2, 3]);
        let b = i32s(&[], &[-1]);
        let r = crate::eval_op(&kiln_ir::Op::Select, &[&c, &a, &b], DType::I32, &[2, 3]).unwrap();
        assert_eq!(r.as_i32().unwrap(), &[1, 2, 3, -1, -1, -1]);
        let nan = f32s(&[1], &[f32::NAN]);
        let one = f32s(&[1], &[1.0]);
        let c = Array::from_bool(&[2], vec![false, true]).unwrap();
        let r = crate::eval_op(&kiln_ir::Op::Select, &[&c, &nan, &one], DType::F32, &[2]).unwrap();
        let r = r.as_f32().unwrap();
        assert_eq!(r[0], 1.0);
        assert!(r[1].is_nan());
        let r = crate::eval_op(&kiln_ir::Op::Select, &[&c, &one, &nan], DType::F32, &[2]).unwrap();
        assert!(r.as_f32().unwrap()[0].is_nan());
    }

    #[test]
    fn casts() {
        let c = |x: &Array, to| cast(x, to).unwrap();
        let f = f32s(&[5], &[-1.7, 2.9, f32::NAN, 3e9, -0.0]);
        assert_eq!(
            c(&f, DType::I32).as_i32().unwrap(),
            &[-1, 2, 0, 3_000_000_000i64 as i32, 0]
        );
        assert_eq!(
            c(&f, DType::I64).as_i64().unwrap(),
            &[-1, 2, 0, 3_000_000_000, 0]
        );
        assert_eq!(
            c(&f, DType::U32).as_u32().unwrap(),
            &[u32::MAX, 2, 0, 3_000_000_000, 0]
        );
        assert_eq!(
            c(&f, DType::Bool).as_bool().unwrap(),
            &[true, true, true, true, false]
        );
        let big = i64s(&[2], &[(1 << 53) + 1, (1 << 24) + 1]);
        assert_eq!(
            c(&big, DType::F32).as_f32().unwrap(),
            &[(1u64 << 53) as f32, 16777216.0]
        );
        assert_eq!(
            c(&big, DType::F64).as_f64().unwrap(),
            &[9007199254740992.0, 16777217.0]
        );
        assert_eq!(c(&big, DType::I32).as_i32().unwrap(), &[1, (1 << 24) + 1]);
        let b = Array::from_bool(&[2], vec![true, false]).unwrap();
        assert_eq!(c(&b, DType::F32).as_f32().unwrap(), &[1.0, 0.0]);
        assert_eq!(c(&b, DType::U32).as_u32().unwrap(), &[1, 0]);
        assert_eq!(
            c(&u32s(&[1], &[u32::MAX]), DType::I32).as_i32().unwrap(),
            &[-1]
        );
        assert_eq!(
            c(&i32s(&[1], &[-1]), DType::U32).as_u32().unwrap(),
            &[u32::MAX]
        );
        assert_eq!(
            c(&f64s(&[1], &[0.1]), DType::F32).as_f32().unwrap(),
            &[0.1f32]
        );
    }
}
