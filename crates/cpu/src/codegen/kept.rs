//! Values the reduction loop computes and the hoisted loop reuses ([`super::analysis::Reuse`]):
//! stored to a stack buffer per row, loaded back at each hoisted point.

use super::error::CodegenError;
use super::types::{scalar_type, vector_type};
use super::{Cg, Env, PointValue};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, StackSlot, Value, types};
use kiln_ir::DType;

impl Cg<'_, '_> {
    /// A hoisted-loop node that is not evaluated (see [`Reuse::skip`]).
    pub(super) fn skipped(&self, i: usize, known: Option<&[Option<PointValue>]>) -> bool {
        known.is_some()
            && self
                .reuse
                .as_ref()
                .is_some_and(|r| r.skip.get(i).copied().unwrap_or(false))
    }

    /// The address of element `idx` of kept buffer `slot` of dtype `dt`.
    pub(super) fn kept_address(&mut self, slot: StackSlot, idx: Value, dt: DType) -> Value {
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        let shift = dt.size_bytes().trailing_zeros();
        let off = self.b.ins().ishl_imm_s(idx, i64::from(shift));
        self.b.ins().iadd(base, off)
    }

    /// Stores the kept values of a reduction point (`env.reds[k]` is its coordinate along
    /// the innermost reduction axis, the first lane's for a vector point).
    pub(super) fn keep(&mut self, env: &Env, k: usize) -> Result<(), CodegenError> {
        let Some(reuse) = self.reuse.clone() else {
            return Ok(());
        };
        let idx = *env
            .reds
            .get(k)
            .ok_or(CodegenError::VariableOutOfRange("reduction"))?;
        for (&(_, i), &slot) in reuse.cached.iter().zip(&self.kept.clone()) {
            if self.row_wide.iter().any(|w| w.node == i) || !self.phases.inner[i] {
                continue; // already in the buffer, or kept by another stage's loop
            }
            let v = env.vals[i].ok_or(CodegenError::KeptNotEvaluated(i))?;
            let dt = self.dtypes[i];
            let x = match (v, env.vec) {
                (PointValue::Vector(x), _) => x,
                (PointValue::Scalar(x), None) => x,
                (PointValue::Scalar(x), Some(ctx)) => {
                    self.broadcast(PointValue::Scalar(x), dt, ctx.lanes)
                }
            };
            let addr = self.kept_address(slot, idx, dt);
            self.b
                .ins()
                .store(MemFlagsData::new().with_notrap(), x, addr, 0);
        }
        Ok(())
    }

    /// Loads the kept values at a hoisted-loop point (as vectors where the node is one).
    pub(super) fn load_kept(&mut self, env: &mut Env) -> Result<(), CodegenError> {
        let Some(reuse) = self.reuse.clone() else {
            return Ok(());
        };
        let last = self
            .job
            .kernel
            .domain
            .len()
            .checked_sub(1)
            .ok_or(CodegenError::NoDomainAxis)?;
        let idx = *env
            .vars
            .get(last)
            .ok_or(CodegenError::VariableOutOfRange("loop"))?;
        for (&(j, _), &slot) in reuse.cached.iter().zip(&self.kept.clone()) {
            let dt = self.dtypes[j];
            let addr = self.kept_address(slot, idx, dt);
            let v = match env.vec {
                Some(ctx) if self.is_vector_node(j, env) => PointValue::Vector(self.b.ins().load(
                    vector_type(dt, ctx.lanes),
                    MemFlagsData::new().with_notrap(),
                    addr,
                    0,
                )),
                _ => PointValue::Scalar(self.b.ins().load(
                    scalar_type(dt),
                    MemFlagsData::trusted(),
                    addr,
                    0,
                )),
            };
            env.vals[j] = Some(v);
        }
        Ok(())
    }
}

/// A kept reduction-loop node computed by a wide kernel over the whole row before the
/// reduction loop ([`Cg::row_wide_prepass`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct RowWide {
    /// The reduction-loop node (a wide unary op of `f32`).
    pub node: usize,
    /// Its wide kernel's op code.
    pub code: u32,
    /// The kept buffer that holds its operand, then its values.
    pub slot: StackSlot,
}

impl Cg<'_, '_> {
    /// The kept nodes the reduction loop at `env` takes from a wide kernel run over the row:
    /// `f32` transcendentals with a wide kernel ([`crate::vecmath`]) that the reduce-mode
    /// vector loop computes as vectors, in a kernel with one reduction axis and kept values
    /// (the `exp(x - max)` of a softmax row). Empty when the host has no wide level.
    pub(super) fn row_wide_nodes(&self, env: &Env, red_plan: Option<u8>) -> Vec<RowWide> {
        let Some(reuse) = &self.reuse else {
            return Vec::new();
        };
        if env.vec.is_some()
            || red_plan != Some(4)
            || self.job.kernel.reduce.len() != 1
            || !self.wide_available()
        {
            return Vec::new();
        }
        let Some(plan) = self
            .plans
            .iter()
            .find(|p| p.mode == super::analysis::VecMode::Reduce)
        else {
            return Vec::new();
        };
        let body = &self.job.kernel.body.values;
        reuse
            .cached
            .iter()
            .zip(&self.kept)
            .filter_map(|(&(_, i), &slot)| {
                let kiln_kernel::Expr::Unary(op, a) = &body[i] else {
                    return None;
                };
                let a = a.index();
                let vector = |j: usize| plan.vector.get(j).copied().unwrap_or(false);
                (vector(i)
                    && vector(a)
                    && self.phases.inner[i]
                    && self.phases.inner[a]
                    && self.dtypes[i] == DType::F32
                    && self.dtypes[a] == DType::F32)
                    .then_some(())?;
                let code = crate::vecmath::wide_code(*op)?;
                Some(RowWide {
                    node: i,
                    code,
                    slot,
                })
            })
            .collect()
    }

