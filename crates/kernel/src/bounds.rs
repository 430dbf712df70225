//! Symbolic interval analysis of index expressions: the smallest and largest value an index
//! can take over an iteration domain, as polynomials in the symbols (see the crate docs,
//! "Bounds proofs").

use crate::ids::ValueId;
use crate::index::{Guard, IndexExpr};
use crate::poly::{Facts, Poly, PolyError};
use std::fmt;

/// Bounds `lo <= e <= hi` valid for every point of the domain and every allowed binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Interval {
    pub(crate) lo: Poly,
    pub(crate) hi: Poly,
}

/// Why an index expression could not be bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BoundError {
    /// The index reads a loaded value.
    Value(ValueId),
    /// A product of two variable terms.
    NonAffine(String),
    /// A coefficient whose sign is unknown.
    Sign(String),
    /// A divisor not proven `>= 1`.
    Divisor(String),
    /// A floor division whose bound is not a polynomial.
    DivBound(String),
    /// A loop or reduction variable outside the domain.
    UnknownVar(String),
    /// Arithmetic overflow or size limits.
    Poly(PolyError),
}

impl From<PolyError> for BoundError {
    fn from(e: PolyError) -> BoundError {
        BoundError::Poly(e)
    }
}

impl fmt::Display for BoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundError::Value(v) => write!(
                f,
                "the index reads {v}, so its range is unknown; use a checked load or guard it"
            ),
            BoundError::NonAffine(e) => {
                write!(f, "`{e}` multiplies two variable terms (not affine)")
            }
            BoundError::Sign(c) => write!(f, "cannot tell the sign of coefficient {c}"),
            BoundError::Divisor(d) => write!(f, "cannot prove divisor {d} >= 1"),
            BoundError::DivBound(e) => write!(f, "cannot bound floor division `{e}`"),
            BoundError::UnknownVar(v) => write!(f, "{v} is not a variable of this domain"),
            BoundError::Poly(e) => write!(f, "{e}"),
        }
    }
}

/// The context of an access: the symbol facts, the extents of `i*` and `r*`, and the
/// guards of a masked load.
pub(crate) struct Scope<'a> {
    pub(crate) facts: &'a Facts,
    pub(crate) vars: &'a [Poly],
    pub(crate) reds: &'a [Poly],
    pub(crate) guards: &'a [Guard],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Atom {
    Var(usize),
    Red(usize),
    Opaque(usize),
}

struct Term {
    atom: Atom,
    coef: Poly,
    range: Interval,
}

/// `constant + sum coef * atom`, each atom with its own range.
struct Lin {
    constant: Poly,
    terms: Vec<Term>,
}

impl Lin {
    fn constant(c: Poly) -> Lin {
        Lin {
            constant: c,
            terms: Vec::new(),
        }
    }

    fn atom(atom: Atom, range: Interval) -> Lin {
        Lin {
            constant: Poly::zero(),
            terms: vec![Term {
                atom,
                coef: Poly::constant(1),
                range,
            }],
        }
    }

    fn combine(mut self, other: Lin, sign: i128) -> Result<Lin, PolyError> {
        self.constant = self.constant.add(&other.constant.scale(sign)?)?;
        for t in other.terms {
            let coef = t.coef.scale(sign)?;
            let merge = !matches!(t.atom, Atom::Opaque(_));
            match self.terms.iter_mut().find(|s| merge && s.atom == t.atom) {
                Some(s) => s.coef = s.coef.add(&coef)?,
                None => self.terms.push(Term { coef, ..t }),
            }
        }
        self.terms.retain(|t| !t.coef.is_zero());
        Ok(self)
    }

    fn scaled(self, k: &Poly) -> Result<Lin, PolyError> {
        let mut terms = Vec::new();
        for t in self.terms {
            let coef = t.coef.mul(k)?;
            if !coef.is_zero() {
                terms.push(Term { coef, ..t });
            }
        }
        Ok(Lin {
            constant: self.constant.mul(k)?,
            terms,
        })
    }
}

