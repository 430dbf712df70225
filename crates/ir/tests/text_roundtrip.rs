//! Round-trip tests of the text form: every op variant, every dtype, exact constants,
//! provenance, id gaps, forward references, comments.

use kiln_ir::text::{self, fmt_f32, fmt_f64};
use kiln_ir::*;

fn input(g: &mut Graph, name: &str, dtype: DType, shape: Shape) -> NodeId {
    g.add(
        Op::Input {
            name: name.into(),
            dtype,
            shape,
        },
        &[],
    )
    .unwrap()
}

fn n() -> Dim {
    Dim::sym("N")
}

/// Prints, parses, prints again; asserts identical text and identical nodes, ids and operands.
fn round_trip(g: &Graph) -> Graph {
    let text = g.to_string();
    let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(p.to_string(), text);
    assert_eq!(p.node_ids(), g.node_ids());
    for id in g.node_ids() {
        assert_eq!(p.node(id), g.node(id), "node {id}");
        assert_eq!(p.operands(id), g.operands(id), "operands of {id}");
    }
    p
}

/// One number per `Op` variant; the exhaustive match makes a new variant a compile error here,
/// and `every_op_variant` then fails until the new variant has an example.
fn variant_index(op: &Op) -> usize {
    match op {
        Op::Input { .. } => 0,
        Op::Parameter { .. } => 1,
        Op::Constant(_) => 2,
        Op::Iota { .. } => 3,
        Op::RandomBits { .. } => 4,
        Op::Unary(_) => 5,
        Op::Binary(_) => 6,
        Op::Select => 7,
        Op::Cast(_) => 8,
        Op::StopGradient => 9,
        Op::Reduce { .. } => 10,
        Op::ArgReduce { .. } => 11,
        Op::Reshape(_) => 12,
        Op::Permute(_) => 13,
        Op::Expand(_) => 14,
        Op::Slice(_) => 15,
        Op::Pad { .. } => 16,
        Op::Concat { .. } => 17,
        Op::Flip { .. } => 18,
        Op::Gather { .. } => 19,
        Op::ScatterAdd { .. } => 20,
        Op::MatMul => 21,
        Op::Conv2d { .. } => 22,
        Op::Window { .. } => 23,
        Op::Cond { .. } => 24,
        Op::Scan { .. } => 25,
        Op::While { .. } => 26,
        Op::Get { .. } => 27,
    }
}
const VARIANTS: usize = 28;

/// A region whose params have `types` and whose results are built by `f` from the params.
fn region(
    types: &[(DType, Shape)],
    f: impl FnOnce(&mut Graph, &[NodeId]) -> Vec<NodeId>,
) -> Region {
    let mut graph = Graph::new();
    let params: Vec<NodeId> = types
        .iter()
        .enumerate()
        .map(|(i, (d, s))| input(&mut graph, &format!("p{i}"), *d, s.clone()))
        .collect();
    let results = f(&mut graph, &params);
    Region {
        graph,
        params,
        results,
    }
}

