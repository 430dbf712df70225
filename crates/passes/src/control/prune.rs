//! Pruning of control-flow nodes: unread results, carries nothing needs, duplicate
//! operands and unused params are dropped together with the matching region nodes; small
//! constant operands are copied into the regions; a carry a loop never changes becomes a
//! const; results that are an operand unchanged are read from that operand directly (a
//! `scan` y that is a const, broadcast over the steps).

use super::{PASS, fail, fired, region_of};
use crate::error::{PassError, RegionError};
use crate::func::{Func, PassStats};
use crate::region::{Source, redirect, replace_control, replace_region, retain, used_results};
use kiln_ir::{Graph, NodeId, Op, Region, RegionId, Shape};
use std::collections::HashSet;

/// Prunes `id`. Returns its id afterwards (a new one if it was rebuilt, `None` if it is
/// gone because no result of it is needed any more).
pub(super) fn prune(
    func: &mut Func,
    id: NodeId,
    stats: &mut PassStats,
) -> Result<Option<NodeId>, PassError> {
    let op = func.graph.node(id).op.clone();
    let operands = func.graph.operands(id);
    let plan = match &op {
        Op::Scan {
            body, carries, xs, ..
        } => plan_scan(func, id, *body, *carries, *xs, &operands)?,
        Op::While {
            cond,
            body,
            carries,
        } => plan_while(func, id, *cond, *body, *carries, &operands)?,
        Op::Cond {
            then_branch,
            else_branch,
        } => plan_cond(func, id, *then_branch, *else_branch, &operands)?,
        _ => None,
    };
    let Some(mut plan) = plan else {
        return Ok(Some(id));
    };
    if let Op::Scan { length, .. } = &op {
        for &(k, i) in &plan.broadcast {
            let o = operands[i];
            let mut dims = vec![length.clone()];
            dims.extend(func.graph.node(o).shape.0.iter().cloned());
            let loc = func.graph.node(id).loc.clone();
            let e = func
                .graph
                .add_at(Op::Expand(Shape(dims)), &[o], loc)
                .map_err(|e| fail(id, format!("broadcasting y {k}: {e}")))?;
            stats.added += 1;
            plan.sources[k] = Source::Node(e);
        }
    }
    let new = if plan.results == 0 {
        None
    } else {
        let mut new_op = op;
        let mut ids = plan.regions.into_iter();
        for r in new_op.regions_mut() {
            let region = ids.next().ok_or_else(|| fail(id, "region count changed"))?;
            *r = replace_region(&mut func.graph, id, *r, region);
        }
        match &mut new_op {
            Op::Scan { carries, xs, .. } => {
                *carries = plan.carries;
                *xs = plan.xs;
            }
            Op::While { carries, .. } => *carries = plan.carries,
            _ => {}
        }
        let new_operands: Vec<NodeId> = plan.operands.iter().map(|&i| operands[i]).collect();
        Some((new_op, new_operands))
    };
    let rebuilt = replace_control(func, PASS, id, new, &plan.sources, stats)?;
    fired(stats, "prune");
    Ok(rebuilt)
}

/// A pruned control-flow node: its regions, which old operands it keeps (by index, in the
/// new order), its carry and xs counts, how many results it has, where each old result now
/// comes from, and the `scan` ys that are a const operand broadcast over the steps (result,
/// operand).
struct Plan {
    regions: Vec<Region>,
    operands: Vec<usize>,
    carries: usize,
    xs: usize,
    results: usize,
    sources: Vec<Source>,
    broadcast: Vec<(usize, usize)>,
}

/// In each region, makes every use of param `i` read param `j` when `dup[i]` is `Some(j)`.
fn merge_duplicates(regions: &mut [&mut Region], dup: &[Option<usize>]) {
    for (i, d) in dup.iter().enumerate() {
        if let Some(j) = *d {
            for r in regions.iter_mut() {
                let (from, to) = (r.params[i], r.params[j]);
                redirect(r, from, to);
            }
        }
    }
}

