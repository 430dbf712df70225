//! Signal processing: DFT and STFT as a matmul with a DFT matrix built at import time for a
//! static length, and the window functions and mel filter bank, folded at import time.

use super::{NodeCx, OpError, OpResult, axis, bail, dims_of, need_float};
use crate::limits::MAX_FOLDED_ELEMENTS;
use crate::tensor::dtype_of;
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{Array, DType, Dim, Shape};
use std::f64::consts::PI;

/// A known non-negative scalar integer input (a size or length).
fn size_input(cx: &mut NodeCx<'_>, i: usize, what: &str) -> OpResult<u64> {
    let v = cx.ints_input(i, what)?;
    match v.as_slice() {
        [n] if *n >= 0 && (*n as u64) <= MAX_FOLDED_ELEMENTS => Ok(*n as u64),
        _ => {
            bail!("{what} (input {i}) must be one integer in 0..={MAX_FOLDED_ELEMENTS}, got {v:?}")
        }
    }
}

/// The dtype named by an `output_datatype` attribute (float by default).
fn output_dtype(cx: &NodeCx<'_>) -> OpResult<DType> {
    dtype_of(cx.attr_i("output_datatype", 1) as i32).map_err(|e| OpError(e.to_string()))
}

/// The DFT as a real matrix: row `(k, ci)` (input bin `k` of `k_in`, real/imaginary part
/// `ci` of `c_in`) to column `(m, co)` (output bin `m` of `m_out`, part `co` of `c_out`) for
/// a transform of length `len`. `real_out` is the inverse of a one-sided spectrum (irfft):
/// the missing bins are the conjugates of the given ones and the output is real.
fn dft_matrix(
    k_in: u64,
    c_in: u64,
    m_out: u64,
    len: u64,
    inverse: bool,
    real_out: bool,
) -> OpResult<Vec<f64>> {
    let c_out = if real_out { 1 } else { 2 };
    let count = [k_in, c_in, m_out, c_out]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .unwrap_or(u64::MAX);
    if count > MAX_FOLDED_ELEMENTS {
        bail!(
            "the DFT matrix would have {count} elements, more than the {MAX_FOLDED_ELEMENTS} the importer builds"
        );
    }
    let s = if inverse { 1.0 } else { -1.0 };
    let scale = if inverse { 1.0 / len as f64 } else { 1.0 };
    let mut w = Vec::with_capacity(count as usize);
    for k in 0..k_in {
        for ci in 0..c_in {
            for m in 0..m_out {
                let theta = 2.0 * PI * ((k * m) % len) as f64 / len as f64;
                let (sin, cos) = theta.sin_cos();
                if real_out {
                    let weight = if k == 0 || 2 * k == len { 1.0 } else { 2.0 };
                    let v = if ci == 0 { cos } else { -sin };
                    w.push(weight * v * scale);
                    continue;
                }
                let (re, im) = if ci == 0 {
                    (cos, s * sin)
                } else {
                    (-s * sin, cos)
                };
                w.push(re * scale);
                w.push(im * scale);
            }
        }
    }
    Ok(w)
}

