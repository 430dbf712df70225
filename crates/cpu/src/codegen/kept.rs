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
    fn kept_address(&mut self, slot: StackSlot, idx: Value, dt: DType) -> Value {
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
