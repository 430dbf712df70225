//! Training parity with PyTorch (`fixtures/golden/train/manifest.json`, `train` section):
//! from identical initial weights, steps of kiln's optimisers run through
//! `TrainStep::run_eval` (the reference interpreter) give the parameters, losses and learning
//! rates PyTorch's optimisers give (PyTorch in float64, rounded to f32). Parameters must be
//! within `1e-5 · |want| + 1e-6 · max|want|` (the golden f32 tolerance).
//!
//! * SimpleNN: 5 Adam steps (lr 1e-3), batch 64.
//! * LSTMNN: 5 Adam steps (lr 1e-3), batch 16 (reduced from 64 to keep the interpreter run
//!   short).
//! * LeNet-5: 3 SGD steps (lr 0.01, momentum 0.9), batch 64.
//! * A 6-5-3 tanh MLP, 8 steps each: Adam with AMSGrad and L2 decay, AdamW (custom and
//!   default settings), gradient clipping, SGD plain / Nesterov with weight decay /
//!   dampening, StepLR and CosineAnnealingLR schedules, label smoothing.

mod train_support;

use kiln::loss::{Reduction, cross_entropy};
use kiln::optim::{Adam, AdamW, Optimizer, Schedule, Sgd, TrainStep};
use kiln::{DType, Dim, Graph, Tensor};
use kiln_tests::golden::{self, Tol};
use kiln_tests::models::{lenet, lstm_nn, simple_nn};
use serde_json::Value;
use train_support::{assert_within, entry, graph_params, tensor, tensors};

/// Runs `case`'s steps and compares losses, learning rates and final parameters.
fn run_and_check(case: &str, g: &Graph, step: &TrainStep, x: &kiln::Array, y: &kiln::Array) {
    let e = entry(&["train", case]);
    let steps = e["steps"].as_u64().unwrap_or(0) as usize;
    let want_losses = tensor(&e["losses"]);
    let want_lrs = tensor(&e["lrs"]);
    let mut losses = Vec::new();
    let mut lrs = Vec::new();
    for _ in 0..steps {
        let lr = kiln::eval(&[&step.lr], &[]).unwrap_or_else(|e| panic!("{case}: lr: {e}"));
        lrs.push(lr[0].to_f64_vec()[0] as f32);
        let loss = step
            .run_eval(&[("x", x), ("labels", y)])
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        losses.push(loss);
    }
    let got_losses = kiln::Array::from_f32(&[steps], losses).unwrap_or_else(|e| panic!("{e}"));
    assert_within(&format!("{case} losses"), &got_losses, &want_losses, Tol::F32);
    let got_lrs = kiln::Array::from_f32(&[steps], lrs).unwrap_or_else(|e| panic!("{e}"));
    assert_within(&format!("{case} learning rates"), &got_lrs, &want_lrs, Tol::F32);
    let finals = tensors(&e["final"]);
    assert!(!finals.is_empty());
    for (name, want) in finals {
        let got = g
            .param_value(&name)
            .unwrap_or_else(|| panic!("{case}: no value for {name}"));
        let (gv, wv) = (got.to_f64_vec(), want.to_f64_vec());
        let dn: f64 = gv.iter().zip(&wv).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
        let wn: f64 = wv.iter().map(|b| b * b).sum::<f64>().sqrt();
        let md = gv.iter().zip(&wv).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let mw = wv.iter().map(|b| b.abs()).fold(0.0, f64::max);
        eprintln!("METRIC {case} {name}: normrel {:.2e} maxdiff/max {:.2e}", dn / wn, md / mw);
    }
}

fn model_case(
    case: &str,
    build: fn(&Graph, Dim) -> (Tensor, Tensor),
    opt: &dyn Optimizer,
) {
    let e = entry(&["train", case]);
    let model = e["model"].as_str().unwrap_or_default();
    let batch = e["batch"].as_u64().unwrap_or(0) as usize;
    let x_shape: Vec<usize> = e["x_shape"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).map(|d| d as usize).collect())
        .unwrap_or_default();
    let g = Graph::new();
    let (_x, logits) = build(&g, g.sym("N"));
    let labels = g.input("labels", DType::I64, vec![g.sym("N")]);
    let loss = cross_entropy(&logits, &labels, Reduction::Mean, 0.0);
    let params = graph_params(&g);
    golden::load_params(&g, model).unwrap_or_else(|e| panic!("{e}"));
    let step = opt.minimize(&loss, &params);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    let x = golden::model_input(&x_shape).unwrap_or_else(|e| panic!("{e}"));
    let all = golden::model_labels().unwrap_or_else(|e| panic!("{e}"));
    let y = kiln::Array::from_i64(&[batch], all.to_i64_vec()[..batch].to_vec())
        .unwrap_or_else(|e| panic!("{e}"));
    run_and_check(case, &g, &step, &x, &y);
}

