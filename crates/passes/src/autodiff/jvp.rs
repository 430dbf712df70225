//! Forward-mode rules: one Jacobian-vector product per primitive, in one exhaustive table.
//!
//! A rule gets the node and the tangent of each operand (`None` = zero, at least one is
//! set) and returns the node's tangent (`None` = zero). The driver casts the result to the
//! node's dtype and broadcasts it to the node's shape.

use super::emit::{Emitter, Res};
use super::partials::{self, Window};
use kiln_ir::{NodeId, Op, ReduceOp, WindowOp};

/// Sum of the present terms (`None` when all are absent).
fn sum(
    em: &mut Emitter<'_>,
    terms: impl IntoIterator<Item = Option<NodeId>>,
) -> Res<Option<NodeId>> {
    let mut acc: Option<NodeId> = None;
    for t in terms.into_iter().flatten() {
        acc = Some(match acc {
            Some(a) => em.add2(a, t)?,
            None => t,
        });
    }
    Ok(acc)
}

/// The tangent of node `n` given its operands' tangents `ts`.
pub(crate) fn rule(em: &mut Emitter<'_>, n: NodeId, ts: &[Option<NodeId>]) -> Res<Option<NodeId>> {
    let node = em.g.node(n).clone();
    let xs = em.g.operands(n);
    let x = |i: usize| xs[i];
    let or_zero = |em: &mut Emitter<'_>, i: usize| -> Res {
        match ts[i] {
            Some(t) => Ok(t),
            None => em.zeros_like(xs[i]),
        }
    };
    // Single-operand rules use `t0`, which is then the operand's tangent.
    let Some(t0) = ts.iter().copied().flatten().next() else {
        return Ok(None);
    };
    Ok(match &node.op {
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) | Op::Iota { .. } => None,
        Op::Cond { .. } | Op::Scan { .. } | Op::While { .. } | Op::Get { .. } => {
            // The driver routes these to the control-flow rules (`control.rs`): their
            // tangents are several results, not one node.
            return Err(em.malformed(format!(
                "{} reached the primitive JVP table",
                node.op.name()
            )));
        }
        Op::RandomBits { .. } | Op::StopGradient | Op::ArgReduce { .. } => None,
        Op::Unary(u) => partials::unary(em, *u, x(0), n, t0)?,
        Op::Binary(b) => {
            let ta = match ts[0] {
                Some(ta) => partials::binary(em, *b, x(0), x(1), n, 0, ta)?,
                None => None,
            };
            let tb = match ts[1] {
                Some(tb) => partials::binary(em, *b, x(0), x(1), n, 1, tb)?,
                None => None,
            };
            sum(em, [ta, tb])?
        }
        Op::Select => {
            let zero = em.scalar_like(n, 0.0)?;
            let (a, b) = (ts[1].unwrap_or(zero), ts[2].unwrap_or(zero));
            Some(em.select(x(0), a, b)?)
        }
        Op::Cast(to) => Some(em.cast(t0, *to)?),
        Op::Reduce { op, axes, keepdim } => Some(match op {
            ReduceOp::Sum => em.sum(t0, axes, *keepdim)?,
            ReduceOp::Max | ReduceOp::Min => {
                let (mask, count) = partials::extremum_mask(em, x(0), n, axes, *keepdim)?;
                let picked = em.mul(mask, t0)?;
                let total = em.sum(picked, axes, true)?;
                let mean = em.div(total, count)?;
                em.reshape(mean, &node.shape)?
            }
            ReduceOp::Prod => {
                let others = partials::prod_others(em, x(0), n, axes, *keepdim)?;
                let terms = em.mul(t0, others)?;
                em.sum(terms, axes, *keepdim)?
            }
        }),
        Op::Reshape(s) => Some(em.reshape(t0, s)?),
        Op::Permute(p) => Some(em.permute(t0, p)?),
        Op::Expand(s) => Some(em.expand(t0, s)?),
        Op::Slice(spec) => Some(em.slice(t0, spec.clone())?),
        Op::Pad { pads, .. } => Some(em.pad(t0, pads.clone(), 0.0)?),
        Op::Concat { axis } => {
            let parts = (0..xs.len())
                .map(|i| or_zero(em, i))
                .collect::<Res<Vec<_>>>()?;
            Some(em.add(Op::Concat { axis: *axis }, &parts)?)
        }
        Op::Flip { axes } => Some(em.add(Op::Flip { axes: axes.clone() }, &[t0])?),
        Op::Gather { axis } => Some(em.gather(t0, x(1), *axis)?),
        Op::ScatterAdd { axis } => match (ts[0], ts[2]) {
            (Some(tt), None) => Some(tt),
            (_, Some(src)) => {
                let target = or_zero(em, 0)?;
                Some(em.scatter_add(target, x(1), src, *axis)?)
            }
            (None, None) => None,
        },
        Op::MatMul => {
            let left = ts[0].map(|ta| em.matmul(ta, x(1))).transpose()?;
            let right = ts[1].map(|tb| em.matmul(x(0), tb)).transpose()?;
            sum(em, [left, right])?
        }
        Op::Conv2d { .. } => {
            let left = ts[0]
                .map(|tx| em.add(node.op.clone(), &[tx, x(1)]))
                .transpose()?;
            let right = ts[1]
                .map(|tw| em.add(node.op.clone(), &[x(0), tw]))
                .transpose()?;
            sum(em, [left, right])?
        }
        Op::Window {
            op: w,
            window,
            stride,
            padding,
        } => Some(match w {
            WindowOp::Sum => em.add(node.op.clone(), &[t0])?,
            WindowOp::Max => {
                let geo = Window::new(em, x(0), n, window, stride, padding)?;
                let chosen = geo.argmax_index(em, x(0))?;
                let tf = em.pad_flatten(t0, padding, 0.0)?;
                let picked = em.gather(tf, chosen, geo.batch.len())?;
                em.reshape(picked, &node.shape)?
            }
        }),
    })
}
