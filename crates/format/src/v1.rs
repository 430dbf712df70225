//! The header schema of format versions 1 to 5: plain data-transfer types that derive
//! serde.
//!
//! IR types never derive `Serialize`; these DTOs mirror them and the crate's private `encode` /
//! `decode` modules convert explicitly, so the IR can change without silently changing
//! the file format. Field order is the encoding order, and enum variants are numbered in
//! declaration order (see docs/file-format.md): never reorder, only append in a new version.
//!
//! The versions differ in how graph ops and op kinds (unary, binary, reduce, arg-reduce and
//! window ops) are spelled and in whether a graph has regions, all chosen by the
//! [`OpNaming`] parameter. Version 5 ([`Named`], written today) stores every graph op but a
//! constant as its stable name (`kiln_ir::Op::name`) and its attribute values in the order
//! of its schema (`kiln_ir::Op::attr_schema`), each a variant of [`AttrV5`], which mirrors
//! the closed set of attribute *kinds* (`kiln_ir::AttrKind`), not the ops: a new graph op
//! needs no change here ([`OpV5`]). Versions 1 to 4 store a graph op as a variant of
//! [`OpV1`], frozen. Versions 2 to 4 ([`NamedV2`], [`NamedV3`], [`NamedV4`], still read)
//! store each op kind's stable name (`kiln_ir::UnaryOp::name`), as version 5 does; version
//! 1 ([`Numbered`], still read) stores an index into the frozen tables [`UnaryV1`],
//! [`BinaryV1`], [`ReduceV1`], [`ArgV1`] and [`WindowV1`], which never grow: a version 1
//! file cannot contain a newer op. Version 3 adds control flow: the op variants `Cond`,
//! `Scan`, `While` and `Get` (numbered after the version 1 ops, refused in older files) and
//! the graph's region table ([`RegionV3`]); in versions 1 and 2 the table is `()`, which
//! encodes to no bytes, so their files decode unchanged. Version 4 adds each kernel body's
//! debug table ([`CheckSiteV4`]; `()` before).
//!
//! The types are recursion-free (an index expression is a flat postfix node list, and the
//! regions of every nesting level share one flat table whose entries name their parent), so
//! decoding a hostile header never recurses deeper than the schema itself.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// How a header version spells graph ops and op kinds, and whether its graph has regions.
pub trait OpNaming: Clone + Debug + PartialEq + Eq {
    /// The format version whose header this is.
    const VERSION: u32;
    /// A graph op: [`OpV5`] in version 5, [`OpV1`] before.
    type Op: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned;
    /// The graph's region table: [`Vec<RegionV3>`] from version 3, `()` (no bytes) before.
    type Regions: Clone + Debug + PartialEq + Eq + Default + Serialize + DeserializeOwned;
    /// A unary op.
    type Unary: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned;
    /// A binary op.
    type Binary: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned;
    /// A reduction.
    type Reduce: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned;
    /// An index-of-extremum reduction.
    type Arg: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned;
    /// A window reduction.
    type Window: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned;
    /// A kernel plan's schedule: `()` (nothing in the bytes) before version 3.
    type Schedule: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned;

    /// A kernel body's debug table: `()` (nothing in the bytes) before version 4.
    type Checks: Clone + Debug + PartialEq + Eq + Default + Serialize + DeserializeOwned;

    /// The entries of a region table (none before version 3).
    fn region_list(regions: &Self::Regions) -> &[RegionV3<Self>];

    /// The entries of a body's debug table (none before version 4).
    fn check_list(checks: &Self::Checks) -> &[CheckSiteV4];
}

/// Format version 5 (the current one): a graph op is [`OpV5`], its stable name and its
/// attribute values in schema order; op kinds in kernel bodies are stable names, as in
/// version 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named;

impl OpNaming for Named {
    const VERSION: u32 = 5;
    type Op = OpV5;
    type Regions = Vec<RegionV3<Named>>;
    type Unary = String;
    type Binary = String;
    type Reduce = String;
    type Arg = String;
    type Window = String;
    type Schedule = Option<Vec<StepV1>>;
    type Checks = Vec<CheckSiteV4>;

