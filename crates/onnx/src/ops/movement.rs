//! Movement and indexing ops: Reshape, Flatten, (Un)Squeeze, Transpose, Concat, Split,
//! Slice, Gather(Elements), ScatterElements, Expand, Tile, Pad, Depth/SpaceToDepth. On shape
//! vectors (`Known::Dims`) Gather, Concat, Slice and (Un)Squeeze work on the dims.

use super::{NodeCx, OpResult, axes, axis, bail, broadcast, dims_of};
use crate::value::{Known, Value};
use kiln::Tensor;
use kiln_ir::{DType, Dim, Shape};

/// Most copies `Tile` makes of one axis.
const MAX_REPEATS: i64 = 4096;

pub fn reshape(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let allowzero = cx.attr_i("allowzero", 0) != 0;
    let target: Vec<Option<Dim>> = if cx.opset < 5 {
        match cx.attr_ints("shape") {
            Some(v) => v.iter().map(|&d| entry(d)).collect(),
            None => bail!("attribute shape is required"),
        }
    } else {
        let v = cx.input(1)?.clone();
        match v.known() {
            Known::Dims { dims, .. } => dims.iter().cloned().map(Some).collect(),
            Known::Array(_) => v
                .as_ints()
                .unwrap_or_default()
                .iter()
                .map(|&d| entry(d))
                .collect(),
            Known::Nothing => bail!(
                "the target shape (input 1) must be known when importing (a constant or computable from shapes), but it is computed at run time"
            ),
        }
    };
    let x = cx.input(0)?.clone();
    let in_dims = x.shape.dims().to_vec();
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, d) in target.iter().enumerate() {
        match d {
            Some(d) if d.as_known() == Some(0) && !allowzero => match in_dims.get(i) {
                Some(src) => out.push(Some(src.clone())),
                None => bail!(
                    "shape entry {i} is 0 (copy) but the input has rank {}",
                    in_dims.len()
                ),
            },
            Some(d) => out.push(Some(d.clone())),
            None if infer.is_none() => {
                infer = Some(i);
                out.push(None);
            }
            None => bail!("the target shape has more than one -1"),
        }
    }
    if let Some(i) = infer {
        let known: Vec<Dim> = out.iter().flatten().cloned().collect();
        let total = Dim::product(&in_dims);
        let rest = Dim::product(&known);
        match total.exact_div(&rest) {
            Some(d) => out[i] = Some(d),
            None => bail!("cannot infer the -1 entry: {total} elements do not divide by {rest}"),
        }
    }
    let dims: Vec<Dim> = out.into_iter().flatten().collect();
    if let Known::Dims { dims: v, scalar } = x.known()
        && (dims.len() <= 1)
    {
        return Ok(vec![x.derived_dims(v.clone(), *scalar && dims.is_empty())]);
    }
    let t = cx.tensor(0)?;
    Ok(vec![Value::tensor(t.reshape(Shape::new(dims)))])
}

/// A reshape entry: `-1` is `None` (inferred), others are sizes (negative ones are errors
/// reported by shape inference as an overflowing dim).
fn entry(d: i64) -> Option<Dim> {
    if d == -1 {
        None
    } else {
        Some(u64::try_from(d).map_or_else(|_| Dim::overflowed(), Dim::known))
    }
}

pub fn flatten(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let t = cx.tensor(0)?;
    let r = t.rank();
    let a = cx.attr_i("axis", 1);
    let a = if a < 0 { a + r as i64 } else { a };
    if !(0..=r as i64).contains(&a) {
        bail!("axis {} is out of range for rank {r}", cx.attr_i("axis", 1));
    }
    let d = dims_of(&t);
    let (head, tail) = d.split_at(a as usize);
    let s = Shape::new([Dim::product(head), Dim::product(tail)]);
    Ok(vec![Value::tensor(t.reshape(s))])
}

fn axes_arg(cx: &mut NodeCx<'_>, input: usize) -> OpResult<Option<Vec<i64>>> {
    if cx.opset < 13 {
        Ok(cx.attr_ints("axes"))
    } else {
        cx.opt_ints_input(input, "axes")
    }
}

