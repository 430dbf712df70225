//! Differential property test: random graphs (random ops, shapes with a symbolic batch,
//! broadcasting, movement chains, reductions, contractions, gathers and scatters) evaluated
//! by the graph interpreter and by `lower` + the kernel executor on the same feeds.
//!
//! Integers and bools must agree exactly; floats must agree bit for bit or within
//! `4 * f32::EPSILON` relative (`1e-12` for `f64`), which covers the two crates' independent
//! `erf` implementations. 1,000 cases by default; set `PROPTEST_CASES` for more.
//!
//! A second property runs the same kind of programs JIT-compiled on the CPU backend
//! (`kiln_cpu`: Cranelift, SIMD, polynomial transcendentals, GEMM, reordered float
//! reductions), whose floats must agree within `1e-4` relative (`fuse_util::close_data`).
//! It keeps only graphs without discontinuous float ops (`rem`, `floor`, `ceil`, `round`,
//! `sign`, comparisons, `argmax`/`argmin`, casts to integers or bool) or ill-conditioned
//! ones (`sin`/`cos` of a large argument, `exp`, `pow`): after one of those a last-bit
//! difference upstream (f32 accumulation here, f64 in the interpreter) may legitimately become
//! a large one. Those functions' accuracy is measured on their own (docs/numerics.md).
//! 1,000 accepted cases by default.

use crate::fuse_util;

use fuse_util::*;
use kiln_ir::{
    ArgOp, Array, BinaryOp, DType, Dim, F64Bits, Graph, NodeId, Op, ReduceOp, Shape, SliceAxis,
    UnaryOp, WindowOp,
};
use kiln_passes::fuse::lower;
use proptest::prelude::*;
use std::collections::HashMap;

const UNARY: [UnaryOp; UnaryOp::ALL.len()] = UnaryOp::ALL;
const BINARY: [BinaryOp; 17] = BinaryOp::ALL;
const DTYPES: [DType; 5] = [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool];

struct Builder {
    g: Graph,
    lead: Dim,
    pool: Vec<NodeId>,
    fresh: usize,
}

impl Builder {
    fn try_add(&mut self, op: Op, operands: &[NodeId]) -> Option<NodeId> {
        let id = self.g.add(op, operands).ok()?;
        self.pool.push(id);
        Some(id)
    }

    fn shape(&self, n: NodeId) -> Vec<Dim> {
        self.g.node(n).shape.0.clone()
    }

    fn dtype(&self, n: NodeId) -> DType {
        self.g.node(n).dtype
    }

    fn known(&self, n: NodeId) -> Vec<Option<u64>> {
        self.shape(n).iter().map(Dim::as_known).collect()
    }

    fn new_input(&mut self, dtype: DType, shape: Shape) -> NodeId {
        self.fresh += 1;
        let name = format!("in{}", self.fresh);
        add(&mut self.g, Op::Input { name, dtype, shape }, &[])
    }

    fn konst(&mut self, v: f64, dtype: DType) -> NodeId {
        add(&mut self.g, Op::Constant(Array::scalar(dtype, v)), &[])
    }

    /// A valid index tensor of `shape` for an axis of size `size`: `rem(int input, size)`.
    fn index_for(&mut self, shape: Shape, size: &Dim) -> Option<NodeId> {
        let raw = self.new_input(DType::I64, shape);
        let m = match size.as_known() {
            Some(k) if k > 0 => self.konst(k as f64, DType::I64),
            _ => return None,
        };
        self.g.add(Op::Binary(BinaryOp::Rem), &[raw, m]).ok()
    }

