//! Optimisers as graph transforms: [`Sgd`], [`Adam`] and [`AdamW`] append the gradient of a
//! loss and PyTorch's exact update formulas to the graph and return a [`TrainStep`]: the loss
//! and, for every piece of state, the tensor computing its next value.
//!
//! State lives in graph parameters: the model's own parameters, optimiser moments declared
//! as new parameters next to them (`fc1.weight.adam_m`, `fc1.weight.adam_v`,
//! `fc1.weight.sgd_momentum`, initialised to zeros), a step counter `{name}.step` (`f32`
//! scalar, `optim.step` by default, the number of completed steps as in PyTorch's
//! `state["step"]`), and every random-stream counter the loss depends on
//! (`*.rng_counter`, advanced by one per step, see [`crate::random::rng_counters`]).
//! Applying all updates at once is one training step. [`TrainStep::run_eval`] does that with
//! the reference interpreter; a compiled step applies them in place.
//!
//! The learning rate is a constant, a named `f32` scalar input, or a [`Schedule`] computed
//! in the graph from the step counter. Gradients can be clipped by their global norm first
//! (`torch.nn.utils.clip_grad_norm_`).
//!
//! ```
//! use kiln::nn::{Linear, Module};
//! use kiln::optim::Adam;
//! use kiln::{Array, DType, Graph};
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, [4, 3]);
//! let y = g.input("y", DType::F32, [4, 1]);
//! let model = Linear::new(&g, "fc", 3, 1, 0);
//! let loss = kiln::loss::mse_loss(&model.forward(&x), &y, kiln::loss::Reduction::Mean);
//! let step = Adam::new(1e-2).minimize(&loss, &model.parameters());
//! let names: Vec<&str> = step.updates.iter().map(|(n, _)| n.as_str()).collect();
//! assert_eq!(
//!     names,
//!     ["fc.weight", "fc.weight.adam_m", "fc.weight.adam_v", "fc.bias", "fc.bias.adam_m",
//!      "fc.bias.adam_v", "optim.step"]
//! );
//! let xv = Array::from_f32(&[4, 3], vec![1.0; 12]).unwrap();
//! let yv = Array::from_f32(&[4, 1], vec![2.0; 4]).unwrap();
//! let first = step.run_eval(&[("x", &xv), ("y", &yv)]).unwrap();
//! for _ in 0..50 {
//!     step.run_eval(&[("x", &xv), ("y", &yv)]).unwrap();
//! }
//! assert!(step.run_eval(&[("x", &xv), ("y", &yv)]).unwrap() < first);
//! ```

mod adam;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamW};
pub use schedule::{LearningRate, Schedule};
pub use sgd::Sgd;

use crate::builder::Graph;
use crate::error::Error;
use crate::random;
use crate::tensor::Tensor;
use kiln_ir::{Array, DType, Op};
use std::collections::HashSet;
use std::panic::Location;

/// One training step as tensors: the loss and the next value of every piece of state.
#[derive(Clone, Debug)]
pub struct TrainStep {
    /// The loss, computed from the state before the step.
    pub loss: Tensor,
    /// The learning rate this step uses (an `f32` scalar).
    pub lr: Tensor,
    /// State name -> tensor computing its new value: each parameter followed by its
    /// optimiser moments, then the step counter, then the random-stream counters.
    pub updates: Vec<(String, Tensor)>,
}

impl TrainStep {
    /// The graph the step belongs to.
    pub fn graph(&self) -> &Graph {
        self.loss.graph()
    }

    /// Runs one step through the reference interpreter: evaluates the loss and every
    /// update from the current state and `feeds`, then writes the new values back into the
    /// graph's parameter values (not into executables compiled from the graph, which keep
    /// their own trained state). Returns the loss (before the step). Any diagnostic in the graph
    /// is returned as [`Error::Check`] and nothing is written.
    pub fn run_eval(&self, feeds: &[(&str, &Array)]) -> Result<f32, Error> {
        let g = self.graph();
        g.check()?;
        let mut outs: Vec<&Tensor> = vec![&self.loss];
        outs.extend(self.updates.iter().map(|(_, t)| t));
        let vals = crate::eval(&outs, feeds)?;
        let loss = vals
            .first()
            .and_then(|v| v.to_f64_vec().first().copied())
            .unwrap_or(f64::NAN);
        for ((name, _), v) in self.updates.iter().zip(vals.into_iter().skip(1)) {
            g.set_param_value(name, v)?;
        }
        Ok(loss as f32)
    }

    /// Compiles the step for `backend` with [`crate::compile_step`]: one output, `loss`, and
    /// every update applied in place to the executable's state after each run.
    ///
    /// The executable starts from the graph's parameter values at this call and trains its
    /// own copy: read the trained weights with `exe.state().get(name)`, and compile the
    /// inference outputs with [`crate::compile_shared`] on `exe.state()` to use them. The
    /// graph's values (and so [`crate::eval`] and [`TrainStep::run_eval`]) stay as they were.
    /// Errors as [`crate::compile`].
    pub fn compile(&self, backend: crate::Backend) -> Result<crate::Executable, Error> {
        let updates: Vec<(&str, &Tensor)> =
            self.updates.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::compile_step(&[("loss", &self.loss)], &updates, backend)
    }
}