    /// Per node: evaluated by the pre-pass of `wide` (it feeds a wide node's operand and
    /// depends on no wide node), and only needed there (nothing else the reduction loop
    /// evaluates reads it, so the loop itself skips it).
    pub(super) fn row_wide_cone(&self, wide: &[RowWide]) -> (Vec<bool>, Vec<bool>) {
        let n = self.job.kernel.body.values.len();
        let deps = &self.phases.deps;
        let is_wide = |i: usize| wide.iter().any(|w| w.node == i);
        let mut cone = vec![false; n];
        let mut stack: Vec<usize> = wide
            .iter()
            .filter_map(|w| deps[w.node].first().copied())
            .collect();
        while let Some(i) = stack.pop() {
            if i < n && !cone[i] && self.phases.inner[i] && !is_wide(i) {
                cone[i] = true;
                stack.extend(deps[i].iter().copied());
            }
        }
        // Nodes the loop still evaluates: the reduced operands and what they read, not
        // looking through the wide nodes (loaded) into their operands.
        let mut loop_needs = vec![false; n];
        let mut stack: Vec<usize> = self
            .phases
            .reduces
            .iter()
            .filter_map(|&r| deps[r].first().copied())
            .chain(self.reuse.iter().flat_map(|r| r.cached.iter().map(|c| c.1)))
            .collect();
        while let Some(i) = stack.pop() {
            if i < n && !loop_needs[i] && self.phases.inner[i] {
                loop_needs[i] = true;
                if !is_wide(i) {
                    stack.extend(deps[i].iter().copied());
                }
            }
        }
        let only = (0..n).map(|i| cone[i] && !loop_needs[i]).collect();
        (cone, only)
    }

    /// Before the reduction loop at `env` (one row): evaluates the operands of the `wide`
    /// nodes at every reduction point into their kept buffers, vectors then a scalar tail,
    /// and runs each wide kernel in place over the row. The reduction loop then loads
    /// those values as it loads kept values in the hoisted loop (the wide kernels give the
    /// inline code's bits, docs/numerics.md).
    pub(super) fn row_wide_prepass(
        &mut self,
        env: &Env,
        wide: &[RowWide],
        lanes: u8,
        cone: &[bool],
    ) -> Result<(), CodegenError> {
        let extent = self.job.kernel.reduce[0].clone();
        let hi = self.dim(&extent)?;
        if let Some(direct) = self.row_wide_direct(env, wide, cone) {
            return self.row_wide_direct_calls(env, wide, &direct, hi);
        }
        let lanes_i = i64::from(lanes);
        let whole = self.b.ins().band_imm_s(hi, !(lanes_i - 1));
        let var = self.b.declare_var(types::I64);
        let zero = self.b.ins().iconst(types::I64, 0);
        self.b.def_var(var, zero);
        let n = self.job.kernel.body.values.len();
        for (end, vector) in [(whole, true), (hi, false)] {
            self.for_var(var, end, if vector { lanes_i } else { 1 }, &mut |cg, r| {
                let mut e = env.clone();
                e.reds = vec![r];
                e.vec = vector.then_some(super::VecCtx {
                    var: super::analysis::VarRef::Red(0),
                    lanes,
                });
                cg.load_stage_pins(&mut e);
                for i in (0..n).filter(|&i| cone[i]) {
                    let v = cg.node(i, &e)?;
                    e.vals[i] = Some(v);
                }
                for w in wide {
                    let a = cg.phases.deps[w.node]
                        .first()
                        .copied()
                        .ok_or(CodegenError::Internal("wide node without operand"))?;
                    let x = match (e.vals[a], vector) {
                        (Some(PointValue::Vector(x)), true)
                        | (Some(PointValue::Scalar(x)), false) => x,
                        (Some(PointValue::Scalar(x)), true) => {
                            cg.broadcast(PointValue::Scalar(x), DType::F32, lanes)
                        }
                        _ => return Err(CodegenError::Internal("wide operand not evaluated")),
                    };
                    let addr = cg.kept_address(w.slot, r, DType::F32);
                    cg.b.ins()
                        .store(MemFlagsData::new().with_notrap(), x, addr, 0);
                }
                Ok(())
            })?;
        }
        let callee = self.wide_unary_ref()?;
        for w in wide {
            let code = self.b.ins().iconst(types::I32, i64::from(w.code));
            let base = self.b.ins().stack_addr(types::I64, w.slot, 0);
            self.b.ins().call(callee, &[code, base, hi]);
        }
        Ok(())
    }

