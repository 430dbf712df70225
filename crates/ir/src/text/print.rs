//! The printer of the text form: `Display for Graph` and one node's line.

use super::{F32_NAN_BITS, F64_NAN_BITS};
use crate::array::Data;
use crate::graph::{Graph, Loc, Node, NodeId};
use crate::op::Op;
use crate::shape::Shape;
use std::fmt;

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_graph(f, self, "")
    }
}

/// The nodes, one per line, then each region as an indented block
/// `rK (PARAMS) -> (RESULTS) { ... }`, every line prefixed by `indent`.
fn write_graph(out: &mut impl fmt::Write, g: &Graph, indent: &str) -> fmt::Result {
    for id in g.node_ids() {
        out.write_str(indent)?;
        write_node(out, g, id)?;
        out.write_char('\n')?;
    }
    for (k, r) in g.regions().iter().enumerate() {
        write!(out, "{indent}r{k} (")?;
        write_ids(out, &r.params)?;
        out.write_str(") -> (")?;
        write_ids(out, &r.results)?;
        out.write_str(") {\n")?;
        write_graph(out, &r.graph, &format!("{indent}  "))?;
        writeln!(out, "{indent}}}")?;
    }
    Ok(())
}

fn write_ids(out: &mut impl fmt::Write, ids: &[NodeId]) -> fmt::Result {
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        write!(out, "{id}")?;
    }
    Ok(())
}

/// The text line of one node (without a newline), as the graph printer writes it.
/// Returns an empty string if `id` is not a live node.
pub fn format_node(g: &Graph, id: NodeId) -> String {
    let mut s = String::new();
    if g.contains(id) {
        // Writing into a String cannot fail.
        let _ = write_node(&mut s, g, id);
    }
    s
}

fn write_node(out: &mut impl fmt::Write, g: &Graph, id: NodeId) -> fmt::Result {
    let n = g.node(id);
    write!(out, "{id} = {}", n.op.name())?;
    for (i, o) in g.operands(id).iter().enumerate() {
        out.write_str(if i == 0 { " " } else { ", " })?;
        write!(out, "{o}")?;
    }
    write_attrs(out, n)?;
    write!(out, " : {}{}", n.dtype, n.shape)?;
    if let Some(loc) = &n.loc {
        out.write_str(" @ ")?;
        write_loc(out, loc)?;
    }
    Ok(())
}

fn write_list<T>(
    out: &mut impl fmt::Write,
    items: &[T],
    mut item: impl FnMut(&mut dyn fmt::Write, &T) -> fmt::Result,
) -> fmt::Result {
    out.write_char('[')?;
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        item(out, x)?;
    }
    out.write_char(']')
}

fn write_nums<T: fmt::Display>(out: &mut impl fmt::Write, items: &[T]) -> fmt::Result {
    write_list(out, items, |o, x| write!(o, "{x}"))
}

fn write_pairs(out: &mut impl fmt::Write, items: &[(u64, u64)]) -> fmt::Result {
    write_list(out, items, |o, (a, b)| write!(o, "({a}, {b})"))
}