/// Adds a cond, a scan and a while loop (with their `get`s) over `x: f32[N, 4]`.
fn add_control_flow(g: &mut Graph, x: NodeId) {
    let row = (DType::F32, Shape::known(&[4]));
    let pred = g
        .add(
            Op::Constant(Array::from_bool(&[], vec![true]).unwrap()),
            &[],
        )
        .unwrap();
    let xt = (DType::F32, Shape::new([n(), Dim::known(4)]));
    let then_branch = g.add_region(region(std::slice::from_ref(&xt), |r, p| {
        vec![r.add(Op::Unary(UnaryOp::Neg), &[p[0]]).unwrap()]
    }));
    let else_branch = g.add_region(region(&[xt], |_, p| vec![p[0]]));
    let cond = g
        .add(
            Op::Cond {
                then_branch,
                else_branch,
            },
            &[pred, x],
        )
        .unwrap();
    g.add(Op::Get { index: 0 }, &[cond]).unwrap();
    let init = g
        .add(
            Op::Constant(Array::from_f32(&[4], vec![0.0; 4]).unwrap()),
            &[],
        )
        .unwrap();
    let body = g.add_region(region(&[row.clone(), row], |r, p| {
        vec![
            r.add(Op::Binary(BinaryOp::Add), &[p[0], p[1]]).unwrap(),
            r.add(Op::Binary(BinaryOp::Mul), &[p[0], p[1]]).unwrap(),
        ]
    }));
    let scan = g
        .add(
            Op::Scan {
                body,
                length: n(),
                carries: 1,
                xs: 1,
                reverse: true,
            },
            &[init, x],
        )
        .unwrap();
    g.add(Op::Get { index: 1 }, &[scan]).unwrap();
    let count = (DType::I32, Shape::scalar());
    let zero = g
        .add(Op::Constant(Array::from_i32(&[], vec![0]).unwrap()), &[])
        .unwrap();
    let cond = g.add_region(region(std::slice::from_ref(&count), |r, p| {
        let ten = r
            .add(Op::Constant(Array::from_i32(&[], vec![10]).unwrap()), &[])
            .unwrap();
        vec![r.add(Op::Binary(BinaryOp::Lt), &[p[0], ten]).unwrap()]
    }));
    let body = g.add_region(region(&[count], |r, p| {
        let one = r
            .add(Op::Constant(Array::from_i32(&[], vec![1]).unwrap()), &[])
            .unwrap();
        vec![r.add(Op::Binary(BinaryOp::Add), &[p[0], one]).unwrap()]
    }));
    let w = g
        .add(
            Op::While {
                cond,
                body,
                carries: 1,
            },
            &[zero],
        )
        .unwrap();
    g.add(Op::Get { index: 0 }, &[w]).unwrap();
}

fn all_ops_graph() -> Graph {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, Shape::new([n(), Dim::known(4)]));
    let w = g
        .add(
            Op::Parameter {
                name: "fc.weight".into(),
                dtype: DType::F32,
                shape: Shape::known(&[3, 4]),
            },
            &[],
        )
        .unwrap();
    let c = g
        .add(
            Op::Constant(Array::from_f32(&[4], vec![1.0, -2.5, 0.1, 3e-8]).unwrap()),
            &[],
        )
        .unwrap();
    g.add(
        Op::Iota {
            dtype: DType::I32,
            shape: Shape::known(&[2, 3]),
            axis: 1,
        },
        &[],
    )
    .unwrap();
    let key = g
        .add(
            Op::Constant(Array::from_u32(&[2], vec![0, 42]).unwrap()),
            &[],
        )
        .unwrap();
    g.add(
        Op::RandomBits {
            shape: Shape::new([n(), Dim::known(2)]),
        },
        &[key],
    )
    .unwrap();
    let e = g.add(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    let s = g.add(Op::Binary(BinaryOp::Add), &[e, c]).unwrap();
    let cond = g.add(Op::Binary(BinaryOp::Gt), &[s, x]).unwrap();
    g.add(Op::Select, &[cond, s, x]).unwrap();
    g.add(Op::Cast(DType::I64), &[x]).unwrap();
    g.add(Op::StopGradient, &[s]).unwrap();
    g.add(
        Op::Reduce {
            op: ReduceOp::Max,
            axes: vec![0, 1],
            keepdim: true,
        },
        &[x],
    )
    .unwrap();
    g.add(
        Op::ArgReduce {
            op: ArgOp::ArgMin,
            axis: 1,
            keepdim: false,
        },
        &[x],
    )
    .unwrap();
    let r = g
        .add(
            Op::Reshape(Shape::new([n(), Dim::known(2), Dim::known(2)])),
            &[x],
        )
        .unwrap();
    g.add(Op::Permute(vec![2, 0, 1]), &[r]).unwrap();
    let one = g
        .add(
            Op::Reshape(Shape::new([n(), Dim::known(1), Dim::known(4)])),
            &[x],
        )
        .unwrap();
    g.add(
        Op::Expand(Shape::new([
            Dim::known(2),
            n(),
            Dim::known(3),
            Dim::known(4),
        ])),
        &[one],
    )
    .unwrap();
    g.add(
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
    )
    .unwrap();
    g.add(
        Op::Slice(vec![SliceAxis {
            start: 1,
            stop: 3,
            step: 1,
        }]),
        &[c],
    )
    .unwrap();
    g.add(
        Op::Pad {
            pads: vec![(1, 0), (0, 2)],
            value: F64Bits::new(f64::NEG_INFINITY),
        },
        &[x],
    )
    .unwrap();
    g.add(Op::Concat { axis: 0 }, &[x, x, x]).unwrap();
    g.add(Op::Flip { axes: vec![0, 1] }, &[x]).unwrap();
    let idx = input(&mut g, "idx", DType::I64, Shape::new([n(), Dim::known(2)]));
    g.add(Op::Gather { axis: 1 }, &[x, idx]).unwrap();
    let src = input(&mut g, "src", DType::F32, Shape::new([n(), Dim::known(2)]));
    g.add(Op::ScatterAdd { axis: 1 }, &[x, idx, src]).unwrap();
    let wt = g.add(Op::Permute(vec![1, 0]), &[w]).unwrap();
    g.add(Op::MatMul, &[x, wt]).unwrap();
    let img = input(
        &mut g,
        "img",
        DType::F32,
        Shape::new([n(), Dim::known(4), Dim::known(9), Dim::known(9)]),
    );
    let k = g
        .add(
            Op::Parameter {
                name: "conv.weight".into(),
                dtype: DType::F32,
                shape: Shape::known(&[6, 2, 3, 3]),
            },
            &[],
        )
        .unwrap();
    g.add(
        Op::Conv2d {
            stride: [2, 1],
            padding: [1, 0],
            dilation: [1, 2],
            groups: 2,
        },
        &[img, k],
    )
    .unwrap();
    g.add(
        Op::Window {
            op: WindowOp::Max,
            window: vec![2, 3],
            stride: vec![2, 2],
            padding: vec![(1, 0), (0, 2)],
        },
        &[img],
    )
    .unwrap();
    g.add(
        Op::Window {
            op: WindowOp::Sum,
            window: vec![3],
            stride: vec![1],
            padding: vec![(1, 1)],
        },
        &[img],
    )
    .unwrap();
    add_control_flow(&mut g, x);
    g
}

