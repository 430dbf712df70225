//! Print/parse round trips for every construct of the kernel IR, and parse errors.

use kiln_ir::{Array, BinaryOp, DType, Dim, ReduceOp, UnaryOp};
use kiln_kernel::{
    Body, BufferKind, Expr, Guard, IndexExpr, Kernel, Load, LoadMode, LoopKernel, Program, Scalar,
    ValueId, parse,
};
use proptest::prelude::*;

/// A program in canonical printed form that uses every construct.
const EVERYTHING: &str = r#"symbol N >= 1
symbol T >= 2, <= 512
symbol Z >= 0
b0 = input "x \"quoted\"\tname\\" f32[N*T*4]
b1 = output "y" f64[N^2+T-1]
b2 = state "fc1.weight" i32[12]
b3 = scratch u32[N]
b4 = const f32[6] shape [2, 3] [0.0, -0.0, inf, -inf, nan, nan(0x7fc00001)]
b5 = const f64[3] [0.1, 1e-300, -2.5]
b6 = const i32[2] [-2147483648, 7]
b7 = const i64[2] [-9223372036854775808, 9223372036854775807]
b8 = const u32[1] shape [] [4294967295]
b9 = const bool[3] [true, false, true]
b10 = input "ids" i64[N]
b11 = output "z" bool[Z]
k0 = loop [N, T, 4] reduce [3, 2] {
  v0 = load b0[i0*{T*4} + i1*4 + i2]
  v1 = load b0[i0*3 + (i1 - 1)] if 0 <= i1 - 1 < T && 1 <= i2 / 2 < {N+1} else f32(-1.5)
  v2 = load b10[i0]
  v3 = load checked b0[v2*4 + i2 % 4]
  v4 = index<i64>((i0*10 + i1) / 7 - {-1})
  v5 = f32(0.5)
  v6 = f64(-1e-7)
  v7 = i32(-3)
  v8 = i64(4)
  v9 = u32(9)
  v10 = bool(false)
  v11 = add(v0, v1)
  v12 = exp(v11)
  v13 = is_nan(v12)
  v14 = select(v13, v5, v12)
  v15 = cast<f64>(v14)
  v16 = reduce_sum(v15) init f64(0.0)
  v17 = reduce_max(v0) init f32(-inf)
  v18 = reduce_min(v0) init f32(inf)
  v19 = reduce_prod(v8) init i64(1)
  v20 = load b0[r0*2 + r1 + i0*0]
  store b1[i0] = v16
  store b3[i0 + 0*i1] = v9
}
k1 = loop [] {
  v0 = bool(true)
  store b11[0] = v0
}
k2 = matmul batch [N, 2] m T k 4 n 3 {
  a {
    v0 = load b0[i0*{T*4} + i2*4 + i3]
    v1 = neg(v0)
    yield v1
  }
  b {
    v0 = load b4[i2*3 + i3]
    yield v0
  }
  epilogue {
    v0 = acc
    v1 = cast<f64>(v0)
    store b1[i0] = v1
  }
}
k3 = conv2d n N c 4 h T w T*2 o 6 kernel [3, 1] stride [1, 2] padding [1, 0] dilation [2, 1] groups 2 {
  input {
    v0 = load b0[i0]
    yield v0
  }
  weight {
    v0 = load b4[i1]
    yield v0
  }
  epilogue {
    v0 = acc
    v1 = cast<u32>(v0)
    store b3[i0] = v1
  }
}
"#;

