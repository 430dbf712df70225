//! Build → compile → run on every backend: the golden op suite and the reference models
//! through compiled executables, and state updates of a compiled train step.

use kiln::{Array, Backend, DType, Graph, Tensor};
use kiln_tests::golden::{self, assert_close};
use kiln_tests::models::{lenet, lstm_nn, simple_nn};

/// `kiln::eval`'s signature.
type Evaluator = dyn Fn(&[&Tensor], &[(&str, &Array)]) -> Result<Vec<Array>, kiln::Error>;

/// An evaluator with `kiln::eval`'s signature that compiles for `backend` and runs once.
fn compiled(backend: Backend) -> Box<Evaluator> {
    Box::new(move |outs, feeds| {
        let names: Vec<String> = (0..outs.len()).map(|i| format!("out{i}")).collect();
        let named: Vec<(&str, &Tensor)> = names
            .iter()
            .map(String::as_str)
            .zip(outs.iter().copied())
            .collect();
        let mut exe = kiln::compile(&named, backend)?;
        Ok(exe.run(feeds)?.into_iter().map(|(_, a)| a).collect())
    })
}

#[test]
fn golden_op_suite_on_every_backend() {
    let mut report = Vec::new();
    let mut ran = 0;
    let mut rejected = 0;
    let mut f64_cases = 0;
    for backend in kiln_tests::backends() {
        for spec in &golden::manifest().expect("manifest").cases {
            ran += 1;
            // The one entry of the GPU's skip list (docs/gpu.md, "Known limits"): WGSL has no
            // f64, so a case with an f64 input or output is rejected at compile time.
            let f64_case = spec
                .inputs
                .iter()
                .chain(&spec.outputs)
                .any(|t| t.dtype == DType::F64);
            if backend == Backend::Gpu && f64_case {
                f64_cases += 1;
            }
            let res = golden::load(spec).and_then(|c| golden::run_case_with(&c, compiled(backend)));
            match res {
                Err(e)
                    if backend == Backend::Gpu
                        && f64_case
                        && e.contains("which WGSL cannot express") =>
                {
                    rejected += 1
                }
                Err(e) => report.push(format!("[{backend}] {}: {e}", spec.name)),
                Ok(()) => {}
            }
        }
    }
    assert!(ran > 100, "only {ran} cases ran");
    eprintln!("{ran} compiled cases, {rejected} rejected by the gpu backend for f64");
    assert_eq!(
        rejected, f64_cases,
        "every f64 case, and only those, is rejected on gpu"
    );
    assert!(
        report.is_empty(),
        "{} of {ran} compiled cases failed:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn reference_models_compile_and_match_pytorch() {
    for backend in kiln_tests::backends() {
        for (name, batch) in [("simple_nn", 64usize), ("lenet", 64)] {
            let g = Graph::new();
            let n = g.sym("N");
            let (_x, logits) = if name == "lenet" {
                lenet(&g, &n)
            } else {
                simple_nn(&g, &n)
            };
            golden::load_params(&g, name).unwrap_or_else(|e| panic!("{e}"));
            let f = golden::model(name)
                .unwrap()
                .forward
                .into_iter()
                .find(|f| f.batch == batch)
                .unwrap();
            let x = golden::model_input(&f.x_shape).unwrap();
            let mut exe = kiln::compile(&[("logits", &logits)], backend)
                .unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
            let got = exe
                .run(&[("x", &x)])
                .unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
            assert_eq!(got[0].0, "logits");
            assert_close(
                &format!("{name} on {backend}"),
                &got[0].1,
                &f.logits.load().unwrap(),
            );
            // The same executable runs for another binding of N.
            let x1 = golden::model_input(&[1, f.x_shape[1..].iter().product()]).unwrap();
            let x1 = x1
                .reshaped(&[&[1usize][..], &f.x_shape[1..]].concat())
                .unwrap();
            let one = exe.run(&[("x", &x1)]).unwrap();
            assert_eq!(one[0].1.shape(), &[1, 10]);
        }
    }
}

#[test]
fn train_step_updates_state_in_place_identically_on_every_backend() {
    let mut finals = Vec::new();
    for backend in kiln_tests::backends() {
        let g = Graph::new();
        let n = g.sym("N");
        let (_x, logits) = simple_nn(&g, &n);
        golden::load_params(&g, "simple_nn").unwrap();
        let labels = g.input("labels", DType::I32, [&n]);
        let logp = logits.log_softmax(-1);
        let loss = -logp.gather(1, &labels.unsqueeze(-1)).mean_all();
        let params: Vec<Tensor> = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
            .iter()
            .map(|p| {
                let v = g.param_value(p).unwrap();
                g.param(p, v.dtype(), v.shape().to_vec())
            })
            .collect();
        let refs: Vec<&Tensor> = params.iter().collect();
        let grads = kiln::grad(&loss, &refs);
        let new: Vec<Tensor> = params
            .iter()
            .zip(&grads)
            .map(|(p, gr)| p - &(gr * 0.1))
            .collect();
        let names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];
        let updates: Vec<(&str, &Tensor)> = names.iter().copied().zip(new.iter()).collect();
        let mut exe = kiln::compile_step(&[("loss", &loss)], &updates, backend).unwrap();
        let x = golden::model_input(&[64, 784]).unwrap();
        let y64 = golden::model_labels().unwrap();
        let y =
            Array::from_i32(&[64], y64.to_i64_vec().iter().map(|&v| v as i32).collect()).unwrap();
        let l0 = exe.run(&[("x", &x), ("labels", &y)]).unwrap()[0]
            .1
            .as_f32()
            .unwrap()[0];
        let want = golden::model("simple_nn")
            .unwrap()
            .train
            .loss
            .load()
            .unwrap();
        assert_close(
            "initial loss",
            &Array::from_f32(&[], vec![l0]).unwrap(),
            &want,
        );
        let l1 = exe.run(&[("x", &x), ("labels", &y)]).unwrap()[0]
            .1
            .as_f32()
            .unwrap()[0];
        assert!(l1 < l0, "{backend}: loss did not decrease: {l0} -> {l1}");
        // Reference: the same two SGD steps evaluated by the interpreter.
        let mut w = g.param_value("fc1.weight").unwrap();
        for _ in 0..2 {
            let all: Vec<&Tensor> = new.iter().collect();
            let vals = kiln::eval(&all, &[("x", &x), ("labels", &y)]).unwrap();
            for (name, v) in names.iter().zip(vals) {
                g.set_param(name, v).unwrap();
            }
            w = g.param_value("fc1.weight").unwrap();
        }
        let got = exe.state().get("fc1.weight").unwrap();
        assert_close(&format!("fc1.weight after 2 steps on {backend}"), &got, &w);
        finals.push(got);
    }
    for f in &finals[1..] {
        assert_close("backends agree", f, &finals[0]);
    }
}

