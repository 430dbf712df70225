//! Integration tests of the `kiln` binary: every subcommand and every bad-input case,
//! asserting exit codes and messages.

use crate::common;

use common::{Tmp, kiln, s, stderr, stdout};
use kiln::{Array, Backend, DType, Graph, Tensor};
use std::path::{Path, PathBuf};

/// Saves SimpleNN (symbolic batch) with the PyTorch golden weights; returns the graph pieces.
fn simple_nn_module(dir: &Tmp) -> (PathBuf, Graph, Tensor) {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = kiln_tests::models::simple_nn(&g, &n);
    kiln_tests::golden::load_params(&g, "simple_nn").unwrap();
    let exe = kiln::compile(&[("logits", &logits)], Backend::Interp).unwrap();
    let path = dir.path("simple.kiln");
    exe.save(&path).unwrap();
    (path, g, logits)
}

fn write_npy(path: &Path, a: &Array) {
    kiln::npy::write(path, a).unwrap();
}

#[test]
fn run_writes_outputs_matching_the_library() {
    let dir = Tmp::new("run");
    let (model, _g, logits) = simple_nn_module(&dir);
    let x = kiln_tests::golden::model_input(&[4, 784]).unwrap();
    let xin = dir.path("x.npy");
    write_npy(&xin, &x);
    let out = dir.path("out");
    for backend in kiln_tests::backends() {
        let o = kiln(&[
            "run",
            s(&model),
            "--input",
            &format!("x={}", s(&xin)),
            "--backend",
            backend.name(),
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        assert!(stdout(&o).contains("logits: f32[4, 10]"), "{}", stdout(&o));
        let got = kiln::npy::read(out.join("logits.npy")).unwrap();
        let want = kiln::eval(&[&logits], &[("x", &x)]).unwrap().remove(0);
        kiln_tests::golden::assert_close("cli logits", &got, &want);
    }
    let o = kiln(&[
        "run",
        s(&model),
        "-i",
        &format!("x={}", s(&xin)),
        "--out",
        s(&out),
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["outputs"][0]["name"], "logits");
    assert_eq!(v["backend"], "cpu");
}

#[test]
fn bad_inputs_give_one_line_errors_and_exit_1() {
    let dir = Tmp::new("bad");
    let (model, _, _) = simple_nn_module(&dir);
    let good = dir.path("x.npy");
    write_npy(&good, &Array::from_f32(&[2, 784], vec![0.5; 1568]).unwrap());
    let f64s = dir.path("x64.npy");
    write_npy(&f64s, &Array::from_f64(&[2, 784], vec![0.5; 1568]).unwrap());
    let rank = dir.path("rank.npy");
    write_npy(&rank, &Array::from_f32(&[1568], vec![0.5; 1568]).unwrap());
    let size = dir.path("size.npy");
    write_npy(&size, &Array::from_f32(&[2, 783], vec![0.5; 1566]).unwrap());
    let garbage = dir.path("garbage.kiln");
    std::fs::write(&garbage, b"KILNMOD\0 this is not a module").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "missing input `x` (expected f32[N, 784])"),
        (
            vec![format!("y={}", s(&good))],
            "unknown input `y` (inputs are: x)",
        ),
        (
            vec![format!("x={}", s(&f64s))],
            "input `x`: expected dtype f32, got f64",
        ),
        (
            vec![format!("x={}", s(&rank))],
            "input `x`: expected rank 2 ([N, 784]), got rank 1 [1568]",
        ),
        (
            vec![format!("x={}", s(&size))],
            "input `x`: dimension 1 is 783, expected 784",
        ),
        (vec![format!("x={}", s(&dir.path("nope.npy")))], "nope.npy"),
        (vec!["x".to_string()], "--input `x`: expected NAME=FILE.npy"),
    ];
    for (inputs, want) in cases {
        let mut args = vec![
            "run".to_string(),
            s(&model).to_string(),
            "--out".into(),
            s(&dir.path("o")).to_string(),
        ];
        for i in &inputs {
            args.push("--input".into());
            args.push(i.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = kiln(&refs);
        assert_eq!(o.status.code(), Some(1), "{inputs:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
        assert!(
            e.starts_with("error: ") && e.contains(want),
            "{inputs:?}: want `{want}` in `{e}`"
        );
    }
    let o = kiln(&["run", s(&garbage), "--input", &format!("x={}", s(&good))]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
    let o = kiln(&[
        "run",
        s(&model),
        "--backend",
        "tpu",
        "--input",
        &format!("x={}", s(&good)),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown backend `tpu`"),
        "{}",
        stderr(&o)
    );
    let o = kiln(&[
        "run",
        s(&model),
        "--bind",
        "N=2",
        "--bind",
        "M=3",
        "--input",
        &format!("x={}", s(&good)),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot bind unknown symbol M"),
        "{}",
        stderr(&o)
    );
    let o = kiln(&[
        "run",
        s(&model),
        "--bind",
        "N=3",
        "--input",
        &format!("x={}", s(&good)),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("symbol N is 3 from --bind but 2 from input `x` dimension 0"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["frobnicate"],
        vec!["run"],
        vec!["info"],
        vec!["bench", "m.kiln", "--iters", "many"],
    ] {
        let o = kiln(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn info_dot_and_bench() {
    let dir = Tmp::new("info");
    let (model, _, _) = simple_nn_module(&dir);
    let o = kiln(&["info", s(&model), "--bind", "N=64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "format version 5",
        "x: f32[N, 784]",
        "logits: f32[N, 10]",
        "4 tensors, 101770 elements, 407080 bytes",
        "matmul",
        "scratch memory at N=64",
    ] {
        assert!(text.contains(want), "missing `{want}` in\n{text}");
    }
    let o = kiln(&["info", s(&model), "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["parameter_count"], 101770);
    assert_eq!(v["inputs"][0]["shape"], "[N, 784]");
    assert!(v["kernels"]["matmul"].as_u64().unwrap() >= 2);
    let o = kiln(&["info", s(&model), "--bind", "N=64", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let exe = kiln_runtime::load(&model, kiln_runtime::Backend::Cpu).unwrap();
    let arena = exe
        .planned_scratch_bytes(&std::collections::HashMap::from([("N".to_string(), 64)]))
        .unwrap()
        .unwrap();
    assert!(arena > 0);
    assert_eq!(v["scratch_bytes"].as_u64(), Some(arena));

    let o = kiln(&["dot", s(&model)]);
    assert!(o.status.success());
    let d = stdout(&o);
    assert!(
        d.starts_with("digraph kiln {") && d.contains("cluster_k0") && d.contains("matmul"),
        "{d}"
    );

    let o = kiln(&[
        "bench",
        s(&model),
        "--iters",
        "5",
        "--bind",
        "N=8",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["median_s"].as_f64().unwrap() > 0.0);
    assert!(v["p10_s"].as_f64().unwrap() <= v["p90_s"].as_f64().unwrap());
}

#[test]
fn weights_export_import_round_trip_and_mismatches() {
    let dir = Tmp::new("weights");
    let (model, _, _) = simple_nn_module(&dir);
    let st = dir.path("w.safetensors");
    let o = kiln(&["export-weights", s(&model), s(&st)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Import into itself gives an identical state.
    let out = dir.path("re.kiln");
    let o = kiln(&["import-weights", s(&model), s(&st), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = kiln_format::load(&model).unwrap();
    let b = kiln_format::load(&out).unwrap();
    for ((n1, x), (n2, y)) in a.state.iter().zip(&b.state) {
        assert_eq!(n1, n2);
        assert!(x.bit_eq(y));
    }
    // A file with a wrong shape, a wrong dtype, an unknown name and a missing tensor.
    let w = |shape: Vec<usize>, v: f32| {
        Array::from_f32(&shape, vec![v; shape.iter().product()]).unwrap()
    };
    let bad: Vec<(&str, Array)> = vec![
        ("fc1.weight", w(vec![784, 128], 0.0)),
        ("fc1.bias", Array::from_f64(&[128], vec![0.0; 128]).unwrap()),
        ("fc3.weight", w(vec![2], 0.0)),
        ("fc2.weight", w(vec![10, 128], 0.0)),
    ];
    let bytes: Vec<(String, Vec<u8>, Array)> = bad
        .iter()
        .map(|(n, a)| (n.to_string(), a.to_le_bytes(), a.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, d, a)| {
            let dt = if a.dtype() == DType::F64 {
                safetensors::Dtype::F64
            } else {
                safetensors::Dtype::F32
            };
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dt, a.shape().to_vec(), d).unwrap(),
            )
        })
        .collect();
    let badf = dir.path("bad.safetensors");
    std::fs::write(&badf, safetensors::serialize(views, None).unwrap()).unwrap();
    let o = kiln(&[
        "import-weights",
        s(&model),
        s(&badf),
        "-o",
        s(&dir.path("x.kiln")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    for want in [
        "`fc1.weight`: expected f32[128, 784], got f32[784, 128]",
        "`fc1.bias`: expected f32[128], got f64[128]",
        "unexpected keys `fc3.weight`",
        "missing keys `fc2.bias`",
    ] {
        assert!(e.contains(want), "missing `{want}` in {e}");
    }
    assert!(!dir.path("x.kiln").exists());
}

#[test]
fn demo_learns_digits_and_reloads_on_every_backend() {
    let dir = Tmp::new("demo");
    let out = dir.path("digits.kiln");
    let o = kiln(&["demo", "--epochs", "3", "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let acc: f64 = text
        .split("test accuracy ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in\n{text}"));
    assert!(acc >= 90.0, "accuracy {acc}% after 3 epochs:\n{text}");
    assert!(
        text.contains("reloaded on cpu") && text.contains("predictions agree"),
        "{text}"
    );
    assert!(!text.contains("DIFFER"), "{text}");
    // The saved inference module takes only `x` and carries no optimiser state.
    let m = kiln_format::load(&out).unwrap();
    assert_eq!(m.signature.inputs.len(), 1);
    assert_eq!(m.signature.inputs[0].name, "x");
    assert!(
        m.state.iter().all(|(n, _)| !n.contains("adam")),
        "{:?}",
        m.state.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
}

#[test]
fn stateful_lstm_through_kiln_run_continues_with_save_state() {
    use kiln::nn::{RnnConfig, StatefulLstm};
    let dir = Tmp::new("stateful");
    let g = Graph::new();
    let model = StatefulLstm::new(&g, "rnn", RnnConfig::new(28, 128), 1, 10, 3);
    let x = g.input("x", DType::F32, [1, 4, 28]);
    let (logits, updates) = model.forward(&x);
    let ups: Vec<(&str, &Tensor)> = updates.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut exe = kiln::compile_step(&[("logits", &logits)], &ups, Backend::Cpu).unwrap();
    let m0 = dir.path("m0.kiln");
    exe.save(&m0).unwrap();
    let c1 = Array::from_f32(
        &[1, 4, 28],
        (0..112).map(|i| (i as f32 * 0.37).sin()).collect(),
    )
    .unwrap();
    let c2 = Array::from_f32(
        &[1, 4, 28],
        (0..112).map(|i| (i as f32 * 0.11).cos()).collect(),
    )
    .unwrap();
    let want1 = exe.run(&[("x", &c1)]).unwrap().remove(0).1;
    let want2 = exe.run(&[("x", &c2)]).unwrap().remove(0).1;
    let (p1, p2) = (dir.path("c1.npy"), dir.path("c2.npy"));
    write_npy(&p1, &c1);
    write_npy(&p2, &c2);
    let m1 = dir.path("m1.kiln");
    let o = kiln(&[
        "run",
        s(&m0),
        "--input",
        &format!("x={}", s(&p1)),
        "--out",
        s(&dir.path("o1")),
        "--save-state",
        s(&m1),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got1 = kiln::npy::read(dir.path("o1/logits.npy")).unwrap();
    assert!(got1.bit_eq(&want1), "first chunk differs");
    let o = kiln(&[
        "run",
        s(&m1),
        "--input",
        &format!("x={}", s(&p2)),
        "--out",
        s(&dir.path("o2")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got2 = kiln::npy::read(dir.path("o2/logits.npy")).unwrap();
    assert!(
        got2.bit_eq(&want2),
        "the second run did not continue the sequence"
    );
    // Without --save-state the module on disk is unchanged: running it again restarts.
    let o = kiln(&[
        "run",
        s(&m0),
        "--input",
        &format!("x={}", s(&p2)),
        "--out",
        s(&dir.path("o3")),
    ]);
    assert!(o.status.success());
    let fresh = kiln::npy::read(dir.path("o3/logits.npy")).unwrap();
    assert!(!fresh.bit_eq(&want2));
}

#[test]
fn numeric_arguments_are_bounded_before_anything_is_allocated() {
    let dir = Tmp::new("limits");
    let (model, _, _) = simple_nn_module(&dir);
    for iters in ["18446744073709551615", "1099511627776", "0", "-1"] {
        let arg = format!("--iters={iters}");
        let o = kiln(&["bench", s(&model), &arg, "--bind", "N=1"]);
        assert_eq!(o.status.code(), Some(2), "--iters {iters}: {}", stderr(&o));
        assert!(stderr(&o).contains("--iters"), "{}", stderr(&o));
    }
    for (flag, value) in [("--epochs", "0"), ("--batch", "18446744073709551615")] {
        let o = kiln(&["demo", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", stderr(&o));
    }
    let o = kiln(&[
        "bench",
        s(&model),
        "--iters",
        "1",
        "--bind",
        "N=4398046511104",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(
        e.contains("input `x`") && e.contains("cannot be allocated"),
        "{e}"
    );
}

#[test]
fn output_names_map_to_distinct_files() {
    let dir = Tmp::new("names");
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    let a = &x + 1.0;
    let b = &x * 2.0;
    let c = &x - 3.0;
    let exe = kiln::compile(
        &[("a b", &a), ("a_b", &b), ("a/../c%", &c)],
        Backend::Interp,
    )
    .unwrap();
    let model = dir.path("names.kiln");
    exe.save(&model).unwrap();
    let xin = dir.path("x.npy");
    write_npy(&xin, &Array::from_f32(&[2], vec![1.0, 2.0]).unwrap());
    let out = dir.path("out");
    let o = kiln(&[
        "run",
        s(&model),
        "-i",
        &format!("x={}", s(&xin)),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (file, want) in [
        ("a%20b.npy", [2.0f32, 3.0]),
        ("a_b.npy", [2.0, 4.0]),
        ("a%2F..%2Fc%25.npy", [-2.0, -1.0]),
    ] {
        let got = kiln::npy::read(out.join(file)).unwrap();
        assert_eq!(got.as_f32().unwrap(), &want, "{file}");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);

    let exe = kiln::compile(&[("A", &a), ("a", &b)], Backend::Interp).unwrap();
    let model = dir.path("case.kiln");
    exe.save(&model).unwrap();
    let out = dir.path("case-out");
    let o = kiln(&[
        "run",
        s(&model),
        "-i",
        &format!("x={}", s(&xin)),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("outputs `A` and `a` would both be written to a.npy"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().count() == 0);
}

#[test]
fn run_time_errors_say_their_cause_once() {
    let dir = Tmp::new("cause");
    let g = Graph::new();
    let x = g.input("x", DType::I32, [2]);
    let y = g.input("y", DType::I32, [2]);
    let q = &x / &y;
    let exe = kiln::compile(&[("q", &q)], Backend::Interp).unwrap();
    let model = dir.path("div.kiln");
    exe.save(&model).unwrap();
    let (xin, yin) = (dir.path("x.npy"), dir.path("y.npy"));
    write_npy(&xin, &Array::from_i32(&[2], vec![4, 6]).unwrap());
    write_npy(&yin, &Array::from_i32(&[2], vec![2, 0]).unwrap());
    for backend in kiln_tests::backends() {
        let o = kiln(&[
            "run",
            s(&model),
            "-i",
            &format!("x={}", s(&xin)),
            "-i",
            &format!("y={}", s(&yin)),
            "--backend",
            backend.name(),
            "--out",
            s(&dir.path("o")),
        ]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{backend}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{backend}: {e}");
        assert_eq!(e.matches("by zero").count(), 1, "{backend}: {e}");
    }
}
