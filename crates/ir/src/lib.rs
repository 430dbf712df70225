//! kiln's graph IR: a closed set of primitive [`Op`]s over tensors with a [`DType`] and a
//! possibly symbolic [`Shape`], stored in a [`Graph`] of typed [`NodeId`]s.
//!
//! Shape and dtype inference ([`infer`]) runs when a node is added, so every node in a graph
//! is well-typed; the [`verify`](mod@verify) module re-checks a whole graph (used on parsed
//! or loaded graphs) and collects every error. [`text`] prints and parses the readable form.

#![deny(missing_docs)]

pub mod array;
pub mod attr;
pub mod dim;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod infer;
pub mod op;
pub mod semantics;
pub mod shape;
pub mod text;
pub mod verify;

pub use array::{Array, ArrayError, Data};
pub use attr::{AttrError, AttrKind, AttrRole, AttrSpec, AttrValue, F64Bits, RegionId, SliceAxis};
pub use dim::{Dim, DimError, Sym};
pub use dtype::DType;
pub use error::ShapeError;
pub use graph::{Graph, GraphError, Loc, Node, NodeId, Region};
pub use infer::RegionSig;
pub use op::{ArgOp, BinaryOp, DTypeRule, Op, OpKind, ReduceOp, UnaryOp, WindowOp};
pub use shape::Shape;
pub use text::{ParseError, parse, parse_unverified};
pub use verify::{VerifyError, VerifyErrorKind, format_with_errors, verify};
