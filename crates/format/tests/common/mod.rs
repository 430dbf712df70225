//! Test modules shared by the format tests: a graph using every op, a kernel plan using
//! every kernel construct, modules wrapped around the kernel filetest fixtures, and helpers
//! to rewrite a saved file's header.

#![allow(dead_code)]

use kiln_format::v1::HeaderV1;
use kiln_format::{Metadata, Module, Signature, SymbolSpec, TensorSpec, codec, layout};
use kiln_ir::{
    ArgOp, Array, BinaryOp, DType, Dim, F64Bits, Graph, Loc, NodeId, Op, ReduceOp, Region, Shape,
    SliceAxis, UnaryOp, WindowOp,
};
use kiln_kernel::{BufferKind, Program, VerifiedProgram};
use std::collections::BTreeMap;

fn add(g: &mut Graph, op: Op, operands: &[NodeId]) -> NodeId {
    let name = op.name();
    match g.add(op, operands) {
        Ok(id) => id,
        Err(e) => panic!("building {name}: {e}"),
    }
}

fn f32s(shape: &[usize], v: &[f32]) -> Array {
    Array::from_f32(shape, v.to_vec()).unwrap()
}

/// The kernel plan of [`every_construct_module`]: every buffer kind, every kernel kind,
/// every expression kind, all three load modes, and index expressions with `/`, `%`,
/// values, symbols and braced dims.
pub const EVERY_CONSTRUCT_PLAN: &str = r#"
symbol N >= 1
b0 = input "x" f32[N*4]
b1 = state "w" f32[16]
b2 = state "b" f32[4]
b3 = output "y" f32[N*4]
b4 = state "step" i64[1]
b5 = output "update:w" f32[16]
b6 = output "update:step" i64[1]
b7 = const f32[4] [1.0, -0.0, nan, inf]
b8 = const i64[2] shape [2] [3, -7]
b9 = scratch f32[N]
b10 = scratch f32[N*4]
b11 = state "conv.w" f32[2]
b12 = scratch f32[N*8]
b13 = const u32[2] [1, 4294967295]
b14 = const bool[2] [true, false]
b15 = const f64[1] shape [] [0.1]
b16 = const i32[3] [-1, 0, 2147483647]
k0 = matmul m N k 4 n 4 {
  a {
    v0 = load b0[i0*4 + i1]
    yield v0
  }
  b {
    v0 = load b1[i0*4 + i1]
    v1 = f32(1.0)
    v2 = mul(v0, v1)
    yield v2
  }
  epilogue {
    v0 = acc
    v1 = load b2[i1]
    v2 = add(v0, v1)
    store b3[i0*4 + i1] = v2
  }
}
k1 = loop [N] reduce [4] {
  v0 = load b0[i0*4 + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = reduce_max(v0) init f32(-inf)
  v3 = reduce_min(v0) init f32(inf)
  v4 = reduce_prod(v0) init f32(1.0)
  v5 = add(v1, v2)
  v6 = sub(v3, v4)
  v7 = max(v5, v6)
  store b9[i0] = v7
}
k2 = loop [N*4] {
  v0 = load b0[i0 / 4*4 + i0 % 4]
  v1 = load b9[i0 / 4]
  v2 = load b7[i0 % 4] if 0 <= i0 % 4 < 4 else f32(0.0)
  v3 = load b8[1]
  v4 = i64(1)
  v5 = add(v3, v4)
  v6 = load checked b8[v5]
  v7 = cast<f32>(v6)
  v8 = index<i64>(i0 % 4)
  v9 = i64(2)
  v10 = lt(v8, v9)
  v11 = select(v10, v0, v1)
  v12 = exp(v11)
  v13 = neg(v12)
  v14 = add(v13, v7)
  v15 = load b0[(i0 / 4)*4 + (i0 % 4 - 1)] if 0 <= i0 % 4 - 1 < 4 else f32(-1.5)
  v16 = add(v14, v15)
  v17 = load b2[v8] if 0 <= v8 < 4 else f32(0.0)
  v18 = add(v16, v17)
  v19 = load b13[1]
  v20 = load b14[0]
  v21 = load b15[0]
  v22 = load b16[2]
  v23 = cast<f32>(v19)
  v24 = cast<f32>(v22)
  v25 = cast<f32>(v21)
  v26 = f32(0.0)
  v27 = select(v20, v23, v24)
  v28 = add(v27, v25)
  v29 = mul(v28, v26)
  v30 = add(v18, v29)
  v31 = load b0[{N*4} - 1 - i0]
  v32 = add(v30, v31)
  store b10[i0] = v32
}
k3 = conv2d n N c 1 h 2 w 2 o 2 kernel [1, 1] stride [1, 1] padding [0, 0] dilation [1, 1] groups 1 {
  input {
    v0 = load b0[i0*4 + i1*4 + i2*2 + i3]
    yield v0
  }
  weight {
    v0 = load b11[i0 + i1 + i2 + i3]
    yield v0
  }
  epilogue {
    v0 = acc
    store b12[i0*8 + i1*4 + i2*2 + i3] = v0
  }
}
k4 = loop [16] {
  v0 = load b1[i0]
  v1 = f32(0.1)
  v2 = mul(v0, v1)
  v3 = sub(v0, v2)
  store b5[i0] = v3
}
k5 = loop [1] {
  v0 = load b4[i0]
  v1 = i64(1)
  v2 = add(v0, v1)
  store b6[i0] = v2
}
k6 = loop [N*2, 2] {
  v0 = load b12[i0*4 + i1*2]
  store b12[i0*4 + i1*2] = v0
}
"#;

/// Named nodes: outputs or updates.
pub type Named = Vec<(String, NodeId)>;

/// A graph using every op (every unary and binary op included), with the named outputs
/// and updates of [`every_construct_module`].
pub fn every_op_graph() -> (Graph, Named, Named) {
    every_op_graph_with(&UnaryOp::ALL)
}

/// The unary ops that existed when format version 1 was frozen (every op but `atan` and
/// `asin`): the version 1 golden files hold [`every_construct_module_with`] of these.
pub fn version_1_unary_ops() -> Vec<UnaryOp> {
    UnaryOp::ALL
        .into_iter()
        .filter(|&u| !matches!(u, UnaryOp::Atan | UnaryOp::Asin))
        .collect()
}

/// The unary ops that existed when format version 2 was superseded: the version 2 golden
/// files (crates/format/tests/v2_files) hold [`every_construct_module_with`] of these.
pub fn version_2_unary_ops() -> Vec<UnaryOp> {
    const V2: [&str; 20] = [
        "neg", "abs", "exp", "log", "sqrt", "rsqrt", "recip", "sin", "cos", "tanh", "atan", "asin",
        "sigmoid", "erf", "floor", "ceil", "round", "sign", "not", "is_nan",
    ];
    UnaryOp::ALL
        .into_iter()
        .filter(|u| V2.contains(&u.name()))
        .collect()
}

/// A version 5 op other than a constant: its name and attribute values.
pub fn op_v5(name: &str, attrs: Vec<kiln_format::v1::AttrV5>) -> kiln_format::v1::OpV5 {
    kiln_format::v1::OpV5::Op {
        name: name.to_string(),
        attrs,
    }
}

/// True if the version 5 op is named `name`.
pub fn is_op(op: &kiln_format::v1::OpV5, name: &str) -> bool {
    matches!(op, kiln_format::v1::OpV5::Op { name: n, .. } if n == name)
}

/// The unary ops that existed when format version 4 was superseded: the version 4 golden
/// files (crates/format/tests/v4_files) hold [`every_construct_module_with`] of these.
pub fn version_4_unary_ops() -> Vec<UnaryOp> {
    version_2_unary_ops()
}

/// The unary ops that existed when format version 3 was superseded: the version 3 golden
/// files (crates/format/tests/v3_files) hold [`every_construct_module_with`] of these.
pub fn version_3_unary_ops() -> Vec<UnaryOp> {
    version_2_unary_ops()
}

/// [`every_op_graph`] with only the unary ops `unary`.
pub fn every_op_graph_with(unary: &[UnaryOp]) -> (Graph, Named, Named) {
    let mut g = Graph::new();
    let n = Dim::sym("N");
    let x = g
        .add_at(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::new([n.clone(), Dim::known(4)]),
            },
            &[],
            Some(Loc {
                file: "src/model.rs".into(),
                line: 12,
                column: 5,
            }),
        )
        .unwrap();
    let w = add(
        &mut g,
        Op::Parameter {
            name: "w".into(),
            dtype: DType::F32,
            shape: Shape::known(&[4, 4]),
        },
        &[],
    );
    let b = add(
        &mut g,
        Op::Parameter {
            name: "b".into(),
            dtype: DType::F32,
            shape: Shape::known(&[4]),
        },
        &[],
    );
    let step = add(
        &mut g,
        Op::Parameter {
            name: "step".into(),
            dtype: DType::I64,
            shape: Shape::scalar(),
        },
        &[],
    );
    let conv_w = add(
        &mut g,
        Op::Parameter {
            name: "conv.w".into(),
            dtype: DType::F32,
            shape: Shape::known(&[2, 1, 1, 1]),
        },
        &[],
    );
    let c = add(
        &mut g,
        Op::Constant(f32s(&[4], &[1.0, -0.0, f32::NAN, 2.5])),
        &[],
    );
    add(
        &mut g,
        Op::Constant(Array::from_bool(&[3], vec![true, false, true]).unwrap()),
        &[],
    );
    add(
        &mut g,
        Op::Constant(Array::from_f64(&[2], vec![0.1, -1e300]).unwrap()),
        &[],
    );
    add(
        &mut g,
        Op::Constant(Array::from_u32(&[2, 1], vec![7, u32::MAX]).unwrap()),
        &[],
    );
    add(
        &mut g,
        Op::Constant(Array::from_i32(&[0], vec![]).unwrap()),
        &[],
    );
    let key = add(
        &mut g,
        Op::Constant(Array::from_u32(&[2], vec![1, 2]).unwrap()),
        &[],
    );
    add(
        &mut g,
        Op::RandomBits {
            shape: Shape::known(&[3]),
        },
        &[key],
    );
    let iota = add(
        &mut g,
        Op::Iota {
            dtype: DType::I64,
            shape: Shape::new([n.clone(), Dim::known(2)]),
            axis: 1,
        },
        &[],
    );
    add(&mut g, Op::Binary(BinaryOp::Add), &[x, c]);
    let zero = add(&mut g, Op::Constant(f32s(&[], &[0.0])), &[]);
    let pos = add(&mut g, Op::Binary(BinaryOp::Gt), &[x, zero]);
    for &u in unary {
        let operand = if u == UnaryOp::Not { pos } else { x };
        add(&mut g, Op::Unary(u), &[operand]);
    }
    for op in BinaryOp::ALL {
        let operand = if matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor) {
            pos
        } else {
            x
        };
        add(&mut g, Op::Binary(op), &[operand, operand]);
    }
    add(&mut g, Op::Select, &[pos, x, x]);
    add(&mut g, Op::Cast(DType::I32), &[x]);
    add(&mut g, Op::StopGradient, &[x]);
    for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod] {
        add(
            &mut g,
            Op::Reduce {
                op,
                axes: vec![1],
                keepdim: op == ReduceOp::Sum,
            },
            &[x],
        );
    }
    for op in [ArgOp::ArgMax, ArgOp::ArgMin] {
        add(
            &mut g,
            Op::ArgReduce {
                op,
                axis: 1,
                keepdim: false,
            },
            &[x],
        );
    }
    let img = add(
        &mut g,
        Op::Reshape(Shape::new([
            n.clone(),
            Dim::known(1),
            Dim::known(2),
            Dim::known(2),
        ])),
        &[x],
    );
    add(&mut g, Op::Permute(vec![1, 0]), &[x]);
    add(
        &mut g,
        Op::Expand(Shape::new([n.clone(), Dim::known(4)])),
        &[b],
    );
    add(
        &mut g,
        Op::Slice(vec![
            SliceAxis {
                start: 0,
                stop: u64::MAX,
                step: 1,
            },
            SliceAxis {
                start: 1,
                stop: 4,
                step: 2,
            },
        ]),
        &[x],
    );
    add(
        &mut g,
        Op::Pad {
            pads: vec![(0, 0), (1, 2)],
            value: F64Bits::new(-1.5),
        },
        &[x],
    );
    add(&mut g, Op::Concat { axis: 1 }, &[x, x, x]);
    add(&mut g, Op::Flip { axes: vec![0, 1] }, &[x]);
    let gathered = add(&mut g, Op::Gather { axis: 1 }, &[x, iota]);
    add(&mut g, Op::ScatterAdd { axis: 1 }, &[x, iota, gathered]);
    let mm = add(&mut g, Op::MatMul, &[x, w]);
    let conv = add(
        &mut g,
        Op::Conv2d {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        },
        &[img, conv_w],
    );
    for op in [WindowOp::Max, WindowOp::Sum] {
        add(
            &mut g,
            Op::Window {
                op,
                window: vec![2, 2],
                stride: vec![1, 1],
                padding: vec![(0, 1), (1, 0)],
            },
            &[conv],
        );
    }
    let y = add(&mut g, Op::Binary(BinaryOp::Add), &[mm, b]);
    let lr = add(&mut g, Op::Constant(f32s(&[], &[0.1])), &[]);
    let scaled = add(&mut g, Op::Binary(BinaryOp::Mul), &[w, lr]);
    let w_new = add(&mut g, Op::Binary(BinaryOp::Sub), &[w, scaled]);
    let one = add(
        &mut g,
        Op::Constant(Array::from_i64(&[], vec![1]).unwrap()),
        &[],
    );
    let step_new = add(&mut g, Op::Binary(BinaryOp::Add), &[step, one]);
    // A removed node leaves a gap in the ids, which the file must preserve.
    let dead = add(&mut g, Op::Unary(UnaryOp::Exp), &[y]);
    g.remove(dead);
    let tail = add(&mut g, Op::Unary(UnaryOp::Neg), &[y]);
    (
        g,
        vec![("y".to_string(), y), ("neg_y".to_string(), tail)],
        vec![("w".to_string(), w_new), ("step".to_string(), step_new)],
    )
}

