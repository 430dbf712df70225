//! The named workloads: how each graph is built, fed and compiled, with its work estimate
//! (FLOP, minimum bytes) and the machine limit that bounds it.
//!
//! Data is generated exactly as crates/bench/peers/bench_peers.py generates it, so every
//! framework sees the same numbers: an input is
//! `jax.random.uniform(PRNGKey(seed), shape, float32, -1, 1)` (seed 1, and 2 for a second
//! input), the `k`-th model parameter in `state_dict` order is
//! `uniform(fold_in(PRNGKey(0), k), shape, -b, b)` with PyTorch's default bound `b`
//! (`1/√fan_in` for Linear/Conv2d, `1/√hidden` for LSTM), and class labels are `i % 10`.
//! Parameters that PyTorch sets to a constant (the transformer's attention and LayerNorm
//! biases, LayerNorm weights) are drawn from the same key around that constant instead:
//! `uniform(..., c - b, c + b)` (see [`crate::transformer::param_specs`]).
//! Train steps minimise the mean cross-entropy with Adam (lr 1e-3, PyTorch defaults).

use crate::transformer;
use anyhow::{Context, anyhow};
use kiln::loss::{Reduction, cross_entropy};
use kiln::models::{lenet, lstm_nn, lstm_nn_with, simple_nn};
use kiln::nn::TimeLoop;
use kiln::optim::Adam;
use kiln::{Array, Backend, DType, Executable, Graph, Tensor};
use std::time::Instant;

/// The update rule every `_train_` workload uses.
pub const UPDATE_RULE: &str = "adam(lr=1e-3)";

/// A named benchmark.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Name used on the command line and in the JSON output.
    pub name: &'static str,
    /// What it computes, for `--list` and the docs.
    pub about: &'static str,
    /// Floating-point operations per iteration (multiply-add = 2).
    pub flops: f64,
    /// Minimum bytes moved per iteration: every input read once, every output written once.
    pub bytes: f64,
    /// The machine limit that bounds it: `fma` (compute) or `copy` (memory bandwidth).
    pub limit: Option<&'static str>,
    /// Whether it is a training step.
    pub train: bool,
    build: fn(Backend) -> anyhow::Result<Built>,
}

/// A built graph: named outputs, state updates and the input values to feed.
#[derive(Debug)]
pub struct Built {
    /// Named outputs; the first one is checksummed.
    pub outputs: Vec<(String, Tensor)>,
    /// State updates of a train step.
    pub updates: Vec<(String, Tensor)>,
    /// Input values.
    pub feeds: Vec<(String, Array)>,
}

/// A compiled workload, ready to run.
#[derive(Debug)]
pub struct Ready {
    /// The executable.
    pub exe: Executable,
    /// Input values.
    pub feeds: Vec<(String, Array)>,
    /// Seconds spent building the graph (model, loss, gradient, optimiser).
    pub build_s: f64,
    /// Seconds from graph to ready executable.
    pub compile_s: f64,
}

impl Ready {
    /// Runs once (with `borrowed`, through [`Executable::run_borrowed`]); with `check`,
    /// returns the sum of the first output's elements (else NaN).
    pub fn run(&mut self, check: bool, borrowed: bool) -> anyhow::Result<f64> {
        let feeds: Vec<(&str, &Array)> = self.feeds.iter().map(|(n, a)| (n.as_str(), a)).collect();
        if borrowed {
            let out = self.exe.run_borrowed(&feeds)?;
            let first = out.at(0).ok_or_else(|| anyhow!("no outputs"))?;
            return Ok(if check {
                checksum(&first.to_array()?)
            } else {
                f64::NAN
            });
        }
        let out = self.exe.run(&feeds)?;
        let first = out.first().ok_or_else(|| anyhow!("no outputs"))?;
        Ok(if check { checksum(&first.1) } else { f64::NAN })
    }
}

/// Sum of the elements of `a` in f64.
pub fn checksum(a: &Array) -> f64 {
    a.to_f64_vec().iter().sum()
}