/// Constants of at most this many elements passed as consts are copied into the regions
/// (so simplify can fold with them there) and their params dropped.
pub(super) const SINK_LIMIT: usize = 16;

/// For each operand index `i` in `range` that is a constant of at most [`SINK_LIMIT`]
/// elements, makes every use of param `i` in each region read a copy of the constant
/// instead (the param is then unread, and pruning drops it).
fn sink_constants(
    g: &Graph,
    operands: &[NodeId],
    range: std::ops::Range<usize>,
    regions: &mut [&mut Region],
) -> Result<(), RegionError> {
    for i in range {
        let node = g.node(operands[i]);
        let Op::Constant(a) = &node.op else { continue };
        if a.len() > SINK_LIMIT {
            continue;
        }
        for r in regions.iter_mut() {
            let p = r.params[i];
            if r.graph.users(p).is_empty() && !r.results.contains(&p) {
                continue;
            }
            let k = r
                .graph
                .add_at(Op::Constant(a.clone()), &[], node.loc.clone())?;
            redirect(r, p, k);
        }
    }
    Ok(())
}

/// For each operand index in `range`, the earlier index in the same range passing the same
/// node, if any.
fn duplicates(operands: &[NodeId], range: std::ops::Range<usize>) -> Vec<Option<usize>> {
    let mut out = vec![None; operands.len()];
    for i in range.clone() {
        out[i] = (range.start..i).find(|&j| operands[j] == operands[i] && out[j].is_none());
    }
    out
}

/// The params of `region` that `roots` depend on.
fn reads(region: &Region, roots: &[NodeId]) -> Result<HashSet<NodeId>, RegionError> {
    Ok(region.graph.ancestors(roots)?.into_iter().collect())
}

/// `region` with the given results and params (in the new order), everything else the
/// results do not need removed.
fn rebuild(region: &Region, params: &[usize], results: Vec<NodeId>) -> Result<Region, RegionError> {
    let mut r = region.clone();
    r.results = results;
    let keep = params.iter().map(|&i| region.params[i]).collect();
    retain(&mut r, keep)?;
    Ok(r)
}

