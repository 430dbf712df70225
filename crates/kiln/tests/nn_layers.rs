//! `kiln::nn`: default initialisation follows PyTorch's distributions and bounds and is
//! reproducible per seed; layer outputs have PyTorch's shapes (symbolic batch included);
//! small forwards equal hand-computed values; misuse is a diagnostic at the caller.

use kiln::nn::{
    AvgPool2d, Conv2d, Dropout, Embedding, Flatten, Gelu, Gru, LayerNorm, Linear, Lstm, MaxPool2d,
    Module, Relu, RnnConfig, Sequential, Sigmoid, Tanh, TimeLoop, gru_cell, init,
};
use kiln::{Array, ConvOpts, DType, Graph};

fn values(g: &Graph, name: &str) -> Vec<f64> {
    g.param_value(name)
        .unwrap_or_else(|| panic!("{name} has no value"))
        .to_f64_vec()
}

/// Asserts `v` looks like `U(-b, b)`: in range, mean ~0, variance ~b²/3.
fn assert_uniform(what: &str, v: &[f64], b: f64) {
    assert!(v.iter().all(|x| x.abs() <= b), "{what}: outside ±{b}");
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 0.05 * b, "{what}: mean {mean}");
    assert!(
        (var / (b * b / 3.0) - 1.0).abs() < 0.05,
        "{what}: var {var}"
    );
    let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(max > 0.98 * b, "{what}: the range is used ({max} of {b})");
}

#[test]
fn linear_and_conv_use_kaiming_uniform_bounds() {
    let g = Graph::new();
    let fc = Linear::new(&g, "fc1", 784, 128, 0);
    let b = 1.0 / 784f64.sqrt();
    assert_uniform("fc1.weight", &values(&g, "fc1.weight"), b);
    assert!(values(&g, "fc1.bias").iter().all(|x| x.abs() <= b));
    assert_eq!(fc.weight().shape().to_string(), "[128, 784]");
    let conv = ConvOpts {
        groups: 2,
        ..ConvOpts::default()
    };
    let c = Conv2d::new(&g, "conv", 64, 32, [3, 5], conv, 1);
    let b = 1.0 / (32.0f64 * 15.0).sqrt();
    assert_uniform("conv.weight", &values(&g, "conv.weight"), b);
    assert_eq!(c.weight().shape().to_string(), "[32, 32, 3, 5]");
    assert_eq!(init::fan_in_bound(0), 0.0);
    assert_eq!(init::fan_in_bound(4), 0.5);
}

#[test]
fn recurrent_layers_use_one_over_sqrt_hidden() {
    let g = Graph::new();
    let lstm = Lstm::new(&g, "lstm", RnnConfig::new(28, 100).num_layers(2), 3);
    let b = 0.1;
    for (name, _) in lstm.parameters() {
        let v = values(&g, &name);
        if v.len() > 10_000 {
            assert_uniform(&name, &v, b);
        } else {
            assert!(v.iter().all(|x| x.abs() <= b), "{name}");
        }
    }
    let gru = Gru::new(&g, "gru", RnnConfig::new(10, 25), 3);
    let names: Vec<String> = gru.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "gru.weight_ih_l0",
            "gru.weight_hh_l0",
            "gru.bias_ih_l0",
            "gru.bias_hh_l0"
        ]
    );
    assert!(
        values(&g, "gru.weight_hh_l0")
            .iter()
            .all(|x| x.abs() <= 0.2)
    );
}

#[test]
fn embedding_is_standard_normal_and_layer_norm_starts_at_identity() {
    let g = Graph::new();
    Embedding::new(&g, "emb", 1000, 20, 5);
    let v = values(&g, "emb.weight");
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    assert!(
        mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
        "{mean} {var}"
    );
    LayerNorm::new(&g, "ln", &[3, 4]);
    assert_eq!(values(&g, "ln.weight"), vec![1.0; 12]);
    assert_eq!(values(&g, "ln.bias"), vec![0.0; 12]);
}

