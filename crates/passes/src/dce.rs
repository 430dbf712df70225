//! Dead code elimination: removes every node the outputs do not depend on.
//!
//! Rule: a node survives if an output depends on it, or if it is an `input`. Inputs are the
//! signature of a compiled function, so a declared input stays even when nothing reads it
//! (callers keep feeding it, and it keeps binding its symbols). Unused `param`s, constants
//! and every other unused node are removed; a caller that needs the full state table reads
//! the parameter names before optimising.
//!
//! A control-flow node lives while one of its `get`s does (a `get` is its user, so liveness
//! flows through it like through any operand edge); the passes assume loops terminate, so a
//! `while` none of whose results is read is removed like any unused node. Inside a region
//! the outputs are the region's results and the inputs its params, so every param stays
//! (the op that runs the region fixes its signature; [`crate::control`] drops unused params
//! together with their operands).
//!
//! It does not merge or rewrite nodes, and it never changes the outputs.

use crate::error::PassError;
use crate::func::{Func, PassStats};
use kiln_ir::{NodeId, Op};
use std::collections::HashSet;

/// True for nodes DCE keeps even when unused (graph inputs).
pub fn always_live(op: &Op) -> bool {
    matches!(op, Op::Input { .. })
}

/// Removes every node that is neither an ancestor of an output nor an input, in the function
/// and in every region of it (recursively; see [`crate::region::everywhere`]), and empties
/// the regions no live node runs any more.
pub fn dce(func: &mut Func) -> Result<PassStats, PassError> {
    crate::region::everywhere("dce", func, &mut |f| {
        let stats = dce_graph(f)?;
        crate::region::clear_unused_regions(&mut f.graph);
        Ok(stats)
    })
}

/// [`dce`] on the function's own graph, not its regions (they keep their nodes).
pub fn dce_graph(func: &mut Func) -> Result<PassStats, PassError> {
    func.check_outputs("dce")?;
    let mut live: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = func.outputs.clone();
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(func.graph.operands(n));
        }
    }
    let ids = func.graph.node_ids();
    let mut stats = PassStats {
        visited: ids.len(),
        ..PassStats::default()
    };
    for id in ids {
        if !live.contains(&id) && !always_live(&func.graph.node(id).op) {
            func.graph.remove(id);
            stats.removed += 1;
        }
    }
    Ok(stats)
}
