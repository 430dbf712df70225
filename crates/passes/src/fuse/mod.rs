//! Fusion: lowers a graph to a kernel plan ([`kiln_kernel::Program`]). Movement ops become
//! index arithmetic, elementwise chains fuse into one loop kernel, reductions fuse with
//! their elementwise producers (and with broadcasting consumers), and elementwise consumers
//! of a matmul or conv2d fuse into its epilogue. Backends never make fusion decisions.
//!
//! # Entry points
//!
//! [`lower`] turns `(name, node)` outputs into `output` buffers; [`lower_with`] also writes
//! state updates (`(parameter name, node)`, a train step's new weights) back into the
//! parameters' `state` buffers, in place where that is safe, and returns a [`FuseReport`].
//! Inputs become `input` buffers, parameters `state` buffers, non-scalar constants `const`
//! buffers (one-element constants become immediates), and every other materialised node a
//! `scratch` buffer. Symbols stay symbolic: kernels take them at run time, and the program
//! declares every symbol of the inputs' shapes (`N >= 1`). The program is verified before it
//! is returned, so every access is proven in bounds.
//!
//! # Fusion rules
//!
//! Planning walks the graph from the outputs back to the inputs and places every node in
//! the kernels that need it:
//!
//! 1. **Materialised nodes.** A node gets its own buffer (is stored by some kernel) when it
//!    is an output or a state update, a reduction or contraction whose consumer cannot host
//!    it (below), an argmax/argmin or scatter-add (always their own kernels), an operand of a
//!    contraction or the source of a gather that is not a pure view (reshape, permute,
//!    expand, slice, flip of a buffer), or a node whose users sit in several kernels and
//!    that is not cheap to recompute. Inputs, parameters and constants are buffers already.
//! 2. **Recompute rule.** A node used by several kernels is recomputed in each of them only
//!    if everything it would drag along is cheap and small: no transcendental (`exp`, `log`,
//!    `sqrt`, `rsqrt`, `sin`, `cos`, `tanh`, `sigmoid`, `erf`, `pow`), no random bits, no
//!    reduction or contraction, and at most 16 nodes. Inside one kernel an expensive node
//!    is evaluated at most once per phase: once in a reduction's operand and once in the
//!    epilogue is allowed (the two passes of a hand-written softmax both compute `exp`), two
//!    different coordinates in one phase (a stencil over `exp(x)`) are not, and the node is
//!    materialised instead. No node is evaluated at more than 8 distinct coordinate views in
//!    one kernel, and no inlined chain below a kernel's stored values is longer than 256
//!    nodes (a longer chain is cut into several kernels).
//! 3. **Elementwise and movement ops** fuse into their consumers' kernels; a maximal chain
//!    of them is one loop kernel. Movement ops are index arithmetic: reshapes divide and
//!    take remainders of flat indices (simplified to affine forms where ranges allow),
//!    permutes reorder coordinates, expands drop them, slices scale and offset, flips
//!    mirror, pads and concats become masked loads and selects.
//! 4. **Reductions** (reduce, window) fuse their elementwise producers into the reduction
//!    operand. A reduction also fuses into its consumer's kernel when every use is in that
//!    one kernel, all at one coordinate, and the kernel has no other core or only
//!    reductions over the same extents: at the consumer's own shape this is a plain
//!    epilogue; a consumer that broadcasts the result (softmax's `e / sum(e)`, layer
//!    norm's `x * rsqrt(var)`) recomputes the reduction at each of its points, allowed when
//!    the broadcast factor is a known size of at most 1024 (a backend evaluates a reduction
//!    that is invariant along inner loop axes once per row). A `reduce` may also be used
//!    inside the operands of the kernel's other `reduce`s (over the same extents): it then
//!    runs as an earlier *reduction stage* of that kernel (softmax's row max before its sum
//!    of `exp(x - max)`, layer norm's mean before its variance; see
//!    [`kiln_kernel::Body::stages`]), provided that at every such use its coordinates, and
//!    the guards of any pad or concat on the way, stay fixed while the other reduction's
//!    variables move. The planner follows each use's coordinates from the region's root
//!    through the view's edges (broadcasts, reshapes, permutes, slices, flips, pads, ...),
//!    treating anything it cannot follow exactly (a reshape that mixes a moving axis, a
//!    gather index) as moving. A reduction read where it moves with the outer reduction
//!    (`sum_j x[i, j] * max_k x[j, k]`) is nested and is materialised; the lowering rejects
//!    a nested reduction in a plan with an internal error. Several uses must give the same
//!    exact coordinates (so the reduction is computed once per point) unless they share one
//!    view. Windows, argmax/argmin and scatter-add never run as a stage.
//! 5. **Contractions.** A matmul or conv2d hosts an epilogue of elementwise consumers at its
//!    own output shape (bias, activation, residual); its operands must be pure views of
//!    buffers, so transposes and broadcast batches fold into the operand index (a computed
//!    operand is materialised first). A matmul whose only consumer swaps its last two axes
//!    is computed as the transposed product (`(a @ b)^T = b^T @ a^T`), so that consumer
//!    chain is its epilogue too (a weight gradient `permute(x^T @ dy)` and its SGD update
//!    are one kernel).
//! 6. **Multi-output fusion.** A kernel whose stored values are all read by one consumer
//!    kernel at the consumer's own coordinates (same domain) merges into that consumer,
//!    which stores them too (an LSTM cell's `c'` and `h'`), unless another kernel lies on a
//!    path between them.
//! 7. **Order and state.** Kernels run in dependency order, ties broken by a depth-first
//!    post-order of the graph that visits the operand with the tallest dependency chain
//!    first, so short side branches run just before their consumers. A state update is
//!    written in place by the kernel that computes it when that kernel reads the old
//!    parameter only at the element it writes and every other reader of the parameter can
//!    run before it; otherwise it goes to scratch and is copied into the state after every
//!    other kernel.
//!
//! Consequences, asserted by the golden tests: softmax, log-softmax and layer norm over the
//! last axis are 1 kernel each (two reduction stages: max then sum, mean then variance),
//! SimpleNN's forward pass is its 2 matmuls with bias and ReLU in their epilogues, an
//! elementwise chain of any length is 1 kernel, one LSTM step is 2 matmuls and 1 loop.
//!
//! # Op lowering
//!
//! Gathers are checked loads whose index is the loaded index value, plus a checked load of a
//! constant all-`true` buffer as long as the gathered axis, so an index outside the axis
//! sets the error flag even where the flat index stays inside the buffer (when the axis is
//! symbolic only the flat index is checked). Scatter-add is a loop over the target with a
//! reduction over the scattered axis (point 0 reads the target, point `j + 1` adds `src[j]`
//! where `index[j]` names the output position), accumulating in the interpreter's order;
//! its indices are range-checked the same way. Argmax/argmin is two kernels (the
//! extremum, then the first index that holds it or a NaN). Random bits are Threefry-2x32
//! in `u32` arithmetic, rotations written as `x * 2^r | x / 2^(32-r)` because the kernel IR
//! has no shifts. Integer division inside a masked region divides by 1 where the mask
//! fails, so values that are never used cannot fault.