/// The state of [`every_construct_module`]: every parameter of [`every_op_graph`].
pub fn every_op_state() -> Vec<(String, Array)> {
    vec![
        (
            "w".to_string(),
            f32s(
                &[4, 4],
                &(0..16).map(|i| i as f32 * 0.25 - 1.0).collect::<Vec<_>>(),
            ),
        ),
        ("b".to_string(), f32s(&[4], &[0.5, -0.5, f32::NAN, -0.0])),
        (
            "step".to_string(),
            Array::from_i64(&[], vec![i64::MIN + 3]).unwrap(),
        ),
        ("conv.w".to_string(), f32s(&[2, 1, 1, 1], &[1.0, -2.0])),
    ]
}

fn spec(name: &str, dtype: DType, shape: Shape) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        dtype,
        shape,
    }
}

fn n_by(k: u64) -> Shape {
    Shape::new([Dim::sym("N"), Dim::known(k)])
}

/// A module whose graph uses every op and whose kernel plan uses every kernel construct.
pub fn every_construct_module() -> Module {
    every_construct_module_with(&UnaryOp::ALL)
}

/// [`every_construct_module`] with only the unary ops `unary`.
pub fn every_construct_module_with(unary: &[UnaryOp]) -> Module {
    let (graph, outputs, updates) = every_op_graph_with(unary);
    let program = kiln_kernel::parse(EVERY_CONSTRUCT_PLAN).unwrap();
    if let Err(e) = kiln_kernel::verify(program.clone()) {
        panic!("test plan does not verify: {e}");
    }
    let mut options = BTreeMap::new();
    options.insert("backend".to_string(), "kernel".to_string());
    options.insert("opt_level".to_string(), "2".to_string());
    Module {
        metadata: Metadata {
            producer: "kiln 0.1.0".to_string(),
            created: 1_700_000_000,
            options,
        },
        signature: Signature {
            inputs: vec![spec("x", DType::F32, n_by(4))],
            outputs: vec![
                spec("y", DType::F32, n_by(4)),
                spec("neg_y", DType::F32, n_by(4)),
            ],
            symbols: vec![SymbolSpec {
                name: "N".to_string(),
                min: 1,
                max: None,
            }],
        },
        graph,
        outputs,
        updates,
        program: Some(with_neg_y(program)),
        state: every_op_state(),
    }
}

