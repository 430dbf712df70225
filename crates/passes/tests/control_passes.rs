//! The graph passes through control flow: simplify/CSE/DCE inside bodies, static control
//! flow, pruning of unused results, carries and params, and loop-invariant code motion.
//! Every rewrite is checked against the reference interpreter, bit for bit, before and
//! after optimisation, and each test asserts the structure changed as intended.

use kiln_interp::eval;
use kiln_ir::{Array, Graph, NodeId, Op, Region, parse};
use kiln_passes::autodiff;
use kiln_passes::control::{ControlOptions, control_with};
use kiln_passes::pipeline::{Dump, Func, PipelineOptions, PipelineReport, optimize};
use kiln_passes::{cse, dce};
use std::collections::HashMap;

fn func(text: &str, outputs: &[u32]) -> Func {
    let g = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Func::new(g, outputs.iter().map(|&i| NodeId(i)).collect()).unwrap()
}

/// Deterministic values in [-2, 2) for an f32 tensor of `shape`.
fn data(shape: &[usize], seed: u32) -> Array {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let v = (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Array::from_f32(shape, v).unwrap()
}

fn feeds(list: &[(&str, Array)]) -> HashMap<String, Array> {
    list.iter()
        .map(|(n, a)| (n.to_string(), a.clone()))
        .collect()
}

fn run(f: &Func, inputs: &HashMap<String, Array>) -> Vec<Array> {
    eval(&f.graph, &f.outputs, inputs, &HashMap::new()).unwrap_or_else(|e| panic!("{e}\n{f}"))
}

/// The control pass keeping values bit for bit (no accumulator sinking).
const EXACT: ControlOptions = ControlOptions { reassociate: false };

fn quiet() -> PipelineOptions {
    PipelineOptions {
        verify: true,
        dump: Dump::Off,
        control: EXACT,
        ..PipelineOptions::default()
    }
}

/// Optimises a copy of `f` and asserts every output is bitwise equal for every feed set.
fn optimized(f: &Func, runs: &[HashMap<String, Array>]) -> (Func, PipelineReport) {
    let mut opt = f.clone();
    let report = optimize(&mut opt, &quiet()).unwrap_or_else(|e| panic!("{e}\n{f}"));
    for inputs in runs {
        let (a, b) = (run(f, inputs), run(&opt, inputs));
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                x.bit_eq(y),
                "output {i} differs: {x:?} vs {y:?}\nbefore:\n{f}\nafter:\n{opt}"
            );
        }
    }
    (opt, report)
}

/// Live nodes of `g` with op name `name`.
fn count(g: &Graph, name: &str) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&n| g.node(n).op.name() == name)
        .count()
}

/// The region run by the only node of `g` named `name` (its `k`-th region).
fn region_of<'a>(g: &'a Graph, name: &str, k: usize) -> &'a Region {
    let ids: Vec<NodeId> = g
        .node_ids()
        .into_iter()
        .filter(|&n| g.node(n).op.name() == name)
        .collect();
    assert_eq!(ids.len(), 1, "expected one {name} in\n{g}");
    g.region(g.node(ids[0]).op.regions()[k])
}

fn only(g: &Graph, name: &str) -> NodeId {
    let ids: Vec<NodeId> = g
        .node_ids()
        .into_iter()
        .filter(|&n| g.node(n).op.name() == name)
        .collect();
    assert_eq!(ids.len(), 1, "expected one {name} in\n{g}");
    ids[0]
}

// ------------------------------------------------------------------------------------------
// Passes inside bodies
// ------------------------------------------------------------------------------------------

/// Adds 4 to 13 random ops over the values in `pool` (shapes `[3]`, `[2, 3]`, `[3, 2]`) to
/// `b`, matmuls reading `w: [3, 3]`, and pushes each new value.
fn random_ops(b: &mut Graph, pool: &mut Vec<NodeId>, w: NodeId, rng: &mut Rng) {
    use kiln_ir::{ReduceOp, Shape, UnaryOp};
    let s23 = Shape::known(&[2, 3]);
    let dims = |g: &Graph, n: NodeId| g.node(n).shape.as_known().unwrap();
    for _ in 0..4 + rng.below(10) {
        let a = pool[rng.below(pool.len())];
        let c = pool[rng.below(pool.len())];
        let (da, dc) = (dims(b, a), dims(b, c));
        let unary = [UnaryOp::Tanh, UnaryOp::Neg, UnaryOp::Sigmoid, UnaryOp::Abs];
        let added = match rng.below(9) {
            0 | 1 => b.add(Op::Unary(unary[rng.below(4)]), &[a]),
            2 | 3 => {
                let op = [kiln_ir::BinaryOp::Add, kiln_ir::BinaryOp::Mul][rng.below(2)];
                b.add(Op::Binary(op), &[a, c])
            }
            4 if da == [2, 3] => b.add(Op::MatMul, &[a, w]),
            5 if da == [3] => b.add(Op::Expand(s23.clone()), &[a]),
            6 if da.len() == 2 => b.add(Op::Permute(vec![1, 0]), &[a]),
            7 if da.len() == 2 => {
                let to = Shape::known(&[da[1], da[0]]);
                b.add(Op::Reshape(to), &[a])
            }
            8 if da.len() == 2 && dc == da => b.add(
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axes: vec![0],
                    keepdim: false,
                },
                &[a],
            ),
            _ => b.add(Op::Flip { axes: vec![0] }, &[a]),
        };
        if let Ok(n) = added {
            pool.push(n);
        }
    }
}

/// A scan whose body multiplies by one, negates twice, computes a value twice and a dead
/// node, and runs a cond whose branch multiplies by one.
const MESSY: &str = r#"
n0 = input "xs" : f32[T, 3]
n1 = input "c0" : f32[3]
n2 = input "p" : bool[]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=false : bool[]
n4 = get n3 index=0 : f32[3]
n5 = get n3 index=1 : f32[T, 3]
r0 (n0, n1, n2) -> (n9, n10) {
  n0 = input "c" : f32[3]
  n1 = input "x" : f32[3]
  n2 = input "p" : bool[]
  n3 = const f32[] [1.0] : f32[]
  n4 = mul n1, n3 : f32[3]
  n5 = neg n4 : f32[3]
  n6 = neg n5 : f32[3]
  n7 = add n0, n6 : f32[3]
  n8 = add n0, n6 : f32[3]
  n9 = mul n7, n8 : f32[3]
  n11 = exp n9 : f32[3]
  n12 = cond n2, n9 then=r0 else=r1 : bool[]
  n10 = get n12 index=0 : f32[3]
  r0 (n0) -> (n2) {
    n0 = input "a" : f32[3]
    n1 = const f32[] [1.0] : f32[]
    n2 = mul n0, n1 : f32[3]
  }
  r1 (n0) -> (n1) {
    n0 = input "a" : f32[3]
    n1 = tanh n0 : f32[3]
  }
}
"#;

fn messy_feeds(t: usize, p: bool) -> HashMap<String, Array> {
    feeds(&[
        ("xs", data(&[t, 3], 1)),
        ("c0", data(&[3], 2)),
        ("p", Array::from_bool(&[], vec![p]).unwrap()),
    ])
}

