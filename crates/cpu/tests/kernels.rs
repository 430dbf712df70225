//! Differential tests of whole kernels against the kernel executor: reductions, masked and
//! checked loads, matmul and conv2d with prologues and epilogues, threading, errors.

use crate::common;
use common::*;
use kiln_cpu::{CpuError, VectorAxis};
use kiln_ir::{DType, Data};
use kiln_kernel::{BindError, KernelId};

const SOFTMAX: &str = "symbol N >= 1
symbol C >= 1
b0 = input \"x\" f32[N*C]
b1 = scratch f32[N]
b2 = scratch f32[N]
b3 = output \"y\" f32[N*C]
k0 = loop [N] reduce [C] {
  v0 = load b0[i0*C + r0]
  v1 = reduce_max(v0) init f32(-inf)
  store b1[i0] = v1
}
k1 = loop [N] reduce [C] {
  v0 = load b1[i0]
  v1 = load b0[i0*C + r0]
  v2 = sub(v1, v0)
  v3 = exp(v2)
  v4 = reduce_sum(v3) init f32(0.0)
  store b2[i0] = v4
}
k2 = loop [N, C] {
  v0 = load b0[i0*C + i1]
  v1 = load b1[i0]
  v2 = load b2[i0]
  v3 = sub(v0, v1)
  v4 = exp(v3)
  v5 = div(v4, v2)
  store b3[i0*C + i1] = v5
}";

#[test]
fn softmax_rows_vectorise_along_the_reduction() {
    let program = parse(SOFTMAX);
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    let plans: Vec<_> = compiled.loops().iter().map(|l| l.vector).collect();
    assert_eq!(
        plans,
        vec![
            Some((VectorAxis::Reduce, 4)),
            Some((VectorAxis::Reduce, 4)),
            Some((VectorAxis::Domain, 4))
        ]
    );
    for (n, c) in [(1, 1), (3, 7), (4, 50), (2, 783), (37, 3)] {
        let b = bindings(&[("N", n), ("C", c)]);
        let bufs = inputs(&program, &b, n + c, Fill::default());
        differential(&program, &b, &bufs, 2e-6, 1e-7);
    }
}

#[test]
fn column_reductions_vectorise_along_the_domain() {
    let program = parse(
        "symbol N >= 1
         symbol C >= 1
         b0 = input \"x\" f32[N*C]
         b1 = output \"sum\" f32[C]
         b2 = output \"var\" f32[C]
         k0 = loop [C] reduce [N] {
           v0 = load b0[r0*C + i0]
           v1 = reduce_sum(v0) init f32(0.0)
           v2 = mul(v0, v0)
           v3 = reduce_sum(v2) init f32(0.0)
           v4 = index<f32>(N)
           v5 = div(v1, v4)
           v6 = div(v3, v4)
           v7 = mul(v5, v5)
           v8 = sub(v6, v7)
           store b1[i0] = v1
           store b2[i0] = v8
         }",
    );
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    assert_eq!(compiled.loops()[0].vector, Some((VectorAxis::Domain, 4)));
    for (n, c) in [(1, 1), (3, 7), (50, 50), (7, 783)] {
        let b = bindings(&[("N", n), ("C", c)]);
        let bufs = inputs(&program, &b, n * c, Fill::default());
        differential(&program, &b, &bufs, 1e-5, 1e-5);
    }
}

