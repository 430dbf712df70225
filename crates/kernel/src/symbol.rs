//! A program's symbolic sizes and the ranges a binding may give them.

/// A symbolic size such as the batch `N`, with the range of values a binding may give it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Symbol {
    /// The name used in dims.
    pub name: String,
    /// Smallest allowed value (1 unless stated otherwise).
    pub min: u64,
    /// Largest allowed value, if bounded.
    pub max: Option<u64>,
}
