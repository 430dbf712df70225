//! Elementwise ops: unary math and activations, binary arithmetic and comparisons with
//! numpy broadcasting, variadic Sum/Mean/Max/Min, Where, Cast, Clip. Arithmetic on shape
//! vectors (`Known::Dims`) is done on the dims, so symbolic shapes stay symbolic.

use super::{NodeCx, OpResult, bail, need_float};
use crate::narrow::{normalize, u64_div_rem, u64_to_float, unsigned_key, with_type};
use crate::tensor::{ElemType, Narrow, elem_type};
use crate::value::{Known, Value};
use kiln::Tensor;
use kiln_ir::{DType, Dim};

fn unary(cx: &mut NodeCx<'_>, f: impl FnOnce(&Tensor) -> Tensor) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    Ok(vec![Value::tensor(f(&x))])
}

fn float_unary(
    cx: &mut NodeCx<'_>,
    op: &str,
    f: impl FnOnce(&Tensor) -> Tensor,
) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, op)?;
    Ok(vec![Value::tensor(f(&x))])
}

macro_rules! float_unaries {
    ($($name:ident, $op:literal, |$x:ident| $body:expr;)*) => {
        $(
            pub fn $name(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
                float_unary(cx, $op, |$x| $body)
            }
        )*
    };
}

float_unaries! {
    exp, "Exp", |x| x.exp();
    log, "Log", |x| x.log();
    sqrt, "Sqrt", |x| x.sqrt();
    reciprocal, "Reciprocal", |x| x.recip();
    sin, "Sin", |x| x.sin();
    cos, "Cos", |x| x.cos();
    tan, "Tan", |x| x.sin().div(x.cos());
    tanh, "Tanh", |x| x.tanh();
    sigmoid, "Sigmoid", |x| x.sigmoid();
    erf, "Erf", |x| x.erf();
    floor, "Floor", |x| x.floor();
    ceil, "Ceil", |x| x.ceil();
    round, "Round", |x| x.round();
    sinh, "Sinh", |x| x.exp().sub(x.neg().exp()).mul(0.5);
    cosh, "Cosh", |x| x.exp().add(x.neg().exp()).mul(0.5);
    asinh, "Asinh", |x| x.add(x.square().add(1.0).sqrt()).log();
    acosh, "Acosh", |x| x.add(x.square().sub(1.0).sqrt()).log();
    atanh, "Atanh", |x| x.add(1.0).div(x.neg().add(1.0)).log().mul(0.5);
    atan, "Atan", |x| x.atan();
    asin, "Asin", |x| x.asin();
    acos, "Acos", |x| x.asin().neg().add(std::f64::consts::FRAC_PI_2);
    softsign, "Softsign", |x| x.div(x.abs().add(1.0));
    mish, "Mish", |x| x.mul(x.softplus().tanh());
}

pub fn abs(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    unary(cx, Tensor::abs)
}

pub fn neg(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    unary(cx, Tensor::neg)
}

pub fn sign(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    unary(cx, Tensor::sign)
}

pub fn not(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    if x.dtype() != DType::Bool {
        bail!("Not needs a bool input, got {}", x.dtype());
    }
    Ok(vec![Value::tensor(x.logical_not())])
}

pub fn is_nan(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    float_unary(cx, "IsNaN", Tensor::is_nan)
}

pub fn is_inf(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let (pos, neg) = (
        cx.attr_i("detect_positive", 1),
        cx.attr_i("detect_negative", 1),
    );
    float_unary(cx, "IsInf", |x| {
        let p = x.eq(f64::INFINITY);
        let n = x.eq(f64::NEG_INFINITY);
        match (pos != 0, neg != 0) {
            (true, true) => p.logical_or(&n),
            (true, false) => p,
            (false, true) => n,
            (false, false) => p.logical_and(&n),
        }
    })
}

pub fn identity(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    Ok(vec![cx.input(0)?.clone()])
}

pub fn dropout(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if let Some(v) = cx.opt_input(2)
        && v.as_array()
            .is_none_or(|a| a.to_f64_vec().iter().any(|&t| t != 0.0))
    {
        bail!("Dropout in training mode is not supported (training_mode must be a constant false)");
    }
    let x = cx.input(0)?.clone();
    let mut out = vec![x];
    if cx.n_outputs() > 1 {
        let t = cx.tensor(0)?;
        out.push(Value::tensor(t.ones_like().cast(DType::Bool)));
    }
    Ok(out)
}

