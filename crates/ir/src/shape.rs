//! Tensor shapes: a list of possibly symbolic [`Dim`]s.

use crate::dim::{Dim, DimError};
use std::collections::HashMap;
use std::fmt;

/// The shape of a tensor. Rank 0 is a scalar.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape from anything convertible to dims.
    pub fn new<D: Into<Dim>>(dims: impl IntoIterator<Item = D>) -> Shape {
        Shape(dims.into_iter().map(Into::into).collect())
    }

    /// The rank-0 shape.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// A fully known shape.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::from(d)).collect())
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dims.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// Number of elements (a symbolic expression in general).
    pub fn numel(&self) -> Dim {
        Dim::product(&self.0)
    }

    /// The concrete sizes if no dim is symbolic.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.0
            .iter()
            .map(|d| d.as_known().map(|n| n as usize))
            .collect()
    }

    /// Every symbol used by the shape, sorted and deduplicated.
    pub fn symbols(&self) -> Vec<crate::dim::Sym> {
        let mut out: Vec<_> = self.0.iter().flat_map(Dim::symbols).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Concrete sizes under a binding of the symbols.
    pub fn eval(&self, bindings: &HashMap<String, u64>) -> Result<Vec<usize>, DimError> {
        self.0
            .iter()
            .map(|d| {
                let v = d.eval(bindings)?;
                usize::try_from(v).map_err(|_| DimError::Overflow(d.to_string()))
            })
            .collect()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<D: Into<Dim>, const K: usize> From<[D; K]> for Shape {
    fn from(dims: [D; K]) -> Shape {
        Shape::new(dims)
    }
}
impl From<Vec<Dim>> for Shape {
    fn from(dims: Vec<Dim>) -> Shape {
        Shape(dims)
    }
}
impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Shape {
        Shape::known(dims)
    }
}
impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Shape {
        Shape::known(&dims)
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Shape {
        s.clone()
    }
}

/// Row-major strides (in elements) of a concrete shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}
