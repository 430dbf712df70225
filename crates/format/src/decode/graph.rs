//! The graph: source files, nodes (ids, operands, locations, ops) of the top-level graph and
//! of each region, and named nodes. A version 5 op is read generically, attribute by
//! attribute ([`AttrV5`]); an op of versions 1 to 4 through its frozen [`OpV1`] variant.

use super::context::{Cx, Result, attr, axis, axis_list, count, dtype, unique_named};
use super::op_names::{OpRef, ReadOpNames};
use crate::error::FormatError;
use crate::limits::*;
use crate::names::name;
use crate::v1::*;
use kiln_ir::{
    AttrValue, DType, F64Bits, Graph, Loc, Node, NodeId, Op, RegionId, Shape, SliceAxis,
};

pub(super) fn files(list: &[String]) -> Result<Vec<String>> {
    count(
        list.len(),
        MAX_ENTRIES,
        || "source file table".to_string(),
        "entry count",
    )?;
    list.iter()
        .enumerate()
        .map(|(i, f)| name(f, || format!("source file {i}")))
        .collect()
}

pub(super) fn placeholder() -> Node {
    Node {
        op: Op::MatMul,
        dtype: DType::F32,
        shape: Shape::scalar(),
        loc: None,
    }
}

/// The node slots the loader may allocate for the top-level graph and all its regions
/// together (each graph allocates one per id up to its largest).
pub(super) struct Slots {
    used: u64,
    limit: u64,
}

impl Slots {
    pub(super) fn new(total_nodes: usize) -> Slots {
        Slots {
            used: 0,
            limit: max_node_id(total_nodes) + 1,
        }
    }
}

/// The nodes of one graph (`what` is `graph` or `graph region r0/r1`), ids recreated
/// exactly; its regions are attached by the caller.
pub(super) fn nodes<N: ReadOpNames>(
    cx: &Cx<'_>,
    list: &[NodeV1<N>],
    files: &[String],
    what: &str,
    slots: &mut Slots,
) -> Result<Graph> {
    count(list.len(), MAX_NODES, || what.to_string(), "node count")?;
    let mut ids: Vec<u32> = Vec::with_capacity(list.len());
    let id_limit = max_node_id(list.len());
    for n in list {
        if u64::from(n.id) > id_limit {
            return Err(FormatError::limit(
                format!("{what} node n{}", n.id),
                "id",
                u64::from(n.id),
                id_limit,
            ));
        }
        if let Some(&prev) = ids.last()
            && n.id <= prev
        {
            return Err(FormatError::invalid(
                format!("{what} node n{}", n.id),
                format!(
                    "ids are not strictly increasing (n{} follows n{prev})",
                    n.id
                ),
            ));
        }
        ids.push(n.id);
    }
    slots.used += ids.last().map_or(0, |&last| u64::from(last) + 1);
    if slots.used > slots.limit {
        return Err(FormatError::limit(
            "graph and its regions",
            "node id span",
            slots.used,
            slots.limit,
        ));
    }
    let mut built: Vec<(Node, Vec<NodeId>)> = Vec::with_capacity(list.len());
    for n in list {
        let location = || format!("{what} node n{}", n.id);
        count(n.operands.len(), MAX_OPERANDS, location, "operand count")?;
        for &o in &n.operands {
            if ids.binary_search(&o).is_err() {
                return Err(FormatError::invalid(
                    location(),
                    format!("operand n{o} is not a node of the graph"),
                ));
            }
        }
        let loc = match &n.loc {
            None => None,
            Some(l) => {
                let file = files.get(l.file as usize).ok_or_else(|| {
                    FormatError::invalid(
                        location(),
                        format!(
                            "source file index {} is out of range (the table has {})",
                            l.file,
                            files.len()
                        ),
                    )
                })?;
                Some(Loc {
                    file: file.clone(),
                    line: l.line,
                    column: l.column,
                })
            }
        };
        let node = Node {
            op: match N::op_ref(&n.op) {
                OpRef::V1(op) => cx.op_v1(op, &location)?,
                OpRef::V5(op) => cx.op_v5(op, &location)?,
            },
            dtype: dtype(n.dtype),
            shape: cx.shape(&n.shape, &location)?,
            loc,
        };
        built.push((node, n.operands.iter().map(|&o| NodeId(o)).collect()));
    }
    // Recreate the ids exactly: add nodes in id order with fillers in the gaps (a fresh graph
    // hands out ids 0, 1, 2, ...), then drop the fillers. Operands that come later in id
    // order (only in a cyclic, hence invalid, graph) are attached once every node exists.
    let mut out = Graph::new();
    let mut fillers = Vec::new();
    let mut deferred: Vec<(NodeId, Vec<NodeId>)> = Vec::new();
    let mut next: u32 = 0;
    for ((node, operands), &id) in built.into_iter().zip(&ids) {
        while next < id {
            fillers.push(out.add_unchecked(placeholder(), &[]));
            next += 1;
        }
        let forward = operands.iter().any(|o| o.0 >= id);
        let got = if forward {
            let got = out.add_unchecked(node, &[]);
            deferred.push((got, operands));
            got
        } else {
            out.add_unchecked(node, &operands)
        };
        if got != NodeId(id) {
            return Err(FormatError::invalid(
                format!("{what} node n{id}"),
                format!("was rebuilt as {got}"),
            ));
        }
        next += 1;
    }
    for f in fillers {
        out.remove(f);
    }
    for (user, operands) in deferred {
        for (pos, o) in operands.into_iter().enumerate() {
            out.set_operand(user, pos as u32, o);
        }
    }
    Ok(out)
}

