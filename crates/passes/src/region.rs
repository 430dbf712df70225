//! Regions seen by the passes: running a pass on every body of a function (recursively,
//! regions nest), copying region nodes into another graph (inlining and hoisting), and
//! replacing a control-flow node together with the `get` nodes that read its results.
//!
//! A region runs as a [`Func`] whose graph is the body and whose outputs are the region's
//! results. The region's params (its `input` nodes) stay as they are: a pass that runs
//! through [`everywhere`] keeps every input and the type of every output, so the region's
//! signature, fixed by the op that runs it, never changes. Rewrites that change a signature
//! (dropping a parameter, hoisting a value out of a loop) build a new region (stored over
//! the old one when nothing else runs it, [`replace_region`]) and a new control-flow node
//! instead, through [`replace_control`].

use crate::error::{PassError, RegionError};
use crate::func::{Func, PassStats};
use kiln_ir::verify::MAX_REGION_DEPTH;
use kiln_ir::{DType, Graph, NodeId, Op, OpKind, Region, RegionId, Shape};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Runs `pass` on `func`, then on the function of every region a live node of its graph
/// runs, recursively through nested regions, and sums the statistics. Fails with
/// [`PassError::RegionDepth`] when regions nest deeper than [`MAX_REGION_DEPTH`].
pub fn everywhere(
    name: &'static str,
    func: &mut Func,
    pass: &mut dyn FnMut(&mut Func) -> Result<PassStats, PassError>,
) -> Result<PassStats, PassError> {
    everywhere_at(name, func, pass, 0)
}

fn everywhere_at(
    name: &'static str,
    func: &mut Func,
    pass: &mut dyn FnMut(&mut Func) -> Result<PassStats, PassError>,
    depth: usize,
) -> Result<PassStats, PassError> {
    let mut stats = pass(func)?;
    let used = used_regions(&func.graph);
    if !used.is_empty() && depth >= MAX_REGION_DEPTH {
        return Err(PassError::RegionDepth {
            pass: name,
            max: MAX_REGION_DEPTH,
        });
    }
    for r in used {
        let s = with_region(&mut func.graph, r, |f| {
            everywhere_at(name, f, &mut *pass, depth + 1)
        })?;
        stats.absorb(&s);
    }
    Ok(stats)
}

/// The regions run by live nodes of `g` that exist in its region table, each once, sorted.
pub fn used_regions(g: &Graph) -> Vec<RegionId> {
    let set: BTreeSet<RegionId> = g
        .node_ids()
        .into_iter()
        .flat_map(|n| g.node(n).op.regions())
        .filter(|&r| g.try_region(r).is_some())
        .collect();
    set.into_iter().collect()
}

/// Runs `f` on region `id` of `g` as a [`Func`] (the body, returning the results) and stores
/// the rewritten body and results back; the params are kept. The region must exist.
pub fn with_region<T>(
    g: &mut Graph,
    id: RegionId,
    f: impl FnOnce(&mut Func) -> Result<T, PassError>,
) -> Result<T, PassError> {
    let Region {
        graph,
        params,
        results,
    } = std::mem::take(g.region_mut(id));
    let mut func = Func {
        graph,
        outputs: results,
    };
    let out = f(&mut func);
    *g.region_mut(id) = Region {
        graph: func.graph,
        params,
        results: func.outputs,
    };
    out
}

/// Empties every region of `g` that no live node runs (they are left behind when a
/// control-flow node is removed or rebuilt; ids stay valid, the bodies are released).
/// Returns how many were emptied.
pub fn clear_unused_regions(g: &mut Graph) -> usize {
    let used: HashSet<RegionId> = used_regions(g).into_iter().collect();
    let mut cleared = 0;
    for i in 0..g.regions().len() {
        let id = RegionId(u32::try_from(i).unwrap_or(u32::MAX));
        let r = &g.regions()[i];
        let empty = r.graph.is_empty() && r.params.is_empty() && r.results.is_empty();
        if !used.contains(&id) && !empty {
            *g.region_mut(id) = Region::default();
            cleared += 1;
        }
    }
    cleared
}

/// Stores `region` as the new body of `old`, a region of control-flow node `owner` that is
/// about to be rebuilt: in place when no other live node runs `old` and `owner` runs it
/// once (so rebuilding leaves no unused region behind), else as a new region. Returns the
/// id to use.
pub fn replace_region(g: &mut Graph, owner: NodeId, old: RegionId, region: Region) -> RegionId {
    let runs = |n: NodeId| g.node(n).op.regions().iter().filter(|&&r| r == old).count();
    let shared = runs(owner) > 1 || g.node_ids().into_iter().any(|n| n != owner && runs(n) > 0);
    if shared || g.try_region(old).is_none() {
        g.add_region(region)
    } else {
        *g.region_mut(old) = region;
        old
    }
}

