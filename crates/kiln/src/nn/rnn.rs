//! Recurrent layers: multi-layer, optionally bidirectional `Lstm` and `Gru` with PyTorch's
//! parameter names, gate orders and state layouts, run as one `scan` per layer and direction
//! over a time axis that may be symbolic (or unrolled, [`TimeLoop::Unroll`]), with optional
//! per-sequence lengths (PyTorch's packed sequences).

use super::{Module, declare, init, join};
use crate::builder::Graph;
use crate::control::ScanOptions;
use crate::functional::{input_gates, lstm_step};
use crate::tensor::Tensor;
use kiln_ir::{DType, Dim, Shape};
use std::panic::Location;

/// How a recurrent layer runs over its time axis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeLoop {
    /// One [`Graph::scan`] per layer and direction (the default): the number of steps may be
    /// a symbol (`T`), so one compiled module serves every sequence length, and the graph,
    /// compile time and code size do not grow with the number of steps. Runs on every
    /// backend.
    #[default]
    Scan,
    /// One copy of the cell per step, built when the graph is built: needs a known number of
    /// steps, and compile time grows with it. Kept as a reference and for measuring the
    /// scan against it.
    Unroll,
}

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
    /// A second, reverse-time direction per layer whose outputs are concatenated to the
    /// forward ones (default false, as PyTorch).
    pub bidirectional: bool,
    /// How the time axis runs (default [`TimeLoop::Scan`]).
    pub time_loop: TimeLoop,
}

impl RnnConfig {
    /// One unidirectional layer with biases, time-major, run as a scan.
    pub fn new(input_size: usize, hidden_size: usize) -> RnnConfig {
        RnnConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            bidirectional: false,
            time_loop: TimeLoop::Scan,
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

    /// Bidirectional (PyTorch's `bidirectional=True`): outputs `[.., 2H]`, states
    /// `[2·layers, N, H]`, parameters `*_l{k}_reverse` for the reverse direction.
    #[must_use]
    pub fn bidirectional(mut self, bidirectional: bool) -> RnnConfig {
        self.bidirectional = bidirectional;
        self
    }

    /// How the time axis runs (a scan, or unrolled for backends without control flow).
    #[must_use]
    pub fn time_loop(mut self, time_loop: TimeLoop) -> RnnConfig {
        self.time_loop = time_loop;
        self
    }

    /// Directions per layer: 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }
}

/// The weights of one layer and direction.
#[derive(Clone, Debug)]
struct LayerWeights {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Option<Tensor>,
    b_hh: Option<Tensor>,
}

/// Declares `{prefix}.weight_ih_l{k}{dir}` `[G·H, in]`, `weight_hh_l{k}{dir}` `[G·H, H]`,
/// `bias_ih_l{k}{dir}`, `bias_hh_l{k}{dir}` `[G·H]` for every layer and direction (`dir` is
/// empty for the forward direction and `_reverse` for the reverse one), in PyTorch's
/// `state_dict` order, all `U(-1/√H, 1/√H)`. The result is indexed `layer · directions + d`.
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
        let inp = if l == 0 {
            cfg.input_size
        } else {
            h * cfg.directions()
        };
        for d in 0..cfg.directions() {
            let dir = if d == 1 { "_reverse" } else { "" };
            let mut shapes = vec![
                (format!("weight_ih_l{l}{dir}"), vec![gates * h, inp]),
                (format!("weight_hh_l{l}{dir}"), vec![gates * h, h]),
            ];
            if cfg.bias {
                shapes.push((format!("bias_ih_l{l}{dir}"), vec![gates * h]));
                shapes.push((format!("bias_hh_l{l}{dir}"), vec![gates * h]));
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
    }
    (layers, params)
}

/// An input sequence, checked and made time-major.
struct Sequence {
    /// `[T, N, F]`.
    xs: Tensor,
    batch: Dim,
    steps: Dim,
    /// `bool[T, N, 1]`: step `t` of sequence `n` is real (`t < lengths[n]`); `None` when
    /// every step is.
    mask: Option<Tensor>,
}

#[track_caller]
fn sequence(
    loc: &Location<'_>,
    op: &'static str,
    x: &Tensor,
    lengths: Option<&Tensor>,
    cfg: &RnnConfig,
) -> Result<Sequence, Tensor> {
    let g = x.graph();
    if x.is_poisoned() {
        return Err(x.clone());
    }
    if let Some(l) = lengths.filter(|l| l.is_poisoned()) {
        return Err(l.clone());
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
    let steps = s.0[t_axis].clone();
    if cfg.time_loop == TimeLoop::Unroll && steps.as_known().is_none_or(|t| t == 0) {
        return Err(g.fail(
            loc,
            op,
            format!(
                "{op}: an unrolled layer needs a known non-zero number of time steps, got {s} \
                 ({layout}); use TimeLoop::Scan for a symbolic one"
            ),
        ));
    }
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
    let batch = s.0[n_axis].clone();
    let xs = if cfg.batch_first {
        x.permute([1, 0, 2])
    } else {
        x.clone()
    };
    let mask = match lengths {
        None => None,
        Some(len) => {
            let ls = len.shape();
            if !len.dtype().is_int() || ls.rank() != 1 || ls.0[0] != batch {
                return Err(g.fail(
                    loc,
                    op,
                    format!(
                        "{op}: lengths must be integers [N] = [{batch}] (one per sequence), got {}{ls}",
                        len.dtype()
                    ),
                ));
            }
            let t = g.arange(steps.clone(), DType::I32).reshape(vec![
                steps.clone(),
                Dim::from(1usize),
                Dim::from(1usize),
            ]);
            let l = len.cast(DType::I32).reshape(vec![
                Dim::from(1usize),
                batch.clone(),
                Dim::from(1usize),
            ]);
            Some(t.lt(&l))
        }
    };
    Ok(Sequence {
        xs,
        batch,
        steps,
        mask,
    })
}

/// The initial state `[layers · directions, N, H]` split per layer and direction, or zeros
/// `[N, H]` when absent; checks the shape.
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
    let n = cfg.num_layers * cfg.directions();
    let want = Shape(vec![
        Dim::from(n),
        batch.clone(),
        Dim::from(cfg.hidden_size),
    ]);
    let layout = if cfg.bidirectional {
        "[2·layers, N, H]"
    } else {
        "[layers, N, H]"
    };
    match state {
        None => {
            let z = g.zeros(Shape(want.0[1..].to_vec()), x.dtype());
            Ok(vec![z; n])
        }
        Some(s) if s.is_poisoned() => Err(s.clone()),
        Some(s) if s.shape() != want => Err(g.fail(
            loc,
            op,
            format!(
                "{op}: initial {what} must be {want} ({layout}), got {}",
                s.shape()
            ),
        )),
        Some(s) => Ok((0..n as i64)
            .map(|l| s.slice(0, l, l + 1, 1).squeeze(0))
            .collect()),
    }
}

/// Stacks `[N, H]` tensors along a new `axis`.
#[track_caller]
fn stack(ts: &[Tensor], axis: i64) -> Tensor {
    let parts: Vec<Tensor> = ts.iter().map(|t| t.unsqueeze(axis)).collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::cat(&refs, axis)
}

/// The recurrent cell of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// Carries `(h, c)`, gates i, f, g, o.
    Lstm,
    /// Carries `(h)`, gates r, z, n.
    Gru,
}