#[test]
fn simplify_cse_and_dce_run_inside_nested_bodies() {
    let f = func(MESSY, &[4, 5]);
    let (opt, report) = optimized(&f, &[messy_feeds(4, true), messy_feeds(3, false)]);
    let body = region_of(&opt.graph, "scan", 0);
    // x * 1 and neg(neg(.)) are gone, the two adds are one, exp is dead.
    assert_eq!(count(&body.graph, "neg"), 0, "{opt}");
    assert_eq!(count(&body.graph, "add"), 1, "{opt}");
    assert_eq!(count(&body.graph, "exp"), 0, "{opt}");
    assert_eq!(count(&body.graph, "mul"), 1, "{opt}");
    // The cond's then-branch returns its argument, so x * 1 is gone there too.
    let then = region_of(&body.graph, "cond", 0);
    assert_eq!(count(&then.graph, "mul"), 0, "{opt}");
    assert_eq!(report.stats_of("simplify").fired("mul_by_one"), 2);
    assert!(report.stats_of("cse").rewritten >= 1);
    // Region params stay in order.
    assert_eq!(body.params.len(), 3);
}

#[test]
fn dce_keeps_a_control_node_while_one_of_its_gets_is_live() {
    let mut f = func(MESSY, &[5]);
    let stats = dce::dce(&mut f).unwrap();
    assert!(f.graph.contains(NodeId(3)) && f.graph.contains(NodeId(5)));
    assert!(!f.graph.contains(NodeId(4)));
    // The body's dead exp went too.
    assert_eq!(count(&f.graph.region(kiln_ir::RegionId(0)).graph, "exp"), 0);
    assert!(stats.removed >= 2);
    let mut f = func(MESSY, &[1]);
    dce::dce(&mut f).unwrap();
    assert_eq!(count(&f.graph, "scan") + count(&f.graph, "get"), 0);
    // The regions of the removed scan are released.
    assert!(f.graph.regions().iter().all(|r| r.graph.is_empty()));
}

/// Two scans over equal bodies: in one region (`r0` twice) and in two regions.
const TWINS: &str = r#"
n0 = input "xs" : f32[4, 2]
n1 = input "c0" : f32[2]
n2 = scan n1, n0 body=r0 length=[4] carries=1 xs=1 reverse=false : bool[]
n3 = get n2 index=0 : f32[2]
n4 = scan n1, n0 body=RB length=[4] carries=1 xs=1 reverse=false : bool[]
n5 = get n4 index=0 : f32[2]
n6 = add n3, n5 : f32[2]
r0 (n0, n1) -> (n2) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = mul n0, n1 : f32[2]
}
r1 (n0, n1) -> (n2) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = mul n0, n1 : f32[2]
}
"#;

#[test]
fn cse_merges_control_nodes_only_when_they_run_the_same_regions() {
    let inputs = feeds(&[("xs", data(&[4, 2], 3)), ("c0", data(&[2], 4))]);
    let same = func(&TWINS.replace("RB", "r0"), &[6]);
    let mut merged = same.clone();
    cse::cse(&mut merged).unwrap();
    assert_eq!(count(&merged.graph, "scan"), 1);
    assert!(run(&same, &inputs)[0].bit_eq(&run(&merged, &inputs)[0]));
    let apart = func(&TWINS.replace("RB", "r1"), &[6]);
    let mut kept = apart.clone();
    cse::cse(&mut kept).unwrap();
    assert_eq!(count(&kept.graph, "scan"), 2);
}

// ------------------------------------------------------------------------------------------
// Static control flow
// ------------------------------------------------------------------------------------------

const COND: &str = r#"
n0 = input "x" : f32[3]
n1 = const bool[] [PRED] : bool[]
n2 = input "y" : f32[3]
n3 = cond n1, n0, n2 then=r0 else=r1 : bool[]
n4 = get n3 index=0 : f32[3]
n5 = get n3 index=1 : f32[3]
r0 (n0, n1) -> (n2, n3) {
  n0 = input "a" : f32[3]
  n1 = input "b" : f32[3]
  n2 = mul n0, n1 : f32[3]
  n3 = exp n0 : f32[3]
}
r1 (n0, n1) -> (n2, n1) {
  n0 = input "a" : f32[3]
  n1 = input "b" : f32[3]
  n2 = sub n0, n1 : f32[3]
}
"#;

#[test]
fn a_cond_on_a_constant_becomes_the_chosen_branch() {
    let inputs = feeds(&[("x", data(&[3], 5)), ("y", data(&[3], 6))]);
    for (pred, op) in [("true", "mul"), ("false", "sub")] {
        let f = func(&COND.replace("PRED", pred), &[4, 5]);
        let (opt, report) = optimized(&f, std::slice::from_ref(&inputs));
        assert_eq!(count(&opt.graph, "cond"), 0, "{opt}");
        assert_eq!(count(&opt.graph, "get"), 0, "{opt}");
        assert_eq!(count(&opt.graph, op), 1, "{opt}");
        assert_eq!(report.stats_of("control").fired("cond_static"), 1);
    }
    // The else branch returns its argument `b`: that output is the input y itself.
    let f = func(&COND.replace("PRED", "false"), &[4, 5]);
    let (opt, _) = optimized(&f, std::slice::from_ref(&inputs));
    assert_eq!(opt.outputs[1], NodeId(2));
}

const SCAN: &str = r#"
n0 = input "xs" : f32[LEN, 2]
n1 = input "c0" : f32[2]
n2 = input "k" : f32[]
n3 = scan n1, n0, n2 body=r0 length=[LEN] carries=1 xs=1 reverse=REV : bool[]
n4 = get n3 index=0 : f32[2]
n5 = get n3 index=1 : f32[LEN, 2]
n6 = get n3 index=2 : f32[LEN, 2, 2]
r0 (n0, n1, n2) -> (n3, n4, n5) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = input "k" : f32[]
  n3 = add n0, n1 : f32[2]
  n4 = mul n3, n2 : f32[2]
  n5 = expand n4 : f32[2, 2]
}
"#;

fn scan_text(len: &str, reverse: bool) -> String {
    SCAN.replace("LEN", len)
        .replace("REV", if reverse { "true" } else { "false" })
}

fn scan_feeds(t: usize) -> HashMap<String, Array> {
    feeds(&[
        ("xs", data(&[t, 2], 7)),
        ("c0", data(&[2], 8)),
        ("k", data(&[], 9)),
    ])
}

#[test]
fn a_scan_of_length_one_is_its_body_inlined_once() {
    for reverse in [false, true] {
        let f = func(&scan_text("1", reverse), &[4, 5, 6]);
        let (opt, report) = optimized(&f, &[scan_feeds(1)]);
        assert_eq!(count(&opt.graph, "scan"), 0, "{opt}");
        assert_eq!(count(&opt.graph, "add"), 1, "{opt}");
        assert_eq!(report.stats_of("control").fired("scan_length_1"), 1);
        assert_eq!(
            opt.graph.node(opt.outputs[2]).shape.to_string(),
            "[1, 2, 2]"
        );
    }
}