/// Adds the `neg_y` output buffer and a kernel writing it to the test plan.
fn with_neg_y(p: Program) -> VerifiedProgram {
    let text = format!(
        "{p}b{} = output \"neg_y\" f32[N*4]\nk{} = loop [N*4] {{\n  v0 = load b3[i0]\n  v1 = neg(v0)\n  store b{}[i0] = v1\n}}\n",
        p.buffers.len(),
        p.kernels.len(),
        p.buffers.len()
    );
    kiln_kernel::verify(kiln_kernel::parse(&text).unwrap())
        .unwrap_or_else(|e| panic!("test plan does not verify: {e}"))
}

/// The same module without a kernel plan (interpreter-only).
pub fn interpreter_module() -> Module {
    Module {
        program: None,
        ..every_construct_module()
    }
}

/// A module around a kernel plan: graph inputs, parameters and outputs matching the plan's
/// buffers (each shaped `[size]`), zero state. `None` if a state buffer has a symbolic size.
pub fn module_around(program: VerifiedProgram) -> Option<Module> {
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let mut outputs_spec = Vec::new();
    let mut outputs = Vec::new();
    let mut state = Vec::new();
    for b in &program.buffers {
        let shape = Shape(vec![b.size.clone()]);
        match &b.kind {
            BufferKind::Input(name) => {
                add(
                    &mut g,
                    Op::Input {
                        name: name.clone(),
                        dtype: b.dtype,
                        shape: shape.clone(),
                    },
                    &[],
                );
                inputs.push(spec(name, b.dtype, shape));
            }
            BufferKind::State(name) => {
                let size = b.size.as_known()? as usize;
                add(
                    &mut g,
                    Op::Parameter {
                        name: name.clone(),
                        dtype: b.dtype,
                        shape: Shape::known(&[size]),
                    },
                    &[],
                );
                state.push((name.clone(), Array::zeros(b.dtype, &[size]).unwrap()));
            }
            BufferKind::Output(name) => {
                let iota_dtype = if b.dtype == DType::Bool {
                    DType::I32
                } else {
                    b.dtype
                };
                let mut id = add(
                    &mut g,
                    Op::Iota {
                        dtype: iota_dtype,
                        shape: shape.clone(),
                        axis: 0,
                    },
                    &[],
                );
                if b.dtype == DType::Bool {
                    id = add(&mut g, Op::Cast(DType::Bool), &[id]);
                }
                outputs.push((name.clone(), id));
                outputs_spec.push(spec(name, b.dtype, shape));
            }
            BufferKind::Constant(_) | BufferKind::Scratch => {}
        }
    }
    let symbols = program
        .symbols
        .iter()
        .map(|s| SymbolSpec {
            name: s.name.clone(),
            min: s.min,
            max: s.max,
        })
        .collect();
    Some(Module {
        metadata: Metadata {
            producer: "kiln-format tests".to_string(),
            created: 0,
            options: BTreeMap::new(),
        },
        signature: Signature {
            inputs,
            outputs: outputs_spec,
            symbols,
        },
        graph: g,
        outputs,
        updates: Vec::new(),
        program: Some(program),
        state,
    })
}

