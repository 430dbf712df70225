//! kiln's reference models exported by `torch.onnx.export` (fixtures/gen/gen_onnx.py, opset
//! 17, batch axis named `batch`; SimpleNN, LeNet and the two-layer LSTMNN) import, compile once for a symbolic batch, and match ONNX
//! Runtime's outputs on every available backend within 1e-4 of the output scale; a second
//! batch size runs through the same executable.

use kiln::{Array, Backend};
use kiln_onnx::{ImportOptions, import_file};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/onnx")
        .join(name)
}

fn npy(name: &str) -> Array {
    kiln::npy::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Interp, Backend::Cpu, Backend::Kernel];
    if kiln_gpu::test_device().is_some() {
        b.push(Backend::Gpu);
    }
    b
}

fn check(model: &str) {
    let imported = import_file(
        &fixture(&format!("{model}.onnx")),
        &ImportOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{model}: {e}"));
    assert_eq!(imported.inputs.len(), 1);
    assert!(
        imported.inputs[0].1.shape().dims()[0].as_symbol() == Some("batch"),
        "{model}: the batch axis is symbolic, got {}",
        imported.inputs[0].1.shape()
    );
    assert!(
        !imported.parameters.is_empty(),
        "{model}: weights are parameters"
    );
    let x = npy(&format!("{model}.x.npy"));
    let want = npy(&format!("{model}.ort.npy")).to_f64_vec();
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for backend in backends() {
        let mut exe = imported
            .compile(backend)
            .unwrap_or_else(|e| panic!("{model} on {backend}: {e}"));
        let out = exe
            .run(&[("x", &x)])
            .unwrap_or_else(|e| panic!("{model} on {backend}: {e}"));
        let got = out[0].1.to_f64_vec();
        assert_eq!(got.len(), want.len(), "{model} on {backend}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst <= 1e-4 * scale,
            "{model} on {backend}: max abs error {worst} against ONNX Runtime (scale {scale})"
        );
        // The same executable runs another batch size: the first row alone.
        let row: Vec<usize> = std::iter::once(1)
            .chain(x.shape()[1..].iter().copied())
            .collect();
        let n: usize = row.iter().product();
        let first = Array::from_f64_cast(x.dtype(), &row, &x.to_f64_vec()[..n]);
        let out1 = exe
            .run(&[("x", &first)])
            .unwrap_or_else(|e| panic!("{model} on {backend}: {e}"));
        let got1 = out1[0].1.to_f64_vec();
        let cols = want.len() / x.shape()[0];
        for (g, w) in got1.iter().zip(&want[..cols]) {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{model} on {backend}, batch 1: {g} vs {w}"
            );
        }
    }
}

#[test]
fn simple_nn_matches_onnx_runtime() {
    check("simple_nn");
}

#[test]
fn lenet_matches_onnx_runtime() {
    check("lenet");
}

#[test]
fn lstm_nn_matches_onnx_runtime() {
    check("lstm_nn");
}