const ALL_OPS_TEXT: &str = r#"n0 = input "x" : f32[N, 4]
n1 = param "fc.weight" : f32[3, 4]
n2 = const f32[4] [1.0, -2.5, 0.1, 3e-8] : f32[4]
n3 = iota axis=1 : i32[2, 3]
n4 = const u32[2] [0, 42] : u32[2]
n5 = random_bits n4 : u32[N, 2]
n6 = exp n0 : f32[N, 4]
n7 = add n6, n2 : f32[N, 4]
n8 = gt n7, n0 : bool[N, 4]
n9 = select n8, n7, n0 : f32[N, 4]
n10 = cast n0 : i64[N, 4]
n11 = stop_gradient n7 : f32[N, 4]
n12 = reduce_max n0 axes=[0, 1] keepdim=true : f32[1, 1]
n13 = argmin n0 axis=1 keepdim=false : i64[N]
n14 = reshape n0 : f32[N, 2, 2]
n15 = permute n14 [2, 0, 1] : f32[2, N, 2]
n16 = reshape n0 : f32[N, 1, 4]
n17 = expand n16 : f32[2, N, 3, 4]
n18 = slice n0 [:, 1:4:2] : f32[N, 2]
n19 = slice n2 [1:3] : f32[2]
n20 = pad n0 [(1, 0), (0, 2)] value=-inf : f32[N+1, 6]
n21 = concat n0, n0, n0 axis=0 : f32[N*3, 4]
n22 = flip n0 axes=[0, 1] : f32[N, 4]
n23 = input "idx" : i64[N, 2]
n24 = gather n0, n23 axis=1 : f32[N, 2]
n25 = input "src" : f32[N, 2]
n26 = scatter_add n0, n23, n25 axis=1 : f32[N, 4]
n27 = permute n1 [1, 0] : f32[4, 3]
n28 = matmul n0, n27 : f32[N, 3]
n29 = input "img" : f32[N, 4, 9, 9]
n30 = param "conv.weight" : f32[6, 2, 3, 3]
n31 = conv2d n29, n30 stride=[2, 1] padding=[1, 0] dilation=[1, 2] groups=2 : f32[N, 6, 5, 5]
n32 = window_max n29 window=[2, 3] stride=[2, 2] padding=[(1, 0), (0, 2)] : f32[N, 4, 5, 5]
n33 = window_sum n29 window=[3] stride=[1] padding=[(1, 1)] : f32[N, 4, 9, 9]
n34 = const bool[] [true] : bool[]
n35 = cond n34, n0 then=r0 else=r1 : bool[]
n36 = get n35 index=0 : f32[N, 4]
n37 = const f32[4] [0.0, 0.0, 0.0, 0.0] : f32[4]
n38 = scan n37, n0 body=r2 length=[N] carries=1 xs=1 reverse=true : bool[]
n39 = get n38 index=1 : f32[N, 4]
n40 = const i32[] [0] : i32[]
n41 = while n40 cond=r3 body=r4 carries=1 : bool[]
n42 = get n41 index=0 : i32[]
r0 (n0) -> (n1) {
  n0 = input "p0" : f32[N, 4]
  n1 = neg n0 : f32[N, 4]
}
r1 (n0) -> (n0) {
  n0 = input "p0" : f32[N, 4]
}
r2 (n0, n1) -> (n2, n3) {
  n0 = input "p0" : f32[4]
  n1 = input "p1" : f32[4]
  n2 = add n0, n1 : f32[4]
  n3 = mul n0, n1 : f32[4]
}
r3 (n0) -> (n2) {
  n0 = input "p0" : i32[]
  n1 = const i32[] [10] : i32[]
  n2 = lt n0, n1 : bool[]
}
r4 (n0) -> (n2) {
  n0 = input "p0" : i32[]
  n1 = const i32[] [1] : i32[]
  n2 = add n0, n1 : i32[]
}
"#;