pub fn relu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    unary(cx, Tensor::relu)
}

pub fn leaky_relu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 0.01);
    float_unary(cx, "LeakyRelu", |x| x.leaky_relu(alpha))
}

pub fn elu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 1.0);
    float_unary(cx, "Elu", |x| {
        x.gt(0.0).where_(x, x.exp().sub(1.0).mul(alpha))
    })
}

pub fn celu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 1.0);
    float_unary(cx, "Celu", |x| {
        x.relu()
            .add(x.div(alpha).exp().sub(1.0).mul(alpha).minimum(0.0))
    })
}

pub fn selu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 1.673_263_192_176_818_8);
    let gamma = cx.attr_f("gamma", 1.050_701_022_148_132_3);
    float_unary(cx, "Selu", |x| {
        x.gt(0.0).where_(x, x.exp().sub(1.0).mul(alpha)).mul(gamma)
    })
}

pub fn softplus(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    float_unary(cx, "Softplus", Tensor::softplus)
}

pub fn hard_sigmoid(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let (alpha, beta) = (cx.attr_f("alpha", 0.2), cx.attr_f("beta", 0.5));
    float_unary(cx, "HardSigmoid", |x| {
        x.mul(alpha).add(beta).clamp(0.0, 1.0)
    })
}

pub fn hard_swish(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    float_unary(cx, "HardSwish", |x| {
        x.mul(x.mul(1.0 / 6.0).add(0.5).clamp(0.0, 1.0))
    })
}

pub fn swish(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 1.0);
    float_unary(cx, "Swish", |x| x.mul(x.mul(alpha).sigmoid()))
}

pub fn thresholded_relu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 1.0);
    float_unary(cx, "ThresholdedRelu", |x| x.gt(alpha).where_(x, 0.0))
}

pub fn shrink(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let (lambd, bias) = (cx.attr_f("lambd", 0.5), cx.attr_f("bias", 0.0));
    unary(cx, |x| {
        let lo = x.lt(-lambd).where_(x.add(bias), 0.0);
        x.gt(lambd).where_(x.sub(bias), &lo)
    })
}

pub fn gelu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let approx = cx.attr_s("approximate", "none");
    match approx.as_str() {
        "none" => float_unary(cx, "Gelu", Tensor::gelu),
        "tanh" => float_unary(cx, "Gelu", Tensor::gelu_tanh),
        other => bail!("Gelu approximate={other:?} is not one of \"none\", \"tanh\""),
    }
}

pub fn prelu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let slope = cx.tensor(1)?;
    Ok(vec![Value::tensor(x.lt(0.0).where_(x.mul(&slope), &x))])
}

pub fn cast(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let to = cx.attr_i("to", 0);
    let to =
        elem_type(i32::try_from(to).unwrap_or(-1)).map_err(|e| super::OpError(e.to_string()))?;
    cast_to(cx, to)
}

pub fn cast_like(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let target = cx.input(1)?;
    let to = ElemType {
        dtype: target.dtype,
        narrow: target.narrow,
    };
    cast_to(cx, to)
}

/// `BitCast` between integer types of one width (and bool to a byte): the same bits read
/// in the other type, which for two's-complement integers is a wrapping cast. Float bit
/// patterns are refused: kiln has no bit-reinterpreting op.
pub fn bit_cast(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let to = cx.attr_i("to", 0);
    let to =
        elem_type(i32::try_from(to).unwrap_or(-1)).map_err(|e| super::OpError(e.to_string()))?;
    let v = cx.input(0)?;
    let from = ElemType {
        dtype: v.dtype,
        narrow: v.narrow,
    };
    if from.bytes() != to.bytes() {
        bail!(
            "BitCast needs types of one width, got {} and {} bytes per element",
            from.bytes(),
            to.bytes()
        );
    }
    if from.dtype.is_float() || to.dtype.is_float() {
        bail!("BitCast of float bit patterns is not supported (kiln has no bit-reinterpreting op)");
    }
    cast_to(cx, to)
}

