//! Differential tests of whole kernels on the GPU against the kernel executor: reductions
//! (row softmax, serial and workgroup-tree, integer and NaN-propagating, staged reductions
//! on every path: softmax and layer norm in one kernel), masked and checked
//! loads, matmul and conv2d with fused epilogues at odd sizes, launches beyond 65535
//! workgroups, persistent state and the run API (skipped without an adapter unless
//! KILN_REQUIRE_GPU=1).

mod common;

use common::{
    EXACT, SUM, TRANSCENDENTAL, Tol, bind, check, check_with, f32s, i32s, named, reference, u32s,
};
use kiln_gpu::{GpuDevice, GpuError, GpuOptions, GpuProgram, test_device};
use kiln_ir::Array;
use kiln_kernel::{BindError, BufferId, ExecError, KernelId, parse};
use kiln_wgsl::{GemmTile, ShaderKind, Target, WgslError};
use std::collections::HashMap;
use std::path::Path;

/// Deterministic pseudo-random floats in `[-1, 1)`.
fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

const SOFTMAX: &str = "
symbol N >= 1
symbol C >= 1, <= 4096
b0 = input \"x\" f32[N*C]
b1 = scratch f32[N]
b2 = output \"y\" f32[N*C]
k0 = loop [N] reduce [C] {
  v0 = load b0[i0*C + r0]
  v1 = reduce_max(v0) init f32(-inf)
  store b1[i0] = v1
}
k1 = loop [N, C] reduce [C] {
  v0 = load b1[i0]
  v1 = load b0[i0*C + r0]
  v2 = sub(v1, v0)
  v3 = exp(v2)
  v4 = reduce_sum(v3) init f32(0.0)
  v5 = load b0[i0*C + i1]
  v6 = sub(v5, v0)
  v7 = exp(v6)
  v8 = div(v7, v4)
  store b2[i0*C + i1] = v8
}
";

#[test]
fn row_softmax_with_workgroup_tree() {
    let p = parse(SOFTMAX).expect("parses");
    // C = 300 is symbolic, so both kernels use the workgroup tree; C = 1 and 65 cover a
    // row shorter than the workgroup and one just past it.
    for (n, c) in [(5u64, 300u64), (3, 1), (2, 65)] {
        let x: Vec<f32> = noise((n * c) as usize, 7).iter().map(|v| v * 8.0).collect();
        let got = check(
            &p,
            &bind(&[("N", n), ("C", c)]),
            &named(vec![("x", f32s(&x))]),
            &|_| TRANSCENDENTAL,
        );
        if let Some((outs, _)) = got {
            let y = outs["y"].to_f64_vec();
            let row: f64 = y[..c as usize].iter().sum();
            assert!((row - 1.0).abs() < 1e-5, "softmax row sums to {row}");
        }
    }
}

