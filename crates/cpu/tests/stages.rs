//! Staged reductions (a reduction whose operand reads another reduction of the same
//! kernel, `Body::stages`): differential tests against the kernel executor over hoisted and
//! per-point reductions, vector plans along the domain and along the reduction, dtypes and
//! special values, and the bits of a one-kernel softmax against the two-kernel one.

use crate::common;
use common::*;
use kiln_ir::Data;

/// The little-endian bytes of a buffer.
fn bits(d: &Data) -> Vec<u8> {
    kiln_ir::Array::new(&[d.len()], d.clone())
        .unwrap()
        .to_le_bytes()
}

fn kernel_fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../fixtures/filetests/kernel/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Staged kernels and the sizes `(N, C)` to run them at.
const CASES: [&str; 6] = [
    // Log-sum-exp of a row, stored once per row (no hoisted axis).
    "symbol N >= 1
     symbol C >= 1
     b0 = input \"x\" f32[N*C]
     b1 = output \"y\" f32[N]
     k0 = loop [N] reduce [C] {
       v0 = load b0[i0*C + r0]
       v1 = reduce_max(v0) init f32(-inf)
       v2 = sub(v0, v1)
       v3 = exp(v2)
       v4 = reduce_sum(v3) init f32(0.0)
       v5 = log(v4)
       v6 = add(v1, v5)
       store b1[i0] = v6
     }",
    // Three stages: mean, variance about it, and the count of points above one standard
    // deviation; the normalised row and the count are stored.
    "symbol N >= 1
     symbol C >= 1
     b0 = input \"x\" f32[N*C]
     b1 = output \"y\" f32[N*C]
     b2 = output \"k\" i32[N]
     k0 = loop [N, C] reduce [C] {
       v0 = load b0[i0*C + r0]
       v1 = reduce_sum(v0) init f32(0.0)
       v2 = f32(0.125)
       v3 = mul(v1, v2)
       v4 = sub(v0, v3)
       v5 = mul(v4, v4)
       v6 = reduce_sum(v5) init f32(0.0)
       v7 = mul(v6, v2)
       v8 = sqrt(v7)
       v9 = gt(v4, v8)
       v10 = cast<i32>(v9)
       v11 = reduce_sum(v10) init i32(0)
       v12 = load b0[i0*C + i1]
       v13 = sub(v12, v3)
       v14 = div(v13, v8)
       store b1[i0*C + i1] = v14
       store b2[i0] = v11
     }",
    // Column statistics: the reductions vary along the vectorised domain axis, so each
    // vector of columns runs both stages as lane vectors.
    "symbol N >= 1
     symbol C >= 1
     b0 = input \"x\" f32[N*C]
     b1 = output \"y\" f32[N*C]
     k0 = loop [C, N] reduce [N] {
       v0 = load b0[r0*C + i0]
       v1 = reduce_max(v0) init f32(-inf)
       v2 = sub(v0, v1)
       v3 = exp(v2)
       v4 = reduce_sum(v3) init f32(0.0)
       v5 = load b0[i1*C + i0]
       v6 = sub(v5, v1)
       v7 = exp(v6)
       v8 = div(v7, v4)
       store b1[i1*C + i0] = v8
     }",
    // Integers, a transposed store (scalar domain loop) and a stage-two max.
    "symbol N >= 1
     symbol C >= 1
     b0 = input \"x\" i32[N*C]
     b1 = output \"y\" i32[C*N]
     k0 = loop [N, C] reduce [C] {
       v0 = load b0[i0*C + r0]
       v1 = reduce_min(v0) init i32(2147483647)
       v2 = sub(v0, v1)
       v3 = reduce_max(v2) init i32(-2147483648)
       v4 = load b0[i0*C + i1]
       v5 = sub(v4, v1)
       v6 = sub(v3, v5)
       store b1[i1*N + i0] = v6
     }",
    // f64, two lanes.
    "symbol N >= 1
     symbol C >= 1
     b0 = input \"x\" f64[N*C]
     b1 = output \"y\" f64[N*C]
     k0 = loop [N, C] reduce [C] {
       v0 = load b0[i0*C + r0]
       v1 = reduce_max(v0) init f64(-inf)
       v2 = sub(v0, v1)
       v3 = exp(v2)
       v4 = reduce_sum(v3) init f64(0.0)
       v5 = load b0[i0*C + i1]
       v6 = sub(v5, v1)
       v7 = exp(v6)
       v8 = div(v7, v4)
       store b1[i0*C + i1] = v8
     }",
    // Group-norm-like statistics over a two-axis reduction `[C, 8]`.
    "symbol N >= 1
     symbol C >= 1
     b0 = input \"x\" f32[N*C*8]
     b1 = output \"y\" f32[N*C*8]
     k0 = loop [N, C, 8] reduce [C, 8] {
       v0 = load b0[i0*C*8 + r0*8 + r1]
       v1 = reduce_sum(v0) init f32(0.0)
       v2 = f32(0.01)
       v3 = mul(v1, v2)
       v4 = sub(v0, v3)
       v5 = mul(v4, v4)
       v6 = reduce_sum(v5) init f32(0.0)
       v7 = f32(1e-5)
       v8 = add(v6, v7)
       v9 = rsqrt(v8)
       v10 = load b0[i0*C*8 + i1*8 + i2]
       v11 = sub(v10, v3)
       v12 = mul(v11, v9)
       store b1[i0*C*8 + i1*8 + i2] = v12
     }",
];

