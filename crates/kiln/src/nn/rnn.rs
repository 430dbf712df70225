//! Recurrent layers: multi-layer `Lstm` and `Gru` unrolled over a known number of time
//! steps, with PyTorch's parameter names, gate orders and state layouts.

use super::{Module, declare, init, join};
use crate::builder::Graph;
use crate::functional::{input_gates, lstm_step};
use crate::tensor::Tensor;
use kiln_ir::{Dim, Shape};
use std::panic::Location;

/// Sizes and layout of a recurrent layer (`torch.nn.LSTM` / `torch.nn.GRU` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RnnConfig {
    /// Features per time step of the input.
    pub input_size: usize,
    /// Features of the hidden state.
    pub hidden_size: usize,
    /// Stacked layers (default 1).
    pub num_layers: usize,
    /// Whether the gates have biases (default true).
    pub bias: bool,
    /// Input and output are `[N, T, F]` instead of `[T, N, F]` (default false, as PyTorch).
    pub batch_first: bool,
}

impl RnnConfig {
    /// One layer with biases, time-major.
    pub fn new(input_size: usize, hidden_size: usize) -> RnnConfig {
        RnnConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
        }
    }

    /// With `n` stacked layers.
    #[must_use]
    pub fn num_layers(mut self, n: usize) -> RnnConfig {
        self.num_layers = n;
        self
    }

    /// With or without gate biases.
    #[must_use]
    pub fn bias(mut self, bias: bool) -> RnnConfig {
        self.bias = bias;
        self
    }

    /// Batch-first (`[N, T, F]`) or time-major (`[T, N, F]`) input and output.
    #[must_use]
    pub fn batch_first(mut self, batch_first: bool) -> RnnConfig {
        self.batch_first = batch_first;
        self
    }
}

/// The weights of one layer.
#[derive(Clone, Debug)]
struct LayerWeights {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Option<Tensor>,
    b_hh: Option<Tensor>,
}

/// Declares `{prefix}.weight_ih_l{k}` `[G·H, in]`, `weight_hh_l{k}` `[G·H, H]`, `bias_ih_l{k}`,
/// `bias_hh_l{k}` `[G·H]` for every layer, all `U(-1/√H, 1/√H)`.
#[track_caller]
fn declare_layers(
    g: &Graph,
    prefix: &str,
    cfg: &RnnConfig,
    gates: usize,
    seed: u64,
) -> (Vec<LayerWeights>, Vec<(String, Tensor)>) {
    let h = cfg.hidden_size;
    let bound = init::fan_in_bound(h);
    let mut params = Vec::new();
    let mut layers = Vec::new();
    let mut index = 0u32;
    for l in 0..cfg.num_layers {
        let inp = if l == 0 { cfg.input_size } else { h };
        let mut shapes = vec![
            (format!("weight_ih_l{l}"), vec![gates * h, inp]),
            (format!("weight_hh_l{l}"), vec![gates * h, h]),
        ];
        if cfg.bias {
            shapes.push((format!("bias_ih_l{l}"), vec![gates * h]));
            shapes.push((format!("bias_hh_l{l}"), vec![gates * h]));
        }
        let mut ts = Vec::new();
        for (name, shape) in shapes {
            let full = join(prefix, &name);
            let t = declare(g, &full, init::uniform(seed, index, &shape, bound));
            index += 1;
            params.push((full, t.clone()));
            ts.push(t);
        }
        layers.push(LayerWeights {
            w_ih: ts[0].clone(),
            w_hh: ts[1].clone(),
            b_ih: ts.get(2).cloned(),
            b_hh: ts.get(3).cloned(),
        });
    }
    (layers, params)
}

/// The unrolled view of an input sequence: per-step `[N, F]` slices, or the diagnostic.
struct Steps {
    steps: Vec<Tensor>,
    batch: Dim,
    time_axis: i64,
}

#[track_caller]
fn split_steps(
    loc: &Location<'_>,
    op: &'static str,
    x: &Tensor,
    cfg: &RnnConfig,
) -> Result<Steps, Tensor> {
    let g = x.graph();
    if x.is_poisoned() {
        return Err(x.clone());
    }
    let s = x.shape();
    let layout = if cfg.batch_first {
        "[N, T, F]"
    } else {
        "[T, N, F]"
    };
    if s.rank() != 3 {
        return Err(g.fail(loc, op, format!("{op}: input must be {layout}, got {s}")));
    }
    let (t_axis, n_axis) = if cfg.batch_first { (1, 0) } else { (0, 1) };
    let Some(t) = s.0[t_axis].as_known().filter(|&t| t > 0) else {
        return Err(g.fail(
            loc,
            op,
            format!(
                "{op}: the number of time steps must be a known non-zero size, got {s} ({layout})"
            ),
        ));
    };
    if s.0[2] != Dim::from(cfg.input_size) {
        return Err(g.fail(
            loc,
            op,
            format!(
                "{op}: input {s} has {} features per step, the layer expects {}",
                s.0[2], cfg.input_size
            ),
        ));
    }
    let t_axis = t_axis as i64;
    let steps = (0..t as i64)
        .map(|i| x.slice(t_axis, i, i + 1, 1).squeeze(t_axis))
        .collect();
    Ok(Steps {
        steps,
        batch: s.0[n_axis].clone(),
        time_axis: t_axis,
    })
}