#[test]
fn a_scan_of_length_zero_is_its_initial_carries_and_empty_ys() {
    let f = func(&scan_text("0", false), &[4, 5, 6]);
    let (opt, report) = optimized(&f, &[scan_feeds(0)]);
    assert_eq!(count(&opt.graph, "scan"), 0, "{opt}");
    assert_eq!(opt.outputs[0], NodeId(1));
    let ys = run(&opt, &scan_feeds(0));
    assert_eq!(ys[1].shape(), &[0, 2]);
    assert_eq!(ys[2].shape(), &[0, 2, 2]);
    assert_eq!(report.stats_of("control").fired("scan_length_0"), 1);
}

#[test]
fn a_symbolic_length_scan_stays_a_scan_and_agrees_for_every_length() {
    let f = func(&scan_text("T", true), &[4, 5, 6]);
    let (opt, _) = optimized(&f, &[scan_feeds(0), scan_feeds(1), scan_feeds(5)]);
    assert_eq!(count(&opt.graph, "scan"), 1, "{opt}");
}

const WHILE_FALSE: &str = r#"
n0 = input "a" : i32[]
n1 = input "b" : f32[2]
n2 = while n0, n1 cond=r0 body=r1 carries=2 : bool[]
n3 = get n2 index=0 : i32[]
n4 = get n2 index=1 : f32[2]
r0 (n0, n1) -> (n2) {
  n0 = input "a" : i32[]
  n1 = input "b" : f32[2]
  n2 = const bool[] [false] : bool[]
}
r1 (n0, n1) -> (n3, n4) {
  n0 = input "a" : i32[]
  n1 = input "b" : f32[2]
  n2 = const i32[] [1] : i32[]
  n3 = add n0, n2 : i32[]
  n4 = exp n1 : f32[2]
}
"#;

#[test]
fn a_while_whose_condition_is_false_is_its_initial_carries() {
    let f = func(WHILE_FALSE, &[3, 4]);
    let inputs = feeds(&[
        ("a", Array::from_i32(&[], vec![3]).unwrap()),
        ("b", data(&[2], 10)),
    ]);
    let (opt, report) = optimized(&f, &[inputs]);
    assert_eq!(count(&opt.graph, "while"), 0);
    assert_eq!(opt.outputs, vec![NodeId(0), NodeId(1)]);
    assert_eq!(report.stats_of("control").fired("while_false"), 1);
}

// ------------------------------------------------------------------------------------------
// Pruning
// ------------------------------------------------------------------------------------------

/// Carries: `a` (read), `b` (feeds `a`), `d` (unread, independent), `e` (returned
/// unchanged). ys: `ya` (read), `yd` (unread), `yx` (the x slice itself).
const PRUNE_SCAN: &str = r#"
n0 = input "xs" : f32[T, 2]
n1 = input "a0" : f32[2]
n2 = input "b0" : f32[2]
n3 = input "d0" : f32[2]
n4 = input "e0" : f32[2]
n5 = input "k" : f32[2]
n6 = scan n1, n2, n3, n4, n0, n5, n5 body=r0 length=[T] carries=4 xs=1 reverse=false : bool[]
n7 = get n6 index=0 : f32[2]
n8 = get n6 index=3 : f32[2]
n9 = get n6 index=4 : f32[T, 2]
n10 = get n6 index=6 : f32[T, 2]
n11 = get n6 index=2 : f32[2]
n12 = exp n11 : f32[2]
r0 (n0, n1, n2, n3, n4, n5, n6) -> (n7, n8, n9, n3, n7, n10, n4) {
  n0 = input "a" : f32[2]
  n1 = input "b" : f32[2]
  n2 = input "d" : f32[2]
  n3 = input "e" : f32[2]
  n4 = input "x" : f32[2]
  n5 = input "k" : f32[2]
  n6 = input "k2" : f32[2]
  n11 = add n0, n1 : f32[2]
  n7 = mul n11, n3 : f32[2]
  n8 = add n1, n5 : f32[2]
  n9 = mul n2, n6 : f32[2]
  n10 = sub n2, n4 : f32[2]
}
"#;

#[test]
fn unread_results_and_carries_leave_a_scan_and_duplicate_operands_merge() {
    let f = func(PRUNE_SCAN, &[7, 8, 9, 10]);
    let inputs = |t| {
        feeds(&[
            ("xs", data(&[t, 2], 11)),
            ("a0", data(&[2], 12)),
            ("b0", data(&[2], 13)),
            ("d0", data(&[2], 14)),
            ("e0", data(&[2], 15)),
            ("k", data(&[2], 16)),
        ])
    };
    let (opt, report) = optimized(&f, &[inputs(3), inputs(0), inputs(1)]);
    let scan = only(&opt.graph, "scan");
    let Op::Scan { carries, xs, .. } = opt.graph.node(scan).op else {
        unreachable!()
    };
    // Carries a and b stay; d is unread and independent; e never changes, so it is a const.
    assert_eq!((carries, xs), (2, 0), "{opt}");
    let body = region_of(&opt.graph, "scan", 0);
    // Params a, b, k, e; results a', b', ya.
    assert_eq!(body.params.len(), 4, "{opt}");
    assert_eq!(body.results.len(), 3, "{opt}");
    assert_eq!(opt.graph.operands(scan).len(), 4);
    // The final e is the initial one, and the yx output is xs itself.
    assert_eq!(opt.outputs[1], NodeId(4));
    assert_eq!(opt.outputs[3], NodeId(0));
    assert!(report.stats_of("control").fired("prune") >= 1);
}

const PRUNE_WHILE: &str = r#"
n0 = input "i0" : i32[]
n1 = input "acc0" : f32[2]
n2 = input "junk0" : f32[2]
n3 = input "n" : i32[]
n4 = input "w" : f32[2]
n5 = while n0, n1, n2, n3, n4, n4 cond=r0 body=r1 carries=3 : bool[]
n6 = get n5 index=1 : f32[2]
r0 (n0, n1, n2, n3, n4, n5) -> (n6) {
  n0 = input "i" : i32[]
  n1 = input "acc" : f32[2]
  n2 = input "junk" : f32[2]
  n3 = input "n" : i32[]
  n4 = input "w" : f32[2]
  n5 = input "w2" : f32[2]
  n6 = lt n0, n3 : bool[]
}
r1 (n0, n1, n2, n3, n4, n5) -> (n7, n8, n9) {
  n0 = input "i" : i32[]
  n1 = input "acc" : f32[2]
  n2 = input "junk" : f32[2]
  n3 = input "n" : i32[]
  n4 = input "w" : f32[2]
  n5 = input "w2" : f32[2]
  n6 = const i32[] [1] : i32[]
  n7 = add n0, n6 : i32[]
  n8 = mul n1, n5 : f32[2]
  n9 = add n2, n4 : f32[2]
}
"#;

