//! Functional building blocks over primitives (recurrent cells and friends): plain
//! functions of tensors that declare no parameters, so the caller owns the weights.
//! [`crate::nn::Lstm`] runs [`lstm_cell`]'s step over time (a scan, or unrolled) with declared
//! parameters.
//!
//! ```
//! use kiln::functional::lstm_cell;
//! use kiln::{Array, DType, Graph};
//!
//! // One step of a 1-unit LSTM with all weights zero: every gate is sigmoid(0) = 0.5 and
//! // the candidate tanh(0) = 0, so c' = 0.5 * c and h' = 0.5 * tanh(c').
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, [1, 2]);
//! let h = g.zeros([1, 1], DType::F32);
//! let c = g.full([1, 1], 2.0, DType::F32);
//! let w_ih = g.zeros([4, 2], DType::F32);
//! let w_hh = g.zeros([4, 1], DType::F32);
//! let (h1, c1) = lstm_cell(&x, &h, &c, &w_ih, &w_hh, None, None);
//! let xv = Array::from_f32(&[1, 2], vec![3.0, -1.0])?;
//! let out = kiln::eval(&[&h1, &c1], &[("x", &xv)])?;
//! assert_eq!(out[1].as_f32()?, &[1.0]);
//! assert!((out[0].as_f32()?[0] - 0.5 * 1f32.tanh()).abs() < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::tensor::Tensor;
use std::panic::Location;

/// One step of an LSTM cell, exactly `torch.nn.LSTMCell`:
///
/// ```text
/// gates = x @ w_ih^T + b_ih + h @ w_hh^T + b_hh        [N, 4H], order i, f, g, o
/// c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
/// h' = sigmoid(o) * tanh(c')
/// ```
///
/// `x` is `[N, I]`, `h` and `c` are `[N, H]`, `w_ih` is `[4H, I]`, `w_hh` is `[4H, H]` and the
/// biases `[4H]` (PyTorch's `state_dict` layouts). Returns `(h', c')`. `H` must be a known
/// size; a mismatch records a diagnostic at the caller and poisons both results.
///
/// ```
/// use kiln::{DType, Graph, functional::lstm_cell};
/// let g = Graph::new();
/// let n = g.sym("N");
/// let x = g.input("x", DType::F32, (&n, 28));
/// let h = g.zeros((&n, 128), DType::F32);
/// let w_ih = g.param("w_ih", DType::F32, [512, 28]);
/// let w_hh = g.param("w_hh", DType::F32, [512, 128]);
/// let (h1, c1) = lstm_cell(&x, &h, &h, &w_ih, &w_hh, None, None);
/// assert_eq!(h1.shape().to_string(), "[N, 128]");
/// assert_eq!(c1.shape().to_string(), "[N, 128]");
/// ```
#[track_caller]
pub fn lstm_cell(
    x: &Tensor,
    h: &Tensor,
    c: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b_ih: Option<&Tensor>,
    b_hh: Option<&Tensor>,
) -> (Tensor, Tensor) {
    let loc = Location::caller();
    let g = x.graph();
    if [h, c, w_ih, w_hh]
        .iter()
        .chain(b_ih.iter())
        .chain(b_hh.iter())
        .any(|t| t.is_poisoned())
        || x.is_poisoned()
    {
        return (Tensor::poisoned(g), Tensor::poisoned(g));
    }
    let hidden = w_hh.dim(-1).and_then(|d| d.as_known());
    let gates_dim = w_hh.dim(0).and_then(|d| d.as_known());
    let (Some(hs), Some(four_h)) = (hidden, gates_dim) else {
        let p = g.fail(
            loc,
            "lstm_cell",
            format!(
                "lstm_cell: w_hh must be a known [4H, H] matrix, got {}",
                w_hh.shape()
            ),
        );
        return (p.clone(), p);
    };
    if four_h != 4 * hs || w_hh.rank() != 2 {
        let p = g.fail(
            loc,
            "lstm_cell",
            format!(
                "lstm_cell: w_hh must be [4H, H], got {} (gate order i, f, g, o)",
                w_hh.shape()
            ),
        );
        return (p.clone(), p);
    }
    lstm_step(&input_gates(x, w_ih, b_ih), h, c, w_hh, b_hh, hs as i64)
}

/// `x @ w^T + b`: a cell's input (or recurrent) projection.
pub(crate) fn input_gates(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    let gi = x.matmul(&w.t());
    match b {
        Some(b) => gi + b,
        None => gi,
    }
}

/// One LSTM step from its input gates `gi = x @ w_ih^T + b_ih` (`[N, 4H]`):
/// `gates = gi + (h @ w_hh^T + b_hh)`, PyTorch's association. Shapes are checked by the caller.
pub(crate) fn lstm_step(
    gi: &Tensor,
    h: &Tensor,
    c: &Tensor,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
    hs: i64,
) -> (Tensor, Tensor) {
    let gates = gi + input_gates(h, w_hh, b_hh);
    let chunk = |k: i64| gates.slice(-1, k * hs, (k + 1) * hs, 1);
    let i = chunk(0).sigmoid();
    let f = chunk(1).sigmoid();
    let cand = chunk(2).tanh();
    let o = chunk(3).sigmoid();
    let c_next = f * c + i * cand;
    let h_next = o * c_next.tanh();
    (h_next, c_next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Graph};

    #[test]
    fn bad_recurrent_weight_is_a_diagnostic_at_the_caller() {
        let g = Graph::new();
        let x = g.input("x", DType::F32, [2, 3]);
        let h = g.input("h", DType::F32, [2, 4]);
        let w_ih = g.param("w_ih", DType::F32, [16, 3]);
        let w_hh = g.param("w_hh", DType::F32, [12, 4]);
        let line = line!() + 1;
        let (h1, c1) = lstm_cell(&x, &h, &h, &w_ih, &w_hh, None, None);
        assert!(h1.is_poisoned() && c1.is_poisoned());
        let d = g.diagnostics();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].op, "lstm_cell");
        assert_eq!(d[0].loc.line, line);
        assert_eq!(
            d[0].message,
            "lstm_cell: w_hh must be [4H, H], got [12, 4] (gate order i, f, g, o)"
        );
    }

    #[test]
    fn poisoned_operand_stays_quiet() {
        let g = Graph::new();
        let x = g.input("x", DType::F32, [2, 3]).reshape([7]);
        let h = g.input("h", DType::F32, [2, 4]);
        let w_ih = g.param("w_ih", DType::F32, [16, 3]);
        let w_hh = g.param("w_hh", DType::F32, [16, 4]);
        let (h1, _) = lstm_cell(&x, &h, &h, &w_ih, &w_hh, None, None);
        assert!(h1.is_poisoned());
        assert_eq!(
            g.diagnostics().len(),
            1,
            "only the reshape error is recorded"
        );
    }

    #[test]
    fn shapes_follow_the_hidden_size() {
        let g = Graph::new();
        let x = g.input("x", DType::F32, [5, 3]);
        let h = g.input("h", DType::F32, [5, 4]);
        let w_ih = g.param("w_ih", DType::F32, [16, 3]);
        let w_hh = g.param("w_hh", DType::F32, [16, 4]);
        let b = g.param("b", DType::F32, [16]);
        let (h1, c1) = lstm_cell(&x, &h, &h, &w_ih, &w_hh, Some(&b), Some(&b));
        assert_eq!(
            (h1.shape().to_string(), c1.shape().to_string()),
            ("[5, 4]".into(), "[5, 4]".into())
        );
        assert!(g.check().is_ok());
    }
}
