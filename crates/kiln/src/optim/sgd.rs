//! Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

use super::{
    Common, LearningRate, Optimizer, Schedule, TrainStep, as_dtype, check, failed, prepare, state,
};
use crate::tensor::Tensor;
use std::panic::Location;

/// `torch.optim.SGD` with PyTorch's update, per parameter `p` with gradient `g`:
///
/// ```text
/// d = g + weight_decay · p
/// if momentum != 0:
///     buf = d                                        on the first step
///     buf = momentum · buf + (1 - dampening) · d     afterwards
///     d = d + momentum · buf  if nesterov, else buf
/// p = p - lr · d
/// ```
///
/// The momentum buffer is the state `{p}.sgd_momentum`. Defaults: no momentum, dampening
/// or weight decay.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    common: Common,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
}

impl Sgd {
    /// Plain SGD with a constant learning rate.
    pub fn new(lr: f64) -> Sgd {
        Sgd {
            common: Common::new(lr),
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// With momentum.
    #[must_use]
    pub fn momentum(mut self, momentum: f64) -> Sgd {
        self.momentum = momentum;
        self
    }

    /// With dampening of the momentum.
    #[must_use]
    pub fn dampening(mut self, dampening: f64) -> Sgd {
        self.dampening = dampening;
        self
    }

    /// With L2 weight decay added to the gradient.
    #[must_use]
    pub fn weight_decay(mut self, weight_decay: f64) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    /// With Nesterov momentum (needs momentum > 0 and no dampening).
    #[must_use]
    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }

    /// With another learning-rate source.
    #[must_use]
    pub fn lr(mut self, lr: LearningRate) -> Sgd {
        self.common.lr = lr;
        self
    }

    /// With a learning-rate schedule.
    #[must_use]
    pub fn schedule(self, s: Schedule) -> Sgd {
        self.lr(LearningRate::Schedule(s))
    }

    /// With gradients clipped to a global L2 norm of at most `max_norm` before the update.
    #[must_use]
    pub fn clip_grad_norm(mut self, max_norm: f64) -> Sgd {
        self.common.clip = Some(max_norm);
        self
    }

    /// With another prefix for the step counter (`{name}.step`, default `optim`).
    #[must_use]
    pub fn name(mut self, name: &str) -> Sgd {
        self.common.name = name.to_string();
        self
    }

    /// Appends the gradients and this update rule to the graph (see [`Optimizer`]).
    #[track_caller]
    pub fn minimize(&self, loss: &Tensor, params: &[(String, Tensor)]) -> TrainStep {
        let loc = Location::caller();
        let g = loss.graph();
        let op = "sgd";
        let valid = check(
            g,
            loc,
            op,
            self.momentum >= 0.0 && self.weight_decay >= 0.0 && self.dampening.is_finite(),
            format!(
                "momentum ({}) and weight_decay ({}) must be >= 0",
                self.momentum, self.weight_decay
            ),
        ) && check(
            g,
            loc,
            op,
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "Nesterov momentum requires a momentum and zero dampening".into(),
        );
        if !valid {
            return failed(g);
        }
        let Some(prep) = prepare(loc, op, &self.common, loss, params) else {
            return failed(g);
        };
        let mut updates = Vec::new();
        for ((name, p), grad) in prep.params.iter().zip(&prep.grads) {
            let dt = p.dtype();
            let lr = as_dtype(&prep.lr, dt);
            let mut d = grad.clone();
            if self.weight_decay != 0.0 {
                d = d + p * self.weight_decay;
            }
            let mut extra = None;
            if self.momentum != 0.0 {
                let (bname, buf) = state(&prep.g, name, super::SGD_MOMENTUM, p);
                let later = &buf * self.momentum + &d * (1.0 - self.dampening);
                let first = prep.t.eq(1.0);
                let nbuf = first.where_(&d, later);
                d = if self.nesterov {
                    d + &nbuf * self.momentum
                } else {
                    nbuf.clone()
                };
                extra = Some((bname, nbuf));
            }
            updates.push((name.clone(), p - d * lr));
            updates.extend(extra);
        }
        updates.extend(prep.tail);
        TrainStep {
            loss: loss.clone(),
            lr: prep.lr,
            updates,
        }
    }
}

impl Optimizer for Sgd {
    #[track_caller]
    fn minimize(&self, loss: &Tensor, params: &[(String, Tensor)]) -> TrainStep {
        Sgd::minimize(self, loss, params)
    }
}
