//! Fusion planning: which nodes are materialised (get a buffer and the kernel that stores
//! it), which kernel computes every other node, in which region of that kernel, and the
//! order the kernels run in. The rules are stated in the module docs of [`crate::fuse`].
//!
//! Planning walks the graph from the outputs towards the inputs. Each node is *placed* where
//! its users need it: in a kernel, a region of that kernel (the body or epilogue, the operand
//! of a reduction, a contraction operand) and a *view* (the chain of movement and broadcast
//! edges between the kernel's stored value and this node, which stands for the coordinates
//! the node is evaluated at). A node that cannot be placed everywhere it is needed becomes
//! the root of a kernel of its own. A second pass merges a producer kernel into its
//! consumer when the consumer reads every stored value of the producer at its own
//! coordinates (multi-output fusion, e.g. an LSTM cell's `c'` and `h'`).

use super::FuseError;
use super::coords::Coords;
use kiln_ir::{Dim, Graph, NodeId, Op, OpKind};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Index of a kernel in [`Plan::kernels`].
pub(crate) type KIdx = usize;

/// Most distinct views a node may be evaluated at before it is materialised instead.
pub const MAX_VIEWS: usize = 8;
/// Most nodes a cheap subexpression may drag along when it is recomputed in several kernels.
pub const MAX_RECOMPUTE_CONE: usize = 16;
/// Largest broadcast factor (points of the kernel per point of the reduction result) for
/// which a reduction is recomputed inside a broadcasting consumer (softmax, layer norm).
pub const BROADCAST_EPILOGUE_LIMIT: u64 = 1024;
/// Longest chain of inlined nodes below a kernel's stored values; a deeper node is
/// materialised (bodies are emitted recursively, and this bounds the recursion).
pub const MAX_FUSE_DEPTH: usize = 256;

/// Where inside a kernel a node is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Region {
    /// The loop body, or a contraction's epilogue.
    Body,
    /// The operand of a reduction-like core (reduce, window, argmax, scatter-add), evaluated
    /// at every reduction point.
    Operand(NodeId),
    /// Matmul operand A.
    MatA,
    /// Matmul operand B.
    MatB,
    /// Conv2d input operand.
    ConvIn,
    /// Conv2d weight operand.
    ConvW,
}

/// Non-identity edges `(user, operand position)` between a region's root and a node.
pub(crate) type View = Vec<(NodeId, u32)>;

/// One placement of a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Place {
    /// The kernel.
    pub(crate) kernel: KIdx,
    /// The region.
    pub(crate) region: Region,
    /// Non-identity edges `(user, operand position)` from the region's root to the node.
    pub(crate) view: View,
    /// Only pure views (no computation) may be placed here: contraction operands and the
    /// source of a gather.
    pub(crate) restricted: bool,
}

impl Place {
    fn identity_body(&self) -> bool {
        self.region == Region::Body && self.view.is_empty()
    }
}

/// The heavy part of a kernel, which decides its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Core {
    /// An elementwise loop.
    None,
    /// A loop with reduction axes of these extents (reduce and window cores).
    Reduce(Vec<Dim>),
    /// A matmul kernel around this node; `true` when its only consumer transposes the last
    /// two axes, so the kernel computes the transposed product (`(a @ b)^T = b^T @ a^T`)
    /// and the epilogue runs over the transposed shape.
    Matmul(NodeId, bool),
    /// A conv2d kernel around this node.
    Conv(NodeId),
    /// Argmax/argmin: a max (min) pass and an index pass.
    Arg(NodeId),
    /// Scatter-add as a reduction over the scattered axis.
    Scatter(NodeId),
}

/// A planned kernel.
#[derive(Clone, Debug)]
pub(crate) struct KPlan {
    /// The iteration domain: the shape of the stored nodes.
    pub(crate) domain: Vec<Dim>,
    /// Nodes this kernel stores (the root first).
    pub(crate) stores: Vec<NodeId>,
    /// Its kind.
    pub(crate) core: Core,
    /// False once merged into another kernel.
    pub(crate) alive: bool,
}

/// The fusion plan.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    /// Every kernel, dead ones included.
    pub(crate) kernels: Vec<KPlan>,
    /// Placements of every non-source node.
    pub(crate) places: HashMap<NodeId, Vec<Place>>,
    /// The kernel that stores each materialised node.
    pub(crate) stored_by: HashMap<NodeId, KIdx>,
    /// Alive kernels in execution order.
    pub(crate) order: Vec<KIdx>,
    /// State updates that cannot be written in place: `(update node, parameter name)`,
    /// copied into their state buffers after every kernel.
    pub(crate) late_updates: Vec<(NodeId, String)>,
    /// Steps the merge pass took: placements read to build the kernel graph, merge checks,
    /// stored values and placements looked at by those checks, and nodes moved by merges.
    /// Deterministic for a given graph; grows linearly with a chain's length.
    pub(crate) work: usize,
}

/// How an op fuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Inputs, parameters and constants: buffers (or immediates), never computed.
    Source,
    /// Computed inside any kernel that needs it.
    Inline {
        /// Contains a transcendental or other costly arithmetic.
        expensive: bool,
        /// A pure view (reshape, permute, expand, slice, flip), allowed in contraction
        /// operands and gather sources.
        view: bool,
        /// Evaluated at the same coordinates as its operands (elementwise).
        elementwise: bool,
    },
    /// A reduction over axes or windows: the reduction core of a loop kernel.
    Reduction,
    /// Argmax/argmin: always its own (two-pass) kernel.
    Arg,
    /// Matmul or conv2d: the core of a contraction kernel.
    Contraction,
    /// Scatter-add: always its own kernel.
    Scatter,
    /// A control-flow op or one of its results: runs regions, never inside a kernel.
    Control,
}

