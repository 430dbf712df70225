//! The wide kernels (`kiln_cpu::vecmath`) at every level the host runs: the same bits as
//! the portable path for every tail length up to two vectors, special values (NaN, inf,
//! zeros, subnormals), accuracy against `f64`, the row reductions, the shifted kernels, and
//! the same bits as the inline code of generated loops (a tiled loop against an untiled
//! one, a softmax row read straight from its buffer against inline `exp`).

use kiln_cpu::vecmath::{self, Level, RowReduce};
use kiln_ir::{Data, UnaryOp};
use std::collections::HashMap;

const OPS: [(UnaryOp, &str); 5] = [
    (UnaryOp::Exp, "exp"),
    (UnaryOp::Log, "log"),
    (UnaryOp::Tanh, "tanh"),
    (UnaryOp::Sigmoid, "sigmoid"),
    (UnaryOp::Erf, "erf"),
];

/// Special values, the thresholds of every formula and their neighbours, then
/// pseudo-random values over several ranges.
fn inputs() -> Vec<f32> {
    let mut xs = vec![
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e-45,
        -1e-45,
        1e-40,
        -1e-40,
        f32::MIN_POSITIVE,
        f32::MIN_POSITIVE / 2.0,
        f32::MAX,
        f32::MIN,
        1.0,
        -1.0,
    ];
    for t in [
        86.5f32,
        89.0,
        104.0,
        9.1,
        0.55,
        4.0,
        1.0,
        std::f32::consts::SQRT_2,
    ] {
        for x in [t, -t] {
            xs.extend([
                f32::from_bits(x.to_bits() - 1),
                x,
                f32::from_bits(x.to_bits() + 1),
            ]);
        }
    }
    let mut state = 0x9e37_79b9_u64;
    for scale in [0.01f32, 1.0, 5.0, 30.0, 100.0, 1e6] {
        for _ in 0..200 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            xs.push((u * 2.0 - 1.0) * scale);
        }
    }
    xs
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn apply(level: Level, op: UnaryOp, xs: &[f32]) -> Vec<f32> {
    let mut v = xs.to_vec();
    assert!(vecmath::unary(level, op, &mut v), "{level:?} {op:?} ran");
    v
}

#[test]
fn the_host_runs_the_portable_level_and_detects_one_it_runs() {
    let levels = Level::available();
    assert_eq!(levels.first(), Some(&Level::Portable));
    if let Some(l) = Level::detect() {
        assert!(l.supported(), "{l:?}");
    }
    for l in Level::ALL {
        if !l.supported() {
            assert!(!vecmath::unary(l, UnaryOp::Exp, &mut [1.0]));
        }
    }
    assert!(!vecmath::unary(Level::Portable, UnaryOp::Sin, &mut [1.0]));
}

/// Every tail length `0..=2 * lanes` at every offset into the inputs, inside a larger
/// buffer whose other elements must stay untouched.
#[test]
fn every_level_gives_the_portable_bits_for_every_length() {
    let xs = inputs();
    for level in Level::available() {
        let max = 2 * level.lanes().max(16);
        for (op, name) in OPS {
            for n in 0..=max {
                for start in (0..xs.len() - n).step_by(7) {
                    let want = apply(Level::Portable, op, &xs[start..start + n]);
                    let mut buf = vec![7.25f32; n + 2];
                    buf[1..=n].copy_from_slice(&xs[start..start + n]);
                    assert!(vecmath::unary(level, op, &mut buf[1..=n]));
                    assert_eq!(buf[0], 7.25, "{level:?} {name}: wrote before the slice");
                    assert_eq!(buf[n + 1], 7.25, "{level:?} {name}: wrote past the slice");
                    for (k, (&g, &w)) in buf[1..=n].iter().zip(&want).enumerate() {
                        let x = xs[start + k];
                        assert!(
                            same(g, w),
                            "{level:?} {name}({x:e}) = {g:e}, portable {w:e}"
                        );
                    }
                }
            }
        }
    }
}

