//! Every loader limit from the writer's side: a module just over a limit is refused by
//! `save` with an encode error naming the limit, and no file is written; a module at the
//! limit round-trips (where building one is cheap).
//!
//! Limits not built here, and why: `MAX_FILE_BYTES`, `MAX_DATA_BYTES`, `MAX_STATE_BYTES`
//! and `MAX_TENSOR_ELEMENTS` need 32 GiB of state (the data section's size is checked in
//! `encode::Data::push` before it grows); `MAX_NODES` and `MAX_NODE_ID` need a million-node graph;
//! `MAX_HEADER_BYTES` and `MAX_TOTAL_DIMS` need a 16 MiB header. All of them are checked
//! by the same code as the rest: `to_bytes` runs the loader on its own output.

use kiln_format::limits::*;
use kiln_format::{FormatError, Module, load, save};
use kiln_ir::{DType, Dim, F64Bits, Graph, NodeId, Op, Shape, UnaryOp, WindowOp};
use kiln_kernel::{Expr, IndexExpr, Kernel, LoadMode, LoopVar, Scalar};
use std::collections::BTreeMap;

use crate::common;
use std::path::PathBuf;

/// A module around a graph: every `input` node is a signature input, `outputs` are named
/// `y0, y1, ...`, no plan, no state.
fn module(g: Graph, outputs: &[NodeId], symbols: &[&str]) -> Module {
    common::graph_module(g, outputs, symbols, vec![])
}

fn input(g: &mut Graph, name: &str, shape: Shape) -> NodeId {
    g.add(
        Op::Input {
            name: name.to_string(),
            dtype: DType::F32,
            shape,
        },
        &[],
    )
    .unwrap()
}

fn known(dims: &[u64]) -> Shape {
    Shape::new(dims.iter().map(|&d| Dim::known(d)))
}

/// `-x` for an input `x` of `shape`.
fn neg_of(shape: Shape, name: &str, symbols: &[&str]) -> Module {
    let mut g = Graph::new();
    let x = input(&mut g, name, shape);
    let y = g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap();
    module(g, &[y], symbols)
}

/// `concat(x, x, ...)` of `n` operands.
fn concat_of(n: usize) -> Module {
    let mut g = Graph::new();
    let x = input(&mut g, "x", known(&[1]));
    let y = g.add(Op::Concat { axis: 0 }, &vec![x; n]).unwrap();
    module(g, &[y], &[])
}

/// `-x` in a graph that also holds `n` empty regions (no op runs them: what a pass that
/// removed control-flow ops leaves behind).
fn with_regions(n: usize) -> Module {
    let mut g = Graph::new();
    let x = input(&mut g, "x", known(&[1]));
    let y = g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap();
    for _ in 0..n {
        g.add_region(kiln_ir::Region::default());
    }
    module(g, &[y], &[])
}

fn conv_with_stride(stride: u64) -> Module {
    let mut g = Graph::new();
    let x = input(&mut g, "x", known(&[1, 1, 4, 4]));
    let w = input(&mut g, "w", known(&[1, 1, 1, 1]));
    let y = g
        .add(
            Op::Conv2d {
                stride: [stride, 1],
                padding: [0, 0],
                dilation: [1, 1],
                groups: 1,
            },
            &[x, w],
        )
        .unwrap();
    module(g, &[y], &[])
}

fn pad_by(amount: u64) -> Module {
    let mut g = Graph::new();
    let x = input(&mut g, "x", known(&[1]));
    let y = g
        .add(
            Op::Pad {
                pads: vec![(amount, 0)],
                value: F64Bits::from(0.0),
            },
            &[x],
        )
        .unwrap();
    module(g, &[y], &[])
}

fn window_stride(stride: u64) -> Module {
    let mut g = Graph::new();
    let x = input(&mut g, "x", known(&[4]));
    let y = g
        .add(
            Op::Window {
                op: WindowOp::Max,
                window: vec![1],
                stride: vec![stride],
                padding: vec![(0, 0)],
            },
            &[x],
        )
        .unwrap();
    module(g, &[y], &[])
}