    fn region_list(regions: &Vec<RegionV3<Named>>) -> &[RegionV3<Named>] {
        regions
    }

    fn check_list(checks: &Vec<CheckSiteV4>) -> &[CheckSiteV4] {
        checks
    }
}

/// Format version 4: every op kind is its stable name (`neg`, `reduce_sum`, `argmax`,
/// `window_max`, ...), a `String` of at most [`crate::limits::MAX_OP_NAME_BYTES`]; a graph
/// op is an [`OpV1`]; the graph has a region table, a kernel plan may carry a schedule
/// ([`StepV1`]) (control flow), and every kernel body carries its debug table
/// ([`CheckSiteV4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedV4;

impl OpNaming for NamedV4 {
    const VERSION: u32 = 4;
    type Op = OpV1<NamedV4>;
    type Regions = Vec<RegionV3<NamedV4>>;
    type Unary = String;
    type Binary = String;
    type Reduce = String;
    type Arg = String;
    type Window = String;
    type Schedule = Option<Vec<StepV1>>;
    type Checks = Vec<CheckSiteV4>;

    fn region_list(regions: &Vec<RegionV3<NamedV4>>) -> &[RegionV3<NamedV4>] {
        regions
    }

    fn check_list(checks: &Vec<CheckSiteV4>) -> &[CheckSiteV4] {
        checks
    }
}

/// Format version 3: as version 4, without kernel bodies' debug tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedV3;

impl OpNaming for NamedV3 {
    const VERSION: u32 = 3;
    type Op = OpV1<NamedV3>;
    type Regions = Vec<RegionV3<NamedV3>>;
    type Unary = String;
    type Binary = String;
    type Reduce = String;
    type Arg = String;
    type Window = String;
    type Schedule = Option<Vec<StepV1>>;
    type Checks = ();

    fn region_list(regions: &Vec<RegionV3<NamedV3>>) -> &[RegionV3<NamedV3>] {
        regions
    }

    fn check_list(_: &()) -> &[CheckSiteV4] {
        &[]
    }
}

/// Format version 2: ops and op kinds spelled as in version 3; no regions, plans have no
/// schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedV2;

impl OpNaming for NamedV2 {
    const VERSION: u32 = 2;
    type Op = OpV1<NamedV2>;
    type Regions = ();
    type Unary = String;
    type Binary = String;
    type Reduce = String;
    type Arg = String;
    type Window = String;
    type Schedule = ();
    type Checks = ();

    fn region_list(_: &()) -> &[RegionV3<Self>] {
        &[]
    }

    fn check_list(_: &()) -> &[CheckSiteV4] {
        &[]
    }
}

/// Format version 1: every op kind is a variant of a frozen table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbered;

impl OpNaming for Numbered {
    const VERSION: u32 = 1;
    type Op = OpV1<Numbered>;
    type Regions = ();
    type Unary = UnaryV1;
    type Binary = BinaryV1;
    type Reduce = ReduceV1;
    type Arg = ArgV1;
    type Window = WindowV1;
    type Schedule = ();
    type Checks = ();

    fn region_list(_: &()) -> &[RegionV3<Self>] {
        &[]
    }

    fn check_list(_: &()) -> &[CheckSiteV4] {
        &[]
    }
}

/// The whole header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct HeaderV1<N: OpNaming = Named> {
    /// Producer, creation time, creation options.
    pub metadata: MetadataV1,
    /// Named inputs and outputs, symbols.
    pub signature: SignatureV1,
    /// Source files named by node locations ([`LocV1::file`] indexes this table).
    pub files: Vec<String>,
    /// The optimised graph.
    pub graph: GraphV1<N>,
    /// Named graph outputs.
    pub outputs: Vec<NamedNodeV1>,
    /// State updates: state name and the node computing its new value.
    pub updates: Vec<NamedNodeV1>,
    /// The kernel plan, if the module has one.
    pub program: Option<ProgramV1<N>>,
    /// The state table.
    pub state: Vec<StateEntryV1>,
}

/// Who wrote the module and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataV1 {
    /// Producer, e.g. `kiln 0.1.0`.
    pub producer: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Creation options as key/value pairs, sorted by key, keys unique.
    pub options: Vec<(String, String)>,
}