/// `op(src - c)` into another slice gives, at every level and length, the bits of
/// subtracting first and applying the op in place (a softmax row's `exp(x - max)` read
/// straight from its buffer).
#[test]
fn shifted_kernels_give_the_bits_of_subtracting_first() {
    let xs = inputs();
    for level in Level::available() {
        for (op, name) in OPS {
            for c in [0.0f32, -0.0, 0.5, -3.25, 88.0, f32::INFINITY, f32::NAN] {
                for n in [0usize, 1, 7, 8, 15, 16, 17, 33, xs.len()] {
                    let src = &xs[..n];
                    let mut want: Vec<f32> = src.iter().map(|&x| x - c).collect();
                    assert!(vecmath::unary(level, op, &mut want));
                    let mut got = vec![1.0f32; n];
                    assert!(vecmath::unary_shifted(level, op, &mut got, src, c));
                    for (k, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            same(g, w),
                            "{level:?} {name} c={c} n={n} [{k}]: {g:e} vs {w:e}"
                        );
                    }
                }
            }
            let mut short = vec![0.0f32; 3];
            assert!(!vecmath::unary_shifted(
                level,
                op,
                &mut short,
                &xs[..4],
                0.0
            ));
        }
    }
}

#[test]
fn special_values_at_every_level() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let xs = [nan, inf, -inf, 0.0, -0.0];
    let expect: [(UnaryOp, [f32; 5]); 5] = [
        (UnaryOp::Exp, [nan, inf, 0.0, 1.0, 1.0]),
        (UnaryOp::Log, [nan, inf, nan, -inf, -inf]),
        (UnaryOp::Tanh, [nan, 1.0, -1.0, 0.0, -0.0]),
        (UnaryOp::Sigmoid, [nan, 1.0, 0.0, 0.5, 0.5]),
        (UnaryOp::Erf, [nan, 1.0, -1.0, 0.0, -0.0]),
    ];
    for level in Level::available() {
        for (op, want) in expect {
            let got = apply(level, op, &xs);
            for ((&x, &g), &w) in xs.iter().zip(&got).zip(&want) {
                assert!(same(g, w), "{level:?} {op:?}({x}) = {g:e}, want {w:e}");
            }
        }
        // Subnormal inputs and results.
        let got = apply(level, UnaryOp::Log, &[1e-40, 1e-45]);
        for (g, x) in got.iter().zip([1e-40f64, 1.401_298_464e-45]) {
            assert!(
                (f64::from(*g) - x.ln()).abs() < 1e-5,
                "{level:?} log({x:e}) = {g}"
            );
        }
        let got = apply(level, UnaryOp::Exp, &[-100.0, -103.0, 88.0, 89.0]);
        for (g, x) in got.iter().zip([-100.0f64, -103.0, 88.0, 89.0]) {
            let want = x.exp();
            let rel = if want as f32 == f32::INFINITY {
                f64::from(u8::from(*g != f32::INFINITY))
            } else {
                ((f64::from(*g) - want).abs() - 2f64.powi(-149)).max(0.0) / want
            };
            assert!(rel < 0.02, "{level:?} exp({x}) = {g:e}, want {want:e}");
        }
        let got = apply(level, UnaryOp::Tanh, &[1e-40, -1e-40]);
        assert_eq!(got, [1e-40, -1e-40], "{level:?} tanh of subnormals");
    }
}

/// Error in ulps of the `f32` spacing at `want`.
fn ulps(got: f32, want: f64) -> f64 {
    if got.is_nan() || want.is_nan() {
        return if got.is_nan() && want.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let a = want.abs().max(f64::from(f32::MIN_POSITIVE));
    let ulp = 2f64.powi(a.log2().floor() as i32 - 23);
    (f64::from(got) - want).abs() / ulp
}

/// An op, its input range, its `f64` reference and its bound in ulps.
type Sweep = (UnaryOp, f32, f32, fn(f64) -> f64, f64);

/// The documented bounds (docs/numerics.md) against `f64`, on a dense sweep.
#[test]
fn accuracy_against_f64_at_every_level() {
    let cases: [Sweep; 4] = [
        (UnaryOp::Exp, -87.0, 88.0, f64::exp, 2.0),
        (UnaryOp::Log, 1e-30, 1e30, f64::ln, 2.0),
        (UnaryOp::Tanh, -12.0, 12.0, f64::tanh, 3.0),
        (
            UnaryOp::Sigmoid,
            -80.0,
            40.0,
            |x| 1.0 / (1.0 + (-x).exp()),
            3.0,
        ),
    ];
    for level in Level::available() {
        for (op, lo, hi, f, bound) in cases {
            let n = 20_011;
            let xs: Vec<f32> = if lo > 0.0 {
                (0..n)
                    .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f32 / n as f32).exp())
                    .collect()
            } else {
                (0..n)
                    .map(|i| lo + (hi - lo) * i as f32 / n as f32)
                    .collect()
            };
            let got = apply(level, op, &xs);
            for (&x, &g) in xs.iter().zip(&got) {
                let e = ulps(g, f(f64::from(x)));
                assert!(e <= bound, "{level:?} {op:?}({x:e}) = {g:e}: {e} ulp");
            }
        }
    }
}

