//! The closed set of primitive operations. Composite ops (softmax, layer_norm, ...) are
//! built from these in the builder crate; every per-op concern is an exhaustive `match`.
//!
//! The scalar ops ([`UnaryOp`], [`BinaryOp`]) are declared once, in the lists of
//! [`for_each_unary_op!`](crate::for_each_unary_op) and
//! [`for_each_binary_op!`](crate::for_each_binary_op): each entry gives the variant, its
//! stable name, its dtype rule, its cost class and its user method, and the enums, `ALL`,
//! `name()`, `is_costly()` and `dtype_rule()` are generated from them.
//!
//! A graph op ([`Op`]) is declared here once: its variant, [`Op::name`], [`Op::kind`],
//! [`Op::may_fail`] and its attributes ([`Op::attr_schema`], [`Op::attrs`],
//! [`Op::from_attrs`]; see [`crate::attr`]), from which the text form and the file format
//! print, parse, store and bound it.

use crate::array::Array;
use crate::attr::{AttrError, AttrKind, AttrSpec, AttrValue, F64Bits, RegionId, SliceAxis, Values};
use crate::dim::Dim;
use crate::dtype::{DType, DTypeClass};
use crate::shape::Shape;

/// Invokes the macro `$callback` with the list of every [`UnaryOp`], one entry per op in
/// declaration order:
///
/// ```text
/// /// variant doc
/// Variant "name" [dtype rule] costly|cheap
///     /// user method doc
///     fn method;
/// ```
///
/// The dtype rule is `[Class]` (operands of the [`DTypeClass`], result of the operand
/// dtype) or `[Class -> Bool]` (result `bool`; `Any` for every dtype); see [`DTypeRule`].
/// `costly` marks a transcendental ([`UnaryOp::is_costly`]). The enum, its `ALL`, `name`,
/// `is_costly` and `dtype_rule` are generated from this list, and so are the CPU backend's
/// `f64` helpers and the `Tensor` methods of the user API. Adding an op is one entry here.
#[macro_export]
macro_rules! for_each_unary_op {
    ($callback:ident) => {
        $callback! {
            /// `-x`
            Neg "neg" [Numeric] cheap
                /// `-x`
                fn neg;
            /// `|x|`
            Abs "abs" [Numeric] cheap
                /// `|x|`
                fn abs;
            /// `e^x` (float)
            Exp "exp" [Float] costly
                /// `e^x`
                fn exp;
            /// natural log (float)
            Log "log" [Float] costly
                /// Natural logarithm.
                fn log;
            /// square root (float)
            Sqrt "sqrt" [Float] costly
                /// Square root.
                fn sqrt;
            /// `1/sqrt(x)` (float)
            Rsqrt "rsqrt" [Float] costly
                /// `1/sqrt(x)`
                fn rsqrt;
            /// `1/x` (float)
            Recip "recip" [Float] cheap
                /// `1/x`
                fn recip;
            /// sine (float)
            Sin "sin" [Float] costly
                /// Sine.
                fn sin;
            /// cosine (float)
            Cos "cos" [Float] costly
                /// Cosine.
                fn cos;
            /// hyperbolic tangent (float)
            Tanh "tanh" [Float] costly
                /// Hyperbolic tangent.
                fn tanh;
            /// arctangent, in `[-pi/2, pi/2]` (float)
            Atan "atan" [Float] costly
                /// Arctangent, in `[-pi/2, pi/2]`.
                fn atan;
            /// arcsine, in `[-pi/2, pi/2]`; NaN outside `[-1, 1]` (float)
            Asin "asin" [Float] costly
                /// Arcsine, in `[-pi/2, pi/2]` (NaN outside `[-1, 1]`).
                fn asin;
            /// `1/(1+e^-x)` (float)
            Sigmoid "sigmoid" [Float] costly
                /// Logistic sigmoid.
                fn sigmoid;
            /// error function (float)
            Erf "erf" [Float] costly
                /// Error function.
                fn erf;
            /// round toward -inf (float)
            Floor "floor" [Float] cheap
                /// Round toward -inf.
                fn floor;
            /// round toward +inf (float)
            Ceil "ceil" [Float] cheap
                /// Round toward +inf.
                fn ceil;
            /// round half to even (float)
            Round "round" [Float] cheap
                /// Round half to even.
                fn round;
            /// -1, 0 or 1 (numeric; NaN stays NaN)
            Sign "sign" [Numeric] cheap
                /// -1, 0 or 1.
                fn sign;
            /// logical not (bool) or bitwise not (integers)
            Not "not" [BoolOrInt] cheap
                /// Logical (bool) or bitwise (integer) not.
                fn logical_not;
            /// `x != x` (float in, bool out)
            IsNan "is_nan" [Float -> Bool] cheap
                /// `x != x`.
                fn is_nan;
        }
    };
}

