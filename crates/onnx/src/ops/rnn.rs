//! Recurrent ops: LSTM, GRU and RNN, unrolled over a sequence length known at import time
//! (kiln has no control-flow ops yet). Every direction, layout, activation, clip,
//! `sequence_lens`, initial state, peephole and output of the ONNX definitions is mapped to
//! matmuls, slices and elementwise ops; the input projection of all steps is one matmul.

use super::{NodeCx, OpResult, bail, need_float};
use crate::limits::MAX_UNROLLED_STEPS;
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{Dim, Shape};

/// The recurrent cell of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    /// Gates stacked in W and R (`[num_directions, gates * hidden, ...]`).
    fn gates(self) -> u64 {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }

    /// The activations of one direction when the node names none.
    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// One activation function of the `activations` attribute, with its alpha and beta.
#[derive(Clone, Copy, Debug)]
enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Activation {
    /// Parses a name (case-insensitive, as ONNX Runtime), taking its alpha and beta from the
    /// front of the lists: only the functions that use a parameter consume an entry.
    fn parse(
        name: &str,
        alphas: &mut impl Iterator<Item = f64>,
        betas: &mut impl Iterator<Item = f64>,
    ) -> OpResult<Activation> {
        let mut alpha = |default: f64| alphas.next().unwrap_or(default);
        Ok(match name.to_ascii_lowercase().as_str() {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "affine" => {
                let a = alpha(1.0);
                Activation::Affine(a, betas.next().unwrap_or(0.0))
            }
            "leakyrelu" => Activation::LeakyRelu(alpha(0.01)),
            "thresholdedrelu" => Activation::ThresholdedRelu(alpha(1.0)),
            "scaledtanh" => {
                let a = alpha(1.0);
                Activation::ScaledTanh(a, betas.next().unwrap_or(1.0))
            }
            "hardsigmoid" => {
                let a = alpha(0.2);
                Activation::HardSigmoid(a, betas.next().unwrap_or(0.5))
            }
            "elu" => Activation::Elu(alpha(1.0)),
            "softsign" => Activation::Softsign,
            "softplus" => Activation::Softplus,
            _ => bail!(
                "activation {:?} is not one of Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus",
                kiln_fs::one_line(name)
            ),
        })
    }

    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Affine(a, b) => x.mul(a).add(b),
            Activation::LeakyRelu(a) => x.leaky_relu(a),
            Activation::ThresholdedRelu(a) => x.gt(a).where_(x, 0.0),
            Activation::ScaledTanh(a, b) => x.mul(b).tanh().mul(a),
            Activation::HardSigmoid(a, b) => x.mul(a).add(b).clamp(0.0, 1.0),
            Activation::Elu(a) => x.gt(0.0).where_(x, x.exp().sub(1.0).mul(a)),
            Activation::Softsign => x.div(x.abs().add(1.0)),
            Activation::Softplus => x.softplus(),
        }
    }
}

/// What every recurrent node shares, read and checked from the node: the input as
/// `[seq, batch, input]`, the weights, and the per-direction settings.
struct Recurrence {
    cell: Cell,
    /// `[seq, batch, input]` (layout 1 transposed).
    x: Tensor,
    steps: u64,
    batch: Dim,
    hidden: u64,
    /// Per direction, whether it runs backwards.
    directions: Vec<bool>,
    /// `[dirs, gates * hidden, input]`.
    w: Tensor,
    /// `[dirs, gates * hidden, hidden]`.
    r: Tensor,
    /// `[dirs, 2 * gates * hidden]`.
    b: Option<Tensor>,
    /// `[batch, 1]` per-batch lengths (none when every sequence is full).
    lens: Option<Tensor>,
    /// Per direction, the cell's activations in the ONNX order (f, g, h).
    activations: Vec<Vec<Activation>>,
    clip: Option<f64>,
    layout: i64,
}

fn strings_attr(cx: &NodeCx<'_>, name: &str) -> Option<Vec<String>> {
    cx.node
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
}

/// A known dim, or an error naming what it is.
fn known(d: Option<Dim>, what: &str) -> OpResult<u64> {
    match d.and_then(|d| d.as_known()) {
        Some(k) => Ok(k),
        None => bail!("{what} must be a known size"),
    }
}

/// The tensor's shape must be `want` (a known dim checks equality, a symbolic dim of the
/// node's data matches only itself).
fn check_shape(t: &Tensor, want: &[Dim], what: &str) -> OpResult<()> {
    if t.shape().dims() != want {
        bail!(
            "{what} has shape {}, expected {}",
            t.shape(),
            Shape::new(want.to_vec())
        );
    }
    Ok(())
}

