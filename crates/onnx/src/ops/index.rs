//! Indexing, sorting and selection: GatherND, ScatterND, ScatterElements' max/min/mul
//! reductions, TensorScatter, ReverseSequence and TopK as composites of gather, scatter-add
//! and comparisons; and the value-dependent ops (Compress, NonZero, Unique,
//! NonMaxSuppression), folded when their inputs are known at import time.

use super::{NodeCx, OpError, OpResult, axis, bail, dims_of, int_array};
use crate::limits::MAX_FOLDED_ELEMENTS;
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{Array, DType, Dim, Shape};

/// Largest axis `TopK` ranks: the rank is a comparison count over all pairs, `n²` per row.
const MAX_TOPK_AXIS: u64 = 4096;
/// `k` up to which `TopK` picks in rounds (`k` passes of `O(n)`) rather than by rank.
const TOPK_ROUNDS_CHEAP: usize = 16;
/// Largest `k` `TopK` picks in rounds on an axis too long to rank.
const MAX_TOPK_ROUNDS: usize = 256;
/// Most box pairs `NonMaxSuppression` compares while folding.
const MAX_NMS_WORK: u64 = 1 << 28;
/// Largest one-hot selection matrix the max/min/mul scatters build (`data rows × updates`).
const MAX_SCATTER_PAIRS: u64 = 1 << 26;

/// The known sizes of `t`'s axes, or an error naming `what`.
fn known_dims(t: &Tensor, what: &str) -> OpResult<Vec<u64>> {
    match t.shape().dims().iter().map(Dim::as_known).collect() {
        Some(v) => Ok(v),
        None => bail!("{what} needs known sizes, got {}", t.shape()),
    }
}

fn product(d: &[u64]) -> u64 {
    d.iter().fold(1u64, |a, &b| a.saturating_mul(b))
}

fn need_indices(t: &Tensor) -> OpResult<Tensor> {
    if !matches!(t.dtype(), DType::I32 | DType::I64) {
        bail!("indices must be int32 or int64, got {}", t.dtype());
    }
    Ok(t.cast(DType::I64))
}

/// Row-major linear offsets into `sizes` of index tuples `idx` (`[..., q]`, negative entries
/// counted from the end): `[...]`.
fn linear_index(cx: &NodeCx<'_>, idx: &Tensor, sizes: &[u64]) -> Tensor {
    let q = sizes.len();
    let size = cx.g.constant(Array::from_f64_cast(
        DType::I64,
        &[q],
        &sizes.iter().map(|&s| s as f64).collect::<Vec<_>>(),
    ));
    let idx = idx.lt(0.0).where_(idx.add(&size), idx);
    let mut strides = vec![1f64; q];
    for k in (0..q.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * sizes[k + 1] as f64;
    }
    let strides =
        cx.g.constant(Array::from_f64_cast(DType::I64, &[q], &strides));
    idx.mul(&strides).sum(-1, false)
}

