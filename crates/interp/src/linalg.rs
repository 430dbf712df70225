//! Contractions: batched matrix product and 2-D convolution, accumulated in `f64` (floats)
//! or wrapping `i64` (integers) and rounded once.

use crate::error::EvalError;
use crate::vals::{Vals, broadcast_strides, view_offsets};
use kiln_ir::Array;

/// Shapes of one batched product.
struct MatDims {
    m: usize,
    k: usize,
    n: usize,
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
}

fn matmul_core<T: Copy>(
    a: &[T],
    b: &[T],
    d: &MatDims,
    zero: T,
    mul_add: impl Fn(T, T, T) -> T,
) -> Vec<T> {
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = Vec::with_capacity(d.a_batch.len() * m * n);
    let mut row = vec![zero; n];
    for (&ab, &bb) in d.a_batch.iter().zip(&d.b_batch) {
        let a = &a[ab * m * k..(ab + 1) * m * k];
        let b = &b[bb * k * n..(bb + 1) * k * n];
        for i in 0..m {
            row.fill(zero);
            for p in 0..k {
                let av = a[i * k + p];
                let brow = &b[p * n..(p + 1) * n];
                for (acc, &bv) in row.iter_mut().zip(brow) {
                    *acc = mul_add(*acc, av, bv);
                }
            }
            out.extend_from_slice(&row);
        }
    }
    out
}

/// `[..., m, k] @ [..., k, n]` with the batch axes broadcast to `out_shape[..rank-2]`.
pub(crate) fn matmul(a: &Array, b: &Array, out_shape: &[usize]) -> Result<Vals, EvalError> {
    let (ra, rb, ro) = (a.shape().len(), b.shape().len(), out_shape.len());
    let batch = &out_shape[..ro - 2];
    let matrix_index = |shape: &[usize], rank: usize| -> Vec<usize> {
        view_offsets(batch, 0, &broadcast_strides(&shape[..rank - 2], batch))
    };
    let dims = MatDims {
        m: a.shape()[ra - 2],
        k: a.shape()[ra - 1],
        n: b.shape()[rb - 1],
        a_batch: matrix_index(a.shape(), ra),
        b_batch: matrix_index(b.shape(), rb),
    };
    Ok(match (Vals::of(a), Vals::of(b)) {
        (Vals::F(x), Vals::F(y)) => {
            Vals::F(matmul_core(&x, &y, &dims, 0.0, |acc, p, q| acc + p * q))
        }
        (Vals::I(x), Vals::I(y)) => Vals::I(matmul_core(&x, &y, &dims, 0, |acc, p, q| {
            acc.wrapping_add(p.wrapping_mul(q))
        })),
        _ => {
            return Err(EvalError::malformed(
                "matmul",
                format!(
                    "operands {} and {} must share a numeric dtype",
                    a.dtype(),
                    b.dtype()
                ),
            ));
        }
    })
}

