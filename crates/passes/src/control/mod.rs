//! The `control` pass: control-flow optimisation of `cond`, `scan` and `while` nodes, in the
//! function and (recursively) in every region.
//!
//! Each control-flow node read only by `get` nodes goes through, in order:
//!
//! 1. **Static control flow** (`fixed.rs`): a `cond` whose predicate is a constant (or whose
//!    branches are one region) becomes the chosen branch inlined; a `scan` of known length 0
//!    becomes its initial carries and empty ys; a `scan` of known length 1 becomes its body
//!    inlined once (x rows and ys reshaped); a `while` whose condition returns the constant
//!    `false` becomes its initial carries.
//! 2. **Pruning** (`prune.rs`): results no `get` reads are dropped from the regions; carries
//!    whose final value is unread and on which no kept result (nor a `while` condition)
//!    depends are dropped; a carry the body returns unchanged becomes a const (its final
//!    value is the initial one); operands passed twice become one; a constant of at most
//!    16 elements passed as a const (a `cond` argument) is copied into the regions, where
//!    simplify folds with it; params no kept result reads are dropped with their operands;
//!    a `scan` y that is an x slice is the xs operand itself, one that is a const is that
//!    const broadcast over the steps, and a `cond` result that is the same argument in
//!    both branches is that argument.
//! 3. **View sinking** (`views.rs`): a const that is a `permute`, `reshape` or `expand` of
//!    an outer value is passed as that value and the view applied in the regions, where
//!    fusion folds it into the index of its readers (a weight's transpose is not copied).
//! 4. **Loop-invariant code motion** (`hoist.rs`): nodes of a `scan` or `while` region that
//!    depend only on consts are computed once before the loop and passed in as new consts
//!    (layout views of consts stay: they cost nothing in the loop);
//!    matrix products and reductions of a `scan` body that depend only on x slices and
//!    consts (not on carries), with the nodes they read, are computed for all steps at
//!    once, as one batched node over a leading length axis, before the scan and passed in
//!    as new xs (elementwise work alone stays in the loop, fused into the step's kernels).
//! 5. **Accumulator sinking** (`sink.rs`, only with [`ControlOptions::reassociate`]): a
//!    `scan` carry updated as `acc + v` (the const-cotangent accumulators of a reverse
//!    scan) leaves the loop; `v` is computed for all steps after it and summed over the
//!    steps, a sum of per-step matrix products as one matrix product.
//!
//! Every rewrite but accumulator sinking keeps values bit for bit: it moves or copies nodes
//! without changing their arithmetic (batched nodes compute each row exactly as the body
//! computed it). Sinking reassociates a sum over the steps, as a matrix product's blocking
//! reassociates its inner products. Rewrites
//! build a new control-flow node ([`crate::region::replace_control`]) whose regions are
//! stored over the old ones unless another node runs them too
//! ([`crate::region::replace_region`]). Hoisted nodes run even when the loop
//! runs zero times, so nodes that can fail at run time (integer division and remainder,
//! `gather`, `scatter_add`) and `while` nodes (a `while` may not terminate) are never
//! hoisted; a nested `cond` or `scan` is hoisted only when every node of its regions could
//! be.
//!
//! It assumes, like [`crate::dce`], that loops terminate: a loop whose results are all
//! unread is removed.

mod fixed;
mod hoist;
mod prune;
mod sink;
mod views;

use crate::error::PassError;
use crate::func::{Func, PassStats};
use kiln_ir::OpKind;

/// The pass name used in errors and statistics.
const PASS: &str = "control";

/// Settings of the control pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlOptions {
    /// Allow rewrites that reassociate a floating-point sum (accumulator sinking). Off,
    /// every rewrite keeps values bit for bit. On by default.
    pub reassociate: bool,
}

impl Default for ControlOptions {
    fn default() -> ControlOptions {
        ControlOptions { reassociate: true }
    }
}

/// Optimises every control-flow node of the function and of its regions with the default
/// [`ControlOptions`] (see the module docs).
pub fn control(func: &mut Func) -> Result<PassStats, PassError> {
    control_with(func, &ControlOptions::default())
}

