//! Graph-op attributes as data: the closed set of attribute kinds ([`AttrKind`]), their
//! values ([`AttrValue`]) and how an op declares them ([`AttrSpec`]).
//!
//! Every [`Op`](crate::Op) variant declares its attributes once, in `crates/ir/src/op.rs`:
//! [`Op::attr_schema`](crate::Op::attr_schema) lists them per op name (key, kind, role), [`Op::attrs`](crate::Op::attrs) reads them
//! in that order and [`Op::from_attrs`](crate::Op::from_attrs) builds the op back. The text form
//! (`crate::text`) and the `.kiln` file format print, parse, store and bound attributes
//! from this description alone, one rule per kind, so a new op with attributes of existing
//! kinds needs no change in either. A literal's data (`const`) is not an attribute.

use crate::dim::Dim;
use crate::dtype::DType;
use crate::shape::Shape;
use std::fmt;

/// The kind of an attribute: what values it holds and how the text and file formats spell
/// and bound it. The set is closed and small; a new op normally reuses these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrKind {
    /// An axis of an operand or the result (`usize`; `A`).
    Axis,
    /// A list of axes, such as reduced axes or a permutation (`[A, ...]`).
    Axes,
    /// A count of operands or results, or an index among them (`usize`; `C`).
    Count,
    /// A size or offset that is added to dims, such as a pad amount (`u64`; `S`).
    Size,
    /// A list of sizes, such as a window per trailing axis (`[S, ...]`).
    Sizes,
    /// `(before, after)` sizes per axis (`[(LO, HI), ...]`).
    Pairs,
    /// A small factor that multiplies dims, such as a convolution's groups (`u64`; `F`).
    Factor,
    /// A small factor per spatial axis `(h, w)`, such as a convolution's stride (`[H, W]`).
    Hw,
    /// A flag (`true` or `false`).
    Bool,
    /// A float, compared by its bits (`FLOAT`, printed like a constant's `f64` elements).
    Float,
    /// An element type (`f32`).
    DType,
    /// A shape (`[D, ...]`, each a dim expression).
    Shape,
    /// A tensor type, dtype and shape (`f32[D, ...]`).
    Type,
    /// One dim expression (`[D]`).
    Dim,
    /// A user name, such as an input's (a quoted string).
    Name,
    /// A region of the graph that holds the op (`rK`).
    Region,
    /// A strided slice per axis (`[START:STOP:STEP, ...]`).
    Slices,
}

impl AttrKind {
    /// The kind's name in messages (`axis list`, `region`).
    pub fn describe(self) -> &'static str {
        match self {
            AttrKind::Axis => "axis",
            AttrKind::Axes => "axis list",
            AttrKind::Count => "count",
            AttrKind::Size => "size",
            AttrKind::Sizes => "size list",
            AttrKind::Pairs => "(before, after) pair list",
            AttrKind::Factor => "factor",
            AttrKind::Hw => "(h, w) factor pair",
            AttrKind::Bool => "bool",
            AttrKind::Float => "float",
            AttrKind::DType => "dtype",
            AttrKind::Shape => "shape",
            AttrKind::Type => "tensor type",
            AttrKind::Dim => "dim",
            AttrKind::Name => "name",
            AttrKind::Region => "region",
            AttrKind::Slices => "slice list",
        }
    }
}

/// One attribute's value, of the [`AttrKind`] of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// See [`AttrKind::Axis`].
    Axis(usize),
    /// See [`AttrKind::Axes`].
    Axes(Vec<usize>),
    /// See [`AttrKind::Count`].
    Count(usize),
    /// See [`AttrKind::Size`].
    Size(u64),
    /// See [`AttrKind::Sizes`].
    Sizes(Vec<u64>),
    /// See [`AttrKind::Pairs`].
    Pairs(Vec<(u64, u64)>),
    /// See [`AttrKind::Factor`].
    Factor(u64),
    /// See [`AttrKind::Hw`].
    Hw([u64; 2]),
    /// See [`AttrKind::Bool`].
    Bool(bool),
    /// See [`AttrKind::Float`].
    Float(F64Bits),
    /// See [`AttrKind::DType`].
    DType(DType),
    /// See [`AttrKind::Shape`].
    Shape(Shape),
    /// See [`AttrKind::Type`].
    Type(DType, Shape),
    /// See [`AttrKind::Dim`].
    Dim(Dim),
    /// See [`AttrKind::Name`].
    Name(String),
    /// See [`AttrKind::Region`].
    Region(RegionId),
    /// See [`AttrKind::Slices`].
    Slices(Vec<SliceAxis>),
}

