//! Neural-network ops: MatMul, Gemm, Conv (1-D and 2-D), max/average/Lp/global pooling and
//! MaxUnpool, and the normalisations (batch in inference mode, instance, layer, group, Lp,
//! mean-variance).

use super::{NodeCx, OpError, OpResult, axes, axis, bail, dims_of, need_float};
use crate::limits::MAX_DIM;
use crate::value::Value;
use kiln::{ConvOpts, Tensor};
use kiln_ir::{DType, Dim, Shape, WindowOp};

pub fn matmul(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let a = cx.tensor(0)?;
    let b = cx.tensor(1)?;
    if a.dtype() != b.dtype() {
        bail!(
            "operands have different dtypes: {} and {}",
            a.dtype(),
            b.dtype()
        );
    }
    Ok(vec![Value::tensor(a.matmul(&b))])
}

pub fn gemm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let mut a = cx.tensor(0)?;
    let mut b = cx.tensor(1)?;
    if a.rank() != 2 || b.rank() != 2 {
        bail!(
            "Gemm needs rank-2 A and B, got {} and {}",
            a.shape(),
            b.shape()
        );
    }
    if cx.attr_i("transA", 0) != 0 {
        a = a.t();
    }
    if cx.attr_i("transB", 0) != 0 {
        b = b.t();
    }
    let (alpha, beta) = (cx.attr_f("alpha", 1.0), cx.attr_f("beta", 1.0));
    let mut y = a.matmul(&b);
    if alpha != 1.0 {
        y = y.mul(alpha);
    }
    if cx.opt_input(2).is_some() {
        let c = cx.tensor(2)?;
        y = y.add(&if beta == 1.0 { c } else { c.mul(beta) });
    }
    Ok(vec![Value::tensor(y)])
}

/// Spatial geometry of a conv or pool node.
struct Geometry {
    kernel: Vec<u64>,
    strides: Vec<u64>,
    dilations: Vec<u64>,
    /// `(begin, end)` per spatial axis, ceil_mode's extra end padding included.
    pads: Vec<(u64, u64)>,
    /// The pads the model gives or auto_pad computes (without ceil_mode's extra).
    explicit: Vec<(u64, u64)>,
}

fn positive(v: Vec<i64>, what: &str) -> OpResult<Vec<u64>> {
    v.into_iter()
        .map(|x| match u64::try_from(x) {
            Ok(x) if x > 0 => Ok(x),
            _ => bail!("{what} must be positive, got {x}"),
        })
        .collect()
}

fn geometry(cx: &NodeCx<'_>, spatial: &[Dim], kernel: Vec<u64>, ceil: bool) -> OpResult<Geometry> {
    let k = spatial.len();
    if kernel.len() != k {
        bail!(
            "kernel_shape has {} entries for {k} spatial axes",
            kernel.len()
        );
    }
    let strides = positive(
        cx.attr_ints("strides").unwrap_or_else(|| vec![1; k]),
        "strides",
    )?;
    let dilations = positive(
        cx.attr_ints("dilations").unwrap_or_else(|| vec![1; k]),
        "dilations",
    )?;
    if strides.len() != k || dilations.len() != k {
        bail!("strides/dilations need {k} entries");
    }
    let auto_pad = cx.attr_s("auto_pad", "NOTSET");
    let mut pads = Vec::with_capacity(k);
    match auto_pad.as_str() {
        "NOTSET" => {
            let p = cx.attr_ints("pads").unwrap_or_else(|| vec![0; 2 * k]);
            if p.len() != 2 * k || p.iter().any(|&x| x < 0) {
                bail!("pads {p:?} must be {} non-negative entries", 2 * k);
            }
            for i in 0..k {
                pads.push((p[i] as u64, p[i + k] as u64));
            }
        }
        "VALID" => pads = vec![(0, 0); k],
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..k {
                let Some(n) = spatial[i].as_known() else {
                    bail!("auto_pad {auto_pad} needs known spatial sizes");
                };
                let out = n.div_ceil(strides[i]);
                let span = span_of(kernel[i], dilations[i])?;
                let total = (out.max(1) - 1)
                    .checked_mul(strides[i])
                    .and_then(|v| v.checked_add(span))
                    .ok_or_else(|| OpError("the padding overflows".into()))?
                    .saturating_sub(n);
                let small = total / 2;
                pads.push(if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                });
            }
        }
        other => bail!("auto_pad {other:?} is not supported"),
    }
    let mut g = Geometry {
        kernel,
        strides,
        dilations,
        explicit: pads.clone(),
        pads,
    };
    if ceil {
        for (i, d) in spatial.iter().enumerate() {
            let Some(n) = d.as_known() else {
                bail!("ceil_mode needs known spatial sizes");
            };
            let span = span_of(g.kernel[i], g.dilations[i])?;
            let overflow = || OpError("the padding overflows".into());
            let padded = n
                .checked_add(g.pads[i].0)
                .and_then(|v| v.checked_add(g.pads[i].1))
                .ok_or_else(overflow)?;
            if padded < span {
                continue;
            }
            let mut out = (padded - span).div_ceil(g.strides[i]) + 1;
            if (out - 1).saturating_mul(g.strides[i]) >= n.saturating_add(g.pads[i].0) {
                out -= 1;
            }
            let need = (out - 1)
                .checked_mul(g.strides[i])
                .and_then(|v| v.checked_add(span))
                .ok_or_else(overflow)?;
            g.pads[i].1 += need.saturating_sub(padded);
        }
    }
    Ok(g)
}