/// Casts input 0 to `to`: through the carrier dtypes, then into `to`'s value set (integers
/// wrap, `float16`/`bfloat16` round); `uint64` sources convert by their unsigned value.
fn cast_to(cx: &mut NodeCx<'_>, to: ElemType) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let v = cx.input(0)?.clone();
    if let Known::Dims { dims, scalar } = v.known()
        && matches!(to.dtype, DType::I64 | DType::I32)
        && to.narrow.is_none()
    {
        return Ok(vec![Value::dims_of(dims.clone(), *scalar, to.dtype)]);
    }
    if v.dtype == to.dtype && v.narrow == to.narrow {
        return Ok(vec![v]);
    }
    let x = cx.tensor(0)?;
    let mut y = if v.narrow == Some(Narrow::U64) && to.dtype.is_float() {
        u64_to_float(&x, to.dtype)
    } else if x.dtype() == to.dtype {
        x
    } else if x.dtype().is_float() && to.dtype == DType::I32 && to.narrow.is_some() {
        // Truncate through i64 so the wrap sees the whole integer part.
        x.cast(DType::I64).cast(DType::I32)
    } else {
        x.cast(to.dtype)
    };
    if let Some(n) = to.narrow {
        y = normalize(&y, n);
    }
    Ok(vec![Value::tensor(y).with_narrow(to.narrow)])
}

pub fn clip(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let u64 = is_u64(cx, 0);
    let x = cx.tensor(0)?;
    let mut y = x.clone();
    if cx.opset < 11 {
        let (lo, hi) = (
            cx.attr_f("min", f64::NEG_INFINITY),
            cx.attr_f("max", f64::INFINITY),
        );
        return Ok(vec![Value::tensor(y.maximum(lo).minimum(hi))]);
    }
    // uint64 bounds compare unsigned: clip the keys.
    let key = |t: &Tensor| if u64 { unsigned_key(t) } else { t.clone() };
    y = key(&y);
    if cx.opt_input(1).is_some() {
        y = y.maximum(key(&cx.tensor(1)?));
    }
    if cx.opt_input(2).is_some() {
        y = y.minimum(key(&cx.tensor(2)?));
    }
    Ok(vec![Value::tensor(key(&y))])
}

/// Elementwise arithmetic on dims (shape vectors), broadcasting a scalar.
fn dims_binary(a: &[Dim], b: &[Dim], f: impl Fn(&Dim, &Dim) -> Option<Dim>) -> Option<Vec<Dim>> {
    let n = a.len().max(b.len());
    if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
        return None;
    }
    (0..n)
        .map(|i| f(&a[i.min(a.len() - 1)], &b[i.min(b.len() - 1)]))
        .collect()
}

/// Folds `a op b` on shape vectors when at least one side is symbolic dims.
fn dims_arith(
    cx: &mut NodeCx<'_>,
    f: impl Fn(&Dim, &Dim) -> Option<Dim>,
) -> OpResult<Option<Value>> {
    let a = cx.input(0)?.clone();
    let b = cx.input(1)?.clone();
    let symbolic =
        matches!(a.known(), Known::Dims { .. }) || matches!(b.known(), Known::Dims { .. });
    if !symbolic || a.dtype != b.dtype || !matches!(a.dtype, DType::I64 | DType::I32) {
        return Ok(None);
    }
    let (Some(da), Some(db)) = (a.as_dims(), b.as_dims()) else {
        return Ok(None);
    };
    if da.is_empty() || db.is_empty() {
        return Ok(None);
    }
    let scalar = a.rank() == 0 && b.rank() == 0;
    Ok(dims_binary(&da, &db, f).map(|d| a.derived_dims(d, scalar)))
}

fn binary(cx: &mut NodeCx<'_>, f: impl FnOnce(&Tensor, &Tensor) -> Tensor) -> OpResult<Vec<Value>> {
    let a = cx.tensor(0)?;
    let b = cx.tensor(1)?;
    if a.dtype() != b.dtype() {
        bail!(
            "operands have different dtypes: {} and {}",
            a.dtype(),
            b.dtype()
        );
    }
    Ok(vec![Value::tensor(f(&a, &b))])
}

pub fn add(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if let Some(v) = dims_arith(cx, |a, b| Some(a + b))? {
        return Ok(vec![v]);
    }
    binary(cx, |a, b| a.add(b))
}

pub fn sub(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if let Some(v) = dims_arith(cx, |a, b| a.checked_sub(b))? {
        return Ok(vec![v]);
    }
    binary(cx, |a, b| a.sub(b))
}

