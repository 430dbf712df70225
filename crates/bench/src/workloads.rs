//! The named workloads: how each graph is built, fed and compiled, with its work estimate
//! (FLOP, minimum bytes) and the machine limit that bounds it.
//!
//! Data is generated exactly as crates/bench/peers/bench_peers.py generates it, so every
//! framework sees the same numbers: an input is
//! `jax.random.uniform(PRNGKey(seed), shape, float32, -1, 1)` (seed 1, and 2 for a second
//! input), the `k`-th model parameter in `state_dict` order is
//! `uniform(fold_in(PRNGKey(0), k), shape, -b, b)` with PyTorch's default bound `b`
//! (`1/√fan_in` for Linear/Conv2d, `1/√hidden` for LSTM), and class labels are `i % 10`.
//! Train steps minimise the mean cross-entropy with Adam (lr 1e-3, PyTorch defaults).

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
    let lstm_fwd =
        2.0 * 64.0 * 28.0 * 512.0 * ((28.0 + 128.0) + (128.0 + 128.0)) + 2.0 * 64.0 * 1280.0;
    let lenet_fwd = 64.0
        * 2.0
        * (6.0 * 784.0 * 25.0 + 16.0 * 100.0 * 150.0 + 400.0 * 120.0 + 120.0 * 84.0 + 84.0 * 10.0);
    let m4 = 4096.0 * 1024.0 * 4.0;
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
            build: |_| lstm_infer(Model::Lstm(TimeLoop::Scan)),
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
            build: |_| lstm_infer(Model::LstmUnrolled),
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
            name: "lenet_train_b64",
            about: "LeNet-5 train step (cross-entropy, Adam), batch 64",
            flops: 3.0 * lenet_fwd,
            bytes: 4.0 * 64.0 * 785.0,
            limit: None,
            train: true,
            build: |_| train(Model::Lenet, 64),
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

/// The three reference models; LSTMNN as one scan per layer
/// ([`kiln::models::lstm_nn_with`]) or unrolled when the graph is built
/// ([`kiln::models::lstm_nn`]).
#[derive(Clone, Copy, Debug)]
enum Model {
    SimpleNn,
    Lstm(TimeLoop),
    LstmUnrolled,
    Lenet,
}

/// `(name, shape, bound)` of each parameter of `m`, in `state_dict` order.
fn param_specs(m: Model) -> Vec<(String, Vec<usize>, f64)> {
    let lin = |p: &str, i: usize, o: usize| {
        let b = 1.0 / (i as f64).sqrt();
        vec![
            (format!("{p}.weight"), vec![o, i], b),
            (format!("{p}.bias"), vec![o], b),
        ]
    };
    match m {
        Model::SimpleNn => [lin("fc1", 784, 128), lin("fc2", 128, 10)].concat(),
        Model::Lstm(_) | Model::LstmUnrolled => {
            let b = 1.0 / 128f64.sqrt();
            let mut v = Vec::new();
            for l in 0..2 {
                let inp = if l == 0 { 28 } else { 128 };
                v.push((format!("lstm.weight_ih_l{l}"), vec![512, inp], b));
                v.push((format!("lstm.weight_hh_l{l}"), vec![512, 128], b));
                v.push((format!("lstm.bias_ih_l{l}"), vec![512], b));
                v.push((format!("lstm.bias_hh_l{l}"), vec![512], b));
            }
            v.extend(lin("fc", 128, 10));
            v
        }
        Model::Lenet => {
            let conv = |p: &str, cin: usize, cout: usize| {
                let b = 1.0 / ((cin * 25) as f64).sqrt();
                vec![
                    (format!("{p}.weight"), vec![cout, cin, 5, 5], b),
                    (format!("{p}.bias"), vec![cout], b),
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
    };
    let mut params = Vec::new();
    for (k, (name, shape, bound)) in param_specs(m).into_iter().enumerate() {
        let value = kiln::nn::init::uniform(0, k as u32, &shape, bound)?;
        g.set_param(&name, value)
            .with_context(|| format!("parameter {name}"))?;
        let t = g.param(&name, DType::F32, shape);
        params.push((name, t));
    }
    let x_shape: Vec<usize> = match m {
        Model::SimpleNn => vec![batch, 784],
        Model::Lstm(_) | Model::LstmUnrolled => vec![batch, 28, 28],
        Model::Lenet => vec![batch, 1, 28, 28],
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

fn lstm_infer(m: Model) -> anyhow::Result<Built> {
    let g = Graph::new();
    let (logits, _, x) = model(&g, m, 64)?;
    Ok(Built {
        outputs: vec![("logits".into(), logits)],
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

    /// The train-step workloads (i64 labels, Adam) run on `gpu` and match `cpu` after 1
    /// and 50 steps, within docs/gpu.md's tolerance for chains of f32 reductions and
    /// contractions (loss and every parameter). Skipped without an adapter unless
    /// KILN_REQUIRE_GPU=1.
    #[test]
    fn train_workloads_on_gpu_match_cpu_after_1_and_50_steps() {
        if kiln_gpu::test_device().is_none() {
            return;
        }
        for name in ["simple_nn_train_b64", "lenet_train_b64", "lstm_train_b64"] {
            let w = select(&[name.to_string()]).unwrap()[0];
            let mut cpu = prepare(&w, Backend::Cpu).unwrap();
            let mut gpu = prepare(&w, Backend::Gpu).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut first = f64::NAN;
            for step in 1..=50 {
                let want = cpu.run(true, false).unwrap();
                let got = gpu.run(true, false).unwrap();
                if step == 1 {
                    first = want;
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{name} step 1: loss {got} on gpu, {want} on cpu"
                    );
                    for (pname, c) in cpu.exe.state().snapshot() {
                        let g = gpu.exe.state().get(&pname).unwrap();
                        // Adam's first step moves every parameter by about lr = 1e-3
                        // whatever its gradient's size, so a near-zero gradient whose sign
                        // differs between summation orders moves it the other way.
                        let worst = g
                            .to_f64_vec()
                            .iter()
                            .zip(c.to_f64_vec())
                            .map(|(g, c)| (g - c).abs() - 1e-4 * c.abs())
                            .fold(0.0, f64::max);
                        assert!(worst <= 2.5e-3, "{name} step 1: {pname} differs by {worst}");
                    }
                }
                if step == 50 {
                    // 50 Adam steps amplify those differences: compare at the scale of the
                    // starting loss (the trained loss is a small fraction of it).
                    assert!(
                        (got - want).abs() <= 5e-3 * first,
                        "{name} step 50: loss {got} on gpu, {want} on cpu (first {first})"
                    );
                }
            }
            let t = gpu.exe.device_transfers().unwrap();
            // The state went up once (each tensor at most once; it is read back only for the
            // comparison after step 1).
            let state_bytes: u64 = cpu
                .exe
                .state()
                .snapshot()
                .iter()
                .map(|(_, a)| (a.dtype().size_bytes().max(4) * a.len()) as u64)
                .sum();
            assert!(t.state_upload_bytes <= state_bytes, "{name}: {t:?}");
        }
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
