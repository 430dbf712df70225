//! Unit tests of every simplification rule: it fires when it should, stays quiet when it
//! should not (including the NaN and signed-zero cases), and the result evaluates to the
//! same bits as the original through the interpreter.

use kiln_ir::{Array, BinaryOp, DType, Graph, NodeId, Op, Shape, SliceAxis, UnaryOp};
use kiln_passes::error::{PassError, RuleFailure};
use kiln_passes::pipeline::{Func, PassStats};
use kiln_passes::simplify::{Ctx, RULES, Rewrite, SimplifyOptions, rule, simplify};
use std::collections::{HashMap, HashSet};

fn input(g: &mut Graph, name: &str, dtype: DType, dims: &[usize]) -> NodeId {
    g.add(
        Op::Input {
            name: name.into(),
            dtype,
            shape: Shape::known(dims),
        },
        &[],
    )
    .unwrap()
}

fn konst(g: &mut Graph, a: Array) -> NodeId {
    g.add(Op::Constant(a), &[]).unwrap()
}

fn f32c(g: &mut Graph, dims: &[usize], v: &[f32]) -> NodeId {
    konst(g, Array::from_f32(dims, v.to_vec()).unwrap())
}

fn bin(g: &mut Graph, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
    g.add(Op::Binary(b), &[x, y]).unwrap()
}

fn un(g: &mut Graph, u: UnaryOp, x: NodeId) -> NodeId {
    g.add(Op::Unary(u), &[x]).unwrap()
}

/// Evaluates the outputs with the given inputs.
fn eval(f: &Func, inputs: &[(&str, Array)]) -> Vec<Array> {
    let inputs: HashMap<String, Array> = inputs
        .iter()
        .map(|(n, a)| (n.to_string(), a.clone()))
        .collect();
    kiln_interp::eval(&f.graph, &f.outputs, &inputs, &HashMap::new()).unwrap()
}

/// Simplifies a copy of `f`, checks every output evaluates to the same bits as before, and
/// returns the simplified function with its stats.
fn simplify_checked(f: &Func, inputs: &[(&str, Array)]) -> (Func, PassStats) {
    let before = eval(f, inputs);
    let mut g = f.clone();
    let stats = simplify(&mut g, &SimplifyOptions::default()).unwrap();
    kiln_ir::verify(&g.graph).unwrap();
    let after = eval(&g, inputs);
    assert_eq!(
        before, after,
        "simplify changed the values of\n{f}into\n{g}"
    );
    (g, stats)
}

fn ops_of(f: &Func) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = f
        .graph
        .node_ids()
        .iter()
        .map(|&n| f.graph.node(n).op.name())
        .collect();
    v.sort_unstable();
    v
}

fn x3() -> Array {
    Array::from_f32(&[3], vec![f32::NAN, -0.0, 2.5]).unwrap()
}

#[test]
fn rule_table_names_are_unique_and_documented() {
    let names: HashSet<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), RULES.len());
    for r in RULES {
        assert!(
            !r.rewrite.is_empty() && !r.when.is_empty() && !r.cost.is_empty(),
            "{}",
            r.name
        );
    }
    assert_eq!(RULES[0].name, "fold_constants");
    assert!(rule("mul_by_one").is_some());
    assert!(rule("mul_by_zero").is_none());
}

#[test]
fn mul_by_one_fires_on_either_side() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let one = f32c(&mut g, &[], &[1.0]);
    let a = bin(&mut g, BinaryOp::Mul, x, one);
    let b = bin(&mut g, BinaryOp::Mul, one, x);
    let f = Func::new(g, vec![a, b]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", x3())]);
    assert_eq!(s.outputs, vec![x, x]);
    assert_eq!(stats.fired("mul_by_one"), 2);
    assert_eq!(ops_of(&s), vec!["input"]);
}

#[test]
fn mul_by_one_needs_exact_ones_and_the_same_shape() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let almost = f32c(&mut g, &[3], &[1.0, 1.0, 1.0000001]);
    let a = bin(&mut g, BinaryOp::Mul, x, almost);
    let wide = f32c(&mut g, &[2, 3], &[1.0; 6]);
    let b = bin(&mut g, BinaryOp::Mul, x, wide);
    let f = Func::new(g, vec![a, b]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", x3())]);
    assert_eq!(stats.fired("mul_by_one"), 0);
    assert_eq!(s.outputs, vec![a, b]);
}

