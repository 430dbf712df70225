//! The executor computes the right values for hand-written kernels.

use kiln_ir::{DType, Data};
use kiln_kernel::{
    BindError, BufferId, ExecError, KernelId, Program, allocate, execute, parse, verify,
};
use std::collections::HashMap;

fn bindings(list: &[(&str, u64)]) -> HashMap<String, u64> {
    list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Parses, verifies, allocates, fills the named inputs/state, runs, and returns the buffers.
fn run(
    text: &str,
    binds: &[(&str, u64)],
    fill: &[(&str, Data)],
) -> Result<(Program, Vec<Data>), ExecError> {
    let p = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let p = verify(p).unwrap_or_else(|e| panic!("{e}"));
    let b = bindings(binds);
    let mut bufs = allocate(&p, &b)?;
    for (name, data) in fill {
        let id = p
            .input(name)
            .or_else(|| p.state(name))
            .unwrap_or_else(|| panic!("no input or state {name}"));
        bufs[id.index()] = data.clone();
    }
    execute(&p, &b, &mut bufs)?;
    Ok((p.into_program(), bufs))
}

fn output(p: &Program, bufs: &[Data], name: &str) -> Vec<f64> {
    let id = p
        .output(name)
        .or_else(|| p.state(name))
        .unwrap_or_else(|| panic!("no output {name}"));
    match &bufs[id.index()] {
        Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::F64(v) => v.clone(),
        Data::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
        Data::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
    }
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}\n{got:?}"
        );
    }
}

fn ints(d: &Data) -> Vec<i64> {
    match d {
        Data::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Data::I64(v) => v.clone(),
        Data::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        other => panic!("not an integer buffer: {:?}", other.dtype()),
    }
}

fn f32s(v: &[f32]) -> Data {
    Data::F32(v.to_vec())
}

#[test]
fn fused_bias_relu() {
    let text = "symbol N >= 1
b0 = input \"x\" f32[N*3]
b1 = state \"bias\" f32[3]
b2 = output \"y\" f32[N*3]
k0 = loop [N, 3] {
  v0 = load b0[i0*3 + i1]
  v1 = load b1[i1]
  v2 = add(v0, v1)
  v3 = f32(0.0)
  v4 = max(v2, v3)
  store b2[i0*3 + i1] = v4
}
";
    let (p, bufs) = run(
        text,
        &[("N", 2)],
        &[
            ("x", f32s(&[1.0, -2.0, 3.0, -4.0, 5.0, -6.0])),
            ("bias", f32s(&[0.5, 0.5, -4.0])),
        ],
    )
    .unwrap();
    assert_eq!(output(&p, &bufs, "y"), [1.5, 0.0, 0.0, 0.0, 5.5, 0.0]);
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../fixtures/filetests/kernel/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Row softmax in two kernels (max, then the rest) and in one kernel whose sum reads the
/// max of an earlier reduction stage: the same values.
#[test]
fn row_softmax_in_two_kernels_and_in_one() {
    let x = [
        1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 1000.0, 1.0, 0.5, 0.5, 0.5, 0.5,
    ];
    let mut want = Vec::new();
    for row in x.chunks(4) {
        let m = row
            .iter()
            .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
        let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
        let s: f64 = e.iter().sum();
        want.extend(e.iter().map(|v| v / s));
    }
    for file in ["softmax_two_kernels.kir", "softmax_one_kernel.kir"] {
        let (p, bufs) = run(&fixture(file), &[("N", 3), ("C", 4)], &[("x", f32s(&x))]).unwrap();
        let y = output(&p, &bufs, "y");
        assert_close(&y, &want, 1e-6);
        // Hand-checked values: row 0 is softmax(1, 2, 3, 4); row 1 is dominated by 1000.
        assert_close(&y[..4], &[0.0320586, 0.0871443, 0.2368828, 0.6439142], 1e-6);
        assert_close(&y[4..8], &[0.0, 0.0, 1.0, 0.0], 1e-9);
        assert_close(&y[8..], &[0.25; 4], 1e-9);
    }
}

/// Three stages in one kernel: the mean, the variance about it, the normalised row.
#[test]
fn layer_norm_in_one_staged_kernel() {
    let x: Vec<f32> = (0..3 * 64)
        .map(|i| ((i * 37 % 64) as f32) * 0.5 - (i / 64) as f32 * 3.0)
        .collect();
    let (p, bufs) = run(
        &fixture("layer_norm_one_kernel.kir"),
        &[("N", 3)],
        &[("x", f32s(&x))],
    )
    .unwrap();
    let mut want = Vec::new();
    for row in x.chunks(64) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / 64.0;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 64.0;
        want.extend(
            row.iter()
                .map(|&v| (f64::from(v) - mean) / (var + 1e-5).sqrt()),
        );
    }
    assert_close(&output(&p, &bufs, "y"), &want, 1e-5);
}

