//! Differential tests of the two-word `i64` emulation against the kernel executor: every op
//! defined for `i64` on boundary values, casts to and from every dtype, serial and tree
//! reductions, `i64` gather indices (in and out of bounds), argmax, an `i64` matmul and
//! division by zero (skipped without an adapter unless KILN_REQUIRE_GPU=1).

use crate::common;

use common::{EXACT, bind, bools, check, f32s, gpu, i32s, named, u32s};
use kiln_gpu::{GpuError, GpuOptions};
use kiln_ir::semantics::{binary_dtype, unary_dtype};
use kiln_ir::{Array, BinaryOp, DType, Data, Dim, UnaryOp};
use kiln_kernel::{Body, BufferKind, Expr, IndexExpr, Kernel, LoopKernel, Program, parse};
use std::collections::HashMap;

fn i64s(v: &[i64]) -> Array {
    Array::new(&[v.len()], Data::I64(v.to_vec())).expect("valid array")
}

/// Boundary values: zero, ±1, word edges, the extremes, values whose products and quotients
/// cross words, and some ordinary ones.
const A: [i64; 24] = [
    0,
    1,
    -1,
    7,
    -7,
    i64::MAX,
    i64::MIN,
    i64::MIN + 1,
    4_294_967_295,
    4_294_967_296,
    -4_294_967_296,
    -4_294_967_297,
    2_147_483_647,
    -2_147_483_648,
    123_456_789_012_345,
    -987_654_321_098,
    16_777_217,
    36_028_797_018_963_971,
    -36_028_797_018_963_969,
    9_007_199_254_740_993,
    1 << 62,
    3,
    -3,
    1_000_000_007,
];
const B: [i64; 24] = [
    3,
    -1,
    -1,
    2,
    2,
    -1,
    -1,
    7,
    4_294_967_296,
    -3,
    65_537,
    -4_294_967_295,
    -2_147_483_648,
    2_147_483_647,
    -1_000_003,
    987_654_321,
    5,
    -36_028_797_018_963_971,
    12_345,
    -9_007_199_254_740_993,
    i64::MAX,
    -4,
    4,
    i64::MIN,
];

/// A loop kernel over `n` points with the given inputs; `build` adds values and outputs.
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

/// Every op defined for `i64` on `(a, b)` (or `(b, a)` when `swapped`, which covers both
/// signs of each divisor), one output per op; returns the op names.
fn every_op(n: usize, swapped: bool, names: &mut Vec<&'static str>) -> Program {
    program_of(
        n,
        &[("a", DType::I64), ("b", DType::I64)],
        &mut |p, body, v| {
            let (x, y) = if swapped { (v[1], v[0]) } else { (v[0], v[1]) };
            for op in UnaryOp::ALL {
                if let Ok(t) = unary_dtype(op, DType::I64) {
                    let r = body.push(Expr::Unary(op, x));
                    output(p, body, op.name().to_string(), t, n, r);
                    names.push(op.name());
                }
            }
            for op in BinaryOp::ALL {
                if let Ok(t) = binary_dtype(op, DType::I64, DType::I64) {
                    let r = body.push(Expr::Binary(op, x, y));
                    output(p, body, op.name().to_string(), t, n, r);
                    names.push(op.name());
                }
            }
        },
    )
}

#[test]
fn every_i64_op_matches_the_executor() {
    // `b` has no zero; `a` does, so dividing by `a` would fail: replace A[0].
    let a: Vec<i64> = A.iter().map(|&x| if x == 0 { 5 } else { x }).collect();
    let inputs = named(vec![("a", i64s(&a)), ("b", i64s(&B))]);
    let mut names = Vec::new();
    let p = every_op(A.len(), false, &mut names);
    for want in [
        "neg", "abs", "sign", "not", "add", "sub", "mul", "div", "rem", "max", "min", "and", "or",
        "xor", "eq", "ne", "lt", "le", "gt", "ge",
    ] {
        assert!(names.contains(&want), "{want} is not defined for i64");
    }
    if let Some((outs, _)) = check(&p, &bind(&[]), &inputs, &|_| EXACT) {
        // i64::MIN / -1 wraps like the executor.
        assert_eq!(outs["div"].to_i64_vec()[6], i64::MIN);
        assert_eq!(
            outs["mul"].to_i64_vec()[14],
            123_456_789_012_345i64.wrapping_mul(-1_000_003)
        );
    }
    let p = every_op(A.len(), true, &mut Vec::new());
    check(&p, &bind(&[]), &inputs, &|_| EXACT);
}