pub fn gather_nd(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let idx = need_indices(&cx.tensor(1)?)?;
    let b = usize::try_from(cx.attr_i("batch_dims", 0)).unwrap_or(usize::MAX);
    let xd = known_dims(&x, "GatherND")?;
    let id = known_dims(&idx, "GatherND")?;
    let (rx, ri) = (xd.len(), id.len());
    if ri == 0 || b >= rx.min(ri) {
        bail!("batch_dims {b} needs data and indices of higher rank");
    }
    let q = id[ri - 1] as usize;
    if q == 0 && ri == 1 || b + q > rx || xd[..b] != id[..b] {
        bail!(
            "indices {:?} (batch_dims {b}) do not index data {:?}",
            id,
            xd
        );
    }
    let batch = product(&xd[..b]);
    let span = product(&xd[b..b + q]);
    let rest = &xd[b + q..];
    let mut lin = if q == 0 {
        cx.g.zeros(
            Shape::known(&id[..ri - 1].iter().map(|&d| d as usize).collect::<Vec<_>>()),
            DType::I64,
        )
    } else {
        linear_index(cx, &idx, &xd[b..b + q])
    };
    if b > 0 {
        let mut view = vec![1usize; ri - 1];
        view[..b]
            .iter_mut()
            .zip(&id[..b])
            .for_each(|(v, &d)| *v = d as usize);
        let offs =
            cx.g.arange(batch, DType::I64)
                .mul(span as f64)
                .reshape(view);
        lin = lin.add(&offs);
    }
    let count = product(&id[..ri - 1]);
    let mut flat = vec![Dim::known(batch.saturating_mul(span))];
    flat.extend(rest.iter().map(|&d| Dim::known(d)));
    let picked = x
        .reshape(Shape::new(flat))
        .index_select(0, &lin.reshape([count as usize]));
    let mut out: Vec<Dim> = id[..ri - 1].iter().map(|&d| Dim::known(d)).collect();
    out.extend(rest.iter().map(|&d| Dim::known(d)));
    Ok(vec![Value::tensor(picked.reshape(Shape::new(out)))])
}

/// How scattered updates combine with the data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(cx: &NodeCx<'_>) -> OpResult<Reduction> {
    Ok(match cx.attr_s("reduction", "none").as_str() {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        other => bail!("reduction {other:?} is not one of none, add, mul, max, min"),
    })
}

/// `data` (`[..., n]`) with `upd` (`[..., m]`) combined at positions `idx` (`[..., m]`,
/// in `0..n`) of the last axis by a mul, max or min reduction: a one-hot `[..., n, m]`
/// selection reduced over the updates.
fn scatter_reduce_last(
    data: &Tensor,
    idx: &Tensor,
    upd: &Tensor,
    red: Reduction,
) -> OpResult<Tensor> {
    let r = data.rank();
    let dd = known_dims(data, "the scatter reduction")?;
    let id = known_dims(idx, "the scatter reduction")?;
    let n = dd[r - 1];
    let m = id[r - 1];
    if product(&id[..r - 1]).saturating_mul(n).saturating_mul(m) > MAX_SCATTER_PAIRS {
        bail!(
            "the {red_name} scatter of {m} updates into {n} positions is larger than {MAX_SCATTER_PAIRS} pairs",
            red_name = match red {
                Reduction::Mul => "mul",
                Reduction::Max => "max",
                _ => "min",
            }
        );
    }
    let g = data.graph();
    let pos = g.iota(DType::I64, [n as usize, 1], 0);
    let onehot = idx.unsqueeze(-2).eq(&pos);
    let spread = upd.unsqueeze(-2);
    let all: Vec<i64> = (0..r as i64).collect();
    // Unselected pairs take a value that cannot win: 1 for a product, the smallest update
    // for a maximum, the largest for a minimum.
    let reduced = match red {
        Reduction::Mul => onehot.where_(&spread, 1.0).prod(-1, false),
        Reduction::Max => onehot.where_(&spread, upd.min(all, false)).max(-1, false),
        _ => onehot.where_(&spread, upd.max(all, false)).min(-1, false),
    };
    let hit = onehot.cast(DType::I32).max(-1, false);
    let mut pads = vec![(0u64, 0u64); r];
    for k in 0..r - 1 {
        pads[k] = (0, dd[k] - id[k].min(dd[k]));
    }
    let reduced = reduced.pad(&pads, 0.0);
    let hit = hit.pad(&pads, 0.0).gt(0.0);
    let combined = match red {
        Reduction::Mul => data.mul(&reduced),
        Reduction::Max => data.maximum(&reduced),
        _ => data.minimum(&reduced),
    };
    Ok(hit.where_(&combined, data))
}