#[test]
fn every_op_variant() {
    let g = all_ops_graph();
    let mut seen = [false; VARIANTS];
    for id in g.node_ids() {
        seen[variant_index(&g.node(id).op)] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
    assert_eq!(missing, Vec::<usize>::new(), "variants without an example");
    assert_eq!(g.to_string(), ALL_OPS_TEXT);
    round_trip(&g);
}

#[test]
fn spec_example_prints_exactly() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, Shape::new([n(), Dim::known(784)]));
    let w = g
        .add(
            Op::Parameter {
                name: "fc1.weight".into(),
                dtype: DType::F32,
                shape: Shape::known(&[128, 784]),
            },
            &[],
        )
        .unwrap();
    let t = g.add(Op::Permute(vec![1, 0]), &[w]).unwrap();
    let m = g.add(Op::MatMul, &[x, t]).unwrap();
    g.add(
        Op::Constant(Array::from_f32(&[3], vec![1.0, 2.5, -0.0]).unwrap()),
        &[],
    )
    .unwrap();
    g.add(
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![1],
            keepdim: false,
        },
        &[m],
    )
    .unwrap();
    let expected = "\
n0 = input \"x\" : f32[N, 784]
n1 = param \"fc1.weight\" : f32[128, 784]
n2 = permute n1 [1, 0] : f32[784, 128]
n3 = matmul n0, n2 : f32[N, 128]
n4 = const f32[3] [1.0, 2.5, -0.0] : f32[3]
n5 = reduce_sum n3 axes=[1] keepdim=false : f32[N]
";
    assert_eq!(g.to_string(), expected);
    round_trip(&g);
}

