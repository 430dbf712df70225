//! The closed set of primitive operations. Composite ops (softmax, layer_norm, ...) are
//! built from these in the builder crate; every per-op concern is an exhaustive `match`.

use crate::array::Array;
use crate::dtype::DType;
use crate::shape::Shape;
use std::fmt;

/// Elementwise unary primitives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `|x|`
    Abs,
    /// `e^x` (float)
    Exp,
    /// natural log (float)
    Log,
    /// square root (float)
    Sqrt,
    /// `1/sqrt(x)` (float)
    Rsqrt,
    /// `1/x` (float)
    Recip,
    /// sine (float)
    Sin,
    /// cosine (float)
    Cos,
    /// hyperbolic tangent (float)
    Tanh,
    /// arctangent, in `[-pi/2, pi/2]` (float)
    Atan,
    /// `1/(1+e^-x)` (float)
    Sigmoid,
    /// error function (float)
    Erf,
    /// round toward -inf (float)
    Floor,
    /// round toward +inf (float)
    Ceil,
    /// round half to even (float)
    Round,
    /// -1, 0 or 1 (numeric; NaN stays NaN)
    Sign,
    /// logical not (bool) or bitwise not (integers)
    Not,
    /// `x != x` (float in, bool out)
    IsNan,
}

impl UnaryOp {
    /// Every unary op.
    pub const ALL: [UnaryOp; 19] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Recip,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Atan,
        UnaryOp::Sigmoid,
        UnaryOp::Erf,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sign,
        UnaryOp::Not,
        UnaryOp::IsNan,
    ];

    /// The op whose [`UnaryOp::name`] is `name`; the name is the op's stable identity in
    /// the IR text and in `.kiln` files.
    pub fn from_name(name: &str) -> Option<UnaryOp> {
        UnaryOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Printed name, the op's stable identity (see `from_name`).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Atan => "atan",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Erf => "erf",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
            UnaryOp::Sign => "sign",
            UnaryOp::Not => "not",
            UnaryOp::IsNan => "is_nan",
        }
    }

    /// True for ops that cost many instructions (transcendentals, square roots): fusion
    /// recomputes them in as few kernels as it can.
    pub fn is_costly(self) -> bool {
        match self {
            UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Atan
            | UnaryOp::Sigmoid
            | UnaryOp::Erf => true,
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Recip
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Sign
            | UnaryOp::Not
            | UnaryOp::IsNan => false,
        }
    }
}

/// Elementwise binary primitives with NumPy broadcasting. Both operands share one dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`; integers use floor division (Python `//`)
    Div,
    /// remainder with the sign of the divisor (Python `%`, `torch.remainder`)
    Rem,
    /// `a ^ b` (float)
    Pow,
    /// elementwise maximum (NaN propagates)
    Max,
    /// elementwise minimum (NaN propagates)
    Min,
    /// `a == b` (bool out)
    Eq,
    /// `a != b` (bool out)
    Ne,
    /// `a < b` (bool out)
    Lt,
    /// `a <= b` (bool out)
    Le,
    /// `a > b` (bool out)
    Gt,
    /// `a >= b` (bool out)
    Ge,
    /// logical/bitwise and (bool or integers)
    And,
    /// logical/bitwise or (bool or integers)
    Or,
    /// logical/bitwise xor (bool or integers)
    Xor,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 17] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    /// The op whose [`BinaryOp::name`] is `name`; the name is the op's stable identity in
    /// the IR text and in `.kiln` files.
    pub fn from_name(name: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Printed name, the op's stable identity (see `from_name`).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Rem => "rem",
            BinaryOp::Pow => "pow",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
        }
    }

    /// True for ops that cost many instructions (`pow`): fusion recomputes them in as few
    /// kernels as it can.
    pub fn is_costly(self) -> bool {
        self == BinaryOp::Pow
    }

    /// True for comparisons, whose result is `bool`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// sum (0 for an empty reduction)
    Sum,
    /// maximum (NaN propagates)
    Max,
    /// minimum (NaN propagates)
    Min,
    /// product (1 for an empty reduction)
    Prod,
}

impl ReduceOp {
    /// Every reduction.
    pub const ALL: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod];

    /// The op whose [`ReduceOp::name`] is `name`; the name is the op's stable identity in
    /// the IR text and in `.kiln` files.
    pub fn from_name(name: &str) -> Option<ReduceOp> {
        ReduceOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Printed name, the op's stable identity (see `from_name`).
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "reduce_sum",
            ReduceOp::Max => "reduce_max",
            ReduceOp::Min => "reduce_min",
            ReduceOp::Prod => "reduce_prod",
        }
    }
}