#[test]
fn serial_reductions_int_float_nan() {
    // Known reduction lengths up to 64 run serially per invocation; two accumulators share
    // the loop; integer sums wrap; NaN propagates through reduce_max.
    let text = "
symbol N >= 1
b0 = input \"x\" f32[N*10]
b1 = input \"k\" i32[N*10]
b2 = input \"u\" u32[N*10]
b3 = output \"sum\" f32[N]
b4 = output \"max\" f32[N]
b5 = output \"min\" f32[N]
b6 = output \"prod\" f32[N]
b7 = output \"isum\" i32[N]
b8 = output \"imax\" i32[N]
b9 = output \"umin\" u32[N]
b10 = output \"mean_sq\" f32[N]
k0 = loop [N] reduce [10] {
  v0 = load b0[i0*10 + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = reduce_max(v0) init f32(-inf)
  v3 = reduce_min(v0) init f32(inf)
  v4 = reduce_prod(v0) init f32(1.0)
  v5 = load b1[i0*10 + r0]
  v6 = reduce_sum(v5) init i32(0)
  v7 = reduce_max(v5) init i32(-2147483648)
  v8 = load b2[i0*10 + r0]
  v9 = reduce_min(v8) init u32(4294967295)
  v10 = mul(v0, v0)
  v11 = reduce_sum(v10) init f32(0.0)
  v12 = f32(10.0)
  v13 = div(v11, v12)
  store b3[i0] = v1
  store b4[i0] = v2
  store b5[i0] = v3
  store b6[i0] = v4
  store b7[i0] = v6
  store b8[i0] = v7
  store b9[i0] = v9
  store b10[i0] = v13
}
";
    let p = parse(text).expect("parses");
    let n = 7;
    let mut x = noise(n * 10, 3);
    x[25] = f32::NAN;
    let k: Vec<i32> = (0..n as i32 * 10)
        .map(|i| if i % 10 == 3 { i32::MAX } else { i * 7 - 200 })
        .collect();
    let u: Vec<u32> = (0..n as u32 * 10)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let inputs = named(vec![("x", f32s(&x)), ("k", i32s(&k)), ("u", u32s(&u))]);
    let got = check(&p, &bind(&[("N", n as u64)]), &inputs, &|name| match name {
        "sum" | "prod" | "mean_sq" => SUM,
        _ => EXACT,
    });
    if let Some((outs, _)) = got {
        assert!(outs["max"].to_f64_vec()[2].is_nan());
        assert!(!outs["max"].to_f64_vec()[1].is_nan());
    }
}

#[test]
fn long_reductions_use_the_workgroup_tree() {
    // Symbolic reduction over R (tree), integer max/sum, and a two-axis reduction domain.
    let text = "
symbol N >= 1
symbol R >= 1
b0 = input \"x\" f32[N*R*3]
b1 = input \"k\" i32[N*R*3]
b2 = output \"sum\" f32[N]
b3 = output \"imax\" i32[N]
b4 = output \"isum\" i32[N]
b5 = output \"fmin\" f32[N]
k0 = loop [N] reduce [R, 3] {
  v0 = load b0[i0*{R*3} + r0*3 + r1]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = load b1[i0*{R*3} + r0*3 + r1]
  v3 = reduce_max(v2) init i32(-2147483648)
  v4 = reduce_sum(v2) init i32(0)
  v5 = reduce_min(v0) init f32(inf)
  store b2[i0] = v1
  store b3[i0] = v3
  store b4[i0] = v4
  store b5[i0] = v5
}
";
    let p = parse(text).expect("parses");
    let (n, r) = (4u64, 1000u64);
    let len = (n * r * 3) as usize;
    let mut x = noise(len, 11);
    x[3000 + 1234] = f32::NAN;
    let k: Vec<i32> = (0..len as i32)
        .map(|i| (i * 7919) % 100_003 - 50_000)
        .collect();
    let got = check(
        &p,
        &bind(&[("N", n), ("R", r)]),
        &named(vec![("x", f32s(&x)), ("k", i32s(&k))]),
        &|name| {
            if name == "sum" {
                Tol {
                    abs: 1e-4,
                    rel: 1e-5,
                }
            } else {
                EXACT
            }
        },
    );
    if let Some((outs, _)) = got {
        assert!(outs["fmin"].to_f64_vec()[1].is_nan());
    }
}

#[test]
fn masked_loads_pad_and_concat() {
    let text = "
symbol N >= 1
b0 = input \"x\" f32[N*3]
b1 = input \"z\" f32[N*2]
b2 = output \"padded\" f32[N*5]
b3 = output \"joined\" f32[N*5]
k0 = loop [N, 5] {
  v0 = load b0[i0*3 + (i1 - 1)] if 0 <= i1 - 1 < 3 else f32(-1.0)
  store b2[i0*5 + i1] = v0
}
k1 = loop [N, 5] {
  v0 = load b0[i0*3 + i1] if 0 <= i1 < 3 else f32(0.0)
  v1 = load b1[i0*2 + (i1 - 3)] if 0 <= i1 - 3 < 2 else f32(0.0)
  v2 = index<i32>(i1)
  v3 = i32(3)
  v4 = lt(v2, v3)
  v5 = select(v4, v0, v1)
  store b3[i0*5 + i1] = v5
}
";
    let p = parse(text).expect("parses");
    let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let z = [10.0, 11.0, 12.0, 13.0];
    let got = check(
        &p,
        &bind(&[("N", 2)]),
        &named(vec![("x", f32s(&x)), ("z", f32s(&z))]),
        &|_| EXACT,
    );
    if let Some((outs, _)) = got {
        assert_eq!(
            outs["padded"].to_f64_vec(),
            vec![-1.0, 0.0, 1.0, 2.0, -1.0, -1.0, 3.0, 4.0, 5.0, -1.0]
        );
        assert_eq!(
            outs["joined"].to_f64_vec(),
            vec![0.0, 1.0, 2.0, 10.0, 11.0, 3.0, 4.0, 5.0, 12.0, 13.0]
        );
    }
}

const GATHER: &str = "
symbol N >= 1
symbol V >= 1
b0 = input \"ids\" i32[N]
b1 = state \"table\" f32[V]
b2 = output \"checked\" f32[N]
b3 = output \"guarded\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = load b1[v0] if 0 <= v0 < V else f32(-9.0)
  store b3[i0] = v1
}
k1 = loop [N] {
  v0 = load b0[i0]
  v1 = load checked b1[v0]
  store b2[i0] = v1
}
";

#[test]
fn checked_and_guarded_gathers() {
    let p = parse(GATHER).expect("parses");
    let table = named(vec![("table", f32s(&[0.5, 1.5, 2.5, 3.5]))]);
    let b = bind(&[("N", 4), ("V", 4)]);
    let ok = named(vec![("ids", i32s(&[3, 0, 2, 2]))]);
    let got = check_with(&p, &b, &ok, &table, &GpuOptions::default(), &|_| EXACT);
    if let Some((outs, _)) = got {
        assert_eq!(outs["checked"].to_f64_vec(), vec![3.5, 0.5, 2.5, 2.5]);
    }
    // One id out of range: the executor stops with IndexOutOfBounds; the GPU clamps, sets
    // the error flag and reports the same kernel, buffer and index.
    let bad = named(vec![("ids", i32s(&[1, 7, 0, 2]))]);
    let want = reference(&p, &b, &bad, &table).map(|_| ());
    assert_eq!(
        want,
        Err(ExecError::IndexOutOfBounds {
            kernel: KernelId(1),
            buffer: BufferId(1),
            index: 7,
            size: 4
        })
    );
    let Some(got) = common::gpu(&p, &b, &bad, &table, &GpuOptions::default()) else {
        return;
    };
    assert_eq!(
        got.map(|_| ()),
        Err(GpuError::IndexOutOfBounds {
            kernel: KernelId(1),
            buffer: BufferId(1),
            index: 7,
            size: 4
        })
    );
    let neg = named(vec![("ids", i32s(&[1, 2, -3, 0]))]);
    let Some(got) = common::gpu(&p, &b, &neg, &table, &GpuOptions::default()) else {
        return;
    };
    let msg = got.map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        msg,
        Err("k1: load of b1 at index -3 is outside 0..4".to_string())
    );
}

