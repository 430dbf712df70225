//! Trains an MLP end to end, the path docs/training.md explains step by step: data from a
//! CSV file, a model started from PyTorch's initial weights (a `.safetensors` state dict),
//! a cross-entropy loss and Adam compiled into one train step, an evaluation module that
//! shares the step's state, a checkpoint to `.safetensors`, a resume from it, and the
//! inference module saved as `.kiln` and loaded back.
//!
//! ```sh
//! cargo run -p kiln --example train_mlp            # writes into a temporary directory
//! cargo run -p kiln --example train_mlp -- OUT_DIR # or into OUT_DIR
//! kiln run OUT_DIR/mlp.kiln --input x=OUT_DIR/x.npy --out OUT_DIR
//! ```
//!
//! `KILN_BACKEND` picks the backend (`cpu` by default).

use kiln::data::{CsvOptions, DataLoader, TensorDataset, load_csv};
use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::init::Seeds;
use kiln::nn::{Linear, Module, Relu, Sequential};
use kiln::optim::Adam;
use kiln::state_dict::Keys;
use kiln::{Array, Backend, DType, Executable, Graph};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn main() -> Result<(), kiln::Error> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let out = std::env::args_os().nth(1).map_or_else(
        || std::env::temp_dir().join(format!("kiln-train-mlp-{}", std::process::id())),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out).map_err(|e| kiln::Error::io(&out, e))?;
    let backend = Backend::from_env()?;

    // 1. Data: a CSV of 16 rows, 4 features then the class label (written here from the
    //    fixtures' .npy files, as a user's own CSV would be).
    let csv = out.join("data.csv");
    write_csv(&csv, &root.join("state_dict"))?;
    let table = load_csv(&csv, &CsvOptions::default())?; // f32 [16, 5]
    let (x, y) = split_features_labels(&table)?;
    let data = TensorDataset::new(vec![x.clone(), y])?;

    // 2. The model, with PyTorch's names: 0.weight [8, 4], 0.bias, 2.weight, 2.bias. One
    //    seed for the whole model, split per layer; then PyTorch's own initial weights.
    let g = Graph::new();
    let n = g.sym("N");
    let xs = g.input("x", DType::F32, (&n, 4));
    let ys = g.input("y", DType::I32, vec![n.clone()]);
    let seeds = Seeds::new(0);
    let model = Sequential::new()
        .push(Linear::new(&g, "0", 4, 8, seeds.layer("0")))
        .push(Relu)
        .push(Linear::new(&g, "2", 8, 3, seeds.layer("2")));
    let init = kiln::load_safetensors(root.join("state_dict/mlp_init.safetensors"))?;
    model.load_state_dict(&g, &init, true)?;

    // 3. Loss and optimiser, compiled into one step; an evaluation module on its state.
    let logits = model.forward(&xs);
    let loss = cross_entropy(&logits, &ys, Reduction::Mean, 0.0);
    let step = Adam::new(0.01).minimize(&loss, &model.parameters());
    let mut train = step.compile(backend)?;
    let mut eval = kiln::compile_shared(&[("logits", &logits)], &[], train.state(), backend)?;

    // 4. Train: a shuffled loader of batches of 8, three epochs; evaluate after each.
    let loader = DataLoader::new(Arc::new(data), 8)?.shuffle(1);
    for epoch in 0..3 {
        let mut last = 0.0;
        for batch in loader.epoch(epoch) {
            let b = batch?;
            let outs = train.run(&[("x", &b.fields[0]), ("y", &b.fields[1])])?;
            last = outs[0].1.item()?;
        }
        let predicted = eval.run(&[("x", &x)])?;
        println!(
            "epoch {epoch}: loss {last:.4}, logits[0] {:?}",
            &predicted[0].1.as_f32()?[..3]
        );
    }

    // 5. Checkpoint everything (parameters and Adam moments) and resume in a fresh run.
    let checkpoint = out.join("checkpoint.safetensors");
    kiln::save_safetensors(&checkpoint, &kiln::state_dict(train.state(), Keys::All))?;
    let mut resumed = step.compile(backend)?;
    let restored = kiln::load_safetensors(&checkpoint)?;
    kiln::load_state_dict(resumed.state(), &restored, Keys::All, true)?;
    let feeds = [("x", &x), ("y", &table_labels(&table)?)];
    let a = train.run(&feeds)?[0].1.item()?;
    let b = resumed.run(&feeds)?[0].1.item()?;
    println!(
        "resumed from {}: loss {b:.6} (uninterrupted {a:.6})",
        checkpoint.display()
    );
    assert_eq!(
        a.to_bits(),
        b.to_bits(),
        "a resumed run continues bit-identically"
    );

    // 6. Ship the inference module; the runner (`kiln run`) or `kiln::load` runs it.
    let module = out.join("mlp.kiln");
    eval.save(&module)?;
    kiln::npy::write(out.join("x.npy"), &x)?;
    let mut shipped = Executable::load_with_backend(&module, backend)?;
    let logits = shipped.run(&[("x", &x)])?;
    println!(
        "saved {} ({} logits); run it with: kiln run {} --input x={}",
        module.display(),
        logits[0].1.len(),
        module.display(),
        out.join("x.npy").display()
    );
    Ok(())
}

/// Writes the fixtures' `x.npy` and `y.npy` as one CSV: four features, then the label.
fn write_csv(path: &Path, dir: &Path) -> Result<(), kiln::Error> {
    let x = kiln::npy::read(dir.join("x.npy"))?;
    let y = kiln::npy::read(dir.join("y.npy"))?.to_i64_vec();
    let mut text = String::new();
    for (row, label) in x.to_f64_vec().chunks(4).zip(y) {
        let fields: Vec<String> = row.iter().map(|v| format!("{}", *v as f32)).collect();
        text.push_str(&format!("{},{label}\n", fields.join(",")));
    }
    std::fs::write(path, text).map_err(|e| kiln::Error::io(path, e))
}

/// The first four columns as `f32` features, the last as `i32` labels.
fn split_features_labels(table: &Array) -> Result<(Array, Array), kiln::Error> {
    let rows = table.shape()[0];
    let v = table.as_f32()?;
    let x: Vec<f32> = v.chunks(5).flat_map(|r| r[..4].to_vec()).collect();
    Ok((Array::from_f32(&[rows, 4], x)?, table_labels(table)?))
}

/// The last column as `i32` labels.
fn table_labels(table: &Array) -> Result<Array, kiln::Error> {
    let v = table.as_f32()?;
    let y: Vec<i32> = v.chunks(5).map(|r| r[4] as i32).collect();
    Ok(Array::from_i32(&[y.len()], y)?)
}