#[test]
fn a_while_keeps_the_carries_its_condition_or_read_results_need() {
    let f = func(PRUNE_WHILE, &[6]);
    let inputs = |n| {
        feeds(&[
            ("i0", Array::from_i32(&[], vec![0]).unwrap()),
            ("acc0", data(&[2], 17)),
            ("junk0", data(&[2], 18)),
            ("n", Array::from_i32(&[], vec![n]).unwrap()),
            ("w", data(&[2], 19)),
        ])
    };
    let (opt, _) = optimized(&f, &[inputs(0), inputs(4)]);
    let node = only(&opt.graph, "while");
    let Op::While { carries, .. } = opt.graph.node(node).op else {
        unreachable!()
    };
    // i (the condition reads it) and acc stay; junk goes; w is passed once.
    assert_eq!(carries, 2, "{opt}");
    assert_eq!(opt.graph.operands(node).len(), 4, "{opt}");
    let body = region_of(&opt.graph, "while", 1);
    assert_eq!(body.params.len(), 4);
    assert_eq!(body.results.len(), 2);
}

const PRUNE_COND: &str = r#"
n0 = input "p" : bool[]
n1 = input "x" : f32[3]
n2 = input "y" : f32[3]
n3 = input "z" : f32[3]
n4 = cond n0, n1, n2, n3 then=r0 else=r1 : bool[]
n5 = get n4 index=0 : f32[3]
n6 = get n4 index=2 : f32[3]
r0 (n0, n1, n2) -> (n3, n4, n1) {
  n0 = input "x" : f32[3]
  n1 = input "y" : f32[3]
  n2 = input "z" : f32[3]
  n3 = exp n0 : f32[3]
  n4 = exp n2 : f32[3]
}
r1 (n0, n1, n2) -> (n3, n4, n1) {
  n0 = input "x" : f32[3]
  n1 = input "y" : f32[3]
  n2 = input "z" : f32[3]
  n3 = neg n0 : f32[3]
  n4 = neg n2 : f32[3]
}
"#;

#[test]
fn a_cond_drops_unread_results_and_the_arguments_only_they_read() {
    let f = func(PRUNE_COND, &[5, 6]);
    let inputs = |p| {
        feeds(&[
            ("p", Array::from_bool(&[], vec![p]).unwrap()),
            ("x", data(&[3], 20)),
            ("y", data(&[3], 21)),
            ("z", data(&[3], 22)),
        ])
    };
    let (opt, _) = optimized(&f, &[inputs(true), inputs(false)]);
    let node = only(&opt.graph, "cond");
    // Result 1 is unread (so z goes); result 2 is y in both branches (so y goes).
    assert_eq!(
        opt.graph.operands(node),
        vec![NodeId(0), NodeId(1)],
        "{opt}"
    );
    assert_eq!(opt.outputs[1], NodeId(2));
    assert_eq!(region_of(&opt.graph, "cond", 0).results.len(), 1);
}

/// A scan reads an outer constant `1.0` as a const: sunk into the body, `c * one` folds.
const SINK: &str = r#"
n0 = input "xs" : f32[T, 2]
n1 = input "c0" : f32[2]
n2 = const f32[] [1.0] : f32[]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=false : bool[]
n4 = get n3 index=0 : f32[2]
r0 (n0, n1, n2) -> (n4) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = input "one" : f32[]
  n3 = mul n0, n2 : f32[2]
  n4 = add n3, n1 : f32[2]
}
"#;

/// A scan whose y is a const: the y is that const broadcast over the steps.
const CONST_Y: &str = r#"
n0 = input "xs" : f32[T, 2]
n1 = input "c0" : f32[2]
n2 = input "k" : f32[2, 2]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=true : bool[]
n4 = get n3 index=0 : f32[2]
n5 = get n3 index=1 : f32[T, 2, 2]
r0 (n0, n1, n2) -> (n3, n2) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = input "k" : f32[2, 2]
  n3 = add n0, n1 : f32[2]
}
"#;

#[test]
fn a_const_y_is_the_const_broadcast_over_the_steps() {
    let f = func(CONST_Y, &[4, 5]);
    let inputs = |t| {
        feeds(&[
            ("xs", data(&[t, 2], 82)),
            ("c0", data(&[2], 83)),
            ("k", data(&[2, 2], 84)),
        ])
    };
    let (opt, _) = optimized(&f, &[inputs(0), inputs(1), inputs(4)]);
    assert_eq!(opt.graph.node(opt.outputs[1]).op.name(), "expand", "{opt}");
    assert_eq!(opt.graph.operands(opt.outputs[1]), vec![NodeId(2)]);
    assert_eq!(region_of(&opt.graph, "scan", 0).results.len(), 1, "{opt}");
}

#[test]
fn small_constant_operands_sink_into_bodies_and_fold_there() {
    let f = func(SINK, &[4]);
    let inputs = |t| feeds(&[("xs", data(&[t, 2], 80)), ("c0", data(&[2], 81))]);
    let (opt, _) = optimized(&f, &[inputs(0), inputs(3)]);
    let scan = only(&opt.graph, "scan");
    assert_eq!(
        opt.graph.operands(scan),
        vec![NodeId(1), NodeId(0)],
        "{opt}"
    );
    let body = region_of(&opt.graph, "scan", 0);
    assert_eq!(count(&body.graph, "mul"), 0, "{opt}");
    assert_eq!(body.params.len(), 2);
}

// ------------------------------------------------------------------------------------------
// Loop-invariant code motion
// ------------------------------------------------------------------------------------------

/// An LSTM over `T` steps: the body projects `x_t` with `W_ih^T` and the state with `W_hh^T`.
const LSTM: &str = r#"
n0 = input "xs" : f32[T, 2, 3]
n1 = input "h0" : f32[2, 2]
n2 = input "c0" : f32[2, 2]
n3 = input "w_ih" : f32[8, 3]
n4 = input "w_hh" : f32[8, 2]
n5 = input "b" : f32[8]
n6 = scan n1, n2, n0, n3, n4, n5 body=r0 length=[T] carries=2 xs=1 reverse=REV : bool[]
n7 = get n6 index=0 : f32[2, 2]
n8 = get n6 index=1 : f32[2, 2]
n9 = get n6 index=2 : f32[T, 2, 2]
r0 (n0, n1, n2, n3, n4, n5) -> (n24, n22, n24) {
  n0 = input "h" : f32[2, 2]
  n1 = input "c" : f32[2, 2]
  n2 = input "x" : f32[2, 3]
  n3 = input "w_ih" : f32[8, 3]
  n4 = input "w_hh" : f32[8, 2]
  n5 = input "b" : f32[8]
  n6 = permute n3 [1, 0] : f32[3, 8]
  n7 = matmul n2, n6 : f32[2, 8]
  n8 = add n7, n5 : f32[2, 8]
  n9 = permute n4 [1, 0] : f32[2, 8]
  n10 = matmul n0, n9 : f32[2, 8]
  n11 = add n8, n10 : f32[2, 8]
  n12 = slice n11 [:, 0:2] : f32[2, 2]
  n13 = slice n11 [:, 2:4] : f32[2, 2]
  n14 = slice n11 [:, 4:6] : f32[2, 2]
  n15 = slice n11 [:, 6:8] : f32[2, 2]
  n16 = sigmoid n12 : f32[2, 2]
  n17 = sigmoid n13 : f32[2, 2]
  n18 = tanh n14 : f32[2, 2]
  n19 = sigmoid n15 : f32[2, 2]
  n20 = mul n17, n1 : f32[2, 2]
  n21 = mul n16, n18 : f32[2, 2]
  n22 = add n20, n21 : f32[2, 2]
  n23 = tanh n22 : f32[2, 2]
  n24 = mul n19, n23 : f32[2, 2]
}
"#;

