//! State dicts both ways against PyTorch (fixtures/state_dict/, written by
//! fixtures/gen/gen_state_dict.py): names, layouts and values of a PyTorch `state_dict`
//! through `.safetensors`; training from PyTorch's initial weights matches PyTorch's losses;
//! a checkpoint saved mid-training, re-imported into a fresh graph, resumes bit-identically;
//! strict and non-strict loading; and `Graph::set_param` after compile.

use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::{Linear, Module, Relu, Sequential};
use kiln::optim::{Adam, StateRole};
use kiln::state_dict::{Keys, StateDict, reset_training_state};
use kiln::{Array, Backend, DType, Error, Executable, Graph, StateDictError};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/state_dict")
        .join(name)
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kiln-state-dict-{}-{name}", std::process::id()))
}

/// The data set: inputs `[16, 4]` and PyTorch's `i64` labels as `i32` (every backend's
/// label dtype).
fn data() -> (Array, Array) {
    let x = kiln::npy::read(fixture("x.npy")).unwrap();
    let y64 = kiln::npy::read(fixture("y.npy")).unwrap();
    let y: Vec<i32> = y64.to_i64_vec().into_iter().map(|v| v as i32).collect();
    (x, Array::from_i32(&[16], y).unwrap())
}

/// PyTorch's `Sequential(Linear(4, 8), ReLU, Linear(8, 3))` with an Adam step on the
/// cross-entropy, initialised from `seed` (overwritten by a state dict in the tests).
fn build(seed: u64) -> (Graph, Sequential, kiln::optim::TrainStep) {
    let (g, model, step, _) = build_with_input(seed);
    (g, model, step)
}

/// [`build`], and the input `x`.
fn build_with_input(seed: u64) -> (Graph, Sequential, kiln::optim::TrainStep, kiln::Tensor) {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [16, 4]);
    let y = g.input("y", DType::I32, [16]);
    let seeds = kiln::nn::init::Seeds::new(seed);
    let model = Sequential::new()
        .push(Linear::new(&g, "0", 4, 8, seeds.layer("0")))
        .push(Relu)
        .push(Linear::new(&g, "2", 8, 3, seeds.layer("2")));
    let loss = cross_entropy(&model.forward(&x), &y, Reduction::Mean, 0.0);
    let step = Adam::new(0.01).minimize(&loss, &model.parameters());
    (g, model, step, x)
}

fn run_steps(exe: &mut Executable, n: usize) -> Vec<f32> {
    let (x, y) = data();
    (0..n)
        .map(|_| {
            let out = exe.run(&[("x", &x), ("y", &y)]).unwrap();
            out[0].1.item().unwrap() as f32
        })
        .collect()
}