/// ScatterElements with a mul, max or min reduction along `a`.
pub(super) fn scatter_elements_reduce(
    x: &Tensor,
    idx: &Tensor,
    upd: &Tensor,
    a: usize,
    red: &str,
) -> OpResult<Tensor> {
    let red = match red {
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        other => bail!("reduction {other:?} is not one of none, add, mul, max, min"),
    };
    if idx.rank() != x.rank() || upd.shape() != idx.shape() {
        bail!(
            "indices {} and updates {} must have the data's rank {}",
            idx.shape(),
            upd.shape(),
            x.rank()
        );
    }
    let a = a as i64;
    let out = scatter_reduce_last(
        &x.transpose(a, -1),
        &idx.transpose(a, -1),
        &upd.transpose(a, -1),
        red,
    )?;
    Ok(out.transpose(a, -1))
}

pub fn scatter_nd(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let idx = need_indices(&cx.tensor(1)?)?;
    let upd = cx.tensor(2)?;
    let red = reduction(cx)?;
    let xd = known_dims(&x, "ScatterND")?;
    let id = known_dims(&idx, "ScatterND")?;
    let ud = known_dims(&upd, "ScatterND")?;
    let ri = id.len();
    if ri == 0 {
        bail!("indices must have rank 1 or more");
    }
    let q = id[ri - 1] as usize;
    let mut want = id[..ri - 1].to_vec();
    if q > xd.len() || q == 0 {
        bail!("index tuples of length {q} do not index data {xd:?}");
    }
    want.extend_from_slice(&xd[q..]);
    if ud != want {
        bail!("updates {ud:?} must be {want:?}");
    }
    if upd.dtype() != x.dtype() {
        bail!("updates {} differ from data {}", upd.dtype(), x.dtype());
    }
    let rows = product(&xd[..q]);
    let cols = product(&xd[q..]);
    let m = product(&id[..ri - 1]);
    let lin = linear_index(cx, &idx, &xd[..q]).reshape([m as usize]);
    let flat = x.reshape([rows as usize, cols as usize]);
    let u = upd.reshape([m as usize, cols as usize]);
    let out = match red {
        Reduction::Add | Reduction::None => {
            let at = lin
                .reshape([m as usize, 1])
                .expand([m as usize, cols as usize]);
            let u = if red == Reduction::None {
                u.sub(flat.gather(0, &at))
            } else {
                u
            };
            flat.scatter_add(0, &at, &u)
        }
        _ => scatter_reduce_last(
            &flat.transpose(0, 1),
            &lin.reshape([1, m as usize])
                .expand([cols as usize, m as usize]),
            &u.transpose(0, 1),
            red,
        )?
        .transpose(0, 1),
    };
    Ok(vec![Value::tensor(out.reshape(x.shape()))])
}

pub fn tensor_scatter(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let past = cx.tensor(0)?;
    let upd = cx.tensor(1)?;
    let r = past.rank();
    let a = axis(cx.attr_i("axis", -2), r)?;
    let circular = match cx.attr_s("mode", "linear").as_str() {
        "linear" => false,
        "circular" => true,
        other => bail!("mode {other:?} is not linear or circular"),
    };
    if a == 0 || upd.rank() != r || upd.dtype() != past.dtype() {
        bail!(
            "the update {} must match the cache {} but on the sequence axis {a} (not the batch axis)",
            upd.shape(),
            past.shape()
        );
    }
    let pd = known_dims(&past, "TensorScatter")?;
    let ud = known_dims(&upd, "TensorScatter")?;
    if (0..r).any(|k| k != a && pd[k] != ud[k]) || ud[a] > pd[a] {
        bail!(
            "the update {} must match the cache {} but on the sequence axis {a}",
            upd.shape(),
            past.shape()
        );
    }
    let (mx, s) = (pd[a] as f64, ud[a] as f64);
    let mut bview = vec![1usize; r];
    bview[0] = pd[0] as usize;
    let w = match cx.opt_input(2) {
        Some(_) => need_indices(&cx.tensor(2)?)?.reshape(bview),
        None => cx.g.zeros(bview, DType::I64),
    };
    let mut pview = vec![1usize; r];
    pview[a] = pd[a] as usize;
    let pos = cx.g.iota(DType::I64, pview, a);
    let mut src = pos.sub(&w);
    if circular {
        src = src.rem(mx);
    }
    let valid = src.ge(0.0).logical_and(src.lt(s));
    let src = valid.where_(&src, 0.0).expand(past.shape());
    if ud[a] == 0 {
        return Ok(vec![Value::tensor(past)]);
    }
    let taken = upd.gather(a as i64, &src);
    Ok(vec![Value::tensor(valid.where_(&taken, &past))])
}

