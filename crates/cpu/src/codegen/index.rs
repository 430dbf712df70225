//! Index arithmetic: index expressions as `i64` values, with floor division and modulo.

use super::analysis::known_i64;
use super::error::CodegenError;
use super::{Cg, Env, PointValue};
use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use kiln_ir::{DType, Dim};
use kiln_kernel::IndexExpr;

impl Cg<'_, '_> {
    /// Converts an integer or bool scalar to an `i64` index.
    fn index_of(&mut self, v: Value, dt: DType) -> Result<Value, CodegenError> {
        Ok(match dt {
            DType::I64 => v,
            DType::I32 => self.b.ins().sextend(types::I64, v),
            DType::U32 | DType::Bool => self.b.ins().uextend(types::I64, v),
            DType::F32 | DType::F64 => return Err(CodegenError::FloatIndex),
        })
    }

    /// Emits an index expression as an `i64` (scalar environment).
    pub(crate) fn index(&mut self, e: &IndexExpr, env: &Env) -> Result<Value, CodegenError> {
        Ok(match e {
            IndexExpr::Dim(d) => self.dim(d)?,
            IndexExpr::Var(v) => *env
                .vars
                .get(v.index())
                .ok_or(CodegenError::VariableOutOfRange("loop"))?,
            IndexExpr::Red(r) => *env
                .reds
                .get(r.index())
                .ok_or(CodegenError::VariableOutOfRange("reduction"))?,
            IndexExpr::Value(v) => {
                let x = match env.vals.get(v.index()).copied().flatten() {
                    Some(PointValue::Scalar(x)) => x,
                    Some(PointValue::Vector(_)) => {
                        return Err(CodegenError::Internal("vector value in a scalar index"));
                    }
                    None => return Err(CodegenError::IndexBeforeDefined(*v)),
                };
                let dt = self.dtypes[v.index()];
                self.index_of(x, dt)?
            }
            IndexExpr::Add(a, b) => {
                let (a, b) = (self.index(a, env)?, self.index(b, env)?);
                self.b.ins().iadd(a, b)
            }
            IndexExpr::Sub(a, b) => {
                let (a, b) = (self.index(a, env)?, self.index(b, env)?);
                self.b.ins().isub(a, b)
            }
            IndexExpr::Mul(a, b) => {
                let (a, b) = (self.index(a, env)?, self.index(b, env)?);
                self.b.ins().imul(a, b)
            }
            IndexExpr::Div(a, d) => {
                let a = self.index(a, env)?;
                self.floor_divmod(a, d, true)?
            }
            IndexExpr::Mod(a, d) => {
                let a = self.index(a, env)?;
                self.floor_divmod(a, d, false)?
            }
        })
    }

    /// `floor(a / d)` or `a mod d` for a divisor `d >= 1` (checked before the kernel runs).
    fn floor_divmod(&mut self, a: Value, d: &Dim, div: bool) -> Result<Value, CodegenError> {
        if let Some(k) = known_i64(d) {
            if k == 1 {
                return Ok(if div {
                    a
                } else {
                    self.b.ins().iconst(types::I64, 0)
                });
            }
            if k > 1 && (k & (k - 1)) == 0 {
                let s = i64::from(k.trailing_zeros());
                return Ok(if div {
                    self.b.ins().sshr_imm_s(a, s)
                } else {
                    self.b.ins().band_imm_s(a, k - 1)
                });
            }
        }
        let dv = self.dim(d)?;
        let q = self.b.ins().sdiv(a, dv);
        let qd = self.b.ins().imul(q, dv);
        let r = self.b.ins().isub(a, qd);
        let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
        Ok(if div {
            let one = self.b.ins().uextend(types::I64, neg);
            self.b.ins().isub(q, one)
        } else {
            let zero = self.b.ins().iconst(types::I64, 0);
            let add = self.b.ins().select(neg, dv, zero);
            self.b.ins().iadd(r, add)
        })
    }
}
