//! `kiln demo`: trains an MLP on the bundled UCI digits with a compiled Adam step, saves
//! the inference module as `digits.kiln`, and reloads it on every available backend
//! through the same path `kiln run` uses, checking that they agree.

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kiln::data::{DataLoader, TensorDataset, digits};
use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::init::Seeds;
use kiln::nn::{Dropout, Linear, Module, Relu, Sequential};
use kiln::optim::Adam;
use kiln::{Array, Backend, DType, Graph};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Options of `kiln demo`.
#[derive(Debug)]
pub struct DemoOptions {
    /// Where training runs.
    pub backend: Option<String>,
    /// Passes over the training split.
    pub epochs: u32,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of initialisation, dropout and shuffling.
    pub seed: u64,
    /// The digits CSV (default: the bundled fixtures/data/digits.csv).
    pub data: Option<PathBuf>,
    /// Where the inference module is written.
    pub out: PathBuf,
}

fn data_path(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let candidates = [
        PathBuf::from("fixtures/data/digits.csv"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/data/digits.csv"),
    ];
    candidates
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("digits data not found; pass --data PATH/TO/digits.csv"))
}

/// Labels as `i32` (every backend, the GPU included, can index with them).
fn labels_i32(a: &Array) -> Result<Array> {
    let v: Vec<i32> = a.to_i64_vec().iter().map(|&l| l as i32).collect();
    Ok(Array::from_i32(&[v.len()], v)?)
}

fn argmax_rows(logits: &Array) -> Result<Vec<usize>> {
    let v = logits.as_f32()?;
    let cols = *logits
        .shape()
        .last()
        .ok_or_else(|| anyhow!("logits have rank 0"))?;
    Ok(v.chunks_exact(cols)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                .0
        })
        .collect())
}

/// Runs the demo.
pub fn run(opts: &DemoOptions) -> Result<()> {
    let start = Instant::now();
    let backend: Backend = match &opts.backend {
        Some(b) => b.parse()?,
        None => Backend::from_env()?,
    };
    let path = data_path(opts.data.as_deref())?;
    let all = digits::load(&path).with_context(|| path.display().to_string())?;
    let (train_idx, test_idx) = digits::split(all.len());
    let train = all.subset(&train_idx)?;
    let test = all.subset(&test_idx)?;
    let train_set = TensorDataset::new(vec![train.images.clone(), labels_i32(&train.labels)?])?;
    println!(
        "kiln demo: MLP 64-128-10 (ReLU, dropout 0.1) on UCI digits, {} train / {} test samples, Adam lr {}, {} epochs, batch {}, training on {backend}",
        train_idx.len(),
        test_idx.len(),
        opts.lr,
        opts.epochs,
        opts.batch
    );

    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 64));
    let y = g.input("y", DType::I32, vec![n.clone()]);
    let seeds = Seeds::new(opts.seed);
    let mut model = Sequential::new()
        .push(Linear::new(&g, "fc1", 64, 128, seeds.layer("fc1")))
        .push(Relu)
        .push(Dropout::new(&g, "dropout", 0.1, seeds.layer("dropout")))
        .push(Linear::new(&g, "fc2", 128, 10, seeds.layer("fc2")));
    let scaled = &x * (1.0 / 16.0);
    let loss = cross_entropy(&model.forward(&scaled), &y, Reduction::Mean, 0.0);
    let step = Adam::new(opts.lr).minimize(&loss, &model.parameters());
    model.set_training(false);
    let logits = model.forward(&scaled);
    g.check()?;

    let compile_start = Instant::now();
    let mut train_exe = step.compile(backend)?;
    let mut eval_exe =
        kiln::compile_shared(&[("logits", &logits)], &[], train_exe.state(), backend)?;
    let compile_time = compile_start.elapsed();

    let loader = DataLoader::new(Arc::new(train_set), opts.batch)?
        .shuffle(opts.seed)
        .prefetch(2);
    let steps = loader.num_batches() as u64 * u64::from(opts.epochs);
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} steps  loss {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let train_start = Instant::now();
    for epoch in 0..opts.epochs {
        bar.set_prefix(format!("epoch {:>2}/{}", epoch + 1, opts.epochs));
        let mut total = 0.0;
        let mut count = 0;
        for batch in loader.epoch(epoch) {
            let b = batch?;
            let out = train_exe.run(&[("x", &b.fields[0]), ("y", &b.fields[1])])?;
            total += out[0].1.item()?;
            count += 1;
            bar.inc(1);
        }
        bar.set_message(format!("{:.4}", total / f64::from(count.max(1))));
    }
    bar.finish();
    let train_time = train_start.elapsed();

    let test_x = test.images.clone();
    let truth: Vec<usize> = test
        .labels
        .to_i64_vec()
        .iter()
        .map(|&l| l as usize)
        .collect();
    let logits_in_process = eval_exe.run(&[("x", &test_x)])?.remove(0).1;
    let predicted = argmax_rows(&logits_in_process)?;
    let correct = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
    let accuracy = correct as f64 / truth.len() as f64;
    println!(
        "test accuracy {:.2}% ({correct}/{}); compile {:.1} ms, training {:.2} s",
        accuracy * 100.0,
        truth.len(),
        compile_time.as_secs_f64() * 1e3,
        train_time.as_secs_f64()
    );

    eval_exe
        .save(&opts.out)
        .with_context(|| opts.out.display().to_string())?;
    println!("saved {}", opts.out.display());
    for other in Backend::available() {
        let mut loaded = kiln_runtime::load(&opts.out, other)?;
        let got = loaded.run(&[("x", &test_x)])?.remove(0).1;
        let agree = argmax_rows(&got)? == predicted;
        let diff = got
            .as_f32()?
            .iter()
            .zip(logits_in_process.as_f32()?)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "  reloaded on {other:<6}: predictions {}, max |logit diff| {diff:.2e}",
            if agree { "agree" } else { "DIFFER" }
        );
        if !agree {
            bail!(
                "{other} disagrees with the in-process predictions after reloading {}",
                opts.out.display()
            );
        }
    }
    println!("done in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}