fn plan_scan(
    func: &Func,
    id: NodeId,
    body: RegionId,
    c: usize,
    x: usize,
    operands: &[NodeId],
) -> Result<Option<Plan>, PassError> {
    let mut r = region_of(&func.graph, id, body)?;
    let n = operands.len();
    if c + x > n || r.params.len() != n || r.results.len() < c {
        return Err(fail(id, "operands, params and results disagree"));
    }
    let nres = r.results.len();
    let Some(used) = used_results(func, id, nres) else {
        return Ok(None);
    };
    let mut dup = duplicates(operands, c..c + x);
    for (i, d) in duplicates(operands, c + x..n).into_iter().enumerate() {
        if i >= c + x {
            dup[i] = d;
        }
    }
    merge_duplicates(&mut [&mut r], &dup);
    sink_constants(&func.graph, operands, c + x..n, &mut [&mut r]).map_err(|m| fail(id, m))?;
    let passthrough: Vec<bool> = (0..c).map(|i| r.results[i] == r.params[i]).collect();
    // A y that is an x slice unchanged is the xs operand itself; a y that is a const is
    // that const broadcast over the steps.
    let y_is_x: Vec<Option<usize>> = (c..nres)
        .map(|k| (c..n).find(|&i| r.results[k] == r.params[i] && dup[i].is_none()))
        .collect();
    let mut keep: Vec<bool> = (0..nres)
        .map(|k| {
            used[k]
                && if k < c {
                    !passthrough[k]
                } else {
                    y_is_x[k - c].is_none()
                }
        })
        .collect();
    let read = loop {
        let roots: Vec<NodeId> = (0..nres)
            .filter(|&k| keep[k])
            .map(|k| r.results[k])
            .collect();
        let read = reads(&r, &roots).map_err(|m| fail(id, m))?;
        let mut grew = false;
        for i in 0..c {
            if !keep[i] && !passthrough[i] && read.contains(&r.params[i]) {
                keep[i] = true;
                grew = true;
            }
        }
        if !grew {
            break read;
        }
    };
    let carries: Vec<usize> = (0..c).filter(|&i| keep[i]).collect();
    let xs: Vec<usize> = (c..c + x)
        .filter(|&i| dup[i].is_none() && read.contains(&r.params[i]))
        .collect();
    let mut consts: Vec<usize> = (c + x..n)
        .filter(|&i| dup[i].is_none() && read.contains(&r.params[i]))
        .collect();
    consts.extend((0..c).filter(|&i| passthrough[i] && read.contains(&r.params[i])));
    let ys: Vec<usize> = (c..nres).filter(|&k| keep[k]).collect();

    let mut layout = carries.clone();
    layout.extend(&xs);
    layout.extend(&consts);
    let unchanged = layout == (0..n).collect::<Vec<_>>() && ys.len() == nres - c;
    if unchanged {
        return Ok(None);
    }
    let mut sources = Vec::with_capacity(nres);
    let mut broadcast = Vec::new();
    for k in 0..nres {
        sources.push(if k < c {
            match carries.iter().position(|&i| i == k) {
                Some(p) => Source::Result(p),
                None if passthrough[k] => Source::Node(operands[k]),
                None => Source::Dropped,
            }
        } else if let Some(i) = y_is_x[k - c] {
            if i < c + x {
                Source::Node(operands[i])
            } else if used[k] {
                broadcast.push((k, i));
                Source::Dropped
            } else {
                Source::Dropped
            }
        } else {
            match ys.iter().position(|&j| j == k) {
                Some(p) => Source::Result(carries.len() + p),
                None => Source::Dropped,
            }
        });
    }
    let results: Vec<NodeId> = carries.iter().chain(&ys).map(|&k| r.results[k]).collect();
    let count = results.len();
    let region = rebuild(&r, &layout, results).map_err(|m| fail(id, m))?;
    Ok(Some(Plan {
        regions: vec![region],
        operands: layout,
        carries: carries.len(),
        xs: xs.len(),
        results: count,
        sources,
        broadcast,
    }))
}

fn plan_while(
    func: &Func,
    id: NodeId,
    cond: RegionId,
    body: RegionId,
    c: usize,
    operands: &[NodeId],
) -> Result<Option<Plan>, PassError> {
    let mut rc = region_of(&func.graph, id, cond)?;
    let mut rb = region_of(&func.graph, id, body)?;
    let n = operands.len();
    if c > n || rc.params.len() != n || rb.params.len() != n || rb.results.len() != c {
        return Err(fail(id, "operands, params and results disagree"));
    }
    let Some(used) = used_results(func, id, c) else {
        return Ok(None);
    };
    let dup = duplicates(operands, c..n);
    merge_duplicates(&mut [&mut rc, &mut rb], &dup);
    sink_constants(&func.graph, operands, c..n, &mut [&mut rc, &mut rb])
        .map_err(|m| fail(id, m))?;
    let passthrough: Vec<bool> = (0..c).map(|i| rb.results[i] == rb.params[i]).collect();
    let cond_reads = reads(&rc, &rc.results.clone()).map_err(|m| fail(id, m))?;
    let mut keep: Vec<bool> = (0..c).map(|i| used[i] && !passthrough[i]).collect();
    let body_reads = loop {
        let roots: Vec<NodeId> = (0..c).filter(|&i| keep[i]).map(|i| rb.results[i]).collect();
        let read = reads(&rb, &roots).map_err(|m| fail(id, m))?;
        let mut grew = false;
        for i in 0..c {
            let needed = read.contains(&rb.params[i]) || cond_reads.contains(&rc.params[i]);
            if !keep[i] && !passthrough[i] && needed {
                keep[i] = true;
                grew = true;
            }
        }
        if !grew {
            break read;
        }
    };
    let needed =
        |i: usize| body_reads.contains(&rb.params[i]) || cond_reads.contains(&rc.params[i]);
    let carries: Vec<usize> = (0..c).filter(|&i| keep[i]).collect();
    let mut consts: Vec<usize> = (c..n).filter(|&i| dup[i].is_none() && needed(i)).collect();
    consts.extend((0..c).filter(|&i| passthrough[i] && needed(i)));
    let mut layout = carries.clone();
    layout.extend(&consts);
    if layout == (0..n).collect::<Vec<_>>() {
        return Ok(None);
    }
    let sources = (0..c)
        .map(|k| match carries.iter().position(|&i| i == k) {
            Some(p) => Source::Result(p),
            None if passthrough[k] => Source::Node(operands[k]),
            None => Source::Dropped,
        })
        .collect();
    let body_results: Vec<NodeId> = carries.iter().map(|&i| rb.results[i]).collect();
    let cond_results = rc.results.clone();
    let regions = vec![
        rebuild(&rc, &layout, cond_results).map_err(|m| fail(id, m))?,
        rebuild(&rb, &layout, body_results).map_err(|m| fail(id, m))?,
    ];
    Ok(Some(Plan {
        regions,
        operands: layout,
        carries: carries.len(),
        xs: 0,
        results: carries.len(),
        sources,
        broadcast: Vec::new(),
    }))
}

