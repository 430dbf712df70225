//! Index width: shows, for one binding of the symbols, that every intermediate value of
//! every proven index expression (plain and masked loads, stores) fits a backend's machine
//! integers, so wrapping arithmetic computes the exact values the verifier's proof is about.
//! The CPU backend checks 64 bits, the GPU backend 32.

use crate::ids::{KernelId, ValueId};
use crate::index::{Guard, IndexExpr};
use crate::program::{Body, Expr, LoadMode};
use kiln_ir::{DType, Dim};

/// The integer width a backend computes indices in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexWidth {
    /// `i32` (WGSL).
    I32,
    /// `i64` (the CPU backend).
    I64,
}

impl IndexWidth {
    /// Bits of the width.
    pub fn bits(self) -> u32 {
        match self {
            IndexWidth::I32 => 32,
            IndexWidth::I64 => 64,
        }
    }

    fn range(self) -> Iv {
        match self {
            IndexWidth::I32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
            IndexWidth::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
        }
    }
}

/// Why an index could not be shown to fit the width.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexWidthError {
    /// Some intermediate value of `index` may leave the width's range.
    #[error(
        "{kernel}: index `{index}` may overflow {bits}-bit arithmetic under the given bindings"
    )]
    Overflow {
        /// Kernel.
        kernel: KernelId,
        /// The sub-expression whose range leaves the width.
        index: String,
        /// The width's bits.
        bits: u32,
    },
    /// A divisor evaluates to zero or less.
    #[error("{kernel}: divisor `{dim}` = {value} is not positive")]
    Divisor {
        /// Kernel.
        kernel: KernelId,
        /// The divisor.
        dim: String,
        /// Its value.
        value: i128,
    },
    /// A dim has no value under the bindings (unbound symbol or overflow).
    #[error("{kernel}: `{dim}` is not evaluated")]
    Unevaluated {
        /// Kernel.
        kernel: KernelId,
        /// The dim.
        dim: String,
    },
}

/// An inclusive integer interval.
type Iv = (i128, i128);

/// The range of values of an integer dtype (`(0, 0)` for floats, which never index).
pub fn dtype_range(d: DType) -> (i128, i128) {
    match d {
        DType::I32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
        DType::U32 => (0, i128::from(u32::MAX)),
        DType::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
        DType::Bool => (0, 1),
        DType::F32 | DType::F64 => (0, 0),
    }
}

struct Ctx<'a> {
    dims: &'a dyn Fn(&Dim) -> Option<i64>,
    vars: Vec<Iv>,
    reds: Vec<Iv>,
    values: &'a dyn Fn(ValueId) -> Option<Iv>,
    guards: &'a [Guard],
    kernel: KernelId,
    width: IndexWidth,
}

impl Ctx<'_> {
    fn overflow(&self, e: &IndexExpr) -> IndexWidthError {
        IndexWidthError::Overflow {
            kernel: self.kernel,
            index: e.to_string(),
            bits: self.width.bits(),
        }
    }

    fn dim(&self, d: &Dim) -> Result<i128, IndexWidthError> {
        (self.dims)(d)
            .map(i128::from)
            .ok_or_else(|| IndexWidthError::Unevaluated {
                kernel: self.kernel,
                dim: d.to_string(),
            })
    }

    fn divisor(&self, d: &Dim) -> Result<i128, IndexWidthError> {
        let v = self.dim(d)?;
        if v < 1 {
            return Err(IndexWidthError::Divisor {
                kernel: self.kernel,
                dim: d.to_string(),
                value: v,
            });
        }
        Ok(v)
    }

    /// The interval of `e`, failing if any sub-expression may leave the width.
    fn interval(&self, e: &IndexExpr) -> Result<Iv, IndexWidthError> {
        self.interval_with(e, true)
    }

    /// [`Ctx::interval`]; with `guards`, a sub-expression that a guard bounds takes the
    /// guard's range. A guard's own bounds are evaluated without guards: a bound may be the
    /// guarded expression itself (`0 <= 0 < 4`), and a file can make guards refer to each
    /// other, so substituting there would not terminate.
    fn interval_with(&self, e: &IndexExpr, guards: bool) -> Result<Iv, IndexWidthError> {
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
            IndexExpr::Value(v) => (self.values)(*v).ok_or_else(|| self.overflow(e))?,
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
        let (min, max) = self.width.range();
        if iv.0 >= min && iv.1 <= max {
            Ok(iv)
        } else {
            Err(self.overflow(e))
        }
    }

    /// Checks only that every divisor in `e` is positive.
    fn divisors(&self, e: &IndexExpr) -> Result<(), IndexWidthError> {
        let mut result = Ok(());
        e.visit(&mut |x| {
            if let (IndexExpr::Div(_, d) | IndexExpr::Mod(_, d), Ok(())) = (x, &result) {
                result = self.divisor(d).map(|_| ());
            }
        });
        result
    }
}