    fn step(&mut self, ins: [u8; 4]) {
        let pick = |b: &Builder, k: u8| b.pool[k as usize % b.pool.len()];
        // Mostly extend the newest node, so chains grow deep.
        let x = if ins[1] & 0xc0 != 0 {
            *self.pool.last().unwrap_or(&self.pool[0])
        } else {
            pick(self, ins[1])
        };
        let y = pick(self, ins[2]);
        let r = ins[3] as usize;
        let shape = self.shape(x);
        let rank = shape.len();
        let dt = self.dtype(x);
        match ins[0] % 22 {
            0 | 1 => {
                let u = UNARY[r % UNARY.len()];
                self.try_add(Op::Unary(u), &[x]);
            }
            2 | 3 => {
                let b = BINARY[r % BINARY.len()];
                self.try_add(Op::Binary(b), &[x, y]);
            }
            4 => {
                let b = BINARY[r % BINARY.len()];
                let c = self.konst((r % 7) as f64 - 2.5, dt);
                let ops = if r.is_multiple_of(2) { [x, c] } else { [c, x] };
                self.try_add(Op::Binary(b), &ops);
            }
            5 => {
                let op = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod][r % 4];
                let axes: Vec<usize> = (0..rank).filter(|a| (ins[2] >> a) & 1 == 1).collect();
                self.try_add(
                    Op::Reduce {
                        op,
                        axes,
                        keepdim: r & 4 != 0,
                    },
                    &[x],
                );
            }
            6 if rank > 0 => {
                let op = if r.is_multiple_of(2) {
                    ArgOp::ArgMax
                } else {
                    ArgOp::ArgMin
                };
                self.try_add(
                    Op::ArgReduce {
                        op,
                        axis: (r / 2) % rank,
                        keepdim: r & 8 != 0,
                    },
                    &[x],
                );
            }
            7 => {
                // Reshape: flatten, merge two adjacent axes, split a known axis, or add a 1.
                let mut dims = shape.clone();
                match r % 4 {
                    0 => dims = vec![Dim::product(&shape)],
                    1 if rank >= 2 => {
                        let a = (r / 4) % (rank - 1);
                        let m = &dims[a] * &dims[a + 1];
                        dims.splice(a..a + 2, [m]);
                    }
                    2 if rank >= 1 => {
                        let a = (r / 4) % rank;
                        if let Some(k) = dims[a].as_known()
                            && let Some(f) = (2..k).find(|f| k % f == 0)
                        {
                            dims.splice(a..a + 1, [Dim::known(f), Dim::known(k / f)]);
                        }
                    }
                    _ => dims.insert((r / 4) % (rank + 1), Dim::known(1)),
                }
                self.try_add(Op::Reshape(Shape(dims)), &[x]);
            }
            8 if rank >= 2 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                let mut s = r;
                for i in (1..rank).rev() {
                    perm.swap(i, s % (i + 1));
                    s /= i + 1;
                }
                self.try_add(Op::Permute(perm), &[x]);
            }
            9 => {
                let mut dims: Vec<Dim> = shape
                    .iter()
                    .map(|d| if d.is_one() { Dim::known(3) } else { d.clone() })
                    .collect();
                if r.is_multiple_of(2) {
                    dims.insert(0, Dim::known(2));
                }
                self.try_add(Op::Expand(Shape(dims)), &[x]);
            }
            10 => {
                let axes: Vec<SliceAxis> = self
                    .known(x)
                    .iter()
                    .enumerate()
                    .map(|(i, k)| match k {
                        Some(k) if *k > 0 => {
                            let v = r.rotate_left(i as u32 * 2) as u64;
                            let start = v % k;
                            let stop = start + 1 + (v / 3) % (k - start);
                            SliceAxis {
                                start,
                                stop,
                                step: 1 + (v / 7) % 2,
                            }
                        }
                        _ => SliceAxis {
                            start: 0,
                            stop: u64::MAX,
                            step: 1,
                        },
                    })
                    .collect();
                self.try_add(Op::Slice(axes), &[x]);
            }
            11 => {
                let pads: Vec<(u64, u64)> = (0..rank)
                    .map(|i| (((r >> i) % 3) as u64, ((r >> (i + 2)) % 2) as u64))
                    .collect();
                let value = F64Bits::new((r % 5) as f64 - 1.0);
                self.try_add(Op::Pad { pads, value }, &[x]);
            }
            12 if rank > 0 => {
                let axis = r % rank;
                let parts = if self.shape(y) == shape && r.is_multiple_of(2) {
                    vec![x, y]
                } else {
                    vec![x, x, y]
                };
                self.try_add(Op::Concat { axis }, &parts);
            }
            13 if rank > 0 => {
                let axes: Vec<usize> = (0..rank).filter(|a| (r >> a) & 1 == 1).collect();
                self.try_add(Op::Flip { axes }, &[x]);
            }
            14 => {
                let z = self.konst(0.5, dt);
                if let Ok(c) = self.g.add(Op::Binary(BinaryOp::Gt), &[x, z]) {
                    self.try_add(Op::Select, &[c, x, y]);
                }
            }
            15 => {
                let to = DTYPES[r % DTYPES.len()];
                self.try_add(Op::Cast(to), &[x]);
            }
            16 if rank >= 1 && dt.is_float() => {
                if let Some(k) = shape[rank - 1].as_known() {
                    self.fresh += 1;
                    let name = format!("w{}", self.fresh);
                    let n = 1 + (r % 3) as u64;
                    let w = add(
                        &mut self.g,
                        Op::Parameter {
                            name,
                            dtype: dt,
                            shape: Shape::known(&[n as usize, k as usize]),
                        },
                        &[],
                    );
                    let wt = add(&mut self.g, Op::Permute(vec![1, 0]), &[w]);
                    let a = if rank == 1 {
                        add(
                            &mut self.g,
                            Op::Reshape(Shape(vec![Dim::known(1), shape[0].clone()])),
                            &[x],
                        )
                    } else {
                        x
                    };
                    self.try_add(Op::MatMul, &[a, wt]);
                }
            }
            17 if rank >= 2 => {
                let kn = self.known(x);
                let k = 1 + (r % 2);
                let trail = &kn[rank - k..];
                if trail.iter().all(|d| d.is_some_and(|d| d >= 2)) {
                    let window: Vec<u64> = vec![2; k];
                    let stride: Vec<u64> = (0..k).map(|i| 1 + ((r >> i) % 2) as u64).collect();
                    let padding: Vec<(u64, u64)> =
                        (0..k).map(|i| (((r >> (i + 3)) % 2) as u64, 0)).collect();
                    let op = if r & 32 != 0 {
                        WindowOp::Max
                    } else {
                        WindowOp::Sum
                    };
                    self.try_add(
                        Op::Window {
                            op,
                            window,
                            stride,
                            padding,
                        },
                        &[x],
                    );
                }
            }
            18 if rank >= 1 => {
                let axis = r % rank;
                let mut ishape = shape.clone();
                ishape[axis] = Dim::known(1 + (r % 3) as u64);
                if let Some(idx) = self.index_for(Shape(ishape), &shape[axis]) {
                    self.try_add(Op::Gather { axis }, &[x, idx]);
                }
            }
            19 if rank >= 1 && dt != DType::Bool => {
                let axis = r % rank;
                let mut ishape = shape.clone();
                ishape[axis] = Dim::known(1 + (r % 3) as u64);
                if let Some(idx) = self.index_for(Shape(ishape.clone()), &shape[axis]) {
                    let src = self.new_input(dt, Shape(ishape));
                    self.try_add(Op::ScatterAdd { axis }, &[x, idx, src]);
                }
            }
            20 => {
                if r.is_multiple_of(2) {
                    let key = add(
                        &mut self.g,
                        Op::Constant(Array::from_u32(&[2], vec![r as u32, 99]).expect("key")),
                        &[],
                    );
                    self.try_add(
                        Op::RandomBits {
                            shape: Shape(shape.clone()),
                        },
                        &[key],
                    );
                } else if rank > 0 {
                    self.try_add(
                        Op::Iota {
                            dtype: [DType::F32, DType::I32, DType::I64][r % 3],
                            shape: Shape(shape.clone()),
                            axis: r % rank,
                        },
                        &[],
                    );
                }
            }
            21 => {
                // Conv2d on a fresh NCHW input, then fed back into the pool.
                let c = 1 + (r % 2) as u64;
                let xin = self.new_input(
                    DType::F32,
                    Shape(vec![
                        self.lead.clone(),
                        Dim::known(c * 2),
                        Dim::known(4),
                        Dim::known(5),
                    ]),
                );
                self.fresh += 1;
                let groups = 1 + (r % 2) as u64;
                let w = add(
                    &mut self.g,
                    Op::Parameter {
                        name: format!("k{}", self.fresh),
                        dtype: DType::F32,
                        shape: Shape::known(&[
                            2 * groups as usize,
                            (c * 2 / groups) as usize,
                            2,
                            3,
                        ]),
                    },
                    &[],
                );
                let op = Op::Conv2d {
                    stride: [1 + (r % 2) as u64, 1],
                    padding: [(r % 2) as u64, ((r >> 1) % 2) as u64],
                    dilation: [1, 1 + ((r >> 2) % 2) as u64],
                    groups,
                };
                self.try_add(op, &[xin, w]);
            }
            _ => {
                self.try_add(Op::StopGradient, &[x]);
            }
        }
    }
}

