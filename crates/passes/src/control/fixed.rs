//! Static control flow: control-flow nodes whose path is known before running them are
//! replaced by the nodes of that path (a constant-predicate `cond`, a `scan` of length 0
//! or 1, a `while` whose condition is the constant `false`).

use super::{PASS, fail, fired, region_of};
use crate::error::PassError;
use crate::func::{Func, PassStats};
use crate::region::{Source, inline, replace_control};
use kiln_ir::{Array, Data, Dim, Graph, NodeId, Op, Region, Shape};

/// The value of `id` if it is a one-element `bool` constant.
fn const_bool(g: &Graph, id: NodeId) -> Option<bool> {
    match &g.node(id).op {
        Op::Constant(a) => match a.data() {
            Data::Bool(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        },
        _ => None,
    }
}

/// Replaces `id` by the nodes of its statically known path, if it has one. Returns whether
/// it did (then `id` is gone).
pub(super) fn inline_static(
    func: &mut Func,
    id: NodeId,
    stats: &mut PassStats,
) -> Result<bool, PassError> {
    let op = func.graph.node(id).op.clone();
    let operands = func.graph.operands(id);
    let before = func.graph.len();
    let (rule, sources) = match op {
        Op::Cond {
            then_branch,
            else_branch,
        } => {
            let Some((&pred, args)) = operands.split_first() else {
                return Ok(false);
            };
            let branch = if then_branch == else_branch {
                then_branch
            } else {
                match const_bool(&func.graph, pred) {
                    Some(true) => then_branch,
                    Some(false) => else_branch,
                    None => return Ok(false),
                }
            };
            let region = region_of(&func.graph, id, branch)?;
            let results = inline(&mut func.graph, &region, args).map_err(|m| fail(id, m))?;
            (
                "cond_static",
                results.into_iter().map(Source::Node).collect(),
            )
        }
        Op::Scan {
            body,
            length,
            carries,
            xs,
            ..
        } => match length.as_known() {
            Some(0) => match empty_scan(func, id, carries, &operands)? {
                Some(sources) => ("scan_length_0", sources),
                None => return Ok(false),
            },
            Some(1) => {
                let region = region_of(&func.graph, id, body)?;
                let sources = scan_once(func, id, &region, carries, xs, &operands)?;
                ("scan_length_1", sources)
            }
            _ => return Ok(false),
        },
        Op::While { cond, carries, .. } => {
            let region = region_of(&func.graph, id, cond)?;
            let never = match region.results.as_slice() {
                [r] => {
                    region.graph.get(*r).is_some() && const_bool(&region.graph, *r) == Some(false)
                }
                _ => false,
            };
            if !never || carries > operands.len() {
                return Ok(false);
            }
            let sources = operands[..carries]
                .iter()
                .map(|&o| Source::Node(o))
                .collect();
            ("while_false", sources)
        }
        _ => return Ok(false),
    };
    stats.added += func.graph.len().saturating_sub(before);
    replace_control(func, PASS, id, None, &sources, stats)?;
    fired(stats, rule);
    Ok(true)
}

/// The sources of a zero-step scan's results: the initial carries, and an empty constant
/// for each read y (`None` when a read y's row shape is symbolic).
fn empty_scan(
    func: &mut Func,
    id: NodeId,
    c: usize,
    operands: &[NodeId],
) -> Result<Option<Vec<Source>>, PassError> {
    let types = func
        .graph
        .result_types(id)
        .ok_or_else(|| fail(id, "the scan does not type"))?;
    let used = crate::region::used_results(func, id, types.len()).unwrap_or_default();
    let mut sources = Vec::with_capacity(types.len());
    for (i, (dtype, shape)) in types.into_iter().enumerate() {
        if i < c {
            let init = *operands
                .get(i)
                .ok_or_else(|| fail(id, "too few operands"))?;
            sources.push(Source::Node(init));
        } else if !used.get(i).copied().unwrap_or(false) {
            sources.push(Source::Dropped);
        } else {
            let Some(known) = shape.as_known() else {
                return Ok(None);
            };
            let empty = Array::zeros(dtype, &known).map_err(|e| fail(id, e.to_string()))?;
            let k = func
                .graph
                .add(Op::Constant(empty), &[])
                .map_err(|e| fail(id, e.to_string()))?;
            sources.push(Source::Node(k));
        }
    }
    Ok(Some(sources))
}

/// Inlines one step of a length-1 scan: each xs reshaped to its one row, the body copied
/// once, each y reshaped to a stack of one row.
fn scan_once(
    func: &mut Func,
    id: NodeId,
    body: &Region,
    c: usize,
    x: usize,
    operands: &[NodeId],
) -> Result<Vec<Source>, PassError> {
    let err = |e: kiln_ir::GraphError| fail(id, e.to_string());
    if c + x > operands.len() || body.params.len() != operands.len() {
        return Err(fail(id, "operands and body parameters disagree"));
    }
    let mut args = operands.to_vec();
    for k in c..c + x {
        let row = body
            .graph
            .get(body.params[k])
            .ok_or_else(|| fail(id, format!("parameter {k} is not a node of the body")))?
            .shape
            .clone();
        args[k] = func
            .graph
            .add(Op::Reshape(row), &[operands[k]])
            .map_err(err)?;
    }
    let results = inline(&mut func.graph, body, &args).map_err(|m| fail(id, m))?;
    let mut sources = Vec::with_capacity(results.len());
    for (i, r) in results.into_iter().enumerate() {
        if i < c {
            sources.push(Source::Node(r));
        } else {
            let mut dims = vec![Dim::known(1)];
            dims.extend(func.graph.node(r).shape.0.iter().cloned());
            let stacked = func
                .graph
                .add(Op::Reshape(Shape(dims)), &[r])
                .map_err(err)?;
            sources.push(Source::Node(stacked));
        }
    }
    Ok(sources)
}
