//! How each header version spells graph ops and op kinds, read back into IR ops (and
//! whether its plans carry a schedule): graph ops as [`OpV5`] (version 5) or [`OpV1`]
//! (before), seen through [`OpRef`]; op kinds by stable name in versions 2 to 5
//! (`kiln_ir::UnaryOp::from_name`, ...), through the frozen numbered tables in version 1.

use super::context::Result;
use crate::names;
use crate::v1::*;
use kiln_ir::{ArgOp, BinaryOp, Op, ReduceOp, UnaryOp, WindowOp};

/// A graph op of any version, as the decoder looks at it.
pub(crate) enum OpRef<'a, N: OpNaming> {
    /// Versions 1 to 4.
    V1(&'a OpV1<N>),
    /// Version 5.
    V5(&'a OpV5),
}

impl<'a, N: OpNaming> OpRef<'a, N> {
    /// The data of a constant.
    pub(crate) fn constant(&self) -> Option<&'a TensorRefV1> {
        match self {
            OpRef::V1(OpV1::Constant(r)) | OpRef::V5(OpV5::Constant(r)) => Some(r),
            _ => None,
        }
    }

    /// The dimension expressions in the op's attributes.
    pub(crate) fn attr_dims(&self) -> Vec<&'a DimV1> {
        match self {
            OpRef::V1(op) => match op {
                OpV1::Input { shape, .. }
                | OpV1::Parameter { shape, .. }
                | OpV1::Iota { shape, .. }
                | OpV1::RandomBits { shape }
                | OpV1::Reshape(shape)
                | OpV1::Expand(shape) => shape.iter().collect(),
                OpV1::Scan { length, .. } => vec![length],
                _ => Vec::new(),
            },
            OpRef::V5(OpV5::Op { attrs, .. }) => attrs
                .iter()
                .flat_map(|a| match a {
                    AttrV5::Shape(s) | AttrV5::Type(_, s) => s.iter().collect(),
                    AttrV5::Dim(d) => vec![d],
                    _ => Vec::new(),
                })
                .collect(),
            OpRef::V5(OpV5::Constant(_)) => Vec::new(),
        }
    }

    /// The regions a control-flow op runs and its name, or `None` for an op that runs no
    /// region (a `get` is `Some` with no regions).
    pub(crate) fn control(&self) -> Option<(&'a str, Vec<u32>)> {
        match self {
            OpRef::V1(op) => match op {
                OpV1::Cond {
                    then_branch,
                    else_branch,
                } => Some(("cond", vec![*then_branch, *else_branch])),
                OpV1::Scan { body, .. } => Some(("scan", vec![*body])),
                OpV1::While { cond, body, .. } => Some(("while", vec![*cond, *body])),
                OpV1::Get { .. } => Some(("get", Vec::new())),
                _ => None,
            },
            OpRef::V5(OpV5::Op { name, attrs }) => {
                let regions: Vec<u32> = attrs
                    .iter()
                    .filter_map(|a| match a {
                        AttrV5::Region(r) => Some(*r),
                        _ => None,
                    })
                    .collect();
                (!regions.is_empty() || self.is_get()).then_some((name.as_str(), regions))
            }
            OpRef::V5(OpV5::Constant(_)) => None,
        }
    }

    /// True for a `get`, which reads one result of a control-flow op.
    pub(crate) fn is_get(&self) -> bool {
        match self {
            OpRef::V1(op) => matches!(op, OpV1::Get { .. }),
            OpRef::V5(OpV5::Op { name, .. }) => *name == Op::Get { index: 0 }.name(),
            OpRef::V5(OpV5::Constant(_)) => false,
        }
    }
}

/// Reads the graph ops and op kinds of one [`OpNaming`]; `location` names the node or
/// value for errors.
pub(crate) trait ReadOpNames: OpNaming {
    /// A graph op.
    fn op_ref(op: &Self::Op) -> OpRef<'_, Self>;
    /// A unary op.
    fn unary(u: &Self::Unary, location: &dyn Fn() -> String) -> Result<UnaryOp>;
    /// A binary op.
    fn binary(b: &Self::Binary, location: &dyn Fn() -> String) -> Result<BinaryOp>;
    /// A reduction.
    fn reduce(r: &Self::Reduce, location: &dyn Fn() -> String) -> Result<ReduceOp>;
    /// An index-of-extremum reduction.
    fn arg(a: &Self::Arg, location: &dyn Fn() -> String) -> Result<ArgOp>;
    /// A window reduction.
    fn window(w: &Self::Window, location: &dyn Fn() -> String) -> Result<WindowOp>;
    /// A kernel plan's schedule, if the version has one and the plan carries it.
    fn schedule(s: &Self::Schedule) -> Option<&[StepV1]>;
}