/// Asserts two modules are equal: metadata, signature, graph text, outputs, updates,
/// kernel plan, and state bit for bit.
pub fn assert_same(a: &Module, b: &Module) {
    assert_eq!(a.metadata, b.metadata);
    assert_eq!(a.signature, b.signature);
    assert_eq!(a.graph.to_string(), b.graph.to_string());
    assert_eq!(a.graph.node_ids(), b.graph.node_ids());
    assert_eq!(a.outputs, b.outputs);
    assert_eq!(a.updates, b.updates);
    assert_eq!(a.program, b.program);
    assert_eq!(a.state.len(), b.state.len());
    for ((na, xa), (nb, xb)) in a.state.iter().zip(&b.state) {
        assert_eq!(na, nb);
        assert!(xa.bit_eq(xb), "state {na}: {xa:?} vs {xb:?}");
    }
}

/// Decodes a saved file's header, lets `f` change it and the data section, and frames the
/// result again with a valid checksum.
pub fn rewrite(bytes: &[u8], f: impl FnOnce(&mut HeaderV1, &mut Vec<u8>)) -> Vec<u8> {
    let parts = layout::split(bytes).unwrap();
    let mut header = codec::decode_header(parts.header).unwrap();
    let mut data = parts.data.to_vec();
    f(&mut header, &mut data);
    let encoded = codec::encode_header(&header).unwrap();
    layout::assemble(&encoded, &data).unwrap()
}

