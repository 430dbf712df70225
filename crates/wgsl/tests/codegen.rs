//! WGSL generation without a GPU: every shader generated here is parsed and validated with
//! naga. Covers every scalar op and cast for f32/i32/u32/i64/bool, the choice of template,
//! the binding table, the params uniform and launch sizes, and dtype rejection.

use crate::common;

use kiln_ir::semantics::{binary_dtype, unary_dtype};
use kiln_ir::{BinaryOp, DType, Dim, UnaryOp};
use kiln_kernel::{
    Body, BufferId, BufferKind, Expr, IndexExpr, Kernel, KernelId, LoopKernel, Program,
    VerifiedProgram, parse, verify,
};
use kiln_wgsl::{
    GridAxis, LaunchError, SERIAL_REDUCTION_MAX, ShaderKind, WgslError, WgslProgram, compile,
};
use std::collections::HashMap;

/// `p` verified (test programs must verify).
fn verified(p: &Program) -> VerifiedProgram {
    verify(p.clone()).unwrap_or_else(|e| panic!("does not verify: {e}\n{p}"))
}

fn compile_valid(p: &Program) -> WgslProgram {
    let wgsl = compile(&verified(p)).unwrap_or_else(|e| panic!("compile failed: {e}"));
    for k in &wgsl.kernels {
        if let Err(e) = common::validate(&k.source) {
            panic!("{}: invalid WGSL:\n{e}\n{}", k.kernel, k.source);
        }
    }
    wgsl
}

