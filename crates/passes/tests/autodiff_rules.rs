//! Every primitive's VJP and JVP against central finite differences in f64 on the
//! interpreter, over property-generated shapes (broadcasting and size-1 dims included).

use crate::autodiff_util;

use autodiff_util::{Domain, Rng, bin, check, constant, op, slice1, un};
use kiln_ir::{ArgOp, Array, BinaryOp, DType, Op, ReduceOp, Shape, SliceAxis, UnaryOp, WindowOp};
use proptest::prelude::*;

use Domain::{Any, AwayFromZero, Distinct, Fraction, Positive};

fn shape(min_rank: usize, max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=3, min_rank..=max_rank)
}

/// A shape that broadcasts to `out`: some leading axes dropped, some dims set to 1.
fn bcast(rng: &mut Rng, out: &[usize]) -> Vec<usize> {
    let drop = rng.below(out.len() as u64 + 1) as usize;
    out[drop..]
        .iter()
        .map(|&d| if rng.below(3) == 0 { 1 } else { d })
        .collect()
}

const UNARY: [(UnaryOp, Domain); 18] = [
    (UnaryOp::Neg, Any),
    (UnaryOp::Abs, AwayFromZero),
    (UnaryOp::Exp, Any),
    (UnaryOp::Log, Positive),
    (UnaryOp::Sqrt, Positive),
    (UnaryOp::Rsqrt, Positive),
    (UnaryOp::Recip, AwayFromZero),
    (UnaryOp::Sin, Any),
    (UnaryOp::Cos, Any),
    (UnaryOp::Tanh, Any),
    (UnaryOp::Atan, Any),
    (UnaryOp::Asin, Fraction),
    (UnaryOp::Sigmoid, Any),
    (UnaryOp::Erf, Any),
    (UnaryOp::Floor, Fraction),
    (UnaryOp::Ceil, Fraction),
    (UnaryOp::Round, Fraction),
    (UnaryOp::Sign, AwayFromZero),
];