fn lstm_feeds(t: usize) -> HashMap<String, Array> {
    feeds(&[
        ("xs", data(&[t, 2, 3], 30)),
        ("h0", data(&[2, 2], 31)),
        ("c0", data(&[2, 2], 32)),
        ("w_ih", data(&[8, 3], 33)),
        ("w_hh", data(&[8, 2], 34)),
        ("b", data(&[8], 35)),
    ])
}

#[test]
fn the_lstm_input_projection_becomes_one_matmul_over_all_steps() {
    for reverse in [false, true] {
        let text = LSTM.replace("REV", if reverse { "true" } else { "false" });
        let f = func(&text, &[7, 8, 9]);
        let (opt, report) = optimized(&f, &[lstm_feeds(5), lstm_feeds(1), lstm_feeds(0)]);
        let body = region_of(&opt.graph, "scan", 0);
        // Only the recurrent matmul is left in the body, reading `W_hh` through a
        // transpose that fusion folds into its index (a view of a const is not hoisted).
        assert_eq!(count(&body.graph, "matmul"), 1, "{opt}");
        assert_eq!(count(&body.graph, "permute"), 1, "{opt}");
        let mm = body
            .graph
            .node_ids()
            .into_iter()
            .find(|&n| body.graph.node(n).op == Op::MatMul)
            .unwrap();
        assert_eq!(body.graph.operands(mm)[0], body.params[0], "h @ W_hh^T");
        // Outside: one [T, 2, 3] @ [3, 8] matmul; the bias is added in the body, fused into
        // the step's gate kernel (elementwise work alone is not batched).
        let outer = only(&opt.graph, "matmul");
        assert_eq!(opt.graph.node(outer).shape.to_string(), "[T, 2, 8]");
        let ops = opt.graph.operands(outer);
        assert_eq!(ops[0], NodeId(0));
        assert_eq!(opt.graph.node(ops[1]).shape.to_string(), "[3, 8]");
        let scan = only(&opt.graph, "scan");
        let Op::Scan { xs, .. } = opt.graph.node(scan).op else {
            unreachable!()
        };
        assert_eq!(xs, 1, "the projected xs replaces the raw xs\n{opt}");
        let projected = opt.graph.operands(scan)[2];
        assert_eq!(projected, outer);
        assert_eq!(count(&body.graph, "add"), 3, "{opt}");
        let stats = report.stats_of("control");
        assert_eq!(stats.fired("hoist_invariant"), 0);
        assert_eq!(stats.fired("hoist_batched"), 1);
    }
}

/// The LSTM as the layers build it: the weights' transposes are computed outside the scan
/// and passed in as consts.
const LSTM_OUTER_VIEWS: &str = r#"
n0 = input "xs" : f32[T, 2, 3]
n1 = input "h0" : f32[2, 2]
n2 = input "c0" : f32[2, 2]
n3 = input "w_ih" : f32[8, 3]
n4 = input "w_hh" : f32[8, 2]
n5 = input "b" : f32[8]
n6 = permute n3 [1, 0] : f32[3, 8]
n7 = permute n4 [1, 0] : f32[2, 8]
n8 = reshape n5 : f32[1, 8]
n9 = scan n1, n2, n0, n6, n7, n8 body=r0 length=[T] carries=2 xs=1 reverse=false : bool[]
n10 = get n9 index=0 : f32[2, 2]
n11 = get n9 index=1 : f32[2, 2]
n12 = get n9 index=2 : f32[T, 2, 2]
r0 (n0, n1, n2, n3, n4, n5) -> (n24, n22, n24) {
  n0 = input "h" : f32[2, 2]
  n1 = input "c" : f32[2, 2]
  n2 = input "x" : f32[2, 3]
  n3 = input "w_ih_t" : f32[3, 8]
  n4 = input "w_hh_t" : f32[2, 8]
  n5 = input "b" : f32[1, 8]
  n7 = matmul n2, n3 : f32[2, 8]
  n8 = add n7, n5 : f32[2, 8]
  n10 = matmul n0, n4 : f32[2, 8]
  n11 = add n8, n10 : f32[2, 8]
  n12 = slice n11 [:, 0:2] : f32[2, 2]
  n13 = slice n11 [:, 2:4] : f32[2, 2]
  n14 = slice n11 [:, 4:6] : f32[2, 2]
  n15 = slice n11 [:, 6:8] : f32[2, 2]
  n16 = sigmoid n12 : f32[2, 2]
  n17 = sigmoid n13 : f32[2, 2]
  n18 = tanh n14 : f32[2, 2]
  n19 = sigmoid n15 : f32[2, 2]
  n20 = mul n17, n1 : f32[2, 2]
  n21 = mul n16, n18 : f32[2, 2]
  n22 = add n20, n21 : f32[2, 2]
  n23 = tanh n22 : f32[2, 2]
  n24 = mul n19, n23 : f32[2, 2]
}
"#;

#[test]
fn views_passed_into_a_scan_are_applied_inside_it() {
    let f = func(LSTM_OUTER_VIEWS, &[10, 11, 12]);
    let (opt, report) = optimized(&f, &[lstm_feeds(5), lstm_feeds(1), lstm_feeds(0)]);
    // The scan takes `W_hh` itself (read every step, transposed inside); `W_ih^T` and the
    // bias went out again with the batched input projection.
    let scan = only(&opt.graph, "scan");
    let operands = opt.graph.operands(scan);
    assert!(operands.contains(&NodeId(4)), "W_hh itself\n{opt}");
    for &o in &operands {
        let op = &opt.graph.node(o).op;
        assert!(
            !matches!(op, Op::Permute(_) | Op::Reshape(_)),
            "{o} is a view\n{opt}"
        );
    }
    let body = region_of(&opt.graph, "scan", 0);
    assert_eq!(count(&body.graph, "permute"), 1, "{opt}");
    assert_eq!(count(&body.graph, "matmul"), 1, "{opt}");
    let stats = report.stats_of("control");
    assert!(stats.fired("sink_view") >= 1, "{stats:?}");
}

