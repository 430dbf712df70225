//! The three reference models (SimpleNN, a 2-layer LSTM, LeNet) built directly in kiln-ir
//! with a symbolic batch `N`, evaluated at batch 64 against PyTorch float64 logits
//! (fixtures/golden/models, written by fixtures/gen/gen_golden.py), and timed: the
//! interpreter must stay fast enough to be every backend's oracle.

use crate::common;

use common::{G, assert_close, golden_dir, n, read_npy};
use kiln_interp::eval;
use kiln_ir::{Array, BinaryOp, DType, Dim, NodeId, Op, Shape, UnaryOp, WindowOp};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Generous bounds: a quadratic blow-up shows as minutes, not as a few slow milliseconds.
const FAST: Duration = Duration::from_secs(5);

struct Model {
    params: HashMap<String, Array>,
    x: Array,
    logits: Array,
}

fn load(name: &str, x_shape: &[usize]) -> Model {
    let dir = golden_dir().join("models");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden_dir().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let m = &manifest["models"][name];
    let params = m["params"]
        .as_object()
        .expect("params")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                read_npy(&golden_dir().join(v["file"].as_str().expect("file"))),
            )
        })
        .collect();
    let fwd = m["forward"]
        .as_array()
        .expect("forward")
        .iter()
        .find(|f| f["batch"] == 64)
        .expect("batch-64 forward");
    let logits = read_npy(&golden_dir().join(fwd["logits"]["file"].as_str().expect("file")));
    let x = read_npy(&dir.join("x64.npy"))
        .reshaped(x_shape)
        .expect("x reshape");
    Model { params, x, logits }
}

fn run(g: &G, out: NodeId, m: &Model) -> (Array, Duration) {
    let inputs = HashMap::from([("x".to_string(), m.x.clone())]);
    let t = Instant::now();
    let mut y = eval(&g.g, &[out], &inputs, &m.params).unwrap_or_else(|e| panic!("{e}"));
    (y.remove(0), t.elapsed())
}

fn p(g: &mut G, m: &Model, name: &str) -> NodeId {
    g.param(name, &m.params[name])
}

#[test]
fn simple_nn_matches_pytorch() {
    let m = load("simple_nn", &[64, 784]);
    let mut g = G::default();
    let x = g.input("x", DType::F32, Shape(vec![n(), Dim::known(784)]));
    let (w1, b1, w2, b2) = (
        p(&mut g, &m, "fc1.weight"),
        p(&mut g, &m, "fc1.bias"),
        p(&mut g, &m, "fc2.weight"),
        p(&mut g, &m, "fc2.bias"),
    );
    let h = g.linear(x, w1, b1);
    let h = g.relu(h);
    let y = g.linear(h, w2, b2);
    let (logits, took) = run(&g, y, &m);
    eprintln!("simple_nn batch 64 (64x784 @ 784x128 matmul): {took:?}");
    assert_close(&logits, &m.logits, 1e-5, 1e-5);
    assert!(took < FAST, "simple_nn took {took:?}");
}

/// One LSTM layer over `xs` (each `[N, in]`), PyTorch gate order i, f, g, o; returns every `h`.
fn lstm_layer(g: &mut G, m: &Model, layer: usize, xs: &[NodeId]) -> Vec<NodeId> {
    let w_ih = p(g, m, &format!("lstm.weight_ih_l{layer}"));
    let w_hh = p(g, m, &format!("lstm.weight_hh_l{layer}"));
    let b_ih = p(g, m, &format!("lstm.bias_ih_l{layer}"));
    let b_hh = p(g, m, &format!("lstm.bias_hh_l{layer}"));
    let w_ih_t = g.transpose(w_ih);
    let w_hh_t = g.transpose(w_hh);
    let bias = g.bin(BinaryOp::Add, b_ih, b_hh);
    let zero = g.constant(Array::zeros(DType::F32, &[1, 128]).expect("zeros"));
    let mut h = g.add(Op::Expand(Shape(vec![n(), Dim::known(128)])), &[zero]);
    let mut c = h;
    let mut hs = Vec::new();
    for &x in xs {
        let a = g.add(Op::MatMul, &[x, w_ih_t]);
        let b = g.add(Op::MatMul, &[h, w_hh_t]);
        let gates = g.bin(BinaryOp::Add, a, b);
        let gates = g.bin(BinaryOp::Add, gates, bias);
        let gate = |g: &mut G, k: u64| g.narrow(gates, 1, 128 * k, 128 * (k + 1));
        let (i, f, gg, o) = (gate(g, 0), gate(g, 1), gate(g, 2), gate(g, 3));
        let (i, f, o) = (
            g.un(UnaryOp::Sigmoid, i),
            g.un(UnaryOp::Sigmoid, f),
            g.un(UnaryOp::Sigmoid, o),
        );
        let gg = g.un(UnaryOp::Tanh, gg);
        let fc = g.bin(BinaryOp::Mul, f, c);
        let ig = g.bin(BinaryOp::Mul, i, gg);
        c = g.bin(BinaryOp::Add, fc, ig);
        let tc = g.un(UnaryOp::Tanh, c);
        h = g.bin(BinaryOp::Mul, o, tc);
        hs.push(h);
    }
    hs
}

