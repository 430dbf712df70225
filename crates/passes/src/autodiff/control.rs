//! Derivatives through the control-flow ops (`cond`, `scan`, `while`): each rule transforms
//! the op's regions with the same drivers as the enclosing graph ([`forward`], [`reverse`])
//! and wraps the transformed bodies in a control-flow op of the same kind, so the derivative
//! of a loop is a loop again (no unrolling, symbolic lengths stay symbolic) and derivatives
//! compose to any order.
//!
//! Layouts (tangent and cotangent values are *appended* per group, in the group's order,
//! one per marked entry):
//!
//! - **JVP of `cond`**: operands `[pred, args..., arg tangents...]`; each branch is the
//!   branch's JVP, params `[args..., arg tangents...]`, results `[results..., result
//!   tangents...]`.
//! - **JVP of `scan`**: carries `[carries..., carry tangents...]`, xs `[xs..., xs
//!   tangents...]`, consts `[consts..., const tangents...]`; results `[carries..., carry
//!   tangents..., ys..., ys tangents...]`.
//! - **JVP of `while`**: carries `[carries..., carry tangents...]`, consts `[consts...,
//!   const tangents...]`; the condition takes (and ignores) the tangents.
//!
//! A carry has a tangent when its initial value has one or the body makes it depend on one
//! (a fixed point over the body); integer and bool values never have one.
//!
//! - **VJP of `cond`**: a `cond` on the same predicate, operands `[pred, args..., result
//!   cotangents...]`; each branch recomputes itself and returns the cotangent of every
//!   float argument that needs one (zeros where the branch does not use it).
//! - **VJP of `scan`** (`jax.lax.scan` style, recomputing): the primal scan's body also
//!   returns its input carries, as extra ys, which stacks the carry entering every step;
//!   then a scan in
//!   the opposite direction carries `[float carry cotangents..., const cotangent
//!   accumulators...]` over xs `[stacked carries..., xs..., ys cotangents...]` with the
//!   consts, recomputes the step from `(carry_t, x_t, consts)`, applies its VJP, and emits the
//!   xs cotangents as its ys. Cost: each reverse step re-runs the body once, and the stacked carries
//!   take `length` times the carries' memory.
//! - **VJP of `while`** is refused ([`AutodiffError::WhileReverse`]).

use super::emit::{Emitter, Res};
use super::{AutodiffError, activity, forward, reverse};
use kiln_ir::{DType, Graph, Loc, NodeId, Op, Region, RegionId, Shape};
use std::collections::HashSet;

/// The tangent of a control-flow node: the JVP node and, per result of the primal node, the
/// index of that result's tangent among the JVP node's results (`None`: a zero tangent).
pub(crate) struct Tangents {
    node: NodeId,
    index: Vec<Option<usize>>,
}

impl Tangents {
    /// The tangent of result `i` (a `get` of the JVP node), or `None` if it is zero.
    pub(crate) fn get(&self, em: &mut Emitter<'_>, i: usize) -> Res<Option<NodeId>> {
        match self.index.get(i).copied().flatten() {
            Some(k) => em.add(Op::Get { index: k }, &[self.node]).map(Some),
            None => Ok(None),
        }
    }

    fn zero(node: NodeId, results: usize) -> Tangents {
        Tangents {
            node,
            index: vec![None; results],
        }
    }
}

/// Where a body is differentiated, for error context: the control-flow node and its region.
#[derive(Clone, Copy)]
struct Site {
    node: NodeId,
    region: RegionId,
}

impl Site {
    fn new(node: NodeId, region: RegionId) -> Site {
        Site { node, region }
    }

    /// `e`, raised inside the body, placed in this site.
    fn wrap(self, e: AutodiffError) -> AutodiffError {
        AutodiffError::InRegion {
            node: self.node,
            region: self.region,
            source: Box::new(e),
        }
    }
}

/// A copy of a region's graph with a derivative appended: its new inputs (`params`) and
/// derivative nodes (`results`), as slots (`None` where there is none). For a JVP the slots
/// follow the region's params and results; for a VJP, `params` (cotangent inputs) follows
/// the region's results and `results` (their cotangents) the region's params.
struct Derived {
    graph: Graph,
    params: Vec<Option<NodeId>>,
    results: Vec<Option<NodeId>>,
}