#[test]
fn weight_gradients_leave_the_reverse_scan_as_one_matmul_over_all_steps() {
    for reverse in [false, true] {
        let text = LSTM.replace("REV", if reverse { "true" } else { "false" });
        let mut g = parse(&text).unwrap();
        let outs = [NodeId(7), NodeId(8), NodeId(9)];
        let cts: Vec<NodeId> = outs
            .iter()
            .enumerate()
            .map(|(k, &o)| {
                let n = g.node(o).clone();
                let op = Op::Input {
                    name: format!("ct{k}"),
                    dtype: n.dtype,
                    shape: n.shape,
                };
                g.add(op, &[]).unwrap()
            })
            .collect();
        let wrt = [NodeId(0), NodeId(1), NodeId(3), NodeId(4), NodeId(5)];
        let grads = autodiff::vjp(&mut g, &outs, &cts, &wrt).unwrap();
        let f = Func::new(g, grads).unwrap();
        let runs: Vec<HashMap<String, Array>> = [5, 1, 0, 9]
            .into_iter()
            .map(|t| {
                let mut feeds = lstm_feeds(t);
                feeds.insert("ct0".into(), data(&[2, 2], 40));
                feeds.insert("ct1".into(), data(&[2, 2], 41));
                feeds.insert("ct2".into(), data(&[t, 2, 2], 42));
                feeds
            })
            .collect();
        // Without sinking the optimised gradients are the same bits; with it, the same
        // values up to the order of the sum over the steps.
        let (exact, _) = optimized(&f, &runs);
        let mut opt = f.clone();
        let report = optimize(
            &mut opt,
            &PipelineOptions {
                control: ControlOptions::default(),
                ..quiet()
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{f}"));
        for inputs in &runs {
            for (i, (a, b)) in run(&f, inputs).iter().zip(run(&opt, inputs)).enumerate() {
                let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                        "gradient {i}: {x} vs {y}\n{opt}"
                    );
                }
            }
        }
        // The W_ih, W_hh and b gradients were carries of the reverse scan; each is now a
        // sum over the steps computed after it, the two weight gradients as single
        // matmuls of shape [8, 3] and [8, 2] contracting over T * 2 rows.
        assert_eq!(report.stats_of("control").fired("sink_accumulator"), 1);
        let carries = |g: &Graph| -> usize {
            g.node_ids()
                .into_iter()
                .filter_map(|n| match g.node(n).op {
                    Op::Scan { carries, .. } => Some(carries),
                    _ => None,
                })
                .sum()
        };
        assert_eq!(carries(&exact.graph) - carries(&opt.graph), 3, "{opt}");
        let body_matmuls = |g: &Graph| -> usize {
            g.node_ids()
                .into_iter()
                .filter_map(|n| match g.node(n).op {
                    Op::Scan { body, .. } => Some(count(&g.region(body).graph, "matmul")),
                    _ => None,
                })
                .sum()
        };
        assert_eq!(
            body_matmuls(&exact.graph) - body_matmuls(&opt.graph),
            2,
            "{opt}"
        );
        let contractions: Vec<String> = opt
            .graph
            .node_ids()
            .into_iter()
            .filter(|&n| opt.graph.node(n).op == Op::MatMul)
            .map(|n| opt.graph.node(opt.graph.operands(n)[0]).shape.to_string())
            .filter(|s| s.ends_with(", T*2]"))
            .collect();
        assert_eq!(contractions, ["[3, T*2]", "[2, T*2]"], "{opt}");
    }
}

/// A while loop whose body scales by `exp(k) * 2` and whose condition compares with
/// `n * 2`: both computed from consts only.
const WHILE_LICM: &str = r#"
n0 = input "i0" : i32[]
n1 = input "v0" : f32[2]
n2 = input "k" : f32[2]
n3 = input "n" : i32[]
n4 = while n0, n1, n2, n3 cond=r0 body=r1 carries=2 : bool[]
n5 = get n4 index=1 : f32[2]
r0 (n0, n1, n2, n3) -> (n6) {
  n0 = input "i" : i32[]
  n1 = input "v" : f32[2]
  n2 = input "k" : f32[2]
  n3 = input "n" : i32[]
  n4 = const i32[] [2] : i32[]
  n5 = mul n3, n4 : i32[]
  n6 = lt n0, n5 : bool[]
}
r1 (n0, n1, n2, n3) -> (n8, n7) {
  n0 = input "i" : i32[]
  n1 = input "v" : f32[2]
  n2 = input "k" : f32[2]
  n3 = input "n" : i32[]
  n4 = exp n2 : f32[2]
  n5 = const f32[] [2.0] : f32[]
  n6 = mul n4, n5 : f32[2]
  n7 = mul n1, n6 : f32[2]
  n9 = const i32[] [1] : i32[]
  n8 = add n0, n9 : i32[]
}
"#;

#[test]
fn while_regions_lose_their_const_only_nodes() {
    let f = func(WHILE_LICM, &[5]);
    let inputs = |n| {
        feeds(&[
            ("i0", Array::from_i32(&[], vec![0]).unwrap()),
            ("v0", data(&[2], 40)),
            ("k", data(&[2], 41)),
            ("n", Array::from_i32(&[], vec![n]).unwrap()),
        ])
    };
    let (opt, _) = optimized(&f, &[inputs(0), inputs(3)]);
    let (cond, body) = (
        region_of(&opt.graph, "while", 0),
        region_of(&opt.graph, "while", 1),
    );
    assert_eq!(count(&body.graph, "exp"), 0, "{opt}");
    assert_eq!(count(&body.graph, "mul"), 1, "{opt}");
    assert_eq!(count(&cond.graph, "mul"), 0, "{opt}");
    assert_eq!(count(&opt.graph, "exp"), 1, "{opt}");
    // k and n are read only by the hoisted nodes now, so they left the loop.
    let node = only(&opt.graph, "while");
    assert_eq!(opt.graph.operands(node).len(), 4, "{opt}");
}

/// A while loop whose body sums the rows of a const with a scan: the scan moves out.
const WHILE_SCAN: &str = r#"
n0 = input "i0" : i32[]
n1 = input "v0" : f32[2]
n2 = input "ws" : f32[3, 2]
n3 = input "n" : i32[]
n4 = while n0, n1, n2, n3 cond=r0 body=r1 carries=2 : bool[]
n5 = get n4 index=1 : f32[2]
r0 (n0, n1, n2, n3) -> (n4) {
  n0 = input "i" : i32[]
  n1 = input "v" : f32[2]
  n2 = input "ws" : f32[3, 2]
  n3 = input "n" : i32[]
  n4 = lt n0, n3 : bool[]
}
r1 (n0, n1, n2, n3) -> (n8, n7) {
  n0 = input "i" : i32[]
  n1 = input "v" : f32[2]
  n2 = input "ws" : f32[3, 2]
  n3 = input "n" : i32[]
  n4 = const f32[2] [0.0, 0.5] : f32[2]
  n5 = scan n4, n2 body=r0 length=[3] carries=1 xs=1 reverse=false : bool[]
  n6 = get n5 index=0 : f32[2]
  n7 = mul n1, n6 : f32[2]
  n9 = const i32[] [1] : i32[]
  n8 = add n0, n9 : i32[]
  r0 (n0, n1) -> (n2) {
    n0 = input "acc" : f32[2]
    n1 = input "w" : f32[2]
    n2 = add n0, n1 : f32[2]
  }
}
"#;

#[test]
fn a_loop_over_consts_moves_out_of_an_enclosing_loop() {
    let f = func(WHILE_SCAN, &[5]);
    let inputs = |n| {
        feeds(&[
            ("i0", Array::from_i32(&[], vec![0]).unwrap()),
            ("v0", data(&[2], 90)),
            ("ws", data(&[3, 2], 91)),
            ("n", Array::from_i32(&[], vec![n]).unwrap()),
        ])
    };
    let (opt, _) = optimized(&f, &[inputs(0), inputs(3)]);
    assert_eq!(count(&opt.graph, "scan"), 1, "{opt}");
    assert_eq!(
        count(&region_of(&opt.graph, "while", 1).graph, "scan"),
        0,
        "{opt}"
    );
}