#[test]
fn every_unary_binary_reduce_and_window_op() {
    let mut g = Graph::new();
    let f = input(&mut g, "f", DType::F64, Shape::new([n(), Dim::known(3)]));
    let i = input(&mut g, "i", DType::I32, Shape::known(&[3]));
    let b = input(&mut g, "b", DType::Bool, Shape::known(&[3]));
    let mut expected_names = Vec::new();
    for u in UnaryOp::ALL {
        let x = if u == UnaryOp::Not { i } else { f };
        let id = g.add(Op::Unary(u), &[x]).unwrap();
        expected_names.push((id, u.name()));
    }
    for op in BinaryOp::ALL {
        let x = match op {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => b,
            _ => f,
        };
        let id = g.add(Op::Binary(op), &[x, x]).unwrap();
        expected_names.push((id, op.name()));
    }
    for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod] {
        let id = g
            .add(
                Op::Reduce {
                    op,
                    axes: vec![1],
                    keepdim: true,
                },
                &[f],
            )
            .unwrap();
        expected_names.push((id, op.name()));
    }
    let id = g
        .add(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: vec![],
                keepdim: false,
            },
            &[i],
        )
        .unwrap();
    assert_eq!(
        text::format_node(&g, id),
        format!("{id} = reduce_sum n1 axes=[] keepdim=false : i32[3]")
    );
    for op in [ArgOp::ArgMax, ArgOp::ArgMin] {
        let id = g
            .add(
                Op::ArgReduce {
                    op,
                    axis: 0,
                    keepdim: true,
                },
                &[i],
            )
            .unwrap();
        expected_names.push((id, op.name()));
    }
    for op in [WindowOp::Sum, WindowOp::Max] {
        let id = g
            .add(
                Op::Window {
                    op,
                    window: vec![2],
                    stride: vec![1],
                    padding: vec![(0, 0)],
                },
                &[i],
            )
            .unwrap();
        expected_names.push((id, op.name()));
    }
    let p = round_trip(&g);
    let id_of = |name: &str| {
        expected_names
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| *id)
            .unwrap()
    };
    let (is_nan, xor) = (id_of("is_nan"), id_of("xor"));
    for (id, name) in expected_names {
        let line = text::format_node(&p, id);
        assert!(line.starts_with(&format!("{id} = {name} ")), "{line}");
    }
    assert_eq!(text::format_node(&p, NodeId(4)), "n4 = abs n0 : f64[N, 3]");
    assert_eq!(
        text::format_node(&p, is_nan),
        format!("{is_nan} = is_nan n0 : bool[N, 3]")
    );
    assert_eq!(
        text::format_node(&p, xor),
        format!("{xor} = xor n2, n2 : bool[3]")
    );
}

#[test]
fn every_dtype() {
    let mut g = Graph::new();
    let mut lines = Vec::new();
    for d in DType::ALL {
        let x = input(
            &mut g,
            &format!("x_{d}"),
            d,
            Shape::new([n(), Dim::known(2)]),
        );
        lines.push(format!("{x} = input \"x_{d}\" : {d}[N, 2]"));
        let p = g
            .add(
                Op::Parameter {
                    name: format!("p.{d}"),
                    dtype: d,
                    shape: Shape::known(&[2]),
                },
                &[],
            )
            .unwrap();
        lines.push(format!("{p} = param \"p.{d}\" : {d}[2]"));
        let z = g
            .add(Op::Constant(Array::zeros(d, &[2]).unwrap()), &[])
            .unwrap();
        let zero = match d {
            DType::F32 | DType::F64 => "0.0",
            DType::Bool => "false",
            DType::I32 | DType::I64 | DType::U32 => "0",
        };
        lines.push(format!("{z} = const {d}[2] [{zero}, {zero}] : {d}[2]"));
        for to in DType::ALL {
            let c = g.add(Op::Cast(to), &[x]).unwrap();
            lines.push(format!("{c} = cast {x} : {to}[N, 2]"));
        }
        if d.is_numeric() {
            let io = g
                .add(
                    Op::Iota {
                        dtype: d,
                        shape: Shape::new([n()]),
                        axis: 0,
                    },
                    &[],
                )
                .unwrap();
            lines.push(format!("{io} = iota axis=0 : {d}[N]"));
        }
    }
    let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(g.to_string(), expected);
    round_trip(&g);
}

