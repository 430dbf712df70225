//! Property test: for random graphs of elementwise, reduction and movement ops over small
//! shapes with constants, the optimised function evaluates (through the interpreter) to the
//! same values as the original, bit for bit; NaN compares equal to any NaN, since the
//! payload of a NaN produced by arithmetic is unspecified. The optimised graph also verifies
//! and never has more nodes than the original.

use kiln_ir::{
    Array, BinaryOp, DType, Data, Graph, NodeId, Op, ReduceOp, Shape, SliceAxis, UnaryOp,
};
use kiln_passes::pipeline::{Dump, Func, PipelineOptions, optimize};
use kiln_passes::simplify::SimplifyOptions;
use proptest::prelude::*;
use std::collections::HashMap;

const FLOATS: [f32; 14] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    2.0,
    0.5,
    0.25,
    3.0,
    -1.5,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    1.0e-3,
    7.75,
];
const INTS: [i32; 8] = [0, 1, -1, 2, 3, -7, 100, i32::MIN];
const UNARY: [UnaryOp; 10] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Exp,
    UnaryOp::Sqrt,
    UnaryOp::Recip,
    UnaryOp::Floor,
    UnaryOp::Tanh,
    UnaryOp::Sign,
    UnaryOp::Not,
    UnaryOp::IsNan,
];
const BINARY: [BinaryOp; 11] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Max,
    BinaryOp::Min,
    BinaryOp::Pow,
    BinaryOp::Rem,
    BinaryOp::Lt,
    BinaryOp::And,
    BinaryOp::Eq,
];

/// One construction step: (what, operand pick, operand pick, variant).
type Step = (u8, u16, u16, u8);

fn constant(
    g: &mut Graph,
    dtype: DType,
    dims: &[usize],
    first: usize,
    varying: bool,
) -> Option<NodeId> {
    let n: usize = dims.iter().product();
    let pick = |i: usize| if varying { first + i } else { first };
    let a = match dtype {
        DType::F32 => Array::from_f32(
            dims,
            (0..n).map(|i| FLOATS[pick(i) % FLOATS.len()]).collect(),
        ),
        DType::I32 => Array::from_i32(dims, (0..n).map(|i| INTS[pick(i) % INTS.len()]).collect()),
        DType::Bool => Array::from_bool(dims, (0..n).map(|i| pick(i) % 2 == 0).collect()),
        DType::F64 | DType::I64 | DType::U32 => return None,
    }
    .ok()?;
    g.add(Op::Constant(a), &[]).ok()
}

fn scalar_like(g: &mut Graph, x: NodeId, v: f64) -> Option<NodeId> {
    let dtype = g.node(x).dtype;
    if dtype == DType::Bool {
        return None;
    }
    g.add(Op::Constant(Array::scalar(dtype, v)), &[]).ok()
}

fn known(g: &Graph, x: NodeId) -> Vec<usize> {
    g.node(x).shape.as_known().unwrap_or_default()
}

/// The `k`-th permutation of `0..r` (mod r!), by its Lehmer code.
fn nth_perm(r: usize, mut k: usize) -> Vec<usize> {
    let mut rest: Vec<usize> = (0..r).collect();
    let mut out = Vec::with_capacity(r);
    while !rest.is_empty() {
        let i = k % rest.len();
        k /= rest.len();
        out.push(rest.remove(i));
    }
    out
}

