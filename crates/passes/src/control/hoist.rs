//! Loop-invariant code motion for `scan` and `while`: region nodes that depend only on
//! consts move before the loop as new consts (a nested `cond` or `scan` too, when nothing
//! in it can fail or hang), and `scan` body matrix products and reductions that depend
//! only on x slices and consts move before the scan (with the nodes they read) as one
//! batched node over all steps, a new xs.

use super::{PASS, ScanParts, fail, fired, region_of, scan_parts};
use crate::error::{PassError, RegionError};
use crate::func::{Func, PassStats};
use crate::region::{
    Source, copy_nodes, fresh_param, redirect, replace_control, replace_region, retain,
};
use kiln_ir::verify::MAX_REGION_DEPTH;
use kiln_ir::{Dim, Graph, Node, NodeId, Op, OpKind, Region, Shape, SliceAxis};
use std::collections::{HashMap, HashSet};

/// True if `node` of graph `g` may be computed before the loop: it cannot fail at run time
/// (the loop may run zero times, and then an error the loop would never have met must not
/// happen) and it cannot hang ([`Op::may_fail`] says both), and it is not fed by the
/// caller. A `cond` or `scan` qualifies when every node of its regions does.
pub(super) fn hoistable(g: &Graph, node: &Node) -> bool {
    hoistable_at(g, node, 0)
}

fn hoistable_at(g: &Graph, node: &Node, depth: usize) -> bool {
    if node.op.may_fail(node.dtype) {
        return false;
    }
    match node.op.kind() {
        OpKind::Fed => false,
        OpKind::Control => {
            depth < MAX_REGION_DEPTH
                && node.op.regions().iter().all(|&r| {
                    g.try_region(r).is_some_and(|region| {
                        region.graph.node_ids().into_iter().all(|n| {
                            let m = region.graph.node(n);
                            matches!(m.op, Op::Input { .. })
                                || hoistable_at(&region.graph, m, depth + 1)
                        })
                    })
                })
        }
        _ => true,
    }
}

/// True for ops whose batched form (a leading step axis added to every operand that varies
/// per step) computes each row exactly as the op computes one step.
pub(super) fn batchable(op: &Op) -> bool {
    op.kind() == OpKind::Elementwise
        || matches!(
            op,
            Op::MatMul
                | Op::Reshape(_)
                | Op::Permute(_)
                | Op::Expand(_)
                | Op::Slice(_)
                | Op::Flip { .. }
                | Op::Pad { .. }
        )
}

/// True for ops that only re-index their operand: fusion folds them into the index of
/// whatever reads them, so inside a loop they cost nothing, while hoisted they become a
/// buffer written before the loop (a weight's transpose, copied at every run); see
/// [`super::views`], which moves such views of loop consts into the loop.
pub(super) fn layout_only(op: &Op) -> bool {
    matches!(op, Op::Permute(_) | Op::Reshape(_) | Op::Expand(_))
}

/// The nodes of `r` that depend only on the params in `consts` (and on no other param),
/// and may be hoisted; the second set holds those that read at least one of those params.
fn invariant(
    r: &Region,
    consts: &HashSet<NodeId>,
) -> Result<(HashSet<NodeId>, HashSet<NodeId>), RegionError> {
    let mut inv = HashSet::new();
    let mut touches = HashSet::new();
    for n in r.graph.topo_order()? {
        let node = r.graph.node(n);
        let ops = r.graph.operands(n);
        if matches!(node.op, Op::Input { .. }) {
            if consts.contains(&n) {
                inv.insert(n);
                touches.insert(n);
            }
        } else if hoistable(&r.graph, node) && ops.iter().all(|o| inv.contains(o)) {
            inv.insert(n);
            if ops.iter().any(|o| touches.contains(o)) {
                touches.insert(n);
            }
        }
    }
    Ok((inv, touches))
}

/// The nodes of `set` read by a node outside it or returned by the region.
fn frontier(r: &Region, set: &HashSet<NodeId>) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = set
        .iter()
        .copied()
        .filter(|&n| r.results.contains(&n) || r.graph.users(n).iter().any(|u| !set.contains(u)))
        .collect();
    out.sort_unstable();
    out
}

