//! Index arithmetic for fusion: coordinates as affine forms over loop variables, reduction
//! variables and opaque atoms (floor divisions, remainders, guarded sub-expressions, loaded
//! values), simplified with symbolic ranges and printed as kernel-IR [`IndexExpr`]s.
//!
//! Movement ops become transformations of these forms (see `lower.rs`); the load of a
//! materialised tensor turns its coordinates into a flat row-major index. Simplification is
//! only an aid for readable kernels: when a range cannot be shown, the division or remainder
//! stays, and the kernel verifier still proves every access in bounds.

use kiln_ir::Dim;
use kiln_kernel::{Guard, IndexExpr, ValueId};
use std::cmp::Ordering;

/// An opaque term of a [`Lin`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Atom {
    /// Loop variable `i<k>`.
    Var(u32),
    /// Reduction variable `r<k>`.
    Red(u32),
    /// A loaded integer value `v<k>` (gather indices).
    Value(u32),
    /// `floor(lin / d)`.
    Div(Box<Lin>, Dim),
    /// `lin mod d`.
    Mod(Box<Lin>, Dim),
    /// `inner`, which a masked load reads only where `lo <= inner < hi`; printed verbatim so
    /// the load's guard names it as a sub-expression.
    Guarded {
        /// The guarded expression.
        inner: Box<Lin>,
        /// Inclusive lower bound.
        lo: Dim,
        /// Exclusive upper bound.
        hi: Dim,
    },
}

/// `konst + sum coef * atom`, with distinct atoms in a canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Lin {
    /// The constant part.
    pub(crate) konst: Dim,
    /// Coefficient of each atom (never zero).
    pub(crate) terms: Vec<(Atom, Dim)>,
}

fn zero() -> Dim {
    Dim::known(0)
}

fn is_zero(d: &Dim) -> bool {
    d.as_known() == Some(0)
}

fn neg(d: &Dim) -> Dim {
    zero() - d.clone()
}

/// True if `d >= 0` for every binding of its symbols to positive integers (a sufficient
/// test: a known non-negative size, or every coefficient positive).
pub(crate) fn nonneg(d: &Dim) -> bool {
    d.checked_sub(&zero()).is_some()
}

/// True if `a <= b` can be shown.
pub(crate) fn le(a: &Dim, b: &Dim) -> bool {
    nonneg(&(b.clone() - a.clone()))
}

fn atom_key(a: &Atom) -> (u8, u32, String) {
    match a {
        Atom::Var(k) => (0, *k, String::new()),
        Atom::Red(k) => (1, *k, String::new()),
        Atom::Value(k) => (2, *k, String::new()),
        Atom::Guarded { .. } => (3, 0, atom_expr(a).to_string()),
        Atom::Div(..) | Atom::Mod(..) => (4, 0, atom_expr(a).to_string()),
    }
}

fn cmp_atoms(a: &Atom, b: &Atom) -> Ordering {
    atom_key(a).cmp(&atom_key(b))
}

/// Extents of the loop and reduction variables a form ranges over.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope {
    /// Extent of `i<k>`.
    pub(crate) vars: Vec<Dim>,
    /// Extent of `r<k>`.
    pub(crate) reds: Vec<Dim>,
}

impl Lin {
    /// The constant `d`.
    pub(crate) fn constant(d: impl Into<Dim>) -> Lin {
        Lin {
            konst: d.into(),
            terms: Vec::new(),
        }
    }

    /// Zero.
    pub(crate) fn zero() -> Lin {
        Lin::constant(zero())
    }

    /// `inner`, read only where `lo <= inner < hi`. A constant that provably lies in the
    /// range needs no guard; one that may not prints as `lo` in indices (the guard keeps the
    /// real condition), so a constant never collides with the integers of an index.
    pub(crate) fn guarded(inner: Lin, lo: Dim, hi: Dim) -> Lin {
        if let Some(c) = inner.as_const()
            && le(&lo, c)
            && le(c, &(hi.clone() - Dim::known(1)))
        {
            return inner;
        }
        Lin::atom(Atom::Guarded {
            inner: Box::new(inner),
            lo,
            hi,
        })
    }

