//! Fusion of graphs with control flow (`cond`, `scan`, `while`): the graph is cut into
//! *stages* at its control nodes, each stage is fused like a graph without control flow,
//! and the control nodes become schedule steps ([`kiln_kernel::Step`]) whose bodies are
//! their regions, lowered the same way, recursively. Kernels never fuse across a control
//! boundary.
//!
//! * **Stages.** A node's stage is the largest stage of its operands; a `get` of a control
//!   node is one stage after that node's operands; a view (reshape, permute, ...) read
//!   only in later stages moves to the first of them. Stage `s` runs as one fused program,
//!   then the control nodes whose operands are ready after it, then stage `s + 1`. A value
//!   used by a later stage or by a control node is materialised in a buffer (an output
//!   buffer when it is one of the graph's results); constants are copied into every stage
//!   that reads them.
//! * **Regions.** A region's parameters are bound to buffers of the enclosing program and
//!   its results are stored into buffers the step provides, so a body is fused once and its
//!   kernels run at every iteration.
//! * **cond** is an `if` on the predicate buffer whose two branches store into the cond's
//!   result buffers.
//! * **while** copies the initial carries into the result buffers, then loops: the `cond`
//!   region writes a `bool[1]` predicate buffer, the body writes next-carry buffers that
//!   are copied over the carries.
//! * **scan** is a counted loop over a fresh induction symbol `t` (`0 <= t < length`, run
//!   backwards when `reverse`): the body reads row `t` of each `xs` buffer and writes each
//!   `y` into row `t` of its `ys` buffer, then the next carries are copied over the
//!   carries. Where only loop kernels touch a row, they address it in place (`load
//!   xs[{t*row} + index]`, proven in bounds by the verifier from the trip count); otherwise
//!   (a matmul or convolution operand, a predicate, a copy) a copy kernel moves the row
//!   between the stacked buffer and a row buffer the body uses.
//! * **Verification.** Stages are fused without verifying them one by one; the whole
//!   program, bodies included, is verified once, with the symbols used as scan lengths
//!   declared `>= 0` (zero steps allowed); only if that fails (a kernel divides by the
//!   length) is it verified again with them `>= 1`.
//! * **State updates** of a graph with control flow are computed into scratch buffers and
//!   copied into their parameters after every other step.

use super::{FuseError, FuseReport, Lowered, Unverified, lower_unverified};
use kiln_ir::{DType, Dim, Graph, NodeId, Op, OpKind};
use kiln_kernel::{
    Body, BufferId, BufferKind, Expr, IfStep, IndexExpr, Kernel, KernelId, LoadMode, LoopKernel,
    LoopStep, Program, Step, WhileStep,
};
use std::collections::{BTreeSet, HashMap};

/// True if a control-flow op is among the ancestors of `roots`.
pub(crate) fn has_control(graph: &Graph, roots: &[NodeId]) -> Result<bool, FuseError> {
    Ok(graph
        .ancestors(roots)?
        .iter()
        .any(|&n| graph.node(n).op.kind() == OpKind::Control))
}

/// The program being built and the work counter of the stage lowerings.
struct Ctx {
    program: Program,
    work: usize,
}