/// Builds `w`'s graph and compiles it for `backend`, timing both.
pub fn prepare(w: &Workload, backend: Backend) -> anyhow::Result<Ready> {
    let t = Instant::now();
    let built = (w.build)(backend)?;
    let build_s = t.elapsed().as_secs_f64();
    compile_built(built, build_s, backend)
}

/// Compiles a built graph for `backend`, timing it.
fn compile_built(built: Built, build_s: f64, backend: Backend) -> anyhow::Result<Ready> {
    let outs: Vec<(&str, &Tensor)> = built.outputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let upds: Vec<(&str, &Tensor)> = built.updates.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let t = Instant::now();
    let exe = kiln::compile_step(&outs, &upds, backend)?;
    let compile_s = t.elapsed().as_secs_f64();
    Ok(Ready {
        exe,
        feeds: built.feeds,
        build_s,
        compile_s,
    })
}

/// Every workload, in reporting order.
pub fn all() -> Vec<Workload> {
    let simple = |b: f64| 2.0 * b * (784.0 * 128.0 + 128.0 * 10.0);
    let lstm_fwd_b =
        |b: f64| 2.0 * b * 28.0 * 512.0 * ((28.0 + 128.0) + (128.0 + 128.0)) + 2.0 * b * 1280.0;
    let lstm_fwd = lstm_fwd_b(64.0);
    let lenet_fwd = 64.0
        * 2.0
        * (6.0 * 784.0 * 25.0 + 16.0 * 100.0 * 150.0 + 400.0 * 120.0 + 120.0 * 84.0 + 84.0 * 10.0);
    let m4 = 4096.0 * 1024.0 * 4.0;
    let (tb, ts) = (8usize, transformer::SEQ);
    let tr_fwd = transformer::forward_flops(tb, ts);
    let tr_x = (tb * ts * transformer::D_MODEL) as f64;
    vec![
        Workload {
            name: "simple_nn_infer_b1",
            about: "SimpleNN (Linear 784->128, ReLU, Linear 128->10) forward, batch 1",
            flops: simple(1.0),
            bytes: 4.0 * (784.0 + 10.0),
            limit: None,
            train: false,
            build: |_| simple_nn_infer(1),
        },
        Workload {
            name: "simple_nn_infer_b256",
            about: "SimpleNN forward, batch 256",
            flops: simple(256.0),
            bytes: 4.0 * 256.0 * (784.0 + 10.0),
            limit: None,
            train: false,
            build: |_| simple_nn_infer(256),
        },
        Workload {
            name: "simple_nn_train_b64",
            about: "SimpleNN train step (cross-entropy, Adam), batch 64",
            flops: 3.0 * simple(64.0),
            bytes: 4.0 * 64.0 * 785.0,
            limit: None,
            train: true,
            build: |_| train(Model::SimpleNn, 64),
        },
        Workload {
            name: "lstm_infer_b64",
            about: "LSTMNN (LSTM 28->128, 2 layers, batch_first, 28 steps as one scan per layer, unrolled on gpu, Linear 128->10) forward, batch 64",
            flops: lstm_fwd,
            bytes: 4.0 * 64.0 * (784.0 + 10.0),
            limit: None,
            train: false,
            build: |_| infer(Model::Lstm(TimeLoop::Scan), 64),
        },
        Workload {
            name: "lstm_infer_b1",
            about: "lstm_infer_b64 at batch 1 (latency): LSTMNN forward, 28 steps as one scan per layer",
            flops: lstm_fwd_b(1.0),
            bytes: 4.0 * (784.0 + 10.0),
            limit: None,
            train: false,
            build: |_| infer(Model::Lstm(TimeLoop::Scan), 1),
        },
        Workload {
            name: "lstm_train_b64",
            about: "LSTMNN train step (cross-entropy, Adam), batch 64",
            flops: 3.0 * lstm_fwd,
            bytes: 4.0 * 64.0 * 785.0,
            limit: None,
            train: true,
            build: |_| train(Model::Lstm(TimeLoop::Scan), 64),
        },
        Workload {
            name: "lstm_infer_b64_unrolled",
            about: "lstm_infer_b64 with its 28 steps unrolled when the graph is built (models::lstm_nn)",
            flops: lstm_fwd,
            bytes: 4.0 * 64.0 * (784.0 + 10.0),
            limit: None,
            train: false,
            build: |_| infer(Model::LstmUnrolled, 64),
        },
        Workload {
            name: "lstm_train_b64_unrolled",
            about: "lstm_train_b64 with its 28 steps unrolled when the graph is built (models::lstm_nn)",
            flops: 3.0 * lstm_fwd,
            bytes: 4.0 * 64.0 * 785.0,
            limit: None,
            train: true,
            build: |_| train(Model::LstmUnrolled, 64),
        },
        Workload {
            name: "lenet_infer_b64",
            about: "LeNet-5 (conv 5x5 1->6 pad 2, max-pool, conv 5x5 6->16, max-pool, Linear 400->120->84->10, ReLU) forward, batch 64",
            flops: lenet_fwd,
            bytes: 4.0 * 64.0 * (784.0 + 10.0),
            limit: None,
            train: false,
            build: |_| infer(Model::Lenet, 64),
        },
        Workload {
            name: "lenet_train_b64",
            about: "LeNet-5 train step (cross-entropy, Adam), batch 64",
            flops: 3.0 * lenet_fwd,
            bytes: 4.0 * 64.0 * 785.0,
            limit: None,
            train: true,
            build: |_| train(Model::Lenet, 64),
        },
        Workload {
            name: "transformer_infer_b8",
            about: "transformer encoder layer (nn.TransformerEncoderLayer d_model 256, 4 heads, feed-forward 1024, ReLU, post-norm, dropout 0, batch_first) forward, batch 8, seq 128; output [8,128,256]",
            flops: tr_fwd,
            bytes: 4.0 * 2.0 * tr_x,
            limit: None,
            train: false,
            build: |_| infer(TRANSFORMER, 8),
        },
        Workload {
            name: "transformer_train_b8",
            about: "transformer_infer_b8's encoder layer, mean over the sequence, Linear 256->10; train step (cross-entropy, Adam), batch 8, seq 128",
            flops: 3.0 * (tr_fwd + 2.0 * tb as f64 * 256.0 * 10.0),
            bytes: 4.0 * (tr_x + tb as f64),
            limit: None,
            train: true,
            build: |_| train(TRANSFORMER_CLS, 8),
        },
        Workload {
            name: "matmul_1024",
            about: "f32 [1024,1024] @ [1024,1024], both fed as inputs",
            flops: 2.0 * 1024f64.powi(3),
            bytes: 3.0 * 1024.0 * 1024.0 * 4.0,
            limit: Some("fma"),
            train: false,
            build: |_| matmul(),
        },
        Workload {
            name: "ew_chain_16m",
            about: "y = tanh(x*1.7+0.3)*sigmoid(x) - 0.5*x over 16M f32",
            flops: 16.0 * 1024.0 * 1024.0 * 7.0,
            bytes: 2.0 * 16.0 * 1024.0 * 1024.0 * 4.0,
            limit: Some("copy"),
            train: false,
            build: |_| ew_chain(),
        },
        Workload {
            name: "softmax_4096x1024",
            about: "softmax over the last axis of f32 [4096,1024]",
            flops: 4096.0 * 1024.0 * 4.0,
            bytes: 2.0 * m4,
            limit: Some("copy"),
            train: false,
            build: |_| softmax(),
        },
        Workload {
            name: "layernorm_4096x1024",
            about: "layer_norm over the last axis of f32 [4096,1024], eps 1e-5, no affine",
            flops: 4096.0 * 1024.0 * 6.0,
            bytes: 2.0 * m4,
            limit: Some("copy"),
            train: false,
            build: |_| layernorm(),
        },
    ]
}