/// Inputs, outputs and symbol constraints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureV1 {
    /// Named inputs.
    pub inputs: Vec<TensorSpecV1>,
    /// Named outputs.
    pub outputs: Vec<TensorSpecV1>,
    /// Symbols with their ranges.
    pub symbols: Vec<SymbolV1>,
}

/// A named tensor with a possibly symbolic shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpecV1 {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DTypeV1,
    /// Shape: one dimension expression per axis.
    pub shape: Vec<DimV1>,
}

/// A symbol and its allowed range `min..=max`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolV1 {
    /// Name.
    pub name: String,
    /// Smallest value.
    pub min: u64,
    /// Largest value, if bounded.
    pub max: Option<u64>,
}

/// A dimension: the canonical printed form of a `kiln_ir::Dim` (`784`, `N`, `N*T*28`, `T^2`).
pub type DimV1 = String;

/// Element types, numbered 0..=5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DTypeV1 {
    /// 0: `f32`
    F32,
    /// 1: `f64`
    F64,
    /// 2: `i32`
    I32,
    /// 3: `i64`
    I64,
    /// 4: `u32`
    U32,
    /// 5: `bool`
    Bool,
}

/// A tensor stored in the data section: dtype, concrete shape, and its byte range relative
/// to the start of the data section (`offset` a multiple of 64, `len` = elements × size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRefV1 {
    /// Element type.
    pub dtype: DTypeV1,
    /// Concrete shape.
    pub shape: Vec<u64>,
    /// Start, relative to the data section.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One state tensor (parameter, optimiser moment, counter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntryV1 {
    /// State-dict name such as `fc1.weight`.
    pub name: String,
    /// Its data.
    pub tensor: TensorRefV1,
}

/// A name bound to a graph node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedNodeV1 {
    /// Name.
    pub name: String,
    /// Node id (`n<id>`).
    pub node: u32,
}

/// The graph: live nodes in increasing id order, and (version 3) its regions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct GraphV1<N: OpNaming = Named> {
    /// Nodes, ids strictly increasing.
    pub nodes: Vec<NodeV1<N>>,
    /// Version 3: the regions of the graph and of every region in it, flattened (see
    /// [`RegionV3`]); `()`, no bytes, in versions 1 and 2.
    pub regions: N::Regions,
}

/// One region (a body of a control-flow op) in a version 3 graph's flat region table.
///
/// Entry `k` of the table is "table graph `k + 1`"; table graph 0 is the top-level graph.
/// An entry belongs to the table graph `parent`, which must come before it (`parent <= k`),
/// so the table is a tree listed parents first. The [`kiln_ir::RegionId`] of an entry in
/// its parent is its rank among the entries with the same parent, in table order: the
/// entries of one graph keep their `r0, r1, ...` order, and an op's region ids name regions
/// of the graph that holds the op. The writer lists the regions breadth first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RegionV3<N: OpNaming = Named> {
    /// The table graph this is a region of (0: the top-level graph).
    pub parent: u32,
    /// The body's nodes, ids strictly increasing (as [`GraphV1::nodes`]).
    pub nodes: Vec<NodeV1<N>>,
    /// Parameter node ids, in parameter order (the body's `input` nodes).
    pub params: Vec<u32>,
    /// Result node ids, in result order.
    pub results: Vec<u32>,
}

/// One graph node with its stated type (the loader re-verifies it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct NodeV1<N: OpNaming = Named> {
    /// Node id.
    pub id: u32,
    /// The op and its attributes.
    pub op: N::Op,
    /// Stated result dtype.
    pub dtype: DTypeV1,
    /// Stated result shape.
    pub shape: Vec<DimV1>,
    /// Operand node ids, in operand order.
    pub operands: Vec<u32>,
    /// Where the node was built.
    pub loc: Option<LocV1>,
}

/// A source location; `file` indexes [`HeaderV1::files`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocV1 {
    /// Index into the file table.
    pub file: u32,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

/// One axis of a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceAxisV1 {
    /// First index.
    pub start: u64,
    /// One past the last index considered (`u64::MAX` with start 0, step 1: whole axis).
    pub stop: u64,
    /// Step.
    pub step: u64,
}