pub fn mul(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if let Some(v) = dims_arith(cx, |a, b| Some(a * b))? {
        return Ok(vec![v]);
    }
    binary(cx, |a, b| a.mul(b))
}

pub fn div(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if is_u64(cx, 0) {
        return binary(cx, |a, b| u64_div_rem(a, b).0);
    }
    if let Some(v) = dims_arith(cx, |a, b| a.exact_div(b))? {
        return Ok(vec![v]);
    }
    binary(cx, |a, b| {
        if a.dtype().is_float() {
            return a.div(b);
        }
        // ONNX integer division truncates toward zero; kiln's floors.
        let q = a.div(b);
        let inexact = q.mul(b).ne(a);
        let signs_differ = a.lt(0.0).logical_xor(b.lt(0.0));
        inexact.logical_and(&signs_differ).where_(q.add(1.0), &q)
    })
}

pub fn modulo(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if is_u64(cx, 0) {
        return binary(cx, |a, b| u64_div_rem(a, b).1);
    }
    let fmod = cx.attr_i("fmod", 0) != 0;
    binary(cx, |a, b| {
        let r = a.rem(b);
        if !fmod {
            return r;
        }
        // C fmod: the sign of the dividend.
        let fix = r.ne(0.0).logical_and(r.lt(0.0).logical_xor(a.lt(0.0)));
        fix.where_(r.sub(b), &r)
    })
}

pub fn pow(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    // The result has the base's type; the exponent may be of another numeric type.
    cx.typed_outputs = true;
    let narrow = cx.input(0)?.narrow;
    let a = cx.tensor(0)?;
    let b = cx.tensor(1)?;
    if a.dtype().is_float() {
        let b = if b.dtype() == a.dtype() {
            b
        } else {
            b.cast(a.dtype())
        };
        return Ok(vec![with_type(cx.g, Value::tensor(a.pow(&b)), narrow)]);
    }
    // Integer powers through f64 (exact below 2^53), rounded back.
    let p = a.cast(DType::F64).pow(b.cast(DType::F64)).round();
    Ok(vec![with_type(
        cx.g,
        Value::tensor(p.cast(a.dtype())),
        narrow,
    )])
}

/// Whether input `i` carries `uint64`, whose order is not its carrier's.
fn is_u64(cx: &mut NodeCx<'_>, i: usize) -> bool {
    cx.opt_input(i)
        .is_some_and(|v| v.narrow == Some(Narrow::U64))
}

macro_rules! compare {
    ($($name:ident => $method:ident;)*) => {
        $(
            pub fn $name(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
                if is_u64(cx, 0) {
                    return binary(cx, |a, b| unsigned_key(a).$method(&unsigned_key(b)));
                }
                binary(cx, |a, b| a.$method(b))
            }
        )*
    };
}

compare! {
    less => lt;
    less_or_equal => le;
    greater => gt;
    greater_or_equal => ge;
}

macro_rules! same_in_any_order {
    ($($name:ident => $method:ident;)*) => {
        $(
            pub fn $name(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
                binary(cx, |a, b| a.$method(b))
            }
        )*
    };
}

same_in_any_order! {
    equal => eq;
    and => logical_and;
    or => logical_or;
    xor => logical_xor;
    bitwise_and => logical_and;
    bitwise_or => logical_or;
    bitwise_xor => logical_xor;
}

pub fn bitwise_not(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let ones = match x.dtype() {
        DType::U32 => f64::from(u32::MAX),
        DType::I32 | DType::I64 => -1.0,
        other => bail!("BitwiseNot needs an integer input, got {other}"),
    };
    Ok(vec![Value::tensor(x.logical_xor(ones))])
}

