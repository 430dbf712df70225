//! Automatic differentiation as graph transforms: reverse mode ([`vjp()`], [`grad`]),
//! forward mode ([`jvp()`]), and the dense [`jacobian`] and [`hessian`] built from them.
//!
//! Every transform appends ordinary primitives to the same graph, so derivatives compose to
//! any order (grad of grad, jvp of grad, ...). One rule per primitive lives in an exhaustive
//! `match` over `Op` (no catch-all arm): the VJP table in `vjp.rs`, the JVP table in
//! `jvp.rs`; pieces both tables share are in `partials.rs`, and the emitter they write
//! through (hash-consed, so no node is emitted twice) is in `emit.rs`.
//!
//! Conventions (they match PyTorch): `relu'(0) = 0` (relu is `select(x > 0, x, 0)`);
//! binary max/min split the gradient half/half on ties (`torch.maximum`); reduce max/min
//! share it evenly among tied elements (`torch.amax`); window max gives it all to the first
//! maximal element of each window in row-major order (PyTorch's CPU `max_pool2d`);
//! comparisons, argmax/argmin, floor/ceil/round/sign and integer ops contribute no
//! gradient; `rem(a, b)` has `d/da = 1`, `d/db = -floor(a/b)`. The gradient with respect
//! to a tensor the outputs do not depend on is zeros.
//!
//! Control flow (`cond`, `scan`, `while`) is differentiated by transforming the bodies with
//! these same drivers (`control.rs`): the derivative of a control-flow op is again a
//! control-flow op, so higher orders work through loops too. Reverse mode through `while`
//! is refused ([`AutodiffError::WhileReverse`]).

mod control;
mod emit;
mod jvp;
mod partials;
mod vjp;

use emit::Emitter;
use kiln_ir::{DType, Graph, GraphError, Loc, NodeId, Op, OpKind, RegionId, Shape};
use std::collections::{HashMap, HashSet};

/// Why a derivative could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutodiffError {
    /// A node id does not name a node of the graph.
    #[error("{0} is not a node of this graph")]
    UnknownNode(NodeId),
    /// Two lists that must pair up have different lengths.
    #[error("{what}: {expected} expected, {got} given")]
    Arity {
        /// What was being paired (`cotangents for outputs`, ...).
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A gradient was asked of a non-scalar output without a cotangent.
    #[error(
        "gradient of {node} needs an explicit cotangent: its shape {shape} is not a scalar \
         (use vjp with a cotangent of that shape)"
    )]
    NonScalarOutput {
        /// The output.
        node: NodeId,
        /// Its shape.
        shape: Shape,
    },
    /// A derivative was asked with respect to a tensor of a non-float dtype.
    #[error("cannot differentiate with respect to {node}: its dtype {dtype} is not a float type")]
    NonFloatWrt {
        /// The tensor.
        node: NodeId,
        /// Its dtype.
        dtype: DType,
    },
    /// A tensor of a non-float dtype was differentiated.
    #[error("cannot differentiate {node}: its dtype {dtype} is not a float type")]
    NonFloatOutput {
        /// The output.
        node: NodeId,
        /// Its dtype.
        dtype: DType,
    },
    /// A cotangent or tangent does not match the tensor it is paired with.
    #[error("{role} {seed} for {node} is {got_dtype}{got_shape}, expected {dtype}{shape}")]
    SeedMismatch {
        /// `cotangent` or `tangent`.
        role: &'static str,
        /// The node it is paired with.
        node: NodeId,
        /// The seed node.
        seed: NodeId,
        /// Expected dtype.
        dtype: DType,
        /// Expected shape.
        shape: Shape,
        /// Given dtype.
        got_dtype: DType,
        /// Given shape.
        got_shape: Shape,
    },
    /// A construction needs a known size where the graph has a symbolic one.
    #[error("{mode} of {node}: {what}")]
    Symbolic {
        /// The transform.
        mode: &'static str,
        /// The node being differentiated.
        node: NodeId,
        /// What needed a known size.
        what: String,
    },
    /// Emitting a derivative op failed (an internal invariant was broken).
    #[error("{mode} rule of {node}: emitting {op} failed: {source}")]
    Rule {
        /// The transform.
        mode: &'static str,
        /// The node whose rule was applied.
        node: NodeId,
        /// The op being emitted.
        op: &'static str,
        /// The inference error.
        source: Box<GraphError>,
    },
    /// A node of the graph does not type-check (a graph built without inference).
    #[error("cannot differentiate through {node}: {message}")]
    Malformed {
        /// The node.
        node: NodeId,
        /// What is wrong with it.
        message: String,
    },
    /// Reverse mode was asked through a `while` loop: its trip count depends on the data, so
    /// the steps cannot be replayed backwards.
    #[error(
        "reverse mode through the while loop {node} is not possible: a data-dependent trip \
         count has no reverse mode; write the loop as a scan (a fori_loop with a static or \
         symbolic bound) instead"
    )]
    WhileReverse {
        /// The `while` node.
        node: NodeId,
    },
    /// Differentiating a body of a control-flow op failed (`source` names a node of that
    /// body).
    #[error("in {region} of {node}: {source}")]
    InRegion {
        /// The control-flow node.
        node: NodeId,
        /// Its region whose derivative failed.
        region: RegionId,
        /// What went wrong inside.
        source: Box<AutodiffError>,
    },
    /// The graph itself is malformed (a cycle).
    #[error(transparent)]
    Graph(Box<GraphError>),
}