fn build(symbolic: bool, dims: [u8; 3], ops: &[[u8; 4]]) -> (Graph, Vec<NodeId>) {
    let d = |v: u8| Dim::known(1 + (v % 4) as u64);
    let lead = if symbolic { Dim::sym("N") } else { d(dims[0]) };
    let mut b = Builder {
        g: Graph::new(),
        lead: lead.clone(),
        pool: Vec::new(),
        fresh: 0,
    };
    let x = b.new_input(
        DType::F32,
        Shape(vec![lead.clone(), d(dims[1]), d(dims[2])]),
    );
    let v = b.new_input(DType::F32, Shape(vec![d(dims[2])]));
    let i = b.new_input(DType::I32, Shape(vec![lead, d(dims[1])]));
    b.pool.extend([x, v, i]);
    for &ins in ops {
        b.step(ins);
    }
    let mut outs = vec![*b.pool.last().expect("pool")];
    for k in [dims[0], dims[1]] {
        let o = b.pool[k as usize % b.pool.len()];
        if !outs.contains(&o) && k % 2 == 0 {
            outs.push(o);
        }
    }
    (b.g, outs)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, max_global_rejects: cases(), ..ProptestConfig::default() })]

    #[test]
    fn fused_program_matches_interpreter(
        symbolic in any::<bool>(),
        dims in any::<[u8; 3]>(),
        ops in proptest::collection::vec(any::<[u8; 4]>(), 1..20),
        n in 1u64..4,
        seed in any::<u64>(),
    ) {
        let (g, outs) = build(symbolic, dims, &ops);
        let bindings: HashMap<String, u64> = if symbolic { bind_n(n) } else { HashMap::new() };
        let named: Vec<(String, NodeId)> = outs.iter().enumerate().map(|(i, &o)| (format!("out{i}"), o)).collect();
        let program = match lower(&g, &named) {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("lowering failed: {e}\n{g}"))),
        };
        let mp = kiln_kernel::memplan::plan(&program, &bindings);
        prop_assert!(mp.is_ok());
        if let Ok(mp) = &mp {
            check_plan(&program, mp);
        }
        let (inputs, params) = random_feeds(&g, &bindings, seed);
        let want = kiln_interp::eval(&g, &outs, &inputs, &params);
        prop_assume!(want.is_ok());
        let want = want.unwrap_or_default();
        let got = execute(&program, &bindings, &inputs, &params);
        let (got, _) = match got {
            Ok(v) => v,
            Err(e) => return Err(TestCaseError::fail(format!("exec failed: {e}\ngraph:\n{g}\nprogram:\n{program}"))),
        };
        for (i, w) in want.iter().enumerate() {
            if let Err(m) = same_data(w.data(), &got[&format!("out{i}")]) {
                return Err(TestCaseError::fail(format!("output {i}: {m}\ngraph:\n{g}\nprogram:\n{program}")));
            }
        }
        // The memory plan's in-place reuse is safe: the same program with each reused pair
        // sharing one buffer still verifies and computes the same outputs.
        if let Ok(mp) = &mp && !mp.in_place.is_empty() {
            let aliased = alias_in_place(&program, mp);
            let text = aliased.to_string();
            let aliased = kiln_kernel::verify(aliased);
            prop_assert!(aliased.is_ok(), "aliased program does not verify:\n{text}");
            let aliased = aliased.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (again, _) = execute(&aliased, &bindings, &inputs, &params)
                .map_err(|e| TestCaseError::fail(format!("aliased exec: {e}")))?;
            for (i, w) in want.iter().enumerate() {
                if let Err(m) = same_data(w.data(), &again[&format!("out{i}")]) {
                    return Err(TestCaseError::fail(format!("aliased output {i}: {m}\nprogram:\n{aliased}")));
                }
            }
        }
    }
}