pub fn reverse_sequence(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let lens = need_indices(&cx.tensor(1)?)?;
    let r = x.rank();
    let ba = axis(cx.attr_i("batch_axis", 1), r)?;
    let ta = axis(cx.attr_i("time_axis", 0), r)?;
    if r < 2 || ba == ta || lens.rank() != 1 {
        bail!("needs distinct batch and time axes of a rank ≥ 2 input and 1-D sequence_lens");
    }
    let d = dims_of(&x);
    if lens.shape().dims()[0] != d[ba] {
        bail!(
            "sequence_lens {} does not match the batch size {}",
            lens.shape(),
            d[ba]
        );
    }
    let Some(t) = d[ta].as_known() else {
        bail!("the time axis of {} is symbolic", x.shape());
    };
    let mut lview = vec![Dim::known(1); r];
    lview[ba] = d[ba].clone();
    let len = lens.reshape(Shape::new(lview)).minimum(t as f64);
    let mut tview = vec![1usize; r];
    tview[ta] = t as usize;
    let pos = cx.g.iota(DType::I64, tview, ta);
    let src = pos.lt(&len).where_(len.sub(1.0).sub(&pos), &pos);
    Ok(vec![Value::tensor(
        x.gather(ta as i64, &src.expand(x.shape())),
    )])
}

pub fn top_k(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let k = if cx.opset < 10 {
        cx.attr_i("k", -1)
    } else {
        match cx.ints_input(1, "k")?.as_slice() {
            [k] => *k,
            v => bail!("k (input 1) must hold one element, got {v:?}"),
        }
    };
    let a = axis(cx.attr_i("axis", -1), x.rank())?;
    let Some(n) = x.shape().dims()[a].as_known() else {
        bail!("TopK needs a known axis size, got {}", x.shape());
    };
    if k < 0 || k as u64 > n {
        bail!("k {k} is outside 0..={n}");
    }
    let largest = cx.attr_i("largest", 1) != 0;
    let (n, k) = (n as usize, k as usize);
    let t = x.transpose(a as i64, -1);
    let idx = if k <= TOPK_ROUNDS_CHEAP || (n as u64 > MAX_TOPK_AXIS && k <= MAX_TOPK_ROUNDS) {
        top_k_rounds(&t, n, k, largest)
    } else if n as u64 <= MAX_TOPK_AXIS {
        top_k_ranks(&t, n, k, largest)
    } else {
        bail!(
            "TopK selects up to {MAX_TOPK_ROUNDS} elements of an axis above {MAX_TOPK_AXIS} elements, got k {k} of {n}"
        );
    };
    let values = t.gather(-1, &idx);
    Ok(vec![
        Value::tensor(values.transpose(a as i64, -1)),
        Value::tensor(idx.transpose(a as i64, -1)),
    ])
}

