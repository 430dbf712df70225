//! Shared helpers of the fusion tests: building graphs at IR level, running a graph through
//! the interpreter and through `lower` + the kernel executor, and comparing the results.

#![allow(dead_code)]

use kiln_ir::{Array, BinaryOp, DType, Data, Dim, Graph, NodeId, Op, ReduceOp, Shape, UnaryOp};
use kiln_kernel::{BufferKind, Program, VerifiedProgram};
use kiln_passes::fuse::{FuseReport, lower_with};
use std::collections::HashMap;

/// Adds a node, panicking (in tests) when inference rejects it.
pub fn add(g: &mut Graph, op: Op, operands: &[NodeId]) -> NodeId {
    let name = op.name();
    g.add(op, operands)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn input(g: &mut Graph, name: &str, dtype: DType, shape: Shape) -> NodeId {
    add(
        g,
        Op::Input {
            name: name.into(),
            dtype,
            shape,
        },
        &[],
    )
}

pub fn param(g: &mut Graph, name: &str, dtype: DType, shape: &[usize]) -> NodeId {
    add(
        g,
        Op::Parameter {
            name: name.into(),
            dtype,
            shape: Shape::known(shape),
        },
        &[],
    )
}

pub fn scalar(g: &mut Graph, v: f64, dtype: DType) -> NodeId {
    add(g, Op::Constant(Array::scalar(dtype, v)), &[])
}

pub fn un(g: &mut Graph, u: UnaryOp, x: NodeId) -> NodeId {
    add(g, Op::Unary(u), &[x])
}

pub fn bin(g: &mut Graph, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
    add(g, Op::Binary(b), &[x, y])
}

pub fn reduce(g: &mut Graph, op: ReduceOp, x: NodeId, axes: &[usize], keepdim: bool) -> NodeId {
    add(
        g,
        Op::Reduce {
            op,
            axes: axes.to_vec(),
            keepdim,
        },
        &[x],
    )
}

/// `softmax(x)` over the last axis, as the builder writes it.
pub fn softmax(g: &mut Graph, x: NodeId) -> NodeId {
    let last = g.node(x).shape.rank() - 1;
    let m = reduce(g, ReduceOp::Max, x, &[last], true);
    let m = add(g, Op::StopGradient, &[m]);
    let s = bin(g, BinaryOp::Sub, x, m);
    let e = un(g, UnaryOp::Exp, s);
    let z = reduce(g, ReduceOp::Sum, e, &[last], true);
    bin(g, BinaryOp::Div, e, z)
}

/// `layer_norm(x)` over the last axis with weight and bias, as the builder writes it.
pub fn layer_norm(g: &mut Graph, x: NodeId, w: NodeId, b: NodeId, eps: f64) -> NodeId {
    let last = g.node(x).shape.rank() - 1;
    let c = g.node(x).shape.0[last].as_known().unwrap_or(1) as f64;
    let dt = g.node(x).dtype;
    let count = scalar(g, c, dt);
    let sum = reduce(g, ReduceOp::Sum, x, &[last], true);
    let mu = bin(g, BinaryOp::Div, sum, count);
    let centered = bin(g, BinaryOp::Sub, x, mu);
    let sq = bin(g, BinaryOp::Mul, centered, centered);
    let ss = reduce(g, ReduceOp::Sum, sq, &[last], true);
    let count2 = scalar(g, c, dt);
    let var = bin(g, BinaryOp::Div, ss, count2);
    let e = scalar(g, eps, dt);
    let ve = bin(g, BinaryOp::Add, var, e);
    let r = un(g, UnaryOp::Rsqrt, ve);
    let y = bin(g, BinaryOp::Mul, centered, r);
    let y = bin(g, BinaryOp::Mul, y, w);
    bin(g, BinaryOp::Add, y, b)
}

/// `x @ w^T + b` with `w` shaped `[out, in]`.
pub fn linear(g: &mut Graph, x: NodeId, w: NodeId, b: NodeId) -> NodeId {
    let wt = add(g, Op::Permute(vec![1, 0]), &[w]);
    let y = add(g, Op::MatMul, &[x, wt]);
    bin(g, BinaryOp::Add, y, b)
}

/// `select(x > 0, x, 0)`.
pub fn relu(g: &mut Graph, x: NodeId) -> NodeId {
    let dt = g.node(x).dtype;
    let z = scalar(g, 0.0, dt);
    let c = bin(g, BinaryOp::Gt, x, z);
    let z2 = scalar(g, 0.0, dt);
    add(g, Op::Select, &[c, x, z2])
}

/// A small deterministic generator for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x ^ (x >> 33)
    }

    /// A float in `[-2, 2)` with 1/16 resolution (exactly representable).
    pub fn float(&mut self) -> f64 {
        (self.next() % 64) as f64 / 16.0 - 2.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Random data for a tensor of `dtype` and concrete `shape`.
pub fn random_array(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Array {
    let n: usize = shape.iter().product();
    let data = match dtype {
        DType::F32 => Data::F32((0..n).map(|_| rng.float() as f32).collect()),
        DType::F64 => Data::F64((0..n).map(|_| rng.float()).collect()),
        DType::I32 => Data::I32((0..n).map(|_| rng.below(11) as i32 - 5).collect()),
        DType::I64 => Data::I64((0..n).map(|_| rng.below(11) as i64 - 5).collect()),
        DType::U32 => Data::U32((0..n).map(|_| rng.below(11) as u32).collect()),
        DType::Bool => Data::Bool((0..n).map(|_| rng.below(2) == 1).collect()),
    };
    Array::new(shape, data).expect("random array")
}

/// Random inputs and parameters for every input and parameter of `g` under `bindings`.
pub fn random_feeds(
    g: &Graph,
    bindings: &HashMap<String, u64>,
    seed: u64,
) -> (HashMap<String, Array>, HashMap<String, Array>) {
    let mut rng = Rng(seed);
    let mut inputs = HashMap::new();
    let mut params = HashMap::new();
    for (n, name) in g.inputs() {
        let node = g.node(n);
        let shape = node.shape.eval(bindings).expect("input shape");
        inputs.insert(name.to_string(), random_array(&mut rng, node.dtype, &shape));
    }
    for (n, name) in g.parameters() {
        let node = g.node(n);
        let shape = node.shape.eval(bindings).expect("param shape");
        params.insert(name.to_string(), random_array(&mut rng, node.dtype, &shape));
    }
    (inputs, params)
}

/// Buffers by name.
pub type Named = HashMap<String, Data>;

/// Runs a lowered program on the feeds; returns the outputs by name and the final state.
pub fn execute(
    program: &VerifiedProgram,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    params: &HashMap<String, Array>,
) -> Result<(Named, Named), kiln_kernel::ExecError> {
    let mut bufs = kiln_kernel::allocate(program, bindings)?;
    for (b, buf) in program.buffers.iter().zip(bufs.iter_mut()) {
        match &b.kind {
            BufferKind::Input(n) => {
                if let Some(a) = inputs.get(n) {
                    *buf = a.data().clone();
                }
            }
            BufferKind::State(n) => {
                if let Some(a) = params.get(n) {
                    *buf = a.data().clone();
                }
            }
            BufferKind::Output(_) | BufferKind::Constant(_) | BufferKind::Scratch => {}
        }
    }
    kiln_kernel::execute(program, bindings, &mut bufs)?;
    let mut outs = HashMap::new();
    let mut state = HashMap::new();
    for (b, buf) in program.buffers.iter().zip(bufs) {
        match &b.kind {
            BufferKind::Output(n) => {
                outs.insert(n.clone(), buf);
            }
            BufferKind::State(n) => {
                state.insert(n.clone(), buf);
            }
            BufferKind::Input(_) | BufferKind::Constant(_) | BufferKind::Scratch => {}
        }
    }
    Ok((outs, state))
}

/// [`execute`] on the CPU backend (`kiln_cpu`: the program JIT-compiled with Cranelift).
pub fn execute_cpu(
    program: &VerifiedProgram,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    params: &HashMap<String, Array>,
) -> Result<Named, String> {
    let cpu = kiln_cpu::compile(program).map_err(|e| format!("cpu compile: {e}"))?;
    let mut bufs = kiln_kernel::allocate(program, bindings).map_err(|e| e.to_string())?;
    for (b, buf) in program.buffers.iter().zip(bufs.iter_mut()) {
        let src = match &b.kind {
            BufferKind::Input(n) => inputs.get(n),
            BufferKind::State(n) => params.get(n),
            BufferKind::Output(_) | BufferKind::Constant(_) | BufferKind::Scratch => None,
        };
        if let Some(a) = src {
            *buf = a.data().clone();
        }
    }
    cpu.run(bindings, &mut bufs)
        .map_err(|e| format!("cpu run: {e}"))?;
    let mut outs = HashMap::new();
    for (b, buf) in program.buffers.iter().zip(bufs) {
        if let BufferKind::Output(n) = &b.kind {
            outs.insert(n.clone(), buf);
        }
    }
    Ok(outs)
}

/// Like [`same_data`] with room for the CPU backend's polynomial transcendentals (at most a
/// few ulp each, amplified along a random chain) and its reordered float reductions:
/// floats agree within `1e-4` relative to the larger magnitude or 1 (for `f64` too: a random
/// graph's `f64` output may come from `f32` arithmetic through a cast); integers and bools
/// exactly.
pub fn close_data(a: &Data, b: &Data) -> Result<(), String> {
    fn floats(x: &[f64], y: &[f64], tol: f64) -> Result<(), String> {
        if x.len() != y.len() {
            return Err(format!("lengths {} and {}", x.len(), y.len()));
        }
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            let ok = p.to_bits() == q.to_bits()
                || (p.is_nan() && q.is_nan())
                || (p - q).abs() <= tol * p.abs().max(q.abs()).max(1.0);
            if !ok {
                return Err(format!("element {i}: {p} vs {q}"));
            }
        }
        Ok(())
    }
    match (a, b) {
        (Data::F32(x), Data::F32(y)) => {
            let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
            floats(&x, &y, 1e-4)
        }
        (Data::F64(x), Data::F64(y)) => floats(x, y, 1e-4),
        _ => same_data(a, b),
    }
}

/// Floats agree when their bits are equal, both are NaN, or they differ by at most
/// `4 * f32::EPSILON` relative (the executor's and interpreter's `erf` and summation order may
/// differ in the last `f64` bits before rounding); integers and bools must be equal.
pub fn same_data(a: &Data, b: &Data) -> Result<(), String> {
    fn floats(x: &[f64], y: &[f64], tol: f64) -> Result<(), String> {
        if x.len() != y.len() {
            return Err(format!("lengths {} and {}", x.len(), y.len()));
        }
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            let ok = p.to_bits() == q.to_bits()
                || (p.is_nan() && q.is_nan())
                || (p - q).abs() <= tol * p.abs().max(q.abs()).max(1.0);
            if !ok {
                return Err(format!("element {i}: {p} vs {q}"));
            }
        }
        Ok(())
    }
    match (a, b) {
        (Data::F32(x), Data::F32(y)) => {
            let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
            floats(&x, &y, 4.0 * f64::from(f32::EPSILON))
        }
        (Data::F64(x), Data::F64(y)) => floats(x, y, 1e-12),
        (Data::I32(x), Data::I32(y)) => (x == y)
            .then_some(())
            .ok_or_else(|| format!("{x:?} vs {y:?}")),
        (Data::I64(x), Data::I64(y)) => (x == y)
            .then_some(())
            .ok_or_else(|| format!("{x:?} vs {y:?}")),
        (Data::U32(x), Data::U32(y)) => (x == y)
            .then_some(())
            .ok_or_else(|| format!("{x:?} vs {y:?}")),
        (Data::Bool(x), Data::Bool(y)) => (x == y)
            .then_some(())
            .ok_or_else(|| format!("{x:?} vs {y:?}")),
        _ => Err(format!("dtypes {} and {}", a.dtype(), b.dtype())),
    }
}