/// The fusion class of an op (one exhaustive table).
pub(crate) fn class(op: &Op) -> Class {
    let inline = |expensive: bool, view: bool, elementwise: bool| Class::Inline {
        expensive,
        view,
        elementwise,
    };
    match op.kind() {
        OpKind::Fed | OpKind::Literal => Class::Source,
        OpKind::Index | OpKind::Assemble => inline(false, false, false),
        OpKind::Random => inline(true, false, false),
        OpKind::Elementwise => inline(costly_elementwise(op), false, true),
        OpKind::View => inline(false, true, false),
        OpKind::Reduction if is_identity_reduction(op) => inline(false, false, true),
        OpKind::Reduction => Class::Reduction,
        OpKind::ArgReduction => Class::Arg,
        OpKind::Scatter => Class::Scatter,
        OpKind::Contraction => Class::Contraction,
        OpKind::Control | OpKind::Get => Class::Control,
    }
}

fn costly_elementwise(op: &Op) -> bool {
    match op {
        Op::Unary(u) => u.is_costly(),
        Op::Binary(b) => b.is_costly(),
        _ => false,
    }
}

/// A reduction over no axes: the identity on its operand.
fn is_identity_reduction(op: &Op) -> bool {
    matches!(op, Op::Reduce { axes, .. } if axes.is_empty())
}

/// Reduction extents of a reduction core (empty for any other op).
pub(crate) fn reduce_extents(graph: &Graph, n: NodeId) -> Vec<Dim> {
    match &graph.node(n).op {
        Op::Reduce { axes, .. } => {
            let ops = graph.operands(n);
            match ops.first() {
                Some(&x) => {
                    let s = &graph.node(x).shape;
                    axes.iter().filter_map(|&a| s.0.get(a).cloned()).collect()
                }
                None => Vec::new(),
            }
        }
        Op::Window { window, .. } => window.iter().map(|&w| Dim::known(w)).collect(),
        _ => Vec::new(),
    }
}

/// A use of a node: where its user needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Use {
    place: Place,
    /// The user is an argmax/argmin, which evaluates its operand in two kernels.
    twice: bool,
    /// Depth of the use inside its kernel: the user's depth plus one.
    depth: usize,
}

struct Planner<'a> {
    graph: &'a Graph,
    needed: HashSet<NodeId>,
    plan: Plan,
    /// Depth of each placed node in each kernel holding it (stored nodes are at 0), less
    /// that kernel's entry of `depth_base`.
    depth: HashMap<(NodeId, KIdx), i64>,
    /// Added to every `depth` entry of a kernel (empty: 0): a merge that deepens a large
    /// kernel by an offset moves this instead of every entry.
    depth_base: Vec<i64>,
    /// See [`Plan::work`] (a `Cell` because the merge checks take `&self`).
    work: std::cell::Cell<usize>,
    /// The coordinates each planned reduction is evaluated at in its kernel (`None` where
    /// they could not be followed): the start of the views in its operand region.
    coords: HashMap<NodeId, Option<Coords>>,
}

/// The kernel dependency graph during [`Planner::merge_pass`], kept up to date by each
/// merge instead of being rebuilt from every placement.
struct KernelGraph {
    /// Producers of each kernel (the keys are what [`Planner::deps`] returns), each with
    /// the number of `(node placed here, operand)` pairs that read it.
    deps: Vec<BTreeMap<KIdx, usize>>,
    /// Consumers of each kernel (the inverse of `deps`).
    succ: Vec<BTreeSet<KIdx>>,
    /// The deepest node placed in each kernel.
    depth: Vec<usize>,
    /// The nodes placed in each kernel.
    members: Vec<Vec<NodeId>>,
    /// False once merged into another kernel.
    alive: Vec<bool>,
    /// A topological numbering: a producer's number is below its consumers'.
    topo: Vec<usize>,
}

impl KernelGraph {
    /// Restores the topological numbering after the edge `from -> to` was added
    /// (Pearce-Kelly): the kernels reachable from `to` that are numbered at most `from`
    /// move, keeping their relative order, after those that reach `from` numbered at least
    /// `to`, within the numbers both sets held.
    fn order_edge(&mut self, from: KIdx, to: KIdx) {
        let (lo, hi) = (self.topo[to], self.topo[from]);
        if lo > hi {
            return;
        }
        let mut fwd = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![to];
        while let Some(k) = stack.pop() {
            if self.topo[k] > hi || !seen.insert(k) {
                continue;
            }
            fwd.push(k);
            stack.extend(self.succ[k].iter().copied());
        }
        let mut back = Vec::new();
        let mut stack = vec![from];
        while let Some(k) = stack.pop() {
            if self.topo[k] < lo || !seen.insert(k) {
                continue;
            }
            back.push(k);
            stack.extend(self.deps[k].keys().copied());
        }
        back.sort_by_key(|&k| self.topo[k]);
        fwd.sort_by_key(|&k| self.topo[k]);
        let mut slots: Vec<usize> = back.iter().chain(&fwd).map(|&k| self.topo[k]).collect();
        slots.sort_unstable();
        for (k, t) in back.into_iter().chain(fwd).zip(slots) {
            self.topo[k] = t;
        }
    }
}