/// The three reference models and the transformer encoder layer; LSTMNN as one scan per
/// layer ([`kiln::models::lstm_nn_with`]) or unrolled when the graph is built
/// ([`kiln::models::lstm_nn`]); the transformer over `seq` steps, with the classifier head
/// of the train step when `head` ([`transformer::classifier`]) or without
/// ([`transformer::encoder`]).
#[derive(Clone, Copy, Debug)]
enum Model {
    SimpleNn,
    Lstm(TimeLoop),
    LstmUnrolled,
    Lenet,
    Transformer { seq: usize, head: bool },
}

/// The transformer workloads' models: the encoder layer, and with the classifier head.
const TRANSFORMER: Model = Model::Transformer {
    seq: transformer::SEQ,
    head: false,
};
const TRANSFORMER_CLS: Model = Model::Transformer {
    seq: transformer::SEQ,
    head: true,
};

/// `(name, shape, bound, centre)` of each parameter of `m`, in `state_dict` order: its
/// value is `uniform(fold_in(PRNGKey(0), k), shape, centre - bound, centre + bound)`.
fn param_specs(m: Model) -> Vec<(String, Vec<usize>, f64, f64)> {
    let lin = |p: &str, i: usize, o: usize| {
        let b = 1.0 / (i as f64).sqrt();
        vec![
            (format!("{p}.weight"), vec![o, i], b, 0.0),
            (format!("{p}.bias"), vec![o], b, 0.0),
        ]
    };
    match m {
        Model::SimpleNn => [lin("fc1", 784, 128), lin("fc2", 128, 10)].concat(),
        Model::Lstm(_) | Model::LstmUnrolled => {
            let b = 1.0 / 128f64.sqrt();
            let mut v = Vec::new();
            for l in 0..2 {
                let inp = if l == 0 { 28 } else { 128 };
                v.push((format!("lstm.weight_ih_l{l}"), vec![512, inp], b, 0.0));
                v.push((format!("lstm.weight_hh_l{l}"), vec![512, 128], b, 0.0));
                v.push((format!("lstm.bias_ih_l{l}"), vec![512], b, 0.0));
                v.push((format!("lstm.bias_hh_l{l}"), vec![512], b, 0.0));
            }
            v.extend(lin("fc", 128, 10));
            v
        }
        Model::Lenet => {
            let conv = |p: &str, cin: usize, cout: usize| {
                let b = 1.0 / ((cin * 25) as f64).sqrt();
                vec![
                    (format!("{p}.weight"), vec![cout, cin, 5, 5], b, 0.0),
                    (format!("{p}.bias"), vec![cout], b, 0.0),
                ]
            };
            [
                conv("conv1", 1, 6),
                conv("conv2", 6, 16),
                lin("fc1", 400, 120),
                lin("fc2", 120, 84),
                lin("fc3", 84, 10),
            ]
            .concat()
        }
        Model::Transformer { head, .. } => transformer::param_specs(head),
    }
}