fn plan_cond(
    func: &Func,
    id: NodeId,
    then_branch: RegionId,
    else_branch: RegionId,
    operands: &[NodeId],
) -> Result<Option<Plan>, PassError> {
    let mut rt = region_of(&func.graph, id, then_branch)?;
    let mut re = region_of(&func.graph, id, else_branch)?;
    let n = operands.len();
    let nres = rt.results.len();
    if n == 0 || rt.params.len() != n - 1 || re.params.len() != n - 1 || re.results.len() != nres {
        return Err(fail(id, "operands, params and results disagree"));
    }
    let Some(used) = used_results(func, id, nres) else {
        return Ok(None);
    };
    // Operand i + 1 is branch param i.
    let dup = duplicates(&operands[1..], 0..n - 1);
    merge_duplicates(&mut [&mut rt, &mut re], &dup);
    sink_constants(
        &func.graph,
        &operands[1..],
        0..n - 1,
        &mut [&mut rt, &mut re],
    )
    .map_err(|m| fail(id, m))?;
    // A result that is the same argument in both branches is that argument.
    let same_arg: Vec<Option<usize>> = (0..nres)
        .map(|k| {
            (0..n - 1).find(|&i| {
                dup[i].is_none() && rt.results[k] == rt.params[i] && re.results[k] == re.params[i]
            })
        })
        .collect();
    let kept: Vec<usize> = (0..nres)
        .filter(|&k| used[k] && same_arg[k].is_none())
        .collect();
    let then_roots: Vec<NodeId> = kept.iter().map(|&k| rt.results[k]).collect();
    let else_roots: Vec<NodeId> = kept.iter().map(|&k| re.results[k]).collect();
    let then_reads = reads(&rt, &then_roots).map_err(|m| fail(id, m))?;
    let else_reads = reads(&re, &else_roots).map_err(|m| fail(id, m))?;
    let args: Vec<usize> = (0..n - 1)
        .filter(|&i| {
            dup[i].is_none()
                && (then_reads.contains(&rt.params[i]) || else_reads.contains(&re.params[i]))
        })
        .collect();
    if args.len() == n - 1 && kept.len() == nres {
        return Ok(None);
    }
    let sources = (0..nres)
        .map(|k| match (same_arg[k], kept.iter().position(|&j| j == k)) {
            (Some(i), _) => Source::Node(operands[i + 1]),
            (None, Some(p)) => Source::Result(p),
            (None, None) => Source::Dropped,
        })
        .collect();
    let regions = vec![
        rebuild(&rt, &args, then_roots).map_err(|m| fail(id, m))?,
        rebuild(&re, &args, else_roots).map_err(|m| fail(id, m))?,
    ];
    let mut layout = vec![0];
    layout.extend(args.iter().map(|&i| i + 1));
    Ok(Some(Plan {
        regions,
        operands: layout,
        carries: 0,
        xs: 0,
        results: kept.len(),
        sources,
        broadcast: Vec::new(),
    }))
}
