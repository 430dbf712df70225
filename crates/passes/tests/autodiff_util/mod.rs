//! Shared helpers of the autodiff tests: a tiny IR builder, seeded random values, the
//! interpreter, and `check`, which compares a function's analytic VJP and JVP against
//! central finite differences in f64.

#![allow(dead_code)]

use kiln_ir::{
    Array, BinaryOp, DType, Graph, NodeId, Op, ReduceOp, Shape, SliceAxis, UnaryOp, verify,
};
use kiln_passes::autodiff;
use std::collections::HashMap;

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    /// Uniform integer in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Where the values of an input are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Uniform in [-2, 2].
    Any,
    /// Uniform in [0.5, 2.5].
    Positive,
    /// Magnitude in [0.5, 2], random sign.
    AwayFromZero,
    /// Pairwise distinct across every `Distinct` input, at least 0.05 apart.
    Distinct,
    /// Magnitude in [0.1, 0.4], random sign: over an `AwayFromZero` divisor the ratio stays
    /// at least 0.05 from every integer, away from `rem`'s jumps.
    Fraction,
}

/// Adds an `f64` input.
pub fn input(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    g.add(
        Op::Input {
            name: name.into(),
            dtype: DType::F64,
            shape: Shape::known(shape),
        },
        &[],
    )
    .expect("input")
}

/// Adds `op(operands)`.
pub fn op(g: &mut Graph, op: Op, xs: &[NodeId]) -> NodeId {
    match g.add(op.clone(), xs) {
        Ok(id) => id,
        Err(e) => panic!("building {op:?}: {e}"),
    }
}

/// `u(x)`.
pub fn un(g: &mut Graph, u: UnaryOp, x: NodeId) -> NodeId {
    op(g, Op::Unary(u), &[x])
}

/// `b(x, y)`.
pub fn bin(g: &mut Graph, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
    op(g, Op::Binary(b), &[x, y])
}

/// An `f64` scalar constant.
pub fn scalar(g: &mut Graph, v: f64) -> NodeId {
    op(g, Op::Constant(Array::scalar(DType::F64, v)), &[])
}

/// A constant array.
pub fn constant(g: &mut Graph, a: Array) -> NodeId {
    op(g, Op::Constant(a), &[])
}

/// Sum over every axis.
pub fn sum_all(g: &mut Graph, x: NodeId) -> NodeId {
    let r = g.node(x).shape.rank();
    op(
        g,
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: (0..r).collect(),
            keepdim: false,
        },
        &[x],
    )
}

/// A slice spec taking the whole of every axis but `axis`.
pub fn slice1(rank: usize, axis: usize, start: u64, stop: u64, step: u64) -> Vec<SliceAxis> {
    (0..rank)
        .map(|i| {
            if i == axis {
                SliceAxis { start, stop, step }
            } else {
                SliceAxis {
                    start: 0,
                    stop: u64::MAX,
                    step: 1,
                }
            }
        })
        .collect()
}

/// Evaluates `outs` with the interpreter.
pub fn eval(g: &Graph, outs: &[NodeId], feeds: &HashMap<String, Array>) -> Vec<Vec<f64>> {
    let params = HashMap::new();
    match kiln_interp::eval(g, outs, feeds, &params) {
        Ok(v) => v.iter().map(Array::to_f64_vec).collect(),
        Err(e) => panic!("eval failed: {e}\n{g}"),
    }
}

/// An `f64` array.
pub fn arr(shape: &[usize], v: Vec<f64>) -> Array {
    Array::from_f64(shape, v).expect("array")
}

