//! Reverse mode on the reference models: the gradient of every parameter of SimpleNN,
//! LSTMNN and LeNet-5 under cross-entropy (built from log_softmax + gather) matches
//! PyTorch's (`fixtures/golden/models/*/grad`), within the f32 golden tolerance. The
//! models are built with a symbolic batch `N`, bound to 64 at evaluation.

use kiln::{DType, Graph, Tensor};
use kiln_tests::golden::{self, assert_close};
use kiln_tests::models::{lenet, lstm_nn, simple_nn};

/// Mean cross-entropy of `logits` `[N, C]` against int64 `labels` `[N]`.
fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    let logp = logits.log_softmax(-1);
    let picked = logp.gather(1, &labels.unsqueeze(-1));
    -picked.mean_all()
}

fn check_model(name: &str, build: fn(&Graph, kiln::Dim) -> (Tensor, Tensor)) {
    let m = golden::model(name).unwrap_or_else(|e| panic!("{e}"));
    let g = Graph::new();
    let batch = g.sym("N");
    let (_x, logits) = build(&g, batch.clone());
    let labels = g.input("labels", DType::I64, vec![batch]);
    let loss = cross_entropy(&logits, &labels);
    let ir = g.ir();
    let params: Vec<(String, Tensor)> = ir
        .parameters()
        .iter()
        .map(|(id, n)| {
            (
                n.to_string(),
                g.param(n, DType::F32, ir.node(*id).shape.clone()),
            )
        })
        .collect();
    let wrt: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
    let (value, grads) = kiln::value_and_grad(&loss, &wrt);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    golden::load_params(&g, name).unwrap_or_else(|e| panic!("{e}"));
    let x = golden::model_input(&m.train.x_shape).unwrap_or_else(|e| panic!("{e}"));
    let y = golden::model_labels().unwrap_or_else(|e| panic!("{e}"));
    let mut outs = vec![&value];
    outs.extend(grads.iter());
    let got =
        kiln::eval(&outs, &[("x", &x), ("labels", &y)]).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want_loss = m.train.loss.load().unwrap_or_else(|e| panic!("{e}"));
    assert_close(&format!("{name} loss"), &got[0], &want_loss);
    assert_eq!(
        params.len(),
        m.train.grads.len(),
        "{name}: every parameter has a reference"
    );
    for ((pname, _), got) in params.iter().zip(&got[1..]) {
        let want = m.train.grads[pname]
            .load()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_close(&format!("{name} d loss / d {pname}"), got, &want);
    }
}

#[test]
fn simple_nn_parameter_gradients_match_pytorch() {
    check_model("simple_nn", |g, n| simple_nn(g, n));
}

#[test]
fn lstm_nn_parameter_gradients_match_pytorch() {
    check_model("lstm_nn", |g, n| lstm_nn(g, n));
}

#[test]
fn lenet_parameter_gradients_match_pytorch() {
    check_model("lenet", |g, n| lenet(g, n));
}
