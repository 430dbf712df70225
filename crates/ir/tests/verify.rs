//! Verifier tests: bad graphs built with `add_unchecked`, every error collected at once.

use kiln_ir::*;

fn node(op: Op, dtype: DType, shape: &[usize]) -> Node {
    Node {
        op,
        dtype,
        shape: Shape::known(shape),
        loc: None,
    }
}

fn input(name: &str, dtype: DType, shape: &[usize]) -> Node {
    node(
        Op::Input {
            name: name.into(),
            dtype,
            shape: Shape::known(shape),
        },
        dtype,
        shape,
    )
}

fn param(name: &str, dtype: DType, shape: &[usize]) -> Node {
    node(
        Op::Parameter {
            name: name.into(),
            dtype,
            shape: Shape::known(shape),
        },
        dtype,
        shape,
    )
}

fn summary(errors: &[VerifyError]) -> Vec<(NodeId, &'static str, VerifyErrorKind, String)> {
    errors
        .iter()
        .map(|e| (e.node, e.op, e.kind, e.message.clone()))
        .collect()
}

#[test]
fn built_graphs_verify() {
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
    let w = g
        .add(
            Op::Parameter {
                name: "w".into(),
                dtype: DType::F32,
                shape: Shape::known(&[4, 2]),
            },
            &[],
        )
        .unwrap();
    let w2 = g
        .add(
            Op::Parameter {
                name: "w".into(),
                dtype: DType::F32,
                shape: Shape::known(&[4, 2]),
            },
            &[],
        )
        .unwrap();
    let m = g.add(Op::MatMul, &[x, w]).unwrap();
    let m2 = g.add(Op::MatMul, &[x, w2]).unwrap();
    g.add(Op::Binary(BinaryOp::Add), &[m, m2]).unwrap();
    assert_eq!(verify(&g), Ok(()));
    assert_eq!(verify(&Graph::new()), Ok(()));
}

#[test]
fn collects_every_error() {
    let mut g = Graph::new();
    let x = g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    let y = g.add_unchecked(input("y", DType::F32, &[4]), &[]);
    // n2: wrong stated shape.
    g.add_unchecked(node(Op::Unary(UnaryOp::Exp), DType::F32, &[4]), &[x]);
    // n3: inference fails (shapes do not broadcast).
    g.add_unchecked(node(Op::Binary(BinaryOp::Add), DType::F32, &[3]), &[x, y]);
    // n4: duplicate input name.
    g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    // n5, n6: a parameter name reused with another shape.
    g.add_unchecked(param("fc.weight", DType::F32, &[2, 3]), &[]);
    g.add_unchecked(param("fc.weight", DType::F32, &[3, 2]), &[]);
    // n7: same name, same type: fine.
    g.add_unchecked(param("fc.weight", DType::F32, &[2, 3]), &[]);
    // n8: wrong dtype and wrong arity at once.
    g.add_unchecked(node(Op::Unary(UnaryOp::Neg), DType::F32, &[3]), &[x, x]);
    // n9: a dtype the op rejects.
    let b = g.add_unchecked(input("b", DType::Bool, &[3]), &[]);
    g.add_unchecked(node(Op::Unary(UnaryOp::Exp), DType::Bool, &[3]), &[b]);
    // n11: a wrong dtype.
    g.add_unchecked(node(Op::Cast(DType::I32), DType::I64, &[3]), &[x]);

    let errors = verify(&g).unwrap_err();
    assert_eq!(
        summary(&errors),
        vec![
            (
                NodeId(2),
                "exp",
                VerifyErrorKind::Type,
                "stated type f32[4] differs from the inferred f32[3]".into()
            ),
            (
                NodeId(3),
                "add",
                VerifyErrorKind::Inference,
                "add: shapes [3] and [4] are not broadcastable (dimension 3 vs 4)".into()
            ),
            (
                NodeId(4),
                "input",
                VerifyErrorKind::DuplicateInput,
                "input name \"x\" is already used by n0".into()
            ),
            (
                NodeId(6),
                "param",
                VerifyErrorKind::ParameterMismatch,
                "parameter \"fc.weight\" is f32[3, 2] here but f32[2, 3] at n5".into()
            ),
            (
                NodeId(8),
                "neg",
                VerifyErrorKind::Inference,
                "neg: expected 1 operand(s), got 2".into()
            ),
            (
                NodeId(10),
                "exp",
                VerifyErrorKind::Inference,
                "exp: operand has dtype bool, expected f32 or f64".into()
            ),
            (
                NodeId(11),
                "cast",
                VerifyErrorKind::Type,
                "stated type i64[3] differs from the inferred i32[3]".into()
            ),
        ]
    );
}

#[test]
fn operand_positions_must_be_contiguous() {
    let mut g = Graph::new();
    let x = g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    let y = g.add_unchecked(input("y", DType::F32, &[3]), &[]);
    let s = g.add(Op::Binary(BinaryOp::Sub), &[x, y]).unwrap();
    // Move the second operand to position 3, leaving a gap.
    g.remove(y);
    g.set_operand(s, 3, x);
    assert_eq!(g.operand_edges(s), vec![(0, x), (3, x)]);
    let errors = verify(&g).unwrap_err();
    assert_eq!(
        summary(&errors),
        vec![(
            s,
            "sub",
            VerifyErrorKind::Operands,
            "operand positions [0, 3] are not 0..2 without gaps or repeats".into()
        )]
    );

    // Removing a used node leaves its user one operand short.
    let mut g = Graph::new();
    let x = g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    let y = g.add_unchecked(input("y", DType::F32, &[3]), &[]);
    let s = g.add(Op::Binary(BinaryOp::Sub), &[x, y]).unwrap();
    g.remove(x);
    assert_eq!(
        summary(&verify(&g).unwrap_err()),
        vec![
            (
                s,
                "sub",
                VerifyErrorKind::Operands,
                "operand positions [1] are not 0..1 without gaps or repeats".into()
            ),
            (
                s,
                "sub",
                VerifyErrorKind::Inference,
                "sub: expected 2 operand(s), got 1".into()
            ),
        ]
    );
}