    /// When every wide node's operand is a plain `f32` load contiguous along the reduction
    /// axis, or such a load minus a scalar fixed over the row (a softmax row's `x - max`),
    /// and the pre-pass would evaluate nothing else: per wide node, its load and the
    /// subtracted value. The wide kernel then reads the row straight from its buffer
    /// ([`Self::row_wide_direct_calls`]) instead of a loop writing the operand first.
    fn row_wide_direct(
        &self,
        env: &Env,
        wide: &[RowWide],
        cone: &[bool],
    ) -> Option<Vec<(usize, Option<usize>)>> {
        let body = &self.job.kernel.body.values;
        let vary = super::analysis::varying(
            &self.job.kernel.body,
            &self.phases.deps,
            super::analysis::VarRef::Red(0),
        );
        let contiguous = |i: usize| match body.get(i) {
            Some(kiln_kernel::Expr::Load(l)) => {
                l.mode == kiln_kernel::LoadMode::Plain
                    && self.dtypes[i] == DType::F32
                    && super::analysis::coefficient(
                        &l.index,
                        super::analysis::VarRef::Red(0),
                        &vary,
                    ) == Some(1)
            }
            _ => false,
        };
        let fixed = |c: usize| {
            !self.phases.inner[c]
                && self.dtypes[c] == DType::F32
                && (matches!(env.vals[c], Some(PointValue::Scalar(_)))
                    || self.stage_pins.iter().any(|&(p, _)| p == c))
        };
        let mut used = vec![false; body.len()];
        let mut out = Vec::with_capacity(wide.len());
        for w in wide {
            let a = *self.phases.deps[w.node].first()?;
            let pick = match &body[a] {
                kiln_kernel::Expr::Binary(kiln_ir::BinaryOp::Sub, x, c)
                    if contiguous(x.index()) && fixed(c.index()) =>
                {
                    (x.index(), Some(c.index()))
                }
                _ if contiguous(a) => (a, None),
                _ => return None,
            };
            used[a] = true;
            used[pick.0] = true;
            out.push(pick);
        }
        cone.iter()
            .zip(&used)
            .all(|(&c, &u)| !c || u)
            .then_some(out)
    }

    /// Fills each wide node's kept buffer with one call of the shifted wide kernel over the
    /// row: `op(x - c)` read from `x`'s buffer (see [`Self::row_wide_direct`]).
    fn row_wide_direct_calls(
        &mut self,
        env: &Env,
        wide: &[RowWide],
        direct: &[(usize, Option<usize>)],
        hi: Value,
    ) -> Result<(), CodegenError> {
        let mut e = env.clone();
        let zero = self.b.ins().iconst(types::I64, 0);
        e.reds = vec![zero; self.job.kernel.reduce.len()];
        e.vec = None;
        self.load_stage_pins(&mut e);
        let callee = self.wide_shifted_ref()?;
        for (w, &(load, shift)) in wide.iter().zip(direct) {
            let kiln_kernel::Expr::Load(l) = &self.job.kernel.body.values[load] else {
                return Err(CodegenError::Internal("direct wide operand is not a load"));
            };
            let (index, buf) = (l.index.clone(), l.buffer.index());
            let idx = self.index(&index, &e)?;
            let src = self.address(buf, idx)?;
            let c = match shift {
                Some(c) => match e.vals[c] {
                    Some(PointValue::Scalar(v)) => v,
                    _ => return Err(CodegenError::Internal("row shift not evaluated")),
                },
                None => self.b.ins().f32const(0.0),
            };
            let dst = self.b.ins().stack_addr(types::I64, w.slot, 0);
            let code = self.b.ins().iconst(types::I32, i64::from(w.code));
            self.b.ins().call(callee, &[code, dst, src, c, hi]);
        }
        Ok(())
    }

    /// In the reduction loop: the value of wide node `w` at the point of `env` (loaded from
    /// its kept buffer, filled by [`Self::row_wide_prepass`]).
    pub(super) fn load_row_wide(
        &mut self,
        w: &RowWide,
        env: &Env,
    ) -> Result<PointValue, CodegenError> {
        let idx = *env
            .reds
            .first()
            .ok_or(CodegenError::VariableOutOfRange("reduction"))?;
        let addr = self.kept_address(w.slot, idx, DType::F32);
        Ok(match env.vec {
            Some(ctx) => PointValue::Vector(self.b.ins().load(
                vector_type(DType::F32, ctx.lanes),
                MemFlagsData::new().with_notrap(),
                addr,
                0,
            )),
            None => PointValue::Scalar(self.b.ins().load(
                scalar_type(DType::F32),
                MemFlagsData::trusted(),
                addr,
                0,
            )),
        })
    }
}