/// Invokes the macro `$callback` with the list of every [`BinaryOp`], one entry per op in
/// declaration order, in the form of [`for_each_unary_op!`](crate::for_each_unary_op)
/// (`costly` marks an op that costs many instructions, such as `pow`). Both operands of a
/// binary op share one dtype, which the dtype rule constrains.
#[macro_export]
macro_rules! for_each_binary_op {
    ($callback:ident) => {
        $callback! {
            /// `a + b`
            Add "add" [Numeric] cheap
                /// `self + rhs` with broadcasting.
                fn add;
            /// `a - b`
            Sub "sub" [Numeric] cheap
                /// `self - rhs`.
                fn sub;
            /// `a * b`
            Mul "mul" [Numeric] cheap
                /// `self * rhs`.
                fn mul;
            /// `a / b`; integers use floor division (Python `//`)
            Div "div" [Numeric] cheap
                /// `self / rhs` (floor division for integers).
                fn div;
            /// remainder with the sign of the divisor (Python `%`, `torch.remainder`)
            Rem "rem" [Numeric] cheap
                /// Remainder with the sign of the divisor (`torch.remainder`).
                fn rem;
            /// `a ^ b` (float)
            Pow "pow" [Float] costly
                /// `self ^ rhs`.
                fn pow;
            /// elementwise maximum (NaN propagates)
            Max "max" [Numeric] cheap
                /// Elementwise maximum.
                fn maximum;
            /// elementwise minimum (NaN propagates)
            Min "min" [Numeric] cheap
                /// Elementwise minimum.
                fn minimum;
            /// `a == b` (bool out)
            Eq "eq" [Any -> Bool] cheap
                /// `self == rhs` (bool).
                fn eq;
            /// `a != b` (bool out)
            Ne "ne" [Any -> Bool] cheap
                /// `self != rhs` (bool).
                fn ne;
            /// `a < b` (bool out)
            Lt "lt" [Numeric -> Bool] cheap
                /// `self < rhs` (bool).
                fn lt;
            /// `a <= b` (bool out)
            Le "le" [Numeric -> Bool] cheap
                /// `self <= rhs` (bool).
                fn le;
            /// `a > b` (bool out)
            Gt "gt" [Numeric -> Bool] cheap
                /// `self > rhs` (bool).
                fn gt;
            /// `a >= b` (bool out)
            Ge "ge" [Numeric -> Bool] cheap
                /// `self >= rhs` (bool).
                fn ge;
            /// logical/bitwise and (bool or integers)
            And "and" [BoolOrInt] cheap
                /// Logical/bitwise and.
                fn logical_and;
            /// logical/bitwise or (bool or integers)
            Or "or" [BoolOrInt] cheap
                /// Logical/bitwise or.
                fn logical_or;
            /// logical/bitwise xor (bool or integers)
            Xor "xor" [BoolOrInt] cheap
                /// Logical/bitwise xor.
                fn logical_xor;
        }
    };
}

/// The dtypes a scalar op accepts and the dtype it produces, as declared in its op list;
/// [`crate::semantics::unary_dtype`] and [`crate::semantics::binary_dtype`] apply it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DTypeRule {
    /// Operands of the class; the result has the operand dtype.
    Same(DTypeClass),
    /// Operands of the class (`None`: every dtype); the result is `bool`.
    ToBool(Option<DTypeClass>),
}

