//! Tests of CSE (what merges and what must not), DCE (what it removes and keeps) and the
//! whole-graph inference pass.

use kiln_ir::{
    Array, BinaryOp, DType, Dim, Graph, Node, NodeId, Op, Shape, UnaryOp, VerifyErrorKind,
};
use kiln_passes::cse::{cse, is_commutative};
use kiln_passes::dce::dce;
use kiln_passes::error::PassError;
use kiln_passes::infer::infer;
use kiln_passes::pipeline::Func;

fn input(g: &mut Graph, name: &str, dims: &[usize]) -> NodeId {
    g.add(
        Op::Input {
            name: name.into(),
            dtype: DType::F32,
            shape: Shape::known(dims),
        },
        &[],
    )
    .unwrap()
}

fn param(g: &mut Graph, name: &str, dims: &[usize]) -> NodeId {
    g.add(
        Op::Parameter {
            name: name.into(),
            dtype: DType::F32,
            shape: Shape::known(dims),
        },
        &[],
    )
    .unwrap()
}

fn scalar(g: &mut Graph, v: f32) -> NodeId {
    g.add(Op::Constant(Array::from_f32(&[], vec![v]).unwrap()), &[])
        .unwrap()
}

fn bin(g: &mut Graph, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
    g.add(Op::Binary(b), &[x, y]).unwrap()
}

/// `tanh(x * w + c)` built fresh each call.
fn layer(g: &mut Graph, x: NodeId, w: NodeId, c: f32) -> NodeId {
    let m = bin(g, BinaryOp::Mul, x, w);
    let k = scalar(g, c);
    let a = bin(g, BinaryOp::Add, m, k);
    g.add(Op::Unary(UnaryOp::Tanh), &[a]).unwrap()
}

#[test]
fn cse_merges_duplicate_subgraphs() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[4]);
    let w = param(&mut g, "w", &[4]);
    let a = layer(&mut g, x, w, 0.5);
    let b = layer(&mut g, x, w, 0.5);
    let c = layer(&mut g, x, w, 0.25);
    let s = bin(&mut g, BinaryOp::Sub, a, b);
    let mut f = Func::new(g, vec![s, c, b]).unwrap();
    assert_eq!(f.graph.len(), 15);
    let stats = cse(&mut f).unwrap();
    // b's mul, constant, add and tanh merge into a's; c's mul merges too.
    assert_eq!(stats.removed, 5);
    assert_eq!(f.graph.len(), 10);
    assert_eq!(f.graph.operands(s), vec![a, a]);
    assert_eq!(f.outputs, vec![s, c, a]);
    kiln_ir::verify(&f.graph).unwrap();
    let again = cse(&mut f).unwrap();
    assert!(!again.changed());
}

#[test]
fn commutative_operands_merge_in_either_order() {
    let mut g = Graph::new();
    let a = input(&mut g, "a", &[2]);
    let b = input(&mut g, "b", &[2]);
    let mut outs = Vec::new();
    for op in BinaryOp::ALL {
        let Ok(x) = g.add(Op::Binary(op), &[a, b]) else {
            continue;
        };
        let y = g.add(Op::Binary(op), &[b, a]).unwrap();
        outs.push((op, x, y));
    }
    let ids: Vec<NodeId> = outs.iter().flat_map(|&(_, x, y)| [x, y]).collect();
    let mut f = Func::new(g, ids).unwrap();
    cse(&mut f).unwrap();
    for (i, &(op, x, y)) in outs.iter().enumerate() {
        let (ox, oy) = (f.outputs[2 * i], f.outputs[2 * i + 1]);
        assert_eq!(ox, x);
        if is_commutative(op) {
            assert_eq!(oy, x, "{op:?} should merge");
        } else {
            assert_eq!(oy, y, "{op:?} must not merge");
        }
    }
    assert!(is_commutative(BinaryOp::Mul) && !is_commutative(BinaryOp::Pow));
}

#[test]
fn cse_keeps_signed_zeros_apart_and_merges_equal_nans() {
    let mut g = Graph::new();
    let p = scalar(&mut g, 0.0);
    let n = scalar(&mut g, -0.0);
    let p2 = scalar(&mut g, 0.0);
    let nan = scalar(&mut g, f32::NAN);
    let nan2 = scalar(&mut g, f32::NAN);
    let other_nan = scalar(&mut g, f32::from_bits(0x7fc0_0001));
    let mut f = Func::new(g, vec![p, n, p2, nan, nan2, other_nan]).unwrap();
    cse(&mut f).unwrap();
    assert_eq!(f.outputs, vec![p, n, p, nan, nan, other_nan]);
}

