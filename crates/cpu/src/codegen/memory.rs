//! Loads (plain, masked, checked; scalar or one vector load when contiguous) and stores.

use super::analysis::{coefficient, stride_two, varying};
use super::error::CodegenError;
use super::types::{scalar_type, vector_type};
use super::{Cg, Env, FLAG_OOB, PointValue, VecCtx};
use cranelift_codegen::ir::{
    BlockArg, Endianness, InstBuilder, MemFlagsData, Value, condcodes::IntCC, types,
};
use kiln_ir::DType;
use kiln_kernel::{Expr, Guard, IndexExpr, Load, LoadMode, Scalar};

impl Cg<'_, '_> {
    /// The address of element `idx` of local buffer `buf`.
    pub(super) fn address(&mut self, buf: usize, idx: Value) -> Result<Value, CodegenError> {
        let base = *self.bufs.get(buf).ok_or(CodegenError::UnknownBuffer)?;
        let dt = self
            .job
            .buffers
            .get(buf)
            .ok_or(CodegenError::UnknownBuffer)?
            .dtype;
        let shift = dt.size_bytes().trailing_zeros();
        let off = if shift == 0 {
            idx
        } else {
            self.b.ins().ishl_imm_s(idx, i64::from(shift))
        };
        Ok(self.b.ins().iadd(base, off))
    }

    fn buffer_dtype(&self, buf: usize) -> Result<DType, CodegenError> {
        Ok(self
            .job
            .buffers
            .get(buf)
            .ok_or(CodegenError::UnknownBuffer)?
            .dtype)
    }

    /// A scalar load of element `idx` (proven or checked in bounds by the caller).
    fn load_scalar_at(&mut self, buf: usize, idx: Value) -> Result<Value, CodegenError> {
        let dt = self.buffer_dtype(buf)?;
        let addr = self.address(buf, idx)?;
        Ok(self
            .b
            .ins()
            .load(scalar_type(dt), MemFlagsData::trusted(), addr, 0))
    }