#[test]
fn reductions_of_every_op_and_dtype() {
    for dt in [DType::F32, DType::F64, DType::I32, DType::I64, DType::U32] {
        for (op, init) in [
            ("reduce_sum", "0"),
            ("reduce_prod", "1"),
            ("reduce_max", "min"),
            ("reduce_min", "max"),
        ] {
            let init = match (init, dt) {
                ("min", DType::F32 | DType::F64) => "-inf".to_string(),
                ("max", DType::F32 | DType::F64) => "inf".to_string(),
                ("min", DType::I32) => i32::MIN.to_string(),
                ("max", DType::I32) => i32::MAX.to_string(),
                ("min", DType::I64) => i64::MIN.to_string(),
                ("max", DType::I64) => i64::MAX.to_string(),
                ("min", _) => "0".to_string(),
                ("max", _) => u32::MAX.to_string(),
                (v, DType::F32 | DType::F64) => format!("{v}.0"),
                (v, _) => v.to_string(),
            };
            // Rows (vectorised along the reduction), columns (along the domain) and a
            // full reduction to one value.
            let program = parse(&format!(
                "symbol N >= 1
                 symbol C >= 1
                 b0 = input \"x\" {dt}[N*C]
                 b1 = output \"rows\" {dt}[N]
                 b2 = output \"cols\" {dt}[C]
                 b3 = output \"all\" {dt}[1]
                 k0 = loop [N] reduce [C] {{
                   v0 = load b0[i0*C + r0]
                   v1 = {op}(v0) init {dt}({init})
                   store b1[i0] = v1
                 }}
                 k1 = loop [C] reduce [N] {{
                   v0 = load b0[r0*C + i0]
                   v1 = {op}(v0) init {dt}({init})
                   store b2[i0] = v1
                 }}
                 k2 = loop [] reduce [N, C] {{
                   v0 = load b0[r0*C + r1]
                   v1 = {op}(v0) init {dt}({init})
                   store b3[0] = v1
                 }}"
            ));
            let prod = op == "reduce_prod";
            for (n, c) in [(1, 1), (3, 7), (5, 50), (2, 131)] {
                let b = bindings(&[("N", n), ("C", c)]);
                let fill = Fill {
                    scale: if prod { 1.5 } else { 4.0 },
                    ints: if prod { (-3, 4) } else { (-50, 50) },
                    specials: false,
                    ..Fill::default()
                };
                let bufs = inputs(&program, &b, n * 31 + c, fill);
                let (rel, abs) = if dt == DType::F32 {
                    (2e-5, 1e-5)
                } else {
                    (1e-12, 1e-12)
                };
                differential(&program, &b, &bufs, rel, abs);
            }
        }
    }
}

#[test]
fn max_reductions_propagate_nan() {
    let program = parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N*9]
         b1 = output \"y\" f32[N]
         k0 = loop [N] reduce [9] {
           v0 = load b0[i0*9 + r0]
           v1 = reduce_max(v0) init f32(-inf)
           store b1[i0] = v1
         }",
    );
    let b = bindings(&[("N", 3)]);
    let mut x = vec![1.0f32; 27];
    x[4] = f32::NAN;
    x[17] = f32::NAN;
    x[20] = 7.0;
    let out = differential(
        &program,
        &b,
        &[Data::F32(x), Data::F32(vec![0.0; 3])],
        0.0,
        0.0,
    );
    let Data::F32(y) = &out[1] else { panic!() };
    assert!(y[0].is_nan() && y[1].is_nan() && y[2] == 7.0);
}

/// A ReLU then a 2x2 stride-2 max pool (LeNet's): the short reduction axes are unrolled
/// and the float max and the ReLU's select run without branches (compare and `cmov`).
/// NaN propagates through the window, zeros from the ReLU tie, and the values equal the
/// executor's and a direct computation.
#[test]
fn relu_max_pool_windows_unrolled_keep_nan_and_ties() {
    let program = parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N*8*8]
         b1 = output \"y\" f32[N*4*4]
         k0 = loop [N, 4, 4] reduce [2, 2] {
           v0 = load b0[i0*64 + i1*16 + i2*2 + r0*8 + r1]
           v1 = f32(0.0)
           v2 = le(v0, v1)
           v3 = select(v2, v1, v0)
           v4 = reduce_max(v3) init f32(-inf)
           store b1[i0*16 + i1*4 + i2] = v4
         }",
    );
    let n = 3;
    let mut x: Vec<f32> = (0..n * 64)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.25)
        .collect();
    x[9] = f32::NAN; // window (0, 0, 0)
    x[64 + 63] = f32::NAN; // the last window of the second image
    for v in &mut x[128..136] {
        *v = -1.0; // the first row of the third image: its windows see ReLU zeros
    }
    let b = bindings(&[("N", n as u64)]);
    let out = differential(
        &program,
        &b,
        &[Data::F32(x.clone()), Data::F32(vec![0.0; n * 16])],
        0.0,
        0.0,
    );
    let Data::F32(y) = &out[1] else { panic!() };
    for (o, &got) in y.iter().enumerate() {
        let (img, r, c) = (o / 16, o / 4 % 4, o % 4);
        let window = [0, 1, 8, 9].map(|d| x[img * 64 + r * 16 + c * 2 + d]);
        let want = if window.iter().any(|v| v.is_nan()) {
            f32::NAN
        } else {
            window.iter().fold(0.0f32, |m, &v| m.max(v))
        };
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "window {o}: {got} vs {want}"
        );
    }
    assert!(y[0].is_nan() && y[31].is_nan() && !y[1].is_nan());
}

