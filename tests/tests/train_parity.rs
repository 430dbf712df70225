//! Training parity with PyTorch (`fixtures/golden/train/manifest.json`, `train` section):
//! from identical initial weights, steps of kiln's optimisers run through
//! `TrainStep::run_eval` (the reference interpreter) give the parameters, losses and learning
//! rates PyTorch's optimisers give. The references are PyTorch in float64 rounded to f32.
//!
//! Every case runs twice:
//!
//! * in **f64** (model, state and data in float64): every element of every parameter within
//!   the golden f32 tolerance `1e-5 · |want| + 1e-6 · max|want|`. With rounding out of the
//!   way this checks that the update formulas are PyTorch's, element by element.
//! * in **f32** (the models as users build them, `kiln_tests::models`): every parameter
//!   tensor within `1e-5` relative in norm (`‖got - want‖ ≤ 1e-5 ‖want‖`), and every element
//!   within `1e-5 · |want| + 1e-4 · max|want|`. Adam divides each gradient component by its
//!   own magnitude, so the f32 rounding of a near-zero component moves that element by up
//!   to a learning-rate-sized amount: PyTorch's own float32 run of the LSTMNN case is `1e-5 ·
//!   max|want|` away from its float64 run on a few elements (measured with
//!   fixtures/gen/gen_train.py's models), so a per-element `1e-5 · |want|` bound cannot hold
//!   for any f32 implementation; the norm bound and the loose element bound do.
//!
//! Cases:
//! * SimpleNN: 5 Adam steps (lr 1e-3), batch 64.
//! * LSTMNN: 5 Adam steps (lr 1e-3), batch 64.
//! * LeNet-5: 3 SGD steps (lr 0.01, momentum 0.9), batch 64.
//! * A 6-5-3 tanh MLP, 8 steps each: Adam with AMSGrad and L2 decay, AdamW (custom and
//!   default settings), gradient clipping, SGD plain / Nesterov with weight decay /
//!   dampening, StepLR and CosineAnnealingLR schedules, label smoothing.

use crate::train_support;

use kiln::functional::lstm_cell;
use kiln::loss::{Reduction, cross_entropy};
use kiln::optim::{Adam, AdamW, Optimizer, Schedule, Sgd, TrainStep};
use kiln::{Array, ConvOpts, DType, Dim, Graph, Tensor};
use kiln_tests::golden::{self, Tol};
use kiln_tests::models::{lenet, lstm_nn, simple_nn};
use serde_json::Value;
use train_support::{assert_within, entry, graph_params, tensor, tensors};

/// The element bound of the f32 runs (see the module docs).
const F32_ELEMENTS: Tol = Tol {
    rtol: 1e-5,
    atol_ratio: 1e-4,
};

fn to_dtype(a: &Array, dtype: DType) -> Array {
    if a.dtype() == dtype {
        a.clone()
    } else {
        Array::from_f64_cast(dtype, a.shape(), &a.to_f64_vec())
    }
}

fn to_f32(a: &Array) -> Array {
    to_dtype(a, DType::F32)
}

/// `‖got - want‖ ≤ 1e-5 ‖want‖`.
fn assert_norm_close(what: &str, got: &Array, want: &Array) {
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    assert_eq!(g.len(), w.len(), "{what}: sizes");
    let diff = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = w.iter().map(|b| b * b).sum::<f64>().sqrt();
    assert!(
        diff <= 1e-5 * norm,
        "{what}: relative error {:.3e} in norm exceeds 1e-5",
        diff / norm
    );
}

