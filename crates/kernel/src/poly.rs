//! Exact integer polynomials over symbols with overflow-checked arithmetic, and the proof
//! rule the verifier uses to show a polynomial is non-negative for every allowed binding.
//!
//! [`kiln_ir::Dim`] keeps its terms private, so a dim is converted through its printed form,
//! which `Dim`'s `Display`/`FromStr` pair defines (terms joined by `+`/`-`, factors by `*`,
//! powers by `^`). Coefficients here are `i128` and every operation is checked, so hostile
//! inputs produce an error instead of a wrapped or panicking computation.

use crate::symbol::Symbol;
use kiln_ir::Dim;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A symbol name.
pub(crate) type Sym = Arc<str>;

/// Largest number of terms a polynomial may have before an operation is refused.
const MAX_TERMS: usize = 4096;
/// Largest degree of one symbol in a monomial.
const MAX_DEGREE: u32 = 64;

/// A product of symbols with positive exponents, sorted by name; empty is the constant 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Mono(Vec<(Sym, u32)>);

impl Mono {
    fn mul(&self, other: &Mono) -> Result<Mono, PolyError> {
        let mut map: BTreeMap<Sym, u32> = self.0.iter().cloned().collect();
        for (s, e) in &other.0 {
            let slot = map.entry(s.clone()).or_insert(0);
            *slot = slot
                .checked_add(*e)
                .filter(|d| *d <= MAX_DEGREE)
                .ok_or(PolyError::TooLarge)?;
        }
        Ok(Mono(map.into_iter().collect()))
    }

    /// `self / other` when `other`'s every factor divides `self`.
    fn div(&self, other: &Mono) -> Option<Mono> {
        let mut map: BTreeMap<Sym, u32> = self.0.iter().cloned().collect();
        for (s, e) in &other.0 {
            let have = map.get_mut(s)?;
            *have = have.checked_sub(*e)?;
            if *have == 0 {
                map.remove(s);
            }
        }
        Some(Mono(map.into_iter().collect()))
    }

    fn degree(&self) -> u32 {
        self.0.iter().map(|(_, e)| e).sum()
    }

    fn is_one(&self) -> bool {
        self.0.is_empty()
    }
}

/// Error of polynomial arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolyError {
    /// A coefficient left the `i128` range.
    #[error("arithmetic overflow in a symbolic expression")]
    Overflow,
    /// Too many terms or too high a degree.
    #[error("symbolic expression too large")]
    TooLarge,
    /// The text is not a dimension expression.
    #[error("invalid dimension expression `{0}`")]
    Parse(String),
}

/// An integer polynomial `sum c_m * m` over symbols.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Poly {
    terms: BTreeMap<Mono, i128>,
}

impl Poly {
    pub(crate) fn zero() -> Poly {
        Poly::default()
    }

    pub(crate) fn constant(c: i128) -> Poly {
        let mut p = Poly::zero();
        if c != 0 {
            p.terms.insert(Mono::default(), c);
        }
        p
    }

    pub(crate) fn sym(name: &str) -> Poly {
        let mut p = Poly::zero();
        p.terms.insert(Mono(vec![(Arc::from(name), 1)]), 1);
        p
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    fn constant_term(&self) -> i128 {
        self.terms.get(&Mono::default()).copied().unwrap_or(0)
    }

    fn add_term(&mut self, m: Mono, c: i128) -> Result<(), PolyError> {
        if c == 0 {
            return Ok(());
        }
        let slot = self.terms.entry(m.clone()).or_insert(0);
        *slot = slot.checked_add(c).ok_or(PolyError::Overflow)?;
        if *slot == 0 {
            self.terms.remove(&m);
        }
        if self.terms.len() > MAX_TERMS {
            return Err(PolyError::TooLarge);
        }
        Ok(())
    }

    pub(crate) fn add(&self, other: &Poly) -> Result<Poly, PolyError> {
        let mut out = self.clone();
        for (m, c) in &other.terms {
            out.add_term(m.clone(), *c)?;
        }
        Ok(out)
    }

    pub(crate) fn sub(&self, other: &Poly) -> Result<Poly, PolyError> {
        self.add(&other.neg()?)
    }

    pub(crate) fn neg(&self) -> Result<Poly, PolyError> {
        self.scale(-1)
    }

    pub(crate) fn scale(&self, k: i128) -> Result<Poly, PolyError> {
        let mut out = Poly::zero();
        for (m, c) in &self.terms {
            out.add_term(m.clone(), c.checked_mul(k).ok_or(PolyError::Overflow)?)?;
        }
        Ok(out)
    }

    pub(crate) fn mul(&self, other: &Poly) -> Result<Poly, PolyError> {
        let mut out = Poly::zero();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &other.terms {
                out.add_term(m1.mul(m2)?, c1.checked_mul(*c2).ok_or(PolyError::Overflow)?)?;
            }
        }
        Ok(out)
    }