fn bind(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A loop kernel applying every op defined for `dtype` (and every cast from it).
fn every_op(dtype: DType) -> Program {
    let mut p = Program::new();
    let n = Dim::sym("N");
    p.add_symbol("N", 1, None);
    let a = p.add_buffer(dtype, n.clone(), BufferKind::Input("a".into()));
    let b = p.add_buffer(dtype, n.clone(), BufferKind::Input("b".into()));
    let mut body = Body::new();
    let va = body.load(a, IndexExpr::var(0));
    let vb = body.load(b, IndexExpr::var(0));
    let mut outs = Vec::new();
    for op in UnaryOp::ALL {
        if let Ok(t) = unary_dtype(op, dtype) {
            outs.push((body.push(Expr::Unary(op, va)), t));
        }
    }
    for op in BinaryOp::ALL {
        if let Ok(t) = binary_dtype(op, dtype, dtype) {
            outs.push((body.push(Expr::Binary(op, va, vb)), t));
        }
    }
    for to in [DType::F32, DType::I32, DType::U32, DType::I64, DType::Bool] {
        outs.push((body.push(Expr::Cast(to, va)), to));
    }
    for (k, (v, t)) in outs.into_iter().enumerate() {
        let o = p.add_buffer(t, n.clone(), BufferKind::Output(format!("o{k}")));
        body.store(o, IndexExpr::var(0), v);
    }
    p.add_kernel(Kernel::Loop(LoopKernel {
        domain: vec![n],
        reduce: Vec::new(),
        body,
    }));
    p
}

#[test]
fn every_op_and_cast_validates_for_every_expressible_dtype() {
    for (dtype, helpers) in [
        (
            DType::F32,
            &[
                "kiln_erf",
                "kiln_tanh",
                "kiln_pow",
                "kiln_frem",
                "kiln_float_bits",
            ][..],
        ),
        (
            DType::I32,
            &["kiln_div_i32", "kiln_rem_i32", "kiln_fail"][..],
        ),
        (DType::U32, &["kiln_div_u32", "kiln_rem_u32"][..]),
        (
            DType::I64,
            &[
                "kiln_i64_add",
                "kiln_i64_mul",
                "kiln_div_i64",
                "kiln_rem_i64",
                "kiln_i64_to_f32",
                "kiln_fail",
            ][..],
        ),
        (DType::Bool, &[][..]),
    ] {
        let wgsl = compile_valid(&every_op(dtype));
        let src = &wgsl.kernels[0].source;
        for h in helpers {
            assert!(src.contains(&format!("fn {h}(")), "{dtype}: missing {h}");
        }
        let needs_error = matches!(dtype, DType::I32 | DType::U32 | DType::I64);
        assert_eq!(
            wgsl.kernels[0].error_binding.is_some(),
            needs_error,
            "{dtype}"
        );
    }
}

#[test]
fn bool_buffers_are_u32_words() {
    let wgsl = compile_valid(&every_op(DType::Bool));
    let k = &wgsl.kernels[0];
    assert!(k.source.contains("var<storage, read> buf1: array<u32>;"));
    assert!(k.source.contains("let v0: bool = (buf1[i0] != 0u);"));
    assert!(k.source.contains("= select(0u, 1u, v"));
    assert_eq!(k.bindings[0].dtype, DType::Bool);
    assert!(!k.bindings[0].writable && k.bindings[2].writable);
}

#[test]
fn special_constants_are_exact() {
    let text = "
b0 = output \"f\" f32[4]
b1 = output \"i\" i32[2]
k0 = loop [1] {
  v0 = f32(-inf)
  v1 = f32(nan(0x7fc00001))
  v2 = f32(-0.0)
  v3 = f32(1e-45)
  v4 = i32(-2147483648)
  v5 = i32(-5)
  store b0[0] = v0
  store b0[1] = v1
  store b0[2] = v2
  store b0[3] = v3
  store b1[0] = v4
  store b1[1] = v5
}
";
    let wgsl = compile_valid(&parse(text).expect("parses"));
    let src = &wgsl.kernels[0].source;
    for want in [
        "let v0: f32 = bitcast<f32>(0xff800000u);",
        "let v1: f32 = bitcast<f32>(0x7fc00001u);",
        "let v2: f32 = (-0.0f);",
        "let v3: f32 = 1e-45f;",
        "let v4: i32 = (-2147483647i - 1i);",
        "let v5: i32 = (-5i);",
    ] {
        assert!(src.contains(want), "missing `{want}` in\n{src}");
    }
}

#[test]
fn templates_follow_the_reduction_length() {
    let make = |r: &str| {
        parse(&format!(
            "symbol N >= 1\nsymbol R >= 1\nb0 = input \"x\" f32[N*{r}]\nb1 = output \"y\" f32[N]\nk0 = loop [N] reduce [{r}] {{\n  v0 = load b0[i0*{r} + r0]\n  v1 = reduce_sum(v0) init f32(0.0)\n  store b1[i0] = v1\n}}\n"
        ))
        .expect("parses")
    };
    let limit = SERIAL_REDUCTION_MAX.to_string();
    let above = (SERIAL_REDUCTION_MAX + 1).to_string();
    let serial = compile_valid(&make(&limit));
    assert_eq!(serial.kernels[0].kind, ShaderKind::SerialReduce);
    assert_eq!(serial.kernels[0].workgroup_memory, 0);
    let tree = compile_valid(&make(&above));
    assert_eq!(tree.kernels[0].kind, ShaderKind::RowReduce);
    assert_eq!(tree.kernels[0].workgroup_memory, 256);
    assert!(tree.kernels[0].source.contains("workgroupBarrier();"));
    let symbolic = compile_valid(&make("R"));
    assert_eq!(symbolic.kernels[0].kind, ShaderKind::RowReduce);
    assert_eq!(
        symbolic.kernels[0].grid,
        vec![GridAxis {
            extents: vec![Dim::sym("N")],
            per_group: 1
        }]
    );
}

#[test]
fn params_uniform_and_launch_sizes() {
    let text = "
symbol N >= 1
symbol T >= 1
b0 = input \"x\" f32[N*T*3]
b1 = output \"y\" f32[N*T*3]
k0 = loop [N, T*3] {
  v0 = load b0[i0*{T*3} + i1 - 1 + 1]
  store b1[i0*{T*3} + i1] = v0
}
";
    let wgsl = compile_valid(&parse(text).expect("parses"));
    let k = &wgsl.kernels[0];
    assert_eq!(k.kind, ShaderKind::Elementwise);
    assert_eq!(k.params, vec![Dim::sym("N"), Dim::sym("T") * Dim::known(3)]);
    assert_eq!(k.params_size(), 16);
    let bytes = k
        .params_bytes(&bind(&[("N", 5), ("T", 7)]))
        .expect("evaluates");
    let words: Vec<i32> = bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(words, vec![0, 5, 21, 0]);
    assert_eq!(k.workgroups(&bind(&[("N", 5), ("T", 7)])), Ok(2));
    assert_eq!(
        k.workgroups(&bind(&[("N", 64), ("T", 1_000_000)])),
        Ok(3_000_000)
    );
    assert!(matches!(
        k.workgroups(&bind(&[("N", 1 << 16), ("T", 1 << 16)])),
        Err(LaunchError::TooLarge { .. })
    ));
    assert!(matches!(
        k.params_bytes(&bind(&[("N", 1 << 32), ("T", 1)])),
        Err(LaunchError::TooLarge { .. })
    ));
    assert!(matches!(
        k.workgroups(&bind(&[("N", 5)])),
        Err(LaunchError::Dim(_))
    ));
}

#[test]
fn equal_kernels_give_equal_shaders() {
    let text = "
b0 = input \"x\" f32[8]
b1 = input \"z\" f32[8]
b2 = output \"y\" f32[8]
b3 = output \"w\" f32[8]
k0 = loop [8] {
  v0 = load b0[i0]
  v1 = exp(v0)
  store b2[i0] = v1
}
k1 = loop [8] {
  v0 = load b1[i0]
  v1 = exp(v0)
  store b3[i0] = v1
}
";
    let wgsl = compile_valid(&parse(text).expect("parses"));
    assert_eq!(wgsl.kernels[0].source, wgsl.kernels[1].source);
    assert_eq!(wgsl.kernels[1].bindings[0].buffer, BufferId(1));
    assert_eq!(wgsl.kernels[1].kernel, KernelId(1));
}

#[test]
fn scratch_is_reached_through_one_arena_binding() {
    let mut text = String::from("b0 = input \"x\" f32[8]\n");
    // 40 scratch buffers, more than any adapter's storage bindings per shader stage.
    for k in 1..=40 {
        text += &format!("b{k} = scratch f32[8]\n");
    }
    text +=
        "b41 = scratch i64[8]\nb42 = output \"y\" f32[8]\nk0 = loop [8] {\n  v0 = load b0[i0]\n";
    for k in 1..=40 {
        text += &format!("  store b{k}[i0] = v0\n");
    }
    text += "  v1 = cast<i64>(v0)\n  store b41[i0] = v1\n}\nk1 = loop [8] {\n  v0 = load b41[i0]\n  v1 = cast<f32>(v0)\n";
    for k in 1..=40 {
        text += &format!(
            "  v{} = load b{k}[i0]\n  v{} = add(v{}, v{})\n",
            2 * k,
            2 * k + 1,
            2 * k - 1,
            2 * k
        );
    }
    text += "  store b42[i0] = v81\n}\n";
    let wgsl = compile_valid(&parse(&text).expect("parses"));
    let (k0, k1) = (&wgsl.kernels[0], &wgsl.kernels[1]);
    assert_eq!(
        k0.bindings.len(),
        1,
        "only the input has a binding of its own"
    );
    assert!(!k0.bindings[0].writable, "an input stays read-only");
    assert_eq!(k0.arena_binding, Some(2));
    assert_eq!(k0.packed.len(), 41);
    assert_eq!(k0.storage_bindings(), 2);
    assert_eq!(k1.bindings[0].buffer, BufferId(42));
    assert_eq!(k1.packed[0].buffer, BufferId(1));
    assert_eq!(k1.packed[40].dtype, DType::I64);
    assert!(
        k1.source
            .contains("kiln_arena_load_i64(params.a40 + 2i * (i0))")
    );
    assert!(
        k1.source
            .contains("bitcast<f32>(kiln_arena[params.a0 + i0])")
    );
    // The params uniform: kernel index, then the word offset of each packed buffer.
    let offsets = k1
        .params_bytes_with(&HashMap::new(), &|b| Some(u64::from(b.0) * 10))
        .expect("fits");
    assert_eq!(offsets.len() as u64, k1.params_size());
    assert_eq!(&offsets[4..8], &10i32.to_le_bytes());
    assert_eq!(&offsets[164..168], &410i32.to_le_bytes());
    assert!(
        k1.params_bytes_with(&HashMap::new(), &|_| Some(1 << 31))
            .is_err(),
        "offsets must fit an i32"
    );
}

#[test]
fn checked_loads_bind_the_error_buffer() {
    let text = "
symbol N >= 1
b0 = input \"ids\" i32[N]
b1 = input \"table\" u32[10]
b2 = output \"y\" u32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = load checked b1[v0]
  store b2[i0] = v1
}
";
    let wgsl = compile_valid(&parse(text).expect("parses"));
    let k = &wgsl.kernels[0];
    assert_eq!(k.error_binding, Some(4));
    assert!(
        k.source
            .contains("let v1: u32 = buf2[kiln_check(v0, 10, 2u)];")
    );
    assert!(k.source.contains(
        "@group(0) @binding(4) var<storage, read_write> kiln_error: array<atomic<u32>, 6>;"
    ));
}

