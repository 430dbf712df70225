//! Higher order: the derivative graphs are themselves differentiated (grad of grad, jvp of
//! grad) and checked against finite differences; dense Jacobians agree in both modes.

use crate::autodiff_util;

use autodiff_util::{Domain, Rng, arr, bin, check, constant, eval, input, op, sum_all, un};
use kiln_ir::{Array, BinaryOp, DType, Graph, NodeId, Op, ReduceOp, Shape, UnaryOp, WindowOp};
use kiln_passes::autodiff::{self, JacobianMode};
use proptest::prelude::*;
use std::collections::HashMap;

use Domain::{Any, AwayFromZero, Distinct, Fraction, Positive};

/// `d <c, build(xs)> / d xs[which]` for a fixed pseudo-random cotangent `c`: a function of
/// `xs` whose own derivatives are second derivatives of `build`.
fn inner_vjp(
    g: &mut Graph,
    xs: &[NodeId],
    which: usize,
    seed: u64,
    build: impl Fn(&mut Graph, &[NodeId]) -> NodeId,
) -> NodeId {
    let y = build(g, xs);
    let s = g.node(y).shape.as_known().expect("known");
    let mut rng = Rng::new(seed ^ 0xABCD);
    let c: Vec<f64> = (0..s.iter().product::<usize>())
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    let ct = constant(g, Array::from_f64(&s, c).expect("ct"));
    autodiff::vjp(g, &[y], &[ct], xs).expect("inner vjp")[which]
}