#[test]
fn mul_by_zero_is_not_folded_because_nan_times_zero_is_nan() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let zero = f32c(&mut g, &[], &[0.0]);
    let m = bin(&mut g, BinaryOp::Mul, x, zero);
    let f = Func::new(g, vec![m]).unwrap();
    let xs = Array::from_f32(&[3], vec![f32::NAN, f32::INFINITY, 3.0]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs.clone())]);
    assert!(!stats.changed());
    assert_eq!(s.outputs, vec![m]);
    let out = eval(&s, &[("x", xs)]);
    let v = out[0].as_f32().unwrap();
    assert!(v[0].is_nan() && v[1].is_nan());
    assert_eq!(v[2].to_bits(), 0f32.to_bits());
}

#[test]
fn add_zero_fires_only_for_negative_zero_on_floats() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let nz = f32c(&mut g, &[], &[-0.0]);
    let pz = f32c(&mut g, &[], &[0.0]);
    let a = bin(&mut g, BinaryOp::Add, nz, x);
    let b = bin(&mut g, BinaryOp::Add, x, pz);
    let f = Func::new(g, vec![a, b]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", x3())]);
    assert_eq!(stats.fired("add_zero"), 1);
    assert_eq!(s.outputs, vec![x, b]);
    // Why +0.0 is not an identity: -0.0 + 0.0 is +0.0.
    let out = eval(&s, &[("x", x3())]);
    assert_eq!(out[1].as_f32().unwrap()[1].to_bits(), 0f32.to_bits());
    assert_eq!(out[0].as_f32().unwrap()[1].to_bits(), (-0f32).to_bits());
}

#[test]
fn sub_zero_fires_only_for_positive_zero_on_the_right() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F64, &[2]);
    let pz = konst(&mut g, Array::from_f64(&[], vec![0.0]).unwrap());
    let nz = konst(&mut g, Array::from_f64(&[], vec![-0.0]).unwrap());
    let a = bin(&mut g, BinaryOp::Sub, x, pz);
    let b = bin(&mut g, BinaryOp::Sub, x, nz);
    let c = bin(&mut g, BinaryOp::Sub, pz, x);
    let f = Func::new(g, vec![a, b, c]).unwrap();
    let xs = Array::from_f64(&[2], vec![-0.0, 7.0]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs)]);
    assert_eq!(stats.fired("sub_zero"), 1);
    assert_eq!(s.outputs, vec![x, b, c]);
}

#[test]
fn integer_identities() {
    let mut g = Graph::new();
    let i = input(&mut g, "i", DType::I64, &[4]);
    let zero = konst(&mut g, Array::from_i64(&[], vec![0]).unwrap());
    let one = konst(&mut g, Array::from_i64(&[], vec![1]).unwrap());
    let a = bin(&mut g, BinaryOp::Add, i, zero);
    let b = bin(&mut g, BinaryOp::Div, a, one);
    let c = bin(&mut g, BinaryOp::Mul, one, b);
    let mx = bin(&mut g, BinaryOp::Max, c, c);
    let f = Func::new(g, vec![mx]).unwrap();
    let is = Array::from_i64(&[4], vec![-7, 0, 5, i64::MIN]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("i", is)]);
    assert_eq!(s.outputs, vec![i]);
    for r in ["add_zero", "div_by_one", "mul_by_one", "idempotent_self"] {
        assert_eq!(stats.fired(r), 1, "{r}");
    }
    assert_eq!(ops_of(&s), vec!["input"]);
}

#[test]
fn float_max_of_itself_is_left_alone() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let m = bin(&mut g, BinaryOp::Max, x, x);
    let b = input(&mut g, "b", DType::Bool, &[3]);
    let a = bin(&mut g, BinaryOp::And, b, b);
    let f = Func::new(g, vec![m, a]).unwrap();
    let bs = Array::from_bool(&[3], vec![true, false, true]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", x3()), ("b", bs)]);
    assert_eq!(s.outputs, vec![m, b]);
    assert_eq!(stats.fired("idempotent_self"), 1);
}

