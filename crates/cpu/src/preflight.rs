//! Checks made before any generated code runs: every symbolic dim a kernel reads is
//! evaluated exactly, divisors are positive, and every index the verifier proved in bounds
//! is shown to be computed without 64-bit overflow, so the machine's wrapping arithmetic
//! gives the exact values the proof is about.

use crate::error::CpuError;
use crate::job::LoopJob;
use kiln_ir::{DType, Dim, DimError};
use kiln_kernel::{Expr, Guard, IndexExpr, KernelId, LoadMode};
use std::collections::HashMap;

/// Evaluates a dim under the bindings (negative values allowed).
pub(crate) fn eval_dim(d: &Dim, bindings: &HashMap<String, u64>) -> Result<i64, CpuError> {
    match d.eval(bindings) {
        Ok(v) => i64::try_from(v).map_err(|_| CpuError::Overflow(format!("`{d}` overflows i64"))),
        Err(DimError::Negative { value, .. }) => Ok(value),
        Err(DimError::Unbound(s)) => Err(CpuError::Unbound(s)),
        Err(DimError::Overflow(_)) => Err(CpuError::Overflow(format!(
            "`{d}` overflows under the given bindings"
        ))),
    }
}

/// An inclusive integer interval.
type Iv = (i128, i128);

struct Ctx<'a> {
    dims: &'a dyn Fn(&Dim) -> Option<i64>,
    vars: Vec<Iv>,
    reds: Vec<Iv>,
    values: Vec<Iv>,
    guards: &'a [Guard],
    kernel: KernelId,
}

fn fits((lo, hi): Iv) -> bool {
    lo >= i128::from(i64::MIN) && hi <= i128::from(i64::MAX)
}

impl Ctx<'_> {
    fn overflow(&self, e: &IndexExpr) -> CpuError {
        CpuError::Overflow(format!(
            "{}: index `{e}` may overflow 64-bit arithmetic under the given bindings",
            self.kernel
        ))
    }

    fn dim(&self, d: &Dim) -> Result<i128, CpuError> {
        (self.dims)(d)
            .map(i128::from)
            .ok_or_else(|| CpuError::Overflow(format!("{}: `{d}` is not evaluated", self.kernel)))
    }

    fn divisor(&self, d: &Dim) -> Result<i128, CpuError> {
        let v = self.dim(d)?;
        if v < 1 {
            return Err(CpuError::Overflow(format!(
                "{}: divisor `{d}` = {v} is not positive",
                self.kernel
            )));
        }
        Ok(v)
    }

    /// The interval of `e`, failing if any sub-expression may leave the i64 range.
    fn interval(&self, e: &IndexExpr) -> Result<Iv, CpuError> {
        self.interval_with(e, true)
    }

    /// [`Ctx::interval`]; with `guards`, a sub-expression that a guard bounds takes the
    /// guard's range. A guard's own bounds are evaluated without guards: a bound may be the
    /// guarded expression itself (`0 <= 0 < 4`), and a file can make guards refer to each
    /// other, so substituting there would not terminate.
    fn interval_with(&self, e: &IndexExpr, guards: bool) -> Result<Iv, CpuError> {
        if guards && let Some(g) = self.guards.iter().find(|g| &g.expr == e) {
            let lo = self.interval_with(&g.lo, false)?;
            let hi = self.interval_with(&g.hi, false)?;
            return Ok((lo.0, hi.1 - 1));
        }
        let iv = match e {
            IndexExpr::Dim(d) => {
                let v = self.dim(d)?;
                (v, v)
            }
            IndexExpr::Var(v) => *self.vars.get(v.index()).ok_or_else(|| self.overflow(e))?,
            IndexExpr::Red(r) => *self.reds.get(r.index()).ok_or_else(|| self.overflow(e))?,
            IndexExpr::Value(v) => *self.values.get(v.index()).ok_or_else(|| self.overflow(e))?,
            IndexExpr::Add(a, b) => {
                let (a, b) = (
                    self.interval_with(a, guards)?,
                    self.interval_with(b, guards)?,
                );
                (a.0 + b.0, a.1 + b.1)
            }
            IndexExpr::Sub(a, b) => {
                let (a, b) = (
                    self.interval_with(a, guards)?,
                    self.interval_with(b, guards)?,
                );
                (a.0 - b.1, a.1 - b.0)
            }
            IndexExpr::Mul(a, b) => {
                let (a, b) = (
                    self.interval_with(a, guards)?,
                    self.interval_with(b, guards)?,
                );
                let p = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
                let lo = p.iter().copied().min().unwrap_or(0);
                let hi = p.iter().copied().max().unwrap_or(0);
                (lo, hi)
            }
            IndexExpr::Div(a, d) => {
                let a = self.interval_with(a, guards)?;
                let d = self.divisor(d)?;
                (a.0.div_euclid(d), a.1.div_euclid(d))
            }
            IndexExpr::Mod(a, d) => {
                let a = self.interval_with(a, guards)?;
                let d = self.divisor(d)?;
                if a.0 >= 0 && a.1 < d { a } else { (0, d - 1) }
            }
        };
        if fits(iv) {
            Ok(iv)
        } else {
            Err(self.overflow(e))
        }
    }

    /// Checks only that every divisor in `e` is positive.
    fn divisors(&self, e: &IndexExpr) -> Result<(), CpuError> {
        let mut result = Ok(());
        e.visit(&mut |x| {
            if let (IndexExpr::Div(_, d) | IndexExpr::Mod(_, d), Ok(())) = (x, &result) {
                result = self.divisor(d).map(|_| ());
            }
        });
        result
    }
}

