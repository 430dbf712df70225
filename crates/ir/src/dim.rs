//! Symbolic dimensions: exact integer polynomials over named symbols (`N`, `T`, `N*T*28`, `N+1`).
//!
//! A [`Dim`] is kept in a canonical form (a sorted map from monomials to non-zero coefficients),
//! so two dims are equal exactly when their expressions are equal for every binding of the
//! symbols. Division is exact or refused: `(N*784)/784 = N`, `N/2` is an error.

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
    fn mul(&self, other: &Monomial) -> Monomial {
        let mut map: BTreeMap<Sym, u32> = self.0.iter().cloned().collect();
        for (s, e) in &other.0 {
            *map.entry(s.clone()).or_insert(0) += e;
        }
        Monomial(map.into_iter().collect())
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
    pub fn known(n: u64) -> Dim {
        Dim::constant(i64::try_from(n).unwrap_or(i64::MAX))
    }

    fn constant(n: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if n != 0 {
            terms.insert(Monomial::default(), n);
        }
        Dim { terms }
    }

    /// A named symbol, e.g. the batch size `N`.
    pub fn sym(name: &str) -> Dim {
        let mut terms = BTreeMap::new();
        terms.insert(Monomial(vec![(Arc::from(name), 1)]), 1);
        Dim { terms }
    }

    /// The size if it contains no symbol.
    pub fn as_known(&self) -> Option<u64> {
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
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v: i64 = *c;
            for (s, e) in &m.0 {
                let b = *bindings
                    .get(&**s)
                    .ok_or_else(|| DimError::Unbound(s.to_string()))?;
                let b = i64::try_from(b).map_err(|_| overflow())?;
                for _ in 0..*e {
                    v = v.checked_mul(b).ok_or_else(overflow)?;
                }
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
        if rhs.terms.is_empty() {
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
            return Some(Dim { terms });
        }
        let (m0, c0) = self.terms.iter().next()?;
        let (r0, rc0) = rhs.terms.iter().next()?;
        let q = Dim {
            terms: [(
                m0.div(r0)?,
                if c0 % rc0 == 0 { c0 / rc0 } else { return None },
            )]
            .into_iter()
            .collect(),
        };
        (&q * rhs == *self).then_some(q)
    }

    /// `self - rhs`, if the result is a known non-negative size or a symbolic expression.
    pub fn checked_sub(&self, rhs: &Dim) -> Option<Dim> {
        let d = self.clone() - rhs.clone();
        match d.terms.get(&Monomial::default()) {
            _ if d.is_known() => Some(d),
            _ if d.terms.values().all(|c| *c > 0) => Some(d),
            _ => None,
        }
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
        Dim::known(n as u64)
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
        let mut terms = a.terms.clone();
        for (m, c) in &rhs.terms {
            let e = terms.entry(m.clone()).or_insert(0);
            *e = e.saturating_add(*c);
            if *e == 0 {
                terms.remove(m);
            }
        }
        Dim { terms }
    }
}
impl Dim {
    fn negated(self) -> Dim {
        Dim {
            terms: self
                .terms
                .into_iter()
                .map(|(m, c)| (m, c.saturating_neg()))
                .collect(),
        }
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
        let mut terms: BTreeMap<Monomial, i64> = BTreeMap::new();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &rhs.terms {
                let m = m1.mul(m2);
                let e = terms.entry(m.clone()).or_insert(0);
                *e = e.saturating_add(c1.saturating_mul(*c2));
                if *e == 0 {
                    terms.remove(&m);
                }
            }
        }
        Dim { terms }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    fn multi_term_division() {
        let n = Dim::sym("N");
        let np1 = n.clone() + Dim::known(1);
        let twice = &np1 * &Dim::known(2);
        assert_eq!(twice.exact_div(&np1), Some(Dim::known(2)));
        assert_eq!(n.exact_div(&np1), None);
    }
}