#[test]
fn i64_values_are_two_words() {
    let text = "
symbol N >= 1
b0 = input \"idx\" i64[N]
b1 = input \"x\" f32[N*5]
b2 = output \"y\" f32[N]
b3 = output \"s\" i64[N]
b4 = output \"m\" i64[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = load checked b1[i0*5 + v0]
  v2 = i64(-9223372036854775808)
  v3 = max(v0, v2)
  store b2[i0] = v1
  store b3[i0] = v3
}
k1 = loop [N] reduce [300] {
  v0 = index<i64>(r0)
  v1 = load b0[i0]
  v2 = mul(v0, v1)
  v3 = reduce_sum(v2) init i64(0)
  store b4[i0] = v3
}
";
    let wgsl = compile_valid(&parse(text).expect("parses"));
    let k = &wgsl.kernels[0];
    assert!(
        k.source
            .contains("var<storage, read> buf1: array<vec2<u32>>;"),
        "{}",
        k.source
    );
    for want in [
        "let v0: vec2<u32> = buf1[i0];",
        "buf2[kiln_check(i0 * 5 + kiln_i64_index(v0), params.d1, 2u)]",
        "let v2: vec2<u32> = vec2<u32>(0x00000000u, 0x80000000u);",
        "let v3: vec2<u32> = kiln_i64_max(v0, v2);",
    ] {
        assert!(k.source.contains(want), "missing `{want}` in\n{}", k.source);
    }
    let r = &wgsl.kernels[1];
    assert_eq!(r.kind, ShaderKind::RowReduce);
    assert_eq!(r.workgroup_memory, 8 * 64);
    assert!(
        r.source
            .contains("var<workgroup> kiln_part0: array<vec2<u32>, 64>;"),
        "{}",
        r.source
    );
    assert!(
        r.source
            .contains("kiln_i64_add(kiln_part0[lid], kiln_part0[lid + kiln_s])")
    );
}