    pub(crate) fn add_const(&self, k: i128) -> Result<Poly, PolyError> {
        self.add(&Poly::constant(k))
    }

    /// The symbols used, sorted and unique.
    pub(crate) fn symbols(&self) -> Vec<Sym> {
        let mut out: Vec<Sym> = self
            .terms
            .keys()
            .flat_map(|m| m.0.iter().map(|(s, _)| s.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The polynomial of a dim, read through the dim's printed form.
    pub(crate) fn from_dim(d: &Dim) -> Result<Poly, PolyError> {
        parse_dim_text(&d.to_string())
    }

    /// The dim with the same terms; fails if a coefficient does not fit `i64`.
    pub(crate) fn to_dim(&self) -> Result<Dim, PolyError> {
        let mut total = Dim::known(0);
        for (m, c) in &self.terms {
            let mag = u64::try_from(c.unsigned_abs()).map_err(|_| PolyError::Overflow)?;
            if mag > i64::MAX as u64 {
                return Err(PolyError::Overflow);
            }
            let mut term = Dim::known(mag);
            for (s, e) in &m.0 {
                for _ in 0..*e {
                    term = &term * &Dim::sym(s);
                }
            }
            total = if *c < 0 { total - term } else { total + term };
        }
        Ok(total)
    }

    /// Value under a binding of the symbols.
    #[cfg(test)]
    pub(crate) fn eval(&self, value: &dyn Fn(&str) -> i128) -> Result<i128, PolyError> {
        let mut total: i128 = 0;
        for (m, c) in &self.terms {
            let mut v = *c;
            for (s, e) in &m.0 {
                let b = value(s);
                for _ in 0..*e {
                    v = v.checked_mul(b).ok_or(PolyError::Overflow)?;
                }
            }
            total = total.checked_add(v).ok_or(PolyError::Overflow)?;
        }
        Ok(total)
    }

    /// Substitutes `s = s + shift(s)` for every symbol (the variable keeps its name).
    /// Splits `self = a + b*s` with `a` and `b` free of `s`; `None` if `s` occurs with a
    /// power above 1.
    pub(crate) fn split_linear(&self, s: &str) -> Option<(Poly, Poly)> {
        let (mut a, mut b) = (Poly::zero(), Poly::zero());
        for (m, &c) in &self.terms {
            match m.0.iter().position(|(x, _)| &**x == s) {
                None => a.add_term(m.clone(), c).ok()?,
                Some(k) if m.0[k].1 == 1 => {
                    let mut rest = m.0.clone();
                    rest.remove(k);
                    b.add_term(Mono(rest), c).ok()?;
                }
                Some(_) => return None,
            }
        }
        Some((a, b))
    }

    /// True if the symbol `s` occurs in a term.
    pub(crate) fn mentions(&self, s: &str) -> bool {
        self.terms
            .keys()
            .any(|m| m.0.iter().any(|(x, _)| &**x == s))
    }

    fn shift(&self, shift: &dyn Fn(&str) -> i128) -> Result<Poly, PolyError> {
        let mut out = Poly::zero();
        for (m, c) in &self.terms {
            let mut term = Poly::constant(*c);
            for (s, e) in &m.0 {
                let base = Poly::sym(s).add_const(shift(s))?;
                for _ in 0..*e {
                    term = term.mul(&base)?;
                }
            }
            out = out.add(&term)?;
        }
        Ok(out)
    }

    /// Splits `self = d * q + r` term by term for a divisor `d = c_d * m_d` with `c_d > 0`:
    /// a term `c * m` whose monomial `m_d` divides contributes `(c div_euclid c_d) * m/m_d`
    /// to `q` and `(c rem_euclid c_d) * m` to `r`; any other term goes to `r` whole.
    fn split_by(&self, d: &Poly) -> Option<(Poly, Poly)> {
        if d.terms.len() != 1 {
            return None;
        }
        let (dm, dc) = d.terms.iter().next()?;
        if *dc <= 0 {
            return None;
        }
        let (mut q, mut r) = (Poly::zero(), Poly::zero());
        for (m, c) in &self.terms {
            match m.div(dm) {
                Some(qm) => {
                    q.add_term(qm, c.div_euclid(*dc)).ok()?;
                    r.add_term(m.clone(), c.rem_euclid(*dc)).ok()?;
                }
                None => r.add_term(m.clone(), *c).ok()?,
            }
        }
        Some((q, r))
    }
}

/// Prints like [`Dim`]: highest degree first, the constant last, the coefficient as the
/// last factor (`N*784`, `N*T-1`, `-N+3`).
impl fmt::Display for Poly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let mut terms: Vec<(&Mono, &i128)> = self.terms.iter().collect();
        terms.sort_by(|a, b| b.0.degree().cmp(&a.0.degree()).then(a.0.cmp(b.0)));
        for (i, (m, c)) in terms.iter().enumerate() {
            if **c < 0 {
                f.write_str("-")?;
            } else if i > 0 {
                f.write_str("+")?;
            }
            let mut parts: Vec<String> =
                m.0.iter()
                    .map(|(s, e)| {
                        if *e == 1 {
                            s.to_string()
                        } else {
                            format!("{s}^{e}")
                        }
                    })
                    .collect();
            if c.unsigned_abs() != 1 || m.is_one() {
                parts.push(c.unsigned_abs().to_string());
            }
            f.write_str(&parts.join("*"))?;
        }
        Ok(())
    }
}

/// Parses the dim grammar `['-'] term (('+'|'-') term)*`, `term = factor ('*' factor)*`,
/// `factor = (integer | symbol) ['^' integer]`, ignoring whitespace.
pub(crate) fn parse_dim_text(text: &str) -> Result<Poly, PolyError> {
    let err = || PolyError::Parse(text.to_string());
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if chars.is_empty() {
        return Err(err());
    }
    let mut pos = 0usize;
    let mut total = Poly::zero();
    let mut sign: i128 = 1;
    if chars.first() == Some(&'-') {
        sign = -1;
        pos += 1;
    }
    loop {
        let mut term = Poly::constant(sign);
        loop {
            let start = pos;
            let factor = if chars.get(pos).is_some_and(|c| c.is_ascii_digit()) {
                while chars.get(pos).is_some_and(|c| c.is_ascii_digit()) {
                    pos += 1;
                }
                let s: String = chars[start..pos].iter().collect();
                Poly::constant(s.parse::<i128>().map_err(|_| err())?)
            } else if chars
                .get(pos)
                .is_some_and(|c| c.is_alphabetic() || *c == '_')
            {
                while chars
                    .get(pos)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    pos += 1;
                }
                let s: String = chars[start..pos].iter().collect();
                Poly::sym(&s)
            } else {
                return Err(err());
            };
            let mut exp = 1u32;
            if chars.get(pos) == Some(&'^') {
                pos += 1;
                let s = pos;
                while chars.get(pos).is_some_and(|c| c.is_ascii_digit()) {
                    pos += 1;
                }
                let digits: String = chars[s..pos].iter().collect();
                exp = digits.parse().map_err(|_| err())?;
                if exp > MAX_DEGREE {
                    return Err(PolyError::TooLarge);
                }
            }
            for _ in 0..exp {
                term = term.mul(&factor)?;
            }
            if chars.get(pos) == Some(&'*') {
                pos += 1;
            } else {
                break;
            }
        }
        total = total.add(&term)?;
        match chars.get(pos) {
            None => return Ok(total),
            Some('+') => sign = 1,
            Some('-') => sign = -1,
            Some(_) => return Err(err()),
        }
        pos += 1;
    }
}

