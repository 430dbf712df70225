//! Quantization ops: QuantizeLinear, DequantizeLinear (per-tensor, per-axis and blocked),
//! DynamicQuantizeLinear, and the integer matmul/conv ops (MatMulInteger, ConvInteger,
//! QLinearMatMul, QLinearConv). Integer products are computed exactly in `f64` (every
//! 8/16-bit product sum is far below 2^53) and rounded ties-to-even like the reference.

use super::{NodeCx, OpResult, axis, bail, int_array, nn};
use crate::limits::MAX_DIM;
use crate::narrow::normalize;
use crate::tensor::{Narrow, elem_type};
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{DType, Dim, Shape};

/// A scale or zero point shaped to broadcast against `x`: a scalar or one-element tensor
/// as a scalar, a vector along `axis` (per-axis), or, with `block > 0`, a tensor of `x`'s
/// rank whose `axis` holds one entry per block (repeated to `x`'s size).
fn broadcast_param(
    cx: &NodeCx<'_>,
    p: &Tensor,
    x: &Tensor,
    ax: i64,
    block: i64,
) -> OpResult<Tensor> {
    let ps = p.shape();
    if ps.rank() == 0 {
        return Ok(p.clone());
    }
    if ps.numel().as_known() == Some(1) {
        return Ok(p.reshape(Shape::scalar()));
    }
    let rank = x.shape().rank();
    let a = axis(ax, rank)?;
    if block <= 0 {
        if ps.rank() != 1 {
            bail!("a per-axis scale or zero point must be 1-D, got {ps}");
        }
        if ps.dims()[0] != x.shape().dims()[a] {
            bail!(
                "a per-axis scale or zero point of {ps} does not match axis {a} of {}",
                x.shape()
            );
        }
        let mut dims = vec![Dim::known(1); rank];
        dims[a] = ps.dims()[0].clone();
        return Ok(p.reshape(Shape::new(dims)));
    }
    if ps.rank() != rank {
        bail!(
            "a blocked scale or zero point must have the input's rank, got {ps} for {}",
            x.shape()
        );
    }
    let (Some(n), Some(nb)) = (x.shape().dims()[a].as_known(), ps.dims()[a].as_known()) else {
        bail!("blocked quantization needs a known size along axis {a}");
    };
    let b = block as u64;
    if n > MAX_DIM || nb.checked_mul(b).is_none_or(|c| c < n) || (nb - 1).saturating_mul(b) >= n {
        bail!("block_size {block} does not give {nb} blocks along an axis of {n}");
    }
    let idx: Vec<i64> = (0..n as i64).map(|i| i / block).collect();
    let idx = cx.g.constant(int_array(&[n as usize], idx)?);
    Ok(p.index_select(a as i64, &idx))
}

/// The integer range of a quantized type.
fn range_of(n: Narrow) -> OpResult<(f64, f64)> {
    match n.int_range() {
        Some((lo, hi)) => Ok((lo as f64, hi as f64)),
        None => bail!("{} is not a quantized integer type", n.name()),
    }
}

fn as_f32(t: &Tensor) -> Tensor {
    if t.dtype() == DType::F32 {
        t.clone()
    } else {
        t.cast(DType::F32)
    }
}

pub fn quantize_linear(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let x_narrow = cx.input(0)?.narrow;
    let x = cx.tensor(0)?;
    if !x.dtype().is_float() {
        bail!("QuantizeLinear needs a float input, got {}", x.dtype());
    }
    let scale = cx.tensor(1)?;
    let zp_narrow = cx.opt_input(2).map(|v| v.narrow);
    let out = match (zp_narrow, cx.has_attr("output_dtype")) {
        (Some(Some(n)), _) => n,
        (Some(None), _) => bail!("the zero point must be a quantized integer type"),
        (None, true) => {
            let code = i32::try_from(cx.attr_i("output_dtype", 2)).unwrap_or(-1);
            match elem_type(code)
                .map_err(|e| super::OpError(e.to_string()))?
                .narrow
            {
                Some(n) => n,
                None => bail!("output_dtype must be a quantized integer type"),
            }
        }
        (None, false) => Narrow::U8,
    };
    let (lo, hi) = range_of(out)?;
    let (ax, block) = (cx.attr_i("axis", 1), cx.attr_i("block_size", 0));
    let scale = broadcast_param(cx, &scale, &x, ax, block)?;
    // The division runs in the input's type unless `precision` names a wider one.
    let wide = cx.attr_i("precision", 0) != 0;
    let mut q = x.div(&scale);
    if x_narrow == Some(Narrow::F16) && !wide {
        q = normalize(&q, Narrow::F16);
    }
    let mut y = q.round();
    if cx.opt_input(2).is_some() {
        let zp = cx.tensor(2)?;
        let zp = broadcast_param(cx, &zp, &x, ax, block)?;
        y = y.add(zp.cast(y.dtype()));
    }
    let y = y.clamp(lo, hi).cast(DType::I32);
    Ok(vec![Value::tensor(y).with_narrow(Some(out))])
}

