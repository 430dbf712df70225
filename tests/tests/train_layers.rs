//! `kiln::nn` layers against PyTorch (`fixtures/golden/train/manifest.json`, `layers` and
//! `forward` sections): parameter names and shapes equal the `state_dict` of the same
//! PyTorch module, forwards with PyTorch's weights give PyTorch's outputs (LSTM and GRU with
//! several layers, batch-first and time-major, with and without an initial state), and the
//! reference models rebuilt from `nn` layers load the golden `state_dict`s unchanged and
//! reproduce their logits.

use crate::train_support;

use kiln::nn::{
    AvgPool2d, Conv2d, Dropout, Embedding, Flatten, Gru, LayerNorm, Linear, Lstm, MaxPool2d,
    Module, Relu, RnnConfig, Sequential,
};
use kiln::{Array, ConvOpts, DType, Graph, Tensor};
use kiln_tests::golden::{self, Tol, assert_close};
use train_support::{entry, manifest, tensor, tensors};

/// The kiln layer built for a `layers` / `forward` case, under `prefix`.
fn build(case: &str, g: &Graph, prefix: &str) -> Box<dyn Module> {
    let conv = |stride, padding, groups| ConvOpts {
        stride: [stride, stride],
        padding: [padding, padding],
        groups,
        ..ConvOpts::default()
    };
    match case {
        "linear" => Box::new(Linear::new(g, prefix, 5, 3, 1)),
        "linear_no_bias" => Box::new(Linear::no_bias(g, prefix, 5, 3, 1)),
        "conv2d" => Box::new(Conv2d::new(g, prefix, 3, 8, [3, 5], conv(2, 1, 1), 1)),
        "conv2d_groups" => Box::new(Conv2d::new(g, prefix, 4, 6, [3, 3], conv(1, 0, 2), 1)),
        "layer_norm" => Box::new(LayerNorm::new(g, prefix, &[4, 5])),
        "embedding" => Box::new(Embedding::new(g, prefix, 10, 4, 1)),
        "lstm" => Box::new(Lstm::new(
            g,
            prefix,
            RnnConfig::new(5, 6).num_layers(2).batch_first(true),
            1,
        )),
        "lstm_no_bias" => Box::new(Lstm::new(g, prefix, RnnConfig::new(5, 6).bias(false), 1)),
        "gru" => Box::new(Gru::new(g, prefix, RnnConfig::new(5, 6).num_layers(2), 1)),
        "sequential" => Box::new(
            Sequential::new()
                .push(Linear::new(g, &format!("{prefix}.0"), 4, 8, 1))
                .push(Relu)
                .push(Dropout::new(g, &format!("{prefix}.2"), 0.5, 2))
                .push(Linear::new(g, &format!("{prefix}.3"), 8, 2, 3)),
        ),
        "max_pool2d" => Box::new(MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1])),
        "avg_pool2d" => Box::new(AvgPool2d::new([2, 2])),
        other => panic!("no kiln layer for case {other}"),
    }
}