#[test]
fn matmul_with_bias_relu_epilogue() {
    // y = relu(x @ W^T + b) with x [2, 3], W [2, 3] (out, in), b [2].
    let text = "symbol N >= 1
b0 = input \"x\" f32[N*3]
b1 = state \"w\" f32[6]
b2 = state \"b\" f32[2]
b3 = output \"y\" f32[N*2]
b4 = output \"pre\" f32[N*2]
k0 = matmul m N k 3 n 2 {
  a {
    v0 = load b0[i0*3 + i1]
    yield v0
  }
  b {
    v0 = load b1[i1*3 + i0]
    yield v0
  }
  epilogue {
    v0 = acc
    v1 = load b2[i1]
    v2 = add(v0, v1)
    v3 = f32(0.0)
    v4 = max(v2, v3)
    store b3[i0*2 + i1] = v4
    store b4[i0*2 + i1] = v2
  }
}
";
    let (p, bufs) = run(
        text,
        &[("N", 2)],
        &[
            ("x", f32s(&[1.0, 2.0, 3.0, -1.0, 0.0, 1.0])),
            ("w", f32s(&[1.0, 0.0, -1.0, 0.5, 0.5, 0.5])),
            ("b", f32s(&[0.0, -3.5])),
        ],
    )
    .unwrap();
    // x0.W0 = 1 - 3 = -2, x0.W1 = 3; x1.W0 = -1 - 1 = -2, x1.W1 = 0.
    assert_eq!(output(&p, &bufs, "pre"), [-2.0, -0.5, -2.0, -3.5]);
    assert_eq!(output(&p, &bufs, "y"), [0.0, 0.0, 0.0, 0.0]);
    let (p, bufs) = run(
        text,
        &[("N", 1)],
        &[
            ("x", f32s(&[1.0, 2.0, 3.0])),
            ("w", f32s(&[1.0, 1.0, 1.0, 2.0, 0.0, 1.0])),
            ("b", f32s(&[1.0, 1.0])),
        ],
    )
    .unwrap();
    assert_eq!(output(&p, &bufs, "y"), [7.0, 6.0]);
}

#[test]
fn batched_matmul_broadcasts_b_and_wraps_integers() {
    // C[b] = A[b] @ B for two batches, B shared (its body ignores i0), in i32 with wrapping.
    let text = "b0 = input \"a\" i32[8]
b1 = input \"b\" i32[4]
b2 = output \"c\" i32[8]
k0 = matmul batch [2] m 2 k 2 n 2 {
  a {
    v0 = load b0[i0*4 + i1*2 + i2]
    yield v0
  }
  b {
    v0 = load b1[i1*2 + i2]
    yield v0
  }
  epilogue {
    v0 = acc
    store b2[i0*4 + i1*2 + i2] = v0
  }
}
";
    let (p, bufs) = run(
        text,
        &[],
        &[
            ("a", Data::I32(vec![1, 2, 3, 4, 0, 1, i32::MAX, 1])),
            ("b", Data::I32(vec![1, 0, 2, 1])),
        ],
    )
    .unwrap();
    // [[1,2],[3,4]] @ [[1,0],[2,1]] = [[5,2],[11,4]]; [[0,1],[MAX,1]] @ B = [[2,1],[MAX+2,1]]
    // and MAX + 2 wraps to MIN + 1.
    assert_eq!(
        ints(&bufs[2]),
        [5, 2, 11, 4, 2, 1, i64::from(i32::MIN) + 1, 1]
    );
    let _ = p;
}