    /// A single atom with coefficient 1.
    pub(crate) fn atom(a: Atom) -> Lin {
        Lin {
            konst: zero(),
            terms: vec![(a, Dim::known(1))],
        }
    }

    /// Loop variable `i<k>`.
    pub(crate) fn var(k: usize) -> Lin {
        Lin::atom(Atom::Var(k as u32))
    }

    /// Reduction variable `r<k>`.
    pub(crate) fn red(k: usize) -> Lin {
        Lin::atom(Atom::Red(k as u32))
    }

    /// The loaded value `v`.
    pub(crate) fn value(v: ValueId) -> Lin {
        Lin::atom(Atom::Value(v.0))
    }

    /// The constant, if the form has no atom.
    pub(crate) fn as_const(&self) -> Option<&Dim> {
        self.terms.is_empty().then_some(&self.konst)
    }

    fn normalise(mut self) -> Lin {
        self.terms.retain(|(_, c)| !is_zero(c));
        self.terms.sort_by(|a, b| cmp_atoms(&a.0, &b.0));
        // `(l mod d) * c + floor(l / d) * (c * d) = l * c`: reshapes that round-trip
        // through coordinates collapse back to flat indices.
        for i in 0..self.terms.len() {
            let Atom::Mod(l, d) = &self.terms[i].0 else {
                continue;
            };
            let c = self.terms[i].1.clone();
            let want = &c * d;
            let div = Atom::Div(l.clone(), d.clone());
            if let Some(j) = self.terms.iter().position(|(a, k)| *a == div && *k == want) {
                let l = (**l).clone();
                let (hi, lo) = (i.max(j), i.min(j));
                self.terms.remove(hi);
                self.terms.remove(lo);
                return self.add(&l.scale(&c));
            }
        }
        self
    }

    /// `self + other`.
    pub(crate) fn add(&self, other: &Lin) -> Lin {
        let mut out = self.clone();
        out.konst = &out.konst + &other.konst;
        for (a, c) in &other.terms {
            match out.terms.iter_mut().find(|(b, _)| b == a) {
                Some((_, d)) => *d = &*d + c,
                None => out.terms.push((a.clone(), c.clone())),
            }
        }
        out.normalise()
    }

    /// `self - other`.
    pub(crate) fn sub(&self, other: &Lin) -> Lin {
        self.add(&other.scale(&neg(&Dim::known(1))))
    }

    /// `self * k`.
    pub(crate) fn scale(&self, k: &Dim) -> Lin {
        Lin {
            konst: &self.konst * k,
            terms: self.terms.iter().map(|(a, c)| (a.clone(), c * k)).collect(),
        }
        .normalise()
    }

    /// `self + d`.
    pub(crate) fn add_const(&self, d: &Dim) -> Lin {
        let mut out = self.clone();
        out.konst = &out.konst + d;
        out
    }

    /// True if some atom (at any depth, inside divisions, remainders and guards too)
    /// satisfies `f`.
    pub(crate) fn mentions(&self, f: &mut dyn FnMut(&Atom) -> bool) -> bool {
        self.terms.iter().any(|(a, _)| {
            f(a) || match a {
                Atom::Var(_) | Atom::Red(_) | Atom::Value(_) => false,
                Atom::Div(l, _) | Atom::Mod(l, _) => l.mentions(f),
                Atom::Guarded { inner, .. } => inner.mentions(f),
            }
        })
    }

    /// True if some atom (at any depth) reads a loaded value.
    pub(crate) fn reads_value(&self) -> bool {
        self.terms.iter().any(|(a, _)| match a {
            Atom::Value(_) => true,
            Atom::Var(_) | Atom::Red(_) => false,
            Atom::Div(l, _) | Atom::Mod(l, _) => l.reads_value(),
            Atom::Guarded { inner, .. } => inner.reads_value(),
        })
    }