/// The extent a kernel of `k` taps with dilation `d` covers.
fn span_of(k: u64, d: u64) -> OpResult<u64> {
    (k - 1)
        .checked_mul(d)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| OpError(format!("kernel {k} with dilation {d} overflows")))
}

/// Lifts a 1-D spatial op to 2-D (`[N, C, L]` → `[N, C, 1, L]`).
fn lift_1d(t: &Tensor) -> Tensor {
    t.unsqueeze(2)
}

pub fn conv(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let w = cx.tensor(1)?;
    need_float(&x, "Conv")?;
    let r = x.rank();
    if !(r == 3 || r == 4) || w.rank() != r {
        bail!(
            "Conv supports 1-D and 2-D convolutions; got input {} and weight {}",
            x.shape(),
            w.shape()
        );
    }
    let wd = dims_of(&w);
    let kernel: Vec<u64> = match cx.attr_ints("kernel_shape") {
        Some(k) => positive(k, "kernel_shape")?,
        None => wd[2..]
            .iter()
            .map(|d| d.as_known().ok_or(()))
            .collect::<Result<_, _>>()
            .map_err(|()| super::OpError("the kernel shape must be known".into()))?,
    };
    let xd = dims_of(&x);
    let geo = geometry(cx, &xd[2..], kernel, false)?;
    let groups = cx.attr_i("group", 1);
    if groups <= 0 {
        bail!("group must be positive, got {groups}");
    }
    let (mut x2, w2) = if r == 3 {
        (lift_1d(&x), lift_1d(&w))
    } else {
        (x.clone(), w.clone())
    };
    let mut pads = geo.pads.clone();
    let (mut strides, mut dil) = (geo.strides.clone(), geo.dilations.clone());
    if r == 3 {
        pads.insert(0, (0, 0));
        strides.insert(0, 1);
        dil.insert(0, 1);
    }
    let symmetric = pads.iter().all(|(b, e)| b == e);
    let padding = if symmetric {
        [pads[0].0, pads[1].0]
    } else {
        x2 = x2.pad(&[(0, 0), (0, 0), pads[0], pads[1]], 0.0);
        [0, 0]
    };
    let opts = ConvOpts {
        stride: [strides[0], strides[1]],
        padding,
        dilation: [dil[0], dil[1]],
        groups: groups as u64,
    };
    let mut y = x2.conv2d(&w2, opts);
    if r == 3 {
        y = y.squeeze(2);
    }
    if cx.opt_input(2).is_some() {
        let b = cx.tensor(2)?;
        let mut view = vec![Dim::known(1); r - 1];
        view[0] = b.shape().dims().first().cloned().unwrap_or(Dim::known(1));
        y = y.add(b.reshape(Shape::new(view)));
    }
    Ok(vec![Value::tensor(y)])
}

/// Most taps a dilated or widely padded pooling window is unrolled into.
const MAX_POOL_TAPS: u64 = 512;