/// A 2x2 stride-2 max pool over rows of 28 (14 outputs: three vectors of 4 and a tail of 2)
/// vectorises along the output row: each window row's loads are two vector loads and a
/// shuffle. `f32` and `i32` both equal the executor.
#[test]
fn stride_two_windows_vectorise_along_the_output_row() {
    for (dt, init) in [("f32", "f32(-inf)"), ("i32", "i32(-2147483648)")] {
        let program = parse(&format!(
            "symbol N >= 1
             b0 = input \"x\" {dt}[N*12*28]
             b1 = output \"y\" {dt}[N*6*14]
             k0 = loop [N, 6, 14] reduce [2, 2] {{
               v0 = load b0[i0*336 + i1*56 + i2*2 + r0*28 + r1]
               v1 = reduce_max(v0) init {init}
               store b1[i0*84 + i1*14 + i2] = v1
             }}"
        ));
        let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
        assert_eq!(
            compiled.loops()[0].vector,
            Some((VectorAxis::Domain, 4)),
            "{dt}"
        );
        for n in [1, 3] {
            let b = bindings(&[("N", n)]);
            let bufs = inputs(&program, &b, n * 336, Fill::default());
            differential(&program, &b, &bufs, 0.0, 0.0);
        }
    }
}

#[test]
fn masked_loads_pad_and_pool() {
    let program = parse(
        "symbol N >= 1
         symbol H >= 1
         symbol W >= 1
         b0 = input \"x\" f32[N*H*W]
         b1 = output \"pad\" f32[N*H*W+N*H*2]
         b2 = output \"pool\" f32[N*H*W]
         k0 = loop [N, H, W+2] {
           v0 = load b0[(i0*H + i1)*W + (i2 - 1)] if 0 <= i2 - 1 < W else f32(0.5)
           store b1[(i0*H + i1)*{W+2} + i2] = v0
         }
         k1 = loop [N, H, W] reduce [3, 3] {
           v0 = load b0[(i0*H + (i1 + r0 - 1))*W + (i2 + r1 - 1)] if 0 <= i1 + r0 - 1 < H && 0 <= i2 + r1 - 1 < W else f32(-inf)
           v1 = reduce_max(v0) init f32(-inf)
           store b2[(i0*H + i1)*W + i2] = v1
         }",
    );
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    assert_eq!(compiled.loops()[0].vector, Some((VectorAxis::Domain, 4)));
    for (n, h, w) in [(1, 1, 1), (2, 3, 7), (1, 5, 50), (2, 2, 97)] {
        let b = bindings(&[("N", n), ("H", h), ("W", w)]);
        let bufs = inputs(&program, &b, n * h * w, Fill::default());
        differential(&program, &b, &bufs, 0.0, 0.0);
    }
}

const GATHER: &str = "symbol N >= 1
symbol D >= 1
symbol V >= 1
b0 = input \"table\" f32[V*D]
b1 = input \"idx\" i64[N]
b2 = output \"y\" f32[N*D]
b3 = output \"z\" f32[N*D]
k0 = loop [N, D] {
  v0 = load b1[i0]
  v1 = load checked b0[v0*D + i1]
  store b2[i0*D + i1] = v1
  v2 = load b0[v0*D + i1] if 0 <= v0 < V else f32(-1.0)
  store b3[i0*D + i1] = v2
}";

#[test]
fn checked_and_guarded_gathers() {
    let program = parse(GATHER);
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    assert_eq!(compiled.loops()[0].vector, Some((VectorAxis::Domain, 4)));
    for (n, d, v) in [(1, 1, 1), (5, 7, 3), (9, 50, 11), (3, 783, 2)] {
        let b = bindings(&[("N", n), ("D", d), ("V", v)]);
        let fill = Fill {
            ints: (0, v as i64),
            ..Fill::default()
        };
        let bufs = inputs(&program, &b, n + d, fill);
        differential(&program, &b, &bufs, 0.0, 0.0);
    }
}

#[test]
fn out_of_range_gathers_raise_the_error_flag() {
    let program = parse(GATHER);
    let b = bindings(&[("N", 4), ("D", 6), ("V", 3)]);
    for bad in [-1i64, 3, 1 << 40] {
        let mut bufs = inputs(
            &program,
            &b,
            1,
            Fill {
                ints: (0, 3),
                ..Fill::default()
            },
        );
        bufs[1] = Data::I64(vec![0, 2, bad, 1]);
        assert!(run_exec(&program, &b, &bufs).is_err());
        for threads in [None, Some(1)] {
            let err = run_cpu(&program, &b, &bufs, threads).unwrap_err();
            assert_eq!(
                err,
                CpuError::IndexOutOfBounds {
                    kernel: KernelId(0)
                }
            );
        }
    }
}

