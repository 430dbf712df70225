//! The function type every pass transforms ([`Func`]) and what one pass run did
//! ([`PassStats`]).

use crate::error::PassError;
use kiln_ir::{Graph, NodeId};
use std::collections::BTreeMap;
use std::fmt;

/// A graph together with the nodes it computes: what every pass transforms. Passes keep
/// `outputs` pointing at the nodes that compute the same values when they rewrite.
#[derive(Clone, Debug)]
pub struct Func {
    /// The graph.
    pub graph: Graph,
    /// The computed nodes, in signature order (duplicates allowed).
    pub outputs: Vec<NodeId>,
}

impl Func {
    /// A function over `graph` returning `outputs`; every output must be a live node.
    pub fn new(graph: Graph, outputs: Vec<NodeId>) -> Result<Func, PassError> {
        let f = Func { graph, outputs };
        f.check_outputs("func")?;
        Ok(f)
    }

    /// Fails if an output is not a live node; `pass` names the caller in the error.
    pub fn check_outputs(&self, pass: &'static str) -> Result<(), PassError> {
        match self.outputs.iter().find(|&&o| !self.graph.contains(o)) {
            Some(&output) => Err(PassError::UnknownOutput { pass, output }),
            None => Ok(()),
        }
    }

    /// Redirects every use of `old`, outputs included, to `new`.
    pub fn replace(&mut self, old: NodeId, new: NodeId) {
        self.graph.replace_all_uses(old, new);
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// True if `id` is one of the outputs.
    pub fn is_output(&self, id: NodeId) -> bool {
        self.outputs.contains(&id)
    }
}

impl fmt::Display for Func {
    /// The graph's text form followed by a `; outputs: n3, n7` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.graph)?;
        let outs: Vec<String> = self.outputs.iter().map(NodeId::to_string).collect();
        writeln!(f, "; outputs: {}", outs.join(", "))
    }
}

/// What one pass run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Nodes looked at.
    pub visited: usize,
    /// Nodes added (replacements, folded constants).
    pub added: usize,
    /// Nodes removed from the graph.
    pub removed: usize,
    /// Nodes whose uses were redirected to another node.
    pub rewritten: usize,
    /// How often each named rule fired.
    pub rules: BTreeMap<&'static str, usize>,
}

impl PassStats {
    /// True if the pass changed the graph or the outputs.
    pub fn changed(&self) -> bool {
        self.added + self.removed + self.rewritten > 0
    }

    /// How often `rule` fired.
    pub fn fired(&self, rule: &str) -> usize {
        self.rules.get(rule).copied().unwrap_or(0)
    }

    pub(crate) fn absorb(&mut self, other: &PassStats) {
        self.visited += other.visited;
        self.added += other.added;
        self.removed += other.removed;
        self.rewritten += other.rewritten;
        for (k, v) in &other.rules {
            *self.rules.entry(k).or_insert(0) += v;
        }
    }
}