/// True when no float value of `g` goes through a discontinuous op (see the module docs).
fn well_conditioned(g: &Graph) -> bool {
    g.node_ids().into_iter().all(|id| {
        let float_in = g.operands(id).iter().any(|&o| g.node(o).dtype.is_float());
        let discontinuous = match &g.node(id).op {
            Op::Unary(u) => matches!(
                u,
                UnaryOp::Floor
                    | UnaryOp::Ceil
                    | UnaryOp::Round
                    | UnaryOp::Sign
                    | UnaryOp::IsNan
                    | UnaryOp::Sin
                    | UnaryOp::Cos
                    | UnaryOp::Exp
            ),
            Op::Binary(b) => matches!(
                b,
                BinaryOp::Rem
                    | BinaryOp::Pow
                    | BinaryOp::Eq
                    | BinaryOp::Ne
                    | BinaryOp::Lt
                    | BinaryOp::Le
                    | BinaryOp::Gt
                    | BinaryOp::Ge
            ),
            Op::ArgReduce { .. } => true,
            Op::Cast(to) => !to.is_float(),
            _ => false,
        };
        !(float_in && discontinuous)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, max_global_rejects: cases() * 20, ..ProptestConfig::default() })]

    #[test]
    fn cpu_backend_matches_interpreter(
        symbolic in any::<bool>(),
        dims in any::<[u8; 3]>(),
        ops in proptest::collection::vec(any::<[u8; 4]>(), 1..20),
        n in 1u64..4,
        seed in any::<u64>(),
    ) {
        let (g, outs) = build(symbolic, dims, &ops);
        prop_assume!(well_conditioned(&g));
        let bindings: HashMap<String, u64> = if symbolic { bind_n(n) } else { HashMap::new() };
        let named: Vec<(String, NodeId)> = outs.iter().enumerate().map(|(i, &o)| (format!("out{i}"), o)).collect();
        let program = lower(&g, &named)
            .map_err(|e| TestCaseError::fail(format!("lowering failed: {e}\n{g}")))?;
        let (inputs, params) = random_feeds(&g, &bindings, seed);
        let want = kiln_interp::eval(&g, &outs, &inputs, &params);
        prop_assume!(want.is_ok());
        let want = want.unwrap_or_default();
        let got = execute_cpu(&program, &bindings, &inputs, &params)
            .map_err(|e| TestCaseError::fail(format!("{e}\ngraph:\n{g}\nprogram:\n{program}")))?;
        for (i, w) in want.iter().enumerate() {
            if let Err(m) = close_data(w.data(), &got[&format!("out{i}")]) {
                return Err(TestCaseError::fail(format!("cpu output {i}: {m}\ngraph:\n{g}\nprogram:\n{program}")));
            }
        }
    }
}