fn step(g: &mut Graph, pool: &[NodeId], &(kind, a, b, v): &Step) -> Option<NodeId> {
    let pick = |s: u16| pool[s as usize % pool.len()];
    let (x, y) = (pick(a), pick(b));
    let v = v as usize;
    let xs = known(g, x);
    match kind % 16 {
        0 => g.add(Op::Unary(UNARY[v % UNARY.len()]), &[x]).ok(),
        1 => g.add(Op::Binary(BINARY[v % BINARY.len()]), &[x, y]).ok(),
        2 => {
            let shapes: [&[usize]; 4] = [&[], &[3], &[2, 3], &[1, 3]];
            let dtype = g.node(x).dtype;
            constant(g, dtype, shapes[v % 4], b as usize, a % 2 == 1)
        }
        3 => {
            let shapes: [&[usize]; 2] = [&[2, 3], &[4, 2, 3]];
            g.add(Op::Expand(Shape::known(shapes[v % 2])), &[x]).ok()
        }
        4 => {
            let n: usize = xs.iter().product();
            let mut rev = xs.clone();
            rev.reverse();
            let shapes = [vec![n], vec![1, n], rev];
            g.add(Op::Reshape(Shape::known(&shapes[v % 3])), &[x]).ok()
        }
        5 => {
            let r = xs.len();
            let p = g.add(Op::Permute(nth_perm(r, v)), &[x]).ok()?;
            if a % 2 == 0 {
                g.add(Op::Permute(nth_perm(r, b as usize)), &[p]).ok()
            } else {
                Some(p)
            }
        }
        6 => {
            let r = xs.len().max(1);
            let op = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod][v % 4];
            g.add(
                Op::Reduce {
                    op,
                    axes: vec![(b as usize) % r],
                    keepdim: a % 2 == 0,
                },
                &[x],
            )
            .ok()
        }
        7 => {
            let op = g.node(x).op.clone();
            if matches!(op, Op::Input { .. }) {
                return None;
            }
            let operands = g.operands(x);
            g.add(op, &operands).ok()
        }
        8 => {
            let n = g.add(Op::Unary(UnaryOp::Neg), &[x]).ok()?;
            g.add(Op::Unary(UnaryOp::Neg), &[n]).ok()
        }
        9 => {
            let (op, c) = [
                (BinaryOp::Mul, 1.0),
                (BinaryOp::Add, -0.0),
                (BinaryOp::Add, 0.0),
                (BinaryOp::Sub, 0.0),
                (BinaryOp::Div, 1.0),
                (BinaryOp::Div, 2.0),
                (BinaryOp::Div, 0.25),
                (BinaryOp::Mul, 0.0),
            ][v % 8];
            let k = scalar_like(g, x, c)?;
            let k = if a % 3 == 0 {
                g.add(Op::Expand(Shape::known(&xs)), &[k]).ok()?
            } else {
                k
            };
            if b % 2 == 0 || op == BinaryOp::Sub || op == BinaryOp::Div {
                g.add(Op::Binary(op), &[x, k]).ok()
            } else {
                g.add(Op::Binary(op), &[k, x]).ok()
            }
        }
        10 => {
            let c = g.add(Op::Binary(BinaryOp::Lt), &[x, y]).ok()?;
            g.add(Op::Select, &[c, x, y]).ok()
        }
        11 => {
            let to = [DType::F32, DType::I32, DType::Bool][v % 3];
            g.add(Op::Cast(to), &[x]).ok()
        }
        12 => {
            let r = xs.len();
            match v % 4 {
                0 => {
                    let whole = SliceAxis {
                        start: 0,
                        stop: u64::MAX,
                        step: 1,
                    };
                    g.add(Op::Slice(vec![whole; r]), &[x]).ok()
                }
                1 => {
                    let axes: Vec<SliceAxis> = xs
                        .iter()
                        .map(|&d| SliceAxis {
                            start: 0,
                            stop: d as u64,
                            step: 1 + (d as u64) / 2,
                        })
                        .collect();
                    g.add(Op::Slice(axes), &[x]).ok()
                }
                2 => g
                    .add(
                        Op::Pad {
                            pads: vec![(0, (b % 2) as u64); r],
                            value: 0.0.into(),
                        },
                        &[x],
                    )
                    .ok(),
                _ => {
                    let axes: Vec<usize> = (0..r).filter(|i| (b as usize >> i) & 1 == 1).collect();
                    let f = g.add(Op::Flip { axes: axes.clone() }, &[x]).ok()?;
                    g.add(Op::Flip { axes }, &[f]).ok()
                }
            }
        }
        13 => g.add(Op::Concat { axis: 0 }, &[x, y]).ok(),
        14 => g.add(Op::StopGradient, &[x]).ok(),
        _ => {
            let t = g.add(Op::Permute(vec![1, 0]), &[y]).ok()?;
            g.add(Op::MatMul, &[x, t]).ok()
        }
    }
}

fn build(steps: &[Step], outs: (u16, u16)) -> Func {
    let mut g = Graph::new();
    let mut pool = Vec::new();
    for (name, dtype, dims) in [
        ("x", DType::F32, &[2usize, 3][..]),
        ("y", DType::F32, &[3]),
        ("i", DType::I32, &[2, 3]),
    ] {
        let op = Op::Input {
            name: name.into(),
            dtype,
            shape: Shape::known(dims),
        };
        pool.push(g.add(op, &[]).unwrap_or(NodeId(0)));
    }
    for s in steps {
        if let Some(n) = step(&mut g, &pool, s) {
            pool.push(n);
        }
    }
    let len = pool.len();
    let outputs = vec![
        pool[len - 1],
        pool[outs.0 as usize % len],
        pool[outs.1 as usize % len],
    ];
    Func { graph: g, outputs }
}

