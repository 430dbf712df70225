//! Typed errors of the graph passes and the pipeline. A failed rewrite names its rule and
//! node; a failed verification names the pass after which it ran and lists every finding.

use kiln_ir::{GraphError, NodeId, RegionId, VerifyError};
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

/// Why a region could not be copied, inlined, trimmed or batched: the region is malformed,
/// or a control-flow rewrite asked it for something it does not have (a bug in the pass).
/// [`PassError::Control`] carries it, naming the control-flow node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegionError {
    /// A node id that is not a node of the region's graph.
    #[error("{0} is not a node of the region")]
    UnknownNode(NodeId),
    /// An `input` node that is not among the parameters being bound.
    #[error("input {0} is not one of the region's parameters")]
    UnboundInput(NodeId),
    /// A region id that is not in the copied graph's region table.
    #[error("{0} is not a region of the copied graph")]
    UnknownRegion(RegionId),
    /// A node was to be copied before one of its operands.
    #[error("operand {operand} of {node} was not copied first")]
    NotCopied {
        /// The node being copied.
        node: NodeId,
        /// Its operand that has no copy.
        operand: NodeId,
    },
    /// A node the caller needs (a result of the region, a hoisted value) has no copy.
    #[error("{0} was not copied")]
    ResultNotCopied(NodeId),
    /// The region was run with the wrong number of arguments.
    #[error("the region takes {params} parameter(s), given {given}")]
    Arity {
        /// Parameters the region has.
        params: usize,
        /// Arguments given.
        given: usize,
    },
    /// A loop-body op that reads a per-step operand has no batched form over all steps.
    #[error("{op} has no batched form")]
    NoBatchedForm {
        /// The op's name.
        op: &'static str,
    },
    /// A loop-body op that is batched only when every operand is reads one that is not.
    #[error("{op} reads an unbatched operand")]
    Unbatched {
        /// The op's name.
        op: &'static str,
    },
    /// The batched form of a loop-body node does not have the node's type with a leading
    /// step axis.
    #[error("batched type {got} differs from {want}")]
    BatchedType {
        /// The batched node's type, e.g. `f32[t, 4]`.
        got: String,
        /// The expected type.
        want: String,
    },
    /// A copied node no longer types in the graph it was copied into.
    #[error("copying {node}: {source}")]
    Copy {
        /// The node being copied.
        node: NodeId,
        /// Why adding the copy failed.
        source: Box<GraphError>,
    },
    /// A graph operation on the region failed (a cycle found while ordering its nodes, or
    /// a new node that does not type).
    #[error(transparent)]
    Graph(Box<GraphError>),
}

impl From<GraphError> for RegionError {
    fn from(e: GraphError) -> RegionError {
        RegionError::Graph(Box::new(e))
    }
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
