//! [`eval_op`]: one op on concrete arrays, the interpreter's exhaustive semantics table.

use crate::error::EvalError;
use crate::linalg::{self, ConvParams};
use crate::random::random_bits;
use crate::vals::{Vals, numel};
use crate::{elementwise, movement, reduce};
use kiln_ir::infer::infer;
use kiln_ir::{Array, DType, Op, Shape};
use std::borrow::Cow;

/// Replaces the shape an op carries (possibly symbolic) by the concrete `out_shape`, after
/// checking they agree on rank and on every known dim.
fn concretize<'a>(op: &'a Op, out_shape: &[usize]) -> Result<Cow<'a, Op>, EvalError> {
    let fix = |declared: &Shape| -> Result<Shape, EvalError> {
        let agrees = declared.rank() == out_shape.len()
            && declared
                .dims()
                .iter()
                .zip(out_shape)
                .all(|(d, &n)| d.as_known().is_none_or(|k| k == n as u64));
        if agrees {
            Ok(Shape::known(out_shape))
        } else {
            Err(EvalError::malformed(
                op.name(),
                format!("declared shape {declared} does not fit the result shape {out_shape:?}"),
            ))
        }
    };
    let Some(declared) = op.shape_attr() else {
        return Ok(Cow::Borrowed(op));
    };
    let fixed = fix(declared)?;
    let mut owned = op.clone();
    if let Some(shape) = owned.shape_attr_mut() {
        *shape = fixed;
    }
    Ok(Cow::Owned(owned))
}

/// Re-runs shape and dtype inference on the concrete operands and checks that it gives
/// exactly `out_dtype` and `out_shape`. Every index computed afterwards is then in bounds.
fn check_signature(
    op: &Op,
    operands: &[&Array],
    out_dtype: DType,
    out_shape: &[usize],
) -> Result<(), EvalError> {
    let shapes: Vec<Shape> = operands.iter().map(|a| Shape::known(a.shape())).collect();
    let typed: Vec<(DType, &Shape)> = operands
        .iter()
        .zip(&shapes)
        .map(|(a, s)| (a.dtype(), s))
        .collect();
    let (dt, shape) =
        infer(op, &typed).map_err(|e| EvalError::malformed(op.name(), e.to_string()))?;
    if dt != out_dtype || shape.as_known().as_deref() != Some(out_shape) {
        return Err(EvalError::malformed(
            op.name(),
            format!(
                "operands give a {dt}{shape} result, but {out_dtype}{out_shape:?} was asked for"
            ),
        ));
    }
    Ok(())
}

fn arity_error(op: &Op, got: usize) -> EvalError {
    EvalError::malformed(op.name(), format!("unexpected operand count {got}"))
}

/// `out[i...] = i_axis` converted to `dtype`.
fn iota(dtype: DType, shape: &[usize], axis: usize) -> Result<Array, EvalError> {
    let stride: usize = shape[axis + 1..].iter().product();
    let len = shape[axis].max(1);
    let n = numel(shape)?;
    let values = (0..n).map(|i| ((i / stride.max(1)) % len) as i64);
    let vals = if dtype.is_float() {
        Vals::F(values.map(|v| v as f64).collect())
    } else {
        Vals::I(values.collect())
    };
    vals.into_array("iota", dtype, shape)
}