#[test]
fn float_literals_are_exact() {
    let f32s = [
        0.0,
        -0.0,
        1.0,
        0.1,
        -2.5e-7,
        1e16,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fc0_0001),
        f32::from_bits(0xff80_0001),
        16777217.0,
    ];
    let printed: Vec<String> = f32s.iter().map(|&x| fmt_f32(x)).collect();
    assert_eq!(
        printed,
        [
            "0.0",
            "-0.0",
            "1.0",
            "0.1",
            "-2.5e-7",
            "1e16",
            "1.1754944e-38",
            "1e-45",
            "3.4028235e38",
            "-3.4028235e38",
            "inf",
            "-inf",
            "nan",
            "-nan",
            "nan:0x7fc00001",
            "nan:0xff800001",
            "16777216.0",
        ]
    );
    assert_eq!(
        fmt_f64(f64::from_bits(0x7ff0_0000_0000_0002)),
        "nan:0x7ff0000000000002"
    );
    assert_eq!(fmt_f64(0.1 + 0.2), "0.30000000000000004");

    let f64s = vec![
        0.1 + 0.2,
        -0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0002),
        f64::NEG_INFINITY,
        1e300,
    ];
    let mut g = Graph::new();
    let a = g
        .add(
            Op::Constant(Array::from_f32(&[f32s.len()], f32s.to_vec()).unwrap()),
            &[],
        )
        .unwrap();
    let b = g
        .add(
            Op::Constant(Array::from_f64(&[2, 5], f64s.clone()).unwrap()),
            &[],
        )
        .unwrap();
    let x = input(&mut g, "x", DType::F64, Shape::new([n()]));
    let pad = g
        .add(
            Op::Pad {
                pads: vec![(1, 1)],
                value: F64Bits::new(f64::from_bits(0xfff8_0000_0000_0003)),
            },
            &[x],
        )
        .unwrap();
    assert_eq!(
        text::format_node(&g, pad),
        "n3 = pad n2 [(1, 1)] value=nan:0xfff8000000000003 : f64[N+2]"
    );
    let p = round_trip(&g);
    let Op::Constant(pa) = &p.node(a).op else {
        panic!("not a constant")
    };
    let bits: Vec<u32> = pa.as_f32().unwrap().iter().map(|x| x.to_bits()).collect();
    let want: Vec<u32> = f32s.iter().map(|x| x.to_bits()).collect();
    assert_eq!(bits, want);
    let Op::Constant(pb) = &p.node(b).op else {
        panic!("not a constant")
    };
    let bits: Vec<u64> = pb.as_f64().unwrap().iter().map(|x| x.to_bits()).collect();
    let want: Vec<u64> = f64s.iter().map(|x| x.to_bits()).collect();
    assert_eq!(bits, want);
    let Op::Pad { value, .. } = &p.node(pad).op else {
        panic!("not a pad")
    };
    assert_eq!(value.get().to_bits(), 0xfff8_0000_0000_0003);
}

#[test]
fn integer_and_bool_constants_are_exact() {
    let mut g = Graph::new();
    g.add(
        Op::Constant(Array::from_i32(&[3], vec![i32::MIN, -1, i32::MAX]).unwrap()),
        &[],
    )
    .unwrap();
    g.add(
        Op::Constant(Array::from_i64(&[2], vec![i64::MIN, i64::MAX]).unwrap()),
        &[],
    )
    .unwrap();
    g.add(
        Op::Constant(Array::from_u32(&[1, 2], vec![0, u32::MAX]).unwrap()),
        &[],
    )
    .unwrap();
    g.add(
        Op::Constant(Array::from_bool(&[2, 1], vec![true, false]).unwrap()),
        &[],
    )
    .unwrap();
    g.add(Op::Constant(Array::scalar(DType::F32, 7.5)), &[])
        .unwrap();
    g.add(Op::Constant(Array::from_f32(&[0, 3], vec![]).unwrap()), &[])
        .unwrap();
    let expected = "\
n0 = const i32[3] [-2147483648, -1, 2147483647] : i32[3]
n1 = const i64[2] [-9223372036854775808, 9223372036854775807] : i64[2]
n2 = const u32[1, 2] [0, 4294967295] : u32[1, 2]
n3 = const bool[2, 1] [true, false] : bool[2, 1]
n4 = const f32[] [7.5] : f32[]
n5 = const f32[0, 3] [] : f32[0, 3]
";
    assert_eq!(g.to_string(), expected);
    round_trip(&g);
}

#[test]
fn large_constants_print_in_full() {
    let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.25 - 3.0).collect();
    let mut g = Graph::new();
    g.add(
        Op::Constant(Array::from_f32(&[10, 100], values).unwrap()),
        &[],
    )
    .unwrap();
    let text = g.to_string();
    assert_eq!(text.matches(", ").count(), 999 + 2);
    assert!(text.contains("[-3.0, -2.75, -2.5, "));
    assert!(text.ends_with(", 246.75] : f32[10, 100]\n"));
    round_trip(&g);
}

