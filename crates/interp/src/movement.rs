//! Movement and indexing ops as index maps: reshape, permute, expand, slice, pad, concat,
//! flip, gather and scatter-add. All but scatter-add copy elements unchanged, for any dtype.

use crate::error::EvalError;
use crate::vals::{Vals, broadcast_strides, strides, take, typed, view_offsets};
use kiln_ir::{Array, SliceAxis};

fn istrides(shape: &[usize]) -> Vec<isize> {
    strides(shape).into_iter().map(|s| s as isize).collect()
}

/// Output axis `i` is input axis `perm[i]`.
pub(crate) fn permute(x: &Array, perm: &[usize], out_shape: &[usize]) -> Result<Array, EvalError> {
    let st = istrides(x.shape());
    let out_strides: Vec<isize> = perm.iter().map(|&p| st[p]).collect();
    take(x, &view_offsets(out_shape, 0, &out_strides), out_shape)
}

/// Broadcasts size-1 and missing leading axes to `out_shape`.
pub(crate) fn expand(x: &Array, out_shape: &[usize]) -> Result<Array, EvalError> {
    let offs = view_offsets(out_shape, 0, &broadcast_strides(x.shape(), out_shape));
    take(x, &offs, out_shape)
}

/// Takes `start, start + step, ...` below `stop` on every axis (`stop` past the end means
/// the end).
pub(crate) fn slice(
    x: &Array,
    axes: &[SliceAxis],
    out_shape: &[usize],
) -> Result<Array, EvalError> {
    let st = istrides(x.shape());
    let base: isize = axes
        .iter()
        .zip(&st)
        .map(|(a, &s)| a.start as isize * s)
        .sum();
    let out_strides: Vec<isize> = axes
        .iter()
        .zip(&st)
        .map(|(a, &s)| a.step as isize * s)
        .collect();
    take(x, &view_offsets(out_shape, base, &out_strides), out_shape)
}

/// Reverses the listed axes.
pub(crate) fn flip(x: &Array, axes: &[usize]) -> Result<Array, EvalError> {
    let shape = x.shape();
    let mut st = istrides(shape);
    let mut base = 0isize;
    for &a in axes {
        base += (shape[a] as isize - 1).max(0) * st[a];
        st[a] = -st[a];
    }
    take(x, &view_offsets(shape, base, &st), shape)
}

/// Pads each axis with `(before, after)` copies of `value` converted to the dtype.
pub(crate) fn pad(
    x: &Array,
    pads: &[(u64, u64)],
    value: f64,
    out_shape: &[usize],
) -> Result<Array, EvalError> {
    let st = strides(x.shape());
    let mut map: Vec<Option<usize>> = Vec::with_capacity(out_shape.iter().product());
    crate::vals::for_each_index(out_shape, |o| {
        let mut at = Some(0usize);
        for (k, &i) in o.iter().enumerate() {
            let p = (i as u64).wrapping_sub(pads[k].0) as usize;
            at = match at {
                Some(a) if p < x.shape()[k] => Some(a + p * st[k]),
                _ => None,
            };
        }
        map.push(at);
    });
    let fill = Array::scalar(x.dtype(), value);
    let data = typed!(x.dtype(), |get, wrap| {
        let (v, f) = (get(x)?, get(&fill)?);
        let f = *f
            .first()
            .ok_or_else(|| EvalError::malformed("pad", "empty fill value"))?;
        wrap(map.iter().map(|m| m.map_or(f, |i| v[i])).collect())
    });
    Ok(Array::new(out_shape, data)?)
}

