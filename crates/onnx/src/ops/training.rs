//! The `ai.onnx.preview.training` domain's optimizer steps (Adagrad, Adam, Momentum), each
//! one elementwise update of every optimized tensor from the learning rate `R` and the
//! step count `T`.

use super::{NodeCx, OpResult, bail, need_float};
use crate::value::Value;
use kiln::Tensor;

/// `R`, `T` (as the dtype of the first optimized tensor) and the optimized tensors' inputs,
/// `groups` inputs per tensor (`X`, `G`, then the optimizer's state).
fn operands(cx: &mut NodeCx<'_>, groups: usize) -> OpResult<(Tensor, Tensor, Vec<Vec<Tensor>>)> {
    let rest = cx.inputs.len().saturating_sub(2);
    if rest == 0 || !rest.is_multiple_of(groups) {
        bail!(
            "needs R, T and {groups} inputs per optimized tensor, got {} inputs",
            cx.inputs.len()
        );
    }
    let n = rest / groups;
    if cx.n_outputs() > (groups - 1) * n {
        bail!("{} outputs for {n} optimized tensors", cx.n_outputs());
    }
    let mut sets = Vec::with_capacity(n);
    for i in 0..n {
        let mut set = Vec::with_capacity(groups);
        for k in 0..groups {
            let t = cx.tensor(2 + k * n + i)?;
            need_float(&t, "the optimizer")?;
            set.push(t);
        }
        sets.push(set);
    }
    let dtype = sets[0][0].dtype();
    let r = cx.tensor(0)?;
    let t = cx.tensor(1)?;
    if r.rank() != 0 || t.rank() != 0 {
        bail!(
            "R and T must be scalars, got {} and {}",
            r.shape(),
            t.shape()
        );
    }
    Ok((r.cast(dtype), t.cast(dtype), sets))
}

/// Outputs grouped by kind: every tensor's first result, then every second result, ...
fn by_kind(results: Vec<Vec<Tensor>>, kinds: usize) -> Vec<Value> {
    (0..kinds)
        .flat_map(|k| results.iter().map(move |r| Value::tensor(r[k].clone())))
        .collect()
}

pub fn adagrad(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let decay = cx.attr_f("decay_factor", 0.0);
    let eps = cx.attr_f("epsilon", 0.0);
    let norm = cx.attr_f("norm_coefficient", 0.0);
    let (r, t, sets) = operands(cx, 3)?;
    let rate = r.div(t.mul(decay).add(1.0));
    let results = sets
        .iter()
        .map(|s| {
            let (x, g, h) = (&s[0], &s[1], &s[2]);
            let g = x.mul(norm).add(g);
            let h = h.add(g.square());
            let x = x.sub(rate.mul(&g).div(h.sqrt().add(eps)));
            vec![x, h]
        })
        .collect();
    Ok(by_kind(results, 2))
}

pub fn adam(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 0.9);
    let beta = cx.attr_f("beta", 0.999);
    let eps = cx.attr_f("epsilon", 0.0);
    let norm = cx.attr_f("norm_coefficient", 0.0);
    let post = cx.attr_f("norm_coefficient_post", 0.0);
    let (r, t, sets) = operands(cx, 4)?;
    let g0 = r.graph();
    let dtype = r.dtype();
    let pow = |base: f64| g0.scalar(base, dtype).pow(&t);
    let corrected = r
        .mul(pow(beta).neg().add(1.0).sqrt())
        .div(pow(alpha).neg().add(1.0));
    let rate = t.gt(0.0).where_(&corrected, &r);
    let results = sets
        .iter()
        .map(|s| {
            let (x, g, v, h) = (&s[0], &s[1], &s[2], &s[3]);
            let g = x.mul(norm).add(g);
            let v = v.mul(alpha).add(g.mul(1.0 - alpha));
            let h = h.mul(beta).add(g.square().mul(1.0 - beta));
            let x = x.sub(rate.mul(v.div(h.sqrt().add(eps))));
            vec![x.mul(1.0 - post), v, h]
        })
        .collect();
    Ok(by_kind(results, 3))
}

pub fn momentum(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let alpha = cx.attr_f("alpha", 0.0);
    let beta = cx.attr_f("beta", 0.0);
    let norm = cx.attr_f("norm_coefficient", 0.0);
    let nesterov = match cx.attr_s("mode", "standard").as_str() {
        "standard" => false,
        "nesterov" => true,
        other => bail!("mode {other:?} is not standard or nesterov"),
    };
    let (r, t, sets) = operands(cx, 3)?;
    let step = t.gt(0.0).where_(beta, 1.0).cast(r.dtype());
    let results = sets
        .iter()
        .map(|s| {
            let (x, g, v) = (&s[0], &s[1], &s[2]);
            let g = x.mul(norm).add(g);
            let v = v.mul(alpha).add(step.mul(&g));
            let d = if nesterov {
                g.add(v.mul(alpha))
            } else {
                v.clone()
            };
            vec![x.sub(r.mul(&d)), v]
        })
        .collect();
    Ok(by_kind(results, 2))
}

/// The importers of the `ai.onnx.preview.training` domain, sorted by name.
pub const TRAINING_OPS: &[(&str, super::Importer)] =
    &[("Adagrad", adagrad), ("Adam", adam), ("Momentum", momentum)];