impl AttrValue {
    /// The value's kind.
    pub fn kind(&self) -> AttrKind {
        match self {
            AttrValue::Axis(_) => AttrKind::Axis,
            AttrValue::Axes(_) => AttrKind::Axes,
            AttrValue::Count(_) => AttrKind::Count,
            AttrValue::Size(_) => AttrKind::Size,
            AttrValue::Sizes(_) => AttrKind::Sizes,
            AttrValue::Pairs(_) => AttrKind::Pairs,
            AttrValue::Factor(_) => AttrKind::Factor,
            AttrValue::Hw(_) => AttrKind::Hw,
            AttrValue::Bool(_) => AttrKind::Bool,
            AttrValue::Float(_) => AttrKind::Float,
            AttrValue::DType(_) => AttrKind::DType,
            AttrValue::Shape(_) => AttrKind::Shape,
            AttrValue::Type(..) => AttrKind::Type,
            AttrValue::Dim(_) => AttrKind::Dim,
            AttrValue::Name(_) => AttrKind::Name,
            AttrValue::Region(_) => AttrKind::Region,
            AttrValue::Slices(_) => AttrKind::Slices,
        }
    }

    /// The value of a [`AttrRole::Result`] attribute of `kind` that a node of result type
    /// `dtype` and `shape` implies; `None` for a kind that is not part of a result type.
    pub fn of_result(kind: AttrKind, dtype: DType, shape: &Shape) -> Option<AttrValue> {
        match kind {
            AttrKind::DType => Some(AttrValue::DType(dtype)),
            AttrKind::Shape => Some(AttrValue::Shape(shape.clone())),
            AttrKind::Type => Some(AttrValue::Type(dtype, shape.clone())),
            _ => None,
        }
    }
}

/// How the text form writes an attribute (the file format stores every attribute the same
/// way, in schema order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrRole {
    /// `key=VALUE`.
    Keyed,
    /// `VALUE` alone (an op's main attribute: `permute n0 [1, 0]`, `input "x"`).
    Positional,
    /// Part of the node's result type (kind [`AttrKind::DType`], [`AttrKind::Shape`] or
    /// [`AttrKind::Type`]): written `key=VALUE` only when it differs from the node's stated
    /// type, and taken from the stated type when absent.
    Result,
}

/// One attribute of an op's schema ([`Op::attr_schema`](crate::Op::attr_schema)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttrSpec {
    /// Its key in the text form (`axes`, `keepdim`); also its name in messages.
    pub key: &'static str,
    /// What it holds.
    pub kind: AttrKind,
    /// How the text form writes it.
    pub role: AttrRole,
}

impl AttrSpec {
    /// A `key=VALUE` attribute.
    pub const fn keyed(key: &'static str, kind: AttrKind) -> AttrSpec {
        AttrSpec {
            key,
            kind,
            role: AttrRole::Keyed,
        }
    }

    /// A positional attribute (`key` names it in messages).
    pub const fn positional(key: &'static str, kind: AttrKind) -> AttrSpec {
        AttrSpec {
            key,
            kind,
            role: AttrRole::Positional,
        }
    }

    /// An attribute that is (part of) the node's result type.
    pub const fn result(key: &'static str, kind: AttrKind) -> AttrSpec {
        AttrSpec {
            key,
            kind,
            role: AttrRole::Result,
        }
    }
}