#[test]
fn sources_merge_only_when_identical() {
    let mut g = Graph::new();
    let key = g
        .add(
            Op::Input {
                name: "key".into(),
                dtype: DType::U32,
                shape: Shape::known(&[2]),
            },
            &[],
        )
        .unwrap();
    let r1 = g
        .add(
            Op::RandomBits {
                shape: Shape::known(&[4]),
            },
            &[key],
        )
        .unwrap();
    let r2 = g
        .add(
            Op::RandomBits {
                shape: Shape::known(&[4]),
            },
            &[key],
        )
        .unwrap();
    let r3 = g
        .add(
            Op::RandomBits {
                shape: Shape::known(&[2, 2]),
            },
            &[key],
        )
        .unwrap();
    let w1 = param(&mut g, "w", &[3]);
    let w2 = param(&mut g, "w", &[3]);
    let v = param(&mut g, "v", &[3]);
    let x = input(&mut g, "x", &[3]);
    let y = input(&mut g, "y", &[3]);
    let i1 = g
        .add(
            Op::Iota {
                dtype: DType::I32,
                shape: Shape::known(&[3]),
                axis: 0,
            },
            &[],
        )
        .unwrap();
    let i2 = g
        .add(
            Op::Iota {
                dtype: DType::I32,
                shape: Shape::known(&[3]),
                axis: 0,
            },
            &[],
        )
        .unwrap();
    let mut f = Func::new(g, vec![r1, r2, r3, w1, w2, v, x, y, i1, i2]).unwrap();
    let stats = cse(&mut f).unwrap();
    assert_eq!(stats.removed, 3);
    assert_eq!(f.outputs, vec![r1, r1, r3, w1, w1, v, x, y, i1, i1]);
}

#[test]
fn cse_keeps_provenance_of_the_first_node() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[2]);
    let loc = |line| {
        Some(kiln_ir::Loc {
            file: "model.rs".into(),
            line,
            column: 1,
        })
    };
    let a = g.add_at(Op::Unary(UnaryOp::Exp), &[x], loc(3)).unwrap();
    let b = g.add_at(Op::Unary(UnaryOp::Exp), &[x], loc(4)).unwrap();
    let mut f = Func::new(g, vec![b]).unwrap();
    cse(&mut f).unwrap();
    assert_eq!(f.outputs, vec![a]);
    assert_eq!(f.graph.node(a).loc, loc(3));
}

#[test]
fn dce_removes_dead_nodes_keeps_inputs_and_drops_unused_parameters() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let unused = input(&mut g, "unused", &[2]);
    let w = param(&mut g, "w", &[3]);
    let dead_w = param(&mut g, "dead.w", &[3]);
    let m = bin(&mut g, BinaryOp::Mul, x, w);
    let dead = bin(&mut g, BinaryOp::Add, x, dead_w);
    let dead2 = g.add(Op::Unary(UnaryOp::Exp), &[dead]).unwrap();
    let mut f = Func::new(g, vec![m]).unwrap();
    let stats = dce(&mut f).unwrap();
    assert_eq!(stats.removed, 3);
    for id in [x, unused, w, m] {
        assert!(f.graph.contains(id), "{id} was removed");
    }
    for id in [dead_w, dead, dead2] {
        assert!(!f.graph.contains(id), "{id} survived");
    }
    assert_eq!(f.outputs, vec![m]);
    assert!(!dce(&mut f).unwrap().changed());
}

#[test]
fn dce_with_no_outputs_keeps_only_inputs() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let e = g.add(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    let mut f = Func::new(g, vec![]).unwrap();
    dce(&mut f).unwrap();
    assert_eq!(f.graph.node_ids(), vec![x]);
    assert!(!f.graph.contains(e));
}

#[test]
fn infer_accepts_a_well_typed_graph_unchanged() {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::new([Dim::sym("N"), Dim::known(4)]),
            },
            &[],
        )
        .unwrap();
    let e = g.add(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    let mut f = Func::new(g, vec![e]).unwrap();
    let before = f.to_string();
    let stats = infer(&mut f).unwrap();
    assert_eq!(stats.visited, 2);
    assert!(!stats.changed());
    assert_eq!(f.to_string(), before);
}

#[test]
fn infer_reports_every_mistyped_node() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let bad = g.add_unchecked(
        Node {
            op: Op::Unary(UnaryOp::Exp),
            dtype: DType::F64,
            shape: Shape::known(&[3]),
            loc: None,
        },
        &[x],
    );
    let bad2 = g.add_unchecked(
        Node {
            op: Op::Binary(BinaryOp::Add),
            dtype: DType::F32,
            shape: Shape::known(&[3]),
            loc: None,
        },
        &[x],
    );
    let mut f = Func::new(g, vec![bad, bad2]).unwrap();
    let err = infer(&mut f).unwrap_err();
    let PassError::Verify { stage, errors } = &err else {
        panic!("unexpected {err}")
    };
    assert_eq!(stage, "in infer");
    let found: Vec<(NodeId, VerifyErrorKind)> = errors.iter().map(|e| (e.node, e.kind)).collect();
    assert_eq!(
        found,
        vec![
            (bad, VerifyErrorKind::Type),
            (bad2, VerifyErrorKind::Inference)
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("verifier failed in infer: 2 error(s)"),
        "{text}"
    );
    assert!(
        text.contains("n1 (exp): stated type f64[3] differs from the inferred f32[3]"),
        "{text}"
    );
}

#[test]
fn func_checks_its_outputs() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    assert_eq!(
        Func::new(g.clone(), vec![x, NodeId(5)]).unwrap_err(),
        PassError::UnknownOutput {
            pass: "func",
            output: NodeId(5)
        }
    );
    let mut f = Func {
        graph: g,
        outputs: vec![NodeId(5)],
    };
    assert_eq!(
        infer(&mut f).unwrap_err(),
        PassError::UnknownOutput {
            pass: "infer",
            output: NodeId(5)
        }
    );
    assert_eq!(
        cse(&mut f).unwrap_err(),
        PassError::UnknownOutput {
            pass: "cse",
            output: NodeId(5)
        }
    );
    assert_eq!(
        dce(&mut f).unwrap_err(),
        PassError::UnknownOutput {
            pass: "dce",
            output: NodeId(5)
        }
    );
}