/// One step: the next carries and the step's output from the input row `x` `[N, in]`, the
/// carries and, with lengths, the step's mask `m` `bool[N, 1]` (masked rows keep their
/// carries and output zeros).
fn cell_step(
    cell: Cell,
    w: &LayerWeights,
    hs: i64,
    x: &Tensor,
    carries: &[Tensor],
    m: Option<&Tensor>,
) -> (Vec<Tensor>, Tensor) {
    let gi = input_gates(x, &w.w_ih, w.b_ih.as_ref());
    let next = match cell {
        Cell::Lstm => {
            let (h, c) = lstm_step(&gi, &carries[0], &carries[1], &w.w_hh, w.b_hh.as_ref(), hs);
            vec![h, c]
        }
        Cell::Gru => vec![gru_step(&gi, &carries[0], &w.w_hh, w.b_hh.as_ref(), hs)],
    };
    match m {
        None => {
            let y = next[0].clone();
            (next, y)
        }
        Some(m) => {
            let y = m.where_(&next[0], 0.0);
            let kept = next
                .iter()
                .zip(carries)
                .map(|(n, c)| m.where_(n, c))
                .collect();
            (kept, y)
        }
    }
}

/// Runs one direction of one layer over the time-major `xs` `[T, N, in]` from `init`:
/// the outputs `[T, N, H]` (row `t` belongs to step `t` in both directions) and the final
/// carries.
#[track_caller]
#[allow(clippy::too_many_arguments)]
fn direction(
    cell: Cell,
    cfg: &RnnConfig,
    w: &LayerWeights,
    xs: &Tensor,
    mask: Option<&Tensor>,
    steps: &Dim,
    init: &[Tensor],
    reverse: bool,
) -> (Tensor, Vec<Tensor>) {
    let hs = cfg.hidden_size as i64;
    let g = xs.graph();
    match cfg.time_loop {
        TimeLoop::Scan => {
            let init: Vec<&Tensor> = init.iter().collect();
            let mut seqs = vec![xs];
            seqs.extend(mask);
            let options = ScanOptions {
                reverse,
                length: None,
            };
            let (carries, mut ys) = g.scan_with(&init, &seqs, &options, |_, c, x| {
                let (next, y) = cell_step(cell, w, hs, &x[0], c, x.get(1));
                (next, vec![y])
            });
            let y = ys.pop().unwrap_or_else(|| Tensor::poisoned(g));
            (y, carries)
        }
        TimeLoop::Unroll => {
            let t = steps.as_known().unwrap_or(0) as i64;
            let row = |a: &Tensor, i: i64| a.slice(0, i, i + 1, 1).squeeze(0);
            let mut carries = init.to_vec();
            let mut ys = vec![None; t as usize];
            let order: Box<dyn Iterator<Item = i64>> = if reverse {
                Box::new((0..t).rev())
            } else {
                Box::new(0..t)
            };
            for i in order {
                let m = mask.map(|m| row(m, i));
                let (next, y) = cell_step(cell, w, hs, &row(xs, i), &carries, m.as_ref());
                carries = next;
                ys[i as usize] = Some(y);
            }
            let ys: Vec<Tensor> = ys.into_iter().flatten().collect();
            (stack(&ys, 0), carries)
        }
    }
}