/// A windowed reduction of `x`'s trailing spatial axes with the node's geometry (`fill`
/// pads). A window with dilations, or padding as wide as the window, becomes one strided
/// slice per tap combined elementwise.
fn window_reduce(x: &Tensor, op: WindowOp, geo: &Geometry, fill: f64) -> OpResult<Tensor> {
    let narrow = geo
        .pads
        .iter()
        .zip(&geo.kernel)
        .all(|(&(b, e), &k)| b < k && e < k);
    if narrow && geo.dilations.iter().all(|&d| d == 1) {
        return Ok(x.window(op, &geo.kernel, &geo.strides, &geo.pads));
    }
    let (taps, _) = window_taps(x, geo, fill)?;
    taps.into_iter()
        .map(|(_, t)| t)
        .reduce(|a, y| match op {
            WindowOp::Max => a.maximum(&y),
            WindowOp::Sum => a.add(&y),
        })
        .ok_or_else(|| OpError("the window is empty".into()))
}

/// The window unrolled: for each tap, its offset per spatial axis and the strided slice of
/// the `fill`-padded `x` it reads at every output position; and the output's spatial sizes.
#[allow(clippy::type_complexity)]
fn window_taps(
    x: &Tensor,
    geo: &Geometry,
    fill: f64,
) -> OpResult<(Vec<(Vec<u64>, Tensor)>, Vec<u64>)> {
    let taps = geo
        .kernel
        .iter()
        .try_fold(1u64, |a, &k| a.checked_mul(k))
        .filter(|&t| t <= MAX_POOL_TAPS);
    let Some(taps) = taps else {
        bail!(
            "a dilated or widely padded window of {:?} has more than {MAX_POOL_TAPS} taps",
            geo.kernel
        );
    };
    let r = x.rank();
    let k = geo.kernel.len();
    let xd = dims_of(x);
    let mut pads = vec![(0, 0); r - k];
    pads.extend(geo.pads.iter().copied());
    let xp = x.pad(&pads, fill);
    let mut outs = Vec::with_capacity(k);
    for i in 0..k {
        let Some(n) = xd[r - k + i].as_known() else {
            bail!("an unrolled window needs known spatial sizes");
        };
        let padded = n
            .checked_add(geo.pads[i].0)
            .and_then(|v| v.checked_add(geo.pads[i].1))
            .ok_or_else(|| OpError("the padding overflows".into()))?;
        let span = span_of(geo.kernel[i], geo.dilations[i])?;
        if padded < span {
            bail!("the window's extent {span} exceeds the padded input {padded}");
        }
        outs.push((padded - span) / geo.strides[i] + 1);
    }
    let mut out = Vec::with_capacity(taps as usize);
    for t in 0..taps {
        let mut rest = t;
        let mut offsets = vec![0; k];
        let mut y = xp.clone();
        for i in (0..k).rev() {
            let off = rest % geo.kernel[i];
            rest /= geo.kernel[i];
            offsets[i] = off;
            let start = off * geo.dilations[i];
            let stop = start + (outs[i] - 1) * geo.strides[i] + 1;
            y = y.slice(
                (r - k + i) as i64,
                start as i64,
                stop as i64,
                geo.strides[i],
            );
        }
        out.push((offsets, y));
    }
    Ok((out, outs))
}