/// Copies `nodes` of `src` (in topological order; every operand either listed earlier or
/// already in `map`) into `dst`, recording each copy in `map`. Nodes are re-typed as they
/// are added; the regions of copied control-flow nodes are copied into `dst`'s region table.
/// An `input` that is not in `map` cannot be copied (a region reads only its params).
pub fn copy_nodes(
    dst: &mut Graph,
    src: &Graph,
    nodes: &[NodeId],
    map: &mut HashMap<NodeId, NodeId>,
) -> Result<(), RegionError> {
    for &n in nodes {
        if map.contains_key(&n) {
            continue;
        }
        let node = src.get(n).ok_or(RegionError::UnknownNode(n))?;
        if matches!(node.op, Op::Input { .. }) {
            return Err(RegionError::UnboundInput(n));
        }
        let mut op = node.op.clone();
        for r in op.regions_mut() {
            let body = src.try_region(*r).ok_or(RegionError::UnknownRegion(*r))?;
            *r = dst.add_region(body.clone());
        }
        let operands = src
            .operands(n)
            .iter()
            .map(|o| {
                map.get(o).copied().ok_or(RegionError::NotCopied {
                    node: n,
                    operand: *o,
                })
            })
            .collect::<Result<Vec<NodeId>, RegionError>>()?;
        let copy = dst
            .add_at(op, &operands, node.loc.clone())
            .map_err(|e| RegionError::Copy {
                node: n,
                source: Box::new(e),
            })?;
        map.insert(n, copy);
    }
    Ok(())
}

/// Copies everything `region`'s results depend on into `dst`, with param `i` read as
/// `args[i]`, and returns the copies of the results (inlining one run of the region).
pub fn inline(
    dst: &mut Graph,
    region: &Region,
    args: &[NodeId],
) -> Result<Vec<NodeId>, RegionError> {
    if region.params.len() != args.len() {
        return Err(RegionError::Arity {
            params: region.params.len(),
            given: args.len(),
        });
    }
    let mut map: HashMap<NodeId, NodeId> = region
        .params
        .iter()
        .copied()
        .zip(args.iter().copied())
        .collect();
    let order = region.graph.ancestors(&region.results)?;
    copy_nodes(dst, &region.graph, &order, &mut map)?;
    region
        .results
        .iter()
        .map(|r| map.get(r).copied().ok_or(RegionError::ResultNotCopied(*r)))
        .collect()
}

/// Adds an `input` node of the given type to `region`'s graph under a name no other input
/// of it uses (`hint`, `hint.1`, ...). The caller places it in `params`.
pub fn fresh_param(region: &mut Region, hint: &str, dtype: DType, shape: Shape) -> NodeId {
    let taken: HashSet<String> = region
        .graph
        .inputs()
        .into_iter()
        .map(|(_, name)| name.to_string())
        .collect();
    let mut name = hint.to_string();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{hint}.{k}");
        k += 1;
    }
    let node = kiln_ir::Node {
        op: Op::Input {
            name,
            dtype,
            shape: shape.clone(),
        },
        dtype,
        shape,
        loc: None,
    };
    region.graph.add_unchecked(node, &[])
}

/// Makes every use of `from` in `region`, its results included, read `to` instead.
pub fn redirect(region: &mut Region, from: NodeId, to: NodeId) {
    region.graph.replace_all_uses(from, to);
    for r in &mut region.results {
        if *r == from {
            *r = to;
        }
    }
}

/// Removes from `region`'s graph every node its results do not depend on, params included,
/// except the params listed in `keep`. The region's `params` become `keep`.
pub fn retain(region: &mut Region, keep: Vec<NodeId>) -> Result<usize, RegionError> {
    let live: HashSet<NodeId> = region
        .graph
        .ancestors(&region.results)?
        .into_iter()
        .chain(keep.iter().copied())
        .collect();
    let mut removed = 0;
    for n in region.graph.node_ids() {
        if !live.contains(&n) {
            region.graph.remove(n);
            removed += 1;
        }
    }
    region.params = keep;
    Ok(removed)
}