pub fn squeeze(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let axes_given = axes_arg(cx, 1)?;
    let v = cx.input(0)?.clone();
    let d = v.shape.dims().to_vec();
    let ax = match axes_given {
        Some(a) => axes(&a, d.len())?,
        None => (0..d.len()).filter(|&i| d[i].is_one()).collect(),
    };
    for &a in &ax {
        if !d[a].is_one() {
            bail!("cannot squeeze axis {a} of size {}", d[a]);
        }
    }
    if let Known::Dims { dims, .. } = v.known()
        && ax == [0]
    {
        return Ok(vec![v.derived_dims(dims.clone(), true)]);
    }
    let out: Vec<Dim> = d
        .iter()
        .enumerate()
        .filter(|(i, _)| !ax.contains(i))
        .map(|(_, x)| x.clone())
        .collect();
    let t = cx.tensor(0)?;
    Ok(vec![Value::tensor(t.reshape(Shape::new(out)))])
}

pub fn unsqueeze(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let Some(a) = axes_arg(cx, 1)? else {
        bail!("axes are required");
    };
    let v = cx.input(0)?.clone();
    let d = v.shape.dims().to_vec();
    let rank = d.len() + a.len();
    let mut ax = axes(&a, rank)?;
    ax.sort_unstable();
    if ax.windows(2).any(|w| w[0] == w[1]) {
        bail!("axes {a:?} repeat an axis");
    }
    if let Known::Dims { dims, scalar: true } = v.known()
        && ax == [0]
    {
        return Ok(vec![v.derived_dims(dims.clone(), false)]);
    }
    let mut out = Vec::with_capacity(rank);
    let mut src = d.into_iter();
    for i in 0..rank {
        if ax.contains(&i) {
            out.push(Dim::known(1));
        } else if let Some(x) = src.next() {
            out.push(x);
        }
    }
    let t = cx.tensor(0)?;
    Ok(vec![Value::tensor(t.reshape(Shape::new(out)))])
}

pub fn transpose(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let t = cx.tensor(0)?;
    let r = t.rank();
    let perm = cx
        .attr_ints("perm")
        .unwrap_or_else(|| (0..r as i64).rev().collect());
    let p = axes(&perm, r)?;
    let mut seen = p.clone();
    seen.sort_unstable();
    if p.len() != r || seen.iter().enumerate().any(|(i, &a)| i != a) {
        bail!("perm {perm:?} is not a permutation of 0..{r}");
    }
    Ok(vec![Value::tensor(t.permute(perm))])
}

pub fn concat(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let vals: Vec<Value> = cx.inputs.iter().flatten().cloned().collect();
    if vals.is_empty() {
        bail!("needs at least one input");
    }
    let symbolic = vals.iter().any(|v| matches!(v.known(), Known::Dims { .. }));
    if symbolic
        && vals.iter().all(|v| v.rank() == 1)
        && vals.iter().all(|v| v.dtype == vals[0].dtype)
    {
        let parts: Option<Vec<Vec<Dim>>> = vals.iter().map(Value::as_dims).collect();
        if let Some(parts) = parts {
            return Ok(vec![vals[0].derived_dims(parts.concat(), false)]);
        }
    }
    let a = cx.attr_i("axis", 0);
    let ts = cx.tensors();
    if let Some(first) = ts.first() {
        axis(a, first.rank())?;
        if let Some(t) = ts.iter().find(|t| t.dtype() != first.dtype()) {
            bail!(
                "inputs have different dtypes: {} and {}",
                first.dtype(),
                t.dtype()
            );
        }
    }
    let refs: Vec<&Tensor> = ts.iter().collect();
    Ok(vec![Value::tensor(Tensor::cat(&refs, a))])
}