fn shape(min_rank: usize, max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=3, min_rank..=max_rank)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn second_derivatives_of_unary_ops(s in shape(0, 3), seed in any::<u64>()) {
        for (u, d) in [
            (UnaryOp::Exp, Any), (UnaryOp::Log, Positive), (UnaryOp::Sqrt, Positive), (UnaryOp::Rsqrt, Positive),
            (UnaryOp::Recip, AwayFromZero), (UnaryOp::Sin, Any), (UnaryOp::Cos, Any), (UnaryOp::Tanh, Any),
            (UnaryOp::Sigmoid, Any), (UnaryOp::Erf, Any), (UnaryOp::Atan, Any), (UnaryOp::Asin, Fraction),
            (UnaryOp::Abs, AwayFromZero),
        ] {
            check(std::slice::from_ref(&s), &[d], seed, |g, x| inner_vjp(g, x, 0, seed, |g, x| un(g, u, x[0])));
        }
    }

    #[test]
    fn second_derivatives_of_binary_ops(s in shape(0, 2), seed in any::<u64>(), drop in any::<bool>()) {
        let b = if drop && !s.is_empty() { s[1..].to_vec() } else { s.iter().map(|_| 1).collect() };
        for (bop, da, db) in [
            (BinaryOp::Mul, Any, Any), (BinaryOp::Div, Any, AwayFromZero), (BinaryOp::Pow, Positive, Any),
            (BinaryOp::Max, Distinct, Distinct), (BinaryOp::Sub, Any, Any), (BinaryOp::Rem, Any, AwayFromZero),
        ] {
            for which in 0..2 {
                check(&[s.clone(), b.clone()], &[da, db], seed, |g, x| {
                    inner_vjp(g, x, which, seed, |g, x| {
                        let y = bin(g, bop, x[0], x[1]);
                        bin(g, BinaryOp::Mul, y, x[0])
                    })
                });
            }
        }
    }

    #[test]
    fn second_derivatives_of_structured_ops(seed in any::<u64>(), m in 1usize..3, k in 1usize..4) {
        // matmul, reductions, gather/scatter, conv and pooling inside an inner gradient.
        check(&[vec![2, m, k], vec![k, 2]], &[Any, Any], seed, |g, x| {
            inner_vjp(g, x, 0, seed, |g, x| {
                let y = op(g, Op::MatMul, &[x[0], x[1]]);
                un(g, UnaryOp::Tanh, y)
            })
        });
        check(&[vec![3, k]], &[Distinct], seed, |g, x| {
            inner_vjp(g, x, 0, seed, |g, x| {
                let y = op(g, Op::Reduce { op: ReduceOp::Max, axes: vec![1], keepdim: true }, &[x[0]]);
                let p = op(g, Op::Reduce { op: ReduceOp::Prod, axes: vec![1], keepdim: true }, &[x[0]]);
                let y = bin(g, BinaryOp::Mul, y, p);
                bin(g, BinaryOp::Mul, y, x[0])
            })
        });
        check(&[vec![1, 2, 4, 4], vec![2, 2, 2, 2]], &[Any, Any], seed, |g, x| {
            inner_vjp(g, x, 1, seed, |g, x| {
                let c = op(g, Op::Conv2d { stride: [2, 1], padding: [1, 0], dilation: [1, 2], groups: 1 }, &[x[0], x[1]]);
                let c = un(g, UnaryOp::Sin, c);
                op(g, Op::Window { op: WindowOp::Sum, window: vec![2, 1], stride: vec![1, 1], padding: vec![(0, 1), (0, 0)] }, &[c])
            })
        });
        check(&[vec![2, 4, 4]], &[Distinct], seed, |g, x| {
            inner_vjp(g, x, 0, seed, |g, x| {
                let sq = bin(g, BinaryOp::Mul, x[0], x[0]);
                op(g, Op::Window { op: WindowOp::Max, window: vec![2, 2], stride: vec![2, 1], padding: vec![(1, 0), (0, 1)] }, &[sq])
            })
        });
        check(&[vec![3, 4]], &[Any], seed, |g, x| {
            inner_vjp(g, x, 0, seed, |g, x| {
                let idx = constant(g, Array::from_i64(&[3, 2], vec![0, 3, 1, 1, 2, 0]).expect("idx"));
                let picked = op(g, Op::Gather { axis: 1 }, &[x[0], idx]);
                let e = un(g, UnaryOp::Exp, picked);
                let back = op(g, Op::ScatterAdd { axis: 1 }, &[x[0], idx, e]);
                bin(g, BinaryOp::Mul, back, back)
            })
        });
    }

    #[test]
    fn jacobians_agree_in_both_modes(n in 1usize..5, m in 1usize..5, seed in any::<u64>()) {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[n]);
        let mut rng = Rng::new(seed);
        let w: Vec<f64> = (0..m * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let w = constant(&mut g, Array::from_f64(&[m, n], w).expect("w"));
        let xc = op(&mut g, Op::Reshape(Shape::known(&[n, 1])), &[x]);
        let y = op(&mut g, Op::MatMul, &[w, xc]);
        let y = un(&mut g, UnaryOp::Tanh, y);
        let y = bin(&mut g, BinaryOp::Mul, y, y);
        let fwd = autodiff::jacobian_in(&mut g, y, x, JacobianMode::Forward).expect("forward");
        let rev = autodiff::jacobian_in(&mut g, y, x, JacobianMode::Reverse).expect("reverse");
        let auto = autodiff::jacobian(&mut g, y, x).expect("auto");
        prop_assert_eq!(g.node(fwd).shape.clone(), Shape::known(&[m, 1, n]));
        let xv: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let feeds: HashMap<String, Array> = [("x".to_string(), arr(&[n], xv.clone()))].into();
        let v = eval(&g, &[fwd, rev, auto, y], &feeds);
        for (a, b) in v[0].iter().zip(&v[1]) {
            prop_assert!((a - b).abs() < 1e-12, "forward {a} vs reverse {b}");
        }
        let chosen = if JacobianMode::choose(m as u64, n as u64) == JacobianMode::Forward { &v[0] } else { &v[1] };
        prop_assert_eq!(chosen, &v[2]);
        let h = 1e-6;
        for j in 0..n {
            let shifted = |s: f64| {
                let mut xs = xv.clone();
                xs[j] += s * h;
                let f: HashMap<String, Array> = [("x".to_string(), arr(&[n], xs))].into();
                eval(&g, &[y], &f).remove(0)
            };
            let (p, q) = (shifted(1.0), shifted(-1.0));
            for i in 0..m {
                let fd = (p[i] - q[i]) / (2.0 * h);
                prop_assert!((v[0][i * n + j] - fd).abs() < 1e-6, "J[{i},{j}] = {} vs {fd}", v[0][i * n + j]);
            }
        }
    }
}

