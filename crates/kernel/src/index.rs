//! Index expressions: integer expressions over loop variables, reduction variables, symbols
//! and (for gathers) loaded integer values, with floor division and modulo by positive
//! dims. They address elements of flat buffers.

use crate::ids::{LoopVar, RedVar, ValueId};
use crate::poly::{Poly, PolyError};
use kiln_ir::Dim;
use std::fmt;
use std::ops::{Add, Mul, Sub};

/// An integer index expression. The tree is kept as written (it is not canonicalised), so a
/// masked load's [`Guard`] can name a sub-expression of the index it protects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IndexExpr {
    /// A constant or symbolic integer, e.g. `784`, `N`, `{N*784}`.
    Dim(Dim),
    /// A loop variable `i<k>`: the position along axis `k` of the body's domain.
    Var(LoopVar),
    /// A reduction variable `r<k>` of a loop kernel.
    Red(RedVar),
    /// The value of an earlier integer scalar `v<k>` of the same body (indirect indexing).
    Value(ValueId),
    /// `a + b`
    Add(Box<IndexExpr>, Box<IndexExpr>),
    /// `a - b`
    Sub(Box<IndexExpr>, Box<IndexExpr>),
    /// `a * b`; for a provable access one side must be free of variables and values.
    Mul(Box<IndexExpr>, Box<IndexExpr>),
    /// `floor(a / d)` for a dim `d >= 1`.
    Div(Box<IndexExpr>, Dim),
    /// `a mod d` in `0..d` (the remainder of the floor division) for a dim `d >= 1`.
    Mod(Box<IndexExpr>, Dim),
}

/// A masking condition `lo <= expr < hi` of a masked load.
///
/// When every guard of a load holds, the load reads memory; otherwise it yields the fill
/// value without touching memory. The verifier uses a guard by bounding any sub-expression
/// of the load's index that is structurally equal to `expr` by `[min(lo), max(hi) - 1]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Guard {
    /// Inclusive lower bound.
    pub lo: IndexExpr,
    /// The guarded expression.
    pub expr: IndexExpr,
    /// Exclusive upper bound.
    pub hi: IndexExpr,
}

/// The affine form of an index expression: `offset + sum stride_k * i_k + sum rstride_k * r_k`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affine {
    /// The constant part.
    pub offset: Dim,
    /// Coefficient of each loop variable `i0, i1, ...` up to the highest one used.
    pub strides: Vec<Dim>,
    /// Coefficient of each reduction variable `r0, r1, ...` up to the highest one used.
    pub red_strides: Vec<Dim>,
}

impl IndexExpr {
    /// The loop variable `i<k>`.
    pub fn var(k: u32) -> IndexExpr {
        IndexExpr::Var(LoopVar(k))
    }

    /// The reduction variable `r<k>`.
    pub fn red(k: u32) -> IndexExpr {
        IndexExpr::Red(RedVar(k))
    }

    /// A constant or symbolic integer.
    pub fn dim(d: impl Into<Dim>) -> IndexExpr {
        IndexExpr::Dim(d.into())
    }

    /// The value of an integer scalar.
    pub fn value(v: ValueId) -> IndexExpr {
        IndexExpr::Value(v)
    }

    /// `floor(self / d)`.
    pub fn floor_div(self, d: impl Into<Dim>) -> IndexExpr {
        IndexExpr::Div(Box::new(self), d.into())
    }

    /// `self mod d`.
    pub fn modulo(self, d: impl Into<Dim>) -> IndexExpr {
        IndexExpr::Mod(Box::new(self), d.into())
    }

