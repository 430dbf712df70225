//! The name rules the writer and the loader share: user names, symbol names, and the
//! stable op names of version 2 to 5 headers.

use crate::error::FormatError;
use crate::limits::{MAX_NAME_BYTES, MAX_OP_NAME_BYTES};

/// A name: at most [`MAX_NAME_BYTES`], no control characters.
pub(crate) fn name(s: &str, location: impl FnOnce() -> String) -> Result<String, FormatError> {
    if s.len() as u64 > MAX_NAME_BYTES {
        return Err(FormatError::limit(
            location(),
            "name length in bytes",
            s.len() as u64,
            MAX_NAME_BYTES,
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FormatError::invalid(
            location(),
            format!("name {s:?} contains a control character"),
        ));
    }
    Ok(s.to_string())
}

/// A symbol name: an identifier (`N`, `seq_len`), as dimension expressions spell them.
pub(crate) fn symbol_name(s: &str, location: impl Fn() -> String) -> Result<String, FormatError> {
    let s = name(s, &location)?;
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_');
    if !ok {
        return Err(FormatError::invalid(
            location(),
            format!("symbol name {s:?} is not an identifier"),
        ));
    }
    Ok(s)
}

/// The op of one family (`graph`, `unary`, `reduce`, ...) whose stable name is `s`: at
/// most [`MAX_OP_NAME_BYTES`], and known to `from_name` (`kiln_ir::Op::attr_schema`,
/// `kiln_ir::UnaryOp::from_name`, ...).
pub(crate) fn op<T>(
    s: &str,
    family: &'static str,
    from_name: fn(&str) -> Option<T>,
    location: &dyn Fn() -> String,
) -> Result<T, FormatError> {
    if s.len() as u64 > MAX_OP_NAME_BYTES {
        return Err(FormatError::limit(
            location(),
            "op name length in bytes",
            s.len() as u64,
            MAX_OP_NAME_BYTES,
        ));
    }
    from_name(s)
        .ok_or_else(|| FormatError::invalid(location(), format!("unknown {family} op {s:?}")))
}