/// Runs every layer and direction: the last layer's outputs (in the input's layout) and the
/// final carries, each stacked `[layers · directions, N, H]`.
#[track_caller]
#[allow(clippy::too_many_arguments)]
fn run_layers(
    loc: &Location<'_>,
    op: &'static str,
    cell: Cell,
    cfg: &RnnConfig,
    layers: &[LayerWeights],
    x: &Tensor,
    lengths: Option<&Tensor>,
    state: &[Option<&Tensor>],
) -> Result<(Tensor, Vec<Tensor>), Tensor> {
    let seq = sequence(loc, op, x, lengths, cfg)?;
    let names = ["h", "c"];
    let mut inits = Vec::with_capacity(state.len());
    for (s, what) in state.iter().zip(names) {
        inits.push(initial(loc, op, what, *s, cfg, &seq.batch, x)?);
    }
    let dirs = cfg.directions();
    let mut inp = seq.xs.clone();
    let mut finals: Vec<Vec<Tensor>> = vec![Vec::new(); state.len()];
    for l in 0..cfg.num_layers {
        let mut outs = Vec::with_capacity(dirs);
        for d in 0..dirs {
            let k = l * dirs + d;
            let init: Vec<Tensor> = inits.iter().map(|i| i[k].clone()).collect();
            let (ys, fin) = direction(
                cell,
                cfg,
                &layers[k],
                &inp,
                seq.mask.as_ref(),
                &seq.steps,
                &init,
                d == 1,
            );
            outs.push(ys);
            for (f, v) in finals.iter_mut().zip(fin) {
                f.push(v);
            }
        }
        inp = if dirs == 2 {
            Tensor::cat(&[&outs[0], &outs[1]], -1)
        } else {
            outs.swap_remove(0)
        };
    }
    let out = if cfg.batch_first {
        inp.permute([1, 0, 2])
    } else {
        inp
    };
    Ok((out, finals.iter().map(|f| stack(f, 0)).collect()))
}