/// Lowers `outputs`, checks the program verifies, runs it and the interpreter on random
/// feeds, and compares every output. Returns the report.
pub fn check_against_interp(
    g: &Graph,
    outputs: &[NodeId],
    bindings: &HashMap<String, u64>,
    seed: u64,
) -> FuseReport {
    let named: Vec<(String, NodeId)> = outputs
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("out{i}"), n))
        .collect();
    let lowered =
        lower_with(g, &named, &[]).unwrap_or_else(|e| panic!("lowering failed: {e}\n{g}"));
    let (inputs, params) = random_feeds(g, bindings, seed);
    let want =
        kiln_interp::eval(g, outputs, &inputs, &params).unwrap_or_else(|e| panic!("interp: {e}"));
    let (got, _) = execute(&lowered.program, bindings, &inputs, &params)
        .unwrap_or_else(|e| panic!("exec: {e}\n{}", lowered.program));
    for (i, w) in want.iter().enumerate() {
        let gdata = &got[&format!("out{i}")];
        if let Err(m) = same_data(w.data(), gdata) {
            panic!(
                "output {i} differs: {m}\ngraph:\n{g}\nprogram:\n{}",
                lowered.program
            );
        }
    }
    lowered.report
}

/// `{N: n}`.
pub fn bind_n(n: u64) -> HashMap<String, u64> {
    HashMap::from([("N".to_string(), n)])
}