#[test]
fn row_reductions_at_every_level() {
    let xs = inputs();
    let finite: Vec<f32> = xs
        .iter()
        .copied()
        .filter(|x| x.is_finite() && x.abs() < 1e7)
        .collect();
    for level in Level::available() {
        for n in (0..=80).chain([1000, finite.len()]) {
            let row = &finite[..n];
            let want = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let got = vecmath::reduce(level, RowReduce::Max, row).expect("supported");
            assert_eq!(got, want, "{level:?} max of {n}");
            let exact: f64 = row.iter().map(|&x| f64::from(x)).sum();
            let mag: f64 = row.iter().map(|&x| f64::from(x).abs()).sum();
            let got = vecmath::reduce(level, RowReduce::Sum, row).expect("supported");
            let bound = n as f64 * 2f64.powi(-24) * mag;
            assert!(
                (f64::from(got) - exact).abs() <= bound,
                "{level:?} sum of {n}: {got} vs {exact} (bound {bound})"
            );
        }
        let mut with_nan = finite[..50].to_vec();
        for at in [0, 17, 49] {
            with_nan[at] = f32::NAN;
            let got = vecmath::reduce(level, RowReduce::Max, &with_nan).expect("supported");
            assert!(got.is_nan(), "{level:?}: NaN at {at} gives {got}");
            with_nan[at] = 0.0;
        }
        assert_eq!(
            vecmath::reduce(level, RowReduce::Max, &[]),
            Some(f32::NEG_INFINITY)
        );
        assert_eq!(
            vecmath::reduce(level, RowReduce::Sum, &[]).map(f32::to_bits),
            Some((-0.0f32).to_bits())
        );
    }
}

/// `y = op(x)` over `[rows, cols]` (`i0*cols + i1`): with `cols` below the tile length the
/// loop is not tiled and every point runs the inline code.
fn program(op: &str, cols: u64) -> kiln_kernel::Program {
    kiln_kernel::parse(&format!(
        "symbol N >= 1
         b0 = input \"x\" f32[N*{cols}]
         b1 = output \"y\" f32[N*{cols}]
         k0 = loop [N, {cols}] {{
           v0 = load b0[i0*{cols} + i1]
           v1 = f32(0.75)
           v2 = mul(v0, v1)
           v3 = {op}(v2)
           v4 = {op}(v3)
           v5 = add(v4, v0)
           store b1[i0*{cols} + i1] = v5
         }}"
    ))
    .expect("parse")
}

fn run(op: &str, cols: u64, xs: &[f32]) -> Vec<f32> {
    exec(program(op, cols), cols, xs)
}

/// Runs `program` over `xs` as rows of `cols` (`N` rows): the input is `xs`, every other
/// buffer (the output `y`, scratch of `[N]`) starts zeroed; returns `y` (buffer 1).
fn exec(program: kiln_kernel::Program, cols: u64, xs: &[f32]) -> Vec<f32> {
    let p =
        kiln_cpu::compile(&kiln_kernel::verify(program.clone()).expect("verify")).expect("compile");
    let rows = xs.len() as u64 / cols;
    let b = HashMap::from([("N".to_string(), rows)]);
    let mut bufs: Vec<Data> = program
        .buffers
        .iter()
        .map(|buf| match buf.kind {
            kiln_kernel::BufferKind::Input(_) => Data::F32(xs.to_vec()),
            kiln_kernel::BufferKind::Scratch => Data::F32(vec![0.0; rows as usize]),
            _ => Data::F32(vec![0.0; xs.len()]),
        })
        .collect();
    p.run(&b, &mut bufs).expect("run");
    let Data::F32(y) = &bufs[1] else {
        unreachable!()
    };
    y.clone()
}