pub fn dequantize_linear(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let x = cx.tensor(0)?;
    if x.dtype().is_float() || x.dtype() == DType::Bool {
        bail!("DequantizeLinear needs an integer input, got {}", x.dtype());
    }
    let scale_narrow = cx.input(1)?.narrow;
    let scale = cx.tensor(1)?;
    let (ax, block) = (cx.attr_i("axis", 1), cx.attr_i("block_size", 0));
    let scale = broadcast_param(cx, &scale, &x, ax, block)?;
    let mut d = as_f32(&x);
    if cx.opt_input(2).is_some() {
        let zp = cx.tensor(2)?;
        let zp = broadcast_param(cx, &zp, &x, ax, block)?;
        d = d.sub(as_f32(&zp));
    }
    let y = d.mul(as_f32(&scale));
    let out = if cx.has_attr("output_dtype") && cx.attr_i("output_dtype", 0) != 0 {
        let code = i32::try_from(cx.attr_i("output_dtype", 0)).unwrap_or(-1);
        elem_type(code).map_err(|e| super::OpError(e.to_string()))?
    } else {
        crate::tensor::ElemType {
            dtype: scale.dtype(),
            narrow: scale_narrow,
        }
    };
    if !out.dtype.is_float() {
        bail!("DequantizeLinear's output must be a float type");
    }
    let y = if y.dtype() == out.dtype {
        y
    } else {
        y.cast(out.dtype)
    };
    let y = match out.narrow {
        Some(n) => normalize(&y, n),
        None => y,
    };
    Ok(vec![Value::tensor(y).with_narrow(out.narrow)])
}

pub fn dynamic_quantize_linear(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let x = cx.tensor(0)?;
    if x.dtype() != DType::F32 {
        bail!(
            "DynamicQuantizeLinear needs a float32 input, got {}",
            x.dtype()
        );
    }
    let all: Vec<i64> = (0..x.rank() as i64).collect();
    let maxx = x.max(all.as_slice(), false).maximum(0.0);
    let minx = x.min(all.as_slice(), false).minimum(0.0);
    let span = maxx.eq(&minx).where_(maxx.ones_like(), maxx.sub(&minx));
    let scale = span.div(255.0);
    let zp = minx.div(&scale).neg().clamp(0.0, 255.0).round();
    let y = x.div(&scale).round().add(&zp).clamp(0.0, 255.0);
    Ok(vec![
        Value::tensor(y.cast(DType::I32)).with_narrow(Some(Narrow::U8)),
        Value::tensor(scale),
        Value::tensor(zp.cast(DType::I32)).with_narrow(Some(Narrow::U8)),
    ])
}

/// Input `i` minus its zero point (input `zp_index`, if given), exactly, in `f64`.
/// `zp_axis` places a per-row or per-column zero point: the axis of `x` it runs along
/// (counted from the end), or `None` for a scalar.
fn centered(cx: &mut NodeCx<'_>, i: usize, zp_index: usize, zp_axis: i64) -> OpResult<Tensor> {
    let x = cx.tensor(i)?;
    if x.dtype().is_float() || x.dtype() == DType::Bool {
        bail!("input {i} must be an integer tensor, got {}", x.dtype());
    }
    let xf = x.cast(DType::F64);
    if cx.opt_input(zp_index).is_none() {
        return Ok(xf);
    }
    let zp = cx.tensor(zp_index)?;
    let zp = if zp.shape().rank() == 1 && zp.shape().numel().as_known() != Some(1) {
        broadcast_param(cx, &zp, &x, zp_axis, 0)?
    } else {
        broadcast_param(cx, &zp, &x, 0, 0)?
    };
    Ok(xf.sub(zp.cast(DType::F64)))
}

pub fn matmul_integer(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    // A's zero point runs along its rows (axis -2), B's along its columns (axis -1).
    let a = centered(cx, 0, 2, -2)?;
    let b = centered(cx, 1, 3, -1)?;
    Ok(vec![Value::tensor(a.matmul(&b).cast(DType::I32))])
}