    /// `lo <= e < hi` for every guard, as an `i8`.
    fn guards_hold(&mut self, guards: &[Guard], env: &Env) -> Result<Value, CodegenError> {
        let mut cond: Option<Value> = None;
        for g in guards {
            let lo = self.index(&g.lo, env)?;
            let e = self.index(&g.expr, env)?;
            let hi = self.index(&g.hi, env)?;
            let a = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, lo, e);
            let b = self.b.ins().icmp(IntCC::SignedLessThan, e, hi);
            let both = self.b.ins().band(a, b);
            cond = Some(match cond {
                Some(c) => self.b.ins().band(c, both),
                None => both,
            });
        }
        Ok(match cond {
            Some(c) => c,
            None => self.b.ins().iconst(types::I8, 1),
        })
    }

    /// Emits a load at one point with scalar semantics (plain, masked or checked).
    pub(super) fn load_scalar(&mut self, l: &Load, env: &Env) -> Result<Value, CodegenError> {
        let buf = l.buffer.index();
        let dt = self.buffer_dtype(buf)?;
        match &l.mode {
            LoadMode::Plain => {
                let idx = self.index(&l.index, env)?;
                self.load_scalar_at(buf, idx)
            }
            LoadMode::Masked { guards, fill } => {
                let cond = self.guards_hold(guards, env)?;
                let fill = self.constant(*fill);
                let yes = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, scalar_type(dt));
                self.b
                    .ins()
                    .brif(cond, yes, &[], merge, &[BlockArg::Value(fill)]);
                self.b.switch_to_block(yes);
                let idx = self.index(&l.index, env)?;
                let v = self.load_scalar_at(buf, idx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
            LoadMode::Checked => {
                let idx = self.index(&l.index, env)?;
                let size = self.job.buffers[buf].size.clone();
                let size = self.dim(&size)?;
                let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, idx, size);
                let fast = self.b.create_block();
                let slow = self.b.create_block();
                let clamp = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, scalar_type(dt));
                self.b.ins().brif(inside, fast, &[], slow, &[]);
                self.b.switch_to_block(fast);
                let v = self.load_scalar_at(buf, idx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(slow);
                self.b.set_cold_block(slow);
                let one = self.b.ins().iconst(types::I8, 1);
                self.flag_if(one, FLAG_OOB)?;
                let zero = self.constant(Scalar::zero(dt));
                let empty = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::SignedLessThanOrEqual, size, 0);
                self.b
                    .ins()
                    .brif(empty, merge, &[BlockArg::Value(zero)], clamp, &[]);
                self.b.switch_to_block(clamp);
                self.b.set_cold_block(clamp);
                let last = self.b.ins().iadd_imm_s(size, -1);
                let z64 = self.b.ins().iconst(types::I64, 0);
                let negative = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, idx, 0);
                let c = self.b.ins().select(negative, z64, last);
                let v = self.load_scalar_at(buf, c)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
        }
    }

    /// A load in a vector point: one vector load when the index is contiguous in the
    /// vectorised variable (for masked loads: when the guards hold at the first and the last
    /// lane), lane by lane otherwise.
    pub(super) fn vector_load(
        &mut self,
        i: usize,
        l: &Load,
        e: &Expr,
        env: &Env,
        ctx: VecCtx,
    ) -> Result<Value, CodegenError> {
        let vary = varying(&self.job.kernel.body, &self.phases.deps, ctx.var);
        let contiguous = coefficient(&l.index, ctx.var, &vary) == Some(1);
        let buf = l.buffer.index();
        let dt = self.buffer_dtype(buf)?;
        let ty = vector_type(dt, ctx.lanes);
        let scalar_env = Env {
            vec: None,
            ..env.clone()
        };
        if ctx.lanes == 4 && stride_two(l, ctx.var, &vary, dt) {
            // Lanes at idx, idx+2, idx+4, idx+6: lanes 0 and 2 of the vector at idx, 1 and
            // 3 of the vector at idx+3. Every element read lies between the first lane's
            // and the last lane's, which the verifier proved in bounds.
            let idx = self.index(&l.index, &scalar_env)?;
            let addr = self.address(buf, idx)?;
            let flags = MemFlagsData::new().with_notrap();
            let lo = self.b.ins().load(ty, flags, addr, 0);
            let hi = self.b.ins().load(ty, flags, addr, 12);
            let le = MemFlagsData::new().with_endianness(Endianness::Little);
            let (lo, hi) = (
                self.b.ins().bitcast(types::I8X16, le, lo),
                self.b.ins().bitcast(types::I8X16, le, hi),
            );
            let mask: Vec<u8> = [0u8, 8, 20, 28].iter().flat_map(|&b| b..b + 4).collect();
            let mask = self.b.func.dfg.immediates.push(mask.into());
            let v = self.b.ins().shuffle(lo, hi, mask);
            return Ok(self.b.ins().bitcast(ty, le, v));
        }
        if !contiguous || dt == DType::Bool {
            return self.lanewise(i, e, env, ctx);
        }
        match &l.mode {
            LoadMode::Plain => {
                let idx = self.index(&l.index, &scalar_env)?;
                let addr = self.address(buf, idx)?;
                Ok(self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new().with_notrap(), addr, 0))
            }
            LoadMode::Masked { guards, .. } => {
                let monotone = guards.iter().all(|g| {
                    coefficient(&g.lo, ctx.var, &vary) == Some(0)
                        && coefficient(&g.hi, ctx.var, &vary) == Some(0)
                        && coefficient(&g.expr, ctx.var, &vary).is_some()
                });
                if !monotone {
                    return self.lanewise(i, e, env, ctx);
                }
                let first = self.guards_hold(guards, &scalar_env)?;
                let last_env = self.lane_env(env, ctx, ctx.lanes - 1, &[])?;
                let last = self.guards_hold(guards, &last_env)?;
                let all = self.b.ins().band(first, last);
                let yes = self.b.create_block();
                let no = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, ty);
                self.b.ins().brif(all, yes, &[], no, &[]);
                self.b.switch_to_block(yes);
                let idx = self.index(&l.index, &scalar_env)?;
                let addr = self.address(buf, idx)?;
                let v = self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new().with_notrap(), addr, 0);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(no);
                let v = self.lanewise(i, e, env, ctx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
            LoadMode::Checked => {
                // One vector load when the first and the last lane are inside the buffer
                // (unsigned compares also reject negative and wrapped indices).
                let idx = self.index(&l.index, &scalar_env)?;
                let size = self.job.buffers[buf].size.clone();
                let size = self.dim(&size)?;
                let last = self.b.ins().iadd_imm_s(idx, i64::from(ctx.lanes) - 1);
                let a = self.b.ins().icmp(IntCC::UnsignedLessThan, idx, size);
                let z = self.b.ins().icmp(IntCC::UnsignedLessThan, last, size);
                let all = self.b.ins().band(a, z);
                let yes = self.b.create_block();
                let no = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, ty);
                self.b.ins().brif(all, yes, &[], no, &[]);
                self.b.switch_to_block(yes);
                let addr = self.address(buf, idx)?;
                let v = self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new().with_notrap(), addr, 0);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(no);
                self.b.set_cold_block(no);
                let v = self.lanewise(i, e, env, ctx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
        }
    }

    /// Emits a store of `v` (scalar or vector) at `index`.
    pub(super) fn store(
        &mut self,
        buf: usize,
        index: &IndexExpr,
        v: PointValue,
        env: &Env,
    ) -> Result<(), CodegenError> {
        let dt = self.buffer_dtype(buf)?;
        match (v, env.vec) {
            (PointValue::Scalar(x), None) => {
                let idx = self.index(index, env)?;
                let addr = self.address(buf, idx)?;
                self.b.ins().store(MemFlagsData::trusted(), x, addr, 0);
                Ok(())
            }
            (_, Some(ctx)) => {
                let contiguous = coefficient(index, ctx.var, &[]) == Some(1);
                if contiguous && dt != DType::Bool {
                    let x = self.broadcast(v, dt, ctx.lanes);
                    let senv = Env {
                        vec: None,
                        ..env.clone()
                    };
                    let idx = self.index(index, &senv)?;
                    let addr = self.address(buf, idx)?;
                    self.b
                        .ins()
                        .store(MemFlagsData::new().with_notrap(), x, addr, 0);
                    return Ok(());
                }
                for l in 0..ctx.lanes {
                    let le = self.lane_env(env, ctx, l, &[])?;
                    let x = match v {
                        PointValue::Scalar(x) => x,
                        PointValue::Vector(x) => {
                            let s = self.b.ins().extractlane(x, l);
                            if dt == DType::Bool {
                                self.b.ins().icmp_imm_s(IntCC::NotEqual, s, 0)
                            } else {
                                s
                            }
                        }
                    };
                    let idx = self.index(index, &le)?;
                    let addr = self.address(buf, idx)?;
                    self.b.ins().store(MemFlagsData::trusted(), x, addr, 0);
                }
                Ok(())
            }
            (PointValue::Vector(_), None) => Err(CodegenError::Internal(
                "vector store outside a vector point",
            )),
        }
    }
}