/// A built model: its logits, its parameters by name, and its input value.
type ModelParts = (Tensor, Vec<(String, Tensor)>, Array);

/// Builds model `m` for `batch` with seeded parameters; returns `(x, logits, params)` and
/// the input value.
fn model(g: &Graph, m: Model, batch: usize) -> anyhow::Result<ModelParts> {
    let (_x, logits) = match m {
        Model::SimpleNn => simple_nn(g, batch),
        Model::Lstm(t) => lstm_nn_with(g, batch, 28usize, t),
        Model::LstmUnrolled => lstm_nn(g, batch),
        Model::Lenet => lenet(g, batch),
        Model::Transformer { seq, head: false } => transformer::encoder(g, batch, seq),
        Model::Transformer { seq, head: true } => transformer::classifier(g, batch, seq),
    };
    let mut params = Vec::new();
    for (k, (name, shape, bound, centre)) in param_specs(m).into_iter().enumerate() {
        let key = kiln::nn::init::param_key(0, k as u32);
        let value = kiln::random::host_uniform(key, &shape, centre - bound, centre + bound)?;
        g.set_param(&name, value)
            .with_context(|| format!("parameter {name}"))?;
        let t = g.param(&name, DType::F32, shape);
        params.push((name, t));
    }
    let x_shape: Vec<usize> = match m {
        Model::SimpleNn => vec![batch, 784],
        Model::Lstm(_) | Model::LstmUnrolled => vec![batch, 28, 28],
        Model::Lenet => vec![batch, 1, 28, 28],
        Model::Transformer { seq, .. } => vec![batch, seq, transformer::D_MODEL],
    };
    Ok((logits, params, input(1, &x_shape)?))
}