impl From<GraphError> for AutodiffError {
    fn from(e: GraphError) -> AutodiffError {
        AutodiffError::Graph(Box::new(e))
    }
}

fn check_node(g: &Graph, id: NodeId) -> Result<(), AutodiffError> {
    if g.contains(id) {
        Ok(())
    } else {
        Err(AutodiffError::UnknownNode(id))
    }
}

fn check_float_wrt(g: &Graph, id: NodeId) -> Result<(), AutodiffError> {
    check_node(g, id)?;
    let dtype = g.node(id).dtype;
    if dtype.is_float() {
        Ok(())
    } else {
        Err(AutodiffError::NonFloatWrt { node: id, dtype })
    }
}

fn check_seed(
    g: &Graph,
    role: &'static str,
    node: NodeId,
    seed: NodeId,
) -> Result<(), AutodiffError> {
    check_node(g, seed)?;
    let (n, s) = (g.node(node), g.node(seed));
    if n.dtype == s.dtype && n.shape == s.shape {
        return Ok(());
    }
    Err(AutodiffError::SeedMismatch {
        role,
        node,
        seed,
        dtype: n.dtype,
        shape: n.shape.clone(),
        got_dtype: s.dtype,
        got_shape: s.shape.clone(),
    })
}

/// Re-runs inference on `id` (control-flow ops typed through their regions) so that the
/// rules can rely on its arity, attributes and types even in a graph that was assembled
/// without inference.
fn check_well_typed(g: &Graph, id: NodeId) -> Result<(), AutodiffError> {
    let node = g.node(id);
    let operands: Vec<NodeId> = g.operands(id);
    match g.infer_node(&node.op, &operands) {
        Ok((dtype, shape)) if dtype == node.dtype && shape == node.shape => Ok(()),
        Ok((dtype, shape)) => Err(AutodiffError::Malformed {
            node: id,
            message: format!(
                "recorded as {}{} but its operands give {dtype}{shape}",
                node.dtype, node.shape
            ),
        }),
        Err(e) => Err(AutodiffError::Malformed {
            node: id,
            message: e.to_string(),
        }),
    }
}

/// True if a value of this node can carry a derivative.
fn differentiable(g: &Graph, id: NodeId) -> bool {
    g.node(id).dtype.is_float()
}

/// True for a control-flow node (its value is a token; its results are read by `get`).
fn is_control(g: &Graph, id: NodeId) -> bool {
    g.node(id).op.kind() == OpKind::Control
}

