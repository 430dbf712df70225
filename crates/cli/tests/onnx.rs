//! `kiln import` and ONNX files given straight to `kiln run`/`info`: the exported SimpleNN
//! (fixtures/onnx) imported to a `.kiln` module and run gives ONNX Runtime's output; an
//! unsupported op, a malformed file and a bad `--dim` are one-line errors with exit code 1.

use crate::common;

use common::{Tmp, kiln, s, stderr, stdout};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/onnx")
        .join(name)
}

fn assert_matches_ort(out_dir: &Path) {
    let got = kiln::npy::read(out_dir.join("y.npy")).unwrap().to_f64_vec();
    let want = kiln::npy::read(fixture("simple_nn.ort.npy"))
        .unwrap()
        .to_f64_vec();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4, "{g} vs ONNX Runtime {w}");
    }
}

#[test]
fn import_then_run_matches_onnx_runtime() {
    let dir = Tmp::new("onnx-import");
    let module = dir.path("simple.kiln");
    let o = kiln(&["import", s(&fixture("simple_nn.onnx")), "-o", s(&module)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("x: f32[batch, 784]"), "{text}");
    assert!(text.contains("y: f32[batch, 10]"), "{text}");
    let out = dir.path("out");
    let x = format!("x={}", s(&fixture("simple_nn.x.npy")));
    let o = kiln(&["run", s(&module), "--input", &x, "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_matches_ort(&out);
    // The .onnx file itself, compiled on the fly.
    let out2 = dir.path("out2");
    let o = kiln(&[
        "run",
        s(&fixture("simple_nn.onnx")),
        "--input",
        &x,
        "--out",
        s(&out2),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_matches_ort(&out2);
    let o = kiln(&["info", s(&fixture("simple_nn.onnx"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("fc1.weight") || stdout(&o).contains("state: 4 tensors"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_fixed_dim_compiles_for_that_size_only() {
    let dir = Tmp::new("onnx-dim");
    let module = dir.path("b5.kiln");
    let o = kiln(&[
        "import",
        s(&fixture("simple_nn.onnx")),
        "-o",
        s(&module),
        "--dim",
        "batch=5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("x: f32[5, 784]"), "{}", stdout(&o));
    let o = kiln(&[
        "import",
        s(&fixture("simple_nn.onnx")),
        "-o",
        s(&module),
        "--dim",
        "batch",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("expected NAME=N"), "{}", stderr(&o));
}

#[test]
fn bad_models_are_one_line_errors() {
    let dir = Tmp::new("onnx-bad");
    let garbage = dir.path("garbage.onnx");
    std::fs::write(&garbage, b"\x0a\xff\xff\xff\xff\x0fnot a model").unwrap();
    let o = kiln(&["import", s(&garbage), "-o", s(&dir.path("g.kiln"))]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("not a valid ONNX model"), "{err}");
    assert!(!dir.path("g.kiln").exists());
    let o = kiln(&[
        "import",
        s(&dir.path("missing.onnx")),
        "-o",
        s(&dir.path("m.kiln")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    let o = kiln(&["import", "--list-ops"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).lines().any(|l| l.trim() == "Conv"),
        "{}",
        stdout(&o)
    );
}
