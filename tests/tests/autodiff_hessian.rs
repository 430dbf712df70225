//! Higher-order derivatives through the builder: Jacobian and Hessian of a small MLP
//! against PyTorch's `torch.autograd.functional.{jacobian, hessian}`, an exact Hessian, and
//! a third-order derivative of tanh against its closed form.

use kiln::{Array, DType, Graph, Tensor};
use kiln_tests::golden::{Tol, compare, tensor_at};

fn golden(name: &str) -> Array {
    tensor_at(&["autodiff", "mlp", name]).unwrap_or_else(|e| panic!("{e}"))
}

fn f64s(a: &Array) -> Vec<f64> {
    a.as_f64().unwrap_or_else(|e| panic!("{e}")).to_vec()
}

/// `y = tanh(w2 @ tanh(w1 @ x + b1) + b2)` with the golden weights as constants.
fn mlp(g: &Graph, x: &Tensor) -> Tensor {
    let p = |n: &str| {
        g.constant(tensor_at(&["autodiff", "mlp", "params", n]).unwrap_or_else(|e| panic!("{e}")))
    };
    let h = (p("w1").matmul(x) + p("b1")).tanh();
    (p("w2").matmul(&h) + p("b2")).tanh()
}

fn assert_golden(what: &str, got: &Array, want: &Array) {
    if let Err(m) = compare(got, want, Some(Tol::F64)) {
        panic!("{what}: {m}");
    }
}

#[test]
fn mlp_jacobian_and_hessian_match_pytorch() {
    let g = Graph::new();
    let x = g.input("x", DType::F64, [4]);
    let y = mlp(&g, &x);
    let f = y.sum_all();
    let dx = kiln::grad(&f, &[&x]).remove(0);
    let jac = kiln::jacobian(&y, &x);
    let hess = kiln::hessian(&f, &x);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jac.shape().to_string(), "[2, 4]");
    assert_eq!(hess.shape().to_string(), "[4, 4]");
    let x0 = golden("x");
    let got =
        kiln::eval(&[&y, &f, &dx, &jac, &hess], &[("x", &x0)]).unwrap_or_else(|e| panic!("{e}"));
    assert_golden("y", &got[0], &golden("y"));
    assert_golden("f", &got[1], &golden("f"));
    assert_golden("grad", &got[2], &golden("grad_x"));
    assert_golden("jacobian", &got[3], &golden("jacobian_y_x"));
    assert_golden("hessian", &got[4], &golden("hessian_f_x"));
    let h = f64s(&got[4]);
    for i in 0..4 {
        for j in 0..4 {
            assert!(
                (h[i * 4 + j] - h[j * 4 + i]).abs() < 1e-12,
                "hessian is symmetric"
            );
        }
    }
}

#[test]
fn jacobian_in_forward_mode() {
    // `z = x * sum(u)` has as many outputs as `u` has elements, so `jacobian` runs forward
    // mode (one JVP per input element); d z_i / d u_j = x_i.
    let g = Graph::new();
    let x = g.input("x", DType::F64, [4]);
    let u = g.input("u", DType::F64, [2, 2]);
    let z = (&x * &u.sum_all()).tanh();
    let jz = kiln::jacobian(&z, &u);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jz.shape().to_string(), "[4, 2, 2]");
    let xs = vec![0.25, -1.0, 0.5, 2.0];
    let us = vec![0.5, -1.0, 0.25, 0.75];
    let x0 = Array::from_f64(&[4], xs.clone()).unwrap_or_else(|e| panic!("{e}"));
    let u0 = Array::from_f64(&[2, 2], us.clone()).unwrap_or_else(|e| panic!("{e}"));
    let got = kiln::eval(&[&jz], &[("x", &x0), ("u", &u0)]).unwrap_or_else(|e| panic!("{e}"));
    let s: f64 = us.iter().sum();
    let jv = f64s(&got[0]);
    for i in 0..4 {
        let t = (xs[i] * s).tanh();
        for j in 0..4 {
            let want = (1.0 - t * t) * xs[i];
            assert!(
                (jv[i * 4 + j] - want).abs() < 1e-14,
                "[{i}, {j}]: {} vs {want}",
                jv[i * 4 + j]
            );
        }
    }
}

#[test]
fn hessian_of_a_quadratic_is_exact() {
    // f(x) = 3 x0^2 - 5 x1 at x = [2, 3]: H = [[6, 0], [0, 0]] exactly.
    let g = Graph::new();
    let x = g.input("x", DType::F64, [2]);
    let x0 = x.slice(0, 0, 1, 1).squeeze(0);
    let x1 = x.slice(0, 1, 2, 1).squeeze(0);
    let f = &x0 * &x0 * 3.0 - &x1 * 5.0;
    let h = kiln::hessian(&f, &x);
    let dx = kiln::grad(&f, &[&x]).remove(0);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    let at = Array::from_f64(&[2], vec![2.0, 3.0]).unwrap_or_else(|e| panic!("{e}"));
    let got = kiln::eval(&[&f, &dx, &h], &[("x", &at)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f64s(&got[0]), vec![-3.0]);
    assert_eq!(f64s(&got[1]), vec![12.0, -5.0]);
    assert_eq!(got[2].shape(), &[2, 2]);
    assert_eq!(f64s(&got[2]), vec![6.0, 0.0, 0.0, 0.0]);
}

#[test]
fn third_derivative_of_tanh_matches_its_closed_form() {
    // d^3/dx^3 tanh x = -2 (1 - t^2)(1 - 3 t^2), t = tanh x; built as grad(grad(grad)),
    // and as jvp(grad(grad)) (forward over reverse).
    let g = Graph::new();
    let x = g.input("x", DType::F64, [5]);
    let y = x.tanh().sum_all();
    let d1 = kiln::grad(&y, &[&x]).remove(0);
    let d2 = kiln::grad(&d1.sum_all(), &[&x]).remove(0);
    let d3 = kiln::grad(&d2.sum_all(), &[&x]).remove(0);
    let ones = g.ones([5], DType::F64);
    let d3f = kiln::jvp(&[&d2], &[(&x, &ones)]).remove(0);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    let xs = vec![-2.0, -0.5, 0.0, 0.3, 1.7];
    let at = Array::from_f64(&[5], xs.clone()).unwrap_or_else(|e| panic!("{e}"));
    let got = kiln::eval(&[&d1, &d2, &d3, &d3f], &[("x", &at)]).unwrap_or_else(|e| panic!("{e}"));
    for (i, &v) in xs.iter().enumerate() {
        let t = v.tanh();
        let want = [
            1.0 - t * t,
            -2.0 * t * (1.0 - t * t),
            -2.0 * (1.0 - t * t) * (1.0 - 3.0 * t * t),
        ];
        for (k, w) in want.iter().enumerate() {
            let a = f64s(&got[k])[i];
            assert!(
                (a - w).abs() <= 1e-12 * (1.0 + w.abs()),
                "order {} at {v}: {a} vs {w}",
                k + 1
            );
        }
        let a = f64s(&got[3])[i];
        assert!(
            (a - want[2]).abs() <= 1e-12 * (1.0 + want[2].abs()),
            "jvp of grad of grad at {v}: {a}"
        );
    }
}
