//! Differential tests of every scalar op and dtype against the kernel executor, at sizes
//! that exercise vector bodies and scalar tails.

use crate::common;
use common::*;
use kiln_ir::semantics::{binary_dtype, unary_dtype};
use kiln_ir::{BinaryOp, DType, UnaryOp};

/// Tolerance of an f32 transcendental (relative, absolute); exact elsewhere.
fn tolerance(op: UnaryOp, dt: DType) -> (f64, f64) {
    let transcendental = matches!(
        op,
        UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Atan
            | UnaryOp::Sigmoid
            | UnaryOp::Erf
    );
    match dt {
        DType::F32 if transcendental => (5e-7, 1e-7),
        DType::F32 if op == UnaryOp::Rsqrt => (1.2e-7, 0.0),
        DType::F64 if op == UnaryOp::Erf => (1e-15, 1e-16),
        _ => (0.0, 0.0),
    }
}

#[test]
fn every_unary_op_and_dtype() {
    let mut checked = 0;
    for op in UnaryOp::ALL {
        for dt in DTYPES {
            let Ok(out) = unary_dtype(op, dt) else {
                continue;
            };
            let text = format!(
                "symbol N >= 1
                 b0 = input \"x\" {dt}[N]
                 b1 = output \"y\" {out}[N]
                 k0 = loop [N] {{
                   v0 = load b0[i0]
                   v1 = {}(v0)
                   store b1[i0] = v1
                 }}",
                op.name()
            );
            let program = parse(&text);
            let (rel, abs) = tolerance(op, dt);
            for (s, n) in SIZES.iter().enumerate() {
                let b = bindings(&[("N", *n)]);
                let fill = Fill {
                    specials: true,
                    ..Fill::default()
                };
                let bufs = inputs(&program, &b, s as u64 + 1, fill);
                differential(&program, &b, &bufs, rel, abs);
            }
            checked += 1;
        }
    }
    // 19 float ops on two float dtypes, 4 integer ops on three integer dtypes, `not` on bool.
    assert_eq!(checked, 19 * 2 + 4 * 3 + 1);
}

fn binary_program(op: BinaryOp, dt: DType, out: DType) -> kiln_kernel::Program {
    parse(&format!(
        "symbol N >= 1
         b0 = input \"a\" {dt}[N]
         b1 = input \"b\" {dt}[N]
         b2 = output \"y\" {out}[N]
         k0 = loop [N] {{
           v0 = load b0[i0]
           v1 = load b1[i0]
           v2 = {}(v0, v1)
           store b2[i0] = v2
         }}",
        op.name()
    ))
}

