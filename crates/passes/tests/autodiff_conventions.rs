//! The documented derivative conventions at kinks and ties (they match PyTorch), and
//! stop_gradient, checked on exact values.

use crate::autodiff_util;

use autodiff_util::{arr, bin, eval, input, op, scalar, sum_all, un};
use kiln_ir::{ArgOp, BinaryOp, Graph, NodeId, Op, ReduceOp, UnaryOp, WindowOp};
use kiln_passes::autodiff;
use std::collections::HashMap;

/// Gradients of `sum(build(x...))` (or of the scalar it returns) at the given values.
fn grads(
    inputs: &[(&[usize], Vec<f64>)],
    build: impl Fn(&mut Graph, &[NodeId]) -> NodeId,
) -> Vec<Vec<f64>> {
    let mut g = Graph::new();
    let xs: Vec<NodeId> = inputs
        .iter()
        .enumerate()
        .map(|(i, (s, _))| input(&mut g, &format!("x{i}"), s))
        .collect();
    let y = build(&mut g, &xs);
    let loss = sum_all(&mut g, y);
    let gs = autodiff::grad(&mut g, loss, &xs).expect("grad");
    let feeds: HashMap<String, _> = inputs
        .iter()
        .enumerate()
        .map(|(i, (s, v))| (format!("x{i}"), arr(s, v.clone())))
        .collect();
    eval(&g, &gs, &feeds)
}

#[test]
fn relu_has_zero_derivative_at_zero() {
    let g = grads(&[(&[3], vec![-1.0, 0.0, 2.0])], |g, x| {
        let z = scalar(g, 0.0);
        let pos = bin(g, BinaryOp::Gt, x[0], z);
        op(g, Op::Select, &[pos, x[0], z])
    });
    assert_eq!(g[0], vec![0.0, 0.0, 1.0]);
}

#[test]
fn abs_and_sign_floor_round_at_kinks() {
    let g = grads(&[(&[3], vec![-1.5, 0.0, 2.0])], |g, x| {
        un(g, UnaryOp::Abs, x[0])
    });
    assert_eq!(g[0], vec![-1.0, 0.0, 1.0]);
    for u in [UnaryOp::Sign, UnaryOp::Floor, UnaryOp::Ceil, UnaryOp::Round] {
        let g = grads(&[(&[3], vec![-1.5, 0.0, 2.0])], |g, x| {
            let y = un(g, u, x[0]);
            bin(g, BinaryOp::Mul, y, x[0])
        });
        let expect: Vec<f64> = match u {
            UnaryOp::Sign => vec![-1.0, 0.0, 1.0],
            UnaryOp::Floor => vec![-2.0, 0.0, 2.0],
            UnaryOp::Ceil => vec![-1.0, 0.0, 2.0],
            _ => vec![-2.0, 0.0, 2.0],
        };
        assert_eq!(
            g[0], expect,
            "{u:?} contributes no gradient, only the product rule's other factor"
        );
    }
}

#[test]
fn binary_max_and_min_split_ties_half_half() {
    let a = vec![1.0, 2.0, 3.0];
    let b = vec![1.0, 5.0, -1.0];
    let g = grads(&[(&[3], a.clone()), (&[3], b.clone())], |g, x| {
        bin(g, BinaryOp::Max, x[0], x[1])
    });
    assert_eq!(g, vec![vec![0.5, 0.0, 1.0], vec![0.5, 1.0, 0.0]]);
    let g = grads(&[(&[3], a), (&[3], b)], |g, x| {
        bin(g, BinaryOp::Min, x[0], x[1])
    });
    assert_eq!(g, vec![vec![0.5, 1.0, 0.0], vec![0.5, 0.0, 1.0]]);
}

#[test]
fn binary_max_with_a_broadcast_operand_sums_its_shares() {
    // clamp-like max(x, 0) with ties at 0: each tie gives the scalar half.
    let g = grads(
        &[(&[4], vec![-1.0, 0.0, 0.0, 3.0]), (&[], vec![0.0])],
        |g, x| bin(g, BinaryOp::Max, x[0], x[1]),
    );
    assert_eq!(g, vec![vec![0.0, 0.5, 0.5, 1.0], vec![2.0]]);
}

