//! Scalar and vector code for the kernel IR's scalar ops, following the executor's
//! semantics: integers wrap, integer `div` floors and `rem` takes the divisor's sign (a zero
//! divisor raises [`super::FLAG_DIV_ZERO`]), `max`/`min` propagate NaN, casts truncate
//! toward zero through `i64`. Vector forms return `None` where no native sequence exists;
//! the caller then evaluates the op lane by lane with the scalar code.

use super::error::CodegenError;
use super::types::{scalar_type, vector_type};
use super::{Cg, FLAG_DIV_ZERO};
use crate::jit::Helper;
use cranelift_codegen::ir::{
    Endianness, InstBuilder, MemFlagsData, Type, Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use kiln_ir::{BinaryOp, DType, UnaryOp};

fn float_cc(op: BinaryOp) -> Option<FloatCC> {
    Some(match op {
        BinaryOp::Eq => FloatCC::Equal,
        BinaryOp::Ne => FloatCC::NotEqual,
        BinaryOp::Lt => FloatCC::LessThan,
        BinaryOp::Le => FloatCC::LessThanOrEqual,
        BinaryOp::Gt => FloatCC::GreaterThan,
        BinaryOp::Ge => FloatCC::GreaterThanOrEqual,
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Rem
        | BinaryOp::Pow
        | BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Xor => return None,
    })
}

fn int_cc(op: BinaryOp, unsigned: bool) -> Option<IntCC> {
    Some(match (op, unsigned) {
        (BinaryOp::Eq, _) => IntCC::Equal,
        (BinaryOp::Ne, _) => IntCC::NotEqual,
        (BinaryOp::Lt, false) => IntCC::SignedLessThan,
        (BinaryOp::Le, false) => IntCC::SignedLessThanOrEqual,
        (BinaryOp::Gt, false) => IntCC::SignedGreaterThan,
        (BinaryOp::Ge, false) => IntCC::SignedGreaterThanOrEqual,
        (BinaryOp::Lt, true) => IntCC::UnsignedLessThan,
        (BinaryOp::Le, true) => IntCC::UnsignedLessThanOrEqual,
        (BinaryOp::Gt, true) => IntCC::UnsignedGreaterThan,
        (BinaryOp::Ge, true) => IntCC::UnsignedGreaterThanOrEqual,
        (
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Rem
            | BinaryOp::Pow
            | BinaryOp::Max
            | BinaryOp::Min
            | BinaryOp::And
            | BinaryOp::Or
            | BinaryOp::Xor,
            _,
        ) => return None,
    })
}

impl Cg<'_, '_> {
    fn fconst_of(&mut self, dt: DType, v: f64) -> Value {
        match dt {
            DType::F64 => self.b.ins().f64const(v),
            _ => self.b.ins().f32const(v as f32),
        }
    }

    fn vsplat_f(&mut self, dt: DType, lanes: u8, v: f64) -> Value {
        let c = self.fconst_of(dt, v);
        self.b.ins().splat(vector_type(dt, lanes), c)
    }

    fn vsplat_i(&mut self, ty: Type, v: i64) -> Value {
        let c = self.b.ins().iconst(ty.lane_type(), v);
        self.b.ins().splat(ty, c)
    }

    /// Calls an f64 helper on `f32` or `f64` arguments.
    pub(crate) fn call_helper(
        &mut self,
        h: Helper,
        dt: DType,
        args: &[Value],
    ) -> Result<Value, CodegenError> {
        let f = self.helper(h)?;
        let wide: Vec<Value> = args
            .iter()
            .map(|&a| {
                if dt == DType::F32 {
                    self.b.ins().fpromote(types::F64, a)
                } else {
                    a
                }
            })
            .collect();
        let call = self.b.ins().call(f, &wide);
        let r = *self
            .b
            .inst_results(call)
            .first()
            .ok_or(CodegenError::HelperWithoutResult)?;
        Ok(if dt == DType::F32 {
            self.b.ins().fdemote(types::F32, r)
        } else {
            r
        })
    }

    /// Scalar unary op on an operand of dtype `dt`.
    pub(crate) fn scalar_unary(
        &mut self,
        op: UnaryOp,
        dt: DType,
        x: Value,
    ) -> Result<Value, CodegenError> {
        let bad = || CodegenError::UndefinedFor {
            op: op.name(),
            dtype: dt,
        };
        if dt.is_float() {
            let one = |cg: &mut Self| cg.fconst_of(dt, 1.0);
            return Ok(match op {
                UnaryOp::Neg => self.b.ins().fneg(x),
                UnaryOp::Abs => self.b.ins().fabs(x),
                UnaryOp::Sqrt => self.b.ins().sqrt(x),
                UnaryOp::Rsqrt => {
                    let s = self.b.ins().sqrt(x);
                    let o = one(self);
                    self.b.ins().fdiv(o, s)
                }
                UnaryOp::Recip => {
                    let o = one(self);
                    self.b.ins().fdiv(o, x)
                }
                UnaryOp::Floor => self.b.ins().floor(x),
                UnaryOp::Ceil => self.b.ins().ceil(x),
                UnaryOp::Round => self.b.ins().nearest(x),
                UnaryOp::Sign => {
                    let z = self.fconst_of(dt, 0.0);
                    let o = one(self);
                    let m = self.fconst_of(dt, -1.0);
                    let pos = self.b.ins().fcmp(FloatCC::GreaterThan, x, z);
                    let neg = self.b.ins().fcmp(FloatCC::LessThan, x, z);
                    let inner = self.b.ins().select(neg, m, x);
                    self.b.ins().select(pos, o, inner)
                }
                UnaryOp::IsNan => self.b.ins().fcmp(FloatCC::Unordered, x, x),
                UnaryOp::Not => return Err(bad()),
                // Every other float op has no instruction: see `float_call`.
                _ => self.float_call(op, dt, x)?,
            });
        }
        if dt == DType::Bool {
            return match op {
                UnaryOp::Not => Ok(self.b.ins().bxor_imm_s(x, 1)),
                _ => Err(bad()),
            };
        }
        let ty = scalar_type(dt);
        Ok(match op {
            UnaryOp::Neg => self.b.ins().ineg(x),
            UnaryOp::Abs => {
                if dt == DType::U32 {
                    x
                } else {
                    self.b.ins().iabs(x)
                }
            }
            UnaryOp::Not => self.b.ins().bnot(x),
            UnaryOp::Sign => {
                if dt == DType::U32 {
                    let nz = self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0);
                    self.b.ins().uextend(ty, nz)
                } else {
                    let pos = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, x, 0);
                    let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
                    let p = self.b.ins().uextend(ty, pos);
                    let n = self.b.ins().uextend(ty, neg);
                    self.b.ins().isub(p, n)
                }
            }
            // The other ops are float-only (`unary_dtype` rejects integers before this).
            _ => return Err(bad()),
        })
    }

    /// A float unary op without a Cranelift instruction: on `f32` the inline polynomial of
    /// [`Cg::math_f32`] where it has one, otherwise the op's `f64` helper (the op's
    /// semantics in `kiln_ir`, generated for every op of the op list).
    fn float_call(&mut self, op: UnaryOp, dt: DType, x: Value) -> Result<Value, CodegenError> {
        if dt == DType::F32
            && let Some(v) = self.math_f32(op, types::F32, x)?
        {
            return Ok(v);
        }
        self.call_helper(Helper::Unary(op), dt, &[x])
    }

    /// Floor division and Python remainder of integers, without traps.
    fn int_divrem(
        &mut self,
        dt: DType,
        a: Value,
        b: Value,
        div: bool,
    ) -> Result<Value, CodegenError> {
        let ty = scalar_type(dt);
        let is0 = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        self.flag_if(is0, FLAG_DIV_ZERO)?;
        let one = self.b.ins().iconst(ty, 1);
        let b1 = self.b.ins().select(is0, one, b);
        if dt == DType::U32 {
            return Ok(if div {
                self.b.ins().udiv(a, b1)
            } else {
                self.b.ins().urem(a, b1)
            });
        }
        let m1 = self.b.ins().icmp_imm_s(IntCC::Equal, b1, -1);
        let b2 = self.b.ins().select(m1, one, b1);
        let q = self.b.ins().sdiv(a, b2);
        let na = self.b.ins().ineg(a);
        let q = self.b.ins().select(m1, na, q);
        let qb = self.b.ins().imul(q, b1);
        let r = self.b.ins().isub(a, qb);
        let x = self.b.ins().bxor(r, b1);
        let sgn = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
        let nz = self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
        let adj = self.b.ins().band(sgn, nz);
        Ok(if div {
            let d = self.b.ins().uextend(ty, adj);
            self.b.ins().isub(q, d)
        } else {
            let z = self.b.ins().iconst(ty, 0);
            let add = self.b.ins().select(adj, b1, z);
            self.b.ins().iadd(r, add)
        })
    }

    /// Scalar binary op on operands of dtype `dt`.
    pub(crate) fn scalar_binary(
        &mut self,
        op: BinaryOp,
        dt: DType,
        a: Value,
        b: Value,
    ) -> Result<Value, CodegenError> {
        let bad = || CodegenError::UndefinedFor {
            op: op.name(),
            dtype: dt,
        };
        if dt.is_float() {
            if let Some(cc) = float_cc(op) {
                return Ok(self.b.ins().fcmp(cc, a, b));
            }
            return Ok(match op {
                BinaryOp::Add => self.b.ins().fadd(a, b),
                BinaryOp::Sub => self.b.ins().fsub(a, b),
                BinaryOp::Mul => self.b.ins().fmul(a, b),
                BinaryOp::Div => self.b.ins().fdiv(a, b),
                BinaryOp::Max => self.b.ins().fmax(a, b),
                BinaryOp::Min => self.b.ins().fmin(a, b),
                BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => return Err(bad()),
                // Every other float op (`rem`, `pow`, ...) calls its `f64` helper.
                _ => self.call_helper(Helper::Binary(op), dt, &[a, b])?,
            });
        }
        let unsigned = dt == DType::U32;
        if let Some(cc) = int_cc(op, unsigned) {
            if dt == DType::Bool && !matches!(op, BinaryOp::Eq | BinaryOp::Ne) {
                return Err(bad());
            }
            return Ok(self.b.ins().icmp(cc, a, b));
        }
        if dt == DType::Bool {
            return Ok(match op {
                BinaryOp::And => self.b.ins().band(a, b),
                BinaryOp::Or => self.b.ins().bor(a, b),
                BinaryOp::Xor => self.b.ins().bxor(a, b),
                _ => return Err(bad()),
            });
        }
        Ok(match op {
            BinaryOp::Add => self.b.ins().iadd(a, b),
            BinaryOp::Sub => self.b.ins().isub(a, b),
            BinaryOp::Mul => self.b.ins().imul(a, b),
            BinaryOp::Div => self.int_divrem(dt, a, b, true)?,
            BinaryOp::Rem => self.int_divrem(dt, a, b, false)?,
            BinaryOp::Max if unsigned => self.b.ins().umax(a, b),
            BinaryOp::Max => self.b.ins().smax(a, b),
            BinaryOp::Min if unsigned => self.b.ins().umin(a, b),
            BinaryOp::Min => self.b.ins().smin(a, b),
            BinaryOp::And => self.b.ins().band(a, b),
            BinaryOp::Or => self.b.ins().bor(a, b),
            BinaryOp::Xor => self.b.ins().bxor(a, b),
            // Comparisons were handled above; the other ops are float-only.
            _ => return Err(bad()),
        })
    }

    /// Scalar cast with the executor's semantics.
    pub(crate) fn scalar_cast(&mut self, from: DType, to: DType, x: Value) -> Value {
        if from == to {
            return x;
        }
        let ins = self.b.ins();
        match (from, to) {
            (DType::F32, DType::F64) => ins.fpromote(types::F64, x),
            (DType::F64, DType::F32) => ins.fdemote(types::F32, x),
            (DType::F32 | DType::F64, DType::Bool) => {
                let z = self.fconst_of(from, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, x, z)
            }
            (DType::F32 | DType::F64, DType::I64) => ins.fcvt_to_sint_sat(types::I64, x),
            (DType::F32 | DType::F64, DType::I32 | DType::U32) => {
                let w = ins.fcvt_to_sint_sat(types::I64, x);
                self.b.ins().ireduce(types::I32, w)
            }
            (_, DType::Bool) => ins.icmp_imm_s(IntCC::NotEqual, x, 0),
            (DType::I32 | DType::I64, DType::F32 | DType::F64) => {
                ins.fcvt_from_sint(scalar_type(to), x)
            }
            (DType::U32, DType::F32 | DType::F64) => {
                let w = ins.uextend(types::I64, x);
                self.b.ins().fcvt_from_sint(scalar_type(to), w)
            }
            (DType::Bool, DType::F32 | DType::F64) => {
                let w = ins.uextend(types::I32, x);
                self.b.ins().fcvt_from_sint(scalar_type(to), w)
            }
            (DType::I32, DType::I64) => ins.sextend(types::I64, x),
            (DType::U32 | DType::Bool, DType::I64) => ins.uextend(types::I64, x),
            (DType::Bool, DType::I32 | DType::U32) => ins.uextend(types::I32, x),
            (DType::I64, DType::I32 | DType::U32) => ins.ireduce(types::I32, x),
            // i32 <-> u32 keep their bits; every other pair was handled above.
            _ => x,
        }
    }

    fn mask_as(&mut self, to: Type, m: Value) -> Value {
        self.b.ins().bitcast(
            to,
            MemFlagsData::new().with_endianness(Endianness::Little),
            m,
        )
    }

    /// Vector unary op (`None`: evaluate lane by lane).
    pub(crate) fn vector_unary(
        &mut self,
        op: UnaryOp,
        dt: DType,
        x: Value,
        lanes: u8,
    ) -> Result<Option<Value>, CodegenError> {
        let sse41 = self.jit.has_sse41;
        if dt.is_float() {
            let ty = vector_type(dt, lanes);
            return Ok(Some(match op {
                UnaryOp::Neg => self.b.ins().fneg(x),
                UnaryOp::Abs => self.b.ins().fabs(x),
                UnaryOp::Sqrt => self.b.ins().sqrt(x),
                UnaryOp::Rsqrt => {
                    let s = self.b.ins().sqrt(x);
                    let o = self.vsplat_f(dt, lanes, 1.0);
                    self.b.ins().fdiv(o, s)
                }
                UnaryOp::Recip => {
                    let o = self.vsplat_f(dt, lanes, 1.0);
                    self.b.ins().fdiv(o, x)
                }
                UnaryOp::Floor if sse41 => self.b.ins().floor(x),
                UnaryOp::Ceil if sse41 => self.b.ins().ceil(x),
                UnaryOp::Round if sse41 => self.b.ins().nearest(x),
                UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => return Ok(None),
                UnaryOp::Sign => {
                    let z = self.vsplat_f(dt, lanes, 0.0);
                    let o = self.vsplat_f(dt, lanes, 1.0);
                    let m = self.vsplat_f(dt, lanes, -1.0);
                    let pos = self.b.ins().fcmp(FloatCC::GreaterThan, x, z);
                    let neg = self.b.ins().fcmp(FloatCC::LessThan, x, z);
                    let pos = self.mask_as(ty, pos);
                    let neg = self.mask_as(ty, neg);
                    let inner = self.b.ins().bitselect(neg, m, x);
                    self.b.ins().bitselect(pos, o, inner)
                }
                UnaryOp::IsNan => self.b.ins().fcmp(FloatCC::Unordered, x, x),
                UnaryOp::Not => {
                    return Err(CodegenError::UndefinedFor {
                        op: "not",
                        dtype: dt,
                    });
                }
                // Every other float op: the inline `f32` polynomial, else lane by lane.
                _ => {
                    if dt == DType::F32 {
                        match self.math_f32(op, ty, x)? {
                            Some(v) => v,
                            None => return Ok(None),
                        }
                    } else {
                        return Ok(None);
                    }
                }
            }));
        }
        Ok(match (op, dt) {
            (UnaryOp::Not, _) => Some(self.b.ins().bnot(x)),
            (UnaryOp::Neg, DType::I32 | DType::U32 | DType::I64) => Some(self.b.ins().ineg(x)),
            (UnaryOp::Abs, DType::U32) => Some(x),
            (UnaryOp::Abs, DType::I32) => Some(self.b.ins().iabs(x)),
            _ => None,
        })
    }

    /// Vector binary op on operands of dtype `dt` (`None`: evaluate lane by lane).
    pub(crate) fn vector_binary(
        &mut self,
        op: BinaryOp,
        dt: DType,
        a: Value,
        b: Value,
        _lanes: u8,
    ) -> Result<Option<Value>, CodegenError> {
        if dt.is_float() {
            if let Some(cc) = float_cc(op) {
                return Ok(Some(self.b.ins().fcmp(cc, a, b)));
            }
            return Ok(match op {
                BinaryOp::Add => Some(self.b.ins().fadd(a, b)),
                BinaryOp::Sub => Some(self.b.ins().fsub(a, b)),
                BinaryOp::Mul => Some(self.b.ins().fmul(a, b)),
                BinaryOp::Div => Some(self.b.ins().fdiv(a, b)),
                BinaryOp::Max => Some(self.b.ins().fmax(a, b)),
                BinaryOp::Min => Some(self.b.ins().fmin(a, b)),
                _ => None,
            });
        }
        let ins = self.b.ins();
        Ok(match (op, dt) {
            (BinaryOp::And, _) => Some(ins.band(a, b)),
            (BinaryOp::Or, _) => Some(ins.bor(a, b)),
            (BinaryOp::Xor, _) => Some(ins.bxor(a, b)),
            (BinaryOp::Eq, _) => Some(ins.icmp(IntCC::Equal, a, b)),
            (BinaryOp::Ne, _) => Some(ins.icmp(IntCC::NotEqual, a, b)),
            (BinaryOp::Add, DType::I32 | DType::U32 | DType::I64) => Some(ins.iadd(a, b)),
            (BinaryOp::Sub, DType::I32 | DType::U32 | DType::I64) => Some(ins.isub(a, b)),
            (BinaryOp::Mul, DType::I32 | DType::U32) => Some(ins.imul(a, b)),
            (BinaryOp::Max, DType::I32) => Some(ins.smax(a, b)),
            (BinaryOp::Min, DType::I32) => Some(ins.smin(a, b)),
            (BinaryOp::Max, DType::U32) => Some(ins.umax(a, b)),
            (BinaryOp::Min, DType::U32) => Some(ins.umin(a, b)),
            (
                BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge,
                DType::I32 | DType::U32,
            ) => {
                let cc = int_cc(op, dt == DType::U32).ok_or(CodegenError::NoComparison)?;
                Some(ins.icmp(cc, a, b))
            }
            _ => None,
        })
    }

    /// Vector cast (`None`: evaluate lane by lane).
    pub(crate) fn vector_cast(
        &mut self,
        from: DType,
        to: DType,
        x: Value,
        lanes: u8,
    ) -> Option<Value> {
        if from == to {
            return Some(x);
        }
        let ty_from = vector_type(from, lanes);
        match (from, to) {
            (DType::I32, DType::U32) | (DType::U32, DType::I32) => Some(x),
            (DType::I32, DType::F32) => Some(self.b.ins().fcvt_from_sint(types::F32X4, x)),
            (DType::U32, DType::F32) => Some(self.b.ins().fcvt_from_uint(types::F32X4, x)),
            (DType::F32 | DType::F64, DType::Bool) => {
                let z = self.vsplat_f(from, lanes, 0.0);
                Some(self.b.ins().fcmp(FloatCC::NotEqual, x, z))
            }
            (DType::I32 | DType::U32 | DType::I64, DType::Bool) => {
                let z = self.vsplat_i(ty_from, 0);
                Some(self.b.ins().icmp(IntCC::NotEqual, x, z))
            }
            (DType::Bool, DType::I32 | DType::U32 | DType::I64) => {
                let one = self.vsplat_i(ty_from, 1);
                Some(self.b.ins().band(x, one))
            }
            (DType::Bool, DType::F32) if lanes == 4 => {
                let one = self.vsplat_i(ty_from, 1);
                let bits = self.b.ins().band(x, one);
                Some(self.b.ins().fcvt_from_sint(types::F32X4, bits))
            }
            _ => None,
        }
    }
}