/// A scan whose body divides integers by a const: it may fail, so it must stay in the body
/// (the scan may run zero times).
const FAILING: &str = r#"
n0 = input "xs" : i32[T]
n1 = input "c0" : i32[]
n2 = input "d" : i32[]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=false : bool[]
n4 = get n3 index=0 : i32[]
r0 (n0, n1, n2) -> (n5) {
  n0 = input "c" : i32[]
  n1 = input "x" : i32[]
  n2 = input "d" : i32[]
  n3 = const i32[] [7] : i32[]
  n4 = div n3, n2 : i32[]
  n6 = div n1, n2 : i32[]
  n7 = add n4, n6 : i32[]
  n5 = add n0, n7 : i32[]
}
"#;

#[test]
fn ops_that_can_fail_stay_in_the_loop() {
    let f = func(FAILING, &[4]);
    let zero = feeds(&[
        ("xs", Array::from_i32(&[0], vec![]).unwrap()),
        ("c0", Array::from_i32(&[], vec![5]).unwrap()),
        ("d", Array::from_i32(&[], vec![0]).unwrap()),
    ]);
    let some = feeds(&[
        ("xs", Array::from_i32(&[3], vec![9, -4, 20]).unwrap()),
        ("c0", Array::from_i32(&[], vec![5]).unwrap()),
        ("d", Array::from_i32(&[], vec![3]).unwrap()),
    ]);
    let (opt, _) = optimized(&f, &[zero, some]);
    assert_eq!(
        count(&region_of(&opt.graph, "scan", 0).graph, "div"),
        2,
        "{opt}"
    );
    assert_eq!(count(&opt.graph, "div"), 0, "{opt}");
}

/// A scan nested in a scan: the inner body's `tanh(w)` depends only on a const of the outer
/// loop, so it moves out of both loops.
const NESTED: &str = r#"
n0 = input "xs" : f32[3, 4, 2]
n1 = input "c0" : f32[2]
n2 = input "w" : f32[2]
n3 = scan n1, n0, n2 body=r0 length=[3] carries=1 xs=1 reverse=false : bool[]
n4 = get n3 index=0 : f32[2]
r0 (n0, n1, n2) -> (n4) {
  n0 = input "c" : f32[2]
  n1 = input "row" : f32[4, 2]
  n2 = input "w" : f32[2]
  n3 = scan n0, n1, n2 body=r0 length=[4] carries=1 xs=1 reverse=true : bool[]
  n4 = get n3 index=0 : f32[2]
  r0 (n0, n1, n2) -> (n5) {
    n0 = input "c" : f32[2]
    n1 = input "x" : f32[2]
    n2 = input "w" : f32[2]
    n3 = tanh n2 : f32[2]
    n4 = mul n1, n3 : f32[2]
    n5 = add n0, n4 : f32[2]
  }
}
"#;

#[test]
fn invariants_of_a_nested_loop_move_out_of_both_loops() {
    let f = func(NESTED, &[4]);
    let inputs = feeds(&[
        ("xs", data(&[3, 4, 2], 50)),
        ("c0", data(&[2], 51)),
        ("w", data(&[2], 52)),
    ]);
    let (opt, _) = optimized(&f, &[inputs]);
    assert_eq!(count(&opt.graph, "tanh"), 1, "{opt}");
    let outer = region_of(&opt.graph, "scan", 0);
    let inner = region_of(&outer.graph, "scan", 0);
    assert_eq!(count(&outer.graph, "tanh") + count(&inner.graph, "tanh"), 0);
    // x * tanh(w) depends only on x and consts but is elementwise: it stays in the inner
    // loop (batched, it would be a [4, 2] buffer written before the loop and read back).
    assert_eq!(count(&inner.graph, "mul"), 1, "{opt}");
}

#[test]
fn the_control_pass_alone_reaches_a_fixpoint() {
    let text = LSTM.replace("REV", "false");
    let mut f = func(&text, &[7, 8, 9]);
    let mut rounds = 0;
    while control_with(&mut f, &EXACT).unwrap().changed() {
        rounds += 1;
        assert!(rounds < 6, "control keeps changing\n{f}");
    }
    let inputs = lstm_feeds(4);
    let before = run(&func(&text, &[7, 8, 9]), &inputs);
    for (a, b) in before.iter().zip(run(&f, &inputs)) {
        assert!(a.bit_eq(&b));
    }
}

// ------------------------------------------------------------------------------------------
// Random scan bodies
// ------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn input(g: &mut Graph, name: &str, shape: kiln_ir::Shape) -> NodeId {
    g.add(
        Op::Input {
            name: name.into(),
            dtype: kiln_ir::DType::F32,
            shape,
        },
        &[],
    )
    .unwrap()
}

/// A scan whose body is a random mix of carry-, x- and const-dependent elementwise ops,
/// matmuls, expands, permutes, reshapes, flips and reductions over values of shapes `[3]`,
/// `[2, 3]` and `[3, 2]`, with carry `h: [2, 3]`, xs rows `x: [3]` and `x2: [2, 3]`, and
/// consts `w: [3, 3]` and `k: [3]`. Returns the function and whether its length is `T`.
fn random_scan(seed: u64) -> (Func, bool) {
    use kiln_ir::{Dim, Shape};
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut b = Graph::new();
    let s3 = Shape::known(&[3]);
    let s23 = Shape::known(&[2, 3]);
    let h = input(&mut b, "h", s23.clone());
    let x = input(&mut b, "x", s3.clone());
    let x2 = input(&mut b, "x2", s23.clone());
    let w = input(&mut b, "w", Shape::known(&[3, 3]));
    let k = input(&mut b, "k", s3.clone());
    let mut pool = vec![h, x, x2, k];
    random_ops(&mut b, &mut pool, w, &mut rng);
    let dims = |g: &Graph, n: NodeId| g.node(n).shape.as_known().unwrap();
    let of_shape = |g: &Graph, want: &[usize]| -> Vec<NodeId> {
        pool.iter()
            .copied()
            .filter(|&n| dims(g, n) == want)
            .collect()
    };
    let carries = of_shape(&b, &[2, 3]);
    let new_h = carries[carries.len() - 1 - rng.below(carries.len().min(3))];
    let y1 = pool[rng.below(pool.len())];
    let y2 = pool[pool.len() - 1];
    let region = Region {
        graph: b,
        params: vec![h, x, x2, w, k],
        results: vec![new_h, y1, y2],
    };
    let symbolic = rng.below(3) != 0;
    let len = if symbolic {
        Dim::sym("T")
    } else {
        Dim::known(2)
    };
    let lead = |s: &[usize]| {
        let mut d = vec![len.clone()];
        d.extend(s.iter().map(|&n| Dim::known(n as u64)));
        Shape(d)
    };
    let mut g = Graph::new();
    let xs = input(&mut g, "xs", lead(&[3]));
    let xs2 = input(&mut g, "xs2", lead(&[2, 3]));
    let h0 = input(&mut g, "h0", s23);
    let w0 = input(&mut g, "w", Shape::known(&[3, 3]));
    let k0 = input(&mut g, "k", s3);
    let body = g.add_region(region);
    let scan = g
        .add(
            Op::Scan {
                body,
                length: len,
                carries: 1,
                xs: 2,
                reverse: rng.below(2) == 0,
            },
            &[h0, xs, xs2, w0, k0],
        )
        .unwrap();
    let gets: Vec<NodeId> = (0..3)
        .map(|i| g.add(Op::Get { index: i }, &[scan]).unwrap())
        .collect();
    let mut outputs: Vec<NodeId> = gets.iter().copied().filter(|_| rng.below(3) != 0).collect();
    if outputs.is_empty() {
        outputs.push(gets[rng.below(3)]);
    }
    (Func::new(g, outputs).unwrap(), symbolic)
}