impl Cx<'_> {
    /// A version 5 graph op: its name known, each attribute bounded by its kind alone, then
    /// built by [`Op::from_attrs`] (which checks the attributes' count and kinds against the
    /// op's schema; whether they suit the operands is the verifier's business).
    fn op_v5(&self, op: &OpV5, location: &dyn Fn() -> String) -> Result<Op> {
        let (name, attrs) = match op {
            OpV5::Constant(r) => {
                return Ok(Op::Constant(
                    self.array(r, &format!("{} constant", location()))?,
                ));
            }
            OpV5::Op { name, attrs } => (name, attrs),
        };
        crate::names::op(name, "graph", Op::attr_schema, location)?;
        count(attrs.len(), MAX_ATTRS, location, "attribute count")?;
        let values = attrs
            .iter()
            .map(|a| self.attr_value(a, location))
            .collect::<Result<Vec<AttrValue>>>()?;
        Op::from_attrs(name, values).map_err(|e| FormatError::invalid(location(), e.to_string()))
    }

    /// One version 5 attribute, bounded by its kind: lists at most [`MAX_RANK`] long, axes
    /// below it, counts at most [`MAX_OPERANDS`], sizes at most [`MAX_WINDOW_ATTR`], factors
    /// at most [`MAX_CONV_ATTR`], names by the name rules, dims and shapes as every dim.
    fn attr_value(&self, a: &AttrV5, location: &dyn Fn() -> String) -> Result<AttrValue> {
        let size = |v: u64| attr(v, MAX_WINDOW_ATTR, "size attribute", location);
        let factor = |v: u64| attr(v, MAX_CONV_ATTR, "factor attribute", location);
        let sizes = |v: &[u64]| -> Result<Vec<u64>> {
            count(v.len(), MAX_RANK, location, "size list length")?;
            v.iter().map(|&x| size(x)).collect()
        };
        Ok(match a {
            AttrV5::Axis(v) => AttrValue::Axis(axis(*v, location)?),
            AttrV5::Axes(v) => AttrValue::Axes(axis_list(v, location)?),
            AttrV5::Count(v) => {
                AttrValue::Count(attr(*v, MAX_OPERANDS, "count attribute", location)? as usize)
            }
            AttrV5::Size(v) => AttrValue::Size(size(*v)?),
            AttrV5::Sizes(v) => AttrValue::Sizes(sizes(v)?),
            AttrV5::Pairs(v) => {
                count(v.len(), MAX_RANK, location, "pair list length")?;
                for &(lo, hi) in v {
                    size(lo)?;
                    size(hi)?;
                }
                AttrValue::Pairs(v.clone())
            }
            AttrV5::Factor(v) => AttrValue::Factor(factor(*v)?),
            AttrV5::Hw([h, w]) => AttrValue::Hw([factor(*h)?, factor(*w)?]),
            AttrV5::Bool(b) => AttrValue::Bool(*b),
            AttrV5::Float(bits) => AttrValue::Float(F64Bits::new(f64::from_bits(*bits))),
            AttrV5::DType(d) => AttrValue::DType(dtype(*d)),
            AttrV5::Shape(s) => AttrValue::Shape(self.shape(s, location)?),
            AttrV5::Type(d, s) => AttrValue::Type(dtype(*d), self.shape(s, location)?),
            AttrV5::Dim(d) => AttrValue::Dim(self.dim(d, location)?),
            AttrV5::Name(n) => AttrValue::Name(name(n, location)?),
            AttrV5::Region(r) => AttrValue::Region(RegionId(*r)),
            AttrV5::Slices(v) => {
                count(v.len(), MAX_RANK, location, "slice entry count")?;
                AttrValue::Slices(
                    v.iter()
                        .map(|a| SliceAxis {
                            start: a.start,
                            stop: a.stop,
                            step: a.step,
                        })
                        .collect(),
                )
            }
        })
    }

    /// A graph op of versions 1 to 4.
    fn op_v1<N: ReadOpNames>(&self, op: &OpV1<N>, location: &dyn Fn() -> String) -> Result<Op> {
        let shape = |dims: &[DimV1]| self.shape(dims, location);
        let named = |n: &str| name(n, location);
        let operand_count =
            |v: u64, what: &'static str| attr(v, MAX_OPERANDS, what, location).map(|v| v as usize);
        Ok(match op {
            OpV1::Cond {
                then_branch,
                else_branch,
            } => Op::Cond {
                then_branch: RegionId(*then_branch),
                else_branch: RegionId(*else_branch),
            },
            OpV1::Scan {
                body,
                length,
                carries,
                xs,
                reverse,
            } => Op::Scan {
                body: RegionId(*body),
                length: self.dim(length, location)?,
                carries: operand_count(*carries, "scan carry count")?,
                xs: operand_count(*xs, "scan xs count")?,
                reverse: *reverse,
            },
            OpV1::While {
                cond,
                body,
                carries,
            } => Op::While {
                cond: RegionId(*cond),
                body: RegionId(*body),
                carries: operand_count(*carries, "while carry count")?,
            },
            OpV1::Get { index } => Op::Get {
                index: operand_count(*index, "get index")?,
            },
            OpV1::Input {
                name,
                dtype: d,
                shape: s,
            } => Op::Input {
                name: named(name)?,
                dtype: dtype(*d),
                shape: shape(s)?,
            },
            OpV1::Parameter {
                name,
                dtype: d,
                shape: s,
            } => Op::Parameter {
                name: named(name)?,
                dtype: dtype(*d),
                shape: shape(s)?,
            },
            OpV1::Constant(r) => Op::Constant(self.array(r, &format!("{} constant", location()))?),
            OpV1::Iota {
                dtype: d,
                shape: s,
                axis: a,
            } => Op::Iota {
                dtype: dtype(*d),
                shape: shape(s)?,
                axis: axis(*a, location)?,
            },
            OpV1::RandomBits { shape: s } => Op::RandomBits { shape: shape(s)? },
            OpV1::Unary(u) => Op::Unary(N::unary(u, location)?),
            OpV1::Binary(b) => Op::Binary(N::binary(b, location)?),
            OpV1::Select => Op::Select,
            OpV1::Cast(d) => Op::Cast(dtype(*d)),
            OpV1::StopGradient => Op::StopGradient,
            OpV1::Reduce { op, axes, keepdim } => Op::Reduce {
                op: N::reduce(op, location)?,
                axes: axis_list(axes, location)?,
                keepdim: *keepdim,
            },
            OpV1::ArgReduce {
                op,
                axis: a,
                keepdim,
            } => Op::ArgReduce {
                op: N::arg(op, location)?,
                axis: axis(*a, location)?,
                keepdim: *keepdim,
            },
            OpV1::Reshape(s) => Op::Reshape(shape(s)?),
            OpV1::Permute(p) => Op::Permute(axis_list(p, location)?),
            OpV1::Expand(s) => Op::Expand(shape(s)?),
            OpV1::Slice(axes) => {
                count(axes.len(), MAX_RANK, location, "slice entry count")?;
                Op::Slice(
                    axes.iter()
                        .map(|a| SliceAxis {
                            start: a.start,
                            stop: a.stop,
                            step: a.step,
                        })
                        .collect(),
                )
            }
            OpV1::Pad { pads, value } => {
                count(pads.len(), MAX_RANK, location, "pad entry count")?;
                for &(lo, hi) in pads {
                    attr(lo, MAX_WINDOW_ATTR, "pad amount", location)?;
                    attr(hi, MAX_WINDOW_ATTR, "pad amount", location)?;
                }
                Op::Pad {
                    pads: pads.clone(),
                    value: F64Bits::new(f64::from_bits(*value)),
                }
            }
            OpV1::Concat { axis: a } => Op::Concat {
                axis: axis(*a, location)?,
            },
            OpV1::Flip { axes } => Op::Flip {
                axes: axis_list(axes, location)?,
            },
            OpV1::Gather { axis: a } => Op::Gather {
                axis: axis(*a, location)?,
            },
            OpV1::ScatterAdd { axis: a } => Op::ScatterAdd {
                axis: axis(*a, location)?,
            },
            OpV1::MatMul => Op::MatMul,
            OpV1::Conv2d {
                stride,
                padding,
                dilation,
                groups,
            } => {
                for &v in stride.iter().chain(padding).chain(dilation) {
                    attr(v, MAX_CONV_ATTR, "convolution attribute", location)?;
                }
                attr(*groups, MAX_CONV_ATTR, "convolution groups", location)?;
                Op::Conv2d {
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                    groups: *groups,
                }
            }
            OpV1::Window {
                op,
                window,
                stride,
                padding,
            } => {
                count(window.len(), MAX_RANK, location, "window rank")?;
                count(stride.len(), MAX_RANK, location, "window stride count")?;
                count(padding.len(), MAX_RANK, location, "window padding count")?;
                for &v in window
                    .iter()
                    .chain(stride)
                    .chain(padding.iter().flat_map(|(a, b)| [a, b]))
                {
                    attr(v, MAX_WINDOW_ATTR, "window attribute", location)?;
                }
                Op::Window {
                    op: N::window(op, location)?,
                    window: window.clone(),
                    stride: stride.clone(),
                    padding: padding.clone(),
                }
            }
        })
    }
}

pub(super) fn named_nodes(
    g: &Graph,
    list: &[NamedNodeV1],
    what: &str,
) -> Result<Vec<(String, NodeId)>> {
    unique_named(
        list,
        what,
        |n| &n.name,
        |n, s, location| {
            let id = NodeId(n.node);
            if !g.contains(id) {
                return Err(FormatError::invalid(
                    location(),
                    format!("node {id} is not a node of the graph"),
                ));
            }
            Ok((s, id))
        },
    )
}
