//! Accuracy of the inline `f32` transcendentals against `f64` libm (bounds documented in
//! docs/numerics.md, measured there with `cargo run --release -p kiln-cpu --example
//! numerics`). Here every 4099th f32 of each range is checked.

use crate::accuracy;

fn check(op: &str, lo: f32, hi: f32, bound: f64) {
    let r = accuracy::measure(op, lo, hi, 4099);
    assert!(r.points > 1000, "{op}: only {} points", r.points);
    assert!(
        r.max_ulp <= bound,
        "{op} on [{lo}, {hi}]: {} ulp at {:e} (bound {bound})",
        r.max_ulp,
        r.at
    );
}

#[test]
fn exp_accuracy() {
    check("exp", -104.0, 89.0, 2.0);
}

#[test]
fn log_accuracy() {
    check("log", 0.0, f32::MAX, 2.0);
}

#[test]
fn tanh_accuracy() {
    check("tanh", -12.0, 12.0, 3.0);
}

#[test]
fn sigmoid_accuracy() {
    check("sigmoid", -104.0, 40.0, 3.0);
}

#[test]
fn erf_accuracy() {
    check("erf", -5.0, 5.0, 3.0);
}

/// `asin` has no inline polynomial: `f32` goes through the `f64` helper and is rounded once.
#[test]
fn asin_accuracy() {
    check("asin", -1.0, 1.0, 0.501);
}

#[test]
fn atan_accuracy() {
    check("atan", -f32::MAX, f32::MAX, 2.5);
    check("atan", -4.0, 4.0, 2.5);
}

#[test]
fn sin_cos_accuracy() {
    check("sin", -10_000.0, 10_000.0, 2.0);
    check("cos", -10_000.0, 10_000.0, 2.0);
    check("sin", -f32::MAX, f32::MAX, 2.0);
    check("cos", -f32::MAX, f32::MAX, 2.0);
}

#[test]
fn special_values() {
    use kiln_ir::Data;
    use std::collections::HashMap;
    let xs = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e-45,
        -1e-45,
    ];
    let b = HashMap::from([("N".to_string(), xs.len() as u64)]);
    let pio2 = std::f32::consts::FRAC_PI_2;
    let expect: [(&str, [f32; 7]); 7] = [
        ("atan", [f32::NAN, pio2, -pio2, 0.0, -0.0, 1e-45, -1e-45]),
        (
            "asin",
            [f32::NAN, f32::NAN, f32::NAN, 0.0, -0.0, 1e-45, -1e-45],
        ),
        ("exp", [f32::NAN, f32::INFINITY, 0.0, 1.0, 1.0, 1.0, 1.0]),
        (
            "log",
            [
                f32::NAN,
                f32::INFINITY,
                f32::NAN,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                -103.27893,
                f32::NAN,
            ],
        ),
        ("tanh", [f32::NAN, 1.0, -1.0, 0.0, -0.0, 1e-45, -1e-45]),
        ("sigmoid", [f32::NAN, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5]),
        ("erf", [f32::NAN, 1.0, -1.0, 0.0, -0.0, 1e-45, -1e-45]),
    ];
    for (op, want) in expect {
        let p = kiln_kernel::parse(&format!(
            "symbol N >= 1
             b0 = input \"x\" f32[N]
             b1 = output \"y\" f32[N]
             k0 = loop [N] {{
               v0 = load b0[i0]
               v1 = {op}(v0)
               store b1[i0] = v1
             }}"
        ))
        .unwrap();
        let mut bufs = vec![Data::F32(xs.to_vec()), Data::F32(vec![7.0; xs.len()])];
        kiln_cpu::compile(&kiln_kernel::verify(p.clone()).unwrap())
            .unwrap()
            .run(&b, &mut bufs)
            .unwrap();
        let Data::F32(y) = &bufs[1] else {
            unreachable!()
        };
        for ((x, g), w) in xs.iter().zip(y).zip(want) {
            let ok = (g.is_nan() && w.is_nan())
                || (g == &w && g.is_sign_negative() == w.is_sign_negative());
            assert!(ok, "{op}({x:e}) = {g:e}, want {w:e}");
        }
    }
}