    /// The form with every guarded atom (at any depth) replaced by `f(inner, lo, hi)`.
    pub(crate) fn replace_guarded(&self, f: &mut dyn FnMut(&Lin, &Dim, &Dim) -> Lin) -> Lin {
        let mut out = Lin::constant(self.konst.clone());
        for (a, c) in &self.terms {
            let term = match a {
                Atom::Var(_) | Atom::Red(_) | Atom::Value(_) => Lin::atom(a.clone()),
                Atom::Div(l, d) => Lin::atom(Atom::Div(Box::new(l.replace_guarded(f)), d.clone())),
                Atom::Mod(l, d) => Lin::atom(Atom::Mod(Box::new(l.replace_guarded(f)), d.clone())),
                Atom::Guarded { inner, lo, hi } => {
                    let inner = inner.replace_guarded(f);
                    f(&inner, lo, hi)
                }
            };
            out = out.add(&term.scale(c));
        }
        out
    }

    /// Every guarded atom, outermost first, without duplicates.
    pub(crate) fn guards(&self, out: &mut Vec<(Lin, Dim, Dim)>) {
        for (a, _) in &self.terms {
            match a {
                Atom::Var(_) | Atom::Red(_) | Atom::Value(_) => {}
                Atom::Div(l, _) | Atom::Mod(l, _) => l.guards(out),
                Atom::Guarded { inner, lo, hi } => {
                    let g = ((**inner).clone(), lo.clone(), hi.clone());
                    if !out.contains(&g) {
                        out.push(g);
                    }
                    inner.guards(out);
                }
            }
        }
    }

    /// Bounds `lo <= self <= hi` over the scope, if they can be shown.
    pub(crate) fn range(&self, scope: &Scope) -> Option<(Dim, Dim)> {
        let mut lo = self.konst.clone();
        let mut hi = self.konst.clone();
        for (a, c) in &self.terms {
            let (alo, ahi) = atom_range(a, scope)?;
            if nonneg(c) {
                lo = &lo + &(c * &alo);
                hi = &hi + &(c * &ahi);
            } else if nonneg(&neg(c)) {
                lo = &lo + &(c * &ahi);
                hi = &hi + &(c * &alo);
            } else {
                return None;
            }
        }
        Some((lo, hi))
    }

    /// True if `0 <= self <= d - 1` can be shown.
    fn within(&self, d: &Dim, scope: &Scope) -> bool {
        self.range(scope)
            .is_some_and(|(lo, hi)| nonneg(&lo) && le(&hi, &(d.clone() - Dim::known(1))))
    }

    /// Splits `self = d * high + low` term by term (exact parts go to `high`).
    fn split(&self, d: &Dim) -> (Lin, Lin) {
        let mut high = Lin::zero();
        let mut low = Lin::zero();
        for (a, c) in &self.terms {
            match c.exact_div(d) {
                Some(q) => high.terms.push((a.clone(), q)),
                None => low.terms.push((a.clone(), c.clone())),
            }
        }
        let known_neg = neg(&self.konst)
            .as_known()
            .filter(|_| !nonneg(&self.konst))
            .and_then(|k| i64::try_from(k).ok())
            .map(|k| -k);
        let konst = self
            .konst
            .as_known()
            .and_then(|k| i64::try_from(k).ok())
            .or(known_neg);
        match (konst, d.as_known().and_then(|v| i64::try_from(v).ok())) {
            (Some(k), Some(dd)) if dd > 0 => {
                high.konst = signed(k.div_euclid(dd));
                low.konst = signed(k.rem_euclid(dd));
            }
            _ => match self.konst.exact_div(d) {
                Some(q) => high.konst = q,
                None => low.konst = self.konst.clone(),
            },
        }
        (high.normalise(), low.normalise())
    }

    /// `floor(self / d)` for a dim `d >= 1`, simplified where the remainder's range allows.
    pub(crate) fn floor_div(&self, d: &Dim, scope: &Scope) -> Lin {
        if d.is_one() {
            return self.clone();
        }
        let (high, low) = self.split(d);
        if low.as_const().is_some_and(is_zero) || low.within(d, scope) {
            return high;
        }
        high.add(&Lin::atom(Atom::Div(Box::new(low), d.clone())))
    }