/// The indices of the `k` best of `t`'s last axis (`n` elements) by rank: each element's
/// rank is the count of better elements plus equal earlier ones (`n²` comparisons per row),
/// and a one-hot of the ranks below `k` picks the indices.
fn top_k_ranks(t: &Tensor, n: usize, k: usize, largest: bool) -> Tensor {
    let g = t.graph();
    let (xi, xj) = (t.unsqueeze(-1), t.unsqueeze(-2));
    let before = if largest { xj.gt(&xi) } else { xj.lt(&xi) };
    let earlier = g
        .iota(DType::I64, [n, n], 1)
        .lt(g.iota(DType::I64, [n, n], 0));
    let rank = before
        .logical_or(xj.eq(&xi).logical_and(&earlier))
        .cast(DType::I64)
        .sum(-1, false);
    let slot = rank.unsqueeze(-1).eq(g.iota(DType::I64, [n, k], 1));
    slot.where_(g.iota(DType::I64, [n, k], 0), 0.0)
        .sum(-2, false)
}

/// The indices of the `k` best of `t`'s last axis (`n` elements) in `k` rounds of `O(n)`:
/// each round takes the first not-yet-taken element equal to the best remaining value.
fn top_k_rounds(t: &Tensor, n: usize, k: usize, largest: bool) -> Tensor {
    let g = t.graph();
    let pos = g.iota(DType::I32, [n], 0);
    let worst = if largest {
        t.min(-1, true)
    } else {
        t.max(-1, true)
    };
    let mut taken = g.full(t.shape(), 0.0, DType::Bool);
    let mut picks = Vec::with_capacity(k);
    for _ in 0..k {
        let left = taken.where_(&worst, t);
        let best = if largest {
            left.max(-1, true)
        } else {
            left.min(-1, true)
        };
        let candidate = t.eq(&best).logical_and(taken.logical_not());
        let i = candidate
            .where_(&pos, n as f64)
            .min(-1, true)
            .minimum((n - 1) as f64);
        taken = taken.logical_or(pos.eq(&i));
        picks.push(i);
    }
    if picks.is_empty() {
        return t.slice(-1, 0, 0, 1).cast(DType::I64);
    }
    let refs: Vec<&Tensor> = picks.iter().collect();
    Tensor::cat(&refs, -1).cast(DType::I64)
}

/// The known elements of input `i`, or the "must be known" error for a value-dependent op.
fn known_input(cx: &mut NodeCx<'_>, i: usize, what: &str) -> OpResult<Array> {
    match cx.input(i)?.as_array() {
        Some(a) if a.len() as u64 > MAX_FOLDED_ELEMENTS => bail!(
            "{what} (input {i}) has {} elements, more than the {MAX_FOLDED_ELEMENTS} the importer folds",
            a.len()
        ),
        Some(a) => Ok(a.clone()),
        None => bail!(
            "{what} (input {i}) must be known when importing: the output's shape depends on its values"
        ),
    }
}

pub fn compress(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let cond = known_input(cx, 1, "condition")?;
    if cond.shape().len() != 1 {
        bail!("condition must be 1-D, got {:?}", cond.shape());
    }
    let mut x = cx.tensor(0)?;
    let a = if cx.has_attr("axis") {
        axis(cx.attr_i("axis", 0), x.rank())?
    } else {
        let total = Dim::product(&dims_of(&x));
        x = x.reshape(Shape::new([total]));
        0
    };
    let Some(n) = x.shape().dims()[a].as_known() else {
        bail!("Compress needs a known axis size, got {}", x.shape());
    };
    let keep: Vec<i64> = cond
        .to_f64_vec()
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 0.0)
        .map(|(i, _)| i as i64)
        .collect();
    if keep.last().is_some_and(|&i| i as u64 >= n) {
        bail!("condition selects past the axis size {n}");
    }
    let out = if keep.is_empty() {
        x.slice(a as i64, 0, 0, 1)
    } else {
        let at: Vec<f64> = keep.iter().map(|&i| i as f64).collect();
        let idx =
            cx.g.constant(Array::from_f64_cast(DType::I32, &[at.len()], &at));
        x.index_select(a as i64, &idx)
    };
    Ok(vec![Value::tensor(out)])
}

