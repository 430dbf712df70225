//! Staged reductions: a reduction read inside another reduction's operand at coordinates
//! that do not move with the reduction (softmax's row max, layer norm's mean) joins that
//! kernel as an earlier reduction stage; one read at coordinates that do move with it (a
//! genuinely nested reduction) stays in a kernel of its own. Every case is checked against
//! the interpreter, and a seeded sweep of random row-statistic graphs checks that the
//! planner never hands the lowering a nested reduction.

use crate::fuse_util;

use fuse_util::*;
use kiln_ir::{BinaryOp, DType, Dim, Graph, NodeId, Op, ReduceOp, Shape, SliceAxis, UnaryOp};
use kiln_kernel::{Expr, Kernel, Program};
use kiln_passes::fuse::lower;
use std::collections::HashMap;

/// The highest reduction stage of each kernel (0 for a kernel without `reduce` nodes).
fn reduce_stages(p: &Program) -> Vec<u32> {
    p.kernels
        .iter()
        .map(|k| match k {
            Kernel::Loop(l) => l
                .body
                .values
                .iter()
                .zip(l.body.stages())
                .filter(|(e, _)| matches!(e, Expr::Reduce { .. }))
                .map(|(_, s)| s)
                .max()
                .unwrap_or(0),
            Kernel::Matmul(_) | Kernel::Conv2d(_) => 0,
        })
        .collect()
}

/// Lowers `outs`, checks them against the interpreter on three feeds, and returns the
/// reduction stages of the kernels with the report's `(kernels, scratch buffers)`.
fn staged(g: &Graph, outs: &[NodeId], bindings: &HashMap<String, u64>) -> (Vec<u32>, usize, usize) {
    let mut counts = (0, 0);
    for seed in 0..3 {
        let r = check_against_interp(g, outs, bindings, seed);
        counts = (r.kernels(), r.scratch);
    }
    let named: Vec<(String, NodeId)> = outs
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("out{i}"), n))
        .collect();
    let p = lower(g, &named).unwrap_or_else(|e| panic!("lowering failed: {e}"));
    (reduce_stages(&p), counts.0, counts.1)
}

fn reduce_keep(g: &mut Graph, op: ReduceOp, x: NodeId, axes: &[usize]) -> NodeId {
    reduce(g, op, x, axes, true)
}

#[test]
fn softmax_is_one_kernel_with_two_reduce_stages() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[10]));
    let y = softmax(&mut g, x);
    assert_eq!(staged(&g, &[y], &bind_n(3)), (vec![2], 1, 0));
}

#[test]
fn layer_norm_is_one_kernel_with_two_reduce_stages() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[16]));
    let w = param(&mut g, "ln.weight", DType::F32, &[16]);
    let b = param(&mut g, "ln.bias", DType::F32, &[16]);
    let y = layer_norm(&mut g, x, w, b, 1e-5);
    assert_eq!(staged(&g, &[y], &bind_n(4)), (vec![2], 1, 0));
}

/// `x - max - log(sum(exp(x - max)))` over the last axis.
fn log_softmax(g: &mut Graph, x: NodeId) -> NodeId {
    let last = g.node(x).shape.rank() - 1;
    let m = reduce_keep(g, ReduceOp::Max, x, &[last]);
    let s = bin(g, BinaryOp::Sub, x, m);
    let e = un(g, UnaryOp::Exp, s);
    let z = reduce_keep(g, ReduceOp::Sum, e, &[last]);
    let l = un(g, UnaryOp::Log, z);
    bin(g, BinaryOp::Sub, s, l)
}

#[test]
fn log_softmax_and_cross_entropy_rows_are_one_kernel() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[7]));
    let ls = log_softmax(&mut g, x);
    assert_eq!(staged(&g, &[ls], &bind_n(3)), (vec![2], 1, 0));
    // The per-row loss `-sum(target * log_softmax(x))` is a third stage of the same kernel.
    let t = input(&mut g, "target", DType::F32, n_shape(&[7]));
    let p = bin(&mut g, BinaryOp::Mul, t, ls);
    let s = reduce_keep(&mut g, ReduceOp::Sum, p, &[1]);
    let loss = un(&mut g, UnaryOp::Neg, s);
    assert_eq!(staged(&g, &[loss], &bind_n(3)), (vec![3], 1, 0));
}