fn linear(dt: DType, relu: bool) -> String {
    let ep = if relu {
        format!(
            "v0 = acc
             v1 = load b2[i1]
             v2 = add(v0, v1)
             v3 = {dt}(0)
             v4 = max(v2, v3)
             store b3[i0*M + i1] = v4"
        )
    } else {
        "v0 = acc
         store b3[i0*M + i1] = v0"
            .to_string()
    };
    let zero = if dt.is_float() { "0.0" } else { "0" };
    format!(
        "symbol N >= 1
         symbol K >= 1
         symbol M >= 1
         b0 = input \"x\" {dt}[N*K]
         b1 = state \"w\" {dt}[M*K]
         b2 = state \"bias\" {dt}[M]
         b3 = output \"y\" {dt}[N*M]
         k0 = matmul m N k K n M {{
           a {{
             v0 = load b0[i0*K + i1]
             yield v0
           }}
           b {{
             v0 = load b1[i1*K + i0]
             yield v0
           }}
           epilogue {{
             {ep}
           }}
         }}"
    )
    .replace("(0)", &format!("({zero})"))
}

#[test]
fn matmul_with_bias_relu_epilogue() {
    for dt in [DType::F32, DType::F64, DType::I32, DType::I64, DType::U32] {
        for relu in [false, true] {
            let program = parse(&linear(dt, relu));
            let compiled =
                kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
            assert_eq!(
                compiled.loops().len(),
                usize::from(relu),
                "direct output without epilogue"
            );
            for (n, k, m) in [
                (1, 1, 1),
                (3, 7, 5),
                (50, 33, 17),
                (7, 783, 3),
                (130, 64, 96),
            ] {
                let b = bindings(&[("N", n), ("K", k), ("M", m)]);
                let bufs = inputs(
                    &program,
                    &b,
                    n * k + m,
                    Fill {
                        ints: (-9, 9),
                        ..Fill::default()
                    },
                );
                // f32 accumulates in f32: allow K * eps * max|x*w| absolute error.
                let (rel, abs) = if dt == DType::F32 {
                    (1e-5, k as f64 * 16.0 * 6e-8)
                } else {
                    (1e-12, 1e-12)
                };
                differential(&program, &b, &bufs, rel, abs);
            }
        }
    }
}

#[test]
fn batched_matmul_with_broadcast_and_prologue() {
    // A: batch [B, H] with a fused prologue (x * scale, tanh); B: broadcast over the first
    // batch axis (stride 0) and transposed; output written through an epilogue with a
    // transposed store.
    let program = parse(
        "symbol B >= 1
         symbol T >= 1
         b0 = input \"q\" f32[B*3*T*8]
         b1 = input \"k\" f32[3*T*8]
         b2 = output \"s\" f32[B*3*T*T]
         k0 = matmul batch [B, 3] m T k 8 n T {
           a {
             v0 = load b0[((i0*3 + i1)*T + i2)*8 + i3]
             v1 = f32(0.35355339)
             v2 = mul(v0, v1)
             v3 = tanh(v2)
             yield v3
           }
           b {
             v0 = load b1[(i1*T + i3)*8 + i2]
             yield v0
           }
           epilogue {
             v0 = acc
             v1 = f32(2.0)
             v2 = mul(v0, v1)
             store b2[((i0*3 + i1)*T + i3)*T + i2] = v2
           }
         }",
    );
    for (bsz, t) in [(1, 1), (2, 5), (3, 33)] {
        let b = bindings(&[("B", bsz), ("T", t)]);
        let bufs = inputs(&program, &b, bsz * t, Fill::default());
        differential(&program, &b, &bufs, 1e-5, 1e-5);
    }
}