fn close(got: &Array, want: &Array, tol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    for (i, (a, b)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn pytorch_state_dict_keys_layouts_and_values_load() {
    let dict = kiln::load_safetensors(fixture("mlp_init.safetensors")).unwrap();
    let keys: Vec<&str> = dict.keys().map(String::as_str).collect();
    assert_eq!(keys, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    assert_eq!(dict["0.weight"].shape(), &[8, 4]); // [out, in], as torch.nn.Linear
    assert_eq!(dict["2.weight"].shape(), &[3, 8]);

    let (g, model, _) = build(3);
    let report = model.load_state_dict(&g, &dict, true).unwrap();
    assert_eq!(report.loaded, keys);
    assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
    for (name, want) in &dict {
        assert!(g.param_value(name).unwrap().bit_eq(want), "{name}");
    }
    // The module's state dict is exactly the file, and writing it back reads back the same.
    let back = model.state_dict(&g);
    assert_eq!(back, dict);
    let path = temp("roundtrip.safetensors");
    kiln::save_safetensors(&path, &back).unwrap();
    let again = kiln::load_safetensors(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(again, dict);
}

#[test]
fn every_dtype_and_rank_round_trips_through_safetensors() {
    let dict = kiln::load_safetensors(fixture("dtypes.safetensors")).unwrap();
    assert_eq!(dict["scalar_f64"].shape(), &[] as &[usize]);
    assert_eq!(dict["scalar_f64"].as_f64().unwrap(), &[2.5]);
    assert_eq!(dict["vec_i32"].as_i32().unwrap(), &[-2, -1, 0, 1, 2]);
    assert_eq!(
        dict["vec_i64"].as_i64().unwrap(),
        &[-(1i64 << 40), 0, 1i64 << 40]
    );
    assert_eq!(dict["mask"].as_bool().unwrap(), &[true, false, true]);
    let cube = &dict["cube_f32"];
    assert_eq!(cube.shape(), &[2, 3, 4]);
    let want: Vec<f32> = (0..24).map(|i| i as f32 / 8.0).collect();
    assert_eq!(cube.as_f32().unwrap(), want.as_slice()); // row-major, as torch

    let path = temp("dtypes.safetensors");
    kiln::save_safetensors(&path, &dict).unwrap();
    let again = kiln::load_safetensors(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(again.len(), dict.len());
    for (name, a) in &dict {
        assert!(again[name].bit_eq(a), "{name}");
    }
}

#[test]
fn training_from_pytorch_init_matches_pytorch() {
    let init = kiln::load_safetensors(fixture("mlp_init.safetensors")).unwrap();
    let trained = kiln::load_safetensors(fixture("mlp_trained.safetensors")).unwrap();
    let want = kiln::npy::read(fixture("losses.npy")).unwrap();
    let (g, model, step) = build(11);
    model.load_state_dict(&g, &init, true).unwrap();
    let mut exe = step.compile(Backend::Cpu).unwrap();
    let losses = run_steps(&mut exe, want.len());
    close(
        &Array::from_f32(&[losses.len()], losses).unwrap(),
        &want,
        1e-5,
        "loss",
    );
    let got = model.state_dict(exe.state());
    assert_eq!(got.len(), trained.len());
    for (name, w) in &trained {
        close(&got[name], w, 1e-5, name);
    }
}

#[test]
fn a_checkpoint_resumes_bit_identically_in_a_fresh_graph() {
    let init = kiln::load_safetensors(fixture("mlp_init.safetensors")).unwrap();
    let (g, model, step) = build(5);
    model.load_state_dict(&g, &init, true).unwrap();
    let mut first = step.compile(Backend::Cpu).unwrap();
    run_steps(&mut first, 2);

    // A full checkpoint carries the Adam moments and the step counter.
    let checkpoint = kiln::state_dict(first.state(), Keys::All);
    assert!(checkpoint.contains_key("0.weight.adam_m"));
    assert_eq!(checkpoint["optim.step"].item().unwrap(), 2.0);
    let path = temp("checkpoint.safetensors");
    kiln::save_safetensors(&path, &checkpoint).unwrap();

    // A fresh graph, other initial weights: the checkpoint replaces all of its state.
    let (_, _, fresh_step) = build(99);
    let mut resumed = fresh_step.compile(Backend::Cpu).unwrap();
    let loaded = kiln::load_safetensors(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let report = kiln::load_state_dict(resumed.state(), &loaded, Keys::All, true).unwrap();
    assert_eq!(report.loaded.len(), checkpoint.len());

    let a = run_steps(&mut first, 3);
    let b = run_steps(&mut resumed, 3);
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    for ((n1, v1), (n2, v2)) in first
        .state()
        .snapshot()
        .iter()
        .zip(resumed.state().snapshot())
    {
        assert_eq!(n1, &n2);
        assert!(v1.bit_eq(&v2), "{n1} differs after resuming");
    }

    // Save the trained step as a .kiln module, load it with the one crate, and it goes on
    // exactly as the executable it was saved from.
    let module = temp("resume.kiln");
    resumed.save(&module).unwrap();
    let mut reloaded = Executable::load_with_backend(&module, Backend::Cpu).unwrap();
    let mut also = kiln::load(&module, Backend::Interp).unwrap();
    std::fs::remove_file(&module).unwrap();
    let next = run_steps(&mut resumed, 1);
    assert_eq!(run_steps(&mut reloaded, 1)[0].to_bits(), next[0].to_bits());
    assert!((run_steps(&mut also, 1)[0] - next[0]).abs() <= 1e-5 * next[0].abs());
}

#[test]
fn strict_loading_reports_missing_unexpected_and_mismatched_keys() {
    let init = kiln::load_safetensors(fixture("mlp_init.safetensors")).unwrap();
    let (g, model, _) = build(1);
    let before = model.state_dict(&g);

    let mut partial: StateDict = init.clone();
    partial.remove("2.bias");
    partial.insert(
        "head.weight".into(),
        Array::from_f32(&[1], vec![0.0]).unwrap(),
    );
    let err = model.load_state_dict(&g, &partial, true).unwrap_err();
    let message = format!("{err:?}"); // Debug is the same sentence
    assert_eq!(
        message,
        "the state dict does not match the model: missing keys `2.bias`; unexpected keys \
         `head.weight`"
    );
    assert_eq!(
        model.state_dict(&g),
        before,
        "nothing is loaded on an error"
    );

    // Not strict: the rest loads and the report lists both.
    let report = model.load_state_dict(&g, &partial, false).unwrap();
    assert_eq!(report.missing_keys, ["2.bias"]);
    assert_eq!(report.unexpected_keys, ["head.weight"]);
    assert_eq!(report.loaded, ["0.bias", "0.weight", "2.weight"]);
    assert!(g.param_value("0.weight").unwrap().bit_eq(&init["0.weight"]));
    assert!(g.param_value("2.bias").unwrap().bit_eq(&before["2.bias"]));

    // A transposed weight or another dtype is an error even when not strict.
    let mut wrong = init.clone();
    wrong.insert(
        "0.weight".into(),
        Array::zeros(DType::F32, &[4, 8]).unwrap(),
    );
    wrong.insert("2.bias".into(), Array::zeros(DType::F64, &[3]).unwrap());
    let err = kiln::load_state_dict(&g, &wrong, Keys::Parameters, false).unwrap_err();
    assert!(matches!(
        &err,
        Error::StateDict(StateDictError::Mismatch { mismatched, .. }) if mismatched.len() == 2
    ));
    assert_eq!(
        err.to_string(),
        "the state dict does not match the model: size mismatch for `0.weight`: expected \
         f32[8, 4], got f32[4, 8], `2.bias`: expected f32[3], got f64[3]"
    );
}

#[test]
fn parameters_only_keeps_or_resets_the_optimiser_state() {
    let init = kiln::load_safetensors(fixture("mlp_init.safetensors")).unwrap();
    let (_, _, step) = build(2);
    let mut exe = step.compile(Backend::Cpu).unwrap();
    run_steps(&mut exe, 2);
    let moment = exe.state().get("0.weight.adam_m").unwrap();

    // A parameters-only dict into a training store: strict over the parameters alone.
    let err = kiln::load_state_dict(exe.state(), &init, Keys::All, true).unwrap_err();
    assert!(
        err.to_string().contains("missing keys `0.bias.adam_m`"),
        "{err}"
    );
    let report = kiln::load_state_dict(exe.state(), &init, Keys::Parameters, true).unwrap();
    assert_eq!(report.loaded.len(), 4);
    assert!(
        exe.state()
            .get("0.weight")
            .unwrap()
            .bit_eq(&init["0.weight"])
    );
    assert!(exe.state().get("0.weight.adam_m").unwrap().bit_eq(&moment));
    assert_eq!(kiln::state_dict(exe.state(), Keys::Parameters), init);

    let reset = reset_training_state(exe.state()).unwrap();
    assert_eq!(reset.len(), 4 * 2 + 1); // two moments per parameter and the step counter
    assert!(
        reset
            .iter()
            .all(|n| n.ends_with("adam_m") || n.ends_with("adam_v") || n == "optim.step")
    );
    let zeros = exe.state().get("0.weight.adam_m").unwrap();
    assert!(zeros.to_f64_vec().iter().all(|v| *v == 0.0));
    assert_eq!(exe.state().get("optim.step").unwrap().item().unwrap(), 0.0);
    assert_eq!(
        StateRole::of("optim.step", DType::F32, &[]),
        StateRole::StepCounter
    );
    assert_eq!(
        StateRole::of("net.step", DType::F32, &[3]),
        StateRole::Parameter
    );
}

#[test]
fn set_param_after_compile_reaches_the_compiled_executables() {
    let init = kiln::load_safetensors(fixture("mlp_init.safetensors")).unwrap();
    let (g, model, step, x) = build_with_input(4);
    let mut train = step.compile(Backend::Cpu).unwrap();
    let logits = model.forward(&x);
    let mut infer = kiln::compile(&[("logits", &logits)], Backend::Interp).unwrap();
    let mut shared =
        kiln::compile_shared(&[("logits", &logits)], &[], train.state(), Backend::Cpu).unwrap();

    // Loading into the graph after compiling: every executable compiled from it sees it.
    model.load_state_dict(&g, &init, true).unwrap();
    for exe in [&train, &infer, &shared] {
        assert_eq!(model.state_dict(exe.state()), init);
    }
    g.set_param(
        "2.bias",
        Array::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap(),
    )
    .unwrap();
    let zeros = Array::zeros(DType::F32, &[16, 4]).unwrap();
    let a = infer.run(&[("x", &zeros)]).unwrap();
    let b = shared.run(&[("x", &zeros)]).unwrap();
    let relu_b0: Vec<f64> = init["0.bias"]
        .to_f64_vec()
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    let w2 = init["2.weight"].to_f64_vec();
    for (row_a, row_b) in a[0]
        .1
        .to_f64_vec()
        .chunks(3)
        .zip(b[0].1.to_f64_vec().chunks(3))
    {
        for c in 0..3 {
            let want = (c + 1) as f64 + (0..8).map(|k| w2[c * 8 + k] * relu_b0[k]).sum::<f64>();
            assert!((row_a[c] - want).abs() < 1e-5, "{} vs {want}", row_a[c]);
            assert!((row_b[c] - want).abs() < 1e-5, "{} vs {want}", row_b[c]);
        }
    }
    // The train step's own updates stay in its state; the graph keeps the value set.
    run_steps(&mut train, 1);
    let trained = train.state().get("2.bias").unwrap();
    assert_ne!(trained.as_f32().unwrap(), &[1.0, 2.0, 3.0]);
    assert_eq!(
        g.param_value("2.bias").unwrap().as_f32().unwrap(),
        &[1.0, 2.0, 3.0]
    );
}