/// The shape `[N, rest...]`.
pub fn n_shape(rest: &[usize]) -> Shape {
    let mut dims = vec![Dim::sym("N")];
    dims.extend(rest.iter().map(|&d| Dim::known(d as u64)));
    Shape(dims)
}

/// Every pair of scratch buffers live at a common kernel (and not sharing a slot in place)
/// occupies disjoint bytes; offsets are aligned; the arena holds every buffer.
pub fn check_plan(p: &kiln_kernel::Program, mp: &kiln_kernel::memplan::MemoryPlan) {
    let nb = p.buffers.len();
    for a in 0..nb {
        if let Some(off) = mp.offsets[a] {
            assert_eq!(off % mp.alignment, 0, "b{a} misaligned");
            if mp.lifetimes[a].is_some() {
                assert!(
                    off + mp.bytes[a] <= mp.peak_scratch_bytes,
                    "b{a} outside the arena"
                );
            }
        }
        for b in a + 1..nb {
            let (Some(la), Some(lb)) = (mp.lifetimes[a], mp.lifetimes[b]) else {
                continue;
            };
            let shared = mp.in_place.iter().any(|&(y, x)| {
                let pair = (y.index(), x.index());
                pair == (a, b) || pair == (b, a)
            });
            if la.0 <= lb.1 && lb.0 <= la.1 && !shared {
                let (oa, ob) = (mp.offsets[a].unwrap_or(0), mp.offsets[b].unwrap_or(0));
                assert!(
                    oa + mp.bytes[a] <= ob || ob + mp.bytes[b] <= oa,
                    "b{a} and b{b} are live together and overlap"
                );
            }
        }
    }
}