/// Lowers a graph with control flow (see the module docs); `updates` are `(parameter
/// name, parameter node, update node)`.
pub(crate) fn lower_structured(
    graph: &Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId, NodeId)],
) -> Result<Lowered, FuseError> {
    let mut program = Program::new();
    let mut symbols: BTreeSet<String> = BTreeSet::new();
    for (n, _) in graph.inputs() {
        symbols.extend(graph.node(n).shape.symbols().iter().map(|s| s.to_string()));
    }
    for s in &symbols {
        program.add_symbol(s, 1, None);
    }
    let mut ext: HashMap<NodeId, BufferId> = HashMap::new();
    let size = |n: NodeId| {
        let node = graph.node(n);
        (node.dtype, node.shape.numel())
    };
    for (n, name) in graph.inputs() {
        let (d, s) = size(n);
        ext.insert(
            n,
            program.add_buffer(d, s, BufferKind::Input(name.to_string())),
        );
    }
    for (n, name) in graph.parameters() {
        let (d, s) = size(n);
        ext.insert(
            n,
            program.add_buffer(d, s, BufferKind::State(name.to_string())),
        );
    }
    let mut outs = Vec::new();
    for (name, n) in outputs {
        let (d, s) = size(*n);
        outs.push((
            *n,
            program.add_buffer(d, s, BufferKind::Output(name.clone())),
        ));
    }
    let mut late = Vec::new();
    for (name, _, n) in updates {
        let (d, s) = size(*n);
        let tmp = program.add_buffer(d, s, BufferKind::Scratch);
        outs.push((*n, tmp));
        let state = program
            .state(name)
            .ok_or_else(|| FuseError::UnknownParameter(name.clone()))?;
        late.push(Step::Copy {
            src: tmp,
            dst: state,
        });
    }
    let mut cx = Ctx { program, work: 0 };
    let mut steps = lower_graph(&mut cx, graph, &ext, &outs, &symbols)?;
    steps.extend(late);
    drop_unscheduled(&mut cx.program, &mut steps);
    cx.program.schedule = Some(steps);
    let program = verify_relaxed(cx.program)?;
    let report = FuseReport::of(&program);
    Ok(Lowered {
        program,
        report,
        plan_work: cx.work,
    })
}

/// Verifies the program with every symbol used as a loop trip count declared `>= 0` (a scan
/// over zero steps), or, when some kernel needs more (a division by the length), as
/// declared (`>= 1`).
fn verify_relaxed(program: Program) -> Result<kiln_kernel::VerifiedProgram, FuseError> {
    let mut trips: BTreeSet<String> = BTreeSet::new();
    if let Some(steps) = &program.schedule {
        kiln_kernel::schedule::walk(steps, &mut |st, _, _| {
            if let Step::Loop(l) = st {
                trips.extend(l.trip.symbols().iter().map(|s| s.to_string()));
            }
        });
    }
    if !trips.is_empty() {
        let mut relaxed = program.clone();
        for s in &mut relaxed.symbols {
            if trips.contains(&s.name) {
                s.min = 0;
            }
        }
        if let Ok(v) = kiln_kernel::verify(relaxed) {
            return Ok(v);
        }
    }
    kiln_kernel::verify(program).map_err(FuseError::Verify)
}

/// What a node of a graph being lowered is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An input or parameter: a buffer given by the caller.
    Leaf,
    /// A constant: copied into each stage that reads it.
    Constant,
    /// A control-flow node whose operands are ready after the given stage.
    Control(usize),
    /// A `get` of a control node's result.
    Get,
    /// A node fused in the given stage.
    Staged(usize),
}