/// Graph ops of format versions 1 to 4, numbered 0..=27 in declaration order (mirrors
/// `kiln_ir::Op` as it was; frozen); 24..=27 (control flow) only from version 3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum OpV1<N: OpNaming = NamedV4> {
    /// 0
    Input {
        /// Name.
        name: String,
        /// Element type.
        dtype: DTypeV1,
        /// Shape.
        shape: Vec<DimV1>,
    },
    /// 1
    Parameter {
        /// Name.
        name: String,
        /// Element type.
        dtype: DTypeV1,
        /// Shape.
        shape: Vec<DimV1>,
    },
    /// 2: data in the data section.
    Constant(TensorRefV1),
    /// 3
    Iota {
        /// Element type.
        dtype: DTypeV1,
        /// Shape.
        shape: Vec<DimV1>,
        /// Axis.
        axis: u64,
    },
    /// 4
    RandomBits {
        /// Shape.
        shape: Vec<DimV1>,
    },
    /// 5
    Unary(N::Unary),
    /// 6
    Binary(N::Binary),
    /// 7
    Select,
    /// 8
    Cast(DTypeV1),
    /// 9
    StopGradient,
    /// 10
    Reduce {
        /// Reduction.
        op: N::Reduce,
        /// Axes.
        axes: Vec<u64>,
        /// Keep reduced axes.
        keepdim: bool,
    },
    /// 11
    ArgReduce {
        /// Extremum.
        op: N::Arg,
        /// Axis.
        axis: u64,
        /// Keep the axis.
        keepdim: bool,
    },
    /// 12
    Reshape(Vec<DimV1>),
    /// 13
    Permute(Vec<u64>),
    /// 14
    Expand(Vec<DimV1>),
    /// 15
    Slice(Vec<SliceAxisV1>),
    /// 16
    Pad {
        /// `(before, after)` per axis.
        pads: Vec<(u64, u64)>,
        /// Fill value, `f64` bits.
        value: u64,
    },
    /// 17
    Concat {
        /// Axis.
        axis: u64,
    },
    /// 18
    Flip {
        /// Axes.
        axes: Vec<u64>,
    },
    /// 19
    Gather {
        /// Axis.
        axis: u64,
    },
    /// 20
    ScatterAdd {
        /// Axis.
        axis: u64,
    },
    /// 21
    MatMul,
    /// 22
    Conv2d {
        /// Stride (h, w).
        stride: [u64; 2],
        /// Padding (h, w).
        padding: [u64; 2],
        /// Dilation (h, w).
        dilation: [u64; 2],
        /// Groups.
        groups: u64,
    },
    /// 23
    Window {
        /// Reduction.
        op: N::Window,
        /// Window per trailing axis.
        window: Vec<u64>,
        /// Stride per trailing axis.
        stride: Vec<u64>,
        /// Padding per trailing axis.
        padding: Vec<(u64, u64)>,
    },
    /// 24 (version 3): operands pred, then the branch arguments.
    Cond {
        /// Region run when the predicate is true (an id of the node's graph).
        then_branch: u32,
        /// Region run when the predicate is false.
        else_branch: u32,
    },
    /// 25 (version 3): operands carries, xs, consts.
    Scan {
        /// The step function's region.
        body: u32,
        /// Number of steps.
        length: DimV1,
        /// Number of carries.
        carries: u64,
        /// Number of scanned operands.
        xs: u64,
        /// Steps run from the last to the first.
        reverse: bool,
    },
    /// 26 (version 3): operands carries, consts.
    While {
        /// The predicate's region.
        cond: u32,
        /// The step's region.
        body: u32,
        /// Number of carries.
        carries: u64,
    },
    /// 27 (version 3): operand the control-flow node.
    Get {
        /// Which result.
        index: u64,
    },
}

/// A graph op of format version 5, numbered 0..=1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpV5 {
    /// 0: a literal (`const`); its data in the data section.
    Constant(TensorRefV1),
    /// 1: any other op.
    Op {
        /// Its stable name (`kiln_ir::Op::name`: `input`, `reduce_sum`, `conv2d`, ...), at
        /// most [`crate::limits::MAX_OP_NAME_BYTES`].
        name: String,
        /// Its attribute values in the order of its schema (`kiln_ir::Op::attr_schema`), at
        /// most [`crate::limits::MAX_ATTRS`].
        attrs: Vec<AttrV5>,
    },
}