#[test]
fn division_by_a_power_of_two_becomes_an_exact_multiplication() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let four = f32c(&mut g, &[2, 1], &[4.0, -0.125]);
    let d = bin(&mut g, BinaryOp::Div, x, four);
    let f = Func::new(g, vec![d]).unwrap();
    let xs = Array::from_f32(&[3], vec![1.0e-38, 3.0e38, -7.3]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs)]);
    assert_eq!(stats.fired("div_pow2_to_mul"), 1);
    let out = s.outputs[0];
    assert_eq!(s.graph.node(out).op, Op::Binary(BinaryOp::Mul));
    let c = s.graph.operands(out)[1];
    assert_eq!(
        s.graph.node(c).op,
        Op::Constant(Array::from_f32(&[2, 1], vec![0.25, -8.0]).unwrap())
    );
    assert_eq!(s.graph.len(), 3);
}

#[test]
fn division_by_other_constants_stays() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[2]);
    let three = f32c(&mut g, &[], &[3.0]);
    let a = bin(&mut g, BinaryOp::Div, x, three);
    // 2^-149 is a power of two, but its reciprocal 2^149 overflows f32.
    let tiny = f32c(&mut g, &[], &[f32::from_bits(1)]);
    let b = bin(&mut g, BinaryOp::Div, x, tiny);
    // A power of two used twice: rewriting would add a constant.
    let two = f32c(&mut g, &[], &[2.0]);
    let c = bin(&mut g, BinaryOp::Div, x, two);
    let e = bin(&mut g, BinaryOp::Add, x, two);
    // Integer division floors; never rewritten.
    let i = input(&mut g, "i", DType::I32, &[2]);
    let itwo = konst(&mut g, Array::from_i32(&[], vec![2]).unwrap());
    let d = bin(&mut g, BinaryOp::Div, i, itwo);
    let f = Func::new(g, vec![a, b, c, e, d]).unwrap();
    let xs = Array::from_f32(&[2], vec![1.0, -3.5]).unwrap();
    let is = Array::from_i32(&[2], vec![-3, 5]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs), ("i", is)]);
    assert!(!stats.changed(), "{s}");
}

#[test]
fn double_negation_and_double_not() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::I32, &[3]);
    let n1 = un(&mut g, UnaryOp::Neg, x);
    let n2 = un(&mut g, UnaryOp::Neg, n1);
    let b1 = un(&mut g, UnaryOp::Not, x);
    let b2 = un(&mut g, UnaryOp::Not, b1);
    let s1 = g.add(Op::StopGradient, &[x]).unwrap();
    let s2 = g.add(Op::StopGradient, &[s1]).unwrap();
    let f = Func::new(g, vec![n2, b2, n1, s2]).unwrap();
    let xs = Array::from_i32(&[3], vec![i32::MIN, -1, 9]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs)]);
    assert_eq!(s.outputs, vec![x, x, n1, s1]);
    assert_eq!(stats.fired("neg_neg"), 1);
    assert_eq!(stats.fired("not_not"), 1);
    assert_eq!(stats.fired("stop_gradient_twice"), 1);
}

#[test]
fn permute_chains_compose() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[2, 3, 4]);
    let p1 = g.add(Op::Permute(vec![1, 0, 2]), &[x]).unwrap();
    let p2 = g.add(Op::Permute(vec![2, 0, 1]), &[p1]).unwrap();
    let q1 = g.add(Op::Permute(vec![2, 0, 1]), &[x]).unwrap();
    let q2 = g.add(Op::Permute(vec![1, 2, 0]), &[q1]).unwrap();
    let f = Func::new(g, vec![p2, q2]).unwrap();
    let xs = Array::from_f32(&[2, 3, 4], (0..24).map(|v| v as f32).collect()).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs)]);
    assert_eq!(stats.fired("permute_permute"), 2);
    // p2 = x axes [p1[2], p1[0], p1[1]] = [2, 1, 0].
    let out = s.outputs[0];
    assert_eq!(s.graph.node(out).op, Op::Permute(vec![2, 1, 0]));
    assert_eq!(s.graph.operands(out), vec![x]);
    assert_eq!(s.outputs[1], x);
    assert_eq!(s.graph.len(), 2);
}