/// `torch.nn.LSTM` (no inter-layer dropout, no projections): `num_layers` stacked
/// [`lstm_cell`](crate::functional::lstm_cell)s (gate order i, f, g, o), optionally
/// bidirectional, each layer and direction one scan over the time axis (see [`TimeLoop`]).
///
/// Parameters per layer `k` (and, when bidirectional, again with the suffix `_reverse`):
/// `{prefix}.weight_ih_l{k}` `[4H, in]`, `weight_hh_l{k}` `[4H, H]`, `bias_ih_l{k}` and
/// `bias_hh_l{k}` `[4H]`, all `U(-1/√H, 1/√H)`; `in` is the input size for layer 0 and
/// `H · directions` above it.
///
/// ```
/// use kiln::nn::{Lstm, RnnConfig};
/// use kiln::{Array, DType, Graph};
/// let g = Graph::new();
/// // One graph for every batch size and sequence length.
/// let x = g.input("x", DType::F32, (g.sym("N"), g.sym("T"), 3));
/// let lengths = g.input("lengths", DType::I64, vec![g.sym("N")]);
/// let lstm = Lstm::new(&g, "lstm", RnnConfig::new(3, 4).batch_first(true).bidirectional(true), 0);
/// let (out, (h_n, _c_n)) = lstm.forward_packed(&x, &lengths, None);
/// assert_eq!(out.shape().to_string(), "[N, T, 8]");
/// assert_eq!(h_n.shape().to_string(), "[2, N, 4]");
/// let xv = Array::from_f32(&[2, 5, 3], (0..30).map(|i| (i as f32 * 0.1).sin()).collect())?;
/// let lv = Array::from_i64(&[2], vec![5, 2])?;
/// let r = kiln::eval(&[&out], &[("x", &xv), ("lengths", &lv)])?;
/// // Steps past a sequence's length output zeros.
/// assert!(r[0].as_f32()?[(5 + 2) * 8..].iter().all(|&v| v == 0.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

    /// Runs the sequence `x` (`[N, T, I]` batch-first, else `[T, N, I]`; `T` may be a
    /// symbol) from the initial state `(h0, c0)`, each `[layers · directions, N, H]` (zeros
    /// when `None`). Returns the last layer's outputs for every step (`[N, T, D·H]` or
    /// `[T, N, D·H]`, the reverse direction's in the upper half) and the final `(h_n, c_n)`,
    /// each `[layers · directions, N, H]`, as PyTorch.
    #[track_caller]
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        self.run(Location::caller(), x, None, state)
    }

    /// [`Lstm::forward_with_state`] over padded sequences of per-sequence `lengths`
    /// (integers `[N]`, e.g. [`padded_batch`](crate::data::padded_batch)'s), PyTorch's
    /// `pack_padded_sequence` → LSTM → `pad_packed_sequence`: the steps `t >= lengths[n]` of
    /// sequence `n` leave its state unchanged and output zeros, so `(h_n, c_n)` is the state
    /// at each sequence's own last step, and the reverse direction starts at that step.
    /// Lengths must lie in `1..=T`, as PyTorch requires (a length of 0 gives the
    /// initial state and zero outputs).
    #[track_caller]
    pub fn forward_packed(
        &self,
        x: &Tensor,
        lengths: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        self.run(Location::caller(), x, Some(lengths), state)
    }

    #[track_caller]
    fn run(
        &self,
        loc: &Location<'_>,
        x: &Tensor,
        lengths: Option<&Tensor>,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        let state = [state.map(|s| s.0), state.map(|s| s.1)];
        match run_layers(
            loc,
            "lstm",
            Cell::Lstm,
            &self.cfg,
            &self.layers,
            x,
            lengths,
            &state,
        ) {
            Ok((out, mut fin)) => {
                let c = fin.pop().unwrap_or_else(|| Tensor::poisoned(x.graph()));
                let h = fin.pop().unwrap_or_else(|| Tensor::poisoned(x.graph()));
                (out, (h, c))
            }
            Err(p) => (p.clone(), (p.clone(), p)),
        }
    }
}

impl Module for Lstm {
    /// The outputs of every step from a zero state (see [`Lstm::forward_with_state`]).
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.run(Location::caller(), x, None, None).0
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

/// `torch.nn.GRU` (no inter-layer dropout): `num_layers` stacked [`gru_cell`]s (gate order
/// r, z, n), optionally bidirectional, each layer and direction one scan over the time axis
/// (see [`TimeLoop`]).
///
/// Parameters per layer `k` (and, when bidirectional, again with the suffix `_reverse`):
/// `{prefix}.weight_ih_l{k}` `[3H, in]`, `weight_hh_l{k}` `[3H, H]`, `bias_ih_l{k}` and
/// `bias_hh_l{k}` `[3H]`, all `U(-1/√H, 1/√H)`.
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

    /// Runs the sequence `x` (`[N, T, I]` batch-first, else `[T, N, I]`; `T` may be a
    /// symbol) from the initial state `h0` `[layers · directions, N, H]` (zeros when
    /// `None`). Returns the last layer's outputs for every step and the final `h_n`
    /// `[layers · directions, N, H]`, as PyTorch.
    #[track_caller]
    pub fn forward_with_state(&self, x: &Tensor, h0: Option<&Tensor>) -> (Tensor, Tensor) {
        self.run(Location::caller(), x, None, h0)
    }

    /// [`Gru::forward_with_state`] over padded sequences of per-sequence `lengths`, with
    /// the semantics of [`Lstm::forward_packed`].
    #[track_caller]
    pub fn forward_packed(
        &self,
        x: &Tensor,
        lengths: &Tensor,
        h0: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        self.run(Location::caller(), x, Some(lengths), h0)
    }

    #[track_caller]
    fn run(
        &self,
        loc: &Location<'_>,
        x: &Tensor,
        lengths: Option<&Tensor>,
        h0: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        match run_layers(
            loc,
            "gru",
            Cell::Gru,
            &self.cfg,
            &self.layers,
            x,
            lengths,
            &[h0],
        ) {
            Ok((out, mut fin)) => {
                let h = fin.pop().unwrap_or_else(|| Tensor::poisoned(x.graph()));
                (out, h)
            }
            Err(p) => (p.clone(), p),
        }
    }
}

impl Module for Gru {
    /// The outputs of every step from a zero state (see [`Gru::forward_with_state`]).
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.run(Location::caller(), x, None, None).0
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }
}
