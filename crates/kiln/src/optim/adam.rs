//! Adam and AdamW (with optional AMSGrad), PyTorch's formulas and defaults.

use super::{
    Common, LearningRate, Optimizer, Prepared, Schedule, TrainStep, as_dtype, check, failed,
    prepare, state,
};
use crate::tensor::Tensor;
use std::panic::Location;

/// Hyper-parameters shared by Adam and AdamW.
#[derive(Clone, Debug, PartialEq)]
struct Hyper {
    common: Common,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
}

impl Hyper {
    fn new(lr: f64, weight_decay: f64) -> Hyper {
        Hyper {
            common: Common::new(lr),
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            amsgrad: false,
        }
    }

    /// Builds the step; `decoupled` selects AdamW's weight decay.
    fn minimize(
        &self,
        loc: &Location<'_>,
        op: &'static str,
        decoupled: bool,
        loss: &Tensor,
        params: &[(String, Tensor)],
    ) -> TrainStep {
        let g = loss.graph();
        let (b1, b2) = self.betas;
        let valid = check(
            g,
            loc,
            op,
            (0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2),
            format!("betas must be in [0, 1), got ({b1}, {b2})"),
        ) && check(
            g,
            loc,
            op,
            self.eps >= 0.0 && self.weight_decay >= 0.0,
            format!(
                "eps ({}) and weight_decay ({}) must be >= 0",
                self.eps, self.weight_decay
            ),
        );
        if !valid {
            return failed(g);
        }
        let Some(prep) = prepare(loc, op, &self.common, loss, params) else {
            return failed(g);
        };
        let updates = self.updates(&prep, decoupled);
        TrainStep {
            loss: loss.clone(),
            lr: prep.lr,
            updates,
        }
    }

    /// Per parameter `p` with gradient `g` at step `t` (PyTorch's `_single_tensor_adam`):
    ///
    /// ```text
    /// p = p · (1 - lr · wd)        AdamW          g = g + wd · p      Adam
    /// m = m + (1 - β1) · (g - m)
    /// v = β2 · v + (1 - β2) · g²
    /// vmax = max(vmax, v)          AMSGrad (v below reads vmax)
    /// p = p - (lr / (1 - β1^t)) · m / (√v / √(1 - β2^t) + eps)
    /// ```
    fn updates(&self, prep: &Prepared, decoupled: bool) -> Vec<(String, Tensor)> {
        let (b1, b2) = self.betas;
        let mut updates = Vec::new();
        for ((name, p), grad) in prep.params.iter().zip(&prep.grads) {
            let dt = p.dtype();
            let lr = as_dtype(&prep.lr, dt);
            let t = as_dtype(&prep.t, dt);
            let mut gr = grad.clone();
            let mut base = p.clone();
            if self.weight_decay != 0.0 {
                if decoupled {
                    base = p * ((&lr * self.weight_decay).neg() + 1.0);
                } else {
                    gr = gr + p * self.weight_decay;
                }
            }
            let (mname, m) = state(&prep.g, name, super::ADAM_M, p);
            let (vname, v) = state(&prep.g, name, super::ADAM_V, p);
            let m_new = &m + (&gr - &m) * (1.0 - b1);
            let v_new = &v * b2 + &gr * &gr * (1.0 - b2);
            let bc1 = one_minus_pow(b1, &t);
            let bc2_sqrt = one_minus_pow(b2, &t).sqrt();
            let step_size = &lr / bc1;
            let mut extra = Vec::new();
            let second = if self.amsgrad {
                let (xname, vmax) = state(&prep.g, name, super::ADAM_VMAX, p);
                let vmax_new = vmax.maximum(&v_new);
                extra.push((xname, vmax_new.clone()));
                vmax_new
            } else {
                v_new.clone()
            };
            let denom = second.sqrt() / bc2_sqrt + self.eps;
            let p_new = base - (&m_new / denom) * step_size;
            updates.push((name.clone(), p_new));
            updates.push((mname, m_new));
            updates.push((vname, v_new));
            updates.extend(extra);
        }
        updates.extend(prep.tail.iter().cloned());
        updates
    }
}

