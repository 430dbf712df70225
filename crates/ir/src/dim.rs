//! Symbolic dimensions: exact integer polynomials over named symbols (`N`, `T`, `N*T*28`, `N+1`).
//!
//! A [`Dim`] is kept in a canonical form (a sorted map from monomials to non-zero coefficients),
//! so two dims are equal exactly when their expressions are equal for every binding of the
//! symbols. Division is exact or refused: `(N*784)/784 = N`, `N/2` is an error.
//!
//! Arithmetic never wraps or saturates: a result whose coefficient or exponent does not fit
//! is an *overflowed* dim ([`Dim::is_overflow`]), which stays overflowed through every later
//! operation, equals no valid dim, prints as `<overflow>` and fails to evaluate. Shape
//! inference refuses any shape containing one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::{Add, Mul, Sub};
use std::sync::Arc;

/// A symbol name such as `N`.
pub type Sym = Arc<str>;

/// A product of symbols with positive exponents, sorted by symbol name. Empty = the constant 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
struct Monomial(Vec<(Sym, u32)>);

impl Monomial {
    /// The marker of an overflowed dim: exponent 0 never occurs in a canonical monomial.
    fn overflow() -> Monomial {
        Monomial(vec![(Arc::from("<overflow>"), 0)])
    }

    fn is_overflow(&self) -> bool {
        matches!(self.0.as_slice(), [(_, 0)])
    }

    /// The product, or `None` if an exponent overflows.
    fn mul(&self, other: &Monomial) -> Option<Monomial> {
        let mut map: BTreeMap<Sym, u32> = self.0.iter().cloned().collect();
        for (s, e) in &other.0 {
            let have = map.entry(s.clone()).or_insert(0);
            *have = have.checked_add(*e)?;
        }
        Some(Monomial(map.into_iter().collect()))
    }

    /// `self / other` if every exponent of `other` is present in `self`.
    fn div(&self, other: &Monomial) -> Option<Monomial> {
        let mut map: BTreeMap<Sym, u32> = self.0.iter().cloned().collect();
        for (s, e) in &other.0 {
            let have = map.get_mut(s)?;
            if *have < *e {
                return None;
            }
            *have -= e;
            if *have == 0 {
                map.remove(s);
            }
        }
        Some(Monomial(map.into_iter().collect()))
    }
}

/// One dimension of a shape: a known size or an expression over named symbols.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Dim {
    /// Monomial -> non-zero coefficient; an overflowed dim holds only [`Monomial::overflow`].
    terms: BTreeMap<Monomial, i64>,
}

/// Error evaluating a [`Dim`] under a binding of its symbols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DimError {
    /// A symbol had no binding.
    #[error("symbol `{0}` is not bound")]
    Unbound(String),
    /// The value overflowed 64 bits.
    #[error("dimension `{0}` overflows under the given binding")]
    Overflow(String),
    /// The value is negative.
    #[error("dimension `{dim}` evaluates to negative {value}")]
    Negative {
        /// The expression.
        dim: String,
        /// Its value.
        value: i64,
    },
}

impl Dim {
    /// A known size.
    /// A known size. A size above `i64::MAX` is an overflowed dim.
    pub fn known(n: u64) -> Dim {
        i64::try_from(n).map_or_else(|_| Dim::overflowed(), Dim::constant)
    }

    fn constant(n: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if n != 0 {
            terms.insert(Monomial::default(), n);
        }
        Dim::of(terms)
    }

    fn of(terms: BTreeMap<Monomial, i64>) -> Dim {
        Dim { terms }
    }

    /// The result of an operation that did not fit: see [`Dim::is_overflow`].
    pub fn overflowed() -> Dim {
        Dim::of([(Monomial::overflow(), 1)].into_iter().collect())
    }

    /// True if some operation producing this dim overflowed 64-bit coefficients or 32-bit
    /// exponents. Such a dim is no size at all: it evaluates to an error and is never known.
    pub fn is_overflow(&self) -> bool {
        self.terms.len() == 1 && self.terms.keys().all(Monomial::is_overflow)
    }

    /// A named symbol, e.g. the batch size `N`.
    pub fn sym(name: &str) -> Dim {
        let mut terms = BTreeMap::new();
        terms.insert(Monomial(vec![(Arc::from(name), 1)]), 1);
        Dim::of(terms)
    }

    /// True if the dim is `>= 0` for every binding with each symbol `>= 1` (symbols range over
    /// `1..` at run time). Sound, not complete: negative coefficients are accepted on the
    /// constant term only, when the positive symbolic terms (each at least its coefficient)
    /// cover it, so `N-1` and `N*T-1` pass and `N-2` or `N*T-T` do not.
    pub fn provably_non_negative(&self) -> bool {
        if self.is_overflow() {
            return false;
        }
        let mut positive: i64 = 0;
        let mut constant: i64 = 0;
        for (m, c) in &self.terms {
            if m.0.is_empty() {
                constant = *c;
            } else if *c < 0 {
                return false;
            } else {
                positive = positive.saturating_add(*c);
            }
        }
        positive + constant.min(0) >= 0
    }