/// What is known about the symbols: each ranges over the integers `min..=max` (`max`
/// optional).
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    bounds: BTreeMap<String, (i128, Option<i128>)>,
    /// Induction symbols of the enclosing loops with their trip counts: `0 <= t <= trip - 1`.
    induction: Vec<(String, Poly)>,
}

/// Lower bound assumed for a symbol the program does not declare (the verifier reports the
/// missing declaration separately).
const DEFAULT_MIN: i128 = 1;

impl Facts {
    pub(crate) fn new(symbols: &[Symbol]) -> Facts {
        let mut bounds = BTreeMap::new();
        for s in symbols {
            // The first declaration wins; the verifier reports duplicates.
            bounds
                .entry(s.name.clone())
                .or_insert((i128::from(s.min), s.max.map(i128::from)));
        }
        Facts {
            bounds,
            induction: Vec::new(),
        }
    }

    /// These facts inside loops whose induction symbols range over `0..=trip - 1`
    /// (`(symbol, trip)`, outermost first).
    pub(crate) fn within_loops(&self, loops: Vec<(String, Poly)>) -> Facts {
        Facts {
            bounds: self.bounds.clone(),
            induction: loops,
        }
    }

    fn min(&self, s: &str) -> i128 {
        self.bounds.get(s).map_or(DEFAULT_MIN, |b| b.0)
    }