/// The nodes of `order` (topological) that a derivative flows through from `seeds`: float
/// nodes that are a seed or use an active operand other than through `stop_gradient`, and
/// control-flow nodes with an active operand (their float results, read by `get`, are then
/// active).
fn activity(g: &Graph, order: &[NodeId], seeds: &HashSet<NodeId>) -> HashSet<NodeId> {
    let mut active: HashSet<NodeId> = HashSet::new();
    for &n in order {
        let through = !matches!(g.node(n).op, Op::StopGradient)
            && g.operands(n).iter().any(|o| active.contains(o));
        let carries = differentiable(g, n) || is_control(g, n);
        if carries && (seeds.contains(&n) || through) {
            active.insert(n);
        }
    }
    active
}

/// Nodes `outputs` depend on, in topological order.
fn ancestors(g: &Graph, outputs: &[NodeId]) -> Result<Vec<NodeId>, AutodiffError> {
    for &o in outputs {
        check_node(g, o)?;
    }
    Ok(g.ancestors(outputs)?)
}

/// Reverse mode: the vector-Jacobian product of `outputs` (paired with `cotangents` of the
/// same dtypes and shapes) with respect to each of `wrt`, appended to `g`. A `wrt` node the
/// outputs do not depend on gets zeros of its shape. Every `output` and `wrt` must have a
/// float dtype.
pub fn vjp(
    g: &mut Graph,
    outputs: &[NodeId],
    cotangents: &[NodeId],
    wrt: &[NodeId],
) -> Result<Vec<NodeId>, AutodiffError> {
    vjp_at(g, outputs, cotangents, wrt, None)
}

/// Like [`vjp`], recording `loc` as the provenance of every new node.
pub fn vjp_at(
    g: &mut Graph,
    outputs: &[NodeId],
    cotangents: &[NodeId],
    wrt: &[NodeId],
    loc: Option<Loc>,
) -> Result<Vec<NodeId>, AutodiffError> {
    let mut em = Emitter::new(g, loc, "vjp");
    reverse(&mut em, outputs, cotangents, wrt)
}

fn reverse(
    em: &mut Emitter<'_>,
    outputs: &[NodeId],
    cotangents: &[NodeId],
    wrt: &[NodeId],
) -> Result<Vec<NodeId>, AutodiffError> {
    if outputs.len() != cotangents.len() {
        return Err(AutodiffError::Arity {
            what: "cotangents for outputs",
            expected: outputs.len(),
            got: cotangents.len(),
        });
    }
    for (&o, &c) in outputs.iter().zip(cotangents) {
        check_node(em.g, o)?;
        let dtype = em.g.node(o).dtype;
        if !dtype.is_float() {
            return Err(AutodiffError::NonFloatOutput { node: o, dtype });
        }
        check_seed(em.g, "cotangent", o, c)?;
    }
    for &w in wrt {
        check_float_wrt(em.g, w)?;
    }
    let order = ancestors(em.g, outputs)?;
    let targets: HashSet<NodeId> = wrt.iter().copied().collect();
    let active = activity(em.g, &order, &targets);
    let mut adj: HashMap<NodeId, NodeId> = HashMap::new();
    // Cotangents of the results of control-flow nodes, gathered from their `get`s.
    let mut result_cts: HashMap<NodeId, Vec<Option<NodeId>>> = HashMap::new();
    for (&o, &c) in outputs.iter().zip(cotangents) {
        if active.contains(&o) {
            em.at = Some(o);
            accumulate(em, &mut adj, o, c)?;
        }
    }
    for &n in order.iter().rev() {
        if !active.contains(&n) {
            continue;
        }
        let operands = em.g.operands(n);
        let needs: Vec<bool> = operands.iter().map(|o| active.contains(o)).collect();
        if !needs.iter().any(|&b| b) {
            continue;
        }
        em.at = Some(n);
        let contributions = if let Op::Get { index } = em.g.node(n).op {
            let Some(&ct) = adj.get(&n) else { continue };
            check_well_typed(em.g, n)?;
            let slots = result_cts.entry(operands[0]).or_default();
            if slots.len() <= index {
                slots.resize(index + 1, None);
            }
            slots[index] = Some(match slots[index] {
                Some(prev) => em.add2(prev, ct)?,
                None => ct,
            });
            continue;
        } else if is_control(em.g, n) {
            let Some(cts) = result_cts.remove(&n) else {
                continue;
            };
            check_well_typed(em.g, n)?;
            control::vjp(em, n, cts, &needs)?
        } else {
            let Some(&ct) = adj.get(&n) else { continue };
            check_well_typed(em.g, n)?;
            vjp::rule(em, n, ct, &needs)?
        };
        for ((&o, c), need) in operands.iter().zip(contributions).zip(needs) {
            if let (Some(c), true) = (c, need) {
                accumulate(em, &mut adj, o, c)?;
            }
        }
    }
    wrt.iter()
        .map(|&w| match adj.get(&w) {
            Some(&a) => Ok(a),
            None => {
                em.at = Some(w);
                em.zeros_like(w)
            }
        })
        .collect()
}

