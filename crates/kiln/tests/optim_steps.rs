//! `kiln::optim`: hand-computed SGD, momentum, Adam and AdamW steps through
//! `TrainStep::run_eval`, state names and write-back, learning rates fed as inputs and
//! scheduled in the graph, gradient clipping, and misuse reported as diagnostics.

use kiln::optim::{Adam, AdamW, LearningRate, Schedule, Sgd, TrainStep, clip_grad_norm};
use kiln::{Array, DType, Error, Graph, Tensor};

fn f32s(shape: &[usize], v: Vec<f32>) -> Array {
    Array::from_f32(shape, v).unwrap_or_else(|e| panic!("{e}"))
}

/// `loss = sum(w * x)` with `w` initialised to `w0`: the gradient is `x`.
fn linear_problem(w0: Vec<f32>) -> (Graph, Tensor, Vec<(String, Tensor)>) {
    let g = Graph::new();
    let n = w0.len();
    let x = g.input("x", DType::F32, [n]);
    let w = g.param_init("w", f32s(&[n], w0));
    let loss = (&w * &x).sum_all();
    (g, loss, vec![("w".to_string(), w)])
}

fn run(step: &TrainStep, x: &Array) -> f32 {
    step.run_eval(&[("x", x)]).unwrap_or_else(|e| panic!("{e}"))
}

fn value(g: &Graph, name: &str) -> Vec<f64> {
    g.param_value(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_f64_vec()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs()))
}

#[test]
fn sgd_momentum_and_weight_decay_steps() {
    let (g, loss, params) = linear_problem(vec![1.0, -2.0]);
    let step = Sgd::new(0.1)
        .momentum(0.5)
        .weight_decay(0.1)
        .minimize(&loss, &params);
    let names: Vec<&str> = step.updates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w", "w.sgd_momentum", "optim.step"]);
    let x = f32s(&[2], vec![3.0, 4.0]);
    assert_eq!(run(&step, &x), 3.0 - 8.0);
    // d = x + 0.1 w = [3.1, 3.8]; buf = d; w = w - 0.1 d
    let w1 = [1.0 - 0.31, -2.0 - 0.38];
    assert!(close(&value(&g, "w"), &w1));
    assert!(close(&value(&g, "w.sgd_momentum"), &[3.1, 3.8]));
    assert_eq!(value(&g, "optim.step"), [1.0]);
    run(&step, &x);
    // d = x + 0.1 w1; buf = 0.5 buf + d; w = w1 - 0.1 buf
    let d: Vec<f64> = [3.0, 4.0]
        .iter()
        .zip(&w1)
        .map(|(x, w)| x + 0.1 * w)
        .collect();
    let buf = [0.5 * 3.1 + d[0], 0.5 * 3.8 + d[1]];
    assert!(close(&value(&g, "w.sgd_momentum"), &buf));
    assert!(close(
        &value(&g, "w"),
        &[w1[0] - 0.1 * buf[0], w1[1] - 0.1 * buf[1]]
    ));
    assert_eq!(value(&g, "optim.step"), [2.0]);
}

#[test]
fn adam_first_step_moves_by_the_learning_rate() {
    let (g, loss, params) = linear_problem(vec![1.0, 1.0, 1.0]);
    let step = Adam::new(0.01).amsgrad(true).minimize(&loss, &params);
    let names: Vec<&str> = step.updates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["w", "w.adam_m", "w.adam_v", "w.adam_vmax", "optim.step"]
    );
    let x = f32s(&[3], vec![2.0, -0.5, 0.0]);
    run(&step, &x);
    // m̂ = g, v̂ = g²: the step is lr · g / (|g| + eps) = ±lr, and 0 where g = 0.
    assert!(close(&value(&g, "w"), &[0.99, 1.01, 1.0]));
    assert!(close(&value(&g, "w.adam_m"), &[0.2, -0.05, 0.0]));
    assert!(close(&value(&g, "w.adam_v"), &[0.004, 0.00025, 0.0]));
    assert!(close(&value(&g, "w.adam_vmax"), &[0.004, 0.00025, 0.0]));
}

#[test]
fn adamw_decays_weights_even_without_gradient() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    let w = g.param_init("w", f32s(&[2], vec![2.0, -4.0]));
    let unused = g.param_init("u", f32s(&[1], vec![3.0]));
    let loss = (&w * &x).sum_all();
    let params = vec![("w".to_string(), w), ("u".to_string(), unused)];
    let step = AdamW::new(0.1).weight_decay(0.5).minimize(&loss, &params);
    run(&step, &f32s(&[2], vec![0.0, 0.0]));
    // p = p (1 - lr wd) = 0.95 p; the Adam part is zero for a zero gradient.
    assert!(close(&value(&g, "w"), &[1.9, -3.8]));
    assert!(close(&value(&g, "u"), &[2.85]));
    let (g, loss, params) = linear_problem(vec![2.0]);
    let step = Adam::new(0.1).minimize(&loss, &params);
    run(&step, &f32s(&[1], vec![0.0]));
    assert_eq!(value(&g, "w"), [2.0], "Adam without decay leaves w");
}