/// An attribute value of format version 5, numbered 0..=16: one variant per attribute
/// kind (mirrors `kiln_ir::AttrValue`), each bounded on load by its kind alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrV5 {
    /// 0: an axis, below [`crate::limits::MAX_RANK`].
    Axis(u64),
    /// 1: axes, at most [`crate::limits::MAX_RANK`], each an axis.
    Axes(Vec<u64>),
    /// 2: a count of operands or results, at most [`crate::limits::MAX_OPERANDS`].
    Count(u64),
    /// 3: a size, at most [`crate::limits::MAX_WINDOW_ATTR`].
    Size(u64),
    /// 4: sizes, at most [`crate::limits::MAX_RANK`], each a size.
    Sizes(Vec<u64>),
    /// 5: `(before, after)` sizes, at most [`crate::limits::MAX_RANK`] pairs.
    Pairs(Vec<(u64, u64)>),
    /// 6: a factor, at most [`crate::limits::MAX_CONV_ATTR`].
    Factor(u64),
    /// 7: a factor per spatial axis `(h, w)`.
    Hw([u64; 2]),
    /// 8: a flag.
    Bool(bool),
    /// 9: a float's `f64` bits.
    Float(u64),
    /// 10: an element type.
    DType(DTypeV1),
    /// 11: a shape, at most [`crate::limits::MAX_RANK`] dims.
    Shape(Vec<DimV1>),
    /// 12: a tensor type.
    Type(DTypeV1, Vec<DimV1>),
    /// 13: one dim.
    Dim(DimV1),
    /// 14: a user name (the name rules of every name in the file).
    Name(String),
    /// 15: a region of the node's graph (checked against its region table).
    Region(u32),
    /// 16: a slice per axis, at most [`crate::limits::MAX_RANK`].
    Slices(Vec<SliceAxisV1>),
}

/// Unary ops of format version 1, numbered 0..=17 (frozen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnaryV1 {
    /// 0: `neg`
    Neg,
    /// 1: `abs`
    Abs,
    /// 2: `exp`
    Exp,
    /// 3: `log`
    Log,
    /// 4: `sqrt`
    Sqrt,
    /// 5: `rsqrt`
    Rsqrt,
    /// 6: `recip`
    Recip,
    /// 7: `sin`
    Sin,
    /// 8: `cos`
    Cos,
    /// 9: `tanh`
    Tanh,
    /// 10: `sigmoid`
    Sigmoid,
    /// 11: `erf`
    Erf,
    /// 12: `floor`
    Floor,
    /// 13: `ceil`
    Ceil,
    /// 14: `round`
    Round,
    /// 15: `sign`
    Sign,
    /// 16: `not`
    Not,
    /// 17: `is_nan`
    IsNan,
}

/// Binary ops of format version 1, numbered 0..=16 (frozen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryV1 {
    /// 0: `add`
    Add,
    /// 1: `sub`
    Sub,
    /// 2: `mul`
    Mul,
    /// 3: `div`
    Div,
    /// 4: `rem`
    Rem,
    /// 5: `pow`
    Pow,
    /// 6: `max`
    Max,
    /// 7: `min`
    Min,
    /// 8: `eq`
    Eq,
    /// 9: `ne`
    Ne,
    /// 10: `lt`
    Lt,
    /// 11: `le`
    Le,
    /// 12: `gt`
    Gt,
    /// 13: `ge`
    Ge,
    /// 14: `and`
    And,
    /// 15: `or`
    Or,
    /// 16: `xor`
    Xor,
}

/// Reductions of format version 1, numbered 0..=3 (frozen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceV1 {
    /// 0: `reduce_sum`
    Sum,
    /// 1: `reduce_max`
    Max,
    /// 2: `reduce_min`
    Min,
    /// 3: `reduce_prod`
    Prod,
}

/// Index-of-extremum reductions of format version 1, numbered 0..=1 (frozen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArgV1 {
    /// 0: `argmax`
    ArgMax,
    /// 1: `argmin`
    ArgMin,
}