#[test]
fn cycles_are_found() {
    let mut g = Graph::new();
    let x = g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    let a = g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap();
    let b = g.add(Op::Unary(UnaryOp::Exp), &[a]).unwrap();
    let c = g.add(Op::Unary(UnaryOp::Sin), &[b]).unwrap();
    let d = g.add(Op::Unary(UnaryOp::Cos), &[c]).unwrap();
    let e = g.add(Op::Unary(UnaryOp::Abs), &[x]).unwrap();
    g.set_operand(a, 0, c); // a -> b -> c -> a
    g.set_operand(e, 0, e); // e feeds itself
    assert!(g.topo_order().is_err());
    let errors = verify(&g).unwrap_err();
    assert_eq!(
        summary(&errors),
        vec![
            (
                a,
                "neg",
                VerifyErrorKind::Cycle,
                "dependency cycle through n1, n2, n3".into()
            ),
            (
                e,
                "abs",
                VerifyErrorKind::Cycle,
                "dependency cycle through n5".into()
            ),
        ]
    );
    // d depends on the cycle but is not on it.
    assert!(errors.iter().all(|err| err.node != d));
}

#[test]
fn inconsistent_constants_are_reported() {
    let mut g = Graph::new();
    // `from_f64_cast` trusts its caller: one value for a shape of three elements.
    let bad = Array::from_f64_cast(DType::F32, &[3], &[1.0]);
    g.add_unchecked(node(Op::Constant(bad), DType::F32, &[3]), &[]);
    let good = Array::from_f32(&[2], vec![1.0, 2.0]).unwrap();
    g.add_unchecked(node(Op::Constant(good), DType::F32, &[2]), &[]);
    assert_eq!(
        summary(&verify(&g).unwrap_err()),
        vec![(
            NodeId(0),
            "const",
            VerifyErrorKind::Constant,
            "constant holds 1 element(s) but its shape [3] needs 3".into()
        )]
    );
}

#[test]
fn errors_carry_the_location() {
    let mut g = Graph::new();
    let x = g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    let loc = Loc {
        file: "src/net.rs".into(),
        line: 40,
        column: 9,
    };
    g.add_unchecked(
        Node {
            loc: Some(loc.clone()),
            ..node(Op::Unary(UnaryOp::Exp), DType::F64, &[3])
        },
        &[x],
    );
    let errors = verify(&g).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].loc, Some(loc));
    assert_eq!(
        errors[0].to_string(),
        "n1 (exp) at src/net.rs:40:9: stated type f64[3] differs from the inferred f32[3]"
    );
}

#[test]
fn format_with_errors_attaches_errors_under_their_nodes() {
    let mut g = Graph::new();
    let x = g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    let y = g.add_unchecked(input("y", DType::F32, &[4]), &[]);
    g.add_unchecked(node(Op::Binary(BinaryOp::Mul), DType::F32, &[3]), &[x, y]);
    g.add_unchecked(node(Op::Unary(UnaryOp::Neg), DType::F32, &[2]), &[x]);
    g.add_unchecked(input("x", DType::F32, &[3]), &[]);
    let errors = verify(&g).unwrap_err();
    let text = format_with_errors(&g, &errors);
    assert_eq!(
        text,
        "n0 = input \"x\" : f32[3]\n\
         n1 = input \"y\" : f32[4]\n\
         n2 = mul n0, n1 : f32[3]\n\
         ; error: mul: shapes [3] and [4] are not broadcastable (dimension 3 vs 4)\n\
         n3 = neg n0 : f32[2]\n\
         ; error: stated type f32[2] differs from the inferred f32[3]\n\
         n4 = input \"x\" : f32[3]\n\
         ; error: input name \"x\" is already used by n0\n"
    );
    // The annotated listing is still valid text: the errors are comments.
    let reparsed = parse_unverified(&text).unwrap();
    assert_eq!(reparsed.to_string(), g.to_string());
    assert_eq!(verify(&reparsed).unwrap_err(), errors);

    // An error about a node that is not in the graph goes at the end.
    let stray = VerifyError {
        node: NodeId(9),
        op: "exp",
        loc: None,
        kind: VerifyErrorKind::Type,
        message: "gone".into(),
    };
    let text = format_with_errors(&g, std::slice::from_ref(&stray));
    assert!(
        text.ends_with("n4 = input \"x\" : f32[3]\n; error: n9 (exp): gone\n"),
        "{text}"
    );
}

#[test]
fn huge_attributes_are_errors_not_overflows() {
    let text = "n0 = input \"x\" : f32[1, 1, 8, 8]\nn1 = input \"w\" : f32[1, 1, 3, 3]\nn2 = conv2d n0, n1 stride=[1, 1] padding=[0, 0] dilation=[18446744073709551615, 1] groups=1 : f32[1, 1, 1, 6]\n";
    let err = kiln_ir::parse(text).unwrap_err();
    assert!(err.to_string().contains("overflows"), "{err}");
    assert!("N^100000000".parse::<kiln_ir::Dim>().is_err());
}