/// The forward-mode rule of control-flow node `n` given its operands' tangents `ts` (at
/// least one set).
pub(crate) fn jvp(em: &mut Emitter<'_>, n: NodeId, ts: &[Option<NodeId>]) -> Res<Tangents> {
    let op = em.g.node(n).op.clone();
    let xs = em.g.operands(n);
    let results = result_count(em, n)?;
    let loc = em.loc();
    let marks: Vec<bool> = ts.iter().map(Option::is_some).collect();
    match op {
        Op::Cond {
            then_branch,
            else_branch,
        } => {
            let branches = [region(em, then_branch)?, region(em, else_branch)?];
            let tin = &marks[1..];
            let (rt, re) = (reached(&branches[0], tin)?, reached(&branches[1], tin)?);
            let tout: Vec<bool> = rt.iter().zip(&re).map(|(a, b)| *a || *b).collect();
            if !any(&tout) {
                return Ok(Tangents::zero(n, results));
            }
            let mut ids = Vec::with_capacity(2);
            for (id, r) in [then_branch, else_branch].into_iter().zip(&branches) {
                let Derived {
                    graph,
                    params: tp,
                    results: to,
                } = jvp_body(loc.clone(), Site::new(n, id), r, tin, &tout)?;
                ids.push(em.g.add_region(Region {
                    graph,
                    params: appended(&r.params, &tp),
                    results: appended(&r.results, &to),
                }));
            }
            let operands = appended(&xs, &ts[1..]);
            let node = em.add(
                Op::Cond {
                    then_branch: ids[0],
                    else_branch: ids[1],
                },
                &operands,
            )?;
            Ok(Tangents {
                node,
                index: positions(&tout, results),
            })
        }
        Op::Scan {
            body,
            length,
            carries: c,
            xs: x,
            reverse,
        } => {
            let b = region(em, body)?;
            let k = c + x;
            let (tc, reach) = tangent_carries(&b, c, &marks)?;
            let tin = [&tc[..], &marks[c..]].concat();
            let tout = [&tc[..], &reach[c..]].concat();
            if !any(&tout) {
                return Ok(Tangents::zero(n, results));
            }
            let Derived {
                graph,
                params: tp,
                results: to,
            } = jvp_body(loc, Site::new(n, body), &b, &tin, &tout)?;
            let (p, res) = (&b.params, &b.results);
            let params = [
                appended(&p[..c], &tp[..c]),
                appended(&p[c..k], &tp[c..k]),
                appended(&p[k..], &tp[k..]),
            ]
            .concat();
            let body_results =
                [appended(&res[..c], &to[..c]), appended(&res[c..], &to[c..])].concat();
            let id = em.g.add_region(Region {
                graph,
                params,
                results: body_results,
            });
            let tcarry = tangent_operands(em, &xs[..c], &ts[..c], &tc)?;
            let operands = [
                &xs[..c],
                &tcarry[..],
                &appended(&xs[c..k], &ts[c..k])[..],
                &appended(&xs[k..], &ts[k..])[..],
            ]
            .concat();
            let ntc = tcarry.len();
            let node = em.add(
                Op::Scan {
                    body: id,
                    length,
                    carries: c + ntc,
                    xs: x + count(&marks[c..k]),
                    reverse,
                },
                &operands,
            )?;
            let mut index = positions(&tc, c);
            index.extend(positions(&tout[c..], c + ntc + (res.len() - c)));
            Ok(Tangents { node, index })
        }
        Op::While {
            cond,
            body,
            carries: c,
        } => {
            let (cr, b) = (region(em, cond)?, region(em, body)?);
            let (tc, _) = tangent_carries(&b, c, &marks)?;
            if !any(&tc) {
                return Ok(Tangents::zero(n, results));
            }
            let tin = [&tc[..], &marks[c..]].concat();
            let (cond_graph, ctp) = with_param_copies(&cr, &tin, ".t")?;
            let interleave = |p: &[NodeId], tp: &[Option<NodeId>]| {
                [appended(&p[..c], &tp[..c]), appended(&p[c..], &tp[c..])].concat()
            };
            let cond_id = em.g.add_region(Region {
                graph: cond_graph,
                params: interleave(&cr.params, &ctp),
                results: cr.results.clone(),
            });
            let Derived {
                graph,
                params: tp,
                results: to,
            } = jvp_body(loc, Site::new(n, body), &b, &tin, &tc)?;
            let body_id = em.g.add_region(Region {
                graph,
                params: interleave(&b.params, &tp),
                results: appended(&b.results, &to),
            });
            let tcarry = tangent_operands(em, &xs[..c], &ts[..c], &tc)?;
            let operands = [&xs[..c], &tcarry[..], &appended(&xs[c..], &ts[c..])[..]].concat();
            let node = em.add(
                Op::While {
                    cond: cond_id,
                    body: body_id,
                    carries: c + tcarry.len(),
                },
                &operands,
            )?;
            Ok(Tangents {
                node,
                index: positions(&tc, c),
            })
        }
        _ => Err(em.malformed(format!("{} is not a control-flow op", op.name()))),
    }
}

