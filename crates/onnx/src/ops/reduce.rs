//! Reductions: Reduce* (axes as attribute or input, keepdims, noop_with_empty_axes),
//! ArgMax/ArgMin, CumSum, and the softmax family (opset < 13 coerces to 2-D).

use super::{NodeCx, OpResult, axes, axis, bail, dims_of, need_float};
use crate::narrow::unsigned_key;
use crate::tensor::Narrow;
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{DType, Dim, Shape, WindowOp};

/// The reduced axes of a Reduce* node: `None` means the input is returned unchanged.
fn reduce_axes(cx: &mut NodeCx<'_>, input_since: i64) -> OpResult<Option<Vec<i64>>> {
    let rank = cx.input(0)?.rank();
    let given = if cx.opset < input_since {
        cx.attr_ints("axes")
    } else {
        cx.opt_ints_input(1, "axes")?
    };
    let noop = cx.attr_i("noop_with_empty_axes", 0) != 0;
    Ok(match given {
        Some(a) if !a.is_empty() => {
            axes(&a, rank)?;
            Some(a)
        }
        _ if noop => None,
        _ => Some((0..rank as i64).collect()),
    })
}

fn reduce(
    cx: &mut NodeCx<'_>,
    input_since: i64,
    f: impl FnOnce(&Tensor, Vec<i64>, bool) -> Tensor,
) -> OpResult<Vec<Value>> {
    let keep = cx.attr_i("keepdims", 1) != 0;
    let Some(ax) = reduce_axes(cx, input_since)? else {
        return Ok(vec![cx.input(0)?.clone()]);
    };
    let x = cx.tensor(0)?;
    Ok(vec![Value::tensor(f(&x, ax, keep))])
}

pub fn reduce_sum(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    reduce(cx, 13, |x, a, k| x.sum(a, k))
}

pub fn reduce_mean(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    need_float(&cx.tensor(0)?, "ReduceMean")?;
    reduce(cx, 18, |x, a, k| x.mean(a, k))
}

pub fn reduce_max(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if is_u64(cx) {
        return reduce(cx, 18, |x, a, k| unsigned_key(&unsigned_key(x).max(a, k)));
    }
    reduce(cx, 18, |x, a, k| through_int(x, |t| t.max(a, k)))
}

pub fn reduce_min(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if is_u64(cx) {
        return reduce(cx, 18, |x, a, k| unsigned_key(&unsigned_key(x).min(a, k)));
    }
    reduce(cx, 18, |x, a, k| through_int(x, |t| t.min(a, k)))
}

/// Whether input 0 carries `uint64` (ordered by [`unsigned_key`]).
fn is_u64(cx: &mut NodeCx<'_>) -> bool {
    cx.opt_input(0)
        .is_some_and(|v| v.narrow == Some(Narrow::U64))
}

/// `f` on `x`, with a bool `x` reduced as 0/1 integers (any / all).
fn through_int(x: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    if x.dtype() == DType::Bool {
        f(&x.cast(DType::I32)).cast(DType::Bool)
    } else {
        f(x)
    }
}

pub fn reduce_prod(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    reduce(cx, 18, |x, a, k| x.prod(a, k))
}

pub fn reduce_l1(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    reduce(cx, 18, |x, a, k| x.abs().sum(a, k))
}

pub fn reduce_l2(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    need_float(&cx.tensor(0)?, "ReduceL2")?;
    reduce(cx, 18, |x, a, k| x.square().sum(a, k).sqrt())
}

pub fn reduce_sum_square(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    reduce(cx, 18, |x, a, k| x.square().sum(a, k))
}

pub fn reduce_log_sum(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    need_float(&cx.tensor(0)?, "ReduceLogSum")?;
    reduce(cx, 18, |x, a, k| x.sum(a, k).log())
}

pub fn reduce_log_sum_exp(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    need_float(&cx.tensor(0)?, "ReduceLogSumExp")?;
    reduce(cx, 18, |x, a, k| x.logsumexp(a, k))
}

fn arg(cx: &mut NodeCx<'_>, max: bool) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let x = if is_u64(cx) {
        unsigned_key(&cx.tensor(0)?)
    } else {
        cx.tensor(0)?
    };
    let a = axis(cx.attr_i("axis", 0), x.rank())?;
    let keep = cx.attr_i("keepdims", 1) != 0;
    let last = cx.attr_i("select_last_index", 0) != 0;
    let pick = |t: &Tensor| {
        if max {
            t.argmax(a as i64, keep)
        } else {
            t.argmin(a as i64, keep)
        }
    };
    let out = if last {
        let Some(n) = x.shape().dims()[a].as_known() else {
            bail!("select_last_index needs a known axis size");
        };
        pick(&x.flip(a as i64)).neg().add((n as f64) - 1.0)
    } else {
        pick(&x)
    };
    Ok(vec![Value::tensor(out)])
}

pub fn argmax(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    arg(cx, true)
}

pub fn argmin(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    arg(cx, false)
}

pub fn cumsum(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let a = match cx.input(1)?.as_ints() {
        Some(v) if v.len() == 1 => axis(v[0], x.rank())?,
        _ => bail!("axis (input 1) must be known when importing, as one element"),
    };
    let exclusive = cx.attr_i("exclusive", 0) != 0;
    let reverse = cx.attr_i("reverse", 0) != 0;
    let Some(n) = x.shape().dims()[a].as_known() else {
        bail!("CumSum needs a known axis size, got {}", x.shape());
    };
    let r = x.rank();
    let mut perm: Vec<i64> = (0..r as i64).filter(|&i| i != a as i64).collect();
    perm.push(a as i64);
    let mut inverse = vec![0i64; r];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p as usize] = i as i64;
    }
    let mut t = x.permute(perm);
    if reverse {
        t = t.flip(-1);
    }
    let window = n.max(1);
    let mut s = t.window(WindowOp::Sum, &[window], &[1], &[(window - 1, 0)]);
    if exclusive {
        s = s.sub(&t);
    }
    if reverse {
        s = s.flip(-1);
    }
    Ok(vec![Value::tensor(s.permute(inverse))])
}

/// Applies `f` over `axis` with ONNX's opset rules: before 13 the input is coerced to 2-D
/// at `axis` (default 1) and `f` runs over the second axis.
fn softmax_like(
    cx: &mut NodeCx<'_>,
    f: impl FnOnce(&Tensor, i64) -> Tensor,
) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "softmax")?;
    if cx.opset >= 13 {
        let a = axis(cx.attr_i("axis", -1), x.rank())?;
        return Ok(vec![Value::tensor(f(&x, a as i64))]);
    }
    let r = x.rank();
    let a = cx.attr_i("axis", 1);
    let a = if a < 0 { a + r as i64 } else { a };
    if !(0..=r as i64).contains(&a) {
        bail!("axis {} is out of range for rank {r}", cx.attr_i("axis", 1));
    }
    let d = dims_of(&x);
    let (head, tail) = d.split_at(a as usize);
    let flat = x.reshape(Shape::new([Dim::product(head), Dim::product(tail)]));
    Ok(vec![Value::tensor(f(&flat, 1).reshape(x.shape()))])
}

pub fn softmax(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    softmax_like(cx, |x, a| x.softmax(a))
}

pub fn log_softmax(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    softmax_like(cx, |x, a| x.log_softmax(a))
}

pub fn hardmax(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    softmax_like(cx, |x, a| {
        let idx = x.argmax(a, true);
        let classes = x.graph().iota(DType::I64, x.shape(), a as usize);
        classes.eq(&idx).cast(x.dtype())
    })
}