#[test]
fn conv2d_hand_computed() {
    let text = "b0 = input \"x\" f32[9]
b1 = state \"w\" f32[4]
b2 = output \"y\" f32[4]
b3 = output \"z\" f32[4]
k0 = conv2d n 1 c 1 h 3 w 3 o 1 kernel [2, 2] stride [1, 1] padding [0, 0] dilation [1, 1] groups 1 {
  input {
    v0 = load b0[i2*3 + i3]
    yield v0
  }
  weight {
    v0 = load b1[i2*2 + i3]
    yield v0
  }
  epilogue {
    v0 = acc
    v1 = f32(1.0)
    v2 = add(v0, v1)
    store b2[i2*2 + i3] = v2
  }
}
k1 = conv2d n 1 c 1 h 3 w 3 o 1 kernel [2, 2] stride [2, 2] padding [1, 1] dilation [1, 1] groups 1 {
  input {
    v0 = load b0[i2*3 + i3]
    yield v0
  }
  weight {
    v0 = load b1[i2*2 + i3]
    yield v0
  }
  epilogue {
    v0 = acc
    store b3[i2*2 + i3] = v0
  }
}
";
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let (p, bufs) = run(
        text,
        &[],
        &[("x", f32s(&x)), ("w", f32s(&[1.0, 2.0, 3.0, 4.0]))],
    )
    .unwrap();
    // Valid conv: [37, 47, 67, 77] plus the epilogue's 1.
    assert_eq!(output(&p, &bufs, "y"), [38.0, 48.0, 68.0, 78.0]);
    // Stride 2, padding 1: only the in-image taps contribute.
    assert_eq!(output(&p, &bufs, "z"), [4.0, 18.0, 36.0, 77.0]);
}

/// Direct NCHW/OIHW cross-correlation, written independently of the executor.
#[allow(clippy::too_many_arguments)]
fn reference_conv(
    x: &[f64],
    w: &[f64],
    (n, c, h, wd): (usize, usize, usize, usize),
    o: usize,
    k: usize,
    s: usize,
    pad: usize,
    dil: usize,
    groups: usize,
) -> Vec<f64> {
    let oh = (h + 2 * pad - dil * (k - 1) - 1) / s + 1;
    let ow = (wd + 2 * pad - dil * (k - 1) - 1) / s + 1;
    let (cg, og) = (c / groups, o / groups);
    let mut out = vec![0.0; n * o * oh * ow];
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..cg {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (y * s + ky * dil) as isize - pad as isize;
                                let ix = (xx * s + kx * dil) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let cin = g * cg + ci;
                                acc += x[((b * c + cin) * h + iy as usize) * wd + ix as usize]
                                    * w[((oc * cg + ci) * k + ky) * k + kx];
                            }
                        }
                    }
                    out[((b * o + oc) * oh + y) * ow + xx] = acc;
                }
            }
        }
    }
    out
}