pub fn split(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let t = cx.tensor(0)?;
    let a = axis(cx.attr_i("axis", 0), t.rank())?;
    let Some(n) = t.shape().dims()[a].as_known() else {
        bail!("split axis {a} of {} is symbolic", t.shape());
    };
    let n = n as i64;
    let given = if cx.opset < 13 {
        cx.attr_ints("split")
    } else {
        cx.opt_ints_input(1, "split")?
    };
    let outs = cx.n_outputs() as i64;
    let sizes = match given {
        Some(s) => s,
        None => {
            let parts = if cx.has_attr("num_outputs") {
                cx.attr_i("num_outputs", outs)
            } else {
                outs
            };
            if parts <= 0 || parts > outs.max(1) {
                bail!("cannot split into {parts} parts for {outs} outputs");
            }
            let chunk = (n + parts - 1) / parts;
            (0..parts)
                .map(|i| (n - i * chunk).clamp(0, chunk))
                .collect()
        }
    };
    if sizes.len() > MAX_REPEATS as usize
        || sizes.iter().any(|&s| s < 0)
        || sizes.iter().try_fold(0i64, |a, &s| a.checked_add(s)) != Some(n)
    {
        bail!("split sizes {sizes:?} do not add up to the axis size {n}");
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for s in sizes {
        out.push(Value::tensor(t.slice(a as i64, start, start + s, 1)));
        start += s;
    }
    Ok(out)
}

pub fn slice(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let (starts, ends, axes_v, steps) = if cx.opset < 10 {
        let Some(s) = cx.attr_ints("starts") else {
            bail!("attribute starts is required");
        };
        let Some(e) = cx.attr_ints("ends") else {
            bail!("attribute ends is required");
        };
        (s, e, cx.attr_ints("axes"), None)
    } else {
        (
            cx.ints_input(1, "starts")?,
            cx.ints_input(2, "ends")?,
            cx.opt_ints_input(3, "axes")?,
            cx.opt_ints_input(4, "steps")?,
        )
    };
    let v = cx.input(0)?.clone();
    let rank = v.rank();
    let axes_v = axes_v.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes_v.len() != starts.len() || steps.len() != starts.len() {
        bail!("starts, ends, axes and steps have different lengths");
    }
    let ax = axes(&axes_v, rank)?;
    if let (Known::Dims { dims, .. }, [0]) = (v.known(), ax.as_slice()) {
        let n = dims.len() as i64;
        let idx = slice_indices(n, starts[0], ends[0], steps[0])?;
        return Ok(vec![v.derived_dims(
            idx.iter().map(|&i| dims[i as usize].clone()).collect(),
            false,
        )]);
    }
    let mut t = cx.tensor(0)?;
    for (k, &a) in ax.iter().enumerate() {
        let (s, e, st) = (starts[k], ends[k], steps[k]);
        if st == 0 {
            bail!("slice step 0 on axis {a}");
        }
        let d = t.shape().dims()[a].clone();
        let Some(n) = d.as_known() else {
            if st == 1 && s == 0 && e >= i64::from(i32::MAX) {
                continue;
            }
            bail!("cannot slice axis {a} of {}: it is symbolic", t.shape());
        };
        let n = n as i64;
        if st > 0 {
            t = t.slice(a as i64, s, e, st as u64);
        } else {
            let start = if s < 0 { s + n } else { s }.clamp(0, (n - 1).max(0));
            let end = if e < 0 { e + n } else { e }.clamp(-1, n - 1);
            let (fs, fe) = (n - 1 - start, n - 1 - end);
            t = t
                .flip(a as i64)
                .slice(a as i64, fs, fe.max(fs), st.unsigned_abs());
        }
    }
    Ok(vec![Value::tensor(t)])
}

/// The indices a Python/ONNX slice selects from `0..n`.
fn slice_indices(n: i64, s: i64, e: i64, st: i64) -> OpResult<Vec<i64>> {
    if st == 0 {
        bail!("slice step 0");
    }
    let mut out = Vec::new();
    if st > 0 {
        let s = if s < 0 { s + n } else { s }.clamp(0, n);
        let e = if e < 0 { e + n } else { e }.clamp(0, n);
        let mut i = s;
        while i < e {
            out.push(i);
            i += st;
        }
    } else {
        let s = if s < 0 { s + n } else { s }.clamp(-1, n - 1);
        let e = if e < 0 { e + n } else { e }.clamp(-1, n - 1);
        let mut i = s;
        while i > e {
            out.push(i);
            i += st;
        }
    }
    Ok(out)
}

pub fn gather(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let data = cx.input(0)?.clone();
    let a = axis(cx.attr_i("axis", 0), data.rank())?;
    let idx_v = cx.input(1)?.clone();
    if let (Some(dims), Some(idx), 0) = (data.as_dims(), idx_v.as_ints(), a)
        && data.rank() == 1
        && matches!(data.known(), Known::Dims { .. })
    {
        let n = dims.len() as i64;
        let mut out = Vec::with_capacity(idx.len());
        for i in idx {
            let j = if i < 0 { i + n } else { i };
            match usize::try_from(j).ok().and_then(|j| dims.get(j)) {
                Some(d) => out.push(d.clone()),
                None => bail!("index {i} is out of range for {n} elements"),
            }
        }
        return Ok(vec![data.derived_dims(out, idx_v.rank() == 0)]);
    }
    let x = cx.tensor(0)?;
    // A known scalar index on a known axis is a slice (no index tensor: `x[:, -1]`).
    if let (Some(&[i]), 0, Some(n)) = (
        idx_v.as_ints().as_deref(),
        idx_v.rank(),
        x.shape().dims()[a].as_known(),
    ) {
        let n = n as i64;
        let j = if i < 0 { i.saturating_add(n) } else { i };
        if !(0..n).contains(&j) {
            bail!("index {i} is out of range for {n} elements");
        }
        return Ok(vec![Value::tensor(
            x.slice(a as i64, j, j + 1, 1).squeeze(a as i64),
        )]);
    }
    let idx = cx.tensor(1)?;
    if !matches!(idx.dtype(), DType::I32 | DType::I64) {
        bail!("indices must be int32 or int64, got {}", idx.dtype());
    }
    let idx = non_negative(cx, &idx, &x, a)?;
    let xd = dims_of(&x);
    let id = dims_of(&idx);
    let flat = idx.reshape(Shape::new([Dim::product(&id)]));
    let picked = x.index_select(a as i64, &flat);
    let mut out: Vec<Dim> = xd[..a].to_vec();
    out.extend(id);
    out.extend_from_slice(&xd[a + 1..]);
    Ok(vec![Value::tensor(picked.reshape(Shape::new(out)))])
}

/// Indices with negative entries counted from the end of `x`'s axis `a`.
fn non_negative(cx: &NodeCx<'_>, idx: &Tensor, x: &Tensor, a: usize) -> OpResult<Tensor> {
    let idx = idx.cast(DType::I64);
    let n = x.shape().dims()[a].clone();
    let size = match n.as_known() {
        Some(k) => cx.g.scalar(k as f64, DType::I64),
        None => Value::dims(vec![n], true).tensor_in(cx.g),
    };
    Ok(idx.lt(0.0).where_(idx.add(&size), &idx))
}

pub fn gather_elements(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let idx = cx.tensor(1)?;
    let a = axis(cx.attr_i("axis", 0), x.rank())?;
    if idx.rank() != x.rank() {
        bail!(
            "indices rank {} differs from data rank {}",
            idx.rank(),
            x.rank()
        );
    }
    let idx = non_negative(cx, &idx, &x, a)?;
    let x = crop_to(&x, &idx, a)?;
    Ok(vec![Value::tensor(x.gather(a as i64, &idx))])
}

/// `x` sliced to `idx`'s sizes on every axis but `a`.
fn crop_to(x: &Tensor, idx: &Tensor, a: usize) -> OpResult<Tensor> {
    let mut x = x.clone();
    for (i, (dx, di)) in dims_of(&x.clone()).iter().zip(dims_of(idx)).enumerate() {
        if i == a || *dx == di {
            continue;
        }
        let Some(k) = di.as_known() else {
            bail!("indices axis {i} ({di}) differs from the data's ({dx})");
        };
        x = x.slice(i as i64, 0, k as i64, 1);
    }
    Ok(x)
}

pub fn scatter_elements(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let idx = cx.tensor(1)?;
    let upd = cx.tensor(2)?;
    let a = axis(cx.attr_i("axis", 0), x.rank())?;
    let idx = non_negative(cx, &idx, &x, a)?;
    let reduction = cx.attr_s("reduction", "none");
    let out = match reduction.as_str() {
        "add" => x.scatter_add(a as i64, &idx, &upd),
        // Replacement, exact when no index repeats (ONNX leaves repeats undefined): add the
        // difference between the update and the current element.
        "none" => {
            let cur = crop_to(&x, &idx, a)?.gather(a as i64, &idx);
            x.scatter_add(a as i64, &idx, &upd.sub(&cur))
        }
        other => super::index::scatter_elements_reduce(&x, &idx, &upd, a, other)?,
    };
    Ok(vec![Value::tensor(out)])
}

pub fn expand(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let shape = cx.dims_input(1, "shape")?;
    let t = cx.tensor(0)?;
    let out = broadcast(&dims_of(&t), &shape)?;
    Ok(vec![Value::tensor(t.expand(Shape::new(out)))])
}

pub fn tile(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let reps = cx.ints_input(1, "repeats")?;
    let mut t = cx.tensor(0)?;
    if reps.len() != t.rank() {
        bail!("repeats has {} entries for rank {}", reps.len(), t.rank());
    }
    for (a, &r) in reps.iter().enumerate() {
        if !(0..=MAX_REPEATS).contains(&r) {
            bail!("repeat {r} on axis {a} is outside 0..={MAX_REPEATS}");
        }
        if r == 1 {
            continue;
        }
        let copies: Vec<&Tensor> = std::iter::repeat_n(&t, r as usize).collect();
        t = if r == 0 {
            t.slice(a as i64, 0, 0, 1)
        } else {
            Tensor::cat(&copies, a as i64)
        };
    }
    Ok(vec![Value::tensor(t)])
}

pub fn pad(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let mode = cx.attr_s("mode", "constant");
    let (pads, value, axes_v) = if cx.opset < 11 {
        let Some(p) = cx.attr_ints("pads").or_else(|| cx.attr_ints("paddings")) else {
            bail!("attribute pads is required");
        };
        (p, cx.attr_f("value", 0.0), None)
    } else {
        let p = cx.ints_input(1, "pads")?;
        let v = cx.opt_scalar_input(2, "constant_value")?.unwrap_or(0.0);
        (p, v, cx.opt_ints_input(3, "axes")?)
    };
    let mut t = cx.tensor(0)?;
    let r = t.rank();
    let ax = match axes_v {
        Some(a) => axes(&a, r)?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * ax.len() {
        bail!("pads has {} entries for {} axes", pads.len(), ax.len());
    }
    let k = ax.len();
    // Negative pads crop first.
    for (j, &a) in ax.iter().enumerate() {
        let (b, e) = (pads[j], pads[j + k]);
        if b < 0 || e < 0 {
            let Some(n) = t.shape().dims()[a].as_known() else {
                bail!("cannot crop symbolic axis {a}");
            };
            let n = n as i64;
            t = t.slice(a as i64, (-b).max(0), n - (-e).max(0), 1);
        }
    }
    let mut spec = vec![(0u64, 0u64); r];
    for (j, &a) in ax.iter().enumerate() {
        spec[a] = (pads[j].max(0) as u64, pads[j + k].max(0) as u64);
    }
    let out = match mode.as_str() {
        "constant" => t.pad(&spec, value),
        "edge" | "reflect" | "wrap" => {
            for (a, &(b, e)) in spec.iter().enumerate() {
                if b == 0 && e == 0 {
                    continue;
                }
                t = pad_axis(&t, a, b as i64, e as i64, &mode)?;
            }
            t
        }
        other => bail!("mode {other:?} is not one of constant, edge, reflect, wrap"),
    };
    Ok(vec![Value::tensor(out)])
}

/// Edge, reflect or wrap padding of one axis, built from at most five slices.
fn pad_axis(t: &Tensor, a: usize, before: i64, after: i64, mode: &str) -> OpResult<Tensor> {
    let Some(n) = t.shape().dims()[a].as_known() else {
        bail!("cannot {mode}-pad symbolic axis {a}");
    };
    let n = n as i64;
    let ax = a as i64;
    let (lo, hi) = match mode {
        "edge" => {
            if n == 0 {
                bail!("cannot edge-pad the empty axis {a}");
            }
            let grow = |part: Tensor, k: i64| {
                let mut s = dims_of(&part);
                s[a] = Dim::known(k as u64);
                part.expand(Shape::new(s))
            };
            (
                grow(t.slice(ax, 0, 1, 1), before),
                grow(t.slice(ax, n - 1, n, 1), after),
            )
        }
        "reflect" => {
            if before > n - 1 || after > n - 1 {
                bail!("reflect padding {before}/{after} must be below the axis size {n}");
            }
            (
                t.slice(ax, 1, before + 1, 1).flip(ax),
                t.slice(ax, n - 1 - after, n - 1, 1).flip(ax),
            )
        }
        _ => {
            if before > n || after > n {
                bail!("wrap padding {before}/{after} must not exceed the axis size {n}");
            }
            (t.slice(ax, n - before, n, 1), t.slice(ax, 0, after, 1))
        }
    };
    Ok(Tensor::cat(&[&lo, t, &hi], ax))
}

pub fn depth_to_space(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let t = cx.tensor(0)?;
    let b = cx.attr_i("blocksize", 0);
    if b <= 0 || t.rank() != 4 {
        bail!("needs a rank-4 input and a positive blocksize");
    }
    let b = Dim::known(b as u64);
    let d = dims_of(&t);
    let Some(c) = d[1].exact_div(&(&b * &b)) else {
        bail!("channels {} do not divide by blocksize²", d[1]);
    };
    let crd = cx.attr_s("mode", "DCR") == "CRD";
    let (shape, perm): (Vec<Dim>, [i64; 6]) = if crd {
        (
            vec![
                d[0].clone(),
                c.clone(),
                b.clone(),
                b.clone(),
                d[2].clone(),
                d[3].clone(),
            ],
            [0, 1, 4, 2, 5, 3],
        )
    } else {
        (
            vec![
                d[0].clone(),
                b.clone(),
                b.clone(),
                c.clone(),
                d[2].clone(),
                d[3].clone(),
            ],
            [0, 3, 4, 1, 5, 2],
        )
    };
    let y = t
        .reshape(Shape::new(shape))
        .permute(perm)
        .reshape(Shape::new([d[0].clone(), c, &d[2] * &b, &d[3] * &b]));
    Ok(vec![Value::tensor(y)])
}

pub fn space_to_depth(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let t = cx.tensor(0)?;
    let b = cx.attr_i("blocksize", 0);
    if b <= 0 || t.rank() != 4 {
        bail!("needs a rank-4 input and a positive blocksize");
    }
    let b = Dim::known(b as u64);
    let d = dims_of(&t);
    let (Some(h), Some(w)) = (d[2].exact_div(&b), d[3].exact_div(&b)) else {
        bail!(
            "spatial dims {}x{} do not divide by the blocksize",
            d[2],
            d[3]
        );
    };
    let y = t
        .reshape(Shape::new([
            d[0].clone(),
            d[1].clone(),
            h.clone(),
            b.clone(),
            w.clone(),
            b.clone(),
        ]))
        .permute([0, 3, 5, 1, 2, 4])
        .reshape(Shape::new([d[0].clone(), &d[1] * &(&b * &b), h, w]));
    Ok(vec![Value::tensor(y)])
}
