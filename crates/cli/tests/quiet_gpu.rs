//! Opening the GPU prints nothing kiln did not write: `kiln demo --backend gpu` (training on
//! the GPU) and `kiln run --backend gpu` leave stderr empty on a healthy machine, even without
//! `XDG_RUNTIME_DIR` (whose absence makes the Vulkan stack's Wayland lookup complain on
//! stderr); the demo trained on `gpu` reaches the test accuracy it reaches on `cpu`. Needs a
//! GPU or lavapipe; skipped without one unless `KILN_REQUIRE_GPU=1` (CI sets it).

use crate::common;

use common::{Tmp, s};
use std::process::{Command, Output};

/// Runs the runner as a user without a desktop session would: no `XDG_RUNTIME_DIR`.
fn kiln_bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_BACKEND")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap()
}

fn gpu_available() -> bool {
    kiln_tests::backends().contains(&kiln::Backend::Gpu)
}

#[test]
fn demo_and_run_on_the_gpu_print_nothing_on_stderr() {
    if !gpu_available() {
        return;
    }
    let dir = Tmp::new("quiet-gpu");
    let module = dir.path("digits.kiln");
    let demo = |backend: &str| {
        let o = kiln_bare(&[
            "demo",
            "--backend",
            backend,
            "--epochs",
            "1",
            "--out",
            s(&module),
        ]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "demo on {backend} failed: {err}");
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let accuracy = out
            .lines()
            .find_map(|l| l.strip_prefix("test accuracy "))
            .and_then(|l| l.split(';').next())
            .unwrap_or_else(|| panic!("no accuracy line in {out}"))
            .to_string();
        (err, accuracy)
    };
    let (_, on_cpu) = demo("cpu");
    let (err, on_gpu) = demo("gpu");
    assert_eq!(err, "", "kiln demo --backend gpu wrote to stderr");
    // The same seeds, batches and dropout bits on both: the trained models classify the
    // test set alike (their logits differ by f32 rounding only).
    assert_eq!(on_gpu, on_cpu, "test accuracy on gpu vs cpu");

    let x = dir.path("x.npy");
    kiln::npy::write(&x, &kiln::Array::zeros(kiln::DType::F32, &[2, 64]).unwrap()).unwrap();
    let input = format!("x={}", s(&x));
    let out = dir.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = kiln_bare(&[
        "run",
        s(&module),
        "--backend",
        "gpu",
        "--input",
        &input,
        "--out",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "run failed: {err}");
    assert_eq!(err, "", "kiln run --backend gpu wrote to stderr");
    assert!(out.join("logits.npy").exists());
}