#[test]
fn grouped_strided_dilated_conv_matches_reference() {
    // N=2, C=4, 7x6 input, O=6, groups 2, 3x3 kernel, stride 2, padding 2, dilation 2:
    // OH = (7 + 4 - 4 - 1)/2 + 1 = 4, OW = (6 + 4 - 4 - 1)/2 + 1 = 3.
    let text = "symbol N >= 1
b0 = input \"x\" f64[N*168]
b1 = state \"w\" f64[108]
b2 = output \"y\" f64[N*72]
k0 = conv2d n N c 4 h 7 w 6 o 6 kernel [3, 3] stride [2, 2] padding [2, 2] dilation [2, 2] groups 2 {
  input {
    v0 = load b0[i0*168 + i1*42 + i2*6 + i3]
    yield v0
  }
  weight {
    v0 = load b1[i0*18 + i1*9 + i2*3 + i3]
    yield v0
  }
  epilogue {
    v0 = acc
    store b2[i0*72 + i1*12 + i2*3 + i3] = v0
  }
}
";
    let x: Vec<f64> = (0..336)
        .map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0)
        .collect();
    let w: Vec<f64> = (0..108)
        .map(|i| ((i * 53 % 97) as f64 - 48.0) / 30.0)
        .collect();
    let (p, bufs) = run(
        text,
        &[("N", 2)],
        &[("x", Data::F64(x.clone())), ("w", Data::F64(w.clone()))],
    )
    .unwrap();
    let want = reference_conv(&x, &w, (2, 4, 7, 6), 6, 3, 2, 2, 2, 2);
    assert_close(&output(&p, &bufs, "y"), &want, 1e-12);
}

#[test]
fn reshape_permute_via_div_mod() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/filetests/kernel/reshape_div_mod.kir"
    ))
    .unwrap();
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let (p, bufs) = run(&text, &[("N", 2)], &[("x", f32s(&x))]).unwrap();
    assert_eq!(
        output(&p, &bufs, "y"),
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0, 6.0, 9.0, 7.0, 10.0, 8.0, 11.0]
    );
}

#[test]
fn padded_and_concatenated_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/filetests/kernel/pad_and_concat.kir"
    ))
    .unwrap();
    let (p, bufs) = run(
        &text,
        &[("N", 2)],
        &[
            ("x", f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
            ("z", f32s(&[10.0, 11.0, 12.0, 13.0])),
        ],
    )
    .unwrap();
    assert_eq!(
        output(&p, &bufs, "padded"),
        [-1.0, 1.0, 2.0, 3.0, -1.0, -1.0, 4.0, 5.0, 6.0, -1.0]
    );
    assert_eq!(
        output(&p, &bufs, "joined"),
        [1.0, 2.0, 3.0, 10.0, 11.0, 4.0, 5.0, 6.0, 12.0, 13.0]
    );
}

