//! Lowering tests: kernel counts for the fusion targets, and every op lowered, verified and
//! executed against the interpreter.

use crate::fuse_util;

use fuse_util::*;
use kiln_ir::{
    ArgOp, Array, BinaryOp, DType, F64Bits, Graph, Op, ReduceOp, Shape, SliceAxis, UnaryOp,
    WindowOp,
};
use kiln_passes::fuse::{FuseError, lower, lower_with};

#[test]
fn softmax_is_one_kernel() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[10]));
    let y = softmax(&mut g, x);
    let r = check_against_interp(&g, &[y], &bind_n(3), 1);
    assert_eq!((r.kernels(), r.reduction, r.scratch), (1, 1, 0), "{r}");
}

#[test]
fn layer_norm_is_one_kernel() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[16]));
    let w = param(&mut g, "ln.weight", DType::F32, &[16]);
    let b = param(&mut g, "ln.bias", DType::F32, &[16]);
    let y = layer_norm(&mut g, x, w, b, 1e-5);
    let r = check_against_interp(&g, &[y], &bind_n(4), 2);
    assert_eq!((r.kernels(), r.reduction, r.scratch), (1, 1, 0), "{r}");
}

#[test]
fn eight_op_chain_is_one_kernel() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[5]));
    let b = param(&mut g, "b", DType::F32, &[5]);
    let mut v = bin(&mut g, BinaryOp::Add, x, b);
    v = un(&mut g, UnaryOp::Tanh, v);
    let two = scalar(&mut g, 2.0, DType::F32);
    v = bin(&mut g, BinaryOp::Mul, v, two);
    v = un(&mut g, UnaryOp::Exp, v);
    v = bin(&mut g, BinaryOp::Sub, v, x);
    v = un(&mut g, UnaryOp::Abs, v);
    v = un(&mut g, UnaryOp::Sqrt, v);
    v = un(&mut g, UnaryOp::Neg, v);
    let r = check_against_interp(&g, &[v], &bind_n(3), 3);
    assert_eq!((r.kernels(), r.elementwise, r.scratch), (1, 1, 0), "{r}");
}

#[test]
fn mlp_forward_is_two_matmuls_with_epilogues() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[12]));
    let w1 = param(&mut g, "fc1.weight", DType::F32, &[8, 12]);
    let b1 = param(&mut g, "fc1.bias", DType::F32, &[8]);
    let w2 = param(&mut g, "fc2.weight", DType::F32, &[3, 8]);
    let b2 = param(&mut g, "fc2.bias", DType::F32, &[3]);
    let h = linear(&mut g, x, w1, b1);
    let h = relu(&mut g, h);
    let y = linear(&mut g, h, w2, b2);
    let r = check_against_interp(&g, &[y], &bind_n(2), 4);
    assert_eq!((r.kernels(), r.matmul, r.scratch), (2, 2, 1), "{r}");
}

fn check_op(build: impl Fn(&mut Graph) -> Vec<kiln_ir::NodeId>, n: u64) {
    let mut g = Graph::new();
    let outs = build(&mut g);
    for seed in 0..3 {
        check_against_interp(&g, &outs, &bind_n(n), seed);
    }
}

#[test]
fn movement_ops_are_index_arithmetic() {
    check_op(
        |g| {
            let x = input(g, "x", DType::F32, n_shape(&[2, 3]));
            let p = add(g, Op::Permute(vec![2, 0, 1]), &[x]);
            let r = add(
                g,
                Op::Reshape(Shape(vec![
                    kiln_ir::Dim::known(3),
                    kiln_ir::Dim::sym("N") * kiln_ir::Dim::known(2),
                ])),
                &[p],
            );
            let f = add(g, Op::Flip { axes: vec![0, 1] }, &[r]);
            let s = add(
                g,
                Op::Slice(vec![
                    SliceAxis {
                        start: 1,
                        stop: 3,
                        step: 1,
                    },
                    SliceAxis {
                        start: 0,
                        stop: u64::MAX,
                        step: 1,
                    },
                ]),
                &[f],
            );
            let e = add(
                g,
                Op::Reshape(Shape(vec![
                    kiln_ir::Dim::known(2),
                    kiln_ir::Dim::sym("N"),
                    kiln_ir::Dim::known(2),
                ])),
                &[s],
            );
            let x2 = add(g, Op::Reshape(n_shape(&[6])), &[x]);
            vec![e, x2, f]
        },
        3,
    );
}