    /// Calls `f` on every node, parents before children.
    pub fn visit(&self, f: &mut dyn FnMut(&IndexExpr)) {
        f(self);
        match self {
            IndexExpr::Dim(_) | IndexExpr::Var(_) | IndexExpr::Red(_) | IndexExpr::Value(_) => {}
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
                a.visit(f);
                b.visit(f);
            }
            IndexExpr::Div(a, _) | IndexExpr::Mod(a, _) => a.visit(f),
        }
    }

    /// Every dim in the tree, divisors included.
    pub fn dims(&self) -> Vec<&Dim> {
        fn go<'a>(e: &'a IndexExpr, out: &mut Vec<&'a Dim>) {
            match e {
                IndexExpr::Dim(d) => out.push(d),
                IndexExpr::Var(_) | IndexExpr::Red(_) | IndexExpr::Value(_) => {}
                IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
                    go(a, out);
                    go(b, out);
                }
                IndexExpr::Div(a, d) | IndexExpr::Mod(a, d) => {
                    go(a, out);
                    out.push(d);
                }
            }
        }
        let mut out = Vec::new();
        go(self, &mut out);
        out
    }

    /// The scalar values the expression reads, in order of appearance.
    pub fn values(&self) -> Vec<ValueId> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let IndexExpr::Value(v) = e {
                out.push(*v);
            }
        });
        out
    }

    /// True if any reduction variable appears.
    pub fn uses_red(&self) -> bool {
        let mut found = false;
        self.visit(&mut |e| found |= matches!(e, IndexExpr::Red(_)));
        found
    }

    /// True if the expression has no variable and no value (it is a symbolic constant).
    pub fn is_invariant(&self) -> bool {
        let mut found = false;
        self.visit(&mut |e| {
            found |= matches!(
                e,
                IndexExpr::Var(_) | IndexExpr::Red(_) | IndexExpr::Value(_)
            )
        });
        !found
    }

    /// The affine form, if the expression has no value, division or modulo and each product
    /// has an invariant side. Backends use it to read strides (e.g. a matmul operand's
    /// leading dimension).
    pub fn affine(&self) -> Option<Affine> {
        let lin = linear(self).ok()??;
        let grow = |v: &mut Vec<Poly>, k: usize| {
            if v.len() <= k {
                v.resize(k + 1, Poly::zero());
            }
        };
        let (mut strides, mut red_strides) = (Vec::new(), Vec::new());
        for (atom, coef) in lin.terms {
            match atom {
                LinAtom::Var(k) => {
                    grow(&mut strides, k);
                    strides[k] = coef;
                }
                LinAtom::Red(k) => {
                    grow(&mut red_strides, k);
                    red_strides[k] = coef;
                }
            }
        }
        let conv = |v: Vec<Poly>| v.iter().map(Poly::to_dim).collect::<Result<Vec<_>, _>>();
        Some(Affine {
            offset: lin.constant.to_dim().ok()?,
            strides: conv(strides).ok()?,
            red_strides: conv(red_strides).ok()?,
        })
    }

    fn precedence(&self) -> u8 {
        match self {
            IndexExpr::Add(..) | IndexExpr::Sub(..) => 1,
            IndexExpr::Mul(..) | IndexExpr::Div(..) | IndexExpr::Mod(..) => 2,
            IndexExpr::Dim(_) | IndexExpr::Var(_) | IndexExpr::Red(_) | IndexExpr::Value(_) => 3,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LinAtom {
    Var(usize),
    Red(usize),
}

/// `constant + sum coef * atom` over loop and reduction variables only.
struct Lin {
    constant: Poly,
    terms: Vec<(LinAtom, Poly)>,
}

impl Lin {
    fn combine(mut self, other: Lin, sign: i128) -> Result<Lin, PolyError> {
        self.constant = self.constant.add(&other.constant.scale(sign)?)?;
        for (atom, coef) in other.terms {
            let coef = coef.scale(sign)?;
            match self.terms.iter_mut().find(|(a, _)| *a == atom) {
                Some((_, c)) => *c = c.add(&coef)?,
                None => self.terms.push((atom, coef)),
            }
        }
        self.terms.retain(|(_, c)| !c.is_zero());
        self.terms.sort_by_key(|t| t.0);
        Ok(self)
    }

    fn scaled(self, k: &Poly) -> Result<Lin, PolyError> {
        let mut terms = Vec::new();
        for (atom, coef) in self.terms {
            let c = coef.mul(k)?;
            if !c.is_zero() {
                terms.push((atom, c));
            }
        }
        Ok(Lin {
            constant: self.constant.mul(k)?,
            terms,
        })
    }
}

/// The exact affine form over variables; `Ok(None)` when the expression is not affine.
fn linear(e: &IndexExpr) -> Result<Option<Lin>, PolyError> {
    Ok(Some(match e {
        IndexExpr::Dim(d) => Lin {
            constant: Poly::from_dim(d)?,
            terms: Vec::new(),
        },
        IndexExpr::Var(v) => Lin {
            constant: Poly::zero(),
            terms: vec![(LinAtom::Var(v.index()), Poly::constant(1))],
        },
        IndexExpr::Red(r) => Lin {
            constant: Poly::zero(),
            terms: vec![(LinAtom::Red(r.index()), Poly::constant(1))],
        },
        IndexExpr::Value(_) | IndexExpr::Div(..) | IndexExpr::Mod(..) => return Ok(None),
        IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => {
            let sign = if matches!(e, IndexExpr::Add(..)) {
                1
            } else {
                -1
            };
            let (Some(la), Some(lb)) = (linear(a)?, linear(b)?) else {
                return Ok(None);
            };
            la.combine(lb, sign)?
        }
        IndexExpr::Mul(a, b) => {
            let (Some(la), Some(lb)) = (linear(a)?, linear(b)?) else {
                return Ok(None);
            };
            if la.terms.is_empty() {
                lb.scaled(&la.constant)?
            } else if lb.terms.is_empty() {
                la.scaled(&lb.constant)?
            } else {
                return Ok(None);
            }
        }
    }))
}

/// Writes a dim as an index atom: bare when it is a non-negative integer or a single symbol,
/// otherwise in braces (`{N*784}`, `{-1}`).
pub(crate) fn fmt_dim_atom(d: &Dim, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if d.as_known().is_some() || d.as_symbol().is_some_and(|s| !crate::ids::looks_like_id(s)) {
        write!(f, "{d}")
    } else {
        write!(f, "{{{d}}}")
    }
}

/// Prints with the fewest parentheses that parse back to the same tree: `+ - * / %` are
/// left-associative, `* / %` bind tighter than `+ -`.
impl fmt::Display for IndexExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let child = |e: &IndexExpr, min: u8, f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if e.precedence() < min {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            IndexExpr::Dim(d) => fmt_dim_atom(d, f),
            IndexExpr::Var(v) => write!(f, "{v}"),
            IndexExpr::Red(r) => write!(f, "{r}"),
            IndexExpr::Value(v) => write!(f, "{v}"),
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => {
                child(a, 1, f)?;
                f.write_str(if matches!(self, IndexExpr::Add(..)) {
                    " + "
                } else {
                    " - "
                })?;
                child(b, 2, f)
            }
            IndexExpr::Mul(a, b) => {
                child(a, 2, f)?;
                f.write_str("*")?;
                child(b, 3, f)
            }
            IndexExpr::Div(a, d) | IndexExpr::Mod(a, d) => {
                child(a, 2, f)?;
                f.write_str(if matches!(self, IndexExpr::Div(..)) {
                    " / "
                } else {
                    " % "
                })?;
                fmt_dim_atom(d, f)
            }
        }
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <= {} < {}", self.lo, self.expr, self.hi)
    }
}