#[test]
fn permute_chain_keeps_a_shared_inner_permute() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[2, 3]);
    let t = g.add(Op::Permute(vec![1, 0]), &[x]).unwrap();
    let tt = g.add(Op::Permute(vec![1, 0]), &[t]).unwrap();
    let e = un(&mut g, UnaryOp::Exp, t);
    let f = Func::new(g, vec![tt, e]).unwrap();
    let xs = Array::from_f32(&[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let (s, _) = simplify_checked(&f, &[("x", xs)]);
    assert_eq!(s.outputs, vec![x, e]);
    assert!(s.graph.contains(t));
}

#[test]
fn reshape_and_expand_chains_collapse() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[2, 3]);
    let r1 = g.add(Op::Reshape(Shape::known(&[6])), &[x]).unwrap();
    let r2 = g.add(Op::Reshape(Shape::known(&[3, 2])), &[r1]).unwrap();
    let r3 = g.add(Op::Reshape(Shape::known(&[2, 3])), &[r2]).unwrap();
    let y = input(&mut g, "y", DType::F32, &[3]);
    let e1 = g.add(Op::Expand(Shape::known(&[1, 3])), &[y]).unwrap();
    let e2 = g.add(Op::Expand(Shape::known(&[4, 3])), &[e1]).unwrap();
    let f = Func::new(g, vec![r2, r3, e2]).unwrap();
    let xs = Array::from_f32(&[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let ys = Array::from_f32(&[3], vec![7.0, 8.0, 9.0]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs), ("y", ys)]);
    assert_eq!(s.outputs[1], x);
    assert_eq!(s.graph.operands(s.outputs[0]), vec![x]);
    assert_eq!(
        s.graph.node(s.outputs[2]).op,
        Op::Expand(Shape::known(&[4, 3]))
    );
    assert_eq!(s.graph.operands(s.outputs[2]), vec![y]);
    assert_eq!(stats.fired("expand_expand"), 1);
    assert_eq!(s.graph.len(), 4);
}