#[test]
fn pad_concat_and_windows_use_masked_loads() {
    check_op(
        |g| {
            let x = input(g, "x", DType::F32, n_shape(&[4, 5]));
            let z = input(g, "z", DType::F32, n_shape(&[2, 5]));
            let p = add(
                g,
                Op::Pad {
                    pads: vec![(0, 0), (1, 2), (2, 0)],
                    value: F64Bits::new(-1.5),
                },
                &[x],
            );
            let e = un(g, UnaryOp::Exp, x);
            let c = add(g, Op::Concat { axis: 1 }, &[e, z, x]);
            let w = add(
                g,
                Op::Window {
                    op: WindowOp::Max,
                    window: vec![2, 3],
                    stride: vec![2, 1],
                    padding: vec![(1, 1), (0, 1)],
                },
                &[x],
            );
            let ws = add(
                g,
                Op::Window {
                    op: WindowOp::Sum,
                    window: vec![3],
                    stride: vec![2],
                    padding: vec![(2, 2)],
                },
                &[p],
            );
            vec![p, c, w, ws]
        },
        2,
    );
}

#[test]
fn integer_division_under_a_mask_does_not_fault() {
    check_op(
        |g| {
            let a = input(g, "a", DType::I32, n_shape(&[3]));
            let b = param(g, "b", DType::I32, &[3]);
            let one = scalar(g, 7.0, DType::I32);
            let bb = bin(g, BinaryOp::Mul, b, b);
            let den = bin(g, BinaryOp::Add, bb, one);
            let q = bin(g, BinaryOp::Div, a, den);
            let r = bin(g, BinaryOp::Rem, a, den);
            let c = add(g, Op::Concat { axis: 1 }, &[q, r]);
            let p = add(
                g,
                Op::Pad {
                    pads: vec![(1, 1), (2, 0)],
                    value: F64Bits::new(3.0),
                },
                &[q],
            );
            vec![c, p]
        },
        2,
    );
}

#[test]
fn reductions_argmax_and_iota() {
    check_op(
        |g| {
            let x = input(g, "x", DType::F32, n_shape(&[3, 4]));
            let s = reduce(g, ReduceOp::Sum, x, &[0, 2], false);
            let m = reduce(g, ReduceOp::Min, x, &[1], true);
            let p = reduce(g, ReduceOp::Prod, x, &[], false);
            let am = add(
                g,
                Op::ArgReduce {
                    op: ArgOp::ArgMax,
                    axis: 2,
                    keepdim: false,
                },
                &[x],
            );
            let an = add(
                g,
                Op::ArgReduce {
                    op: ArgOp::ArgMin,
                    axis: 0,
                    keepdim: true,
                },
                &[x],
            );
            let io = add(
                g,
                Op::Iota {
                    dtype: DType::I64,
                    shape: n_shape(&[4]),
                    axis: 1,
                },
                &[],
            );
            let i = input(g, "i", DType::I32, n_shape(&[3]));
            let ti = reduce(g, ReduceOp::Max, i, &[1], false);
            vec![s, m, p, am, an, io, ti]
        },
        3,
    );
}