fn conv(groups: u64, stride: u64, pad: u64, dil: u64, k: u64, epilogue: bool) -> String {
    let ep = if epilogue {
        "v0 = acc
         v1 = load b2[i1]
         v2 = add(v0, v1)
         v3 = sigmoid(v2)
         store b3[((i0*O + i1)*OH + i2)*OW + i3] = v3"
    } else {
        "v0 = acc
         store b3[((i0*O + i1)*OH + i2)*OW + i3] = v0"
    };
    let c = 2 * groups;
    let o = 3 * groups;
    let h = 9u64;
    let w = 11u64;
    let out = |n: u64| (n + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    let (oh, ow) = (out(h), out(w));
    format!(
        "symbol N >= 1
         b0 = input \"x\" f32[N*{c}*{h}*{w}]
         b1 = state \"w\" f32[{o}*2*{k}*{k}]
         b2 = state \"b\" f32[{o}]
         b3 = output \"y\" f32[N*{o}*{oh}*{ow}]
         k0 = conv2d n N c {c} h {h} w {w} o {o} kernel [{k}, {k}] stride [{stride}, {stride}] padding [{pad}, {pad}] dilation [{dil}, {dil}] groups {groups} {{
           input {{
             v0 = load b0[((i0*{c} + i1)*{h} + i2)*{w} + i3]
             yield v0
           }}
           weight {{
             v0 = load b1[((i0*2 + i1)*{k} + i2)*{k} + i3]
             yield v0
           }}
           epilogue {{
             {ep}
           }}
         }}"
    )
    .replace("*O +", &format!("*{o} +"))
    .replace("*OH +", &format!("*{oh} +"))
    .replace("*OW +", &format!("*{ow} +"))
}

#[test]
fn conv2d_geometries() {
    for (groups, stride, pad, dil, k) in [
        (1, 1, 0, 1, 1),
        (1, 1, 1, 1, 3),
        (2, 2, 1, 1, 3),
        (1, 1, 2, 2, 3),
        (3, 2, 0, 1, 2),
    ] {
        for epilogue in [false, true] {
            let text = conv(groups, stride, pad, dil, k, epilogue);
            let program = parse(&text);
            for n in [1, 3] {
                let b = bindings(&[("N", n)]);
                let bufs = inputs(&program, &b, n + k, Fill::default());
                differential(&program, &b, &bufs, 1e-5, 1e-5);
            }
        }
    }
}

#[test]
fn threaded_runs_match_single_threaded_bit_for_bit() {
    let program = parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N]
         b1 = output \"y\" f32[N]
         k0 = loop [N] {
           v0 = load b0[i0]
           v1 = f32(1.7)
           v2 = mul(v0, v1)
           v3 = f32(0.3)
           v4 = add(v2, v3)
           v5 = tanh(v4)
           v6 = sigmoid(v0)
           v7 = mul(v5, v6)
           v8 = erf(v7)
           v9 = log(v6)
           v10 = sub(v8, v9)
           store b1[i0] = v10
         }",
    );
    for n in [1_000_003u64, 65_537, 4_099] {
        let b = bindings(&[("N", n)]);
        let bufs = inputs(&program, &b, n, Fill::default());
        let many = run_cpu(&program, &b, &bufs, None).unwrap();
        let one = run_cpu(&program, &b, &bufs, Some(1)).unwrap();
        let bits = |d: &Data| {
            kiln_ir::Array::new(&[d.len()], d.clone())
                .unwrap()
                .to_le_bytes()
        };
        assert_eq!(bits(&many[1]), bits(&one[1]));
    }
}

#[test]
fn one_compilation_serves_every_binding() {
    let program = parse(SOFTMAX);
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    for (n, c) in [(2, 3), (5, 64), (1, 1000)] {
        let b = bindings(&[("N", n), ("C", c)]);
        let bufs = inputs(&program, &b, 9, Fill::default());
        let want = run_exec(&program, &b, &bufs).unwrap();
        let mut got = bufs.clone();
        compiled.run(&b, &mut got).unwrap();
        assert_close(&got[3], &want[3], 2e-6, 1e-7, "softmax");
    }
}

