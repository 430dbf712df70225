//! How each header version spells op kinds, read back into IR ops (and whether its plans
//! carry a schedule): versions 2 to 4 by stable
//! name (`kiln_ir::UnaryOp::from_name`, ...), version 1 through its frozen numbered tables.

use super::context::Result;
use crate::names;
use crate::v1::*;
use kiln_ir::{ArgOp, BinaryOp, ReduceOp, UnaryOp, WindowOp};

/// Reads the op kinds of one [`OpNaming`]; `location` names the node or value for errors.
pub(crate) trait ReadOpNames: OpNaming {
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

/// Version 2 spells op kinds like version 4; its plans have no schedule.
impl ReadOpNames for NamedV2 {
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

/// Version 3 spells op kinds like version 4; its bodies have no debug table.
impl ReadOpNames for NamedV3 {
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