/// The header of a saved file.
pub fn header_of(bytes: &[u8]) -> HeaderV1 {
    codec::decode_header(layout::split(bytes).unwrap().header).unwrap()
}

/// A module around a graph with no kernel plan: every top-level `input` node is a signature
/// input, `outputs` are named `y0, y1, ...`, `symbols` range over `1..`, and `state` holds
/// the values of the graph's `param` nodes.
pub fn graph_module(
    g: Graph,
    outputs: &[NodeId],
    symbols: &[&str],
    state: Vec<(String, Array)>,
) -> Module {
    let mut inputs = Vec::new();
    for id in g.node_ids() {
        if let Op::Input { name, dtype, shape } = &g.node(id).op {
            inputs.push(spec(name, *dtype, shape.clone()));
        }
    }
    let named: Vec<(String, NodeId)> = outputs
        .iter()
        .enumerate()
        .map(|(i, &id)| (format!("y{i}"), id))
        .collect();
    let out_specs = named
        .iter()
        .map(|(n, id)| spec(n, g.node(*id).dtype, g.node(*id).shape.clone()))
        .collect();
    Module {
        metadata: Metadata::default(),
        signature: Signature {
            inputs,
            outputs: out_specs,
            symbols: symbols
                .iter()
                .map(|s| SymbolSpec {
                    name: s.to_string(),
                    min: 1,
                    max: None,
                })
                .collect(),
        },
        graph: g,
        outputs: named,
        updates: vec![],
        program: None,
        state,
    }
}