#[test]
fn random_scan_bodies_optimise_to_the_same_bits() {
    let mut fired: HashMap<&str, usize> = HashMap::new();
    for seed in 1..=150 {
        let (f, symbolic) = random_scan(seed);
        let lengths: &[usize] = if symbolic { &[0, 1, 3] } else { &[2] };
        let runs: Vec<HashMap<String, Array>> = lengths
            .iter()
            .map(|&t| {
                feeds(&[
                    ("xs", data(&[t, 3], 60 + seed as u32)),
                    ("xs2", data(&[t, 2, 3], 61 + seed as u32)),
                    ("h0", data(&[2, 3], 62)),
                    ("w", data(&[3, 3], 63)),
                    ("k", data(&[3], 64)),
                ])
            })
            .collect();
        let (opt, report) = optimized(&f, &runs);
        let mut again = opt.clone();
        assert!(
            !control_with(&mut again, &EXACT).unwrap().changed(),
            "seed {seed}: control is not at a fixpoint\n{opt}"
        );
        for (rule, n) in report.stats_of("control").rules {
            *fired.entry(rule).or_insert(0) += n;
        }
    }
    for rule in ["prune", "hoist_invariant", "hoist_batched"] {
        let n = fired.get(rule).copied().unwrap_or(0);
        assert!(n >= 10, "{rule} fired {n} times: {fired:?}");
    }
}

fn scalar_i32(g: &mut Graph, v: i32) -> NodeId {
    g.add(Op::Constant(Array::from_i32(&[], vec![v]).unwrap()), &[])
        .unwrap()
}

/// A counted `while` (`i < n`) whose body is a random mix of ops over carries `v: [2, 3]`
/// and `u: [3]` and consts `w: [3, 3]` and `k: [3]`; its condition also compares a
/// const-only value.
fn random_while(seed: u64) -> Func {
    use kiln_ir::{BinaryOp, DType, Shape};
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let s23 = Shape::known(&[2, 3]);
    let s3 = Shape::known(&[3]);
    let int = |g: &mut Graph, name: &str| {
        g.add(
            Op::Input {
                name: name.into(),
                dtype: DType::I32,
                shape: Shape::scalar(),
            },
            &[],
        )
        .unwrap()
    };
    let params = |g: &mut Graph| {
        let i = int(g, "i");
        let v = input(g, "v", s23.clone());
        let u = input(g, "u", s3.clone());
        let n = int(g, "n");
        let w = input(g, "w", Shape::known(&[3, 3]));
        let k = input(g, "k", s3.clone());
        [i, v, u, n, w, k]
    };
    let mut c = Graph::new();
    let [i, _, _, n, _, _] = params(&mut c);
    let two = scalar_i32(&mut c, 2);
    let limit = c.add(Op::Binary(BinaryOp::Mul), &[n, two]).unwrap();
    let pred = c.add(Op::Binary(BinaryOp::Lt), &[i, limit]).unwrap();
    let cond_params = c.inputs().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    let mut b = Graph::new();
    let [bi, v, u, _, w, k] = params(&mut b);
    let mut pool = vec![v, u, k];
    random_ops(&mut b, &mut pool, w, &mut rng);
    let one = scalar_i32(&mut b, 1);
    let next_i = b.add(Op::Binary(BinaryOp::Add), &[bi, one]).unwrap();
    let pick = |g: &Graph, want: &[usize], rng: &mut Rng| {
        let c: Vec<NodeId> = pool
            .iter()
            .copied()
            .filter(|&p| g.node(p).shape.as_known().unwrap() == want)
            .collect();
        c[c.len() - 1 - rng.below(c.len().min(3))]
    };
    let new_v = pick(&b, &[2, 3], &mut rng);
    let new_u = pick(&b, &[3], &mut rng);
    let body_params = b.inputs().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    let mut g = Graph::new();
    let i0 = scalar_i32(&mut g, 0);
    let v0 = input(&mut g, "v0", s23);
    let u0 = input(&mut g, "u0", s3);
    let n0 = int(&mut g, "n");
    let w0 = input(&mut g, "w", Shape::known(&[3, 3]));
    let k0 = input(&mut g, "k", Shape::known(&[3]));
    let cond = g.add_region(Region {
        graph: c,
        params: cond_params,
        results: vec![pred],
    });
    let body = g.add_region(Region {
        graph: b,
        params: body_params,
        results: vec![next_i, new_v, new_u],
    });
    let node = g
        .add(
            Op::While {
                cond,
                body,
                carries: 3,
            },
            &[i0, v0, u0, n0, w0, k0],
        )
        .unwrap();
    let gets: Vec<NodeId> = (0..3)
        .map(|i| g.add(Op::Get { index: i }, &[node]).unwrap())
        .collect();
    let mut outputs: Vec<NodeId> = gets[1..]
        .iter()
        .copied()
        .filter(|_| rng.below(2) == 0)
        .collect();
    if outputs.is_empty() {
        outputs.push(gets[1 + rng.below(2)]);
    }
    Func::new(g, outputs).unwrap()
}

#[test]
fn random_while_bodies_optimise_to_the_same_bits() {
    let mut fired: HashMap<&str, usize> = HashMap::new();
    for seed in 1..=100 {
        let f = random_while(seed);
        let runs: Vec<HashMap<String, Array>> = [0, 1, 2]
            .iter()
            .map(|&n| {
                feeds(&[
                    ("v0", data(&[2, 3], 70 + seed as u32)),
                    ("u0", data(&[3], 71)),
                    ("n", Array::from_i32(&[], vec![n]).unwrap()),
                    ("w", data(&[3, 3], 72)),
                    ("k", data(&[3], 73)),
                ])
            })
            .collect();
        let (opt, report) = optimized(&f, &runs);
        let mut again = opt.clone();
        assert!(
            !control_with(&mut again, &EXACT).unwrap().changed(),
            "seed {seed}: control is not at a fixpoint\n{opt}"
        );
        for (rule, n) in report.stats_of("control").rules {
            *fired.entry(rule).or_insert(0) += n;
        }
    }
    for rule in ["prune", "hoist_invariant"] {
        let n = fired.get(rule).copied().unwrap_or(0);
        assert!(n >= 10, "{rule} fired {n} times: {fired:?}");
    }
}
