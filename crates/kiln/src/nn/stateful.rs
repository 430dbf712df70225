//! StatefulLSTM: an LSTM whose hidden state persists across runs of a compiled executable
//! (streaming inference over a long sequence in chunks), followed by a linear head. Its
//! LSTM is one scan per layer, so with a symbolic chunk length one executable takes chunks
//! of any length.

use crate::builder::Graph;
use crate::nn::{Linear, Lstm, Module, RnnConfig};
use crate::tensor::Tensor;
use kiln_ir::{Array, DType};
use std::panic::Location;

/// `LSTM(input → hidden, batch_first)` + `Linear(hidden → classes)` on the last time step,
/// with `(h, c)` kept as state tensors `{prefix}.h` and `{prefix}.c` of shape
/// `[num_layers, batch, hidden]` (PyTorch's layout). Each run starts from the stored state
/// and the state updates [`StatefulLstm::forward`] returns write the final state back, so successive runs continue
/// one sequence; [`StatefulLstm::reset_values`] gives the zeros to start a new one.
#[derive(Debug)]
pub struct StatefulLstm {
    lstm: Lstm,
    head: Linear,
    h: Tensor,
    c: Tensor,
    h_name: String,
    c_name: String,
    shape: Vec<usize>,
}

impl StatefulLstm {
    /// Declares the layers and the zero-initialised state for a fixed `batch`.
    #[track_caller]
    pub fn new(
        g: &Graph,
        prefix: &str,
        cfg: RnnConfig,
        batch: usize,
        classes: usize,
        seed: u64,
    ) -> StatefulLstm {
        if cfg.bidirectional {
            g.fail(
                Location::caller(),
                "stateful_lstm",
                "stateful_lstm: a stateful LSTM runs forward in time only (bidirectional = false)"
                    .into(),
            );
        }
        let shape = vec![cfg.num_layers, batch, cfg.hidden_size];
        let zeros =
            || Array::zeros(DType::F32, &shape).unwrap_or_else(|_| Array::scalar(DType::F32, 0.0));
        let h_name = format!("{prefix}.h");
        let c_name = format!("{prefix}.c");
        let h = g.param_init(&h_name, zeros());
        let c = g.param_init(&c_name, zeros());
        let hidden = cfg.hidden_size;
        let lstm = Lstm::new(
            g,
            &format!("{prefix}.lstm"),
            RnnConfig {
                batch_first: true,
                bidirectional: false,
                ..cfg
            },
            seed,
        );
        let head = Linear::new(g, &format!("{prefix}.fc"), hidden, classes, seed + 1);
        StatefulLstm {
            lstm,
            head,
            h,
            c,
            h_name,
            c_name,
            shape,
        }
    }

    /// Logits for the chunk `x` (`[batch, T, input]`) and the state updates to compile with
    /// them (`kiln::compile_step(&[("logits", &logits)], &updates, backend)`).
    #[track_caller]
    pub fn forward(&self, x: &Tensor) -> (Tensor, Vec<(String, Tensor)>) {
        let (_, (h_n, c_n)) = self.lstm.forward_with_state(x, Some((&self.h, &self.c)));
        // The last layer's final state is its output at the last step.
        let last = h_n.slice(0, -1, i64::MAX, 1).squeeze(0);
        let logits = self.head.forward(&last);
        (
            logits,
            vec![(self.h_name.clone(), h_n), (self.c_name.clone(), c_n)],
        )
    }

    /// The state names and the zeros that start a new sequence (set them on the
    /// executable's [`State`](crate::State) with [`State::set`](crate::State::set) to reset).
    pub fn reset_values(&self) -> Vec<(String, Array)> {
        let z = Array::zeros(DType::F32, &self.shape)
            .unwrap_or_else(|_| Array::scalar(DType::F32, 0.0));
        vec![(self.h_name.clone(), z.clone()), (self.c_name.clone(), z)]
    }

    /// The trainable parameters with their state_dict names (not the recurrent state).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.lstm.parameters();
        p.extend(self.head.parameters());
        p
    }
}