/// An optimiser: turns a loss and the parameters to train into a [`TrainStep`].
pub trait Optimizer {
    /// Appends the gradient of `loss` with respect to `params` (by `state_dict` name, as
    /// `Module::parameters` lists them) and the update rule to the graph.
    fn minimize(&self, loss: &Tensor, params: &[(String, Tensor)]) -> TrainStep;
}

/// Suffix of Adam's first moment `{param}.adam_m`.
pub const ADAM_M: &str = "adam_m";
/// Suffix of Adam's second moment `{param}.adam_v`.
pub const ADAM_V: &str = "adam_v";
/// Suffix of AMSGrad's running maximum of the second moment `{param}.adam_vmax`.
pub const ADAM_VMAX: &str = "adam_vmax";
/// Suffix of SGD's momentum buffer `{param}.sgd_momentum`.
pub const SGD_MOMENTUM: &str = "sgd_momentum";

/// Suffixes of the per-parameter optimiser state `{param}.{suffix}`.
pub const MOMENT_SUFFIXES: [&str; 4] = [ADAM_M, ADAM_V, ADAM_VMAX, SGD_MOMENTUM];

/// Suffix of an optimiser's step counter `{name}.step` (`optim.step` by default).
pub const STEP_SUFFIX: &str = "step";

/// What a state tensor is to training, read from its name, dtype and shape (the names
/// [`Sgd`], [`Adam`], [`AdamW`] and [`crate::nn::Dropout`] give their state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateRole {
    /// A model parameter: what PyTorch's `model.state_dict()` holds.
    Parameter,
    /// An optimiser moment `{param}.adam_m`, `.adam_v`, `.adam_vmax` or `.sgd_momentum`.
    Moment,
    /// An optimiser step counter `{name}.step` (an `f32` scalar).
    StepCounter,
    /// A random-stream counter `{prefix}.rng_counter` (a `u32` scalar).
    RngCounter,
}

impl StateRole {
    /// The role of state tensor `name` of `dtype` and `shape`. A tensor named like a moment
    /// or counter is one only if it has that state's dtype and shape (counters are scalars),
    /// so a model parameter that merely ends in `.step` stays a parameter unless it is an
    /// `f32` scalar.
    pub fn of(name: &str, dtype: DType, shape: &[usize]) -> StateRole {
        let suffix = name.rsplit_once('.').map(|(_, s)| s);
        match suffix {
            Some(s) if MOMENT_SUFFIXES.contains(&s) => StateRole::Moment,
            Some(STEP_SUFFIX) if dtype == DType::F32 && shape.is_empty() => StateRole::StepCounter,
            Some(random::RNG_COUNTER_SUFFIX) if dtype == DType::U32 && shape.is_empty() => {
                StateRole::RngCounter
            }
            _ => StateRole::Parameter,
        }
    }

    /// True for optimiser state (moments and step counters) and random-stream counters:
    /// what training adds to a model's parameters.
    pub fn is_training_state(self) -> bool {
        self != StateRole::Parameter
    }
}

/// Settings every optimiser shares.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Common {
    pub(crate) lr: LearningRate,
    pub(crate) clip: Option<f64>,
    pub(crate) name: String,
}

impl Common {
    pub(crate) fn new(lr: f64) -> Common {
        Common {
            lr: LearningRate::Constant(lr),
            clip: None,
            name: "optim".into(),
        }
    }
}

/// What every optimiser starts from: validated parameters, their (clipped) gradients, the
/// new step count `t` (`f32`, from 1), the learning rate and the bookkeeping updates.
pub(crate) struct Prepared {
    pub(crate) g: Graph,
    pub(crate) params: Vec<(String, Tensor)>,
    pub(crate) grads: Vec<Tensor>,
    pub(crate) t: Tensor,
    pub(crate) lr: Tensor,
    pub(crate) tail: Vec<(String, Tensor)>,
}

/// A step whose construction failed: the diagnostic is in the graph.
pub(crate) fn failed(g: &Graph) -> TrainStep {
    let p = Tensor::poisoned(g);
    TrainStep {
        loss: p.clone(),
        lr: p,
        updates: Vec::new(),
    }
}

/// Zeros-initialised optimiser state `{param}.{suffix}` shaped like `p`.
#[track_caller]
pub(crate) fn state(g: &Graph, param: &str, suffix: &str, p: &Tensor) -> (String, Tensor) {
    let name = format!("{param}.{suffix}");
    let shape = p.shape().as_known().unwrap_or_default();
    let t = match Array::zeros(p.dtype(), &shape) {
        Ok(z) => g.param_init(&name, z),
        Err(e) => g.fail(Location::caller(), "optimizer", format!("{name}: {e}")),
    };
    (name, t)
}