/// Lowers `graph` into `cx.program`: `ext` gives the buffers of its inputs and parameters,
/// `outs` the buffers its result nodes are stored into (one node may have several).
/// Returns the steps, whose kernels were appended in pre-order.
fn lower_graph(
    cx: &mut Ctx,
    graph: &Graph,
    ext: &HashMap<NodeId, BufferId>,
    outs: &[(NodeId, BufferId)],
    symbols: &BTreeSet<String>,
) -> Result<Vec<Step>, FuseError> {
    let roots: Vec<NodeId> = outs.iter().map(|o| o.0).collect();
    let order = graph.ancestors(&roots)?;
    let mut role: HashMap<NodeId, Role> = HashMap::new();
    // The stage in which a node's value is ready: a `get` one after its control node's
    // operands.
    let stage_of = |role: &HashMap<NodeId, Role>, n: NodeId| match role.get(&n) {
        Some(Role::Staged(s)) => *s,
        Some(Role::Control(s)) => *s + 1,
        Some(Role::Get) => graph
            .operands(n)
            .first()
            .and_then(|c| match role.get(c) {
                Some(Role::Control(s)) => Some(*s + 1),
                _ => None,
            })
            .unwrap_or(0),
        _ => 0,
    };
    for &n in &order {
        let node = graph.node(n);
        let ops = graph.operands(n);
        let r = match node.op.kind() {
            OpKind::Fed => {
                if !ext.contains_key(&n) {
                    return Err(FuseError::Internal(format!("{n} has no buffer")));
                }
                Role::Leaf
            }
            OpKind::Literal => Role::Constant,
            OpKind::Control => {
                for d in control_symbols(&node.op) {
                    if !symbols.contains(&d) {
                        return Err(FuseError::FreeSymbol { node: n, symbol: d });
                    }
                }
                Role::Control(ops.iter().map(|&o| stage_of(&role, o)).max().unwrap_or(0))
            }
            OpKind::Get => Role::Get,
            _ => Role::Staged(ops.iter().map(|&o| stage_of(&role, o)).max().unwrap_or(0)),
        };
        role.insert(n, r);
    }
    // A view is fused where it is read: one whose readers are all staged nodes of later
    // stages moves to the earliest of them, so that its operand is what crosses the stage
    // boundary (a weight read transposed by a matmul after a scan stays the weight, not a
    // transposed copy written at every run).
    for &n in order.iter().rev() {
        let Some(&Role::Staged(s)) = role.get(&n) else {
            continue;
        };
        if graph.node(n).op.kind() != OpKind::View || outs.iter().any(|o| o.0 == n) {
            continue;
        }
        let mut earliest: Option<usize> = None;
        let mut movable = true;
        for u in graph.users(n) {
            match role.get(&u) {
                Some(&Role::Staged(t)) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                None => {}
                Some(_) => movable = false,
            }
        }
        if let Some(t) = earliest.filter(|&t| movable && t > s) {
            role.insert(n, Role::Staged(t));
        }
    }
    let stage_at = |n: NodeId| -> usize { stage_of(&role, n) };

    // Buffers: leaves, control results, exported staged nodes.
    let mut buf: HashMap<NodeId, BufferId> = ext.clone();
    let mut results: HashMap<NodeId, Vec<BufferId>> = HashMap::new();
    for &n in &order {
        if let Some(Role::Control(_)) = role.get(&n) {
            let types = graph
                .result_types(n)
                .ok_or_else(|| FuseError::Unsupported {
                    node: n,
                    reason: "the control-flow op's result types cannot be inferred".into(),
                })?;
            let bufs = types
                .iter()
                .map(|(d, s)| cx.program.add_buffer(*d, s.numel(), BufferKind::Scratch))
                .collect();
            results.insert(n, bufs);
        }
    }
    for &n in &order {
        if role.get(&n) == Some(&Role::Get) {
            let Op::Get { index } = graph.node(n).op else {
                return Err(FuseError::Internal(format!("{n} is not a get")));
            };
            let b = graph
                .operands(n)
                .first()
                .and_then(|c| results.get(c))
                .and_then(|r| r.get(index))
                .copied()
                .ok_or_else(|| FuseError::Internal(format!("{n}: no such result")))?;
            buf.insert(n, b);
        }
    }
    let mut dests: HashMap<NodeId, Vec<BufferId>> = HashMap::new();
    for &(n, b) in outs {
        dests.entry(n).or_default().push(b);
    }
    // Exported: staged nodes (and constants) read by a later stage or a control node, and
    // staged results.
    let mut export: BTreeSet<NodeId> = BTreeSet::new();
    for &n in &order {
        let later = |o: NodeId| match role.get(&n) {
            Some(Role::Control(_)) => true,
            Some(Role::Staged(s)) => stage_at(o) < *s,
            _ => false,
        };
        for o in graph.operands(n) {
            match role.get(&o) {
                Some(Role::Staged(_)) if later(o) => {
                    export.insert(o);
                }
                Some(Role::Constant) if matches!(role.get(&n), Some(Role::Control(_))) => {
                    export.insert(o);
                }
                _ => {}
            }
        }
    }
    for &(n, _) in outs {
        if matches!(role.get(&n), Some(Role::Staged(_) | Role::Constant)) {
            export.insert(n);
        }
    }
    for &n in &export {
        if let Some(d) = dests.get(&n) {
            buf.insert(n, d[0]);
        } else {
            let node = graph.node(n);
            let b = cx
                .program
                .add_buffer(node.dtype, node.shape.numel(), BufferKind::Scratch);
            buf.insert(n, b);
        }
    }

    let last = order.iter().map(|&n| stage_at(n)).max().unwrap_or(0);
    let mut steps = Vec::new();
    for s in 0..=last {
        let members: Vec<NodeId> = order
            .iter()
            .copied()
            .filter(|n| match role.get(n) {
                Some(Role::Staged(t)) => *t == s,
                Some(Role::Constant) => s == 0 && export.contains(n),
                _ => false,
            })
            .collect();
        let exported: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|n| export.contains(n))
            .collect();
        if !exported.is_empty() {
            steps.extend(lower_stage(
                cx, graph, &members, &exported, &role, &buf, &dests,
            )?);
        }
        for &n in &order {
            if role.get(&n) == Some(&Role::Control(s)) {
                let operands = graph
                    .operands(n)
                    .iter()
                    .map(|o| {
                        buf.get(o).copied().ok_or_else(|| {
                            FuseError::Internal(format!("operand {o} of {n} has no buffer"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let res = results.get(&n).cloned().unwrap_or_default();
                steps.extend(lower_control(cx, graph, n, &operands, &res, symbols)?);
            }
        }
    }
    // Results that are leaves or control results: copies into their buffers.
    for &(n, b) in outs {
        if matches!(role.get(&n), Some(Role::Leaf | Role::Get)) {
            let src = buf
                .get(&n)
                .copied()
                .ok_or_else(|| FuseError::Internal(format!("{n} has no buffer")))?;
            if src != b {
                steps.push(Step::Copy { src, dst: b });
            }
        }
    }
    Ok(steps)
}

/// The symbols a control op's attributes use (a scan's length).
fn control_symbols(op: &Op) -> Vec<String> {
    match op {
        Op::Scan { length, .. } => length.symbols().iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Fuses one stage: the `members` (in topological order) form a graph of their own whose
/// inputs are the buffers of the values they read from elsewhere and whose outputs are the
/// `exported` members, stored into their buffers (every destination of a result).
fn lower_stage(
    cx: &mut Ctx,
    graph: &Graph,
    members: &[NodeId],
    exported: &[NodeId],
    role: &HashMap<NodeId, Role>,
    buf: &HashMap<NodeId, BufferId>,
    dests: &HashMap<NodeId, Vec<BufferId>>,
) -> Result<Vec<Step>, FuseError> {
    let mut sub = Graph::new();
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    let mut inputs: HashMap<String, BufferId> = HashMap::new();
    let in_stage: BTreeSet<NodeId> = members.iter().copied().collect();
    for &n in members {
        let mut ops = Vec::new();
        for o in graph.operands(n) {
            if let Some(&m) = map.get(&o) {
                ops.push(m);
                continue;
            }
            let on = graph.node(o);
            let m = if role.get(&o) == Some(&Role::Constant) && !in_stage.contains(&o) {
                sub.add_unchecked(on.clone(), &[])
            } else {
                let b = buf
                    .get(&o)
                    .copied()
                    .ok_or_else(|| FuseError::Internal(format!("{o} has no buffer")))?;
                let name = format!("x{}", o.0);
                inputs.insert(name.clone(), b);
                let input = Op::Input {
                    name,
                    dtype: on.dtype,
                    shape: on.shape.clone(),
                };
                sub.add_unchecked(
                    kiln_ir::Node {
                        op: input,
                        dtype: on.dtype,
                        shape: on.shape.clone(),
                        loc: None,
                    },
                    &[],
                )
            };
            map.insert(o, m);
            ops.push(m);
        }
        let m = sub.add_unchecked(graph.node(n).clone(), &ops);
        map.insert(n, m);
    }
    let mut named = Vec::new();
    let mut outputs: HashMap<String, BufferId> = HashMap::new();
    for &n in exported {
        let m = map
            .get(&n)
            .copied()
            .ok_or_else(|| FuseError::Internal(format!("{n} is not in its stage")))?;
        let targets: Vec<BufferId> = match dests.get(&n) {
            Some(d) => d.clone(),
            None => buf.get(&n).copied().into_iter().collect(),
        };
        for (j, b) in targets.into_iter().enumerate() {
            let name = format!("y{}_{j}", n.0);
            outputs.insert(name.clone(), b);
            named.push((name, m));
        }
    }
    let mut program = match lower_unverified(&sub, &named, &[])? {
        Unverified::Flat(p, work) => {
            cx.work += work;
            p
        }
        Unverified::Structured(_) => {
            return Err(FuseError::Internal("a stage has control flow".to_string()));
        }
    };
    // The debug table names the stage's own copies of the nodes: name the originals.
    let original: HashMap<u32, u32> = map.iter().map(|(n, m)| (m.0, n.0)).collect();
    for k in &mut program.kernels {
        for b in k.body_list_mut() {
            for site in &mut b.checks {
                if let Some(&n) = original.get(&site.node) {
                    site.node = n;
                }
            }
        }
    }
    splice(&mut cx.program, program, &inputs, &outputs)
}

/// Appends a separately lowered program (without a schedule) to `dst`: its input and
/// output buffers are bound by name to `inputs` and `outputs`, its scratch and constant
/// buffers are added, its kernels appended. Returns one step per kernel.
fn splice(
    dst: &mut Program,
    sub: Program,
    inputs: &HashMap<String, BufferId>,
    outputs: &HashMap<String, BufferId>,
) -> Result<Vec<Step>, FuseError> {
    for s in &sub.symbols {
        if dst.symbol(&s.name).is_none() {
            dst.add_symbol(&s.name, s.min, s.max);
        }
    }
    let mut map = Vec::with_capacity(sub.buffers.len());
    for b in &sub.buffers {
        let missing = |n: &str| FuseError::Internal(format!("stage buffer `{n}` is not bound"));
        map.push(match &b.kind {
            BufferKind::Input(n) => *inputs.get(n).ok_or_else(|| missing(n))?,
            BufferKind::Output(n) => *outputs.get(n).ok_or_else(|| missing(n))?,
            BufferKind::State(n) => return Err(missing(n)),
            BufferKind::Scratch | BufferKind::Constant(_) => {
                dst.add_buffer(b.dtype, b.size.clone(), b.kind.clone())
            }
        });
    }
    let mut steps = Vec::new();
    for mut k in sub.kernels {
        k.map_buffers(&mut |b| map.get(b.index()).copied().unwrap_or(b));
        steps.push(Step::Kernel(dst.add_kernel(k)));
    }
    Ok(steps)
}

/// Lowers a region with its parameters bound to `args` and its results stored into `res`.
fn lower_region(
    cx: &mut Ctx,
    graph: &Graph,
    region: kiln_ir::RegionId,
    args: &[BufferId],
    res: &[BufferId],
    symbols: &BTreeSet<String>,
) -> Result<Vec<Step>, FuseError> {
    let r = graph
        .try_region(region)
        .ok_or_else(|| FuseError::Internal(format!("{region} is not a region")))?;
    if r.params.len() != args.len() || r.results.len() != res.len() {
        return Err(FuseError::Internal(format!(
            "{region}: {} params and {} results, given {} and {}",
            r.params.len(),
            r.results.len(),
            args.len(),
            res.len()
        )));
    }
    let ext: HashMap<NodeId, BufferId> =
        r.params.iter().copied().zip(args.iter().copied()).collect();
    let outs: Vec<(NodeId, BufferId)> =
        r.results.iter().copied().zip(res.iter().copied()).collect();
    lower_graph(cx, &r.graph, &ext, &outs, symbols)
}

/// A scratch buffer like `b`.
fn like(p: &mut Program, b: BufferId) -> Result<BufferId, FuseError> {
    let (d, s) = p
        .buffer(b)
        .map(|x| (x.dtype, x.size.clone()))
        .ok_or_else(|| FuseError::Internal(format!("{b} is not a buffer")))?;
    Ok(p.add_buffer(d, s, BufferKind::Scratch))
}

/// A loop kernel copying `row` elements from `src` to `dst`; the side named by `rowed_src`
/// (the source if true) is addressed at offset `at` (`{t*row} + i0`), the other from 0.
fn row_copy(src: BufferId, dst: BufferId, row: &Dim, at: Dim, rowed_src: bool) -> Kernel {
    let flat = IndexExpr::var(0);
    let rowed = IndexExpr::Add(Box::new(IndexExpr::dim(at)), Box::new(IndexExpr::var(0)));
    let (li, si) = if rowed_src {
        (rowed, flat)
    } else {
        (flat, rowed)
    };
    let mut body = Body::new();
    let v = body.load(src, li);
    body.store(dst, si, v);
    Kernel::Loop(LoopKernel {
        domain: vec![row.clone()],
        reduce: Vec::new(),
        body,
    })
}

/// A row copy of a scan step: `row` (a body parameter's or result's buffer) is row `t` of
/// `stacked` (an xs or ys buffer), at element offset `at`.
struct RowCopy {
    /// The copy kernel.
    kernel: KernelId,
    /// The row buffer the body reads or writes.
    row: BufferId,
    /// The stacked buffer.
    stacked: BufferId,
    /// `t * row`.
    at: Dim,
    /// An x row: the body only reads it.
    read_only: bool,
}

/// Drops the row copy `rc` from the loop body `inner` when only loop kernels use its row
/// buffer, by proven or masked indices (an x row only read): those kernels then load and
/// store row `t` of the stacked buffer in place, at offset `t * row`. The verifier proves
/// the shifted accesses in bounds from the trip count, as it does for the copy. Otherwise
/// (a matmul or convolution operand, a copy step, a predicate, a gather) the copy stays.
fn rows_in_place(p: &mut Program, inner: &mut Vec<Step>, rc: &RowCopy) {
    let mut users = Vec::new();
    if !loop_uses(p, inner, rc, &mut users) {
        return;
    }
    for k in users {
        let Some(kernel) = p.kernels.get_mut(k.index()) else {
            return;
        };
        let shift = |ix: &IndexExpr| {
            IndexExpr::Add(
                Box::new(IndexExpr::dim(rc.at.clone())),
                Box::new(ix.clone()),
            )
        };
        for body in kernel.body_list_mut() {
            for e in &mut body.values {
                if let Expr::Load(l) = e
                    && l.buffer == rc.row
                {
                    l.buffer = rc.stacked;
                    l.index = shift(&l.index);
                }
            }
            for st in &mut body.stores {
                if st.buffer == rc.row {
                    st.buffer = rc.stacked;
                    st.index = shift(&st.index);
                }
            }
        }
    }
    inner.retain(|s| !matches!(s, Step::Kernel(k) if *k == rc.kernel));
}

/// Collects into `users` the kernels of `steps` (nested steps included, `rc`'s own copy
/// excluded) that touch `rc.row`; false if some use cannot read the row in place.
fn loop_uses(p: &Program, steps: &[Step], rc: &RowCopy, users: &mut Vec<KernelId>) -> bool {
    for st in steps {
        if st.own_buffers().contains(&rc.row) {
            return false;
        }
        if let Step::Kernel(k) = st {
            if *k == rc.kernel {
                continue;
            }
            let Some(kernel) = p.kernel(*k) else {
                return false;
            };
            let bodies = kernel.body_list();
            let loads = bodies
                .iter()
                .flat_map(|b| &b.values)
                .filter_map(|e| match e {
                    Expr::Load(l) if l.buffer == rc.row => Some(l),
                    _ => None,
                });
            let loaded: Vec<_> = loads.collect();
            let stored = bodies
                .iter()
                .flat_map(|b| &b.stores)
                .any(|s| s.buffer == rc.row);
            if loaded.is_empty() && !stored {
                continue;
            }
            if !matches!(kernel, Kernel::Loop(_))
                || (stored && rc.read_only)
                || loaded.iter().any(|l| l.mode == LoadMode::Checked)
            {
                return false;
            }
            users.push(*k);
        }
        for child in st.children() {
            if !loop_uses(p, child, rc, users) {
                return false;
            }
        }
    }
    true
}

/// Removes the kernels no step runs (row copies [`rows_in_place`] dropped) and renumbers
/// the rest, keeping their order (the schedule names every kernel once, in pre-order).
fn drop_unscheduled(p: &mut Program, steps: &mut [Step]) {
    fn mark(steps: &[Step], used: &mut [bool]) {
        for st in steps {
            if let Step::Kernel(k) = st
                && let Some(u) = used.get_mut(k.index())
            {
                *u = true;
            }
            for child in st.children() {
                mark(child, used);
            }
        }
    }
    fn renumber(steps: &mut [Step], new: &[u32]) {
        for st in steps {
            if let Step::Kernel(k) = st {
                *k = KernelId(new[k.index()]);
            }
            for child in st.children_mut() {
                renumber(child, new);
            }
        }
    }
    let mut used = vec![false; p.kernels.len()];
    mark(steps, &mut used);
    if used.iter().all(|&u| u) {
        return;
    }
    let mut new = vec![0u32; used.len()];
    let mut kept = Vec::with_capacity(used.len());
    for (i, k) in std::mem::take(&mut p.kernels).into_iter().enumerate() {
        if used[i] {
            new[i] = kept.len() as u32;
            kept.push(k);
        }
    }
    p.kernels = kept;
    renumber(steps, &new);
}

/// A fresh induction symbol `t0, t1, ...`.
fn fresh_symbol(p: &mut Program) -> String {
    let mut k = 0usize;
    loop {
        let name = format!("t{k}");
        if p.symbol(&name).is_none() {
            p.add_symbol(&name, 0, None);
            return name;
        }
        k += 1;
    }
}

/// Lowers control node `n` with operand buffers `ops`, storing its results into `res`.
fn lower_control(
    cx: &mut Ctx,
    graph: &Graph,
    n: NodeId,
    ops: &[BufferId],
    res: &[BufferId],
    symbols: &BTreeSet<String>,
) -> Result<Vec<Step>, FuseError> {
    let bad = |reason: &str| FuseError::Unsupported {
        node: n,
        reason: reason.into(),
    };
    match &graph.node(n).op {
        Op::Cond {
            then_branch,
            else_branch,
        } => {
            let (&pred, args) = ops.split_first().ok_or_else(|| bad("no predicate"))?;
            let then = lower_region(cx, graph, *then_branch, args, res, symbols)?;
            let other = lower_region(cx, graph, *else_branch, args, res, symbols)?;
            Ok(vec![Step::If(IfStep { pred, then, other })])
        }
        Op::While {
            cond,
            body,
            carries,
        } => {
            let c = *carries;
            if c > ops.len() || res.len() != c {
                return Err(bad("carries do not match the operands"));
            }
            let mut steps: Vec<Step> = ops[..c]
                .iter()
                .zip(res)
                .map(|(&src, &dst)| Step::Copy { src, dst })
                .collect();
            let mut args: Vec<BufferId> = res.to_vec();
            args.extend_from_slice(&ops[c..]);
            let pred = cx
                .program
                .add_buffer(DType::Bool, Dim::known(1), BufferKind::Scratch);
            let cond_steps = lower_region(cx, graph, *cond, &args, &[pred], symbols)?;
            let next = res
                .iter()
                .map(|&b| like(&mut cx.program, b))
                .collect::<Result<Vec<_>, _>>()?;
            let mut body_steps = lower_region(cx, graph, *body, &args, &next, symbols)?;
            body_steps.extend(
                next.iter()
                    .zip(res)
                    .map(|(&src, &dst)| Step::Copy { src, dst }),
            );
            steps.push(Step::While(WhileStep {
                cond: cond_steps,
                pred,
                body: body_steps,
            }));
            Ok(steps)
        }
        Op::Scan {
            body,
            length,
            carries,
            xs,
            reverse,
        } => {
            let (c, x) = (*carries, *xs);
            if c + x > ops.len() || res.len() < c {
                return Err(bad("carries and xs do not match the operands"));
            }
            let region = graph
                .try_region(*body)
                .ok_or_else(|| bad("the body is not a region"))?;
            let sig = region.sig();
            let mut steps: Vec<Step> = ops[..c]
                .iter()
                .zip(res)
                .map(|(&src, &dst)| Step::Copy { src, dst })
                .collect();
            let var = fresh_symbol(&mut cx.program);
            let t = Dim::sym(&var);
            let mut inner = Vec::new();
            let mut rows = Vec::new();
            let mut args: Vec<BufferId> = res[..c].to_vec();
            for j in 0..x {
                let (dtype, shape) = sig
                    .params
                    .get(c + j)
                    .ok_or_else(|| bad("the body has too few parameters"))?;
                let row = shape.numel();
                let xt = cx
                    .program
                    .add_buffer(*dtype, row.clone(), BufferKind::Scratch);
                let k = row_copy(ops[c + j], xt, &row, &t * &row, true);
                let kernel = cx.program.add_kernel(k);
                inner.push(Step::Kernel(kernel));
                rows.push(RowCopy {
                    kernel,
                    row: xt,
                    stacked: ops[c + j],
                    at: &t * &row,
                    read_only: true,
                });
                args.push(xt);
            }
            args.extend_from_slice(&ops[c + x..]);
            let next = res[..c]
                .iter()
                .map(|&b| like(&mut cx.program, b))
                .collect::<Result<Vec<_>, _>>()?;
            let mut ys = Vec::new();
            let mut outs = next.clone();
            for (k, &ysb) in res[c..].iter().enumerate() {
                let (dtype, shape) = sig
                    .results
                    .get(c + k)
                    .ok_or_else(|| bad("the body has too few results"))?;
                let row = shape.numel();
                let yt = cx
                    .program
                    .add_buffer(*dtype, row.clone(), BufferKind::Scratch);
                outs.push(yt);
                ys.push((yt, ysb, row));
            }
            inner.extend(lower_region(cx, graph, *body, &args, &outs, symbols)?);
            for (yt, ysb, row) in ys {
                let k = row_copy(yt, ysb, &row, &t * &row, false);
                let kernel = cx.program.add_kernel(k);
                inner.push(Step::Kernel(kernel));
                rows.push(RowCopy {
                    kernel,
                    row: yt,
                    stacked: ysb,
                    at: &t * &row,
                    read_only: false,
                });
            }
            for rc in rows {
                rows_in_place(&mut cx.program, &mut inner, &rc);
            }
            inner.extend(
                next.iter()
                    .zip(res)
                    .map(|(&src, &dst)| Step::Copy { src, dst }),
            );
            steps.push(Step::Loop(LoopStep {
                var,
                trip: length.clone(),
                reverse: *reverse,
                body: inner,
            }));
            Ok(steps)
        }
        _ => Err(bad("not a control-flow op")),
    }
}