/// `uniform(PRNGKey(seed), shape, -1, 1)` as f32.
pub fn input(seed: u64, shape: &[usize]) -> anyhow::Result<Array> {
    Ok(kiln::random::host_uniform(
        kiln::random::key_data(seed),
        shape,
        -1.0,
        1.0,
    )?)
}

/// Class labels `i % 10` for a batch.
pub fn labels(batch: usize) -> anyhow::Result<Array> {
    Ok(Array::from_i64(
        &[batch],
        (0..batch as i64).map(|i| i % 10).collect(),
    )?)
}

fn simple_nn_infer(batch: usize) -> anyhow::Result<Built> {
    let g = Graph::new();
    let (logits, _, x) = model(&g, Model::SimpleNn, batch)?;
    Ok(Built {
        outputs: vec![("logits".into(), logits)],
        updates: Vec::new(),
        feeds: vec![("x".into(), x)],
    })
}

/// Forward pass of model `m` (the transformer's output is its encoder layer's `[batch,
/// seq, 256]`, the others' their logits).
fn infer(m: Model, batch: usize) -> anyhow::Result<Built> {
    let g = Graph::new();
    let (logits, _, x) = model(&g, m, batch)?;
    g.check()?;
    let name = match m {
        Model::Transformer { .. } => "y",
        _ => "logits",
    };
    Ok(Built {
        outputs: vec![(name.into(), logits)],
        updates: Vec::new(),
        feeds: vec![("x".into(), x)],
    })
}

fn train(m: Model, batch: usize) -> anyhow::Result<Built> {
    let g = Graph::new();
    let (logits, params, x) = model(&g, m, batch)?;
    let y = g.input("labels", DType::I64, [batch]);
    let loss = cross_entropy(&logits, &y, Reduction::Mean, 0.0);
    let step = Adam::new(1e-3).minimize(&loss, &params);
    g.check()?;
    Ok(Built {
        outputs: vec![("loss".into(), step.loss)],
        updates: step.updates,
        feeds: vec![("x".into(), x), ("labels".into(), labels(batch)?)],
    })
}

fn matmul() -> anyhow::Result<Built> {
    let g = Graph::new();
    let a = g.input("a", DType::F32, [1024, 1024]);
    let b = g.input("b", DType::F32, [1024, 1024]);
    Ok(Built {
        outputs: vec![("c".into(), a.matmul(&b))],
        updates: Vec::new(),
        feeds: vec![
            ("a".into(), input(1, &[1024, 1024])?),
            ("b".into(), input(2, &[1024, 1024])?),
        ],
    })
}

/// `tanh(x·1.7+0.3)·sigmoid(x) − 0.5·x`.
pub fn ew_expr(x: &Tensor) -> Tensor {
    (x * 1.7 + 0.3).tanh() * x.sigmoid() - x * 0.5
}

fn ew_chain() -> anyhow::Result<Built> {
    let g = Graph::new();
    let n = 16 << 20;
    let x = g.input("x", DType::F32, [n]);
    Ok(Built {
        outputs: vec![("y".into(), ew_expr(&x))],
        updates: Vec::new(),
        feeds: vec![("x".into(), input(1, &[n])?)],
    })
}

fn softmax() -> anyhow::Result<Built> {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [4096, 1024]);
    Ok(Built {
        outputs: vec![("y".into(), x.softmax(-1))],
        updates: Vec::new(),
        feeds: vec![("x".into(), input(1, &[4096, 1024])?)],
    })
}

fn layernorm() -> anyhow::Result<Built> {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [4096, 1024]);
    Ok(Built {
        outputs: vec![("y".into(), x.layer_norm(1, None, None, 1e-5))],
        updates: Vec::new(),
        feeds: vec![("x".into(), input(1, &[4096, 1024])?)],
    })
}