    /// `self mod d` (in `0..d`) for a dim `d >= 1`, simplified where the range allows.
    pub(crate) fn modulo(&self, d: &Dim, scope: &Scope) -> Lin {
        if d.is_one() {
            return Lin::zero();
        }
        let (_, low) = self.split(d);
        if low.within(d, scope) {
            return low;
        }
        Lin::atom(Atom::Mod(Box::new(low), d.clone()))
    }

    /// The kernel-IR expression: positive terms first (in atom order), then the constant,
    /// then subtracted terms.
    pub(crate) fn to_index(&self) -> IndexExpr {
        let mut out: Option<IndexExpr> = None;
        let mut subtract: Vec<IndexExpr> = Vec::new();
        let push = |out: &mut Option<IndexExpr>, e: IndexExpr| {
            *out = Some(match out.take() {
                Some(acc) => acc + e,
                None => e,
            });
        };
        for (a, c) in &self.terms {
            let base = atom_expr(a);
            if c.is_one() {
                push(&mut out, base);
            } else if let Some(k) = neg(c).as_known().filter(|_| !nonneg(c)) {
                subtract.push(if k == 1 {
                    base
                } else {
                    base * IndexExpr::dim(Dim::known(k))
                });
            } else {
                push(&mut out, base * IndexExpr::Dim(c.clone()));
            }
        }
        if !is_zero(&self.konst) {
            if let Some(k) = neg(&self.konst).as_known().filter(|_| !nonneg(&self.konst)) {
                subtract.push(IndexExpr::dim(Dim::known(k)));
            } else {
                push(&mut out, IndexExpr::Dim(self.konst.clone()));
            }
        }
        let mut e = out.unwrap_or_else(|| IndexExpr::dim(0u64));
        for s in subtract {
            e = e - s;
        }
        e
    }

    /// True if some guard of `coords` is a known constant outside its known range (a load
    /// that never reads).
    pub(crate) fn never(coords: &[Lin]) -> bool {
        let mut gs = Vec::new();
        for c in coords {
            c.guards(&mut gs);
        }
        gs.iter().any(|(inner, lo, hi)| {
            match (
                inner.as_const().and_then(Dim::as_known),
                lo.as_known(),
                hi.as_known(),
            ) {
                (Some(c), Some(l), Some(h)) => c < l || c >= h,
                _ => false,
            }
        })
    }

    /// The masking guards of every guarded atom, outermost first.
    pub(crate) fn index_guards(coords: &[Lin]) -> Vec<Guard> {
        let mut gs = Vec::new();
        for c in coords {
            c.guards(&mut gs);
        }
        gs.into_iter()
            .map(|(inner, lo, hi)| Guard {
                lo: IndexExpr::Dim(lo),
                // A constant is written `c + 0` so that it names no integer of the index.
                expr: match inner.as_const() {
                    Some(c) => IndexExpr::Dim(c.clone()) + IndexExpr::dim(0u64),
                    None => inner.to_index(),
                },
                hi: IndexExpr::Dim(hi),
            })
            .collect()
    }
}

fn signed(v: i64) -> Dim {
    if v >= 0 {
        Dim::known(v as u64)
    } else {
        zero() - Dim::known(v.unsigned_abs())
    }
}

fn atom_expr(a: &Atom) -> IndexExpr {
    match a {
        Atom::Var(k) => IndexExpr::var(*k),
        Atom::Red(k) => IndexExpr::red(*k),
        Atom::Value(k) => IndexExpr::Value(ValueId(*k)),
        Atom::Div(l, d) => l.to_index().floor_div(d.clone()),
        Atom::Mod(l, d) => l.to_index().modulo(d.clone()),
        Atom::Guarded { inner, lo, .. } => match inner.as_const() {
            Some(_) => IndexExpr::Dim(lo.clone()),
            None => inner.to_index(),
        },
    }
}

