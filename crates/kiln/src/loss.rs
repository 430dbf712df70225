//! Loss functions with PyTorch's definitions and reductions: [`cross_entropy`] (with label
//! smoothing), [`nll_loss`], [`mse_loss`], [`l1_loss`] and
//! [`binary_cross_entropy_with_logits`].
//!
//! Class-indexed losses take the class axis at position 1 (`[N, C]` or `[N, C, d1, ...]`;
//! a `[C]` input with a scalar target is one sample) and integer targets shaped like the
//! input without that axis. There is no `ignore_index` or per-class weight. A shape or dtype
//! mismatch records a diagnostic at the caller and returns a poisoned tensor.
//!
//! ```
//! use kiln::loss::{Reduction, cross_entropy};
//! use kiln::{Array, DType, Graph};
//! let g = Graph::new();
//! let logits = g.input("logits", DType::F32, [1, 2]);
//! let target = g.input("target", DType::I64, [1]);
//! let loss = cross_entropy(&logits, &target, Reduction::Mean, 0.0);
//! let l = Array::from_f32(&[1, 2], vec![0.0, 0.0]).unwrap();
//! let t = Array::from_i64(&[1], vec![1]).unwrap();
//! let out = kiln::eval(&[&loss], &[("logits", &l), ("target", &t)]).unwrap();
//! assert!((out[0].as_f32().unwrap()[0] - std::f32::consts::LN_2).abs() < 1e-6);
//! ```

use crate::tensor::Tensor;
use std::panic::Location;

/// How per-element losses are combined (PyTorch's `reduction=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over every element (the default).
    #[default]
    Mean,
    /// The sum over every element.
    Sum,
    /// No reduction: the per-element losses.
    None,
}

#[track_caller]
fn reduce(x: Tensor, r: Reduction) -> Tensor {
    match r {
        Reduction::Mean => x.mean_all(),
        Reduction::Sum => x.sum_all(),
        Reduction::None => x,
    }
}

/// Moves the class axis (1) of a rank >= 2 input last; a rank-1 input is one sample.
#[track_caller]
fn classes_last(x: &Tensor) -> Tensor {
    let r = x.rank();
    if r <= 2 {
        return x.clone();
    }
    let mut perm: Vec<usize> = vec![0];
    perm.extend(2..r);
    perm.push(1);
    x.permute(perm)
}

/// Checks an integer target against an input with a class axis; `op` names the loss.
fn check_class_target(
    loc: &Location<'_>,
    op: &'static str,
    input: &Tensor,
    target: &Tensor,
) -> bool {
    if input.is_poisoned() || target.is_poisoned() {
        return false;
    }
    let g = input.graph();
    let s = input.shape();
    if !input.dtype().is_float() || s.rank() == 0 {
        g.fail(
            loc,
            op,
            format!(
                "{op}: input must be a float tensor [N, C, ...] or [C], got {}{s}",
                input.dtype()
            ),
        );
        return false;
    }
    let mut want = s.0.clone();
    want.remove(if s.rank() == 1 { 0 } else { 1 });
    if !target.dtype().is_index() || target.shape().0 != want {
        g.fail(
            loc,
            op,
            format!(
                "{op}: target must be integer class indices shaped {}, got {}{} for input {s}",
                kiln_ir::Shape(want),
                target.dtype(),
                target.shape()
            ),
        );
        return false;
    }
    true
}

/// `-input[target]` along the class axis, shaped like the target.
#[track_caller]
fn pick(logp_last: &Tensor, target: &Tensor) -> Tensor {
    logp_last
        .gather(-1, &target.unsqueeze(-1))
        .squeeze(-1)
        .neg()
}

/// `torch.nn.functional.cross_entropy(input, target, reduction, label_smoothing)` with
/// integer class targets: `log_softmax` over the class axis, then per element
/// `(1 - ε)·(-logp[target]) + ε·mean_c(-logp[c])`, reduced. `ε = label_smoothing` must be in
/// `[0, 1]`.
#[track_caller]
pub fn cross_entropy(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    label_smoothing: f64,
) -> Tensor {
    let loc = Location::caller();
    let g = input.graph();
    if !(0.0..=1.0).contains(&label_smoothing) {
        return g.fail(
            loc,
            "cross_entropy",
            format!("cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}"),
        );
    }
    if !check_class_target(loc, "cross_entropy", input, target) {
        return Tensor::poisoned(g);
    }
    let logp = classes_last(input).log_softmax(-1);
    let nll = pick(&logp, target);
    let per = if label_smoothing > 0.0 {
        let smooth = logp.mean(-1, false).neg();
        nll * (1.0 - label_smoothing) + smooth * label_smoothing
    } else {
        nll
    };
    reduce(per, reduction)
}

/// `torch.nn.functional.nll_loss(input, target, reduction)`: `-input[target]` along the
/// class axis of log-probabilities `input`, reduced.
#[track_caller]
pub fn nll_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    let loc = Location::caller();
    if !check_class_target(loc, "nll_loss", input, target) {
        return Tensor::poisoned(input.graph());
    }
    reduce(pick(&classes_last(input), target), reduction)
}

/// Checks that `input` and `target` are float tensors of one dtype and shape.
fn check_same(loc: &Location<'_>, op: &'static str, input: &Tensor, target: &Tensor) -> bool {
    if input.is_poisoned() || target.is_poisoned() {
        return false;
    }
    let ok = input.dtype().is_float()
        && input.dtype() == target.dtype()
        && input.shape() == target.shape();
    if !ok {
        input.graph().fail(
            loc,
            op,
            format!(
                "{op}: input and target must be float tensors of one dtype and shape, got {}{} \
                 and {}{}",
                input.dtype(),
                input.shape(),
                target.dtype(),
                target.shape()
            ),
        );
    }
    ok
}

/// `torch.nn.functional.mse_loss`: `(input - target)²`, reduced.
#[track_caller]
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    if !check_same(Location::caller(), "mse_loss", input, target) {
        return Tensor::poisoned(input.graph());
    }
    reduce((input - target).square(), reduction)
}

/// `torch.nn.functional.l1_loss`: `|input - target|`, reduced.
#[track_caller]
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    if !check_same(Location::caller(), "l1_loss", input, target) {
        return Tensor::poisoned(input.graph());
    }
    reduce((input - target).abs(), reduction)
}

/// `log(1 + e^x)` computed stably on each side of 0 (`x + log(1 + e^-x)` above,
/// `log(1 + e^x)` below), with each branch fed only its own side so neither overflows; the
/// derivative is `sigmoid(x)` everywhere, `0.5` at 0.
#[track_caller]
fn softplus(x: &Tensor) -> Tensor {
    let pos = x.gt(0.0);
    let xp = pos.where_(x, 0.0);
    let xn = pos.where_(0.0, x);
    let above = &xp + (xp.neg().exp() + 1.0).log();
    let below = (xn.exp() + 1.0).log();
    pos.where_(above, below)
}

/// `torch.nn.functional.binary_cross_entropy_with_logits`: per element
/// `softplus(x) - x·y` (the stable form of `-(y·log σ(x) + (1 - y)·log(1 - σ(x)))`, whose
/// derivative is `σ(x) - y`), reduced. Targets are probabilities in `[0, 1]`.
#[track_caller]
pub fn binary_cross_entropy_with_logits(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
) -> Tensor {
    if !check_same(
        Location::caller(),
        "binary_cross_entropy_with_logits",
        input,
        target,
    ) {
        return Tensor::poisoned(input.graph());
    }
    let per = softplus(input) - input * target;
    reduce(per, reduction)
}
