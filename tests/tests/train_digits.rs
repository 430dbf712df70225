//! Learning end to end on the bundled UCI digits (`fixtures/data/digits.csv`): an MLP
//! `64 -> 128 -> 10` built from `kiln::nn` layers, trained with Adam (lr 0.01) through
//! `TrainStep::run_eval` for 2 epochs of shuffled, prefetched batches of 32 from the fixed
//! training split, reaches at least 90% accuracy on the test split.

use kiln::data::{DataLoader, Dataset, digits};
use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::{Linear, Module, Relu, Sequential};
use kiln::optim::Adam;
use kiln::{DType, Graph};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[test]
fn mlp_trained_with_adam_on_digits_reaches_90_percent_test_accuracy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data/digits.csv");
    let all = digits::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), digits::SAMPLES);
    let (train_idx, test_idx) = digits::split(all.len());
    assert_eq!((train_idx.len(), test_idx.len()), (1438, 359));
    let train = all
        .subset(&train_idx)
        .and_then(|d| d.to_dataset())
        .unwrap_or_else(|e| panic!("{e}"));
    let test = all
        .subset(&test_idx)
        .and_then(|d| d.to_dataset())
        .unwrap_or_else(|e| panic!("{e}"));

    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 64));
    let y = g.input("y", DType::I64, vec![n.clone()]);
    let model = Sequential::new()
        .push(Linear::new(&g, "fc1", 64, 128, 1))
        .push(Relu)
        .push(Linear::new(&g, "fc2", 128, 10, 2));
    let logits = model.forward(&x);
    let loss = cross_entropy(&logits, &y, Reduction::Mean, 0.0);
    let step = Adam::new(0.01).minimize(&loss, &model.parameters());
    let predicted = logits.argmax(-1, false);
    g.check().unwrap_or_else(|e| panic!("{e}"));

    let loader = DataLoader::new(Arc::new(train), 32)
        .unwrap_or_else(|e| panic!("{e}"))
        .shuffle(2024)
        .prefetch(2);
    let start = Instant::now();
    let mut first_epoch_loss = 0.0;
    for epoch in 0..2 {
        let mut total = 0.0;
        let mut batches = 0;
        for batch in loader.epoch(epoch) {
            let b = batch.unwrap_or_else(|e| panic!("{e}"));
            total += step
                .run_eval(&[("x", &b.fields[0]), ("y", &b.fields[1])])
                .unwrap_or_else(|e| panic!("{e}"));
            batches += 1;
        }
        assert_eq!(batches, 45);
        let mean = total / batches as f32;
        if epoch == 0 {
            first_epoch_loss = mean;
        } else {
            assert!(
                mean < first_epoch_loss,
                "loss falls: {first_epoch_loss} -> {mean}"
            );
        }
    }
    let trained = start.elapsed();

    let fields = test
        .get_batch(&(0..test.len()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"));
    let out = kiln::eval(&[&predicted], &[("x", &fields[0])]).unwrap_or_else(|e| panic!("{e}"));
    let pred = out[0].to_i64_vec();
    let truth = fields[1].to_i64_vec();
    let correct = pred.iter().zip(&truth).filter(|(a, b)| a == b).count();
    let accuracy = correct as f64 / truth.len() as f64;
    eprintln!(
        "digits: {correct}/{} test samples correct ({:.1}%), 90 Adam steps in {:.2?}",
        truth.len(),
        accuracy * 100.0,
        trained
    );
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
}
