//! Property tests: algebraic identities between ops and naive nested-loop references for the
//! contractions, over random shapes and values (integer-valued floats keep sums exact).

use kiln_interp::eval_op;
use kiln_ir::{Array, BinaryOp, DType, F64Bits, Op, ReduceOp, Shape, SliceAxis, WindowOp};
use proptest::prelude::*;

fn i64s(shape: &[usize], v: Vec<i64>) -> Array {
    Array::from_i64(shape, v).unwrap()
}

fn f64s(shape: &[usize], v: Vec<f64>) -> Array {
    Array::from_f64(shape, v).unwrap()
}

fn run(op: Op, xs: &[&Array], dtype: DType, shape: &[usize]) -> Array {
    eval_op(&op, xs, dtype, shape).unwrap_or_else(|e| panic!("{e}"))
}

/// A shape of rank 1..=4 with dims 1..=4, and matching small integer data.
fn tensor() -> impl Strategy<Value = (Vec<usize>, Vec<i64>)> {
    prop::collection::vec(1usize..=4, 1..=4).prop_flat_map(|shape| {
        let n: usize = shape.iter().product();
        (Just(shape), prop::collection::vec(-9i64..=9, n))
    })
}

fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn permute_then_inverse_is_identity((shape, v) in tensor(), seed in any::<u64>()) {
        let x = i64s(&shape, v);
        let mut perm: Vec<usize> = (0..shape.len()).collect();
        let mut s = seed;
        for i in (1..perm.len()).rev() {
            perm.swap(i, (s % (i as u64 + 1)) as usize);
            s /= 7;
        }
        let pshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let y = run(Op::Permute(perm.clone()), &[&x], DType::I64, &pshape);
        let z = run(Op::Permute(inverse(&perm)), &[&y], DType::I64, &shape);
        prop_assert_eq!(z, x);
    }

    #[test]
    fn flip_twice_is_identity((shape, v) in tensor(), mask in 0u8..16) {
        let x = i64s(&shape, v);
        let axes: Vec<usize> = (0..shape.len()).filter(|a| mask & (1 << a) != 0).collect();
        let y = run(Op::Flip { axes: axes.clone() }, &[&x], DType::I64, &shape);
        let z = run(Op::Flip { axes }, &[&y], DType::I64, &shape);
        prop_assert_eq!(z, x);
    }

    #[test]
    fn slice_undoes_pad((shape, v) in tensor(), pads in prop::collection::vec((0u64..3, 0u64..3), 4)) {
        let x = i64s(&shape, v);
        let pads: Vec<(u64, u64)> = pads[..shape.len()].to_vec();
        let padded: Vec<usize> = shape.iter().zip(&pads).map(|(&d, &(a, b))| d + (a + b) as usize).collect();
        let y = run(Op::Pad { pads: pads.clone(), value: F64Bits::new(100.0) }, &[&x], DType::I64, &padded);
        let fill = y.as_i64().unwrap().iter().filter(|&&e| e == 100).count();
        prop_assert_eq!(fill, y.len() - x.len());
        let axes = shape.iter().zip(&pads).map(|(&d, &(a, _))| SliceAxis { start: a, stop: a + d as u64, step: 1 }).collect();
        let z = run(Op::Slice(axes), &[&y], DType::I64, &shape);
        prop_assert_eq!(z, x);
    }

    #[test]
    fn concat_then_slice_recovers_parts((shape, v) in tensor(), (shape2, _) in tensor(), axis_seed in 0usize..4) {
        let axis = axis_seed % shape.len();
        let x = i64s(&shape, v.clone());
        let mut yshape = shape.clone();
        yshape[axis] = shape2[0];
        let y = i64s(&yshape, (0..yshape.iter().product::<usize>() as i64).collect());
        let mut out = shape.clone();
        out[axis] += yshape[axis];
        let c = run(Op::Concat { axis }, &[&x, &y], DType::I64, &out);
        let part = |lo: usize, hi: usize| -> Vec<SliceAxis> {
            out.iter().enumerate().map(|(i, &d)| if i == axis {
                SliceAxis { start: lo as u64, stop: hi as u64, step: 1 }
            } else {
                SliceAxis { start: 0, stop: d as u64, step: 1 }
            }).collect()
        };
        prop_assert_eq!(run(Op::Slice(part(0, shape[axis])), &[&c], DType::I64, &shape), x);
        prop_assert_eq!(run(Op::Slice(part(shape[axis], out[axis])), &[&c], DType::I64, &yshape), y);
    }

    #[test]
    fn reducing_all_axes_at_once_equals_one_by_one((shape, v) in tensor()) {
        let total: i64 = v.iter().sum();
        let x = i64s(&shape, v);
        let all: Vec<usize> = (0..shape.len()).collect();
        let once = run(Op::Reduce { op: ReduceOp::Sum, axes: all, keepdim: false }, &[&x], DType::I64, &[]);
        prop_assert_eq!(once.as_i64().unwrap(), &[total]);
        let mut cur = x;
        for _ in 0..shape.len() {
            let s = cur.shape()[1..].to_vec();
            cur = run(Op::Reduce { op: ReduceOp::Sum, axes: vec![0], keepdim: false }, &[&cur], DType::I64, &s);
        }
        prop_assert_eq!(cur.as_i64().unwrap(), &[total]);
    }

    #[test]
    fn broadcast_add_equals_expand_then_add((shape, v) in tensor(), mask in 0u8..16) {
        let x = i64s(&shape, v);
        let small: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if mask & (1 << i) != 0 { 1 } else { d }).collect();
        let y = i64s(&small, (0..small.iter().product::<usize>() as i64).map(|k| k * 3 - 5).collect());
        let direct = run(Op::Binary(BinaryOp::Add), &[&x, &y], DType::I64, &shape);
        let flipped = run(Op::Binary(BinaryOp::Add), &[&y, &x], DType::I64, &shape);
        let ey = run(Op::Expand(Shape::known(&shape)), &[&y], DType::I64, &shape);
        let via = run(Op::Binary(BinaryOp::Add), &[&x, &ey], DType::I64, &shape);
        prop_assert_eq!(&direct, &via);
        prop_assert_eq!(&direct, &flipped);
    }

    #[test]
    fn gather_with_iota_is_identity_and_scatter_inverts_a_permutation((shape, v) in tensor(), axis_seed in 0usize..4) {
        let axis = axis_seed % shape.len();
        let x = i64s(&shape, v);
        let iota = run(Op::Iota { dtype: DType::I32, shape: Shape::known(&shape), axis }, &[], DType::I32, &shape);
        prop_assert_eq!(&run(Op::Gather { axis }, &[&x, &iota], DType::I64, &shape), &x);
        let rev = run(Op::Flip { axes: vec![axis] }, &[&iota], DType::I32, &shape);
        let gathered = run(Op::Gather { axis }, &[&x, &rev], DType::I64, &shape);
        let zeros = i64s(&shape, vec![0; x.len()]);
        let back = run(Op::ScatterAdd { axis }, &[&zeros, &rev, &gathered], DType::I64, &shape);
        prop_assert_eq!(back, x);
    }

    #[test]
    fn matmul_matches_naive_loops(
        batch in prop::collection::vec(1usize..=3, 0..=2),
        bcast in any::<bool>(),
        (m, k, n) in (1usize..=5, 0usize..=5, 1usize..=5),
        seed in any::<u64>(),
    ) {
        let nb: usize = batch.iter().product();
        let val = |i: usize| ((i as u64).wrapping_mul(seed | 1) >> 7) as i64 % 7 - 3;
        let a_shape: Vec<usize> = batch.iter().copied().chain([m, k]).collect();
        let b_shape: Vec<usize> = if bcast { vec![k, n] } else { batch.iter().copied().chain([k, n]).collect() };
        let a: Vec<i64> = (0..nb * m * k).map(val).collect();
        let b: Vec<i64> = (0..b_shape.iter().product::<usize>()).map(|i| val(i + 1000)).collect();
        let out_shape: Vec<usize> = batch.iter().copied().chain([m, n]).collect();
        let got = run(Op::MatMul, &[&i64s(&a_shape, a.clone()), &i64s(&b_shape, b.clone())], DType::I64, &out_shape);
        let mut want = vec![0i64; nb * m * n];
        for bi in 0..nb {
            let bo = if bcast { 0 } else { bi * k * n };
            for i in 0..m {
                for j in 0..n {
                    want[(bi * m + i) * n + j] = (0..k).map(|p| a[bi * m * k + i * k + p] * b[bo + p * n + j]).sum();
                }
            }
        }
        prop_assert_eq!(got.as_i64().unwrap(), want.as_slice());
        let af = Array::from_f64(&a_shape, a.iter().map(|&x| x as f64).collect()).unwrap();
        let bf = Array::from_f64(&b_shape, b.iter().map(|&x| x as f64).collect()).unwrap();
        let gotf = run(Op::MatMul, &[&af, &bf], DType::F64, &out_shape);
        let wantf: Vec<f64> = want.iter().map(|&x| x as f64).collect();
        prop_assert_eq!(gotf.as_f64().unwrap(), wantf.as_slice());
    }

    #[test]
    fn conv2d_matches_naive_loops(
        (nb, groups, cg, og) in (1usize..=2, 1usize..=2, 1usize..=2, 1usize..=2),
        (h, w, kh, kw) in (3usize..=6, 3usize..=6, 1usize..=3, 1usize..=3),
        (stride, pad, dil) in (1usize..=2, 0usize..=2, 1usize..=2),
        seed in any::<u64>(),
    ) {
        let (c, o) = (groups * cg, groups * og);
        let span = |k: usize| dil * (k - 1) + 1;
        prop_assume!(h + 2 * pad >= span(kh) && w + 2 * pad >= span(kw));
        let (oh, ow) = ((h + 2 * pad - span(kh)) / stride + 1, (w + 2 * pad - span(kw)) / stride + 1);
        let val = |i: usize| (((i as u64).wrapping_mul(seed | 1) >> 9) % 9) as f64 - 4.0;
        let x: Vec<f64> = (0..nb * c * h * w).map(val).collect();
        let wt: Vec<f64> = (0..o * cg * kh * kw).map(|i| val(i + 5000)).collect();
        let op = Op::Conv2d {
            stride: [stride as u64; 2],
            padding: [pad as u64; 2],
            dilation: [dil as u64; 2],
            groups: groups as u64,
        };
        let got = run(op, &[&f64s(&[nb, c, h, w], x.clone()), &f64s(&[o, cg, kh, kw], wt.clone())], DType::F64, &[nb, o, oh, ow]);
        let mut want = Vec::new();
        for b in 0..nb {
            for oc in 0..o {
                let g = oc / og;
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut acc = 0.0;
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (y * stride + ky * dil) as i64 - pad as i64;
                                    let ix = (xo * stride + kx * dil) as i64 - pad as i64;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        let xv = x[((b * c + g * cg + ci) * h + iy as usize) * w + ix as usize];
                                        acc += xv * wt[((oc * cg + ci) * kh + ky) * kw + kx];
                                    }
                                }
                            }
                        }
                        want.push(acc);
                    }
                }
            }
        }
        prop_assert_eq!(got.as_f64().unwrap(), want.as_slice());
    }

    #[test]
    fn window_sum_equals_conv_with_ones(
        (h, w, k) in (2usize..=6, 2usize..=6, 1usize..=2),
        (stride, pad_choice) in (1usize..=2, 0usize..=1),
        v in prop::collection::vec(-9i32..=9, 36),
    ) {
        let pad = pad_choice.min(k - 1);
        let x: Vec<f64> = v[..h * w].iter().map(|&e| f64::from(e)).collect();
        let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1);
        let xa = f64s(&[1, 1, h, w], x);
        let win = run(
            Op::Window { op: WindowOp::Sum, window: vec![k as u64; 2], stride: vec![stride as u64; 2], padding: vec![(pad as u64, pad as u64); 2] },
            &[&xa], DType::F64, &[1, 1, oh, ow],
        );
        let conv = run(
            Op::Conv2d { stride: [stride as u64; 2], padding: [pad as u64; 2], dilation: [1, 1], groups: 1 },
            &[&xa, &f64s(&[1, 1, k, k], vec![1.0; k * k])], DType::F64, &[1, 1, oh, ow],
        );
        prop_assert_eq!(win, conv);
    }

    #[test]
    fn window_max_with_window_equal_stride_is_a_blocked_reduce(rows in 1usize..=3, blocks in 1usize..=4, k in 1usize..=3, v in prop::collection::vec(-50i64..50, 36)) {
        let n = blocks * k;
        let x = i64s(&[rows, n], v[..rows * n].to_vec());
        let win = run(
            Op::Window { op: WindowOp::Max, window: vec![k as u64], stride: vec![k as u64], padding: vec![(0, 0)] },
            &[&x], DType::I64, &[rows, blocks],
        );
        let blocked = x.reshaped(&[rows, blocks, k]).unwrap();
        let red = run(Op::Reduce { op: ReduceOp::Max, axes: vec![2], keepdim: false }, &[&blocked], DType::I64, &[rows, blocks]);
        prop_assert_eq!(win, red);
    }
}