#[test]
fn provenance_round_trips() {
    let mut g = Graph::new();
    let x = g
        .add_at(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::known(&[2]),
            },
            &[],
            Some(Loc {
                file: "src/model.rs".into(),
                line: 12,
                column: 5,
            }),
        )
        .unwrap();
    let y = g
        .add_at(
            Op::Unary(UnaryOp::Neg),
            &[x],
            Some(Loc {
                file: "C:\\My Code\\a;b \"q\".rs".into(),
                line: 1,
                column: 2,
            }),
        )
        .unwrap();
    let z = g
        .add_at(
            Op::Unary(UnaryOp::Exp),
            &[y],
            Some(Loc {
                file: "C:\\work\\x.rs".into(),
                line: 7,
                column: 80,
            }),
        )
        .unwrap();
    assert_eq!(
        g.to_string(),
        "n0 = input \"x\" : f32[2] @ src/model.rs:12:5\n\
         n1 = neg n0 : f32[2] @ \"C:\\\\My Code\\\\a;b \\\"q\\\".rs\":1:2\n\
         n2 = exp n1 : f32[2] @ C:\\work\\x.rs:7:80\n"
    );
    let p = round_trip(&g);
    assert_eq!(
        p.node(z).loc.as_ref().map(|l| l.file.as_str()),
        Some("C:\\work\\x.rs")
    );
    let with_comment = parse("n0 = input \"x\" : f32[2] @ src/a.rs:3:4 ; built here\n").unwrap();
    assert_eq!(
        with_comment.node(NodeId(0)).loc,
        Some(Loc {
            file: "src/a.rs".into(),
            line: 3,
            column: 4
        })
    );
}