/// Runs `case`'s steps and compares losses, learning rates and final parameters.
fn run_and_check(case: &str, g: &Graph, step: &TrainStep, x: &Array, y: &Array, dtype: DType) {
    let e = entry(&["train", case]);
    let steps = e["steps"].as_u64().unwrap_or(0) as usize;
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
    let tag = format!("{case} ({dtype})");
    let got_losses = Array::from_f32(&[steps], losses).unwrap_or_else(|e| panic!("{e}"));
    assert_within(
        &format!("{tag} losses"),
        &got_losses,
        &tensor(&e["losses"]),
        Tol::F32,
    );
    let got_lrs = Array::from_f32(&[steps], lrs).unwrap_or_else(|e| panic!("{e}"));
    assert_within(
        &format!("{tag} learning rates"),
        &got_lrs,
        &tensor(&e["lrs"]),
        Tol::F32,
    );
    let finals = tensors(&e["final"]);
    assert!(!finals.is_empty());
    for (name, want) in finals {
        let got = g
            .param_value(&name)
            .unwrap_or_else(|| panic!("{tag}: no value for {name}"));
        assert_eq!(got.dtype(), dtype, "{tag} {name}: state keeps its dtype");
        let what = format!("{tag} {name} after {steps} steps");
        let got = to_f32(&got);
        if dtype == DType::F64 {
            assert_within(&what, &got, &want, Tol::F32);
        } else {
            assert_norm_close(&what, &got, &want);
            assert_within(&what, &got, &want, F32_ELEMENTS);
        }
    }
}

/// `x @ w^T + b` with parameters `{name}.weight [out, in]`, `{name}.bias [out]`.
fn linear(g: &Graph, x: &Tensor, name: &str, inp: usize, out: usize, dt: DType) -> Tensor {
    let w = g.param(&format!("{name}.weight"), dt, [out, inp]);
    let b = g.param(&format!("{name}.bias"), dt, [out]);
    x.linear(&w, Some(&b))
}

/// SimpleNN in float64 (the same graph as `kiln_tests::models::simple_nn`).
fn simple_nn64(g: &Graph, n: Dim) -> (Tensor, Tensor) {
    let x = g.input("x", DType::F64, (n, 784));
    let h = linear(g, &x, "fc1", 784, 128, DType::F64).relu();
    (x.clone(), linear(g, &h, "fc2", 128, 10, DType::F64))
}

/// LSTMNN in float64 (as `kiln_tests::models::lstm_nn`).
fn lstm_nn64(g: &Graph, n: Dim) -> (Tensor, Tensor) {
    let dt = DType::F64;
    let x = g.input("x", dt, (n.clone(), 28, 28));
    let layers: Vec<[Tensor; 4]> = (0..2)
        .map(|l| {
            let inp = if l == 0 { 28 } else { 128 };
            [
                g.param(&format!("lstm.weight_ih_l{l}"), dt, [512, inp]),
                g.param(&format!("lstm.weight_hh_l{l}"), dt, [512, 128]),
                g.param(&format!("lstm.bias_ih_l{l}"), dt, [512]),
                g.param(&format!("lstm.bias_hh_l{l}"), dt, [512]),
            ]
        })
        .collect();
    let zero = g.zeros((n, 128), dt);
    let mut state = vec![(zero.clone(), zero); 2];
    for t in 0..28 {
        let mut inp = x.slice(1, t, t + 1, 1).squeeze(1);
        for (l, [w_ih, w_hh, b_ih, b_hh]) in layers.iter().enumerate() {
            let next = lstm_cell(
                &inp,
                &state[l].0,
                &state[l].1,
                w_ih,
                w_hh,
                Some(b_ih),
                Some(b_hh),
            );
            inp = next.0.clone();
            state[l] = next;
        }
    }
    let logits = linear(g, &state[1].0, "fc", 128, 10, dt);
    (x, logits)
}

/// LeNet-5 in float64 (as `kiln_tests::models::lenet`).
fn lenet64(g: &Graph, n: Dim) -> (Tensor, Tensor) {
    let dt = DType::F64;
    let x = g.input("x", dt, (n, 1, 28, 28));
    let conv = |x: &Tensor, name: &str, cin: usize, cout: usize, pad: u64| {
        let w = g.param(&format!("{name}.weight"), dt, [cout, cin, 5, 5]);
        let b = g.param(&format!("{name}.bias"), dt, [cout]);
        let opts = ConvOpts {
            padding: [pad, pad],
            ..ConvOpts::default()
        };
        (x.conv2d(&w, opts) + b.reshape([cout, 1, 1]))
            .relu()
            .max_pool2d([2, 2], [2, 2], [0, 0])
    };
    let h = conv(&x, "conv1", 1, 6, 2);
    let h = conv(&h, "conv2", 6, 16, 0).flatten(1, -1);
    let h = linear(g, &h, "fc1", 400, 120, dt).relu();
    let h = linear(g, &h, "fc2", 120, 84, dt).relu();
    (x.clone(), linear(g, &h, "fc3", 84, 10, dt))
}