#[test]
fn every_binary_op_and_dtype() {
    let mut checked = 0;
    for op in BinaryOp::ALL {
        for dt in DTYPES {
            let Ok(out) = binary_dtype(op, dt, dt) else {
                continue;
            };
            let program = binary_program(op, dt, out);
            for (s, n) in SIZES.iter().enumerate() {
                let b = bindings(&[("N", *n)]);
                let fill = Fill {
                    specials: true,
                    nonzero: matches!(op, BinaryOp::Div | BinaryOp::Rem),
                    ints: if op == BinaryOp::Mul {
                        (-70000, 70000)
                    } else {
                        (-50, 50)
                    },
                    ..Fill::default()
                };
                let bufs = inputs(&program, &b, 100 + s as u64, fill);
                differential(&program, &b, &bufs, 0.0, 0.0);
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked}");
}

#[test]
fn integer_division_floors_and_wraps() {
    for dt in [DType::I32, DType::I64] {
        let program = binary_program(BinaryOp::Div, dt, dt);
        let rem = binary_program(BinaryOp::Rem, dt, dt);
        let min = if dt == DType::I32 {
            i64::from(i32::MIN)
        } else {
            i64::MIN
        };
        let a = [7, -7, 7, -7, min, min, 0, 5];
        let bv = [2, 2, -2, -2, -1, 3, 4, -9];
        let b = bindings(&[("N", 8)]);
        let mk = |v: &[i64]| match dt {
            DType::I32 => kiln_ir::Data::I32(v.iter().map(|&x| x as i32).collect()),
            _ => kiln_ir::Data::I64(v.to_vec()),
        };
        let bufs = vec![mk(&a), mk(&bv), mk(&[0; 8])];
        let out = differential(&program, &b, &bufs, 0.0, 0.0);
        let q = kiln_ir::Array::new(&[8], out[2].clone())
            .unwrap()
            .to_i64_vec();
        assert_eq!(&q[..4], &[3, -4, -4, 3]);
        assert_eq!(q[4], min, "MIN / -1 wraps");
        let out = differential(&rem, &b, &bufs, 0.0, 0.0);
        let r = kiln_ir::Array::new(&[8], out[2].clone())
            .unwrap()
            .to_i64_vec();
        assert_eq!(&r[..4], &[1, 1, -1, -1]);
        assert_eq!(r[4], 0);
    }
}

#[test]
fn division_by_zero_is_an_error() {
    let program = binary_program(BinaryOp::Div, DType::I32, DType::I32);
    let b = bindings(&[("N", 5)]);
    let bufs = vec![
        kiln_ir::Data::I32(vec![1, 2, 3, 4, 5]),
        kiln_ir::Data::I32(vec![1, 1, 0, 1, 1]),
        kiln_ir::Data::I32(vec![0; 5]),
    ];
    assert!(run_exec(&program, &b, &bufs).is_err());
    let err = run_cpu(&program, &b, &bufs, None).unwrap_err();
    assert_eq!(
        err,
        kiln_cpu::CpuError::DivisionByZero {
            kernel: kiln_kernel::KernelId(0)
        }
    );
}

#[test]
fn every_cast() {
    for from in DTYPES {
        for to in DTYPES {
            let program = parse(&format!(
                "symbol N >= 1
                 b0 = input \"x\" {from}[N]
                 b1 = output \"y\" {to}[N]
                 k0 = loop [N] {{
                   v0 = load b0[i0]
                   v1 = cast<{to}>(v0)
                   store b1[i0] = v1
                 }}"
            ));
            for (s, n) in SIZES.iter().enumerate() {
                let b = bindings(&[("N", *n)]);
                let fill = Fill {
                    specials: true,
                    ints: (-3_000_000_000, 3_000_000_000),
                    scale: 5e9,
                    ..Fill::default()
                };
                let bufs = inputs(&program, &b, 7 + s as u64, fill);
                differential(&program, &b, &bufs, 0.0, 0.0);
            }
        }
    }
}

#[test]
fn select_and_comparisons_in_vector_bodies() {
    for dt in DTYPES {
        let program = parse(&format!(
            "symbol N >= 1
             b0 = input \"c\" bool[N]
             b1 = input \"a\" {dt}[N]
             b2 = input \"b\" {dt}[N]
             b3 = output \"y\" {dt}[N]
             b4 = output \"m\" bool[N]
             k0 = loop [N] {{
               v0 = load b0[i0]
               v1 = load b1[i0]
               v2 = load b2[i0]
               v3 = select(v0, v1, v2)
               v4 = eq(v1, v2)
               v5 = ne(v3, v2)
               v6 = xor(v4, v5)
               v7 = select(v6, v2, v3)
               store b3[i0] = v7
               store b4[i0] = v6
             }}"
        ));
        for (s, n) in SIZES.iter().enumerate() {
            let b = bindings(&[("N", *n)]);
            let fill = Fill {
                ints: (-2, 2),
                ..Fill::default()
            };
            let bufs = inputs(&program, &b, 40 + s as u64, fill);
            differential(&program, &b, &bufs, 0.0, 0.0);
        }
    }
}

#[test]
fn index_values_iota_and_reshapes() {
    // index<..> nodes, floor division and modulo of loop variables (a transpose through a
    // reshape), negative offsets.
    let program = parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N*12]
         b1 = output \"y\" f32[N*12]
         b2 = output \"iota\" i32[N*12]
         b3 = output \"f\" f32[N*12]
         k0 = loop [N, 12] {
           v0 = load b0[(i0*12 + i1) / 4 * 4 + (i0*12 + i1) % 4]
           v1 = load b0[i0*12 + i1 % 3 * 4 + i1 / 3]
           v2 = add(v0, v1)
           store b1[i0*12 + i1] = v2
           v3 = index<i32>(i0*12 + i1 - 7)
           store b2[i0*12 + i1] = v3
           v4 = index<f32>((i1 - 5) / 2)
           v5 = mul(v4, v0)
           store b3[i0*12 + i1] = v5
         }",
    );
    for n in [1, 5, 67] {
        let b = bindings(&[("N", n)]);
        let bufs = inputs(&program, &b, n, Fill::default());
        differential(&program, &b, &bufs, 0.0, 0.0);
    }
}

#[test]
fn broadcasts_and_strides() {
    let program = parse(
        "symbol N >= 1
         symbol C >= 1
         b0 = input \"x\" f32[N*C]
         b1 = input \"bias\" f32[C]
         b2 = input \"row\" f32[N]
         b3 = output \"y\" f32[N*C]
         b4 = output \"t\" f32[N*C]
         k0 = loop [N, C] {
           v0 = load b0[i0*C + i1]
           v1 = load b1[i1]
           v2 = load b2[i0]
           v3 = add(v0, v1)
           v4 = mul(v3, v2)
           v5 = tanh(v4)
           store b3[i0*C + i1] = v5
           store b4[i1*N + i0] = v3
         }",
    );
    for (n, c) in [(1, 1), (3, 7), (5, 50), (2, 783), (9, 4)] {
        let b = bindings(&[("N", n), ("C", c)]);
        let bufs = inputs(&program, &b, n * c, Fill::default());
        differential(&program, &b, &bufs, 5e-7, 1e-7);
    }
}