#[test]
fn staged_reductions_match_the_executor() {
    for text in CASES {
        let program = parse(text);
        // The executor evaluates a hoisted reduction at every point: keep the rows short
        // where the domain has them too.
        let hoisted = program
            .kernels
            .iter()
            .any(|k| matches!(k, kiln_kernel::Kernel::Loop(l) if l.domain.len() > 1));
        let long = if hoisted { 300 } else { 1031 };
        for (n, c) in [(1, 1), (3, 7), (5, 33), (2, long), (9, 4)] {
            if c > 33 && text.contains("reduce [C, 8]") {
                continue;
            }
            let b = bindings(&[("N", n), ("C", c)]);
            let bufs = inputs(&program, &b, n * 100 + c, Fill::default());
            differential(&program, &b, &bufs, 2e-5, 2e-5);
        }
    }
}

#[test]
fn staged_fixtures_match_the_executor_with_special_values() {
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0];
    for (name, binds) in [
        ("softmax_one_kernel.kir", vec![("C", 260u64)]),
        ("softmax_one_kernel.kir", vec![("C", 13)]),
        ("softmax_one_kernel.kir", vec![("C", 100)]),
        ("layer_norm_one_kernel.kir", vec![]),
    ] {
        let program = parse(&kernel_fixture(name));
        for rows in [1, 6, 11] {
            let mut list = binds.clone();
            list.push(("N", rows));
            let b = bindings(&list);
            let mut bufs = inputs(&program, &b, rows, Fill::default());
            differential(&program, &b, &bufs, 2e-6, 1e-6);
            let Data::F32(x) = &mut bufs[0] else {
                panic!("x is f32")
            };
            for (k, v) in x.iter_mut().enumerate().step_by(17) {
                *v = specials[k % specials.len()];
            }
            differential(&program, &b, &bufs, 2e-6, 1e-6);
        }
    }
}

/// The two-kernel softmax (row max to scratch, then the rest) does the same operations in
/// the same order as the staged one: the bits agree.
#[test]
fn a_staged_softmax_gives_the_bits_of_the_two_kernel_one() {
    let staged = parse(&kernel_fixture("softmax_one_kernel.kir"));
    let two = parse(&kernel_fixture("softmax_two_kernels.kir"));
    for (n, c) in [(3, 1024), (5, 1030), (4, 7), (2, 64)] {
        let b = bindings(&[("N", n), ("C", c)]);
        let x = inputs(&staged, &b, n + c, Fill::default()).remove(0);
        let len = (n * c) as usize;
        let one = run_cpu(&staged, &b, &[x.clone(), Data::F32(vec![0.0; len])], None).unwrap();
        let pair = run_cpu(
            &two,
            &b,
            &[
                x,
                Data::F32(vec![0.0; n as usize]),
                Data::F32(vec![0.0; len]),
            ],
            None,
        )
        .unwrap();
        assert_eq!(bits(&one[1]), bits(&pair[2]), "n={n} c={c}");
    }
}