/// `BitShift` on unsigned integers: a left shift multiplies by `2^y` (wrapping), a right shift
/// divides by it; `2^y` is looked up in a table of the type's powers of two (shift amounts
/// past the width are clamped to it minus one).
pub fn bit_shift(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let left = match cx.attr_s("direction", "").as_str() {
        "LEFT" => true,
        "RIGHT" => false,
        other => bail!("BitShift direction {other:?} is not LEFT or RIGHT"),
    };
    let narrow = cx.input(0)?.narrow;
    let x = cx.tensor(0)?;
    let y = cx.tensor(1)?;
    let bits: u32 = match (x.dtype(), narrow) {
        (DType::I32, Some(Narrow::U8)) => 8,
        (DType::I32, Some(Narrow::U16)) => 16,
        (DType::U32, None) => 32,
        (DType::I64, Some(Narrow::U64)) => 64,
        (d, n) => bail!(
            "BitShift needs an unsigned integer input, got {}",
            n.map_or_else(|| d.to_string(), |n| n.name().to_string())
        ),
    };
    let g = cx.g.clone();
    // Powers of two in the carrier's bits: 2^63 is i64::MIN, which a right shift treats apart.
    let pows: Vec<f64> = (0..bits.min(63)).map(|k| 2f64.powi(k as i32)).collect();
    let table = g.constant(kiln_ir::Array::from_f64_cast(
        x.dtype(),
        &[pows.len()],
        &pows,
    ));
    let amount = y.cast(DType::I64).clamp(0.0, (pows.len() - 1) as f64);
    let shape = amount.shape();
    let flat = amount.reshape(kiln_ir::Shape::new([shape.numel()]));
    let p = table.index_select(0, &flat).reshape(shape);
    let y = y.cast(DType::I64);
    let r = if left {
        if bits == 64 {
            // x << 63 keeps only the lowest bit, in the sign position.
            let top = x.logical_and(1.0).mul(i64::MIN as f64);
            y.ge(63.0).where_(&top, x.mul(&p))
        } else {
            x.mul(&p)
        }
    } else if bits == 64 {
        // Unsigned division of the bits: the high half of a value past i64::MAX is added back.
        // For 1 <= y <= 62, x_u >> y = ((x_u - 2^63) >> y) + 2^(63 - y).
        let low = unsigned_key(&x).div(&p);
        let high = p.ones_like().mul(2f64.powi(62)).div(&p).mul(2.0);
        let shifted = x.lt(0.0).where_(low.add(&high), x.div(&p));
        let top = x.lt(0.0).cast(DType::I64);
        let r = y.ge(63.0).where_(&top, &shifted);
        y.eq(0.0).where_(&x, &r)
    } else {
        x.div(&p)
    };
    Ok(vec![Value::tensor(r)])
}

fn variadic(cx: &mut NodeCx<'_>, f: impl Fn(&Tensor, &Tensor) -> Tensor) -> OpResult<Tensor> {
    let ts = cx.tensors();
    let Some((first, rest)) = ts.split_first() else {
        bail!("needs at least one input");
    };
    let mut acc = first.clone();
    for t in rest {
        if t.dtype() != acc.dtype() {
            bail!(
                "operands have different dtypes: {} and {}",
                acc.dtype(),
                t.dtype()
            );
        }
        acc = f(&acc, t);
    }
    Ok(acc)
}

pub fn sum(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    Ok(vec![Value::tensor(variadic(cx, |a, b| a.add(b))?)])
}

pub fn mean(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let n = cx.inputs.iter().flatten().count() as f64;
    Ok(vec![Value::tensor(variadic(cx, |a, b| a.add(b))?.div(n))])
}

pub fn max(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if is_u64(cx, 0) {
        let m = variadic_keyed(cx, |a, b| a.maximum(b))?;
        return Ok(vec![Value::tensor(m)]);
    }
    Ok(vec![Value::tensor(variadic(cx, |a, b| a.maximum(b))?)])
}

pub fn min(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if is_u64(cx, 0) {
        let m = variadic_keyed(cx, |a, b| a.minimum(b))?;
        return Ok(vec![Value::tensor(m)]);
    }
    Ok(vec![Value::tensor(variadic(cx, |a, b| a.minimum(b))?)])
}

/// A variadic order op on `uint64` values: applied to their unsigned keys.
fn variadic_keyed(cx: &mut NodeCx<'_>, f: impl Fn(&Tensor, &Tensor) -> Tensor) -> OpResult<Tensor> {
    let m = variadic(cx, |a, b| {
        unsigned_key(&f(&unsigned_key(a), &unsigned_key(b)))
    })?;
    Ok(m)
}

pub fn where_(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let c = cx.tensor(0)?;
    let a = cx.tensor(1)?;
    let b = cx.tensor(2)?;
    if c.dtype() != DType::Bool {
        bail!("the condition must be bool, got {}", c.dtype());
    }
    Ok(vec![Value::tensor(c.where_(&a, &b))])
}