#[test]
fn jacobian_mode_follows_the_smaller_side() {
    assert_eq!(JacobianMode::choose(1, 10), JacobianMode::Reverse);
    assert_eq!(JacobianMode::choose(3, 4), JacobianMode::Reverse);
    assert_eq!(JacobianMode::choose(4, 4), JacobianMode::Forward);
    assert_eq!(JacobianMode::choose(10, 1), JacobianMode::Forward);
}

#[test]
fn hessian_of_a_quadratic_form_is_exact() {
    // f(x) = x^T A x with integer A: H = A + A^T exactly, in every mode.
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let a = constant(
        &mut g,
        Array::from_f64(&[3, 3], vec![1.0, 2.0, 0.0, -1.0, 3.0, 4.0, 0.0, 5.0, -2.0]).expect("a"),
    );
    let xc = op(&mut g, Op::Reshape(Shape::known(&[3, 1])), &[x]);
    let xr = op(&mut g, Op::Reshape(Shape::known(&[1, 3])), &[x]);
    let ax = op(&mut g, Op::MatMul, &[a, xc]);
    let f = op(&mut g, Op::MatMul, &[xr, ax]);
    let f = sum_all(&mut g, f);
    let h = autodiff::hessian(&mut g, f, x).expect("hessian");
    let feeds: HashMap<String, Array> = [("x".to_string(), arr(&[3], vec![0.5, -1.5, 2.0]))].into();
    let v = eval(&g, &[h], &feeds);
    assert_eq!(v[0], vec![2.0, 1.0, 0.0, 1.0, 6.0, 9.0, 0.0, 9.0, -4.0]);
}

#[test]
fn jvp_of_grad_is_a_hessian_vector_product() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[2]);
    let t = input(&mut g, "t", &[2]);
    // f = x0^2 x1 + sin(x1): H = [[2 x1, 2 x0], [2 x0, -sin x1]].
    let x0 = op(
        &mut g,
        Op::Slice(vec![kiln_ir::SliceAxis {
            start: 0,
            stop: 1,
            step: 1,
        }]),
        &[x],
    );
    let x1 = op(
        &mut g,
        Op::Slice(vec![kiln_ir::SliceAxis {
            start: 1,
            stop: 2,
            step: 1,
        }]),
        &[x],
    );
    let sq = bin(&mut g, BinaryOp::Mul, x0, x0);
    let p = bin(&mut g, BinaryOp::Mul, sq, x1);
    let s = un(&mut g, UnaryOp::Sin, x1);
    let f = bin(&mut g, BinaryOp::Add, p, s);
    let f = sum_all(&mut g, f);
    let gr = autodiff::grad(&mut g, f, &[x]).expect("grad")[0];
    let hv = autodiff::jvp(&mut g, &[gr], &[x], &[t]).expect("jvp")[0];
    let (a, b) = (0.7, -0.3);
    let feeds: HashMap<String, Array> = [
        ("x".to_string(), arr(&[2], vec![a, b])),
        ("t".to_string(), arr(&[2], vec![1.0, 2.0])),
    ]
    .into();
    let v = eval(&g, &[hv], &feeds);
    let want = [2.0 * b + 2.0 * 2.0 * a, 2.0 * a - 2.0 * b.sin()];
    for (x, w) in v[0].iter().zip(want) {
        assert!((x - w).abs() < 1e-14, "{x} vs {w}");
    }
    assert_eq!(g.node(hv).dtype, DType::F64);
}