/// `floor(x / d)` for `x >= 0`, as an upper (`up`) or lower bound when not exact.
fn floor_dim(x: &Dim, d: &Dim, up: bool) -> Dim {
    if let (Some(a), Some(b)) = (x.as_known(), d.as_known())
        && b > 0
    {
        return Dim::known(a / b);
    }
    // Only single-term divisors (`784`, `N*28`): the kernel verifier bounds floors of
    // polynomials by those alone, and a simplification it cannot follow would fail it.
    let text = d.to_string();
    if text.get(1..).is_some_and(|t| t.contains(['+', '-'])) {
        return if up { x.clone() } else { zero() };
    }
    if let Some(q) = x.exact_div(d) {
        return q;
    }
    if let Some(q) = (x.clone() + Dim::known(1)).exact_div(d) {
        return q - Dim::known(1);
    }
    if up { x.clone() } else { zero() }
}

fn atom_range(a: &Atom, scope: &Scope) -> Option<(Dim, Dim)> {
    let one = Dim::known(1);
    match a {
        Atom::Var(k) => scope
            .vars
            .get(*k as usize)
            .map(|e| (zero(), e.clone() - one)),
        Atom::Red(k) => scope
            .reds
            .get(*k as usize)
            .map(|e| (zero(), e.clone() - one)),
        Atom::Value(_) => None,
        Atom::Div(l, d) => {
            let (lo, hi) = l.range(scope)?;
            if !nonneg(&lo) {
                return None;
            }
            Some((floor_dim(&lo, d, false), floor_dim(&hi, d, true)))
        }
        Atom::Mod(l, d) => {
            if l.within(d, scope) {
                l.range(scope)
            } else {
                Some((zero(), d.clone() - one))
            }
        }
        Atom::Guarded { lo, hi, .. } => Some((lo.clone(), hi.clone() - one)),
    }
}

/// Row-major strides of a shape.
pub(crate) fn strides(dims: &[Dim]) -> Vec<Dim> {
    let mut s = vec![Dim::known(1); dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = &s[i + 1] * &dims[i + 1];
    }
    s
}

/// The row-major flat offset of `coords` in a tensor of shape `dims`; size-1 axes (whose
/// coordinate is 0 wherever a load happens) contribute nothing.
pub(crate) fn flat(coords: &[Lin], dims: &[Dim]) -> Lin {
    let st = strides(dims);
    let mut out = Lin::zero();
    for ((c, d), s) in coords.iter().zip(dims).zip(&st) {
        if d.is_one() {
            continue;
        }
        out = out.add(&c.scale(s));
    }
    out
}