impl Scope<'_> {
    /// Bounds of `e` over the domain.
    pub(crate) fn interval(&self, e: &IndexExpr) -> Result<Interval, BoundError> {
        let mut counter = 0;
        let lin = self.linear(e, &[], &mut counter)?;
        self.eval_lin(lin)
    }

    fn eval_lin(&self, lin: Lin) -> Result<Interval, BoundError> {
        let (mut lo, mut hi) = (lin.constant.clone(), lin.constant);
        for t in lin.terms {
            if self.facts.nonneg(&t.coef) {
                lo = lo.add(&t.coef.mul(&t.range.lo)?)?;
                hi = hi.add(&t.coef.mul(&t.range.hi)?)?;
            } else if self.facts.nonneg(&t.coef.neg()?) {
                lo = lo.add(&t.coef.mul(&t.range.hi)?)?;
                hi = hi.add(&t.coef.mul(&t.range.lo)?)?;
            } else {
                return Err(BoundError::Sign(t.coef.to_string()));
            }
        }
        Ok(Interval { lo, hi })
    }

    fn extent_range(ext: Option<&Poly>, name: String) -> Result<Interval, BoundError> {
        let ext = ext.ok_or(BoundError::UnknownVar(name))?;
        Ok(Interval {
            lo: Poly::zero(),
            hi: ext.add_const(-1)?,
        })
    }

    fn opaque(counter: &mut usize, range: Interval) -> Lin {
        *counter += 1;
        Lin::atom(Atom::Opaque(*counter), range)
    }

    fn divisor(&self, d: &kiln_ir::Dim) -> Result<Poly, BoundError> {
        let dp = Poly::from_dim(d)?;
        if !self.facts.nonneg(&dp.add_const(-1)?) {
            return Err(BoundError::Divisor(d.to_string()));
        }
        Ok(dp)
    }

    fn linear(
        &self,
        e: &IndexExpr,
        skip: &[usize],
        counter: &mut usize,
    ) -> Result<Lin, BoundError> {
        if let Some(gi) =
            (0..self.guards.len()).find(|&g| !skip.contains(&g) && self.guards[g].expr == *e)
        {
            let range = self.guarded(gi, e, skip)?;
            return Ok(Scope::opaque(counter, range));
        }
        Ok(match e {
            IndexExpr::Dim(d) => Lin::constant(Poly::from_dim(d)?),
            IndexExpr::Var(v) => Lin::atom(
                Atom::Var(v.index()),
                Scope::extent_range(self.vars.get(v.index()), v.to_string())?,
            ),
            IndexExpr::Red(r) => Lin::atom(
                Atom::Red(r.index()),
                Scope::extent_range(self.reds.get(r.index()), r.to_string())?,
            ),
            IndexExpr::Value(v) => return Err(BoundError::Value(*v)),
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => {
                let sign = if matches!(e, IndexExpr::Add(..)) {
                    1
                } else {
                    -1
                };
                let la = self.linear(a, skip, counter)?;
                let lb = self.linear(b, skip, counter)?;
                la.combine(lb, sign)?
            }
            IndexExpr::Mul(a, b) => {
                let la = self.linear(a, skip, counter)?;
                let lb = self.linear(b, skip, counter)?;
                if la.terms.is_empty() {
                    lb.scaled(&la.constant)?
                } else if lb.terms.is_empty() {
                    la.scaled(&lb.constant)?
                } else {
                    return Err(BoundError::NonAffine(e.to_string()));
                }
            }
            IndexExpr::Div(a, d) => {
                let dp = self.divisor(d)?;
                let ia = self.eval_lin(self.linear(a, skip, counter)?)?;
                let lo = self.facts.floor_div_lower(&ia.lo, &dp);
                let hi = self.facts.floor_div_upper(&ia.hi, &dp);
                match (lo, hi) {
                    (Some(lo), Some(hi)) => Scope::opaque(counter, Interval { lo, hi }),
                    _ => return Err(BoundError::DivBound(e.to_string())),
                }
            }
            IndexExpr::Mod(a, d) => {
                let dp = self.divisor(d)?;
                let full = Interval {
                    lo: Poly::zero(),
                    hi: dp.add_const(-1)?,
                };
                // An operand already inside 0..d is unchanged by the modulo.
                let range = match self.linear(a, skip, counter).and_then(|l| self.eval_lin(l)) {
                    Ok(ia) if self.facts.nonneg(&ia.lo) && self.facts.le(&ia.hi, &full.hi) => ia,
                    _ => full,
                };
                Scope::opaque(counter, range)
            }
        })
    }

    /// The range of a guarded expression: the guard's `[min lo, max hi - 1]`, tightened by
    /// the expression's own range where that is provably tighter.
    fn guarded(&self, gi: usize, e: &IndexExpr, skip: &[usize]) -> Result<Interval, BoundError> {
        let g = &self.guards[gi];
        let plain = Scope {
            guards: &[],
            ..*self
        };
        let glo = plain.interval(&g.lo)?.lo;
        let ghi = plain.interval(&g.hi)?.hi.add_const(-1)?;
        let mut skip_all: Vec<usize> = skip.to_vec();
        skip_all.extend((0..self.guards.len()).filter(|&k| self.guards[k].expr == *e));
        let mut counter = 0;
        let natural = self
            .linear(e, &skip_all, &mut counter)
            .and_then(|l| self.eval_lin(l))
            .ok();
        let f = self.facts;
        Ok(match natural {
            None => Interval { lo: glo, hi: ghi },
            Some(n) => Interval {
                lo: if f.le(&n.lo, &glo) || !f.le(&glo, &n.lo) {
                    glo
                } else {
                    n.lo
                },
                hi: if f.le(&ghi, &n.hi) || !f.le(&n.hi, &ghi) {
                    ghi
                } else {
                    n.hi
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use crate::program::{Expr, Kernel, LoadMode, Symbol};
    use proptest::prelude::*;

    fn n_facts() -> Facts {
        Facts::new(&[Symbol {
            name: "N".into(),
            min: 1,
            max: None,
        }])
    }

    /// The index and guards of the first load in a one-kernel program.
    fn first_load(text: &str) -> (IndexExpr, Vec<Guard>) {
        let p = parse(text).unwrap();
        let Kernel::Loop(k) = &p.kernels[0] else {
            panic!("not a loop")
        };
        let Expr::Load(l) = &k.body.values[0] else {
            panic!("not a load")
        };
        let guards = match &l.mode {
            LoadMode::Masked { guards, .. } => guards.clone(),
            _ => Vec::new(),
        };
        (l.index.clone(), guards)
    }

    fn range(index: &str, guards: &str, vars: &[&str]) -> Result<Interval, BoundError> {
        let text = format!("k0 = loop [] {{\n v0 = load b0[{index}]{guards}\n}}\n");
        let (e, g) = first_load(&text);
        let facts = n_facts();
        let vars: Vec<Poly> = vars
            .iter()
            .map(|v| crate::poly::parse_dim_text(v).unwrap())
            .collect();
        let scope = Scope {
            facts: &facts,
            vars: &vars,
            reds: &[Poly::constant(10)],
            guards: &g,
        };
        scope.interval(&e)
    }

    fn show(iv: Interval) -> (String, String) {
        (iv.lo.to_string(), iv.hi.to_string())
    }

    #[test]
    fn affine_ranges_are_exact() {
        let r = range("i0*10 + r0", "", &["N"]).unwrap();
        assert_eq!(show(r), ("0".into(), "N*10-1".into()));
        let r = range("i0*10 - i0*9 + 3 - i1", "", &["N", "4"]).unwrap();
        assert_eq!(show(r), ("0".into(), "N+2".into()));
        assert_eq!(
            range("i0*i1", "", &["N", "4"]),
            Err(BoundError::NonAffine("i0*i1".into()))
        );
        assert_eq!(range("v3 + 1", "", &[]), Err(BoundError::Value(ValueId(3))));
        assert_eq!(
            range("i2", "", &["N"]),
            Err(BoundError::UnknownVar("i2".into()))
        );
        assert_eq!(
            range("i0*{N-2}", "", &["N"]),
            Err(BoundError::Sign("N-2".into()))
        );
    }

    #[test]
    fn div_mod_and_guards() {
        let r = range("(i0 / 6)*6 + i0 % 2*3 + i0 % 6 / 2", "", &["N*6"]).unwrap();
        assert_eq!(show(r), ("0".into(), "N*6-1".into()));
        let r = range("i0 % 4", "", &["3"]).unwrap();
        assert_eq!(show(r), ("0".into(), "2".into()));
        let r = range(
            "i0*3 + (i1 - 1)",
            " if 0 <= i1 - 1 < 3 else f32(0.0)",
            &["N", "5"],
        )
        .unwrap();
        assert_eq!(show(r), ("0".into(), "N*3-1".into()));
        let r = range("v2*4", " if 0 <= v2 < N else f32(0.0)", &[]).unwrap();
        assert_eq!(show(r), ("0".into(), "N*4-4".into()));
        assert_eq!(
            range("i0 / {N-1}", "", &["N"]),
            Err(BoundError::Divisor("N-1".into()))
        );
    }

    proptest! {
        /// Every value an affine-with-div/mod index takes lies in its computed interval.
        #[test]
        fn intervals_contain_every_value(
            a in -5i64..6, b in -5i64..6, c in -8i64..8, d in 1i64..5, m in 1i64..5,
            n in 1i64..7,
        ) {
            let text = format!("(i0*{{{a}}} + i1*{{{b}}} + {{{c}}}) / {d} + i1 % {m}");
            let (e, _) = first_load(&format!("k0 = loop [] {{\n v0 = load b0[{text}]\n}}\n"));
            let facts = n_facts();
            let vars = [crate::poly::parse_dim_text("N").unwrap(), Poly::constant(3)];
            let scope = Scope { facts: &facts, vars: &vars, reds: &[], guards: &[] };
            if let Ok(iv) = scope.interval(&e) {
                let at = |p: &Poly| p.eval(&|_| i128::from(n)).unwrap();
                for i0 in 0..n {
                    for i1 in 0..3 {
                        let v = (i0 * a + i1 * b + c).div_euclid(d) + i1.rem_euclid(m);
                        prop_assert!(at(&iv.lo) <= i128::from(v) && i128::from(v) <= at(&iv.hi));
                    }
                }
            }
        }
    }
}
