//! Differential tests of every scalar op, cast and index form on the GPU against the kernel
//! executor, for f32, i32, u32 and bool (skipped without an adapter unless
//! KILN_REQUIRE_GPU=1).

use crate::common;

use common::{EXACT, TRANSCENDENTAL, Tol, ULPS, bind, bools, check, f32s, i32s, named, u32s};
use kiln_ir::semantics::{binary_dtype, unary_dtype};
use kiln_ir::{BinaryOp, DType, Dim, UnaryOp};
use kiln_kernel::{Body, BufferKind, Expr, IndexExpr, Kernel, LoopKernel, Program, Scalar, parse};

/// One loop kernel over `n` elements applying every op to the inputs, one output per op.
fn program_of(
    n: usize,
    inputs: &[(&str, DType)],
    build: &mut dyn FnMut(&mut Program, &mut Body, &[kiln_kernel::ValueId]),
) -> Program {
    let mut p = Program::new();
    let mut body = Body::new();
    let mut vals = Vec::new();
    for (name, dtype) in inputs {
        let b = p.add_buffer(
            *dtype,
            Dim::known(n as u64),
            BufferKind::Input(name.to_string()),
        );
        vals.push(body.load(b, IndexExpr::var(0)));
    }
    build(&mut p, &mut body, &vals);
    p.add_kernel(Kernel::Loop(LoopKernel {
        domain: vec![Dim::known(n as u64)],
        reduce: Vec::new(),
        body,
    }));
    p
}

fn output(
    p: &mut Program,
    body: &mut Body,
    name: String,
    dtype: DType,
    n: usize,
    v: kiln_kernel::ValueId,
) {
    let b = p.add_buffer(dtype, Dim::known(n as u64), BufferKind::Output(name));
    body.store(b, IndexExpr::var(0), v);
}

fn f32_unary_tol(name: &str) -> Tol {
    match name {
        "neg" | "abs" | "floor" | "ceil" | "round" | "sign" | "is_nan" => EXACT,
        "sqrt" | "rsqrt" | "recip" => ULPS,
        "sin" | "cos" => Tol {
            abs: 1e-3,
            rel: 0.0,
        },
        _ => TRANSCENDENTAL,
    }
}

#[test]
fn f32_unary_ops() {
    // x: mixed signs and halfway cases; pos: positive arguments for log/sqrt/rsqrt/recip;
    // angle: within [-pi, pi], where GPUs bound the error of sin/cos.
    let x = [
        -20.0,
        -3.0,
        -2.5,
        -1.5,
        -1.0,
        -0.5,
        -0.3,
        -1e-4,
        -0.0,
        0.0,
        1e-4,
        0.25,
        0.5,
        0.7,
        1.0,
        1.5,
        2.5,
        3.0,
        3.5,
        20.0,
        f32::NAN,
    ];
    let pos = [
        1e-3, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0, 1.1, 2.0, 3.0, 7.5, 10.0, 100.0, 1e4, 1e6, 0.2, 0.4,
        0.6, 0.8, 5.0, 64.0,
    ];
    let angle = [
        -3.1, -3.0, -2.0, -1.5, -1.0, -0.5, -0.1, -1e-3, 0.0, 1e-3, 0.1, 0.5, 1.0, 1.2, 1.5, 2.0,
        2.5, 3.0, 3.1, 0.75, -0.75,
    ];
    let n = x.len();
    let mut names = Vec::new();
    let p = program_of(
        n,
        &[
            ("x", DType::F32),
            ("pos", DType::F32),
            ("angle", DType::F32),
        ],
        &mut |p, body, v| {
            for op in UnaryOp::ALL {
                let Ok(out) = unary_dtype(op, DType::F32) else {
                    continue;
                };
                let arg = match op {
                    UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip => v[1],
                    UnaryOp::Sin | UnaryOp::Cos => v[2],
                    _ => v[0],
                };
                let r = body.push(Expr::Unary(op, arg));
                output(p, body, op.name().to_string(), out, n, r);
                names.push(op.name());
            }
        },
    );
    assert_eq!(names.len(), 19, "every f32 unary op: {names:?}");
    let inputs = named(vec![
        ("x", f32s(&x)),
        ("pos", f32s(&pos)),
        ("angle", f32s(&angle)),
    ]);
    check(&p, &bind(&[]), &inputs, &f32_unary_tol);
}

