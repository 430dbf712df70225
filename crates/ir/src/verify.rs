//! Whole-graph verifier: re-infers every node and collects every error.
//!
//! [`Graph::add`] infers as it builds, so a built graph is well-typed node by node; the
//! verifier is for graphs that come from elsewhere (parsed text, loaded files, rewrites that
//! used [`Graph::add_unchecked`]). It checks each node locally against its operands' *stated*
//! types, so one bad node yields one error instead of a cascade, and it never stops at the
//! first error.

use crate::attr::RegionId;
use crate::dtype::DType;
use crate::graph::{Graph, Loc, NodeId, Region};
use crate::op::Op;
use crate::shape::Shape;
use crate::text::print::format_node;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};

/// Which rule a [`VerifyError`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifyErrorKind {
    /// The node's stated dtype or shape differs from what inference gives.
    Type,
    /// Inference rejects the op applied to its operands.
    Inference,
    /// Operand positions are not exactly `0..k`.
    Operands,
    /// The node lies on a dependency cycle.
    Cycle,
    /// Another input already has this name.
    DuplicateInput,
    /// Another parameter has this name with a different dtype or shape.
    ParameterMismatch,
    /// A constant's element count does not match its shape.
    Constant,
    /// A control-flow op's region is missing or malformed (the message names the region).
    Region,
}

/// One verifier finding, attached to a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct VerifyError {
    /// The offending node.
    pub node: NodeId,
    /// Its op's printed name.
    pub op: &'static str,
    /// Where the node was built, if known.
    pub loc: Option<Loc>,
    /// The broken rule.
    pub kind: VerifyErrorKind,
    /// What is wrong, naming the types or nodes involved.
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.node, self.op)?;
        if let Some(loc) = &self.loc {
            write!(f, " at {loc}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn type_str(dtype: DType, shape: &Shape) -> String {
    format!("{dtype}{shape}")
}

/// Checks the whole graph and returns every error found, ordered by node id:
/// each node's dtype and shape equal what [`infer`](crate::infer::infer) gives from its operands' stated types,
/// operand positions are `0..k` without gaps, the graph is acyclic, input names are unique,
/// parameters sharing a name share dtype and shape, and constants hold as many elements as
/// their shape needs.
pub fn verify(g: &Graph) -> Result<(), Vec<VerifyError>> {
    verify_at(g, 0)
}

/// How deeply regions may nest (a body inside a body inside ...): loaded files are hostile,
/// and every pass recurses through bodies.
pub const MAX_REGION_DEPTH: usize = 32;

/// Checks a region: its graph verifies, its params are exactly its graph's `input` nodes
/// (distinct), its results are live nodes, and it holds no `param` (bodies read state
/// through their operands). Returns every finding as a message.
fn verify_region(r: &Region, depth: usize) -> Vec<String> {
    if depth > MAX_REGION_DEPTH {
        return vec![format!("regions nest more than {MAX_REGION_DEPTH} deep")];
    }
    let mut out = Vec::new();
    if let Err(errors) = verify_at(&r.graph, depth) {
        out.extend(errors.iter().map(ToString::to_string));
    }
    let mut seen = HashSet::new();
    for &p in &r.params {
        let is_input = matches!(r.graph.get(p).map(|n| &n.op), Some(Op::Input { .. }));
        if !is_input {
            out.push(format!("parameter {p} is not an input node of the region"));
        } else if !seen.insert(p) {
            out.push(format!("parameter {p} is listed twice"));
        }
    }
    for (id, _) in r.graph.inputs() {
        if !seen.contains(&id) {
            out.push(format!("input {id} is not one of the region's parameters"));
        }
    }
    for (id, name) in r.graph.parameters() {
        out.push(format!(
            "{id} reads parameter {name:?}; a region reads state through its op's operands"
        ));
    }
    for &res in &r.results {
        if !r.graph.contains(res) {
            out.push(format!("result {res} is not a node of the region"));
        }
    }
    out
}

fn verify_at(g: &Graph, depth: usize) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    let mut inputs: HashMap<&str, NodeId> = HashMap::new();
    let mut params: HashMap<&str, (NodeId, DType, &Shape)> = HashMap::new();
    // Each region is checked once, however many ops (or branches of one op) run it, so
    // verification stays linear in the size of the graph and its regions.
    let mut checked: HashSet<RegionId> = HashSet::new();
    for id in g.node_ids() {
        let n = g.node(id);
        let mut report = |kind: VerifyErrorKind, message: String| {
            errors.push(VerifyError {
                node: id,
                op: n.op.name(),
                loc: n.loc.clone(),
                kind,
                message,
            });
        };

        let edges = g.operand_edges(id);
        if edges.iter().enumerate().any(|(i, &(p, _))| p as usize != i) {
            let positions: Vec<u32> = edges.iter().map(|&(p, _)| p).collect();
            report(
                VerifyErrorKind::Operands,
                format!(
                    "operand positions {positions:?} are not 0..{} without gaps or repeats",
                    edges.len()
                ),
            );
        }

        let operands: Vec<NodeId> = edges.iter().map(|&(_, o)| o).collect();
        for r in n.op.regions() {
            match g.try_region(r) {
                None => report(
                    VerifyErrorKind::Region,
                    format!("{r} is not a region of this graph"),
                ),
                Some(_) if !checked.insert(r) => {}
                Some(region) => {
                    for e in verify_region(region, depth + 1) {
                        report(VerifyErrorKind::Region, format!("in {r}: {e}"));
                    }
                }
            }
        }
        match g.infer_node(&n.op, &operands) {
            Ok((dtype, shape)) => {
                if dtype != n.dtype || shape != n.shape {
                    report(
                        VerifyErrorKind::Type,
                        format!(
                            "stated type {} differs from the inferred {}",
                            type_str(n.dtype, &n.shape),
                            type_str(dtype, &shape)
                        ),
                    );
                }
            }
            Err(e) => report(VerifyErrorKind::Inference, e.to_string()),
        }

        if let Op::Input { name, .. } = &n.op {
            match inputs.get(name.as_str()) {
                Some(first) => report(
                    VerifyErrorKind::DuplicateInput,
                    format!("input name {name:?} is already used by {first}"),
                ),
                None => {
                    inputs.insert(name, id);
                }
            }
        }
        if let Op::Parameter { name, dtype, shape } = &n.op {
            match params.get(name.as_str()) {
                Some(&(first, d, s)) if (d, s) != (*dtype, shape) => report(
                    VerifyErrorKind::ParameterMismatch,
                    format!(
                        "parameter {name:?} is {} here but {} at {first}",
                        type_str(*dtype, shape),
                        type_str(d, s)
                    ),
                ),
                Some(_) => {}
                None => {
                    params.insert(name, (id, *dtype, shape));
                }
            }
        }
        if let Op::Constant(a) = &n.op {
            let needed = a
                .shape()
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if needed != Some(a.len()) {
                let needed =
                    needed.map_or_else(|| "more than usize::MAX".to_string(), |k| k.to_string());
                report(
                    VerifyErrorKind::Constant,
                    format!(
                        "constant holds {} element(s) but its shape {:?} needs {needed}",
                        a.len(),
                        a.shape()
                    ),
                );
            }
        }
    }

    for cycle in cycles(g) {
        let first = cycle[0];
        let n = g.node(first);
        let members: Vec<String> = cycle.iter().map(NodeId::to_string).collect();
        errors.push(VerifyError {
            node: first,
            op: n.op.name(),
            loc: n.loc.clone(),
            kind: VerifyErrorKind::Cycle,
            message: format!("dependency cycle through {}", members.join(", ")),
        });
    }

    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort_by_key(|e| e.node);
        Err(errors)
    }
}