#[test]
fn reduce_max_and_min_share_ties_evenly() {
    let x = vec![3.0, 1.0, 3.0, 3.0, /* row 2 */ 0.0, 2.0, -1.0, 2.0];
    let g = grads(&[(&[2, 4], x.clone())], |g, x| {
        op(
            g,
            Op::Reduce {
                op: ReduceOp::Max,
                axes: vec![1],
                keepdim: false,
            },
            &[x[0]],
        )
    });
    let t = 1.0 / 3.0;
    assert_eq!(g[0], vec![t, 0.0, t, t, 0.0, 0.5, 0.0, 0.5]);
    let g = grads(&[(&[2, 4], x)], |g, x| {
        op(
            g,
            Op::Reduce {
                op: ReduceOp::Min,
                axes: vec![0, 1],
                keepdim: true,
            },
            &[x[0]],
        )
    });
    assert_eq!(g[0], vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn window_max_gives_everything_to_the_first_maximum() {
    // 4x4, window 2x2 stride 2, plus an overlapping 3x3 stride-1 pooling.
    let x = vec![
        1.0, 1.0, 0.0, 2.0, //
        0.0, 1.0, 2.0, 2.0, //
        5.0, 4.0, 7.0, 7.0, //
        5.0, 5.0, 7.0, 7.0,
    ];
    let g = grads(&[(&[1, 4, 4], x.clone())], |g, x| {
        op(
            g,
            Op::Window {
                op: WindowOp::Max,
                window: vec![2, 2],
                stride: vec![2, 2],
                padding: vec![(0, 0), (0, 0)],
            },
            &[x[0]],
        )
    });
    assert_eq!(
        g[0],
        vec![
            1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0
        ]
    );
    let g = grads(&[(&[1, 4, 4], x)], |g, x| {
        op(
            g,
            Op::Window {
                op: WindowOp::Max,
                window: vec![3, 3],
                stride: vec![1, 1],
                padding: vec![(1, 1), (0, 0)],
            },
            &[x[0]],
        )
    });
    // Windows over rows {-1..1, 0..2, 1..3, 2..4} x cols {0..2, 1..3}: the first maximum of
    // each in row-major order: (1,2), (0,3) [the 2 at (0,3) precedes the 2s of row 1], then
    // (2,2) for the six windows that reach row 2.
    let mut want = vec![0.0; 16];
    want[6] = 1.0;
    want[3] = 1.0;
    want[10] = 6.0;
    assert_eq!(g[0], want);
}

#[test]
fn argmax_and_comparisons_pass_no_gradient() {
    let g = grads(&[(&[2, 3], vec![1.0, 4.0, 2.0, 0.0, -1.0, 3.0])], |g, x| {
        let i = op(
            g,
            Op::ArgReduce {
                op: ArgOp::ArgMax,
                axis: 1,
                keepdim: true,
            },
            &[x[0]],
        );
        let f = op(g, Op::Cast(kiln_ir::DType::F64), &[i]);
        let lt = bin(g, BinaryOp::Lt, x[0], f);
        let lf = op(g, Op::Cast(kiln_ir::DType::F64), &[lt]);
        let y = bin(g, BinaryOp::Add, f, lf);
        bin(g, BinaryOp::Mul, y, x[0])
    });
    // y = (argmax + [x < argmax]) treated as a constant factor.
    assert_eq!(g[0], vec![1.0, 1.0, 1.0, 3.0, 3.0, 2.0]);
}

#[test]
fn rem_derivatives() {
    let g = grads(
        &[(&[3], vec![7.5, -7.5, 2.0]), (&[3], vec![2.0, 2.0, -3.0])],
        |g, x| bin(g, BinaryOp::Rem, x[0], x[1]),
    );
    assert_eq!(g, vec![vec![1.0, 1.0, 1.0], vec![-3.0, 4.0, 1.0]]);
}

#[test]
fn pow_at_zero_base_and_zero_exponent() {
    // d/da a^b = 0 where b == 0; d/db a^b = 0 where a == 0 and b >= 0 (PyTorch).
    let g = grads(
        &[(&[3], vec![0.0, 2.0, 0.0]), (&[3], vec![0.0, 0.0, 2.0])],
        |g, x| bin(g, BinaryOp::Pow, x[0], x[1]),
    );
    assert_eq!(g[0], vec![0.0, 0.0, 0.0]);
    assert_eq!(g[1], vec![0.0, 2f64.ln(), 0.0]);
}

#[test]
fn prod_gradient_is_exact_with_zeros() {
    let g = grads(
        &[(&[3, 3], vec![2.0, 3.0, 4.0, 2.0, 0.0, 5.0, 0.0, 3.0, 0.0])],
        |g, x| {
            op(
                g,
                Op::Reduce {
                    op: ReduceOp::Prod,
                    axes: vec![1],
                    keepdim: false,
                },
                &[x[0]],
            )
        },
    );
    assert_eq!(g[0], vec![12.0, 8.0, 6.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn stop_gradient_cuts_one_path() {
    // y = x * stop_gradient(x): dy/dx = stop_gradient(x) = x, not 2x.
    let g = grads(&[(&[3], vec![1.0, -2.0, 3.0])], |g, x| {
        let s = op(g, Op::StopGradient, &[x[0]]);
        bin(g, BinaryOp::Mul, x[0], s)
    });
    assert_eq!(g[0], vec![1.0, -2.0, 3.0]);
    let g = grads(&[(&[2], vec![1.0, 2.0])], |g, x| {
        let e = un(g, UnaryOp::Exp, x[0]);
        op(g, Op::StopGradient, &[e])
    });
    assert_eq!(g[0], vec![0.0, 0.0], "no path: zeros");
}

#[test]
fn unrelated_wrt_gets_zeros() {
    let g = grads(
        &[(&[2], vec![1.0, 2.0]), (&[2, 2], vec![1.0; 4])],
        |g, x| un(g, UnaryOp::Sin, x[0]),
    );
    assert_eq!(g[1], vec![0.0; 4]);
}

#[test]
fn casts_between_floats_carry_the_gradient_in_the_operands_dtype() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let lo = op(&mut g, Op::Cast(kiln_ir::DType::F32), &[x]);
    let two = autodiff_util::constant(&mut g, kiln_ir::Array::scalar(kiln_ir::DType::F32, 2.0));
    let y = bin(&mut g, BinaryOp::Mul, lo, two);
    let y = bin(&mut g, BinaryOp::Mul, y, lo);
    let loss = sum_all(&mut g, y);
    let dx = autodiff::grad(&mut g, loss, &[x]).expect("grad")[0];
    let dlo = autodiff::grad(&mut g, loss, &[lo]).expect("grad")[0];
    assert_eq!(g.node(dx).dtype, kiln_ir::DType::F64);
    assert_eq!(g.node(dlo).dtype, kiln_ir::DType::F32);
    let feeds: HashMap<String, _> = [("x".to_string(), arr(&[3], vec![0.5, -1.0, 3.0]))].into();
    let v = eval(&g, &[dx, dlo], &feeds);
    assert_eq!(v[0], vec![2.0, -4.0, 12.0]);
    assert_eq!(v[1], vec![2.0, -4.0, 12.0]);
}