fn accumulate(
    em: &mut Emitter<'_>,
    adj: &mut HashMap<NodeId, NodeId>,
    n: NodeId,
    c: NodeId,
) -> Result<(), AutodiffError> {
    let c = em.cast(c, em.dtype(n))?;
    let shape = em.shape(n);
    let c = em.sum_to_shape(c, &shape)?;
    let v = match adj.get(&n) {
        Some(&prev) => em.add2(prev, c)?,
        None => c,
    };
    adj.insert(n, v);
    Ok(())
}

/// Reverse mode for a scalar (or single-element) `loss`: its gradient with respect to each
/// of `wrt`. A `wrt` node the loss does not depend on gets zeros of its shape.
pub fn grad(g: &mut Graph, loss: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>, AutodiffError> {
    grad_at(g, loss, wrt, None)
}

/// Like [`grad`], recording `loc` as the provenance of every new node.
pub fn grad_at(
    g: &mut Graph,
    loss: NodeId,
    wrt: &[NodeId],
    loc: Option<Loc>,
) -> Result<Vec<NodeId>, AutodiffError> {
    let mut em = Emitter::new(g, loc, "vjp");
    grad_with(&mut em, loss, wrt)
}

fn grad_with(
    em: &mut Emitter<'_>,
    loss: NodeId,
    wrt: &[NodeId],
) -> Result<Vec<NodeId>, AutodiffError> {
    check_node(em.g, loss)?;
    let n = em.g.node(loss);
    if !n.shape.0.iter().all(|d| d.is_one()) {
        return Err(AutodiffError::NonScalarOutput {
            node: loss,
            shape: n.shape.clone(),
        });
    }
    if !n.dtype.is_float() {
        return Err(AutodiffError::NonFloatOutput {
            node: loss,
            dtype: n.dtype,
        });
    }
    let (dt, shape) = (n.dtype, n.shape.clone());
    em.at = Some(loss);
    let seed = em.full(dt, &shape, 1.0)?;
    reverse(em, &[loss], &[seed], wrt)
}

/// Forward mode: the Jacobian-vector product of each of `outputs` along `tangents`, one per
/// entry of `primals` (same dtype and shape), appended to `g`. An output that depends on no
/// primal gets zeros of its shape.
pub fn jvp(
    g: &mut Graph,
    outputs: &[NodeId],
    primals: &[NodeId],
    tangents: &[NodeId],
) -> Result<Vec<NodeId>, AutodiffError> {
    jvp_at(g, outputs, primals, tangents, None)
}

/// Like [`jvp`], recording `loc` as the provenance of every new node.
pub fn jvp_at(
    g: &mut Graph,
    outputs: &[NodeId],
    primals: &[NodeId],
    tangents: &[NodeId],
    loc: Option<Loc>,
) -> Result<Vec<NodeId>, AutodiffError> {
    let mut em = Emitter::new(g, loc, "jvp");
    forward(&mut em, outputs, primals, tangents)
}

fn forward(
    em: &mut Emitter<'_>,
    outputs: &[NodeId],
    primals: &[NodeId],
    tangents: &[NodeId],
) -> Result<Vec<NodeId>, AutodiffError> {
    if primals.len() != tangents.len() {
        return Err(AutodiffError::Arity {
            what: "tangents for primals",
            expected: primals.len(),
            got: tangents.len(),
        });
    }
    let mut tan: HashMap<NodeId, NodeId> = HashMap::new();
    for (&p, &t) in primals.iter().zip(tangents) {
        check_float_wrt(em.g, p)?;
        check_seed(em.g, "tangent", p, t)?;
        match tan.get(&p) {
            Some(&prev) => {
                em.at = Some(p);
                let s = em.add2(prev, t)?;
                tan.insert(p, s);
            }
            None => {
                tan.insert(p, t);
            }
        }
    }
    let seeded: HashSet<NodeId> = tan.keys().copied().collect();
    let order = ancestors(em.g, outputs)?;
    // The tangent control-flow node of each control-flow node some tangent reaches.
    let mut control_tans: HashMap<NodeId, control::Tangents> = HashMap::new();
    for &n in &order {
        if seeded.contains(&n) {
            continue;
        }
        if is_control(em.g, n) {
            let ts: Vec<Option<NodeId>> =
                em.g.operands(n)
                    .iter()
                    .map(|o| tan.get(o).copied())
                    .collect();
            if ts.iter().any(Option::is_some) {
                em.at = Some(n);
                check_well_typed(em.g, n)?;
                control_tans.insert(n, control::jvp(em, n, &ts)?);
            }
            continue;
        }
        if let Op::Get { index } = em.g.node(n).op {
            let src = em.g.operands(n);
            let from = src.first().and_then(|s| control_tans.get(s));
            if from.is_some() || src.iter().any(|s| tan.contains_key(s)) {
                em.at = Some(n);
                check_well_typed(em.g, n)?;
            }
            if let Some(t) = from.map(|t| t.get(em, index)).transpose()?.flatten() {
                tan.insert(n, t);
            }
            continue;
        }
        if !differentiable(em.g, n) {
            continue;
        }
        let ts: Vec<Option<NodeId>> =
            em.g.operands(n)
                .iter()
                .map(|o| tan.get(o).copied())
                .collect();
        if ts.iter().all(Option::is_none) {
            continue;
        }
        em.at = Some(n);
        check_well_typed(em.g, n)?;
        if let Some(t) = jvp::rule(em, n, &ts)? {
            let (dt, shape) = (em.dtype(n), em.shape(n));
            let t = em.cast(t, dt)?;
            let t = em.expand(t, &shape)?;
            tan.insert(n, t);
        }
    }
    outputs
        .iter()
        .map(|&o| match tan.get(&o) {
            Some(&t) => Ok(t),
            None => {
                em.at = Some(o);
                em.zeros_like(o)
            }
        })
        .collect()
}

fn known_numel(em: &Emitter<'_>, x: NodeId, what: &str) -> Result<u64, AutodiffError> {
    let s = em.shape(x);
    s.numel().as_known().ok_or_else(|| {
        em.symbolic(format!(
            "{what} {x} has symbolic shape {s}; a dense Jacobian needs known sizes"
        ))
    })
}

/// How a dense Jacobian is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JacobianMode {
    /// One JVP per input element (columns).
    Forward,
    /// One VJP per output element (rows).
    Reverse,
}