/// Optimises every control-flow node of the function and of its regions (see the module
/// docs). Rules fired are counted under `cond_static`, `scan_length_0`, `scan_length_1`,
/// `while_false`, `prune`, `sink_view`, `hoist_invariant`, `hoist_batched` and
/// `sink_accumulator`.
pub fn control_with(func: &mut Func, opts: &ControlOptions) -> Result<PassStats, PassError> {
    crate::region::everywhere(PASS, func, &mut |f| control_graph(f, opts))
}

/// [`control`] on the function's own graph: when it has control-flow nodes, dead nodes are
/// removed first (pruning reads which results are used), then every control-flow node is
/// optimised in topological order.
fn control_graph(func: &mut Func, opts: &ControlOptions) -> Result<PassStats, PassError> {
    func.check_outputs(PASS)?;
    let g = &func.graph;
    if !g
        .node_ids()
        .iter()
        .any(|&n| g.node(n).op.kind() == OpKind::Control)
    {
        return Ok(PassStats::default());
    }
    let mut stats = crate::dce::dce_graph(func)?;
    stats.visited = 0;
    let order = func
        .graph
        .topo_order()
        .map_err(|e| PassError::graph(PASS, e))?;
    for id in order {
        let is_control = func
            .graph
            .get(id)
            .is_some_and(|n| n.op.kind() == OpKind::Control);
        if !is_control || crate::region::gets(func, id).is_none() {
            continue;
        }
        stats.visited += 1;
        if fixed::inline_static(func, id, &mut stats)? {
            continue;
        }
        let Some(id) = prune::prune(func, id, &mut stats)? else {
            continue;
        };
        let id = views::sink_views(func, id, &mut stats)?;
        let id = hoist::hoist_invariants(func, id, &mut stats)?;
        let id = hoist::batch_xs(func, id, &mut stats)?;
        if opts.reassociate {
            sink::sink_accumulators(func, id, &mut stats)?;
        }
    }
    Ok(stats)
}

/// Counts one firing of `rule`.
fn fired(stats: &mut PassStats, rule: &'static str) {
    *stats.rules.entry(rule).or_insert(0) += 1;
}

/// A copy of region `r` of `g`, which control-flow node `node` runs.
fn region_of(
    g: &kiln_ir::Graph,
    node: kiln_ir::NodeId,
    r: kiln_ir::RegionId,
) -> Result<kiln_ir::Region, PassError> {
    g.try_region(r)
        .cloned()
        .ok_or_else(|| fail(node, format!("{r} is not a region of this graph")))
}

/// A `scan` node taken apart: its attributes, its operands and a copy of its body, checked
/// to agree (one param per operand, `carries + xs` operands at least, a result per carry).
struct ScanParts {
    body: kiln_ir::RegionId,
    length: kiln_ir::Dim,
    carries: usize,
    xs: usize,
    reverse: bool,
    operands: Vec<kiln_ir::NodeId>,
    region: kiln_ir::Region,
}

/// [`ScanParts`] of node `id`, or `None` when it is not a `scan`.
fn scan_parts(func: &Func, id: kiln_ir::NodeId) -> Result<Option<ScanParts>, PassError> {
    let kiln_ir::Op::Scan {
        body,
        length,
        carries,
        xs,
        reverse,
    } = func.graph.node(id).op.clone()
    else {
        return Ok(None);
    };
    let operands = func.graph.operands(id);
    let region = region_of(&func.graph, id, body)?;
    if region.params.len() != operands.len()
        || carries + xs > operands.len()
        || region.results.len() < carries
    {
        return Err(fail(id, "operands, body params and results disagree"));
    }
    Ok(Some(ScanParts {
        body,
        length,
        carries,
        xs,
        reverse,
        operands,
        region,
    }))
}

/// The error for a failed rewrite of `node`.
fn fail(node: kiln_ir::NodeId, message: impl std::fmt::Display) -> PassError {
    PassError::Control {
        pass: PASS,
        node,
        message: message.to_string(),
    }
}