#[test]
fn no_op_movement_and_casts_vanish() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[2, 3]);
    let whole = SliceAxis {
        start: 0,
        stop: u64::MAX,
        step: 1,
    };
    let explicit = SliceAxis {
        start: 0,
        stop: 3,
        step: 1,
    };
    let sl = g.add(Op::Slice(vec![whole, explicit]), &[x]).unwrap();
    let part = g
        .add(
            Op::Slice(vec![
                whole,
                SliceAxis {
                    start: 0,
                    stop: 2,
                    step: 1,
                },
            ]),
            &[x],
        )
        .unwrap();
    let pad = g
        .add(
            Op::Pad {
                pads: vec![(0, 0), (0, 0)],
                value: 1.0.into(),
            },
            &[x],
        )
        .unwrap();
    let cast = g.add(Op::Cast(DType::F32), &[x]).unwrap();
    let cast64 = g.add(Op::Cast(DType::F64), &[x]).unwrap();
    let flip = g.add(Op::Flip { axes: vec![1] }, &[x]).unwrap();
    let flip2 = g.add(Op::Flip { axes: vec![1] }, &[flip]).unwrap();
    let flip_other = g.add(Op::Flip { axes: vec![0] }, &[flip]).unwrap();
    let perm = g.add(Op::Permute(vec![0, 1]), &[x]).unwrap();
    let resh = g.add(Op::Reshape(Shape::known(&[2, 3])), &[x]).unwrap();
    let exp = g.add(Op::Expand(Shape::known(&[2, 3])), &[x]).unwrap();
    let f = Func::new(
        g,
        vec![
            sl, part, pad, cast, cast64, flip2, flip_other, perm, resh, exp,
        ],
    )
    .unwrap();
    let xs = Array::from_f32(&[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let (s, stats) = simplify_checked(&f, &[("x", xs)]);
    assert_eq!(
        s.outputs,
        vec![x, part, x, x, cast64, x, flip_other, x, x, x]
    );
    for r in [
        "slice_noop",
        "pad_noop",
        "cast_noop",
        "flip_flip",
        "permute_noop",
        "reshape_noop",
        "expand_noop",
    ] {
        assert!(stats.fired(r) >= 1, "{r} did not fire");
    }
}

#[test]
fn constants_fold_through_the_interpreter() {
    let mut g = Graph::new();
    let a = f32c(&mut g, &[2], &[1.0, 2.0]);
    let b = f32c(&mut g, &[2], &[3.0, 7.0]);
    let s = bin(&mut g, BinaryOp::Add, a, b);
    let e = un(&mut g, UnaryOp::Sqrt, s);
    let r = g
        .add(
            Op::Reduce {
                op: kiln_ir::ReduceOp::Sum,
                axes: vec![0],
                keepdim: false,
            },
            &[e],
        )
        .unwrap();
    let f = Func::new(g, vec![r]).unwrap();
    let (out, stats) = simplify_checked(&f, &[]);
    assert_eq!(stats.fired("fold_constants"), 3);
    assert_eq!(out.graph.len(), 1);
    assert_eq!(
        out.graph.node(out.outputs[0]).op,
        Op::Constant(Array::from_f32(&[], vec![5.0]).unwrap())
    );
}

#[test]
fn folding_respects_the_size_limit_and_never_folds_random_bits() {
    let mut g = Graph::new();
    let c = f32c(&mut g, &[], &[2.5]);
    let big = g.add(Op::Expand(Shape::known(&[100, 100])), &[c]).unwrap();
    let small = g.add(Op::Expand(Shape::known(&[2, 2])), &[c]).unwrap();
    let key = konst(&mut g, Array::from_u32(&[2], vec![0, 42]).unwrap());
    let bits = g
        .add(
            Op::RandomBits {
                shape: Shape::known(&[4]),
            },
            &[key],
        )
        .unwrap();
    // A large constant that dies when folded may be folded: the graph does not grow.
    let large = f32c(&mut g, &[5000], &vec![1.0; 5000]);
    let neg = un(&mut g, UnaryOp::Neg, large);
    let f = Func::new(g, vec![big, small, bits, neg]).unwrap();
    let (s, stats) = simplify_checked(&f, &[]);
    assert_eq!(s.outputs[0], big);
    assert_eq!(s.outputs[1], small);
    assert_eq!(s.outputs[2], bits);
    assert_eq!(stats.fired("fold_constants"), 1);
    let Op::Constant(v) = &s.graph.node(s.outputs[3]).op else {
        panic!("neg not folded")
    };
    assert_eq!(v.as_f32().unwrap()[4999], -1.0);
    assert!(!s.graph.contains(large));
}

#[test]
fn folding_skips_ops_the_interpreter_rejects() {
    let mut g = Graph::new();
    let a = konst(&mut g, Array::from_i32(&[2], vec![7, 8]).unwrap());
    let z = konst(&mut g, Array::from_i32(&[2], vec![0, 2]).unwrap());
    let d = bin(&mut g, BinaryOp::Div, a, z);
    let mut f = Func::new(g, vec![d]).unwrap();
    let stats = simplify(&mut f, &SimplifyOptions::default()).unwrap();
    assert!(!stats.changed());
    assert_eq!(f.outputs, vec![d]);
}

#[test]
fn scalar_constant_broadcast_is_dropped_where_the_binary_broadcasts() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[2, 3]);
    let c = f32c(&mut g, &[], &[0.5]);
    let e = g.add(Op::Expand(Shape::known(&[2, 3])), &[c]).unwrap();
    let a = bin(&mut g, BinaryOp::Sub, e, x);
    // y is smaller than the broadcast: dropping the expand would change the result shape.
    let y = input(&mut g, "y", DType::F32, &[3]);
    let b = bin(&mut g, BinaryOp::Mul, y, e);
    let f = Func::new(g, vec![a, b]).unwrap();
    let opts = SimplifyOptions { fold_limit: 0 };
    let mut s = f.clone();
    let stats = simplify(&mut s, &opts).unwrap();
    assert_eq!(stats.fired("binary_scalar_const_unexpand"), 1);
    assert_eq!(s.graph.operands(s.outputs[0]), vec![c, x]);
    assert_eq!(s.outputs[1], b);
    let feeds = [
        (
            "x",
            Array::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        ),
        ("y", Array::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap()),
    ];
    assert_eq!(eval(&f, &feeds), eval(&s, &feeds));
}