/// The program with every in-place pair `(y, x)` of the plan (same dtype, `y` no longer
/// than `x`) sharing one buffer, as the arena makes them share bytes: running it checks that
/// the reuse is safe.
pub fn alias_in_place(p: &Program, mp: &kiln_kernel::memplan::MemoryPlan) -> Program {
    let mut out = p.clone();
    let mut map: HashMap<kiln_kernel::BufferId, kiln_kernel::BufferId> = HashMap::new();
    for &(y, x) in &mp.in_place {
        let (by, bx) = (&p.buffers[y.index()], &p.buffers[x.index()]);
        let target = *map.get(&x).unwrap_or(&x);
        if by.dtype == bx.dtype && mp.bytes[y.index()] <= mp.bytes[x.index()] {
            map.insert(y, target);
        }
    }
    let fix = |b: &mut kiln_kernel::BufferId| {
        if let Some(t) = map.get(b) {
            *b = *t;
        }
    };
    for k in &mut out.kernels {
        let bodies: Vec<&mut kiln_kernel::Body> = match k {
            kiln_kernel::Kernel::Loop(l) => vec![&mut l.body],
            kiln_kernel::Kernel::Matmul(m) => vec![&mut m.a, &mut m.b, &mut m.epilogue],
            kiln_kernel::Kernel::Conv2d(c) => vec![&mut c.input, &mut c.weight, &mut c.epilogue],
        };
        for body in bodies {
            for e in &mut body.values {
                if let kiln_kernel::Expr::Load(l) = e {
                    fix(&mut l.buffer);
                }
            }
            for s in &mut body.stores {
                fix(&mut s.buffer);
            }
        }
    }
    out
}
