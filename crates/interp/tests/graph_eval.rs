//! Whole-graph evaluation: symbolic batch binding, ancestors-only evaluation, fed-value
//! checks, and errors that name the failing node.

use crate::common;

use common::{G, n};
use kiln_interp::{EvalError, ValueKind, bind_symbols, bind_symbols_for, eval};
use kiln_ir::{Array, BinaryOp, DType, Dim, GraphError, NodeId, Op, Shape, UnaryOp};
use std::collections::HashMap;

fn feed(pairs: &[(&str, Array)]) -> HashMap<String, Array> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn f32a(shape: &[usize], v: &[f32]) -> Array {
    Array::from_f32(shape, v.to_vec()).unwrap()
}

/// `y = sum(x * 2 + iota_N, axis 1)` for `x: f32[N, 3]`.
fn batch_graph() -> (G, NodeId) {
    let mut g = G::default();
    let x = g.input("x", DType::F32, Shape(vec![n(), Dim::known(3)]));
    let two = g.scalar_f32(2.0);
    let x2 = g.bin(BinaryOp::Mul, x, two);
    let row = g.add(
        Op::Iota {
            dtype: DType::F32,
            shape: Shape(vec![n(), Dim::known(1)]),
            axis: 0,
        },
        &[],
    );
    let s = g.bin(BinaryOp::Add, x2, row);
    let y = g.sum(s, &[1]);
    (g, y)
}