impl Recurrence {
    fn read(cx: &mut NodeCx<'_>, cell: Cell) -> OpResult<Recurrence> {
        let x = cx.tensor(0)?;
        need_float(&x, "a recurrent op")?;
        let (w, r) = (cx.tensor(1)?, cx.tensor(2)?);
        for (t, what) in [(&w, "W"), (&r, "R")] {
            if t.dtype() != x.dtype() {
                bail!("{what} is {}, but X is {}", t.dtype(), x.dtype());
            }
            if t.rank() != 3 {
                bail!("{what} must have rank 3, got {}", t.shape());
            }
        }
        if x.rank() != 3 {
            bail!("X must have rank 3, got {}", x.shape());
        }
        let layout = cx.attr_i("layout", 0);
        let x = match layout {
            0 => x,
            1 => x.permute([1i64, 0, 2]),
            other => bail!("layout must be 0 or 1, got {other}"),
        };
        let directions = match cx.attr_s("direction", "forward").as_str() {
            "forward" => vec![false],
            "reverse" => vec![true],
            "bidirectional" => vec![false, true],
            other => bail!(
                "direction {:?} is not forward, reverse or bidirectional",
                kiln_fs::one_line(other)
            ),
        };
        let dirs = directions.len() as u64;
        let Some(steps) = x.dim(0).and_then(|d| d.as_known()) else {
            bail!(
                "the sequence length {} is symbolic: kiln unrolls recurrent ops over a known sequence length and has no control-flow ops yet (fix the axis with ImportOptions::dims)",
                x.dim(0).map_or_else(String::new, |d| d.to_string())
            );
        };
        if steps == 0 {
            bail!("the sequence length is 0");
        }
        if steps.saturating_mul(dirs) > MAX_UNROLLED_STEPS {
            bail!(
                "{steps} steps in {dirs} direction(s) exceed the {MAX_UNROLLED_STEPS} steps a recurrent op may unroll to"
            );
        }
        let batch = x.dim(1).unwrap_or(Dim::known(1));
        let input = x.dim(2).unwrap_or(Dim::known(1));
        let hidden = known(r.dim(2), "R's hidden size (axis 2)")?;
        if hidden == 0 {
            bail!("the hidden size is 0");
        }
        if cx.has_attr("hidden_size") && cx.attr_i("hidden_size", 0) != hidden as i64 {
            bail!(
                "hidden_size {} does not match R {}",
                cx.attr_i("hidden_size", 0),
                r.shape()
            );
        }
        let gh = Dim::known(cell.gates() * hidden);
        let nd = Dim::known(dirs);
        check_shape(&w, &[nd.clone(), gh.clone(), input], "W")?;
        check_shape(&r, &[nd.clone(), gh, Dim::known(hidden)], "R")?;
        let b = match cx.opt_input(3) {
            Some(_) => {
                let b = cx.tensor(3)?;
                check_shape(&b, &[nd, Dim::known(2 * cell.gates() * hidden)], "B")?;
                if b.dtype() != x.dtype() {
                    bail!("B is {}, but X is {}", b.dtype(), x.dtype());
                }
                Some(b)
            }
            None => None,
        };
        let lens = sequence_lens(cx, steps, &batch)?;
        let per = cell.default_activations().len();
        let names = strings_attr(cx, "activations").unwrap_or_default();
        let names: Vec<String> = match names.len() {
            0 => (0..dirs)
                .flat_map(|_| cell.default_activations().iter().map(|s| s.to_string()))
                .collect(),
            n if n == per * dirs as usize => names,
            // One set for both directions, as ONNX Runtime accepts.
            n if n == per => names.iter().chain(&names).cloned().collect(),
            n => bail!(
                "activations has {n} entries; {} direction(s) of this cell need {}",
                dirs,
                per * dirs as usize
            ),
        };
        let alpha: Vec<f64> = cx
            .attr_floats("activation_alpha")
            .unwrap_or_default()
            .into_iter()
            .map(f64::from)
            .collect();
        let beta: Vec<f64> = cx
            .attr_floats("activation_beta")
            .unwrap_or_default()
            .into_iter()
            .map(f64::from)
            .collect();
        let (mut alphas, mut betas) = (alpha.into_iter(), beta.into_iter());
        let parsed = names
            .iter()
            .map(|n| Activation::parse(n, &mut alphas, &mut betas))
            .collect::<OpResult<Vec<_>>>()?;
        let activations = parsed.chunks(per).map(<[_]>::to_vec).collect();
        let clip = if cx.has_attr("clip") {
            let c = cx.attr_f("clip", 0.0);
            if c.is_nan() || c <= 0.0 {
                bail!("clip must be positive, got {c}");
            }
            Some(c)
        } else {
            None
        };
        Ok(Recurrence {
            cell,
            x,
            steps,
            batch,
            hidden,
            directions,
            w,
            r,
            b,
            lens,
            activations,
            clip,
            layout,
        })
    }

