//! The printer of the text form: `Display for Graph` and one node's line.

use super::{F32_NAN_BITS, F64_NAN_BITS};
use crate::array::Data;
use crate::attr::{AttrRole, AttrValue};
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

/// The node's attributes as its op's schema declares them ([`Op::attr_schema`]); a
/// constant's type and elements.
fn write_attrs(out: &mut impl fmt::Write, n: &Node) -> fmt::Result {
    if let Op::Constant(a) = &n.op {
        write!(out, " {}{} ", a.dtype(), Shape::known(a.shape()))?;
        return write_data(out, a.data());
    }
    let Some((_, schema)) = Op::attr_schema(n.op.name()) else {
        return Ok(());
    };
    for (spec, value) in schema.iter().zip(n.op.attrs()) {
        match spec.role {
            AttrRole::Positional => out.write_char(' ')?,
            AttrRole::Keyed => write!(out, " {}=", spec.key)?,
            AttrRole::Result => {
                if AttrValue::of_result(spec.kind, n.dtype, &n.shape).as_ref() == Some(&value) {
                    continue;
                }
                write!(out, " {}=", spec.key)?;
            }
        }
        write_value(out, &value)?;
    }
    Ok(())
}

/// One attribute value, spelled by its kind.
fn write_value(out: &mut impl fmt::Write, value: &AttrValue) -> fmt::Result {
    match value {
        AttrValue::Axis(v) | AttrValue::Count(v) => write!(out, "{v}"),
        AttrValue::Size(v) | AttrValue::Factor(v) => write!(out, "{v}"),
        AttrValue::Axes(v) => write_nums(out, v),
        AttrValue::Sizes(v) => write_nums(out, v),
        AttrValue::Hw(v) => write_nums(out, v),
        AttrValue::Pairs(v) => write_pairs(out, v),
        AttrValue::Bool(v) => write!(out, "{v}"),
        AttrValue::Float(v) => out.write_str(&fmt_f64(v.get())),
        AttrValue::DType(d) => write!(out, "{d}"),
        AttrValue::Shape(s) => write!(out, "{s}"),
        AttrValue::Type(d, s) => write!(out, "{d}{s}"),
        AttrValue::Dim(d) => write!(out, "[{d}]"),
        AttrValue::Name(name) => write_string(out, name),
        AttrValue::Region(r) => write!(out, "{r}"),
        AttrValue::Slices(axes) => write_list(out, axes, |o, a| {
            if a.start == 0 && a.stop == u64::MAX && a.step == 1 {
                o.write_char(':')
            } else if a.step == 1 {
                write!(o, "{}:{}", a.start, a.stop)
            } else {
                write!(o, "{}:{}:{}", a.start, a.stop, a.step)
            }
        }),
    }
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
