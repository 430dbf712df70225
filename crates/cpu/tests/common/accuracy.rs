//! Measures the error of the backend's `f32` transcendentals against `f64` libm (the
//! backend's `f64` path calls libm), in units in the last place of the `f32` result.
#![allow(dead_code)]

use kiln_ir::Data;
use std::collections::HashMap;

/// The worst error found.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Largest error in ulps of the correctly rounded result.
    pub max_ulp: f64,
    /// The input where it occurred.
    pub at: f32,
    /// Points measured.
    pub points: u64,
}

fn program(op: &str, dt: &str) -> kiln_kernel::Program {
    kiln_kernel::parse(&format!(
        "symbol N >= 1
         b0 = input \"x\" {dt}[N]
         b1 = output \"y\" {dt}[N]
         k0 = loop [N] {{
           v0 = load b0[i0]
           v1 = {op}(v0)
           store b1[i0] = v1
         }}"
    ))
    .expect("parse")
}

/// An order-preserving map of f32 bit patterns to integers.
fn key(x: f32) -> i64 {
    let b = x.to_bits() as i32;
    i64::from(if b < 0 { i32::MIN - b } else { b })
}

fn unkey(k: i64) -> f32 {
    let k = k as i32;
    f32::from_bits((if k < 0 { i32::MIN - k } else { k }) as u32)
}

/// The spacing of f32 values at the magnitude of `v`.
fn ulp(v: f64) -> f64 {
    let a = v.abs();
    if a < f64::from(f32::MIN_POSITIVE) {
        return 2f64.powi(-149);
    }
    2f64.powi(a.log2().floor() as i32 - 23)
}

/// Measures `op` on every `stride`-th f32 in `[lo, hi]`.
pub fn measure(op: &str, lo: f32, hi: f32, stride: i64) -> Report {
    let p32 =
        kiln_cpu::compile(&kiln_kernel::verify(program(op, "f32")).unwrap()).expect("compile f32");
    let p64 =
        kiln_cpu::compile(&kiln_kernel::verify(program(op, "f64")).unwrap()).expect("compile f64");
    let mut report = Report {
        max_ulp: 0.0,
        at: lo,
        points: 0,
    };
    let (k0, k1) = (key(lo), key(hi));
    let chunk = 1 << 20;
    let mut k = k0;
    while k <= k1 {
        let xs: Vec<f32> = (0..chunk)
            .map(|i| k + i * stride)
            .take_while(|&kk| kk <= k1)
            .map(unkey)
            .collect();
        let n = xs.len();
        k += n as i64 * stride;
        let b = HashMap::from([("N".to_string(), n as u64)]);
        let mut b32 = vec![Data::F32(xs.clone()), Data::F32(vec![0.0; n])];
        p32.run(&b, &mut b32).expect("run f32");
        let mut b64 = vec![
            Data::F64(xs.iter().map(|&x| f64::from(x)).collect()),
            Data::F64(vec![0.0; n]),
        ];
        p64.run(&b, &mut b64).expect("run f64");
        let (Data::F32(y), Data::F64(r)) = (&b32[1], &b64[1]) else {
            unreachable!()
        };
        for ((&x, &y), &r) in xs.iter().zip(y).zip(r) {
            report.points += 1;
            let rounded = r as f32;
            let err = if r.is_nan() || y.is_nan() {
                if r.is_nan() && y.is_nan() {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else if rounded.is_infinite() || y.is_infinite() {
                if rounded == y { 0.0 } else { f64::INFINITY }
            } else {
                (f64::from(y) - r).abs() / ulp(r)
            };
            if err > report.max_ulp {
                report.max_ulp = err;
                report.at = x;
            }
        }
    }
    report
}