/// Coordinates of the flat offset `f` in a tensor of shape `dims` (the inverse of
/// [`flat`]), peeled from the innermost axis by successive division. A tensor with a
/// statically empty axis has no element, so no coordinate of it is ever evaluated: they are
/// all `0` (dividing by the empty extent would not verify, and naga rejects `% 0`).
pub(crate) fn unflat(f: &Lin, dims: &[Dim], scope: &Scope) -> Vec<Lin> {
    let mut out = vec![Lin::zero(); dims.len()];
    if dims.iter().any(|d| d.as_known() == Some(0)) {
        return out;
    }
    let mut q = f.clone();
    for k in (0..dims.len()).rev() {
        let d = &dims[k];
        if d.is_one() {
            continue;
        }
        out[k] = q.modulo(d, scope);
        q = q.floor_div(d, scope);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(vars: &[Dim]) -> Scope {
        Scope {
            vars: vars.to_vec(),
            reds: Vec::new(),
        }
    }

    #[test]
    fn flatten_and_split_simplify_to_affine_forms() {
        let n = Dim::sym("N");
        let sc = scope(&[n.clone(), Dim::known(28), Dim::known(28)]);
        let coords = vec![Lin::var(0), Lin::var(1), Lin::var(2)];
        let f = flat(&coords, &[n.clone(), Dim::known(28), Dim::known(28)]);
        assert_eq!(f.to_index().to_string(), "i0*784 + i1*28 + i2");
        let back = unflat(&f, &[n.clone(), Dim::known(784)], &sc);
        assert_eq!(back[0].to_index().to_string(), "i0");
        assert_eq!(
            flat(&back, &[n.clone(), Dim::known(784)])
                .to_index()
                .to_string(),
            f.to_index().to_string()
        );
        assert_eq!(back[1].to_index().to_string(), "i1*28 + i2");
        let sc2 = scope(&[n.clone(), Dim::known(784)]);
        let f2 = flat(&[Lin::var(0), Lin::var(1)], &[n.clone(), Dim::known(784)]);
        let split = unflat(&f2, &[n.clone(), Dim::known(28), Dim::known(28)], &sc2);
        let text: Vec<String> = split.iter().map(|l| l.to_index().to_string()).collect();
        assert_eq!(text, ["i0", "i1 / 28", "i1 % 28"]);
        let sc3 = scope(&[&n * &Dim::known(20)]);
        let f3 = Lin::var(0);
        let parts = unflat(&f3, &[n.clone(), Dim::known(4), Dim::known(5)], &sc3);
        let text: Vec<String> = parts.iter().map(|l| l.to_index().to_string()).collect();
        assert_eq!(text, ["i0 / 5 / 4", "i0 / 5 % 4", "i0 % 5"]);
        let back = flat(&parts, &[n.clone(), Dim::known(4), Dim::known(5)]);
        assert_eq!(back.to_index().to_string(), "i0");
    }

    #[test]
    fn empty_shapes_unflatten_without_dividing_by_zero() {
        let dims = [Dim::known(0), Dim::known(2), Dim::known(3)];
        let sc = scope(&[Dim::known(0), Dim::known(3)]);
        let f = flat(&[Lin::var(0), Lin::var(1)], &[Dim::known(0), Dim::known(3)]);
        let parts = unflat(&f, &dims, &sc);
        let text: Vec<String> = parts.iter().map(|l| l.to_index().to_string()).collect();
        assert_eq!(text, ["0", "0", "0"]);
    }

    #[test]
    fn symbolic_merge_of_leading_axes() {
        let (n, t) = (Dim::sym("N"), Dim::sym("T"));
        let sc = scope(&[n.clone(), t.clone(), Dim::known(28)]);
        let f = flat(
            &[Lin::var(0), Lin::var(1), Lin::var(2)],
            &[n.clone(), t.clone(), Dim::known(28)],
        );
        let merged = unflat(&f, &[&n * &t, Dim::known(28)], &sc);
        assert_eq!(merged[0].to_index().to_string(), "i0*T + i1");
        assert_eq!(merged[1].to_index().to_string(), "i2");
    }

    #[test]
    fn negative_coefficients_print_as_subtraction() {
        let l = Lin::constant(2u64).sub(&Lin::var(1));
        assert_eq!(l.to_index().to_string(), "2 - i1");
        let g = Lin::var(1).add_const(&neg(&Dim::known(1)));
        assert_eq!(g.to_index().to_string(), "i1 - 1");
        let sc = scope(&[Dim::known(3)]);
        assert_eq!(
            l.range(&scope(&[Dim::known(1), Dim::known(3)])),
            Some((Dim::known(0), Dim::known(2)))
        );
        assert_eq!(Lin::var(0).range(&sc), Some((Dim::known(0), Dim::known(2))));
    }

    #[test]
    fn guards_are_collected_and_printed_verbatim() {
        let inner = Lin::var(1).add_const(&neg(&Dim::known(1)));
        let g = Lin::atom(Atom::Guarded {
            inner: Box::new(inner),
            lo: Dim::known(0),
            hi: Dim::known(3),
        });
        let coords = vec![Lin::var(0), g];
        let f = flat(&coords, &[Dim::sym("N"), Dim::known(3)]);
        assert_eq!(f.to_index().to_string(), "i0*3 + (i1 - 1)");
        let gs = Lin::index_guards(&coords);
        assert_eq!(gs.len(), 1);
        assert_eq!(gs[0].to_string(), "0 <= i1 - 1 < 3");
    }
}