/// Window reductions of format version 1, numbered 0..=1 (frozen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowV1 {
    /// 0: `window_sum`
    Sum,
    /// 1: `window_max`
    Max,
}

/// The kernel plan (mirrors `kiln_kernel::Program`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ProgramV1<N: OpNaming = Named> {
    /// Symbols with their preconditions.
    pub symbols: Vec<SymbolV1>,
    /// Buffers `b0, b1, ...`.
    pub buffers: Vec<BufferV1>,
    /// Kernels `k0, k1, ...` (in execution order when there is no schedule).
    pub kernels: Vec<KernelV1<N>>,
    /// The structured control flow over the kernels (version 3; `None`: kernels in order).
    pub schedule: N::Schedule,
}

/// One step of a kernel plan's schedule (format version 3; mirrors `kiln_kernel::Step`).
/// The steps of a schedule are stored flat, in pre-order: a step with nested lists states
/// how many steps each list holds directly, and those steps (each followed by its own
/// nested steps) come right after it, list by list; the top-level steps run to the end.
/// So decoding never recurses on attacker-chosen depth without a check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepV1 {
    /// 0: run kernel `k<n>`.
    Kernel(u32),
    /// 1: copy buffer `src` into `dst`.
    Copy {
        /// Source buffer.
        src: u32,
        /// Destination buffer.
        dst: u32,
    },
    /// 2: a counted loop; `body` steps follow.
    Loop {
        /// Induction symbol.
        var: String,
        /// Trip count.
        trip: DimV1,
        /// Iterations run backwards.
        reverse: bool,
        /// Steps in the body list.
        body: u32,
    },
    /// 3: a while loop; `cond` steps then `body` steps follow.
    While {
        /// Steps in the cond list.
        cond: u32,
        /// The predicate buffer.
        pred: u32,
        /// Steps in the body list.
        body: u32,
    },
    /// 4: a branch; `then` steps then `other` steps follow.
    If {
        /// The predicate buffer.
        pred: u32,
        /// Steps in the then list.
        then: u32,
        /// Steps in the else list.
        other: u32,
    },
}

/// A flat typed buffer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferV1 {
    /// Element type.
    pub dtype: DTypeV1,
    /// Element count.
    pub size: DimV1,
    /// Role.
    pub kind: BufferKindV1,
}

/// Buffer roles, numbered 0..=4.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BufferKindV1 {
    /// 0: named input.
    Input(String),
    /// 1: named output.
    Output(String),
    /// 2: named state.
    State(String),
    /// 3: constant, data in the data section.
    Constant(TensorRefV1),
    /// 4: scratch.
    Scratch,
}

/// Kernels, numbered 0..=2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum KernelV1<N: OpNaming = Named> {
    /// 0: loop nest.
    Loop {
        /// Loop extents.
        domain: Vec<DimV1>,
        /// Reduction extents.
        reduce: Vec<DimV1>,
        /// Body.
        body: BodyV1<N>,
    },
    /// 1: batched matrix product.
    Matmul {
        /// Batch extents.
        batch: Vec<DimV1>,
        /// Rows.
        m: DimV1,
        /// Contraction length.
        k: DimV1,
        /// Columns.
        n: DimV1,
        /// Operand A.
        a: BodyV1<N>,
        /// Operand B.
        b: BodyV1<N>,
        /// Epilogue.
        epilogue: BodyV1<N>,
    },
    /// 2: 2-D convolution.
    Conv2d {
        /// Geometry.
        geometry: Conv2dGeometryV1,
        /// Input operand.
        input: BodyV1<N>,
        /// Weight operand.
        weight: BodyV1<N>,
        /// Epilogue.
        epilogue: BodyV1<N>,
    },
}

/// Convolution geometry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dGeometryV1 {
    /// Batch.
    pub n: DimV1,
    /// Input channels.
    pub c: DimV1,
    /// Height.
    pub h: DimV1,
    /// Width.
    pub w: DimV1,
    /// Output channels.
    pub o: DimV1,
    /// Kernel size.
    pub kernel: [u64; 2],
    /// Stride.
    pub stride: [u64; 2],
    /// Padding.
    pub padding: [u64; 2],
    /// Dilation.
    pub dilation: [u64; 2],
    /// Groups.
    pub groups: u64,
}