fn dtype_range(d: DType) -> Iv {
    match d {
        DType::I32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
        DType::U32 => (0, i128::from(u32::MAX)),
        DType::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
        DType::Bool => (0, 1),
        DType::F32 | DType::F64 => (0, 0),
    }
}

/// Checks divisors and overflow for every index of `job` given its evaluated dims and the
/// dtype of each body node.
pub(crate) fn check_job(
    job: &LoopJob,
    dtypes: &[DType],
    dims: &dyn Fn(&Dim) -> Option<i64>,
    kernel: KernelId,
) -> Result<(), CpuError> {
    let k = &job.kernel;
    let ext = |d: &Dim| -> Result<i128, CpuError> {
        dims(d)
            .map(i128::from)
            .ok_or_else(|| CpuError::Overflow(format!("{kernel}: `{d}` is not evaluated")))
    };
    let mut vars = Vec::new();
    for d in &k.domain {
        let e = ext(d)?;
        if e <= 0 {
            return Ok(());
        }
        vars.push((0, e - 1));
    }
    let mut reds = Vec::new();
    let mut reds_empty = false;
    for d in &k.reduce {
        let e = ext(d)?;
        reds_empty |= e <= 0;
        reds.push((0, (e - 1).max(0)));
    }
    let mut ctx = Ctx {
        dims,
        vars,
        reds,
        values: dtypes.iter().map(|&d| dtype_range(d)).collect(),
        guards: &[],
        kernel,
    };
    for e in &k.body.values {
        match e {
            Expr::Load(l) => {
                let runs = !(reds_empty
                    && crate::codegen::analysis::node_indices(e)
                        .iter()
                        .any(|ix| ix.uses_red()));
                match &l.mode {
                    LoadMode::Plain if runs => {
                        ctx.interval(&l.index)?;
                    }
                    LoadMode::Masked { guards, .. } if runs => {
                        for g in guards {
                            ctx.guards = &[];
                            ctx.interval(&g.lo)?;
                            ctx.interval(&g.hi)?;
                            ctx.divisors(&g.expr)?;
                        }
                        ctx.guards = guards;
                        ctx.interval(&l.index)?;
                        ctx.guards = &[];
                        ctx.divisors(&l.index)?;
                    }
                    LoadMode::Plain | LoadMode::Masked { .. } | LoadMode::Checked => {
                        ctx.divisors(&l.index)?;
                    }
                }
            }
            Expr::Index { index, .. } => ctx.divisors(index)?,
            Expr::Const(_)
            | Expr::Unary(..)
            | Expr::Binary(..)
            | Expr::Select(..)
            | Expr::Cast(..)
            | Expr::Reduce { .. }
            | Expr::Acc => {}
        }
    }
    for s in &k.body.stores {
        ctx.interval(&s.index)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::LocalBuffer;
    use kiln_kernel::{Body, BufferId, LoopKernel};

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