/// Max pooling with ONNX's Indices output: each maximum's offset in the flattened input
/// (row-major, or column-major over the spatial axes for `storage_order` 1); the first
/// maximum in scan order wins ties.
fn max_pool_with_indices(cx: &NodeCx<'_>, x: &Tensor, geo: &Geometry) -> OpResult<[Tensor; 2]> {
    let (taps, outs) = window_taps(x, geo, f64::NEG_INFINITY)?;
    let xd = dims_of(x);
    let k = geo.kernel.len();
    let sizes: Vec<u64> = xd[2..]
        .iter()
        .map(|d| d.as_known().ok_or(()))
        .collect::<Result<_, _>>()
        .map_err(|()| OpError("Indices need known spatial sizes".into()))?;
    let column_major = match cx.attr_i("storage_order", 0) {
        0 => false,
        1 => true,
        o => bail!("storage_order {o} must be 0 or 1"),
    };
    let elements = |s: &[u64]| {
        s.iter()
            .try_fold(1u64, |a, &v| a.checked_mul(v))
            .filter(|&v| v <= MAX_DIM)
            .ok_or_else(|| OpError("the input's spatial size overflows".into()))
    };
    // Element strides of the spatial axes in the flattened input.
    let strides: Vec<i64> = (0..k)
        .map(|i| {
            elements(if column_major {
                &sizes[..i]
            } else {
                &sizes[i + 1..]
            })
            .map(|v| v as i64)
        })
        .collect::<OpResult<_>>()?;
    let plane = elements(&sizes)?;
    let out_shape = Shape::new(outs.iter().map(|&o| Dim::known(o)).collect::<Vec<_>>());
    let mut base: Option<Tensor> = None;
    for (i, &stride) in strides.iter().enumerate() {
        let coord =
            cx.g.iota(DType::I64, out_shape.clone(), i)
                .mul(geo.strides[i] as f64)
                .sub(geo.pads[i].0 as f64)
                .mul(stride as f64);
        base = Some(match base {
            Some(b) => b.add(&coord),
            None => coord,
        });
    }
    let Some(base) = base else {
        bail!("pooling needs a spatial axis");
    };
    let mut best: Option<(Tensor, Tensor)> = None;
    for (offsets, y) in taps {
        let shift: i64 = (0..k)
            .map(|i| (offsets[i] * geo.dilations[i]) as i64 * strides[i])
            .sum();
        let idx = base.add(shift as f64).expand(y.shape());
        best = Some(match best {
            None => (y, idx),
            Some((v, i)) => {
                let better = y.gt(&v);
                (better.where_(&y, &v), better.where_(&idx, &i))
            }
        });
    }
    let Some((v, i)) = best else {
        bail!("the window is empty");
    };
    let mut nc = vec![xd[0].clone(), xd[1].clone()];
    nc.extend(std::iter::repeat_n(Dim::known(1), k));
    let channel =
        cx.g.iota(DType::I64, Shape::new([&xd[0] * &xd[1]]), 0)
            .reshape(Shape::new(nc))
            .mul(plane as f64);
    Ok([v, i.add(&channel)])
}

/// The window's geometry for a pooling node.
fn pool_geometry(cx: &NodeCx<'_>, x: &Tensor) -> OpResult<Geometry> {
    if x.rank() < 3 {
        bail!("pooling needs rank >= 3, got {}", x.shape());
    }
    let Some(kernel) = cx.attr_ints("kernel_shape") else {
        bail!("attribute kernel_shape is required");
    };
    let kernel = positive(kernel, "kernel_shape")?;
    let xd = dims_of(x);
    let ceil = cx.attr_i("ceil_mode", 0) != 0;
    geometry(cx, &xd[2..], kernel, ceil)
}

/// Average pooling of `x`: the window sums over the counted elements (ONNX's
/// `count_include_pad` counts explicit padding, never ceil_mode's extra end padding).
fn average(cx: &NodeCx<'_>, x: &Tensor, geo: &Geometry) -> OpResult<Tensor> {
    let sum = window_reduce(x, WindowOp::Sum, geo, 0.0)?;
    let include = cx.attr_i("count_include_pad", 0) != 0;
    let xd = dims_of(x);
    let spatial = Shape::new(xd[2..].to_vec());
    let ones = cx.g.ones(spatial, x.dtype());
    let counts = if include {
        let explicit = &geo.explicit;
        let padded = ones.pad(explicit, 1.0);
        let extra = Geometry {
            kernel: geo.kernel.clone(),
            strides: geo.strides.clone(),
            dilations: geo.dilations.clone(),
            pads: geo
                .pads
                .iter()
                .zip(explicit)
                .map(|(g, e)| (g.0 - e.0, g.1 - e.1))
                .collect(),
            explicit: vec![(0, 0); explicit.len()],
        };
        window_reduce(&padded, WindowOp::Sum, &extra, 0.0)?
    } else {
        window_reduce(&ones, WindowOp::Sum, geo, 0.0)?
    };
    Ok(sum.div(&counts))
}

fn pool(cx: &mut NodeCx<'_>, max: bool) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "pooling")?;
    let geo = pool_geometry(cx, &x)?;
    if max && cx.n_outputs() > 1 {
        let [y, i] = max_pool_with_indices(cx, &x, &geo)?;
        return Ok(vec![Value::tensor(y), Value::tensor(i)]);
    }
    let y = if max {
        window_reduce(&x, WindowOp::Max, &geo, f64::NEG_INFINITY)?
    } else {
        average(cx, &x, &geo)?
    };
    Ok(vec![Value::tensor(y)])
}