    /// Initial state input `i` (`initial_h`, `initial_c`) as `[dirs, batch, hidden]`, or
    /// zeros.
    fn initial(&self, cx: &mut NodeCx<'_>, i: usize, what: &str) -> OpResult<Tensor> {
        let dirs = Dim::known(self.directions.len() as u64);
        let h = Dim::known(self.hidden);
        let Some(_) = cx.opt_input(i) else {
            return Ok(cx
                .g
                .zeros(Shape::new([dirs, self.batch.clone(), h]), self.x.dtype()));
        };
        let t = cx.tensor(i)?;
        if t.dtype() != self.x.dtype() {
            bail!("{what} is {}, but X is {}", t.dtype(), self.x.dtype());
        }
        let t = if self.layout == 1 {
            check_shape(&t, &[self.batch.clone(), dirs.clone(), h.clone()], what)?;
            t.permute([1i64, 0, 2])
        } else {
            t
        };
        check_shape(&t, &[dirs, self.batch.clone(), h], what)?;
        Ok(t)
    }

    /// Direction `d`'s slice of a `[dirs, ...]` tensor.
    fn dir(t: &Tensor, d: usize) -> Tensor {
        t.slice(0, d as i64, d as i64 + 1, 1).squeeze(0)
    }

    /// Gate `k` of a `[..., gates * hidden]` tensor.
    fn gate(&self, t: &Tensor, k: u64) -> Tensor {
        let h = self.hidden as i64;
        t.slice(-1, k as i64 * h, (k as i64 + 1) * h, 1)
    }

    fn clipped(&self, t: Tensor) -> Tensor {
        match self.clip {
            Some(c) => t.clamp(-c, c),
            None => t,
        }
    }

    /// The step order of direction `d`.
    fn order(&self, d: usize) -> Vec<u64> {
        if self.directions[d] {
            (0..self.steps).rev().collect()
        } else {
            (0..self.steps).collect()
        }
    }

    /// `X @ W_d^T (+ Wb_d)`, all steps at once: `[seq, batch, gates * hidden]`, and the
    /// direction's recurrent bias `Rb_d` if any.
    fn input_projection(&self, d: usize) -> (Tensor, Option<Tensor>) {
        let xw = self.x.matmul(&Self::dir(&self.w, d).t());
        let gh = (self.cell.gates() * self.hidden) as i64;
        match &self.b {
            Some(b) => {
                let bd = Self::dir(b, d);
                (
                    xw.add(bd.slice(0, 0, gh, 1)),
                    Some(bd.slice(0, gh, 2 * gh, 1)),
                )
            }
            None => (xw, None),
        }
    }

    /// `[batch, 1]`: which sequences are still running at step `t` (none without lengths).
    fn mask(&self, t: u64) -> Option<Tensor> {
        self.lens.as_ref().map(|l| l.gt(t as f64))
    }

    /// Stacks each step's output `[batch, hidden]` (by time index) and the final states
    /// into the node's outputs.
    fn outputs(&self, ys: Vec<Vec<Tensor>>, finals: Vec<Vec<Tensor>>) -> Vec<Value> {
        let per_dir: Vec<Tensor> = ys
            .iter()
            .map(|steps| {
                let parts: Vec<Tensor> = steps.iter().map(|y| y.unsqueeze(0)).collect();
                let refs: Vec<&Tensor> = parts.iter().collect();
                Tensor::cat(&refs, 0).unsqueeze(1)
            })
            .collect();
        let refs: Vec<&Tensor> = per_dir.iter().collect();
        let mut y = Tensor::cat(&refs, 1);
        if self.layout == 1 {
            y = y.permute([2i64, 0, 1, 3]);
        }
        let mut out = vec![Value::tensor(y)];
        let states = finals.first().map_or(0, Vec::len);
        // A sequence of length 0 ends in a zero state (as ONNX Runtime).
        let started = self.lens.as_ref().map(|l| l.gt(0.0));
        for k in 0..states {
            let parts: Vec<Tensor> = finals
                .iter()
                .map(|f| emitted(started.as_ref(), &f[k]).unsqueeze(0))
                .collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            let mut s = Tensor::cat(&refs, 0);
            if self.layout == 1 {
                s = s.permute([1i64, 0, 2]);
            }
            out.push(Value::tensor(s));
        }
        out
    }
}