impl JacobianMode {
    /// The cheaper mode for `outputs` output and `inputs` input elements: reverse when
    /// there are fewer outputs than inputs, forward otherwise.
    pub fn choose(outputs: u64, inputs: u64) -> JacobianMode {
        if outputs < inputs {
            JacobianMode::Reverse
        } else {
            JacobianMode::Forward
        }
    }
}

/// The dense Jacobian `d y / d x`, shaped `y.shape ++ x.shape`, in the mode
/// [`JacobianMode::choose`] picks: reverse mode (one VJP per element of `y`) when `y` has
/// fewer elements than `x`, forward mode (one JVP per element of `x`) otherwise. Both
/// shapes must be known.
pub fn jacobian(g: &mut Graph, y: NodeId, x: NodeId) -> Result<NodeId, AutodiffError> {
    jacobian_at(g, y, x, None)
}

/// Like [`jacobian`], recording `loc` as the provenance of every new node.
pub fn jacobian_at(
    g: &mut Graph,
    y: NodeId,
    x: NodeId,
    loc: Option<Loc>,
) -> Result<NodeId, AutodiffError> {
    let mut em = Emitter::new(g, loc, "jacobian");
    jacobian_with(&mut em, y, x, None)
}

/// [`jacobian`] in a given mode.
pub fn jacobian_in(
    g: &mut Graph,
    y: NodeId,
    x: NodeId,
    mode: JacobianMode,
) -> Result<NodeId, AutodiffError> {
    let mut em = Emitter::new(g, None, "jacobian");
    jacobian_with(&mut em, y, x, Some(mode))
}

