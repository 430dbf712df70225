//! Every autodiff error is a typed value naming what went wrong.

use crate::autodiff_util;

use autodiff_util::{arr, bin, eval, input, op, sum_all, un};
use kiln_ir::{DType, Dim, Graph, NodeId, Op, Shape, UnaryOp};
use kiln_passes::autodiff::{self, AutodiffError};
use std::collections::HashMap;

#[test]
fn grad_of_a_non_scalar_needs_a_cotangent() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let y = un(&mut g, UnaryOp::Exp, x);
    let err = autodiff::grad(&mut g, y, &[x]).expect_err("non-scalar");
    assert_eq!(
        err,
        AutodiffError::NonScalarOutput {
            node: y,
            shape: Shape::known(&[3])
        }
    );
    assert!(
        err.to_string().contains("needs an explicit cotangent"),
        "{err}"
    );
    // With a cotangent it works; a single-element output has an implicit one.
    let ct = input(&mut g, "ct", &[3]);
    assert!(autodiff::vjp(&mut g, &[y], &[ct], &[x]).is_ok());
    let total = sum_all(&mut g, y);
    let r = op(&mut g, Op::Reshape(Shape::known(&[1, 1])), &[total]);
    assert!(autodiff::grad(&mut g, r, &[x]).is_ok());
}

#[test]
fn grad_with_respect_to_an_integer_is_an_error() {
    let mut g = Graph::new();
    let i = g
        .add(
            Op::Input {
                name: "i".into(),
                dtype: DType::I64,
                shape: Shape::known(&[3]),
            },
            &[],
        )
        .expect("input");
    let x = input(&mut g, "x", &[3]);
    let f = op(&mut g, Op::Cast(DType::F64), &[i]);
    let y = bin(&mut g, kiln_ir::BinaryOp::Mul, f, x);
    let loss = sum_all(&mut g, y);
    let err = autodiff::grad(&mut g, loss, &[x, i]).expect_err("integer wrt");
    assert_eq!(
        err,
        AutodiffError::NonFloatWrt {
            node: i,
            dtype: DType::I64
        }
    );
    assert!(err.to_string().contains("not a float type"), "{err}");
    let t = input(&mut g, "t", &[3]);
    assert_eq!(
        autodiff::jvp(&mut g, &[loss], &[i], &[t]).expect_err("integer primal"),
        AutodiffError::NonFloatWrt {
            node: i,
            dtype: DType::I64
        }
    );
    assert_eq!(
        autodiff::grad(&mut g, i, &[x]).expect_err("integer output"),
        AutodiffError::NonScalarOutput {
            node: i,
            shape: Shape::known(&[3])
        }
    );
    let isum = sum_all(&mut g, i);
    assert_eq!(
        autodiff::grad(&mut g, isum, &[x]).expect_err("integer output"),
        AutodiffError::NonFloatOutput {
            node: isum,
            dtype: DType::I64
        }
    );
}

#[test]
fn grad_with_respect_to_an_unrelated_tensor_is_zeros() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[2]);
    let w = input(&mut g, "w", &[2, 3]);
    let y = un(&mut g, UnaryOp::Tanh, x);
    let loss = sum_all(&mut g, y);
    let gs = autodiff::grad(&mut g, loss, &[w]).expect("zeros");
    assert_eq!(g.node(gs[0]).shape, Shape::known(&[2, 3]));
    let feeds: HashMap<String, _> = [
        ("x".to_string(), arr(&[2], vec![1.0, 2.0])),
        ("w".to_string(), arr(&[2, 3], vec![1.0; 6])),
    ]
    .into();
    assert_eq!(eval(&g, &gs, &feeds)[0], vec![0.0; 6]);
}

#[test]
fn seeds_must_match_their_tensors() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let y = un(&mut g, UnaryOp::Sin, x);
    let bad = input(&mut g, "bad", &[2]);
    let err = autodiff::vjp(&mut g, &[y], &[bad], &[x]).expect_err("shape");
    assert!(
        matches!(err, AutodiffError::SeedMismatch { role: "cotangent", node, seed, .. } if node == y && seed == bad),
        "{err:?}"
    );
    let err = autodiff::jvp(&mut g, &[y], &[x], &[bad]).expect_err("shape");
    assert!(
        matches!(
            err,
            AutodiffError::SeedMismatch {
                role: "tangent",
                ..
            }
        ),
        "{err:?}"
    );
    let err = autodiff::vjp(&mut g, &[y], &[], &[x]).expect_err("arity");
    assert_eq!(
        err,
        AutodiffError::Arity {
            what: "cotangents for outputs",
            expected: 1,
            got: 0
        }
    );
    let err = autodiff::jvp(&mut g, &[y], &[x], &[]).expect_err("arity");
    assert_eq!(
        err,
        AutodiffError::Arity {
            what: "tangents for primals",
            expected: 1,
            got: 0
        }
    );
    let ghost = NodeId(999);
    assert_eq!(
        autodiff::grad(&mut g, ghost, &[x]).expect_err("ghost"),
        AutodiffError::UnknownNode(ghost)
    );
    let loss = sum_all(&mut g, y);
    assert_eq!(
        autodiff::grad(&mut g, loss, &[ghost]).expect_err("ghost"),
        AutodiffError::UnknownNode(ghost)
    );
}

#[test]
fn dense_jacobians_need_known_sizes() {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F64,
                shape: Shape(vec![Dim::sym("N"), Dim::known(2)]),
            },
            &[],
        )
        .expect("input");
    let y = un(&mut g, UnaryOp::Exp, x);
    let err = autodiff::jacobian(&mut g, y, x).expect_err("symbolic");
    assert!(matches!(err, AutodiffError::Symbolic { .. }), "{err:?}");
    assert!(err.to_string().contains("symbolic shape [N, 2]"), "{err}");
    // Gradients themselves work with symbolic shapes.
    let loss = sum_all(&mut g, y);
    assert!(autodiff::grad(&mut g, loss, &[x]).is_ok());
}

#[test]
fn a_node_that_does_not_type_check_is_reported_not_differentiated() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3]);
    let bad = g.add_unchecked(
        kiln_ir::Node {
            op: Op::Unary(UnaryOp::Exp),
            dtype: DType::F64,
            shape: Shape::known(&[4]),
            loc: None,
        },
        &[x],
    );
    let loss = sum_all(&mut g, bad);
    let err = autodiff::grad(&mut g, loss, &[x]).expect_err("malformed");
    assert!(
        matches!(&err, AutodiffError::Malformed { node, .. } if *node == bad),
        "{err:?}"
    );
    assert!(err.to_string().contains("recorded as f64[4]"), "{err}");
    let t = input(&mut g, "t", &[3]);
    let err = autodiff::jvp(&mut g, &[loss], &[x], &[t]).expect_err("malformed");
    assert!(matches!(err, AutodiffError::Malformed { .. }), "{err:?}");
}