pub fn lp_pool(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "LpPool")?;
    let p = cx.attr_i("p", 2);
    if !(1..=64).contains(&p) {
        bail!("p={p} is not supported (1 to 64)");
    }
    let geo = pool_geometry(cx, &x)?;
    let powered = match p {
        1 => x.abs(),
        2 => x.square(),
        _ => x.abs().pow(p as f64),
    };
    let s = window_reduce(&powered, WindowOp::Sum, &geo, 0.0)?;
    let y = match p {
        1 => s,
        2 => s.sqrt(),
        _ => s.pow(1.0 / p as f64),
    };
    Ok(vec![Value::tensor(y)])
}

pub fn max_unpool(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let idx = cx.tensor(1)?;
    if !idx.dtype().is_int() || idx.shape() != x.shape() {
        bail!(
            "indices {} ({}) must be integers of the input's shape {}",
            idx.shape(),
            idx.dtype(),
            x.shape()
        );
    }
    let geo = pool_geometry(cx, &x)?;
    let xd = dims_of(&x);
    let mut out: Vec<Dim> = xd[..2].to_vec();
    for (i, d) in xd[2..].iter().enumerate() {
        let Some(n) = d.as_known() else {
            bail!("MaxUnpool needs known spatial sizes");
        };
        let size = n
            .checked_sub(1)
            .and_then(|v| v.checked_mul(geo.strides[i]))
            .and_then(|v| v.checked_add(geo.kernel[i]))
            .and_then(|v| v.checked_sub(geo.explicit[i].0 + geo.explicit[i].1))
            .filter(|&v| v > 0 && v <= MAX_DIM);
        let Some(size) = size else {
            bail!("the output size on spatial axis {i} is out of range");
        };
        out.push(Dim::known(size));
    }
    let total = Dim::product(&out);
    let flat = Shape::new([Dim::product(&xd)]);
    let mut y =
        cx.g.zeros(Shape::new([total]), x.dtype())
            .scatter_add(0, &idx.reshape(flat.clone()), &x.reshape(flat))
            .reshape(Shape::new(out.clone()));
    if cx.opt_input(2).is_some() {
        // A larger output keeps the unpooled values at the start of each axis.
        let shape = cx.ints_input(2, "output_shape")?;
        if shape.len() != x.rank() {
            bail!(
                "output_shape {shape:?} does not fit the input {}",
                x.shape()
            );
        }
        let mut pads = vec![(0, 0); x.rank()];
        for (a, (&want, have)) in shape.iter().zip(&out).enumerate() {
            let extra = match have.as_known() {
                Some(h) => u64::try_from(want).ok().and_then(|w| w.checked_sub(h)),
                None => None,
            };
            match extra {
                Some(e) if a >= 2 && e <= MAX_DIM => pads[a] = (0, e),
                Some(0) => {}
                _ => bail!("output_shape {shape:?} must be at least the unpooled shape {out:?}"),
            }
        }
        y = y.pad(&pads, 0.0);
    }
    Ok(vec![Value::tensor(y)])
}

pub fn max_pool(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    pool(cx, true)
}

pub fn average_pool(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    pool(cx, false)
}

fn spatial_axes(t: &Tensor) -> Vec<i64> {
    (2..t.rank() as i64).collect()
}

pub fn global_average_pool(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "GlobalAveragePool")?;
    Ok(vec![Value::tensor(x.mean(spatial_axes(&x), true))])
}

pub fn global_max_pool(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    Ok(vec![Value::tensor(x.max(spatial_axes(&x), true))])
}

/// A per-channel vector `[C]` viewed to broadcast against `[N, C, ...]` of rank `rank`.
fn channel_view(v: &Tensor, rank: usize) -> Tensor {
    let mut view = vec![Dim::known(1); rank.saturating_sub(1)];
    if let Some(first) = view.first_mut() {
        *first = v.shape().dims().first().cloned().unwrap_or(Dim::known(1));
    }
    v.reshape(Shape::new(view))
}

pub fn batch_norm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    if cx.attr_i("training_mode", 0) != 0 || cx.n_outputs() > 1 && cx.opset >= 14 {
        bail!("BatchNormalization in training mode is not supported");
    }
    let x = cx.tensor(0)?;
    need_float(&x, "BatchNormalization")?;
    let eps = cx.attr_f("epsilon", 1e-5);
    let r = x.rank();
    let [scale, bias, mean, var] = [1, 2, 3, 4].map(|i| cx.tensor(i));
    let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
    let inv = var.add(eps).rsqrt().mul(&scale);
    let y = x
        .sub(channel_view(&mean, r))
        .mul(channel_view(&inv, r))
        .add(channel_view(&bias, r));
    Ok(vec![Value::tensor(y)])
}

