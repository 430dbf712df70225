//! Body nodes at a point: scalar semantics, vector semantics where the op allows, and
//! lane-by-lane scalar code otherwise.

use super::analysis::VarRef;
use super::error::CodegenError;
use super::types::vector_type;
use super::{Cg, Env, PointValue, VecCtx};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Value, condcodes::IntCC, types};
use kiln_ir::DType;
use kiln_kernel::{Expr, ValueId};

impl Cg<'_, '_> {
    /// Emits node `i` in `env` (vector form when the plan says so and `env` is a vector
    /// point).
    pub(super) fn node(&mut self, i: usize, env: &Env) -> Result<PointValue, CodegenError> {
        let e = self.job.kernel.body.values[i].clone();
        if self.is_vector_node(i, env) {
            let ctx = env
                .vec
                .ok_or(CodegenError::Internal("vector node without context"))?;
            return self.vector_node(i, &e, env, ctx).map(PointValue::Vector);
        }
        self.scalar_node(i, &e, env).map(PointValue::Scalar)
    }

    fn scalar_operand(&self, v: ValueId, env: &Env) -> Result<Value, CodegenError> {
        match env.vals.get(v.index()).copied().flatten() {
            Some(PointValue::Scalar(x)) => Ok(x),
            Some(PointValue::Vector(_)) => Err(CodegenError::VectorInScalarNode(v)),
            None => Err(CodegenError::UsedBeforeDefined(v)),
        }
    }

    /// Scalar semantics of node `i`.
    fn scalar_node(&mut self, i: usize, e: &Expr, env: &Env) -> Result<Value, CodegenError> {
        let dt = self.dtypes[i];
        match e {
            Expr::Const(s) => Ok(self.constant(*s)),
            Expr::Index { dtype, index } => {
                let ix = self.index(index, env)?;
                Ok(self.int_to(ix, *dtype))
            }
            Expr::Load(l) => self.load_scalar(l, env),
            Expr::Unary(op, a) => {
                let x = self.scalar_operand(*a, env)?;
                let adt = self.dtypes[a.index()];
                self.scalar_unary(*op, adt, x)
            }
            Expr::Binary(op, a, b) => {
                let x = self.scalar_operand(*a, env)?;
                let y = self.scalar_operand(*b, env)?;
                let adt = self.dtypes[a.index()];
                self.scalar_binary(*op, adt, x, y)
            }
            Expr::Select(c, a, b) => {
                let c = self.scalar_operand(*c, env)?;
                let x = self.scalar_operand(*a, env)?;
                let y = self.scalar_operand(*b, env)?;
                Ok(self.select_scalar(c, x, y))
            }
            Expr::Cast(to, a) => {
                let x = self.scalar_operand(*a, env)?;
                let from = self.dtypes[a.index()];
                Ok(self.scalar_cast(from, *to, x))
            }
            Expr::Reduce { .. } => Err(CodegenError::ReductionAsScalarNode { node: i, dtype: dt }),
            Expr::Acc => Err(CodegenError::AccOutsideEpilogue),
        }
    }

    /// An `i64` converted to `dt` as `Scalar::from_i64` does.
    fn int_to(&mut self, x: Value, dt: DType) -> Value {
        let ins = self.b.ins();
        match dt {
            DType::I64 => x,
            DType::I32 | DType::U32 => ins.ireduce(types::I32, x),
            DType::F32 => ins.fcvt_from_sint(types::F32, x),
            DType::F64 => ins.fcvt_from_sint(types::F64, x),
            DType::Bool => ins.icmp_imm_s(IntCC::NotEqual, x, 0),
        }
    }