/// The reverse-mode rule of control-flow node `n`: given the cotangents of its results
/// (`None`: zero) and which operands need one, the contribution to each operand.
pub(crate) fn vjp(
    em: &mut Emitter<'_>,
    n: NodeId,
    mut cts: Vec<Option<NodeId>>,
    needs: &[bool],
) -> Res<Vec<Option<NodeId>>> {
    let op = em.g.node(n).op.clone();
    let xs = em.g.operands(n);
    let results = result_count(em, n)?;
    cts.resize(results, None);
    let loc = em.loc();
    // Operand `i` needs a cotangent and can have one.
    let wants = |em: &Emitter<'_>, i: usize| needs[i] && em.dtype(xs[i]).is_float();
    let mut out = vec![None; xs.len()];
    match op {
        Op::Cond {
            then_branch,
            else_branch,
        } => {
            let wrt: Vec<bool> = (1..xs.len()).map(|i| wants(em, i)).collect();
            let ct: Vec<bool> = cts.iter().map(Option::is_some).collect();
            if !any(&wrt) || !any(&ct) {
                return Ok(out);
            }
            let mut ids = Vec::with_capacity(2);
            for id in [then_branch, else_branch] {
                let r = region(em, id)?;
                let Derived {
                    graph,
                    params: cps,
                    results: grads,
                } = vjp_body(loc.clone(), Site::new(n, id), &r, &ct, &wrt)?;
                ids.push(em.g.add_region(Region {
                    graph,
                    params: appended(&r.params, &cps),
                    results: grads.into_iter().flatten().collect(),
                }));
            }
            let operands = appended(&xs, &cts);
            let node = em.add(
                Op::Cond {
                    then_branch: ids[0],
                    else_branch: ids[1],
                },
                &operands,
            )?;
            for (i, k) in positions(&wrt, 0).into_iter().enumerate() {
                out[1 + i] = get(em, node, k)?;
            }
            Ok(out)
        }
        Op::Scan {
            body,
            length,
            carries: c,
            xs: x,
            reverse,
        } => {
            let b = region(em, body)?;
            let k = c + x;
            let (p, res) = (&b.params, &b.results);
            let fc: Vec<bool> = (0..c).map(|i| em.dtype(xs[i]).is_float()).collect();
            let need_x: Vec<bool> = (c..k).map(|i| wants(em, i)).collect();
            let need_k: Vec<bool> = (k..xs.len()).map(|i| wants(em, i)).collect();
            let cy: Vec<bool> = cts[c..].iter().map(Option::is_some).collect();
            let ct_mask = [&fc[..], &cy[..]].concat();
            let wanted = any(&fc) && fc.iter().zip(needs).any(|(f, n)| *f && *n);
            if !(wanted || any(&need_x) || any(&need_k)) || !any(&ct_mask) {
                return Ok(out);
            }
            // The carry entering each step, stacked: the primal body also returns its input
            // carries, as extra ys after its own results (so the forward chain runs once).
            let stacked: Vec<NodeId> = if c == 0 {
                Vec::new()
            } else {
                let base = res.len();
                em.g.region_mut(body).results.extend_from_slice(&p[..c]);
                (0..c)
                    .map(|i| em.add(Op::Get { index: base + i }, &[n]))
                    .collect::<Res<_>>()?
            };
            // The reverse step: recompute the body, apply its VJP, accumulate the consts'.
            let wrt_mask = [&fc[..], &need_x[..], &need_k[..]].concat();
            let Derived {
                mut graph,
                params: cps,
                results: grads,
            } = vjp_body(loc.clone(), Site::new(n, body), &b, &ct_mask, &wrt_mask)?;
            let mut accs = Vec::new();
            for (m, _) in need_k.iter().enumerate().filter(|(_, n)| **n) {
                let q = p[k + m];
                let name = format!("acc.{}", input_name(&graph, q));
                accs.push(fresh_input(&mut graph, &name, q)?);
            }
            let grads_k: Vec<NodeId> = grads[k..].iter().flatten().copied().collect();
            let acc_new = {
                let mut bem = Emitter::new(&mut graph, loc, "vjp");
                accs.iter()
                    .zip(&grads_k)
                    .map(|(&a, &gk)| bem.add2(a, gk))
                    .collect::<Res<Vec<_>>>()?
            };
            let flat = |v: &[Option<NodeId>]| v.iter().flatten().copied().collect::<Vec<_>>();
            let params = [
                flat(&cps[..c]),
                accs,
                p[..c].to_vec(),
                p[c..k].to_vec(),
                flat(&cps[c..]),
                p[k..].to_vec(),
            ]
            .concat();
            let body_results = [flat(&grads[..c]), acc_new, flat(&grads[c..k])].concat();
            let id = em.g.add_region(Region {
                graph,
                params,
                results: body_results,
            });
            let ct_init = tangent_operands(em, &xs[..c], &cts[..c], &fc)?;
            let acc_init = tangent_operands(em, &xs[k..], &vec![None; xs.len() - k], &need_k)?;
            let (nfc, nk) = (ct_init.len(), acc_init.len());
            let operands = [
                ct_init,
                acc_init,
                stacked,
                xs[c..k].to_vec(),
                flat(&cts[c..]),
                xs[k..].to_vec(),
            ]
            .concat();
            let node = em.add(
                Op::Scan {
                    body: id,
                    length,
                    carries: nfc + nk,
                    xs: c + x + count(&cy),
                    reverse: !reverse,
                },
                &operands,
            )?;
            for (i, slot) in positions(&fc, 0).into_iter().enumerate() {
                if needs[i] {
                    out[i] = get(em, node, slot)?;
                }
            }
            for (j, slot) in positions(&need_x, nfc + nk).into_iter().enumerate() {
                out[c + j] = get(em, node, slot)?;
            }
            for (m, slot) in positions(&need_k, nfc).into_iter().enumerate() {
                out[k + m] = get(em, node, slot)?;
            }
            Ok(out)
        }
        Op::While { .. } => Err(AutodiffError::WhileReverse { node: n }),
        _ => Err(em.malformed(format!("{} is not a control-flow op", op.name()))),
    }
}