#[test]
fn id_gaps_and_forward_references_are_preserved() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, Shape::known(&[3]));
    let dead = g.add(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    let a = g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap();
    let dead2 = g.add(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
    let y = input(&mut g, "y", DType::F32, Shape::known(&[3]));
    let b = g.add(Op::Binary(BinaryOp::Mul), &[a, x]).unwrap();
    g.remove(dead);
    g.remove(dead2);
    // `a` now reads `y`, defined on a later line.
    g.set_operand(a, 0, y);
    let expected = "\
n0 = input \"x\" : f32[3]
n2 = neg n4 : f32[3]
n4 = input \"y\" : f32[3]
n5 = mul n2, n0 : f32[3]
";
    assert_eq!(g.to_string(), expected);
    let p = round_trip(&g);
    assert_eq!(
        p.node_ids(),
        vec![NodeId(0), NodeId(2), NodeId(4), NodeId(5)]
    );
    assert_eq!(p.operands(b), vec![a, x]);
    assert_eq!(
        p.topo_order().unwrap(),
        vec![NodeId(0), NodeId(4), NodeId(2), NodeId(5)]
    );

    // Lines may come in any order; ids decide.
    let shuffled = "n5 = mul n2, n0 : f32[3]\nn4 = input \"y\" : f32[3]\nn0 = input \"x\" : f32[3]\nn2 = neg n4 : f32[3]\n";
    assert_eq!(parse(shuffled).unwrap().to_string(), expected);
}

#[test]
fn names_with_escapes_round_trip() {
    let mut g = Graph::new();
    let names = [
        "a \"quoted\" name",
        "back\\slash",
        "tab\there\nnewline\r",
        "bell\u{7}",
        "ünïcødé ✓",
        "",
    ];
    for name in names {
        input(&mut g, name, DType::F32, Shape::scalar());
    }
    assert_eq!(
        g.to_string(),
        "n0 = input \"a \\\"quoted\\\" name\" : f32[]\n\
         n1 = input \"back\\\\slash\" : f32[]\n\
         n2 = input \"tab\\there\\nnewline\\r\" : f32[]\n\
         n3 = input \"bell\\u{7}\" : f32[]\n\
         n4 = input \"ünïcødé ✓\" : f32[]\n\
         n5 = input \"\" : f32[]\n"
    );
    let p = round_trip(&g);
    let got: Vec<&str> = p.inputs().into_iter().map(|(_, n)| n).collect();
    assert_eq!(got, names);
}

#[test]
fn comments_blank_lines_and_spacing_are_accepted() {
    let text = "; a golden file\r\n\
                \r\n\
                n0 = input \"x\" : f32[N, 4]   ; the batch\r\n\
                   ; indented comment\n\
                n1=reshape n0:f32[N*4]\n\
                n2 = reduce_sum  n1  axes=[ 0 ]  keepdim=true : f32[ 1 ]\n\
                n3 = slice n0 [ : , 1 : 3 : 1 ] : f32[N, 2]\n\
                n4 = pad n0 [(0,0),( 1 , 1 )] value=2 : f32[N, 6]\n\
                ; trailing comment";
    let g = parse(text).unwrap();
    assert_eq!(
        g.to_string(),
        "n0 = input \"x\" : f32[N, 4]\n\
         n1 = reshape n0 : f32[N*4]\n\
         n2 = reduce_sum n1 axes=[0] keepdim=true : f32[1]\n\
         n3 = slice n0 [:, 1:3] : f32[N, 2]\n\
         n4 = pad n0 [(0, 0), (1, 1)] value=2.0 : f32[N, 6]\n"
    );
    assert_eq!(
        g.node(NodeId(1)).op,
        Op::Reshape(Shape::new([&n() * &Dim::known(4)]))
    );
}

#[test]
fn empty_graph() {
    let g = Graph::new();
    assert_eq!(g.to_string(), "");
    assert!(parse("").unwrap().is_empty());
    assert!(parse("; nothing here\n\n").unwrap().is_empty());
}

#[test]
fn type_attributes_print_only_when_they_disagree() {
    // Graphs that fail verification still print every field, so the verifier's report is exact.
    let mut g = Graph::new();
    let node = |op: Op, dtype: DType, shape: Shape| Node {
        op,
        dtype,
        shape,
        loc: None,
    };
    let x = g.add_unchecked(
        node(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::known(&[3]),
            },
            DType::F64,
            Shape::known(&[3]),
        ),
        &[],
    );
    g.add_unchecked(
        node(
            Op::Parameter {
                name: "w".into(),
                dtype: DType::I32,
                shape: Shape::new([n()]),
            },
            DType::I32,
            Shape::known(&[4]),
        ),
        &[],
    );
    g.add_unchecked(
        node(
            Op::Iota {
                dtype: DType::I64,
                shape: Shape::known(&[2]),
                axis: 0,
            },
            DType::I32,
            Shape::known(&[2]),
        ),
        &[],
    );
    g.add_unchecked(
        node(
            Op::RandomBits {
                shape: Shape::known(&[5]),
            },
            DType::U32,
            Shape::known(&[6]),
        ),
        &[x],
    );
    g.add_unchecked(
        node(Op::Cast(DType::Bool), DType::I32, Shape::known(&[3])),
        &[x],
    );
    g.add_unchecked(
        node(
            Op::Reshape(Shape::known(&[3, 1])),
            DType::F32,
            Shape::known(&[1, 3]),
        ),
        &[x],
    );
    g.add_unchecked(
        node(
            Op::Expand(Shape::known(&[2, 3])),
            DType::F32,
            Shape::known(&[2, 3]),
        ),
        &[x],
    );
    let text = g.to_string();
    assert_eq!(
        text,
        "n0 = input \"x\" type=f32[3] : f64[3]\n\
         n1 = param \"w\" type=i32[N] : i32[4]\n\
         n2 = iota axis=0 type=i64[2] : i32[2]\n\
         n3 = random_bits n0 shape=[5] : u32[6]\n\
         n4 = cast n0 dtype=bool : i32[3]\n\
         n5 = reshape n0 shape=[3, 1] : f32[1, 3]\n\
         n6 = expand n0 : f32[2, 3]\n"
    );
    let p = parse_unverified(&text).unwrap();
    assert_eq!(p.to_string(), text);
    for id in g.node_ids() {
        assert_eq!(p.node(id), g.node(id));
    }
    assert!(parse(&text).is_err());
}

#[test]
fn large_ids_are_recreated() {
    let text = "n100000 = input \"x\" : f32[2]\nn7 = neg n100000 : f32[2]\n";
    let g = parse(text).unwrap();
    assert_eq!(g.node_ids(), vec![NodeId(7), NodeId(100000)]);
    assert_eq!(
        g.to_string(),
        "n7 = neg n100000 : f32[2]\nn100000 = input \"x\" : f32[2]\n"
    );
    assert_eq!(g.operands(NodeId(7)), vec![NodeId(100000)]);
}
