//! Prints how long the LSTMNN train step (cross-entropy, Adam) takes to compile on `cpu`
//! with its time axis as one scan per layer (symbolic `T`, and `T = 28`) and unrolled at
//! 28 steps, best of `KILN_REPEATS` (default 5) compiles each, then runs the scan step
//! compiled once at T = 1, 28 and 300.
//!
//! `cargo run --release -p kiln --example lstm_compile_time`

use kiln::loss::{Reduction, cross_entropy};
use kiln::models::{lstm_nn, lstm_nn_with};
use kiln::nn::TimeLoop;
use kiln::optim::Adam;
use kiln::{Array, Backend, DType, Dim, Graph, Tensor};
use std::time::{Duration, Instant};

/// The train step's graph: `(outputs, updates)`.
fn train_step(
    build: impl Fn(&Graph, Dim) -> (Tensor, Tensor),
) -> (Graph, Tensor, Vec<(String, Tensor)>) {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = build(&g, n.clone());
    let labels = g.input("labels", DType::I64, vec![n]);
    let loss = cross_entropy(&logits, &labels, Reduction::Mean, 0.0);
    let ir = g.ir();
    let params: Vec<(String, Tensor)> = ir
        .parameters()
        .iter()
        .map(|(id, name)| {
            (
                name.to_string(),
                g.param(name, DType::F32, ir.node(*id).shape.clone()),
            )
        })
        .collect();
    // models::lstm_nn declares its parameters without values: small ones will do here.
    for (name, t) in &params {
        if g.param_value(name).is_none() {
            let shape = t.shape().as_known().expect("known parameter shape");
            let len: usize = shape.iter().product();
            let v = (0..len).map(|i| (i as f32 * 0.37).sin() * 0.05).collect();
            g.set_param(
                name,
                Array::from_f32(&shape, v).expect("shape matches data"),
            )
            .expect("parameter");
        }
    }
    let step = Adam::new(1e-3).minimize(&loss, &params);
    (g, step.loss, step.updates)
}

fn best_compile(
    what: &str,
    repeats: usize,
    build: impl Fn(&Graph, Dim) -> (Tensor, Tensor),
) -> Result<kiln::Executable, kiln::Error> {
    let mut best = f64::INFINITY;
    let mut exe = None;
    for _ in 0..repeats {
        let (_g, loss, updates) = train_step(&build);
        let ups: Vec<(&str, &Tensor)> = updates.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let t = Instant::now();
        let e = kiln::compile_step(&[("loss", &loss)], &ups, Backend::Cpu)?;
        best = best.min(t.elapsed().as_secs_f64());
        exe = Some(e);
    }
    println!("{what:<44} {:>8.1} ms", best * 1e3);
    let exe = exe.expect("at least one repeat");
    if std::env::var_os("KILN_REPORT").is_some() {
        let r = exe.report();
        let passes: Duration = r
            .pipeline
            .as_ref()
            .map(|p| p.time_by_pass().iter().map(|(_, t)| *t).sum())
            .unwrap_or_default();
        println!(
            "  last compile: {:.1} ms total, {:.1} ms in graph passes, kernels {:?}",
            r.total.as_secs_f64() * 1e3,
            passes.as_secs_f64() * 1e3,
            r.kernels
        );
        if let Some(p) = &r.pipeline {
            for line in p.to_string().lines() {
                println!("    {line}");
            }
        }
    }
    Ok(exe)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeats = std::env::var("KILN_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!("LSTMNN train step (Adam), compile for cpu, best of {repeats}:");
    let mut scan = best_compile("scan, symbolic T", repeats, |g, n| {
        lstm_nn_with(g, n, g.sym("T"), TimeLoop::Scan)
    })?;
    best_compile("scan, T = 28", repeats, |g, n| {
        lstm_nn_with(g, n, 28usize, TimeLoop::Scan)
    })?;
    best_compile("unrolled (models::lstm_nn), T = 28", repeats, |g, n| {
        lstm_nn(g, n)
    })?;
    for steps in [1usize, 28, 300] {
        let n = 64;
        let x = Array::from_f32(
            &[n, steps, 28],
            (0..n * steps * 28)
                .map(|i| (i as f32 * 0.01).sin())
                .collect(),
        )?;
        let y = Array::from_i64(&[n], (0..n as i64).map(|i| i % 10).collect())?;
        let t = Instant::now();
        let loss = scan.run(&[("x", &x), ("labels", &y)])?.remove(0).1;
        println!(
            "the symbolic-T step at T = {steps:>3}, batch {n}: loss {:.4}, run {:.1} ms",
            loss.to_f64_vec()[0],
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