/// A float scalar of `dtype` from an `f32` scalar tensor.
#[track_caller]
pub(crate) fn as_dtype(t: &Tensor, dtype: DType) -> Tensor {
    if t.dtype() == dtype {
        t.clone()
    } else {
        t.cast(dtype)
    }
}

/// `torch.nn.utils.clip_grad_norm_`: scales every gradient by
/// `min(max_norm / (total_norm + 1e-6), 1)` where `total_norm` is the L2 norm of all
/// gradients together. Returns the scaled gradients and `total_norm` (in the first
/// gradient's dtype; others are cast to it for the norm).
#[track_caller]
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> (Vec<Tensor>, Tensor) {
    let Some(first) = grads.first() else {
        let g = Graph::new();
        return (Vec::new(), g.scalar(0.0, DType::F32));
    };
    let dt = first.dtype();
    let mut total: Option<Tensor> = None;
    for gr in grads {
        let s = as_dtype(&gr.square().sum_all(), dt);
        total = Some(match total {
            Some(t) => t + s,
            None => s,
        });
    }
    let norm = total.map_or_else(|| first.graph().scalar(0.0, dt), |t| t.sqrt());
    let coef = ((&norm + 1e-6).recip() * max_norm).minimum(1.0);
    let clipped = grads
        .iter()
        .map(|gr| gr * as_dtype(&coef, gr.dtype()))
        .collect();
    (clipped, norm)
}

/// Validates the parameters, builds the gradients, the step counter and the learning rate.
pub(crate) fn prepare(
    loc: &Location<'_>,
    op: &'static str,
    common: &Common,
    loss: &Tensor,
    params: &[(String, Tensor)],
) -> Option<Prepared> {
    let g = loss.graph().clone();
    if loss.is_poisoned() || params.iter().any(|(_, t)| t.is_poisoned()) {
        return None;
    }
    if loss.shape().numel().as_known() != Some(1) || !loss.dtype().is_float() {
        g.fail(
            loc,
            op,
            format!(
                "{op}: the loss must be a float scalar (one element), got {}{}",
                loss.dtype(),
                loss.shape()
            ),
        );
        return None;
    }
    let mut seen = HashSet::new();
    for (name, t) in params {
        let problem = if !t.graph().same(&g) {
            Some("comes from another graph".to_string())
        } else if !seen.insert(name.clone()) {
            Some("is listed twice".to_string())
        } else {
            let op = t
                .node()
                .and_then(|id| g.with_ir(|ir| ir.get(id).map(|n| n.op.clone())));
            match op {
                Some(Op::Parameter { name: n, dtype, .. }) if n == *name && dtype.is_float() => {
                    None
                }
                Some(Op::Parameter { name: n, dtype, .. }) if n == *name => Some(format!(
                    "has dtype {dtype}; only float parameters can be trained"
                )),
                Some(Op::Parameter { name: n, .. }) => {
                    Some(format!("is the tensor of parameter `{n}`"))
                }
                _ => Some("is not a graph parameter".to_string()),
            }
        };
        if let Some(p) = problem {
            g.fail(loc, op, format!("{op}: parameter `{name}` {p}"));
            return None;
        }
    }
    let wrt: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
    let mut grads = match crate::try_grad(loss, &wrt) {
        Ok(gr) => gr,
        Err(Error::Check(d)) => {
            for mut d in d {
                d.loc = kiln_ir::Loc::from_caller(loc);
                g.push_diag(d);
            }
            return None;
        }
        Err(e) => {
            g.fail(loc, op, format!("{op}: {e}"));
            return None;
        }
    };
    if let Some(max_norm) = common.clip {
        if max_norm.is_nan() || max_norm <= 0.0 {
            g.fail(
                loc,
                op,
                format!("{op}: max_norm for gradient clipping must be positive, got {max_norm}"),
            );
            return None;
        }
        grads = clip_grad_norm(&grads, max_norm).0;
    }
    let step_name = format!("{}.{STEP_SUFFIX}", common.name);
    let step = g.param_init(&step_name, Array::scalar(DType::F32, 0.0));
    let t = &step + 1.0;
    let lr = common.lr.build(loc, op, &g, &t)?;
    let mut tail = vec![(step_name, t.clone())];
    for (name, c) in random::rng_counters(loss) {
        tail.push((name, c + 1.0));
    }
    Some(Prepared {
        g,
        params: params.to_vec(),
        grads,
        t,
        lr,
        tail,
    })
}

/// Checks an optimiser hyper-parameter; records a diagnostic when `ok` is false.
pub(crate) fn check(
    g: &Graph,
    loc: &Location<'_>,
    op: &'static str,
    ok: bool,
    what: String,
) -> bool {
    if !ok {
        g.fail(loc, op, format!("{op}: {what}"));
    }
    ok
}
