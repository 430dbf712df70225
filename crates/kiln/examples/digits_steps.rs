//! The Rust side of the Python bindings' training test: writes the digits MLP's compiled
//! train step (as `kiln demo` builds it) before any step, the batches, and what the Rust API
//! reaches after stepping through them, so the Python test (crates/python/tests) can step
//! the same module from NumPy and compare bit for bit.
//!
//! `cargo run --release -p kiln --example digits_steps -- OUT_DIR [STEPS]` writes into OUT_DIR:
//! `train.kiln` (the step, untrained), `batches_x.npy` (f32 `[STEPS, 16, 64]`),
//! `batches_y.npy` (i32 `[STEPS, 16]`), `losses.npy` (f32 `[STEPS]`, each step's loss),
//! `state/NAME.npy` (every state tensor after the steps: parameters, Adam moments, step and
//! dropout counters), `digits.kiln` (the evaluation module on the trained state) and
//! `x_test.npy` (the test images).

use kiln::data::digits;
use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::init::Seeds;
use kiln::nn::{Dropout, Linear, Module, Relu, Sequential};
use kiln::optim::Adam;
use kiln::state_dict::Keys;
use kiln::{Array, Backend, DType, Graph};
use std::path::{Path, PathBuf};

const BATCH: usize = 16;

/// Rows `[start, start + BATCH)` of `a` (rank 1 or 2).
fn rows(a: &Array, start: usize) -> Result<Array, Box<dyn std::error::Error>> {
    let width: usize = a.shape()[1..].iter().product();
    let mut shape = a.shape().to_vec();
    shape[0] = BATCH;
    let range = start * width..(start + BATCH) * width;
    Ok(match a.dtype() {
        DType::F32 => Array::from_f32(&shape, a.as_f32()?[range].to_vec())?,
        _ => {
            let v = a.to_i64_vec()[range].iter().map(|&l| l as i32).collect();
            Array::from_i32(&shape, v)?
        }
    })
}

/// Stacks equally shaped arrays along a new first axis.
fn stack(parts: &[Array]) -> Result<Array, Box<dyn std::error::Error>> {
    let mut shape = vec![parts.len()];
    shape.extend_from_slice(parts[0].shape());
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend(p.to_le_bytes());
    }
    Ok(Array::from_le_bytes(parts[0].dtype(), &shape, &bytes)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: digits_steps OUT_DIR [STEPS]")?);
    let steps: usize = args.next().map_or(Ok(50), |s| s.parse())?;
    std::fs::create_dir_all(out.join("state"))?;

    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/data/digits.csv");
    let all = digits::load(&csv)?;
    let (train_idx, test_idx) = digits::split(all.len());
    let train = all.subset(&train_idx)?;
    let test = all.subset(&test_idx)?;
    let per_epoch = train.len() / BATCH;

    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 64));
    let y = g.input("y", DType::I32, vec![n.clone()]);
    let seeds = Seeds::new(0);
    let mut model = Sequential::new()
        .push(Linear::new(&g, "fc1", 64, 128, seeds.layer("fc1")))
        .push(Relu)
        .push(Dropout::new(&g, "dropout", 0.1, seeds.layer("dropout")))
        .push(Linear::new(&g, "fc2", 128, 10, seeds.layer("fc2")));
    let scaled = &x * (1.0 / 16.0);
    let loss = cross_entropy(&model.forward(&scaled), &y, Reduction::Mean, 0.0);
    let step = Adam::new(0.01).minimize(&loss, &model.parameters());
    model.set_training(false);
    let logits = model.forward(&scaled);
    g.check()?;

    let mut train_exe = step.compile(Backend::Cpu)?;
    train_exe.save(out.join("train.kiln"))?;

    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut losses = Vec::new();
    for k in 0..steps {
        let start = (k % per_epoch) * BATCH;
        let (xb, yb) = (rows(&train.images, start)?, rows(&train.labels, start)?);
        let got = train_exe.run(&[("x", &xb), ("y", &yb)])?;
        losses.push(got[0].1.as_f32()?[0]);
        xs.push(xb);
        ys.push(yb);
    }
    kiln::npy::write(out.join("batches_x.npy"), &stack(&xs)?)?;
    kiln::npy::write(out.join("batches_y.npy"), &stack(&ys)?)?;
    kiln::npy::write(out.join("losses.npy"), &Array::from_f32(&[steps], losses)?)?;
    for (name, value) in kiln::state_dict(train_exe.state(), Keys::All) {
        kiln::npy::write(out.join("state").join(format!("{name}.npy")), &value)?;
    }

    let eval = kiln::compile_shared(&[("logits", &logits)], &[], train_exe.state(), Backend::Cpu)?;
    eval.save(out.join("digits.kiln"))?;
    kiln::npy::write(out.join("x_test.npy"), &test.images)?;
    println!("wrote {} ({steps} steps)", out.display());
    Ok(())
}
