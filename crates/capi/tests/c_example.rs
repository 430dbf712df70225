//! examples/c/run_model.c, built with the system C compiler against this crate's shared
//! library and run on a small MLP: its output must match the stored reference
//! (examples/c/expected_logits.txt), which must itself match the reference interpreter.
//! `BLESS=1` rewrites the reference from the interpreter. The C++ wrapper
//! (include/kiln.hpp) is compiled and run the same way when a C++ compiler is present.

use kiln::nn::init::Seeds;
use kiln::nn::{Linear, Module, Relu, Sequential};
use kiln::{Array, Backend, DType, Graph};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROWS: usize = 3;
const FEATURES: usize = 64;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-capi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The directory holding `libkiln_capi.so`: cargo builds it next to the test's `deps/`
/// (and a `cargo build` copies it one level up). The newest copy wins, so a library left
/// by an earlier build is never linked instead of the one built with this test.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps.parent().unwrap(), deps]
        .into_iter()
        .filter_map(|d| {
            let modified = d.join("libkiln_capi.so").metadata().ok()?.modified().ok()?;
            Some((modified, d))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("libkiln_capi.so not found near {}", deps.display()))
        .to_path_buf()
}

/// The digits MLP of `kiln demo` (64-128-10), untrained, evaluation mode, saved to `path`.
fn save_mlp(path: &Path) -> kiln::Executable {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, FEATURES));
    let seeds = Seeds::new(7);
    let model = Sequential::new()
        .push(Linear::new(&g, "fc1", FEATURES, 128, seeds.layer("fc1")))
        .push(Relu)
        .push(Linear::new(&g, "fc2", 128, 10, seeds.layer("fc2")));
    let logits = model.forward(&x);
    let exe = kiln::compile(&[("logits", &logits)], Backend::Interp).unwrap();
    exe.save(path).unwrap();
    exe
}

/// The batch run_model.c feeds.
fn batch() -> Array {
    let x = (0..ROWS * FEATURES)
        .map(|i| ((7 * i) % 17) as f32 / 16.0)
        .collect();
    Array::from_f32(&[ROWS, FEATURES], x).unwrap()
}

fn reference_text(logits: &Array) -> String {
    let mut s = format!("{} {}\n", logits.shape()[0], logits.shape()[1]);
    for v in logits.as_f32().unwrap() {
        s.push_str(&format!("{v:.9e}\n"));
    }
    s
}

fn parse_reference(text: &str) -> (Vec<usize>, Vec<f64>) {
    let mut words = text.split_whitespace();
    let shape = vec![
        words.next().unwrap().parse().unwrap(),
        words.next().unwrap().parse().unwrap(),
    ];
    (shape, words.map(|w| w.parse().unwrap()).collect())
}

fn compile_and_run(compiler: &str, source: &Path, dir: &Path, args: &[&Path]) -> (bool, String) {
    let lib = library_dir();
    let bin = dir.join(source.file_stem().unwrap());
    let std = if compiler == "cc" {
        "-std=c11"
    } else {
        "-std=c++17"
    };
    let built = Command::new(compiler)
        .arg(std)
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(repo().join("crates/capi/include"))
        .arg(source)
        .arg("-L")
        .arg(&lib)
        .args(["-lkiln_capi", "-lm"])
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&bin)
        .output()
        .unwrap_or_else(|e| panic!("{compiler} could not be started: {e}"));
    assert!(
        built.status.success(),
        "{compiler} failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    // cargo's LD_LIBRARY_PATH lists target/release before deps/ and outranks the rpath, so
    // the run names the chosen library's folder itself.
    let ran = Command::new(&bin)
        .args(args)
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    (ran.status.success(), text)
}

#[test]
fn c_example_matches_the_stored_reference() {
    let dir = scratch("example");
    let module = dir.join("digits_mlp.kiln");
    let mut exe = save_mlp(&module);
    let oracle = exe.run(&[("x", &batch())]).unwrap().remove(0).1;

    let stored = repo().join("examples/c/expected_logits.txt");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&stored, reference_text(&oracle)).unwrap();
    }
    let (shape, want) = parse_reference(&std::fs::read_to_string(&stored).unwrap());
    assert_eq!(shape, oracle.shape(), "stale reference; rerun with BLESS=1");
    for (i, (w, o)) in want.iter().zip(oracle.as_f32().unwrap()).enumerate() {
        assert!(
            (w - f64::from(*o)).abs() <= 1e-6 * w.abs().max(1.0),
            "stored reference [{i}] = {w}, the interpreter gives {o}; rerun with BLESS=1"
        );
    }

    let (ok, out) = compile_and_run(
        "cc",
        &repo().join("examples/c/run_model.c"),
        &dir,
        &[&module, &stored],
    );
    assert!(ok, "run_model failed:\n{out}");
    assert!(out.contains("input  x: f32[N, 64]"), "{out}");
    assert!(out.contains("output logits: f32[N, 10]"), "{out}");
    assert!(
        out.contains("status 4, \"input `x`: expected dtype f32, got i32\""),
        "{out}"
    );
    assert!(
        out.contains("logits: 3 x 10 values, match the reference"),
        "{out}"
    );

    // A reference that disagrees makes the program fail.
    let wrong = dir.join("wrong.txt");
    std::fs::write(
        &wrong,
        reference_text(&Array::from_f32(&[3, 10], vec![0.5; 30]).unwrap()),
    )
    .unwrap();
    let (ok, out) = compile_and_run(
        "cc",
        &repo().join("examples/c/run_model.c"),
        &dir,
        &[&module, &wrong],
    );
    assert!(!ok && out.contains("DIFFER"), "{out}");

    if Command::new("c++").arg("--version").output().is_ok() {
        let (ok, out) = compile_and_run(
            "c++",
            &repo().join("examples/c/run_model.cpp"),
            &dir,
            &[&module, &stored],
        );
        assert!(ok, "run_model.cpp failed:\n{out}");
        assert!(
            out.contains("logits [3, 10] matches the reference"),
            "{out}"
        );
        assert!(out.contains("caught kiln::Error (status 2)"), "{out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
