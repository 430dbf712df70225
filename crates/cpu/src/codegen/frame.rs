//! The kernel function's frame: the entry block (buffer pointers, dims, kept-value stack
//! buffers, the error word), the exit that ORs the error flags into the caller's word, and
//! what every part of the body uses: dims, constants, broadcasts, helper imports, flags.

use super::analysis::known_i64;
use super::error::CodegenError;
use super::types::vector_type;
use super::{Cg, PointValue};
use crate::jit::Helper;
use cranelift_codegen::ir::{
    FuncRef, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Value, condcodes::IntCC,
    types,
};
use kiln_ir::{DType, Dim};
use kiln_kernel::Scalar;

impl Cg<'_, '_> {
    pub(super) fn emit(&mut self, dims: &[Dim], split: Option<usize>) -> Result<(), CodegenError> {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        let params = self.b.block_params(entry).to_vec();
        let [bufs_ptr, dims_ptr, start, end, flags_ptr] = params[..] else {
            return Err(CodegenError::SignatureMismatch);
        };
        for k in 0..self.job.buffers.len() {
            let off = i32::try_from(k * 8).map_err(|_| CodegenError::TooManyBuffers)?;
            let p = self.b.ins().load(
                types::I64,
                MemFlagsData::trusted().with_readonly(),
                bufs_ptr,
                off,
            );
            self.bufs.push(p);
        }
        for (k, d) in dims.iter().enumerate() {
            let off = i32::try_from(k * 8).map_err(|_| CodegenError::TooManyDims)?;
            let v = self.b.ins().load(
                types::I64,
                MemFlagsData::trusted().with_readonly(),
                dims_ptr,
                off,
            );
            self.dims.insert(d.clone(), v);
        }
        if let Some(reuse) = &self.reuse {
            for &(j, _) in &reuse.cached {
                let bytes = self.dtypes[j].size_bytes() as u64 * u64::from(reuse.extent);
                let size = u32::try_from(bytes).map_err(|_| CodegenError::KeptValuesTooLarge)?;
                let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    size,
                    4,
                ));
                self.kept.push(slot);
            }
        }
        let err = self.b.declare_var(types::I32);
        let zero = self.b.ins().iconst(types::I32, 0);
        self.b.def_var(err, zero);
        self.err = Some(err);

        let rank = self.job.kernel.domain.len();
        let zero64 = self.b.ins().iconst(types::I64, 0);
        let mut vars = vec![zero64; rank];
        match split {
            Some(axis) => self.axis(axis, axis, start, end, &mut vars, None)?,
            None => {
                let point = self.b.create_block();
                let done = self.b.create_block();
                let run = self.b.ins().icmp(IntCC::SignedLessThan, start, end);
                self.b.ins().brif(run, point, &[], done, &[]);
                self.b.switch_to_block(point);
                self.point(&vars, None, None)?;
                self.b.ins().jump(done, &[]);
                self.b.switch_to_block(done);
            }
        }
        let e = self.b.use_var(err);
        let old = self
            .b
            .ins()
            .load(types::I32, MemFlagsData::trusted(), flags_ptr, 0);
        let new = self.b.ins().bor(old, e);
        self.b
            .ins()
            .store(MemFlagsData::trusted(), new, flags_ptr, 0);
        self.b.ins().return_(&[]);
        Ok(())
    }

    /// The value of a dim (a constant, or loaded at entry).
    pub(crate) fn dim(&mut self, d: &Dim) -> Result<Value, CodegenError> {
        if let Some(k) = known_i64(d) {
            return Ok(self.b.ins().iconst(types::I64, k));
        }
        self.dims
            .get(d)
            .copied()
            .ok_or_else(|| CodegenError::UncollectedDim(d.clone()))
    }

    /// A scalar constant.
    pub(crate) fn constant(&mut self, s: Scalar) -> Value {
        let ins = self.b.ins();
        match s {
            Scalar::F32(v) => ins.f32const(v),
            Scalar::F64(v) => ins.f64const(v),
            Scalar::I32(v) => ins.iconst(types::I32, i64::from(v)),
            Scalar::U32(v) => ins.iconst(types::I32, i64::from(v as i32)),
            Scalar::I64(v) => ins.iconst(types::I64, v),
            Scalar::Bool(v) => ins.iconst(types::I8, i64::from(v)),
        }
    }

    /// Broadcasts a value to a vector of `lanes` (bools become lane masks).
    pub(crate) fn broadcast(&mut self, v: PointValue, dt: DType, lanes: u8) -> Value {
        match v {
            PointValue::Vector(x) => x,
            PointValue::Scalar(x) => {
                let ty = vector_type(dt, lanes);
                if dt == DType::Bool {
                    let m = self.b.ins().bmask(ty.lane_type(), x);
                    self.b.ins().splat(ty, m)
                } else {
                    self.b.ins().splat(ty, x)
                }
            }
        }
    }

    /// Imports (once) and returns a helper function.
    pub(crate) fn helper(&mut self, h: Helper) -> Result<FuncRef, CodegenError> {
        if let Some(f) = self.imported.get(&h) {
            return Ok(*f);
        }
        let f = self
            .jit
            .import_helper(h, self.b.func)
            .ok_or(CodegenError::Internal("helper not declared"))?;
        self.imported.insert(h, f);
        Ok(f)
    }

    /// ORs `bit` into the error word when `cond` (an `i8`) is true.
    pub(crate) fn flag_if(&mut self, cond: Value, bit: u32) -> Result<(), CodegenError> {
        let err = self
            .err
            .ok_or(CodegenError::Internal("no error variable"))?;
        let c = self.b.ins().uextend(types::I32, cond);
        let shift = bit.trailing_zeros();
        let c = self.b.ins().ishl_imm_s(c, i64::from(shift));
        let cur = self.b.use_var(err);
        let next = self.b.ins().bor(cur, c);
        self.b.def_var(err, next);
        Ok(())
    }

    /// `c ? x : y` on scalars without a branch. Cranelift lowers a float `select` on x86-64
    /// to a conditional jump, which mispredicts on data-dependent conditions (a ReLU
    /// before a max pool: half the points either way, about 15 cycles each time); an
    /// integer `select` is a `cmov`. So floats select through their bits.
    pub(crate) fn select_scalar(&mut self, c: Value, x: Value, y: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let bits = match ty {
            types::F32 => types::I32,
            types::F64 => types::I64,
            _ => return self.b.ins().select(c, x, y),
        };
        let flags = MemFlagsData::new();
        let xi = self.b.ins().bitcast(bits, flags, x);
        let yi = self.b.ins().bitcast(bits, flags, y);
        let r = self.b.ins().select(c, xi, yi);
        self.b.ins().bitcast(ty, flags, r)
    }
}