/// Loops over rows of 2048 (tiles of 512), 128 (one tile per row) and 96 (a tile of 64 and
/// 32 inline points per row) run tiles through the wide kernels (when the host has them)
/// with a chain of two transcendentals (two passes); a loop over rows of 4 runs the inline
/// code. All give the same bits at every point.
#[test]
fn tiled_loops_give_the_inline_bits() {
    let mut xs = inputs();
    xs.resize(4 * 2048, 0.5);
    for (i, x) in xs.iter_mut().enumerate().skip(1200) {
        *x = (i as f32 * 0.013).sin() * 12.0;
    }
    for cols in [2048, 128, 96] {
        let xs = &xs[..xs.len() / cols * cols];
        for (_, name) in OPS {
            let tiled = run(name, cols as u64, xs);
            let inline = run(name, 4, xs);
            for (k, (&a, &b)) in tiled.iter().zip(&inline).enumerate() {
                assert!(
                    same(a, b),
                    "{name}, rows of {cols}, at {k} (x = {:e}): {a:e} vs {b:e}",
                    xs[k]
                );
            }
        }
    }
}

/// Runs `src` (buffers `x` input, `y` output, `s` scratch of `[N]`; `C` stands for `cols`)
/// over rows of `cols`.
fn run_rows(src: &str, cols: u64, xs: &[f32]) -> Vec<f32> {
    let p = kiln_kernel::parse(&format!("symbol N >= 1\n{src}").replace("C", &cols.to_string()))
        .expect("parse");
    exec(p, cols, xs)
}

/// A softmax-shaped row kernel keeps `exp(x - c)` of its reduction loop for the loop over
/// the row; on a host with a wide level the reduction's `exp` runs as one wide kernel over
/// the kept row before the sum. It gives the bits of the same sum and quotient computed by
/// two kernels whose reduction evaluates `exp` inline (same partial accumulators, same
/// `exp` bits), at row lengths with and without a scalar tail.
#[test]
fn kept_row_exp_through_the_wide_kernel_gives_the_inline_bits() {
    let one = "b0 = input \"x\" f32[N*C]
               b1 = output \"y\" f32[N*C]
               b2 = scratch f32[N]
               k0 = loop [N, C] reduce [C] {
                 v0 = load b0[i0*C + i1]
                 v1 = f32(0.5)
                 v2 = sub(v0, v1)
                 v3 = exp(v2)
                 v4 = load b0[i0*C + r0]
                 v5 = sub(v4, v1)
                 v6 = exp(v5)
                 v7 = reduce_sum(v6) init f32(0.0)
                 v8 = div(v3, v7)
                 store b1[i0*C + i1] = v8
               }";
    let two = "b0 = input \"x\" f32[N*C]
               b1 = output \"y\" f32[N*C]
               b2 = scratch f32[N]
               k0 = loop [N] reduce [C] {
                 v0 = load b0[i0*C + r0]
                 v1 = f32(0.5)
                 v2 = sub(v0, v1)
                 v3 = exp(v2)
                 v4 = reduce_sum(v3) init f32(0.0)
                 store b2[i0] = v4
               }
               k1 = loop [N, C] {
                 v0 = load b0[i0*C + i1]
                 v1 = f32(0.5)
                 v2 = sub(v0, v1)
                 v3 = exp(v2)
                 v4 = load b2[i0]
                 v5 = div(v3, v4)
                 store b1[i0*C + i1] = v5
               }";
    for cols in [1030u64, 1024, 7] {
        let xs: Vec<f32> = (0..3 * cols as usize)
            .map(|i| (i as f32 * 0.37).sin() * 20.0)
            .collect();
        let (a, b) = (run_rows(one, cols, &xs), run_rows(two, cols, &xs));
        for (k, (&p, &q)) in a.iter().zip(&b).enumerate() {
            assert!(same(p, q), "cols {cols}, point {k}: {p:e} vs {q:e}");
        }
        assert!(a.iter().all(|v| v.is_finite() && *v > 0.0), "cols {cols}");
    }
}