impl Planner<'_> {
    fn shape(&self, n: NodeId) -> &[Dim] {
        &self.graph.node(n).shape.0
    }

    /// Where the users of `n` need it, from their placements.
    fn uses_of(&self, n: NodeId) -> Vec<Use> {
        let mut out = BTreeSet::new();
        for u in self.graph.users(n) {
            if !self.needed.contains(&u) {
                continue;
            }
            let Some(places) = self.plan.places.get(&u) else {
                continue;
            };
            let op = &self.graph.node(u).op;
            for (i, o) in self.graph.operands(u).into_iter().enumerate() {
                if o != n {
                    continue;
                }
                let edge = (u, i as u32);
                for p in places {
                    let derived = match class(op) {
                        Class::Source => continue,
                        Class::Inline { elementwise, .. } => {
                            let mut view = p.view.clone();
                            let same = self.shape(n) == self.shape(u);
                            let gather_index = matches!(op, Op::Gather { .. }) && i == 1;
                            if !((elementwise && same) || gather_index) {
                                view.push(edge);
                            }
                            Use {
                                place: Place {
                                    kernel: p.kernel,
                                    region: p.region,
                                    view,
                                    restricted: p.restricted
                                        || (matches!(op, Op::Gather { .. }) && i == 0),
                                },
                                twice: false,
                                depth: 0,
                            }
                        }
                        Class::Reduction | Class::Arg | Class::Scatter | Class::Control => Use {
                            place: Place {
                                kernel: p.kernel,
                                region: Region::Operand(u),
                                view: vec![edge],
                                restricted: false,
                            },
                            twice: matches!(op, Op::ArgReduce { .. }),
                            depth: 0,
                        },
                        Class::Contraction => {
                            let region = match (op, i) {
                                (Op::MatMul, 0) => Region::MatA,
                                (Op::MatMul, _) => Region::MatB,
                                (_, 0) => Region::ConvIn,
                                _ => Region::ConvW,
                            };
                            Use {
                                place: Place {
                                    kernel: p.kernel,
                                    region,
                                    view: Vec::new(),
                                    restricted: true,
                                },
                                twice: false,
                                depth: 0,
                            }
                        }
                    };
                    let depth = self.depth_of(u, p.kernel) + 1;
                    out.insert(Use { depth, ..derived });
                }
            }
        }
        out.into_iter().collect()
    }

    fn new_kernel(&mut self, n: NodeId, core: Core) -> KIdx {
        let k = self.plan.kernels.len();
        self.plan.kernels.push(KPlan {
            domain: self.shape(n).to_vec(),
            stores: vec![n],
            core,
            alive: true,
        });
        self.plan.places.insert(
            n,
            vec![Place {
                kernel: k,
                region: Region::Body,
                view: Vec::new(),
                restricted: false,
            }],
        );
        self.plan.stored_by.insert(n, k);
        self.depth.insert((n, k), 0);
        k
    }

    fn root(&mut self, n: NodeId) -> KIdx {
        let core = match class(&self.graph.node(n).op) {
            Class::Source | Class::Inline { .. } | Class::Control => Core::None,
            Class::Reduction => Core::Reduce(reduce_extents(self.graph, n)),
            Class::Arg => Core::Arg(n),
            Class::Scatter => Core::Scatter(n),
            Class::Contraction => match self.graph.node(n).op {
                Op::MatMul => Core::Matmul(n, false),
                _ => Core::Conv(n),
            },
        };
        if matches!(core, Core::Reduce(_)) {
            self.coords.insert(n, Some(Coords::identity(self.shape(n))));
        }
        self.new_kernel(n, core)
    }

    /// The coordinates of a node placed in kernel `k`, `region`, at `view` (`None` where
    /// the view cannot be followed).
    fn coords_at(&self, k: KIdx, region: Region, view: &View) -> Option<Coords> {
        let mut c = match region {
            Region::Body => Coords::identity(&self.plan.kernels[k].domain),
            Region::Operand(s) => self.coords.get(&s)?.clone()?,
            Region::MatA | Region::MatB | Region::ConvIn | Region::ConvW => return None,
        };
        for &(u, i) in view {
            c = c.through(self.graph, u, i)?;
        }
        Some(c)
    }

    /// Where a reduction can join the one kernel that holds all its `uses`: `Some(at)`
    /// when every use evaluates it at the same coordinates `at` (`None` inside: one view
    /// that could not be followed), and no use inside another reduction's operand reads
    /// it at coordinates (or under guards) that may move with the kernel's reduction
    /// variables, which would make it a nested reduction. Uses at several views must give
    /// the same exact coordinates, so the reduction is computed once per point.
    fn one_coordinate(&self, k: KIdx, uses: &[Use]) -> Option<Option<Coords>> {
        let places: BTreeSet<(Region, &View)> = uses
            .iter()
            .map(|u| (u.place.region, &u.place.view))
            .collect();
        let mut found: Vec<Option<Coords>> = Vec::with_capacity(places.len());
        for (region, view) in places {
            let c = self.coords_at(k, region, view);
            if matches!(region, Region::Operand(_)) && c.as_ref().is_none_or(Coords::uses_red) {
                return None;
            }
            found.push(c);
        }
        match found.as_slice() {
            [one] => Some(one.clone()),
            [first, rest @ ..] => {
                let first = first.as_ref().filter(|c| c.exact())?;
                rest.iter()
                    .all(|c| c.as_ref() == Some(first))
                    .then(|| Some(first.clone()))
            }
            [] => None,
        }
    }

    /// Depth of node `n` in kernel `k` (0 where it is not placed).
    fn depth_of(&self, n: NodeId, k: KIdx) -> usize {
        let base = self.depth_base.get(k).copied().unwrap_or(0);
        self.depth
            .get(&(n, k))
            .map_or(0, |&d| usize::try_from(d + base).unwrap_or(0))
    }

    /// Places `n` at every distinct use (merging `restricted` flags).
    fn place_at(&mut self, n: NodeId, uses: &[Use]) {
        for u in uses {
            let base = self.depth_base.get(u.place.kernel).copied().unwrap_or(0);
            let want = i64::try_from(u.depth).unwrap_or(i64::MAX) - base;
            let d = self.depth.entry((n, u.place.kernel)).or_insert(want);
            *d = (*d).max(want);
        }
        let mut map: BTreeMap<(KIdx, Region, View), bool> = BTreeMap::new();
        for u in uses {
            let e = map
                .entry((u.place.kernel, u.place.region, u.place.view.clone()))
                .or_insert(false);
            *e |= u.place.restricted;
        }
        let places = map
            .into_iter()
            .map(|((kernel, region, view), restricted)| Place {
                kernel,
                region,
                view,
                restricted,
            })
            .collect();
        self.plan.places.insert(n, places);
    }

    /// True if recomputing `n` in several kernels drags along only cheap, few nodes.
    fn cheap_cone(&self, n: NodeId) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![n];
        while let Some(m) = stack.pop() {
            if !seen.insert(m) {
                continue;
            }
            if seen.len() > MAX_RECOMPUTE_CONE {
                return false;
            }
            match class(&self.graph.node(m).op) {
                Class::Inline { expensive, .. } => {
                    if expensive {
                        return false;
                    }
                    stack.extend(self.graph.operands(m));
                }
                Class::Source
                | Class::Reduction
                | Class::Arg
                | Class::Contraction
                | Class::Scatter
                | Class::Control => {}
            }
        }
        true
    }

    fn broadcast_ok(&self, k: KIdx, n: NodeId) -> bool {
        let dom = Dim::product(&self.plan.kernels[k].domain);
        let own = Dim::product(self.shape(n));
        dom.exact_div(&own)
            .and_then(|f| f.as_known())
            .is_some_and(|f| f <= BROADCAST_EPILOGUE_LIMIT)
    }

    fn decide(&mut self, n: NodeId, must_store: bool) {
        let cls = class(&self.graph.node(n).op);
        if cls == Class::Source {
            if must_store {
                self.root(n);
            }
            return;
        }
        let uses = self.uses_of(n);
        if uses.is_empty() {
            if must_store {
                self.root(n);
            }
            return;
        }
        if uses.iter().any(|u| u.depth > MAX_FUSE_DEPTH) {
            self.root(n);
            return;
        }
        let kernels: BTreeSet<KIdx> = uses.iter().map(|u| u.place.kernel).collect();
        let single = kernels.len() == 1 && !uses.iter().any(|u| u.twice);
        let k = *kernels.iter().next().unwrap_or(&0);
        let all_identity = uses.iter().all(|u| u.place.identity_body());
        match cls {
            Class::Source | Class::Arg | Class::Scatter | Class::Control => {
                self.root(n);
            }
            Class::Contraction => {
                let free = single && self.plan.kernels[k].core == Core::None;
                let transposed = self.transposing_use(n, &uses);
                if free && all_identity {
                    let core = match self.graph.node(n).op {
                        Op::MatMul => Core::Matmul(n, false),
                        _ => Core::Conv(n),
                    };
                    self.plan.kernels[k].core = core;
                    self.join(n, k, &uses, must_store);
                } else if free && transposed && !must_store {
                    self.plan.kernels[k].core = Core::Matmul(n, true);
                    self.join(n, k, &uses, false);
                } else {
                    self.root(n);
                }
            }
            Class::Reduction => {
                let ext = reduce_extents(self.graph, n);
                let core = &self.plan.kernels[k].core;
                let compatible = match core {
                    Core::None => true,
                    Core::Reduce(e) => *e == ext,
                    Core::Matmul(..) | Core::Conv(_) | Core::Arg(_) | Core::Scatter(_) => false,
                };
                // A reduce may also run as an earlier stage of the kernel's other reduces
                // (over the same extents), read in their operands.
                let staged = matches!(self.graph.node(n).op, Op::Reduce { .. })
                    && *core == Core::Reduce(ext.clone());
                let regions = uses.iter().all(|u| match u.place.region {
                    Region::Body => true,
                    Region::Operand(s) => {
                        staged
                            && !u.place.restricted
                            && matches!(self.graph.node(s).op, Op::Reduce { .. })
                    }
                    Region::MatA | Region::MatB | Region::ConvIn | Region::ConvW => false,
                });
                let at = if single && compatible && regions {
                    self.one_coordinate(k, &uses)
                } else {
                    None
                };
                match at {
                    Some(at) if all_identity || (!must_store && self.broadcast_ok(k, n)) => {
                        self.plan.kernels[k].core = Core::Reduce(ext);
                        self.coords.insert(n, at);
                        self.join(n, k, &uses, must_store);
                    }
                    _ => {
                        self.root(n);
                    }
                }
            }
            Class::Inline {
                expensive, view, ..
            } => {
                if uses.iter().any(|u| u.place.restricted) && !view {
                    self.root(n);
                    return;
                }
                if must_store {
                    if single && all_identity {
                        self.join(n, k, &uses, true);
                    } else {
                        self.root(n);
                    }
                    return;
                }
                let distinct: BTreeSet<(KIdx, Region, &View)> = uses
                    .iter()
                    .map(|u| (u.place.kernel, u.place.region, &u.place.view))
                    .collect();
                let mut per_kernel: BTreeMap<KIdx, usize> = BTreeMap::new();
                for (k, _, _) in &distinct {
                    *per_kernel.entry(*k).or_insert(0) += 1;
                }
                if per_kernel.values().any(|&c| c > MAX_VIEWS) {
                    self.root(n);
                    return;
                }
                if single {
                    if expensive {
                        let mut per_region: BTreeMap<Region, usize> = BTreeMap::new();
                        for (_, r, _) in &distinct {
                            *per_region.entry(*r).or_insert(0) += 1;
                        }
                        if per_region.values().any(|&c| c > 1) {
                            self.root(n);
                            return;
                        }
                    }
                    self.join(n, k, &uses, false);
                } else if self.cheap_cone(n) {
                    self.place_at(n, &uses);
                } else {
                    self.root(n);
                }
            }
        }
    }

    /// True if `m` is a matmul whose every use is one permute, evaluated at its kernel's own
    /// coordinates, that swaps the last two axes.
    fn transposing_use(&self, m: NodeId, uses: &[Use]) -> bool {
        if !matches!(self.graph.node(m).op, Op::MatMul) {
            return false;
        }
        let Some(first) = uses.first() else {
            return false;
        };
        let [(p, 0)] = first.place.view[..] else {
            return false;
        };
        let Op::Permute(perm) = &self.graph.node(p).op else {
            return false;
        };
        let r = perm.len();
        let swaps = r >= 2
            && perm[..r - 2].iter().enumerate().all(|(i, &a)| a == i)
            && perm[r - 2] == r - 1
            && perm[r - 1] == r - 2;
        swaps
            && uses
                .iter()
                .all(|u| u.place.region == Region::Body && u.place.view == first.place.view)
            && self
                .plan
                .places
                .get(&p)
                .is_some_and(|ps| ps.iter().all(Place::identity_body))
    }

    fn join(&mut self, n: NodeId, k: KIdx, uses: &[Use], store: bool) {
        self.place_at(n, uses);
        if store {
            self.plan.kernels[k].stores.push(n);
            self.plan.stored_by.insert(n, k);
        }
    }

    /// The kernels each alive kernel reads from (producer sets).
    fn deps(&self) -> Vec<BTreeSet<KIdx>> {
        let mut deps = vec![BTreeSet::new(); self.plan.kernels.len()];
        for (&m, places) in &self.plan.places {
            for o in self.graph.operands(m) {
                let Some(&src) = self.plan.stored_by.get(&o) else {
                    continue;
                };
                for p in places {
                    let local = self
                        .plan
                        .places
                        .get(&o)
                        .is_some_and(|ps| ps.iter().any(|q| q.kernel == p.kernel));
                    if !local && src != p.kernel {
                        deps[p.kernel].insert(src);
                    }
                }
            }
        }
        deps
    }

    /// True if `to` is reachable from `from` through some kernel other than `to` itself.
    /// Only kernels that precede `to` in the topological numbering `topo` can lie on such a
    /// path, so the search never leaves that range.
    fn indirect_path(g: &KernelGraph, from: KIdx, to: KIdx) -> bool {
        let limit = g.topo[to];
        let mut seen = HashSet::new();
        let mut stack: Vec<KIdx> = g.succ[from].iter().copied().filter(|&s| s != to).collect();
        while let Some(k) = stack.pop() {
            if k == to {
                return true;
            }
            if g.topo[k] > limit || !seen.insert(k) {
                continue;
            }
            stack.extend(g.succ[k].iter().copied());
        }
        false
    }

    /// Whether producer `p` can be fused into its consumer `h`.
    fn can_merge(&self, p: KIdx, h: KIdx, g: &KernelGraph) -> bool {
        self.tick(1);
        let (kp, kh) = (&self.plan.kernels[p], &self.plan.kernels[h]);
        if kp.domain != kh.domain {
            return false;
        }
        let core_ok = match (&kp.core, &kh.core) {
            (Core::None, Core::None | Core::Reduce(_) | Core::Matmul(..) | Core::Conv(_)) => true,
            (Core::Reduce(a), Core::Reduce(b)) => a == b,
            (Core::Reduce(_) | Core::Matmul(..) | Core::Conv(_), Core::None) => true,
            _ => false,
        };
        // `h` reads some value of `p`, at a depth of at least 1.
        if !core_ok || g.depth[p] >= MAX_FUSE_DEPTH {
            return false;
        }
        for s in self.stores_used_in(p, h, g) {
            match self.deepest_use_in(s, h) {
                Some(d) if g.depth[p] + d <= MAX_FUSE_DEPTH => {}
                _ => return false,
            }
        }
        !Planner::indirect_path(g, p, h)
    }

    /// The deepest use of `s` in kernel `h` (0 if none), or `None` if some use there is not
    /// at `h`'s own coordinates in its body ([`Planner::uses_of`] restricted to `h`,
    /// without building the uses).
    fn deepest_use_in(&self, s: NodeId, h: KIdx) -> Option<usize> {
        let mut deepest = 0;
        for u in self.graph.users(s) {
            if !self.needed.contains(&u) {
                continue;
            }
            let Some(places) = self.plan.places.get(&u) else {
                continue;
            };
            if !places.iter().any(|p| p.kernel == h) {
                continue;
            }
            let op = &self.graph.node(u).op;
            for (i, o) in self.graph.operands(u).into_iter().enumerate() {
                if o != s {
                    continue;
                }
                for p in places.iter().filter(|p| p.kernel == h) {
                    let identity = match class(op) {
                        Class::Source => continue,
                        Class::Inline { elementwise, .. } => {
                            let gather_index = matches!(op, Op::Gather { .. }) && i == 1;
                            p.identity_body()
                                && (gather_index || (elementwise && self.shape(s) == self.shape(u)))
                        }
                        Class::Reduction
                        | Class::Arg
                        | Class::Scatter
                        | Class::Contraction
                        | Class::Control => false,
                    };
                    if !identity {
                        return None;
                    }
                    deepest = deepest.max(self.depth_of(u, h) + 1);
                }
            }
        }
        Some(deepest)
    }

    /// The deepest use of `p`'s stored values in `h`.
    fn use_depth(&self, p: KIdx, h: KIdx, g: &KernelGraph) -> usize {
        self.stores_used_in(p, h, g)
            .into_iter()
            .filter_map(|s| self.deepest_use_in(s, h))
            .max()
            .unwrap_or(0)
    }

    /// The nodes stored by `p` that some node placed in `h` reads: the only stores whose
    /// uses [`Planner::can_merge`] and [`Planner::use_depth`] look at. Found from whichever
    /// side is smaller, `p`'s stores or `h`'s members, so a kernel that has grown by many
    /// merges is not scanned again at every merge.
    fn stores_used_in(&self, p: KIdx, h: KIdx, g: &KernelGraph) -> Vec<NodeId> {
        self.tick(self.plan.kernels[p].stores.len().min(g.members[h].len()));
        let in_h = |n: NodeId| {
            self.plan
                .places
                .get(&n)
                .is_some_and(|ps| ps.iter().any(|q| q.kernel == h))
        };
        let stores = &self.plan.kernels[p].stores;
        if stores.len() <= g.members[h].len() {
            return stores
                .iter()
                .copied()
                .filter(|&s| {
                    self.graph
                        .users(s)
                        .into_iter()
                        .any(|u| self.needed.contains(&u) && in_h(u))
                })
                .collect();
        }
        let mut out = BTreeSet::new();
        for &m in &g.members[h] {
            for o in self.graph.operands(m) {
                if self.plan.stored_by.get(&o) == Some(&p) {
                    out.insert(o);
                }
            }
        }
        out.into_iter().collect()
    }

    /// The producer counts of every kernel: for each kernel, how many `(node placed in
    /// it, operand)` pairs read a value stored by each other kernel (and not computed here).
    fn dep_counts(&self) -> Vec<BTreeMap<KIdx, usize>> {
        let mut deps = vec![BTreeMap::new(); self.plan.kernels.len()];
        for (&m, places) in &self.plan.places {
            let ks: BTreeSet<KIdx> = places.iter().map(|p| p.kernel).collect();
            for o in self.graph.operands(m) {
                let Some(&src) = self.plan.stored_by.get(&o) else {
                    continue;
                };
                for &k in &ks {
                    if src != k && !self.placed_in(o, k) {
                        *deps[k].entry(src).or_insert(0) += 1;
                    }
                }
            }
        }
        deps
    }

    fn placed_in(&self, n: NodeId, k: KIdx) -> bool {
        self.plan
            .places
            .get(&n)
            .is_some_and(|ps| ps.iter().any(|q| q.kernel == k))
    }

    fn tick(&self, steps: usize) {
        self.work.set(self.work.get() + steps);
    }

    /// The kernel graph of the current plan, built once for [`Planner::merge_pass`].
    fn kernel_graph(&self, rank: &HashMap<NodeId, usize>) -> KernelGraph {
        self.tick(self.plan.places.len());
        let n = self.plan.kernels.len();
        let deps = self.dep_counts();
        let mut succ = vec![BTreeSet::new(); n];
        for (k, ds) in deps.iter().enumerate() {
            for &d in ds.keys() {
                succ[d].insert(k);
            }
        }
        let mut depth = vec![0; n];
        for &(m, k) in self.depth.keys() {
            depth[k] = depth[k].max(self.depth_of(m, k));
        }
        let mut members = vec![Vec::new(); n];
        for (&m, places) in &self.plan.places {
            let ks: BTreeSet<KIdx> = places.iter().map(|p| p.kernel).collect();
            for k in ks {
                members[k].push(m);
            }
        }
        let alive: Vec<bool> = self.plan.kernels.iter().map(|k| k.alive).collect();
        let sets: Vec<BTreeSet<KIdx>> = deps.iter().map(|d| d.keys().copied().collect()).collect();
        let topo = match self.toposort(&sets, &[], rank) {
            Some(order) => {
                let mut t = vec![usize::MAX; n];
                for (i, k) in order.into_iter().enumerate() {
                    t[k] = i;
                }
                t
            }
            None => vec![usize::MAX; n],
        };
        KernelGraph {
            deps,
            succ,
            depth,
            members,
            alive,
            topo,
        }
    }

    /// Fuses kernel `p` into its consumer `h`, keeping `g` equal to what
    /// [`Planner::kernel_graph`] would build afresh. The merged kernel keeps `h`'s stores
    /// first and `h`'s core (or `p`'s, when `h` has none); it lives in the slot of whichever
    /// of the two has more nodes, and only the nodes of the other one are moved, so a kernel
    /// that grows by many merges costs time in what it absorbs, not in its own size.
    /// Returns the slot of the merged kernel, and whether a dependency edge of some other
    /// kernel disappeared (a value the merged kernel now computes itself).
    fn merge(&mut self, p: KIdx, h: KIdx, g: &mut KernelGraph) -> (KIdx, bool) {
        let offset = i64::try_from(self.use_depth(p, h, g)).unwrap_or(i64::MAX);
        let (v, d) = if g.members[p].len() > g.members[h].len() {
            (p, h)
        } else {
            (h, p)
        };
        if self.depth_base.len() < self.plan.kernels.len() {
            self.depth_base.resize(self.plan.kernels.len(), 0);
        }
        let moved = std::mem::take(&mut g.members[d]);
        self.tick(moved.len());
        let fresh: Vec<NodeId> = moved
            .iter()
            .copied()
            .filter(|&n| !self.placed_in(n, v))
            .collect();
        // Producer counts of the merged kernel, from those of `v` and the nodes of `d`.
        let mut counts = std::mem::take(&mut g.deps[v]);
        let old_v: Vec<KIdx> = counts.keys().copied().collect();
        let old_d = std::mem::take(&mut g.deps[d]);
        let dec = |c: &mut BTreeMap<KIdx, usize>, k: KIdx, by: usize| {
            if let Some(x) = c.get_mut(&k) {
                *x = x.saturating_sub(by);
                if *x == 0 {
                    c.remove(&k);
                }
            }
        };
        for &o in &fresh {
            let Some(&src) = self.plan.stored_by.get(&o) else {
                continue;
            };
            for m in self.graph.users(o) {
                if self.placed_in(m, v) {
                    let times = self.graph.operands(m).iter().filter(|&&x| x == o).count();
                    dec(&mut counts, src, times);
                }
            }
        }
        for &m in &fresh {
            for o in self.graph.operands(m) {
                let Some(&src) = self.plan.stored_by.get(&o) else {
                    continue;
                };
                if src != v && src != d && !self.placed_in(o, v) && !self.placed_in(o, d) {
                    *counts.entry(src).or_insert(0) += 1;
                }
            }
        }
        counts.remove(&d);
        counts.remove(&v);
        let dropped = old_v
            .iter()
            .chain(old_d.keys())
            .any(|k| *k != p && *k != h && !counts.contains_key(k));

        let (base_v, base_d) = (self.depth_base[v], self.depth_base[d]);
        let new_base_v = if v == p { base_v + offset } else { base_v };
        let shift = if d == p { offset } else { 0 };
        for &n in &moved {
            if let Some(x) = self.depth.remove(&(n, d)) {
                let want = x + base_d + shift - new_base_v;
                let e = self.depth.entry((n, v)).or_insert(want);
                *e = (*e).max(want);
            }
            if let Some(places) = self.plan.places.get_mut(&n) {
                for pl in places.iter_mut() {
                    if pl.kernel == d {
                        pl.kernel = v;
                    }
                }
                places.sort();
                places.dedup();
            }
        }
        self.depth_base[v] = new_base_v;
        self.depth_base[d] = 0;
        g.members[v].extend(fresh);
        g.depth[v] = g.depth[h].max(g.depth[p] + usize::try_from(offset).unwrap_or(0));
        g.depth[d] = 0;

        for &s in &self.plan.kernels[d].stores {
            self.plan.stored_by.insert(s, v);
        }
        let mut stores = std::mem::take(&mut self.plan.kernels[h].stores);
        stores.extend(std::mem::take(&mut self.plan.kernels[p].stores));
        self.plan.kernels[v].stores = stores;
        let core_p = std::mem::replace(&mut self.plan.kernels[p].core, Core::None);
        let core_h = std::mem::replace(&mut self.plan.kernels[h].core, Core::None);
        self.plan.kernels[v].core = if core_h == Core::None { core_p } else { core_h };
        self.plan.kernels[d].alive = false;
        g.alive[d] = false;

        // Edges: producers of both now feed `v`; consumers of `d` now read `v`.
        for src in old_v.into_iter().chain(old_d.keys().copied()) {
            g.succ[src].remove(&v);
            g.succ[src].remove(&d);
        }
        for &src in counts.keys() {
            g.succ[src].insert(v);
        }
        g.deps[v] = counts;
        let consumers_d = std::mem::take(&mut g.succ[d]);
        for &x in &consumers_d {
            if x == v {
                continue;
            }
            if let Some(c) = g.deps[x].remove(&d) {
                *g.deps[x].entry(v).or_insert(0) += c;
            }
            g.succ[v].insert(x);
        }
        g.succ[v].remove(&v);
        g.succ[v].remove(&d);
        let top = g.topo[h];
        g.topo[v] = top;
        let later: Vec<KIdx> = g.succ[v].iter().copied().collect();
        for x in later {
            g.order_edge(v, x);
        }
        (v, dropped)
    }

    /// Greedy fusion: repeatedly merges the first producer (in `rank` order) that can be
    /// fused into one of its consumers (in the same order), until none can.
    ///
    /// After merging `p` into `h`, essentially only pairs involving `h` can have become
    /// mergeable: contracting an edge keeps every other pair's reachability and depths, and
    /// added paths only forbid merges. So the scan resumes at the first producer of `h` (or
    /// `h` itself) instead of restarting from the first kernel, which made the pass
    /// quadratic in the kernel count. The exception is a value `h` now recomputes locally,
    /// which can drop a dependency edge; a full scan before stopping catches what that
    /// enables, so the pass still ends only when no pair can merge.
    ///
    /// The kernel graph (producers, consumers, depths, the nodes placed in each kernel, a
    /// topological numbering) is built once and updated by each merge, so a merge costs
    /// time in the size of the two kernels, not of the whole plan.
    fn merge_pass(&mut self, rank: &HashMap<NodeId, usize>) {
        let mut g = self.kernel_graph(rank);
        let mut order: Vec<KIdx> = (0..self.plan.kernels.len())
            .filter(|&k| g.alive[k])
            .collect();
        order.sort_by_key(|&k| rank.get(&self.plan.kernels[k].stores[0]).copied());
        let mut pos = vec![usize::MAX; self.plan.kernels.len()];
        for (i, &k) in order.iter().enumerate() {
            pos[k] = i;
        }
        // Positions of the alive kernels that may have a mergeable consumer: a kernel that
        // failed stays out until a merge touches it (it becomes, or produces for, the
        // merged kernel) or drops a dependency edge somewhere (which can remove a path).
        let mut todo: BTreeSet<usize> = (0..order.len()).collect();
        let mut alive = todo.clone();
        let mut last: Option<KIdx> = None;
        loop {
            let start = match last {
                Some(h) => g.deps[h].keys().map(|&q| pos[q]).fold(pos[h], usize::min),
                None => 0,
            };
            let mut merged = None;
            let mut failed = Vec::new();
            'outer: for &i in todo.range(start..) {
                let p = order[i];
                if !matches!(self.plan.kernels[p].core, Core::Arg(_) | Core::Scatter(_)) {
                    let mut consumers: Vec<KIdx> = g.succ[p]
                        .iter()
                        .copied()
                        .filter(|&h| h != p && g.alive[h])
                        .collect();
                    consumers.sort_by_key(|&h| pos[h]);
                    for h in consumers {
                        if self.can_merge(p, h, &g) {
                            merged = Some((p, h));
                            break 'outer;
                        }
                    }
                }
                failed.push(i);
            }
            for i in failed {
                todo.remove(&i);
            }
            let Some((p, h)) = merged else {
                if start == 0 {
                    break;
                }
                last = None;
                continue;
            };
            todo.remove(&pos[p]);
            alive.remove(&pos[p]);
            let (v, dropped) = self.merge(p, h, &mut g);
            if v != h {
                order[pos[h]] = v;
                pos[v] = pos[h];
                pos[h] = usize::MAX;
            }
            if dropped {
                todo = alive.clone();
            } else {
                todo.insert(pos[v]);
                todo.extend(g.deps[v].keys().map(|&q| pos[q]));
            }
            last = Some(v);
            debug_assert!(
                self.plan.kernels.len() > 64 || g.deps == self.dep_counts(),
                "incremental kernel dependencies diverged"
            );
        }
        for ((_, k), d) in self.depth.iter_mut() {
            *d += self.depth_base.get(*k).copied().unwrap_or(0);
        }
        self.depth_base.clear();
    }

    /// Kernels that read the (old value of the) parameter `param`.
    fn readers(&self, param: NodeId) -> BTreeSet<KIdx> {
        let mut out = BTreeSet::new();
        for u in self.graph.users(param) {
            if let Some(ps) = self.plan.places.get(&u) {
                out.extend(ps.iter().map(|p| p.kernel));
            }
        }
        out
    }

    fn toposort(
        &self,
        deps: &[BTreeSet<KIdx>],
        extra: &[(KIdx, KIdx)],
        rank: &HashMap<NodeId, usize>,
    ) -> Option<Vec<KIdx>> {
        let n = self.plan.kernels.len();
        let mut preds: Vec<BTreeSet<KIdx>> = deps.to_vec();
        for &(a, b) in extra {
            preds[b].insert(a);
        }
        let alive: Vec<bool> = self.plan.kernels.iter().map(|k| k.alive).collect();
        let key = |k: KIdx| {
            rank.get(&self.plan.kernels[k].stores[0])
                .copied()
                .unwrap_or(usize::MAX)
        };
        let mut indeg = vec![0usize; n];
        let mut succ = vec![Vec::new(); n];
        for k in (0..n).filter(|&k| alive[k]) {
            for &p in preds[k].iter().filter(|&&p| p != k && alive[p]) {
                indeg[k] += 1;
                succ[p].push(k);
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(usize, KIdx)>> = (0..n)
            .filter(|&k| alive[k] && indeg[k] == 0)
            .map(|k| std::cmp::Reverse((key(k), k)))
            .collect();
        let mut order = Vec::new();
        while let Some(std::cmp::Reverse((_, k))) = ready.pop() {
            order.push(k);
            for &s in &succ[k] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    ready.push(std::cmp::Reverse((key(s), s)));
                }
            }
        }
        (order.len() == alive.iter().filter(|&&a| a).count()).then_some(order)
    }
}