/// Layer `l` of an initial state `[L, N, H]`, or zeros `[N, H]` when absent; checks the shape.
#[track_caller]
fn initial(
    loc: &Location<'_>,
    op: &'static str,
    what: &str,
    state: Option<&Tensor>,
    cfg: &RnnConfig,
    batch: &Dim,
    x: &Tensor,
) -> Result<Vec<Tensor>, Tensor> {
    let g = x.graph();
    let want = Shape(vec![
        Dim::from(cfg.num_layers),
        batch.clone(),
        Dim::from(cfg.hidden_size),
    ]);
    match state {
        None => {
            let z = g.zeros(Shape(want.0[1..].to_vec()), x.dtype());
            Ok(vec![z; cfg.num_layers])
        }
        Some(s) if s.is_poisoned() => Err(s.clone()),
        Some(s) if s.shape() != want => Err(g.fail(
            loc,
            op,
            format!(
                "{op}: initial {what} must be {want} ([layers, N, H]), got {}",
                s.shape()
            ),
        )),
        Some(s) => Ok((0..cfg.num_layers as i64)
            .map(|l| s.slice(0, l, l + 1, 1).squeeze(0))
            .collect()),
    }
}

/// Stacks per-step `[N, H]` tensors along `axis` of the output.
#[track_caller]
fn stack(ts: &[Tensor], axis: i64) -> Tensor {
    let parts: Vec<Tensor> = ts.iter().map(|t| t.unsqueeze(axis)).collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::cat(&refs, axis)
}

/// `torch.nn.LSTM` (unidirectional, no inter-layer dropout): `num_layers` stacked
/// [`lstm_cell`](crate::functional::lstm_cell)s (gate order i, f, g, o) unrolled over the input's known number of steps.
///
/// Parameters per layer `k`: `{prefix}.weight_ih_l{k}` `[4H, in]`, `weight_hh_l{k}` `[4H, H]`,
/// `bias_ih_l{k}` and `bias_hh_l{k}` `[4H]`, all `U(-1/√H, 1/√H)`.
#[derive(Clone, Debug)]
pub struct Lstm {
    cfg: RnnConfig,
    layers: Vec<LayerWeights>,
    params: Vec<(String, Tensor)>,
}

impl Lstm {
    /// Declares the layer's parameters.
    #[track_caller]
    pub fn new(g: &Graph, prefix: &str, cfg: RnnConfig, seed: u64) -> Lstm {
        let (layers, params) = declare_layers(g, prefix, &cfg, 4, seed);
        Lstm {
            cfg,
            layers,
            params,
        }
    }

    /// The configuration.
    pub fn config(&self) -> RnnConfig {
        self.cfg
    }

    /// Runs the sequence `x` (`[N, T, I]` batch-first, else `[T, N, I]`) from the initial
    /// state `(h0, c0)`, each `[num_layers, N, H]` (zeros when `None`). Returns the last
    /// layer's outputs for every step (`[N, T, H]` or `[T, N, H]`) and the final `(h_n, c_n)`,
    /// each `[num_layers, N, H]`, as PyTorch.
    #[track_caller]
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        let loc = Location::caller();
        let poisoned = |t: Tensor| (t.clone(), (t.clone(), t));
        let steps = match split_steps(loc, "lstm", x, &self.cfg) {
            Ok(s) => s,
            Err(p) => return poisoned(p),
        };
        let h0 = initial(
            loc,
            "lstm",
            "h",
            state.map(|s| s.0),
            &self.cfg,
            &steps.batch,
            x,
        );
        let c0 = initial(
            loc,
            "lstm",
            "c",
            state.map(|s| s.1),
            &self.cfg,
            &steps.batch,
            x,
        );
        let (h0, c0) = match (h0, c0) {
            (Ok(h), Ok(c)) => (h, c),
            (Err(p), _) | (_, Err(p)) => return poisoned(p),
        };
        let mut seq = steps.steps;
        let (mut hn, mut cn) = (Vec::new(), Vec::new());
        for (l, w) in self.layers.iter().enumerate() {
            let (mut h, mut c) = (h0[l].clone(), c0[l].clone());
            let mut outs = Vec::with_capacity(seq.len());
            let hs = self.cfg.hidden_size as i64;
            for inp in &seq {
                let gi = input_gates(inp, &w.w_ih, w.b_ih.as_ref());
                (h, c) = lstm_step(&gi, &h, &c, &w.w_hh, w.b_hh.as_ref(), hs);
                outs.push(h.clone());
            }
            seq = outs;
            hn.push(h);
            cn.push(c);
        }
        (stack(&seq, steps.time_axis), (stack(&hn, 0), stack(&cn, 0)))
    }
}

impl Module for Lstm {
    /// The outputs of every step from a zero state (see [`Lstm::forward_with_state`]).
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_state(x, None).0
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }
}

