//! The graph container: nodes with inferred dtype and shape, connected by operand edges.
//!
//! petgraph's `StableGraph` stores the structure; it never appears in the public API.
//! An edge runs from an operand to its user and carries the operand position.

use crate::attr::RegionId;
use crate::dtype::DType;
use crate::error::ShapeError;
use crate::infer::{RegionSig, infer, infer_control, token_type};
use crate::op::Op;
use crate::shape::Shape;
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use std::fmt;

/// A typed node id, printed `n12`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    fn index(self) -> NodeIndex<u32> {
        NodeIndex::new(self.0 as usize)
    }
    fn from_index(i: NodeIndex<u32>) -> NodeId {
        NodeId(i.index() as u32)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a node was built: the user's source location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    /// Source file.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl Loc {
    /// The location of the caller of a `#[track_caller]` function.
    pub fn from_caller(l: &std::panic::Location<'_>) -> Loc {
        Loc {
            file: l.file().to_string(),
            line: l.line(),
            column: l.column(),
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One node: its op, inferred dtype and shape, and provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The primitive.
    pub op: Op,
    /// Output element type.
    pub dtype: DType,
    /// Output shape.
    pub shape: Shape,
    /// Where the node was built, if known.
    pub loc: Option<Loc>,
}

/// Error adding a node or editing the graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Shape or dtype inference rejected the op.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// An operand id does not name a live node.
    #[error("operand {0} is not a node of this graph")]
    UnknownNode(NodeId),
    /// The graph has a cycle (only possible after a bad rewrite).
    #[error("graph has a cycle through {0}")]
    Cycle(NodeId),
}

/// A dataflow graph of primitive ops.
///
/// Ids are never reused: removing a node leaves a tombstone, so `n12` means one node for
/// the whole life of a graph and dumps before and after a pass can be compared.
#[derive(Clone, Default)]
pub struct Graph {
    g: StableDiGraph<Option<Node>, u32, u32>,
    live: usize,
    regions: Vec<Region>,
}

/// A body of a control-flow op: a graph of its own whose `input` nodes listed in `params`
/// are the parameters (every input of the region graph is one) and whose `results` nodes are
/// returned. A region reads nothing from the enclosing graph except through its params
/// (values a body captures are passed as operands of its op).
#[derive(Clone, Debug, Default)]
pub struct Region {
    /// The body.
    pub graph: Graph,
    /// The parameter nodes (`input` ops of `graph`), in parameter order.
    pub params: Vec<NodeId>,
    /// The returned nodes, in result order (one node may be returned twice).
    pub results: Vec<NodeId>,
}

impl Region {
    /// The parameter and result types. Panics only if a listed node is not live, which
    /// [`crate::verify()`] rules out for loaded regions.
    pub fn sig(&self) -> RegionSig {
        let ty = |&id: &NodeId| self.graph.get(id).map(|n| (n.dtype, n.shape.clone()));
        RegionSig {
            params: self.params.iter().filter_map(ty).collect(),
            results: self.results.iter().filter_map(ty).collect(),
        }
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a node after inferring its dtype and shape from its operands.
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId, GraphError> {
        self.add_at(op, operands, None)
    }

    /// Like [`Graph::add`], recording where the node was built.
    pub fn add_at(
        &mut self,
        op: Op,
        operands: &[NodeId],
        loc: Option<Loc>,
    ) -> Result<NodeId, GraphError> {
        for &o in operands {
            if !self.contains(o) {
                return Err(GraphError::UnknownNode(o));
            }
        }
        let (dtype, shape) = self.infer_node(&op, operands)?;
        Ok(self.add_unchecked(
            Node {
                op,
                dtype,
                shape,
                loc,
            },
            operands,
        ))
    }

    /// The dtype and shape `op` would have with `operands` (live nodes of this graph): shape
    /// inference, with control-flow ops typed by their regions (their node is a token) and
    /// `get` by the result types of its operand.
    pub fn infer_node(&self, op: &Op, operands: &[NodeId]) -> Result<(DType, Shape), ShapeError> {
        if let Op::Get { index } = op {
            let [src] = operands else {
                return Err(ShapeError::Arity {
                    op: "get",
                    expected: "1".into(),
                    got: operands.len(),
                });
            };
            let results = self.result_types(*src).ok_or_else(|| ShapeError::Invalid {
                op: "get",
                msg: format!(
                    "{src} ({}) is not a control-flow op",
                    self.node(*src).op.name()
                ),
            })?;
            let n = results.len();
            return results.into_iter().nth(*index).ok_or(ShapeError::Invalid {
                op: "get",
                msg: format!("result {index} of a node with {n} result(s)"),
            });
        }
        let ops: Vec<(DType, &Shape)> = operands
            .iter()
            .map(|&o| {
                let n = self.node(o);
                (n.dtype, &n.shape)
            })
            .collect();
        if op.kind() == crate::op::OpKind::Control {
            self.infer_results(op, &ops)?;
            return Ok(token_type());
        }
        infer(op, &ops)
    }

    fn infer_results(
        &self,
        op: &Op,
        operands: &[(DType, &Shape)],
    ) -> Result<Vec<(DType, Shape)>, ShapeError> {
        let mut sigs = Vec::new();
        for r in op.regions() {
            let region = self.try_region(r).ok_or_else(|| ShapeError::Invalid {
                op: op.name(),
                msg: format!("{r} is not a region of this graph"),
            })?;
            sigs.push(region.sig());
        }
        infer_control(op, operands, &sigs)
    }

    /// The result types of control-flow node `id` (`None` for any other node or an
    /// ill-typed one).
    pub fn result_types(&self, id: NodeId) -> Option<Vec<(DType, Shape)>> {
        let n = self.get(id)?;
        if n.op.kind() != crate::op::OpKind::Control {
            return None;
        }
        let ops: Vec<(DType, &Shape)> = self
            .operands(id)
            .into_iter()
            .filter_map(|o| self.get(o).map(|m| (m.dtype, &m.shape)))
            .collect();
        self.infer_results(&n.op, &ops).ok()
    }

    /// Adds a region (a body for a control-flow op) and returns its id.
    pub fn add_region(&mut self, region: Region) -> RegionId {
        self.regions.push(region);
        RegionId(u32::try_from(self.regions.len() - 1).unwrap_or(u32::MAX))
    }

    /// The region. Panics if `id` is not a region of this graph (a caller bug: ids come from
    /// this graph; loaded graphs are verified first).
    pub fn region(&self, id: RegionId) -> &Region {
        match self.try_region(id) {
            Some(r) => r,
            None => panic!("{id} is not a region of this graph"),
        }
    }

    /// The region, if `id` names one.
    pub fn try_region(&self, id: RegionId) -> Option<&Region> {
        self.regions.get(id.0 as usize)
    }

    /// Mutable access to a region (passes rewrite bodies in place; the caller keeps its
    /// parameter and result types).
    pub fn region_mut(&mut self, id: RegionId) -> &mut Region {
        match self.regions.get_mut(id.0 as usize) {
            Some(r) => r,
            None => panic!("{id} is not a region of this graph"),
        }
    }

    /// Every region, indexed by [`RegionId`] (regions of removed nodes included).
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Adds a node whose dtype and shape the caller already knows (used by parsers and
    /// loaders, which run the verifier afterwards). Operands must be live nodes.
    pub fn add_unchecked(&mut self, node: Node, operands: &[NodeId]) -> NodeId {
        let id = self.g.add_node(Some(node));
        self.live += 1;
        for (i, &o) in operands.iter().enumerate() {
            self.g.add_edge(o.index(), id, i as u32);
        }
        NodeId::from_index(id)
    }

    /// True if `id` names a live node.
    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    /// The node. Panics if `id` is not live, which is a caller bug (ids come from this graph).
    pub fn node(&self, id: NodeId) -> &Node {
        match self.get(id) {
            Some(n) => n,
            None => panic!("{id} is not a live node of this graph"),
        }
    }

    /// The node, if live.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.g.node_weight(id.index()).and_then(Option::as_ref)
    }

    /// Mutable access to a node's provenance (the op, dtype and shape stay fixed).
    pub fn set_loc(&mut self, id: NodeId, loc: Option<Loc>) {
        if let Some(Some(n)) = self.g.node_weight_mut(id.index()) {
            n.loc = loc;
        }
    }

    /// Operands of `id` in operand order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut e: Vec<(u32, NodeId)> = self
            .g
            .edges_directed(id.index(), Direction::Incoming)
            .map(|e| (*e.weight(), NodeId::from_index(e.source())))
            .collect();
        e.sort_unstable();
        e.into_iter().map(|(_, n)| n).collect()
    }

    /// Every operand edge of `id` as `(position, operand)`, sorted by position, duplicates and
    /// gaps included (the verifier checks that positions are exactly `0..k`).
    pub fn operand_edges(&self, id: NodeId) -> Vec<(u32, NodeId)> {
        let mut e: Vec<(u32, NodeId)> = self
            .g
            .edges_directed(id.index(), Direction::Incoming)
            .map(|e| (*e.weight(), NodeId::from_index(e.source())))
            .collect();
        e.sort_unstable();
        e
    }

    /// Distinct users of `id`, sorted.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut u: Vec<NodeId> = self
            .g
            .neighbors_directed(id.index(), Direction::Outgoing)
            .map(NodeId::from_index)
            .collect();
        u.sort_unstable();
        u.dedup();
        u
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True if the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Live node ids in increasing order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g
            .node_indices()
            .filter(|&i| self.g[i].is_some())
            .map(NodeId::from_index)
            .collect()
    }

    /// Live node ids with every operand before its users (ties broken by id).
    pub fn topo_order(&self) -> Result<Vec<NodeId>, GraphError> {
        let mut indeg: std::collections::HashMap<NodeId, usize> = self
            .node_ids()
            .into_iter()
            .map(|n| {
                (
                    n,
                    self.g
                        .edges_directed(n.index(), Direction::Incoming)
                        .count(),
                )
            })
            .collect();
        let mut ready: std::collections::BTreeSet<NodeId> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut out = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            out.push(n);
            for e in self.g.edges_directed(n.index(), Direction::Outgoing) {
                let t = NodeId::from_index(e.target());
                if let Some(d) = indeg.get_mut(&t) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(t);
                    }
                }
            }
        }
        if out.len() != self.len() {
            let stuck = indeg
                .into_iter()
                .filter(|(_, d)| *d > 0)
                .map(|(n, _)| n)
                .min()
                .unwrap_or(NodeId(0));
            return Err(GraphError::Cycle(stuck));
        }
        Ok(out)
    }

    /// Every node that `roots` depend on (including the roots), in topological order.
    pub fn ancestors(&self, roots: &[NodeId]) -> Result<Vec<NodeId>, GraphError> {
        let mut keep = std::collections::HashSet::new();
        let mut stack: Vec<NodeId> = roots.to_vec();
        while let Some(n) = stack.pop() {
            if !self.contains(n) {
                return Err(GraphError::UnknownNode(n));
            }
            if keep.insert(n) {
                stack.extend(self.operands(n));
            }
        }
        Ok(self
            .topo_order()?
            .into_iter()
            .filter(|n| keep.contains(n))
            .collect())
    }

    /// Makes every user of `old` use `new` instead (operand positions kept).
    /// The caller guarantees `new` has the same dtype and shape and does not depend on `old`'s users.
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) {
        if old == new {
            return;
        }
        let edges: Vec<(NodeIndex<u32>, u32, petgraph::stable_graph::EdgeIndex<u32>)> = self
            .g
            .edges_directed(old.index(), Direction::Outgoing)
            .map(|e| (e.target(), *e.weight(), e.id()))
            .collect();
        for (target, pos, eid) in edges {
            self.g.remove_edge(eid);
            self.g.add_edge(new.index(), target, pos);
        }
    }

    /// Replaces operand `pos` of `user` with `new`.
    pub fn set_operand(&mut self, user: NodeId, pos: u32, new: NodeId) {
        let eid = self
            .g
            .edges_directed(user.index(), Direction::Incoming)
            .find(|e| *e.weight() == pos)
            .map(|e| e.id());
        if let Some(eid) = eid {
            self.g.remove_edge(eid);
        }
        self.g.add_edge(new.index(), user.index(), pos);
    }

    /// Removes a node and its edges. Its users, if any, lose that operand: remove only dead nodes.
    pub fn remove(&mut self, id: NodeId) -> Option<Node> {
        let idx = id.index();
        let node = self.g.node_weight_mut(idx)?.take()?;
        self.live -= 1;
        let edges: Vec<_> = self
            .g
            .edges_directed(idx, Direction::Incoming)
            .chain(self.g.edges_directed(idx, Direction::Outgoing))
            .map(|e| e.id())
            .collect();
        for e in edges {
            self.g.remove_edge(e);
        }
        Some(node)
    }

    /// Nodes that are graph inputs, with their names, in id order.
    pub fn inputs(&self) -> Vec<(NodeId, &str)> {
        self.node_ids()
            .into_iter()
            .filter_map(|n| match &self.node(n).op {
                Op::Input { name, .. } => Some((n, name.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Nodes that are parameters, with their names, in id order.
    pub fn parameters(&self) -> Vec<(NodeId, &str)> {
        self.node_ids()
            .into_iter()
            .filter_map(|n| match &self.node(n).op {
                Op::Parameter { name, .. } => Some((n, name.as_str())),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