    fn max(&self, s: &str) -> Option<i128> {
        self.bounds.get(s).and_then(|b| b.1)
    }

    /// Proves `p >= 0` for every binding allowed by the facts (see the crate docs, "Proof
    /// rule"): substitute `s = min_s + t_s` with `t_s >= 0`, then every term with a positive
    /// coefficient is `>= 0`; each term with a negative coefficient is bounded below by its
    /// value at `t_s = max_s - min_s` (it needs every one of its symbols to have an upper
    /// bound); the proof succeeds if the constant term plus those lower bounds is `>= 0`.
    /// Returns false when the rule does not apply or arithmetic overflows.
    pub(crate) fn nonneg(&self, p: &Poly) -> bool {
        // An induction symbol `t` in `0..=trip-1` is eliminated first: `p = a + b*t` is
        // smallest at `t = 0` when `b >= 0` and at `t = trip - 1` when `b <= 0`.
        if let Some((t, trip)) = self.induction.iter().find(|(t, _)| p.mentions(t)) {
            let Some((a, b)) = p.split_linear(t) else {
                return false;
            };
            if self.nonneg(&b) {
                return self.nonneg(&a);
            }
            let Ok(nb) = b.neg() else { return false };
            if !self.nonneg(&nb) {
                return false;
            }
            return trip
                .add_const(-1)
                .and_then(|last| b.mul(&last))
                .and_then(|bl| a.add(&bl))
                .is_ok_and(|end| self.nonneg(&end));
        }
        let Ok(q) = p.shift(&|s| self.min(s)) else {
            return false;
        };
        let mut slack = q.constant_term();
        for (m, c) in &q.terms {
            if m.is_one() || *c >= 0 {
                continue;
            }
            let mut worst = *c;
            for (s, e) in &m.0 {
                let Some(max) = self.max(s) else {
                    return false;
                };
                let width = (max - self.min(s)).max(0);
                for _ in 0..*e {
                    match worst.checked_mul(width) {
                        Some(v) => worst = v,
                        None => return false,
                    }
                }
            }
            match slack.checked_add(worst) {
                Some(v) => slack = v,
                None => return false,
            }
        }
        slack >= 0
    }

