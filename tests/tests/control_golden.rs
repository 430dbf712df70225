//! Control flow against JAX: each case of fixtures/golden/control (written by
//! fixtures/gen/gen_control.py with `jax.lax.cond`, `scan`, `while_loop` and `fori_loop`,
//! gradients by `jax.grad`) is built here with kiln's builder and compiled once per backend.
//! Outputs and gradients must meet the golden tolerance of tests/src/golden.rs (integers
//! exactly). `gpu` runs every case whose plan it can run; the float64 case needs a backend
//! with `f64`.

use kiln::{Array, Backend, DType, Graph, ScanOptions, Tensor, grad};
use kiln_tests::golden::{compare, golden_dir};
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    golden_dir().join("control")
}

/// Named arrays, in cases.json order.
type Named = Vec<(String, Array)>;

/// The case `name` of cases.json: its named inputs and expected outputs.
fn case(name: &str) -> (Named, Named) {
    let text = std::fs::read_to_string(dir().join("cases.json"))
        .unwrap_or_else(|e| panic!("fixtures/golden/control/cases.json: {e}"));
    let meta: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let entry = meta["cases"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no case {name} in cases.json"));
    let arrays = |kind: &str| -> Named {
        entry[kind]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no {kind}"))
            .iter()
            .map(|(k, f)| {
                let file = dir().join(f.as_str().unwrap_or_default());
                let a =
                    kiln::npy::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                (k.clone(), a)
            })
            .collect()
    };
    (arrays("inputs"), arrays("outputs"))
}

/// Compiles `outputs` on every backend that can run them and checks each against the
/// case's references; returns the backends that ran.
fn check(name: &str, outputs: &[(&str, &Tensor)], needs_f64: bool) -> Vec<Backend> {
    let (inputs, want) = case(name);
    let feeds: Vec<(&str, &Array)> = inputs.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let mut ran = Vec::new();
    for backend in kiln_tests::backends() {
        if needs_f64 && backend == Backend::Gpu {
            continue;
        }
        let mut exe =
            kiln::compile(outputs, backend).unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
        let got = exe
            .run(&feeds)
            .unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
        for (out, array) in &got {
            let (_, reference) = want
                .iter()
                .find(|(k, _)| k == out)
                .unwrap_or_else(|| panic!("{name}: no reference for {out}"));
            let reference = reference
                .reshaped(array.shape())
                .unwrap_or_else(|e| panic!("{name}.{out}: {e}"));
            if let Err(m) = compare(array, &reference, None) {
                panic!("{name}.{out} on {backend}: {m}");
            }
        }
        ran.push(backend);
    }
    ran
}

#[test]
fn cond_and_its_gradient_match_jax_on_both_branches() {
    for name in ["cond_then", "cond_else"] {
        let g = Graph::new();
        let x = g.input("x", DType::F32, [3, 4]);
        let w = g.input("w", DType::F32, [3, 4]);
        let y = g.cond(
            &x.sum_all().gt(0.0),
            &[&x],
            |_, a| vec![&a[0] * 2.0],
            |_, a| vec![-&a[0]],
        );
        let loss = (&y[0] * &w).sum_all();
        let d = grad(&loss, &[&x, &w]);
        g.check().unwrap_or_else(|e| panic!("{e}"));
        let ran = check(
            name,
            &[("y", &y[0]), ("loss", &loss), ("dx", &d[0]), ("dw", &d[1])],
            false,
        );
        assert!(ran.contains(&Backend::Cpu) && ran.contains(&Backend::Interp));
    }
}

#[test]
fn a_scanned_rnn_and_its_gradients_match_jax_both_directions() {
    for (name, reverse) in [("scan_rnn", false), ("scan_rnn_reverse", true)] {
        let g = Graph::new();
        let h0 = g.input("h0", DType::F32, [2, 4]);
        let xs = g.input("xs", DType::F32, [7, 2, 3]);
        let wh = g.input("wh", DType::F32, [4, 4]);
        let wx = g.input("wx", DType::F32, [3, 4]);
        let c = g.input("c", DType::F32, [7, 2, 4]);
        let options = ScanOptions {
            reverse,
            ..ScanOptions::default()
        };
        let (h, ys) = g.scan_with(&[&h0], &[&xs], &options, |_, carry, x| {
            let h = (carry[0].matmul(&wh) + x[0].matmul(&wx)).tanh();
            (vec![h.clone()], vec![h])
        });
        let loss = (&ys[0] * &c).sum_all() + h[0].sum_all();
        let d = grad(&loss, &[&h0, &xs, &wh, &wx]);
        g.check().unwrap_or_else(|e| panic!("{e}"));
        check(
            name,
            &[
                ("h", &h[0]),
                ("ys", &ys[0]),
                ("loss", &loss),
                ("dh0", &d[0]),
                ("dxs", &d[1]),
                ("dwh", &d[2]),
                ("dwx", &d[3]),
            ],
            false,
        );
    }
}

#[test]
fn collatz_steps_in_a_while_loop_match_jax() {
    let g = Graph::new();
    let n = g.input("n", DType::I32, [4]);
    let zero = g.zeros([4], DType::I32);
    // Each lane runs until it reaches 1; finished lanes stay put (a vector while loop
    // runs until every lane is done, like `jax.vmap` of JAX's scalar loop).
    let out = g.while_loop(
        &[&n, &zero],
        |_, c| c[0].ne(1.0).cast(DType::I32).sum_all().gt(0.0),
        |g, c| {
            let two = g.scalar(2.0, DType::I32);
            let live = c[0].ne(1.0);
            let even = c[0].rem(&two).eq(0.0);
            let next = even.where_(c[0].div(&two), &c[0] * 3.0 + 1.0);
            vec![live.where_(&next, &c[0]), &c[1] + live.cast(DType::I32)]
        },
    );
    g.check().unwrap_or_else(|e| panic!("{e}"));
    check("while_collatz", &[("steps", &out[1])], false);
}

#[test]
fn newtons_method_until_convergence_matches_jax() {
    let g = Graph::new();
    let a = g.input("a", DType::F64, [4]);
    let k0 = g.scalar(0.0, DType::I32);
    let out = g.while_loop(
        &[&a, &k0],
        |_, c| {
            let residual = ((&c[0] * &c[0] - &a).abs() / &a).max(0, false);
            residual.gt(1e-10).logical_and(c[1].lt(100.0))
        },
        |_, c| vec![(&c[0] + &a / &c[0]) * 0.5, &c[1] + 1.0],
    );
    g.check().unwrap_or_else(|e| panic!("{e}"));
    check(
        "while_newton_f64",
        &[("root", &out[0]), ("iters", &out[1])],
        true,
    );
}

#[test]
fn a_fori_loop_and_its_gradient_match_jax() {
    let g = Graph::new();
    let x0 = g.input("x0", DType::F32, [5]);
    let b = g.input("b", DType::F32, [5]);
    let y = g.fori_loop(2, 9, &[&x0], |_, i, c| {
        vec![&c[0] * 0.9 + i.cast(DType::F32) * &b]
    });
    let loss = (&y[0] * &y[0]).sum_all();
    let d = grad(&loss, &[&x0, &b]);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    check(
        "fori_affine",
        &[("y", &y[0]), ("dx0", &d[0]), ("db", &d[1])],
        false,
    );
}
