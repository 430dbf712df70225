//! Reductions hoisted out of the domain axes they do not depend on (softmax and layer norm
//! rows as the fusion pass emits them): differential tests against the kernel executor on
//! the fusion fixtures' programs, the shape of the generated loops, and the order in which
//! each hoisted reduction combines its terms.

use crate::common;
use common::fixture::{fuse_fixture_program, replace_literal};
use common::*;
use kiln_cpu::{CpuError, LoopSummary, VectorAxis};
use kiln_ir::Data;
use kiln_kernel::KernelId;

/// The fusion fixture `name` with its row length `from` replaced by `cols`.
fn fixture(name: &str, from: u64, cols: u64) -> kiln_kernel::Program {
    let text = fuse_fixture_program(name).unwrap_or_else(|e| panic!("{e}"));
    parse(&replace_literal(
        &text,
        &from.to_string(),
        &cols.to_string(),
    ))
}

/// The little-endian bytes of a buffer.
fn bits(d: &Data) -> Vec<u8> {
    kiln_ir::Array::new(&[d.len()], d.clone())
        .unwrap()
        .to_le_bytes()
}

fn summaries(program: &kiln_kernel::Program) -> Vec<LoopSummary> {
    kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap())
        .unwrap()
        .loops()
}

/// Every loop kernel of `program` over `[rows, cols]` with reductions is compiled with its
/// reductions hoisted out of the column axis, when that axis has more than one point.
fn assert_rows_hoisted(program: &kiln_kernel::Program, cols: u64) {
    let loops = summaries(program);
    let hoistable: Vec<bool> = program
        .kernels
        .iter()
        .map(|k| {
            matches!(k, kiln_kernel::Kernel::Loop(l)
                if l.domain.len() == 2 && !l.reduce.is_empty() && cols > 1)
        })
        .collect();
    assert!(cols == 1 || hoistable.iter().any(|&h| h), "{program}");
    for (l, h) in loops.iter().zip(hoistable) {
        assert_eq!(l.hoisted, h.then_some(1), "{l:?} in\n{program}");
    }
}

#[test]
fn softmax_fixture_matches_the_executor() {
    for cols in [10, 1, 3, 7, 8, 33, 783] {
        let program = fixture("softmax", 10, cols);
        assert_rows_hoisted(&program, cols);
        for rows in [1, 5, 37] {
            let b = bindings(&[("N", rows)]);
            let bufs = inputs(&program, &b, rows * 1000 + cols, Fill::default());
            differential(&program, &b, &bufs, 2e-6, 1e-7);
        }
    }
}

#[test]
fn layer_norm_fixture_matches_the_executor() {
    for cols in [16, 1, 3, 7, 8, 33, 783] {
        let program = fixture("layer_norm", 16, cols);
        assert_rows_hoisted(&program, cols);
        for rows in [1, 5, 37] {
            let b = bindings(&[("N", rows)]);
            let bufs = inputs(&program, &b, rows * 1000 + cols, Fill::default());
            differential(&program, &b, &bufs, 2e-5, 2e-5);
        }
    }
}

#[test]
fn fixtures_propagate_special_values_like_the_executor() {
    // NaN, infinities and signed zeros in some rows (no huge finite values: the executor
    // accumulates in f64, where the square of 1e30 does not overflow).
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0];
    for (name, from) in [("softmax", 10), ("layer_norm", 16)] {
        for cols in [from, 13] {
            let program = fixture(name, from, cols);
            let b = bindings(&[("N", 23)]);
            let mut bufs = inputs(&program, &b, cols, Fill::default());
            let Data::F32(x) = &mut bufs[0] else {
                panic!("x is f32")
            };
            for (k, v) in x.iter_mut().enumerate().step_by(17) {
                *v = specials[k % specials.len()];
            }
            differential(&program, &b, &bufs, 2e-5, 2e-5);
        }
    }
}

/// The second kernel of the softmax fixture, written out (the fixture may change).
const SOFTMAX_ROWS: &str = "symbol N >= 1
b0 = input \"x\" f32[N*1024]
b1 = output \"y\" f32[N*1024]
b2 = input \"m\" f32[N]
k0 = loop [N, 1024] reduce [1024] {
  v0 = load b0[i0*1024 + i1]
  v1 = load b2[i0]
  v2 = sub(v0, v1)
  v3 = exp(v2)
  v4 = load b0[i0*1024 + r0]
  v5 = sub(v4, v1)
  v6 = exp(v5)
  v7 = reduce_sum(v6) init f32(0.0)
  v8 = div(v3, v7)
  store b1[i0*1024 + i1] = v8
}";

