//! Typed ids of kernel-IR entities. Each prints with its prefix, so a dump reads like a
//! listing: kernels `k3`, buffers `b7`, scalar values `v2`, loop variables `i0`, reduction
//! variables `r1`.

use std::fmt;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            /// The printed prefix.
            pub const PREFIX: char = $prefix;

            /// The position this id names in its owning list.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

typed_id!(
    /// A kernel of a [`crate::Program`], printed `k3`; the position in `Program::kernels`.
    KernelId,
    'k'
);
typed_id!(
    /// A buffer of a [`crate::Program`], printed `b7`; the position in `Program::buffers`.
    BufferId,
    'b'
);
typed_id!(
    /// A scalar value of a [`crate::Body`], printed `v2`; the position in `Body::values`.
    ValueId,
    'v'
);
typed_id!(
    /// A loop variable, printed `i0`: the index along axis 0 of the body's iteration domain.
    LoopVar,
    'i'
);
typed_id!(
    /// A reduction variable, printed `r0`: the index along axis 0 of a loop kernel's
    /// reduction domain.
    RedVar,
    'r'
);

/// Parses `<prefix><digits>` in canonical form (no sign, no leading zeros) into the number.
pub(crate) fn parse_prefixed(text: &str, prefix: char) -> Option<u32> {
    let digits = text.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// True if `text` has the shape of an id (`b3`, `k0`, `v12`, `i1`, `r0`, also `b03`), which
/// symbol names must avoid.
pub(crate) fn looks_like_id(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some('b' | 'k' | 'v' | 'i' | 'r'))
        && text.len() > 1
        && chars.all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_with_prefix() {
        assert_eq!(KernelId(3).to_string(), "k3");
        assert_eq!(BufferId(7).to_string(), "b7");
        assert_eq!(ValueId(0).to_string(), "v0");
        assert_eq!(LoopVar(1).to_string(), "i1");
        assert_eq!(RedVar(2).to_string(), "r2");
    }

    #[test]
    fn prefixed_parsing_is_canonical() {
        assert_eq!(parse_prefixed("b12", 'b'), Some(12));
        assert_eq!(parse_prefixed("b0", 'b'), Some(0));
        assert_eq!(parse_prefixed("b012", 'b'), None);
        assert_eq!(parse_prefixed("b", 'b'), None);
        assert_eq!(parse_prefixed("v1", 'b'), None);
        assert_eq!(parse_prefixed("b99999999999", 'b'), None);
        assert!(looks_like_id("i0"));
        assert!(looks_like_id("b007"));
        assert!(!looks_like_id("N"));
        assert!(!looks_like_id("batch"));
    }
}
