//! Derivatives of tensors as graph transforms: [`grad`], [`value_and_grad`], [`vjp`],
//! [`jvp`], [`jacobian`] and [`hessian`]. Each appends the derivative graph to the same
//! graph and returns ordinary tensors, so derivatives compose to any order.
//!
//! Like every builder op, a failure (a non-scalar loss, an integer `wrt`, tensors from
//! different graphs) records a [`Diagnostic`] at the caller's location and returns
//! poisoned tensors; `g.check()` reports it. The `try_` variants return the error instead.
//! See `docs/autodiff.md` for the conventions (ties, non-differentiable ops, mode choice).
//!
//! ```
//! use kiln::{Array, DType, Graph};
//! let g = Graph::new();
//! let x = g.input("x", DType::F64, [2]);
//! let loss = (&x * &x).sum_all();
//! let dx = kiln::grad(&loss, &[&x]);
//! let x0 = Array::from_f64(&[2], vec![3.0, -1.0]).unwrap();
//! let out = kiln::eval(&[&dx[0]], &[("x", &x0)]).unwrap();
//! assert_eq!(out[0].as_f64().unwrap(), &[6.0, -2.0]);
//! ```

use crate::builder::Graph;
use crate::error::Diagnostic;
use crate::error::Error;
use crate::tensor::Tensor;
use kiln_ir::{Loc, NodeId};
use kiln_passes::autodiff::{self as ad, AutodiffError};
use std::panic::Location;

/// Why a transform produced no result.
enum Failure {
    /// An operand was already poisoned; its diagnostic is in the graph.
    Poisoned(Graph),
    /// A new error, to be recorded in the graph.
    New(Graph, Box<Diagnostic>),
}

fn diag(loc: &Location<'_>, op: &'static str, message: String) -> Box<Diagnostic> {
    Box::new(Diagnostic {
        loc: Loc::from_caller(loc),
        op,
        message: format!("{op}: {message}"),
        error: None,
    })
}

type Transform<'a> = dyn FnOnce(&mut kiln_ir::Graph, &[NodeId], Option<Loc>) -> Result<Vec<NodeId>, AutodiffError>
    + 'a;

/// Runs `f` on the IR of the graph all `tensors` share, with their node ids.
fn run(
    op: &'static str,
    loc: &Location<'_>,
    tensors: &[&Tensor],
    f: Box<Transform<'_>>,
) -> Result<(Graph, Vec<NodeId>), Failure> {
    let Some(first) = tensors.first() else {
        return Ok((Graph::new(), Vec::new()));
    };
    let g = first.graph().clone();
    if tensors.iter().any(|t| !t.graph().same(&g)) {
        return Err(Failure::New(
            g,
            diag(loc, op, "tensors come from different graphs".into()),
        ));
    }
    let ids: Option<Vec<NodeId>> = tensors.iter().map(|t| t.node()).collect();
    let Some(ids) = ids else {
        return Err(Failure::Poisoned(g));
    };
    let res = g.with_ir(|ir| f(ir, &ids, Some(Loc::from_caller(loc))));
    match res {
        Ok(out) => Ok((g, out)),
        Err(e) => Err(Failure::New(g, diag(loc, op, e.to_string()))),
    }
}

fn tensors(g: &Graph, ids: Vec<NodeId>) -> Vec<Tensor> {
    ids.into_iter().map(|id| Tensor::from_node(g, id)).collect()
}

/// The value for the non-`try_` variants: record a new diagnostic, return `n` poisoned tensors.
fn or_poisoned(r: Result<(Graph, Vec<NodeId>), Failure>, n: usize) -> Vec<Tensor> {
    match r {
        Ok((g, ids)) => tensors(&g, ids),
        Err(Failure::Poisoned(g)) => vec![Tensor::poisoned(&g); n],
        Err(Failure::New(g, d)) => {
            g.push_diag(*d);
            vec![Tensor::poisoned(&g); n]
        }
    }
}

/// The value for the `try_` variants.
fn or_error(r: Result<(Graph, Vec<NodeId>), Failure>) -> Result<Vec<Tensor>, Error> {
    match r {
        Ok((g, ids)) => Ok(tensors(&g, ids)),
        Err(Failure::Poisoned(g)) => Err(Error::Check(g.diagnostics())),
        Err(Failure::New(_, d)) => Err(Error::Check(vec![*d])),
    }
}

fn grad_impl(
    loc: &Location<'_>,
    loss: &Tensor,
    wrt: &[&Tensor],
) -> Result<(Graph, Vec<NodeId>), Failure> {
    let mut all = vec![loss];
    all.extend_from_slice(wrt);
    run(
        "grad",
        loc,
        &all,
        Box::new(|ir, ids, l| ad::grad_at(ir, ids[0], &ids[1..], l)),
    )
}

/// The gradient of a scalar `loss` with respect to each of `wrt`, appended to the graph
/// (PyTorch's `torch.autograd.grad`, JAX's `grad`). A tensor the loss does not depend on
/// gets zeros. Errors (a non-scalar loss, a non-float `wrt`) are recorded at the caller.
#[track_caller]
pub fn grad(loss: &Tensor, wrt: &[&Tensor]) -> Vec<Tensor> {
    or_poisoned(grad_impl(Location::caller(), loss, wrt), wrt.len())
}

/// [`grad`], returning the error instead of recording it.
#[track_caller]
pub fn try_grad(loss: &Tensor, wrt: &[&Tensor]) -> Result<Vec<Tensor>, Error> {
    or_error(grad_impl(Location::caller(), loss, wrt))
}

