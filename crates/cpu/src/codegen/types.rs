//! Cranelift types of kernel dtypes, and the dtype of every node of a loop body.

use crate::codegen::error::CodegenError;
use crate::job::LoopJob;
use cranelift_codegen::ir::{Type, types};
use kiln_ir::DType;
use kiln_kernel::Expr;

/// The Cranelift type of a scalar of `dt`.
pub(crate) fn scalar_type(dt: DType) -> Type {
    match dt {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 | DType::U32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

/// The Cranelift type of a vector of `dt` with `lanes` lanes (bools are lane masks).
pub(crate) fn vector_type(dt: DType, lanes: u8) -> Type {
    match (dt, lanes) {
        (DType::F32, _) => types::F32X4,
        (DType::F64, _) => types::F64X2,
        (DType::I32 | DType::U32, _) => types::I32X4,
        (DType::I64, _) => types::I64X2,
        (DType::Bool, 4) => types::I32X4,
        (DType::Bool, _) => types::I64X2,
    }
}

/// The dtype of every node of a loop body (`None` for malformed bodies).
pub(crate) fn node_dtypes(job: &LoopJob) -> Result<Vec<DType>, CodegenError> {
    let body = &job.kernel.body;
    let mut out: Vec<DType> = Vec::with_capacity(body.values.len());
    for (i, e) in body.values.iter().enumerate() {
        let get = |v: kiln_kernel::ValueId| {
            out.get(v.index())
                .copied()
                .ok_or(CodegenError::UndefinedOperand {
                    node: i,
                    operand: v,
                })
        };
        let d = match e {
            Expr::Const(s) => s.dtype(),
            Expr::Index { dtype, .. } => *dtype,
            Expr::Load(l) => job.buffers.get(l.buffer.index()).map(|b| b.dtype).ok_or(
                CodegenError::UnknownLoadBuffer {
                    node: i,
                    buffer: l.buffer,
                },
            )?,
            Expr::Unary(op, a) => kiln_ir::semantics::unary_dtype(*op, get(*a)?)
                .map_err(|e| CodegenError::Typing(e.to_string()))?,
            Expr::Binary(op, a, b) => kiln_ir::semantics::binary_dtype(*op, get(*a)?, get(*b)?)
                .map_err(|e| CodegenError::Typing(e.to_string()))?,
            Expr::Select(_, a, _) => get(*a)?,
            Expr::Cast(d, _) => *d,
            Expr::Reduce { value, .. } => get(*value)?,
            Expr::Acc => return Err(CodegenError::AccInBody(i)),
        };
        out.push(d);
    }
    Ok(out)
}
