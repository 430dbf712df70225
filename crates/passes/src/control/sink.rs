//! Accumulator sinking: a `scan` carry that only accumulates, `acc' = acc + v` with `v`
//! not reading `acc`, is taken out of the loop and computed after it as `init + Σ_t v_t`.
//!
//! The nodes computing `v` that nothing else in the body reads (its *cone*) move out of the
//! loop, batched over a leading step axis the way [`super::hoist::batch_xs`] batches; the
//! values they read from the rest of the body are emitted as new ys (x slices and consts
//! are read from the scan's operands directly). The sum over the steps is then one node:
//!
//! - `v = a @ b` with both factors per-step matrices: `Σ_t a_t b_t` is one matrix product
//!   of the steps laid side by side, `[a_0 a_1 ...] @ [b_0; b_1; ...]`, so `T` small
//!   products become one large one;
//! - `v = reduce_sum(u, axes)`: one `reduce_sum` of the stacked `u` over the step axis too;
//! - otherwise a `reduce_sum` over the step axis of the batched `v`.
//!
//! This is what the reverse scan of a VJP needs: the gradient of a weight read every step
//! (an LSTM's `W_hh`) is such an accumulator, updated with `h_{t-1}^T · dgates_t`, and
//! sinking it replaces `T` small products and `T` read-modify-write passes over the
//! accumulator by one product over all steps.
//!
//! It is the one control-flow rewrite that does not keep values bit for bit: the sum is
//! reassociated (as a GEMM reassociates its inner products). It fires only when
//! [`ControlOptions::reassociate`](super::ControlOptions) allows, and only when the cone
//! contains a matrix product or a reduction, so the moved work shrinks what the loop writes
//! per step rather than adding a stacked copy of a large value.

use super::hoist::{batch_node, batchable, hoistable, result_count};
use super::{PASS, ScanParts, fail, fired, scan_parts};
use crate::error::{PassError, RegionError};
use crate::func::{Func, PassStats};
use crate::region::{Source, replace_control, replace_region, retain, used_results};
use kiln_ir::{BinaryOp, Dim, Graph, NodeId, Op, OpKind, ReduceOp, Region, Shape};
use std::collections::{HashMap, HashSet};

/// One accumulator carry to sink.
struct Acc {
    /// Its carry index.
    carry: usize,
    /// The body node `v` added to it each step.
    v: NodeId,
}