#[test]
fn one_graph_many_batch_sizes() {
    let (g, y) = batch_graph();
    let out = eval(
        &g.g,
        &[y],
        &feed(&[("x", f32a(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]),
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(out[0].shape(), &[2]);
    assert_eq!(out[0].as_f32().unwrap(), &[12.0, 33.0]);
    let x4 = f32a(&[4, 3], &[0.0; 12]);
    let out = eval(&g.g, &[y], &feed(&[("x", x4.clone())]), &HashMap::new()).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[0.0, 3.0, 6.0, 9.0]);
    assert_eq!(
        bind_symbols(&g.g, &feed(&[("x", x4)])).unwrap(),
        HashMap::from([("N".to_string(), 4)])
    );
}

#[test]
fn symbolic_reshape_expand_and_slice_follow_the_binding() {
    let mut g = G::default();
    let x = g.input("flat", DType::I32, Shape(vec![&n() * &Dim::known(2)]));
    let m = g.reshape(x, Shape(vec![n(), Dim::known(2)]));
    let col = g.narrow(m, 1, 1, 2);
    let e = g.add(
        Op::Expand(Shape(vec![Dim::known(2), n(), Dim::known(1)])),
        &[col],
    );
    let flat = Array::from_i32(&[6], vec![1, 2, 3, 4, 5, 6]).unwrap();
    let out = eval(&g.g, &[e, m], &feed(&[("flat", flat)]), &HashMap::new()).unwrap();
    assert_eq!(out[0].shape(), &[2, 3, 1]);
    assert_eq!(out[0].as_i32().unwrap(), &[2, 4, 6, 2, 4, 6]);
    assert_eq!(out[1].shape(), &[3, 2]);
}

#[test]
fn only_ancestors_are_evaluated() {
    let (mut g, y) = batch_graph();
    let z = g.input("z", DType::I64, Shape::known(&[2]));
    let zero = g.constant(Array::from_i64(&[], vec![0]).unwrap());
    let bad = g.bin(BinaryOp::Div, z, zero);
    let inputs = feed(&[("x", f32a(&[1, 3], &[1.0, 1.0, 1.0]))]);
    let out = eval(&g.g, &[y], &inputs, &HashMap::new()).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[6.0]);
    assert_eq!(
        eval(&g.g, &[bad], &inputs, &HashMap::new()).unwrap_err(),
        EvalError::MissingInput { name: "z".into() }
    );
    assert_eq!(
        bind_symbols(&g.g, &inputs).unwrap_err(),
        EvalError::MissingInput { name: "z".into() }
    );
    assert_eq!(
        bind_symbols_for(&g.g, &[y], &inputs).unwrap(),
        HashMap::from([("N".to_string(), 1)])
    );
}

#[test]
fn integer_division_by_zero_names_the_node() {
    let mut g = G::default();
    let a = g.input("a", DType::I32, Shape::known(&[2]));
    let b = g.input("b", DType::I32, Shape::known(&[2]));
    let q = g.bin(BinaryOp::Div, a, b);
    let inputs = feed(&[
        ("a", Array::from_i32(&[2], vec![4, 5]).unwrap()),
        ("b", Array::from_i32(&[2], vec![2, 0]).unwrap()),
    ]);
    let e = eval(&g.g, &[q], &inputs, &HashMap::new()).unwrap_err();
    assert_eq!(
        e,
        EvalError::DivisionByZero {
            node: Some(q),
            op: "div"
        }
    );
    assert_eq!(e.node(), Some(q));
    assert!(e.to_string().starts_with(&format!("{q}: div")), "{e}");
}

#[test]
fn gather_out_of_range_names_node_index_and_axis_size() {
    let mut g = G::default();
    let x = g.input("x", DType::F32, Shape::known(&[2, 3]));
    let i = g.input("i", DType::I64, Shape::known(&[2, 1]));
    let y = g.add(Op::Gather { axis: 1 }, &[x, i]);
    let inputs = feed(&[
        ("x", f32a(&[2, 3], &[0.0; 6])),
        ("i", Array::from_i64(&[2, 1], vec![2, 7]).unwrap()),
    ]);
    let e = eval(&g.g, &[y], &inputs, &HashMap::new()).unwrap_err();
    assert_eq!(
        e,
        EvalError::IndexOutOfRange {
            node: Some(y),
            op: "gather",
            index: 7,
            axis: 1,
            axis_size: 3
        }
    );
    let inputs = feed(&[
        ("x", f32a(&[2, 3], &[0.0; 6])),
        ("i", Array::from_i64(&[2, 1], vec![-1, 0]).unwrap()),
    ]);
    let e = eval(&g.g, &[y], &inputs, &HashMap::new()).unwrap_err();
    assert_eq!(
        e,
        EvalError::IndexOutOfRange {
            node: Some(y),
            op: "gather",
            index: -1,
            axis: 1,
            axis_size: 3
        }
    );
}

#[test]
fn parameters_are_looked_up_and_checked() {
    let mut g = G::default();
    let w_decl = Array::zeros(DType::F32, &[2, 2]).unwrap();
    let w = g.param("fc.weight", &w_decl);
    let x = g.input("x", DType::F32, Shape(vec![n(), Dim::known(2)]));
    let y = g.add(Op::MatMul, &[x, w]);
    let inputs = feed(&[("x", f32a(&[1, 2], &[1.0, 2.0]))]);
    let good = feed(&[("fc.weight", f32a(&[2, 2], &[1.0, 2.0, 3.0, 4.0]))]);
    assert_eq!(
        eval(&g.g, &[y], &inputs, &good).unwrap()[0]
            .as_f32()
            .unwrap(),
        &[7.0, 10.0]
    );
    assert_eq!(
        eval(&g.g, &[y], &inputs, &HashMap::new()).unwrap_err(),
        EvalError::MissingParam {
            name: "fc.weight".into()
        }
    );
    let wrong_dtype = feed(&[("fc.weight", Array::zeros(DType::F64, &[2, 2]).unwrap())]);
    assert_eq!(
        eval(&g.g, &[y], &inputs, &wrong_dtype).unwrap_err(),
        EvalError::DTypeMismatch {
            kind: ValueKind::Parameter,
            name: "fc.weight".into(),
            expected: DType::F32,
            got: DType::F64
        }
    );
    let wrong_shape = feed(&[("fc.weight", Array::zeros(DType::F32, &[2, 3]).unwrap())]);
    assert_eq!(
        eval(&g.g, &[y], &inputs, &wrong_shape).unwrap_err(),
        EvalError::ShapeMismatch {
            kind: ValueKind::Parameter,
            name: "fc.weight".into(),
            expected: "[2, 2]".into(),
            got: vec![2, 3]
        }
    );
}

#[test]
fn fed_inputs_are_checked() {
    let (g, y) = batch_graph();
    let e = eval(
        &g.g,
        &[y],
        &feed(&[("x", Array::zeros(DType::F64, &[2, 3]).unwrap())]),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        EvalError::DTypeMismatch {
            kind: ValueKind::Input,
            name: "x".into(),
            expected: DType::F32,
            got: DType::F64
        }
    );
    let e = eval(
        &g.g,
        &[y],
        &feed(&[("x", f32a(&[2, 4], &[0.0; 8]))]),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        EvalError::ShapeMismatch {
            kind: ValueKind::Input,
            name: "x".into(),
            expected: "[N, 3] with N=2".into(),
            got: vec![2, 4]
        }
    );
    let e = eval(
        &g.g,
        &[y],
        &feed(&[("x", f32a(&[6], &[0.0; 6]))]),
        &HashMap::new(),
    )
    .unwrap_err();
    assert!(matches!(e, EvalError::ShapeMismatch { ref name, .. } if name == "x"));
}

#[test]
fn symbol_conflicts_between_inputs() {
    let mut g = G::default();
    let a = g.input("a", DType::F32, Shape(vec![n()]));
    let b = g.input("b", DType::F32, Shape(vec![n()]));
    let s = g.bin(BinaryOp::Add, a, b);
    let e = eval(
        &g.g,
        &[s],
        &feed(&[("a", f32a(&[2], &[0.0; 2])), ("b", f32a(&[3], &[0.0; 3]))]),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        EvalError::SymbolConflict {
            symbol: "N".into(),
            first: 2,
            first_input: "a".into(),
            second: 3,
            second_input: "b".into()
        }
    );
}

#[test]
fn unbound_symbol_in_a_node_shape_names_the_node() {
    let mut g = G::default();
    let io = g.add(
        Op::Iota {
            dtype: DType::I32,
            shape: Shape(vec![Dim::sym("M")]),
            axis: 0,
        },
        &[],
    );
    let e = eval(&g.g, &[io], &HashMap::new(), &HashMap::new()).unwrap_err();
    assert!(
        matches!(e, EvalError::Shape { node, .. } if node == io),
        "{e}"
    );
    assert!(e.to_string().contains("`M`"), "{e}");
}

#[test]
fn unknown_outputs_are_graph_errors() {
    let (g, _) = batch_graph();
    let e = eval(&g.g, &[NodeId(999)], &HashMap::new(), &HashMap::new()).unwrap_err();
    assert_eq!(e, EvalError::Graph(GraphError::UnknownNode(NodeId(999))));
}

#[test]
fn repeated_outputs_and_shared_intermediates_survive_freeing() {
    let mut g = G::default();
    let x = g.input("x", DType::F64, Shape::known(&[2]));
    let e = g.un(UnaryOp::Exp, x);
    let l = g.un(UnaryOp::Log, e);
    let d = g.bin(BinaryOp::Sub, l, x);
    let sq = g.bin(BinaryOp::Mul, e, e);
    let sg = g.add(Op::StopGradient, &[sq]);
    let inputs = feed(&[("x", Array::from_f64(&[2], vec![0.0, 1.0]).unwrap())]);
    let out = eval(&g.g, &[e, d, e, sg], &inputs, &HashMap::new()).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].as_f64().unwrap(), &[1.0, std::f64::consts::E]);
    assert_eq!(out[2], out[0]);
    assert_eq!(out[1].as_f64().unwrap(), &[0.0, 0.0]);
    assert_eq!(
        out[3].as_f64().unwrap(),
        &[1.0, std::f64::consts::E * std::f64::consts::E]
    );
    assert!(
        eval(&g.g, &[], &inputs, &HashMap::new())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn size_one_dims_bool_and_select_in_a_graph() {
    let mut g = G::default();
    let x = g.input("x", DType::F32, Shape::known(&[1, 3]));
    let nan = g.un(UnaryOp::IsNan, x);
    let keep = g.un(UnaryOp::Not, nan);
    let zero = g.scalar_f32(0.0);
    let clean = g.add(Op::Select, &[keep, x, zero]);
    let col = g.input("c", DType::F32, Shape::known(&[2, 1]));
    let y = g.bin(BinaryOp::Add, clean, col);
    let gt = g.bin(BinaryOp::Gt, y, zero);
    let inputs = feed(&[
        ("x", f32a(&[1, 3], &[1.0, f32::NAN, -3.0])),
        ("c", f32a(&[2, 1], &[10.0, 1.0])),
    ]);
    let out = eval(&g.g, &[y, gt], &inputs, &HashMap::new()).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[11.0, 10.0, 7.0, 2.0, 1.0, -2.0]);
    assert_eq!(
        out[1].as_bool().unwrap(),
        &[true, true, true, true, true, false]
    );
}

