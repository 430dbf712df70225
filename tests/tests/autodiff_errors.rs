//! The builder's autodiff follows its error model: a failure records a diagnostic at the
//! caller's line and returns poisoned tensors; `try_` variants return the error; the
//! derivative nodes carry the caller's location.

use kiln::{Array, DType, Error, Graph};

fn messages(e: &Error) -> Vec<String> {
    match e {
        Error::Check(d) => d.iter().map(|d| d.to_string()).collect(),
        other => panic!("expected diagnostics, got {other}"),
    }
}

#[test]
fn grad_of_a_non_scalar_without_cotangent_is_reported_at_the_call() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let y = x.exp();
    let line = line!() + 1;
    let dx = kiln::grad(&y, &[&x]);
    assert_eq!(dx.len(), 1);
    assert!(dx[0].is_poisoned());
    let err = g.check().expect_err("diagnostic");
    let d = match &err {
        Error::Check(d) => d.clone(),
        other => panic!("{other}"),
    };
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].op, "grad");
    assert_eq!(d[0].loc.line, line);
    assert!(d[0].loc.file.ends_with("autodiff_errors.rs"));
    assert!(
        d[0].message.contains("needs an explicit cotangent"),
        "{}",
        d[0].message
    );
    assert!(d[0].message.contains("[3]"), "{}", d[0].message);
    // Dependents of the poisoned gradient stay quiet.
    let z = &dx[0] * 2.0;
    assert!(z.is_poisoned());
    assert_eq!(g.diagnostics().len(), 1);
    // With an explicit cotangent, vjp works.
    let ct = g.ones([3], DType::F32);
    let dx = kiln::vjp(&[&y], &[&ct], &[&x]);
    assert!(!dx[0].is_poisoned());
}

#[test]
fn grad_with_respect_to_an_integer_tensor_is_an_error() {
    let g = Graph::new();
    let i = g.input("i", DType::I64, [3]);
    let x = g.input("x", DType::F32, [3]);
    let loss = (&x * i.cast(DType::F32)).sum_all();
    let err = kiln::try_grad(&loss, &[&x, &i]).expect_err("integer wrt");
    let m = messages(&err);
    assert_eq!(m.len(), 1);
    assert!(
        m[0].contains("grad: cannot differentiate with respect to") && m[0].contains("i64"),
        "{}",
        m[0]
    );
    assert!(g.check().is_ok(), "try_grad does not record the diagnostic");
    let poisoned = kiln::grad(&loss, &[&i]);
    assert!(poisoned[0].is_poisoned());
    assert_eq!(g.diagnostics().len(), 1);
}

#[test]
fn grad_with_respect_to_an_unrelated_tensor_is_zeros() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    let w = g.param("w", DType::F32, [2, 2]);
    let (value, grads) = kiln::value_and_grad(&x.tanh().sum_all(), &[&x, &w]);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    g.set_param(
        "w",
        Array::from_f32(&[2, 2], vec![1.0; 4]).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let x0 = Array::from_f32(&[2], vec![0.0, 0.0]).unwrap_or_else(|e| panic!("{e}"));
    let out = kiln::eval(&[&value, &grads[0], &grads[1]], &[("x", &x0)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out[0].as_f32().unwrap_or_default(), &[0.0]);
    assert_eq!(out[1].as_f32().unwrap_or_default(), &[1.0, 1.0]);
    assert_eq!(out[2].shape(), &[2, 2]);
    assert_eq!(out[2].as_f32().unwrap_or_default(), &[0.0; 4]);
}

#[test]
fn poisoned_inputs_stay_quiet_and_mixed_graphs_are_reported() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let bad = x.reshape([2]);
    assert_eq!(g.diagnostics().len(), 1);
    let d = kiln::grad(&bad.sum_all(), &[&x]);
    assert!(d[0].is_poisoned());
    assert_eq!(
        g.diagnostics().len(),
        1,
        "no second diagnostic for a poisoned loss"
    );
    assert!(kiln::try_grad(&bad.sum_all(), &[&x]).is_err());

    let h = Graph::new();
    let y = h.input("y", DType::F32, [3]);
    let err = kiln::try_vjp(&[&x], &[&y], &[&x]).expect_err("mixed");
    assert!(messages(&err)[0].contains("different graphs"));
    let j = kiln::jacobian(&x, &y);
    assert!(j.is_poisoned());
    assert_eq!(g.diagnostics().len(), 2);
}

#[test]
fn derivative_nodes_carry_the_callers_location() {
    let g = Graph::new();
    let x = g.input("x", DType::F64, [3]);
    let y = x.sin().sum_all();
    let before: Vec<_> = g.ir().node_ids();
    let line = line!() + 1;
    let d = kiln::grad(&y, &[&x]);
    let ir = g.ir();
    let new: Vec<_> = ir
        .node_ids()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(!new.is_empty());
    for n in new {
        let loc = ir
            .node(n)
            .loc
            .clone()
            .unwrap_or_else(|| panic!("{n} has no location"));
        assert_eq!(loc.line, line, "{n}");
    }
    assert!(!d[0].is_poisoned());
}

#[test]
fn jvp_hessian_and_jacobian_report_their_errors() {
    let g = Graph::new();
    let x = g.input("x", DType::F64, [3]);
    let i = g.input("i", DType::I32, [3]);
    let y = x.exp();
    let err = kiln::try_hessian(&y, &x).expect_err("non-scalar");
    assert!(messages(&err)[0].starts_with(&format!("{}:", file!())));
    assert!(
        messages(&err)[0].contains("hessian: gradient of"),
        "{:?}",
        messages(&err)
    );
    let t = g.ones([2], DType::F64);
    let err = kiln::try_jvp(&[&y], &[(&x, &t)]).expect_err("tangent shape");
    assert!(
        messages(&err)[0].contains("tangent"),
        "{:?}",
        messages(&err)
    );
    let err = kiln::try_jacobian(&y, &i).expect_err("integer");
    assert!(messages(&err)[0].contains("i32"));
    let n = g.sym("N");
    let s = g.input("s", DType::F64, (&n, 2));
    let err = kiln::try_jacobian(&s.exp(), &s).expect_err("symbolic");
    assert!(
        messages(&err)[0].contains("symbolic shape"),
        "{:?}",
        messages(&err)
    );
    assert!(g.check().is_ok());
}
