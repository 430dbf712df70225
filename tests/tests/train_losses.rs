//! `kiln::loss` against PyTorch (`fixtures/golden/train/manifest.json`, `losses` section):
//! every loss under `mean`, `sum` and `none` reductions, and the gradient of the mean loss
//! with respect to its input (through `kiln::grad`), within the golden f32 tolerance.
//! Cross-entropy is checked with label smoothing 0, 0.1 and 0.25 and with a spatial
//! `[N, C, d]` input; BCE-with-logits includes logits 0, ±30 and 100.

use crate::train_support;

use kiln::loss::{
    self, Reduction, binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss,
};
use kiln::{Array, Graph, Tensor};
use kiln_tests::golden::assert_close;
use train_support::{entry, manifest, tensors};

fn apply(e: &serde_json::Value, input: &Tensor, target: &Tensor, r: Reduction) -> Tensor {
    match e["fn"].as_str().unwrap_or_default() {
        "cross_entropy" => cross_entropy(
            input,
            target,
            r,
            e["args"]["label_smoothing"].as_f64().unwrap_or(0.0),
        ),
        "nll_loss" => nll_loss(input, target, r),
        "mse_loss" => mse_loss(input, target, r),
        "l1_loss" => l1_loss(input, target, r),
        "binary_cross_entropy_with_logits" => binary_cross_entropy_with_logits(input, target, r),
        other => panic!("unknown loss {other}"),
    }
}

#[test]
fn losses_and_their_gradients_match_pytorch() {
    let cases = manifest()["losses"]
        .as_object()
        .unwrap_or_else(|| panic!("no losses"));
    assert_eq!(cases.len(), 8);
    for name in cases.keys() {
        let e = entry(&["losses", name]);
        let ins = tensors(&e["inputs"]);
        let get = |k: &str| -> &Array {
            &ins.iter()
                .find(|(n, _)| n == k)
                .unwrap_or_else(|| panic!("{name}: no {k}"))
                .1
        };
        let (xv, tv) = (get("input"), get("target"));
        let g = Graph::new();
        let x = g.input("input", xv.dtype(), xv.shape());
        let t = g.input("target", tv.dtype(), tv.shape());
        let outs: Vec<(&str, Tensor)> = [
            ("mean", Reduction::Mean),
            ("sum", Reduction::Sum),
            ("none", Reduction::None),
        ]
        .into_iter()
        .map(|(k, r)| (k, apply(e, &x, &t, r)))
        .collect();
        let dx = kiln::grad(&outs[0].1, &[&x]).remove(0);
        g.check().unwrap_or_else(|err| panic!("{name}: {err}"));
        let mut refs: Vec<&Tensor> = outs.iter().map(|(_, t)| t).collect();
        refs.push(&dx);
        let got = kiln::eval(&refs, &[("input", xv), ("target", tv)])
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let want = tensors(&e["outputs"]);
        for ((k, _), got) in outs.iter().zip(&got) {
            let w = &want
                .iter()
                .find(|(n, _)| n == k)
                .unwrap_or_else(|| panic!("{name}: no {k}"))
                .1;
            assert_close(&format!("{name} {k}"), got, w);
        }
        let grads = tensors(&e["grads"]);
        assert_close(&format!("{name} d mean / d input"), &got[3], &grads[0].1);
    }
}

#[test]
fn bce_with_logits_gradient_at_zero_is_sigmoid_minus_target() {
    // d/dx [softplus(x) - x y] = sigmoid(x) - y = 0.5 - y at x = 0.
    let g = Graph::new();
    let x = g.input("x", kiln::DType::F32, [2]);
    let y = g.input("y", kiln::DType::F32, [2]);
    let l = binary_cross_entropy_with_logits(&x, &y, loss::Reduction::Sum);
    let dx = kiln::grad(&l, &[&x]).remove(0);
    let xv = Array::from_f32(&[2], vec![0.0, 0.0]).unwrap_or_else(|e| panic!("{e}"));
    let yv = Array::from_f32(&[2], vec![1.0, 0.25]).unwrap_or_else(|e| panic!("{e}"));
    let out = kiln::eval(&[&l, &dx], &[("x", &xv), ("y", &yv)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out[1].as_f32().ok(), Some(&[-0.5f32, 0.25][..]));
    let ln2 = std::f32::consts::LN_2;
    assert_eq!(out[0].as_f32().ok(), Some(&[2.0 * ln2][..]));
}