/// Nodes of `r` that `roots` depend on, in topological order, params excluded.
fn needed(r: &Region, roots: &[NodeId]) -> Result<Vec<NodeId>, RegionError> {
    let params: HashSet<NodeId> = r.params.iter().copied().collect();
    Ok(r.graph
        .ancestors(roots)?
        .into_iter()
        .filter(|n| !params.contains(n))
        .collect())
}

/// Replaces each of `nodes` in `r` by a new param of its type (returned in order); the
/// caller places the params.
fn cut(r: &mut Region, nodes: &[NodeId], hint: &str) -> Vec<NodeId> {
    let mut params = Vec::with_capacity(nodes.len());
    for &n in nodes {
        let (dtype, shape) = {
            let node = r.graph.node(n);
            (node.dtype, node.shape.clone())
        };
        let p = fresh_param(r, hint, dtype, shape);
        redirect(r, n, p);
        params.push(p);
    }
    params
}

/// Hoists the const-only nodes of one region: copies them before the loop (params read as
/// `operands`) and cuts them out of `r`. Returns the new consts' outer nodes and params.
fn hoist_region(
    g: &mut Graph,
    r: &mut Region,
    consts: &HashSet<NodeId>,
    operands: &[NodeId],
) -> Result<(Vec<NodeId>, Vec<NodeId>), RegionError> {
    let (inv, touches) = invariant(r, consts)?;
    // Layout ops of consts stay (and are copied out only where a hoisted node reads them).
    let mut free: HashSet<NodeId> = consts.clone();
    for n in r.graph.topo_order()? {
        if layout_only(&r.graph.node(n).op) && r.graph.operands(n).iter().all(|o| free.contains(o))
        {
            free.insert(n);
        }
    }
    let moving: HashSet<NodeId> = inv
        .iter()
        .copied()
        .filter(|n| touches.contains(n) && !free.contains(n))
        .collect();
    let front: Vec<NodeId> = frontier(r, &moving);
    if front.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut map: HashMap<NodeId, NodeId> = r
        .params
        .iter()
        .copied()
        .zip(operands.iter().copied())
        .collect();
    let order = needed(r, &front)?;
    copy_nodes(g, &r.graph, &order, &mut map)?;
    let outer = front
        .iter()
        .map(|f| map.get(f).copied().ok_or(RegionError::ResultNotCopied(*f)))
        .collect::<Result<Vec<NodeId>, RegionError>>()?;
    let params = cut(r, &front, "hoisted");
    Ok((outer, params))
}

/// Hoists the const-only nodes out of a `scan` body or out of both regions of a `while`.
/// Returns the node's id afterwards.
pub(super) fn hoist_invariants(
    func: &mut Func,
    id: NodeId,
    stats: &mut PassStats,
) -> Result<NodeId, PassError> {
    let op = func.graph.node(id).op.clone();
    let mut operands = func.graph.operands(id);
    let Some(first_const) = first_const(&op) else {
        return Ok(id);
    };
    let mut regions = loop_regions(func, id, &op, &operands)?;
    let before = func.graph.len();
    let mut new_consts: Vec<(usize, Vec<NodeId>, Vec<NodeId>)> = Vec::new();
    for (k, region) in regions.iter_mut().enumerate() {
        let consts: HashSet<NodeId> = region.params[first_const..].iter().copied().collect();
        let (outer, params) =
            hoist_region(&mut func.graph, region, &consts, &operands).map_err(|m| fail(id, m))?;
        if !outer.is_empty() {
            new_consts.push((k, outer, params));
        }
    }
    if new_consts.is_empty() {
        return Ok(id);
    }
    // Every region takes every operand: a const hoisted from one region is an unused param
    // of the others.
    for (k, outer, params) in new_consts {
        for (i, &o) in outer.iter().enumerate() {
            operands.push(o);
            for (j, region) in regions.iter_mut().enumerate() {
                let p = if j == k {
                    params[i]
                } else {
                    let node = func.graph.node(o);
                    fresh_param(region, "hoisted", node.dtype, node.shape.clone())
                };
                region.params.push(p);
            }
        }
    }
    rebuild_control(
        func,
        id,
        (op, operands),
        regions,
        before,
        stats,
        "hoist_invariant",
    )
}

