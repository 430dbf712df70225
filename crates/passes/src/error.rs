//! Typed errors of the graph passes and the pipeline. A failed rewrite names its rule and
//! node; a failed verification names the pass after which it ran and lists every finding.

use kiln_ir::{GraphError, NodeId, VerifyError};
use std::fmt;

/// Why a pass or the pipeline failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    /// An output of the function does not name a live node.
    #[error("{pass}: output {output} is not a node of the graph")]
    UnknownOutput {
        /// The pass that found it.
        pass: &'static str,
        /// The dangling output.
        output: NodeId,
    },
    /// A graph operation failed (a cycle found while ordering nodes, an unknown operand).
    #[error("{pass}: {source}")]
    Graph {
        /// The pass that hit it.
        pass: &'static str,
        /// The graph error.
        source: Box<GraphError>,
    },
    /// A simplification rule produced an invalid or worse graph (a bug in the rule).
    #[error("rewriting rule {rule} on node {node}: {source}")]
    Rule {
        /// The rule's name.
        rule: &'static str,
        /// The node being rewritten.
        node: NodeId,
        /// What went wrong.
        source: Box<RuleFailure>,
    },
    /// The verifier (or whole-graph inference) rejected the graph.
    #[error("verifier failed {stage}: {}", VerifyList(.errors))]
    Verify {
        /// When it ran, e.g. `after simplify` or `in infer`.
        stage: String,
        /// Every finding, ordered by node.
        errors: Vec<VerifyError>,
    },
    /// A control-flow rewrite could not be applied: the control-flow node or one of its
    /// regions is malformed, or the rewritten node does not type (a bug in the pass).
    #[error("{pass} on control-flow node {node}: {message}")]
    Control {
        /// The pass (`control`, or the pass that recursed into the region).
        pass: &'static str,
        /// The control-flow node being rewritten.
        node: NodeId,
        /// What went wrong.
        message: String,
    },
    /// Regions nest deeper than [`kiln_ir::verify::MAX_REGION_DEPTH`].
    #[error("{pass}: regions nest more than {max} deep")]
    RegionDepth {
        /// The pass that recursed.
        pass: &'static str,
        /// The limit.
        max: usize,
    },
    /// `KILN_DUMP` (or a dump spec given directly) could not be parsed.
    #[error("dump spec {spec:?}: {message}")]
    DumpSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        message: String,
    },
}

/// What went wrong while applying one rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleFailure {
    /// Adding the replacement node failed.
    #[error(transparent)]
    Graph(Box<GraphError>),
    /// The replacement's dtype or shape differs from the node it replaces.
    #[error("replacement has type {after}, the node has {before}")]
    TypeChanged {
        /// The original node's type, e.g. `f32[2, 3]`.
        before: String,
        /// The replacement's type.
        after: String,
    },
    /// The proposed replacement is the node itself or a node the pass already removed.
    #[error("replacement {0} is not a live node other than the one replaced")]
    NotLive(NodeId),
    /// The rewrite would leave the graph with more nodes than before.
    #[error("rewrite adds {added} node(s) but removes only {removed}")]
    Grew {
        /// Nodes added.
        added: usize,
        /// Nodes removed.
        removed: usize,
    },
}

struct VerifyList<'a>(&'a [VerifyError]);

impl fmt::Display for VerifyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s)", self.0.len())?;
        for e in self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl From<GraphError> for RuleFailure {
    fn from(e: GraphError) -> RuleFailure {
        RuleFailure::Graph(Box::new(e))
    }
}

impl PassError {
    /// A graph error met by `pass`.
    pub fn graph(pass: &'static str, source: GraphError) -> PassError {
        PassError::Graph {
            pass,
            source: Box::new(source),
        }
    }
}
