//! A `TrainStep` compiled with `kiln::compile_step` (through `TrainStep::compile`) trains
//! exactly like the reference path `TrainStep::run_eval`: an MLP with dropout and Adam,
//! several steps on every available backend, compared state by state (parameters, moments,
//! the step counter and the dropout counter). The batch is a known size: the GPU backend
//! does not yet lower random bits over a symbolic shape (the 64-bit element counter's high
//! word divides by 2^32, which its 32-bit index arithmetic rejects).

use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::{Dropout, Linear, Module, Relu, Sequential};
use kiln::optim::Adam;
use kiln::{Array, DType, Graph};
use kiln_tests::golden::{Tol, compare};

fn data() -> (Array, Array) {
    let x: Vec<f32> = (0..8 * 6)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    let y: Vec<i32> = (0..8).map(|i| i % 3).collect();
    (
        Array::from_f32(&[8, 6], x).unwrap_or_else(|e| panic!("{e}")),
        Array::from_i32(&[8], y).unwrap_or_else(|e| panic!("{e}")),
    )
}

#[test]
fn compiled_train_steps_match_run_eval_on_every_backend() {
    let build = || {
        let g = Graph::new();
        let x = g.input("x", DType::F32, [8, 6]);
        let y = g.input("y", DType::I32, [8]);
        let model = Sequential::new()
            .push(Linear::new(&g, "fc1", 6, 16, 1))
            .push(Relu)
            .push(Dropout::new(&g, "drop", 0.3, 7))
            .push(Linear::new(&g, "fc2", 16, 3, 2));
        let loss = cross_entropy(&model.forward(&x), &y, Reduction::Mean, 0.1);
        let step = Adam::new(0.05)
            .clip_grad_norm(1.0)
            .minimize(&loss, &model.parameters());
        g.check().unwrap_or_else(|e| panic!("{e}"));
        (g, step)
    };
    let (x, y) = data();
    let feeds = [("x", &x), ("y", &y)];
    let (g, step) = build();
    let mut want_losses = Vec::new();
    for _ in 0..4 {
        want_losses.push(step.run_eval(&feeds).unwrap_or_else(|e| panic!("{e}")));
    }
    for backend in kiln_tests::backends() {
        let (_, step) = build();
        let mut exe = step
            .compile(backend)
            .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        for (i, want) in want_losses.iter().enumerate() {
            let out = exe
                .run(&feeds)
                .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
            let got = out[0].1.to_f64_vec()[0] as f32;
            assert!(
                (got - want).abs() <= 1e-4 * want.abs(),
                "{} step {i}: loss {got} vs {want}",
                backend.name()
            );
        }
        let state = exe.state();
        for (name, _) in &step.updates {
            let got = state
                .get(name)
                .unwrap_or_else(|| panic!("{}: no state {name}", backend.name()));
            let want = g.param_value(name).unwrap_or_else(|| panic!("{name}"));
            let tol = Tol {
                rtol: 1e-4,
                atol_ratio: 1e-4,
            };
            if let Err(m) = compare(&got, &want, Some(tol)) {
                panic!("{} {name}: {m}", backend.name());
            }
        }
        assert_eq!(
            state
                .get("drop.rng_counter")
                .and_then(|a| a.as_u32().ok().map(<[u32]>::to_vec)),
            Some(vec![4])
        );
    }
}