/// `sequence_lens` (input 4) as `[batch, 1]`, or `None` when omitted or every length is
/// the full sequence. Known lengths must lie in `0..=steps`.
fn sequence_lens(cx: &mut NodeCx<'_>, steps: u64, batch: &Dim) -> OpResult<Option<Tensor>> {
    let Some(v) = cx.opt_input(4) else {
        return Ok(None);
    };
    if let Some(lens) = v.as_ints() {
        if let Some(bad) = lens.iter().find(|&&l| l < 0 || l as u64 > steps) {
            bail!("sequence_lens holds {bad}, outside 0..={steps}");
        }
        if lens.iter().all(|&l| l as u64 == steps) && !lens.is_empty() {
            return Ok(None);
        }
    }
    let t = cx.tensor(4)?;
    if !t.dtype().is_int() {
        bail!("sequence_lens must be integers, got {}", t.dtype());
    }
    check_shape(&t, std::slice::from_ref(batch), "sequence_lens")?;
    Ok(Some(t.unsqueeze(1)))
}

/// The state to carry and the step's output under the length mask: finished sequences keep
/// their state and emit zeros.
fn masked(mask: Option<&Tensor>, new: Tensor, old: &Tensor) -> Tensor {
    match mask {
        Some(m) => m.where_(&new, old),
        None => new,
    }
}

fn emitted(mask: Option<&Tensor>, h: &Tensor) -> Tensor {
    match mask {
        Some(m) => m.where_(h, 0.0),
        None => h.clone(),
    }
}

pub fn rnn(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let rc = Recurrence::read(cx, Cell::Rnn)?;
    let h0 = rc.initial(cx, 5, "initial_h")?;
    let (mut ys, mut finals) = (Vec::new(), Vec::new());
    for d in 0..rc.directions.len() {
        let f = rc.activations[d][0];
        let (xw, rb) = rc.input_projection(d);
        let rt = Recurrence::dir(&rc.r, d).t();
        let mut h = Recurrence::dir(&h0, d);
        let mut y = vec![h.clone(); rc.steps as usize];
        for t in rc.order(d) {
            let mut pre = xw
                .slice(0, t as i64, t as i64 + 1, 1)
                .squeeze(0)
                .add(h.matmul(&rt));
            if let Some(rb) = &rb {
                pre = pre.add(rb);
            }
            let m = rc.mask(t);
            let new = f.apply(&rc.clipped(pre));
            y[t as usize] = emitted(m.as_ref(), &new);
            h = masked(m.as_ref(), new, &h);
        }
        ys.push(y);
        finals.push(vec![h]);
    }
    Ok(rc.outputs(ys, finals))
}