/// Evaluates one op on concrete operands into an array of `out_dtype` and `out_shape`.
///
/// The operands and the requested result are checked against the op's shape and dtype rules
/// first, so a mismatch is an [`EvalError::Malformed`], never a panic. `Input` and `Parameter`
/// have no value here ([`EvalError::SourceOp`]); `Constant` returns its array; `Iota` and
/// `RandomBits` compute theirs.
pub fn eval_op(
    op: &Op,
    operands: &[&Array],
    out_dtype: DType,
    out_shape: &[usize],
) -> Result<Array, EvalError> {
    numel(out_shape)?;
    let concrete = concretize(op, out_shape)?;
    check_signature(&concrete, operands, out_dtype, out_shape)?;
    let name = op.name();
    let done = |v: Vals| v.into_array(name, out_dtype, out_shape);
    match op {
        Op::Input { name: source, .. } | Op::Parameter { name: source, .. } => {
            Err(EvalError::SourceOp {
                node: None,
                op: name,
                name: source.clone(),
            })
        }
        Op::Constant(a) => Ok(a.clone()),
        Op::Iota { axis, .. } => iota(out_dtype, out_shape, *axis),
        Op::RandomBits { .. } => {
            let [key] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            let &[k0, k1] = key.as_u32()? else {
                return Err(EvalError::malformed(
                    name,
                    "the key must hold two u32 words",
                ));
            };
            Ok(Array::from_u32(
                out_shape,
                random_bits([k0, k1], out_shape),
            )?)
        }
        Op::Unary(u) => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            done(elementwise::unary(*u, x)?)
        }
        Op::Binary(b) => {
            let [x, y] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            done(elementwise::binary(*b, x, y, out_shape)?)
        }
        Op::Select => {
            let [c, a, b] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            elementwise::select(c, a, b, out_shape)
        }
        Op::Cast(to) => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            elementwise::cast(x, *to)
        }
        Op::StopGradient => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            Ok((*x).clone())
        }
        Op::Reduce { op: r, axes, .. } => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            done(reduce::reduce(*r, axes, x)?)
        }
        Op::ArgReduce { op: r, axis, .. } => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            done(reduce::arg_reduce(*r, *axis, x)?)
        }
        Op::Reshape(_) => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            Ok(x.reshaped(out_shape)?)
        }
        Op::Permute(perm) => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            movement::permute(x, perm, out_shape)
        }
        Op::Expand(_) => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            movement::expand(x, out_shape)
        }
        Op::Slice(axes) => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            movement::slice(x, axes, out_shape)
        }
        Op::Pad { pads, value } => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            movement::pad(x, pads, value.get(), out_shape)
        }
        Op::Concat { axis } => movement::concat(operands, *axis, out_shape),
        Op::Flip { axes } => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            movement::flip(x, axes)
        }
        Op::Gather { axis } => {
            let [x, index] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            movement::gather(x, index, *axis)
        }
        Op::ScatterAdd { axis } => {
            let [target, index, src] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            done(movement::scatter_add(target, index, src, *axis)?)
        }
        Op::MatMul => {
            let [a, b] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            done(linalg::matmul(a, b, out_shape)?)
        }
        Op::Conv2d {
            stride,
            padding,
            dilation,
            groups,
        } => {
            let [x, w] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            let us = |v: [u64; 2]| v.map(|d| d as usize);
            let params = ConvParams {
                stride: us(*stride),
                padding: us(*padding),
                dilation: us(*dilation),
                groups: *groups as usize,
            };
            done(linalg::conv2d(x, w, &params, out_shape)?)
        }
        Op::Window {
            op: w,
            window,
            stride,
            padding,
        } => {
            let [x] = operands else {
                return Err(arity_error(op, operands.len()));
            };
            done(reduce::window(*w, window, stride, padding, x, out_shape)?)
        }
        Op::Cond { .. } | Op::Scan { .. } | Op::While { .. } | Op::Get { .. } => Err(
            EvalError::malformed(name, "runs regions of its graph: evaluate it with `eval`"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{f32s, u32s};
    use kiln_ir::{BinaryOp, Dim};

    #[test]
    fn iota_along_each_axis_and_dtype() {
        let shape = Shape::known(&[2, 3]);
        let a = eval_op(
            &Op::Iota {
                dtype: DType::I32,
                shape: shape.clone(),
                axis: 1,
            },
            &[],
            DType::I32,
            &[2, 3],
        )
        .unwrap();
        assert_eq!(a.as_i32().unwrap(), &[0, 1, 2, 0, 1, 2]);
        let a = eval_op(
            &Op::Iota {
                dtype: DType::F32,
                shape,
                axis: 0,
            },
            &[],
            DType::F32,
            &[2, 3],
        )
        .unwrap();
        assert_eq!(a.as_f32().unwrap(), &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let sym = Shape(vec![Dim::sym("N")]);
        let a = eval_op(
            &Op::Iota {
                dtype: DType::U32,
                shape: sym,
                axis: 0,
            },
            &[],
            DType::U32,
            &[4],
        )
        .unwrap();
        assert_eq!(a.as_u32().unwrap(), &[0, 1, 2, 3]);
    }

    #[test]
    fn random_bits_uses_the_key_operand() {
        let key = u32s(&[2], &[0, 42]);
        let op = Op::RandomBits {
            shape: Shape::known(&[2, 2]),
        };
        let a = eval_op(&op, &[&key], DType::U32, &[2, 2]).unwrap();
        assert_eq!(a.as_u32().unwrap(), random_bits([0, 42], &[4]).as_slice());
    }

    #[test]
    fn constants_and_sources() {
        let c = f32s(&[2], &[1.0, 2.0]);
        assert_eq!(
            eval_op(&Op::Constant(c.clone()), &[], DType::F32, &[2]).unwrap(),
            c
        );
        let input = Op::Input {
            name: "x".into(),
            dtype: DType::F32,
            shape: Shape::known(&[2]),
        };
        assert_eq!(
            eval_op(&input, &[], DType::F32, &[2]),
            Err(EvalError::SourceOp {
                node: None,
                op: "input",
                name: "x".into()
            })
        );
        let param = Op::Parameter {
            name: "w".into(),
            dtype: DType::F32,
            shape: Shape::known(&[2]),
        };
        assert!(matches!(
            eval_op(&param, &[], DType::F32, &[2]),
            Err(EvalError::SourceOp { op: "param", .. })
        ));
    }

    #[test]
    fn mismatched_operands_are_errors_not_panics() {
        let a = f32s(&[2], &[1.0, 2.0]);
        let b = f32s(&[3], &[1.0, 2.0, 3.0]);
        let add = Op::Binary(BinaryOp::Add);
        assert!(matches!(
            eval_op(&add, &[&a, &b], DType::F32, &[3]),
            Err(EvalError::Malformed { op: "add", .. })
        ));
        assert!(matches!(
            eval_op(&add, &[&a], DType::F32, &[2]),
            Err(EvalError::Malformed { .. })
        ));
        assert!(matches!(
            eval_op(&add, &[&a, &a], DType::F64, &[2]),
            Err(EvalError::Malformed { .. })
        ));
        assert!(matches!(
            eval_op(&add, &[&a, &a], DType::F32, &[1, 2]),
            Err(EvalError::Malformed { .. })
        ));
        let r = Op::Reshape(Shape::known(&[3]));
        assert!(matches!(
            eval_op(&r, &[&a], DType::F32, &[3]),
            Err(EvalError::Malformed { .. })
        ));
        let c = Op::Constant(a.clone());
        assert!(matches!(
            eval_op(&c, &[], DType::F32, &[3]),
            Err(EvalError::Malformed { .. })
        ));
        assert!(matches!(
            eval_op(&c, &[], DType::F32, &[usize::MAX, 4]),
            Err(EvalError::Array { .. })
        ));
    }
}