fn jacobian_with(
    em: &mut Emitter<'_>,
    y: NodeId,
    x: NodeId,
    mode: Option<JacobianMode>,
) -> Result<NodeId, AutodiffError> {
    check_node(em.g, y)?;
    check_float_wrt(em.g, x)?;
    let ydt = em.dtype(y);
    if !ydt.is_float() {
        return Err(AutodiffError::NonFloatOutput {
            node: y,
            dtype: ydt,
        });
    }
    em.at = Some(y);
    let ny = known_numel(em, y, "output")?;
    let nx = known_numel(em, x, "input")?;
    let (ys, xs) = (em.shape(y), em.shape(x));
    let mut full = ys.0.clone();
    full.extend(xs.0.iter().cloned());
    let full = Shape(full);
    if ny == 0 || nx == 0 {
        return em.full(ydt, &full, 0.0);
    }
    let mode = mode.unwrap_or(JacobianMode::choose(ny, nx));
    let dense = if mode == JacobianMode::Reverse {
        em.mode = "vjp";
        let mut rows = Vec::with_capacity(ny as usize);
        for i in 0..ny {
            em.at = Some(y);
            let cot = em.one_hot(ydt, &ys, ny, i)?;
            let r = reverse(em, &[y], &[cot], &[x])?[0];
            rows.push(em.reshape(r, &Shape::new([1, nx]))?);
        }
        concat(em, rows, 0)?
    } else {
        em.mode = "jvp";
        let xdt = em.dtype(x);
        let mut cols = Vec::with_capacity(nx as usize);
        for j in 0..nx {
            em.at = Some(x);
            let t = em.one_hot(xdt, &xs, nx, j)?;
            let c = forward(em, &[y], &[x], &[t])?[0];
            cols.push(em.reshape(c, &Shape::new([ny, 1]))?);
        }
        concat(em, cols, 1)?
    };
    em.mode = "jacobian";
    em.at = Some(y);
    em.reshape(dense, &full)
}

fn concat(em: &mut Emitter<'_>, parts: Vec<NodeId>, axis: usize) -> Result<NodeId, AutodiffError> {
    if parts.len() == 1 {
        return Ok(parts[0]);
    }
    em.add(Op::Concat { axis }, &parts)
}

/// The dense Hessian of a scalar `f` with respect to `x`, shaped `x.shape ++ x.shape`:
/// forward mode over reverse mode (the Jacobian of the gradient).
pub fn hessian(g: &mut Graph, f: NodeId, x: NodeId) -> Result<NodeId, AutodiffError> {
    hessian_at(g, f, x, None)
}

/// Like [`hessian`], recording `loc` as the provenance of every new node.
pub fn hessian_at(
    g: &mut Graph,
    f: NodeId,
    x: NodeId,
    loc: Option<Loc>,
) -> Result<NodeId, AutodiffError> {
    let mut em = Emitter::new(g, loc, "vjp");
    check_float_wrt(em.g, x)?;
    let gr = grad_with(&mut em, f, &[x])?[0];
    jacobian_with(&mut em, gr, x, None)
}