/// Index-of-extremum reductions over one axis (result `i64`; ties pick the first index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgOp {
    /// index of the maximum (NaN counts as maximal)
    ArgMax,
    /// index of the minimum (NaN counts as minimal)
    ArgMin,
}

impl ArgOp {
    /// Every index-of-extremum reduction.
    pub const ALL: [ArgOp; 2] = [ArgOp::ArgMax, ArgOp::ArgMin];

    /// The op whose [`ArgOp::name`] is `name`; the name is the op's stable identity in
    /// the IR text and in `.kiln` files.
    pub fn from_name(name: &str) -> Option<ArgOp> {
        ArgOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Printed name, the op's stable identity (see `from_name`).
    pub fn name(self) -> &'static str {
        match self {
            ArgOp::ArgMax => "argmax",
            ArgOp::ArgMin => "argmin",
        }
    }
}

/// Windowed reductions (pooling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowOp {
    /// sum over the window; padding contributes 0
    Sum,
    /// maximum over the window; padding contributes -inf
    Max,
}

impl WindowOp {
    /// Every window reduction.
    pub const ALL: [WindowOp; 2] = [WindowOp::Sum, WindowOp::Max];

    /// The op whose [`WindowOp::name`] is `name`; the name is the op's stable identity in
    /// the IR text and in `.kiln` files.
    pub fn from_name(name: &str) -> Option<WindowOp> {
        WindowOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Printed name, the op's stable identity (see `from_name`).
    pub fn name(self) -> &'static str {
        match self {
            WindowOp::Sum => "window_sum",
            WindowOp::Max => "window_max",
        }
    }
}

/// One axis of a [`Op::Slice`]: elements `start, start+step, ...` below `stop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SliceAxis {
    /// First index taken.
    pub start: u64,
    /// One past the last index considered.
    pub stop: u64,
    /// Step, at least 1.
    pub step: u64,
}