    /// The size if it contains no symbol.
    pub fn as_known(&self) -> Option<u64> {
        if self.is_overflow() {
            return None;
        }
        match self.terms.len() {
            0 => Some(0),
            1 => {
                let (m, c) = self.terms.iter().next()?;
                (m.0.is_empty() && *c >= 0).then_some(*c as u64)
            }
            _ => None,
        }
    }

    /// True if the dim contains no symbol.
    pub fn is_known(&self) -> bool {
        self.as_known().is_some()
    }

    /// True if this is the known size 1.
    pub fn is_one(&self) -> bool {
        self.as_known() == Some(1)
    }

    /// The symbols appearing in the expression, sorted, without duplicates.
    pub fn symbols(&self) -> Vec<Sym> {
        if self.is_overflow() {
            return Vec::new();
        }
        let mut out: Vec<Sym> = self
            .terms
            .keys()
            .flat_map(|m| m.0.iter().map(|(s, _)| s.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// If the dim is exactly one symbol with coefficient 1, its name.
    pub fn as_symbol(&self) -> Option<&str> {
        if self.terms.len() != 1 {
            return None;
        }
        let (m, c) = self.terms.iter().next()?;
        (*c == 1 && m.0.len() == 1 && m.0[0].1 == 1).then(|| &*m.0[0].0)
    }

    /// Evaluates the dim under a binding of its symbols.
    pub fn eval(&self, bindings: &HashMap<String, u64>) -> Result<u64, DimError> {
        let overflow = || DimError::Overflow(self.to_string());
        if self.is_overflow() {
            return Err(overflow());
        }
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v: i64 = *c;
            for (s, e) in &m.0 {
                let b = *bindings
                    .get(&**s)
                    .ok_or_else(|| DimError::Unbound(s.to_string()))?;
                let b = i64::try_from(b).map_err(|_| overflow())?;
                v = b
                    .checked_pow(*e)
                    .and_then(|p| v.checked_mul(p))
                    .ok_or_else(overflow)?;
            }
            total = total.checked_add(v).ok_or_else(overflow)?;
        }
        u64::try_from(total).map_err(|_| DimError::Negative {
            dim: self.to_string(),
            value: total,
        })
    }

    /// Exact division: `Some(q)` with `q * rhs == self`, or `None` if that cannot be shown
    /// for every binding. Division by a single term (`c * N^k`) is exact when every term of
    /// `self` divides; a multi-term divisor divides only a constant multiple of itself.
    pub fn exact_div(&self, rhs: &Dim) -> Option<Dim> {
        if self.is_overflow() || rhs.is_overflow() || rhs.terms.is_empty() {
            return None;
        }
        if self.terms.is_empty() {
            return Some(Dim::constant(0));
        }
        if rhs.terms.len() == 1 {
            let (dm, dc) = rhs.terms.iter().next()?;
            let mut terms = BTreeMap::new();
            for (m, c) in &self.terms {
                if c % dc != 0 {
                    return None;
                }
                terms.insert(m.div(dm)?, c / dc);
            }
            return Some(Dim::of(terms));
        }
        let (m0, c0) = self.terms.iter().next()?;
        let (r0, rc0) = rhs.terms.iter().next()?;
        let q = Dim::of(
            [(
                m0.div(r0)?,
                if c0 % rc0 == 0 { c0 / rc0 } else { return None },
            )]
            .into_iter()
            .collect(),
        );
        (&q * rhs == *self).then_some(q)
    }

    /// `self - rhs`, if the result is a known non-negative size or a symbolic expression.
    pub fn checked_sub(&self, rhs: &Dim) -> Option<Dim> {
        let d = self.clone() - rhs.clone();
        if d.is_overflow() {
            return None;
        }
        (d.is_known() || d.terms.values().all(|c| *c > 0)).then_some(d)
    }

    /// Product of a list of dims (1 for an empty list).
    pub fn product<'a>(dims: impl IntoIterator<Item = &'a Dim>) -> Dim {
        dims.into_iter().fold(Dim::known(1), |acc, d| &acc * d)
    }
}

impl From<u64> for Dim {
    fn from(n: u64) -> Dim {
        Dim::known(n)
    }
}
impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        u64::try_from(n).map_or_else(|_| Dim::overflowed(), Dim::known)
    }
}
impl From<i32> for Dim {
    /// Panics-free conversion: negative literals clamp to zero (shape inference then rejects them).
    fn from(n: i32) -> Dim {
        Dim::known(n.max(0) as u64)
    }
}
impl From<u32> for Dim {
    fn from(n: u32) -> Dim {
        Dim::known(u64::from(n))
    }
}
impl From<&Dim> for Dim {
    fn from(d: &Dim) -> Dim {
        d.clone()
    }
}