fn values(rng: &mut Rng, d: Domain, n: usize, distinct: &mut Vec<f64>) -> Vec<f64> {
    (0..n)
        .map(|_| match d {
            Domain::Any => rng.uniform(-2.0, 2.0),
            Domain::Positive => rng.uniform(0.5, 2.5),
            Domain::AwayFromZero => {
                let m = rng.uniform(0.5, 2.0);
                if rng.below(2) == 0 { m } else { -m }
            }
            Domain::Fraction => {
                let m = rng.uniform(0.1, 0.4);
                if rng.below(2) == 0 { m } else { -m }
            }
            Domain::Distinct => {
                let i = rng.below(distinct.len() as u64) as usize;
                distinct.swap_remove(i)
            }
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// Builds `build(x0, x1, ...)` over `f64` inputs of `shapes`, appends its VJP and JVP, and
/// checks them against central differences along a random direction: the JVP elementwise,
/// the VJP through `<u, J v>`. Also checks the graph verifies and that `<u, jvp> = <vjp, v>`.
pub fn check(
    shapes: &[Vec<usize>],
    domains: &[Domain],
    seed: u64,
    build: impl Fn(&mut Graph, &[NodeId]) -> NodeId,
) {
    check_tol(shapes, domains, seed, 1e-6, build)
}

/// [`check`] with a relative tolerance.
pub fn check_tol(
    shapes: &[Vec<usize>],
    domains: &[Domain],
    seed: u64,
    tol: f64,
    build: impl Fn(&mut Graph, &[NodeId]) -> NodeId,
) {
    let mut g = Graph::new();
    let xs: Vec<NodeId> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| input(&mut g, &format!("x{i}"), s))
        .collect();
    let out = build(&mut g, &xs);
    let out_shape = g.node(out).shape.as_known().expect("known output shape");
    let ct = input(&mut g, "ct", &out_shape);
    let ts: Vec<NodeId> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| input(&mut g, &format!("t{i}"), s))
        .collect();
    let grads =
        autodiff::vjp(&mut g, &[out], &[ct], &xs).unwrap_or_else(|e| panic!("vjp: {e}\n{g}"));
    let tout =
        autodiff::jvp(&mut g, &[out], &xs, &ts).unwrap_or_else(|e| panic!("jvp: {e}\n{g}"))[0];
    if let Err(errs) = verify(&g) {
        panic!("graph does not verify: {errs:?}\n{g}");
    }

    let mut rng = Rng::new(seed);
    let total: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let start = -0.05 * total as f64 / 2.0;
    let mut distinct: Vec<f64> = (0..total)
        .map(|i| start + 0.05 * i as f64 + 0.013)
        .collect();
    let xv: Vec<Vec<f64>> = shapes
        .iter()
        .zip(domains)
        .map(|(s, &d)| values(&mut rng, d, s.iter().product(), &mut distinct))
        .collect();
    let vv: Vec<Vec<f64>> = shapes
        .iter()
        .map(|s| values(&mut rng, Domain::Any, s.iter().product(), &mut Vec::new()))
        .collect();
    let n_out: usize = out_shape.iter().product();
    let uv = values(&mut rng, Domain::Any, n_out, &mut Vec::new());

    let mut feeds: HashMap<String, Array> = HashMap::new();
    for (i, s) in shapes.iter().enumerate() {
        feeds.insert(format!("x{i}"), arr(s, xv[i].clone()));
        feeds.insert(format!("t{i}"), arr(s, vv[i].clone()));
    }
    feeds.insert("ct".into(), arr(&out_shape, uv.clone()));
    let mut outs = vec![out, tout];
    outs.extend(&grads);
    let vals = eval(&g, &outs, &feeds);
    assert!(
        vals[0].iter().all(|v| v.is_finite()),
        "non-finite output {:?}",
        vals[0]
    );

    let h = 1e-6;
    let shifted = |sign: f64| {
        let mut f = feeds.clone();
        for (i, s) in shapes.iter().enumerate() {
            let v: Vec<f64> = xv[i]
                .iter()
                .zip(&vv[i])
                .map(|(x, t)| x + sign * h * t)
                .collect();
            f.insert(format!("x{i}"), arr(s, v));
        }
        eval(&g, &[out], &f).remove(0)
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    let fd: Vec<f64> = plus
        .iter()
        .zip(&minus)
        .map(|(p, m)| (p - m) / (2.0 * h))
        .collect();
    for (k, (a, b)) in vals[1].iter().zip(&fd).enumerate() {
        assert!(
            close(*a, *b, tol),
            "jvp[{k}] = {a}, finite differences give {b}\njvp {:?}\nfd  {:?}\n{g}",
            vals[1],
            fd
        );
    }
    let u_fd = dot(&uv, &fd);
    let u_jvp = dot(&uv, &vals[1]);
    let vjp_v: f64 = grads
        .iter()
        .enumerate()
        .map(|(i, _)| dot(&vals[2 + i], &vv[i]))
        .sum();
    assert!(
        close(vjp_v, u_fd, tol),
        "<vjp(u), v> = {vjp_v}, finite differences give {u_fd}\n{g}"
    );
    assert!(
        close(vjp_v, u_jvp, 1e-9),
        "<vjp(u), v> = {vjp_v} but <u, jvp(v)> = {u_jvp}"
    );
}