/// Version 2 spells op kinds like version 5; its plans have no schedule.
impl ReadOpNames for NamedV2 {
    fn op_ref(op: &OpV1<NamedV2>) -> OpRef<'_, NamedV2> {
        OpRef::V1(op)
    }
    fn unary(u: &String, location: &dyn Fn() -> String) -> Result<UnaryOp> {
        Named::unary(u, location)
    }
    fn binary(b: &String, location: &dyn Fn() -> String) -> Result<BinaryOp> {
        Named::binary(b, location)
    }
    fn reduce(r: &String, location: &dyn Fn() -> String) -> Result<ReduceOp> {
        Named::reduce(r, location)
    }
    fn arg(a: &String, location: &dyn Fn() -> String) -> Result<ArgOp> {
        Named::arg(a, location)
    }
    fn window(w: &String, location: &dyn Fn() -> String) -> Result<WindowOp> {
        Named::window(w, location)
    }
    fn schedule(_: &()) -> Option<&[StepV1]> {
        None
    }
}

/// Version 3 spells op kinds like version 5; its bodies have no debug table.
impl ReadOpNames for NamedV3 {
    fn op_ref(op: &OpV1<NamedV3>) -> OpRef<'_, NamedV3> {
        OpRef::V1(op)
    }
    fn unary(u: &String, location: &dyn Fn() -> String) -> Result<UnaryOp> {
        Named::unary(u, location)
    }
    fn binary(b: &String, location: &dyn Fn() -> String) -> Result<BinaryOp> {
        Named::binary(b, location)
    }
    fn reduce(r: &String, location: &dyn Fn() -> String) -> Result<ReduceOp> {
        Named::reduce(r, location)
    }
    fn arg(a: &String, location: &dyn Fn() -> String) -> Result<ArgOp> {
        Named::arg(a, location)
    }
    fn window(w: &String, location: &dyn Fn() -> String) -> Result<WindowOp> {
        Named::window(w, location)
    }
    fn schedule(s: &Option<Vec<StepV1>>) -> Option<&[StepV1]> {
        s.as_deref()
    }
}

/// Version 4 spells op kinds like version 5.
impl ReadOpNames for NamedV4 {
    fn op_ref(op: &OpV1<NamedV4>) -> OpRef<'_, NamedV4> {
        OpRef::V1(op)
    }
    fn unary(u: &String, location: &dyn Fn() -> String) -> Result<UnaryOp> {
        Named::unary(u, location)
    }
    fn binary(b: &String, location: &dyn Fn() -> String) -> Result<BinaryOp> {
        Named::binary(b, location)
    }
    fn reduce(r: &String, location: &dyn Fn() -> String) -> Result<ReduceOp> {
        Named::reduce(r, location)
    }
    fn arg(a: &String, location: &dyn Fn() -> String) -> Result<ArgOp> {
        Named::arg(a, location)
    }
    fn window(w: &String, location: &dyn Fn() -> String) -> Result<WindowOp> {
        Named::window(w, location)
    }
    fn schedule(s: &Option<Vec<StepV1>>) -> Option<&[StepV1]> {
        s.as_deref()
    }
}