/// Position of every node in a depth-first post-order from `roots` that visits the
/// operand with the tallest dependency chain first: kernels run in this order where
/// dependencies allow, so a short side branch (an LSTM step's `x_t @ W_ih`) runs just
/// before its consumer instead of at the start, and intermediates die early.
fn post_order(graph: &Graph, order: &[NodeId], roots: &[NodeId]) -> HashMap<NodeId, usize> {
    let mut height: HashMap<NodeId, usize> = HashMap::new();
    for &n in order {
        let h = graph
            .operands(n)
            .iter()
            .map(|o| height.get(o).copied().unwrap_or(0) + 1)
            .max()
            .unwrap_or(0);
        height.insert(n, h);
    }
    let mut rank = HashMap::new();
    let mut stack: Vec<(NodeId, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
    while let Some((n, expanded)) = stack.pop() {
        if rank.contains_key(&n) {
            continue;
        }
        if expanded {
            let next = rank.len();
            rank.insert(n, next);
        } else {
            stack.push((n, true));
            let mut ops = graph.operands(n);
            // Pushed last = visited first: the tallest operand.
            ops.sort_by_key(|o| height.get(o).copied().unwrap_or(0));
            for o in ops {
                if !rank.contains_key(&o) {
                    stack.push((o, false));
                }
            }
        }
    }
    rank
}

/// Plans the fusion of the nodes that `outputs` and `updates` (`(parameter name, node)`)
/// depend on.
pub(crate) fn plan(
    graph: &Graph,
    outputs: &[NodeId],
    updates: &[(String, NodeId, NodeId)],
) -> Result<Plan, FuseError> {
    let mut roots: Vec<NodeId> = outputs.to_vec();
    roots.extend(updates.iter().map(|u| u.2));
    let order = graph.ancestors(&roots)?;
    let rank = post_order(graph, &order, &roots);
    let must: HashSet<NodeId> = roots.iter().copied().collect();
    let mut p = Planner {
        graph,
        needed: order.iter().copied().collect(),
        plan: Plan::default(),
        depth: HashMap::new(),
        depth_base: Vec::new(),
        work: std::cell::Cell::new(0),
        coords: HashMap::new(),
    };
    for &n in order.iter().rev() {
        p.decide(n, must.contains(&n));
    }
    p.merge_pass(&rank);
    p.plan.work = p.work.get();

    let deps = p.deps();
    let mut extra: Vec<(KIdx, KIdx)> = Vec::new();
    let mut in_place: Vec<bool> = Vec::new();
    for (_, param, node) in updates {
        let Some(&w) = p.plan.stored_by.get(node) else {
            return Err(FuseError::Internal(format!("update {node} is not stored")));
        };
        let readers = p.readers(*param);
        let identity_only = p
            .uses_of(*param)
            .iter()
            .filter(|x| x.place.kernel == w)
            .all(|x| x.place.identity_body());
        let edges: Vec<(KIdx, KIdx)> = readers
            .iter()
            .filter(|&&r| r != w)
            .map(|&r| (r, w))
            .collect();
        let mut trial = extra.clone();
        trial.extend(edges.iter().copied());
        let ok = identity_only && p.toposort(&deps, &trial, &rank).is_some();
        if ok {
            extra = trial;
        }
        in_place.push(ok);
    }
    let Some(order) = p.toposort(&deps, &extra, &rank) else {
        return Err(FuseError::Internal(
            "kernel dependencies form a cycle".into(),
        ));
    };
    p.plan.order = order;
    for ((name, _, node), ok) in updates.iter().zip(in_place) {
        if !ok {
            p.plan.late_updates.push((*node, name.clone()));
        }
    }
    Ok(p.plan)
}
