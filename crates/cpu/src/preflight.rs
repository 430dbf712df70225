//! Checks made before any generated code runs: every symbolic dim a kernel reads is
//! evaluated exactly, divisors are positive, and every index the verifier proved in bounds
//! is shown to be computed without 64-bit overflow, so the machine's wrapping arithmetic
//! gives the exact values the proof is about.

use crate::error::CpuError;
use crate::job::LoopJob;
use kiln_ir::{DType, Dim, DimError};
use kiln_kernel::width::dtype_range;
use kiln_kernel::{BindError, IndexWidth, KernelId, ValueId, WidthScope, check_index_width};
use std::collections::HashMap;

/// Evaluates a dim under the bindings (negative values allowed).
pub(crate) fn eval_dim(d: &Dim, bindings: &HashMap<String, u64>) -> Result<i64, CpuError> {
    match d.eval(bindings) {
        Ok(v) => i64::try_from(v).map_err(|_| CpuError::Overflow(format!("`{d}` overflows i64"))),
        Err(DimError::Negative { value, .. }) => Ok(value),
        Err(DimError::Unbound(s)) => Err(BindError::Unbound(s).into()),
        Err(DimError::Overflow(_)) => Err(CpuError::Overflow(format!(
            "`{d}` overflows under the given bindings"
        ))),
    }
}

/// Checks divisors and 64-bit overflow for every index of `job` given its evaluated dims
/// and the dtype of each body node ([`kiln_kernel::check_index_width`], the fact the GPU
/// backend checks at 32 bits).
pub(crate) fn check_job(
    job: &LoopJob,
    dtypes: &[DType],
    dims: &dyn Fn(&Dim) -> Option<i64>,
    kernel: KernelId,
) -> Result<(), CpuError> {
    let k = &job.kernel;
    let values = |v: ValueId| dtypes.get(v.index()).map(|&d| dtype_range(d));
    let scope = WidthScope {
        kernel,
        domain: &k.domain,
        reduce: &k.reduce,
        values: &values,
        dims,
    };
    check_index_width(&k.body, &scope, IndexWidth::I64)
        .map_err(|e| CpuError::Overflow(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::LocalBuffer;
    use kiln_kernel::{Body, BufferId, IndexExpr, LoopKernel};

    fn job(index: IndexExpr) -> LoopJob {
        let mut body = Body::new();
        let v = body.load(BufferId(0), index);
        body.store(BufferId(1), IndexExpr::var(0), v);
        LoopJob {
            kernel: LoopKernel {
                domain: vec![Dim::sym("N")],
                reduce: vec![],
                body,
            },
            buffers: vec![
                LocalBuffer {
                    dtype: DType::F32,
                    size: Dim::sym("N"),
                };
                2
            ],
            symbols: vec!["N".into()],
        }
    }

    #[test]
    fn overflowing_intermediates_are_rejected() {
        let n = 1i64 << 40;
        let dims = move |d: &Dim| d.as_known().map(|v| v as i64).or(Some(n));
        let i0 = IndexExpr::var(0);
        let fine = job(i0.clone());
        assert_eq!(check_job(&fine, &[DType::F32], &dims, KernelId(0)), Ok(()));
        let big = i0.clone() * IndexExpr::dim(Dim::sym("N")) * IndexExpr::dim(Dim::sym("N"));
        let bad = job((big
            - i0.clone() * IndexExpr::dim(Dim::sym("N")) * IndexExpr::dim(Dim::sym("N")))
            + i0);
        assert!(matches!(
            check_job(&bad, &[DType::F32], &dims, KernelId(3)),
            Err(CpuError::Overflow(m)) if m.starts_with("k3: index")
        ));
    }

    #[test]
    fn non_positive_divisors_are_rejected() {
        let dims = |d: &Dim| match d.as_symbol() {
            Some("D") => Some(0),
            Some(_) => Some(5),
            None => d.as_known().map(|v| v as i64),
        };
        let j = job(IndexExpr::var(0).floor_div(Dim::sym("D")));
        assert!(matches!(
            check_job(&j, &[DType::F32], &dims, KernelId(0)),
            Err(CpuError::Overflow(m)) if m == "k0: divisor `D` = 0 is not positive"
        ));
    }
}