/// A copy of `region`'s graph with its JVP appended: one tangent input per param marked in
/// `tin` and the tangent of each result marked in `tout` (zeros where no tangent reaches it).
fn jvp_body(
    loc: Option<Loc>,
    site: Site,
    region: &Region,
    tin: &[bool],
    tout: &[bool],
) -> Res<Derived> {
    let (mut graph, tp) = with_param_copies(region, tin, ".t")?;
    let (primals, tangents): (Vec<NodeId>, Vec<NodeId>) = region
        .params
        .iter()
        .zip(&tp)
        .filter_map(|(&p, t)| t.map(|t| (p, t)))
        .unzip();
    let outs = masked(&region.results, tout);
    let touts = forward(
        &mut Emitter::new(&mut graph, loc, "jvp"),
        &outs,
        &primals,
        &tangents,
    )
    .map_err(|e| site.wrap(e))?;
    Ok(Derived {
        graph,
        params: tp,
        results: spread(touts, tout),
    })
}

/// A copy of `region`'s graph with its VJP appended: one cotangent input per result marked
/// in `ct` and the cotangent of each param marked in `wrt` (zeros where it gets none).
fn vjp_body(
    loc: Option<Loc>,
    site: Site,
    region: &Region,
    ct: &[bool],
    wrt: &[bool],
) -> Res<Derived> {
    let mut graph = region.graph.clone();
    let mut cps = vec![None; region.results.len()];
    for (j, &r) in region.results.iter().enumerate() {
        if ct[j] {
            cps[j] = Some(fresh_input(&mut graph, &format!("ct.{j}"), r)?);
        }
    }
    let outs = masked(&region.results, ct);
    let seeds: Vec<NodeId> = cps.iter().flatten().copied().collect();
    let wrt_nodes = masked(&region.params, wrt);
    let grads = reverse(
        &mut Emitter::new(&mut graph, loc, "vjp"),
        &outs,
        &seeds,
        &wrt_nodes,
    )
    .map_err(|e| site.wrap(e))?;
    Ok(Derived {
        graph,
        params: cps,
        results: spread(grads, wrt),
    })
}

/// The carries of a loop body that carry a tangent: those marked in `marks` (one per
/// operand: carries, then the rest), closed under the body (a float carry the body makes
/// depend on a tangent has one too). Also returns which body results a tangent reaches.
fn tangent_carries(body: &Region, c: usize, marks: &[bool]) -> Res<(Vec<bool>, Vec<bool>)> {
    let mut tc = marks[..c].to_vec();
    loop {
        let from = [&tc[..], &marks[c..]].concat();
        let reach = reached(body, &from)?;
        let mut changed = false;
        for i in 0..c {
            if reach[i] && !tc[i] {
                tc[i] = true;
                changed = true;
            }
        }
        if !changed {
            return Ok((tc, reach));
        }
    }
}