/// A primitive operation. Operand order is fixed per variant (documented on each).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A named graph input. No operands.
    Input {
        /// Input name, unique in a graph.
        name: String,
        /// Element type.
        dtype: DType,
        /// Shape, possibly symbolic.
        shape: Shape,
    },
    /// A named persistent tensor (weights, optimiser state). No operands.
    Parameter {
        /// State-dict name such as `fc1.weight`.
        name: String,
        /// Element type.
        dtype: DType,
        /// Shape (concrete).
        shape: Shape,
    },
    /// A literal tensor. No operands.
    Constant(Array),
    /// `out[i...] = i_axis` cast to `dtype`. No operands.
    Iota {
        /// Element type.
        dtype: DType,
        /// Output shape.
        shape: Shape,
        /// Axis whose index is produced.
        axis: usize,
    },
    /// Threefry-2x32 random `u32` bits laid out as `jax.random.bits(key, shape)`.
    /// Operand: the key, `u32[2]`.
    RandomBits {
        /// Output shape.
        shape: Shape,
    },
    /// Elementwise unary op. Operand: x.
    Unary(UnaryOp),
    /// Elementwise binary op with broadcasting. Operands: a, b.
    Binary(BinaryOp),
    /// `cond ? a : b` with broadcasting. Operands: cond (bool), a, b.
    Select,
    /// Element type conversion. Operand: x.
    Cast(DType),
    /// Identity for evaluation; differentiation treats the result as a constant
    /// (JAX's `stop_gradient`, PyTorch's `detach`). Operand: x.
    StopGradient,
    /// Reduction over `axes`. Operand: x.
    Reduce {
        /// Which reduction.
        op: ReduceOp,
        /// Reduced axes, sorted, unique.
        axes: Vec<usize>,
        /// Keep reduced axes as size 1.
        keepdim: bool,
    },
    /// Index of the extremum along `axis` (`i64`). Operand: x.
    ArgReduce {
        /// Which extremum.
        op: ArgOp,
        /// Reduced axis.
        axis: usize,
        /// Keep the axis as size 1.
        keepdim: bool,
    },
    /// Same elements, new shape (row-major). Operand: x.
    Reshape(Shape),
    /// Axis permutation: output axis `i` is input axis `perm[i]`. Operand: x.
    Permute(Vec<usize>),
    /// Broadcast size-1 axes (and new leading axes) to `shape`. Operand: x.
    Expand(Shape),
    /// Strided slice, one entry per axis. Operand: x.
    Slice(Vec<SliceAxis>),
    /// Constant padding, `(before, after)` per axis. Operand: x.
    Pad {
        /// Padding per axis.
        pads: Vec<(u64, u64)>,
        /// Fill value, converted to the dtype.
        value: F64Bits,
    },
    /// Concatenation along `axis`. Operands: two or more tensors.
    Concat {
        /// Joined axis.
        axis: usize,
    },
    /// Reverse the listed axes. Operand: x.
    Flip {
        /// Reversed axes.
        axes: Vec<usize>,
    },
    /// `out[..i..] = x[..index[..i..]..]` along `axis` (`take_along_axis`).
    /// Operands: x, index (integer, same rank; other axes equal x's).
    Gather {
        /// Indexed axis.
        axis: usize,
    },
    /// `out = target; out[..index[..i..]..] += src[..i..]` along `axis` (gather's adjoint).
    /// Operands: target, index (integer, shape of src), src.
    ScatterAdd {
        /// Indexed axis.
        axis: usize,
    },
    /// Batched matrix product `[..., m, k] @ [..., k, n]`, batch axes broadcast.
    /// Operands: a, b (rank >= 2).
    MatMul,
    /// 2-D convolution (cross-correlation), NCHW input, OIHW weight, no bias.
    /// Operands: x `[N, C, H, W]`, w `[O, C/groups, KH, KW]`.
    Conv2d {
        /// Stride (h, w).
        stride: [u64; 2],
        /// Zero padding (h, w), applied on both sides.
        padding: [u64; 2],
        /// Dilation (h, w).
        dilation: [u64; 2],
        /// Groups; C and O divisible by it.
        groups: u64,
    },
    /// Windowed reduction over the trailing `window.len()` axes. Operand: x.
    Window {
        /// Which reduction.
        op: WindowOp,
        /// Window size per trailing axis.
        window: Vec<u64>,
        /// Stride per trailing axis.
        stride: Vec<u64>,
        /// `(before, after)` padding per trailing axis.
        padding: Vec<(u64, u64)>,
    },
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

impl Op {
    /// The printed mnemonic (`add`, `reduce_sum`, `matmul`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Parameter { .. } => "param",
            Op::Constant(_) => "const",
            Op::Iota { .. } => "iota",
            Op::RandomBits { .. } => "random_bits",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Select => "select",
            Op::Cast(_) => "cast",
            Op::StopGradient => "stop_gradient",
            Op::Reduce { op, .. } => op.name(),
            Op::ArgReduce { op, .. } => op.name(),
            Op::Reshape(_) => "reshape",
            Op::Permute(_) => "permute",
            Op::Expand(_) => "expand",
            Op::Slice(_) => "slice",
            Op::Pad { .. } => "pad",
            Op::Concat { .. } => "concat",
            Op::Flip { .. } => "flip",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::MatMul => "matmul",
            Op::Conv2d { .. } => "conv2d",
            Op::Window { op, .. } => op.name(),
        }
    }

    /// The op's class: what the interpreter, the simplifier and the fusion planner need to
    /// know about it without matching on every op.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Input { .. } | Op::Parameter { .. } => OpKind::Fed,
            Op::Constant(_) => OpKind::Literal,
            Op::Iota { .. } => OpKind::Index,
            Op::RandomBits { .. } => OpKind::Random,
            Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast(_) | Op::StopGradient => {
                OpKind::Elementwise
            }
            Op::Reshape(_) | Op::Permute(_) | Op::Expand(_) | Op::Slice(_) | Op::Flip { .. } => {
                OpKind::View
            }
            Op::Pad { .. } | Op::Concat { .. } | Op::Gather { .. } => OpKind::Assemble,
            Op::ScatterAdd { .. } => OpKind::Scatter,
            Op::Reduce { .. } | Op::Window { .. } => OpKind::Reduction,
            Op::ArgReduce { .. } => OpKind::ArgReduction,
            Op::MatMul | Op::Conv2d { .. } => OpKind::Contraction,
        }
    }

    /// The shape attribute of ops that declare their result shape (input, parameter, iota,
    /// random_bits, reshape, expand); `None` for every other op.
    pub fn shape_attr(&self) -> Option<&Shape> {
        match self {
            Op::Input { shape, .. }
            | Op::Parameter { shape, .. }
            | Op::Iota { shape, .. }
            | Op::RandomBits { shape }
            | Op::Reshape(shape)
            | Op::Expand(shape) => Some(shape),
            _ => None,
        }
    }

    /// Mutable access to the attribute [`Op::shape_attr`] returns.
    pub fn shape_attr_mut(&mut self) -> Option<&mut Shape> {
        match self {
            Op::Input { shape, .. }
            | Op::Parameter { shape, .. }
            | Op::Iota { shape, .. }
            | Op::RandomBits { shape }
            | Op::Reshape(shape)
            | Op::Expand(shape) => Some(shape),
            _ => None,
        }
    }
}