#[test]
fn initialisation_is_reproducible_per_seed() {
    let g1 = Graph::new();
    let g2 = Graph::new();
    Linear::new(&g1, "a", 10, 10, 7);
    Linear::new(&g2, "a", 10, 10, 7);
    Linear::new(&g2, "b", 10, 10, 8);
    assert_eq!(values(&g1, "a.weight"), values(&g2, "a.weight"));
    assert_ne!(values(&g2, "a.weight"), values(&g2, "b.weight"));
    assert_ne!(values(&g2, "a.weight")[..10], values(&g2, "a.bias")[..]);
    let key = init::param_key(7, 0);
    let direct =
        init::uniform(7, 0, &[10, 10], 1.0 / 10f64.sqrt()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&g1, "a.weight"), direct.to_f64_vec());
    assert_eq!(
        key,
        kiln::random::host_fold_in(kiln::random::key_data(7), 0)
    );
}

#[test]
fn shapes_follow_pytorch_with_a_symbolic_batch() {
    let g = Graph::new();
    let n = g.sym("N");
    let img = g.input("img", DType::F32, (&n, 3, 32, 32));
    let conv = Conv2d::new(
        &g,
        "c",
        3,
        8,
        [3, 3],
        ConvOpts {
            stride: [2, 2],
            padding: [1, 1],
            ..ConvOpts::default()
        },
        0,
    );
    let h = conv.forward(&img);
    assert_eq!(h.shape().to_string(), "[N, 8, 16, 16]");
    assert_eq!(
        MaxPool2d::new([2, 2]).forward(&h).shape().to_string(),
        "[N, 8, 8, 8]"
    );
    let p = AvgPool2d::new([3, 3])
        .stride([1, 1])
        .padding([1, 1])
        .forward(&h);
    assert_eq!(p.shape().to_string(), "[N, 8, 16, 16]");
    assert_eq!(
        Flatten::default().forward(&h).shape().to_string(),
        "[N, 2048]"
    );
    let seq = g.input("seq", DType::F32, (&n, 7, 5));
    let lstm = Lstm::new(
        &g,
        "l",
        RnnConfig::new(5, 6).num_layers(3).batch_first(true),
        0,
    );
    let (out, (hn, cn)) = lstm.forward_with_state(&seq, None);
    assert_eq!(
        (
            out.shape().to_string(),
            hn.shape().to_string(),
            cn.shape().to_string()
        ),
        ("[N, 7, 6]".into(), "[3, N, 6]".into(), "[3, N, 6]".into())
    );
    let tm = g.input("tm", DType::F32, (7, &n, 5));
    let gru = Gru::new(&g, "g", RnnConfig::new(5, 4), 0);
    let (out, hn) = gru.forward_with_state(&tm, None);
    assert_eq!(
        (out.shape().to_string(), hn.shape().to_string()),
        ("[7, N, 4]".into(), "[1, N, 4]".into())
    );
    let idx = g.input("idx", DType::I64, (&n, 9));
    let emb = Embedding::new(&g, "e", 100, 16, 0);
    assert_eq!(emb.forward(&idx).shape().to_string(), "[N, 9, 16]");
    g.check().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn small_forwards_equal_hand_computed_values() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [1, 2]);
    let fc = Linear::new(&g, "fc", 2, 1, 0);
    g.set_param(
        "fc.weight",
        Array::from_f32(&[1, 2], vec![2.0, -1.0]).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    g.set_param(
        "fc.bias",
        Array::from_f32(&[1], vec![0.5]).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let model = Sequential::new().push(fc).push(Relu);
    let y = model.forward(&x);
    let idx = g.input("idx", DType::I64, [3]);
    let emb = Embedding::new(&g, "emb", 3, 2, 0);
    g.set_param(
        "emb.weight",
        Array::from_f32(&[3, 2], vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0])
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = emb.forward(&idx);
    let xv = Array::from_f32(&[1, 2], vec![3.0, 4.0]).unwrap_or_else(|e| panic!("{e}"));
    let iv = Array::from_i64(&[3], vec![2, 0, 2]).unwrap_or_else(|e| panic!("{e}"));
    let out = kiln::eval(&[&y, &e], &[("x", &xv), ("idx", &iv)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out[0].as_f32().ok(), Some(&[2.5f32][..]));
    assert_eq!(
        out[1].as_f32().ok(),
        Some(&[20.0f32, 21.0, 0.0, 1.0, 20.0, 21.0][..])
    );
    // One GRU step with H = 1 and all weights 0 except the candidate: r = z = 0.5,
    // n = tanh(x + 0.5 * 0) = tanh(x), h' = 0.5 * tanh(x) + 0.5 * h.
    let gx = g.input("gx", DType::F32, [1, 1]);
    let gh = g.input("gh", DType::F32, [1, 1]);
    let w_ih =
        g.constant(Array::from_f32(&[3, 1], vec![0.0, 0.0, 1.0]).unwrap_or_else(|e| panic!("{e}")));
    let w_hh = g.constant(Array::zeros(DType::F32, &[3, 1]).unwrap_or_else(|e| panic!("{e}")));
    let h1 = gru_cell(&gx, &gh, &w_ih, &w_hh, None, None);
    let xv = Array::from_f32(&[1, 1], vec![0.7]).unwrap_or_else(|e| panic!("{e}"));
    let hv = Array::from_f32(&[1, 1], vec![0.2]).unwrap_or_else(|e| panic!("{e}"));
    let out = kiln::eval(&[&h1], &[("gx", &xv), ("gh", &hv)]).unwrap_or_else(|e| panic!("{e}"));
    let want = 0.5 * 0.7f64.tanh() + 0.5 * 0.2;
    assert!((out[0].to_f64_vec()[0] - want).abs() < 1e-6);
}

#[test]
fn activations_are_modules_without_parameters() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let model = Sequential::new()
        .push(Tanh)
        .push(Sigmoid)
        .push(Gelu)
        .push(Relu);
    assert_eq!(model.len(), 4);
    assert!(model.parameters().is_empty());
    let y = model.forward(&x);
    let xv = Array::from_f32(&[3], vec![-1.0, 0.0, 2.0]).unwrap_or_else(|e| panic!("{e}"));
    let got = kiln::eval(&[&y], &[("x", &xv)]).unwrap_or_else(|e| panic!("{e}"));
    for (i, &v) in [-1.0f64, 0.0, 2.0].iter().enumerate() {
        let s = 1.0 / (1.0 + (-v.tanh()).exp());
        let want = (0.5 * s * (1.0 + kiln_interp::erf(s / 2f64.sqrt()))).max(0.0);
        assert!((got[0].to_f64_vec()[i] - want).abs() < 1e-6);
    }
}

#[test]
fn sequential_collects_buffers_and_switches_dropout_off() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2, 4]);
    let mut model = Sequential::new()
        .push(Linear::new(&g, "0", 4, 4, 1))
        .push(Dropout::new(&g, "1", 0.5, 2))
        .push(Linear::new(&g, "2", 4, 1, 3));
    let buffers: Vec<String> = model.buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers, ["1.rng_counter"]);
    assert_eq!(
        g.param_value("1.rng_counter").map(|v| v.dtype()),
        Some(DType::U32)
    );
    let train = model.forward(&x);
    model.set_training(false);
    let eval = model.forward(&x);
    let xv = Array::from_f32(&[2, 4], vec![1.0; 8]).unwrap_or_else(|e| panic!("{e}"));
    let out = kiln::eval(&[&train, &eval], &[("x", &xv)]).unwrap_or_else(|e| panic!("{e}"));
    let direct = {
        let h = x.linear(
            &g.param("0.weight", DType::F32, [4, 4]),
            Some(&g.param("0.bias", DType::F32, [4])),
        );
        h.linear(
            &g.param("2.weight", DType::F32, [1, 4]),
            Some(&g.param("2.bias", DType::F32, [1])),
        )
    };
    let d = kiln::eval(&[&direct], &[("x", &xv)]).unwrap_or_else(|e| panic!("{e}"));
    assert!(out[1].bit_eq(&d[0]), "evaluation mode skips dropout");
    assert!(!out[0].bit_eq(&d[0]), "training mode drops units");
}