pub fn non_zero(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = known_input(cx, 0, "the input")?;
    let shape = x.shape().to_vec();
    let r = shape.len();
    let mut coords: Vec<Vec<i64>> = vec![Vec::new(); r];
    let mut nnz = 0;
    for (flat, v) in x.to_f64_vec().iter().enumerate() {
        if *v == 0.0 {
            continue;
        }
        nnz += 1;
        let mut rem = flat;
        for k in (0..r).rev() {
            coords[k].push((rem % shape[k]) as i64);
            rem /= shape[k];
        }
    }
    let data: Vec<i64> = coords.concat();
    Ok(vec![Value::array(int_array(&[r, nnz], data)?)])
}

/// Slices `idx` of the known array `a` along `axis`, in that order.
fn take(a: &Array, axis: usize, idx: &[usize]) -> OpResult<Array> {
    let shape = a.shape();
    let esize = a.dtype().size_bytes();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * esize;
    let bytes = a.to_le_bytes();
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let start = (o * shape[axis] + i) * inner;
            out.extend_from_slice(&bytes[start..start + inner]);
        }
    }
    let mut s = shape.to_vec();
    s[axis] = idx.len();
    Array::from_le_bytes(a.dtype(), &s, &out).map_err(|e| OpError(e.to_string()))
}

pub fn unique(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let mut x = known_input(cx, 0, "the input")?;
    let sorted = cx.attr_i("sorted", 1) != 0;
    let a = if cx.has_attr("axis") {
        axis(cx.attr_i("axis", 0), x.shape().len())?
    } else {
        x = x.reshaped(&[x.len()]).map_err(|e| OpError(e.to_string()))?;
        0
    };
    let shape = x.shape().to_vec();
    let n = shape[a];
    let outer: usize = shape[..a].iter().product();
    let inner: usize = shape[a + 1..].iter().product();
    let vals = x.to_f64_vec();
    let slice_of = |i: usize| -> Vec<f64> {
        (0..outer)
            .flat_map(|o| (0..inner).map(move |j| (o, j)))
            .map(|(o, j)| vals[(o * n + i) * inner + j])
            .collect()
    };
    let keys: Vec<Vec<f64>> = (0..n).map(slice_of).collect();
    let cmp = |p: &usize, q: &usize| {
        keys[*p]
            .iter()
            .zip(&keys[*q])
            .map(|(u, v)| u.total_cmp(v))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut first: Vec<usize> = Vec::new();
    let mut inverse = vec![0i64; n];
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|p, q| cmp(p, q).then(p.cmp(q)));
    let mut group = vec![0usize; n];
    for (pos, &i) in order.iter().enumerate() {
        if pos == 0 || cmp(&order[pos - 1], &i).is_ne() {
            first.push(i);
        }
        group[i] = first.len() - 1;
    }
    if !sorted {
        let mut by_first: Vec<usize> = (0..first.len()).collect();
        by_first.sort_by_key(|&u| first[u]);
        let mut renumber = vec![0usize; first.len()];
        for (new, &old) in by_first.iter().enumerate() {
            renumber[old] = new;
        }
        first = by_first.iter().map(|&u| first[u]).collect();
        for gr in &mut group {
            *gr = renumber[*gr];
        }
    }
    let mut counts = vec![0i64; first.len()];
    for (i, &gr) in group.iter().enumerate() {
        inverse[i] = gr as i64;
        counts[gr] += 1;
    }
    let y = take(&x, a, &first)?;
    let u = first.len();
    Ok(vec![
        Value::array(y),
        Value::array(int_array(&[u], first.iter().map(|&i| i as i64).collect())?),
        Value::array(int_array(&[n], inverse)?),
        Value::array(int_array(&[u], counts)?),
    ])
}