mod control;
mod coords;
mod groups;
mod index;
mod lower;

use kiln_ir::{DType, Dim, Graph, GraphError, NodeId, OpKind};
use kiln_kernel::{BufferKind, Kernel, Program, VerifiedProgram, VerifyErrors};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

pub use groups::{BROADCAST_EPILOGUE_LIMIT, MAX_FUSE_DEPTH, MAX_RECOMPUTE_CONE, MAX_VIEWS};

/// Why a graph could not be lowered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FuseError {
    /// The graph is malformed (a cycle, an unknown operand).
    #[error("fuse: {0}")]
    Graph(#[from] GraphError),
    /// An output or update names a node that is not in the graph.
    #[error("fuse: {0} is not a node of the graph")]
    UnknownNode(NodeId),
    /// Two outputs share a name.
    #[error("fuse: output name `{0}` is used twice")]
    DuplicateOutput(String),
    /// A state update names no parameter of the graph.
    #[error("fuse: state update `{0}` names no parameter of the graph")]
    UnknownParameter(String),
    /// A parameter is updated twice.
    #[error("fuse: parameter `{0}` is updated twice")]
    DuplicateUpdate(String),
    /// A state update's dtype or shape differs from its parameter's.
    #[error("fuse: update of `{name}` is {got}, the parameter is {expected}")]
    UpdateMismatch {
        /// The parameter.
        name: String,
        /// The parameter's type.
        expected: String,
        /// The update's type.
        got: String,
    },
    /// A shape uses a symbol that no input's shape binds.
    #[error("fuse: {node} uses symbol `{symbol}`, which no input shape binds")]
    FreeSymbol {
        /// The node.
        node: NodeId,
        /// The symbol.
        symbol: String,
    },
    /// An op cannot be lowered in this form.
    #[error("fuse: cannot lower {node}: {reason}")]
    Unsupported {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The lowered program does not verify (a bug in the fusion pass).
    #[error("fuse: the lowered program does not verify: {}", .0.summary())]
    Verify(VerifyErrors),
    /// An internal invariant failed (a bug in the fusion pass).
    #[error("fuse: internal error: {0}")]
    Internal(String),
    /// A range-check table the plan needs is larger than [`MAX_CHECK_TABLE`] elements or
    /// than memory allows (an axis no real input can have).
    #[error("fuse: an axis of {len} elements is too large to range-check")]
    CheckTableTooLarge {
        /// The axis length.
        len: u64,
    },
}

/// Most elements of one range-check table (a gather or scatter axis).
pub const MAX_CHECK_TABLE: u64 = 1 << 28;

/// Kernel counts of a program, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuseReport {
    /// Loop kernels without reduction axes.
    pub elementwise: usize,
    /// Loop kernels with reduction axes.
    pub reduction: usize,
    /// Matmul kernels.
    pub matmul: usize,
    /// Conv2d kernels.
    pub conv2d: usize,
    /// Scratch buffers (materialised intermediates).
    pub scratch: usize,
}

