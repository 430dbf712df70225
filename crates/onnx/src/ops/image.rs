//! Image and spatial ops: Resize and Upsample (separable resampling through gathers of
//! index and weight tables computed at import time), ConvTranspose and Col2Im (zero insertion
//! and a convolution with the flipped kernel), GridSample, DeformConv and RoiAlign (taps
//! gathered at run-time coordinates), AffineGrid and CenterCropPad.

use super::{NodeCx, OpResult, bail, dims_of, need_float};
use crate::limits::{MAX_DIM, MAX_FOLDED_ELEMENTS};
use crate::value::Value;
use kiln::{ConvOpts, Tensor};
use kiln_ir::{Array, Data, Dim, Shape};

/// Input `i`'s elements as floats, which must be known at import time (`None` if omitted or
/// empty, as ONNX marks an unused optional input). A float initializer, which the importer
/// makes a parameter, counts with its value: Resize's scales and roi configure the op and are
/// no weights.
fn opt_floats_input(cx: &mut NodeCx<'_>, i: usize, what: &str) -> OpResult<Option<Vec<f64>>> {
    let initial = cx.node.input.get(i).and_then(|name| cx.g.param_value(name));
    let Some(v) = cx.opt_input(i) else {
        return Ok(None);
    };
    match v.as_array().or(initial.as_ref()) {
        Some(a) if a.is_empty() => Ok(None),
        Some(a) => Ok(Some(a.to_f64_vec())),
        None => bail!(
            "{what} (input {i}) must be known when importing (a constant), but it is computed at run time"
        ),
    }
}

/// Normalised, distinct axes.
fn distinct_axes(v: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let a = super::axes(v, rank)?;
    for (i, x) in a.iter().enumerate() {
        if a[..i].contains(x) {
            bail!("axis {x} is repeated in {v:?}");
        }
    }
    Ok(a)
}

/// A known size of axis `axis`.
fn known_dim(d: &[Dim], axis: usize, what: &str) -> OpResult<u64> {
    match d.get(axis).and_then(Dim::as_known) {
        Some(n) => Ok(n),
        None => bail!("{what} needs a known size on axis {axis}"),
    }
}

/// How an output coordinate maps to an input coordinate along one axis.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// Which neighbour nearest-neighbour resampling picks at a fractional coordinate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// The interpolation kernel.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    Nearest(Nearest),
    Linear { antialias: bool },
    Cubic { a: f64, antialias: bool },
}

/// A resampling: kernel, coordinate mapping and the treatment of the border.
#[derive(Clone, Copy, Debug)]
struct Resampling {
    kernel: Kernel,
    coord: Coord,
    exclude_outside: bool,
    extrapolation: f64,
}

/// One axis's resampling table: `taps` (index, weight) pairs for each of `out` positions,
/// indices clamped into the input; positions flagged in `outside` take the extrapolation
/// value.
struct Table {
    out: usize,
    taps: usize,
    index: Vec<i64>,
    weight: Vec<f64>,
    outside: Vec<bool>,
}

/// The number of taps the kernel reads per output position at `scale`.
fn tap_count(kernel: Kernel, scale: f64) -> OpResult<usize> {
    // An antialiased kernel widens by 1/scale when downsampling.
    let n = match kernel {
        Kernel::Nearest(_) | Kernel::Linear { antialias: false } => 2.0,
        Kernel::Cubic {
            antialias: false, ..
        } => 4.0,
        Kernel::Linear { antialias: true } => 2.0 * (1.0 / scale.min(1.0)).ceil(),
        Kernel::Cubic {
            antialias: true, ..
        } => 2.0 * (2.0 / scale.min(1.0)).ceil(),
    };
    if !(1.0..=MAX_FOLDED_ELEMENTS as f64).contains(&n) {
        bail!("scale {scale} needs {n} taps per output element, too many");
    }
    Ok(n as usize)
}

