//! What every conversion of the decoder needs: the conversion context (data section,
//! declared symbols, parsed dims), bounded counts, axes and attributes, dimension
//! expressions, dtypes and scalars.

use crate::error::{FormatError, shown};
use crate::limits::*;
use crate::names::name;
use crate::v1::*;
use kiln_ir::{DType, Dim, Shape};
use kiln_kernel::Scalar;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

pub(super) type Result<T> = std::result::Result<T, FormatError>;

/// What every conversion needs: the data section and the declared signature symbols.
pub(super) struct Cx<'a> {
    pub(super) data: &'a [u8],
    pub(super) declared: &'a HashSet<String>,
    /// Graph and signature dims parsed so far (shapes repeat the same few dims).
    pub(super) dims: RefCell<HashMap<String, Dim>>,
}

pub(super) fn count(
    n: usize,
    limit: u64,
    location: impl FnOnce() -> String,
    what: &'static str,
) -> Result<()> {
    if n as u64 > limit {
        return Err(FormatError::limit(location(), what, n as u64, limit));
    }
    Ok(())
}

pub(super) fn dtype(d: DTypeV1) -> DType {
    match d {
        DTypeV1::F32 => DType::F32,
        DTypeV1::F64 => DType::F64,
        DTypeV1::I32 => DType::I32,
        DTypeV1::I64 => DType::I64,
        DTypeV1::U32 => DType::U32,
        DTypeV1::Bool => DType::Bool,
    }
}

pub(super) fn scalar(s: ScalarV1) -> Scalar {
    match s {
        ScalarV1::F32(b) => Scalar::F32(f32::from_bits(b)),
        ScalarV1::F64(b) => Scalar::F64(f64::from_bits(b)),
        ScalarV1::I32(v) => Scalar::I32(v),
        ScalarV1::I64(v) => Scalar::I64(v),
        ScalarV1::U32(v) => Scalar::U32(v),
        ScalarV1::Bool(v) => Scalar::Bool(v),
    }
}

/// Parses a dimension expression after bounding its length, constants and exponents, and
/// requires the canonical printed form (so equal dims have equal bytes).
pub(super) fn parse_dim(text: &str, location: &dyn Fn() -> String) -> Result<Dim> {
    if text.len() as u64 > MAX_DIM_TEXT_BYTES {
        return Err(FormatError::limit(
            location(),
            "dimension text length in bytes",
            text.len() as u64,
            MAX_DIM_TEXT_BYTES,
        ));
    }
    let bad = |why: String| FormatError::invalid(location(), format!("dimension {text:?} {why}"));
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut after_caret = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            let (limit, what) = if after_caret {
                (MAX_DIM_EXPONENT, "exponent")
            } else {
                (MAX_DIM_VALUE, "constant")
            };
            match digits.parse::<u64>() {
                Ok(v) if v <= limit => {}
                _ => {
                    return Err(bad(format!(
                        "has the {what} {digits}, over the limit {limit}"
                    )));
                }
            }
            after_caret = false;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            after_caret = false;
            continue;
        }
        match c {
            '^' => after_caret = true,
            '+' | '-' | '*' => after_caret = false,
            _ => return Err(bad(format!("has the unexpected character {c:?}"))),
        }
        i += 1;
    }
    let d: Dim = text
        .parse()
        .map_err(|_| bad("is not a dimension expression".to_string()))?;
    let canonical = d.to_string();
    if canonical != text {
        return Err(bad(format!(
            "is not in canonical form (expected {canonical:?})"
        )));
    }
    Ok(d)
}

impl Cx<'_> {
    /// A graph or signature dimension: parsed, and every symbol declared in the signature.
    pub(super) fn dim(&self, text: &str, location: &dyn Fn() -> String) -> Result<Dim> {
        if let Some(d) = self.dims.borrow().get(text) {
            return Ok(d.clone());
        }
        let d = parse_dim(text, location)?;
        for s in d.symbols() {
            if !self.declared.contains(&*s) {
                return Err(FormatError::invalid(
                    location(),
                    format!("symbol {} is not declared in the signature", shown(&s)),
                ));
            }
        }
        self.dims.borrow_mut().insert(text.to_string(), d.clone());
        Ok(d)
    }

    pub(super) fn shape(&self, dims: &[DimV1], location: &dyn Fn() -> String) -> Result<Shape> {
        count(dims.len(), MAX_RANK, location, "rank")?;
        dims.iter()
            .map(|d| self.dim(d, location))
            .collect::<Result<Vec<Dim>>>()
            .map(Shape)
    }
}

pub(super) fn axis(a: u64, location: &dyn Fn() -> String) -> Result<usize> {
    if a >= MAX_RANK {
        return Err(FormatError::limit(location(), "axis", a, MAX_RANK - 1));
    }
    Ok(a as usize)
}

pub(super) fn axis_list(a: &[u64], location: &dyn Fn() -> String) -> Result<Vec<usize>> {
    count(a.len(), MAX_RANK, location, "axis count")?;
    a.iter().map(|&x| axis(x, location)).collect()
}

pub(super) fn attr(
    v: u64,
    limit: u64,
    what: &'static str,
    location: &dyn Fn() -> String,
) -> Result<u64> {
    if v > limit {
        return Err(FormatError::limit(location(), what, v, limit));
    }
    Ok(v)
}

/// Decodes a list of named entries (signature tensors, named graph nodes): at most
/// [`MAX_ENTRIES`], every name valid and used once; `f` builds each entry from the item, its
/// checked name and its location text.
pub(super) fn unique_named<T, U>(
    list: &[T],
    what: &str,
    name_of: impl Fn(&T) -> &str,
    mut f: impl FnMut(&T, String, &dyn Fn() -> String) -> Result<U>,
) -> Result<Vec<U>> {
    count(
        list.len(),
        MAX_ENTRIES,
        || format!("{what}s"),
        "entry count",
    )?;
    let mut seen = HashSet::new();
    list.iter()
        .map(|t| {
            let raw = name_of(t);
            let location = || format!("{what} {}", shown(raw));
            let n = name(raw, location)?;
            if !seen.insert(n.clone()) {
                return Err(FormatError::invalid(location(), "name used twice"));
            }
            f(t, n, &location)
        })
        .collect()
}