#[test]
fn f32_binary_ops() {
    let a = [
        7.0,
        -7.0,
        7.5,
        -7.5,
        0.0,
        -0.0,
        1.0,
        3.0,
        2.0,
        -2.0,
        -2.0,
        0.0,
        1e10,
        -1e-10,
        5.5,
        0.5,
        f32::INFINITY,
        -f32::INFINITY,
        4.0,
        -0.25,
    ];
    let b = [
        3.0, 3.0, -2.0, -2.0, 1.0, 2.0, 0.5, 3.0, 3.0, 3.0, 0.5, -1.0, 3e-10, 1e10, 5.5, 0.25, 2.0,
        2.0, -0.5, 4.0,
    ];
    let n = a.len();
    let mut count = 0;
    let p = program_of(
        n,
        &[("a", DType::F32), ("b", DType::F32)],
        &mut |p, body, v| {
            for op in BinaryOp::ALL {
                let Ok(out) = binary_dtype(op, DType::F32, DType::F32) else {
                    continue;
                };
                let r = body.push(Expr::Binary(op, v[0], v[1]));
                output(p, body, op.name().to_string(), out, n, r);
                count += 1;
            }
        },
    );
    assert_eq!(count, 14, "every f32 binary op");
    let inputs = named(vec![("a", f32s(&a)), ("b", f32s(&b))]);
    check(&p, &bind(&[]), &inputs, &|name| match name {
        "div" => ULPS,
        "rem" => Tol {
            abs: 1e-6,
            rel: 1e-6,
        },
        "pow" => Tol {
            abs: 1e-6,
            rel: 1e-4,
        },
        _ => EXACT,
    });
}

#[test]
fn f32_nan_semantics() {
    let nan = f32::NAN;
    let a = [nan, 1.0, nan, 2.0, -1.0];
    let b = [1.0, nan, nan, 1.0, -1.0];
    let n = a.len();
    let p = program_of(
        n,
        &[("a", DType::F32), ("b", DType::F32)],
        &mut |p, body, v| {
            for op in [
                BinaryOp::Max,
                BinaryOp::Min,
                BinaryOp::Eq,
                BinaryOp::Ne,
                BinaryOp::Lt,
                BinaryOp::Ge,
                BinaryOp::Add,
            ] {
                let out = binary_dtype(op, DType::F32, DType::F32).expect("defined");
                let r = body.push(Expr::Binary(op, v[0], v[1]));
                output(p, body, op.name().to_string(), out, n, r);
            }
            let r = body.push(Expr::Unary(UnaryOp::IsNan, v[0]));
            output(p, body, "is_nan".to_string(), DType::Bool, n, r);
        },
    );
    let got = check(
        &p,
        &bind(&[]),
        &named(vec![("a", f32s(&a)), ("b", f32s(&b))]),
        &|_| EXACT,
    );
    if let Some((outs, _)) = got {
        assert_eq!(outs["max"].to_f64_vec()[3], 2.0);
        assert!(outs["max"].to_f64_vec()[0].is_nan() && outs["min"].to_f64_vec()[1].is_nan());
        assert_eq!(outs["ne"].to_i64_vec(), vec![1, 1, 1, 1, 0]);
    }
}

fn int_ops(dtype: DType, a: kiln_ir::Array, b: kiln_ir::Array, expected_ops: usize) {
    let n = a.len();
    let mut count = 0;
    let p = program_of(n, &[("a", dtype), ("b", dtype)], &mut |p, body, v| {
        for op in BinaryOp::ALL {
            let Ok(out) = binary_dtype(op, dtype, dtype) else {
                continue;
            };
            let r = body.push(Expr::Binary(op, v[0], v[1]));
            output(p, body, op.name().to_string(), out, n, r);
            count += 1;
        }
        for op in UnaryOp::ALL {
            let Ok(out) = unary_dtype(op, dtype) else {
                continue;
            };
            let r = body.push(Expr::Unary(op, v[0]));
            output(p, body, format!("u_{}", op.name()), out, n, r);
            count += 1;
        }
    });
    assert_eq!(count, expected_ops, "every {dtype} op");
    check(&p, &bind(&[]), &named(vec![("a", a), ("b", b)]), &|_| EXACT);
}

#[test]
fn i32_ops() {
    let a = [
        7,
        -7,
        7,
        -7,
        0,
        i32::MIN,
        i32::MAX,
        i32::MIN,
        12,
        -1,
        5,
        100_000,
        -3,
    ];
    let b = [3, 3, -3, -3, 5, -1, 1, 1, 12, 2, -1, 100_000, 7];
    // 16 binary ops (all but pow) and neg, abs, sign, not.
    int_ops(DType::I32, i32s(&a), i32s(&b), 20);
}

#[test]
fn u32_ops() {
    let a = [7, 0, 4_000_000_000, u32::MAX, 12, 1, 5, 65_536, 3];
    let b = [3, 5, 3, 2, 12, u32::MAX, 1, 65_536, 7];
    int_ops(DType::U32, u32s(&a), u32s(&b), 20);
}