#[test]
fn softmax_rows_run_the_reduction_once_per_row() {
    let program = parse(SOFTMAX_ROWS);
    assert_eq!(
        summaries(&program),
        vec![LoopSummary {
            kernel: KernelId(0),
            vector: Some((VectorAxis::Domain, 4)),
            split_axis: Some(0),
            hoisted: Some(1),
            hoisted_vector: Some(4),
        }]
    );
    for rows in [1, 2, 9] {
        let b = bindings(&[("N", rows)]);
        let bufs = inputs(&program, &b, rows, Fill::default());
        differential(&program, &b, &bufs, 2e-6, 1e-7);
    }
}

#[test]
fn reductions_that_read_the_inner_axis_are_not_hoisted() {
    let program = parse(
        "symbol N >= 1
         symbol C >= 1
         b0 = input \"x\" f32[N*C]
         b1 = output \"y\" f32[N*C]
         k0 = loop [N, C] reduce [C] {
           v0 = load b0[i0*C + r0]
           v1 = load b0[i0*C + i1]
           v2 = mul(v0, v1)
           v3 = reduce_sum(v2) init f32(0.0)
           store b1[i0*C + i1] = v3
         }",
    );
    let loops = summaries(&program);
    assert_eq!(loops[0].hoisted, None);
    assert_eq!(loops[0].hoisted_vector, None);
    for (n, c) in [(1, 1), (3, 7), (4, 33)] {
        let b = bindings(&[("N", n), ("C", c)]);
        let bufs = inputs(&program, &b, n + c, Fill::default());
        differential(&program, &b, &bufs, 1e-5, 1e-5);
    }
}

/// A kernel, the hoisting expected, and the sizes to run.
struct Case {
    text: &'static str,
    hoisted: Option<usize>,
    split: Option<usize>,
}

const CASES: [Case; 6] = [
    // Group-norm-like: the statistics of a whole `[C, 8]` block, hoisted out of two axes.
    Case {
        text: "symbol N >= 1
               symbol C >= 1
               b0 = input \"x\" f32[N*C*8]
               b1 = output \"y\" f32[N*C*8]
               k0 = loop [N, C, 8] reduce [C, 8] {
                 v0 = load b0[i0*C*8 + r0*8 + r1]
                 v1 = reduce_sum(v0) init f32(0.0)
                 v2 = mul(v0, v0)
                 v3 = reduce_sum(v2) init f32(0.0)
                 v4 = load b0[i0*C*8 + i1*8 + i2]
                 v5 = sub(v4, v1)
                 v6 = mul(v5, v3)
                 store b1[i0*C*8 + i1*8 + i2] = v6
               }",
        hoisted: Some(1),
        split: Some(0),
    },
    // Two reductions sharing the row, symbolic row length, a store of a reduced value.
    Case {
        text: "symbol N >= 1
               symbol C >= 1
               b0 = input \"x\" f32[N*C]
               b1 = output \"y\" f32[N*C]
               b2 = output \"m\" f32[N]
               k0 = loop [N, C] reduce [C] {
                 v0 = load b0[i0*C + r0]
                 v1 = reduce_max(v0) init f32(-inf)
                 v2 = exp(v0)
                 v3 = reduce_sum(v2) init f32(0.0)
                 v4 = load b0[i0*C + i1]
                 v5 = sub(v4, v1)
                 v6 = exp(v5)
                 v7 = div(v6, v3)
                 store b1[i0*C + i1] = v7
                 store b2[i0] = v1
               }",
        hoisted: Some(1),
        split: Some(0),
    },
    // f64 (two lanes) and a post-reduction value computed once per row.
    Case {
        text: "symbol N >= 1
               symbol C >= 1
               b0 = input \"x\" f64[N*C]
               b1 = output \"y\" f64[N*C]
               k0 = loop [N, C] reduce [C] {
                 v0 = load b0[i0*C + r0]
                 v1 = mul(v0, v0)
                 v2 = reduce_sum(v1) init f64(0.0)
                 v3 = sqrt(v2)
                 v4 = load b0[i0*C + i1]
                 v5 = div(v4, v3)
                 store b1[i0*C + i1] = v5
               }",
        hoisted: Some(1),
        split: Some(0),
    },
    // Integers, with a transposed store (the hoisted loop stays scalar).
    Case {
        text: "symbol N >= 1
               symbol C >= 1
               b0 = input \"x\" i32[N*C]
               b1 = output \"y\" i32[C*N]
               k0 = loop [N, C] reduce [C] {
                 v0 = load b0[i0*C + r0]
                 v1 = reduce_sum(v0) init i32(0)
                 v2 = reduce_max(v0) init i32(-2147483648)
                 v3 = load b0[i0*C + i1]
                 v4 = sub(v3, v1)
                 v5 = mul(v4, v2)
                 store b1[i1*N + i0] = v5
               }",
        hoisted: Some(1),
        split: Some(0),
    },
    // Column statistics broadcast back over the rows.
    Case {
        text: "symbol N >= 1
               symbol C >= 1
               b0 = input \"x\" f32[N*C]
               b1 = output \"y\" f32[N*C]
               k0 = loop [C, N] reduce [N] {
                 v0 = load b0[r0*C + i0]
                 v1 = mul(v0, v0)
                 v2 = reduce_sum(v1) init f32(0.0)
                 v3 = load b0[i1*C + i0]
                 v4 = div(v3, v2)
                 store b1[i1*C + i0] = v4
               }",
        hoisted: Some(1),
        split: Some(0),
    },
    // A reduction over everything, hoisted out of the whole domain (split axis included:
    // each thread's chunk computes it once).
    Case {
        text: "symbol N >= 1
               symbol C >= 1
               b0 = input \"x\" f32[N*C]
               b1 = output \"y\" f32[N*C]
               k0 = loop [1, N, C] reduce [N, C] {
                 v0 = load b0[r0*C + r1]
                 v1 = reduce_sum(v0) init f32(0.0)
                 v2 = load b0[i1*C + i2]
                 v3 = sub(v2, v1)
                 store b1[i1*C + i2] = v3
               }",
        hoisted: Some(0),
        split: Some(1),
    },
];