/// The loss itself and its [`grad`] with respect to each of `wrt` (JAX's `value_and_grad`).
#[track_caller]
pub fn value_and_grad(loss: &Tensor, wrt: &[&Tensor]) -> (Tensor, Vec<Tensor>) {
    (
        loss.clone(),
        or_poisoned(grad_impl(Location::caller(), loss, wrt), wrt.len()),
    )
}

fn vjp_impl(
    loc: &Location<'_>,
    outputs: &[&Tensor],
    cotangents: &[&Tensor],
    wrt: &[&Tensor],
) -> Result<(Graph, Vec<NodeId>), Failure> {
    let mut all: Vec<&Tensor> = outputs.to_vec();
    all.extend_from_slice(cotangents);
    all.extend_from_slice(wrt);
    let (no, nc) = (outputs.len(), cotangents.len());
    run(
        "vjp",
        loc,
        &all,
        Box::new(move |ir, ids, l| {
            ad::vjp_at(ir, &ids[..no], &ids[no..no + nc], &ids[no + nc..], l)
        }),
    )
}

/// Reverse mode: `sum_i cotangents[i] · d outputs[i] / d wrt[j]` for each `j` (the
/// vector-Jacobian product, PyTorch's `autograd.grad(outputs, wrt, grad_outputs)`). Each
/// cotangent has its output's dtype and shape; this is how non-scalar outputs are
/// differentiated.
#[track_caller]
pub fn vjp(outputs: &[&Tensor], cotangents: &[&Tensor], wrt: &[&Tensor]) -> Vec<Tensor> {
    or_poisoned(
        vjp_impl(Location::caller(), outputs, cotangents, wrt),
        wrt.len(),
    )
}

/// [`vjp`], returning the error instead of recording it.
#[track_caller]
pub fn try_vjp(
    outputs: &[&Tensor],
    cotangents: &[&Tensor],
    wrt: &[&Tensor],
) -> Result<Vec<Tensor>, Error> {
    or_error(vjp_impl(Location::caller(), outputs, cotangents, wrt))
}

fn jvp_impl(
    loc: &Location<'_>,
    outputs: &[&Tensor],
    pairs: &[(&Tensor, &Tensor)],
) -> Result<(Graph, Vec<NodeId>), Failure> {
    let mut all: Vec<&Tensor> = outputs.to_vec();
    all.extend(pairs.iter().map(|p| p.0));
    all.extend(pairs.iter().map(|p| p.1));
    let (no, np) = (outputs.len(), pairs.len());
    run(
        "jvp",
        loc,
        &all,
        Box::new(move |ir, ids, l| {
            ad::jvp_at(ir, &ids[..no], &ids[no..no + np], &ids[no + np..], l)
        }),
    )
}

/// Forward mode: the directional derivative of each of `outputs` when each primal `x`
/// of `pairs` moves along its tangent (`(x, tangent)`, same dtype and shape; JAX's `jvp`,
/// `torch.func.jvp`). An output that depends on no primal gets zeros.
#[track_caller]
pub fn jvp(outputs: &[&Tensor], pairs: &[(&Tensor, &Tensor)]) -> Vec<Tensor> {
    or_poisoned(jvp_impl(Location::caller(), outputs, pairs), outputs.len())
}

/// [`jvp`], returning the error instead of recording it.
#[track_caller]
pub fn try_jvp(outputs: &[&Tensor], pairs: &[(&Tensor, &Tensor)]) -> Result<Vec<Tensor>, Error> {
    or_error(jvp_impl(Location::caller(), outputs, pairs))
}

fn jacobian_impl(
    loc: &Location<'_>,
    y: &Tensor,
    x: &Tensor,
) -> Result<(Graph, Vec<NodeId>), Failure> {
    run(
        "jacobian",
        loc,
        &[y, x],
        Box::new(|ir, ids, l| ad::jacobian_at(ir, ids[0], ids[1], l).map(|j| vec![j])),
    )
}

/// The dense Jacobian `d y / d x`, shaped `y.shape ++ x.shape`
/// (`torch.autograd.functional.jacobian`). Reverse mode when `y` has fewer elements than
/// `x`, forward mode otherwise; both shapes must be known.
#[track_caller]
pub fn jacobian(y: &Tensor, x: &Tensor) -> Tensor {
    or_poisoned(jacobian_impl(Location::caller(), y, x), 1).remove(0)
}

/// [`jacobian`], returning the error instead of recording it.
#[track_caller]
pub fn try_jacobian(y: &Tensor, x: &Tensor) -> Result<Tensor, Error> {
    or_error(jacobian_impl(Location::caller(), y, x)).map(|mut v| v.remove(0))
}

fn hessian_impl(
    loc: &Location<'_>,
    f: &Tensor,
    x: &Tensor,
) -> Result<(Graph, Vec<NodeId>), Failure> {
    run(
        "hessian",
        loc,
        &[f, x],
        Box::new(|ir, ids, l| ad::hessian_at(ir, ids[0], ids[1], l).map(|h| vec![h])),
    )
}

/// The dense Hessian of a scalar `f` with respect to `x`, shaped `x.shape ++ x.shape`
/// (`torch.autograd.functional.hessian`): forward mode over reverse mode.
#[track_caller]
pub fn hessian(f: &Tensor, x: &Tensor) -> Tensor {
    or_poisoned(hessian_impl(Location::caller(), f, x), 1).remove(0)
}

/// [`hessian`], returning the error instead of recording it.
#[track_caller]
pub fn try_hessian(f: &Tensor, x: &Tensor) -> Result<Tensor, Error> {
    or_error(hessian_impl(Location::caller(), f, x)).map(|mut v| v.remove(0))
}