#[test]
fn casts_to_and_from_i64_match_the_executor() {
    let f = [
        0.0,
        -0.0,
        1.9,
        -1.9,
        3e9,
        -3e9,
        5e18,
        -9.3e18,
        9.3e18,
        f32::INFINITY,
        -f32::INFINITY,
        f32::NAN,
        16_777_217.0,
        -1.5e15,
        4_294_967_296.0,
        -2_147_483_648.0,
        0.4,
        123_456.5,
        -7.0,
        1e-3,
        f32::MAX,
        -f32::MAX,
        2.5,
        -2.5,
    ];
    let i: Vec<i32> = (0..A.len())
        .map(|k| [0, -1, 1, i32::MIN, i32::MAX, 7, -7, 65_536][k % 8])
        .collect();
    let u: Vec<u32> = (0..A.len())
        .map(|k| [0, 1, u32::MAX, 2_147_483_648, 7, 65_536][k % 6])
        .collect();
    let bl: Vec<bool> = (0..A.len()).map(|k| k % 3 == 0).collect();
    // i64 values whose f32 rounding is a tie, just above or below one, or exact.
    let mut wide = A.to_vec();
    wide[0] = (1 << 40) + (1 << 16);
    wide[3] = (1 << 40) + (1 << 16) + 1;
    wide[4] = -((1 << 40) + 3 * (1 << 16));
    wide[21] = (1 << 24) + 1;
    wide[22] = -((1 << 24) + 3);
    let n = f.len();
    let dtypes = [DType::F32, DType::I32, DType::U32, DType::I64, DType::Bool];
    let p = program_of(
        n,
        &[
            ("f", DType::F32),
            ("i", DType::I32),
            ("u", DType::U32),
            ("l", DType::I64),
            ("b", DType::Bool),
        ],
        &mut |p, body, v| {
            for (from, &src) in dtypes.iter().zip(v) {
                for to in dtypes {
                    if *from == DType::I64 || to == DType::I64 {
                        let r = body.push(Expr::Cast(to, src));
                        output(p, body, format!("{from}_to_{to}"), to, n, r);
                    }
                }
            }
        },
    );
    let inputs = named(vec![
        ("f", f32s(&f)),
        ("i", i32s(&i)),
        ("u", u32s(&u)),
        ("l", i64s(&wide)),
        ("b", bools(&bl)),
    ]);
    check(&p, &bind(&[]), &inputs, &|_| EXACT);
}

#[test]
fn i64_reductions_serial_and_tree() {
    // 9 points reduce serially, 300 with the workgroup tree; index<i64> and i64 constants.
    let text = "
symbol N >= 1
b0 = input \"x\" i64[N*300]
b1 = output \"sum9\" i64[N]
b2 = output \"sum\" i64[N]
b3 = output \"max\" i64[N]
b4 = output \"min\" i64[N]
b5 = output \"prod\" i64[N]
b6 = output \"argmax\" i64[N]
k0 = loop [N] reduce [9] {
  v0 = load b0[i0*300 + r0]
  v1 = reduce_sum(v0) init i64(0)
  store b1[i0] = v1
}
k1 = loop [N] reduce [300] {
  v0 = load b0[i0*300 + r0]
  v1 = reduce_sum(v0) init i64(0)
  v2 = reduce_max(v0) init i64(-9223372036854775808)
  v3 = reduce_min(v0) init i64(9223372036854775807)
  v4 = index<i64>(r0)
  v5 = i64(3)
  v6 = rem(v4, v5)
  v7 = i64(1)
  v8 = add(v6, v7)
  v9 = reduce_prod(v8) init i64(1)
  store b2[i0] = v1
  store b3[i0] = v2
  store b4[i0] = v3
  store b5[i0] = v9
}
k2 = loop [N] reduce [300] {
  v0 = load b0[i0*300 + r0]
  v1 = load b3[i0]
  v2 = eq(v0, v1)
  v3 = index<i64>(r0)
  v4 = i64(9223372036854775807)
  v5 = select(v2, v3, v4)
  v6 = reduce_min(v5) init i64(9223372036854775807)
  store b6[i0] = v6
}
";
    let p = parse(text).expect("parses");
    let x: Vec<i64> = (0..900i64)
        .map(|k| (k * 2_654_435_761 % 1_000_003 - 500_000) * 9_999_991 + (k % 7) * (1 << 40))
        .collect();
    check(
        &p,
        &bind(&[("N", 3)]),
        &named(vec![("x", i64s(&x))]),
        &|_| EXACT,
    );
}