pub fn instance_norm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "InstanceNormalization")?;
    let scale = cx.tensor(1)?;
    let bias = cx.tensor(2)?;
    let eps = cx.attr_f("epsilon", 1e-5);
    let r = x.rank();
    let ax = spatial_axes(&x);
    let mean = x.mean(ax.clone(), true);
    let centered = x.sub(&mean);
    let var = centered.square().mean(ax, true);
    let y = centered
        .mul(var.add(eps).rsqrt())
        .mul(channel_view(&scale, r))
        .add(channel_view(&bias, r));
    Ok(vec![Value::tensor(y)])
}

pub fn layer_norm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "LayerNormalization")?;
    let r = x.rank();
    let a = axis(cx.attr_i("axis", -1), r)?;
    let eps = cx.attr_f("epsilon", 1e-5);
    let ax: Vec<i64> = (a as i64..r as i64).collect();
    let mean = x.mean(ax.clone(), true);
    let centered = x.sub(&mean);
    let inv_std = centered.square().mean(ax, true).add(eps).rsqrt();
    let mut y = centered.mul(&inv_std).mul(&cx.tensor(1)?);
    if cx.opt_input(2).is_some() {
        y = y.add(&cx.tensor(2)?);
    }
    let mut out = vec![Value::tensor(y)];
    if cx.n_outputs() > 1 {
        out.push(Value::tensor(mean));
    }
    if cx.n_outputs() > 2 {
        out.push(Value::tensor(inv_std));
    }
    Ok(out)
}

pub fn group_norm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "GroupNormalization")?;
    let groups = cx.attr_i("num_groups", 0);
    let eps = cx.attr_f("epsilon", 1e-5);
    let d = dims_of(&x);
    if groups <= 0 || d.len() < 3 {
        bail!("needs num_groups > 0 and rank >= 3");
    }
    let gd = Dim::known(groups as u64);
    let Some(per) = d[1].exact_div(&gd) else {
        bail!("channels {} do not divide into {groups} groups", d[1]);
    };
    let mut grouped = vec![d[0].clone(), gd.clone(), per];
    grouped.extend_from_slice(&d[2..]);
    let xg = x.reshape(Shape::new(grouped.clone()));
    let ax: Vec<i64> = (2..grouped.len() as i64).collect();
    let mean = xg.mean(ax.clone(), true);
    let centered = xg.sub(&mean);
    let var = centered.square().mean(ax, true);
    let normed = centered.mul(var.add(eps).rsqrt()).reshape(x.shape());
    let r = x.rank();
    let (scale, bias) = (cx.tensor(1)?, cx.tensor(2)?);
    let per_channel = |v: &Tensor| -> Tensor {
        if v.shape().dims().first() == Some(&d[1]) {
            channel_view(v, r)
        } else {
            // Opset 18: one value per group, repeated over the group's channels.
            let per = d[1].exact_div(&gd).unwrap_or(Dim::known(1));
            v.reshape(Shape::new([gd.clone(), Dim::known(1)]))
                .expand(Shape::new([gd.clone(), per]))
                .reshape(Shape::new([d[1].clone()]))
                .reshape(Shape::new({
                    let mut s = vec![Dim::known(1); r - 1];
                    s[0] = d[1].clone();
                    s
                }))
        }
    };
    Ok(vec![Value::tensor(
        normed.mul(per_channel(&scale)).add(per_channel(&bias)),
    )])
}

pub fn lp_norm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "LpNormalization")?;
    let a = axis(cx.attr_i("axis", -1), x.rank())? as i64;
    let norm = match cx.attr_i("p", 2) {
        1 => x.abs().sum(a, true),
        2 => x.square().sum(a, true).sqrt(),
        p => bail!("p={p} is not supported (1 or 2)"),
    };
    Ok(vec![Value::tensor(x.div(&norm))])
}

