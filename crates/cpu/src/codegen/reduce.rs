//! The reduction loops: accumulators (scalar, domain-vector, or lane-wise partials of a
//! reduce-mode vector loop), their combination after the loop, and the NaN tracking of
//! float max/min partials.

use super::analysis::{VarRef, VecMode, cost_of};
use super::error::CodegenError;
use super::types::{scalar_type, vector_type};
use super::{Cg, Env, PointValue, VecCtx};
use cranelift_codegen::ir::{
    Endianness, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use cranelift_frontend::Variable;
use kiln_ir::{DType, Dim, ReduceOp};
use kiln_kernel::{Expr, Scalar};

/// A reduction being accumulated.
struct Acc {
    node: usize,
    op: ReduceOp,
    dt: DType,
    /// The reduction runs per vector point (domain mode): `var` holds a vector.
    vector: bool,
    /// The scalar (or domain-vector) accumulator.
    var: Variable,
    /// Lane-wise partial accumulators of a reduce-mode vector loop, one per unrolled
    /// vector point.
    partials: Vec<Variable>,
    /// Float max/min partials: the lanes that have seen a NaN (an integer lane mask). The
    /// partials themselves take a compare and a blend per step (a NaN never enters them)
    /// and the result becomes NaN after the loop if any lane saw one.
    nan: Option<Variable>,
}

/// The longest reduction axis of known extent that the scalar path unrolls (each axis of a
/// nest on its own, so a 2x2 window becomes four points).
const UNROLL_POINTS: u64 = 4;

/// What the loops of a reduction nest share.
struct Nest<'n> {
    extents: &'n [Dim],
    env: &'n Env,
    accs: &'n [Acc],
    /// Lanes of the reduce-mode vector loop, if any.
    red_plan: Option<u8>,
    /// Vector points per iteration of the reduce-mode vector loop.
    unroll: usize,
}

impl Cg<'_, '_> {
    /// The reduction loops, stage by stage ([`kiln_kernel::Body::stages`]); sets the values
    /// of the reduction nodes in `env`. Before each later stage it evaluates the values
    /// that stage's loop reads from the earlier ones (a softmax row's max).
    pub(super) fn reduction(&mut self, env: &mut Env) -> Result<(), CodegenError> {
        if self.phases.stages.len() <= 1 {
            return self.reduction_stage(env);
        }
        let (inner, reduces) = (self.phases.inner.clone(), self.phases.reduces.clone());
        let out = self.stages(env);
        self.stage_pins.clear();
        self.phases.inner = inner;
        self.phases.reduces = reduces;
        out
    }

    /// The loops of every stage in turn, each seeing only its reductions and their operands
    /// (`self.phases` is narrowed to the stage; [`Self::reduction`] restores it).
    fn stages(&mut self, env: &mut Env) -> Result<(), CodegenError> {
        let stages: Vec<_> = self
            .phases
            .stages
            .iter()
            .map(|st| self.phases.stage(st))
            .collect();
        for stage in stages {
            for &i in &stage.before {
                if env.vals[i].is_none() {
                    env.vals[i] = Some(self.node(i, env)?);
                }
            }
            self.stage_pins.clear();
            self.pin_stage_inputs(&stage, env);
            self.phases.inner = stage.inner;
            self.phases.reduces = stage.reduces;
            self.reduction_stage(env)?;
        }
        Ok(())
    }