/// `1 - β^t` for `β` in `[0, 1)`, accurate to a few ulps even when `β` is close to 1 (where
/// rounding `β` itself to `f32` would cost `1 - 0.999^t` about five digits): computed as
/// `-expm1(t · ln β)` with `ln β` taken in `f64` on the host and `expm1` as a Taylor polynomial
/// for `|y| <= 0.5`, `exp(y) - 1` beyond.
#[track_caller]
fn one_minus_pow(beta: f64, t: &Tensor) -> Tensor {
    if beta == 0.0 {
        return t.ones_like();
    }
    let y = t * beta.ln();
    let mut series = y.full_like(1.0 / 40_320.0);
    for k in (1..8).rev() {
        let inv_fact = 1.0 / (1..=k).map(f64::from).product::<f64>();
        series = series * &y + inv_fact;
    }
    let small = series * &y;
    let large = y.exp() - 1.0;
    y.abs().le(0.5).where_(small, large).neg()
}

macro_rules! adam_like {
    ($(#[$m:meta])* $name:ident, $op:literal, $decoupled:literal, $wd:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            h: Hyper,
        }

        impl $name {
            /// With learning rate `lr` and PyTorch's other defaults.
            pub fn new(lr: f64) -> $name {
                $name {
                    h: Hyper::new(lr, $wd),
                }
            }

            /// With other moment decay rates (default `(0.9, 0.999)`).
            #[must_use]
            pub fn betas(mut self, beta1: f64, beta2: f64) -> $name {
                self.h.betas = (beta1, beta2);
                self
            }

            /// With another epsilon (default `1e-8`).
            #[must_use]
            pub fn eps(mut self, eps: f64) -> $name {
                self.h.eps = eps;
                self
            }

            /// With another weight decay.
            #[must_use]
            pub fn weight_decay(mut self, weight_decay: f64) -> $name {
                self.h.weight_decay = weight_decay;
                self
            }

            /// With or without the AMSGrad variant (state `{p}.adam_vmax`).
            #[must_use]
            pub fn amsgrad(mut self, amsgrad: bool) -> $name {
                self.h.amsgrad = amsgrad;
                self
            }

            /// With another learning-rate source.
            #[must_use]
            pub fn lr(mut self, lr: LearningRate) -> $name {
                self.h.common.lr = lr;
                self
            }

            /// With a learning-rate schedule.
            #[must_use]
            pub fn schedule(self, s: Schedule) -> $name {
                self.lr(LearningRate::Schedule(s))
            }

            /// With gradients clipped to a global L2 norm of at most `max_norm` first.
            #[must_use]
            pub fn clip_grad_norm(mut self, max_norm: f64) -> $name {
                self.h.common.clip = Some(max_norm);
                self
            }

            /// With another prefix for the step counter (`{name}.step`, default `optim`).
            #[must_use]
            pub fn name(mut self, name: &str) -> $name {
                self.h.common.name = name.to_string();
                self
            }

            /// Appends the gradients and this update rule to the graph (see [`Optimizer`]).
            #[track_caller]
            pub fn minimize(&self, loss: &Tensor, params: &[(String, Tensor)]) -> TrainStep {
                self.h
                    .minimize(Location::caller(), $op, $decoupled, loss, params)
            }
        }

        impl Optimizer for $name {
            #[track_caller]
            fn minimize(&self, loss: &Tensor, params: &[(String, Tensor)]) -> TrainStep {
                $name::minimize(self, loss, params)
            }
        }
    };
}

adam_like!(
    /// `torch.optim.Adam`: L2 weight decay added to the gradient (default 0), betas
    /// `(0.9, 0.999)`, eps `1e-8`. State `{p}.adam_m`, `{p}.adam_v` (and `{p}.adam_vmax`
    /// with AMSGrad). See the update formulas on the private `Hyper::updates`:
    /// `m = m + (1-β1)(g-m)`, `v = β2 v + (1-β2) g²`,
    /// `p -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + eps)`.
    Adam,
    "adam",
    false,
    0.0
);

adam_like!(
    /// `torch.optim.AdamW`: Adam with decoupled weight decay `p = p · (1 - lr · wd)` applied
    /// before the moment update (default `wd = 0.01`), betas `(0.9, 0.999)`, eps `1e-8`.
    AdamW,
    "adamw",
    true,
    0.01
);