const BINARY: [(BinaryOp, Domain, Domain); 8] = [
    (BinaryOp::Add, Any, Any),
    (BinaryOp::Sub, Any, Any),
    (BinaryOp::Mul, Any, Any),
    (BinaryOp::Div, Any, AwayFromZero),
    (BinaryOp::Rem, Fraction, AwayFromZero),
    (BinaryOp::Pow, Positive, Any),
    (BinaryOp::Max, Distinct, Distinct),
    (BinaryOp::Min, Distinct, Distinct),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn unary(s in shape(0, 3), seed in any::<u64>()) {
        for (u, d) in UNARY {
            check(std::slice::from_ref(&s), &[d], seed, |g, x| un(g, u, x[0]));
        }
    }

    #[test]
    fn binary_with_broadcasting(out in shape(0, 3), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let (a, b) = (bcast(&mut rng, &out), bcast(&mut rng, &out));
        for (bop, da, db) in BINARY {
            check(&[a.clone(), b.clone()], &[da, db], seed, |g, x| bin(g, bop, x[0], x[1]));
        }
    }

    #[test]
    fn select_and_comparisons(out in shape(0, 3), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let (a, b, c) = (bcast(&mut rng, &out), bcast(&mut rng, &out), bcast(&mut rng, &out));
        for cmp in [BinaryOp::Lt, BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge, BinaryOp::Eq, BinaryOp::Ne] {
            check(&[a.clone(), b.clone(), c.clone()], &[Distinct, Distinct, Any], seed, |g, x| {
                let cond = bin(g, cmp, x[0], x[1]);
                let prod = bin(g, BinaryOp::Mul, x[0], x[2]);
                op(g, Op::Select, &[cond, prod, x[1]])
            });
        }
        check(&[a.clone(), b.clone()], &[Any, Any], seed, |g, x| {
            let p = bin(g, BinaryOp::Gt, x[0], x[1]);
            let q = un(g, UnaryOp::IsNan, x[0]);
            let q = un(g, UnaryOp::Not, q);
            let both = bin(g, BinaryOp::And, p, q);
            let either = bin(g, BinaryOp::Or, both, p);
            let cond = bin(g, BinaryOp::Xor, either, q);
            op(g, Op::Select, &[cond, x[0], x[1]])
        });
    }

    #[test]
    fn casts_and_integer_paths(s in shape(0, 3), seed in any::<u64>()) {
        check(std::slice::from_ref(&s), &[Any], seed, |g, x| {
            let i = op(g, Op::Cast(DType::I32), &[x[0]]);
            let back = op(g, Op::Cast(DType::F64), &[i]);
            let same = op(g, Op::Cast(DType::F64), &[x[0]]);
            bin(g, BinaryOp::Mul, back, same)
        });
    }

    #[test]
    fn reductions(s in shape(1, 3), seed in any::<u64>(), keepdim in any::<bool>()) {
        let mut rng = Rng::new(seed);
        let axes: Vec<usize> = (0..s.len()).filter(|_| rng.below(2) == 0).collect();
        for (r, d) in [(ReduceOp::Sum, Any), (ReduceOp::Max, Distinct), (ReduceOp::Min, Distinct), (ReduceOp::Prod, Any)] {
            check(std::slice::from_ref(&s), &[d], seed, |g, x| op(g, Op::Reduce { op: r, axes: axes.clone(), keepdim }, &[x[0]]));
        }
    }

    #[test]
    fn argmax_then_gather(s in shape(1, 3), seed in any::<u64>()) {
        let axis = (seed % s.len() as u64) as usize;
        for a in [ArgOp::ArgMax, ArgOp::ArgMin] {
            check(std::slice::from_ref(&s), &[Distinct], seed, |g, x| {
                let i = op(g, Op::ArgReduce { op: a, axis, keepdim: true }, &[x[0]]);
                op(g, Op::Gather { axis }, &[x[0], i])
            });
        }
    }

    #[test]
    fn movement(s in shape(1, 3), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let r = s.len();
        let rev: Vec<usize> = s.iter().rev().copied().collect();
        check(std::slice::from_ref(&s), &[Any], seed, |g, x| op(g, Op::Reshape(Shape::known(&rev)), &[x[0]]));
        let mut perm: Vec<usize> = (0..r).collect();
        for i in (1..r).rev() {
            perm.swap(i, rng.below(i as u64 + 1) as usize);
        }
        check(std::slice::from_ref(&s), &[Any], seed, |g, x| op(g, Op::Permute(perm.clone()), &[x[0]]));
        let small = bcast(&mut rng, &s);
        check(&[small], &[Any], seed, |g, x| op(g, Op::Expand(Shape::known(&s)), &[x[0]]));
        let spec: Vec<SliceAxis> = s
            .iter()
            .map(|&n| {
                let start = rng.below(n as u64);
                let stop = start + 1 + rng.below(n as u64 - start);
                SliceAxis { start, stop, step: 1 + rng.below(3) }
            })
            .collect();
        check(std::slice::from_ref(&s), &[Any], seed, |g, x| op(g, Op::Slice(spec.clone()), &[x[0]]));
        let pads: Vec<(u64, u64)> = s.iter().map(|_| (rng.below(3), rng.below(3))).collect();
        check(std::slice::from_ref(&s), &[Any], seed, |g, x| {
            op(g, Op::Pad { pads: pads.clone(), value: 1.5.into() }, &[x[0]])
        });
        let axes: Vec<usize> = (0..r).filter(|_| rng.below(2) == 0).collect();
        check(std::slice::from_ref(&s), &[Any], seed, |g, x| op(g, Op::Flip { axes: axes.clone() }, &[x[0]]));
        let axis = rng.below(r as u64) as usize;
        let mut other = s.clone();
        other[axis] = 1 + rng.below(3) as usize;
        check(&[s.clone(), other.clone(), s.clone()], &[Any, Any, Any], seed, |g, x| {
            op(g, Op::Concat { axis }, &[x[0], x[1], x[2]])
        });
    }

    #[test]
    fn gather_and_scatter_add(s in shape(1, 3), seed in any::<u64>(), len in 1usize..4) {
        let mut rng = Rng::new(seed);
        let axis = rng.below(s.len() as u64) as usize;
        let mut is = s.clone();
        is[axis] = len;
        let n: usize = is.iter().product();
        let idx: Vec<i64> = (0..n).map(|_| rng.below(s[axis] as u64) as i64).collect();
        let index = Array::from_i64(&is, idx).expect("index");
        check(std::slice::from_ref(&s), &[Any], seed, |g, x| {
            let i = constant(g, index.clone());
            op(g, Op::Gather { axis }, &[x[0], i])
        });
        check(&[s.clone(), is.clone()], &[Any, Any], seed, |g, x| {
            let i = constant(g, index.clone());
            let y = op(g, Op::ScatterAdd { axis }, &[x[0], i, x[1]]);
            bin(g, BinaryOp::Mul, y, y)
        });
    }

    #[test]
    fn matmul_with_batch_broadcasting(batch in shape(0, 2), m in 1usize..4, k in 1usize..4, n in 1usize..4, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut a = bcast(&mut rng, &batch);
        let mut b = bcast(&mut rng, &batch);
        a.extend([m, k]);
        b.extend([k, n]);
        check(&[a, b], &[Any, Any], seed, |g, x| op(g, Op::MatMul, &x[..2]));
    }

    #[test]
    fn conv2d(
        n in 1usize..3, groups in 1u64..3, cg in 1u64..3, og in 1u64..3,
        kh in 1u64..4, kw in 1u64..3, stride in (1u64..3, 1u64..3), padding in (0u64..3, 0u64..2),
        dilation in (1u64..3, 1u64..3), extra in (0u64..4, 0u64..4), seed in any::<u64>(),
    ) {
        let span = |k: u64, d: u64| d * (k - 1) + 1;
        let h = (span(kh, dilation.0) + extra.0).saturating_sub(2 * padding.0).max(1);
        let w = (span(kw, dilation.1) + extra.1).saturating_sub(2 * padding.1).max(1);
        let xs = vec![n, (groups * cg) as usize, h as usize, w as usize];
        let ws = vec![(groups * og) as usize, cg as usize, kh as usize, kw as usize];
        let conv = Op::Conv2d {
            stride: [stride.0, stride.1],
            padding: [padding.0, padding.1],
            dilation: [dilation.0, dilation.1],
            groups,
        };
        check(&[xs, ws], &[Any, Any], seed, |g, x| op(g, conv.clone(), &x[..2]));
    }

    #[test]
    fn windows(lead in shape(0, 2), dims in prop::collection::vec((1u64..5, 1u64..4, 1u64..3, 0u64..2, 0u64..2), 1..3), seed in any::<u64>()) {
        let mut s = lead.clone();
        let mut window = Vec::new();
        let mut stride = Vec::new();
        let mut padding = Vec::new();
        for &(extra, k, st, lo, hi) in &dims {
            let (lo, hi) = (lo.min(k - 1), hi.min(k - 1));
            s.push((k + extra).saturating_sub(lo + hi).max(1) as usize);
            window.push(k);
            stride.push(st);
            padding.push((lo, hi));
        }
        for (w, d) in [(WindowOp::Sum, Any), (WindowOp::Max, Distinct)] {
            let wop = Op::Window { op: w, window: window.clone(), stride: stride.clone(), padding: padding.clone() };
            check(std::slice::from_ref(&s), &[d], seed, |g, x| op(g, wop.clone(), &[x[0]]));
        }
    }
}