/// The product's scale `a_scale * b_scale / y_scale` in the scales' type (rounded to half
/// precision after each step when they are `float16`), then as `f64`.
fn requant_scale(cx: &mut NodeCx<'_>, a: usize, b: usize, y: usize) -> OpResult<Tensor> {
    let half = cx.input(a)?.narrow == Some(Narrow::F16);
    let step = |t: Tensor| if half { normalize(&t, Narrow::F16) } else { t };
    let (sa, sb, sy) = (cx.tensor(a)?, cx.tensor(b)?, cx.tensor(y)?);
    for s in [&sa, &sb, &sy] {
        if !s.dtype().is_float() || s.shape().numel().as_known() != Some(1) {
            bail!(
                "QLinear scales must be single float values, got {}",
                s.shape()
            );
        }
    }
    let m = step(step(sa.mul(&sb)).div(&sy));
    Ok(m.reshape(Shape::scalar()).cast(DType::F64))
}

/// Rounds `d` (f64) to the output zero point's type: adds the zero point, rounds ties to
/// even and saturates.
fn requantize(cx: &mut NodeCx<'_>, d: Tensor, zp: usize, fallback: usize) -> OpResult<Value> {
    let out = match cx.opt_input(zp) {
        Some(v) => v.narrow,
        None => cx.input(fallback)?.narrow,
    };
    let Some(out) = out else {
        bail!("the output must be a quantized integer type");
    };
    let (lo, hi) = range_of(out)?;
    let mut d = d;
    if cx.opt_input(zp).is_some() {
        let z = cx.tensor(zp)?;
        d = d.add(z.reshape(Shape::scalar()).cast(DType::F64));
    }
    let y = d.round().clamp(lo, hi).cast(DType::I32);
    Ok(Value::tensor(y).with_narrow(Some(out)))
}

pub fn qlinear_matmul(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let a = centered(cx, 0, 2, -2)?;
    let b = centered(cx, 3, 5, -1)?;
    let m = requant_scale(cx, 1, 4, 6)?;
    let d = a.matmul(&b).mul(&m);
    Ok(vec![requantize(cx, d, 7, 0)?])
}

/// Runs `Conv` with this node's attributes on centered `f64` operands (and an optional
/// integer bias), returning the exact integer sums as `f64`.
fn integer_conv(
    cx: &mut NodeCx<'_>,
    x: Tensor,
    w: Tensor,
    bias: Option<Tensor>,
) -> OpResult<Tensor> {
    let mut inputs = vec![Some(Value::tensor(x)), Some(Value::tensor(w))];
    if let Some(b) = bias {
        inputs.push(Some(Value::tensor(b.cast(DType::F64))));
    }
    let saved = std::mem::replace(&mut cx.inputs, inputs);
    let r = nn::conv(cx);
    cx.inputs = saved;
    let mut out = r?;
    match out.first_mut() {
        Some(v) => Ok(v.tensor_in(cx.g)),
        None => bail!("Conv produced no output"),
    }
}

pub fn conv_integer(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let x = centered(cx, 0, 2, 1)?;
    // The weight's zero point is per output channel (axis 0).
    let w = centered(cx, 1, 3, 0)?;
    let y = integer_conv(cx, x, w, None)?;
    Ok(vec![Value::tensor(y.cast(DType::I32))])
}

pub fn qlinear_conv(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let x = centered(cx, 0, 2, 1)?;
    let w = centered(cx, 3, 5, 0)?;
    let bias = match cx.opt_input(8) {
        Some(_) => Some(cx.tensor(8)?),
        None => None,
    };
    let sums = integer_conv(cx, x, w, bias)?;
    // The weight scale may be per output channel.
    let (sx, sw, sy) = (cx.tensor(1)?, cx.tensor(4)?, cx.tensor(6)?);
    let sw = if sw.shape().rank() == 1 && sw.shape().numel().as_known() != Some(1) {
        let mut dims = vec![Dim::known(1); sums.rank()];
        dims[1] = sw.shape().dims()[0].clone();
        sw.reshape(Shape::new(dims))
    } else {
        sw.reshape(Shape::scalar())
    };
    let m = sx
        .reshape(Shape::scalar())
        .mul(&sw)
        .div(sy.reshape(Shape::scalar()))
        .cast(DType::F64);
    let d = sums.mul(&m);
    Ok(vec![requantize(cx, d, 7, 0)?])
}