/// The kernel's weights for the `taps` neighbours of a coordinate whose distance past the
/// first of the two middle neighbours is `ratio` (in `(0, 1]`).
fn coefficients(kernel: Kernel, ratio: f64, scale: f64, taps: usize) -> Vec<f64> {
    let cubic = |a: f64, x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
        } else {
            0.0
        }
    };
    let normalised = |v: Vec<f64>| {
        let s: f64 = v.iter().sum();
        if s == 0.0 {
            v
        } else {
            v.into_iter().map(|c| c / s).collect()
        }
    };
    let start = 1.0 - (taps / 2) as f64;
    match kernel {
        Kernel::Nearest(mode) => {
            let second = if ratio == 1.0 {
                true
            } else {
                match mode {
                    Nearest::RoundPreferFloor => ratio > 0.5,
                    Nearest::RoundPreferCeil => ratio >= 0.5,
                    Nearest::Floor => false,
                    Nearest::Ceil => true,
                }
            };
            if second {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        Kernel::Linear { antialias: false } => vec![1.0 - ratio, ratio],
        Kernel::Linear { antialias: true } => {
            let s = scale.min(1.0);
            normalised(
                (0..taps)
                    .map(|k| (1.0 - ((start + k as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                    .collect(),
            )
        }
        Kernel::Cubic {
            a,
            antialias: false,
        } => [ratio + 1.0, ratio, 1.0 - ratio, 2.0 - ratio]
            .iter()
            .map(|&x| cubic(a, x))
            .collect(),
        Kernel::Cubic { a, antialias: true } => {
            let s = scale.min(1.0);
            normalised(
                (0..taps)
                    .map(|k| cubic(a, s * (start + k as f64 - ratio)))
                    .collect(),
            )
        }
    }
}

/// The resampling table of one axis from `n` to `out` elements at `scale` (`roi` is the
/// crop window of tf_crop_and_resize, in fractions of the input).
fn table(r: &Resampling, n: u64, out: u64, scale: f64, roi: (f64, f64)) -> OpResult<Table> {
    let taps = tap_count(r.kernel, scale)?;
    if out == 0 || n == 0 {
        bail!("resizing between {n} and {out} elements: empty axes are not supported");
    }
    if out.saturating_mul(taps as u64) > MAX_FOLDED_ELEMENTS {
        bail!(
            "an output axis of {out} elements with {taps} taps each needs a table larger than the {MAX_FOLDED_ELEMENTS} elements the importer folds"
        );
    }
    let (out_n, nf) = (out as usize, n as f64);
    let width = scale * nf;
    let mut t = Table {
        out: out_n,
        taps,
        index: Vec::with_capacity(out_n * taps),
        weight: Vec::with_capacity(out_n * taps),
        outside: vec![false; out_n],
    };
    for y in 0..out_n {
        let yf = y as f64;
        let x = match r.coord {
            Coord::HalfPixel => (yf + 0.5) / scale - 0.5,
            Coord::HalfPixelSymmetric => {
                let adjustment = out as f64 / width;
                let offset = nf / 2.0 * (1.0 - adjustment);
                offset + (yf + 0.5) / scale - 0.5
            }
            Coord::PytorchHalfPixel if width == 1.0 => -0.5,
            Coord::PytorchHalfPixel => (yf + 0.5) / scale - 0.5,
            Coord::AlignCorners if width == 1.0 => 0.0,
            Coord::AlignCorners => yf * (nf - 1.0) / (width - 1.0),
            Coord::Asymmetric => yf / scale,
            Coord::TfCropAndResize => {
                let x = if width == 1.0 {
                    (roi.1 - roi.0) * (nf - 1.0) / 2.0
                } else {
                    yf * (roi.1 - roi.0) * (nf - 1.0) / (width - 1.0)
                } + roi.0 * (nf - 1.0);
                t.outside[y] = x < 0.0 || x > nf - 1.0;
                x
            }
        };
        if !x.is_finite() {
            bail!("output position {y} maps to the non-finite input coordinate {x}");
        }
        let xi = x.floor();
        let ratio = if x == xi { 1.0 } else { x - xi };
        let mut c = coefficients(r.kernel, ratio, scale, taps);
        let half = (taps / 2) as i64;
        let first = (xi as i64).saturating_sub(if x == xi { half } else { half - 1 });
        let idx: Vec<i64> = (0..taps as i64).map(|k| first.saturating_add(k)).collect();
        if r.exclude_outside {
            for (ci, &i) in c.iter_mut().zip(&idx) {
                if i < 0 || i >= n as i64 {
                    *ci = 0.0;
                }
            }
            let s: f64 = c.iter().sum();
            if s != 0.0 {
                c.iter_mut().for_each(|ci| *ci /= s);
            }
        }
        t.index
            .extend(idx.iter().map(|&i| i.clamp(0, n as i64 - 1)));
        t.weight.extend(c);
    }
    if let Kernel::Nearest(_) = r.kernel {
        // One tap: the neighbour whose weight is one.
        let (index, weight) = (&t.index, &t.weight);
        t.index = (0..out_n)
            .map(|y| {
                let k = usize::from(weight[y * taps + 1] == 1.0);
                index[y * taps + k]
            })
            .collect();
        t.weight = vec![1.0; out_n];
        t.taps = 1;
    }
    Ok(t)
}

/// An index vector, `i32` where it fits (every backend gathers with it) and `i64` otherwise.
fn index_array(v: &[i64]) -> OpResult<Array> {
    let data = match v
        .iter()
        .map(|&i| i32::try_from(i))
        .collect::<Result<Vec<i32>, _>>()
    {
        Ok(small) => Data::I32(small),
        Err(_) => Data::I64(v.to_vec()),
    };
    Array::new(&[v.len()], data).map_err(|e| super::OpError(e.to_string()))
}

/// `[1, .., len, .., 1]` of rank `rank` with `len` on `axis`.
fn axis_view(rank: usize, axis: usize, len: Dim) -> Vec<Dim> {
    let mut v = vec![Dim::known(1); rank];
    v[axis] = len;
    v
}

/// Resamples `x` along `axis` with table `t`: one gather of every tap, then the weighted
/// sum over the taps.
fn apply_table(x: &Tensor, axis: usize, t: &Table, fill: f64) -> OpResult<Tensor> {
    let g = x.graph();
    let r = x.rank();
    let n_idx = t.out * t.taps;
    let mut full = dims_of(x);
    full[axis] = Dim::known(n_idx as u64);
    let index = g
        .constant(index_array(&t.index)?)
        .reshape(Shape::new(axis_view(r, axis, Dim::known(n_idx as u64))))
        .expand(Shape::new(full.clone()));
    let picked = x.gather(axis as i64, &index);
    let mut y = if t.taps == 1 {
        picked
    } else {
        let mut split = full.clone();
        split[axis] = Dim::known(t.out as u64);
        split.insert(axis + 1, Dim::known(t.taps as u64));
        let mut wview = vec![Dim::known(1); r + 1];
        wview[axis] = Dim::known(t.out as u64);
        wview[axis + 1] = Dim::known(t.taps as u64);
        let w = g
            .constant(Array::from_f64_cast(x.dtype(), &[t.out, t.taps], &t.weight))
            .reshape(Shape::new(wview));
        picked
            .reshape(Shape::new(split))
            .mul(&w)
            .sum(axis as i64 + 1, false)
    };
    if t.outside.iter().any(|&o| o) {
        let mask = Array::new(&[t.out], Data::Bool(t.outside.clone()))
            .map_err(|e| super::OpError(e.to_string()))?;
        let mask =
            g.constant(mask)
                .reshape(Shape::new(axis_view(r, axis, Dim::known(t.out as u64))));
        y = mask.where_(fill, &y);
    }
    Ok(y)
}

/// Resamples `x` on `axes` to `sizes` at `scales` (per axis of `x`), skipping axes left
/// unchanged.
/// The factor by which nearest resizing at `scale` repeats every element, where it does
/// (an integer scale whose coordinate mapping picks element `y / scale` for output `y`, which
/// does not depend on the input's size, checked on a four-element input); `None` otherwise.
fn repeat_factor(r: &Resampling, scale: f64) -> Option<u64> {
    let size_free = matches!(
        r.coord,
        Coord::Asymmetric | Coord::HalfPixel | Coord::PytorchHalfPixel
    );
    if !matches!(r.kernel, Kernel::Nearest(_))
        || !size_free
        || scale.fract() != 0.0
        || !(2.0..=1024.0).contains(&scale)
    {
        return None;
    }
    let s = scale as u64;
    let t = table(r, 4, 4 * s, scale, (0.0, 1.0)).ok()?;
    let repeats = t
        .index
        .iter()
        .enumerate()
        .all(|(y, &i)| i == (y as u64 / s) as i64);
    repeats.then_some(s)
}

/// `x` with every element along `axis` repeated `s` times.
fn repeat(x: &Tensor, axis: usize, s: u64) -> Tensor {
    let d = dims_of(x);
    let mut spread = d.clone();
    spread.insert(axis + 1, Dim::known(s));
    let mut merged = d;
    merged[axis] = &merged[axis] * &Dim::known(s);
    x.unsqueeze(axis as i64 + 1)
        .expand(Shape::new(spread))
        .reshape(Shape::new(merged))
}

/// Resamples `x` on `axes` to `sizes` at `scales` (per axis of `x`; a `None` size is a
/// symbolic input size times its scale), skipping axes left unchanged.
fn resample(
    x: &Tensor,
    r: &Resampling,
    axes: &[usize],
    sizes: &[Option<u64>],
    scales: &[f64],
    roi: &[(f64, f64)],
) -> OpResult<Tensor> {
    if !matches!(r.kernel, Kernel::Nearest(_)) {
        need_float(x, "linear and cubic resizing")?;
    }
    let xd = dims_of(x);
    let mut y = x.clone();
    for (k, &a) in axes.iter().enumerate() {
        let n = xd[a].as_known();
        let identity_roi = r.coord != Coord::TfCropAndResize
            || (roi[k].0.abs() < 1e-9 && (roi[k].1 - 1.0).abs() < 1e-9);
        if n.is_some() && sizes[k] == n && (scales[k] - 1.0).abs() <= 1e-9 && identity_roi {
            continue;
        }
        if let Some(s) = repeat_factor(r, scales[k])
            && (sizes[k].is_none() || sizes[k] == n.map(|n| n.saturating_mul(s)))
        {
            y = repeat(&y, a, s);
            continue;
        }
        let (Some(n), Some(out)) = (n, sizes[k]) else {
            bail!(
                "resizing axis {a} of {} needs its size known (only nearest upsampling by an integer scale that repeats elements works on a symbolic size)",
                x.shape()
            );
        };
        let t = table(r, n, out, scales[k], roi[k])?;
        y = apply_table(&y, a, &t, r.extrapolation)?;
    }
    Ok(y)
}

fn nearest_mode(s: &str) -> OpResult<Nearest> {
    Ok(match s {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => bail!("nearest_mode {other:?} is not supported"),
    })
}

/// `scale` if it is positive, finite and at most [`MAX_DIM`].
fn checked_scale(scale: f64) -> OpResult<f64> {
    if !scale.is_finite() || scale <= 0.0 || scale > MAX_DIM as f64 {
        bail!("scale {scale} must be positive, finite and at most {MAX_DIM}");
    }
    Ok(scale)
}

/// The output size of an axis of `n` elements at `scale`, checked.
fn scaled_size(n: u64, scale: f64) -> OpResult<u64> {
    checked_scale(scale)?;
    let out = (n as f64 * scale).floor();
    if out > MAX_DIM as f64 {
        bail!("scale {scale} gives an axis of {out} elements, more than {MAX_DIM}");
    }
    Ok(out as u64)
}

pub fn resize(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let rank = x.rank();
    let xd = dims_of(&x);
    let old = cx.opset < 11;
    let axes = match cx.attr_ints("axes") {
        Some(a) => distinct_axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    let coord = match cx
        .attr_s(
            "coordinate_transformation_mode",
            if old { "asymmetric" } else { "half_pixel" },
        )
        .as_str()
    {
        "half_pixel" => Coord::HalfPixel,
        "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coord::PytorchHalfPixel,
        "align_corners" => Coord::AlignCorners,
        "asymmetric" => Coord::Asymmetric,
        "tf_crop_and_resize" => Coord::TfCropAndResize,
        other => bail!("coordinate_transformation_mode {other:?} is not supported"),
    };
    let antialias = cx.attr_i("antialias", 0) != 0;
    let mode = cx.attr_s("mode", "nearest");
    let a = cx.attr_f("cubic_coeff_a", -0.75);
    if !a.is_finite() {
        bail!("cubic_coeff_a {a} must be finite");
    }
    let nearest_attr = cx.attr_s("nearest_mode", "round_prefer_floor");
    let (scales_in, sizes_in) = if old { (1, None) } else { (2, Some(3)) };
    let scales = opt_floats_input(cx, scales_in, "scales")?;
    let sizes = match sizes_in {
        Some(i) => match cx.opt_input(i) {
            Some(v) if v.as_array().is_some_and(Array::is_empty) => None,
            Some(_) => Some(cx.dims_input(i, "sizes")?),
            None => None,
        },
        None => None,
    };
    let roi: Vec<(f64, f64)> = if coord == Coord::TfCropAndResize {
        let Some(v) = opt_floats_input(cx, 1, "roi")? else {
            bail!("tf_crop_and_resize needs roi");
        };
        if v.len() != 2 * axes.len() || v.iter().any(|r| !r.is_finite()) {
            bail!("roi must hold {} finite values, got {v:?}", 2 * axes.len());
        }
        (0..axes.len()).map(|i| (v[i], v[axes.len() + i])).collect()
    } else {
        vec![(0.0, 1.0); axes.len()]
    };
    let whole = |k: usize| roi[k].0.abs() < 1e-9 && (roi[k].1 - 1.0).abs() < 1e-9;
    // Per axis: `None` where it is left unchanged (its size may be symbolic), else the
    // output size and scale.
    let plan: Vec<Option<(Option<u64>, f64)>> = match (scales, sizes) {
        (Some(_), Some(_)) => bail!("only one of scales and sizes may be given"),
        (None, None) => bail!("one of scales and sizes is required"),
        (Some(s), None) => {
            if s.len() != axes.len() {
                bail!("scales has {} entries for {} axes", s.len(), axes.len());
            }
            let mut plan = Vec::with_capacity(axes.len());
            for (k, (&a, &sc)) in axes.iter().zip(&s).enumerate() {
                plan.push(if sc == 1.0 && whole(k) {
                    None
                } else {
                    match xd[a].as_known() {
                        Some(n) => Some((Some(scaled_size(n, sc)?), sc)),
                        None => Some((None, checked_scale(sc)?)),
                    }
                });
            }
            plan
        }
        (None, Some(z)) => {
            if z.len() != axes.len() {
                bail!("sizes has {} entries for {} axes", z.len(), axes.len());
            }
            let policy = cx.attr_s("keep_aspect_ratio_policy", "stretch");
            let mut plan = Vec::with_capacity(axes.len());
            for (k, (&a, d)) in axes.iter().zip(&z).enumerate() {
                if *d == xd[a] && whole(k) && policy == "stretch" {
                    plan.push(None);
                    continue;
                }
                let n = known_dim(&xd, a, "Resize")?;
                match d.as_known() {
                    Some(o) if (1..=MAX_DIM).contains(&o) => {
                        plan.push(Some((Some(o), o as f64 / n as f64)));
                    }
                    _ => bail!("size {d} must be known and in 1..={MAX_DIM}"),
                }
            }
            let scales = plan.iter().flatten().map(|&(_, s)| s);
            let pick = match policy.as_str() {
                "stretch" => None,
                "not_larger" => scales.reduce(f64::min),
                "not_smaller" => scales.reduce(f64::max),
                other => bail!("keep_aspect_ratio_policy {other:?} is not supported"),
            };
            if let Some(s) = pick {
                for (p, &a) in plan.iter_mut().zip(&axes) {
                    let n = known_dim(&xd, a, "Resize")?;
                    scaled_size(n, s)?;
                    *p = Some((Some((s * n as f64 + 0.5).floor() as u64), s));
                }
            }
            plan
        }
    };
    let active: Vec<usize> = (0..axes.len()).filter(|&k| plan[k].is_some()).collect();
    let roi: Vec<(f64, f64)> = active.iter().map(|&k| roi[k]).collect();
    let out: Vec<Option<u64>> = active
        .iter()
        .filter_map(|&k| plan[k])
        .map(|p| p.0)
        .collect();
    let scale: Vec<f64> = active
        .iter()
        .filter_map(|&k| plan[k])
        .map(|p| p.1)
        .collect();
    let axes: Vec<usize> = active.iter().map(|&k| axes[k]).collect();
    let kernel = match mode.as_str() {
        "nearest" if antialias => bail!("antialias is not defined for nearest resizing"),
        "nearest" if old => Kernel::Nearest(Nearest::Floor),
        "nearest" => Kernel::Nearest(nearest_mode(&nearest_attr)?),
        "linear" | "bilinear" | "trilinear" => Kernel::Linear { antialias },
        "cubic" | "bicubic" => Kernel::Cubic { a, antialias },
        other => bail!("mode {other:?} is not supported"),
    };
    let r = Resampling {
        kernel,
        coord,
        exclude_outside: cx.attr_i("exclude_outside", 0) != 0,
        extrapolation: cx.attr_f("extrapolation_value", 0.0),
    };
    // Resize-10 picks the floor when upsampling and the ceiling when downsampling.
    let y = if old && matches!(kernel, Kernel::Nearest(_)) {
        let mut y = x.clone();
        for k in 0..axes.len() {
            let mut rk = r;
            rk.kernel = Kernel::Nearest(if scale[k] < 1.0 {
                Nearest::Ceil
            } else {
                Nearest::Floor
            });
            y = resample(
                &y,
                &rk,
                &axes[k..=k],
                &out[k..=k],
                &scale[k..=k],
                &roi[k..=k],
            )?;
        }
        y
    } else {
        resample(&x, &r, &axes, &out, &scale, &roi)?
    };
    Ok(vec![Value::tensor(y)])
}

pub fn upsample(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let rank = x.rank();
    let xd = dims_of(&x);
    let scales = match cx.attr_floats("scales") {
        Some(s) => s.into_iter().map(f64::from).collect(),
        None => match opt_floats_input(cx, 1, "scales")? {
            Some(s) => s,
            None => bail!("scales is required"),
        },
    };
    if scales.len() != rank {
        bail!("scales has {} entries for rank {rank}", scales.len());
    }
    let kernel = match cx.attr_s("mode", "nearest").as_str() {
        "nearest" => Kernel::Nearest(Nearest::Floor),
        "linear" | "bilinear" => Kernel::Linear { antialias: false },
        other => bail!("mode {other:?} is not supported"),
    };
    let axes: Vec<usize> = (0..rank).collect();
    let mut out = Vec::with_capacity(rank);
    for (a, &s) in scales.iter().enumerate() {
        if s < 1.0 {
            bail!("Upsample scale {s} must be at least 1");
        }
        out.push(match xd[a].as_known() {
            Some(n) => Some(scaled_size(n, s)?),
            None => {
                checked_scale(s)?;
                None
            }
        });
    }
    let r = Resampling {
        kernel,
        coord: Coord::Asymmetric,
        exclude_outside: false,
        extrapolation: 0.0,
    };
    let y = resample(&x, &r, &axes, &out, &scales, &vec![(0.0, 1.0); rank])?;
    Ok(vec![Value::tensor(y)])
}

/// Positive integers.
fn positive(v: Vec<i64>, what: &str) -> OpResult<Vec<u64>> {
    v.into_iter()
        .map(|x| match u64::try_from(x) {
            Ok(x) if x > 0 && x <= MAX_DIM => Ok(x),
            _ => bail!("{what} must be positive, got {x}"),
        })
        .collect()
}

/// Most depth taps a 3-D convolution is unrolled into (one 2-D convolution each).
const MAX_DEPTH_TAPS: u64 = 256;

/// Most tap combinations GridSample gathers (4 per axis for cubic, so up to 4 spatial axes).
const MAX_GRID_TAPS: u64 = 256;

/// A stride-1, unpadded convolution of `x` (`[N, C, s...]`, 1 to 3 spatial axes) with `w`
/// (`[O, C/groups, k...]`); 1-D lifts to 2-D, 3-D sums 2-D convolutions over the depth taps.
fn conv_valid(x: &Tensor, w: &Tensor, dilation: &[u64], groups: u64) -> OpResult<Tensor> {
    let opts = |d: [u64; 2]| ConvOpts {
        stride: [1, 1],
        padding: [0, 0],
        dilation: d,
        groups,
    };
    match x.rank() {
        3 => Ok(x
            .unsqueeze(2)
            .conv2d(&w.unsqueeze(2), opts([1, dilation[0]]))
            .squeeze(2)),
        4 => Ok(x.conv2d(w, opts([dilation[0], dilation[1]]))),
        5 => {
            let (xd, wd) = (dims_of(x), dims_of(w));
            let depth = known_dim(&xd, 2, "a 3-D convolution")?;
            let kd = known_dim(&wd, 2, "a 3-D convolution")?;
            if kd > MAX_DEPTH_TAPS {
                bail!("a depth kernel of {kd} taps is more than the {MAX_DEPTH_TAPS} supported");
            }
            let span = (kd - 1).saturating_mul(dilation[0]).saturating_add(1);
            let Some(od) = depth.checked_sub(span).map(|v| v + 1) else {
                bail!("the depth {depth} is smaller than the kernel's extent {span}");
            };
            let [n, c, _, h, wi] = [0, 1, 2, 3, 4].map(|i| xd[i].clone());
            let batch = &n * &Dim::known(od);
            let mut acc: Option<Tensor> = None;
            for t in 0..kd {
                let start = (t * dilation[0]) as i64;
                let xs = x
                    .slice(2, start, start + od as i64, 1)
                    .permute([0i64, 2, 1, 3, 4])
                    .reshape(Shape::new([
                        batch.clone(),
                        c.clone(),
                        h.clone(),
                        wi.clone(),
                    ]));
                let wt = w.slice(2, t as i64, t as i64 + 1, 1).squeeze(2);
                let y = xs.conv2d(&wt, opts([dilation[1], dilation[2]]));
                let yd = dims_of(&y);
                let y = y
                    .reshape(Shape::new([
                        n.clone(),
                        Dim::known(od),
                        yd[1].clone(),
                        yd[2].clone(),
                        yd[3].clone(),
                    ]))
                    .permute([0i64, 2, 1, 3, 4]);
                acc = Some(match acc {
                    Some(a) => a.add(&y),
                    None => y,
                });
            }
            match acc {
                Some(a) => Ok(a),
                None => bail!("the kernel is empty"),
            }
        }
        r => bail!("convolutions need 1 to 3 spatial axes, got rank {r}"),
    }
}

/// Pads (positive) or crops (negative) `x` by `(before, after)` on each listed axis.
fn pad_or_crop(x: &Tensor, edits: &[(usize, i64, i64)]) -> OpResult<Tensor> {
    let mut y = x.clone();
    let d = dims_of(x);
    for &(axis, b, e) in edits {
        let (cb, ce) = (b.min(0).unsigned_abs(), e.min(0).unsigned_abs());
        if cb == 0 && ce == 0 {
            continue;
        }
        let n = known_dim(&d, axis, "cropping")? as i64;
        if cb.saturating_add(ce) >= n as u64 {
            bail!("the padding removes all of axis {axis}");
        }
        if cb > 0 || ce > 0 {
            y = y.slice(axis as i64, cb as i64, n - ce as i64, 1);
        }
    }
    let mut pads = vec![(0u64, 0u64); x.rank()];
    for &(axis, b, e) in edits {
        pads[axis] = (b.max(0) as u64, e.max(0) as u64);
    }
    if pads.iter().any(|&(b, e)| b > 0 || e > 0) {
        y = y.pad(&pads, 0.0);
    }
    Ok(y)
}

/// A transposed convolution's output along one spatial axis.
#[derive(Clone, Copy, Debug)]
enum Extent {
    /// `size` positions starting at `begin` in the full result.
    Sized { begin: i64, size: i64 },
    /// The full result less `begin` positions at the start and `end` at the end (a negative
    /// `end` adds zeros, as `output_padding` does).
    Trimmed { begin: i64, end: i64 },
}

/// A transposed convolution's geometry: per spatial axis the kernel, stride, dilation and
/// output extent.
struct Transposed {
    kernel: Vec<u64>,
    strides: Vec<u64>,
    dilations: Vec<u64>,
    extents: Vec<Extent>,
    groups: u64,
    /// Output channels per group.
    per_out: u64,
}

/// The transposed convolution of `x` (`[N, C, s...]`) with `w` (`[C, M/groups, k...]`): the
/// input with `stride - 1` zeros inserted after each element, padded by the kernel's extent
/// less the begin padding, convolved with the spatially flipped kernel.
fn transposed_conv(x: &Tensor, w: &Tensor, t: &Transposed) -> OpResult<Tensor> {
    let r = x.rank();
    let k = r - 2;
    let xd = dims_of(x);
    let c = known_dim(&xd, 1, "a transposed convolution")?;
    let groups = t.groups;
    let mut edits = Vec::with_capacity(k);
    let mut zx = x.clone();
    for i in 0..k {
        let n = xd[i + 2].as_known();
        let (s, d, kk) = (
            t.strides[i] as i64,
            t.dilations[i] as i64,
            t.kernel[i] as i64,
        );
        let span = (kk - 1).saturating_mul(d).saturating_add(1);
        let strided = n.map(|n| (n as i64).saturating_mul(s));
        if span as u64 > MAX_DIM || strided.is_some_and(|v| v as u64 > MAX_DIM) {
            bail!(
                "the kernel's extent {span} or the strided input on spatial axis {i} is too large"
            );
        }
        let (begin, back) = match t.extents[i] {
            Extent::Sized { begin, size } => {
                let Some(len) = strided else {
                    bail!("an output_shape or SAME padding needs known spatial sizes");
                };
                if size <= 0 || size as u64 > MAX_DIM || begin.unsigned_abs() > MAX_DIM {
                    bail!(
                        "the output size {size} (padding {begin}) on spatial axis {i} is out of range"
                    );
                }
                (begin, size + span - 1 - len - (span - 1 - begin))
            }
            Extent::Trimmed { begin, end } => {
                if begin.unsigned_abs() > MAX_DIM || end.unsigned_abs() > MAX_DIM {
                    bail!("the padding {begin}/{end} on spatial axis {i} is out of range");
                }
                if let Some(len) = strided {
                    let size = len - s + span - begin - end;
                    if size <= 0 || size as u64 > MAX_DIM {
                        bail!("the output size {size} on spatial axis {i} is out of range");
                    }
                }
                (begin, span - s - end)
            }
        };
        // Zero insertion: each element followed by stride-1 zeros.
        let axis = i + 2;
        if s > 1 {
            let mut d2 = dims_of(&zx);
            let mut pads = vec![(0, 0); zx.rank() + 1];
            pads[axis + 1] = (0, s as u64 - 1);
            zx = zx.unsqueeze(axis as i64 + 1).pad(&pads, 0.0);
            d2[axis] = &d2[axis] * &Dim::known(s as u64);
            zx = zx.reshape(Shape::new(d2));
        }
        edits.push((axis, span - 1 - begin, back));
    }
    let zx = pad_or_crop(&zx, &edits)?;
    // Weight [C, M/g, k...] -> [M, C/g, k...], flipped spatially.
    let mut grouped = vec![
        Dim::known(groups),
        Dim::known(c / groups),
        Dim::known(t.per_out),
    ];
    grouped.extend(t.kernel.iter().map(|&v| Dim::known(v)));
    let mut perm: Vec<i64> = vec![0, 2, 1];
    perm.extend(3..(r as i64 + 1));
    let mut flat = vec![Dim::known(groups * t.per_out), Dim::known(c / groups)];
    flat.extend(t.kernel.iter().map(|&v| Dim::known(v)));
    let spatial: Vec<i64> = (2..r as i64).collect();
    let wt = w
        .reshape(Shape::new(grouped))
        .permute(perm)
        .reshape(Shape::new(flat))
        .flip(spatial);
    conv_valid(&zx, &wt, &t.dilations, groups)
}

pub fn conv_transpose(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let w = cx.tensor(1)?;
    need_float(&x, "ConvTranspose")?;
    let r = x.rank();
    if !(3..=5).contains(&r) || w.rank() != r || w.dtype() != x.dtype() {
        bail!(
            "ConvTranspose supports 1-D to 3-D convolutions; got input {} and weight {}",
            x.shape(),
            w.shape()
        );
    }
    let k = r - 2;
    let (xd, wd) = (dims_of(&x), dims_of(&w));
    let kernel: Vec<u64> = (2..r)
        .map(|i| known_dim(&wd, i, "ConvTranspose's weight"))
        .collect::<OpResult<_>>()?;
    if let Some(ks) = cx.attr_ints("kernel_shape")
        && positive(ks, "kernel_shape")? != kernel
    {
        bail!("kernel_shape does not match the weight {}", w.shape());
    }
    let list = |name: &str, default: u64| -> OpResult<Vec<u64>> {
        let v = match cx.attr_ints(name) {
            Some(v) => positive(v, name)?,
            None => vec![default; k],
        };
        if v.len() != k {
            bail!("{name} needs {k} entries, got {v:?}");
        }
        Ok(v)
    };
    let strides = list("strides", 1)?;
    let dilations = list("dilations", 1)?;
    let output_padding: Vec<u64> = match cx.attr_ints("output_padding") {
        Some(v) if v.len() == k && v.iter().all(|&p| (0..=MAX_DIM as i64).contains(&p)) => {
            v.into_iter().map(|p| p as u64).collect()
        }
        Some(v) => bail!("output_padding {v:?} must be {k} non-negative entries"),
        None => vec![0; k],
    };
    let groups = cx.attr_i("group", 1);
    if groups <= 0 {
        bail!("group must be positive, got {groups}");
    }
    let groups = groups as u64;
    let c = known_dim(&xd, 1, "ConvTranspose")?;
    let wc = known_dim(&wd, 0, "ConvTranspose")?;
    let per_out = known_dim(&wd, 1, "ConvTranspose")?;
    if wc != c || c % groups != 0 {
        bail!(
            "the weight {} does not fit {c} input channels in {groups} groups",
            w.shape()
        );
    }
    let output_shape = cx.attr_ints("output_shape");
    if let Some(s) = &output_shape
        && (s.len() != k || s.iter().any(|&v| v <= 0 || v as u64 > MAX_DIM))
    {
        bail!("output_shape {s:?} must be {k} positive entries");
    }
    let auto_pad = cx.attr_s("auto_pad", "NOTSET");
    let pads = match cx.attr_ints("pads") {
        Some(p) if p.len() == 2 * k && p.iter().all(|&v| (0..=MAX_DIM as i64).contains(&v)) => p,
        Some(p) => bail!("pads {p:?} must be {} non-negative entries", 2 * k),
        None => vec![0; 2 * k],
    };
    let mut extents = Vec::with_capacity(k);
    for i in 0..k {
        let (s, d, kk) = (strides[i] as i64, dilations[i] as i64, kernel[i] as i64);
        let span = (kk - 1).saturating_mul(d).saturating_add(1);
        let op = output_padding[i] as i64;
        let same = match auto_pad.as_str() {
            "NOTSET" | "VALID" => false,
            "SAME_UPPER" | "SAME_LOWER" => true,
            other => bail!("auto_pad {other:?} is not supported"),
        };
        let (pb, pe) = if auto_pad == "VALID" {
            (0, 0)
        } else {
            (pads[i], pads[i + k])
        };
        let split = |total: i64| {
            let small = total.div_euclid(2);
            if auto_pad == "SAME_UPPER" {
                small
            } else {
                total - small
            }
        };
        extents.push(match (&output_shape, same) {
            (None, false) => Extent::Trimmed {
                begin: pb,
                end: pe - op,
            },
            // The output is the input size times the stride.
            (None, true) => {
                let begin = split(op + span - s);
                Extent::Trimmed {
                    begin,
                    end: span - s - begin,
                }
            }
            (Some(o), false) => Extent::Sized {
                begin: pb,
                size: o[i],
            },
            (Some(o), true) => {
                let n = known_dim(&xd, i + 2, "ConvTranspose with SAME padding")? as i64;
                let full = s
                    .saturating_mul(n - 1)
                    .saturating_add(op)
                    .saturating_add(span);
                Extent::Sized {
                    begin: split(full - o[i]),
                    size: o[i],
                }
            }
        });
    }
    let t = Transposed {
        kernel,
        strides,
        dilations,
        extents,
        groups,
        per_out,
    };
    let mut y = transposed_conv(&x, &w, &t)?;
    if cx.opt_input(2).is_some() {
        let b = cx.tensor(2)?;
        y = y.add(b.reshape(Shape::new(axis_view(
            r - 1,
            0,
            Dim::known(groups * per_out),
        ))));
    }
    Ok(vec![Value::tensor(y)])
}

/// GridSample's treatment of coordinates outside the input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Border {
    Zeros,
    Clamp,
    Reflect,
}

/// `x` reflected into `[lo, hi]` by the nearer border until it lies inside (PyTorch's
/// `reflect_coordinates`); `x` when the range is empty.
fn reflect(x: &Tensor, lo: f64, hi: f64) -> Tensor {
    let range = hi - lo;
    if range <= 0.0 {
        return x.full_like(lo);
    }
    let side = |dx: Tensor, near: f64, far: f64, sign: f64| {
        let n = dx.div(range).floor();
        let r = dx.sub(n.mul(range));
        let even = n.sub(n.div(2.0).floor().mul(2.0)).eq(0.0);
        even.where_(r.mul(sign).add(near), r.mul(-sign).add(far))
    };
    let below = side(x.neg().add(lo), lo, hi, 1.0);
    let above = side(x.sub(hi), hi, lo, -1.0);
    x.lt(lo).where_(&below, x.gt(hi).where_(&above, x))
}

pub fn grid_sample(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let grid = cx.tensor(1)?;
    need_float(&x, "GridSample")?;
    let r = x.rank();
    let k = r.saturating_sub(2);
    if r < 3 || grid.rank() != r || grid.dtype() != x.dtype() {
        bail!(
            "GridSample needs X [N, C, D...] and a grid [N, ..., {k}] of its dtype; got {} and {}",
            x.shape(),
            grid.shape()
        );
    }
    let (xd, gd) = (dims_of(&x), dims_of(&grid));
    if gd[r - 1] != Dim::known(k as u64) || gd[0] != xd[0] {
        bail!("the grid {} does not fit X {}", grid.shape(), x.shape());
    }
    let align = cx.attr_i("align_corners", 0) != 0;
    let mode = cx.attr_s("mode", "linear");
    let taps_per_axis: i64 = match mode.as_str() {
        "nearest" => 1,
        "linear" | "bilinear" => 2,
        "cubic" | "bicubic" => 4,
        other => bail!("mode {other:?} is not supported"),
    };
    let border = match cx.attr_s("padding_mode", "zeros").as_str() {
        "zeros" => Border::Zeros,
        "border" => Border::Clamp,
        "reflection" => Border::Reflect,
        other => bail!("padding_mode {other:?} is not supported"),
    };
    let sizes: Vec<u64> = (2..r)
        .map(|a| known_dim(&xd, a, "GridSample"))
        .collect::<OpResult<_>>()?;
    if sizes.contains(&0) {
        bail!("GridSample needs non-empty spatial axes");
    }
    let plane = sizes
        .iter()
        .try_fold(1u64, |a, &n| a.checked_mul(n))
        .filter(|&p| p <= MAX_DIM)
        .ok_or_else(|| super::OpError("the input's spatial size overflows".into()))?;
    let index_dtype = if plane <= i32::MAX as u64 {
        kiln_ir::DType::I32
    } else {
        kiln_ir::DType::I64
    };
    // Per spatial axis: the source taps' integer positions and weights, each [N, O...].
    let mut axes_taps: Vec<Vec<(Tensor, Tensor)>> = Vec::with_capacity(k);
    for (i, &len) in sizes.iter().enumerate() {
        let l = len as f64;
        let g = grid
            .slice(-1, (k - 1 - i) as i64, (k - i) as i64, 1)
            .squeeze(-1);
        let mut c = if align {
            g.add(1.0).div(2.0).mul(l - 1.0)
        } else {
            g.add(1.0).mul(l).sub(1.0).div(2.0)
        };
        if taps_per_axis == 1 {
            c = c.round();
        }
        let (lo, hi) = if align {
            (0.0, l - 1.0)
        } else {
            (-0.5, l - 0.5)
        };
        let outside = c.lt(lo).logical_or(c.gt(hi));
        c = match border {
            Border::Zeros => c,
            Border::Clamp => outside.where_(c.clamp(0.0, l - 1.0), &c),
            Border::Reflect => reflect(&c, lo, hi),
        };
        // The source position of each tap and its weight, before the border applies.
        let taps: Vec<(Tensor, Tensor)> = if taps_per_axis == 1 {
            let pos = c.cast(index_dtype).cast(x.dtype());
            vec![(pos, c.ones_like())]
        } else {
            let f = c.floor();
            let t = c.sub(&f);
            let weights: Vec<Tensor> = if taps_per_axis == 2 {
                vec![t.neg().add(1.0), t.clone()]
            } else {
                let a = -0.75;
                let near = |d: &Tensor| d.mul(a + 2.0).sub(a + 3.0).mul(d).mul(d).add(1.0);
                let far = |d: &Tensor| {
                    d.mul(a)
                        .sub(5.0 * a)
                        .mul(d)
                        .add(8.0 * a)
                        .mul(d)
                        .sub(4.0 * a)
                };
                let one_minus = t.neg().add(1.0);
                vec![
                    far(&t.add(1.0)),
                    near(&t),
                    near(&one_minus),
                    far(&one_minus.add(1.0)),
                ]
            };
            let first = if taps_per_axis == 2 { 0.0 } else { -1.0 };
            weights
                .into_iter()
                .enumerate()
                .map(|(j, w)| (f.add(first + j as f64), w))
                .collect()
        };
        // The border applied to each tap's position: an index into the axis and a weight.
        let fixed = taps
            .into_iter()
            .map(|(pos, w)| {
                let (pos, w) = match border {
                    Border::Zeros => {
                        let valid = pos.ge(0.0).logical_and(pos.le(l - 1.0));
                        (pos.clamp(0.0, l - 1.0), valid.where_(&w, 0.0))
                    }
                    Border::Clamp => (pos.clamp(0.0, l - 1.0), w),
                    Border::Reflect => {
                        let p = reflect(&pos, lo, hi).cast(index_dtype).cast(x.dtype());
                        (p.clamp(0.0, l - 1.0), w)
                    }
                };
                (pos, w)
            })
            .collect();
        axes_taps.push(fixed);
    }
    // Every combination of the axes' taps: one gather from the flattened input each.
    let n = xd[0].clone();
    let outs: Vec<Dim> = gd[1..r - 1].to_vec();
    let o_flat = Dim::product(&outs);
    let flat_x = x.reshape(Shape::new([n.clone(), xd[1].clone(), Dim::known(plane)]));
    let full = Shape::new([n.clone(), xd[1].clone(), o_flat.clone()]);
    let view = Shape::new([n.clone(), Dim::known(1), o_flat]);
    let combos = (taps_per_axis as u64)
        .checked_pow(k as u32)
        .filter(|&c| c <= MAX_GRID_TAPS)
        .ok_or_else(|| {
            super::OpError(format!(
                "{k} spatial axes need more than the {MAX_GRID_TAPS} gathers supported"
            ))
        })?;
    let mut acc: Option<Tensor> = None;
    for combo in 0..combos {
        let mut rest = combo;
        let mut index: Option<Tensor> = None;
        let mut weight: Option<Tensor> = None;
        let mut stride = 1u64;
        for i in (0..k).rev() {
            let j = (rest % taps_per_axis as u64) as usize;
            rest /= taps_per_axis as u64;
            let (p, w) = &axes_taps[i][j];
            let term = p.cast(index_dtype).mul(stride as f64);
            index = Some(index.map_or(term.clone(), |s| s.add(&term)));
            weight = Some(weight.map_or(w.clone(), |s| s.mul(w)));
            stride *= sizes[i];
        }
        let (Some(index), Some(weight)) = (index, weight) else {
            bail!("GridSample needs a spatial axis");
        };
        let index = index.reshape(view.clone()).expand(full.clone());
        let y = flat_x.gather(2, &index).mul(weight.reshape(view.clone()));
        acc = Some(match acc {
            Some(a) => a.add(&y),
            None => y,
        });
    }
    let Some(y) = acc else {
        bail!("GridSample needs a spatial axis");
    };
    let mut out = vec![n, xd[1].clone()];
    out.extend(outs);
    Ok(vec![Value::tensor(y.reshape(Shape::new(out)))])
}

pub fn affine_grid(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let theta = cx.tensor(0)?;
    need_float(&theta, "AffineGrid")?;
    let size = cx.ints_input(1, "size")?;
    let k = size.len().saturating_sub(2);
    if !(k == 2 || k == 3) {
        bail!("size {size:?} must be [N, C, H, W] or [N, C, D, H, W]");
    }
    let td = dims_of(&theta);
    if theta.rank() != 3
        || td[1] != Dim::known(k as u64)
        || td[2] != Dim::known(k as u64 + 1)
        || td[0]
            .as_known()
            .is_some_and(|n| Ok(n) != u64::try_from(size[0]))
    {
        bail!("theta {} does not fit size {size:?}", theta.shape());
    }
    let spatial: Vec<u64> = size[2..]
        .iter()
        .map(|&v| u64::try_from(v).ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| super::OpError(format!("size {size:?} must be positive")))?;
    let points = spatial
        .iter()
        .try_fold(1u64, |a, &n| a.checked_mul(n))
        .filter(|&p| p.saturating_mul(k as u64 + 1) <= MAX_FOLDED_ELEMENTS)
        .ok_or_else(|| {
            super::OpError(format!(
                "size {size:?} needs a base grid larger than the {MAX_FOLDED_ELEMENTS} elements the importer folds"
            ))
        })?;
    let align = cx.attr_i("align_corners", 0) != 0;
    let coord = |i: u64, n: u64| -> f64 {
        if align {
            if n == 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f64 / (n - 1) as f64
            }
        } else {
            -1.0 + (2 * i + 1) as f64 / n as f64
        }
    };
    // The base grid [points, k + 1]: (x, y[, z], 1) with x along the last axis.
    let mut base = Vec::with_capacity(points as usize * (k + 1));
    for p in 0..points {
        let mut rest = p;
        let mut pos = vec![0u64; k];
        for i in (0..k).rev() {
            pos[i] = rest % spatial[i];
            rest /= spatial[i];
        }
        for i in (0..k).rev() {
            base.push(coord(pos[i], spatial[i]));
        }
        base.push(1.0);
    }
    let base = cx.g.constant(Array::from_f64_cast(
        theta.dtype(),
        &[1, points as usize, k + 1],
        &base,
    ));
    let grid = base.matmul(&theta.transpose(1, 2));
    let mut out = vec![td[0].clone()];
    out.extend(spatial.iter().map(|&v| Dim::known(v)));
    out.push(Dim::known(k as u64));
    Ok(vec![Value::tensor(grid.reshape(Shape::new(out)))])
}

pub fn col2im(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "Col2Im")?;
    let image = cx.ints_input(1, "image_shape")?;
    let block = cx.ints_input(2, "block_shape")?;
    let k = image.len();
    if k == 0 || block.len() != k || x.rank() != 3 {
        bail!(
            "Col2Im needs input [N, C*prod(block), L] and equally long image_shape and block_shape; got {}, {image:?}, {block:?}",
            x.shape()
        );
    }
    let image = positive(image, "image_shape")?;
    let kernel = positive(block, "block_shape")?;
    let list = |name: &str, default: u64, len: usize| -> OpResult<Vec<u64>> {
        let v = match cx.attr_ints(name) {
            Some(v) if v.len() == len && v.iter().all(|&p| (0..=MAX_DIM as i64).contains(&p)) => {
                v.into_iter().map(|p| p as u64).collect()
            }
            Some(v) => bail!("{name} {v:?} must be {len} non-negative entries"),
            None => vec![default; len],
        };
        Ok(v)
    };
    let strides = list("strides", 1, k)?;
    let dilations = list("dilations", 1, k)?;
    let pads = list("pads", 0, 2 * k)?;
    if strides.contains(&0) || dilations.contains(&0) {
        bail!("strides and dilations must be positive");
    }
    let xd = dims_of(&x);
    let rows = known_dim(&xd, 1, "Col2Im")?;
    let cols = known_dim(&xd, 2, "Col2Im")?;
    let taps = kernel
        .iter()
        .try_fold(1u64, |a, &v| a.checked_mul(v))
        .filter(|&t| t <= MAX_FOLDED_ELEMENTS)
        .ok_or_else(|| super::OpError(format!("block_shape {kernel:?} is too large")))?;
    if rows % taps != 0 {
        bail!("the input's {rows} rows are not a multiple of the block's {taps} elements");
    }
    let c = rows / taps;
    if c.saturating_mul(taps).saturating_mul(taps) > MAX_FOLDED_ELEMENTS {
        bail!("{c} channels of {taps}-element blocks need too large a scatter kernel");
    }
    let mut blocks = Vec::with_capacity(k);
    for i in 0..k {
        let span = (kernel[i] - 1)
            .saturating_mul(dilations[i])
            .saturating_add(1);
        let padded = image[i].saturating_add(pads[i]).saturating_add(pads[i + k]);
        if padded < span {
            bail!("the block's extent {span} exceeds the padded image {padded}");
        }
        blocks.push((padded - span) / strides[i] + 1);
    }
    if blocks.iter().try_fold(1u64, |a, &b| a.checked_mul(b)) != Some(cols) {
        bail!("the input's {cols} columns do not match the {blocks:?} block positions");
    }
    // Col2Im is the transposed convolution, per channel, with the identity kernel.
    let mut shape = vec![xd[0].clone(), Dim::known(rows)];
    shape.extend(blocks.iter().map(|&b| Dim::known(b)));
    let xs = x.reshape(Shape::new(shape));
    let mut w_shape = vec![(c * taps) as usize, 1];
    w_shape.extend(kernel.iter().map(|&v| v as usize));
    let tu = taps as usize;
    let mut eye = vec![0.0; (c * taps * taps) as usize];
    for row in 0..(c as usize * tu) {
        eye[row * tu + row % tu] = 1.0;
    }
    let w =
        cx.g.constant(Array::from_f64_cast(x.dtype(), &w_shape, &eye));
    let t = Transposed {
        kernel,
        strides,
        dilations,
        extents: (0..k)
            .map(|i| Extent::Sized {
                begin: pads[i] as i64,
                size: image[i] as i64,
            })
            .collect(),
        groups: c,
        per_out: 1,
    };
    Ok(vec![Value::tensor(transposed_conv(&xs, &w, &t)?)])
}

pub fn center_crop_pad(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let shape = cx.ints_input(1, "shape")?;
    let r = x.rank();
    let axes = match cx.attr_ints("axes") {
        Some(a) => distinct_axes(&a, r)?,
        None => (0..r).collect(),
    };
    if shape.len() != axes.len() {
        bail!("shape has {} entries for {} axes", shape.len(), axes.len());
    }
    let xd = dims_of(&x);
    let mut edits = Vec::with_capacity(axes.len());
    for (&a, &want) in axes.iter().zip(&shape) {
        let n = known_dim(&xd, a, "CenterCropPad")? as i64;
        if want <= 0 || want as u64 > MAX_DIM {
            bail!("target size {want} must be in 1..={MAX_DIM}");
        }
        let diff = want - n;
        let begin = if diff >= 0 { diff / 2 } else { -((-diff) / 2) };
        edits.push((a, begin, diff - begin));
    }
    Ok(vec![Value::tensor(pad_or_crop(&x, &edits)?)])
}

/// Bilinear samples of `flat` (`[N, G, C/G, H*W]`) at pixel positions `py`, `px` (each
/// `[N, G, S]`), zero outside the image: `[N, G, C/G, S]`.
fn bilinear_at(flat: &Tensor, py: &Tensor, px: &Tensor, h: u64, w: u64) -> OpResult<Tensor> {
    let index_dtype = if h.saturating_mul(w) <= i32::MAX as u64 {
        kiln_ir::DType::I32
    } else {
        kiln_ir::DType::I64
    };
    let (y0, x0) = (py.floor(), px.floor());
    let (ty, tx) = (py.sub(&y0), px.sub(&x0));
    let fd = dims_of(flat);
    let pd = dims_of(py);
    let view = Shape::new([pd[0].clone(), pd[1].clone(), Dim::known(1), pd[2].clone()]);
    let full = Shape::new([fd[0].clone(), fd[1].clone(), fd[2].clone(), pd[2].clone()]);
    let mut acc: Option<Tensor> = None;
    for (dy, dx) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)] {
        let (yi, xi) = (y0.add(dy), x0.add(dx));
        let wy = if dy == 0.0 {
            ty.neg().add(1.0)
        } else {
            ty.clone()
        };
        let wx = if dx == 0.0 {
            tx.neg().add(1.0)
        } else {
            tx.clone()
        };
        let valid = yi
            .ge(0.0)
            .logical_and(yi.le(h as f64 - 1.0))
            .logical_and(xi.ge(0.0))
            .logical_and(xi.le(w as f64 - 1.0));
        let weight = valid.where_(wy.mul(&wx), 0.0);
        let index = yi
            .clamp(0.0, h as f64 - 1.0)
            .cast(index_dtype)
            .mul(w as f64)
            .add(xi.clamp(0.0, w as f64 - 1.0).cast(index_dtype))
            .reshape(view.clone())
            .expand(full.clone());
        let y = flat.gather(3, &index).mul(weight.reshape(view.clone()));
        acc = Some(match acc {
            Some(a) => a.add(&y),
            None => y,
        });
    }
    acc.ok_or_else(|| super::OpError("no taps".into()))
}

pub fn deform_conv(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let w = cx.tensor(1)?;
    let offset = cx.tensor(2)?;
    need_float(&x, "DeformConv")?;
    if x.rank() != 4 || w.rank() != 4 || offset.rank() != 4 {
        bail!(
            "DeformConv supports 2-D convolutions; got X {}, W {} and offset {}",
            x.shape(),
            w.shape(),
            offset.shape()
        );
    }
    if w.dtype() != x.dtype() || offset.dtype() != x.dtype() {
        bail!("X, W and offset need one dtype");
    }
    let (xd, wd, od) = (dims_of(&x), dims_of(&w), dims_of(&offset));
    let [c, h, wi] = [1, 2, 3].map(|a| known_dim(&xd, a, "DeformConv"));
    let (c, h, wi) = (c?, h?, wi?);
    let [oc, cg, kh, kw] = [0, 1, 2, 3].map(|a| known_dim(&wd, a, "DeformConv's weight"));
    let (oc, cg, kh, kw) = (oc?, cg?, kh?, kw?);
    let [oh, ow] = [2, 3].map(|a| known_dim(&od, a, "DeformConv's offset"));
    let (oh, ow) = (oh?, ow?);
    if let Some(ks) = cx.attr_ints("kernel_shape")
        && positive(ks, "kernel_shape")? != [kh, kw]
    {
        bail!("kernel_shape does not match the weight {}", w.shape());
    }
    let group = cx.attr_i("group", 1);
    let offset_group = cx.attr_i("offset_group", 1);
    if group <= 0 || offset_group <= 0 {
        bail!("group and offset_group must be positive");
    }
    let (group, offset_group) = (group as u64, offset_group as u64);
    let taps = kh.saturating_mul(kw);
    if cg.saturating_mul(group) != c
        || oc % group != 0
        || c % offset_group != 0
        || Some(offset_group.saturating_mul(taps).saturating_mul(2)) != od[1].as_known()
        || od[0] != xd[0]
    {
        bail!(
            "X {}, W {} and offset {} do not fit group {group} and offset_group {offset_group}",
            x.shape(),
            w.shape(),
            offset.shape()
        );
    }
    let list = |name: &str, default: i64, len: usize| -> OpResult<Vec<i64>> {
        match cx.attr_ints(name) {
            Some(v) if v.len() == len && v.iter().all(|&p| (0..=MAX_DIM as i64).contains(&p)) => {
                Ok(v)
            }
            Some(v) => bail!("{name} {v:?} must be {len} non-negative entries"),
            None => Ok(vec![default; len]),
        }
    };
    let strides = list("strides", 1, 2)?;
    let dilations = list("dilations", 1, 2)?;
    let pads = list("pads", 0, 4)?;
    if strides.contains(&0) || dilations.contains(&0) {
        bail!("strides and dilations must be positive");
    }
    let points = taps.saturating_mul(oh).saturating_mul(ow);
    if points > MAX_FOLDED_ELEMENTS {
        bail!(
            "{points} sampling points are more than the {MAX_FOLDED_ELEMENTS} the importer folds"
        );
    }
    for (a, (&n, &o)) in [h, wi].iter().zip(&[oh, ow]).enumerate() {
        let k = if a == 0 { kh } else { kw } as i64;
        let span = (k - 1).saturating_mul(dilations[a]).saturating_add(1);
        let want = (n as i64 + pads[a] + pads[a + 2])
            .saturating_sub(span)
            .div_euclid(strides[a])
            + 1;
        if want != o as i64 {
            bail!("the offset's output size {o} on axis {a} should be {want}");
        }
    }
    // The kernel taps' base positions [taps, oh*ow] per spatial axis.
    let (mut by, mut bx) = (Vec::new(), Vec::new());
    for ki in 0..kh as i64 {
        for kj in 0..kw as i64 {
            for i in 0..oh as i64 {
                for j in 0..ow as i64 {
                    by.push((-pads[0] + strides[0] * i + ki * dilations[0]) as f64);
                    bx.push((-pads[1] + strides[1] * j + kj * dilations[1]) as f64);
                }
            }
        }
    }
    let g = cx.g.clone();
    let n = xd[0].clone();
    let p = Dim::known(oh * ow);
    let (t, og) = (Dim::known(taps), Dim::known(offset_group));
    let base = |v: &[f64]| {
        g.constant(Array::from_f64_cast(
            x.dtype(),
            &[1, 1, taps as usize, (oh * ow) as usize],
            v,
        ))
    };
    let off = offset.reshape(Shape::new([
        n.clone(),
        og.clone(),
        t.clone(),
        Dim::known(2),
        p.clone(),
    ]));
    let sample_shape = Shape::new([n.clone(), og.clone(), Dim::known(taps * oh * ow)]);
    let py = base(&by)
        .add(off.slice(3, 0, 1, 1).squeeze(3))
        .reshape(sample_shape.clone());
    let px = base(&bx)
        .add(off.slice(3, 1, 2, 1).squeeze(3))
        .reshape(sample_shape);
    let flat = x.reshape(Shape::new([
        n.clone(),
        og.clone(),
        Dim::known(c / offset_group),
        Dim::known(h * wi),
    ]));
    let mut s = bilinear_at(&flat, &py, &px, h, wi)?;
    if cx.opt_input(4).is_some() {
        let mask = cx.tensor(4)?;
        s = s.mul(mask.reshape(Shape::new([
            n.clone(),
            og,
            Dim::known(1),
            Dim::known(taps * oh * ow),
        ])));
    }
    // [N, C, taps, P] -> per group [N, g, C/g*taps, P], contracted with W [g, OC/g, C/g*taps].
    let s = s.reshape(Shape::new([
        n.clone(),
        Dim::known(group),
        Dim::known(cg * taps),
        p,
    ]));
    let wm = w.reshape(Shape::new([
        Dim::known(1),
        Dim::known(group),
        Dim::known(oc / group),
        Dim::known(cg * taps),
    ]));
    let mut y = wm.matmul(&s).reshape(Shape::new([
        n,
        Dim::known(oc),
        Dim::known(oh),
        Dim::known(ow),
    ]));
    if cx.opt_input(3).is_some() {
        let b = cx.tensor(3)?;
        y = y.add(b.reshape(Shape::new(axis_view(3, 0, Dim::known(oc)))));
    }
    Ok(vec![Value::tensor(y)])
}

pub fn roi_align(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let rois = cx.tensor(1)?;
    let batch = cx.tensor(2)?;
    need_float(&x, "RoiAlign")?;
    let (xd, rd, bd) = (dims_of(&x), dims_of(&rois), dims_of(&batch));
    if x.rank() != 4
        || rois.rank() != 2
        || rd[1] != Dim::known(4)
        || batch.rank() != 1
        || bd[0] != rd[0]
        || !batch.dtype().is_int()
        || rois.dtype() != x.dtype()
    {
        bail!(
            "RoiAlign needs X [N, C, H, W], rois [R, 4] of its dtype and integer batch_indices [R]; got {}, {} and {}",
            x.shape(),
            rois.shape(),
            batch.shape()
        );
    }
    let (h, w) = (
        known_dim(&xd, 2, "RoiAlign")?,
        known_dim(&xd, 3, "RoiAlign")?,
    );
    let (oh, ow) = (cx.attr_i("output_height", 1), cx.attr_i("output_width", 1));
    let ratio = cx.attr_i("sampling_ratio", 0);
    if ratio == 0 {
        bail!("sampling_ratio 0 (a sample count that depends on each roi's size) is not supported");
    }
    let samples = |o: i64| {
        u64::try_from(o)
            .ok()
            .filter(|&o| o > 0)
            .zip(u64::try_from(ratio).ok())
            .and_then(|(o, s)| o.checked_mul(s).map(|n| (o, n)))
    };
    let (Some((oh, a)), Some((ow, b))) = (samples(oh), samples(ow)) else {
        bail!("output_height, output_width and sampling_ratio must be positive");
    };
    if a.saturating_mul(b) > MAX_FOLDED_ELEMENTS || h.saturating_mul(w) > MAX_DIM {
        bail!("{a}x{b} samples per roi are too many");
    }
    let scale = cx.attr_f("spatial_scale", 1.0);
    if !scale.is_finite() {
        bail!("spatial_scale {scale} must be finite");
    }
    let default_mode = if cx.opset < 16 {
        "output_half_pixel"
    } else {
        "half_pixel"
    };
    let half_pixel = match cx
        .attr_s("coordinate_transformation_mode", default_mode)
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => bail!("coordinate_transformation_mode {other:?} is not supported"),
    };
    let max = match cx.attr_s("mode", "avg").as_str() {
        "avg" => false,
        "max" => true,
        other => bail!("mode {other:?} is not supported"),
    };
    let s = ratio as u64;
    let off = if half_pixel { 0.5 } else { 0.0 };
    let col = |i: i64| rois.slice(1, i, i + 1, 1).mul(scale).sub(off);
    let (x0, y0, x1, y1) = (col(0), col(1), col(2), col(3));
    let (mut rw, mut rh) = (x1.sub(&x0), y1.sub(&y0));
    if !half_pixel {
        rw = rw.maximum(1.0);
        rh = rh.maximum(1.0);
    }
    // Sample k of a bin lies at (bin + (k + 0.5) / s) bins from the roi's start.
    let steps = |o: u64| -> Vec<f64> {
        (0..o * s)
            .map(|i| (i / s) as f64 + ((i % s) as f64 + 0.5) / s as f64)
            .collect()
    };
    let g = cx.g.clone();
    let at = |start: &Tensor, size: &Tensor, o: u64, len: u64| {
        let c = g.constant(Array::from_f64_cast(
            x.dtype(),
            &[1, (o * s) as usize],
            &steps(o),
        ));
        let v = start.add(size.div(o as f64).mul(&c));
        let outside = v.lt(-1.0).logical_or(v.gt(len as f64));
        let v = v.maximum(0.0);
        let low = v.floor();
        let over = low.ge(len as f64 - 1.0);
        let low = over.where_(len as f64 - 1.0, &low);
        let high = over.where_(len as f64 - 1.0, low.add(1.0));
        let frac = over.where_(0.0, v.sub(&low));
        (outside, low, high, frac)
    };
    let (out_y, yl, yh, ly) = at(&y0, &rh, oh, h);
    let (out_x, xl, xh, lx) = at(&x0, &rw, ow, w);
    let r = rd[0].clone();
    // Samples are gathered from the flattened X at (batch * C + channel) * H * W + y * W + x.
    let c = known_dim(&xd, 1, "RoiAlign")?;
    let total = xd[0]
        .as_known()
        .and_then(|n| n.checked_mul(c)?.checked_mul(h * w));
    let index_dtype = match total {
        Some(t) if t <= i32::MAX as u64 => kiln_ir::DType::I32,
        _ => kiln_ir::DType::I64,
    };
    let flat_x = x.reshape(Shape::new([Dim::product(&xd)]));
    let channels = cx.g.iota(index_dtype, Shape::new([1, c as usize, 1]), 1);
    let base = batch
        .cast(index_dtype)
        .reshape(Shape::new([r.clone(), Dim::known(1), Dim::known(1)]))
        .mul(c as f64)
        .add(&channels)
        .mul((h * w) as f64);
    let grid = |t: &Tensor, axis: i64| t.unsqueeze(axis);
    let outside = grid(&out_y, 2).logical_or(grid(&out_x, 1));
    let view = Shape::new([r.clone(), Dim::known(1), Dim::known(a * b)]);
    let samples = Shape::new([r.clone(), Dim::known(c), Dim::known(a * b)]);
    let corners = [
        (&yl, &xl, ly.neg().add(1.0), lx.neg().add(1.0)),
        (&yl, &xh, ly.neg().add(1.0), lx.clone()),
        (&yh, &xl, ly.clone(), lx.neg().add(1.0)),
        (&yh, &xh, ly.clone(), lx.clone()),
    ];
    let mut acc: Option<Tensor> = None;
    for (yi, xi, wy, wx) in corners {
        let pos = grid(&yi.cast(index_dtype), 2)
            .mul(w as f64)
            .add(grid(&xi.cast(index_dtype), 1))
            .reshape(view.clone());
        let index = base
            .add(&pos)
            .reshape(Shape::new([Dim::product(samples.dims())]));
        let weight = outside
            .where_(0.0, grid(&wy, 2).mul(grid(&wx, 1)))
            .reshape(view.clone());
        let v = flat_x
            .gather(0, &index)
            .reshape(samples.clone())
            .mul(&weight);
        acc = Some(match acc {
            None => v,
            Some(p) if max => p.maximum(&v),
            Some(p) => p.add(&v),
        });
    }
    let Some(v) = acc else {
        bail!("no samples");
    };
    let binned = v.reshape(Shape::new([
        r.clone(),
        Dim::known(c),
        Dim::known(oh),
        Dim::known(s),
        Dim::known(ow),
        Dim::known(s),
    ]));
    let y = if max {
        binned.max([3i64, 5], false)
    } else {
        binned.mean([3i64, 5], false)
    };
    Ok(vec![Value::tensor(y)])
}
