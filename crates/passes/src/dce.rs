//! Dead code elimination: removes every node the outputs do not depend on.
//!
//! Rule: a node survives if an output depends on it, or if it is an `input`. Inputs are the
//! signature of a compiled function, so a declared input stays even when nothing reads it
//! (callers keep feeding it, and it keeps binding its symbols). Unused `param`s, constants
//! and every other unused node are removed; a caller that needs the full state table reads
//! the parameter names before optimising.
//!
//! It does not merge or rewrite nodes, and it never changes the outputs.

use crate::error::PassError;
use crate::pipeline::{Func, PassStats};
use kiln_ir::{Op, NodeId};
use std::collections::HashSet;

/// True for nodes DCE keeps even when unused (graph inputs).
pub fn always_live(op: &Op) -> bool {
    matches!(op, Op::Input { .. })
}

/// Removes every node that is neither an ancestor of an output nor an input.
pub fn dce(func: &mut Func) -> Result<PassStats, PassError> {
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

/// Removes `id` if it is unused, not an output and not always live, then does the same for
/// its operands, recursively. Returns how many nodes were removed. Used by rewriting passes
/// to drop what a rewrite orphaned without a full DCE.
pub fn remove_if_dead(func: &mut Func, id: NodeId) -> usize {
    let mut removed = 0;
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        let dead = func.graph.get(n).is_some_and(|node| !always_live(&node.op))
            && func.graph.users(n).is_empty()
            && !func.is_output(n);
        if dead {
            let operands = func.graph.operands(n);
            func.graph.remove(n);
            removed += 1;
            stack.extend(operands);
        }
    }
    removed
}