#[test]
fn gather_and_scatter_add() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[5]));
    let idx = input(&mut g, "idx", DType::I64, n_shape(&[3]));
    let gx = add(&mut g, Op::Gather { axis: 1 }, &[x, idx]);
    let src = input(&mut g, "src", DType::F32, n_shape(&[3]));
    let sa = add(&mut g, Op::ScatterAdd { axis: 1 }, &[x, idx, src]);
    let outs = [gx, sa];
    let named: Vec<(String, kiln_ir::NodeId)> = outs
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("out{i}"), n))
        .collect();
    let program = lower(&g, &named).expect("lowers");
    let bindings = bind_n(2);
    let xs = Array::from_f32(&[2, 5], (0..10).map(|v| v as f32).collect()).unwrap();
    let is = Array::from_i64(&[2, 3], vec![4, 0, 4, 1, 1, 2]).unwrap();
    let ss = Array::from_f32(&[2, 3], vec![0.5, 0.25, 1.0, -1.0, 2.0, 3.0]).unwrap();
    let inputs = std::collections::HashMap::from([
        ("x".to_string(), xs),
        ("idx".to_string(), is),
        ("src".to_string(), ss),
    ]);
    let (got, _) = execute(&program, &bindings, &inputs, &Default::default()).expect("runs");
    let kiln_ir::Data::F32(gv) = &got["out0"] else {
        panic!("dtype")
    };
    assert_eq!(gv, &[4.0, 0.0, 4.0, 6.0, 6.0, 7.0]);
    let kiln_ir::Data::F32(sv) = &got["out1"] else {
        panic!("dtype")
    };
    assert_eq!(sv, &[0.25, 1.0, 2.0, 3.0, 5.5, 5.0, 7.0, 10.0, 8.0, 9.0]);

    // An index outside the gathered axis is an error even where the flat index is valid.
    let mut bad = inputs.clone();
    bad.insert(
        "idx".into(),
        Array::from_i64(&[2, 3], vec![5, 0, 0, 0, 0, 0]).unwrap(),
    );
    let e = execute(&program, &bindings, &bad, &Default::default());
    assert!(
        matches!(e, Err(kiln_kernel::ExecError::IndexOutOfBounds { .. })),
        "{e:?}"
    );
    let want = kiln_interp::eval(&g, &outs, &bad, &Default::default());
    assert!(want.is_err());
}

#[test]
fn random_bits_match_threefry() {
    check_op(
        |g| {
            let key = add(
                g,
                Op::Constant(Array::from_u32(&[2], vec![7, 42]).unwrap()),
                &[],
            );
            let r = add(
                g,
                Op::RandomBits {
                    shape: Shape::known(&[3, 5]),
                },
                &[key],
            );
            let k2 = input(g, "key", DType::U32, Shape::known(&[2]));
            let r2 = add(
                g,
                Op::RandomBits {
                    shape: n_shape(&[4]),
                },
                &[k2],
            );
            let x = input(g, "x", DType::F32, n_shape(&[4]));
            let _ = x;
            vec![r, r2]
        },
        2,
    );
}

#[test]
fn conv2d_with_bias_relu_epilogue_and_pooling() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[2, 7, 7]));
    let w = param(&mut g, "conv.weight", DType::F32, &[4, 2, 3, 3]);
    let b = param(&mut g, "conv.bias", DType::F32, &[4, 1, 1]);
    let c = add(
        &mut g,
        Op::Conv2d {
            stride: [1, 2],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
        &[x, w],
    );
    let cb = bin(&mut g, BinaryOp::Add, c, b);
    let r = relu(&mut g, cb);
    let pool = add(
        &mut g,
        Op::Window {
            op: WindowOp::Max,
            window: vec![2, 2],
            stride: vec![2, 2],
            padding: vec![(0, 0), (0, 0)],
        },
        &[r],
    );
    let rep = check_against_interp(&g, &[pool], &bind_n(2), 5);
    assert_eq!(rep.conv2d, 1);
    assert_eq!(rep.kernels(), 2, "{rep}");
    let w2 = param(&mut g, "conv2.weight", DType::F32, &[4, 1, 2, 2]);
    let c2 = add(
        &mut g,
        Op::Conv2d {
            stride: [2, 1],
            padding: [0, 1],
            dilation: [2, 1],
            groups: 2,
        },
        &[x, w2],
    );
    check_against_interp(&g, &[c2, pool], &bind_n(3), 6);
}

#[test]
fn batched_matmul_with_broadcast_and_transposes() {
    check_op(
        |g| {
            let a = input(g, "a", DType::F64, n_shape(&[3, 4]));
            let b = param(g, "b", DType::F64, &[5, 4]);
            let bt = add(g, Op::Permute(vec![1, 0]), &[b]);
            let y = add(g, Op::MatMul, &[a, bt]);
            let at = add(g, Op::Permute(vec![0, 2, 1]), &[a]);
            let z = add(g, Op::MatMul, &[at, a]);
            let t = un(g, UnaryOp::Tanh, z);
            vec![y, t]
        },
        2,
    );
}