#[test]
fn integer_division_by_zero_is_reported() {
    let text = "
b0 = input \"a\" i32[4]
b1 = input \"b\" i32[4]
b2 = output \"q\" i32[4]
k0 = loop [4] {
  v0 = load b0[i0]
  v1 = load b1[i0]
  v2 = div(v0, v1)
  store b2[i0] = v2
}
";
    let p = parse(text).expect("parses");
    let inputs = named(vec![("a", i32s(&[1, 2, 3, 4])), ("b", i32s(&[1, 0, 1, 1]))]);
    assert!(matches!(
        reference(&p, &bind(&[]), &inputs, &HashMap::new()),
        Err(ExecError::Scalar {
            kernel: KernelId(0),
            ..
        })
    ));
    let Some(got) = common::gpu(
        &p,
        &bind(&[]),
        &inputs,
        &HashMap::new(),
        &GpuOptions::default(),
    ) else {
        return;
    };
    assert_eq!(
        got.map(|_| ()),
        Err(GpuError::DivisionByZero {
            kernel: KernelId(0)
        })
    );
}

const MATMUL: &str = "
symbol M >= 1
b0 = input \"x\" f32[M*19]
b1 = state \"w\" f32[855]
b2 = state \"bias\" f32[45]
b3 = output \"y\" f32[M*45]
b4 = output \"pre\" f32[M*45]
k0 = matmul m M k 19 n 45 {
  a {
    v0 = load b0[i0*19 + i1]
    yield v0
  }
  b {
    v0 = load b2[i1]
    v1 = load b1[i1*19 + i0]
    v2 = f32(0.5)
    v3 = mul(v1, v2)
    yield v3
  }
  epilogue {
    v0 = acc
    v1 = load b2[i1]
    v2 = add(v0, v1)
    v3 = f32(0.0)
    v4 = max(v2, v3)
    store b3[i0*45 + i1] = v4
    store b4[i0*45 + i1] = v2
  }
}
";

/// The targets a test compares on this device: the portable one, and (when the adapter
/// has subgroups or allows the large tile) the device's own.
fn targets() -> Vec<Target> {
    let mut out = vec![Target::portable()];
    if let Some(device) = test_device()
        && device.target() != Target::portable()
    {
        out.push(device.target());
    }
    out
}