#[test]
fn results_too_large_to_allocate_are_one_line_errors_not_aborts() {
    let mut g = G::default();
    let big = g.add(
        Op::Iota {
            dtype: DType::F32,
            shape: Shape(vec![Dim::known(1 << 40)]),
            axis: 0,
        },
        &[],
    );
    let err = eval(&g.g, &[big], &HashMap::new(), &HashMap::new()).unwrap_err();
    assert!(
        matches!(err, EvalError::OutOfMemory { node, elements, .. } if node == big && elements == 1 << 40),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        !msg.contains('\n') && msg.contains("cannot be allocated"),
        "{msg}"
    );

    // The outer product of a 4 MiB input: 2^40 elements.
    let mut g = G::default();
    let x = g.input("x", DType::F32, Shape(vec![Dim::known(1 << 20)]));
    let col = g.add(Op::Reshape(Shape::new([1u64 << 20, 1])), &[x]);
    let row = g.add(Op::Reshape(Shape::new([1u64, 1 << 20])), &[x]);
    let outer = g.bin(BinaryOp::Mul, col, row);
    let fed = feed(&[("x", Array::zeros(DType::F32, &[1 << 20]).unwrap())]);
    let err = eval(&g.g, &[outer], &fed, &HashMap::new()).unwrap_err();
    assert!(
        matches!(err, EvalError::OutOfMemory { node, .. } if node == outer),
        "{err}"
    );
}