impl FuseReport {
    /// Counts the kernels and scratch buffers of `program`.
    pub fn of(program: &Program) -> FuseReport {
        let mut r = FuseReport::default();
        for k in &program.kernels {
            match k {
                Kernel::Loop(l) if l.reduce.is_empty() => r.elementwise += 1,
                Kernel::Loop(_) => r.reduction += 1,
                Kernel::Matmul(_) => r.matmul += 1,
                Kernel::Conv2d(_) => r.conv2d += 1,
            }
        }
        r.scratch = program
            .buffers
            .iter()
            .filter(|b| b.kind == BufferKind::Scratch)
            .count();
        r
    }

    /// Every kernel.
    pub fn kernels(&self) -> usize {
        self.elementwise + self.reduction + self.matmul + self.conv2d
    }

    /// Loop kernels (elementwise and reduction).
    pub fn loops(&self) -> usize {
        self.elementwise + self.reduction
    }
}

impl fmt::Display for FuseReport {
    /// `5 kernels: 2 matmul, 0 conv2d, 1 reduction, 2 elementwise; 3 scratch buffers`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} kernels: {} matmul, {} conv2d, {} reduction, {} elementwise; {} scratch buffers",
            self.kernels(),
            self.matmul,
            self.conv2d,
            self.reduction,
            self.elementwise,
            self.scratch
        )
    }
}

/// A lowered program with its kernel counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lowered {
    /// The verified kernel plan.
    pub program: VerifiedProgram,
    /// Its kernel counts.
    pub report: FuseReport,
    /// Steps the fusion planner's merge pass took (kernel-graph placements read, merge
    /// checks, values they looked at, nodes moved): a deterministic measure of planning
    /// cost, linear in the length of an elementwise chain.
    pub plan_work: usize,
}

/// Lowers the nodes `outputs` (`(name, node)`) of `graph` to a verified kernel plan whose
/// `output` buffers carry those names. See the module docs for the rules.
pub fn lower(graph: &Graph, outputs: &[(String, NodeId)]) -> Result<VerifiedProgram, FuseError> {
    lower_with(graph, outputs, &[]).map(|l| l.program)
}

/// [`lower`], also writing each `(parameter name, node)` of `updates` into the parameter's
/// `state` buffer (in place when safe, else after every other kernel), with a report.
pub fn lower_with(
    graph: &Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId)],
) -> Result<Lowered, FuseError> {
    let (program, plan_work) = match lower_unverified(graph, outputs, updates)? {
        Unverified::Flat(p, work) => (p, work),
        Unverified::Structured(l) => return Ok(l),
    };
    let program = kiln_kernel::verify(program).map_err(FuseError::Verify)?;
    let report = FuseReport::of(&program);
    Ok(Lowered {
        program,
        report,
        plan_work,
    })
}

/// What [`lower_unverified`] made.
pub(crate) enum Unverified {
    /// A program without control flow, not yet verified, and the planner's work count.
    Flat(Program, usize),
    /// A program with control flow, verified once as a whole.
    Structured(Lowered),
}