/// Sinks every accumulator carry of `scan` node `id` whose update qualifies (see the module
/// docs). Returns the node's id afterwards.
pub(super) fn sink_accumulators(
    func: &mut Func,
    id: NodeId,
    stats: &mut PassStats,
) -> Result<NodeId, PassError> {
    let Some(ScanParts {
        body,
        length,
        carries: c,
        xs: x,
        reverse,
        operands,
        region: r,
    }) = scan_parts(func, id)?
    else {
        return Ok(id);
    };
    let nres = r.results.len();
    let Some(used) = used_results(func, id, nres) else {
        return Ok(id);
    };
    let order = r.graph.topo_order().map_err(|e| fail(id, e))?;
    let accs: Vec<Acc> = (0..c).filter_map(|i| accumulator(&r, i)).collect();
    let mut cone: HashSet<NodeId> = HashSet::new();
    let mut sunk: Vec<(Acc, HashSet<NodeId>)> = Vec::new();
    let fixed: HashSet<NodeId> = r.params[c + x..]
        .iter()
        .copied()
        .chain(order.iter().copied().filter(|&n| is_constant(&r, n)))
        .collect();
    for acc in accs {
        let m = cone_of(&r, &order, acc.v, acc.carry);
        if m.is_empty() || !batches(&r, &order, &m, &fixed) {
            continue;
        }
        let pays = m
            .iter()
            .any(|&n| matches!(r.graph.node(n).op, Op::MatMul | Op::Reduce { .. }));
        if pays && m.is_disjoint(&cone) {
            cone.extend(m.iter().copied());
            sunk.push((acc, m));
        }
    }
    if sunk.is_empty() {
        return Ok(id);
    }
    let before = func.graph.len();
    let count = result_count(&func.graph, id)?;
    if count != nres {
        return Err(fail(id, "result count differs from the body's"));
    }
    // What the moved nodes read from outside the cone, in body order.
    let params: HashMap<NodeId, usize> =
        r.params.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    let mut front: Vec<NodeId> = Vec::new();
    for &n in &order {
        if !cone.contains(&n)
            && r.graph.users(n).iter().any(|u| cone.contains(u))
            && !front.contains(&n)
        {
            front.push(n);
        }
    }
    // Front nodes that are neither x slices, consts nor constants become new ys of the body.
    let emitted: Vec<NodeId> = front
        .iter()
        .copied()
        .filter(|n| params.get(n).is_none_or(|&i| i < c) && !is_constant(&r, *n))
        .collect();
    let dropped: HashSet<usize> = sunk.iter().map(|(a, _)| a.carry).collect();
    let keep = |i: &usize| !dropped.contains(i);
    let mut nb = r.clone();
    nb.params = (0..r.params.len())
        .filter(keep)
        .map(|i| r.params[i])
        .collect();
    nb.results = (0..nres)
        .filter(keep)
        .map(|i| r.results[i])
        .chain(emitted.iter().copied())
        .collect();
    let keep_params = nb.params.clone();
    retain(&mut nb, keep_params).map_err(|e| fail(id, e))?;
    let new_operands: Vec<NodeId> = (0..operands.len())
        .filter(keep)
        .map(|i| operands[i])
        .collect();
    let nc = c - dropped.len();
    let loc = func.graph.node(id).loc.clone();
    let new_body = replace_region(&mut func.graph, id, body, nb);
    let scan = func
        .graph
        .add_at(
            Op::Scan {
                body: new_body,
                length: length.clone(),
                carries: nc,
                xs: x,
                reverse,
            },
            &new_operands,
            loc.clone(),
        )
        .map_err(|e| fail(id, format!("the rebuilt scan does not type: {e}")))?;
    let get = |g: &mut Graph, index: usize| {
        g.add_at(Op::Get { index }, &[scan], loc.clone())
            .map_err(|e| fail(id, format!("get {index} of the rebuilt scan: {e}")))
    };
    // Outer nodes of the front: batched (a leading step axis) or not.
    let mut outer: HashMap<NodeId, (NodeId, bool)> = HashMap::new();
    for &f in &front {
        outer.insert(
            f,
            match params.get(&f) {
                Some(&i) if i >= c => (operands[i], i < c + x),
                _ if is_constant(&r, f) => {
                    let n = r.graph.node(f);
                    let k = func
                        .graph
                        .add_at(n.op.clone(), &[], n.loc.clone())
                        .map_err(|e| fail(id, e))?;
                    (k, false)
                }
                _ => {
                    let k = emitted.iter().position(|&e| e == f).unwrap_or_default();
                    (get(&mut func.graph, nc + (nres - c) + k)?, true)
                }
            },
        );
    }
    let mut sources = vec![Source::Dropped; nres];
    let mut kept = 0;
    for (i, source) in sources.iter_mut().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        if used[i] {
            *source = Source::Node(get(&mut func.graph, kept)?);
        }
        kept += 1;
    }
    for (acc, m) in &sunk {
        let total = Sinker {
            g: &mut func.graph,
            r: &r,
            m,
            outer: &mut outer,
            t: &length,
        }
        .sum(acc.v)
        .map_err(|e| fail(id, format!("sinking carry {}: {e}", acc.carry)))?;
        let init = operands[acc.carry];
        let fin = func
            .graph
            .add_at(Op::Binary(BinaryOp::Add), &[init, total], loc.clone())
            .map_err(|e| fail(id, format!("sinking carry {}: {e}", acc.carry)))?;
        sources[acc.carry] = Source::Node(fin);
    }
    replace_control(func, PASS, id, None, &sources, stats)?;
    stats.added += func.graph.len().saturating_sub(before);
    fired(stats, "sink_accumulator");
    Ok(scan)
}

/// Carry `i` of body `r` as an accumulator: its param is read only by an `add` of it and a
/// value `v` of the carry's own type, and that `add` is the carry's result and read by
/// nothing else.
fn accumulator(r: &Region, i: usize) -> Option<Acc> {
    let p = r.params[i];
    let a = r.results[i];
    let node = r.graph.get(a)?;
    if node.op != Op::Binary(BinaryOp::Add) || !node.dtype.is_numeric() {
        return None;
    }
    let ops = r.graph.operands(a);
    let v = match ops[..] {
        [l, v] if l == p && v != p => v,
        [v, l] if l == p && v != p => v,
        _ => return None,
    };
    let vn = r.graph.node(v);
    let sole_use = |n: NodeId| r.results.iter().filter(|&&q| q == n).count();
    let only = r.graph.users(p) == [a] && sole_use(p) == 0;
    let result_only = r.graph.users(a).is_empty() && sole_use(a) == 1;
    (only && result_only && (vn.dtype, &vn.shape) == (node.dtype, &node.shape))
        .then_some(Acc { carry: i, v })
}

/// The cone of `v` in body `r`: `v` and, transitively, each operand that is not a param,
/// can be batched, and is read only from inside the cone (nor returned by the body).
fn cone_of(r: &Region, order: &[NodeId], v: NodeId, carry: usize) -> HashSet<NodeId> {
    let movable = |n: NodeId| {
        let node = r.graph.node(n);
        !matches!(node.op, Op::Input { .. })
            && (batchable(&node.op) || matches!(node.op, Op::Reduce { .. }))
            && hoistable(&r.graph, node)
    };
    let mut m = HashSet::new();
    if !movable(v)
        || r.results
            .iter()
            .enumerate()
            .any(|(i, &q)| q == v && i != carry)
    {
        return m;
    }
    m.insert(v);
    let ancestors: HashSet<NodeId> = r
        .graph
        .ancestors(&[v])
        .map(|a| a.into_iter().collect())
        .unwrap_or_default();
    for &n in order.iter().rev() {
        if n == v || !ancestors.contains(&n) || !movable(n) || r.results.contains(&n) {
            continue;
        }
        let users = r.graph.users(n);
        if !users.is_empty() && users.iter().all(|u| m.contains(u)) {
            m.insert(n);
        }
    }
    m
}