#[test]
fn compile_reports_every_diagnostic_and_run_rejects_bad_inputs() {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 4));
    let bad = x.reshape([3, 5]);
    let err = kiln::compile(&[("y", &bad)], Backend::Interp).unwrap_err();
    assert!(err.to_string().contains("reshape"), "{err}");

    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 4));
    let z = g.input("z", DType::F32, (&n, 2));
    let y = x.sum(1, false) + z.sum(1, false);
    let mut exe = kiln::compile(&[("y", &y)], Backend::Interp).unwrap();
    let a = Array::from_f32(&[3, 4], vec![1.0; 12]).unwrap();
    let b = Array::from_f32(&[2, 2], vec![1.0; 4]).unwrap();
    let wrong_dtype = Array::from_f64(&[3, 4], vec![1.0; 12]).unwrap();
    let msg =
        |r: Result<Vec<(String, Array)>, kiln_runtime::RuntimeError>| r.unwrap_err().to_string();
    assert_eq!(
        msg(exe.run(&[("x", &a)])),
        "missing input `z` (expected f32[N, 2])"
    );
    assert_eq!(
        msg(exe.run(&[("x", &a), ("z", &b), ("w", &b)])),
        "unknown input `w` (inputs are: x, z)"
    );
    assert_eq!(
        msg(exe.run(&[("x", &wrong_dtype), ("z", &b)])),
        "input `x`: expected dtype f32, got f64"
    );
    assert_eq!(
        msg(exe.run(&[("x", &a), ("z", &b)])),
        "symbol N is 3 from input `x` dimension 0 but 2 from input `z` dimension 0"
    );
    let ok = exe
        .run(&[
            ("x", &a),
            ("z", &Array::from_f32(&[3, 2], vec![0.5; 6]).unwrap()),
        ])
        .unwrap();
    assert_eq!(ok[0].1.as_f32().unwrap(), &[5.0, 5.0, 5.0]);
}

#[test]
fn save_load_run_is_bit_identical_on_every_backend_and_across_backends() {
    let dir = std::env::temp_dir().join(format!("kiln-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, batch) in [("simple_nn", 64usize), ("lenet", 8), ("lstm_nn", 4)] {
        let g = Graph::new();
        let n = g.sym("N");
        let (_x, logits) = match name {
            "lenet" => lenet(&g, &n),
            "lstm_nn" => lstm_nn(&g, &n),
            _ => simple_nn(&g, &n),
        };
        golden::load_params(&g, name).unwrap();
        let shape: Vec<usize> = match name {
            "lenet" => vec![batch, 1, 28, 28],
            "lstm_nn" => vec![batch, 28, 28],
            _ => vec![batch, 784],
        };
        let x = golden::model_input(&shape).unwrap();
        let mut first: Option<Array> = None;
        for backend in kiln_tests::backends() {
            let mut exe = kiln::compile(&[("logits", &logits)], backend).unwrap();
            let direct = exe.run(&[("x", &x)]).unwrap().remove(0).1;
            let path = dir.join(format!("{name}-{backend}.kiln"));
            exe.save(&path).unwrap();
            for other in kiln_tests::backends() {
                let mut loaded = kiln_runtime::load(&path, other).unwrap();
                let again = loaded.run(&[("x", &x)]).unwrap().remove(0).1;
                if other == backend {
                    assert!(
                        again.bit_eq(&direct),
                        "{name}: {backend} save/load changed the output"
                    );
                }
                assert_close(
                    &format!("{name} saved on {backend}, run on {other}"),
                    &again,
                    &direct,
                );
            }
            if let Some(f) = &first {
                assert_close(&format!("{name}: {backend} vs first backend"), &direct, f);
            }
            first = Some(direct);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