pub fn gru(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let rc = Recurrence::read(cx, Cell::Gru)?;
    let h0 = rc.initial(cx, 5, "initial_h")?;
    let linear_before_reset = cx.attr_i("linear_before_reset", 0) != 0;
    let hs = rc.hidden as i64;
    let (mut ys, mut finals) = (Vec::new(), Vec::new());
    for d in 0..rc.directions.len() {
        let (f, g) = (rc.activations[d][0], rc.activations[d][1]);
        let (xw, rb) = rc.input_projection(d);
        let rd = Recurrence::dir(&rc.r, d);
        let r_zr = rd.slice(0, 0, 2 * hs, 1).t();
        let r_h = rd.slice(0, 2 * hs, 3 * hs, 1).t();
        let (rb_zr, rb_h) = match &rb {
            Some(b) => (
                Some(b.slice(0, 0, 2 * hs, 1)),
                Some(b.slice(0, 2 * hs, 3 * hs, 1)),
            ),
            None => (None, None),
        };
        let mut h = Recurrence::dir(&h0, d);
        let mut y = vec![h.clone(); rc.steps as usize];
        for t in rc.order(d) {
            let xt = xw.slice(0, t as i64, t as i64 + 1, 1).squeeze(0);
            let hzr = h.matmul(&r_zr);
            let mut zr = rc.gate(&xt, 0).add(hzr.slice(-1, 0, hs, 1));
            let mut rr = rc.gate(&xt, 1).add(hzr.slice(-1, hs, 2 * hs, 1));
            if let Some(b) = &rb_zr {
                zr = zr.add(b.slice(0, 0, hs, 1));
                rr = rr.add(b.slice(0, hs, 2 * hs, 1));
            }
            let z = f.apply(&rc.clipped(zr));
            let r = f.apply(&rc.clipped(rr));
            let recurrent = if linear_before_reset {
                let mut hr = h.matmul(&r_h);
                if let Some(b) = &rb_h {
                    hr = hr.add(b);
                }
                r.mul(hr)
            } else {
                let mut hr = r.mul(&h).matmul(&r_h);
                if let Some(b) = &rb_h {
                    hr = hr.add(b);
                }
                hr
            };
            let cand = g.apply(&rc.clipped(rc.gate(&xt, 2).add(recurrent)));
            let new = z.mul(-1.0).add(1.0).mul(&cand).add(z.mul(&h));
            let m = rc.mask(t);
            y[t as usize] = emitted(m.as_ref(), &new);
            h = masked(m.as_ref(), new, &h);
        }
        ys.push(y);
        finals.push(vec![h]);
    }
    Ok(rc.outputs(ys, finals))
}

pub fn lstm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let rc = Recurrence::read(cx, Cell::Lstm)?;
    let h0 = rc.initial(cx, 5, "initial_h")?;
    let c0 = rc.initial(cx, 6, "initial_c")?;
    let input_forget = cx.attr_i("input_forget", 0) != 0;
    let hs = rc.hidden as i64;
    let peep = match cx.opt_input(7) {
        Some(_) => {
            let p = cx.tensor(7)?;
            check_shape(
                &p,
                &[
                    Dim::known(rc.directions.len() as u64),
                    Dim::known(3 * rc.hidden),
                ],
                "P",
            )?;
            if p.dtype() != rc.x.dtype() {
                bail!("P is {}, but X is {}", p.dtype(), rc.x.dtype());
            }
            Some(p)
        }
        None => None,
    };
    let (mut ys, mut finals) = (Vec::new(), Vec::new());
    for d in 0..rc.directions.len() {
        let [f, g, act_h] = [0, 1, 2].map(|k| rc.activations[d][k]);
        let (xw, rb) = rc.input_projection(d);
        let xw = match &rb {
            Some(b) => xw.add(b),
            None => xw,
        };
        let rt = Recurrence::dir(&rc.r, d).t();
        // Peepholes in the order i, o, f.
        let p = peep.as_ref().map(|p| {
            let pd = Recurrence::dir(p, d);
            [0, 1, 2].map(|k| pd.slice(0, k * hs, (k + 1) * hs, 1))
        });
        let mut h = Recurrence::dir(&h0, d);
        let mut c = Recurrence::dir(&c0, d);
        let mut y = vec![h.clone(); rc.steps as usize];
        for t in rc.order(d) {
            let gates = xw
                .slice(0, t as i64, t as i64 + 1, 1)
                .squeeze(0)
                .add(h.matmul(&rt));
            // Gate order i, o, f, c.
            let [mut i, mut o, mut fg, cg] = [0, 1, 2, 3].map(|k| rc.gate(&gates, k));
            if let Some([pi, _, pf]) = &p {
                i = i.add(pi.mul(&c));
                fg = fg.add(pf.mul(&c));
            }
            let i = f.apply(&rc.clipped(i));
            let fg = if input_forget {
                i.mul(-1.0).add(1.0)
            } else {
                f.apply(&rc.clipped(fg))
            };
            let cand = g.apply(&rc.clipped(cg));
            let c_new = fg.mul(&c).add(i.mul(&cand));
            if let Some([_, po, _]) = &p {
                o = o.add(po.mul(&c_new));
            }
            let o = f.apply(&rc.clipped(o));
            let h_new = o.mul(act_h.apply(&c_new));
            let m = rc.mask(t);
            y[t as usize] = emitted(m.as_ref(), &h_new);
            h = masked(m.as_ref(), h_new, &h);
            c = masked(m.as_ref(), c_new, &c);
        }
        ys.push(y);
        finals.push(vec![h, c]);
    }
    Ok(rc.outputs(ys, finals))
}