    /// `a <= b` proven.
    pub(crate) fn le(&self, a: &Poly, b: &Poly) -> bool {
        b.sub(a).is_ok_and(|d| self.nonneg(&d))
    }

    /// The preconditions of the given symbols, for error messages: `N >= 1, T in 1..=512`.
    pub(crate) fn describe(&self, syms: &[Sym]) -> String {
        let parts: Vec<String> = syms
            .iter()
            .map(|s| match self.max(s) {
                Some(max) => format!("{s} in {}..={max}", self.min(s)),
                None => format!("{s} >= {}", self.min(s)),
            })
            .collect();
        parts.join(", ")
    }

    /// `floor(p / d)` exactly, if the term split `p = d*q + r` (or a shift of it by one `d`)
    /// leaves a remainder proven to lie in `0..=d-1`. `d` must be proven `>= 1`.
    pub(crate) fn floor_div_exact(&self, p: &Poly, d: &Poly) -> Option<Poly> {
        let (q, r) = p.split_by(d)?;
        for k in [0i128, 1, -1] {
            let (qk, rk) = (q.add_const(-k).ok()?, r.add(&d.scale(k).ok()?).ok()?);
            let top = d.add_const(-1).ok()?.sub(&rk).ok()?;
            if self.nonneg(&rk) && self.nonneg(&top) {
                return Some(qk);
            }
        }
        None
    }

    /// A polynomial upper bound of `floor(p / d)` for `d >= 1` (proven by the caller).
    pub(crate) fn floor_div_upper(&self, p: &Poly, d: &Poly) -> Option<Poly> {
        if let Some(q) = self.floor_div_exact(p, d) {
            return Some(q);
        }
        if let Some((q, r)) = p.split_by(d) {
            // floor(r/d) <= 0 when r <= d - 1; floor(r/d) <= r when r >= 0.
            if self.le(&r, &d.add_const(-1).ok()?) {
                return Some(q);
            }
            if self.nonneg(&r) {
                return q.add(&r).ok();
            }
        }
        if self.le(p, &d.add_const(-1).ok()?) {
            return Some(Poly::zero());
        }
        self.nonneg(p).then(|| p.clone())
    }