/// The node sets of the graph's cycles (strongly connected components with more than one
/// node, or a node that is its own operand), each sorted, ordered by their smallest node.
fn cycles(g: &Graph) -> Vec<Vec<NodeId>> {
    const UNSEEN: usize = usize::MAX;
    let ids = g.node_ids();
    let index: HashMap<NodeId, usize> = ids.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let succ: Vec<Vec<usize>> = ids
        .iter()
        .map(|&n| {
            g.users(n)
                .iter()
                .filter_map(|u| index.get(u).copied())
                .collect()
        })
        .collect();
    let count = ids.len();
    let mut order = vec![UNSEEN; count];
    let mut low = vec![0usize; count];
    let mut on_stack = vec![false; count];
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let mut out: Vec<Vec<NodeId>> = Vec::new();
    for root in 0..count {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        let mut calls: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(top) = calls.last_mut() {
            let (v, i) = *top;
            if let Some(&w) = succ[v].get(i) {
                top.1 += 1;
                if order[w] == UNSEEN {
                    order[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 || succ[v].contains(&v) {
                    let mut nodes: Vec<NodeId> = component.into_iter().map(|i| ids[i]).collect();
                    nodes.sort_unstable();
                    out.push(nodes);
                }
            }
        }
    }
    out.sort();
    out
}

/// The graph's text form with each error printed under its node as a `; error: ...` comment
/// line (so the result still parses). Errors naming nodes that are not in the graph follow
/// at the end.
pub fn format_with_errors(g: &Graph, errors: &[VerifyError]) -> String {
    let mut by_node: BTreeMap<NodeId, Vec<&VerifyError>> = BTreeMap::new();
    for e in errors {
        by_node.entry(e.node).or_default().push(e);
    }
    let mut out = String::new();
    for id in g.node_ids() {
        out.push_str(&format_node(g, id));
        out.push('\n');
        for e in by_node.remove(&id).unwrap_or_default() {
            let _ = writeln!(out, "; error: {}", e.message);
        }
    }
    for e in by_node.into_values().flatten() {
        let _ = writeln!(out, "; error: {e}");
    }
    out
}