/// The class of an [`Op`], declared once per op by [`Op::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Fed by the caller at run time (`input`, `param`). No operands.
    Fed,
    /// A literal value (`const`). No operands.
    Literal,
    /// Computed from the output coordinates alone (`iota`). No operands.
    Index,
    /// Random bits drawn from a key operand (`random_bits`).
    Random,
    /// Each output element from the same (broadcast) element of every operand (unary,
    /// binary, `select`, `cast`, `stop_gradient`).
    Elementwise,
    /// Each output element is one operand element at coordinates computed from the output
    /// coordinates (`reshape`, `permute`, `expand`, `slice`, `flip`).
    View,
    /// Output elements read from several operands, from computed or data-dependent
    /// coordinates, or filled (`pad`, `concat`, `gather`).
    Assemble,
    /// Operand elements added into data-dependent positions (`scatter_add`).
    Scatter,
    /// Combines a set of elements into one (`reduce_*`, `window_*`).
    Reduction,
    /// Index of an extremum along one axis (`argmax`, `argmin`).
    ArgReduction,
    /// Sums of products (`matmul`, `conv2d`).
    Contraction,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_attr_and_its_mutable_twin_agree() {
        let s = Shape::known(&[2, 3]);
        let ops = [
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: s.clone(),
            },
            Op::Iota {
                dtype: DType::I32,
                shape: s.clone(),
                axis: 0,
            },
            Op::RandomBits { shape: s.clone() },
            Op::Reshape(s.clone()),
            Op::Expand(s.clone()),
            Op::Unary(UnaryOp::Exp),
            Op::MatMul,
            Op::Permute(vec![1, 0]),
        ];
        for op in ops {
            let mut owned = op.clone();
            assert_eq!(
                op.shape_attr().cloned(),
                owned.shape_attr_mut().cloned(),
                "{op:?}"
            );
        }
        assert_eq!(Op::Reshape(s.clone()).shape_attr(), Some(&s));
        assert_eq!(Op::MatMul.shape_attr(), None);
    }

    #[test]
    fn kinds_classify_ops() {
        assert_eq!(Op::Unary(UnaryOp::Neg).kind(), OpKind::Elementwise);
        assert_eq!(Op::Permute(vec![0]).kind(), OpKind::View);
        assert_eq!(Op::Concat { axis: 0 }.kind(), OpKind::Assemble);
        assert_eq!(Op::MatMul.kind(), OpKind::Contraction);
        assert!(UnaryOp::Exp.is_costly() && !UnaryOp::Neg.is_costly());
        assert!(BinaryOp::Pow.is_costly() && !BinaryOp::Add.is_costly());
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for u in UnaryOp::ALL {
            assert_eq!(UnaryOp::from_name(u.name()), Some(u));
            assert!(seen.insert(u.name()));
        }
        for b in BinaryOp::ALL {
            assert_eq!(BinaryOp::from_name(b.name()), Some(b));
            assert!(seen.insert(b.name()));
        }
        for r in ReduceOp::ALL {
            assert_eq!(ReduceOp::from_name(r.name()), Some(r));
            assert!(seen.insert(r.name()));
        }
        for a in ArgOp::ALL {
            assert_eq!(ArgOp::from_name(a.name()), Some(a));
            assert!(seen.insert(a.name()));
        }
        for w in WindowOp::ALL {
            assert_eq!(WindowOp::from_name(w.name()), Some(w));
            assert!(seen.insert(w.name()));
        }
        assert_eq!(UnaryOp::from_name("no_such_op"), None);
    }
}
