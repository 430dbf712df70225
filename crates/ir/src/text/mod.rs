//! Readable text form of a graph: the printer (`Display for Graph`) and the parser ([`parse`]),
//! which round-trip every graph, node ids included.
//!
//! One node per line, in id order, like a listing:
//!
//! ```text
//! n0 = input "x" : f32[N, 784]
//! n1 = param "fc1.weight" : f32[128, 784]
//! n2 = permute n1 [1, 0] : f32[784, 128]
//! n3 = matmul n0, n2 : f32[N, 128]          ; a comment
//! n4 = const f32[3] [1.0, 2.5, -0.0] : f32[3]
//! n5 = reduce_sum n3 axes=[1] keepdim=false : f32[N] @ src/model.rs:12:5
//! ```
//!
//! A line is `nK = OP OPERANDS ATTRIBUTES : TYPE [@ LOC]`. Operands are node ids separated by
//! commas; they may refer to nodes defined on later lines. Attributes follow in the order of
//! the op's schema ([`Op::attr_schema`](crate::Op::attr_schema), declared with the op), each
//! `key=VALUE`, or `VALUE` alone for a positional one, and each value is spelled by its
//! [`AttrKind`](crate::AttrKind):
//!
//! | kind | spelling |
//! |------|----------|
//! | axis, count, size, factor | `A` (a non-negative integer) |
//! | axis list, size list | `[A, ...]` |
//! | `(h, w)` factor pair | `[H, W]` |
//! | pair list | `[(LO, HI), ...]` |
//! | bool | `true`, `false` |
//! | float | as a constant's `f64` elements |
//! | dtype, shape, tensor type, dim | `f32`, `[D, ...]`, `f32[D, ...]`, `[D]` |
//! | name | `"name"` (escaped like a Rust string) |
//! | region | `rK` |
//! | slice list | `[ENTRY, ...]`, an entry being `start:stop`, `start:stop:step` or `:` (whole axis) |
//!
//! So, for instance:
//!
//! | op | attributes |
//! |----|------------|
//! | `input`, `param` | `"name"` |
//! | `const` | `DTYPE[SHAPE] [v0, v1, ...]` (row-major elements; data, not an attribute) |
//! | `iota` | `axis=A` |
//! | `random_bits`, unary, binary, `select`, `stop_gradient`, `cast`, `reshape`, `expand`, `matmul` | none |
//! | `reduce_sum`, `reduce_max`, `reduce_min`, `reduce_prod` | `axes=[A, ...] keepdim=BOOL` |
//! | `argmax`, `argmin` | `axis=A keepdim=BOOL` |
//! | `permute` | `[P0, P1, ...]` |
//! | `slice` | `[ENTRY, ...]` |
//! | `pad` | `[(LO, HI), ...] value=FLOAT` |
//! | `concat`, `gather`, `scatter_add` | `axis=A` |
//! | `flip` | `axes=[A, ...]` |
//! | `conv2d` | `stride=[H, W] padding=[H, W] dilation=[H, W] groups=G` |
//! | `window_sum`, `window_max` | `window=[..] stride=[..] padding=[(LO, HI), ...]` |
//! | `cond` | `then=rA else=rB` |
//! | `scan` | `body=rA length=[DIM] carries=C xs=X reverse=BOOL` |
//! | `while` | `cond=rA body=rB carries=C` |
//! | `get` | `index=I` |
//!
//! A graph's regions (the bodies of its control-flow ops) follow its node lines, in order
//! `r0, r1, ...`, each a block whose lines are indented two more spaces:
//!
//! ```text
//! n3 = scan n1, n0 body=r0 length=[T] carries=1 xs=1 reverse=false : bool[]
//! n4 = get n3 index=0 : f32[2]
//! r0 (n0, n1) -> (n2, n2) {
//!   n0 = input "c" : f32[2]
//!   n1 = input "x" : f32[2]
//!   n2 = add n0, n1 : f32[2]
//! }
//! ```
//!
//! The header lists the region's parameters (its `input` nodes, in order) and its results.
//! A control-flow node's type is the token `bool[]`; `get` nodes read its results.
//!
//! An attribute that *is* (part of) the result type ([`AttrRole::Result`](crate::AttrRole))
//! is taken from the stated type: `input`, `param` and `iota` (dtype and shape), `random_bits`,
//! `reshape` and `expand` (shape), `cast` (dtype). Only when a node's stated type disagrees
//! with its op (a graph that fails verification) is the attribute printed, as
//! `type=DTYPE[SHAPE]`, `shape=[SHAPE]` or `dtype=DTYPE`.
//!
//! Floats print with Rust's shortest round-trip formatting, plus `inf`, `-inf`, `nan`
//! (the canonical quiet NaN), `-nan` and `nan:0xBITS` for any other NaN bit pattern, so
//! constants round-trip bit for bit. Dims print and parse as [`Dim`](crate::Dim) expressions (`N*T*28`).
//! `;` starts a comment that runs to the end of the line; blank lines are ignored. The
//! provenance suffix is `@ FILE:LINE:COLUMN`, with FILE quoted when it contains whitespace,
//! `;` or `"`.
//!
//! [`parse`] runs the verifier, so a parsed graph is as trustworthy as one built with
//! [`Graph::add`](crate::Graph::add); [`parse_unverified`] only checks the syntax (for tools that show the
//! verifier's errors).

mod parse;
pub(crate) mod print;

pub use parse::{MAX_NODE_ID, ParseError, parse, parse_unverified};
pub use print::{fmt_f32, fmt_f64, format_node};

/// The bits of the canonical quiet `f32` NaN, printed `nan`.
const F32_NAN_BITS: u32 = 0x7fc0_0000;
/// The bits of the canonical quiet `f64` NaN, printed `nan`.
const F64_NAN_BITS: u64 = 0x7ff8_0000_0000_0000;