#[test]
fn gathers_checked_and_guarded() {
    let text = "symbol N >= 1
symbol V >= 1
b0 = input \"ids\" i64[N]
b1 = state \"table\" f32[V*2]
b2 = output \"checked\" f32[N*2]
b3 = output \"guarded\" f32[N*2]
k0 = loop [N, 2] {
  v0 = load b0[i0]
  v1 = load b1[v0*2 + i1] if 0 <= v0 < V else f32(-7.0)
  store b3[i0*2 + i1] = v1
}
k1 = loop [N, 2] {
  v0 = load b0[i0]
  v1 = load checked b1[v0*2 + i1]
  store b2[i0*2 + i1] = v1
}
";
    let table = f32s(&[0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    let (p, bufs) = run(
        text,
        &[("N", 3), ("V", 3)],
        &[("ids", Data::I64(vec![2, 0, 1])), ("table", table.clone())],
    )
    .unwrap();
    assert_eq!(output(&p, &bufs, "checked"), [2.0, 2.5, 0.0, 0.5, 1.0, 1.5]);
    assert_eq!(output(&p, &bufs, "guarded"), [2.0, 2.5, 0.0, 0.5, 1.0, 1.5]);
    // An out-of-range id: the guarded gather reads the fill, the checked one raises the flag.
    let err = run(
        text,
        &[("N", 3), ("V", 3)],
        &[("ids", Data::I64(vec![2, 3, -1])), ("table", table)],
    )
    .unwrap_err();
    assert_eq!(
        err,
        ExecError::IndexOutOfBounds {
            kernel: KernelId(1),
            buffer: BufferId(1),
            index: 6,
            size: 6
        }
    );
    assert_eq!(err.to_string(), "k1: load of b1 at index 6 is outside 0..6");
}

#[test]
fn guarded_fill_for_out_of_range_ids() {
    let text = "b0 = input \"ids\" i32[3]
b1 = state \"table\" f32[4]
b2 = output \"y\" f32[3]
k0 = loop [3] {
  v0 = load b0[i0]
  v1 = load b1[v0] if 0 <= v0 < 4 else f32(-7.0)
  store b2[i0] = v1
}
";
    let (p, bufs) = run(
        text,
        &[],
        &[
            ("ids", Data::I32(vec![3, 4, -1])),
            ("table", f32s(&[1.0, 2.0, 3.0, 4.0])),
        ],
    )
    .unwrap();
    assert_eq!(output(&p, &bufs, "y"), [4.0, -7.0, -7.0]);
}

#[test]
fn sgd_updates_state_in_place() {
    let text = "b0 = state \"w\" f32[4]
b1 = input \"grad\" f32[4]
b2 = const f32[1] [0.5]
k0 = loop [4] {
  v0 = load b0[i0]
  v1 = load b1[i0]
  v2 = load b2[0]
  v3 = mul(v1, v2)
  v4 = sub(v0, v3)
  store b0[i0] = v4
}
";
    let (p, bufs) = run(
        text,
        &[],
        &[
            ("w", f32s(&[1.0, 2.0, 3.0, 4.0])),
            ("grad", f32s(&[2.0, -2.0, 0.0, 1.0])),
        ],
    )
    .unwrap();
    assert_eq!(output(&p, &bufs, "w"), [0.0, 3.0, 3.0, 3.5]);
}

#[test]
fn two_accumulators_in_one_pass() {
    let text = fixture("layer_norm_stats.kir");
    let x: Vec<f32> = (0..2 * 3 * 64)
        .map(|i| ((i % 64) as f32) + (i / 64) as f32)
        .collect();
    let (p, bufs) = run(&text, &[("N", 2), ("T", 3)], &[("x", f32s(&x))]).unwrap();
    // Row r holds r, r+1, ..., r+63: mean r + 31.5, variance (64^2 - 1)/12 = 341.25.
    let means: Vec<f64> = (0..6).map(|r| f64::from(r) + 31.5).collect();
    assert_close(&output(&p, &bufs, "mean"), &means, 1e-7);
    assert_close(&output(&p, &bufs, "var"), &[341.25; 6], 1e-5);
}

#[test]
fn reductions_prod_min_and_integer_semantics() {
    let text = "b0 = input \"x\" i32[6]
b1 = output \"prod\" i32[2]
b2 = output \"min\" i32[2]
b3 = output \"q\" i32[6]
b4 = output \"isnan\" bool[2]
b5 = input \"f\" f64[2]
k0 = loop [2] reduce [3] {
  v0 = load b0[i0*3 + r0]
  v1 = reduce_prod(v0) init i32(1)
  v2 = reduce_min(v0) init i32(2147483647)
  store b1[i0] = v1
  store b2[i0] = v2
}
k1 = loop [6] {
  v0 = index<i32>(i0 - 3)
  v1 = i32(2)
  v2 = div(v0, v1)
  v3 = rem(v0, v1)
  v4 = mul(v2, v1)
  v5 = add(v4, v3)
  v6 = sub(v5, v0)
  v7 = add(v2, v6)
  store b3[i0] = v7
}
k2 = loop [2] {
  v0 = load b5[i0]
  v1 = is_nan(v0)
  store b4[i0] = v1
}
";
    let (p, bufs) = run(
        text,
        &[],
        &[
            ("x", Data::I32(vec![2, -3, 4, 65536, 65536, 1])),
            ("f", Data::F64(vec![f64::NAN, 1.0])),
        ],
    )
    .unwrap();
    // 65536 * 65536 wraps to 0 in i32.
    assert_eq!(ints(&bufs[1]), [-24, 0]);
    assert_eq!(ints(&bufs[2]), [-3, 1]);
    // Floor division of -3..2 by 2.
    assert_eq!(ints(&bufs[3]), [-2, -1, -1, 0, 0, 1]);
    assert_eq!(output(&p, &bufs, "isnan"), [1.0, 0.0]);
}

#[test]
fn float_reductions_propagate_nan_and_handle_empty_domains() {
    let text = "symbol N >= 1
symbol K >= 0
b0 = input \"x\" f32[N*K]
b1 = output \"max\" f32[N]
b2 = output \"sum\" f32[N]
k0 = loop [N] reduce [K] {
  v0 = load b0[i0*K + r0]
  v1 = reduce_max(v0) init f32(-inf)
  v2 = reduce_sum(v0) init f32(0.0)
  store b1[i0] = v1
  store b2[i0] = v2
}
";
    let (p, bufs) = run(
        text,
        &[("N", 2), ("K", 2)],
        &[("x", f32s(&[1.0, f32::NAN, 3.0, 4.0]))],
    )
    .unwrap();
    let m = output(&p, &bufs, "max");
    assert!(m[0].is_nan());
    assert_eq!(m[1], 4.0);
    let (p, bufs) = run(text, &[("N", 2), ("K", 0)], &[]).unwrap();
    assert_eq!(output(&p, &bufs, "max"), [f64::NEG_INFINITY; 2]);
    assert_eq!(output(&p, &bufs, "sum"), [0.0; 2]);
}

#[test]
fn executor_rejects_bad_calls() {
    let text = "symbol N >= 2, <= 8
b0 = input \"x\" f32[N]
b1 = output \"y\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  store b1[i0] = v0
}
";
    let p = verify(parse(text).unwrap()).unwrap();
    let mut bufs = allocate(&p, &bindings(&[("N", 4)])).unwrap();
    assert_eq!(
        execute(&p, &HashMap::new(), &mut bufs),
        Err(ExecError::Bind(BindError::Unbound("N".into())))
    );
    assert_eq!(
        execute(&p, &bindings(&[("N", 1)]), &mut bufs)
            .unwrap_err()
            .to_string(),
        "binding N = 1 violates the precondition N >= 2"
    );
    assert_eq!(
        execute(&p, &bindings(&[("N", 9)]), &mut bufs)
            .unwrap_err()
            .to_string(),
        "binding N = 9 violates the precondition N <= 8"
    );
    assert_eq!(
        execute(&p, &bindings(&[("N", 5)]), &mut bufs),
        Err(ExecError::Bind(BindError::BufferShape {
            buffer: BufferId(0),
            dtype: DType::F32,
            len: 5,
            got_dtype: DType::F32,
            got_len: 4
        }))
    );
    assert_eq!(
        execute(&p, &bindings(&[("N", 4)]), &mut bufs[..1]),
        Err(ExecError::Bind(BindError::BufferCount {
            expected: 2,
            got: 1
        }))
    );
    let bad = parse(&text.replace("load b0[i0]", "load b0[i0 + 1]")).unwrap();
    match verify(bad) {
        Err(e) => assert_eq!(
            e.to_string(),
            "k0: v0 = load b0[i0 + 1]: index may exceed the last element of b0: cannot prove N <= N-1 for all N in 2..=8"
        ),
        Ok(_) => panic!("expected a verify error"),
    }
    let div = "b0 = input \"x\" i64[2]
b1 = output \"y\" i64[2]
k0 = loop [2] {
  v0 = load b0[i0]
  v1 = i64(7)
  v2 = div(v1, v0)
  store b1[i0] = v2
}
";
    let err = run(div, &[], &[("x", Data::I64(vec![2, 0]))]).unwrap_err();
    assert_eq!(err.to_string(), "k0: integer div by zero");
}

#[test]
fn constants_are_refilled_from_the_program() {
    let text = "b0 = const f32[2] [1.5, 2.5]
b1 = output \"y\" f32[2]
k0 = loop [2] {
  v0 = load b0[i0]
  store b1[i0] = v0
}
";
    let p = verify(parse(text).unwrap()).unwrap();
    let mut bufs = vec![f32s(&[0.0, 0.0]), f32s(&[0.0, 0.0])];
    execute(&p, &HashMap::new(), &mut bufs).unwrap();
    assert!(matches!(&bufs[1], Data::F32(v) if v == &[1.5, 2.5]));
}