#[test]
fn misuse_is_a_diagnostic_at_the_caller() {
    let g = Graph::new();
    let lstm = Lstm::new(&g, "l", RnnConfig::new(5, 6).num_layers(2), 0);
    let flat = g.input("flat", DType::F32, [3, 5]);
    let line = line!() + 1;
    let out = lstm.forward(&flat);
    assert!(out.is_poisoned());
    let d = g.diagnostics();
    assert_eq!((d.len(), d[0].op, d[0].loc.line), (1, "lstm", line));
    assert_eq!(d[0].message, "lstm: input must be [T, N, F], got [3, 5]");

    let g = Graph::new();
    let lstm = Lstm::new(&g, "l", RnnConfig::new(5, 6).num_layers(2), 0);
    let x = g.input("x", DType::F32, [4, 3, 7]);
    lstm.forward(&x);
    assert_eq!(
        g.diagnostics()[0].message,
        "lstm: input [4, 3, 7] has 7 features per step, the layer expects 5"
    );

    let g = Graph::new();
    let lstm = Lstm::new(&g, "l", RnnConfig::new(5, 6).num_layers(2), 0);
    let x = g.input("x", DType::F32, [4, 3, 5]);
    let h0 = g.input("h0", DType::F32, [1, 3, 6]);
    let (out, _) = lstm.forward_with_state(&x, Some((&h0, &h0)));
    assert!(out.is_poisoned());
    assert_eq!(
        g.diagnostics()[0].message,
        "lstm: initial h must be [2, 3, 6] ([layers, N, H]), got [1, 3, 6]"
    );

    // A symbolic time axis is a scan; unrolling needs a known one.
    let g = Graph::new();
    let x = g.input("x", DType::F32, (g.sym("T"), 3, 5));
    let scanned = Gru::new(&g, "s", RnnConfig::new(5, 6), 0).forward(&x);
    assert_eq!(scanned.shape().to_string(), "[T, 3, 6]");
    let gru = Gru::new(&g, "g", RnnConfig::new(5, 6).time_loop(TimeLoop::Unroll), 0);
    gru.forward(&x);
    assert_eq!(
        g.diagnostics()[0].message,
        "gru: an unrolled layer needs a known non-zero number of time steps, got [T, 3, 5] \
         ([T, N, F]); use TimeLoop::Scan for a symbolic one"
    );

    let g = Graph::new();
    let lstm = Lstm::new(&g, "l", RnnConfig::new(5, 6).batch_first(true), 0);
    let x = g.input("x", DType::F32, (g.sym("N"), g.sym("T"), 5));
    let bad = g.input("lengths", DType::F32, vec![g.sym("N")]);
    let line = line!() + 1;
    let (out, (h, _)) = lstm.forward_packed(&x, &bad, None);
    assert!(out.is_poisoned() && h.is_poisoned());
    let d = g.diagnostics();
    assert_eq!((d.len(), d[0].op, d[0].loc.line), (1, "lstm", line));
    assert_eq!(
        d[0].message,
        "lstm: lengths must be integers [N] = [N] (one per sequence), got f32[N]"
    );
    let short = g.input("short", DType::I64, [3]);
    lstm.forward_packed(&x, &short, None);
    assert_eq!(
        g.diagnostics()[1].message,
        "lstm: lengths must be integers [N] = [N] (one per sequence), got i64[3]"
    );

    let g = Graph::new();
    let bi = Lstm::new(&g, "b", RnnConfig::new(5, 6).bidirectional(true), 0);
    let x = g.input("x", DType::F32, [4, 3, 5]);
    let h0 = g.input("h0", DType::F32, [1, 3, 6]);
    bi.forward_with_state(&x, Some((&h0, &h0)));
    assert_eq!(
        g.diagnostics()[0].message,
        "lstm: initial h must be [2, 3, 6] ([2·layers, N, H]), got [1, 3, 6]"
    );

    let g = Graph::new();
    let bad = ConvOpts {
        groups: 3,
        ..ConvOpts::default()
    };
    let c = Conv2d::new(&g, "c", 4, 6, [3, 3], bad, 0);
    assert!(c.parameters().is_empty());
    assert_eq!(
        g.diagnostics()[0].message,
        "Conv2d `c`: in_channels 4 and out_channels 6 must be divisible by groups 3"
    );

    let g = Graph::new();
    let emb = Embedding::new(&g, "e", 4, 2, 0);
    let f = g.input("f", DType::F32, [3]);
    assert!(emb.forward(&f).is_poisoned());
    assert_eq!(
        g.diagnostics()[0].message,
        "embedding: indices must be integers, got f32[3]"
    );

    let g = Graph::new();
    let ln = LayerNorm::new(&g, "ln", &[4]);
    let x = g.input("x", DType::F32, [2, 5]);
    assert!(ln.forward(&x).is_poisoned());
    assert_eq!(
        g.diagnostics()[0].message,
        "layer_norm: input [2, 5] does not end with the normalized shape [4]"
    );
    let ok = LayerNorm::no_affine(&[5]).eps(1e-3).forward(&x);
    assert!(!ok.is_poisoned() && ln.parameters().len() == 2);
}
