//! Reductions: over a set of axes, index of the extremum along one axis, and sliding windows.
//!
//! Floats accumulate in `f64` and round once; integers accumulate in wrapping `i64`.

use crate::error::EvalError;
use crate::vals::{Vals, for_each_index, int_range, strides, view_offsets};
use kiln_ir::semantics::{max_f, min_f};
use kiln_ir::{ArgOp, Array, DType, ReduceOp, WindowOp};

fn float_fold(op: ReduceOp) -> (f64, fn(f64, f64) -> f64) {
    match op {
        ReduceOp::Sum => (0.0, |a, b| a + b),
        ReduceOp::Prod => (1.0, |a, b| a * b),
        ReduceOp::Max => (f64::NEG_INFINITY, max_f),
        ReduceOp::Min => (f64::INFINITY, min_f),
    }
}

fn int_fold(op: ReduceOp, dtype: DType) -> (i64, fn(i64, i64) -> i64) {
    let (lo, hi) = int_range(dtype);
    match op {
        ReduceOp::Sum => (0, i64::wrapping_add),
        ReduceOp::Prod => (1, i64::wrapping_mul),
        ReduceOp::Max => (lo, i64::max),
        ReduceOp::Min => (hi, i64::min),
    }
}

fn fold<T: Copy>(v: &[T], slots: &[usize], n_out: usize, (init, f): (T, fn(T, T) -> T)) -> Vec<T> {
    let mut acc = vec![init; n_out];
    for (&x, &o) in v.iter().zip(slots) {
        acc[o] = f(acc[o], x);
    }
    acc
}

/// Reduces `axes` of `x`. Empty reductions give the identity: sum 0, prod 1, max -inf/min
/// +inf for floats, and the dtype's smallest/largest value for integers. NaN propagates.
pub(crate) fn reduce(op: ReduceOp, axes: &[usize], x: &Array) -> Result<Vals, EvalError> {
    let kept: Vec<usize> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let n_out = kept.iter().product();
    let slot_strides: Vec<isize> = strides(&kept)
        .iter()
        .enumerate()
        .map(|(i, &s)| if axes.contains(&i) { 0 } else { s as isize })
        .collect();
    let slots = view_offsets(x.shape(), 0, &slot_strides);
    Ok(match Vals::of(x) {
        Vals::F(v) => Vals::F(fold(&v, &slots, n_out, float_fold(op))),
        Vals::I(v) => Vals::I(fold(&v, &slots, n_out, int_fold(op, x.dtype()))),
        Vals::B(_) => {
            return Err(EvalError::malformed(op.name(), "not defined for bool"));
        }
    })
}

/// `(outer, axis size, inner)` for splitting `shape` around `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// True if `cand` replaces `best` as the running extremum; NaN is the extremum and the first
/// occurrence wins ties.
fn better_f(op: ArgOp, cand: f64, best: f64) -> bool {
    if best.is_nan() {
        return false;
    }
    if cand.is_nan() {
        return true;
    }
    match op {
        ArgOp::ArgMax => cand > best,
        ArgOp::ArgMin => cand < best,
    }
}

fn better_i(op: ArgOp, cand: i64, best: i64) -> bool {
    match op {
        ArgOp::ArgMax => cand > best,
        ArgOp::ArgMin => cand < best,
    }
}