/// Local response normalisation across channels: `x / (bias + alpha/size * Σ x²)^beta`
/// over a window of `size` channels, clipped at the edges.
pub fn lrn(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "LRN")?;
    let r = x.rank();
    let size = cx.attr_i("size", 0);
    if r < 2 || size <= 0 {
        bail!(
            "LRN needs rank >= 2 and size > 0, got {} and size {size}",
            x.shape()
        );
    }
    let Some(c) = x.shape().dims()[1].as_known() else {
        bail!("LRN needs a known channel count, got {}", x.shape());
    };
    let (alpha, beta, bias) = (
        cx.attr_f("alpha", 1e-4),
        cx.attr_f("beta", 0.75),
        cx.attr_f("bias", 1.0),
    );
    // Reaching past the edges adds nothing, so both reaches are capped at `c - 1`.
    let size = size as u64;
    let reach = |n: u64| n.min(c.saturating_sub(1));
    let (lo, hi) = (reach((size - 1) / 2), reach(size / 2));
    let mut perm: Vec<i64> = (0..r as i64).filter(|&i| i != 1).collect();
    perm.push(1);
    let mut inverse = vec![0i64; r];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p as usize] = i as i64;
    }
    let sq = x.square().permute(perm);
    let sums = sq
        .window(WindowOp::Sum, &[lo + hi + 1], &[1], &[(lo, hi)])
        .permute(inverse);
    let denom = sums.mul(alpha / size as f64).add(bias).pow(beta);
    Ok(vec![Value::tensor(x.div(&denom))])
}

pub fn mean_variance_norm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "MeanVarianceNormalization")?;
    let ax = cx.attr_ints("axes").unwrap_or_else(|| vec![0, 2, 3]);
    axes(&ax, x.rank())?;
    let mean = x.mean(ax.clone(), true);
    let centered = x.sub(&mean);
    let std = centered.square().mean(ax, true).sqrt();
    Ok(vec![Value::tensor(centered.div(std.add(1e-9)))])
}

pub fn rms_norm(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "RMSNormalization")?;
    let r = x.rank();
    let a = axis(cx.attr_i("axis", -1), r)?;
    let eps = cx.attr_f("epsilon", 1e-5);
    let ax: Vec<i64> = (a as i64..r as i64).collect();
    let inv_rms = x.square().mean(ax, true).add(eps).rsqrt();
    Ok(vec![Value::tensor(x.mul(&inv_rms).mul(&cx.tensor(1)?))])
}

/// Negative log-likelihood of `log_prob` (`[N, C, d...]`) at `target` (`[N, d...]`), with
/// optional per-class `weight`, `ignore_index` and ONNX's reduction (`mean` divides by the
/// total weight of the counted targets).
fn nll(
    cx: &NodeCx<'_>,
    log_prob: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
) -> OpResult<Tensor> {
    if log_prob.rank() < 2 || target.rank() + 1 != log_prob.rank() {
        bail!(
            "input {} and target {} do not fit [N, C, d...] and [N, d...]",
            log_prob.shape(),
            target.shape()
        );
    }
    let t = target.cast(kiln_ir::DType::I64);
    let classes = cx.g.iota(kiln_ir::DType::I64, log_prob.shape(), 1);
    let hit = classes.eq(t.unsqueeze(1));
    let picked = hit.where_(log_prob, 0.0).sum(1i64, false);
    let mut w = match weight {
        Some(w) => hit
            .where_(channel_view(w, log_prob.rank()), 0.0)
            .sum(1i64, false),
        None => picked.ones_like(),
    };
    if cx.has_attr("ignore_index") {
        let ignore = cx.attr_i("ignore_index", 0) as f64;
        w = t.ne(ignore).where_(&w, 0.0);
    }
    let loss = picked.mul(&w).neg();
    Ok(match cx.attr_s("reduction", "mean").as_str() {
        "none" => loss,
        "sum" => loss.sum_all(),
        "mean" => loss.sum_all().div(w.sum_all()),
        other => bail!("reduction {other:?} is not one of none, sum, mean"),
    })
}

pub fn nll_loss(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "NegativeLogLikelihoodLoss")?;
    let t = cx.tensor(1)?;
    let w = match cx.opt_input(2) {
        Some(_) => Some(cx.tensor(2)?),
        None => None,
    };
    Ok(vec![Value::tensor(nll(cx, &x, &t, w.as_ref())?)])
}

pub fn softmax_cross_entropy(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "SoftmaxCrossEntropyLoss")?;
    let t = cx.tensor(1)?;
    let w = match cx.opt_input(2) {
        Some(_) => Some(cx.tensor(2)?),
        None => None,
    };
    let log_prob = x.log_softmax(1);
    let loss = nll(cx, &log_prob, &t, w.as_ref())?;
    let mut out = vec![Value::tensor(loss)];
    if cx.n_outputs() > 1 {
        out.push(Value::tensor(log_prob));
    }
    Ok(out)
}