/// The workloads named in `names` (all when empty), or the unknown name.
pub fn select(names: &[String]) -> anyhow::Result<Vec<Workload>> {
    let all = all();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|n| {
            all.iter().find(|w| w.name == n).copied().ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|w| w.name).collect();
                anyhow!("unknown workload `{n}`; known: {}", known.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_match_jax_uniform_from_the_same_key() {
        // jax.random.uniform(jax.random.PRNGKey(1), (4,), jnp.float32, -1, 1)
        let a = input(1, &[4]).unwrap();
        let v = a.as_f32().unwrap();
        let expect = [
            -0.122_735_023_498_535_16,
            0.067_505_836_486_816_4,
            -0.108_163_356_781_005_86,
            -0.123_207_330_703_735_35,
        ];
        for (got, want) in v.iter().zip(expect) {
            assert!((f64::from(*got) - want).abs() < 1e-7, "{v:?}");
        }
        assert_eq!(
            labels(12).unwrap().to_i64_vec(),
            vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
        );
    }

    #[test]
    fn parameter_specs_follow_state_dict_order_and_pytorch_bounds() {
        let names: Vec<String> = param_specs(Model::Lenet).into_iter().map(|p| p.0).collect();
        assert_eq!(names[..3], ["conv1.weight", "conv1.bias", "conv2.weight"]);
        assert_eq!(names.len(), 10);
        let lstm = param_specs(Model::Lstm(TimeLoop::Scan));
        assert_eq!(lstm[4].0, "lstm.weight_ih_l1");
        assert_eq!(lstm[4].1, vec![512, 128]);
        assert!((lstm[0].2 - 0.088_388_347_648_318_44).abs() < 1e-15);
        assert_eq!(param_specs(Model::SimpleNn)[0].2, 1.0 / 28.0);
    }

    #[test]
    fn ew_chain_computes_the_formula() {
        let g = Graph::new();
        let x = g.input("x", DType::F32, [3]);
        let y = ew_expr(&x);
        let xs = [-1.0f32, 0.0, 2.0];
        let feed = Array::from_f32(&[3], xs.to_vec()).unwrap();
        let out = kiln::eval(&[&y], &[("x", &feed)]).unwrap();
        for (got, &x) in out[0].as_f32().unwrap().iter().zip(&xs) {
            let x = f64::from(x);
            let want = (x * 1.7 + 0.3).tanh() / (1.0 + (-x).exp()) - 0.5 * x;
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn simple_nn_workloads_compile_and_run_on_the_kernel_backend() {
        for name in ["simple_nn_infer_b1", "simple_nn_train_b64"] {
            let w = select(&[name.to_string()]).unwrap()[0];
            let mut r = prepare(&w, Backend::Kernel).unwrap();
            let first = r.run(true, false).unwrap();
            assert!(first.is_finite(), "{name}: {first}");
            if w.train {
                // Mean cross-entropy of near-uniform logits over 10 classes is about ln 10.
                assert!((first - 10f64.ln()).abs() < 0.2, "{name}: loss {first}");
                let second = r.run(true, false).unwrap();
                assert!(
                    second < first,
                    "{name}: Adam step did not lower the loss: {first} -> {second}"
                );
            }
        }
    }

    /// The train-step workloads (i64 labels, Adam) run on `gpu` and match `cpu` after one
    /// step and after many, within docs/gpu.md's tolerance for chains of f32 reductions and
    /// contractions (loss and every parameter). The first step runs each workload as
    /// benchmarked (batch 64); the many steps run the same train-step graphs of LeNet and
    /// LSTMNN at batch 16: 50 steps, 12 for LSTMNN, whose step (a scan of 28 steps forward
    /// and back) takes about 3 s on a software adapter. Skipped without an adapter unless
    /// KILN_REQUIRE_GPU=1. One test per workload.
    fn train_workload_on_gpu_matches_cpu(
        name: &str,
        build: fn(Backend) -> anyhow::Result<Built>,
        steps: usize,
    ) {
        if kiln_gpu::test_device().is_none() {
            return;
        }
        let w = select(&[name.to_string()]).unwrap()[0];
        let mut cpu = prepare(&w, Backend::Cpu).unwrap();
        let mut gpu = prepare(&w, Backend::Gpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = cpu.run(true, false).unwrap();
        let got = gpu.run(true, false).unwrap();
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{name} step 1: loss {got} on gpu, {want} on cpu"
        );
        for (pname, c) in cpu.exe.state().snapshot() {
            let g = gpu.exe.state().get(&pname).unwrap();
            // Adam's first step moves every parameter by about lr = 1e-3 whatever its
            // gradient's size, so a near-zero gradient whose sign differs between
            // summation orders moves it the other way.
            let worst = g
                .to_f64_vec()
                .iter()
                .zip(c.to_f64_vec())
                .map(|(g, c)| (g - c).abs() - 1e-4 * c.abs())
                .fold(0.0, f64::max);
            assert!(worst <= 2.5e-3, "{name} step 1: {pname} differs by {worst}");
        }
        let w = Workload { build, ..w };
        let mut cpu = prepare(&w, Backend::Cpu).unwrap();
        let mut gpu = prepare(&w, Backend::Gpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut first = f64::NAN;
        for step in 1..=steps {
            let want = cpu.run(true, false).unwrap();
            let got = gpu.run(true, false).unwrap();
            if step == 1 {
                first = want;
            }
            if step == steps {
                // Many Adam steps amplify the first step's differences: compare at the
                // scale of the starting loss (the trained loss is a small fraction of
                // it).
                assert!(
                    (got - want).abs() <= 5e-3 * first,
                    "{name} step {steps}: loss {got} on gpu, {want} on cpu (first {first})"
                );
            }
        }
        let t = gpu.exe.device_transfers().unwrap();
        // The state went up once (each tensor at most once) and never came back.
        let state_bytes: u64 = cpu
            .exe
            .state()
            .snapshot()
            .iter()
            .map(|(_, a)| (a.dtype().size_bytes().max(4) * a.len()) as u64)
            .sum();
        assert!(t.state_upload_bytes <= state_bytes, "{name}: {t:?}");
    }

    #[test]
    fn simple_nn_train_on_gpu_matches_cpu_after_one_and_many_steps() {
        train_workload_on_gpu_matches_cpu(
            "simple_nn_train_b64",
            |_| train(Model::SimpleNn, 64),
            50,
        );
    }

    #[test]
    fn lenet_train_on_gpu_matches_cpu_after_one_and_many_steps() {
        train_workload_on_gpu_matches_cpu("lenet_train_b64", |_| train(Model::Lenet, 16), 50);
    }

    #[test]
    fn lstm_train_on_gpu_matches_cpu_after_one_and_many_steps() {
        train_workload_on_gpu_matches_cpu(
            "lstm_train_b64",
            |_| train(Model::Lstm(TimeLoop::Scan), 16),
            12,
        );
    }

    /// Every element of the first output of one run.
    fn first_output(r: &mut Ready) -> Vec<f64> {
        let feeds: Vec<(&str, &Array)> = r.feeds.iter().map(|(n, a)| (n.as_str(), a)).collect();
        r.exe.run(&feeds).unwrap()[0].1.to_f64_vec()
    }

    /// `got` equals `want` element for element within `tol` (absolute, scaled by the
    /// element's size above 1), and every element is finite.
    fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(g.is_finite() && w.is_finite(), "{what}[{i}]: {g} vs {w}");
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{what}[{i}]: {g} on cpu, {w} on interp"
            );
        }
    }

    #[test]
    fn lenet_and_lstm_forward_workloads_on_cpu_match_the_interpreter() {
        for name in ["lenet_infer_b64", "lstm_infer_b1"] {
            let w = select(&[name.to_string()]).unwrap()[0];
            assert!(!w.train && w.flops > 0.0 && w.bytes > 0.0, "{name}");
            let mut cpu = prepare(&w, Backend::Cpu).unwrap();
            let mut interp = prepare(&w, Backend::Interp).unwrap();
            let (got, want) = (first_output(&mut cpu), first_output(&mut interp));
            assert_eq!(got.len(), if name == "lstm_infer_b1" { 10 } else { 640 });
            assert_close(name, &got, &want, 1e-4);
            assert!(want.iter().any(|v| *v != 0.0), "{name}: all zeros");
        }
    }

    #[test]
    fn transformer_params_follow_the_pytorch_state_dict() {
        let specs = param_specs(Model::Transformer { seq: 4, head: true });
        let names: Vec<&str> = specs.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names.len(), 14);
        assert_eq!(names[0], "layer.self_attn.in_proj_weight");
        assert_eq!(specs[0].1, vec![768, 256]);
        assert_eq!(names[8], "layer.norm1.weight");
        assert_eq!((specs[8].2, specs[8].3), (1.0 / 16.0, 1.0));
        assert_eq!(names[12..], ["head.weight", "head.bias"]);
        // Without the head the layer's parameters keep their keys (same values).
        let enc = param_specs(Model::Transformer {
            seq: 4,
            head: false,
        });
        assert_eq!(enc[..], specs[..12]);
    }

    /// The encoder layer and its train step on `cpu` equal the interpreter on a small
    /// sequence (batch 2, 16 steps: the interpreter is slow), after one and two Adam steps.
    #[test]
    fn transformer_on_cpu_matches_the_interpreter() {
        let small = |head: bool| Model::Transformer { seq: 16, head };
        let ready = |b: Built, backend| compile_built(b, 0.0, backend).unwrap();
        let (fwd, step) = (infer(small(false), 2), train(small(true), 2));
        let mut cpu = ready(fwd.unwrap(), Backend::Cpu);
        let mut interp = ready(infer(small(false), 2).unwrap(), Backend::Interp);
        let (got, want) = (first_output(&mut cpu), first_output(&mut interp));
        assert_eq!(got.len(), 2 * 16 * 256);
        assert_close("encoder output", &got, &want, 1e-4);
        let mut cpu = ready(step.unwrap(), Backend::Cpu);
        let mut interp = ready(train(small(true), 2).unwrap(), Backend::Interp);
        for n in 1..=2 {
            let (got, want) = (
                cpu.run(true, false).unwrap(),
                interp.run(true, false).unwrap(),
            );
            assert_close(&format!("loss at step {n}"), &[got], &[want], 1e-4);
        }
        // Adam's first steps move every parameter by about lr = 1e-3 whatever its
        // gradient's size, so a near-zero gradient whose sign differs between summation
        // orders moves it the other way: compare parameters at that scale.
        for (pname, c) in cpu.exe.state().snapshot() {
            let i = interp.exe.state().get(&pname).unwrap();
            assert_close(&pname, &c.to_f64_vec(), &i.to_f64_vec(), 4.5e-3);
        }
    }

    /// The full-size transformer workloads run on `cpu`: finite output, and the train
    /// step's Adam update lowers the loss.
    #[test]
    fn transformer_workloads_run_on_cpu() {
        let w = select(&["transformer_infer_b8".to_string()]).unwrap()[0];
        let mut r = prepare(&w, Backend::Cpu).unwrap();
        let out = first_output(&mut r);
        assert_eq!(out.len(), 8 * 128 * 256);
        assert!(out.iter().all(|v| v.is_finite()));
        let w = select(&["transformer_train_b8".to_string()]).unwrap()[0];
        let mut r = prepare(&w, Backend::Cpu).unwrap();
        let first = r.run(true, false).unwrap();
        assert!(first.is_finite() && first > 0.0, "loss {first}");
        let second = r.run(true, false).unwrap();
        assert!(
            second < first,
            "Adam did not lower the loss: {first} -> {second}"
        );
    }

    #[test]
    fn unknown_workload_names_the_known_ones() {
        let e = select(&["nope".into()]).unwrap_err().to_string();
        assert!(
            e.starts_with("unknown workload `nope`; known: simple_nn_infer_b1,"),
            "{e}"
        );
    }
}