/// The DFT of `x` (`[..., n, 1 or 2]`, real or complex) along `a`, of length `len`.
fn dft_along(x: &Tensor, a: usize, len: u64, inverse: bool, onesided: bool) -> OpResult<Tensor> {
    need_float(x, "DFT")?;
    let r = x.rank();
    if r < 2 || a + 1 >= r {
        bail!("the DFT axis {a} must be a signal axis of {}", x.shape());
    }
    let d = dims_of(x);
    let c_in = match d[r - 1].as_known() {
        Some(c @ (1 | 2)) => c,
        _ => bail!(
            "the last axis must be 1 (real) or 2 (complex), got {}",
            x.shape()
        ),
    };
    let Some(n) = d[a].as_known() else {
        bail!("the DFT axis {a} of {} is symbolic", x.shape());
    };
    if len == 0 {
        bail!("the DFT length must be positive");
    }
    let real_out = inverse && onesided;
    let k_in = if real_out {
        n.min(len / 2 + 1)
    } else {
        n.min(len)
    };
    let m_out = if onesided && !inverse {
        len / 2 + 1
    } else {
        len
    };
    let c_out = if real_out { 1 } else { 2 };
    let w = dft_matrix(k_in, c_in, m_out, len, inverse, real_out)?;
    let rows = (k_in * c_in) as usize;
    let cols = (m_out * c_out) as usize;
    let w = x
        .graph()
        .constant(Array::from_f64_cast(x.dtype(), &[rows, cols], &w));
    let mut perm: Vec<i64> = (0..r as i64 - 1).filter(|&i| i != a as i64).collect();
    perm.push(a as i64);
    perm.push(r as i64 - 1);
    let mut inverse_perm = vec![0i64; r];
    for (i, &p) in perm.iter().enumerate() {
        inverse_perm[p as usize] = i as i64;
    }
    let t = x.slice(a as i64, 0, k_in as i64, 1).permute(perm);
    let lead: Vec<Dim> = dims_of(&t)[..r - 2].to_vec();
    let mut flat = lead.clone();
    flat.push(Dim::known(rows as u64));
    let mut out = lead;
    out.push(Dim::known(m_out));
    out.push(Dim::known(c_out));
    let y = t
        .reshape(Shape::new(flat))
        .matmul(&w)
        .reshape(Shape::new(out))
        .permute(inverse_perm);
    Ok(y)
}

pub fn dft(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let r = x.rank();
    let a = if cx.opset >= 20 {
        match cx.opt_ints_input(2, "axis")? {
            Some(v) if v.len() == 1 => v[0],
            Some(v) => bail!("axis (input 2) must hold one element, got {v:?}"),
            None => -2,
        }
    } else {
        cx.attr_i("axis", 1)
    };
    let a = axis(a, r)?;
    if a + 1 >= r {
        bail!("axis {a} is the real/imaginary axis of {}", x.shape());
    }
    let inverse = cx.attr_i("inverse", 0) != 0;
    let onesided = cx.attr_i("onesided", 0) != 0;
    let len = if cx.opt_input(1).is_some() {
        size_input(cx, 1, "dft_length")?
    } else {
        let Some(n) = x.shape().dims()[a].as_known() else {
            bail!("the DFT axis {a} of {} is symbolic", x.shape());
        };
        if inverse && onesided {
            2 * n.saturating_sub(1)
        } else {
            n
        }
    };
    Ok(vec![Value::tensor(dft_along(
        &x, a, len, inverse, onesided,
    )?)])
}

pub fn stft(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "STFT")?;
    if x.rank() != 3 {
        bail!(
            "the signal must be [batch, length, 1 or 2], got {}",
            x.shape()
        );
    }
    let step = size_input(cx, 1, "frame_step")?;
    let window = match cx.opt_input(2) {
        Some(_) => Some(cx.tensor(2)?),
        None => None,
    };
    let frame = if cx.opt_input(3).is_some() {
        size_input(cx, 3, "frame_length")?
    } else {
        match window
            .as_ref()
            .and_then(|w| w.shape().dims().first()?.as_known())
        {
            Some(n) if window.as_ref().is_some_and(|w| w.rank() == 1) => n,
            _ => bail!("needs frame_length or a rank-1 window of known size"),
        }
    };
    let Some(n) = x.shape().dims()[1].as_known() else {
        bail!("the signal length of {} is symbolic", x.shape());
    };
    if step == 0 || frame == 0 || frame > n {
        bail!("frame_step {step} and frame_length {frame} do not fit a signal of length {n}");
    }
    let frames = 1 + (n - frame) / step;
    let count = frames.saturating_mul(frame);
    if count > MAX_FOLDED_ELEMENTS {
        bail!("{frames} frames of {frame} samples are more than the importer builds");
    }
    let idx: Vec<f64> = (0..frames)
        .flat_map(|f| (0..frame).map(move |j| (f * step + j) as f64))
        .collect();
    let idx =
        cx.g.constant(Array::from_f64_cast(DType::I32, &[count as usize], &idx));
    let d = dims_of(&x);
    let mut t = x.index_select(1, &idx).reshape(Shape::new([
        d[0].clone(),
        Dim::known(frames),
        Dim::known(frame),
        d[2].clone(),
    ]));
    if let Some(w) = window {
        if w.rank() != 1 || w.shape().dims()[0].as_known() != Some(frame) {
            bail!("the window {} must be [{frame}]", w.shape());
        }
        t = t.mul(w.cast(x.dtype()).reshape([1usize, 1, frame as usize, 1]));
    }
    let onesided = cx.attr_i("onesided", 1) != 0;
    Ok(vec![Value::tensor(dft_along(
        &t, 2, frame, false, onesided,
    )?)])
}

