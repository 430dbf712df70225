//! The derivative graph is clean: the transform emits no dead and no duplicated node, so
//! the standard CSE and DCE passes find nothing to do; and every derivative graph verifies.

use crate::autodiff_util;

use autodiff_util::{bin, constant, input, op, sum_all, un};
use kiln_ir::{
    Array, BinaryOp, DType, Graph, NodeId, Op, ReduceOp, Shape, UnaryOp, WindowOp, verify,
};
use kiln_passes::autodiff;
use kiln_passes::pipeline::{Func, PipelineOptions, optimize};
use kiln_passes::{cse, dce};
use std::collections::{HashMap, HashSet};

/// A small conv net with an MLP head and a cross-entropy loss; returns (loss, params).
fn convnet(g: &mut Graph) -> (NodeId, Vec<NodeId>) {
    let x = input(g, "x", &[2, 1, 6, 6]);
    let labels = g
        .add(
            Op::Input {
                name: "labels".into(),
                dtype: DType::I64,
                shape: Shape::known(&[2, 1]),
            },
            &[],
        )
        .expect("labels");
    let param = |g: &mut Graph, name: &str, s: &[usize]| {
        g.add(
            Op::Parameter {
                name: name.into(),
                dtype: DType::F64,
                shape: Shape::known(s),
            },
            &[],
        )
        .expect("param")
    };
    let w = param(g, "conv.weight", &[4, 1, 3, 3]);
    let b = param(g, "conv.bias", &[4, 1, 1]);
    let fw = param(g, "fc.weight", &[16, 3]);
    let fb = param(g, "fc.bias", &[3]);
    let c = op(
        g,
        Op::Conv2d {
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
        &[x, w],
    );
    let c = bin(g, BinaryOp::Add, c, b);
    let zero = constant(g, Array::scalar(DType::F64, 0.0));
    let pos = bin(g, BinaryOp::Gt, c, zero);
    let c = op(g, Op::Select, &[pos, c, zero]);
    let p = op(
        g,
        Op::Window {
            op: WindowOp::Max,
            window: vec![3, 3],
            stride: vec![3, 3],
            padding: vec![(0, 0), (0, 0)],
        },
        &[c],
    );
    let h = op(g, Op::Reshape(Shape::known(&[2, 16])), &[p]);
    let h = op(g, Op::MatMul, &[h, fw]);
    let logits = bin(g, BinaryOp::Add, h, fb);
    let m = op(
        g,
        Op::Reduce {
            op: ReduceOp::Max,
            axes: vec![1],
            keepdim: true,
        },
        &[logits],
    );
    let m = op(g, Op::StopGradient, &[m]);
    let s = bin(g, BinaryOp::Sub, logits, m);
    let e = un(g, UnaryOp::Exp, s);
    let z = op(
        g,
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![1],
            keepdim: true,
        },
        &[e],
    );
    let lz = un(g, UnaryOp::Log, z);
    let logp = bin(g, BinaryOp::Sub, s, lz);
    let picked = op(g, Op::Gather { axis: 1 }, &[logp, labels]);
    let total = sum_all(g, picked);
    let loss = un(g, UnaryOp::Neg, total);
    (loss, vec![w, b, fw, fb])
}

/// Asserts that every node is an input or an ancestor of `roots`, and that no two nodes
/// apply the same op to the same operands.
fn assert_clean(g: &Graph, roots: &[NodeId]) {
    let live: HashSet<NodeId> = g.ancestors(roots).expect("acyclic").into_iter().collect();
    let mut seen: HashMap<(Op, Vec<NodeId>), NodeId> = HashMap::new();
    for id in g.node_ids() {
        let n = g.node(id);
        assert!(
            live.contains(&id) || matches!(n.op, Op::Input { .. }),
            "dead node {id}: {:?}\n{g}",
            n.op
        );
        if let Some(prev) = seen.insert((n.op.clone(), g.operands(id)), id) {
            panic!("{id} duplicates {prev}: {:?}\n{g}", n.op);
        }
    }
}

fn assert_passes_find_nothing(g: &Graph, roots: &[NodeId]) {
    let mut f = Func::new(g.clone(), roots.to_vec()).expect("func");
    let c = cse::cse(&mut f).expect("cse");
    assert!(!c.changed(), "cse merged nodes: {c:?}\n{g}");
    let d = dce::dce(&mut f).expect("dce");
    assert!(!d.changed(), "dce removed nodes: {d:?}\n{g}");
}

#[test]
fn first_order_gradients_are_clean() {
    let mut g = Graph::new();
    let (loss, params) = convnet(&mut g);
    let grads = autodiff::grad(&mut g, loss, &params).expect("grad");
    verify(&g).expect("verifies");
    let mut roots = vec![loss];
    roots.extend(&grads);
    assert_clean(&g, &roots);
    assert_passes_find_nothing(&g, &roots);
}