#[test]
fn i64_contractions_accumulate_in_two_words() {
    let text = "
b0 = input \"a\" i64[6]
b1 = output \"y\" i64[4]
k0 = matmul m 2 k 3 n 2 {
  a {
    v0 = load b0[i0*3 + i1]
    yield v0
  }
  b {
    v0 = load b0[i0 + i1*2]
    yield v0
  }
  epilogue {
    v0 = acc
    store b1[i0*2 + i1] = v0
  }
}
";
    let wgsl = compile_valid(&parse(text).expect("parses"));
    let k = &wgsl.kernels[0];
    assert_eq!(k.workgroup_memory, 2 * 32 * 16 * 8);
    assert!(
        k.source
            .contains("kiln_acc[i][j] = kiln_i64_add(kiln_acc[i][j], kiln_i64_mul(a[i], b[j]));"),
        "{}",
        k.source
    );
}

#[test]
fn unexpressible_dtypes_are_rejected_with_their_location() {
    let cases = [
        (
            "b0 = state \"w\" f32[2]\nb1 = state \"m\" f64[2]\nk0 = loop [2] {\n  v0 = load b0[i0]\n  store b0[i0] = v0\n}\n",
            "b1 (state \"m\") is f64",
        ),
        (
            "b0 = output \"y\" f32[2]\nk0 = loop [2] reduce [3] {\n  v0 = index<i32>(r0)\n  v1 = cast<f64>(v0)\n  v2 = reduce_sum(v1) init f64(0.0)\n  v3 = cast<f32>(v2)\n  store b0[i0] = v3\n}\n",
            "k0: v1 = cast<f64>(v0) is f64",
        ),
        (
            "b0 = input \"x\" f32[4]\nb1 = output \"y\" f32[4]\nk0 = matmul m 2 k 2 n 2 {\n  a {\n    v0 = load b0[i0*2 + i1]\n    yield v0\n  }\n  b {\n    v0 = load b0[i0*2 + i1]\n    yield v0\n  }\n  epilogue {\n    v0 = acc\n    v1 = cast<f64>(v0)\n    v2 = cast<f32>(v1)\n    store b1[i0*2 + i1] = v2\n  }\n}\n",
            "k0 epilogue: v1 = cast<f64>(v0) is f64",
        ),
    ];
    for (text, want) in cases {
        let err = compile(&verified(&parse(text).expect("parses"))).map(|_| ());
        assert!(
            matches!(err, Err(WgslError::UnsupportedDType { .. })),
            "{err:?}"
        );
        let msg = err.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(msg.starts_with(want), "{msg}");
        assert!(
            msg.ends_with("run this program on `Backend::Cpu` or `Backend::Interp`"),
            "{msg}"
        );
    }
}