impl Add for Dim {
    type Output = Dim;
    fn add(self, rhs: Dim) -> Dim {
        &self + &rhs
    }
}
impl Add for &Dim {
    type Output = Dim;
    fn add(self, rhs: &Dim) -> Dim {
        Dim::sum_of(self, rhs)
    }
}

impl Dim {
    fn sum_of(a: &Dim, rhs: &Dim) -> Dim {
        if a.is_overflow() || rhs.is_overflow() {
            return Dim::overflowed();
        }
        let mut terms = a.terms.clone();
        for (m, c) in &rhs.terms {
            let e = terms.entry(m.clone()).or_insert(0);
            let Some(sum) = e.checked_add(*c) else {
                return Dim::overflowed();
            };
            *e = sum;
            if *e == 0 {
                terms.remove(m);
            }
        }
        Dim::of(terms)
    }

    fn negated(self) -> Dim {
        if self.is_overflow() {
            return self;
        }
        let mut terms = BTreeMap::new();
        for (m, c) in self.terms {
            let Some(neg) = c.checked_neg() else {
                return Dim::overflowed();
            };
            terms.insert(m, neg);
        }
        Dim::of(terms)
    }
}

impl Sub for Dim {
    type Output = Dim;
    fn sub(self, rhs: Dim) -> Dim {
        Dim::sum_of(&self, &rhs.negated())
    }
}
impl Mul for Dim {
    type Output = Dim;
    fn mul(self, rhs: Dim) -> Dim {
        &self * &rhs
    }
}
impl Mul for &Dim {
    type Output = Dim;
    fn mul(self, rhs: &Dim) -> Dim {
        if self.is_overflow() || rhs.is_overflow() {
            return Dim::overflowed();
        }
        let mut terms: BTreeMap<Monomial, i64> = BTreeMap::new();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &rhs.terms {
                let Some(m) = m1.mul(m2) else {
                    return Dim::overflowed();
                };
                let e = terms.entry(m.clone()).or_insert(0);
                let Some(sum) = c1.checked_mul(*c2).and_then(|p| e.checked_add(p)) else {
                    return Dim::overflowed();
                };
                *e = sum;
                if *e == 0 {
                    terms.remove(&m);
                }
            }
        }
        Dim::of(terms)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_overflow() {
            return f.write_str("<overflow>");
        }
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // Symbolic terms first (highest degree first), the constant last: `N*T*28`, `N+1`.
        let mut terms: Vec<(&Monomial, &i64)> = self.terms.iter().collect();
        terms.sort_by(|a, b| {
            let da: u32 = a.0.0.iter().map(|(_, e)| e).sum();
            let db: u32 = b.0.0.iter().map(|(_, e)| e).sum();
            db.cmp(&da).then(a.0.cmp(b.0))
        });
        for (i, (m, c)) in terms.iter().enumerate() {
            let c = **c;
            if i > 0 {
                f.write_str(if c < 0 { "-" } else { "+" })?;
            } else if c < 0 {
                f.write_str("-")?;
            }
            let mut parts: Vec<String> = Vec::new();
            for (s, e) in &m.0 {
                if *e == 1 {
                    parts.push(s.to_string());
                } else {
                    parts.push(format!("{s}^{e}"));
                }
            }
            if c.unsigned_abs() != 1 || parts.is_empty() {
                parts.push(c.unsigned_abs().to_string());
            }
            f.write_str(&parts.join("*"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The largest exponent the parser accepts (`N^64`); larger ones are rejected, so hostile
/// text cannot make parsing slow.
pub const MAX_PARSED_EXPONENT: u32 = 64;

/// Error parsing a dim expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dimension expression `{0}`")]
pub struct ParseDimError(pub String);

impl std::str::FromStr for Dim {
    type Err = ParseDimError;
    /// Parses the printed form: terms joined by `+`/`-`, factors by `*`, powers with `^`.
    fn from_str(s: &str) -> Result<Dim, ParseDimError> {
        let err = || ParseDimError(s.to_string());
        let s_trim: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if s_trim.is_empty() {
            return Err(err());
        }
        let mut total = Dim::constant(0);
        let mut sign = 1i64;
        let mut cur = String::new();
        let flush = |cur: &str, sign: i64, total: &mut Dim| -> Result<(), ParseDimError> {
            if cur.is_empty() {
                return Err(err());
            }
            let mut term = Dim::constant(sign);
            for factor in cur.split('*') {
                let (base, exp) = match factor.split_once('^') {
                    Some((b, e)) => match e.parse::<u32>() {
                        Ok(e) if e <= MAX_PARSED_EXPONENT => (b, e),
                        _ => return Err(err()),
                    },
                    None => (factor, 1),
                };
                let f = if let Ok(n) = base.parse::<u64>() {
                    Dim::constant(i64::try_from(n).map_err(|_| err())?)
                } else if !base.is_empty()
                    && base
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && base.chars().all(|c| c.is_alphanumeric() || c == '_')
                {
                    Dim::sym(base)
                } else {
                    return Err(err());
                };
                for _ in 0..exp {
                    term = &term * &f;
                }
            }
            *total = &*total + &term;
            Ok(())
        };
        for (i, ch) in s_trim.chars().enumerate() {
            match ch {
                '+' | '-' if i > 0 => {
                    flush(&cur, sign, &mut total)?;
                    cur.clear();
                    sign = if ch == '-' { -1 } else { 1 };
                }
                '-' => sign = -1,
                _ => cur.push(ch),
            }
        }
        flush(&cur, sign, &mut total)?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_products_and_division() {
        let n = Dim::sym("N");
        let t = Dim::sym("T");
        let flat = Dim::product([&n, &t, &Dim::known(28)]);
        assert_eq!(flat.to_string(), "N*T*28");
        assert_eq!(flat.exact_div(&Dim::known(28)), Some(&n * &t));
        assert_eq!(
            flat.exact_div(&(&t * &Dim::known(4))),
            Some(&n * &Dim::known(7))
        );
        assert_eq!(n.exact_div(&Dim::known(2)), None);
        assert_eq!((&n * &t), (&t * &n));
    }

    #[test]
    fn sums_and_parse_round_trip() {
        let n = Dim::sym("N");
        let d = n.clone() + Dim::known(3);
        assert_eq!(d.to_string(), "N+3");
        for text in ["N+3", "N*T*28", "N^2*4", "784", "B*N-1"] {
            let parsed: Dim = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        let mut b = HashMap::new();
        b.insert("N".to_string(), 5u64);
        assert_eq!(d.eval(&b), Ok(8));
        assert_eq!(Dim::sym("M").eval(&b), Err(DimError::Unbound("M".into())));
    }

    #[test]
    fn overflow_is_sticky_and_never_wraps() {
        let mut d = Dim::sym("N");
        for _ in 0..32 {
            d = &d * &d;
        }
        assert!(d.is_overflow(), "N^(2^32) must overflow, got {d}");
        assert_eq!(d.to_string(), "<overflow>");
        let mut b = HashMap::new();
        b.insert("N".to_string(), 1u64);
        assert!(matches!(d.eval(&b), Err(DimError::Overflow(_))));
        assert_eq!(d.as_known(), None);
        assert!((&d * &Dim::known(0)).is_overflow());
        assert!((d.clone() + Dim::known(1)).is_overflow());
        assert!(Dim::known(u64::MAX).is_overflow());
        let big = Dim::known(1 << 62);
        assert!((&big * &Dim::known(2)).is_overflow());
        assert!((big.clone() + big.clone()).is_overflow());
        assert!(!(&big * &Dim::known(1)).is_overflow());
        assert!((&(Dim::sym("N") * big.clone()) * &Dim::known(4)).is_overflow());
    }

    #[test]
    fn huge_exponents_evaluate_without_looping() {
        let mut d = Dim::sym("N");
        for _ in 0..31 {
            d = &d * &d;
        }
        assert!(!d.is_overflow());
        let mut b = HashMap::new();
        b.insert("N".to_string(), 1u64);
        assert_eq!(d.eval(&b), Ok(1));
        b.insert("N".to_string(), 2u64);
        assert!(matches!(d.eval(&b), Err(DimError::Overflow(_))));
    }

    #[test]
    fn non_negativity_over_symbols_at_least_one() {
        let n = Dim::sym("N");
        let t = Dim::sym("T");
        let nt = &n * &t;
        assert!(n.provably_non_negative());
        assert!((n.clone() - Dim::known(1)).provably_non_negative());
        assert!(!(n.clone() - Dim::known(2)).provably_non_negative());
        assert!((nt.clone() - Dim::known(1)).provably_non_negative());
        assert!(!(nt.clone() - t.clone()).provably_non_negative());
        assert!((&n * &Dim::known(2) - Dim::known(2)).provably_non_negative());
        assert!(Dim::known(0).provably_non_negative());
        assert!(!Dim::overflowed().provably_non_negative());
    }

    #[test]
    fn multi_term_division() {
        let n = Dim::sym("N");
        let np1 = n.clone() + Dim::known(1);
        let twice = &np1 * &Dim::known(2);
        assert_eq!(twice.exact_div(&np1), Some(Dim::known(2)));
        assert_eq!(n.exact_div(&np1), None);
    }
}