    /// The scalar environment of lane `l` of a vector point.
    pub(super) fn lane_env(
        &mut self,
        env: &Env,
        ctx: VecCtx,
        l: u8,
        needed: &[usize],
    ) -> Result<Env, CodegenError> {
        let mut e = env.clone();
        e.vec = None;
        if l > 0 {
            let slot = match ctx.var {
                VarRef::Loop(k) => e.vars.get_mut(k),
                VarRef::Red(k) => e.reds.get_mut(k),
            }
            .ok_or(CodegenError::VariableOutOfRange("vector"))?;
            *slot = self.b.ins().iadd_imm_s(*slot, i64::from(l));
        }
        for &d in needed {
            if let Some(PointValue::Vector(x)) = env.vals.get(d).copied().flatten() {
                let dt = self.dtypes[d];
                let s = self.b.ins().extractlane(x, l);
                let s = if dt == DType::Bool {
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, s, 0)
                } else {
                    s
                };
                e.vals[d] = Some(PointValue::Scalar(s));
            }
        }
        Ok(e)
    }

    /// Builds a vector from per-lane scalars.
    fn gather_lanes(&mut self, lanes: &[Value], dt: DType, n: u8) -> Value {
        let ty = vector_type(dt, n);
        let conv = |cg: &mut Self, x: Value| {
            if dt == DType::Bool {
                cg.b.ins().bmask(ty.lane_type(), x)
            } else {
                x
            }
        };
        let first = conv(self, lanes[0]);
        let mut v = self.b.ins().splat(ty, first);
        for (l, &x) in lanes.iter().enumerate().skip(1) {
            let x = conv(self, x);
            v = self.b.ins().insertlane(v, x, l as u8);
        }
        v
    }

    /// Node `i` computed lane by lane with scalar semantics.
    pub(super) fn lanewise(
        &mut self,
        i: usize,
        e: &Expr,
        env: &Env,
        ctx: VecCtx,
    ) -> Result<Value, CodegenError> {
        let deps = self.phases.deps[i].clone();
        let mut out = Vec::with_capacity(usize::from(ctx.lanes));
        for l in 0..ctx.lanes {
            let le = self.lane_env(env, ctx, l, &deps)?;
            out.push(self.scalar_node(i, e, &le)?);
        }
        Ok(self.gather_lanes(&out, self.dtypes[i], ctx.lanes))
    }

    fn vector_operand(&mut self, v: ValueId, env: &Env, lanes: u8) -> Result<Value, CodegenError> {
        let x = env
            .vals
            .get(v.index())
            .copied()
            .flatten()
            .ok_or(CodegenError::UsedBeforeDefined(v))?;
        let dt = self.dtypes[v.index()];
        Ok(self.broadcast(x, dt, lanes))
    }

    /// Vector semantics of node `i`: native vector code where the op and access allow,
    /// lane-by-lane scalar code otherwise.
    fn vector_node(
        &mut self,
        i: usize,
        e: &Expr,
        env: &Env,
        ctx: VecCtx,
    ) -> Result<Value, CodegenError> {
        let dt = self.dtypes[i];
        let lanes = ctx.lanes;
        match e {
            Expr::Load(l) => self.vector_load(i, l, e, env, ctx),
            Expr::Unary(op, a) => {
                let adt = self.dtypes[a.index()];
                let x = self.vector_operand(*a, env, lanes)?;
                match self.vector_unary(*op, adt, x, lanes)? {
                    Some(v) => Ok(v),
                    None => self.lanewise(i, e, env, ctx),
                }
            }
            Expr::Binary(op, a, b) => {
                let adt = self.dtypes[a.index()];
                let x = self.vector_operand(*a, env, lanes)?;
                let y = self.vector_operand(*b, env, lanes)?;
                match self.vector_binary(*op, adt, x, y, lanes)? {
                    Some(v) => Ok(v),
                    None => self.lanewise(i, e, env, ctx),
                }
            }
            Expr::Select(c, a, b) => {
                let c = self.vector_operand(*c, env, lanes)?;
                let x = self.vector_operand(*a, env, lanes)?;
                let y = self.vector_operand(*b, env, lanes)?;
                let ty = vector_type(dt, lanes);
                let mask = if ty != vector_type(DType::Bool, lanes) {
                    self.b.ins().bitcast(ty, MemFlagsData::new(), c)
                } else {
                    c
                };
                Ok(self.b.ins().bitselect(mask, x, y))
            }
            Expr::Cast(to, a) => {
                let from = self.dtypes[a.index()];
                let x = self.vector_operand(*a, env, lanes)?;
                match self.vector_cast(from, *to, x, lanes) {
                    Some(v) => Ok(v),
                    None => self.lanewise(i, e, env, ctx),
                }
            }
            Expr::Const(_) | Expr::Index { .. } => self.lanewise(i, e, env, ctx),
            Expr::Reduce { .. } => Err(CodegenError::ReductionAsVectorNode(i)),
            Expr::Acc => Err(CodegenError::AccOutsideEpilogue),
        }
    }
}