#[test]
fn higher_order_and_forward_mode_graphs_are_clean() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let w = input(&mut g, "w", &[2, 3]);
    let xc = op(&mut g, Op::Reshape(Shape::known(&[3, 1])), &[x]);
    let h = op(&mut g, Op::MatMul, &[w, xc]);
    let h = un(&mut g, UnaryOp::Tanh, h);
    let s = un(&mut g, UnaryOp::Sigmoid, h);
    let f = sum_all(&mut g, s);
    let hess = autodiff::hessian(&mut g, f, x).expect("hessian");
    let jac = autodiff::jacobian(&mut g, s, w).expect("jacobian");
    let t = input(&mut g, "t", &[3]);
    let jv = autodiff::jvp(&mut g, &[s], &[x], &[t]).expect("jvp");
    verify(&g).expect("verifies");
    let mut roots = vec![f, hess, jac];
    roots.extend(&jv);
    // Forward over reverse needs the tangents of the gradient, not the gradient itself:
    // those gradient nodes are dead unless asked for, and DCE removes exactly them. No
    // node is duplicated.
    let mut func = Func::new(g.clone(), roots.clone()).expect("func");
    let c = cse::cse(&mut func).expect("cse");
    assert!(!c.changed(), "cse merged nodes: {c:?}");
    dce::dce(&mut func).expect("dce");
    assert_clean(&func.graph, &func.outputs);
    let mut with_grad = roots;
    with_grad.extend(autodiff::grad(&mut g, f, &[x]).expect("grad"));
    assert_clean(&g, &with_grad);
}

#[test]
fn the_standard_pipeline_keeps_the_gradients_and_leaves_no_dead_nodes() {
    let mut g = Graph::new();
    let (loss, params) = convnet(&mut g);
    let grads = autodiff::grad(&mut g, loss, &params).expect("grad");
    let mut roots = vec![loss];
    roots.extend(&grads);
    let before = g.len();
    let mut f = Func::new(g, roots).expect("func");
    optimize(&mut f, &PipelineOptions::default()).expect("optimize");
    assert!(f.graph.len() <= before);
    assert_clean(&f.graph, &f.outputs);
}

/// A weight broadcast over a batched operand (a linear layer on `[B, T, K]`) gets its
/// gradient from one matmul over the flattened rows, `[K, B*T] @ [B*T, N]`: no batched
/// matmul, no sum over the batch; the values are those of `sum_b a_bᵀ (2 y_b)`.
#[test]
fn a_broadcast_weight_gradient_is_one_flat_matmul() {
    let mut g = Graph::new();
    let a = input(&mut g, "a", &[2, 3, 4]);
    let w = input(&mut g, "w", &[4, 5]);
    let y = op(&mut g, Op::MatMul, &[a, w]);
    let sq = bin(&mut g, BinaryOp::Mul, y, y);
    let loss = sum_all(&mut g, sq);
    let dw = autodiff::grad(&mut g, loss, &[w]).expect("grad")[0];
    assert_eq!(g.node(dw).shape, Shape::known(&[4, 5]));
    let mut seen = HashSet::new();
    let mut stack = vec![dw];
    let mut matmuls = Vec::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        match &g.node(n).op {
            Op::MatMul if n != y => matmuls.push(g.node(n).shape.clone()),
            Op::Reduce { .. } => panic!("a reduction in the weight gradient:\n{g}"),
            _ => {}
        }
        stack.extend(g.operands(n));
    }
    assert_eq!(matmuls, vec![Shape::known(&[4, 5])], "{g}");
    let av: Vec<f64> = (0..24).map(|i| (i as f64 * 0.37).sin()).collect();
    let wv: Vec<f64> = (0..20).map(|i| (i as f64 * 0.11).cos()).collect();
    let feeds = HashMap::from([
        (
            "a".to_string(),
            Array::from_f64(&[2, 3, 4], av.clone()).unwrap(),
        ),
        (
            "w".to_string(),
            Array::from_f64(&[4, 5], wv.clone()).unwrap(),
        ),
    ]);
    let got = &autodiff_util::eval(&g, &[dw], &feeds)[0];
    for k in 0..4 {
        for n in 0..5 {
            let mut want = 0.0;
            for r in 0..6 {
                let yv: f64 = (0..4).map(|j| av[r * 4 + j] * wv[j * 5 + n]).sum();
                want += av[r * 4 + k] * 2.0 * yv;
            }
            assert!(
                (got[k * 5 + n] - want).abs() < 1e-12,
                "dw[{k}, {n}]: {} vs {want}",
                got[k * 5 + n]
            );
        }
    }
}