#[test]
fn every_construct_round_trips_exactly() {
    let program = parse(EVERYTHING).unwrap();
    assert_eq!(program.to_string(), EVERYTHING);
    assert_eq!(parse(&program.to_string()), Ok(program.clone()));
    // Spot-check what the parser built.
    assert_eq!(program.symbols[1].max, Some(512));
    assert_eq!(program.symbols[2].min, 0);
    assert_eq!(
        program.buffers[0].kind,
        BufferKind::Input("x \"quoted\"\tname\\".to_string())
    );
    let BufferKind::Constant(a) = &program.buffers[4].kind else {
        panic!("const")
    };
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(a.as_f32().unwrap()[5].to_bits(), 0x7fc0_0001);
    assert!(a.as_f32().unwrap()[1].is_sign_negative());
    let BufferKind::Constant(b) = &program.buffers[8].kind else {
        panic!("const")
    };
    assert_eq!(b.shape(), &[] as &[usize]);
    let Kernel::Loop(k) = &program.kernels[0] else {
        panic!("loop")
    };
    assert_eq!(k.reduce, vec![Dim::known(3), Dim::known(2)]);
    assert_eq!(
        k.body.values[16],
        Expr::Reduce {
            op: ReduceOp::Sum,
            value: ValueId(15),
            init: Scalar::F64(0.0)
        }
    );
    let Expr::Load(l) = &k.body.values[1] else {
        panic!("load")
    };
    let LoadMode::Masked { guards, fill } = &l.mode else {
        panic!("masked")
    };
    assert_eq!(guards.len(), 2);
    assert_eq!(guards[1].hi, IndexExpr::Dim(Dim::sym("N") + Dim::known(1)));
    assert_eq!(*fill, Scalar::F32(-1.5));
    let Kernel::Conv2d(c) = &program.kernels[3] else {
        panic!("conv")
    };
    assert_eq!(c.geometry.w, Dim::sym("T") * Dim::known(2));
    assert_eq!(c.geometry.dilation, [2, 1]);
    let Kernel::Matmul(m) = &program.kernels[2] else {
        panic!("matmul")
    };
    assert_eq!(m.batch, vec![Dim::sym("N"), Dim::known(2)]);
}

#[test]
fn comments_and_layout_are_free() {
    let text = "; a comment\nb0 = input \"x\" f32[ 4 ]   ; trailing\nb1 = output \"y\" f32[4]\n\
                k0 = loop [4] { v0 = load b0[i0] store b1[i0] = v0 }";
    let p = parse(text).unwrap();
    assert_eq!(
        p.to_string(),
        "b0 = input \"x\" f32[4]\nb1 = output \"y\" f32[4]\nk0 = loop [4] {\n  v0 = load b0[i0]\n  store b1[i0] = v0\n}\n"
    );
}

#[test]
fn api_built_programs_round_trip() {
    let n = Dim::sym("N");
    let mut p = Program::new();
    p.add_symbol("N", 1, None);
    let x = p.add_buffer(
        DType::F32,
        &(&n * &n) * &Dim::known(784),
        BufferKind::Input("x".into()),
    );
    let y = p.add_buffer(DType::F32, n.clone(), BufferKind::Output("y".into()));
    let c = p.add_buffer(
        DType::I32,
        2u64,
        BufferKind::Constant(Array::from_i32(&[2], vec![1, 2]).unwrap()),
    );
    let mut body = Body::new();
    // Unnormalised trees: 2 + 3, N * 784 as two atoms, and a dim leaf {N*784}.
    let i0 = IndexExpr::var(0);
    let idx = i0.clone() * IndexExpr::dim(&n * &Dim::known(784))
        + (IndexExpr::dim(2u64) + IndexExpr::dim(3u64))
        - IndexExpr::dim(5u64) * (IndexExpr::dim(n.clone()) * IndexExpr::dim(0u64));
    let v0 = body.load(x, idx);
    let v1 = body.push(Expr::Load(Load {
        buffer: x,
        index: i0.clone(),
        mode: LoadMode::Masked {
            guards: vec![Guard {
                lo: IndexExpr::dim(0u64),
                expr: i0.clone(),
                hi: IndexExpr::dim(n.clone()),
            }],
            fill: Scalar::F32(f32::from_bits(0xffc0_1234)),
        },
    }));
    let v2 = body.load(c, IndexExpr::dim(1u64));
    let v3 = body.push(Expr::Cast(DType::F32, v2));
    let v4 = body.push(Expr::Binary(BinaryOp::Pow, v0, v1));
    let v5 = body.push(Expr::Unary(UnaryOp::Erf, v4));
    let v6 = body.push(Expr::Binary(BinaryOp::Mul, v5, v3));
    body.store(y, i0, v6);
    p.add_kernel(Kernel::Loop(LoopKernel {
        domain: vec![n.clone()],
        reduce: Vec::new(),
        body,
    }));
    let text = p.to_string();
    assert!(
        text.contains("v0 = load b0[i0*{N*784} + (2 + 3) - 5*(N*0)]"),
        "{text}"
    );
    assert!(text.contains("else f32(nan(0xffc01234))"), "{text}");
    assert_eq!(parse(&text), Ok(p.clone()));
    assert!(kiln_kernel::verify(p.clone()).is_ok());
}