#[test]
fn learning_rate_from_an_input_and_from_schedules() {
    let (g, loss, params) = linear_problem(vec![0.0]);
    let step = Sgd::new(0.0)
        .lr(LearningRate::Input("lr".into()))
        .minimize(&loss, &params);
    let x = f32s(&[1], vec![1.0]);
    let lr = Array::scalar(DType::F32, 0.25);
    step.run_eval(&[("x", &x), ("lr", &lr)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&g, "w"), [-0.25]);
    let missing = step.run_eval(&[("x", &x)]);
    assert!(matches!(missing, Err(Error::Eval(_))), "{missing:?}");
    assert_eq!(value(&g, "w"), [-0.25], "a failed step writes nothing");

    for s in [
        Schedule::Step {
            base: 0.4,
            step_size: 2,
            gamma: 0.5,
        },
        Schedule::Cosine {
            base: 0.4,
            t_max: 3,
            eta_min: 0.1,
        },
    ] {
        let (g, loss, params) = linear_problem(vec![0.0]);
        let step = Sgd::new(1.0).schedule(s.clone()).minimize(&loss, &params);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(
                kiln::eval(&[&step.lr], &[]).unwrap_or_else(|e| panic!("{e}"))[0].to_f64_vec()[0],
            );
            run(&step, &x);
        }
        let want: Vec<f64> = (0..5).map(|k| s.at(k)).collect();
        assert!(close(&got, &want), "{s:?}: {got:?} vs {want:?}");
        let total: f64 = want.iter().sum();
        assert!((value(&g, "w")[0] + total).abs() < 1e-6);
    }
    assert_eq!(
        (0..5)
            .map(|k| Schedule::Step {
                base: 0.4,
                step_size: 2,
                gamma: 0.5
            }
            .at(k))
            .collect::<Vec<_>>(),
        [0.4, 0.4, 0.2, 0.2, 0.1]
    );
    let cos = Schedule::Cosine {
        base: 0.4,
        t_max: 3,
        eta_min: 0.1,
    };
    assert!((cos.at(3) - 0.1).abs() < 1e-12 && (cos.at(0) - 0.4).abs() < 1e-12);
}

#[test]
fn clip_grad_norm_scales_only_large_gradients() {
    let g = Graph::new();
    let a = g.input("a", DType::F32, [2]);
    let b = g.input("b", DType::F32, [1]);
    let (clipped, norm) = clip_grad_norm(&[a.clone(), b.clone()], 1.0);
    let av = f32s(&[2], vec![3.0, 0.0]);
    let bv = f32s(&[1], vec![4.0]);
    let out = kiln::eval(
        &[&clipped[0], &clipped[1], &norm],
        &[("a", &av), ("b", &bv)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = 1.0 / (5.0 + 1e-6);
    assert!(close(&out[0].to_f64_vec(), &[3.0 * c, 0.0]));
    assert!(close(&out[1].to_f64_vec(), &[4.0 * c]));
    assert_eq!(out[2].to_f64_vec(), [5.0]);
    let (small, _) = clip_grad_norm(&[a], 10.0);
    let out = kiln::eval(&[&small[0]], &[("a", &av)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out[0].to_f64_vec(), [3.0, 0.0]);
}

#[test]
fn misuse_is_reported() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    let loss = x.sum_all();
    let line = line!() + 1;
    let step = Adam::new(0.1).minimize(&loss, &[("x".to_string(), x.clone())]);
    assert!(step.loss.is_poisoned() && step.updates.is_empty());
    let d = g.diagnostics();
    assert_eq!((d.len(), d[0].op, d[0].loc.line), (1, "adam", line));
    assert_eq!(d[0].message, "adam: parameter `x` is not a graph parameter");
    assert!(matches!(step.run_eval(&[]), Err(Error::Check(_))));

    let g = Graph::new();
    let w = g.param_init(
        "w",
        Array::from_i32(&[1], vec![1]).unwrap_or_else(|e| panic!("{e}")),
    );
    let loss = w.cast(DType::F32).sum_all();
    Sgd::new(0.1).minimize(&loss, &[("w".to_string(), w.clone())]);
    assert_eq!(
        g.diagnostics()[0].message,
        "sgd: parameter `w` has dtype i32; only float parameters can be trained"
    );

    let (g, loss, params) = linear_problem(vec![1.0]);
    Sgd::new(0.1).nesterov(true).minimize(&loss, &params);
    assert_eq!(
        g.diagnostics()[0].message,
        "sgd: Nesterov momentum requires a momentum and zero dampening"
    );

    let (g, loss, params) = linear_problem(vec![1.0]);
    Adam::new(-1.0).minimize(&loss, &params);
    assert_eq!(
        g.diagnostics()[0].message,
        "adam: learning rate must be >= 0, got -1"
    );

    let (g, loss, params) = linear_problem(vec![1.0]);
    AdamW::new(0.1).betas(0.9, 1.0).minimize(&loss, &params);
    assert_eq!(
        g.diagnostics()[0].message,
        "adamw: betas must be in [0, 1), got (0.9, 1)"
    );

    let (g, loss, params) = linear_problem(vec![1.0]);
    let renamed = vec![("v".to_string(), params[0].1.clone())];
    Sgd::new(0.1).minimize(&loss, &renamed);
    assert_eq!(
        g.diagnostics()[0].message,
        "sgd: parameter `v` is the tensor of parameter `w`"
    );

    let (g, _, params) = linear_problem(vec![1.0, 2.0]);
    let vector_loss = &params[0].1 * 2.0;
    Sgd::new(0.1).minimize(&vector_loss, &params);
    assert_eq!(
        g.diagnostics()[0].message,
        "sgd: the loss must be a float scalar (one element), got f32[2]"
    );
    // A one-element loss is accepted, as PyTorch's backward() accepts it.
    let (g, _, params) = linear_problem(vec![3.0]);
    let one = &params[0].1 * 2.0;
    let step = Sgd::new(0.5).minimize(&one, &params);
    assert_eq!(run(&step, &f32s(&[1], vec![0.0])), 6.0);
    assert_eq!(value(&g, "w"), [2.0]);
}
