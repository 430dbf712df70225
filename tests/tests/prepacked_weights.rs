//! The CPU engine packs a matmul's weight once and keeps it while the weight's store
//! version stays the same: an inference executable sharing its state with a train step must
//! see every update the step (or `State::set`) makes, with the values a plain reference
//! computes from the stored weights.

use kiln::loss::{Reduction, mse_loss};
use kiln::nn::{Linear, Module};
use kiln::optim::Sgd;
use kiln::{Array, Backend, DType, Graph};

const N: usize = 13;
const IN: usize = 40;
const OUT: usize = 37;

fn f32s(a: &Array) -> Vec<f32> {
    a.as_f32().unwrap_or_else(|e| panic!("{e}")).to_vec()
}

/// `x W^T + b`, accumulated in f64.
fn linear_ref(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = Vec::with_capacity(N * OUT);
    for i in 0..N {
        for o in 0..OUT {
            let dot: f64 = (0..IN)
                .map(|p| f64::from(x[i * IN + p]) * f64::from(w[o * IN + p]))
                .sum();
            y.push((dot + f64::from(b[o])) as f32);
        }
    }
    y
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}: [{k}] {g} vs {w}"
        );
    }
}

#[test]
fn inference_sees_the_weights_a_train_step_and_set_write() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [N, IN]);
    let target = g.input("t", DType::F32, [N, OUT]);
    let fc = Linear::new(&g, "fc", IN, OUT, 3);
    let y = fc.forward(&x);
    let loss = mse_loss(&y, &target, Reduction::Mean);
    let step = Sgd::new(0.5).minimize(&loss, &fc.parameters());
    let mut train = step.compile(Backend::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let state = train.state().clone();
    let mut infer = kiln::compile_shared(&[("y", &y)], &[], &state, Backend::Cpu)
        .unwrap_or_else(|e| panic!("{e}"));
    let xs: Vec<f32> = (0..N * IN)
        .map(|i| ((i * 29 % 23) as f32 - 11.0) / 7.0)
        .collect();
    let ts: Vec<f32> = (0..N * OUT)
        .map(|i| ((i * 13 % 17) as f32 - 8.0) / 3.0)
        .collect();
    let xa = Array::from_f32(&[N, IN], xs.clone()).unwrap_or_else(|e| panic!("{e}"));
    let ta = Array::from_f32(&[N, OUT], ts).unwrap_or_else(|e| panic!("{e}"));
    let weights = || {
        let w = f32s(
            &state
                .get("fc.weight")
                .unwrap_or_else(|| panic!("fc.weight")),
        );
        let b = f32s(&state.get("fc.bias").unwrap_or_else(|| panic!("fc.bias")));
        (w, b)
    };
    let mut infer_y = || {
        let out = infer.run(&[("x", &xa)]).unwrap_or_else(|e| panic!("{e}"));
        f32s(&out[0].1)
    };
    let (w0, b0) = weights();
    let y0 = infer_y();
    assert_close(&y0, &linear_ref(&xs, &w0, &b0), "before training");
    // Twice: the packed weight is kept while unchanged.
    assert_close(&infer_y(), &y0, "again, unchanged");
    for s in 0..3 {
        train
            .run(&[("x", &xa), ("t", &ta)])
            .unwrap_or_else(|e| panic!("{e}"));
        let (w, b) = weights();
        assert!(w != w0, "step {s} changed the weight");
        let y = infer_y();
        assert_close(&y, &linear_ref(&xs, &w, &b), &format!("after step {s}"));
    }
    let w2: Vec<f32> = (0..OUT * IN)
        .map(|i| ((i * 7 % 19) as f32 - 9.0) / 10.0)
        .collect();
    state
        .set(
            "fc.weight",
            Array::from_f32(&[OUT, IN], w2.clone()).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, b) = weights();
    assert_close(&infer_y(), &linear_ref(&xs, &w2, &b), "after State::set");
}