fn arg_of<T: Copy>(
    v: &[T],
    axis_len: usize,
    inner: usize,
    outer: usize,
    better: impl Fn(T, T) -> bool,
) -> Vec<i64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| v[(o * axis_len + k) * inner + i];
            let mut best = 0;
            for k in 1..axis_len {
                if better(at(k), at(best)) {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

/// Index (`i64`) of the maximum or minimum along `axis`; ties pick the first index and NaN
/// counts as the extremum (PyTorch). An empty axis is an error unless the result is empty.
pub(crate) fn arg_reduce(op: ArgOp, axis: usize, x: &Array) -> Result<Vals, EvalError> {
    let (outer, len, inner) = split(x.shape(), axis);
    if len == 0 {
        if outer * inner == 0 {
            return Ok(Vals::I(Vec::new()));
        }
        return Err(EvalError::EmptyArgReduce {
            node: None,
            op: op.name(),
            axis,
        });
    }
    Ok(Vals::I(match Vals::of(x) {
        Vals::F(v) => arg_of(&v, len, inner, outer, |c, b| better_f(op, c, b)),
        Vals::I(v) => arg_of(&v, len, inner, outer, |c, b| better_i(op, c, b)),
        Vals::B(_) => return Err(EvalError::malformed(op.name(), "not defined for bool")),
    }))
}

/// Window parameters of one trailing axis.
struct Axis {
    size: usize,
    window: usize,
    stride: usize,
    pad_lo: usize,
}

fn window_fold<T: Copy>(
    v: &[T],
    lead: usize,
    axes: &[Axis],
    out_spatial: &[usize],
    (init, f): (T, fn(T, T) -> T),
) -> Vec<T> {
    let in_shape: Vec<usize> = axes.iter().map(|a| a.size).collect();
    let in_strides = strides(&in_shape);
    let in_numel: usize = in_shape.iter().product();
    let mut out = Vec::with_capacity(lead * out_spatial.iter().product::<usize>());
    // Per output position, each axis visits only the input positions its window covers
    // (taps in padding contribute nothing), in the window's row-major order: the work is
    // bounded by the input, however large the window.
    let k = axes.len();
    let (mut lo, mut hi, mut pos) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    for b in 0..lead {
        let base = b * in_numel;
        for_each_index(out_spatial, |o| {
            let mut acc = init;
            for (i, a) in axes.iter().enumerate() {
                let start = (o[i] * a.stride) as i128 - a.pad_lo as i128;
                let end = start + a.window as i128;
                lo[i] = start.clamp(0, a.size as i128) as usize;
                hi[i] = end.clamp(0, a.size as i128) as usize;
            }
            if lo.iter().zip(&hi).all(|(l, h)| l < h) {
                pos.copy_from_slice(&lo);
                'taps: loop {
                    let at = base
                        + pos
                            .iter()
                            .zip(&in_strides)
                            .map(|(p, s)| p * s)
                            .sum::<usize>();
                    acc = f(acc, v[at]);
                    let mut ax = k;
                    loop {
                        if ax == 0 {
                            break 'taps;
                        }
                        ax -= 1;
                        pos[ax] += 1;
                        if pos[ax] < hi[ax] {
                            break;
                        }
                        pos[ax] = lo[ax];
                    }
                }
            }
            out.push(acc);
        });
    }
    out
}

/// Sliding-window sum or max over the trailing `window.len()` axes. Padding contributes 0 to a
/// sum and -inf (the dtype's minimum for integers) to a max; NaN propagates through max.
pub(crate) fn window(
    op: WindowOp,
    window: &[u64],
    stride: &[u64],
    padding: &[(u64, u64)],
    x: &Array,
    out_shape: &[usize],
) -> Result<Vals, EvalError> {
    let shape = x.shape();
    let k = window.len();
    let lead_rank = shape.len() - k;
    let lead: usize = shape[..lead_rank].iter().product();
    let axes: Vec<Axis> = (0..k)
        .map(|i| Axis {
            size: shape[lead_rank + i],
            window: window[i] as usize,
            stride: stride[i] as usize,
            pad_lo: padding[i].0 as usize,
        })
        .collect();
    let out_spatial = &out_shape[lead_rank..];
    let reduce = match op {
        WindowOp::Sum => ReduceOp::Sum,
        WindowOp::Max => ReduceOp::Max,
    };
    Ok(match Vals::of(x) {
        Vals::F(v) => Vals::F(window_fold(
            &v,
            lead,
            &axes,
            out_spatial,
            float_fold(reduce),
        )),
        Vals::I(v) => Vals::I(window_fold(
            &v,
            lead,
            &axes,
            out_spatial,
            int_fold(reduce, x.dtype()),
        )),
        Vals::B(_) => return Err(EvalError::malformed(op.name(), "not defined for bool")),
    })
}

#[cfg(test)]
mod tests {
    use crate::eval_op;
    use crate::testutil::{f32s, f64s, i32s, u32s};
    use kiln_ir::{ArgOp, Array, DType, Op, ReduceOp, WindowOp};

    fn red(op: ReduceOp, axes: &[usize], keepdim: bool, x: &Array, out: &[usize]) -> Array {
        let o = Op::Reduce {
            op,
            axes: axes.to_vec(),
            keepdim,
        };
        eval_op(&o, &[x], x.dtype(), out).unwrap()
    }

    #[test]
    fn sums_over_axis_sets() {
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            red(ReduceOp::Sum, &[0], false, &x, &[3]).as_f32().unwrap(),
            &[5.0, 7.0, 9.0]
        );
        assert_eq!(
            red(ReduceOp::Sum, &[1], true, &x, &[2, 1])
                .as_f32()
                .unwrap(),
            &[6.0, 15.0]
        );
        assert_eq!(
            red(ReduceOp::Sum, &[0, 1], false, &x, &[])
                .as_f32()
                .unwrap(),
            &[21.0]
        );
        assert_eq!(
            red(ReduceOp::Prod, &[1], false, &x, &[2]).as_f32().unwrap(),
            &[6.0, 120.0]
        );
        assert_eq!(
            red(ReduceOp::Max, &[0], false, &x, &[3]).as_f32().unwrap(),
            &[4.0, 5.0, 6.0]
        );
        assert_eq!(
            red(ReduceOp::Min, &[1], false, &x, &[2]).as_f32().unwrap(),
            &[1.0, 4.0]
        );
        let x3 = f64s(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(
            red(ReduceOp::Sum, &[0, 2], false, &x3, &[2])
                .as_f64()
                .unwrap(),
            &[14.0, 22.0]
        );
        assert_eq!(
            red(ReduceOp::Sum, &[], false, &x3, &[2, 2, 2])
                .as_f64()
                .unwrap(),
            x3.as_f64().unwrap()
        );
    }

    #[test]
    fn f32_sum_accumulates_in_f64() {
        let x = f32s(&[3], &[1e8, 1.0, -1e8]);
        assert_eq!(
            red(ReduceOp::Sum, &[0], false, &x, &[]).as_f32().unwrap(),
            &[1.0]
        );
    }

    #[test]
    fn nan_propagates_through_max_and_min() {
        let x = f32s(&[2, 2], &[1.0, f32::NAN, 2.0, 3.0]);
        let m = red(ReduceOp::Max, &[1], false, &x, &[2]);
        assert!(m.as_f32().unwrap()[0].is_nan());
        assert_eq!(m.as_f32().unwrap()[1], 3.0);
        let m = red(ReduceOp::Min, &[0], false, &x, &[2]);
        assert_eq!(m.as_f32().unwrap()[0], 1.0);
        assert!(m.as_f32().unwrap()[1].is_nan());
    }

    #[test]
    fn empty_reductions_give_identities() {
        let x = f32s(&[0, 2], &[]);
        assert_eq!(
            red(ReduceOp::Sum, &[0], false, &x, &[2]).as_f32().unwrap(),
            &[0.0, 0.0]
        );
        assert_eq!(
            red(ReduceOp::Prod, &[0], false, &x, &[2]).as_f32().unwrap(),
            &[1.0, 1.0]
        );
        assert_eq!(
            red(ReduceOp::Max, &[0], false, &x, &[2]).as_f32().unwrap(),
            &[f32::NEG_INFINITY; 2]
        );
        assert_eq!(
            red(ReduceOp::Min, &[0], false, &x, &[2]).as_f32().unwrap(),
            &[f32::INFINITY; 2]
        );
        let i = i32s(&[2, 0], &[]);
        assert_eq!(
            red(ReduceOp::Max, &[1], false, &i, &[2]).as_i32().unwrap(),
            &[i32::MIN; 2]
        );
        assert_eq!(
            red(ReduceOp::Min, &[1], false, &i, &[2]).as_i32().unwrap(),
            &[i32::MAX; 2]
        );
        let u = u32s(&[0], &[]);
        assert_eq!(
            red(ReduceOp::Max, &[0], false, &u, &[]).as_u32().unwrap(),
            &[0]
        );
        assert_eq!(
            red(ReduceOp::Min, &[0], false, &u, &[]).as_u32().unwrap(),
            &[u32::MAX]
        );
        assert_eq!(
            red(ReduceOp::Sum, &[1], false, &i, &[2]).as_i32().unwrap(),
            &[0, 0]
        );
    }

    #[test]
    fn integer_reductions_wrap() {
        let x = i32s(&[3], &[i32::MAX, 1, 5]);
        assert_eq!(
            red(ReduceOp::Sum, &[0], false, &x, &[]).as_i32().unwrap(),
            &[i32::MIN + 5]
        );
        let u = u32s(&[2], &[1 << 31, 2]);
        assert_eq!(
            red(ReduceOp::Prod, &[0], false, &u, &[]).as_u32().unwrap(),
            &[0]
        );
        assert_eq!(
            red(ReduceOp::Max, &[0], false, &u, &[]).as_u32().unwrap(),
            &[1 << 31]
        );
    }

    fn arg(op: ArgOp, axis: usize, keepdim: bool, x: &Array, out: &[usize]) -> Vec<i64> {
        let o = Op::ArgReduce { op, axis, keepdim };
        eval_op(&o, &[x], DType::I64, out)
            .unwrap()
            .as_i64()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn argmax_ties_pick_first_and_nan_wins() {
        let x = f32s(&[2, 4], &[1.0, 3.0, 3.0, 0.0, 2.0, f32::NAN, 5.0, f32::NAN]);
        assert_eq!(arg(ArgOp::ArgMax, 1, false, &x, &[2]), vec![1, 1]);
        assert_eq!(arg(ArgOp::ArgMin, 1, false, &x, &[2]), vec![3, 1]);
        assert_eq!(arg(ArgOp::ArgMax, 0, true, &x, &[1, 4]), vec![1, 1, 1, 1]);
        assert_eq!(arg(ArgOp::ArgMin, 0, true, &x, &[1, 4]), vec![0, 1, 0, 1]);
        let i = i32s(&[5], &[2, -1, 7, 7, -1]);
        assert_eq!(arg(ArgOp::ArgMax, 0, false, &i, &[]), vec![2]);
        assert_eq!(arg(ArgOp::ArgMin, 0, false, &i, &[]), vec![1]);
        let u = u32s(&[3], &[0, u32::MAX, 1]);
        assert_eq!(arg(ArgOp::ArgMax, 0, false, &u, &[]), vec![1]);
    }

    #[test]
    fn argmax_of_an_empty_axis_errors() {
        let x = f32s(&[2, 0], &[]);
        let o = Op::ArgReduce {
            op: ArgOp::ArgMax,
            axis: 1,
            keepdim: false,
        };
        let e = eval_op(&o, &[&x], DType::I64, &[2]);
        assert_eq!(
            e,
            Err(crate::EvalError::EmptyArgReduce {
                node: None,
                op: "argmax",
                axis: 1
            })
        );
        let x = f32s(&[0, 3], &[]);
        assert_eq!(eval_op(&o, &[&x], DType::I64, &[0]).unwrap().len(), 0);
    }

    fn win(
        op: WindowOp,
        w: &[u64],
        s: &[u64],
        p: &[(u64, u64)],
        x: &Array,
        out: &[usize],
    ) -> Array {
        let o = Op::Window {
            op,
            window: w.to_vec(),
            stride: s.to_vec(),
            padding: p.to_vec(),
        };
        eval_op(&o, &[x], x.dtype(), out).unwrap()
    }

    #[test]
    fn max_pool_2x2() {
        let x = f32s(
            &[1, 1, 4, 4],
            &(1..=16).map(|v| v as f32).collect::<Vec<_>>(),
        );
        let y = win(
            WindowOp::Max,
            &[2, 2],
            &[2, 2],
            &[(0, 0), (0, 0)],
            &x,
            &[1, 1, 2, 2],
        );
        assert_eq!(y.as_f32().unwrap(), &[6.0, 8.0, 14.0, 16.0]);
        let y = win(
            WindowOp::Sum,
            &[2, 2],
            &[2, 2],
            &[(0, 0), (0, 0)],
            &x,
            &[1, 1, 2, 2],
        );
        assert_eq!(y.as_f32().unwrap(), &[14.0, 22.0, 46.0, 54.0]);
    }

    #[test]
    fn window_padding_contributes_identity() {
        let x = f32s(&[3], &[-1.0, -2.0, -3.0]);
        let y = win(WindowOp::Max, &[2], &[1], &[(1, 1)], &x, &[4]);
        assert_eq!(y.as_f32().unwrap(), &[-1.0, -1.0, -2.0, -3.0]);
        let y = win(WindowOp::Sum, &[3], &[2], &[(1, 1)], &x, &[2]);
        assert_eq!(y.as_f32().unwrap(), &[-3.0, -5.0]);
        let i = i32s(&[2, 3], &[-5, -6, -7, 1, 2, 3]);
        let y = win(WindowOp::Max, &[2], &[2], &[(1, 0)], &i, &[2, 2]);
        assert_eq!(y.as_i32().unwrap(), &[-5, -6, 1, 3]);
        let e = f32s(&[0], &[]);
        let y = win(WindowOp::Max, &[3], &[1], &[(2, 2)], &e, &[2]);
        assert_eq!(y.as_f32().unwrap(), &[f32::NEG_INFINITY; 2]);
    }

    #[test]
    fn window_max_propagates_nan_and_sum_overlaps() {
        let x = f64s(&[4], &[1.0, f64::NAN, 2.0, 3.0]);
        let y = win(WindowOp::Max, &[2], &[1], &[(0, 0)], &x, &[3]);
        let y = y.as_f64().unwrap();
        assert!(y[0].is_nan() && y[1].is_nan());
        assert_eq!(y[2], 3.0);
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y = win(
            WindowOp::Sum,
            &[2, 2],
            &[1, 1],
            &[(0, 0), (0, 0)],
            &x,
            &[1, 2],
        );
        assert_eq!(y.as_f32().unwrap(), &[12.0, 16.0]);
    }

    #[test]
    fn a_window_far_larger_than_its_input_costs_only_the_input() {
        // A 2^40-tap window padded by 2^40 - 1 in front is a running sum: every output reads
        // only the input positions its window covers.
        let x = f32s(&[3, 4], &(1..=12).map(|v| v as f32).collect::<Vec<_>>());
        let big = 1u64 << 40;
        let y = win(
            WindowOp::Sum,
            &[big, 2],
            &[1, 1],
            &[(big - 1, 0), (0, 0)],
            &x,
            &[3, 3],
        );
        assert_eq!(
            y.as_f32().unwrap(),
            &[3.0, 5.0, 7.0, 14.0, 18.0, 22.0, 33.0, 39.0, 45.0]
        );
    }
}