/// The index of the first const operand of a `scan` (after its carries and xs) or a
/// `while` (after its carries); `None` for other ops.
pub(super) fn first_const(op: &Op) -> Option<usize> {
    match op {
        Op::Scan { carries, xs, .. } => Some(carries + xs),
        Op::While { carries, .. } => Some(*carries),
        _ => None,
    }
}

/// Copies of the regions of loop node `id` (`op` over `operands`), each checked to take one
/// param per operand.
pub(super) fn loop_regions(
    func: &Func,
    id: NodeId,
    op: &Op,
    operands: &[NodeId],
) -> Result<Vec<Region>, PassError> {
    let start = first_const(op).ok_or_else(|| fail(id, "not a loop"))?;
    op.regions()
        .into_iter()
        .map(|r| {
            let region = region_of(&func.graph, id, r)?;
            if region.params.len() != operands.len() || start > operands.len() {
                return Err(fail(id, "operands and region params disagree"));
            }
            Ok(region)
        })
        .collect()
}

/// Replaces control-flow node `id` by `op` over `operands` with `regions` (in `op`'s region
/// order, each keeping only its `params` and what its results need) and the same results,
/// counting the graph nodes added since `before` and one firing of `rule`.
pub(super) fn rebuild_control(
    func: &mut Func,
    id: NodeId,
    (mut op, operands): (Op, Vec<NodeId>),
    mut regions: Vec<Region>,
    before: usize,
    stats: &mut PassStats,
    rule: &'static str,
) -> Result<NodeId, PassError> {
    let count = result_count(&func.graph, id)?;
    for region in &mut regions {
        let keep = region.params.clone();
        retain(region, keep).map_err(|m| fail(id, m))?;
    }
    let mut new_regions = regions.into_iter();
    for r in op.regions_mut() {
        let region = new_regions
            .next()
            .ok_or_else(|| fail(id, "region count changed"))?;
        *r = replace_region(&mut func.graph, id, *r, region);
    }
    stats.added += func.graph.len().saturating_sub(before);
    let sources: Vec<Source> = (0..count).map(Source::Result).collect();
    let new = replace_control(func, PASS, id, Some((op, operands)), &sources, stats)?
        .ok_or_else(|| fail(id, "the rebuilt node is missing"))?;
    fired(stats, rule);
    Ok(new)
}

/// How many results control-flow node `id` has (read before its regions are replaced).
pub(super) fn result_count(g: &Graph, id: NodeId) -> Result<usize, PassError> {
    g.result_types(id)
        .map(|t| t.len())
        .ok_or_else(|| fail(id, "the node does not type"))
}

/// How a body node varies over the steps of a scan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Varies {
    /// The same every step (consts and what only they feed).
    Never,
    /// Only with the x slices: computable for all steps up front.
    WithX,
    /// With the carries, or through an op that cannot move.
    WithCarry,
}

