//! `kiln::loss`: hand-computed values under every reduction, label smoothing, class axis 1
//! for spatial inputs, and shape/dtype errors as diagnostics at the caller.

use kiln::loss::{
    Reduction, binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss,
};
use kiln::{Array, DType, Graph, Tensor};

fn f32s(shape: &[usize], v: Vec<f32>) -> Array {
    Array::from_f32(shape, v).unwrap_or_else(|e| panic!("{e}"))
}

fn eval(t: &Tensor, feeds: &[(&str, &Array)]) -> Vec<f64> {
    kiln::eval(&[t], feeds).unwrap_or_else(|e| panic!("{e}"))[0].to_f64_vec()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs()))
}

#[test]
fn cross_entropy_with_and_without_label_smoothing() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let t = g.input("t", DType::I64, [2]);
    let xv = f32s(&[2, 3], vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
    let tv = Array::from_i64(&[2], vec![1, 2]).unwrap_or_else(|e| panic!("{e}"));
    let feeds = [("x", &xv), ("t", &tv)];
    let lse1 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let nll = [3f64.ln(), lse1 - 3.0];
    let none = cross_entropy(&x, &t, Reduction::None, 0.0);
    assert!(close(&eval(&none, &feeds), &nll));
    let mean = cross_entropy(&x, &t, Reduction::Mean, 0.0);
    assert!(close(&eval(&mean, &feeds), &[(nll[0] + nll[1]) / 2.0]));
    let sum = cross_entropy(&x, &t, Reduction::Sum, 0.0);
    assert!(close(&eval(&sum, &feeds), &[nll[0] + nll[1]]));
    // (1 - ε)·nll + ε·mean_c(-logp_c)
    let eps = 0.2;
    let smooth = [3f64.ln(), lse1 - 2.0];
    let want: Vec<f64> = (0..2)
        .map(|i| (1.0 - eps) * nll[i] + eps * smooth[i])
        .collect();
    let ls = cross_entropy(&x, &t, Reduction::None, eps);
    assert!(close(&eval(&ls, &feeds), &want));
}

#[test]
fn class_axis_is_one_for_spatial_inputs_and_a_vector_is_one_sample() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [1, 2, 3]);
    let t = g.input("t", DType::I64, [1, 3]);
    let l = cross_entropy(&x, &t, Reduction::None, 0.0);
    assert_eq!(l.shape().to_string(), "[1, 3]");
    // Position j has logits (x[0, 0, j], x[0, 1, j]).
    let xv = f32s(&[1, 2, 3], vec![0.0, 1.0, 5.0, 0.0, 0.0, 0.0]);
    let tv = Array::from_i64(&[1, 3], vec![0, 1, 1]).unwrap_or_else(|e| panic!("{e}"));
    let softplus = |z: f64| (1.0 + z.exp()).ln();
    let want = [softplus(0.0), softplus(1.0), softplus(5.0)];
    assert!(close(&eval(&l, &[("x", &xv), ("t", &tv)]), &want));
    let v = g.input("v", DType::F32, [3]);
    let c = g.input("c", DType::I32, kiln::Shape::scalar());
    let one = nll_loss(&v, &c, Reduction::Sum);
    let vv = f32s(&[3], vec![-0.5, -1.5, -2.5]);
    let cv = Array::from_i32(&[], vec![2]).unwrap_or_else(|e| panic!("{e}"));
    assert!(close(&eval(&one, &[("v", &vv), ("c", &cv)]), &[2.5]));
}

#[test]
fn regression_losses() {
    let g = Graph::new();
    let a = g.input("a", DType::F32, [2, 2]);
    let b = g.input("b", DType::F32, [2, 2]);
    let av = f32s(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let bv = f32s(&[2, 2], vec![0.0, 2.0, 5.0, 3.0]);
    let feeds = [("a", &av), ("b", &bv)];
    assert!(close(
        &eval(&mse_loss(&a, &b, Reduction::Mean), &feeds),
        &[1.5]
    ));
    assert!(close(
        &eval(&mse_loss(&a, &b, Reduction::Sum), &feeds),
        &[6.0]
    ));
    assert!(close(
        &eval(&l1_loss(&a, &b, Reduction::Mean), &feeds),
        &[1.0]
    ));
    assert!(close(
        &eval(&l1_loss(&a, &b, Reduction::None), &feeds),
        &[1.0, 0.0, 2.0, 1.0]
    ));
    let z = g.input("z", DType::F32, [3]);
    let y = g.input("y", DType::F32, [3]);
    let zv = f32s(&[3], vec![0.0, 40.0, -40.0]);
    let yv = f32s(&[3], vec![1.0, 1.0, 1.0]);
    let bce = binary_cross_entropy_with_logits(&z, &y, Reduction::None);
    let got = eval(&bce, &[("z", &zv), ("y", &yv)]);
    assert!(close(&got, &[2f64.ln(), 0.0, 40.0]), "{got:?}");
}

#[test]
fn bad_arguments_are_diagnostics_at_the_caller() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [4, 3]);
    let wrong = g.input("wrong", DType::I64, [3]);
    let line = line!() + 1;
    let l = cross_entropy(&x, &wrong, Reduction::Mean, 0.0);
    assert!(l.is_poisoned());
    let d = g.diagnostics();
    assert_eq!(
        (d.len(), d[0].op, d[0].loc.line),
        (1, "cross_entropy", line)
    );
    assert_eq!(
        d[0].message,
        "cross_entropy: target must be integer class indices shaped [4], got i64[3] for input [4, 3]"
    );

    let g = Graph::new();
    let x = g.input("x", DType::F32, [4, 3]);
    let t = g.input("t", DType::I64, [4]);
    assert!(cross_entropy(&x, &t, Reduction::Mean, 1.5).is_poisoned());
    assert_eq!(
        g.diagnostics()[0].message,
        "cross_entropy: label_smoothing must be in [0, 1], got 1.5"
    );

    let g = Graph::new();
    let x = g.input("x", DType::F32, [4, 3]);
    let t = g.input("t", DType::F32, [4]);
    assert!(nll_loss(&x, &t, Reduction::Mean).is_poisoned());
    assert_eq!(
        g.diagnostics()[0].message,
        "nll_loss: target must be integer class indices shaped [4], got f32[4] for input [4, 3]"
    );

    let g = Graph::new();
    let a = g.input("a", DType::F32, [4, 3]);
    let b = g.input("b", DType::F32, [3]);
    assert!(mse_loss(&a, &b, Reduction::Mean).is_poisoned());
    assert_eq!(
        g.diagnostics()[0].message,
        "mse_loss: input and target must be float tensors of one dtype and shape, got f32[4, 3] and f32[3]"
    );
}