    /// A polynomial lower bound of `floor(p / d)` for `d >= 1` (proven by the caller).
    pub(crate) fn floor_div_lower(&self, p: &Poly, d: &Poly) -> Option<Poly> {
        if let Some(q) = self.floor_div_exact(p, d) {
            return Some(q);
        }
        if let Some((q, r)) = p.split_by(d) {
            // floor(r/d) >= 0 when r >= 0; floor(r/d) >= -1 when r >= -d.
            if self.nonneg(&r) {
                return Some(q);
            }
            if self.nonneg(&r.add(d).ok()?) {
                return q.add_const(-1).ok();
            }
        }
        self.nonneg(p).then(Poly::zero)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(text: &str) -> Poly {
        parse_dim_text(text).unwrap()
    }

    fn facts(list: &[(&str, u64, Option<u64>)]) -> Facts {
        let symbols: Vec<Symbol> = list
            .iter()
            .map(|(n, min, max)| Symbol {
                name: n.to_string(),
                min: *min,
                max: *max,
            })
            .collect();
        Facts::new(&symbols)
    }

    #[test]
    fn dims_convert_both_ways() {
        for text in ["N*784", "N*T*28", "N^2*4", "784", "B*N-1", "-N+3", "0"] {
            let d: Dim = text.parse().unwrap();
            let poly = Poly::from_dim(&d).unwrap();
            assert_eq!(poly.to_string(), text);
            assert_eq!(poly.to_dim().unwrap(), d);
        }
        assert_eq!(parse_dim_text("N^100"), Err(PolyError::TooLarge));
        assert!(matches!(parse_dim_text("N*"), Err(PolyError::Parse(_))));
        assert_eq!(
            parse_dim_text("99999999999999999999999999999999999999*99999999"),
            Err(PolyError::Overflow)
        );
    }

    #[test]
    fn proof_rule_uses_lower_bounds() {
        let f = facts(&[("N", 1, None), ("T", 1, Some(512))]);
        assert!(f.nonneg(&p("N-1")));
        assert!(!f.nonneg(&p("N-2")));
        assert!(f.nonneg(&p("N^2-N")));
        assert!(f.nonneg(&p("N*10-1-N*10+1")));
        assert!(!f.nonneg(&p("N*10-1-N*10")));
        // Upper bounds: 512 - T >= 0, 1000 - 2*T >= 0, but not 1000 - 2*T*N.
        assert!(f.nonneg(&p("512-T")));
        assert!(f.nonneg(&p("1024-2*T")));
        assert!(!f.nonneg(&p("1022-2*T")));
        assert!(!f.nonneg(&p("1000-2*T*N")));
        assert_eq!(f.describe(&p("N*T").symbols()), "N >= 1, T in 1..=512");
    }

    #[test]
    fn floor_division_bounds() {
        let f = facts(&[("N", 1, None)]);
        // floor((10N - 1) / 10) = N - 1
        assert_eq!(f.floor_div_exact(&p("N*10-1"), &p("10")), Some(p("N-1")));
        // floor((N*T - 1) / N) = T - 1 needs the shift by one divisor.
        let g = facts(&[("N", 1, None), ("T", 1, None)]);
        assert_eq!(g.floor_div_exact(&p("N*T-1"), &p("N")), Some(p("T-1")));
        assert_eq!(f.floor_div_exact(&p("17"), &p("5")), Some(p("3")));
        assert_eq!(f.floor_div_exact(&p("-3"), &p("5")), Some(p("-1")));
        // floor((7N + 3) / 2) is not a polynomial; bounds are 3N + 1 and 3N + 1 + (N + 1).
        assert_eq!(f.floor_div_exact(&p("N*7+3"), &p("2")), None);
        assert_eq!(f.floor_div_lower(&p("N*7+3"), &p("2")), Some(p("N*3+1")));
        assert_eq!(f.floor_div_upper(&p("N*7+3"), &p("2")), Some(p("N*4+2")));
    }

    proptest! {
        /// Whatever the rule proves holds at every sampled binding.
        #[test]
        fn proofs_are_sound(
            coeffs in proptest::collection::vec(-20i128..20, 6),
            n in 1i128..40,
            t in 2i128..9,
        ) {
            let f = facts(&[("N", 1, None), ("T", 2, Some(8))]);
            let monos = [Poly::constant(1), p("N"), p("T"), p("N*T"), p("N^2"), p("T^2")];
            let mut poly = Poly::zero();
            for (c, m) in coeffs.iter().zip(&monos) {
                poly = poly.add(&m.scale(*c).unwrap()).unwrap();
            }
            if f.nonneg(&poly) {
                let v = poly.eval(&|s| if s == "N" { n } else { t }).unwrap();
                prop_assert!(v >= 0, "{poly} proven but is {v} at N={n} T={t}");
            }
        }

        /// Floor-division bounds contain the true quotient.
        #[test]
        fn floor_div_bounds_are_sound(a in -30i128..30, b in -30i128..30, d in 1i128..12, n in 1i128..50) {
            let f = facts(&[("N", 1, None)]);
            let num = p("N").scale(a).unwrap().add_const(b).unwrap();
            let den = Poly::constant(d);
            let at = |q: &Poly| q.eval(&|_| n).unwrap();
            let truth = at(&num).div_euclid(d);
            if let Some(u) = f.floor_div_upper(&num, &den) {
                prop_assert!(truth <= at(&u));
            }
            if let Some(l) = f.floor_div_lower(&num, &den) {
                prop_assert!(truth >= at(&l));
            }
        }
    }
}