/// The nodes of region graph `g` that depend on one of `roots` (the roots included).
pub fn dependents(g: &Graph, roots: &[NodeId]) -> Result<HashSet<NodeId>, RegionError> {
    let mut out: HashSet<NodeId> = roots.iter().copied().collect();
    for n in g.topo_order()? {
        if !out.contains(&n) && g.operands(n).iter().any(|o| out.contains(o)) {
            out.insert(n);
        }
    }
    Ok(out)
}

/// Where a result of a rebuilt control-flow node comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Result `i` of the new node.
    Result(usize),
    /// An existing node of the enclosing graph.
    Node(NodeId),
    /// Nothing: the result is unused (its `get` nodes have no users and are not outputs).
    Dropped,
}

/// The `get` nodes reading control-flow node `id`, or `None` if something else reads it
/// or it is an output (then passes leave the node alone).
pub fn gets(func: &Func, id: NodeId) -> Option<Vec<(NodeId, usize)>> {
    if func.is_output(id) {
        return None;
    }
    func.graph
        .users(id)
        .into_iter()
        .map(|u| match func.graph.node(u).op {
            Op::Get { index } => Some((u, index)),
            _ => None,
        })
        .collect()
}

/// For each of the `n` results of control-flow node `id`, whether some `get` of it is read
/// (has a user or is an output). `None` when [`gets`] is.
pub fn used_results(func: &Func, id: NodeId, n: usize) -> Option<Vec<bool>> {
    let mut used = vec![false; n];
    for (g, i) in gets(func, id)? {
        if i < n && (func.is_output(g) || !func.graph.users(g).is_empty()) {
            used[i] = true;
        }
    }
    Some(used)
}

/// Replaces control-flow node `old` (read only by `get` nodes) by `new` (an op and its
/// operands, or none when every result comes from elsewhere): every `get` of result `i` is
/// redirected as `sources[i]` says and removed, then `old` is removed. Returns the new
/// node's id. Fails without changing anything visible if a `get` of a [`Source::Dropped`]
/// result is still read; fails if the new node does not type (a bug in the caller).
pub fn replace_control(
    func: &mut Func,
    pass: &'static str,
    old: NodeId,
    new: Option<(Op, Vec<NodeId>)>,
    sources: &[Source],
    stats: &mut PassStats,
) -> Result<Option<NodeId>, PassError> {
    let fail = |message: String| PassError::Control {
        pass,
        node: old,
        message,
    };
    let readers = gets(func, old).ok_or_else(|| fail("read by something other than get".into()))?;
    for &(g, i) in &readers {
        let read = func.is_output(g) || !func.graph.users(g).is_empty();
        match sources.get(i) {
            None => return Err(fail(format!("{g} reads result {i}, which has no source"))),
            Some(Source::Dropped) if read => {
                return Err(fail(format!("result {i} is dropped but {g} is read")));
            }
            Some(Source::Result(_)) if new.is_none() => {
                return Err(fail(format!("result {i} maps to a node that is not built")));
            }
            Some(&Source::Node(n)) => {
                let same = func.graph.get(n).is_some_and(|m| {
                    let r = func.graph.node(g);
                    (m.dtype, &m.shape) == (r.dtype, &r.shape)
                });
                if !same {
                    return Err(fail(format!(
                        "result {i} maps to {n}, which is not a node of its type"
                    )));
                }
            }
            _ => {}
        }
    }
    let loc = func.graph.node(old).loc.clone();
    let new_id = match new {
        Some((op, operands)) => {
            debug_assert!(op.kind() == OpKind::Control);
            stats.added += 1;
            Some(
                func.graph
                    .add_at(op, &operands, loc.clone())
                    .map_err(|e| fail(format!("the rebuilt node does not type: {e}")))?,
            )
        }
        None => None,
    };
    for (g, i) in readers {
        match sources[i] {
            Source::Result(j) => {
                let Some(n) = new_id else {
                    return Err(fail(format!("result {i} maps to a node that is not built")));
                };
                let ng = func
                    .graph
                    .add_at(Op::Get { index: j }, &[n], loc.clone())
                    .map_err(|e| fail(format!("get {j} of the rebuilt node: {e}")))?;
                stats.added += 1;
                func.replace(g, ng);
            }
            Source::Node(n) => func.replace(g, n),
            Source::Dropped => {}
        }
        func.graph.remove(g);
        stats.removed += 1;
    }
    func.graph.remove(old);
    stats.removed += 1;
    stats.rewritten += 1;
    Ok(new_id)
}