/// The fusion pass's gather: a checked load indexed by an `i64` value plus a checked read
/// of an all-true constant as the per-axis range check.
const GATHER: &str = "
symbol N >= 1
b0 = input \"x\" f32[N*5]
b1 = input \"idx\" i64[N*3]
b2 = output \"g\" f32[N*3]
b3 = const bool[5] [true, true, true, true, true]
k0 = loop [N, 3] {
  v0 = load b1[i0*3 + i1]
  v1 = load checked b0[i0*5 + v0]
  v2 = load checked b3[v0]
  v3 = f32(0.0)
  v4 = select(v2, v1, v3)
  store b2[i0*3 + i1] = v4
}
";

#[test]
fn i64_gather_indices_in_and_out_of_bounds() {
    let p = parse(GATHER).expect("parses");
    let x: Vec<f32> = (0..10).map(|k| k as f32 * 1.5).collect();
    check(
        &p,
        &bind(&[("N", 2)]),
        &named(vec![("x", f32s(&x)), ("idx", i64s(&[4, 0, 2, 1, 3, 0]))]),
        &|_| EXACT,
    );
    // An index that fits no i32 (2^32 + 1 would alias 1 if truncated) and a negative one.
    for bad in [(1i64 << 32) + 1, -(1i64 << 33), 5] {
        let inputs = named(vec![("x", f32s(&x)), ("idx", i64s(&[0, 1, 2, bad, 3, 4]))]);
        let Some(got) = gpu(
            &p,
            &bind(&[("N", 2)]),
            &inputs,
            &HashMap::new(),
            &GpuOptions::default(),
        ) else {
            return;
        };
        assert!(
            matches!(got, Err(GpuError::IndexOutOfBounds { .. })),
            "index {bad}: {got:?}"
        );
    }
}

#[test]
fn i64_division_by_zero_is_reported() {
    let text = "
b0 = input \"a\" i64[4]
b1 = input \"b\" i64[4]
b2 = output \"q\" i64[4]
k0 = loop [4] {
  v0 = load b0[i0]
  v1 = load b1[i0]
  v2 = div(v0, v1)
  store b2[i0] = v2
}
";
    let p = parse(text).expect("parses");
    let inputs = named(vec![
        ("a", i64s(&[1, 2, 3, 4])),
        ("b", i64s(&[1, 1 << 32, 0, 2])),
    ]);
    let Some(got) = gpu(
        &p,
        &bind(&[]),
        &inputs,
        &HashMap::new(),
        &GpuOptions::default(),
    ) else {
        return;
    };
    assert!(
        matches!(got, Err(GpuError::DivisionByZero { .. })),
        "{got:?}"
    );
}

#[test]
fn i64_matmul_and_state_round_trip() {
    let text = "
b0 = input \"a\" i64[35]
b1 = input \"b\" i64[35]
b2 = output \"y\" i64[49]
b3 = state \"count\" i64[7]
k0 = matmul m 7 k 5 n 7 {
  a {
    v0 = load b0[i0*5 + i1]
    yield v0
  }
  b {
    v0 = load b1[i0*7 + i1]
    yield v0
  }
  epilogue {
    v0 = acc
    store b2[i0*7 + i1] = v0
  }
}
k1 = loop [7] {
  v0 = load b3[i0]
  v1 = index<i64>(i0)
  v2 = i64(4294967295)
  v3 = mul(v1, v2)
  v4 = add(v0, v3)
  store b3[i0] = v4
}
";
    let p = parse(text).expect("parses");
    let a: Vec<i64> = (0..35i64).map(|k| (k - 17) * 3_000_000_019).collect();
    let b: Vec<i64> = (0..35i64).map(|k| (k % 11 - 5) * 1_000_003).collect();
    let states = named(vec![("count", i64s(&[i64::MAX, -1, 0, 1, 2, 3, 4]))]);
    common::check_with(
        &p,
        &bind(&[]),
        &named(vec![("a", i64s(&a)), ("b", i64s(&b))]),
        &states,
        &GpuOptions::default(),
        &|_| EXACT,
    );
}