#[test]
fn unverifiable_and_oversized_programs_are_rejected() {
    let bad = parse("b0 = input \"x\" f32[4]\nb1 = output \"y\" f32[4]\nk0 = loop [5] {\n  v0 = load b0[i0]\n  store b1[i0] = v0\n}\n")
        .expect("parses");
    assert!(verify(bad).is_err());
    let huge = parse("b0 = output \"y\" i32[4]\nk0 = loop [4] {\n  v0 = index<i32>(i0*3000000000 - i0*3000000000)\n  store b0[i0] = v0\n}\n")
        .expect("parses");
    let err = compile(&verified(&huge)).map(|_| ());
    assert_eq!(
        err,
        Err(WgslError::TooLarge {
            what: "k0: the size `3000000000`".to_string()
        })
    );
}

#[test]
fn contraction_launch_grids() {
    let text = "
symbol B >= 1
b0 = input \"q\" i32[B*70*9]
b1 = output \"s\" i32[B*70*70]
k0 = matmul batch [B] m 70 k 9 n 70 {
  a {
    v0 = load b0[i0*630 + i1*9 + i2]
    yield v0
  }
  b {
    v0 = load b0[i0*630 + i2*9 + i1]
    yield v0
  }
  epilogue {
    v0 = acc
    store b1[i0*4900 + i1*70 + i2] = v0
  }
}
";
    let wgsl = compile_valid(&parse(text).expect("parses"));
    let k = &wgsl.kernels[0];
    assert_eq!(k.kind, ShaderKind::Matmul);
    assert!(k.source.contains("var kiln_acc: array<array<i32, 4>, 4>;"));
    // 3 batches x ceil(70/32)^2 tiles.
    assert_eq!(k.workgroups(&bind(&[("B", 3)])), Ok(27));
}