    /// Stores the scalar results of earlier stages that the loops of `stage` read to stack
    /// slots ([`Self::load_stage_pins`] reads them back at each point). Left as values,
    /// Cranelift's elaboration would compute them at their first use, inside the loop (a
    /// softmax row's max, combined from its lane partials at every point of the sum).
    fn pin_stage_inputs(&mut self, stage: &super::analysis::Stage, env: &Env) {
        let n = self.job.kernel.body.values.len();
        let mut read = vec![false; n];
        for i in (0..n).filter(|&i| stage.inner[i]) {
            for &d in &self.phases.deps[i] {
                read[d] |= !stage.inner[d] && self.phases.post[d];
            }
        }
        for i in (0..n).filter(|&i| read[i]) {
            let Some(PointValue::Scalar(x)) = env.vals[i] else {
                continue;
            };
            let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                8,
                3,
            ));
            self.b.ins().stack_store(types::I64, x, slot, 0);
            self.stage_pins.push((i, slot));
        }
    }

    /// Reads the values [`Self::pin_stage_inputs`] stored into `env`.
    pub(super) fn load_stage_pins(&mut self, env: &mut Env) {
        for (i, slot) in self.stage_pins.clone() {
            let ty = scalar_type(self.dtypes[i]);
            let v = self.b.ins().stack_load(types::I64, ty, slot, 0);
            env.vals[i] = Some(PointValue::Scalar(v));
        }
    }

    /// The reduction loops of the reductions in `self.phases.reduces`.
    fn reduction_stage(&mut self, env: &mut Env) -> Result<(), CodegenError> {
        let reduces = self.phases.reduces.clone();
        // Reduce-mode vectors only appear inside the innermost reduction loop.
        let red_plan = match env.vec {
            Some(_) => None,
            None => self
                .plans
                .iter()
                .find(|p| p.mode == VecMode::Reduce)
                .map(|p| p.lanes),
        };
        let unroll = red_plan.map_or(1, |_| self.reduce_unroll());
        let mut accs = Vec::new();
        for &r in &reduces {
            let Expr::Reduce { op, init, .. } = self.job.kernel.body.values[r].clone() else {
                continue;
            };
            let dt = self.dtypes[r];
            let vector = self.is_vector_node(r, env);
            let init_v = self.constant(init);
            let (var, partials, nan) = if vector {
                let lanes = env.vec.map_or(4, |v| v.lanes);
                let ty = vector_type(dt, lanes);
                let var = self.b.declare_var(ty);
                let s = self.b.ins().splat(ty, init_v);
                self.b.def_var(var, s);
                (var, Vec::new(), None)
            } else {
                let var = self.b.declare_var(scalar_type(dt));
                self.b.def_var(var, init_v);
                let mut partials = Vec::new();
                let mut nan = None;
                if let Some(lanes) = red_plan {
                    let ty = vector_type(dt, lanes);
                    let id = self.identity(op, dt);
                    let s = self.b.ins().splat(ty, id);
                    for _ in 0..unroll {
                        let v = self.b.declare_var(ty);
                        self.b.def_var(v, s);
                        partials.push(v);
                    }
                    if matches!(op, ReduceOp::Max | ReduceOp::Min) && dt.is_float() {
                        let mty = ty.as_int();
                        let m = self.b.declare_var(mty);
                        let z = self.b.ins().iconst(mty.lane_type(), 0);
                        let zs = self.b.ins().splat(mty, z);
                        self.b.def_var(m, zs);
                        nan = Some(m);
                    }
                }
                (var, partials, nan)
            };
            accs.push(Acc {
                node: r,
                op,
                dt,
                vector,
                var,
                partials,
                nan,
            });
        }
        let extents = self.job.kernel.reduce.clone();
        if extents.is_empty() {
            return Err(CodegenError::NoReductionAxes);
        }
        let zero = self.b.ins().iconst(types::I64, 0);
        let reds = vec![zero; extents.len()];
        let wide = self.row_wide_nodes(env, red_plan);
        if let (false, Some(lanes)) = (wide.is_empty(), red_plan) {
            let (cone, only) = self.row_wide_cone(&wide);
            self.row_wide_prepass(env, &wide, lanes, &cone)?;
            self.row_wide = wide;
            self.row_wide_skip = only;
        }
        let nest = Nest {
            extents: &extents,
            env,
            accs: &accs,
            red_plan,
            unroll,
        };
        let looped = self.reduce_nest(&nest, 0, &reds);
        self.row_wide.clear();
        self.row_wide_skip.clear();
        looped?;
        for a in &accs {
            let mut v = self.b.use_var(a.var);
            if !a.partials.is_empty() {
                // Pairwise combination of the partial vectors, then the lanes in order.
                let mut parts: Vec<Value> = a.partials.iter().map(|&p| self.b.use_var(p)).collect();
                while parts.len() > 1 {
                    let mut next = Vec::with_capacity(parts.len().div_ceil(2));
                    for pair in parts.chunks(2) {
                        next.push(match pair {
                            [x, y] => self.combine(a.op, a.dt, *x, *y, true),
                            [x] => *x,
                            _ => return Err(CodegenError::Internal("empty partial pair")),
                        });
                    }
                    parts = next;
                }
                let lanes = red_plan.unwrap_or(4);
                for l in 0..lanes {
                    let x = self.b.ins().extractlane(parts[0], l);
                    v = self.combine(a.op, a.dt, v, x, false);
                }
                if let Some(m) = a.nan {
                    let m = self.b.use_var(m);
                    let any = self.b.ins().vany_true(m);
                    let nan = match a.dt {
                        DType::F64 => self.b.ins().f64const(f64::NAN),
                        _ => self.b.ins().f32const(f32::NAN),
                    };
                    v = self.b.ins().select(any, nan, v);
                }
            }
            env.vals[a.node] = Some(if a.vector {
                PointValue::Vector(v)
            } else {
                PointValue::Scalar(v)
            });
        }
        Ok(())
    }

    /// How many vectors of partial accumulators a reduce-mode vector loop keeps (and how
    /// many vector points one iteration evaluates): enough independent chains to hide the
    /// latency of the combining instruction when the terms are cheap, two otherwise.
    fn reduce_unroll(&self) -> usize {
        let cost: u32 = self
            .job
            .kernel
            .body
            .values
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.phases.inner[i])
            .map(|(_, e)| cost_of(e))
            .sum();
        if cost <= 8 { 4 } else { 2 }
    }

    /// Emits reduction loop `k` of the nest (and the loops inside it).
    fn reduce_nest(&mut self, n: &Nest<'_>, k: usize, reds: &[Value]) -> Result<(), CodegenError> {
        let extent = &n.extents[k];
        let hi = self.dim(extent)?;
        let lo = self.b.ins().iconst(types::I64, 0);
        if k + 1 < n.extents.len() {
            let mut inner = reds.to_vec();
            if let Some(e) = extent.as_known()
                && n.red_plan.is_none()
                && e <= UNROLL_POINTS
            {
                for j in 0..e {
                    inner[k] = self.b.ins().iconst(types::I64, j as i64);
                    self.reduce_nest(n, k + 1, &inner)?;
                }
                return Ok(());
            }
            self.for_range(lo, hi, 1, &mut |cg, i| {
                inner[k] = i;
                cg.reduce_nest(n, k + 1, &inner)
            })?;
            return Ok(());
        }
        let known = extent.as_known();
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, lo);
        if let Some(lanes) = n.red_plan {
            let lanes_i = i64::from(lanes);
            // Steps that are multiples of the extent need no loop after them.
            let needed = |step: i64| known.is_none_or(|e| e % step.unsigned_abs() != 0);
            let mut steps = vec![lanes_i * n.unroll as i64];
            if n.unroll > 1 && needed(steps[0]) {
                steps.push(lanes_i);
            }
            for (s, &step) in steps.iter().enumerate() {
                let group = if s == 0 { n.unroll } else { 1 };
                let whole = self.b.ins().band_imm_s(hi, !(step - 1));
                let mut vr = reds.to_vec();
                self.for_var(var, whole, step, &mut |cg, i| {
                    let mut points = Vec::with_capacity(group);
                    for g in 0..group {
                        vr[k] = if g == 0 {
                            i
                        } else {
                            cg.b.ins().iadd_imm_s(i, lanes_i * g as i64)
                        };
                        let mut e = n.env.clone();
                        e.reds = vr.clone();
                        e.vec = Some(VecCtx {
                            var: VarRef::Red(k),
                            lanes,
                        });
                        cg.load_stage_pins(&mut e);
                        cg.inner_nodes(&mut e)?;
                        cg.keep(&e, k)?;
                        points.push(e);
                    }
                    for a in n.accs {
                        let mut xs = Vec::with_capacity(points.len());
                        for (g, e) in points.iter().enumerate() {
                            let Some(&lv) = a.partials.get(g) else {
                                continue;
                            };
                            let x = cg.operand_of(a.node, e)?;
                            let x = cg.broadcast(x, a.dt, lanes);
                            let cur = cg.b.use_var(lv);
                            let next = match a.nan {
                                Some(_) => cg.max_min_step(a.op, cur, x),
                                None => cg.combine(a.op, a.dt, cur, x, true),
                            };
                            cg.b.def_var(lv, next);
                            xs.push(x);
                        }
                        if let Some(m) = a.nan {
                            cg.note_nans(m, &xs);
                        }
                    }
                    Ok(())
                })?;
            }
            if !needed(lanes_i) {
                return Ok(());
            }
        }
        let mut sr = reds.to_vec();
        let vec_lanes = n.env.vec.map_or(4, |v| v.lanes);
        let mut point = |cg: &mut Self, i: Value| {
            sr[k] = i;
            let mut e = n.env.clone();
            e.reds = sr.clone();
            cg.load_stage_pins(&mut e);
            cg.inner_nodes(&mut e)?;
            cg.keep(&e, k)?;
            for a in n.accs {
                let x = cg.operand_of(a.node, &e)?;
                let x = match (a.vector, x) {
                    (true, x) => cg.broadcast(x, a.dt, vec_lanes),
                    (false, PointValue::Scalar(x)) => x,
                    (false, PointValue::Vector(_)) => {
                        return Err(CodegenError::VectorOperandOfScalarReduction);
                    }
                };
                let cur = cg.b.use_var(a.var);
                let next = if a.vector {
                    cg.combine(a.op, a.dt, cur, x, true)
                } else {
                    cg.scalar_step(a.op, a.dt, cur, x)
                };
                cg.b.def_var(a.var, next);
            }
            Ok(())
        };
        // Short scalar reduction axes (a 2x2 pooling window) are unrolled: their loops'
        // compares and branches cost more than their points.
        match known {
            Some(e) if n.red_plan.is_none() && e <= UNROLL_POINTS => {
                for j in 0..e {
                    let i = self.b.ins().iconst(types::I64, j as i64);
                    point(self, i)?;
                }
            }
            _ => self.for_var(var, hi, 1, &mut point)?,
        }
        Ok(())
    }

    /// One step of a scalar reduction. Float max and min take a compare and a `cmov`
    /// (through [`Self::select_scalar`]): `x` replaces `acc` when it beats it or is NaN, so
    /// a NaN, once in, stays (nothing beats it). Cranelift's `fmax` is a sequence with
    /// branches that mispredict on data such as a ReLU's zeros (equal operands take
    /// another path).
    fn scalar_step(&mut self, op: ReduceOp, dt: DType, acc: Value, x: Value) -> Value {
        let cc = match op {
            ReduceOp::Max if dt.is_float() => FloatCC::GreaterThan,
            ReduceOp::Min if dt.is_float() => FloatCC::LessThan,
            _ => return self.combine(op, dt, acc, x, false),
        };
        let beats = self.b.ins().fcmp(cc, x, acc);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        let take = self.b.ins().bor(beats, nan);
        self.select_scalar(take, x, acc)
    }

    /// Evaluates the nodes that vary over the reduction domain and feed a reduction.
    fn inner_nodes(&mut self, env: &mut Env) -> Result<(), CodegenError> {
        for i in 0..self.job.kernel.body.values.len() {
            if !self.phases.inner[i] || self.row_wide_skip.get(i).copied().unwrap_or(false) {
                continue;
            }
            let v = match self.row_wide.iter().find(|w| w.node == i).copied() {
                Some(w) => self.load_row_wide(&w, env)?,
                None => self.node(i, env)?,
            };
            env.vals[i] = Some(v);
        }
        Ok(())
    }

    /// The value a reduction node folds at the current reduction point.
    fn operand_of(&self, r: usize, env: &Env) -> Result<PointValue, CodegenError> {
        let dep = self.phases.deps[r]
            .first()
            .copied()
            .ok_or(CodegenError::ReductionWithoutOperand)?;
        env.vals[dep].ok_or(CodegenError::ReducedNotEvaluated(dep))
    }

    /// The neutral element of a reduction.
    fn identity(&mut self, op: ReduceOp, dt: DType) -> Value {
        let s = match (op, dt) {
            (ReduceOp::Sum, DType::F32) => Scalar::F32(-0.0),
            (ReduceOp::Sum, DType::F64) => Scalar::F64(-0.0),
            (ReduceOp::Prod, _) => Scalar::from_i64(dt, 1),
            (ReduceOp::Sum, _) => Scalar::zero(dt),
            (ReduceOp::Max, DType::F32) => Scalar::F32(f32::NEG_INFINITY),
            (ReduceOp::Max, DType::F64) => Scalar::F64(f64::NEG_INFINITY),
            (ReduceOp::Max, DType::I32) => Scalar::I32(i32::MIN),
            (ReduceOp::Max, DType::I64) => Scalar::I64(i64::MIN),
            (ReduceOp::Max, _) => Scalar::zero(dt),
            (ReduceOp::Min, DType::F32) => Scalar::F32(f32::INFINITY),
            (ReduceOp::Min, DType::F64) => Scalar::F64(f64::INFINITY),
            (ReduceOp::Min, DType::I32) => Scalar::I32(i32::MAX),
            (ReduceOp::Min, DType::I64) => Scalar::I64(i64::MAX),
            (ReduceOp::Min, DType::U32) => Scalar::U32(u32::MAX),
            (ReduceOp::Min, _) => Scalar::Bool(true),
        };
        self.constant(s)
    }

    /// One reduction step `op(acc, x)` on scalars or vectors.
    fn combine(&mut self, op: ReduceOp, dt: DType, acc: Value, x: Value, vector: bool) -> Value {
        let ins = self.b.ins();
        match (op, dt.is_float()) {
            (ReduceOp::Sum, true) => ins.fadd(acc, x),
            (ReduceOp::Prod, true) => ins.fmul(acc, x),
            (ReduceOp::Max, true) => ins.fmax(acc, x),
            (ReduceOp::Min, true) => ins.fmin(acc, x),
            (ReduceOp::Sum, false) => ins.iadd(acc, x),
            (ReduceOp::Prod, false) => ins.imul(acc, x),
            (ReduceOp::Max | ReduceOp::Min, false) => {
                let cc = match (op, dt == DType::U32) {
                    (ReduceOp::Max, true) => IntCC::UnsignedGreaterThan,
                    (ReduceOp::Max, false) => IntCC::SignedGreaterThan,
                    (_, true) => IntCC::UnsignedLessThan,
                    (_, false) => IntCC::SignedLessThan,
                };
                let c = self.b.ins().icmp(cc, x, acc);
                if vector {
                    self.b.ins().bitselect(c, x, acc)
                } else {
                    self.b.ins().select(c, x, acc)
                }
            }
        }
    }

    /// One float max/min step of a partial vector that never holds a NaN: `x` replaces
    /// the lanes of `acc` it beats (a compare and a blend; a NaN never does, see
    /// [`Self::note_nans`]).
    fn max_min_step(&mut self, op: ReduceOp, acc: Value, x: Value) -> Value {
        let cc = if op == ReduceOp::Min {
            FloatCC::LessThan
        } else {
            FloatCC::GreaterThan
        };
        let ty = self.b.func.dfg.value_type(acc);
        let flags = MemFlagsData::new().with_endianness(Endianness::Little);
        let beats = self.b.ins().fcmp(cc, x, acc);
        let mask = self.b.ins().bitcast(ty, flags, beats);
        self.b.ins().bitselect(mask, x, acc)
    }

    /// ORs into the lane mask variable `nan` the lanes where any of `xs` is NaN: one
    /// unordered compare per pair of vectors, combined as a tree (one step of the
    /// loop-carried chain per iteration).
    fn note_nans(&mut self, nan: Variable, xs: &[Value]) {
        let mut masks: Vec<Value> = xs
            .chunks(2)
            .filter_map(|p| {
                let (&a, &b) = (p.first()?, p.last()?);
                Some(self.b.ins().fcmp(FloatCC::Unordered, a, b))
            })
            .collect();
        while masks.len() > 1 {
            masks = masks
                .chunks(2)
                .filter_map(|p| match p {
                    [a, b] => Some(self.b.ins().bor(*a, *b)),
                    _ => p.first().copied(),
                })
                .collect();
        }
        if let Some(&m) = masks.first() {
            let seen = self.b.use_var(nan);
            let seen = self.b.ins().bor(seen, m);
            self.b.def_var(nan, seen);
        }
    }
}