/// Why [`Op::from_attrs`](crate::Op::from_attrs) cannot build an op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// No op has this name.
    #[error("unknown op `{0}`")]
    UnknownOp(String),
    /// The op is a literal (`const`), whose data is not an attribute.
    #[error("`{0}` is a literal: its data is not an attribute")]
    Literal(&'static str),
    /// Too few or too many attribute values.
    #[error("`{op}` takes {expected} attribute(s), got {got}")]
    Count {
        /// Op name.
        op: &'static str,
        /// Attributes in its schema.
        expected: usize,
        /// Values supplied.
        got: usize,
    },
    /// A value of the wrong kind.
    #[error("`{op}` attribute `{key}` takes a value of kind {expected}, got {got}")]
    Kind {
        /// Op name.
        op: &'static str,
        /// Attribute key.
        key: &'static str,
        /// Kind in the schema.
        expected: &'static str,
        /// Kind supplied.
        got: &'static str,
    },
}

/// Attribute values taken apart in schema order, as [`Op::from_attrs`](crate::Op::from_attrs) does once their
/// kinds are checked. Each getter returns the next value if it has the getter's kind and a
/// neutral value (zero, empty, `f32`) otherwise, so no path panics.
#[derive(Debug)]
pub struct Values(std::vec::IntoIter<AttrValue>);

macro_rules! getter {
    ($name:ident, $variant:ident, $ty:ty) => {
        #[doc = concat!("The next value, an [`AttrValue::", stringify!($variant), "`].")]
        pub fn $name(&mut self) -> $ty {
            match self.0.next() {
                Some(AttrValue::$variant(v)) => v,
                _ => <$ty>::default(),
            }
        }
    };
}

impl Values {
    /// Reads `values` from the first.
    pub fn new(values: Vec<AttrValue>) -> Values {
        Values(values.into_iter())
    }

    getter!(axis, Axis, usize);
    getter!(axes, Axes, Vec<usize>);
    getter!(count, Count, usize);
    getter!(size, Size, u64);
    getter!(sizes, Sizes, Vec<u64>);
    getter!(pairs, Pairs, Vec<(u64, u64)>);
    getter!(factor, Factor, u64);
    getter!(hw, Hw, [u64; 2]);
    getter!(boolean, Bool, bool);
    getter!(name, Name, String);
    getter!(slices, Slices, Vec<SliceAxis>);
    getter!(shape, Shape, Shape);

    /// The next value, an [`AttrValue::Float`].
    pub fn float(&mut self) -> F64Bits {
        match self.0.next() {
            Some(AttrValue::Float(v)) => v,
            _ => F64Bits::new(0.0),
        }
    }

    /// The next value, an [`AttrValue::DType`].
    pub fn dtype(&mut self) -> DType {
        match self.0.next() {
            Some(AttrValue::DType(v)) => v,
            _ => DType::F32,
        }
    }

    /// The next value, an [`AttrValue::Type`].
    pub fn ty(&mut self) -> (DType, Shape) {
        match self.0.next() {
            Some(AttrValue::Type(d, s)) => (d, s),
            _ => (DType::F32, Shape::scalar()),
        }
    }

    /// The next value, an [`AttrValue::Dim`].
    pub fn dim(&mut self) -> Dim {
        match self.0.next() {
            Some(AttrValue::Dim(v)) => v,
            _ => Dim::known(0),
        }
    }

    /// The next value, an [`AttrValue::Region`].
    pub fn region(&mut self) -> RegionId {
        match self.0.next() {
            Some(AttrValue::Region(v)) => v,
            _ => RegionId(0),
        }
    }
}

/// One axis of a [`Op::Slice`](crate::Op::Slice): elements `start, start+step, ...` below `stop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SliceAxis {
    /// First index taken.
    pub start: u64,
    /// One past the last index considered.
    pub stop: u64,
    /// Step, at least 1.
    pub step: u64,
}

/// A region (a body of a control-flow op) of the [`Graph`](crate::Graph) that holds the op,
/// printed `r3`. Regions are owned by their graph, like nodes, so an [`Op`](crate::Op)(crate::Op) stays plain data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RegionId(pub u32);

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// An `f64` compared and hashed by its bits, so ops stay `Eq + Hash`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct F64Bits(u64);

impl F64Bits {
    /// Wraps a value.
    pub fn new(v: f64) -> F64Bits {
        F64Bits(v.to_bits())
    }
    /// The value.
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Debug for F64Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

impl From<f64> for F64Bits {
    fn from(v: f64) -> F64Bits {
        F64Bits::new(v)
    }
}