#[test]
fn select_rules() {
    let mut g = Graph::new();
    let a = input(&mut g, "a", DType::F32, &[3]);
    let b = input(&mut g, "b", DType::F32, &[3]);
    let c = input(&mut g, "c", DType::Bool, &[3]);
    let t = konst(&mut g, Array::from_bool(&[], vec![true]).unwrap());
    let mixed = konst(
        &mut g,
        Array::from_bool(&[3], vec![true, false, true]).unwrap(),
    );
    let s1 = g.add(Op::Select, &[t, a, b]).unwrap();
    let s2 = g.add(Op::Select, &[mixed, a, b]).unwrap();
    let s3 = g.add(Op::Select, &[c, b, b]).unwrap();
    let f = Func::new(g, vec![s1, s2, s3]).unwrap();
    let feeds = [
        ("a", x3()),
        ("b", Array::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap()),
        (
            "c",
            Array::from_bool(&[3], vec![false, true, false]).unwrap(),
        ),
    ];
    let (s, stats) = simplify_checked(&f, &feeds);
    assert_eq!(s.outputs, vec![a, s2, b]);
    assert_eq!(stats.fired("select_const_cond"), 1);
    assert_eq!(stats.fired("select_same"), 1);
}

#[test]
fn rules_can_be_run_by_hand() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let one = f32c(&mut g, &[], &[1.0]);
    let m = bin(&mut g, BinaryOp::Mul, x, one);
    let f = Func::new(g, vec![m]).unwrap();
    let opts = SimplifyOptions::default();
    let cx = Ctx::new(&f, &opts);
    let r = rule("mul_by_one").unwrap();
    assert_eq!((r.apply)(&cx, m), Some(Rewrite::Existing(x)));
    assert_eq!((r.apply)(&cx, x), None);
    assert_eq!((rule("neg_neg").unwrap().apply)(&cx, m), None);
}

#[test]
fn simplify_rejects_dangling_outputs_and_names_rules_in_errors() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, &[3]);
    let mut f = Func {
        graph: g,
        outputs: vec![x, NodeId(9)],
    };
    let err = simplify(&mut f, &SimplifyOptions::default()).unwrap_err();
    assert_eq!(
        err,
        PassError::UnknownOutput {
            pass: "simplify",
            output: NodeId(9)
        }
    );
    let e = PassError::Rule {
        rule: "neg_neg",
        node: NodeId(4),
        source: Box::new(RuleFailure::Grew {
            added: 2,
            removed: 1,
        }),
    };
    assert_eq!(
        e.to_string(),
        "rewriting rule neg_neg on node n4: rewrite adds 2 node(s) but removes only 1"
    );
}

#[test]
fn slice_of_concat_reads_the_one_operand_it_takes_from() {
    let mut g = Graph::new();
    let a = input(&mut g, "a", DType::F32, &[2, 3]);
    let b = input(&mut g, "b", DType::F32, &[2, 4]);
    let c = input(&mut g, "c", DType::F32, &[2, 2]);
    let cat = g.add(Op::Concat { axis: 1 }, &[a, b, c]).unwrap();
    let sl = |g: &mut Graph, start: u64, stop: u64, step: u64| {
        let axes = vec![
            SliceAxis {
                start: 0,
                stop: u64::MAX,
                step: 1,
            },
            SliceAxis { start, stop, step },
        ];
        g.add(Op::Slice(axes), &[cat]).unwrap()
    };
    // Inside b (3..7), strided inside b (4, 6), the whole of c, and one across a and b.
    let in_b = sl(&mut g, 3, 7, 1);
    let strided = sl(&mut g, 4, 7, 2);
    let in_c = sl(&mut g, 7, 9, 1);
    let across = sl(&mut g, 2, 5, 1);
    let f = Func::new(g, vec![in_b, strided, in_c, across]).unwrap();
    let vals = |n: usize, k: f32| {
        Array::from_f32(&[2, n], (0..2 * n).map(|i| i as f32 + k).collect()).unwrap()
    };
    let (s, stats) = simplify_checked(
        &f,
        &[
            ("a", vals(3, 0.0)),
            ("b", vals(4, 100.0)),
            ("c", vals(2, 200.0)),
        ],
    );
    assert_eq!(stats.fired("slice_of_concat"), 3);
    assert_eq!(s.outputs[0], b, "a slice of all of b is b");
    assert_eq!(s.outputs[2], c, "a slice of all of c is c");
    let across_op = &s.graph.node(s.outputs[3]).op;
    assert!(matches!(across_op, Op::Slice(_)), "{across_op:?}");
    assert_eq!(s.graph.operands(s.outputs[3]), vec![cat]);
    assert_eq!(s.graph.operands(s.outputs[1]), vec![b]);
}