#[test]
fn row_statistics_read_through_row_preserving_views_still_fuse() {
    // The max without keepdim, unsqueezed by a reshape.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[6]));
    let m = reduce(&mut g, ReduceOp::Max, x, &[1], false);
    let n = Dim::sym("N");
    let m = add(
        &mut g,
        Op::Reshape(Shape(vec![n.clone(), Dim::known(1)])),
        &[m],
    );
    let s = bin(&mut g, BinaryOp::Sub, x, m);
    let e = un(&mut g, UnaryOp::Exp, s);
    let z = reduce_keep(&mut g, ReduceOp::Sum, e, &[1]);
    let y = bin(&mut g, BinaryOp::Div, e, z);
    assert_eq!(staged(&g, &[y], &bind_n(2)), (vec![2], 1, 0));

    // A softmax over the last axis of a permuted tensor whose max was taken before the
    // permute: the statistic's coordinates are the kernel's loop axes, swapped.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[2, 5]));
    let m = reduce_keep(&mut g, ReduceOp::Max, x, &[2]);
    let xt = add(&mut g, Op::Permute(vec![1, 0, 2]), &[x]);
    let mt = add(&mut g, Op::Permute(vec![1, 0, 2]), &[m]);
    let s = bin(&mut g, BinaryOp::Sub, xt, mt);
    let e = un(&mut g, UnaryOp::Exp, s);
    let z = reduce_keep(&mut g, ReduceOp::Sum, e, &[2]);
    let y = bin(&mut g, BinaryOp::Div, e, z);
    assert_eq!(staged(&g, &[y], &bind_n(3)), (vec![2], 1, 0));
}

#[test]
fn a_nested_reduction_stays_in_its_own_kernel() {
    // y[i] = sum_j x[i, j] * max_k x[j, k]: the max is needed at a row that moves with j.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, Shape::known(&[5, 5]));
    let m = reduce(&mut g, ReduceOp::Max, x, &[1], false);
    let p = bin(&mut g, BinaryOp::Mul, x, m);
    let y = reduce(&mut g, ReduceOp::Sum, p, &[1], false);
    assert_eq!(staged(&g, &[y], &HashMap::new()), (vec![1, 1], 2, 1));

    // The same through a permute of a keepdim max: `[5, 1] -> [1, 5]`.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, Shape::known(&[5, 5]));
    let m = reduce_keep(&mut g, ReduceOp::Max, x, &[1]);
    let mt = add(&mut g, Op::Permute(vec![1, 0]), &[m]);
    let p = bin(&mut g, BinaryOp::Sub, x, mt);
    let e = un(&mut g, UnaryOp::Exp, p);
    let z = reduce_keep(&mut g, ReduceOp::Sum, e, &[1]);
    let y = bin(&mut g, BinaryOp::Div, e, z);
    assert_eq!(staged(&g, &[y], &HashMap::new()), (vec![1, 1], 2, 1));

    // Read at a reversed row (`flip`), the max also moves with the outer reduction.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, Shape::known(&[4, 4]));
    let m = reduce(&mut g, ReduceOp::Max, x, &[1], false);
    let f = add(&mut g, Op::Flip { axes: vec![0] }, &[m]);
    let p = bin(&mut g, BinaryOp::Mul, x, f);
    let y = reduce(&mut g, ReduceOp::Sum, p, &[1], false);
    assert_eq!(staged(&g, &[y], &HashMap::new()), (vec![1, 1], 2, 1));
}

#[test]
fn a_statistic_under_a_pad_guard_that_moves_with_the_reduction_stays_separate() {
    // m = max(x / 3) per row, padded along the reduced axis: the pad's guard depends on the
    // outer reduction variable, and inside m's operand it would turn the integer division
    // into a division by 1 at the padded positions, so m keeps its own kernel.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::I32, n_shape(&[6]));
    let three = scalar(&mut g, 3.0, DType::I32);
    let q = bin(&mut g, BinaryOp::Div, x, three);
    let m = reduce_keep(&mut g, ReduceOp::Max, q, &[1]);
    let n = Dim::sym("N");
    let b = add(
        &mut g,
        Op::Expand(Shape(vec![n.clone(), Dim::known(4)])),
        &[m],
    );
    let p = add(
        &mut g,
        Op::Pad {
            pads: vec![(0, 0), (1, 1)],
            value: kiln_ir::F64Bits::new(0.0),
        },
        &[b],
    );
    let t = bin(&mut g, BinaryOp::Mul, x, p);
    let y = reduce_keep(&mut g, ReduceOp::Sum, t, &[1]);
    let (stages, kernels, scratch) = staged(&g, &[y], &bind_n(3));
    assert_eq!((stages, kernels, scratch), (vec![1, 1], 2, 1));
}