/// [`lower_with`] without the final verification of a graph without control flow (the
/// control-flow lowering fuses each stage with it and verifies the whole program once).
pub(crate) fn lower_unverified(
    graph: &Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId)],
) -> Result<Unverified, FuseError> {
    let mut names = HashSet::new();
    for (name, n) in outputs {
        if !graph.contains(*n) {
            return Err(FuseError::UnknownNode(*n));
        }
        if !names.insert(name.as_str()) {
            return Err(FuseError::DuplicateOutput(name.clone()));
        }
    }
    let params: HashMap<&str, NodeId> = graph
        .parameters()
        .into_iter()
        .map(|(n, s)| (s, n))
        .collect();
    let mut seen = HashSet::new();
    let mut upd: Vec<(String, NodeId, NodeId)> = Vec::new();
    for (name, n) in updates {
        if !graph.contains(*n) {
            return Err(FuseError::UnknownNode(*n));
        }
        let p = *params
            .get(name.as_str())
            .ok_or_else(|| FuseError::UnknownParameter(name.clone()))?;
        if !seen.insert(name.as_str()) {
            return Err(FuseError::DuplicateUpdate(name.clone()));
        }
        let (pn, un) = (graph.node(p), graph.node(*n));
        if pn.dtype != un.dtype || pn.shape != un.shape {
            return Err(FuseError::UpdateMismatch {
                name: name.clone(),
                expected: format!("{}{}", pn.dtype, pn.shape),
                got: format!("{}{}", un.dtype, un.shape),
            });
        }
        upd.push((name.clone(), p, *n));
    }
    let mut roots: Vec<NodeId> = outputs.iter().map(|o| o.1).collect();
    roots.extend(upd.iter().map(|u| u.2));
    if control::has_control(graph, &roots)? {
        return control::lower_structured(graph, outputs, &upd).map(Unverified::Structured);
    }

    let mut program = Program::new();
    let mut symbols: BTreeSet<String> = BTreeSet::new();
    for (n, _) in graph.inputs() {
        symbols.extend(graph.node(n).shape.symbols().iter().map(|s| s.to_string()));
    }
    for s in &symbols {
        program.add_symbol(s, 1, None);
    }
    for n in graph.ancestors(&roots)? {
        for s in graph.node(n).shape.symbols() {
            if !symbols.contains(&*s) {
                return Err(FuseError::FreeSymbol {
                    node: n,
                    symbol: s.to_string(),
                });
            }
        }
    }

    let plan = groups::plan(
        graph,
        &outputs.iter().map(|o| o.1).collect::<Vec<_>>(),
        &upd,
    )?;
    let mut low = lower::Lowering::new(graph, &plan, program);
    let size = |graph: &Graph, n: NodeId| -> (DType, Dim) {
        let node = graph.node(n);
        (node.dtype, node.shape.numel())
    };
    for (n, name) in graph.inputs() {
        let (d, s) = size(graph, n);
        let b = low
            .program
            .add_buffer(d, s, BufferKind::Input(name.to_string()));
        low.buffer_of.insert(n, b);
    }
    for (n, name) in graph.parameters() {
        let (d, s) = size(graph, n);
        let b = low
            .program
            .add_buffer(d, s, BufferKind::State(name.to_string()));
        low.buffer_of.insert(n, b);
    }
    for (name, n) in outputs {
        let (d, s) = size(graph, *n);
        let b = low
            .program
            .add_buffer(d, s, BufferKind::Output(name.clone()));
        low.dests.entry(*n).or_default().push(b);
    }
    let late: HashSet<NodeId> = plan.late_updates.iter().map(|u| u.0).collect();
    for (name, _, n) in &upd {
        if !late.contains(n)
            && let Some(b) = low.program.state(name)
        {
            low.dests.entry(*n).or_default().push(b);
        }
    }
    for &k in &plan.order {
        for &s in &plan.kernels[k].stores {
            let dests = low.dests.entry(s).or_default();
            if dests.is_empty() {
                let (d, sz) = size(graph, s);
                let b = low.program.add_buffer(d, sz, BufferKind::Scratch);
                if let Some(v) = low.dests.get_mut(&s) {
                    v.push(b);
                }
            }
            let is_source = matches!(graph.node(s).op.kind(), OpKind::Fed | OpKind::Literal);
            if !is_source && let Some(&b) = low.dests.get(&s).and_then(|v| v.first()) {
                low.buffer_of.insert(s, b);
            }
        }
    }
    low.emit_all()?;
    Ok(Unverified::Flat(low.program, plan.work))
}