#[test]
fn simple_nn_five_adam_steps_match_pytorch() {
    model_case("simple_nn_adam5", |g, n| simple_nn(g, n), &Adam::new(1e-3));
}

#[test]
fn lstm_nn_five_adam_steps_match_pytorch() {
    model_case("lstm_nn_adam5", |g, n| lstm_nn(g, n), &Adam::new(1e-3));
}

#[test]
fn lenet_three_sgd_momentum_steps_match_pytorch() {
    model_case(
        "lenet_sgd3",
        |g, n| lenet(g, n),
        &Sgd::new(0.01).momentum(0.9),
    );
}

/// The tiny MLP `6 -> 5 (tanh) -> 3` from the shared initial weights.
fn tiny_case(case: &str, opt: &dyn Optimizer) {
    let e = entry(&["train", case]);
    let ls = e["label_smoothing"].as_f64().unwrap_or(0.0);
    let g = Graph::new();
    let x = g.input("x", DType::F32, (g.sym("N"), 6));
    let labels = g.input("labels", DType::I64, vec![g.sym("N")]);
    let init = tensors(entry(&["train", "tiny", "init"]));
    let p = |n: &str| {
        let v = init
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no init {n}"));
        (n.to_string(), g.param_init(n, v))
    };
    let params = vec![p("fc1.weight"), p("fc1.bias"), p("fc2.weight"), p("fc2.bias")];
    let h = x.linear(&params[0].1, Some(&params[1].1)).tanh();
    let logits = h.linear(&params[2].1, Some(&params[3].1));
    let loss = cross_entropy(&logits, &labels, Reduction::Mean, ls);
    let step = opt.minimize(&loss, &params);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    let xv = tensor(entry(&["train", "tiny", "x"]));
    let yv = tensor(entry(&["train", "tiny", "labels"]));
    run_and_check(case, &g, &step, &xv, &yv);
}

#[test]
fn adam_amsgrad_with_weight_decay_matches_pytorch() {
    tiny_case(
        "tiny_adam_amsgrad_wd",
        &Adam::new(0.05).weight_decay(0.01).amsgrad(true),
    );
}

#[test]
fn adamw_matches_pytorch() {
    tiny_case(
        "tiny_adamw",
        &AdamW::new(0.05).betas(0.8, 0.99).weight_decay(0.05),
    );
}

#[test]
fn adamw_defaults_with_clipping_and_label_smoothing_match_pytorch() {
    tiny_case(
        "tiny_adamw_default_clip_ls",
        &AdamW::new(0.05).clip_grad_norm(0.5),
    );
}

#[test]
fn adam_with_gradient_clipping_matches_pytorch() {
    tiny_case("tiny_adam_clip", &Adam::new(0.05).clip_grad_norm(0.3));
}

#[test]
fn plain_sgd_matches_pytorch() {
    tiny_case("tiny_sgd", &Sgd::new(0.3));
}

#[test]
fn sgd_nesterov_with_weight_decay_matches_pytorch() {
    tiny_case(
        "tiny_sgd_nesterov_wd",
        &Sgd::new(0.2).momentum(0.9).nesterov(true).weight_decay(0.001),
    );
}

#[test]
fn sgd_with_dampening_matches_pytorch() {
    tiny_case(
        "tiny_sgd_dampening",
        &Sgd::new(0.2).momentum(0.8).dampening(0.5),
    );
}

#[test]
fn step_lr_schedule_matches_pytorch() {
    tiny_case(
        "tiny_sgd_steplr",
        &Sgd::new(0.3).momentum(0.5).schedule(Schedule::Step {
            base: 0.3,
            step_size: 3,
            gamma: 0.5,
        }),
    );
}

#[test]
fn cosine_schedule_matches_pytorch() {
    tiny_case(
        "tiny_adam_cosine",
        &Adam::new(0.05).schedule(Schedule::Cosine {
            base: 0.05,
            t_max: 5,
            eta_min: 0.001,
        }),
    );
}