/// A graph with every control-flow construct: a reverse `scan` of symbolic length `T`
/// whose body holds a `cond` (regions nested two deep, a removed node leaving a gap in a
/// body's ids, a body constant, source locations in bodies), a `param` passed to the scan
/// as a const, a top-level `cond`, a `while` with a data-dependent trip count, and a
/// region returning a parameter twice.
pub const CONTROL_FLOW_GRAPH: &str = r#"
n0 = input "xs" : f32[T, 2] @ src/model.rs:3:9
n1 = input "c0" : f32[2]
n2 = param "k" : f32[]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=true : bool[] @ src/model.rs:10:3
n4 = get n3 index=0 : f32[2]
n5 = get n3 index=1 : f32[T, 2]
n6 = reduce_sum n4 axes=[0] keepdim=false : f32[]
n7 = const f32[] [0.0] : f32[]
n8 = gt n6, n7 : bool[]
n9 = cond n8, n4, n6 then=r1 else=r2 : bool[]
n10 = get n9 index=0 : f32[2]
n11 = get n9 index=1 : f32[]
n12 = input "n" : i32[]
n13 = const i32[] [0] : i32[]
n14 = while n12, n13 cond=r3 body=r4 carries=2 : bool[]
n15 = get n14 index=1 : i32[]
r0 (n0, n1, n2) -> (n8, n4) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = input "k" : f32[]
  n3 = add n0, n1 : f32[2] @ src/model.rs:11:5
  n4 = mul n3, n2 : f32[2]
  n6 = is_nan n2 : bool[]
  n7 = cond n6, n3 then=r0 else=r1 : bool[]
  n8 = get n7 index=0 : f32[2]
  r0 (n0) -> (n0) {
    n0 = input "a" : f32[2]
  }
  r1 (n0) -> (n2) {
    n0 = input "a" : f32[2]
    n1 = const f32[] [0.5] : f32[]
    n2 = mul n0, n1 : f32[2] @ src/body.rs:2:1
  }
}
r1 (n0, n1) -> (n0, n1) {
  n0 = input "v" : f32[2]
  n1 = input "s" : f32[]
}
r2 (n0, n1) -> (n2, n1) {
  n0 = input "v" : f32[2]
  n1 = input "s" : f32[]
  n2 = neg n0 : f32[2]
}
r3 (n0, n1) -> (n3) {
  n0 = input "n" : i32[]
  n1 = input "steps" : i32[]
  n2 = const i32[] [1] : i32[]
  n3 = ne n0, n2 : bool[]
}
r4 (n0, n1) -> (n11, n12) {
  n0 = input "n" : i32[]
  n1 = input "steps" : i32[]
  n2 = const i32[] [2] : i32[]
  n3 = rem n0, n2 : i32[]
  n4 = const i32[] [0] : i32[]
  n5 = eq n3, n4 : bool[]
  n6 = div n0, n2 : i32[]
  n7 = const i32[] [3] : i32[]
  n8 = mul n0, n7 : i32[]
  n9 = const i32[] [1] : i32[]
  n10 = add n8, n9 : i32[]
  n11 = select n5, n6, n10 : i32[]
  n12 = add n1, n9 : i32[]
}
"#;