#[test]
fn bindings_and_buffers_are_validated_before_running() {
    let program = parse(
        "symbol N >= 2, <= 100
         b0 = input \"x\" f32[N]
         b1 = output \"y\" f32[N]
         k0 = loop [N] {
           v0 = load b0[i0]
           store b1[i0] = v0
         }",
    );
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    let two = || vec![Data::F32(vec![0.0; 4]), Data::F32(vec![0.0; 4])];
    assert_eq!(
        compiled.run(&bindings(&[]), &mut two()),
        Err(CpuError::Bind(BindError::Unbound("N".into())))
    );
    assert!(matches!(
        compiled.run(&bindings(&[("N", 1)]), &mut two()),
        Err(CpuError::Bind(BindError::Precondition { value: 1, .. }))
    ));
    assert!(matches!(
        compiled.run(&bindings(&[("N", 101)]), &mut two()),
        Err(CpuError::Bind(BindError::Precondition { value: 101, .. }))
    ));
    assert_eq!(
        compiled.run(&bindings(&[("N", 4)]), &mut two()[..1].to_vec()),
        Err(CpuError::Bind(BindError::BufferCount {
            expected: 2,
            got: 1
        }))
    );
    let mut short = vec![Data::F32(vec![0.0; 4]), Data::F32(vec![0.0; 3])];
    assert!(matches!(
        compiled.run(&bindings(&[("N", 4)]), &mut short),
        Err(CpuError::Bind(BindError::BufferShape {
            got_len: 3,
            len: 4,
            ..
        }))
    ));
    let mut wrong = vec![Data::F32(vec![0.0; 4]), Data::F64(vec![0.0; 4])];
    assert!(matches!(
        compiled.run(&bindings(&[("N", 4)]), &mut wrong),
        Err(CpuError::Bind(BindError::BufferShape {
            got_dtype: DType::F64,
            ..
        }))
    ));
}

#[test]
fn unverified_programs_are_rejected() {
    let program = parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N]
         b1 = output \"y\" f32[N]
         k0 = loop [N] {
           v0 = load b0[i0 + 1]
           store b1[i0] = v0
         }",
    );
    // Only a verified program compiles, and this one has no verified form.
    assert!(kiln_kernel::verify(program).is_err());
}

#[test]
fn equal_kernels_compile_once() {
    let text = |x: &str| {
        format!(
            "symbol N >= 1
             b0 = input \"{x}\" f64[N]
             b1 = output \"y\" f64[N]
             b2 = output \"z\" f64[N]
             k0 = loop [N] {{
               v0 = load b0[i0]
               v1 = f64(0.123456789)
               v2 = mul(v0, v1)
               store b1[i0] = v2
             }}
             k1 = loop [N] {{
               v0 = load b0[i0]
               v1 = f64(0.123456789)
               v2 = mul(v0, v1)
               store b2[i0] = v2
             }}"
        )
    };
    let before = kiln_cpu::cache_stats();
    kiln_cpu::compile(&kiln_kernel::verify(parse(&text("a"))).unwrap()).unwrap();
    kiln_cpu::compile(&kiln_kernel::verify(parse(&text("b"))).unwrap()).unwrap();
    let after = kiln_cpu::cache_stats();
    // Four identical jobs (up to buffer numbering): one compiled, three found. Other tests
    // may compile concurrently, so only lower bounds hold.
    assert!(after.hits >= before.hits + 3, "{before:?} -> {after:?}");
    assert!(after.misses > before.misses);
}

#[test]
fn contraction_operand_and_output_layouts() {
    // Matmul writing C transposed straight from the GEMM (strided output), and a conv2d
    // whose input has a fused prologue (materialised by a loop) and whose output is stored
    // NHWC (oh, ow still collapse into one stride, so the GEMM writes it directly).
    let program = parse(
        "symbol N >= 1
         b0 = input \"a\" f32[N*6]
         b1 = input \"b\" f32[42]
         b2 = output \"ct\" f32[N*7]
         b3 = input \"x\" f32[N*50]
         b4 = state \"w\" f32[36]
         b5 = output \"y\" f32[N*100]
         k0 = matmul m N k 6 n 7 {
           a {
             v0 = load b0[i0*6 + i1]
             yield v0
           }
           b {
             v0 = load b1[i0*7 + i1]
             yield v0
           }
           epilogue {
             v0 = acc
             store b2[i1*N + i0] = v0
           }
         }
         k1 = conv2d n N c 2 h 5 w 5 o 4 kernel [3, 3] stride [1, 1] padding [1, 1] dilation [1, 1] groups 2 {
           input {
             v0 = load b3[((i0*2 + i1)*5 + i2)*5 + i3]
             v1 = f32(0.0)
             v2 = max(v0, v1)
             yield v2
           }
           weight {
             v0 = load b4[((i0*1 + i1)*3 + i2)*3 + i3]
             yield v0
           }
           epilogue {
             v0 = acc
             store b5[((i0*5 + i2)*5 + i3)*4 + i1] = v0
           }
         }",
    );
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    // The conv input prologue is the only generated loop.
    assert_eq!(compiled.loops().len(), 1);
    for n in [1, 4, 9] {
        let b = bindings(&[("N", n)]);
        let bufs = inputs(&program, &b, n, Fill::default());
        differential(&program, &b, &bufs, 1e-5, 1e-5);
    }
}