/// Whether `n` is a constant of body `r` (copied out of the loop rather than stacked).
fn is_constant(r: &Region, n: NodeId) -> bool {
    matches!(r.graph.node(n).op, Op::Constant(_))
}

/// Whether every node of cone `m` has a batched form: it reads at least one value that
/// varies over the steps (anything but the `fixed` nodes: consts and constants), and an op
/// other than an element-wise op or a matrix product reads only such values.
fn batches(r: &Region, order: &[NodeId], m: &HashSet<NodeId>, fixed: &HashSet<NodeId>) -> bool {
    order.iter().filter(|n| m.contains(n)).all(|&n| {
        let node = r.graph.node(n);
        let pointwise = node.op.kind() == OpKind::Elementwise || node.op == Op::MatMul;
        let varying: Vec<bool> = r
            .graph
            .operands(n)
            .iter()
            .map(|o| m.contains(o) || !fixed.contains(o))
            .collect();
        varying.contains(&true) && (pointwise || !varying.contains(&false))
    })
}

/// Builds, in the enclosing graph, the batched forms of cone nodes and sums over the steps.
struct Sinker<'a> {
    /// The enclosing graph.
    g: &'a mut Graph,
    /// The scan body.
    r: &'a Region,
    /// The cone being moved.
    m: &'a HashSet<NodeId>,
    /// Outer node of each body value built so far, and whether it has a leading step axis.
    outer: &'a mut HashMap<NodeId, (NodeId, bool)>,
    /// The number of steps.
    t: &'a Dim,
}

impl Sinker<'_> {
    /// The outer node of body value `n` (built batched, once, if it is in the cone).
    fn batched(&mut self, n: NodeId) -> Result<(NodeId, bool), RegionError> {
        if let Some(&o) = self.outer.get(&n) {
            return Ok(o);
        }
        if !self.m.contains(&n) {
            return Err(RegionError::ResultNotCopied(n));
        }
        let mut args = Vec::new();
        for o in self.r.graph.operands(n) {
            let (node, batched) = self.batched(o)?;
            args.push((node, batched, self.r.graph.node(o).shape.clone()));
        }
        let b = batch_node(self.g, self.r.graph.node(n), &args, self.t)?;
        self.outer.insert(n, (b, true));
        Ok((b, true))
    }

    /// The sum over the steps of cone node `n`. Views pass the sum through (`Σ_t
    /// permute(u_t) = permute(Σ_t u_t)`) when their operand feeds nothing else; a matrix
    /// product of two per-step matrices is one product over the steps laid side by side;
    /// a `reduce_sum` reduces the step axis with its own axes.
    fn sum(&mut self, n: NodeId) -> Result<NodeId, RegionError> {
        let node = self.r.graph.node(n);
        let ops = self.r.graph.operands(n);
        let sole = |o: NodeId| self.m.contains(&o) && self.r.graph.users(o) == [n];
        match (&node.op, &ops[..]) {
            (Op::Permute(_) | Op::Reshape(_), &[u]) if sole(u) => {
                let s = self.sum(u)?;
                return Ok(self.g.add(node.op.clone(), &[s])?);
            }
            (Op::MatMul, &[a, b]) => {
                let (sa, sb) = (&self.r.graph.node(a).shape, &self.r.graph.node(b).shape);
                if sa.rank() == 2 && sb.rank() == 2 {
                    let (rows, inner, cols) = (sa.0[0].clone(), sa.0[1].clone(), sb.0[1].clone());
                    let ((x, xb), (y, yb)) = (self.batched(a)?, self.batched(b)?);
                    if xb && yb {
                        // Σ_t x_t y_t = [x_0 x_1 ...] @ [y_0; y_1; ...].
                        let k = self.t * &inner;
                        let xt = self.g.add(Op::Permute(vec![1, 0, 2]), &[x])?;
                        let xl = self
                            .g
                            .add(Op::Reshape(Shape(vec![rows, k.clone()])), &[xt])?;
                        let yl = self.g.add(Op::Reshape(Shape(vec![k, cols])), &[y])?;
                        return Ok(self.g.add(Op::MatMul, &[xl, yl])?);
                    }
                }
            }
            (
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axes,
                    keepdim,
                },
                &[u],
            ) => {
                let (x, xb) = self.batched(u)?;
                if xb {
                    let mut all = vec![0];
                    all.extend(axes.iter().map(|a| a + 1));
                    let op = Op::Reduce {
                        op: ReduceOp::Sum,
                        axes: all,
                        keepdim: false,
                    };
                    let s = self.g.add(op, &[x])?;
                    return Ok(if *keepdim {
                        self.g.add(Op::Reshape(node.shape.clone()), &[s])?
                    } else {
                        s
                    });
                }
            }
            _ => {}
        }
        let (b, _) = self.batched(n)?;
        let op = Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![0],
            keepdim: false,
        };
        Ok(self.g.add(op, &[b])?)
    }
}