#[test]
fn lstm_nn_matches_pytorch() {
    let m = load("lstm_nn", &[64, 28, 28]);
    let mut g = G::default();
    let x = g.input(
        "x",
        DType::F32,
        Shape(vec![n(), Dim::known(28), Dim::known(28)]),
    );
    let xs: Vec<NodeId> = (0..28)
        .map(|t| {
            let s = g.narrow(x, 1, t, t + 1);
            g.reshape(s, Shape(vec![n(), Dim::known(28)]))
        })
        .collect();
    let h0 = lstm_layer(&mut g, &m, 0, &xs);
    let h1 = lstm_layer(&mut g, &m, 1, &h0);
    let (w, b) = (p(&mut g, &m, "fc.weight"), p(&mut g, &m, "fc.bias"));
    let y = g.linear(h1[27], w, b);
    let (logits, took) = run(&g, y, &m);
    eprintln!(
        "lstm_nn batch 64, 2 layers x 28 steps, hidden 128: {took:?} ({} nodes)",
        g.g.len()
    );
    assert_close(&logits, &m.logits, 1e-4, 1e-5);
    assert!(took < FAST, "lstm_nn took {took:?}");
}

#[test]
fn lenet_matches_pytorch() {
    let m = load("lenet", &[64, 1, 28, 28]);
    let mut g = G::default();
    let x = g.input(
        "x",
        DType::F32,
        Shape(vec![n(), Dim::known(1), Dim::known(28), Dim::known(28)]),
    );
    let conv = |g: &mut G, x: NodeId, layer: &str, pad: u64| {
        let w = p(g, &m, &format!("{layer}.weight"));
        let b = p(g, &m, &format!("{layer}.bias"));
        let oc = m.params[&format!("{layer}.bias")].len();
        let y = g.add(
            Op::Conv2d {
                stride: [1, 1],
                padding: [pad, pad],
                dilation: [1, 1],
                groups: 1,
            },
            &[x, w],
        );
        let b = g.reshape(b, Shape::known(&[1, oc, 1, 1]));
        let y = g.bin(BinaryOp::Add, y, b);
        let y = g.relu(y);
        g.add(
            Op::Window {
                op: WindowOp::Max,
                window: vec![2, 2],
                stride: vec![2, 2],
                padding: vec![(0, 0), (0, 0)],
            },
            &[y],
        )
    };
    let h = conv(&mut g, x, "conv1", 2);
    let h = conv(&mut g, h, "conv2", 0);
    let h = g.reshape(h, Shape(vec![n(), Dim::known(400)]));
    let mut h = h;
    for (layer, relu) in [("fc1", true), ("fc2", true), ("fc3", false)] {
        let (w, b) = (
            p(&mut g, &m, &format!("{layer}.weight")),
            p(&mut g, &m, &format!("{layer}.bias")),
        );
        h = g.linear(h, w, b);
        if relu {
            h = g.relu(h);
        }
    }
    let (logits, took) = run(&g, h, &m);
    eprintln!("lenet batch 64: {took:?}");
    assert_close(&logits, &m.logits, 1e-4, 1e-5);
    assert!(took < FAST, "lenet took {took:?}");
}