/// Moves the contractions and reductions of a `scan` body that depend on x slices and
/// consts but not on carries, and the nodes they read, before the scan, each computed once
/// for all steps with a leading step axis, and passes
/// the frontier of them in as new xs. An expand read by the rest of the body stays there (a
/// broadcast is cheaper per step than materialised for every step). Returns the node's id
/// afterwards.
pub(super) fn batch_xs(
    func: &mut Func,
    id: NodeId,
    stats: &mut PassStats,
) -> Result<NodeId, PassError> {
    let Some(ScanParts {
        body,
        length,
        carries: c,
        xs: x,
        reverse,
        mut operands,
        region: mut r,
    }) = scan_parts(func, id)?
    else {
        return Ok(id);
    };
    let order = r.graph.topo_order().map_err(|e| fail(id, e.to_string()))?;
    let mut varies: HashMap<NodeId, Varies> = HashMap::new();
    for &n in &order {
        let node = r.graph.node(n);
        let v = if let Some(i) = r.params.iter().position(|&p| p == n) {
            match i {
                i if i < c => Varies::WithCarry,
                i if i < c + x => Varies::WithX,
                _ => Varies::Never,
            }
        } else {
            let ops: Vec<Varies> = r
                .graph
                .operands(n)
                .iter()
                .map(|o| varies.get(o).copied().unwrap_or(Varies::WithCarry))
                .collect();
            if !hoistable(&r.graph, node) || ops.contains(&Varies::WithCarry) {
                Varies::WithCarry
            } else if ops.contains(&Varies::WithX) {
                if batchable(&node.op) {
                    Varies::WithX
                } else {
                    Varies::WithCarry
                }
            } else {
                Varies::Never
            }
        };
        varies.insert(n, v);
    }
    let params: HashSet<NodeId> = r.params.iter().copied().collect();
    // Only contractions and reductions move, with the nodes they read: one node over all
    // steps replaces a kernel per step. Elementwise work alone stays, fused into the
    // step's kernels; batched it would be a pass over a `[T, ...]` buffer written before
    // the loop and read back at every step, which saves no kernel on any backend.
    let anchors: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|n| {
            varies[n] == Varies::WithX
                && !params.contains(n)
                && matches!(
                    r.graph.node(*n).op.kind(),
                    OpKind::Contraction | OpKind::Reduction
                )
        })
        .collect();
    let moving: HashSet<NodeId> = r
        .graph
        .ancestors(&anchors)
        .map_err(|e| fail(id, e.to_string()))?
        .into_iter()
        .filter(|n| varies[n] == Varies::WithX && !params.contains(n))
        .collect();
    let front: Vec<NodeId> = frontier(&r, &moving)
        .into_iter()
        .filter(|&n| !matches!(r.graph.node(n).op, Op::Expand(_)))
        .collect();
    if front.is_empty() {
        return Ok(id);
    }
    let count = result_count(&func.graph, id)?;
    let before = func.graph.len();
    // Outer nodes: x params read their xs (batched), const params their operand.
    let mut batched: HashMap<NodeId, (NodeId, bool)> = HashMap::new();
    for (i, &p) in r.params.iter().enumerate().skip(c) {
        batched.insert(p, (operands[i], i < c + x));
    }
    let needed_nodes = needed(&r, &front).map_err(|m| fail(id, m))?;
    let fixed: Vec<NodeId> = needed_nodes
        .iter()
        .copied()
        .filter(|n| !moving.contains(n))
        .collect();
    if let Some(n) = fixed.iter().find(|n| varies[n] != Varies::Never) {
        return Err(fail(id, format!("{n} varies per step but does not move")));
    }
    let mut map: HashMap<NodeId, NodeId> = batched.iter().map(|(&k, &(v, _))| (k, v)).collect();
    copy_nodes(&mut func.graph, &r.graph, &fixed, &mut map).map_err(|m| fail(id, m))?;
    for n in fixed {
        batched.insert(n, (map[&n], false));
    }
    for n in needed_nodes.into_iter().filter(|n| moving.contains(n)) {
        let node = r.graph.node(n).clone();
        let args = r
            .graph
            .operands(n)
            .iter()
            .map(|o| {
                let (outer, is_batched) = *batched
                    .get(o)
                    .ok_or_else(|| fail(id, format!("operand {o} of {n} was not moved")))?;
                Ok((outer, is_batched, r.graph.node(*o).shape.clone()))
            })
            .collect::<Result<Vec<_>, PassError>>()?;
        let b = batch_node(&mut func.graph, &node, &args, &length)
            .map_err(|m| fail(id, format!("batching {n}: {m}")))?;
        batched.insert(n, (b, true));
    }
    let new_xs: Vec<NodeId> = front.iter().map(|f| batched[f].0).collect();
    let new_params = cut(&mut r, &front, "batched");
    let at = c + x;
    for (k, (p, o)) in new_params.into_iter().zip(new_xs).enumerate() {
        r.params.insert(at + k, p);
        operands.insert(at + k, o);
    }
    let keep = r.params.clone();
    retain(&mut r, keep).map_err(|m| fail(id, m))?;
    let new_body = replace_region(&mut func.graph, id, body, r);
    let new_op = Op::Scan {
        body: new_body,
        length,
        carries: c,
        xs: x + front.len(),
        reverse,
    };
    stats.added += func.graph.len().saturating_sub(before);
    let sources: Vec<Source> = (0..count).map(Source::Result).collect();
    let new = replace_control(func, PASS, id, Some((new_op, operands)), &sources, stats)?
        .ok_or_else(|| fail(id, "the rebuilt node is missing"))?;
    fired(stats, "hoist_batched");
    Ok(new)
}