/// Which results of `region` a derivative reaches from the params marked in `from`.
fn reached(region: &Region, from: &[bool]) -> Res<Vec<bool>> {
    let g = &region.graph;
    let order = g.ancestors(&region.results)?;
    let seeds: HashSet<NodeId> = masked(&region.params, from).into_iter().collect();
    let active = activity(g, &order, &seeds);
    Ok(region.results.iter().map(|r| active.contains(r)).collect())
}

/// A copy of `region`'s graph with one new input per param marked in `mark`, typed like
/// that param and named after it plus `suffix`.
fn with_param_copies(
    region: &Region,
    mark: &[bool],
    suffix: &str,
) -> Res<(Graph, Vec<Option<NodeId>>)> {
    let mut graph = region.graph.clone();
    let mut copies = vec![None; region.params.len()];
    for (i, &p) in region.params.iter().enumerate() {
        if mark[i] {
            let name = format!("{}{suffix}", input_name(&graph, p));
            copies[i] = Some(fresh_input(&mut graph, &name, p)?);
        }
    }
    Ok((graph, copies))
}

/// Adds an input typed like node `like` to a body, named `base`, or `base.1`, `base.2`,
/// ... whichever is free (input names are unique in a graph).
fn fresh_input(g: &mut Graph, base: &str, like: NodeId) -> Res {
    let (dtype, shape) = type_of(g, like);
    let taken: HashSet<String> = g.inputs().into_iter().map(|(_, n)| n.to_string()).collect();
    let mut name = base.to_string();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{base}.{k}");
        k += 1;
    }
    Ok(g.add(Op::Input { name, dtype, shape }, &[])?)
}

fn input_name(g: &Graph, p: NodeId) -> String {
    match &g.node(p).op {
        Op::Input { name, .. } => name.clone(),
        _ => p.to_string(),
    }
}

fn type_of(g: &Graph, id: NodeId) -> (DType, Shape) {
    let n = g.node(id);
    (n.dtype, n.shape.clone())
}

/// A copy of region `id` of the graph being differentiated.
fn region(em: &Emitter<'_>, id: RegionId) -> Res<Region> {
    em.g.try_region(id)
        .cloned()
        .ok_or_else(|| em.malformed(format!("{id} is not a region of this graph")))
}

fn result_count(em: &Emitter<'_>, n: NodeId) -> Res<usize> {
    em.g.result_types(n)
        .map(|r| r.len())
        .ok_or_else(|| em.malformed(format!("{n} does not type-check")))
}

/// `get` of result `k` of `node`, when there is one.
fn get(em: &mut Emitter<'_>, node: NodeId, k: Option<usize>) -> Res<Option<NodeId>> {
    k.map(|k| em.add(Op::Get { index: k }, &[node])).transpose()
}

/// For each operand marked in `mark`: its tangent (or cotangent) in `ts`, or zeros of its
/// type when it has none.
fn tangent_operands(
    em: &mut Emitter<'_>,
    xs: &[NodeId],
    ts: &[Option<NodeId>],
    mark: &[bool],
) -> Res<Vec<NodeId>> {
    let mut out = Vec::new();
    for ((&x, t), &m) in xs.iter().zip(ts).zip(mark) {
        if m {
            out.push(match t {
                Some(t) => *t,
                None => em.zeros_like(x)?,
            });
        }
    }
    Ok(out)
}

/// `xs` followed by the present entries of `extra`.
fn appended(xs: &[NodeId], extra: &[Option<NodeId>]) -> Vec<NodeId> {
    xs.iter()
        .copied()
        .chain(extra.iter().flatten().copied())
        .collect()
}

/// The entries of `xs` marked in `mask`.
fn masked(xs: &[NodeId], mask: &[bool]) -> Vec<NodeId> {
    xs.iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(x, _)| *x)
        .collect()
}

/// `vals` (one per marked entry) placed at the marked positions of `mask`.
fn spread(vals: Vec<NodeId>, mask: &[bool]) -> Vec<Option<NodeId>> {
    let mut vals = vals.into_iter();
    mask.iter()
        .map(|&m| if m { vals.next() } else { None })
        .collect()
}

/// For each entry of `mask`: `base + k` for the `k`-th marked entry, `None` for the others.
fn positions(mask: &[bool], base: usize) -> Vec<Option<usize>> {
    let mut k = base;
    mask.iter()
        .map(|&m| {
            m.then(|| {
                k += 1;
                k - 1
            })
        })
        .collect()
}

fn any(mask: &[bool]) -> bool {
    mask.iter().any(|&m| m)
}

fn count(mask: &[bool]) -> usize {
    mask.iter().filter(|&&m| m).count()
}
