//! Recurrent layers on scan against PyTorch (`fixtures/golden/rnn`, written by
//! `fixtures/gen/gen_rnn.py`): packed sequences (lengths [28, 17, 3, 1]) through LSTM and
//! GRU, bidirectional, with and without an initial state, outputs and the gradients of
//! every parameter, input and initial state; and LSTMNN compiled once with a symbolic
//! sequence length `T`, run at T = 1, 28 and 300 on `interp` and `cpu`, logits, loss and
//! every parameter gradient. Tolerance: the golden rule of `fixtures/golden/manifest.json`
//! (`|got - want| <= 1e-5 |want| + 1e-6 max|want|`, f32).

use kiln::loss::{Reduction, cross_entropy};
use kiln::models::lstm_nn_with;
use kiln::nn::{Gru, Lstm, Module, RnnConfig, TimeLoop};
use kiln::{Array, Backend, DType, Graph, Tensor};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden")
}

fn manifest() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| {
        let path = golden_dir().join("rnn/manifest.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// The array of a manifest tensor entry `{"file", "dtype", "shape"}`.
fn load(entry: &Value) -> Array {
    let file = entry["file"].as_str().expect("file");
    let a = kiln::npy::read(golden_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    assert_eq!(a.shape(), &shape[..], "{file}");
    a
}

/// `|got - want| <= rtol |want| + atol_ratio max|want|` for every element.
#[track_caller]
fn assert_within(what: &str, got: &Array, want: &Array, rtol: f64, atol_ratio: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let max = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst: Option<(usize, f64)> = None;
    let mut bad = 0;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let allowed = rtol * b.abs() + atol_ratio * max;
        let d = (a - b).abs();
        if d > allowed || d.is_nan() {
            bad += 1;
            let score = d / allowed.max(f64::MIN_POSITIVE);
            if worst.is_none_or(|(_, s)| score > s) {
                worst = Some((i, score));
            }
        }
    }
    if let Some((i, score)) = worst {
        panic!(
            "{what}: {bad} of {} elements out of tolerance; worst at {i}: got {}, want {} ({score:.1}x the allowed error)",
            w.len(),
            g[i],
            w[i]
        );
    }
}

/// Tensors with their names.
type Named = Vec<(String, Tensor)>;

fn config(case: &Value) -> RnnConfig {
    let c = &case["config"];
    let u = |k: &str| c[k].as_u64().expect(k) as usize;
    let b = |k: &str| c[k].as_bool().expect(k);
    RnnConfig::new(u("input_size"), u("hidden_size"))
        .num_layers(u("num_layers"))
        .batch_first(b("batch_first"))
        .bidirectional(b("bidirectional"))
}

/// Builds the layer case `name` in `time_loop` mode with symbolic `T` and `N`, compiles
/// its outputs and every gradient once per backend (`interp` and `cpu`), and compares
/// with PyTorch.
fn check_layer_case(name: &str, time_loop: TimeLoop) {
    let both = [Backend::Interp, Backend::Cpu];
    check_layer_case_on(name, time_loop, &both, (1e-5, 1e-6), true);
}

/// [`check_layer_case`] on `backends` within `(rtol, atol_ratio)`, with or without the
/// gradients.
fn check_layer_case_on(
    name: &str,
    time_loop: TimeLoop,
    backends: &[Backend],
    tol: (f64, f64),
    with_grads: bool,
) {
    let case = &manifest()["layers"][name];
    let cfg = config(case).time_loop(time_loop);
    let inputs = case["inputs"].as_object().expect("inputs");
    let feeds: Vec<(String, Array)> = inputs.iter().map(|(k, v)| (k.clone(), load(v))).collect();
    let g = Graph::new();
    // Time and batch are symbols, except that an unrolled layer needs a known time axis.
    let x_shape = feeds[feeds.iter().position(|(k, _)| k == "x").expect("x")]
        .1
        .shape()
        .to_vec();
    let (t_axis, n_axis) = if cfg.batch_first { (1, 0) } else { (0, 1) };
    let mut dims: Vec<kiln::Dim> = vec![kiln::Dim::from(cfg.input_size); 3];
    dims[n_axis] = g.sym("N");
    dims[t_axis] = match time_loop {
        TimeLoop::Scan => g.sym("T"),
        TimeLoop::Unroll => kiln::Dim::from(x_shape[t_axis]),
    };
    let x = g.input("x", DType::F32, dims);
    let n = g.sym("N");
    let state_shape = (
        cfg.num_layers * cfg.directions(),
        n.clone(),
        cfg.hidden_size,
    );
    let lengths = inputs
        .contains_key("lengths")
        .then(|| g.input("lengths", DType::I64, vec![n.clone()]));
    let h0 = inputs
        .contains_key("h0")
        .then(|| g.input("h0", DType::F32, state_shape.clone()));
    let c0 = inputs
        .contains_key("c0")
        .then(|| g.input("c0", DType::F32, state_shape.clone()));
    let kind = case["kind"].as_str().expect("kind");
    let (params, outs): (Named, Vec<(&str, Tensor)>) = if kind == "lstm" {
        let lstm = Lstm::new(&g, "", cfg, 0);
        let state = h0.as_ref().zip(c0.as_ref());
        let (out, (h, c)) = match &lengths {
            Some(l) => lstm.forward_packed(&x, l, state),
            None => lstm.forward_with_state(&x, state),
        };
        (
            lstm.parameters(),
            vec![("out", out), ("h_n", h), ("c_n", c)],
        )
    } else {
        let gru = Gru::new(&g, "", cfg, 0);
        let (out, h) = match &lengths {
            Some(l) => gru.forward_packed(&x, l, h0.as_ref()),
            None => gru.forward_with_state(&x, h0.as_ref()),
        };
        (gru.parameters(), vec![("out", out), ("h_n", h)])
    };
    let golden_params = case["params"].as_object().expect("params");
    let declared: Vec<&String> = params.iter().map(|(k, _)| k).collect();
    let want_names: Vec<&String> = golden_params.keys().collect();
    let mut sorted = declared.clone();
    sorted.sort();
    assert_eq!(sorted, want_names, "{name}: the state_dict names");
    for (k, v) in golden_params {
        g.set_param(k, load(v))
            .unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    let mut loss = g.scalar(0.0, DType::F32);
    let mut feeds = feeds;
    for (k, t) in &outs {
        let name = format!("r_{k}");
        let r = g.input(&name, DType::F32, t.shape());
        if with_grads {
            feeds.push((name, load(&case["loss_weights"][*k])));
        }
        loss = loss + (t * &r).sum_all();
    }
    let mut wrt: Named = if with_grads {
        params.clone()
    } else {
        Vec::new()
    };
    if with_grads {
        wrt.push(("x".into(), x.clone()));
        wrt.extend(h0.iter().map(|t| ("h0".to_string(), t.clone())));
        wrt.extend(c0.iter().map(|t| ("c0".to_string(), t.clone())));
    }
    let wrt_refs: Vec<&Tensor> = wrt.iter().map(|(_, t)| t).collect();
    let grads = kiln::grad(&loss, &wrt_refs);
    g.check().unwrap_or_else(|e| panic!("{name}: {e}"));
    let grad_names: Vec<String> = wrt.iter().map(|(k, _)| format!("grad {k}")).collect();
    let mut named: Vec<(&str, &Tensor)> = outs.iter().map(|(k, t)| (*k, t)).collect();
    named.extend(grad_names.iter().map(String::as_str).zip(&grads));
    let feed_refs: Vec<(&str, &Array)> = feeds.iter().map(|(k, a)| (k.as_str(), a)).collect();
    for &backend in backends {
        let mut exe =
            kiln::compile(&named, backend).unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
        let got = exe
            .run(&feed_refs)
            .unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
        assert_eq!(got.len(), named.len(), "{name} on {backend}");
        for (k, a) in &got {
            let want = if let Some(p) = k.strip_prefix("grad ") {
                load(&case["grads"][p])
            } else {
                load(&case["outputs"][k.as_str()])
            };
            let what = format!("{name} ({time_loop:?}) on {backend}: {k}");
            assert_within(&what, a, &want, tol.0, tol.1);
        }
    }
}

#[test]
fn packed_lstm_with_initial_state_matches_pytorch() {
    check_layer_case("lstm_packed", TimeLoop::Scan);
}

#[test]
fn packed_bidirectional_batch_first_lstm_matches_pytorch() {
    check_layer_case("lstm_packed_bidir", TimeLoop::Scan);
}

#[test]
fn bidirectional_lstm_without_lengths_matches_pytorch() {
    check_layer_case("lstm_bidir", TimeLoop::Scan);
}

#[test]
fn packed_gru_with_initial_state_matches_pytorch() {
    check_layer_case("gru_packed", TimeLoop::Scan);
}

#[test]
fn packed_bidirectional_gru_matches_pytorch() {
    check_layer_case("gru_packed_bidir", TimeLoop::Scan);
}

#[test]
fn unrolled_layers_match_pytorch_too() {
    for case in ["lstm_packed_bidir", "gru_packed"] {
        check_layer_case(case, TimeLoop::Unroll);
    }
}

/// The `gpu` backend runs the scanned layers too (a bidirectional LSTM over its whole
/// sequence). Its transcendentals are not correctly rounded (docs/gpu.md, "Accuracy"),
/// hence rel 1e-4 + 1e-5 max|want| over the steps of two layers. Without a GPU adapter
/// there is nothing to run (the reason is printed).
#[test]
fn scanned_layers_match_pytorch_on_gpu() {
    if !Backend::available().contains(&Backend::Gpu) {
        eprintln!("no GPU adapter: the scanned layers were not run on gpu");
        return;
    }
    for case in ["lstm_bidir", "gru_packed"] {
        check_layer_case_on(case, TimeLoop::Scan, &[Backend::Gpu], (1e-4, 1e-5), true);
    }
}

/// LSTMNN with symbolic `N` and `T`, compiled once per backend (logits, loss and every
/// parameter gradient), run at every sequence length of the manifest.
#[test]
fn lstm_nn_compiled_once_runs_t_1_28_300_and_matches_pytorch() {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = lstm_nn_with(&g, &n, g.sym("T"), TimeLoop::Scan);
    let labels = g.input("labels", DType::I64, vec![n]);
    let loss = cross_entropy(&logits, &labels, Reduction::Mean, 0.0);
    let ir = g.ir();
    let names: Vec<String> = ir.parameters().iter().map(|(_, n)| n.to_string()).collect();
    let params: Vec<Tensor> = names
        .iter()
        .map(|n| {
            let id = ir
                .parameters()
                .iter()
                .find(|(_, m)| m == n)
                .expect("param")
                .0;
            g.param(n, DType::F32, ir.node(id).shape.clone())
        })
        .collect();
    let golden = &manifest()["lstm_nn"]["steps"];
    let some = golden["28"]["grads"].as_object().expect("grads");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        some.keys().cloned().collect::<Vec<_>>(),
        "state_dict names"
    );
    let dir = golden_dir().join("models/lstm_nn");
    for name in &names {
        let v = kiln::npy::read(dir.join(format!("{name}.npy"))).expect("weights");
        g.set_param(name, v).expect("set_param");
    }
    let refs: Vec<&Tensor> = params.iter().collect();
    let grads = kiln::grad(&loss, &refs);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    let grad_names: Vec<String> = names.iter().map(|n| format!("grad {n}")).collect();
    let mut named: Vec<(&str, &Tensor)> = vec![("logits", &logits), ("loss", &loss)];
    named.extend(grad_names.iter().map(String::as_str).zip(&grads));
    // The gpu runs it too where an adapter exists, within its transcendental tolerance
    // (docs/gpu.md, "Accuracy"): rel 1e-4 + 1e-4 max|want| over up to 300 steps.
    let mut backends = vec![
        (Backend::Interp, (1e-5, 1e-6)),
        (Backend::Cpu, (1e-5, 1e-6)),
    ];
    if Backend::available().contains(&Backend::Gpu) {
        backends.push((Backend::Gpu, (1e-4, 1e-4)));
    }
    for (backend, (rtol, atol_ratio)) in backends {
        let assert_close = |what: &str, got: &Array, want: &Array| {
            assert_within(what, got, want, rtol, atol_ratio)
        };
        let mut exe = kiln::compile(&named, backend).unwrap_or_else(|e| panic!("{e}"));
        for steps in ["1", "28", "300"] {
            let c = &golden[steps];
            let shape: Vec<usize> = c["x_shape"]
                .as_array()
                .expect("x_shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let x = load(&c["x"]).reshaped(&shape).expect("reshape");
            let y = load(&c["labels"]);
            let got = exe
                .run(&[("x", &x), ("labels", &y)])
                .unwrap_or_else(|e| panic!("T={steps} on {backend}: {e}"));
            let what = |k: &str| format!("LSTMNN T={steps} on {backend}: {k}");
            assert_close(&what("logits"), &got[0].1, &load(&c["logits"]));
            assert_close(&what("loss"), &got[1].1, &load(&c["loss"]));
            for (name, (_, a)) in names.iter().zip(&got[2..]) {
                assert_close(&what(name), a, &load(&c["grads"][name.as_str()]));
            }
        }
    }
}