/// Convolution parameters in `usize`.
pub(crate) struct ConvParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// Cross-correlation of `x [N, C, H, W]` with `w [O, C/groups, KH, KW]`, symmetric zero
/// padding, into `out_shape = [N, O, OH, OW]`.
pub(crate) fn conv2d(
    x: &Array,
    w: &Array,
    p: &ConvParams,
    out_shape: &[usize],
) -> Result<Vals, EvalError> {
    let (Vals::F(xv), Vals::F(wv)) = (Vals::of(x), Vals::of(w)) else {
        return Err(EvalError::malformed("conv2d", "operands must be floats"));
    };
    let [n, c, h, wd] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let [o, cg, kh, kw] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
    let [oh, ow] = [out_shape[2], out_shape[3]];
    let og = o / p.groups.max(1);
    let mut out = vec![0.0f64; n * o * oh * ow];
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og.max(1);
            let plane = &mut out[(b * o + oc) * oh * ow..(b * o + oc + 1) * oh * ow];
            for ci in 0..cg {
                let ch = g * cg + ci;
                let xp = &xv[(b * c + ch) * h * wd..(b * c + ch + 1) * h * wd];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wval = wv[((oc * cg + ci) * kh + ky) * kw + kx];
                        for y in 0..oh {
                            let iy =
                                (y * p.stride[0] + ky * p.dilation[0]).wrapping_sub(p.padding[0]);
                            if iy >= h {
                                continue;
                            }
                            let xrow = &xp[iy * wd..(iy + 1) * wd];
                            let orow = &mut plane[y * ow..(y + 1) * ow];
                            for (xo, acc) in orow.iter_mut().enumerate() {
                                let ix = (xo * p.stride[1] + kx * p.dilation[1])
                                    .wrapping_sub(p.padding[1]);
                                if ix < wd {
                                    *acc += wval * xrow[ix];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Vals::F(out))
}

#[cfg(test)]
mod tests {
    use crate::eval_op;
    use crate::testutil::{f32s, f64s, i32s, u32s};
    use kiln_ir::{Array, DType, Op};

    fn mm(a: &Array, b: &Array, out: &[usize]) -> Array {
        eval_op(&Op::MatMul, &[a, b], a.dtype(), out).unwrap()
    }

    #[test]
    fn matmul_2x3_by_3x2() {
        let a = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f32s(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        assert_eq!(
            mm(&a, &b, &[2, 2]).as_f32().unwrap(),
            &[58.0, 64.0, 139.0, 154.0]
        );
    }

    #[test]
    fn matmul_broadcasts_batches() {
        let a = f64s(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = f64s(&[2, 2], &[1.0, 0.0, 0.0, 2.0]);
        let y = mm(&a, &b, &[2, 1, 2]);
        assert_eq!(y.as_f64().unwrap(), &[1.0, 4.0, 3.0, 8.0]);
        let a = f64s(&[3, 1, 1, 1], &[1.0, 2.0, 3.0]);
        let b = f64s(&[2, 1, 2], &[1.0, 10.0, 100.0, 1000.0]);
        let y = mm(&a, &b, &[3, 2, 1, 2]);
        assert_eq!(
            y.as_f64().unwrap(),
            &[
                1.0, 10.0, 100.0, 1000.0, 2.0, 20.0, 200.0, 2000.0, 3.0, 30.0, 300.0, 3000.0
            ]
        );
    }

    #[test]
    fn matmul_with_empty_inner_axis_is_zero() {
        let a = f32s(&[2, 0], &[]);
        let b = f32s(&[0, 3], &[]);
        assert_eq!(mm(&a, &b, &[2, 3]).as_f32().unwrap(), &[0.0; 6]);
    }

    #[test]
    fn integer_matmul_wraps() {
        let a = i32s(&[1, 2], &[i32::MAX, 1]);
        let b = i32s(&[2, 1], &[2, 3]);
        assert_eq!(mm(&a, &b, &[1, 1]).as_i32().unwrap(), &[1]);
        let a = u32s(&[1, 1], &[3]);
        let b = u32s(&[1, 2], &[4, 5]);
        assert_eq!(mm(&a, &b, &[1, 2]).as_u32().unwrap(), &[12, 15]);
    }

    fn conv(x: &Array, w: &Array, s: u64, p: u64, d: u64, g: u64, out: &[usize]) -> Vec<f32> {
        let op = Op::Conv2d {
            stride: [s, s],
            padding: [p, p],
            dilation: [d, d],
            groups: g,
        };
        eval_op(&op, &[x, w], DType::F32, out)
            .unwrap()
            .as_f32()
            .unwrap()
            .to_vec()
    }

    fn ramp(shape: &[usize]) -> Array {
        let n: usize = shape.iter().product();
        f32s(shape, &(0..n).map(|v| v as f32).collect::<Vec<_>>())
    }

    #[test]
    fn conv_valid_and_padded() {
        let x = ramp(&[1, 1, 3, 3]);
        let w = f32s(&[1, 1, 2, 2], &[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            conv(&x, &w, 1, 0, 1, 1, &[1, 1, 2, 2]),
            vec![4.0, 6.0, 10.0, 12.0]
        );
        let ones = f32s(&[1, 1, 3, 3], &[1.0; 9]);
        assert_eq!(
            conv(&x, &ones, 1, 1, 1, 1, &[1, 1, 3, 3]),
            vec![8.0, 15.0, 12.0, 21.0, 36.0, 27.0, 20.0, 33.0, 24.0]
        );
    }

    #[test]
    fn conv_stride_and_dilation() {
        let x = ramp(&[1, 1, 4, 4]);
        let w = f32s(&[1, 1, 1, 1], &[2.0]);
        assert_eq!(
            conv(&x, &w, 2, 0, 1, 1, &[1, 1, 2, 2]),
            vec![0.0, 4.0, 16.0, 20.0]
        );
        let w = f32s(&[1, 1, 2, 2], &[1.0; 4]);
        assert_eq!(
            conv(&x, &w, 1, 0, 2, 1, &[1, 1, 2, 2]),
            vec![20.0, 24.0, 36.0, 40.0]
        );
    }

    #[test]
    fn conv_channels_and_groups() {
        let x = ramp(&[1, 2, 2, 2]);
        let w = f32s(&[1, 2, 1, 1], &[1.0, 10.0]);
        assert_eq!(
            conv(&x, &w, 1, 0, 1, 1, &[1, 1, 2, 2]),
            vec![40.0, 51.0, 62.0, 73.0]
        );
        let w = f32s(&[4, 1, 1, 1], &[1.0, -1.0, 2.0, 3.0]);
        assert_eq!(
            conv(&x, &w, 1, 0, 1, 2, &[1, 4, 2, 2]),
            vec![
                0.0, 1.0, 2.0, 3.0, 0.0, -1.0, -2.0, -3.0, 8.0, 10.0, 12.0, 14.0, 12.0, 15.0, 18.0,
                21.0
            ]
        );
        let x2 = ramp(&[2, 1, 1, 2]);
        let w = f32s(&[2, 1, 1, 1], &[1.0, 2.0]);
        assert_eq!(
            conv(&x2, &w, 1, 0, 1, 1, &[2, 2, 1, 2]),
            vec![0.0, 1.0, 0.0, 2.0, 2.0, 3.0, 4.0, 6.0]
        );
    }
}