#[test]
fn subgroup_and_tree_reductions_agree_with_the_executor() {
    // Long symbolic rows (the row-reduce and hoisted-row templates): float sum, product,
    // NaN-propagating max and min, integer max, min and sum, over rows of every length
    // around the subgroup and workgroup sizes.
    let text = "
symbol N >= 1
symbol R >= 1
b0 = input \"x\" f32[N*R]
b1 = input \"k\" i32[N*R]
b2 = output \"sum\" f32[N]
b3 = output \"prod\" f32[N]
b4 = output \"fmax\" f32[N]
b5 = output \"fmin\" f32[N]
b6 = output \"imax\" i32[N]
b7 = output \"imin\" i32[N]
b8 = output \"isum\" i32[N]
k0 = loop [N] reduce [R] {
  v0 = load b0[i0*R + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = f32(0.01)
  v3 = mul(v0, v2)
  v4 = f32(1.0)
  v5 = add(v3, v4)
  v6 = reduce_prod(v5) init f32(1.0)
  v7 = reduce_max(v0) init f32(-inf)
  v8 = reduce_min(v0) init f32(inf)
  v9 = load b1[i0*R + r0]
  v10 = reduce_max(v9) init i32(-2147483648)
  v11 = reduce_min(v9) init i32(2147483647)
  v12 = reduce_sum(v9) init i32(0)
  store b2[i0] = v1
  store b3[i0] = v6
  store b4[i0] = v7
  store b5[i0] = v8
  store b6[i0] = v10
  store b7[i0] = v11
  store b8[i0] = v12
}
";
    let p = parse(text).expect("parses");
    let softmax = parse(SOFTMAX).expect("parses");
    for target in targets() {
        let options = GpuOptions {
            target: Some(target),
            ..GpuOptions::default()
        };
        for r in [1u64, 7, 8, 9, 63, 64, 65, 1000] {
            let n = 3u64;
            let len = (n * r) as usize;
            let mut x = noise(len, 13 + r as u32);
            // Row 1 holds a NaN (max and min must return NaN there), row 2 an infinity.
            x[r as usize + (r as usize) / 2] = f32::NAN;
            x[2 * r as usize] = f32::INFINITY;
            let k: Vec<i32> = (0..len as i32)
                .map(|i| (i * 7919) % 100_003 - 50_000)
                .collect();
            let got = check_with(
                &p,
                &bind(&[("N", n), ("R", r)]),
                &named(vec![("x", f32s(&x)), ("k", i32s(&k))]),
                &HashMap::new(),
                &options,
                &|name| match name {
                    "sum" | "prod" => Tol {
                        abs: 1e-4,
                        rel: 1e-5,
                    },
                    _ => EXACT,
                },
            );
            if let Some((outs, _)) = got {
                assert!(outs["fmax"].to_f64_vec()[1].is_nan(), "{target:?} r={r}");
                assert!(outs["fmin"].to_f64_vec()[1].is_nan(), "{target:?} r={r}");
                assert_eq!(outs["fmax"].to_f64_vec()[2], f64::INFINITY);
            }
            let c = r.max(2);
            let xs: Vec<f32> = noise((n * c) as usize, 5).iter().map(|v| v * 8.0).collect();
            check_with(
                &softmax,
                &bind(&[("N", n), ("C", c)]),
                &named(vec![("x", f32s(&xs))]),
                &HashMap::new(),
                &options,
                &|_| TRANSCENDENTAL,
            );
        }
    }
}

/// A kernel program of `fixtures/filetests/kernel/` (the `; verifier output:` block is
/// comments, which the parser skips).
fn kernel_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/filetests/kernel")
        .join(format!("{name}.kir"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with its symbolic row length `C` (declared by `decl`) replaced by `len`, which
/// makes a short row a serial reduction.
fn with_row_length(text: &str, decl: &str, len: u64) -> String {
    assert!(text.contains(decl), "no `{decl}` in\n{text}");
    text.replace(decl, "").replace('C', &len.to_string())
}

/// Runs a staged-reduction program on every target of [`targets`] against the executor,
/// after checking that its kernel lowers to `kind` there; returns the GPU results (none
/// when skipped).
fn check_staged(
    text: &str,
    kind: ShaderKind,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    tol: &dyn Fn(&str) -> Tol,
) -> Vec<(Target, HashMap<String, Array>)> {
    let p = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let verified = kiln_kernel::verify(p.clone()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut out = Vec::new();
    for target in targets() {
        let wgsl = kiln_wgsl::compile_for(&verified, &target).expect("lowers");
        assert_eq!(wgsl.kernels[0].kind, kind, "{target:?}\n{text}");
        let options = GpuOptions {
            target: Some(target),
            ..GpuOptions::default()
        };
        if let Some((outs, _)) = check_with(&p, bindings, inputs, &HashMap::new(), &options, tol) {
            out.push((target, outs));
        }
    }
    out
}

/// Row `row` of a flat `[rows, len]` array.
fn row_of(a: &Array, row: usize, len: usize) -> Vec<f64> {
    a.to_f64_vec()[row * len..(row + 1) * len].to_vec()
}

#[test]
fn softmax_in_one_kernel_on_every_reduction_path() {
    // The max (stage 1) and the sum of exp(x - max) (stage 2) in one kernel: hoisted rows
    // of a symbolic length around the subgroup and workgroup sizes, and serial rows of a
    // known length. Row 1 holds a NaN (the max and then the whole row are NaN), row 2 a
    // -inf (exp gives 0 there).
    let fixture = kernel_fixture("softmax_one_kernel");
    let decl = "symbol C >= 1, <= 4096\n";
    let mut cases: Vec<(String, ShaderKind, u64)> = [1u64, 7, 63, 64, 65, 300, 1000]
        .iter()
        .map(|&c| (fixture.clone(), ShaderKind::HoistedReduce, c))
        .collect();
    for c in [1u64, 10, 64] {
        let text = with_row_length(&fixture, decl, c);
        cases.push((text, ShaderKind::SerialReduce, c));
    }
    for (text, kind, c) in cases {
        let (n, len) = (3usize, c as usize);
        let mut x: Vec<f32> = noise(n * len, 11 + c as u32)
            .iter()
            .map(|v| v * 8.0)
            .collect();
        x[len + len / 2] = f32::NAN;
        x[2 * len] = f32::NEG_INFINITY;
        let runs = check_staged(
            &text,
            kind,
            &bind(&[("N", n as u64), ("C", c)]),
            &named(vec![("x", f32s(&x))]),
            &|_| TRANSCENDENTAL,
        );
        for (target, outs) in runs {
            let what = format!("{target:?} C={c}");
            let row0: f64 = row_of(&outs["y"], 0, len).iter().sum();
            assert!((row0 - 1.0).abs() < 1e-5, "{what}: row 0 sums to {row0}");
            assert!(
                row_of(&outs["y"], 1, len).iter().all(|v| v.is_nan()),
                "{what}: row 1 holds a NaN"
            );
            if len > 1 {
                assert_eq!(row_of(&outs["y"], 2, len)[0], 0.0, "{what}: exp(-inf)");
            }
        }
    }
}

#[test]
fn layer_norm_in_one_kernel_on_every_reduction_path() {
    // The mean (stage 1), the variance about it (stage 2), then every point: rows of 64
    // (the fixture as written) reduce serially, rows of 65 and 300 with a hoisted
    // workgroup reduction. The rows sit far from 0 so that the centring matters.
    let fixture = kernel_fixture("layer_norm_one_kernel");
    for len in [64usize, 65, 300] {
        let (text, kind) = if len == 64 {
            (fixture.clone(), ShaderKind::SerialReduce)
        } else {
            let inv = format!("{}", 1.0f32 / len as f32);
            let text = fixture
                .replace("64", &len.to_string())
                .replace("0.015625", &inv);
            (text, ShaderKind::HoistedReduce)
        };
        let n = 5usize;
        let x: Vec<f32> = noise(n * len, 17 + len as u32)
            .iter()
            .enumerate()
            .map(|(i, v)| v * 4.0 + (i / len) as f32 * 10.0)
            .collect();
        let runs = check_staged(
            &text,
            kind,
            &bind(&[("N", n as u64)]),
            &named(vec![("x", f32s(&x))]),
            &|_| Tol {
                abs: 1e-4,
                rel: 1e-4,
            },
        );
        for (target, outs) in runs {
            for row in 0..n {
                let y = row_of(&outs["y"], row, len);
                let mean = y.iter().sum::<f64>() / len as f64;
                let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
                assert!(
                    mean.abs() < 1e-4,
                    "{target:?} len={len} row {row}: mean {mean}"
                );
                assert!(
                    (var - 1.0).abs() < 1e-3,
                    "{target:?} len={len} row {row}: {var}"
                );
            }
        }
    }
}

/// A row's log-sum-exp `max + log(sum(exp(x - max)))` (stages 1 and 2), the sum of
/// `exp(x - lse)` (stage 3, 1 up to rounding), the sum over the row of its max (a stage-2
/// reduction whose operand is a reduced result) and an integer max and the sum of the
/// differences to it: one value per row, so no axis is hoisted.
const LOG_SUM_EXP: &str = "
symbol N >= 1
symbol C >= 1
b0 = input \"x\" f32[N*C]
b1 = input \"k\" i32[N*C]
b2 = output \"lse\" f32[N]
b3 = output \"total\" f32[N]
b4 = output \"maxes\" f32[N]
b5 = output \"idev\" i32[N]
k0 = loop [N] reduce [C] {
  v0 = load b0[i0*C + r0]
  v1 = reduce_max(v0) init f32(-inf)
  v2 = sub(v0, v1)
  v3 = exp(v2)
  v4 = reduce_sum(v3) init f32(0.0)
  v5 = log(v4)
  v6 = add(v1, v5)
  v7 = sub(v0, v6)
  v8 = exp(v7)
  v9 = reduce_sum(v8) init f32(0.0)
  v10 = reduce_sum(v1) init f32(0.0)
  v11 = load b1[i0*C + r0]
  v12 = reduce_max(v11) init i32(-2147483648)
  v13 = sub(v11, v12)
  v14 = reduce_sum(v13) init i32(0)
  store b2[i0] = v6
  store b3[i0] = v9
  store b4[i0] = v10
  store b5[i0] = v14
}
";

#[test]
fn staged_row_reductions_without_hoisting() {
    // Three stages of reductions per row: symbolic rows around the subgroup and workgroup
    // sizes take the workgroup path (one workgroup per row, nothing to hoist), rows of 10
    // and 64 the serial one. Row 1 holds a NaN, which the max stage must propagate.
    let decl = "symbol C >= 1\n";
    let mut cases: Vec<(String, ShaderKind, u64)> = [1u64, 7, 63, 64, 65, 1000]
        .iter()
        .map(|&c| (LOG_SUM_EXP.to_string(), ShaderKind::RowReduce, c))
        .collect();
    for c in [10u64, 64] {
        let text = with_row_length(LOG_SUM_EXP, decl, c);
        cases.push((text, ShaderKind::SerialReduce, c));
    }
    for (text, kind, c) in cases {
        let (n, len) = (3usize, c as usize);
        let mut x: Vec<f32> = noise(n * len, 23 + c as u32)
            .iter()
            .map(|v| v * 8.0)
            .collect();
        x[len + len / 3] = f32::NAN;
        let k: Vec<i32> = (0..(n * len) as i32)
            .map(|i| (i * 7919) % 100_003 - 50_000)
            .collect();
        let runs = check_staged(
            &text,
            kind,
            &bind(&[("N", n as u64), ("C", c)]),
            &named(vec![("x", f32s(&x)), ("k", i32s(&k))]),
            &|name| match name {
                "idev" => EXACT,
                _ => Tol {
                    abs: 1e-4,
                    rel: 1e-4,
                },
            },
        );
        for (target, outs) in runs {
            let what = format!("{target:?} C={c}");
            let (lse, total) = (outs["lse"].to_f64_vec(), outs["total"].to_f64_vec());
            assert!(lse[0].is_finite() && lse[2].is_finite(), "{what}: {lse:?}");
            assert!(lse[1].is_nan() && total[1].is_nan(), "{what}: {lse:?}");
            assert!((total[0] - 1.0).abs() < 1e-4, "{what}: {total:?}");
            let idev = outs["idev"].to_i64_vec();
            assert!(idev.iter().all(|&d| d <= 0), "{what}: {idev:?}");
        }
    }
}

#[test]
fn large_and_small_gemm_tiles_agree_with_the_executor() {
    // 2 x 520 x 70 x 900: 2 * 9 * 15 = 270 tiles of 64x64, so a target with the large tile
    // uses it; 520 and 900 are not multiples of 64 and 70 not of the staged depth 16.
    let text = "
b0 = input \"a\" f32[72800]
b1 = input \"b\" f32[126000]
b2 = input \"bias\" f32[900]
b3 = output \"y\" f32[936000]
k0 = matmul batch [2] m 520 k 70 n 900 {
  a {
    v0 = load b0[i0*36400 + i1*70 + i2]
    yield v0
  }
  b {
    v0 = load b1[i0*63000 + i1*900 + i2]
    yield v0
  }
  epilogue {
    v0 = acc
    v1 = load b2[i2]
    v2 = add(v0, v1)
    store b3[i0*468000 + i1*900 + i2] = v2
  }
}
";
    let p = parse(text).expect("parses");
    let large = Target {
        subgroups: false,
        gemm: GemmTile::Large,
    };
    let wgsl = kiln_wgsl::compile_for(&common::verified(&p), &large).expect("lowers");
    assert_eq!(wgsl.kernels[0].workgroup_shape, [16, 16, 1]);
    let wgsl = kiln_wgsl::compile_for(&common::verified(&p), &Target::portable()).expect("lowers");
    assert_eq!(wgsl.kernels[0].workgroup_shape, [8, 8, 1]);
    let inputs = named(vec![
        ("a", f32s(&noise(72800, 21))),
        ("b", f32s(&noise(126_000, 22))),
        ("bias", f32s(&noise(900, 23))),
    ]);
    let mut tiles = vec![Target::portable()];
    if test_device().is_some_and(|d| d.target().gemm == GemmTile::Large) {
        tiles.push(large);
    }
    for target in tiles {
        let options = GpuOptions {
            target: Some(target),
            ..GpuOptions::default()
        };
        check_with(&p, &bind(&[]), &inputs, &HashMap::new(), &options, &|_| SUM);
    }
}

#[test]
fn matmul_with_prologue_and_epilogue_at_odd_sizes() {
    let p = parse(MATMUL).expect("parses");
    let states = named(vec![
        ("w", f32s(&noise(855, 5))),
        ("bias", f32s(&noise(45, 6))),
    ]);
    for m in [1u64, 37, 70] {
        let x = noise(m as usize * 19, 9);
        check_with(
            &p,
            &bind(&[("M", m)]),
            &named(vec![("x", f32s(&x))]),
            &states,
            &GpuOptions::default(),
            &|_| SUM,
        );
    }
}

#[test]
fn batched_integer_matmul_with_broadcast() {
    // B[b] is shared across the batch (stride 0) and A is read transposed; i32 is exact.
    let text = "
symbol B >= 1
b0 = input \"a\" i32[B*33*5]
b1 = input \"b\" i32[5*40]
b2 = output \"c\" i32[B*33*40]
k0 = matmul batch [B] m 33 k 5 n 40 {
  a {
    v0 = load b0[i0*165 + i2*33 + i1]
    yield v0
  }
  b {
    v0 = load b1[i1*40 + i2]
    yield v0
  }
  epilogue {
    v0 = acc
    v1 = index<i32>(i0)
    v2 = add(v0, v1)
    store b2[i0*1320 + i1*40 + i2] = v2
  }
}
";
    let p = parse(text).expect("parses");
    let a: Vec<i32> = (0..3 * 165).map(|i| (i * 37) % 23 - 11).collect();
    let b: Vec<i32> = (0..200).map(|i| (i * 13) % 17 - 8).collect();
    check(
        &p,
        &bind(&[("B", 3)]),
        &named(vec![("a", i32s(&a)), ("b", i32s(&b))]),
        &|_| EXACT,
    );
}

#[test]
fn conv2d_implicit_gemm_grouped_strided_dilated() {
    let text = "
symbol N >= 1
b0 = input \"x\" f32[N*324]
b1 = state \"w\" f32[108]
b2 = state \"bias\" f32[6]
b3 = output \"y\" f32[N*150]
b4 = output \"z\" f32[N*150]
k0 = conv2d n N c 4 h 9 w 9 o 6 kernel [3, 3] stride [2, 2] padding [1, 1] dilation [1, 1] groups 2 {
  input {
    v0 = load b0[i0*324 + i1*81 + i2*9 + i3]
    yield v0
  }
  weight {
    v0 = load b1[i0*18 + i1*9 + i2*3 + i3]
    yield v0
  }
  epilogue {
    v0 = acc
    v1 = load b2[i1]
    v2 = add(v0, v1)
    v3 = f32(0.0)
    v4 = max(v2, v3)
    store b3[i0*150 + i1*25 + i2*5 + i3] = v4
  }
}
k1 = conv2d n N c 4 h 9 w 9 o 6 kernel [3, 2] stride [1, 2] padding [0, 2] dilation [2, 3] groups 1 {
  input {
    v0 = load b0[i0*324 + i1*81 + i2*9 + i3]
    v1 = f32(2.0)
    v2 = mul(v0, v1)
    yield v2
  }
  weight {
    v0 = load b1[i0*24 + i1*6 + i2*2 + i3] if 0 <= i0*24 + i1*6 + i2*2 + i3 < 108 else f32(0.25)
    yield v0
  }
  epilogue {
    v0 = acc
    store b4[i0*150 + i1*25 + i2*5 + i3] = v0
  }
}
";
    let p = parse(text).expect("parses");
    let states = named(vec![
        ("w", f32s(&noise(108, 2))),
        ("bias", f32s(&noise(6, 3))),
    ]);
    check_with(
        &p,
        &bind(&[("N", 2)]),
        &named(vec![("x", f32s(&noise(648, 4)))]),
        &states,
        &GpuOptions::default(),
        &|_| SUM,
    );
}

#[test]
fn launches_beyond_65535_workgroups_are_split() {
    // 4,200,000 > 65535 * 64 elements: 65,625 workgroups of 64 do not fit one dimension.
    let text = "
symbol N >= 1
b0 = input \"x\" f32[N]
b1 = output \"y\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = index<f32>(i0 % 1000)
  v2 = f32(2.0)
  v3 = mul(v0, v2)
  v4 = add(v3, v1)
  store b1[i0] = v4
}
";
    let Some(device) = test_device() else {
        return;
    };
    let p = parse(text).expect("parses");
    let n = 4_200_000usize;
    let mut g = GpuProgram::compile_on(&device, &common::verified(&p), &GpuOptions::default())
        .expect("compiles");
    let groups = g.wgsl().kernels[0]
        .workgroups(&bind(&[("N", n as u64)]))
        .expect("fits");
    assert!(groups > 65_535, "{groups} workgroups");
    let x: Vec<f32> = (0..n).map(|i| (i % 4096) as f32).collect();
    let out = g
        .run(&bind(&[("N", n as u64)]), &named(vec![("x", f32s(&x))]))
        .expect("runs");
    let y = out["y"].as_f32().expect("f32");
    let wrong = (0..n)
        .filter(|&i| y[i] != x[i] * 2.0 + (i % 1000) as f32)
        .count();
    assert_eq!(wrong, 0, "elements differ");
}

#[test]
fn every_kernel_kind_on_a_forced_3d_grid() {
    // Small per-dimension caps force 3-D grids with surplus workgroups for the
    // elementwise, row-reduction and GEMM templates.
    let cap = |n: u32| GpuOptions {
        max_workgroups_per_dimension: Some(n),
        ..GpuOptions::default()
    };
    // k1 has 7 * 70 = 490 rows: an 8 x 8 x 8 grid.
    let p = parse(SOFTMAX).expect("parses");
    let x = noise(7 * 70, 1);
    check_with(
        &p,
        &bind(&[("N", 7), ("C", 70)]),
        &named(vec![("x", f32s(&x))]),
        &HashMap::new(),
        &cap(8),
        &|_| TRANSCENDENTAL,
    );
    // 5 x 2 output tiles: a 3 x 3 x 2 grid.
    let p = parse(MATMUL).expect("parses");
    let states = named(vec![
        ("w", f32s(&noise(855, 5))),
        ("bias", f32s(&noise(45, 6))),
    ]);
    check_with(
        &p,
        &bind(&[("M", 130)]),
        &named(vec![("x", f32s(&noise(130 * 19, 8)))]),
        &states,
        &cap(3),
        &|_| SUM,
    );
    // 600 elements in 10 workgroups: a 3 x 3 x 2 grid.
    let text = "
b0 = input \"x\" f32[600]
b1 = output \"y\" f32[600]
k0 = loop [600] {
  v0 = load b0[i0]
  v1 = neg(v0)
  store b1[i0] = v1
}
";
    let p = parse(text).expect("parses");
    check_with(
        &p,
        &bind(&[]),
        &named(vec![("x", f32s(&noise(600, 3)))]),
        &HashMap::new(),
        &cap(3),
        &|_| EXACT,
    );
    assert_eq!(kiln_gpu::split_grid(490, 8), Some([8, 8, 8]));
    assert_eq!(kiln_gpu::split_grid(10, 3), Some([3, 3, 2]));
    assert_eq!(kiln_gpu::split_grid(65_625, 65_535), Some([65_535, 2, 1]));
    assert_eq!(kiln_gpu::split_grid(28, 3), None);
}

const SGD: &str = "
symbol P >= 1
b0 = state \"w\" f32[P]
b1 = input \"grad\" f32[P]
b2 = const f32[1] [0.25]
b3 = output \"norm\" f32[1]
k0 = loop [P] {
  v0 = load b0[i0]
  v1 = load b1[i0]
  v2 = load b2[0]
  v3 = mul(v1, v2)
  v4 = sub(v0, v3)
  store b0[i0] = v4
}
k1 = loop [1] reduce [P] {
  v0 = load b0[r0]
  v1 = mul(v0, v0)
  v2 = reduce_sum(v1) init f32(0.0)
  store b3[i0] = v2
}
";

#[test]
fn state_persists_on_the_device_and_buffers_are_pooled() {
    let Some(device) = test_device() else {
        return;
    };
    let p = parse(SGD).expect("parses");
    let b = bind(&[("P", 100)]);
    let mut g = GpuProgram::compile_on(&device, &common::verified(&p), &GpuOptions::default())
        .expect("compiles");
    let w0 = noise(100, 4);
    g.set_state("w", &f32s(&w0)).expect("sets");
    let grad = named(vec![("grad", f32s(&noise(100, 5)))]);
    g.run(&b, &grad).expect("first run");
    let created = g.pooled_buffers_created();
    let out = g.run(&b, &grad).expect("second run");
    assert_eq!(
        g.pooled_buffers_created(),
        created,
        "second run reuses pooled buffers"
    );
    // Two SGD steps on the device equal two executor runs.
    let (_, s1) = reference(&p, &b, &grad, &named(vec![("w", f32s(&w0))])).expect("runs");
    let (o2, s2) = reference(&p, &b, &grad, &s1).expect("runs");
    common::assert_close("w", &g.state("w").expect("reads"), &s2["w"], EXACT);
    common::assert_close("norm", &out["norm"], &o2["norm"], SUM);
    // Only requested outputs are read back.
    let only = g.run_outputs(&b, &grad, Some(&[])).expect("runs");
    assert!(only.is_empty());
}

#[test]
fn run_api_errors() {
    let Some(device) = test_device() else {
        return;
    };
    let p = parse(SGD).expect("parses");
    let mut g = GpuProgram::compile_on(&device, &common::verified(&p), &GpuOptions::default())
        .expect("compiles");
    let grad = named(vec![("grad", f32s(&[1.0; 10]))]);
    assert_eq!(
        g.run(&bind(&[]), &grad).map(|_| ()),
        Err(GpuError::Bind(BindError::Unbound("P".to_string())))
    );
    assert_eq!(
        g.run(&bind(&[("P", 0)]), &grad).map(|_| ()),
        Err(GpuError::Bind(BindError::Precondition {
            name: "P".to_string(),
            value: 0,
            rule: "P >= 1".to_string()
        }))
    );
    assert_eq!(
        g.run(&bind(&[("P", 10)]), &HashMap::new()).map(|_| ()),
        Err(GpuError::MissingInput("grad".to_string()))
    );
    let mut extra = grad.clone();
    extra.insert("nope".to_string(), f32s(&[1.0]));
    assert_eq!(
        g.run(&bind(&[("P", 10)]), &extra).map(|_| ()),
        Err(GpuError::UnknownName {
            kind: "input",
            name: "nope".to_string()
        })
    );
    assert!(matches!(
        g.run(&bind(&[("P", 11)]), &grad),
        Err(GpuError::Mismatch {
            kind: "input",
            len: 11,
            got_len: 10,
            ..
        })
    ));
    assert_eq!(
        g.run_outputs(&bind(&[("P", 10)]), &grad, Some(&["y"]))
            .map(|_| ()),
        Err(GpuError::UnknownName {
            kind: "output",
            name: "y".to_string()
        })
    );
    assert!(matches!(
        g.set_state("w", &i32s(&[1; 10])),
        Err(GpuError::Mismatch { kind: "state", .. })
    ));
    assert_eq!(
        g.state("w").map(|_| ()),
        Err(GpuError::StateUnset("w".to_string()))
    );
    g.set_state("w", &f32s(&[1.0; 10])).expect("sets");
    assert!(matches!(
        g.run(
            &bind(&[("P", 12)]),
            &named(vec![("grad", f32s(&[1.0; 12]))])
        ),
        Err(GpuError::Mismatch {
            kind: "state",
            len: 12,
            got_len: 10,
            ..
        })
    ));
    let out = g.run(&bind(&[("P", 10)]), &grad).expect("runs");
    assert_eq!(out["norm"].to_f64_vec(), vec![10.0 * 0.75 * 0.75]);
}

#[test]
fn f64_programs_are_rejected_at_compile_time() {
    let text = "
b0 = input \"x\" f64[4]
b1 = output \"y\" f64[4]
k0 = loop [4] {
  v0 = load b0[i0]
  store b1[i0] = v0
}
";
    let p = parse(text).expect("parses");
    let Some(device) = test_device() else {
        return;
    };
    let err =
        GpuProgram::compile_on(&device, &common::verified(&p), &GpuOptions::default()).map(|_| ());
    assert!(matches!(
        err,
        Err(GpuError::Wgsl(WgslError::UnsupportedDType {
            dtype: kiln_ir::DType::F64,
            ..
        }))
    ));
    let msg = err.map_err(|e| e.to_string()).err().unwrap_or_default();
    assert!(
        msg.starts_with("b0 (input \"x\") is f64, which WGSL cannot express"),
        "{msg}"
    );
}

#[test]
fn pipelines_are_cached_by_shader_and_adapters_are_selectable() {
    let Some(device) = test_device() else {
        return;
    };
    let p = parse(GATHER).expect("parses");
    GpuProgram::compile_on(&device, &common::verified(&p), &GpuOptions::default())
        .expect("compiles");
    let before = device.cached_pipelines();
    GpuProgram::compile_on(&device, &common::verified(&p), &GpuOptions::default())
        .expect("compiles");
    assert_eq!(
        device.cached_pipelines(),
        before,
        "recompiling reuses pipelines"
    );
    match GpuDevice::open_matching(Some("no adapter is called this")) {
        Err(GpuError::AdapterNotMatched { available, .. }) => {
            assert!(
                available.iter().any(|a| a == device.name()),
                "{available:?}"
            );
        }
        other => panic!("expected AdapterNotMatched, got {other:?}"),
    }
    let same = GpuDevice::open_matching(Some(&device.name().to_uppercase())).expect("opens");
    assert_eq!(same.name(), device.name());
}

#[test]
fn no_adapter_message_names_the_fix() {
    assert_eq!(
        GpuError::NoAdapter.to_string(),
        "no GPU adapter found; install a Vulkan driver, e.g. Mesa's lavapipe, or use `Backend::Cpu`"
    );
}

/// Threefry's counter words under a symbolic size (dropout in the demo's train step): the
/// high word is `flat / 2^32` and the low word `flat mod 2^32`, divisors beyond `i32` that
/// an `i32` index divides to 0 or -1 (the shader must not spell the divisor as a literal).
#[test]
fn index_division_by_a_divisor_beyond_i32() {
    let text = "
symbol N >= 1
b0 = output \"hi\" u32[N]
b1 = output \"lo\" u32[N]
b2 = output \"neg\" i32[N]
b3 = output \"negmod\" u32[N]
k0 = loop [N] {
  v0 = index<u32>(i0/4294967296)
  store b0[i0] = v0
  v1 = index<u32>(i0%4294967296)
  store b1[i0] = v1
  v2 = index<i32>((i0-5)/4294967296)
  store b2[i0] = v2
  v3 = index<u32>((i0-5)%4294967296)
  store b3[i0] = v3
}
";
    let p = parse(text).expect("parses");
    common::validate_wgsl(&p);
    let Some((out, _)) = check(&p, &bind(&[("N", 9)]), &HashMap::new(), &|_| EXACT) else {
        return;
    };
    assert_eq!(out["hi"].as_u32().unwrap(), &[0; 9]);
    assert_eq!(
        out["neg"].as_i32().unwrap(),
        &[-1, -1, -1, -1, -1, 0, 0, 0, 0]
    );
    assert_eq!(out["negmod"].as_u32().unwrap()[0], u32::MAX - 4);
}
