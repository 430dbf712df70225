//! Common subexpression elimination by structural hashing: two nodes with the same op
//! (attributes included), the same dtype and shape and the same operands compute the same
//! value, so the later one (in topological order) is replaced by the earlier one.
//!
//! Every primitive is a pure function of its operands and attributes, so the rule holds
//! for every op:
//! - `input`s merge only with an input of the same name, dtype and shape (the verifier
//!   rejects duplicate input names, so in practice never); `param`s merge only when name,
//!   dtype and shape agree, i.e. when they are the same state tensor.
//! - constants merge when their elements are bitwise equal (so `0.0` and `-0.0` stay apart
//!   and identical NaNs merge).
//! - `random_bits` with the same key operand and shape merge: the bits are counter-based,
//!   a pure function of key and shape.
//! - commutative binary ops (`add`, `mul`, `max`, `min`, `eq`, `ne`, `and`, `or`, `xor`)
//!   compare their operands as an unordered pair, so `a + b` and `b + a` merge. (For float
//!   `add`/`mul` whose operands are *both* NaN the two orders may differ in NaN payload;
//!   the value is NaN either way.)
//!
//! - control-flow nodes (`cond`, `scan`, `while`) merge when their attributes, regions
//!   included, and operands are equal: the same region ids, so the same bodies. Two nodes
//!   running equal copies of a body in different regions stay apart. `get`s of one node
//!   with the same index merge.
//!
//! Region bodies are functions of their own: CSE runs inside each (never merging across a
//! region boundary) and keeps every region parameter.
//!
//! The merged node keeps the earlier node's provenance. CSE does not remove the nodes it
//! makes unused beyond the merged duplicates themselves (that is [`crate::dce`]), and it does
//! not look through algebraic identities (that is [`crate::simplify`]).

use crate::error::PassError;
use crate::func::{Func, PassStats};
use kiln_ir::{BinaryOp, Graph, NodeId, Op};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// True for binary ops whose operands can be swapped without changing the result.
pub fn is_commutative(b: BinaryOp) -> bool {
    match b {
        BinaryOp::Add
        | BinaryOp::Mul
        | BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::Eq
        | BinaryOp::Ne
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Xor => true,
        BinaryOp::Sub
        | BinaryOp::Div
        | BinaryOp::Rem
        | BinaryOp::Pow
        | BinaryOp::Lt
        | BinaryOp::Le
        | BinaryOp::Gt
        | BinaryOp::Ge => false,
    }
}

/// The operands as CSE compares them: sorted for commutative ops.
fn operand_key(g: &Graph, id: NodeId) -> Vec<NodeId> {
    let mut ops = g.operands(id);
    if let Op::Binary(b) = g.node(id).op
        && is_commutative(b)
    {
        ops.sort_unstable();
    }
    ops
}

fn structural_hash(g: &Graph, id: NodeId, operands: &[NodeId]) -> u64 {
    let n = g.node(id);
    let mut h = DefaultHasher::new();
    n.op.hash(&mut h);
    n.dtype.hash(&mut h);
    n.shape.hash(&mut h);
    operands.hash(&mut h);
    h.finish()
}

fn same_node(g: &Graph, a: NodeId, a_ops: &[NodeId], b: NodeId, b_ops: &[NodeId]) -> bool {
    let (x, y) = (g.node(a), g.node(b));
    x.op == y.op && x.dtype == y.dtype && x.shape == y.shape && a_ops == b_ops
}

/// Merges structurally identical nodes, in the function and in every region of it
/// (recursively; see [`crate::region::everywhere`]). `rewritten` and `removed` count merged
/// duplicates.
pub fn cse(func: &mut Func) -> Result<PassStats, PassError> {
    crate::region::everywhere("cse", func, &mut cse_graph)
}

/// [`cse`] on the function's own graph, not its regions.
fn cse_graph(func: &mut Func) -> Result<PassStats, PassError> {
    func.check_outputs("cse")?;
    let order = func
        .graph
        .topo_order()
        .map_err(|e| PassError::graph("cse", e))?;
    let mut stats = PassStats {
        visited: order.len(),
        ..PassStats::default()
    };
    let mut table: HashMap<u64, Vec<(NodeId, Vec<NodeId>)>> = HashMap::new();
    for id in order {
        let ops = operand_key(&func.graph, id);
        let h = structural_hash(&func.graph, id, &ops);
        let bucket = table.entry(h).or_default();
        let rep = bucket
            .iter()
            .find(|(r, r_ops)| same_node(&func.graph, *r, r_ops, id, &ops))
            .map(|(r, _)| *r);
        match rep {
            Some(rep) => {
                func.replace(id, rep);
                func.graph.remove(id);
                stats.rewritten += 1;
                stats.removed += 1;
            }
            None => bucket.push((id, ops)),
        }
    }
    Ok(stats)
}
