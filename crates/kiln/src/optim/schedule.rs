//! Learning rates: constants, fed inputs, and schedules computed inside the graph.

use crate::builder::Graph;
use crate::tensor::Tensor;
use kiln_ir::DType;
use std::panic::Location;

/// A learning-rate schedule over the number of completed steps `k` (0 for the first step),
/// as PyTorch's schedulers stepped once after every `optimizer.step()`.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// `torch.optim.lr_scheduler.StepLR`: `base · gamma^⌊k / step_size⌋`.
    Step {
        /// Initial learning rate.
        base: f64,
        /// Steps between decays (at least 1).
        step_size: u64,
        /// Decay factor.
        gamma: f64,
    },
    /// `torch.optim.lr_scheduler.CosineAnnealingLR` (closed form):
    /// `eta_min + (base - eta_min) · (1 + cos(π k / t_max)) / 2`.
    Cosine {
        /// Initial learning rate.
        base: f64,
        /// Half period in steps (at least 1).
        t_max: u64,
        /// Minimum learning rate.
        eta_min: f64,
    },
}

impl Schedule {
    /// The learning rate after `k` completed steps, computed on the host in `f64`.
    pub fn at(&self, k: u64) -> f64 {
        match *self {
            Schedule::Step {
                base,
                step_size,
                gamma,
            } => base * gamma.powf((k / step_size.max(1)) as f64),
            Schedule::Cosine {
                base,
                t_max,
                eta_min,
            } => {
                let phase = std::f64::consts::PI * k as f64 / t_max.max(1) as f64;
                eta_min + (base - eta_min) * (1.0 + phase.cos()) / 2.0
            }
        }
    }

    /// The schedule in the graph for `k` completed steps (an `f32` scalar).
    #[track_caller]
    fn build(&self, k: &Tensor) -> Tensor {
        match *self {
            Schedule::Step {
                base,
                step_size,
                gamma,
            } => {
                let e = (k / step_size as f64).floor();
                k.graph().scalar(gamma, DType::F32).pow(&e) * base
            }
            Schedule::Cosine {
                base,
                t_max,
                eta_min,
            } => {
                let phase = k * (std::f64::consts::PI / t_max as f64);
                (phase.cos() + 1.0) * ((base - eta_min) / 2.0) + eta_min
            }
        }
    }
}

/// Where a step's learning rate comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum LearningRate {
    /// A fixed value.
    Constant(f64),
    /// A named `f32` scalar graph input, fed at every step.
    Input(String),
    /// A schedule over the step counter.
    Schedule(Schedule),
}

impl LearningRate {
    /// The learning-rate tensor (`f32` scalar) of the step whose 1-based count is `t`, or
    /// `None` after recording a diagnostic for an invalid setting.
    pub(crate) fn build(
        &self,
        loc: &Location<'_>,
        op: &'static str,
        g: &Graph,
        t: &Tensor,
    ) -> Option<Tensor> {
        let bad = |msg: String| {
            g.fail(loc, op, format!("{op}: {msg}"));
            None
        };
        match self {
            LearningRate::Constant(lr) if lr.is_nan() || *lr < 0.0 => {
                bad(format!("learning rate must be >= 0, got {lr}"))
            }
            LearningRate::Constant(lr) => Some(g.scalar(*lr, DType::F32)),
            LearningRate::Input(name) => {
                let ir = g.ir();
                let existing = ir
                    .inputs()
                    .into_iter()
                    .find(|(_, n)| n == name)
                    .map(|(id, _)| id);
                match existing {
                    Some(id) => {
                        let node = ir.node(id);
                        if node.dtype != DType::F32 || node.shape.rank() != 0 {
                            return bad(format!(
                                "learning-rate input `{name}` must be an f32 scalar, is {}{}",
                                node.dtype, node.shape
                            ));
                        }
                        Some(Tensor::from_node(g, id))
                    }
                    None => Some(g.input(name, DType::F32, kiln_ir::Shape::scalar())),
                }
            }
            LearningRate::Schedule(s) => {
                let valid = match *s {
                    Schedule::Step {
                        base, step_size, ..
                    } => base >= 0.0 && step_size > 0,
                    Schedule::Cosine {
                        base,
                        t_max,
                        eta_min,
                    } => base >= 0.0 && eta_min >= 0.0 && t_max > 0,
                };
                if !valid {
                    return bad(format!(
                        "invalid schedule {s:?}: rates must be >= 0 and periods >= 1"
                    ));
                }
                Some(s.build(&(t - 1.0)))
            }
        }
    }
}
