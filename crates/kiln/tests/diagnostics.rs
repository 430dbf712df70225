//! Shape and dtype errors: each diagnostic names the caller's own file:line and both shapes,
//! never panics, and poisons only the failing node's dependents.

use kiln::{Array, DType, Graph};

fn line_of(marker: &str) -> u32 {
    let src = include_str!("diagnostics.rs");
    src.lines()
        .position(|l| l.contains(marker) && !l.contains("line_of("))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("marker {marker} not found"))
}

fn single_diag(g: &Graph) -> kiln::Diagnostic {
    let d = g.diagnostics();
    assert_eq!(d.len(), 1, "expected one diagnostic, got {d:#?}");
    d.into_iter().next().unwrap()
}

#[test]
fn matmul_inner_dims_mismatch() {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 784));
    let w = g.param("w", DType::F32, [100, 10]);
    let y = x.matmul(&w); // MARK-matmul
    assert!(y.is_poisoned());
    let d = single_diag(&g);
    assert!(d.loc.file.ends_with("diagnostics.rs"), "{}", d.loc);
    assert_eq!(d.loc.line, line_of("MARK-matmul"));
    assert_eq!(d.op, "matmul");
    assert!(
        d.message.contains("[N, 784]") && d.message.contains("[100, 10]"),
        "{}",
        d.message
    );
    assert!(d.message.contains("784 vs 100"), "{}", d.message);
}

#[test]
fn add_not_broadcastable() {
    let g = Graph::new();
    let a = g.input("a", DType::F32, [3, 4]);
    let b = g.input("b", DType::F32, [5]);
    let c = &a + &b; // MARK-add
    assert!(c.is_poisoned());
    let d = single_diag(&g);
    assert_eq!(d.loc.line, line_of("MARK-add"));
    assert!(
        d.message.contains("[3, 4]") && d.message.contains("[5]"),
        "{}",
        d.message
    );
    assert!(d.message.contains("not broadcastable"), "{}", d.message);
}

#[test]
fn reshape_incompatible_size() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [6, 4]);
    let y = x.reshape([5, 5]); // MARK-reshape
    assert!(y.is_poisoned());
    let d = single_diag(&g);
    assert_eq!(d.loc.line, line_of("MARK-reshape"));
    assert!(
        d.message.contains("[6, 4]") && d.message.contains("[5, 5]"),
        "{}",
        d.message
    );
    assert!(
        d.message.contains("24") && d.message.contains("25"),
        "{}",
        d.message
    );
}

#[test]
fn index_with_float_dtype() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [4, 3]);
    let idx = g.input("idx", DType::F32, [4, 1]);
    let y = x.gather(1, &idx); // MARK-gather
    assert!(y.is_poisoned());
    let d = single_diag(&g);
    assert_eq!(d.loc.line, line_of("MARK-gather"));
    assert!(
        d.message.contains("index") && d.message.contains("f32"),
        "{}",
        d.message
    );
    assert!(d.message.contains("integer"), "{}", d.message);
}

#[test]
fn symbolic_dims_that_cannot_unify() {
    let g = Graph::new();
    let n = g.sym("N");
    let m = g.sym("M");
    let a = g.input("a", DType::F32, (&n, 8));
    let b = g.input("b", DType::F32, (&m, 8));
    let c = a + b; // MARK-sym
    assert!(c.is_poisoned());
    let d = single_diag(&g);
    assert_eq!(d.loc.line, line_of("MARK-sym"));
    assert!(
        d.message.contains("[N, 8]") && d.message.contains("[M, 8]"),
        "{}",
        d.message
    );
    assert!(d.message.contains("N vs M"), "{}", d.message);
}

#[test]
fn dependents_of_a_poisoned_node_stay_quiet_and_all_errors_are_collected() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let bad = x.reshape([7]); // first error
    let _chain = bad.exp().sum(0, false).relu() * 2.0; // no new diagnostics
    let other = x.matmul(&x); // second, independent error
    assert!(other.is_poisoned());
    let err = g.check().unwrap_err();
    let kiln::Error::Check(diags) = &err else {
        panic!("expected check error, got {err:?}")
    };
    assert_eq!(diags.len(), 2, "{diags:#?}");
    let text = err.to_string();
    assert!(text.starts_with("2 error(s) in graph"), "{text}");
    assert!(text.contains("diagnostics.rs:"), "{text}");
    let fine = x.exp();
    let out = kiln::eval(
        &[&fine],
        &[("x", &Array::from_f32(&[2, 3], vec![0.0; 6]).unwrap())],
    )
    .unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[1.0; 6]);
    assert!(kiln::eval(&[&bad], &[]).is_err());
}

#[test]
fn composite_errors_point_at_the_user_line() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [4, 5]);
    let w = g.param("fc.weight", DType::F32, [3, 6]);
    let y = x.linear(&w, None); // MARK-linear
    assert!(y.is_poisoned());
    let d = single_diag(&g);
    assert_eq!(d.loc.line, line_of("MARK-linear"));
    assert!(
        d.message.contains("[4, 5]") && d.message.contains("[6, 3]"),
        "{}",
        d.message
    );
}