/// The scalar of an optional known input, or `default`.
fn opt_known_scalar(cx: &mut NodeCx<'_>, i: usize, what: &str, default: f64) -> OpResult<f64> {
    if cx.opt_input(i).is_none() {
        return Ok(default);
    }
    let a = known_input(cx, i, what)?;
    Ok(a.to_f64_vec().first().copied().unwrap_or(default))
}

/// Whether boxes `p` and `q` overlap by more than `threshold` (intersection over union).
fn suppresses(p: &[f64], q: &[f64], center: bool, threshold: f64) -> bool {
    let corners = |b: &[f64]| -> [f64; 4] {
        if center {
            let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
            [b[1] - hh, b[0] - hw, b[1] + hh, b[0] + hw]
        } else {
            [
                b[0].min(b[2]),
                b[1].min(b[3]),
                b[0].max(b[2]),
                b[1].max(b[3]),
            ]
        }
    };
    let (a, b) = (corners(p), corners(q));
    let (y0, x0) = (a[0].max(b[0]), a[1].max(b[1]));
    let (y1, x1) = (a[2].min(b[2]), a[3].min(b[3]));
    if x1 <= x0 || y1 <= y0 {
        return false;
    }
    let inter = (x1 - x0) * (y1 - y0);
    let area = |c: &[f64; 4]| (c[2] - c[0]) * (c[3] - c[1]);
    let (a1, a2) = (area(&a), area(&b));
    let union = a1 + a2 - inter;
    if inter <= 0.0 || a1 <= 0.0 || a2 <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

pub fn non_max_suppression(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let boxes = known_input(cx, 0, "boxes")?;
    let scores = known_input(cx, 1, "scores")?;
    let max_out = opt_known_scalar(cx, 2, "max_output_boxes_per_class", 0.0)?.max(0.0);
    let iou = opt_known_scalar(cx, 3, "iou_threshold", 0.0)?;
    let score_threshold = if cx.opt_input(4).is_some() {
        Some(opt_known_scalar(cx, 4, "score_threshold", 0.0)?)
    } else {
        None
    };
    let center = cx.attr_i("center_point_box", 0) != 0;
    let (bs, ss) = (boxes.shape(), scores.shape());
    if bs.len() != 3 || bs[2] != 4 || ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
        bail!("boxes {bs:?} must be [batch, boxes, 4] and scores {ss:?} [batch, classes, boxes]");
    }
    let (nb, nc, nbox) = (bs[0], ss[1], bs[1]);
    let work = (nb * nc) as u64 * nbox as u64 * (nbox as f64).min(max_out) as u64;
    if work > MAX_NMS_WORK {
        bail!(
            "{nb}x{nc} classes of {nbox} boxes are more than the importer suppresses (at most {MAX_NMS_WORK} box pairs)"
        );
    }
    let bv = boxes.to_f64_vec();
    let sv = scores.to_f64_vec();
    let mut out = Vec::new();
    for b in 0..nb {
        let boxes_of = |i: usize| &bv[(b * nbox + i) * 4..(b * nbox + i) * 4 + 4];
        for c in 0..nc {
            let s = &sv[(b * nc + c) * nbox..(b * nc + c + 1) * nbox];
            let mut cand: Vec<usize> = (0..nbox)
                .filter(|&i| score_threshold.is_none_or(|t| s[i] > t))
                .collect();
            cand.sort_by(|&p, &q| s[q].total_cmp(&s[p]).then(p.cmp(&q)));
            let mut kept: Vec<usize> = Vec::new();
            for i in cand {
                if kept.len() as f64 >= max_out {
                    break;
                }
                if kept
                    .iter()
                    .all(|&j| !suppresses(boxes_of(i), boxes_of(j), center, iou))
                {
                    kept.push(i);
                    out.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    if out.len() as u64 > MAX_FOLDED_ELEMENTS {
        bail!("too many selected boxes");
    }
    let n = out.len() / 3;
    Ok(vec![Value::array(int_array(&[n, 3], out)?)])
}