#[test]
fn lowering_errors_are_typed() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, Shape::known(&[2]));
    let w = param(&mut g, "w", DType::F32, &[2]);
    let y = un(&mut g, UnaryOp::Exp, x);
    let dup = vec![("y".to_string(), y), ("y".to_string(), x)];
    assert_eq!(lower(&g, &dup), Err(FuseError::DuplicateOutput("y".into())));
    let r = lower_with(&g, &[], &[("nope".to_string(), y)]);
    assert_eq!(r, Err(FuseError::UnknownParameter("nope".into())));
    let s = reduce(&mut g, ReduceOp::Sum, x, &[0], false);
    let r = lower_with(&g, &[], &[("w".to_string(), s)]);
    assert!(matches!(r, Err(FuseError::UpdateMismatch { .. })), "{r:?}");
    let iota = add(
        &mut g,
        Op::Iota {
            dtype: DType::F32,
            shape: n_shape(&[2]),
            axis: 0,
        },
        &[],
    );
    let r = lower(&g, &[("i".to_string(), iota)]);
    assert_eq!(
        r,
        Err(FuseError::FreeSymbol {
            node: iota,
            symbol: "N".into()
        })
    );
    let _ = w;
}

/// Runs `lower_with(outputs, updates)` and the interpreter; the state afterwards must hold
/// the updates' values, computed from the old parameters.
fn check_updates(
    g: &Graph,
    outputs: &[(String, kiln_ir::NodeId)],
    updates: &[(String, kiln_ir::NodeId)],
) -> kiln_kernel::Program {
    let lowered = lower_with(g, outputs, updates).expect("lowers");
    let bindings = bind_n(3);
    let (inputs, params) = random_feeds(g, &bindings, 9);
    let nodes: Vec<kiln_ir::NodeId> = outputs.iter().chain(updates).map(|o| o.1).collect();
    let want = kiln_interp::eval(g, &nodes, &inputs, &params).expect("interp");
    let (outs, state) = execute(&lowered.program, &bindings, &inputs, &params).expect("runs");
    for ((name, _), w) in outputs.iter().zip(&want) {
        same_data(w.data(), &outs[name]).unwrap_or_else(|m| panic!("{name}: {m}"));
    }
    for ((name, _), w) in updates.iter().zip(&want[outputs.len()..]) {
        same_data(w.data(), &state[name])
            .unwrap_or_else(|m| panic!("{name}: {m}\n{}", lowered.program));
    }
    lowered.program.into_program()
}