/// Bitwise equality, except that any NaN equals any NaN.
fn same(a: &Array, b: &Array) -> bool {
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return false;
    }
    match (a.data(), b.data()) {
        (Data::F32(x), Data::F32(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        (Data::F64(x), Data::F64(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        _ => a.bit_eq(b),
    }
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (any::<u8>(), any::<u16>(), any::<u16>(), any::<u8>()),
        1..28,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn optimised_graphs_evaluate_to_the_same_values(
        steps in steps(),
        outs in (any::<u16>(), any::<u16>()),
        xv in proptest::collection::vec(proptest::sample::select(FLOATS.to_vec()), 6),
        yv in proptest::collection::vec(proptest::sample::select(FLOATS.to_vec()), 3),
        iv in proptest::collection::vec(proptest::sample::select(INTS.to_vec()), 6),
        fold_limit in proptest::sample::select(vec![0usize, 4, 4096]),
    ) {
        let f = build(&steps, outs);
        let mut inputs = HashMap::new();
        inputs.insert("x".to_string(), Array::from_f32(&[2, 3], xv).unwrap());
        inputs.insert("y".to_string(), Array::from_f32(&[3], yv).unwrap());
        inputs.insert("i".to_string(), Array::from_i32(&[2, 3], iv).unwrap());
        let params = HashMap::new();
        let before = kiln_interp::eval(&f.graph, &f.outputs, &inputs, &params);

        let mut opt = f.clone();
        let opts = PipelineOptions {
            verify: true,
            dump: Dump::Off,
            simplify: SimplifyOptions { fold_limit },
            ..PipelineOptions::default()
        };
        let report = optimize(&mut opt, &opts);
        prop_assert!(report.is_ok(), "optimize failed: {:?}\n{}", report.err(), f);
        prop_assert!(opt.graph.len() <= f.graph.len(), "graph grew:\n{}\n->\n{}", f, opt);

        // An original that fails to evaluate (integer division by zero) may be optimised into
        // one that succeeds (a dead branch dropped); only successful runs must agree.
        if let Ok(before) = before {
            let after = kiln_interp::eval(&opt.graph, &opt.outputs, &inputs, &params);
            prop_assert!(after.is_ok(), "optimised graph fails: {:?}\n{}\n->\n{}", after.err(), f, opt);
            let after = after.unwrap_or_default();
            for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                prop_assert!(same(b, a), "output {} differs: {:?} vs {:?}\n{}\n->\n{}", i, b, a, f, opt);
            }
        }
    }
}

#[test]
fn generated_graphs_exercise_the_rules() {
    // A fixed sample of step lists: over it the rules fire and graphs shrink, so the
    // property test above is not vacuous.
    let mut fired = std::collections::BTreeMap::new();
    let mut shrunk = 0;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let n = 4 + (next() % 20) as usize;
        let steps: Vec<Step> = (0..n)
            .map(|_| {
                let r = next();
                (r as u8, (r >> 8) as u16, (r >> 24) as u16, (r >> 40) as u8)
            })
            .collect();
        let f = build(&steps, (next() as u16, next() as u16));
        let mut opt = f.clone();
        let opts = PipelineOptions {
            dump: Dump::Off,
            ..PipelineOptions::default()
        };
        let report = optimize(&mut opt, &opts).unwrap();
        if opt.graph.len() < f.graph.len() {
            shrunk += 1;
        }
        for (k, v) in report.stats_of("simplify").rules {
            *fired.entry(k).or_insert(0) += v;
        }
        let (added, removed) = report.runs.iter().fold((0, 0), |(a, r), run| {
            (a + run.stats.added, r + run.stats.removed)
        });
        assert_eq!(
            f.graph.len() + added - removed,
            opt.graph.len(),
            "stats disagree with the graph"
        );
    }
    assert!(shrunk > 150, "only {shrunk} of 300 graphs shrank");
    for r in [
        "fold_constants",
        "mul_by_one",
        "neg_neg",
        "permute_permute",
        "sub_zero",
        "div_pow2_to_mul",
        "binary_scalar_const_unexpand",
    ] {
        assert!(
            fired.get(r).copied().unwrap_or(0) > 0,
            "{r} never fired: {fired:?}"
        );
    }
}