/// `[t, 1, ..., 1, s...]`: a batched operand whose step shape `s` has lower rank than the
/// op's step result, reshaped so the step axis stays leading under right-aligned
/// broadcasting.
fn lift(
    g: &mut Graph,
    o: NodeId,
    step: &Shape,
    rank: usize,
    t: &Dim,
) -> Result<NodeId, RegionError> {
    if step.rank() >= rank {
        return Ok(o);
    }
    let mut dims = vec![t.clone()];
    dims.extend(std::iter::repeat_n(Dim::known(1), rank - step.rank()));
    dims.extend(step.0.iter().cloned());
    Ok(g.add(Op::Reshape(Shape(dims)), &[o])?)
}

/// Adds the batched form of body node `node` to `g`: `args` are its operands' outer nodes,
/// whether each is batched (a leading axis of `t` steps) and each one's step shape. The
/// result is `[t, step shape...]` and its row `i` equals the node's value at step `i`.
pub(super) fn batch_node(
    g: &mut Graph,
    node: &Node,
    args: &[(NodeId, bool, Shape)],
    t: &Dim,
) -> Result<NodeId, RegionError> {
    let lead = |s: &Shape| {
        let mut dims = vec![t.clone()];
        dims.extend(s.0.iter().cloned());
        Shape(dims)
    };
    let pointwise = node.op.kind() == OpKind::Elementwise || node.op == Op::MatMul;
    if !pointwise && args.iter().any(|a| !a.1) {
        return Err(RegionError::Unbatched { op: node.op.name() });
    }
    let rank = node.shape.rank();
    let mut ids = Vec::with_capacity(args.len());
    let op = match &node.op {
        _ if pointwise => {
            for (o, is_batched, step) in args {
                ids.push(if *is_batched {
                    lift(g, *o, step, rank, t)?
                } else {
                    *o
                });
            }
            node.op.clone()
        }
        Op::Expand(s) => {
            let (o, _, step) = args.first().ok_or(RegionError::Arity {
                params: 1,
                given: 0,
            })?;
            ids.push(lift(g, *o, step, s.rank(), t)?);
            Op::Expand(lead(s))
        }
        other => {
            ids.extend(args.iter().map(|a| a.0));
            match other {
                Op::Reshape(s) => Op::Reshape(lead(s)),
                Op::Permute(p) => {
                    let mut q = vec![0];
                    q.extend(p.iter().map(|a| a + 1));
                    Op::Permute(q)
                }
                Op::Slice(axes) => {
                    let mut all = vec![SliceAxis {
                        start: 0,
                        stop: u64::MAX,
                        step: 1,
                    }];
                    all.extend(axes.iter().copied());
                    Op::Slice(all)
                }
                Op::Flip { axes } => Op::Flip {
                    axes: axes.iter().map(|a| a + 1).collect(),
                },
                Op::Reduce { op, axes, keepdim } => Op::Reduce {
                    op: *op,
                    axes: axes.iter().map(|a| a + 1).collect(),
                    keepdim: *keepdim,
                },
                Op::Pad { pads, value } => {
                    let mut p = vec![(0, 0)];
                    p.extend(pads.iter().copied());
                    Op::Pad {
                        pads: p,
                        value: *value,
                    }
                }
                other => return Err(RegionError::NoBatchedForm { op: other.name() }),
            }
        }
    };
    let b = g.add_at(op, &ids, node.loc.clone())?;
    let got = g.node(b);
    if got.dtype != node.dtype || got.shape != lead(&node.shape) {
        return Err(RegionError::BatchedType {
            got: format!("{}{}", got.dtype, got.shape),
            want: format!("{}{}", node.dtype, lead(&node.shape)),
        });
    }
    Ok(b)
}