#[test]
fn parse_errors_name_the_position() {
    let cases = [
        (
            "b1 = input \"x\" f32[4]",
            "line 1, column 1: expected b0 (buffers are numbered in order), found b1",
        ),
        (
            "b0 = input \"x\" f16[4]",
            "line 1, column 16: unknown dtype `f16` (expected one of f32, f64, i32, i64, u32, bool)",
        ),
        (
            "b0 = input \"x f32[4]",
            "line 1, column 12: unterminated string",
        ),
        (
            "b0 = output \"y\" f32[4]\nk0 = loop [4] {\n  v1 = f32(1.0)\n}",
            "line 3, column 3: expected v0 (values are numbered in order), found v1",
        ),
        (
            "k0 = loop [4] {\n  v0 = f32(1.5x)\n}",
            "line 2, column 15: expected `)`, found `x`",
        ),
        (
            "k0 = loop [4] {\n  v0 = i32(1.5)\n}",
            "line 2, column 12: `1.5` is not a valid i32 value",
        ),
        (
            "k0 = loop [4] {\n  v0 = u32(-1)\n}",
            "line 2, column 13: `-1` is not a valid u32 value",
        ),
        (
            "k0 = loop [4] {\n  v0 = load b0[i0 @ 1]\n}",
            "line 2, column 19: unexpected character `@`",
        ),
        (
            "k0 = loop [4] {\n  yield v0\n  yield v0\n}",
            "line 3, column 3: a body yields at most once",
        ),
        (
            "k0 = tile [4] {}",
            "line 1, column 6: unknown kernel kind `tile`",
        ),
        (
            "symbol N >= 1\nb0 = input \"x\" f32[N^99]",
            "line 2, column 22: symbolic expression too large",
        ),
        (
            "b0 = const f32[3] shape [2] [1.0, 2.0, 3.0]",
            "line 1, column 19: array of shape [2] needs 2 elements, got 3",
        ),
        (
            "k0 = conv2d n 1 c 1 h 4 w 4 o 1 kernel [3] stride [1, 1]",
            "line 1, column 40: expected two sizes, found 1",
        ),
    ];
    for (text, want) in cases {
        match parse(text) {
            Err(e) => assert_eq!(e.to_string(), want, "for {text:?}"),
            Ok(p) => panic!("{text:?} parsed to {p}"),
        }
    }
}

fn index_strategy() -> impl Strategy<Value = IndexExpr> {
    let leaf = prop_oneof![
        (0u32..3).prop_map(IndexExpr::var),
        (0u32..2).prop_map(IndexExpr::red),
        (0u32..2).prop_map(|v| IndexExpr::value(ValueId(v))),
        (0u64..20).prop_map(IndexExpr::dim),
        Just(IndexExpr::dim(Dim::sym("N"))),
        Just(IndexExpr::dim(Dim::sym("N") * Dim::known(784))),
        Just(IndexExpr::dim(Dim::known(0) - Dim::known(3))),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a + b),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a - b),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a * b),
            (inner.clone(), 1u64..9).prop_map(|(a, d)| a.floor_div(d)),
            (
                inner.clone(),
                prop_oneof![Just(Dim::sym("N")), Just(Dim::sym("N") + Dim::known(2))]
            )
                .prop_map(|(a, d)| a.modulo(d)),
        ]
    })
}

proptest! {
    /// Any index tree survives printing and parsing unchanged.
    #[test]
    fn index_trees_round_trip(e in index_strategy(), g in index_strategy()) {
        let mut p = Program::new();
        let mut body = Body::new();
        body.push(Expr::Index { dtype: DType::I64, index: e.clone() });
        body.push(Expr::Load(Load {
            buffer: kiln_kernel::BufferId(0),
            index: e,
            mode: LoadMode::Masked {
                guards: vec![Guard { lo: g.clone(), expr: g.clone(), hi: g }],
                fill: Scalar::I64(-1),
            },
        }));
        p.add_kernel(Kernel::Loop(LoopKernel { domain: vec![], reduce: vec![], body }));
        prop_assert_eq!(parse(&p.to_string()), Ok(p));
    }

    /// Every f32 and f64 bit pattern survives printing and parsing.
    #[test]
    fn float_constants_round_trip(a in any::<u32>(), b in any::<u64>()) {
        let mut p = Program::new();
        let mut body = Body::new();
        body.push(Expr::Const(Scalar::F32(f32::from_bits(a))));
        body.push(Expr::Const(Scalar::F64(f64::from_bits(b))));
        p.add_kernel(Kernel::Loop(LoopKernel { domain: vec![], reduce: vec![], body }));
        prop_assert_eq!(parse(&p.to_string()), Ok(p));
    }
}