/// A random graph of row statistics over `x: [N, C, C]`: reductions over random axes,
/// broadcasts back against `x` or other nodes, permutes, reshapes, pads, slices and flips,
/// in `f32` or `i32` (exact arithmetic either way: small values, no division).
fn random_graph(rng: &mut Rng) -> (Graph, Vec<NodeId>) {
    let c = 2 + rng.below(2) as usize;
    let dt = if rng.below(2) == 0 {
        DType::F32
    } else {
        DType::I32
    };
    let mut g = Graph::new();
    let x = input(&mut g, "x", dt, n_shape(&[c, c]));
    let w = input(&mut g, "w", dt, Shape::known(&[c, c]));
    let mut pool = vec![x, w];
    let mut reductions = Vec::new();
    let mut last_axes: Option<Vec<usize>> = None;
    let steps = 4 + rng.below(9);
    for _ in 0..steps {
        let last = *pool.last().unwrap_or(&x);
        let other = pool[rng.below(pool.len() as u64) as usize];
        let rank = g.node(last).shape.rank();
        let op = match rng.below(12) {
            0..=3 if rank > 0 => {
                let fresh: Vec<usize> = (0..rank).filter(|_| rng.below(2) == 0).collect();
                let axes = match &last_axes {
                    // Mostly the previous reduction's axes again: candidates for staging.
                    Some(a) if rng.below(3) != 0 && a.iter().all(|&k| k < rank) => a.clone(),
                    _ if fresh.is_empty() => vec![rng.below(rank as u64) as usize],
                    _ => fresh,
                };
                last_axes = Some(axes.clone());
                let op = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min][rng.below(3) as usize];
                let keepdim = rng.below(3) != 0;
                Some((Op::Reduce { op, axes, keepdim }, vec![last]))
            }
            4..=7 => {
                let b = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max]
                    [rng.below(4) as usize];
                let base = if rng.below(3) != 0 { x } else { other };
                let ops = if rng.below(2) == 0 {
                    vec![base, last]
                } else {
                    vec![last, base]
                };
                Some((Op::Binary(b), ops))
            }
            8 if rank > 1 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                let a = rng.below(rank as u64) as usize;
                let b = rng.below(rank as u64) as usize;
                perm.swap(a, b);
                Some((Op::Permute(perm), vec![last]))
            }
            9 => {
                let mut dims = g.node(last).shape.0.clone();
                match dims.iter().position(Dim::is_one) {
                    Some(k) if rng.below(2) == 0 => {
                        dims.remove(k);
                    }
                    _ => dims.insert(rng.below(dims.len() as u64 + 1) as usize, Dim::known(1)),
                }
                Some((Op::Reshape(Shape(dims)), vec![last]))
            }
            10 if rank > 0 => {
                let a = rng.below(rank as u64) as usize;
                let op = match rng.below(3) {
                    0 => Op::Flip { axes: vec![a] },
                    1 => Op::Pad {
                        pads: (0..rank)
                            .map(|k| if k == a { (1, 0) } else { (0, 0) })
                            .collect(),
                        value: kiln_ir::F64Bits::new(0.0),
                    },
                    _ => match g.node(last).shape.0[a].as_known() {
                        Some(len) if len >= 2 => Op::Slice(
                            (0..rank)
                                .map(|k| SliceAxis {
                                    start: u64::from(k == a),
                                    stop: if k == a { len } else { u64::MAX },
                                    step: 1,
                                })
                                .collect(),
                        ),
                        _ => Op::Flip { axes: vec![a] },
                    },
                };
                Some((op, vec![last]))
            }
            _ => {
                let u = [UnaryOp::Neg, UnaryOp::Abs][rng.below(2) as usize];
                Some((Op::Unary(u), vec![last]))
            }
        };
        let Some((op, operands)) = op else { continue };
        let is_reduce = matches!(op, Op::Reduce { .. });
        if let Ok(n) = g.add(op, &operands) {
            pool.push(n);
            if is_reduce {
                reductions.push(n);
            }
        }
    }
    let mut outs = vec![*pool.last().unwrap_or(&x)];
    if let Some(&r) = reductions.first()
        && rng.below(3) == 0
        && !outs.contains(&r)
    {
        outs.push(r);
    }
    (g, outs)
}

#[test]
fn random_row_statistics_match_the_interpreter() {
    let mut rng = Rng(0x5eed);
    let (mut staged_kernels, mut checked) = (0, 0);
    for case in 0..3000 {
        let (g, outs) = random_graph(&mut rng);
        let n = 1 + rng.below(3);
        let bindings = bind_n(n);
        let named: Vec<(String, NodeId)> = outs
            .iter()
            .enumerate()
            .map(|(i, &o)| (format!("out{i}"), o))
            .collect();
        let program =
            lower(&g, &named).unwrap_or_else(|e| panic!("case {case}: lowering failed: {e}\n{g}"));
        let (inputs, params) = random_feeds(&g, &bindings, case);
        let Ok(want) = kiln_interp::eval(&g, &outs, &inputs, &params) else {
            continue;
        };
        let (got, _) = execute(&program, &bindings, &inputs, &params)
            .unwrap_or_else(|e| panic!("case {case}: exec failed: {e}\n{g}\n{program}"));
        for (i, w) in want.iter().enumerate() {
            if let Err(m) = same_data(w.data(), &got[&format!("out{i}")]) {
                panic!("case {case}: output {i}: {m}\ngraph:\n{g}\nprogram:\n{program}");
            }
        }
        checked += 1;
        staged_kernels += reduce_stages(&program).iter().filter(|&&s| s >= 2).count();
    }
    assert!(checked > 2500, "only {checked} cases ran");
    assert!(
        staged_kernels > 150,
        "only {staged_kernels} staged kernels: the generator no longer exercises staging"
    );
}