/// The [`DTypeRule`] written `[$rule]` in an op list.
macro_rules! dtype_rule {
    ([Any -> Bool]) => {
        DTypeRule::ToBool(None)
    };
    ([$class:ident -> Bool]) => {
        DTypeRule::ToBool(Some(DTypeClass::$class))
    };
    ([$class:ident]) => {
        DTypeRule::Same(DTypeClass::$class)
    };
}

/// Whether the cost class written in an op list is `costly`.
macro_rules! is_costly {
    (costly) => {
        true
    };
    (cheap) => {
        false
    };
}

/// Generates a scalar op enum and its per-op tables from an op list.
macro_rules! scalar_op_enum {
    (
        $(#[$enum_doc:meta])* $Enum:ident, $all_doc:literal, $costly_doc:literal;
        $(
            $(#[$doc:meta])* $op:ident $name:literal [$($rule:tt)*] $cost:ident
            $(#[$method_doc:meta])* fn $method:ident;
        )*
    ) => {
        $(#[$enum_doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $Enum {
            $($(#[$doc])* $op,)*
        }

        impl $Enum {
            #[doc = $all_doc]
            pub const ALL: [$Enum; [$($name),*].len()] = [$($Enum::$op),*];

            #[doc = concat!(
                "The op whose [`", stringify!($Enum), "::name`] is `name`; the name is the ",
                "op's stable identity in the IR text and in `.kiln` files."
            )]
            pub fn from_name(name: &str) -> Option<$Enum> {
                $Enum::ALL.into_iter().find(|op| op.name() == name)
            }

            /// Printed name, the op's stable identity (see `from_name`).
            pub fn name(self) -> &'static str {
                match self {
                    $($Enum::$op => $name,)*
                }
            }

            #[doc = $costly_doc]
            pub fn is_costly(self) -> bool {
                match self {
                    $($Enum::$op => is_costly!($cost),)*
                }
            }

            /// The dtypes the op accepts and the dtype it produces.
            pub fn dtype_rule(self) -> DTypeRule {
                match self {
                    $($Enum::$op => dtype_rule!([$($rule)*]),)*
                }
            }
        }
    };
}

macro_rules! unary_op_enum {
    ($($list:tt)*) => {
        scalar_op_enum! {
            /// Elementwise unary primitives.
            UnaryOp,
            "Every unary op.",
            "True for ops that cost many instructions (transcendentals, square roots): \
             fusion recomputes them in as few kernels as it can.";
            $($list)*
        }
    };
}

macro_rules! binary_op_enum {
    ($($list:tt)*) => {
        scalar_op_enum! {
            /// Elementwise binary primitives with NumPy broadcasting. Both operands share one
            /// dtype.
            BinaryOp,
            "Every binary op.",
            "True for ops that cost many instructions (`pow`): fusion recomputes them in as \
             few kernels as it can.";
            $($list)*
        }
    };
}

for_each_unary_op!(unary_op_enum);
for_each_binary_op!(binary_op_enum);

impl BinaryOp {
    /// True for comparisons, whose result is `bool`.
    pub fn is_comparison(self) -> bool {
        matches!(self.dtype_rule(), DTypeRule::ToBool(_))
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

/// A primitive operation. Operand order is fixed per variant (documented on each).
///
/// The control-flow ops (`cond`, `scan`, `while`) run regions of their graph and produce
/// several results: their node is a token of type `bool[]`, and each result is read by a
/// [`Op::Get`] node.
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
    /// Runs `then_branch` when the predicate is true, else `else_branch`; both take the
    /// operands after the predicate and return results of equal types.
    /// Operands: pred (`bool[]`), then the branch arguments.
    Cond {
        /// Region run when the predicate is true.
        then_branch: RegionId,
        /// Region run when the predicate is false.
        else_branch: RegionId,
    },
    /// `jax.lax.scan`: `length` steps of `body(carry, x_t, consts) -> (carry, y_t)`, where
    /// `x_t` is step `t`'s slice along axis 0 of each `xs` operand (from the end when
    /// `reverse`). Results: the final carries, then each `y` stacked along a new axis 0
    /// (`ys[t]` is step `t`'s output). Operands: the initial carries, the xs, the consts.
    Scan {
        /// The step function: params carries, x slices, consts; results carries, ys.
        body: RegionId,
        /// Number of steps (axis 0 of every xs operand).
        length: Dim,
        /// Number of carries (leading operands and results).
        carries: usize,
        /// Number of scanned operands, after the carries.
        xs: usize,
        /// Steps run from `length - 1` down to 0; `ys[t]` still belongs to step `t`.
        reverse: bool,
    },
    /// `jax.lax.while_loop`: while `cond(carry, consts)` is true, `carry = body(carry,
    /// consts)`. Results: the final carries. Operands: the initial carries, then the consts.
    While {
        /// The predicate: params carries, consts; one `bool[]` result.
        cond: RegionId,
        /// The step: params carries, consts; results the next carries.
        body: RegionId,
        /// Number of carries.
        carries: usize,
    },
    /// Result `index` of a control-flow op. Operand: the control-flow node.
    Get {
        /// Which result.
        index: usize,
    },
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
            Op::Cond { .. } => "cond",
            Op::Scan { .. } => "scan",
            Op::While { .. } => "while",
            Op::Get { .. } => "get",
        }
    }

    /// The regions a control-flow op runs, in attribute order (empty for other ops).
    pub fn regions(&self) -> Vec<RegionId> {
        match self {
            Op::Cond {
                then_branch,
                else_branch,
            } => vec![*then_branch, *else_branch],
            Op::Scan { body, .. } => vec![*body],
            Op::While { cond, body, .. } => vec![*cond, *body],
            _ => Vec::new(),
        }
    }

    /// Mutable access to the regions of [`Op::regions`], in the same order.
    pub fn regions_mut(&mut self) -> Vec<&mut RegionId> {
        match self {
            Op::Cond {
                then_branch,
                else_branch,
            } => vec![then_branch, else_branch],
            Op::Scan { body, .. } => vec![body],
            Op::While { cond, body, .. } => vec![cond, body],
            _ => Vec::new(),
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
            Op::Cond { .. } | Op::Scan { .. } | Op::While { .. } => OpKind::Control,
            Op::Get { .. } => OpKind::Get,
        }
    }

    /// True if running the op can fail or never finish for some operand values, given its
    /// result `dtype`: an index out of range (`gather`, `scatter_add`), an integer division
    /// by zero (`div`, `rem` on integers), a loop that does not end (`while`). A pass that
    /// would compute an op where the program might not (hoisting it out of a loop) asks
    /// this. `cond` and `scan` answer for themselves only: their bodies are asked node by
    /// node.
    pub fn may_fail(&self, dtype: DType) -> bool {
        match self {
            Op::Binary(BinaryOp::Div | BinaryOp::Rem) => !dtype.is_float(),
            Op::Gather { .. } | Op::ScatterAdd { .. } | Op::While { .. } => true,
            Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::Iota { .. }
            | Op::RandomBits { .. }
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Cast(_)
            | Op::StopGradient
            | Op::Reduce { .. }
            | Op::ArgReduce { .. }
            | Op::Reshape(_)
            | Op::Permute(_)
            | Op::Expand(_)
            | Op::Slice(_)
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Flip { .. }
            | Op::MatMul
            | Op::Conv2d { .. }
            | Op::Window { .. }
            | Op::Cond { .. }
            | Op::Scan { .. }
            | Op::Get { .. } => false,
        }
    }

    /// The attributes of the op named `name`, in order, with the name as a `&'static str`:
    /// each attribute's key, [`AttrKind`] and how the text form writes it. `None` for an
    /// unknown name and for `const` (a literal's data is not an attribute). [`Op::attrs`]
    /// returns the values in this order and [`Op::from_attrs`] takes them back.
    pub fn attr_schema(name: &str) -> Option<(&'static str, &'static [AttrSpec])> {
        use AttrKind as K;
        use AttrSpec as A;
        const TYPED: &[AttrSpec] = &[A::positional("name", K::Name), A::result("type", K::Type)];
        const SHAPED: &[AttrSpec] = &[A::result("shape", K::Shape)];
        const AXIS: &[AttrSpec] = &[A::keyed("axis", K::Axis)];
        const REDUCE: &[AttrSpec] = &[A::keyed("axes", K::Axes), A::keyed("keepdim", K::Bool)];
        const ARG: &[AttrSpec] = &[A::keyed("axis", K::Axis), A::keyed("keepdim", K::Bool)];
        const WINDOW: &[AttrSpec] = &[
            A::keyed("window", K::Sizes),
            A::keyed("stride", K::Sizes),
            A::keyed("padding", K::Pairs),
        ];
        const FIXED: &[(&str, &[AttrSpec])] = &[
            ("input", TYPED),
            ("param", TYPED),
            (
                "iota",
                &[A::keyed("axis", K::Axis), A::result("type", K::Type)],
            ),
            ("random_bits", SHAPED),
            ("select", &[]),
            ("cast", &[A::result("dtype", K::DType)]),
            ("stop_gradient", &[]),
            ("reshape", SHAPED),
            ("permute", &[A::positional("permutation", K::Axes)]),
            ("expand", SHAPED),
            ("slice", &[A::positional("slice entries", K::Slices)]),
            (
                "pad",
                &[
                    A::positional("pad entries", K::Pairs),
                    A::keyed("value", K::Float),
                ],
            ),
            ("concat", AXIS),
            ("flip", &[A::keyed("axes", K::Axes)]),
            ("gather", AXIS),
            ("scatter_add", AXIS),
            ("matmul", &[]),
            (
                "conv2d",
                &[
                    A::keyed("stride", K::Hw),
                    A::keyed("padding", K::Hw),
                    A::keyed("dilation", K::Hw),
                    A::keyed("groups", K::Factor),
                ],
            ),
            (
                "cond",
                &[A::keyed("then", K::Region), A::keyed("else", K::Region)],
            ),
            (
                "scan",
                &[
                    A::keyed("body", K::Region),
                    A::keyed("length", K::Dim),
                    A::keyed("carries", K::Count),
                    A::keyed("xs", K::Count),
                    A::keyed("reverse", K::Bool),
                ],
            ),
            (
                "while",
                &[
                    A::keyed("cond", K::Region),
                    A::keyed("body", K::Region),
                    A::keyed("carries", K::Count),
                ],
            ),
            ("get", &[A::keyed("index", K::Count)]),
        ];
        if let Some(&entry) = FIXED.iter().find(|(n, _)| *n == name) {
            return Some(entry);
        }
        if let Some(u) = UnaryOp::from_name(name) {
            Some((u.name(), &[]))
        } else if let Some(b) = BinaryOp::from_name(name) {
            Some((b.name(), &[]))
        } else if let Some(r) = ReduceOp::from_name(name) {
            Some((r.name(), REDUCE))
        } else if let Some(a) = ArgOp::from_name(name) {
            Some((a.name(), ARG))
        } else {
            WindowOp::from_name(name).map(|w| (w.name(), WINDOW))
        }
    }

    /// The op's attribute values in the order of its [`Op::attr_schema`] (empty for
    /// `const`).
    pub fn attrs(&self) -> Vec<AttrValue> {
        use AttrValue as V;
        match self {
            Op::Input { name, dtype, shape } | Op::Parameter { name, dtype, shape } => {
                vec![V::Name(name.clone()), V::Type(*dtype, shape.clone())]
            }
            Op::Constant(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::StopGradient
            | Op::MatMul => Vec::new(),
            Op::Iota { dtype, shape, axis } => vec![V::Axis(*axis), V::Type(*dtype, shape.clone())],
            Op::RandomBits { shape } | Op::Reshape(shape) | Op::Expand(shape) => {
                vec![V::Shape(shape.clone())]
            }
            Op::Cast(d) => vec![V::DType(*d)],
            Op::Reduce { axes, keepdim, .. } => vec![V::Axes(axes.clone()), V::Bool(*keepdim)],
            Op::ArgReduce { axis, keepdim, .. } => vec![V::Axis(*axis), V::Bool(*keepdim)],
            Op::Permute(perm) => vec![V::Axes(perm.clone())],
            Op::Slice(axes) => vec![V::Slices(axes.clone())],
            Op::Pad { pads, value } => vec![V::Pairs(pads.clone()), V::Float(*value)],
            Op::Concat { axis } | Op::Gather { axis } | Op::ScatterAdd { axis } => {
                vec![V::Axis(*axis)]
            }
            Op::Flip { axes } => vec![V::Axes(axes.clone())],
            Op::Conv2d {
                stride,
                padding,
                dilation,
                groups,
            } => vec![
                V::Hw(*stride),
                V::Hw(*padding),
                V::Hw(*dilation),
                V::Factor(*groups),
            ],
            Op::Window {
                window,
                stride,
                padding,
                ..
            } => vec![
                V::Sizes(window.clone()),
                V::Sizes(stride.clone()),
                V::Pairs(padding.clone()),
            ],
            Op::Cond {
                then_branch,
                else_branch,
            } => vec![V::Region(*then_branch), V::Region(*else_branch)],
            Op::Scan {
                body,
                length,
                carries,
                xs,
                reverse,
            } => vec![
                V::Region(*body),
                V::Dim(length.clone()),
                V::Count(*carries),
                V::Count(*xs),
                V::Bool(*reverse),
            ],
            Op::While {
                cond,
                body,
                carries,
            } => vec![V::Region(*cond), V::Region(*body), V::Count(*carries)],
            Op::Get { index } => vec![V::Count(*index)],
        }
    }

    /// The op named `name` with the attribute `values` of its [`Op::attr_schema`], in
    /// order. Only the count and kinds of the values are checked; whether they suit the
    /// operands is shape inference's business ([`crate::infer`]).
    pub fn from_attrs(name: &str, values: Vec<AttrValue>) -> Result<Op, AttrError> {
        if name == "const" {
            return Err(AttrError::Literal("const"));
        }
        let (name, values) = Op::checked_attrs(name, values)?;
        let mut v = Values::new(values);
        Ok(match name {
            "input" | "param" => {
                let n = v.name();
                let (dtype, shape) = v.ty();
                if name == "input" {
                    Op::Input {
                        name: n,
                        dtype,
                        shape,
                    }
                } else {
                    Op::Parameter {
                        name: n,
                        dtype,
                        shape,
                    }
                }
            }
            "iota" => {
                let axis = v.axis();
                let (dtype, shape) = v.ty();
                Op::Iota { dtype, shape, axis }
            }
            "random_bits" => Op::RandomBits { shape: v.shape() },
            "select" => Op::Select,
            "cast" => Op::Cast(v.dtype()),
            "stop_gradient" => Op::StopGradient,
            "reshape" => Op::Reshape(v.shape()),
            "permute" => Op::Permute(v.axes()),
            "expand" => Op::Expand(v.shape()),
            "slice" => Op::Slice(v.slices()),
            "pad" => Op::Pad {
                pads: v.pairs(),
                value: v.float(),
            },
            "concat" => Op::Concat { axis: v.axis() },
            "flip" => Op::Flip { axes: v.axes() },
            "gather" => Op::Gather { axis: v.axis() },
            "scatter_add" => Op::ScatterAdd { axis: v.axis() },
            "matmul" => Op::MatMul,
            "conv2d" => Op::Conv2d {
                stride: v.hw(),
                padding: v.hw(),
                dilation: v.hw(),
                groups: v.factor(),
            },
            "cond" => Op::Cond {
                then_branch: v.region(),
                else_branch: v.region(),
            },
            "scan" => Op::Scan {
                body: v.region(),
                length: v.dim(),
                carries: v.count(),
                xs: v.count(),
                reverse: v.boolean(),
            },
            "while" => Op::While {
                cond: v.region(),
                body: v.region(),
                carries: v.count(),
            },
            "get" => Op::Get { index: v.count() },
            other => {
                if let Some(u) = UnaryOp::from_name(other) {
                    Op::Unary(u)
                } else if let Some(b) = BinaryOp::from_name(other) {
                    Op::Binary(b)
                } else if let Some(op) = ReduceOp::from_name(other) {
                    Op::Reduce {
                        op,
                        axes: v.axes(),
                        keepdim: v.boolean(),
                    }
                } else if let Some(op) = ArgOp::from_name(other) {
                    Op::ArgReduce {
                        op,
                        axis: v.axis(),
                        keepdim: v.boolean(),
                    }
                } else if let Some(op) = WindowOp::from_name(other) {
                    Op::Window {
                        op,
                        window: v.sizes(),
                        stride: v.sizes(),
                        padding: v.pairs(),
                    }
                } else {
                    return Err(AttrError::UnknownOp(other.to_string()));
                }
            }
        })
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
    /// Runs regions of the graph and yields several results (`cond`, `scan`, `while`).
    Control,
    /// One result of a control-flow op (`get`).
    Get,
}

impl Op {
    /// Checks `values` against the schema of the op named `name` and returns them with the
    /// op's static name, ready for [`Op::from_attrs`] to take apart in order.
    pub(crate) fn checked_attrs(
        name: &str,
        values: Vec<AttrValue>,
    ) -> Result<(&'static str, Vec<AttrValue>), AttrError> {
        let Some((op, schema)) = Op::attr_schema(name) else {
            return Err(AttrError::UnknownOp(name.to_string()));
        };
        if values.len() != schema.len() {
            return Err(AttrError::Count {
                op,
                expected: schema.len(),
                got: values.len(),
            });
        }
        for (spec, v) in schema.iter().zip(&values) {
            if v.kind() != spec.kind {
                return Err(AttrError::Kind {
                    op,
                    key: spec.key,
                    expected: spec.kind.describe(),
                    got: v.kind().describe(),
                });
            }
        }
        Ok((op, values))
    }
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

    /// One op of every variant, with non-default attributes.
    fn one_of_each() -> Vec<Op> {
        let s = Shape::known(&[2, 3]);
        vec![
            Op::Input {
                name: "x \"y\"".into(),
                dtype: DType::F32,
                shape: s.clone(),
            },
            Op::Parameter {
                name: "fc.weight".into(),
                dtype: DType::F64,
                shape: s.clone(),
            },
            Op::Iota {
                dtype: DType::I32,
                shape: s.clone(),
                axis: 1,
            },
            Op::RandomBits { shape: s.clone() },
            Op::Unary(UnaryOp::Asin),
            Op::Binary(BinaryOp::Rem),
            Op::Select,
            Op::Cast(DType::Bool),
            Op::StopGradient,
            Op::Reduce {
                op: ReduceOp::Prod,
                axes: vec![0, 2],
                keepdim: true,
            },
            Op::ArgReduce {
                op: ArgOp::ArgMin,
                axis: 3,
                keepdim: false,
            },
            Op::Reshape(s.clone()),
            Op::Permute(vec![1, 0]),
            Op::Expand(s.clone()),
            Op::Slice(vec![SliceAxis {
                start: 1,
                stop: 7,
                step: 2,
            }]),
            Op::Pad {
                pads: vec![(1, 2)],
                value: F64Bits::new(-0.5),
            },
            Op::Concat { axis: 2 },
            Op::Flip { axes: vec![1] },
            Op::Gather { axis: 1 },
            Op::ScatterAdd { axis: 0 },
            Op::MatMul,
            Op::Conv2d {
                stride: [1, 2],
                padding: [3, 4],
                dilation: [5, 6],
                groups: 7,
            },
            Op::Window {
                op: WindowOp::Max,
                window: vec![2, 2],
                stride: vec![1, 2],
                padding: vec![(0, 1), (1, 0)],
            },
            Op::Cond {
                then_branch: RegionId(1),
                else_branch: RegionId(0),
            },
            Op::Scan {
                body: RegionId(2),
                length: Dim::sym("T"),
                carries: 2,
                xs: 1,
                reverse: true,
            },
            Op::While {
                cond: RegionId(0),
                body: RegionId(1),
                carries: 3,
            },
            Op::Get { index: 4 },
        ]
    }

    #[test]
    fn attributes_follow_the_schema_and_rebuild_the_op() {
        for op in one_of_each() {
            let (name, schema) = Op::attr_schema(op.name()).expect("a schema");
            assert_eq!(name, op.name());
            let values = op.attrs();
            let kinds: Vec<AttrKind> = values.iter().map(AttrValue::kind).collect();
            let declared: Vec<AttrKind> = schema.iter().map(|a| a.kind).collect();
            assert_eq!(kinds, declared, "{op:?}");
            for a in schema {
                if a.role == crate::attr::AttrRole::Result {
                    assert!(
                        AttrValue::of_result(a.kind, DType::F32, &Shape::scalar()).is_some(),
                        "{op:?}: result attribute `{}` of kind {:?}",
                        a.key,
                        a.kind
                    );
                }
            }
            assert_eq!(Op::from_attrs(op.name(), values), Ok(op.clone()));
        }
        for u in UnaryOp::ALL {
            assert_eq!(Op::from_attrs(u.name(), vec![]), Ok(Op::Unary(u)));
        }
        for b in BinaryOp::ALL {
            assert_eq!(Op::from_attrs(b.name(), vec![]), Ok(Op::Binary(b)));
        }
    }

    #[test]
    fn attribute_errors_are_typed() {
        assert_eq!(
            Op::from_attrs("frob", vec![]),
            Err(AttrError::UnknownOp("frob".into()))
        );
        assert_eq!(
            Op::from_attrs("const", vec![]),
            Err(AttrError::Literal("const"))
        );
        assert_eq!(Op::attr_schema("const"), None);
        assert_eq!(
            Op::from_attrs("concat", vec![]),
            Err(AttrError::Count {
                op: "concat",
                expected: 1,
                got: 0
            })
        );
        let e = Op::from_attrs("concat", vec![AttrValue::Count(1)]).unwrap_err();
        assert_eq!(
            e,
            AttrError::Kind {
                op: "concat",
                key: "axis",
                expected: "axis",
                got: "count"
            }
        );
        assert_eq!(
            e.to_string(),
            "`concat` attribute `axis` takes a value of kind axis, got count"
        );
    }

    #[test]
    fn failing_ops_are_declared() {
        let div = Op::Binary(BinaryOp::Div);
        assert!(div.may_fail(DType::I32) && !div.may_fail(DType::F32));
        assert!(Op::Gather { axis: 0 }.may_fail(DType::F32));
        let w = Op::While {
            cond: RegionId(0),
            body: RegionId(1),
            carries: 1,
        };
        assert!(w.may_fail(DType::Bool));
        assert!(!Op::MatMul.may_fail(DType::I32));
    }

    #[test]
    fn kinds_classify_ops() {
        assert_eq!(Op::Unary(UnaryOp::Neg).kind(), OpKind::Elementwise);
        assert_eq!(Op::Permute(vec![0]).kind(), OpKind::View);
        assert_eq!(Op::Concat { axis: 0 }.kind(), OpKind::Assemble);
        assert_eq!(Op::MatMul.kind(), OpKind::Contraction);
        assert!(UnaryOp::Exp.is_costly() && !UnaryOp::Neg.is_costly());
        assert!(BinaryOp::Pow.is_costly() && !BinaryOp::Add.is_costly());
        let comparisons: Vec<_> = BinaryOp::ALL
            .into_iter()
            .filter(|b| b.is_comparison())
            .collect();
        assert_eq!(
            comparisons,
            [
                BinaryOp::Eq,
                BinaryOp::Ne,
                BinaryOp::Lt,
                BinaryOp::Le,
                BinaryOp::Gt,
                BinaryOp::Ge
            ]
        );
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