fn writers(p: &kiln_kernel::Program, b: kiln_kernel::BufferId) -> Vec<usize> {
    p.kernels
        .iter()
        .enumerate()
        .filter(|(_, k)| match k {
            kiln_kernel::Kernel::Loop(l) => l.body.stores.iter().any(|s| s.buffer == b),
            kiln_kernel::Kernel::Matmul(m) => m.epilogue.stores.iter().any(|s| s.buffer == b),
            kiln_kernel::Kernel::Conv2d(c) => c.epilogue.stores.iter().any(|s| s.buffer == b),
        })
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn state_updates_are_written_in_place_after_every_reader() {
    // w' = w - 0.5 * sum_n(x) * w, while y = x @ w^T still reads the old w.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[4]));
    let w = param(&mut g, "w", DType::F32, &[4, 4]);
    let wt = add(&mut g, Op::Permute(vec![1, 0]), &[w]);
    let y = add(&mut g, Op::MatMul, &[x, wt]);
    let s = reduce(&mut g, ReduceOp::Sum, x, &[0], false);
    let half = scalar(&mut g, 0.5, DType::F32);
    let sw = bin(&mut g, BinaryOp::Mul, s, w);
    let step = bin(&mut g, BinaryOp::Mul, sw, half);
    let w1 = bin(&mut g, BinaryOp::Sub, w, step);
    let p = check_updates(&g, &[("y".into(), y)], &[("w".into(), w1)]);
    let b = p.state("w").expect("state");
    let ks = writers(&p, b);
    assert_eq!(ks.len(), 1);
    // The matmul reading w runs before the update kernel.
    assert!(ks[0] == p.kernels.len() - 1, "{p}");
}

#[test]
fn updates_that_read_the_old_value_elsewhere_are_copied_last() {
    // w' = transpose(w): the kernel computing it reads w at other elements, so it goes to
    // scratch and a final copy writes the state.
    let mut g = Graph::new();
    let w = param(&mut g, "w", DType::F32, &[3, 3]);
    let x = input(&mut g, "x", DType::F32, n_shape(&[3]));
    let wt = add(&mut g, Op::Permute(vec![1, 0]), &[w]);
    let e = un(&mut g, UnaryOp::Exp, wt);
    let y = add(&mut g, Op::MatMul, &[x, w]);
    let p = check_updates(&g, &[("y".into(), y)], &[("w".into(), e)]);
    let b = p.state("w").expect("state");
    assert_eq!(writers(&p, b), vec![p.kernels.len() - 1], "{p}");
    // A swap of two parameters: each update reads the other's old value.
    let mut g = Graph::new();
    let a = param(&mut g, "a", DType::F32, &[2]);
    let b = param(&mut g, "b", DType::F32, &[2]);
    let na = un(&mut g, UnaryOp::Neg, b);
    let nb = un(&mut g, UnaryOp::Neg, a);
    let x = input(&mut g, "x", DType::F32, n_shape(&[2]));
    let y = bin(&mut g, BinaryOp::Add, x, a);
    check_updates(
        &g,
        &[("y".into(), y)],
        &[("a".into(), na), ("b".into(), nb)],
    );
}

#[test]
fn a_transposed_matmul_stores_through_its_epilogue() {
    // (a @ b)^T + c: one matmul kernel computing b^T @ a^T with the add in its epilogue.
    let mut g = Graph::new();
    let a = input(&mut g, "a", DType::F32, Shape::known(&[3, 4]));
    let b = param(&mut g, "b", DType::F32, &[4, 5]);
    let c = param(&mut g, "c", DType::F32, &[5, 3]);
    let m = add(&mut g, Op::MatMul, &[a, b]);
    let t = add(&mut g, Op::Permute(vec![1, 0]), &[m]);
    let y = bin(&mut g, BinaryOp::Add, t, c);
    let r = check_against_interp(&g, &[y], &Default::default(), 3);
    assert_eq!((r.matmul, r.kernels()), (1, 1), "{r}");
    // Batched, with a broadcast batch operand.
    let mut g = Graph::new();
    let a = input(&mut g, "a", DType::F64, n_shape(&[3, 4]));
    let b = param(&mut g, "b", DType::F64, &[4, 2]);
    let m = add(&mut g, Op::MatMul, &[a, b]);
    let t = add(&mut g, Op::Permute(vec![0, 2, 1]), &[m]);
    let e = un(&mut g, UnaryOp::Exp, t);
    let r = check_against_interp(&g, &[e], &bind_n(2), 4);
    assert_eq!(r.kernels(), 1, "{r}");
}

#[test]
fn long_chains_are_cut_into_kernels_of_bounded_depth() {
    // 1,000 elementwise ops: bodies are emitted recursively, so fusion stops every
    // MAX_FUSE_DEPTH (256) inlined nodes.
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[5]));
    let mut v = x;
    for i in 0..1000 {
        v = if i % 2 == 0 {
            un(&mut g, UnaryOp::Neg, v)
        } else {
            bin(&mut g, BinaryOp::Add, v, x)
        };
    }
    let r = check_against_interp(&g, &[v], &bind_n(2), 7);
    assert_eq!((r.kernels(), r.elementwise), (4, 4), "{r}");
    assert_eq!(kiln_passes::fuse::MAX_FUSE_DEPTH, 256);
}

#[test]
fn a_verification_failure_is_reported_in_one_bounded_line() {
    use kiln_kernel::{KernelId, VerifyError, VerifyErrors};
    let errors = VerifyErrors(
        (0..500)
            .map(|i| VerifyError {
                kernel: Some(KernelId(i)),
                location: format!("store b1[{}] = v3", "i0 * 7 + ".repeat(2_000)),
                message: "index may reach 1024 >= 1024".to_string(),
            })
            .collect(),
    );
    let text = FuseError::Verify(errors).to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.len() < 400, "{} bytes", text.len());
    assert!(
        text.starts_with("fuse: the lowered program does not verify: k0: store b1[i0 * 7"),
        "{text}"
    );
    assert!(text.ends_with("(and 499 more)"), "{text}");
}