#[test]
fn bool_ops_and_select() {
    let a = [false, false, true, true];
    let b = [false, true, false, true];
    let n = a.len();
    let mut count = 0;
    let p = program_of(
        n,
        &[("a", DType::Bool), ("b", DType::Bool)],
        &mut |p, body, v| {
            for op in BinaryOp::ALL {
                let Ok(out) = binary_dtype(op, DType::Bool, DType::Bool) else {
                    continue;
                };
                let r = body.push(Expr::Binary(op, v[0], v[1]));
                output(p, body, op.name().to_string(), out, n, r);
                count += 1;
            }
            let r = body.push(Expr::Unary(UnaryOp::Not, v[0]));
            output(p, body, "not".to_string(), DType::Bool, n, r);
            let one = body.push(Expr::Const(Scalar::F32(1.5)));
            let two = body.push(Expr::Const(Scalar::F32(-2.0)));
            let r = body.push(Expr::Select(v[1], one, two));
            output(p, body, "select".to_string(), DType::F32, n, r);
        },
    );
    assert_eq!(count, 5, "and, or, xor, eq, ne");
    check(
        &p,
        &bind(&[]),
        &named(vec![("a", bools(&a)), ("b", bools(&b))]),
        &|_| EXACT,
    );
}

#[test]
fn casts_between_all_dtypes() {
    let f = [
        0.0,
        -0.0,
        1.9,
        -1.9,
        2.5,
        -2.5,
        3e9,
        -3e9,
        5e9,
        1e20,
        -1e20,
        f32::INFINITY,
        -f32::INFINITY,
        f32::NAN,
        16_777_217.0,
        2_147_483_648.0,
        -2_147_483_648.0,
        0.4,
    ];
    let i = [
        0,
        -1,
        1,
        i32::MIN,
        i32::MAX,
        16_777_217,
        -16_777_217,
        7,
        -7,
        255,
        65_536,
        3,
        -3,
        42,
        -42,
        100,
        1,
        0,
    ];
    let u = [
        0,
        1,
        u32::MAX,
        2_147_483_648,
        16_777_217,
        7,
        255,
        65_536,
        3,
        42,
        100,
        1,
        0,
        9,
        4_000_000_000,
        12,
        13,
        14,
    ];
    let bl = [
        true, false, true, true, false, false, true, false, true, false, true, true, false, false,
        true, false, true, false,
    ];
    let n = f.len();
    let dtypes = [DType::F32, DType::I32, DType::U32, DType::Bool];
    let p = program_of(
        n,
        &[
            ("f", DType::F32),
            ("i", DType::I32),
            ("u", DType::U32),
            ("b", DType::Bool),
        ],
        &mut |p, body, v| {
            for (from, &src) in dtypes.iter().zip(v) {
                for to in dtypes {
                    let r = body.push(Expr::Cast(to, src));
                    output(p, body, format!("{from}_to_{to}"), to, n, r);
                }
            }
        },
    );
    let inputs = named(vec![
        ("f", f32s(&f)),
        ("i", i32s(&i)),
        ("u", u32s(&u)),
        ("b", bools(&bl)),
    ]);
    check(&p, &bind(&[]), &inputs, &|_| EXACT);
}

#[test]
fn index_arithmetic_and_iota() {
    // Floor division and modulo of negative offsets, iota in every dtype, symbolic strides.
    let text = "
symbol N >= 1
b0 = input \"x\" f32[N*6]
b1 = output \"fdiv\" i32[N*6]
b2 = output \"fmod\" i32[N*6]
b3 = output \"iota_f\" f32[N*6]
b4 = output \"iota_u\" u32[N*6]
b5 = output \"iota_b\" bool[N*6]
b6 = output \"perm\" f32[N*6]
k0 = loop [N*6] {
  v0 = index<i32>((i0 - 7) / 4)
  v1 = index<i32>((i0 - 7) % 4)
  v2 = index<f32>(i0*3 - 5)
  v3 = index<u32>(i0)
  v4 = index<bool>(i0 % 3)
  v5 = load b0[i0 / 6*6 + i0 % 2*3 + i0 % 6 / 2]
  store b1[i0] = v0
  store b2[i0] = v1
  store b3[i0] = v2
  store b4[i0] = v3
  store b5[i0] = v4
  store b6[i0] = v5
}
";
    let p = parse(text).expect("parses");
    let x: Vec<f32> = (0..18).map(|k| k as f32 * 0.5).collect();
    let got = check(
        &p,
        &bind(&[("N", 3)]),
        &named(vec![("x", f32s(&x))]),
        &|_| EXACT,
    );
    if let Some((outs, _)) = got {
        assert_eq!(&outs["fdiv"].to_i64_vec()[..4], &[-2, -2, -2, -1]);
        assert_eq!(&outs["fmod"].to_i64_vec()[..4], &[1, 2, 3, 0]);
    }
}