impl Add for IndexExpr {
    type Output = IndexExpr;
    fn add(self, rhs: IndexExpr) -> IndexExpr {
        IndexExpr::Add(Box::new(self), Box::new(rhs))
    }
}
impl Sub for IndexExpr {
    type Output = IndexExpr;
    fn sub(self, rhs: IndexExpr) -> IndexExpr {
        IndexExpr::Sub(Box::new(self), Box::new(rhs))
    }
}
impl Mul for IndexExpr {
    type Output = IndexExpr;
    fn mul(self, rhs: IndexExpr) -> IndexExpr {
        IndexExpr::Mul(Box::new(self), Box::new(rhs))
    }
}
impl From<Dim> for IndexExpr {
    fn from(d: Dim) -> IndexExpr {
        IndexExpr::Dim(d)
    }
}
impl From<LoopVar> for IndexExpr {
    fn from(v: LoopVar) -> IndexExpr {
        IndexExpr::Var(v)
    }
}
impl From<RedVar> for IndexExpr {
    fn from(r: RedVar) -> IndexExpr {
        IndexExpr::Red(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> Dim {
        Dim::sym("N")
    }

    #[test]
    fn prints_minimal_parentheses() {
        let i0 = IndexExpr::var(0);
        let i1 = IndexExpr::var(1);
        let e = i0.clone() * IndexExpr::dim(n() * Dim::known(784)) + i1.clone();
        assert_eq!(e.to_string(), "i0*{N*784} + i1");
        let e = i0.clone() * IndexExpr::dim(3u64) + (i1.clone() - IndexExpr::dim(1u64));
        assert_eq!(e.to_string(), "i0*3 + (i1 - 1)");
        let e = (i0.clone() * IndexExpr::dim(10u64) + i1.clone()).floor_div(7u64);
        assert_eq!(e.to_string(), "(i0*10 + i1) / 7");
        let e = i0.clone() * (i1.clone() * IndexExpr::dim(2u64));
        assert_eq!(e.to_string(), "i0*(i1*2)");
        let e = i0.clone() - (i1.clone() - IndexExpr::red(0));
        assert_eq!(e.to_string(), "i0 - (i1 - r0)");
        let e = i0.modulo(Dim::known(0) - Dim::known(1));
        assert_eq!(e.to_string(), "i0 % {-1}");
    }

    #[test]
    fn affine_form_collects_strides() {
        let i0 = IndexExpr::var(0);
        let e = i0.clone() * IndexExpr::dim(n() * Dim::known(784))
            + IndexExpr::red(1) * IndexExpr::dim(2u64)
            + IndexExpr::dim(5u64)
            - i0.clone() * IndexExpr::dim(n());
        let a = e.affine().unwrap();
        assert_eq!(a.offset, Dim::known(5));
        assert_eq!(a.strides, vec![n() * Dim::known(783)]);
        assert_eq!(a.red_strides, vec![Dim::known(0), Dim::known(2)]);
        assert_eq!((i0.clone() * i0.clone()).affine(), None);
        assert_eq!(i0.floor_div(2u64).affine(), None);
    }
}