/// The largest magnitude of a float output of the executor.
fn largest_output(
    program: &kiln_kernel::Program,
    b: &std::collections::HashMap<String, u64>,
    bufs: &[Data],
) -> f64 {
    let out = run_exec(program, b, bufs).unwrap();
    program
        .buffers
        .iter()
        .zip(&out)
        .filter(|(buf, d)| {
            matches!(buf.kind, kiln_kernel::BufferKind::Output(_)) && d.dtype().is_float()
        })
        .flat_map(|(_, d)| {
            kiln_ir::Array::new(&[d.len()], d.clone())
                .unwrap()
                .to_f64_vec()
        })
        .filter(|v| v.is_finite())
        .fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn hoisting_generalises_over_axes_dtypes_and_layouts() {
    for case in &CASES {
        let program = parse(case.text);
        let loops = summaries(&program);
        assert_eq!(loops[0].hoisted, case.hoisted, "{program}");
        assert_eq!(loops[0].split_axis, case.split, "{program}");
        for (n, c) in [(1, 1), (3, 7), (5, 33), (2, 300), (9, 4)] {
            let b = bindings(&[("N", n), ("C", c)]);
            let bufs = inputs(&program, &b, n * 100 + c, Fill::default());
            // Row sums accumulate in f32 in another order than the executor's f64 sum, and
            // `(x - sum) * sumsq` cancels: bound the error by the output's scale too.
            let scale = largest_output(&program, &b, &bufs);
            differential(&program, &b, &bufs, 2e-5, 2e-5f64.max(4e-6 * scale));
        }
    }
}

#[test]
fn a_large_hoisted_kernel_splits_over_threads_with_the_same_bits() {
    let program = parse(CASES[1].text);
    let b = bindings(&[("N", 301), ("C", 1031)]);
    let bufs = inputs(&program, &b, 7, Fill::default());
    let all = differential(&program, &b, &bufs, 2e-5, 2e-5);
    let one = run_cpu(&program, &b, &bufs, Some(1)).unwrap();
    for (a, o) in all.iter().zip(&one) {
        assert_eq!(bits(a), bits(o));
    }
}

/// `x[i, c] + sum_r x[i, r]` with terms whose sum depends on the order of addition.
const ROW_PLUS_SUM: &str = "symbol N >= 1
symbol C >= 1
b0 = input \"x\" f32[N*C]
b1 = output \"y\" f32[N*C]
k0 = loop [N, C] reduce [C] {
  v0 = load b0[i0*C + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = load b0[i0*C + i1]
  v3 = add(v2, v1)
  store b1[i0*C + i1] = v3
}";

fn cancelling_rows(n: usize, c: usize) -> Vec<f32> {
    (0..n * c)
        .map(|k| match k % 5 {
            0 => 1.0e8,
            1 => 1.0,
            2 => -1.0e8,
            3 => 0.5 + (k % 7) as f32,
            _ => -3.0e-3 * (k % 11) as f32,
        })
        .collect()
}

/// A row sum in the order of a vectorised reduction loop with cheap terms: four vectors of
/// lane partials (terms `16q + 4g + l` in vector `g`, lane `l`), then whole vectors left over
/// in vector 0, the scalar tail in the scalar accumulator; the vectors are added pairwise,
/// then their lanes to the scalar accumulator in order.
fn row_sum_in_kernel_order(row: &[f32]) -> f32 {
    let c = row.len();
    let mut parts = [[-0.0f32; 4]; 4];
    let unrolled = c & !15;
    for (k, &v) in row[..unrolled].iter().enumerate() {
        parts[(k % 16) / 4][k % 4] += v;
    }
    let whole = c & !3;
    for (k, &v) in row[unrolled..whole].iter().enumerate() {
        parts[0][k % 4] += v;
    }
    let mut sum = row[whole..].iter().fold(0.0f32, |a, &v| a + v);
    let add = |a: [f32; 4], b: [f32; 4]| std::array::from_fn::<f32, 4, _>(|l| a[l] + b[l]);
    let lanes = add(add(parts[0], parts[1]), add(parts[2], parts[3]));
    for l in lanes {
        sum += l;
    }
    sum
}

#[test]
fn hoisted_reductions_keep_lane_partials_next_to_a_domain_vector() {
    // The hoisted reduction loop runs as vectors with lane-wise partial sums, whatever the
    // loop over the row does.
    let program = parse(ROW_PLUS_SUM);
    let loops = summaries(&program);
    assert_eq!(loops[0].vector, Some((VectorAxis::Domain, 4)));
    assert_eq!(loops[0].hoisted_vector, Some(4));
    for (n, c) in [(2, 5), (3, 64), (4, 1027), (2, 23)] {
        let x = cancelling_rows(n, c);
        let b = bindings(&[("N", n as u64), ("C", c as u64)]);
        let bufs = vec![Data::F32(x.clone()), Data::F32(vec![0.0; n * c])];
        let out = run_cpu(&program, &b, &bufs, None).unwrap();
        let mut want = Vec::with_capacity(n * c);
        for row in x.chunks(c) {
            let sum = row_sum_in_kernel_order(row);
            want.extend(row.iter().map(|&v| v + sum));
        }
        assert_eq!(bits(&out[1]), bits(&Data::F32(want)), "n={n} c={c}");
    }
}

#[test]
fn hoisted_reductions_without_a_domain_vector_keep_lane_partials() {
    // A transposed store keeps the domain scalar; the reduction runs as above.
    let program = parse(&ROW_PLUS_SUM.replace("store b1[i0*C + i1]", "store b1[i1*N + i0]"));
    let loops = summaries(&program);
    assert_eq!(loops[0].vector, None);
    assert_eq!(loops[0].hoisted, Some(1));
    assert_eq!(loops[0].hoisted_vector, Some(4));
    for (n, c) in [(2, 9), (3, 64), (4, 1027), (2, 23)] {
        let x = cancelling_rows(n, c);
        let b = bindings(&[("N", n as u64), ("C", c as u64)]);
        let bufs = vec![Data::F32(x.clone()), Data::F32(vec![0.0; n * c])];
        let out = run_cpu(&program, &b, &bufs, None).unwrap();
        let mut want = vec![0.0f32; n * c];
        for (i, row) in x.chunks(c).enumerate() {
            let sum = row_sum_in_kernel_order(row);
            for (j, &v) in row.iter().enumerate() {
                want[j * n + i] = v + sum;
            }
        }
        assert_eq!(bits(&out[1]), bits(&Data::F32(want)), "n={n} c={c}");
    }
}

/// A softmax row over the whole domain `[1, 1031]`: the hoisted axis is the split axis, and
/// the exponentials of the reduction loop are kept for the loop over the row.
const SOFTMAX_ONE_ROW: &str = "b0 = input \"x\" f32[1031]
b1 = output \"y\" f32[1031]
b2 = input \"m\" f32[1]
k0 = loop [1, 1031] reduce [1031] {
  v0 = load b0[i1]
  v1 = load b2[i0]
  v2 = sub(v0, v1)
  v3 = exp(v2)
  v4 = load b0[r0]
  v5 = sub(v4, v1)
  v6 = exp(v5)
  v7 = reduce_sum(v6) init f32(0.0)
  v8 = div(v3, v7)
  store b1[i1] = v8
}";

#[test]
fn kept_exponentials_give_the_bits_of_recomputed_ones() {
    let program = parse(SOFTMAX_ONE_ROW);
    let loops = summaries(&program);
    assert_eq!(loops[0].hoisted, Some(1));
    assert_eq!(loops[0].split_axis, Some(1));
    // `i1 + 0` is not the reduction's index as written, so this kernel computes the
    // exponentials of the row again.
    let recomputed = parse(&SOFTMAX_ONE_ROW.replace("load b0[i1]", "load b0[i1 + 0]"));
    let b = bindings(&[]);
    let mut bufs = inputs(&program, &b, 5, Fill::default());
    bufs[2] = Data::F32(vec![0.25]);
    let all = differential(&program, &b, &bufs, 2e-6, 1e-7);
    let one = run_cpu(&program, &b, &bufs, Some(1)).unwrap();
    let again = run_cpu(&recomputed, &b, &bufs, None).unwrap();
    assert_eq!(bits(&all[1]), bits(&one[1]));
    assert_eq!(bits(&all[1]), bits(&again[1]));
}

#[test]
fn gathers_inside_a_hoisted_reduction_report_out_of_range_indices() {
    let program = parse(
        "symbol N >= 1
         symbol C >= 1
         b0 = input \"x\" f32[N*C]
         b1 = input \"idx\" i64[N*C]
         b2 = output \"y\" f32[N*C]
         k0 = loop [N, C] reduce [C] {
           v0 = load b1[i0*C + r0]
           v1 = load checked b0[v0]
           v2 = reduce_sum(v1) init f32(0.0)
           v3 = load b0[i0*C + i1]
           v4 = mul(v3, v2)
           store b2[i0*C + i1] = v4
         }",
    );
    assert_eq!(summaries(&program)[0].hoisted, Some(1));
    let b = bindings(&[("N", 3), ("C", 6)]);
    let fill = Fill {
        ints: (0, 18),
        ..Fill::default()
    };
    let mut bufs = inputs(&program, &b, 3, fill);
    differential(&program, &b, &bufs, 2e-5, 2e-5);
    let Data::I64(idx) = &mut bufs[1] else {
        panic!("idx is i64")
    };
    idx[13] = 18;
    assert!(run_exec(&program, &b, &bufs).is_err());
    for threads in [None, Some(1)] {
        assert_eq!(
            run_cpu(&program, &b, &bufs, threads).unwrap_err(),
            CpuError::IndexOutOfBounds {
                kernel: KernelId(0)
            }
        );
    }
}

/// Float max/min row reductions keep their vector partials NaN-free (compare and blend)
/// and track NaN lanes separately: a NaN at any column of a row, whichever unrolled vector,
/// lane or the scalar tail it falls in, makes the row's result NaN; other rows get the
/// exact extremum (infinities included).
#[test]
fn vector_max_min_reductions_see_a_nan_at_every_column() {
    for (dt, cols) in [("f32", 64u64), ("f32", 39), ("f64", 64), ("f64", 37)] {
        for (op, init) in [("reduce_max", "-inf"), ("reduce_min", "inf")] {
            let program = parse(&format!(
                "symbol N >= 1
                 b0 = input \"x\" {dt}[N*{cols}]
                 b1 = output \"y\" {dt}[N]
                 k0 = loop [N] reduce [{cols}] {{
                   v0 = load b0[i0*{cols} + r0]
                   v1 = {op}(v0) init {dt}({init})
                   store b1[i0] = v1
                 }}"
            ));
            let c = cols as usize;
            let rows = c + 1;
            let b = bindings(&[("N", rows as u64)]);
            // Row r < cols has a NaN at column r; the last row has none, with its
            // extremes (an infinity in the max case) at columns 5 and cols - 1.
            let mut x: Vec<f64> = (0..rows * c)
                .map(|k| ((k * 37 % 101) as f64 - 50.0) * 0.25)
                .collect();
            for r in 0..c {
                x[r * c + r] = f64::NAN;
            }
            let last = c * c;
            x[last + 5] = f64::INFINITY;
            x[last + c - 1] = -1000.0;
            let want_last = if op == "reduce_max" {
                f64::INFINITY
            } else {
                -1000.0
            };
            let (xs, ys) = if dt == "f32" {
                (
                    Data::F32(x.iter().map(|&v| v as f32).collect()),
                    Data::F32(vec![0.0; rows]),
                )
            } else {
                (Data::F64(x), Data::F64(vec![0.0; rows]))
            };
            let out = differential(&program, &b, &[xs, ys], 0.0, 0.0);
            let y: Vec<f64> = kiln_ir::Array::new(&[rows], out[1].clone())
                .unwrap()
                .to_f64_vec();
            for (r, v) in y.iter().enumerate().take(c) {
                assert!(v.is_nan(), "{dt} {op} cols {cols}: row {r} gave {v}");
            }
            assert_eq!(y[c], want_last, "{dt} {op} cols {cols}: last row");
        }
    }
}