impl ReadOpNames for Named {
    fn op_ref(op: &OpV5) -> OpRef<'_, Named> {
        OpRef::V5(op)
    }
    fn unary(u: &String, location: &dyn Fn() -> String) -> Result<UnaryOp> {
        names::op(u, "unary", UnaryOp::from_name, location)
    }
    fn binary(b: &String, location: &dyn Fn() -> String) -> Result<BinaryOp> {
        names::op(b, "binary", BinaryOp::from_name, location)
    }
    fn reduce(r: &String, location: &dyn Fn() -> String) -> Result<ReduceOp> {
        names::op(r, "reduce", ReduceOp::from_name, location)
    }
    fn arg(a: &String, location: &dyn Fn() -> String) -> Result<ArgOp> {
        names::op(a, "arg-reduce", ArgOp::from_name, location)
    }
    fn window(w: &String, location: &dyn Fn() -> String) -> Result<WindowOp> {
        names::op(w, "window", WindowOp::from_name, location)
    }
    fn schedule(s: &Option<Vec<StepV1>>) -> Option<&[StepV1]> {
        s.as_deref()
    }
}

/// The frozen version 1 tables: a version 1 file cannot name an op added later.
impl ReadOpNames for Numbered {
    fn op_ref(op: &OpV1<Numbered>) -> OpRef<'_, Numbered> {
        OpRef::V1(op)
    }
    fn unary(u: &UnaryV1, _: &dyn Fn() -> String) -> Result<UnaryOp> {
        Ok(match u {
            UnaryV1::Neg => UnaryOp::Neg,
            UnaryV1::Abs => UnaryOp::Abs,
            UnaryV1::Exp => UnaryOp::Exp,
            UnaryV1::Log => UnaryOp::Log,
            UnaryV1::Sqrt => UnaryOp::Sqrt,
            UnaryV1::Rsqrt => UnaryOp::Rsqrt,
            UnaryV1::Recip => UnaryOp::Recip,
            UnaryV1::Sin => UnaryOp::Sin,
            UnaryV1::Cos => UnaryOp::Cos,
            UnaryV1::Tanh => UnaryOp::Tanh,
            UnaryV1::Sigmoid => UnaryOp::Sigmoid,
            UnaryV1::Erf => UnaryOp::Erf,
            UnaryV1::Floor => UnaryOp::Floor,
            UnaryV1::Ceil => UnaryOp::Ceil,
            UnaryV1::Round => UnaryOp::Round,
            UnaryV1::Sign => UnaryOp::Sign,
            UnaryV1::Not => UnaryOp::Not,
            UnaryV1::IsNan => UnaryOp::IsNan,
        })
    }

    fn binary(b: &BinaryV1, _: &dyn Fn() -> String) -> Result<BinaryOp> {
        Ok(match b {
            BinaryV1::Add => BinaryOp::Add,
            BinaryV1::Sub => BinaryOp::Sub,
            BinaryV1::Mul => BinaryOp::Mul,
            BinaryV1::Div => BinaryOp::Div,
            BinaryV1::Rem => BinaryOp::Rem,
            BinaryV1::Pow => BinaryOp::Pow,
            BinaryV1::Max => BinaryOp::Max,
            BinaryV1::Min => BinaryOp::Min,
            BinaryV1::Eq => BinaryOp::Eq,
            BinaryV1::Ne => BinaryOp::Ne,
            BinaryV1::Lt => BinaryOp::Lt,
            BinaryV1::Le => BinaryOp::Le,
            BinaryV1::Gt => BinaryOp::Gt,
            BinaryV1::Ge => BinaryOp::Ge,
            BinaryV1::And => BinaryOp::And,
            BinaryV1::Or => BinaryOp::Or,
            BinaryV1::Xor => BinaryOp::Xor,
        })
    }

    fn reduce(r: &ReduceV1, _: &dyn Fn() -> String) -> Result<ReduceOp> {
        Ok(match r {
            ReduceV1::Sum => ReduceOp::Sum,
            ReduceV1::Max => ReduceOp::Max,
            ReduceV1::Min => ReduceOp::Min,
            ReduceV1::Prod => ReduceOp::Prod,
        })
    }

    fn arg(a: &ArgV1, _: &dyn Fn() -> String) -> Result<ArgOp> {
        Ok(match a {
            ArgV1::ArgMax => ArgOp::ArgMax,
            ArgV1::ArgMin => ArgOp::ArgMin,
        })
    }

    fn window(w: &WindowV1, _: &dyn Fn() -> String) -> Result<WindowOp> {
        Ok(match w {
            WindowV1::Sum => WindowOp::Sum,
            WindowV1::Max => WindowOp::Max,
        })
    }

    fn schedule(_: &()) -> Option<&[StepV1]> {
        None
    }
}