/// Distance in units in the last place of `want` (an f32 value held in f64).
fn ulps(got: f64, want: f64) -> f64 {
    if got.is_nan() && want.is_nan() || got == want {
        return 0.0;
    }
    let w = want as f32;
    let spacing = f64::from(f32::from_bits(w.abs().to_bits() + 1) - w.abs())
        .max(f64::from(f32::MIN_POSITIVE) * f64::from(f32::EPSILON));
    (got - want).abs() / spacing
}

#[test]
fn transcendental_accuracy_sweep() {
    // 4096 points per op over its useful range; prints the worst error in ULPs (and the
    // absolute error for sin/cos) and checks the documented tolerances (docs/gpu.md).
    let n = 4096usize;
    let lin = |lo: f64, hi: f64| -> Vec<f32> {
        (0..n)
            .map(|i| (lo + (hi - lo) * i as f64 / (n - 1) as f64) as f32)
            .collect()
    };
    let log = |lo: f64, hi: f64| -> Vec<f32> {
        (0..n)
            .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (n - 1) as f64).exp() as f32)
            .collect()
    };
    let cases: Vec<(UnaryOp, Vec<f32>, f64)> = vec![
        (UnaryOp::Exp, lin(-80.0, 80.0), 4e-5),
        (UnaryOp::Log, log(1e-30, 1e30), 1e-5),
        (UnaryOp::Sqrt, log(1e-30, 1e30), 4e-7),
        (UnaryOp::Rsqrt, log(1e-30, 1e30), 4e-7),
        (UnaryOp::Recip, log(1e-30, 1e30), 4e-7),
        (UnaryOp::Tanh, lin(-10.0, 10.0), 1e-5),
        (UnaryOp::Sigmoid, lin(-30.0, 30.0), 1e-5),
        (UnaryOp::Erf, lin(-5.0, 5.0), 1e-5),
        (UnaryOp::Atan, lin(-20.0, 20.0), 1e-5),
        (UnaryOp::Asin, lin(-1.0, 1.0), 1e-5),
        (
            UnaryOp::Sin,
            lin(-std::f64::consts::PI, std::f64::consts::PI),
            0.0,
        ),
        (
            UnaryOp::Cos,
            lin(-std::f64::consts::PI, std::f64::consts::PI),
            0.0,
        ),
    ];
    let mut p = Program::new();
    let mut body = Body::new();
    let mut inputs = Vec::new();
    for (op, xs, _) in &cases {
        let b = p.add_buffer(
            DType::F32,
            Dim::known(n as u64),
            BufferKind::Input(format!("x_{}", op.name())),
        );
        let v = body.load(b, IndexExpr::var(0));
        let r = body.push(Expr::Unary(*op, v));
        output(&mut p, &mut body, op.name().to_string(), DType::F32, n, r);
        inputs.push((format!("x_{}", op.name()), f32s(xs)));
    }
    p.add_kernel(Kernel::Loop(LoopKernel {
        domain: vec![Dim::known(n as u64)],
        reduce: Vec::new(),
        body,
    }));
    let inputs: std::collections::HashMap<String, kiln_ir::Array> = inputs.into_iter().collect();
    let Some(got) = common::gpu(
        &p,
        &bind(&[]),
        &inputs,
        &Default::default(),
        &Default::default(),
    ) else {
        return;
    };
    let (got, _) = got.expect("runs");
    let (want, _) = common::reference(&p, &bind(&[]), &inputs, &Default::default()).expect("runs");
    for (op, _, rel) in &cases {
        let (g, w) = (got[op.name()].to_f64_vec(), want[op.name()].to_f64_vec());
        let worst_ulps = g
            .iter()
            .zip(&w)
            .map(|(g, w)| ulps(*g, *w))
            .fold(0.0, f64::max);
        let worst_abs = g
            .iter()
            .zip(&w)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f64::max);
        println!(
            "{:>8}: max {worst_ulps:.1} ulp, max abs {worst_abs:.2e}",
            op.name()
        );
        let tol = if *rel == 0.0 {
            Tol {
                abs: 1e-3,
                rel: 0.0,
            }
        } else {
            Tol {
                abs: 1e-6,
                rel: *rel,
            }
        };
        common::assert_close(op.name(), &got[op.name()], &want[op.name()], tol);
    }
}