/// The outputs of [`control_flow_module`]: the scan's carry and ys, the cond's results and
/// the while loop's step count.
pub const CONTROL_FLOW_OUTPUTS: [u32; 5] = [4, 5, 10, 11, 15];

/// A module around [`CONTROL_FLOW_GRAPH`] (no kernel plan), with the state of `k`.
pub fn control_flow_module() -> Module {
    let g = kiln_ir::parse(CONTROL_FLOW_GRAPH).unwrap_or_else(|e| panic!("{e}"));
    let outputs: Vec<NodeId> = CONTROL_FLOW_OUTPUTS.iter().map(|&i| NodeId(i)).collect();
    let k = Array::from_f32(&[], vec![2.0]).unwrap();
    graph_module(g, &outputs, &["T"], vec![("k".to_string(), k)])
}

/// A graph whose `cond` ops nest `depth` (at least 1) regions deep: each graph passes its
/// value `a: f32[]` and predicate `p: bool[]` to a `cond` of its own and returns its result,
/// down to an identity region. With `shared`, each `cond` runs one region as both branches
/// (the verifier then walks `2^depth` bodies); otherwise its else branch is an identity
/// region. The top-level graph's output is node n3.
pub fn nested_conds(depth: usize, shared: bool) -> Graph {
    fn leaf() -> (Graph, NodeId, NodeId) {
        let mut g = Graph::new();
        let a = add(
            &mut g,
            Op::Input {
                name: "a".into(),
                dtype: DType::F32,
                shape: Shape::scalar(),
            },
            &[],
        );
        let p = add(
            &mut g,
            Op::Input {
                name: "p".into(),
                dtype: DType::Bool,
                shape: Shape::scalar(),
            },
            &[],
        );
        (g, a, p)
    }
    let identity = || {
        let (graph, a, p) = leaf();
        Region {
            graph,
            params: vec![a, p],
            results: vec![a],
        }
    };
    let mut inner = identity();
    let mut top = Graph::new();
    for level in 0..depth {
        let (mut g, a, p) = leaf();
        let then_branch = g.add_region(inner);
        let else_branch = if shared {
            then_branch
        } else {
            g.add_region(identity())
        };
        let c = add(
            &mut g,
            Op::Cond {
                then_branch,
                else_branch,
            },
            &[p, a, p],
        );
        let y = add(&mut g, Op::Get { index: 0 }, &[c]);
        if level + 1 == depth {
            top = g;
            break;
        }
        inner = Region {
            graph: g,
            params: vec![a, p],
            results: vec![y],
        };
    }
    top
}

/// A module around [`nested_conds`]: its output is the top-level `cond`'s result.
pub fn nested_conds_module(depth: usize, shared: bool) -> Module {
    graph_module(nested_conds(depth, shared), &[NodeId(3)], &[], vec![])
}

/// [`every_construct_module`] whose kernel bodies carry debug tables (format version 4).
pub fn debug_table_module() -> Module {
    let mut m = every_construct_module();
    let mut program = m.program.take().unwrap().into_program();
    let sites = [
        kiln_kernel::CheckSite {
            kind: kiln_kernel::CheckKind::Index,
            node: 24,
            op: "gather".into(),
            loc: Some(kiln_ir::Loc {
                file: "src/main.rs".into(),
                line: 41,
                column: 7,
            }),
            message: "an index is out of range for axis 1 of size 3".into(),
        },
        kiln_kernel::CheckSite {
            kind: kiln_kernel::CheckKind::Divide,
            node: 7,
            op: "div".into(),
            loc: None,
            message: "integer division by zero".into(),
        },
    ];
    for (i, k) in program.kernels.iter_mut().enumerate() {
        for b in k.body_list_mut() {
            b.checks.push(sites[i % 2].clone());
        }
    }
    m.program = Some(kiln_kernel::verify(program).unwrap());
    m
}