fn symbols(n: usize) -> Module {
    let names: Vec<String> = (0..n).map(|i| format!("S{i}")).collect();
    let mut g = Graph::new();
    let mut outs = Vec::new();
    for (c, chunk) in names.chunks(MAX_RANK as usize).enumerate() {
        let x = input(
            &mut g,
            &format!("x{c}"),
            Shape::new(chunk.iter().map(|s| Dim::sym(s))),
        );
        outs.push(g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    module(g, &outs, &refs)
}

fn options(n: usize) -> Module {
    let mut m = neg_of(known(&[1]), "x", &[]);
    m.metadata.options = (0..n)
        .map(|i| (format!("k{i}"), String::new()))
        .collect::<BTreeMap<_, _>>();
    m
}

/// A dimension expression `S0+S1+...` whose text is at least `bytes` long.
fn long_dim(bytes: usize) -> Module {
    let mut names = Vec::new();
    let mut d = Dim::sym("S0");
    names.push("S0".to_string());
    while d.to_string().len() < bytes {
        let s = format!("S{}", names.len());
        d = &d + &Dim::sym(&s);
        names.push(s);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    neg_of(Shape::new([d]), "x", &refs)
}

/// The test plan's kernel k2 (a loop kernel with a masked load at v2), changed by `f`.
fn plan_with(f: impl FnOnce(&mut kiln_kernel::Program)) -> kiln_kernel::Program {
    let module = common::every_construct_module();
    let mut p = module.program.expect("a plan").into_program();
    f(&mut p);
    p
}

fn k2(p: &mut kiln_kernel::Program) -> &mut kiln_kernel::Body {
    match &mut p.kernels[2] {
        Kernel::Loop(k) => &mut k.body,
        other => panic!("k2 is not a loop kernel: {other:?}"),
    }
}

fn chain(depth: usize) -> IndexExpr {
    (0..depth).fold(IndexExpr::Var(LoopVar(0)), |e, _| {
        IndexExpr::Add(Box::new(e), Box::new(IndexExpr::Dim(Dim::known(0))))
    })
}

fn tree(depth: usize) -> IndexExpr {
    if depth == 0 {
        IndexExpr::Var(LoopVar(0))
    } else {
        IndexExpr::Add(Box::new(tree(depth - 1)), Box::new(tree(depth - 1)))
    }
}

fn set_load_index(p: &mut kiln_kernel::Program, index: IndexExpr) {
    match &mut k2(p).values[0] {
        Expr::Load(l) => l.index = index,
        other => panic!("k2 v0 is not a load: {other:?}"),
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-format-limits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn save_refuses_every_limit_the_loader_enforces_and_writes_nothing() {
    let name = |n: usize| "a".repeat(n);
    let over: Vec<(&str, Module, String)> = vec![
        (
            "MAX_RANK",
            neg_of(known(&[1; 33]), "x", &[]),
            "signature input x: rank 33 exceeds the limit 32".into(),
        ),
        (
            "MAX_NAME_BYTES",
            neg_of(known(&[1]), &name(4097), &[]),
            format!("signature input {}: name length in bytes 4097 exceeds the limit 4096", name(4097)),
        ),
        (
            "MAX_SYMBOLS",
            symbols(257),
            "signature symbols: symbol count 257 exceeds the limit 256".into(),
        ),
        (
            "MAX_ENTRIES",
            options(MAX_ENTRIES as usize + 1),
            "metadata options: entry count 1048577 exceeds the limit 1048576".into(),
        ),
        (
            "MAX_OPERANDS",
            concat_of(MAX_OPERANDS as usize + 1),
            "graph node n1: operand count 65537 exceeds the limit 65536".into(),
        ),
        (
            "MAX_REGION_DEPTH",
            common::nested_conds_module(MAX_REGION_DEPTH as usize + 1, false),
            format!(
                "graph region {}: nesting depth 33 exceeds the limit 32",
                vec!["r0"; 33].join("/")
            ),
        ),
        (
            "MAX_REGIONS",
            with_regions(MAX_REGIONS as usize + 1),
            "graph: region count 65537 exceeds the limit 65536".into(),
        ),
        (
            // Every cond runs one body as both branches: 2^21 region verifications.
            "MAX_VERIFY_WORK",
            common::nested_conds_module(20, true),
            "graph: verification work 164626277 exceeds the limit 16777216".into(),
        ),
        (
            "MAX_CONV_ATTR",
            conv_with_stride(MAX_CONV_ATTR + 1),
            "graph node n2: factor attribute 1048577 exceeds the limit 1048576".into(),
        ),
        (
            "MAX_WINDOW_ATTR (pad)",
            pad_by(MAX_WINDOW_ATTR + 1),
            // A pad amount over the limit always makes a dimension over the limit too.
            "signature output y0: dimension \"1099511627778\" has the constant 1099511627778, over the limit 1099511627776".into(),
        ),
        (
            "MAX_WINDOW_ATTR (window)",
            window_stride(MAX_WINDOW_ATTR + 1),
            "graph node n1: size attribute 1099511627777 exceeds the limit 1099511627776".into(),
        ),
        (
            "MAX_DIM_VALUE",
            neg_of(known(&[MAX_DIM_VALUE + 1]), "x", &[]),
            "signature input x: dimension \"1099511627777\" has the constant 1099511627777, over the limit 1099511627776".into(),
        ),
        (
            "MAX_DIM_TEXT_BYTES",
            long_dim(MAX_DIM_TEXT_BYTES as usize + 1),
            String::new(),
        ),
    ];
    let d = scratch("over");
    let mut wrong = Vec::new();
    for (limit, m, expected) in over {
        let path = d.join("m.kiln");
        let e = save(&m, &path).unwrap_err();
        assert!(matches!(e, FormatError::Encode { .. }), "{limit}: {e}");
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{limit}: {msg}");
        if expected.is_empty() {
            assert!(
                msg.contains("exceeds the limit 256") || msg.contains("over the limit 256"),
                "{limit}: {msg}"
            );
        } else if msg != format!("cannot encode module: {expected}") {
            wrong.push(format!("{limit}: {msg}"));
        }
        assert!(!path.exists(), "{limit}: a file was written");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "{limit}");
    }
    // A module holds only verified plans; these plans are over a limit (and may not
    // verify), so they are encoded the way a buggy writer would.
    let plans: Vec<(&str, kiln_kernel::Program, String)> = vec![
        (
            "MAX_INDEX_DEPTH",
            plan_with(|p| set_load_index(p, chain(MAX_INDEX_DEPTH as usize + 1))),
            "kernel plan kernel k2 v0: index expression depth 65 exceeds the limit 64".into(),
        ),
        (
            "MAX_INDEX_NODES",
            plan_with(|p| set_load_index(p, tree(10))),
            "kernel plan kernel k2 v0: index expression node count 2047 exceeds the limit 1024"
                .into(),
        ),
        (
            "MAX_GUARDS",
            plan_with(|p| match &mut k2(p).values[2] {
                Expr::Load(l) => match &mut l.mode {
                    LoadMode::Masked { guards, .. } => {
                        let g = guards[0].clone();
                        guards.resize(MAX_GUARDS as usize + 1, g);
                    }
                    other => panic!("k2 v2 is not masked: {other:?}"),
                },
                other => panic!("k2 v2 is not a load: {other:?}"),
            }),
            "kernel plan kernel k2 v2: guard count 65 exceeds the limit 64".into(),
        ),
        (
            "MAX_BODY_VALUES",
            plan_with(|p| {
                let b = k2(p);
                b.values
                    .resize(MAX_BODY_VALUES as usize + 1, Expr::Const(Scalar::I64(0)));
            }),
            "kernel plan kernel k2: value count 65537 exceeds the limit 65536".into(),
        ),
        (
            "MAX_BUFFERS",
            plan_with(|p| {
                let b = p.buffers[9].clone();
                p.buffers.resize(MAX_BUFFERS as usize + 1, b);
            }),
            "kernel plan: buffer count 65537 exceeds the limit 65536".into(),
        ),
        (
            "MAX_KERNELS",
            plan_with(|p| {
                let k = p.kernels[1].clone();
                p.kernels.resize(MAX_KERNELS as usize + 1, k);
            }),
            "kernel plan: kernel count 65537 exceeds the limit 65536".into(),
        ),
    ];
    let base = common::every_construct_module();
    for (limit, plan, expected) in plans {
        let e = kiln_format::fuzzing::to_bytes_with_plan(&base, &plan).unwrap_err();
        assert!(matches!(e, FormatError::Encode { .. }), "{limit}: {e}");
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{limit}: {msg}");
        if msg != format!("cannot encode module: {expected}") {
            wrong.push(format!("{limit}: {msg}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected messages:\n{}",
        wrong.join("\n")
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn modules_at_the_limits_round_trip() {
    let at: Vec<(&str, Module)> = vec![
        ("MAX_RANK", neg_of(known(&[1; 32]), "x", &[])),
        (
            "MAX_NAME_BYTES",
            neg_of(known(&[1]), &"a".repeat(4096), &[]),
        ),
        ("MAX_SYMBOLS", symbols(256)),
        ("MAX_OPERANDS", concat_of(MAX_OPERANDS as usize)),
        (
            "MAX_REGION_DEPTH",
            common::nested_conds_module(MAX_REGION_DEPTH as usize, false),
        ),
        ("MAX_REGIONS", with_regions(MAX_REGIONS as usize)),
        ("MAX_CONV_ATTR", conv_with_stride(MAX_CONV_ATTR)),
        ("MAX_WINDOW_ATTR", window_stride(MAX_WINDOW_ATTR)),
        ("MAX_DIM_VALUE", neg_of(known(&[MAX_DIM_VALUE]), "x", &[])),
    ];
    let d = scratch("at");
    for (limit, m) in at {
        let path = d.join("m.kiln");
        save(&m, &path).unwrap_or_else(|e| panic!("{limit}: {e}"));
        let back = load(&path).unwrap_or_else(|e| panic!("{limit}: {e}"));
        assert_eq!(back.graph.to_string(), m.graph.to_string(), "{limit}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}