#[test]
fn sources_and_random_bits_are_constants() {
    for seed in 0..4 {
        check(&[vec![2, 3]], &[Any], seed, |g, x| {
            let key = constant(g, Array::from_u32(&[2], vec![7, 11]).expect("key"));
            let bits = op(
                g,
                Op::RandomBits {
                    shape: Shape::known(&[2, 3]),
                },
                &[key],
            );
            let f = op(g, Op::Cast(DType::F64), &[bits]);
            let small = constant(g, Array::scalar(DType::F64, 1e-9));
            let f = bin(g, BinaryOp::Mul, f, small);
            let io = op(
                g,
                Op::Iota {
                    dtype: DType::F64,
                    shape: Shape::known(&[2, 3]),
                    axis: 1,
                },
                &[],
            );
            let y = bin(g, BinaryOp::Mul, x[0], f);
            let y = bin(g, BinaryOp::Add, y, io);
            bin(g, BinaryOp::Mul, y, x[0])
        });
    }
}

#[test]
fn slices_that_skip_the_end_and_full_symbolic_axes() {
    check(&[vec![7, 2]], &[Any], 3, |g, x| {
        op(g, Op::Slice(slice1(2, 0, 1, 6, 3)), &[x[0]])
    });
    check(&[vec![5]], &[Any], 4, |g, x| {
        op(g, Op::Slice(slice1(1, 0, 4, 4, 1)), &[x[0]])
    });
}
