//! Reference models (SimpleNN, LSTMNN, LeNet-5) built with the kiln builder, loaded with
//! PyTorch's weights and evaluated through `kiln::eval`; logits compared with PyTorch's.

use kiln::Graph;
use kiln_tests::golden::{self, ForwardRef, assert_close};
use kiln_tests::models::{lenet, lstm_nn, simple_nn};
use std::collections::BTreeSet;

fn forward(model: &str, batch: usize) -> ForwardRef {
    let m = golden::model(model).unwrap_or_else(|e| panic!("{e}"));
    m.forward
        .into_iter()
        .find(|f| f.batch == batch)
        .unwrap_or_else(|| panic!("{model}: no batch {batch} reference"))
}

/// Evaluates `logits` for the golden input of `model` at `batch` and compares.
fn check_logits(g: &Graph, model: &str, batch: usize, logits: &kiln::Tensor) {
    golden::load_params(g, model).unwrap_or_else(|e| panic!("{e}"));
    let f = forward(model, batch);
    let x = golden::model_input(&f.x_shape).unwrap_or_else(|e| panic!("{e}"));
    let want = f.logits.load().unwrap_or_else(|e| panic!("{e}"));
    let got = kiln::eval(&[logits], &[("x", &x)])
        .unwrap_or_else(|e| panic!("{model} batch {batch}: {e}"));
    assert_close(&format!("{model} logits, batch {batch}"), &got[0], &want);
}

/// The builder declares exactly the parameters of PyTorch's `state_dict`, same shapes.
fn assert_params_match(g: &Graph, model: &str) {
    let m = golden::model(model).unwrap_or_else(|e| panic!("{e}"));
    let ir = g.ir();
    let declared: BTreeSet<(String, Vec<usize>)> = ir
        .parameters()
        .iter()
        .map(|(id, name)| {
            (
                name.to_string(),
                ir.node(*id).shape.as_known().unwrap_or_default(),
            )
        })
        .collect();
    let golden: BTreeSet<(String, Vec<usize>)> = m
        .params
        .iter()
        .map(|(k, r)| (k.clone(), r.shape.clone()))
        .collect();
    assert_eq!(
        declared, golden,
        "{model}: builder parameters differ from the state_dict"
    );
}

#[test]
fn simple_nn_batch_1_and_64_symbolic() {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = simple_nn(&g, &n);
    assert_eq!(logits.shape().to_string(), "[N, 10]");
    assert_params_match(&g, "simple_nn");
    check_logits(&g, "simple_nn", 1, &logits);
    check_logits(&g, "simple_nn", 64, &logits);
}

#[test]
fn simple_nn_batch_1_concrete() {
    let g = Graph::new();
    let (_x, logits) = simple_nn(&g, 1usize);
    assert_eq!(logits.shape().to_string(), "[1, 10]");
    check_logits(&g, "simple_nn", 1, &logits);
}

#[test]
fn lstm_nn_batch_64() {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = lstm_nn(&g, &n);
    assert_eq!(logits.shape().to_string(), "[N, 10]");
    assert_params_match(&g, "lstm_nn");
    check_logits(&g, "lstm_nn", 64, &logits);
}

#[test]
fn lenet_batch_64() {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = lenet(&g, &n);
    assert_eq!(logits.shape().to_string(), "[N, 10]");
    assert_params_match(&g, "lenet");
    check_logits(&g, "lenet", 64, &logits);
}

/// The training references exist for every parameter, with the parameter's shape.
#[test]
fn train_references_cover_every_parameter() {
    for model in ["simple_nn", "lstm_nn", "lenet"] {
        let m = golden::model(model).unwrap_or_else(|e| panic!("{e}"));
        let params: Vec<(&String, &Vec<usize>)> =
            m.params.iter().map(|(k, r)| (k, &r.shape)).collect();
        let grads: Vec<(&String, &Vec<usize>)> =
            m.train.grads.iter().map(|(k, r)| (k, &r.shape)).collect();
        assert_eq!(params, grads, "{model}");
        let loss = m.train.loss.load().unwrap_or_else(|e| panic!("{e}"));
        let l = loss.to_f64_vec();
        assert!(
            loss.shape().is_empty() && l[0] > 2.0 && l[0] < 2.6,
            "{model}: loss {l:?} is not near ln(10)"
        );
    }
    let labels = golden::model_labels().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (labels.dtype(), labels.shape()),
        (kiln::DType::I64, &[64usize][..])
    );
}