#[test]
fn parameter_names_and_shapes_equal_pytorch_state_dicts() {
    let cases = manifest()["layers"]
        .as_object()
        .unwrap_or_else(|| panic!("no layers"));
    assert_eq!(cases.len(), 10);
    for (case, e) in cases {
        let prefix = e["prefix"].as_str().unwrap_or_default();
        let g = Graph::new();
        let layer = build(case, &g, prefix);
        let got: Vec<(String, Vec<usize>)> = layer
            .parameters()
            .into_iter()
            .map(|(n, t)| (n, t.shape().as_known().unwrap_or_default()))
            .collect();
        let want: Vec<(String, Vec<usize>)> = e["names"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(e["shapes"].as_array().into_iter().flatten())
            .map(|(n, s)| {
                (
                    n.as_str().unwrap_or_default().to_string(),
                    s.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect(),
                )
            })
            .collect();
        assert_eq!(got, want, "{case}: {}", e["module"]);
        for (name, t) in layer.parameters() {
            let v = g
                .param_value(&name)
                .unwrap_or_else(|| panic!("{name} has no value"));
            assert_eq!(Some(v.shape().to_vec()), t.shape().as_known(), "{name}");
        }
        g.check().unwrap_or_else(|e| panic!("{case}: {e}"));
    }
}

/// Runs a `forward` case: `run` builds the layer on the graph and its outputs from the
/// inputs (by name); then PyTorch's weights are loaded, the inputs fed and every output
/// compared.
fn forward_case(
    case: &str,
    run: impl Fn(&Graph, &dyn Fn(&str) -> Tensor) -> Vec<(&'static str, Tensor)>,
) {
    let e = entry(&["forward", case]);
    let g = Graph::new();
    let inputs = tensors(&e["inputs"]);
    let input = |name: &str| -> Tensor {
        let (_, a) = inputs
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{case}: no input {name}"));
        g.input(name, a.dtype(), a.shape())
    };
    let outs = run(&g, &input);
    for (name, v) in tensors(&e["params"]) {
        g.set_param(&name, v)
            .unwrap_or_else(|err| panic!("{case}: {err}"));
    }
    g.check().unwrap_or_else(|err| panic!("{case}: {err}"));
    let feeds: Vec<(&str, &Array)> = inputs.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let refs: Vec<&Tensor> = outs.iter().map(|(_, t)| t).collect();
    let got = kiln::eval(&refs, &feeds).unwrap_or_else(|err| panic!("{case}: {err}"));
    let want = tensors(&e["outputs"]);
    assert_eq!(want.len(), outs.len(), "{case}: every output is checked");
    for ((name, _), got) in outs.iter().zip(&got) {
        let (_, w) = want
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{case}: no reference for {name}"));
        assert_close(&format!("{case} {name}"), got, w);
    }
}

#[test]
fn lstm_two_layers_batch_first_with_initial_state_matches_pytorch() {
    forward_case("lstm_2l_batch_first_state", |g, input| {
        let lstm = Lstm::new(
            g,
            "",
            RnnConfig::new(5, 6).num_layers(2).batch_first(true),
            1,
        );
        let (out, (h, c)) =
            lstm.forward_with_state(&input("x"), Some((&input("h0"), &input("c0"))));
        vec![("out", out), ("h_n", h), ("c_n", c)]
    });
}

#[test]
fn lstm_two_layers_batch_first_from_zero_state_matches_pytorch() {
    forward_case("lstm_2l_batch_first_zero", |g, input| {
        let lstm = Lstm::new(
            g,
            "",
            RnnConfig::new(5, 6).num_layers(2).batch_first(true),
            1,
        );
        let x = input("x");
        let (out, (h, c)) = lstm.forward_with_state(&x, None);
        assert_eq!(lstm.forward(&x).shape().to_string(), "[3, 4, 6]");
        vec![("out", out), ("h_n", h), ("c_n", c)]
    });
}

#[test]
fn lstm_time_major_without_bias_matches_pytorch() {
    forward_case("lstm_1l_time_major_no_bias", |g, input| {
        let lstm = Lstm::new(g, "", RnnConfig::new(5, 6).bias(false), 1);
        let (out, (h, c)) = lstm.forward_with_state(&input("x"), None);
        vec![("out", out), ("h_n", h), ("c_n", c)]
    });
}

#[test]
fn gru_two_layers_time_major_with_initial_state_matches_pytorch() {
    forward_case("gru_2l_time_major_state", |g, input| {
        let gru = Gru::new(g, "", RnnConfig::new(5, 6).num_layers(2), 1);
        let (out, h) = gru.forward_with_state(&input("x"), Some(&input("h0")));
        vec![("out", out), ("h_n", h)]
    });
}

#[test]
fn gru_two_layers_batch_first_from_zero_state_matches_pytorch() {
    forward_case("gru_2l_batch_first_zero", |g, input| {
        let gru = Gru::new(
            g,
            "",
            RnnConfig::new(5, 6).num_layers(2).batch_first(true),
            1,
        );
        let (out, h) = gru.forward_with_state(&input("x"), None);
        vec![("out", out), ("h_n", h)]
    });
}

#[test]
fn dense_conv_norm_embedding_and_pooling_forwards_match_pytorch() {
    for (case, input_name) in [
        ("linear", "x"),
        ("conv2d", "x"),
        ("layer_norm", "x"),
        ("embedding", "idx"),
        ("max_pool2d", "x"),
        ("avg_pool2d", "x"),
    ] {
        forward_case(case, |g, input| {
            vec![("y", build(case, g, "").forward(&input(input_name)))]
        });
    }
}

/// SimpleNN, LSTMNN and LeNet-5 rebuilt from `nn` layers load the golden `state_dict`s
/// (by name) and reproduce the golden logits.
#[test]
fn reference_models_built_from_layers_load_pytorch_weights_and_match_logits() {
    type Builder = fn(&Graph, &Tensor) -> Tensor;
    let simple: Builder = |g, x| {
        Sequential::new()
            .push(Linear::new(g, "fc1", 784, 128, 1))
            .push(Relu)
            .push(Linear::new(g, "fc2", 128, 10, 2))
            .forward(x)
    };
    let lstm: Builder = |g, x| {
        let cfg = RnnConfig::new(28, 128).num_layers(2).batch_first(true);
        let out = Lstm::new(g, "lstm", cfg, 1).forward(x);
        let last = out.slice(1, -1, 28, 1).squeeze(1);
        Linear::new(g, "fc", 128, 10, 2).forward(&last)
    };
    let lenet: Builder = |g, x| {
        let pad2 = ConvOpts {
            padding: [2, 2],
            ..ConvOpts::default()
        };
        Sequential::new()
            .push(Conv2d::new(g, "conv1", 1, 6, [5, 5], pad2, 1))
            .push(Relu)
            .push(MaxPool2d::new([2, 2]))
            .push(Conv2d::new(
                g,
                "conv2",
                6,
                16,
                [5, 5],
                ConvOpts::default(),
                2,
            ))
            .push(Relu)
            .push(MaxPool2d::new([2, 2]))
            .push(Flatten::default())
            .push(Linear::new(g, "fc1", 400, 120, 3))
            .push(Relu)
            .push(Linear::new(g, "fc2", 120, 84, 4))
            .push(Relu)
            .push(Linear::new(g, "fc3", 84, 10, 5))
            .forward(x)
    };
    for (name, build) in [("simple_nn", simple), ("lstm_nn", lstm), ("lenet", lenet)] {
        let m = golden::model(name).unwrap_or_else(|e| panic!("{e}"));
        for f in &m.forward {
            let g = Graph::new();
            let mut shape: Vec<kiln::Dim> = vec![g.sym("N")];
            shape.extend(f.x_shape[1..].iter().map(|&d| kiln::Dim::from(d)));
            let x = g.input("x", DType::F32, shape);
            let logits = build(&g, &x);
            g.check().unwrap_or_else(|e| panic!("{name}: {e}"));
            let declared: Vec<String> = g
                .ir()
                .parameters()
                .iter()
                .map(|(_, n)| n.to_string())
                .collect();
            let golden_names: Vec<String> = m.params.keys().cloned().collect();
            let mut sorted = declared.clone();
            sorted.sort();
            assert_eq!(sorted, golden_names, "{name}: same state_dict keys");
            golden::load_params(&g, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let xv = golden::model_input(&f.x_shape).unwrap_or_else(|e| panic!("{e}"));
            let got = kiln::eval(&[&logits], &[("x", &xv)]).unwrap_or_else(|e| panic!("{e}"));
            let want = f.logits.load().unwrap_or_else(|e| panic!("{e}"));
            if let Err(e) = golden::compare(&got[0], &want, Some(Tol::F32)) {
                panic!("{name} batch {}: {e}", f.batch);
            }
        }
    }
}

#[test]
fn initial_values_follow_the_documented_generator() {
    // Parameter k of a layer seeded s is jax.random.uniform(fold_in(PRNGKey(s), k), ...).
    let g = Graph::new();
    let fc = Linear::new(&g, "fc", 5, 3, 3);
    let params = fc.parameters();
    for ((name, _), case) in params
        .iter()
        .zip(["init_linear_5_3_seed3_weight", "init_linear_5_3_seed3_bias"])
    {
        let got = g.param_value(name).unwrap_or_else(|| panic!("{name}"));
        let want = tensor(&entry(&["random", case])["out"]);
        assert!(got.bit_eq(&want), "{name}: {got:?} vs JAX {want:?}");
    }
    let emb = Embedding::new(&g, "emb", 10, 4, 9);
    let got = g
        .param_value(&emb.parameters()[0].0)
        .unwrap_or_else(|| panic!("emb"));
    let want = tensor(&entry(&["random", "init_embedding_10_4_seed9"])["out"]);
    train_support::assert_within(
        "embedding init vs jax.random.normal",
        &got,
        &want,
        Tol {
            rtol: 1e-5,
            atol_ratio: 1e-6,
        },
    );
}