/// A kernel body: SSA values, stores, and the yielded value of an operand body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BodyV1<N: OpNaming = Named> {
    /// Values `v0, v1, ...`.
    pub values: Vec<ExprV1<N>>,
    /// Stores.
    pub stores: Vec<StoreV1>,
    /// Yielded value.
    pub result: Option<u32>,
    /// The debug table (version 4): the graph op behind each run-time check.
    pub checks: N::Checks,
}

/// One entry of a kernel body's debug table (format version 4; mirrors
/// `kiln_kernel::CheckSite`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSiteV4 {
    /// What the check guards: `index` or `divide` (`kiln_kernel::CheckKind::name`).
    pub kind: String,
    /// The graph node, `n<node>`.
    pub node: u32,
    /// The node's op name.
    pub op: String,
    /// Where the user built the node: file, 1-based line and column.
    pub loc: Option<(String, u32, u32)>,
    /// What failing the check means.
    pub message: String,
}

/// Scalar expression nodes, numbered 0..=8 (value operands are `v` indices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum ExprV1<N: OpNaming = Named> {
    /// 0: constant.
    Const(ScalarV1),
    /// 1: index value converted to a dtype.
    Index {
        /// Result type.
        dtype: DTypeV1,
        /// The expression.
        index: IndexV1,
    },
    /// 2: buffer load.
    Load(LoadV1),
    /// 3: unary op.
    Unary(N::Unary, u32),
    /// 4: binary op.
    Binary(N::Binary, u32, u32),
    /// 5: select(cond, a, b).
    Select(u32, u32, u32),
    /// 6: cast.
    Cast(DTypeV1, u32),
    /// 7: reduction over the reduction domain.
    Reduce {
        /// Combining op.
        op: N::Reduce,
        /// Operand.
        value: u32,
        /// Initial value.
        init: ScalarV1,
    },
    /// 8: contraction accumulator.
    Acc,
}

/// A load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadV1 {
    /// Buffer index.
    pub buffer: u32,
    /// Flat index.
    pub index: IndexV1,
    /// Bounds discipline.
    pub mode: LoadModeV1,
}

/// Load modes, numbered 0..=2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadModeV1 {
    /// 0: proven in bounds.
    Plain,
    /// 1: guarded, with a fill value.
    Masked {
        /// Guards `lo <= expr < hi`.
        guards: Vec<GuardV1>,
        /// Fill value.
        fill: ScalarV1,
    },
    /// 2: checked at run time.
    Checked,
}

/// A guard `lo <= expr < hi`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardV1 {
    /// Inclusive lower bound.
    pub lo: IndexV1,
    /// Guarded expression.
    pub expr: IndexV1,
    /// Exclusive upper bound.
    pub hi: IndexV1,
}

/// A store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreV1 {
    /// Buffer index.
    pub buffer: u32,
    /// Flat index.
    pub index: IndexV1,
    /// Stored value.
    pub value: u32,
}

/// An index expression as a postfix list: each node's children are earlier nodes, each node
/// but the last is the child of exactly one later node, and the last node is the root.
pub type IndexV1 = Vec<IndexNodeV1>;

/// Index expression nodes, numbered 0..=8. Child references are positions in the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexNodeV1 {
    /// 0: a dim.
    Dim(DimV1),
    /// 1: loop variable `i<k>`.
    Var(u32),
    /// 2: reduction variable `r<k>`.
    Red(u32),
    /// 3: value `v<k>`.
    Value(u32),
    /// 4: `a + b`.
    Add(u32, u32),
    /// 5: `a - b`.
    Sub(u32, u32),
    /// 6: `a * b`.
    Mul(u32, u32),
    /// 7: `floor(a / d)`.
    Div(u32, DimV1),
    /// 8: `a mod d`.
    Mod(u32, DimV1),
}

/// Typed scalars, numbered 0..=5; floats as their bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalarV1 {
    /// 0: `f32` bits.
    F32(u32),
    /// 1: `f64` bits.
    F64(u64),
    /// 2
    I32(i32),
    /// 3
    I64(i64),
    /// 4
    U32(u32),
    /// 5
    Bool(bool),
}