/// A window function of `size` points: `f(2πn/N)` with `N = size` (periodic) or `size - 1`.
fn window(cx: &mut NodeCx<'_>, f: fn(f64) -> f64) -> OpResult<Vec<Value>> {
    let size = size_input(cx, 0, "size")?;
    let dtype = output_dtype(cx)?;
    let periodic = cx.attr_i("periodic", 1) != 0;
    let denom = if periodic {
        size
    } else {
        size.saturating_sub(1)
    } as f64;
    let v: Vec<f64> = (0..size).map(|n| f(2.0 * PI * n as f64 / denom)).collect();
    Ok(vec![Value::array(Array::from_f64_cast(
        dtype,
        &[size as usize],
        &v,
    ))])
}

pub fn hann_window(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    window(cx, |t| 0.5 - 0.5 * t.cos())
}

pub fn hamming_window(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    window(cx, |t| 25.0 / 46.0 - (21.0 / 46.0) * t.cos())
}

pub fn blackman_window(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    window(cx, |t| 0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos())
}

/// Triangular mel filters: `[dft_length / 2 + 1, num_mel_bins]`, the bins spaced evenly on
/// the mel scale `2595 log10(1 + f / 700)` between the edge frequencies.
pub fn mel_weight_matrix(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let mels = size_input(cx, 0, "num_mel_bins")? as usize;
    let len = size_input(cx, 1, "dft_length")?;
    let Some(rate) = cx.opt_scalar_input(2, "sample_rate")? else {
        bail!("sample_rate (input 2) is required");
    };
    let Some(lo) = cx.opt_scalar_input(3, "lower_edge_hertz")? else {
        bail!("lower_edge_hertz (input 3) is required");
    };
    let Some(hi) = cx.opt_scalar_input(4, "upper_edge_hertz")? else {
        bail!("upper_edge_hertz (input 4) is required");
    };
    let dtype = output_dtype(cx)?;
    if rate.is_nan() || rate <= 0.0 || !lo.is_finite() || !hi.is_finite() {
        bail!("sample_rate {rate} must be positive and the edges {lo}, {hi} finite");
    }
    let bins = (len / 2 + 1) as usize;
    if (bins as u64).saturating_mul(mels as u64) > MAX_FOLDED_ELEMENTS {
        bail!("a {bins}x{mels} mel matrix is more than the importer builds");
    }
    let mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let (lo_mel, hi_mel) = (mel(lo), mel(hi));
    let step = (hi_mel - lo_mel) / (mels + 2) as f64;
    let mut edges = Vec::with_capacity(mels + 2);
    for i in 0..mels + 2 {
        let hz = 700.0 * (10f64.powf((i as f64 * step + lo_mel) / 2595.0) - 1.0);
        let b = (((len + 1) as f64 * hz) / rate).floor();
        if !(0.0..bins as f64).contains(&b) {
            bail!("mel edge {i} ({hz} Hz) falls outside the {bins} spectrogram bins");
        }
        edges.push(b as usize);
    }
    let mut out = vec![0.0; bins * mels];
    for i in 0..mels {
        let (l, c, h) = (edges[i], edges[i + 1], edges[i + 2]);
        if c == l {
            out[c * mels + i] = 1.0;
        } else if c > l {
            for j in l..=c {
                out[j * mels + i] = (j - l) as f64 / (c - l) as f64;
            }
        }
        if h > c {
            for j in c..h {
                out[j * mels + i] = (h - j) as f64 / (h - c) as f64;
            }
        }
    }
    Ok(vec![Value::array(Array::from_f64_cast(
        dtype,
        &[bins, mels],
        &out,
    ))])
}