/// Joins the operands along `axis`.
pub(crate) fn concat(
    parts: &[&Array],
    axis: usize,
    out_shape: &[usize],
) -> Result<Array, EvalError> {
    let outer: usize = out_shape[..axis].iter().product();
    let inner: usize = out_shape[axis + 1..].iter().product();
    let dtype = parts
        .first()
        .map(|p| p.dtype())
        .ok_or_else(|| EvalError::malformed("concat", "no operands"))?;
    let data = typed!(dtype, |get, wrap| {
        let vs = parts
            .iter()
            .map(|p| get(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(out_shape.iter().product());
        for o in 0..outer {
            for (v, p) in vs.iter().zip(parts) {
                let chunk = p.shape()[axis] * inner;
                out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
            }
        }
        wrap(out)
    });
    Ok(Array::new(out_shape, data)?)
}

/// Offsets into an array of `shape` for every element of `index` (same rank), with the
/// `axis` coordinate replaced by the index value; values outside `0..shape[axis]` are errors.
fn indexed_offsets(
    op: &'static str,
    shape: &[usize],
    index: &Array,
    axis: usize,
) -> Result<Vec<usize>, EvalError> {
    let st = istrides(shape);
    let mut base_strides = st.clone();
    base_strides[axis] = 0;
    let bases = view_offsets(index.shape(), 0, &base_strides);
    let size = shape[axis];
    let idx = index.to_i64_vec();
    bases
        .iter()
        .zip(&idx)
        .map(|(&b, &i)| match usize::try_from(i) {
            Ok(u) if u < size => Ok(b + u * st[axis] as usize),
            _ => Err(EvalError::IndexOutOfRange {
                node: None,
                op,
                index: i,
                axis,
                axis_size: size,
            }),
        })
        .collect()
}

/// `out[..i..] = x[.. index[..i..] ..]` along `axis` (`take_along_axis`).
pub(crate) fn gather(x: &Array, index: &Array, axis: usize) -> Result<Array, EvalError> {
    let offs = indexed_offsets("gather", x.shape(), index, axis)?;
    take(x, &offs, index.shape())
}

/// `out = target; out[.. index[..i..] ..] += src[..i..]` along `axis`, accumulating in
/// `f64` (floats) or wrapping `i64` (integers) and rounding once.
pub(crate) fn scatter_add(
    target: &Array,
    index: &Array,
    src: &Array,
    axis: usize,
) -> Result<Vals, EvalError> {
    let offs = indexed_offsets("scatter_add", target.shape(), index, axis)?;
    Ok(match (Vals::of(target), Vals::of(src)) {
        (Vals::F(mut t), Vals::F(s)) => {
            for (&o, v) in offs.iter().zip(s) {
                t[o] += v;
            }
            Vals::F(t)
        }
        (Vals::I(mut t), Vals::I(s)) => {
            for (&o, v) in offs.iter().zip(s) {
                t[o] = t[o].wrapping_add(v);
            }
            Vals::I(t)
        }
        _ => {
            return Err(EvalError::malformed(
                "scatter_add",
                format!(
                    "target {} and source {} must share a numeric dtype",
                    target.dtype(),
                    src.dtype()
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{f32s, i32s, i64s, u32s};
    use crate::{EvalError, eval_op};
    use kiln_ir::{Array, DType, F64Bits, Op, Shape, SliceAxis};

    fn run(op: Op, xs: &[&Array], out: &[usize]) -> Array {
        let dt = xs[0].dtype();
        eval_op(&op, xs, dt, out).unwrap()
    }

    fn iota6() -> Array {
        i32s(&[2, 3], &[0, 1, 2, 3, 4, 5])
    }

    #[test]
    fn reshape_keeps_order() {
        let y = run(Op::Reshape(Shape::known(&[3, 2])), &[&iota6()], &[3, 2]);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(y.as_i32().unwrap(), &[0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn permute_transposes() {
        let y = run(Op::Permute(vec![1, 0]), &[&iota6()], &[3, 2]);
        assert_eq!(y.as_i32().unwrap(), &[0, 3, 1, 4, 2, 5]);
        let x = i32s(&[2, 1, 3], &[0, 1, 2, 3, 4, 5]);
        let y = run(Op::Permute(vec![2, 0, 1]), &[&x], &[3, 2, 1]);
        assert_eq!(y.as_i32().unwrap(), &[0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn expand_broadcasts_size_one_and_new_axes() {
        let x = i32s(&[2, 1], &[7, 8]);
        let y = run(Op::Expand(Shape::known(&[2, 2, 3])), &[&x], &[2, 2, 3]);
        assert_eq!(y.as_i32().unwrap(), &[7, 7, 7, 8, 8, 8, 7, 7, 7, 8, 8, 8]);
        let s = Array::from_bool(&[], vec![true]).unwrap();
        let y = run(Op::Expand(Shape::known(&[2])), &[&s], &[2]);
        assert_eq!(y.as_bool().unwrap(), &[true, true]);
    }

    #[test]
    fn slice_with_steps_and_whole_axis_marker() {
        let x = i32s(&[2, 5], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let op = Op::Slice(vec![
            SliceAxis {
                start: 0,
                stop: u64::MAX,
                step: 1,
            },
            SliceAxis {
                start: 1,
                stop: 5,
                step: 2,
            },
        ]);
        assert_eq!(run(op, &[&x], &[2, 2]).as_i32().unwrap(), &[1, 3, 6, 8]);
        let op = Op::Slice(vec![
            SliceAxis {
                start: 1,
                stop: 2,
                step: 1,
            },
            SliceAxis {
                start: 4,
                stop: 5,
                step: 3,
            },
        ]);
        assert_eq!(run(op, &[&x], &[1, 1]).as_i32().unwrap(), &[9]);
        let op = Op::Slice(vec![
            SliceAxis {
                start: 2,
                stop: 2,
                step: 1,
            },
            SliceAxis {
                start: 0,
                stop: 5,
                step: 1,
            },
        ]);
        assert_eq!(run(op, &[&x], &[0, 5]).len(), 0);
    }

    #[test]
    fn flip_reverses_listed_axes() {
        let y = run(Op::Flip { axes: vec![1] }, &[&iota6()], &[2, 3]);
        assert_eq!(y.as_i32().unwrap(), &[2, 1, 0, 5, 4, 3]);
        let y = run(Op::Flip { axes: vec![0, 1] }, &[&iota6()], &[2, 3]);
        assert_eq!(y.as_i32().unwrap(), &[5, 4, 3, 2, 1, 0]);
        let e = i32s(&[0, 3], &[]);
        assert_eq!(run(Op::Flip { axes: vec![0] }, &[&e], &[0, 3]).len(), 0);
    }

    #[test]
    fn pad_with_value_converted_to_dtype() {
        let x = i32s(&[1, 2], &[1, 2]);
        let op = Op::Pad {
            pads: vec![(1, 0), (1, 2)],
            value: F64Bits::new(-7.9),
        };
        let y = run(op, &[&x], &[2, 5]);
        assert_eq!(y.as_i32().unwrap(), &[-7, -7, -7, -7, -7, -7, 1, 2, -7, -7]);
        let x = f32s(&[2], &[1.0, 2.0]);
        let op = Op::Pad {
            pads: vec![(2, 1)],
            value: F64Bits::new(f64::NEG_INFINITY),
        };
        let y = run(op, &[&x], &[5]);
        assert_eq!(
            y.as_f32().unwrap(),
            &[
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                1.0,
                2.0,
                f32::NEG_INFINITY
            ]
        );
        let b = Array::from_bool(&[1], vec![false]).unwrap();
        let op = Op::Pad {
            pads: vec![(0, 1)],
            value: F64Bits::new(1.0),
        };
        assert_eq!(run(op, &[&b], &[2]).as_bool().unwrap(), &[false, true]);
    }

    #[test]
    fn concat_along_inner_and_outer_axes() {
        let a = i32s(&[2, 1], &[1, 2]);
        let b = i32s(&[2, 2], &[3, 4, 5, 6]);
        let y = run(Op::Concat { axis: 1 }, &[&a, &b], &[2, 3]);
        assert_eq!(y.as_i32().unwrap(), &[1, 3, 4, 2, 5, 6]);
        let c = i32s(&[1, 2], &[7, 8]);
        let y = run(Op::Concat { axis: 0 }, &[&b, &c, &c], &[4, 2]);
        assert_eq!(y.as_i32().unwrap(), &[3, 4, 5, 6, 7, 8, 7, 8]);
        let e = i32s(&[0, 2], &[]);
        let y = run(Op::Concat { axis: 0 }, &[&e, &c], &[1, 2]);
        assert_eq!(y.as_i32().unwrap(), &[7, 8]);
    }

    #[test]
    fn gather_takes_along_axis() {
        let x = f32s(&[2, 3], &[10.0, 11.0, 12.0, 20.0, 21.0, 22.0]);
        let idx = i64s(&[2, 2], &[2, 0, 1, 1]);
        let y = eval_op(&Op::Gather { axis: 1 }, &[&x, &idx], DType::F32, &[2, 2]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[12.0, 10.0, 21.0, 21.0]);
        let idx = u32s(&[1, 3], &[1, 0, 1]);
        let y = eval_op(&Op::Gather { axis: 0 }, &[&x, &idx], DType::F32, &[1, 3]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[20.0, 11.0, 22.0]);
    }

    #[test]
    fn gather_rejects_out_of_range_indices() {
        let x = f32s(&[2, 3], &[0.0; 6]);
        for (bad, want) in [(3i64, 3i64), (-1, -1)] {
            let idx = i64s(&[2, 1], &[0, bad]);
            let e = eval_op(&Op::Gather { axis: 1 }, &[&x, &idx], DType::F32, &[2, 1]);
            assert_eq!(
                e,
                Err(EvalError::IndexOutOfRange {
                    node: None,
                    op: "gather",
                    index: want,
                    axis: 1,
                    axis_size: 3
                })
            );
        }
    }

    #[test]
    fn scatter_add_accumulates_duplicates() {
        let t = f32s(&[2, 3], &[1.0; 6]);
        let idx = i32s(&[2, 2], &[0, 0, 2, 1]);
        let src = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = eval_op(
            &Op::ScatterAdd { axis: 1 },
            &[&t, &idx, &src],
            DType::F32,
            &[2, 3],
        )
        .unwrap();
        assert_eq!(y.as_f32().unwrap(), &[4.0, 1.0, 1.0, 1.0, 5.0, 4.0]);
        let t = i32s(&[3], &[0, 0, i32::MAX]);
        let idx = i64s(&[2], &[2, 0]);
        let src = i32s(&[2], &[1, -4]);
        let y = eval_op(
            &Op::ScatterAdd { axis: 0 },
            &[&t, &idx, &src],
            DType::I32,
            &[3],
        )
        .unwrap();
        assert_eq!(y.as_i32().unwrap(), &[-4, 0, i32::MIN]);
        let idx = i64s(&[2], &[3, 0]);
        let e = eval_op(
            &Op::ScatterAdd { axis: 0 },
            &[&t, &idx, &src],
            DType::I32,
            &[3],
        );
        assert_eq!(
            e,
            Err(EvalError::IndexOutOfRange {
                node: None,
                op: "scatter_add",
                index: 3,
                axis: 0,
                axis_size: 3
            })
        );
    }
}