fn load_uses_red(e: &Expr) -> bool {
    match e {
        Expr::Load(l) => {
            l.index.uses_red()
                || matches!(&l.mode, LoadMode::Masked { guards, .. }
                    if guards.iter().any(|g| g.lo.uses_red() || g.expr.uses_red() || g.hi.uses_red()))
        }
        _ => false,
    }
}

/// One body to check: its kernel, the extents of its loop and reduction variables, and
/// the range of each value an index may read.
pub struct WidthScope<'a> {
    /// The kernel (named in errors).
    pub kernel: KernelId,
    /// Extents of `i0, i1, ...`.
    pub domain: &'a [Dim],
    /// Extents of `r0, r1, ...`.
    pub reduce: &'a [Dim],
    /// The range of value `v<k>` (its dtype's, see [`dtype_range`]).
    pub values: &'a dyn Fn(ValueId) -> Option<(i128, i128)>,
    /// Every dim's value under the binding.
    pub dims: &'a dyn Fn(&Dim) -> Option<i64>,
}

impl std::fmt::Debug for WidthScope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WidthScope")
            .field("kernel", &self.kernel)
            .field("domain", &self.domain)
            .field("reduce", &self.reduce)
            .finish_non_exhaustive()
    }
}

/// Checks that every divisor of `body` is positive and that every intermediate of every
/// plain or masked load index and every store index fits `width` at every point of the
/// domain under the binding `scope.dims` evaluates. Checked loads (their indices read
/// values and are clamped) and `index` nodes get the divisor check only. A body whose
/// domain is empty passes; loads that use a reduction variable of an empty reduction are
/// never evaluated and get the divisor check only.
pub fn check_index_width(
    body: &Body,
    scope: &WidthScope<'_>,
    width: IndexWidth,
) -> Result<(), IndexWidthError> {
    let ext = |d: &Dim| -> Result<i128, IndexWidthError> {
        (scope.dims)(d)
            .map(i128::from)
            .ok_or_else(|| IndexWidthError::Unevaluated {
                kernel: scope.kernel,
                dim: d.to_string(),
            })
    };
    let mut vars = Vec::new();
    for d in scope.domain {
        let e = ext(d)?;
        if e <= 0 {
            return Ok(());
        }
        vars.push((0, e - 1));
    }
    let mut reds = Vec::new();
    let mut reds_empty = false;
    for d in scope.reduce {
        let e = ext(d)?;
        reds_empty |= e <= 0;
        reds.push((0, (e - 1).max(0)));
    }
    let mut ctx = Ctx {
        dims: scope.dims,
        vars,
        reds,
        values: scope.values,
        guards: &[],
        kernel: scope.kernel,
        width,
    };
    for e in &body.values {
        match e {
            Expr::Load(l) => {
                let runs = !(reds_empty && load_uses_red(e));
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
    for s in &body.stores {
        ctx.interval(&s.index)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use crate::program::Kernel;

    fn check(text: &str, n: i64, width: IndexWidth) -> Result<(), IndexWidthError> {
        let p = parse(text).map_err(|e| IndexWidthError::Unevaluated {
            kernel: KernelId(0),
            dim: e.to_string(),
        })?;
        let Some(Kernel::Loop(k)) = p.kernels.first() else {
            return Ok(());
        };
        let dims = move |d: &Dim| d.as_known().map(|v| v as i64).or(Some(n));
        let values = |_: ValueId| Some(dtype_range(DType::I32));
        let scope = WidthScope {
            kernel: KernelId(0),
            domain: &k.domain,
            reduce: &k.reduce,
            values: &values,
            dims: &dims,
        };
        check_index_width(&k.body, &scope, width)
    }

    const WRAPS: &str = "b0 = input \"x\" f32[4]\nb1 = output \"y\" f32[4]\n\
        k0 = loop [4] {\n  v0 = load b0[((i0*65536)*32768)/65536/32768]\n  store b1[i0] = v0\n}\n";

    #[test]
    fn intermediates_are_checked_against_the_width() {
        assert_eq!(check(WRAPS, 1, IndexWidth::I64), Ok(()));
        assert_eq!(
            check(WRAPS, 1, IndexWidth::I32),
            Err(IndexWidthError::Overflow {
                kernel: KernelId(0),
                index: "i0*65536*32768".into(),
                bits: 32,
            })
        );
        let sym = "symbol N >= 1\nb0 = input \"x\" f32[N]\nb1 = output \"y\" f32[N]\n\
            k0 = loop [N] {\n  v0 = load b0[i0*4/4]\n  store b1[i0] = v0\n}\n";
        assert_eq!(check(sym, 1 << 20, IndexWidth::I32), Ok(()));
        assert!(matches!(
            check(sym, 1 << 30, IndexWidth::I32),
            Err(IndexWidthError::Overflow { bits: 32, .. })
        ));
        assert_eq!(check(sym, 1 << 30, IndexWidth::I64), Ok(()));
    }
}