type Builder = fn(&Graph, Dim) -> (Tensor, Tensor);

fn model_case(case: &str, builders: [Builder; 2], opt: &dyn Optimizer) {
    let e = entry(&["train", case]);
    let model = e["model"].as_str().unwrap_or_default();
    let batch = e["batch"].as_u64().unwrap_or(0) as usize;
    let x_shape: Vec<usize> = e["x_shape"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|d| d as usize)
                .collect()
        })
        .unwrap_or_default();
    let m = golden::model(model).unwrap_or_else(|e| panic!("{e}"));
    for (dtype, build) in [DType::F64, DType::F32].into_iter().zip(builders) {
        let g = Graph::new();
        let (_x, logits) = build(&g, g.sym("N"));
        let labels = g.input("labels", DType::I64, vec![g.sym("N")]);
        let loss = cross_entropy(&logits, &labels, Reduction::Mean, 0.0);
        let params = graph_params(&g);
        for (name, r) in &m.params {
            let v = r.load().unwrap_or_else(|e| panic!("{e}"));
            g.set_param(name, to_dtype(&v, dtype))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let step = opt.minimize(&loss, &params);
        g.check().unwrap_or_else(|e| panic!("{e}"));
        let x = golden::model_input(&x_shape).unwrap_or_else(|e| panic!("{e}"));
        let all = golden::model_labels().unwrap_or_else(|e| panic!("{e}"));
        let y = Array::from_i64(&[batch], all.to_i64_vec()[..batch].to_vec())
            .unwrap_or_else(|e| panic!("{e}"));
        run_and_check(case, &g, &step, &to_dtype(&x, dtype), &y, dtype);
    }
}

#[test]
fn simple_nn_five_adam_steps_match_pytorch() {
    model_case(
        "simple_nn_adam5",
        [simple_nn64, |g, n| simple_nn(g, n)],
        &Adam::new(1e-3),
    );
}

#[test]
fn lstm_nn_five_adam_steps_match_pytorch() {
    model_case(
        "lstm_nn_adam5",
        [lstm_nn64, |g, n| lstm_nn(g, n)],
        &Adam::new(1e-3),
    );
}

#[test]
fn lenet_three_sgd_momentum_steps_match_pytorch() {
    model_case(
        "lenet_sgd3",
        [lenet64, |g, n| lenet(g, n)],
        &Sgd::new(0.01).momentum(0.9),
    );
}

/// The tiny MLP `6 -> 5 (tanh) -> 3` from the shared initial weights, in both precisions.
fn tiny_case(case: &str, opt: &dyn Optimizer) {
    let e = entry(&["train", case]);
    let ls = e["label_smoothing"].as_f64().unwrap_or(0.0);
    let init = tensors(entry(&["train", "tiny", "init"]));
    for dtype in [DType::F64, DType::F32] {
        let g = Graph::new();
        let x = g.input("x", dtype, (g.sym("N"), 6));
        let labels = g.input("labels", DType::I64, vec![g.sym("N")]);
        let p = |n: &str| {
            let v = init
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| to_dtype(v, dtype))
                .unwrap_or_else(|| panic!("no init {n}"));
            (n.to_string(), g.param_init(n, v))
        };
        let params = vec![
            p("fc1.weight"),
            p("fc1.bias"),
            p("fc2.weight"),
            p("fc2.bias"),
        ];
        let h = x.linear(&params[0].1, Some(&params[1].1)).tanh();
        let logits = h.linear(&params[2].1, Some(&params[3].1));
        let loss = cross_entropy(&logits, &labels, Reduction::Mean, ls);
        let step = opt.minimize(&loss, &params);
        g.check().unwrap_or_else(|e| panic!("{e}"));
        let xv = to_dtype(&tensor(entry(&["train", "tiny", "x"])), dtype);
        let yv = tensor(entry(&["train", "tiny", "labels"]));
        run_and_check(case, &g, &step, &xv, &yv, dtype);
    }
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
        &Sgd::new(0.2)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(0.001),
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