#[test]
fn axis_out_of_range_and_bad_squeeze() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let a = x.sum(5, false); // MARK-axis
    let b = x.squeeze(0); // MARK-squeeze
    assert!(a.is_poisoned() && b.is_poisoned());
    let d = g.diagnostics();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].loc.line, line_of("MARK-axis"));
    assert!(
        d[0].message.contains("axis 5") && d[0].message.contains("[2, 3]"),
        "{}",
        d[0].message
    );
    assert_eq!(d[1].loc.line, line_of("MARK-squeeze"));
    assert!(d[1].message.contains("size 2"), "{}", d[1].message);
}

#[test]
fn dtype_mismatch_names_both_dtypes() {
    let g = Graph::new();
    let a = g.input("a", DType::F32, [3]);
    let b = g.input("b", DType::I64, [3]);
    let c = a.add(&b); // MARK-dtype
    assert!(c.is_poisoned());
    let d = single_diag(&g);
    assert_eq!(d.loc.line, line_of("MARK-dtype"));
    assert!(
        d.message.contains("f32") && d.message.contains("i64"),
        "{}",
        d.message
    );
}

#[test]
fn symbolic_batch_flows_through_flatten_and_reshape() {
    let g = Graph::new();
    let n = g.sym("N");
    let t = g.sym("T");
    let x = g.input("x", DType::F32, (&n, &t, 28));
    let flat = x.flatten(0, 1);
    assert_eq!(flat.shape().to_string(), "[N*T, 28]");
    let back = flat.reshape((&n, &t, 28));
    assert_eq!(back.shape().to_string(), "[N, T, 28]");
    let all = x.flatten(0, -1);
    assert_eq!(all.shape().to_string(), "[N*T*28]");
    assert!(g.check().is_ok());
    let arr = Array::from_f32(&[2, 3, 28], (0..168).map(|v| v as f32).collect()).unwrap();
    let (out, bind) = kiln::eval_with_bindings(&[&back], &[("x", &arr)]).unwrap();
    assert_eq!(out[0].shape(), &[2, 3, 28]);
    assert_eq!(bind["N"], 2);
    assert_eq!(bind["T"], 3);
}

/// Asserts exactly one diagnostic, at the line holding `marker`, whose one-line message
/// contains every `needle`.
fn assert_diag_at(g: &Graph, marker: &str, needles: &[&str]) {
    let d = single_diag(g);
    assert_eq!(d.loc.line, line_of(marker), "{}: {}", d.loc, d.message);
    assert!(!d.message.contains('\n'), "{}", d.message);
    for n in needles {
        assert!(d.message.contains(n), "`{n}` not in: {}", d.message);
    }
}

#[test]
fn shapes_whose_element_count_overflows_are_refused_at_the_callers_line() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [1u64 << 33, 1 << 33]); // MARK-big-input
    assert!(x.is_poisoned());
    assert_diag_at(
        &g,
        "MARK-big-input",
        &["[8589934592, 8589934592]", "overflows"],
    );

    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 1u64 << 62, 4u64)); // MARK-sym-input
    let y = x.reshape((&n, i64::MAX as u64));
    assert!(y.is_poisoned());
    assert_diag_at(
        &g,
        "MARK-sym-input",
        &["[N, 4611686018427387904, 4]", "overflows"],
    );

    let g = Graph::new();
    let x = g.input("x", DType::F32, [1u64 << 31, 4]);
    let y = x.reshape([1u64 << 62, 1 << 62]); // MARK-big-reshape
    assert!(y.is_poisoned());
    assert_diag_at(&g, "MARK-big-reshape", &["reshape", "overflows"]);
}

#[test]
fn pad_amounts_that_overflow_are_refused() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let y = x.pad(&[(u64::MAX, 0)], 0.0); // MARK-pad-max
    assert!(y.is_poisoned());
    assert_diag_at(&g, "MARK-pad-max", &["pad", "[3]", "overflows"]);

    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let y = x.pad(&[(u64::MAX, 1)], 0.0); // MARK-pad-sum
    assert!(y.is_poisoned());
    assert_diag_at(&g, "MARK-pad-sum", &["pad", "overflow"]);
}

#[test]
fn symbolic_exponent_overflow_is_refused_not_wrapped() {
    let g = Graph::new();
    let mut d = g.sym("N");
    for _ in 0..32 {
        d = &d * &d;
    }
    assert!(d.is_overflow());
    let x = g.input("x", DType::F32, [d]); // MARK-exp
    assert!(x.is_poisoned());
    assert_diag_at(&g, "MARK-exp", &["<overflow>", "overflows"]);
}

#[test]
fn empty_kernels_and_negative_extents_are_build_errors() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [1, 1, 4, 4]);
    let w = g.param("w", DType::F32, [1, 1, 0, 0]);
    let y = x.conv2d(&w, kiln::ConvOpts::default()); // MARK-conv-empty
    assert!(y.is_poisoned());
    assert_diag_at(&g, "MARK-conv-empty", &["conv2d", "[1, 1, 0, 0]", "kernel"]);

    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, [1]);
    let y = x.expand([n.clone() - kiln::Dim::known(2)]); // MARK-expand-neg
    assert!(y.is_poisoned());
    assert_diag_at(&g, "MARK-expand-neg", &["expand", "N-2", "negative"]);
    // `N-1` is fine: symbols are at least 1.
    let g = Graph::new();
    let x = g.input("x", DType::F32, [1]);
    let y = x.expand([n - kiln::Dim::known(1)]);
    assert!(!y.is_poisoned(), "{:?}", g.diagnostics());
}