fn write_attrs(out: &mut impl fmt::Write, n: &Node) -> fmt::Result {
    let stated = (n.dtype, &n.shape);
    match &n.op {
        Op::Input { name, dtype, shape } | Op::Parameter { name, dtype, shape } => {
            out.write_char(' ')?;
            write_string(out, name)?;
            if (*dtype, shape) != stated {
                write!(out, " type={dtype}{shape}")?;
            }
        }
        Op::Constant(a) => {
            write!(out, " {}{} ", a.dtype(), Shape::known(a.shape()))?;
            write_data(out, a.data())?;
        }
        Op::Iota { dtype, shape, axis } => {
            write!(out, " axis={axis}")?;
            if (*dtype, shape) != stated {
                write!(out, " type={dtype}{shape}")?;
            }
        }
        Op::RandomBits { shape } | Op::Reshape(shape) | Op::Expand(shape) => {
            if *shape != n.shape {
                write!(out, " shape={shape}")?;
            }
        }
        Op::Unary(_) | Op::Binary(_) | Op::Select | Op::StopGradient | Op::MatMul => {}
        Op::Cast(to) => {
            if *to != n.dtype {
                write!(out, " dtype={to}")?;
            }
        }
        Op::Reduce { axes, keepdim, .. } => {
            out.write_str(" axes=")?;
            write_nums(out, axes)?;
            write!(out, " keepdim={keepdim}")?;
        }
        Op::ArgReduce { axis, keepdim, .. } => write!(out, " axis={axis} keepdim={keepdim}")?,
        Op::Permute(perm) => {
            out.write_char(' ')?;
            write_nums(out, perm)?;
        }
        Op::Slice(axes) => {
            out.write_char(' ')?;
            write_list(out, axes, |o, a| {
                if a.start == 0 && a.stop == u64::MAX && a.step == 1 {
                    o.write_char(':')
                } else if a.step == 1 {
                    write!(o, "{}:{}", a.start, a.stop)
                } else {
                    write!(o, "{}:{}:{}", a.start, a.stop, a.step)
                }
            })?;
        }
        Op::Pad { pads, value } => {
            out.write_char(' ')?;
            write_pairs(out, pads)?;
            write!(out, " value={}", fmt_f64(value.get()))?;
        }
        Op::Concat { axis } | Op::Gather { axis } | Op::ScatterAdd { axis } => {
            write!(out, " axis={axis}")?;
        }
        Op::Flip { axes } => {
            out.write_str(" axes=")?;
            write_nums(out, axes)?;
        }
        Op::Conv2d {
            stride,
            padding,
            dilation,
            groups,
        } => {
            out.write_str(" stride=")?;
            write_nums(out, stride)?;
            out.write_str(" padding=")?;
            write_nums(out, padding)?;
            out.write_str(" dilation=")?;
            write_nums(out, dilation)?;
            write!(out, " groups={groups}")?;
        }
        Op::Window {
            window,
            stride,
            padding,
            ..
        } => {
            out.write_str(" window=")?;
            write_nums(out, window)?;
            out.write_str(" stride=")?;
            write_nums(out, stride)?;
            out.write_str(" padding=")?;
            write_pairs(out, padding)?;
        }
        Op::Cond {
            then_branch,
            else_branch,
        } => write!(out, " then={then_branch} else={else_branch}")?,
        Op::Scan {
            body,
            length,
            carries,
            xs,
            reverse,
        } => write!(
            out,
            " body={body} length=[{length}] carries={carries} xs={xs} reverse={reverse}"
        )?,
        Op::While {
            cond,
            body,
            carries,
        } => write!(out, " cond={cond} body={body} carries={carries}")?,
        Op::Get { index } => write!(out, " index={index}")?,
    }
    Ok(())
}

fn write_data(out: &mut impl fmt::Write, data: &Data) -> fmt::Result {
    match data {
        Data::F32(v) => write_list(out, v, |o, x| o.write_str(&fmt_f32(*x))),
        Data::F64(v) => write_list(out, v, |o, x| o.write_str(&fmt_f64(*x))),
        Data::I32(v) => write_nums(out, v),
        Data::I64(v) => write_nums(out, v),
        Data::U32(v) => write_nums(out, v),
        Data::Bool(v) => write_nums(out, v),
    }
}

/// An `f32` as the text form writes it: shortest round-trip digits, `inf`, `-inf`, `nan`,
/// `-nan`, or `nan:0xBITS` for a NaN other than the canonical quiet one and its negation.
pub fn fmt_f32(x: f32) -> String {
    if x.is_nan() {
        let bits = x.to_bits();
        if bits == F32_NAN_BITS {
            "nan".to_string()
        } else if bits == F32_NAN_BITS | (1 << 31) {
            "-nan".to_string()
        } else {
            format!("nan:0x{bits:08x}")
        }
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{x:?}")
    }
}

/// An `f64` as the text form writes it (see [`fmt_f32`]).
pub fn fmt_f64(x: f64) -> String {
    if x.is_nan() {
        let bits = x.to_bits();
        if bits == F64_NAN_BITS {
            "nan".to_string()
        } else if bits == F64_NAN_BITS | (1 << 63) {
            "-nan".to_string()
        } else {
            format!("nan:0x{bits:016x}")
        }
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{x:?}")
    }
}

fn write_string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

fn write_loc(out: &mut impl fmt::Write, loc: &Loc) -> fmt::Result {
    let plain = !loc.file.is_empty()
        && !loc
            .file
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == '"');
    if plain {
        out.write_str(&loc.file)?;
    } else {
        write_string(out, &loc.file)?;
    }
    write!(out, ":{}:{}", loc.line, loc.column)
}