/// One step of a GRU cell, exactly `torch.nn.GRUCell` (gate order r, z, n):
///
/// ```text
/// gi = x @ w_ih^T + b_ih,  gh = h @ w_hh^T + b_hh                      [N, 3H]
/// r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z)
/// n = tanh(gi_n + r * gh_n)
/// h' = (1 - z) * n + z * h
/// ```
///
/// `x` is `[N, I]`, `h` `[N, H]`, `w_ih` `[3H, I]`, `w_hh` `[3H, H]`, biases `[3H]`. `H` must
/// be known; a mismatch records a diagnostic at the caller.
#[track_caller]
pub fn gru_cell(
    x: &Tensor,
    h: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b_ih: Option<&Tensor>,
    b_hh: Option<&Tensor>,
) -> Tensor {
    let loc = Location::caller();
    let g = x.graph();
    if [x, h, w_ih, w_hh]
        .into_iter()
        .chain(b_ih)
        .chain(b_hh)
        .any(Tensor::is_poisoned)
    {
        return Tensor::poisoned(g);
    }
    let hs = w_hh.dim(-1).and_then(|d| d.as_known());
    let gs = w_hh.dim(0).and_then(|d| d.as_known());
    let hs = match (hs, gs) {
        (Some(hs), Some(gs)) if w_hh.rank() == 2 && gs == 3 * hs => hs as i64,
        _ => {
            return g.fail(
                loc,
                "gru_cell",
                format!(
                    "gru_cell: w_hh must be a known [3H, H] matrix (gate order r, z, n), got {}",
                    w_hh.shape()
                ),
            );
        }
    };
    gru_step(&input_gates(x, w_ih, b_ih), h, w_hh, b_hh, hs)
}

/// One GRU step from its input gates `gi = x @ w_ih^T + b_ih` (`[N, 3H]`). Shapes are
/// checked by the caller.
fn gru_step(gi: &Tensor, h: &Tensor, w_hh: &Tensor, b_hh: Option<&Tensor>, hs: i64) -> Tensor {
    let gh = input_gates(h, w_hh, b_hh);
    let chunk = |t: &Tensor, k: i64| t.slice(-1, k * hs, (k + 1) * hs, 1);
    let r = (chunk(gi, 0) + chunk(&gh, 0)).sigmoid();
    let z = (chunk(gi, 1) + chunk(&gh, 1)).sigmoid();
    let n = (chunk(gi, 2) + r * chunk(&gh, 2)).tanh();
    (z.neg() + 1.0) * n + z * h
}

/// `torch.nn.GRU` (unidirectional, no inter-layer dropout): `num_layers` stacked
/// [`gru_cell`]s (gate order r, z, n) unrolled over the input's known number of steps.
///
/// Parameters per layer `k`: `{prefix}.weight_ih_l{k}` `[3H, in]`, `weight_hh_l{k}` `[3H, H]`,
/// `bias_ih_l{k}` and `bias_hh_l{k}` `[3H]`, all `U(-1/√H, 1/√H)`.
#[derive(Clone, Debug)]
pub struct Gru {
    cfg: RnnConfig,
    layers: Vec<LayerWeights>,
    params: Vec<(String, Tensor)>,
}

impl Gru {
    /// Declares the layer's parameters.
    #[track_caller]
    pub fn new(g: &Graph, prefix: &str, cfg: RnnConfig, seed: u64) -> Gru {
        let (layers, params) = declare_layers(g, prefix, &cfg, 3, seed);
        Gru {
            cfg,
            layers,
            params,
        }
    }

    /// The configuration.
    pub fn config(&self) -> RnnConfig {
        self.cfg
    }

    /// Runs the sequence `x` (`[N, T, I]` batch-first, else `[T, N, I]`) from the initial
    /// state `h0` `[num_layers, N, H]` (zeros when `None`). Returns the last layer's outputs
    /// for every step and the final `h_n` `[num_layers, N, H]`, as PyTorch.
    #[track_caller]
    pub fn forward_with_state(&self, x: &Tensor, h0: Option<&Tensor>) -> (Tensor, Tensor) {
        let loc = Location::caller();
        let steps = match split_steps(loc, "gru", x, &self.cfg) {
            Ok(s) => s,
            Err(p) => return (p.clone(), p),
        };
        let h0 = match initial(loc, "gru", "h", h0, &self.cfg, &steps.batch, x) {
            Ok(h) => h,
            Err(p) => return (p.clone(), p),
        };
        let mut seq = steps.steps;
        let mut hn = Vec::new();
        for (l, w) in self.layers.iter().enumerate() {
            let mut h = h0[l].clone();
            let mut outs = Vec::with_capacity(seq.len());
            let hs = self.cfg.hidden_size as i64;
            for inp in &seq {
                let gi = input_gates(inp, &w.w_ih, w.b_ih.as_ref());
                h = gru_step(&gi, &h, &w.w_hh, w.b_hh.as_ref(), hs);
                outs.push(h.clone());
            }
            seq = outs;
            hn.push(h);
        }
        (stack(&seq, steps.time_axis), stack(&hn, 0))
    }
}

impl Module for Gru {
    /// The outputs of every step from a zero state (see [`Gru::forward_with_state`]).
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_state(x, None).0
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }
}
