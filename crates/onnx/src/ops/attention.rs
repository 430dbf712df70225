//! The attention family: Attention (scaled dot-product with masks, causal, KV cache, GQA,
//! softcap), RotaryEmbedding, LinearAttention (recurrent, unrolled over the sequence) and
//! CausalConvWithState, each composed from matmul, softmax, select and movement ops.

use super::{NodeCx, OpResult, bail, dims_of, need_float};
use crate::value::Value;
use kiln::{Graph, Tensor};
use kiln_ir::{DType, Dim, Shape};

/// A positive integer attribute the op requires.
fn positive_attr(cx: &NodeCx<'_>, name: &str) -> OpResult<u64> {
    if !cx.has_attr(name) {
        bail!("attribute {name} is required");
    }
    match u64::try_from(cx.attr_i(name, 0)) {
        Ok(v) if v > 0 && v <= crate::limits::MAX_DIM => Ok(v),
        _ => bail!(
            "attribute {name} must be positive, got {}",
            cx.attr_i(name, 0)
        ),
    }
}

/// `t`'s dims, which must number `rank` (a tensor an earlier error poisoned has none).
fn dims_n(t: &Tensor, rank: usize, what: &str) -> OpResult<Vec<Dim>> {
    let d = dims_of(t);
    if d.len() != rank {
        bail!("{what} must be rank {rank}, got {}", t.shape());
    }
    Ok(d)
}

/// `[B, S, H*D]` → `[B, H, S, D]`.
fn split_heads(t: &Tensor, heads: u64, what: &str) -> OpResult<Tensor> {
    let d = dims_of(t);
    if d.len() != 3 {
        bail!(
            "{what} must be rank 3 [batch, seq, heads*size], got {}",
            t.shape()
        );
    }
    let Some(size) = d[2].exact_div(&Dim::known(heads)) else {
        bail!(
            "{what}'s hidden size {} does not divide into {heads} heads",
            d[2]
        );
    };
    let shape = Shape::new([d[0].clone(), d[1].clone(), Dim::known(heads), size]);
    Ok(t.reshape(shape).permute([0i64, 2, 1, 3]))
}

/// `[B, H, S, D]` → `[B, S, H*D]`.
fn merge_heads(t: &Tensor) -> OpResult<Tensor> {
    let d = dims_n(t, 4, "the attention output")?;
    let hidden = &d[1] * &d[3];
    Ok(t.permute([0i64, 2, 1, 3])
        .reshape(Shape::new([d[0].clone(), d[2].clone(), hidden])))
}

/// Each head of `[B, H, T, D]` repeated `times` times in place (`h0, h0, h1, h1, ...`).
fn repeat_heads(t: &Tensor, times: u64) -> OpResult<Tensor> {
    if times == 1 {
        return Ok(t.clone());
    }
    let d = dims_n(t, 4, "a KV tensor")?;
    let wide = Shape::new([
        d[0].clone(),
        d[1].clone(),
        Dim::known(times),
        d[2].clone(),
        d[3].clone(),
    ]);
    let heads = &d[1] * &Dim::known(times);
    Ok(t.unsqueeze(2).expand(wide).reshape(Shape::new([
        d[0].clone(),
        heads,
        d[2].clone(),
        d[3].clone(),
    ])))
}

/// A dim as an integer scalar tensor (symbolic dims are counted at run time).
fn dim_scalar(g: &Graph, d: &Dim, dtype: DType) -> Tensor {
    match d.as_known() {
        Some(k) => g.scalar(k as f64, dtype),
        None => g.ones(Shape::new([d.clone()]), dtype).sum(0i64, false),
    }
}

/// `0` where `keep`, `-inf` elsewhere, as `dtype`.
fn keep_bias(g: &Graph, keep: &Tensor, dtype: DType) -> Tensor {
    keep.where_(g.scalar(0.0, dtype), f64::NEG_INFINITY)
}

/// How many query heads share each KV head of `[B, H, S, D]` Q, K and V, after checking
/// that their batch, head, length and size axes fit together.
fn kv_groups(q: &Tensor, k: &Tensor, v: &Tensor) -> OpResult<u64> {
    let (qd, kd, vd) = (dims_n(q, 4, "Q")?, dims_n(k, 4, "K")?, dims_n(v, 4, "V")?);
    if qd[0] != kd[0] || kd[0] != vd[0] || kd[1] != vd[1] || kd[2] != vd[2] || qd[3] != kd[3] {
        bail!(
            "Q {} / K {} / V {} do not fit [batch, heads, seq, size]",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    if qd[1] == kd[1] {
        return Ok(1);
    }
    match (qd[1].as_known(), kd[1].as_known()) {
        (Some(hq), Some(hkv)) if hkv > 0 && hq % hkv == 0 => Ok(hq / hkv),
        _ => bail!(
            "q_num_heads {} must be a multiple of kv_num_heads {}",
            qd[1],
            kd[1]
        ),
    }
}

/// The dtype of the softmax: the `softmax_precision` attribute, else `default`. FLOAT16
/// and BFLOAT16 are computed in float32 (kiln has no 16-bit floats).
fn softmax_dtype(cx: &NodeCx<'_>, default: DType) -> OpResult<DType> {
    if !cx.has_attr("softmax_precision") {
        return Ok(default);
    }
    match cx.attr_i("softmax_precision", 0) {
        1 | 10 | 16 => Ok(DType::F32),
        11 => Ok(DType::F64),
        p => bail!("softmax_precision {p} is not a float type"),
    }
}

/// `1/sqrt(head_size)` in float32, as the ONNX function bodies compute it.
fn default_scale(size: &Dim) -> OpResult<f32> {
    match size.as_known() {
        Some(n) if n > 0 => Ok(1.0 / (n as f32).sqrt()),
        _ => bail!("the default scale needs a known, positive head size, got {size}"),
    }
}

/// `Attention` (opsets 23, 24): `softmax(softcap(Q·Kᵀ·scale) + bias)·V` with the bias built
/// from `attn_mask` (bool or additive, padded with `-inf` to the total length), `is_causal`
/// (upper-left aligned after the past) and `nonpad_kv_seqlen`. A fully masked row gives
/// NaN, as the ONNX function body does.
pub fn attention(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let (q, k, v) = (cx.tensor(0)?, cx.tensor(1)?, cx.tensor(2)?);
    need_float(&q, "Attention")?;
    let dt = q.dtype();
    if k.dtype() != dt || v.dtype() != dt {
        bail!(
            "Q, K and V must have one dtype, got {dt}, {} and {}",
            k.dtype(),
            v.dtype()
        );
    }
    let rank = q.rank();
    if !(rank == 3 || rank == 4) || k.rank() != rank || v.rank() != rank {
        bail!(
            "Q, K and V must all be rank 3 or all rank 4, got {}, {} and {}",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    let (q, mut k, mut v) = if rank == 3 {
        let hq = positive_attr(cx, "q_num_heads")?;
        let hkv = positive_attr(cx, "kv_num_heads")?;
        (
            split_heads(&q, hq, "Q")?,
            split_heads(&k, hkv, "K")?,
            split_heads(&v, hkv, "V")?,
        )
    } else {
        (q, k, v)
    };
    let past = match (cx.opt_input(4).is_some(), cx.opt_input(5).is_some()) {
        (true, true) => Some((cx.tensor(4)?, cx.tensor(5)?)),
        (false, false) => None,
        _ => bail!("past_key and past_value must be given together"),
    };
    let mut past_len = Dim::known(0);
    if let Some((pk, pv)) = past {
        if pk.rank() != 4 || pv.rank() != 4 || pk.dtype() != dt || pv.dtype() != dt {
            bail!(
                "past_key and past_value must be rank 4 of {dt}, got {} and {}",
                pk.shape(),
                pv.shape()
            );
        }
        let (pkd, pvd) = (dims_of(&pk), dims_of(&pv));
        let (kd, vd) = (dims_n(&k, 4, "K")?, dims_n(&v, 4, "V")?);
        if pkd[..2] != kd[..2] || pkd[3] != kd[3] || pvd[..2] != vd[..2] || pvd[3] != vd[3] {
            bail!(
                "past_key {} / past_value {} do not fit K {} / V {}",
                pk.shape(),
                pv.shape(),
                k.shape(),
                v.shape()
            );
        }
        if pkd[2] != pvd[2] {
            bail!(
                "past_key and past_value have different lengths: {} and {}",
                pkd[2],
                pvd[2]
            );
        }
        past_len = pkd[2].clone();
        k = Tensor::cat(&[&pk, &k], 2);
        v = Tensor::cat(&[&pv, &v], 2);
    }
    let groups = kv_groups(&q, &k, &v)?;
    let qd = dims_of(&q);
    let scale = match cx.has_attr("scale") {
        true => cx.attr_f("scale", 1.0) as f32,
        false => default_scale(&qd[3])?,
    };
    let kd = dims_of(&k);
    let root = f64::from(scale.sqrt());
    let (sq, total) = (qd[2].clone(), kd[2].clone());
    let g = cx.g.clone();

    let mut bias: Option<Tensor> = None;
    if cx.opt_input(3).is_some() {
        let m = cx.tensor(3)?;
        let mask_rank = m.rank();
        if mask_rank == 0 || mask_rank > 4 {
            bail!("attn_mask must have rank 1 to 4, got {}", m.shape());
        }
        let mut m = match m.dtype() {
            DType::Bool => keep_bias(&g, &m, dt),
            d if d == dt => m,
            d => bail!("attn_mask must be bool or {dt}, got {d}"),
        };
        let md = dims_n(&m, mask_rank, "attn_mask")?;
        let last = md[mask_rank - 1].clone();
        if last != total {
            let (Some(l), Some(t)) = (last.as_known(), total.as_known()) else {
                bail!("attn_mask's last axis {last} must be known to pad it to {total}");
            };
            if l > t {
                bail!("attn_mask's last axis {l} is longer than the total length {t}");
            }
            let mut pads = vec![(0, 0); mask_rank];
            pads[mask_rank - 1] = (0, t - l);
            m = m.pad(&pads, f64::NEG_INFINITY);
        }
        bias = Some(m);
    }
    if cx.attr_i("is_causal", 0) != 0 {
        // int32 positions where they fit (the GPU backend has no int64).
        let fits = total.as_known().is_some_and(|t| t <= i32::MAX as u64);
        let it = if fits { DType::I32 } else { DType::I64 };
        let grid = Shape::new([sq.clone(), total.clone()]);
        let rows = g.iota(it, grid.clone(), 0);
        let cols = g.iota(it, grid, 1);
        let keep = cols.le(rows.add(dim_scalar(&g, &past_len, it)));
        let causal = keep_bias(&g, &keep, dt);
        bias = Some(match bias {
            Some(b) => b.add(&causal),
            None => causal,
        });
    }
    if cx.opt_input(6).is_some() {
        let n = cx.tensor(6)?;
        if !n.dtype().is_int() || n.rank() != 1 || dims_of(&n)[0] != qd[0] {
            bail!(
                "nonpad_kv_seqlen must be an integer vector [batch], got {}{}",
                n.dtype(),
                n.shape()
            );
        }
        let pos = g
            .iota(DType::I64, Shape::new([total.clone()]), 0)
            .reshape(Shape::new([Dim::known(1), total.clone()]));
        let keep = pos.lt(n.cast(DType::I64).unsqueeze(1));
        let pad = keep_bias(&g, &keep, dt).reshape(Shape::new([
            qd[0].clone(),
            Dim::known(1),
            Dim::known(1),
            total.clone(),
        ]));
        bias = Some(match bias {
            Some(b) => b.add(&pad),
            None => pad,
        });
    }

    let k_all = repeat_heads(&k.mul(root), groups)?;
    let v_all = repeat_heads(&v, groups)?;
    let raw = q.mul(root).matmul(&k_all.transpose(-1, -2));
    let softcap = cx.attr_f("softcap", 0.0);
    let capped = if softcap > 0.0 {
        raw.div(softcap).tanh().mul(softcap)
    } else {
        raw.clone()
    };
    let biased = match &bias {
        Some(b) => capped.add(b),
        None => capped.clone(),
    };
    let precision = softmax_dtype(cx, dt)?;
    let probs = if precision == dt {
        biased.softmax(-1)
    } else {
        biased.cast(precision).softmax(-1).cast(dt)
    };
    let qk = match cx.attr_i("qk_matmul_output_mode", 0) {
        0 => raw,
        1 => capped,
        2 => biased,
        3 => probs.clone(),
        m => bail!("qk_matmul_output_mode {m} is not one of 0, 1, 2, 3"),
    };
    let mut y = probs.matmul(&v_all);
    if rank == 3 {
        y = merge_heads(&y)?;
    }
    Ok(vec![
        Value::tensor(y),
        Value::tensor(k),
        Value::tensor(v),
        Value::tensor(qk),
    ])
}

/// `RotaryEmbedding` (opset 23): rotates the first `rotary_embedding_dim` features of each
/// head by the angles whose cosines and sines the caches hold, split in halves or
/// interleaved; the caches are indexed by `position_ids` when given.
pub fn rotary_embedding(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "RotaryEmbedding")?;
    let dt = x.dtype();
    let (cos, sin) = (cx.tensor(1)?, cx.tensor(2)?);
    if cos.dtype() != dt || sin.dtype() != dt {
        bail!(
            "cos_cache and sin_cache must be {dt}, got {} and {}",
            cos.dtype(),
            sin.dtype()
        );
    }
    // Heads at axis `head_axis` of a [B, H, S, D] or [B, S, H, D] view.
    let (x4, head_axis) = match x.rank() {
        4 => (x.clone(), 1),
        3 => {
            let heads = positive_attr(cx, "num_heads")?;
            let d = dims_of(&x);
            let Some(size) = d[2].exact_div(&Dim::known(heads)) else {
                bail!("hidden size {} does not divide into {heads} heads", d[2]);
            };
            let shape = Shape::new([d[0].clone(), d[1].clone(), Dim::known(heads), size]);
            (x.reshape(shape), 2)
        }
        _ => bail!("input must be rank 3 or 4, got {}", x.shape()),
    };
    let xd = dims_n(&x4, 4, "the input")?;
    let Some(size) = xd[3].as_known() else {
        bail!("RotaryEmbedding needs a known head size, got {}", xd[3]);
    };
    let rot = match cx.attr_i("rotary_embedding_dim", 0) {
        0 => size,
        r => match u64::try_from(r) {
            Ok(r) if r <= size => r,
            _ => bail!("rotary_embedding_dim {r} must be in 0..={size}"),
        },
    };
    if rot % 2 != 0 {
        bail!("the rotated size {rot} must be even");
    }
    let half = rot / 2;
    let (cos, sin) = if cx.opt_input(3).is_some() {
        let pos = cx.tensor(3)?;
        if !matches!(pos.dtype(), DType::I32 | DType::I64) || pos.rank() != 2 {
            bail!(
                "position_ids must be an integer [batch, seq] tensor, got {}{}",
                pos.dtype(),
                pos.shape()
            );
        }
        if cos.rank() != 2 || sin.rank() != 2 || dims_of(&cos) != dims_of(&sin) {
            bail!(
                "with position_ids the caches must be [max_position, {half}], got {} and {}",
                cos.shape(),
                sin.shape()
            );
        }
        let pd = dims_of(&pos);
        let rows = dim_scalar(cx.g, &dims_of(&cos)[0], DType::I64);
        let pos = pos.cast(DType::I64);
        let flat = pos
            .lt(0.0)
            .where_(pos.add(&rows), &pos)
            .reshape(Shape::new([&pd[0] * &pd[1]]));
        let pick = |c: &Tensor| {
            let cd = dims_of(c);
            c.index_select(0, &flat).reshape(Shape::new([
                pd[0].clone(),
                pd[1].clone(),
                cd[1].clone(),
            ]))
        };
        (pick(&cos), pick(&sin))
    } else {
        if cos.rank() != 3 || sin.rank() != 3 || dims_of(&cos) != dims_of(&sin) {
            bail!(
                "without position_ids the caches must be [batch, seq, {half}], got {} and {}",
                cos.shape(),
                sin.shape()
            );
        }
        (cos, sin)
    };
    if dims_n(&cos, 3, "the gathered caches")?[2] != Dim::known(half) {
        bail!("the caches' last axis must be {half}, got {}", cos.shape());
    }
    let (cos, sin) = (cos.unsqueeze(head_axis), sin.unsqueeze(head_axis));
    let (rot_i, size_i, half_i) = (rot as i64, size as i64, half as i64);
    let x_rot = x4.slice(-1, 0, rot_i, 1);
    let interleaved = cx.attr_i("interleaved", 0) != 0;
    let (x1, x2) = if interleaved {
        (x_rot.slice(-1, 0, rot_i, 2), x_rot.slice(-1, 1, rot_i, 2))
    } else {
        (
            x_rot.slice(-1, 0, half_i, 1),
            x_rot.slice(-1, half_i, rot_i, 1),
        )
    };
    let real = cos.mul(&x1).sub(sin.mul(&x2));
    let imag = sin.mul(&x1).add(cos.mul(&x2));
    let mut y = if interleaved {
        Tensor::cat(&[&real.unsqueeze(-1), &imag.unsqueeze(-1)], -1).reshape(x_rot.shape())
    } else {
        Tensor::cat(&[&real, &imag], -1)
    };
    if rot < size {
        y = Tensor::cat(&[&y, &x4.slice(-1, rot_i, size_i, 1)], -1);
    }
    Ok(vec![Value::tensor(y.reshape(x.shape()))])
}

/// `CausalConvWithState` (opset 27): a depthwise 1-D convolution over the past state (or
/// zeros) followed by the input, with optional bias and SiLU; the new state is the last
/// `k - 1` positions of that padded sequence.
pub fn causal_conv_with_state(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "CausalConvWithState")?;
    let w = cx.tensor(1)?;
    let (xd, wd) = (dims_of(&x), dims_of(&w));
    if xd.len() != 3 || wd.len() != 3 || w.dtype() != x.dtype() {
        bail!(
            "input and weight must be rank 3 of one dtype, got {}{} and {}{}",
            x.dtype(),
            x.shape(),
            w.dtype(),
            w.shape()
        );
    }
    let (Some(c), Some(k)) = (xd[1].as_known(), wd[2].as_known()) else {
        bail!(
            "the channels {} and kernel size {} must be known",
            xd[1],
            wd[2]
        );
    };
    if wd[0] != xd[1] || !wd[1].is_one() || k == 0 || c == 0 {
        bail!("weight {} must be [{c}, 1, k] with k > 0", w.shape());
    }
    let Some(len) = xd[2].as_known() else {
        bail!("CausalConvWithState needs a known length, got {}", xd[2]);
    };
    let carry = k - 1;
    let state_shape = Shape::new([xd[0].clone(), xd[1].clone(), Dim::known(carry)]);
    let past = if cx.opt_input(3).is_some() {
        let p = cx.tensor(3)?;
        if p.dtype() != x.dtype() || p.shape() != state_shape {
            bail!(
                "past_state must be {}{state_shape}, got {}{}",
                x.dtype(),
                p.dtype(),
                p.shape()
            );
        }
        Some(p)
    } else if carry > 0 {
        Some(cx.g.zeros(state_shape, x.dtype()))
    } else {
        None
    };
    let padded = match &past {
        Some(p) => Tensor::cat(&[p, &x], 2),
        None => x.clone(),
    };
    let opts = kiln::ConvOpts {
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: c,
    };
    let mut y = padded.unsqueeze(2).conv2d(&w.unsqueeze(2), opts).squeeze(2);
    if cx.opt_input(2).is_some() {
        let b = cx.tensor(2)?;
        if b.dtype() != x.dtype() || dims_of(&b) != [xd[1].clone()] {
            bail!(
                "bias must be {}[{c}], got {}{}",
                x.dtype(),
                b.dtype(),
                b.shape()
            );
        }
        y = y.add(b.unsqueeze(1));
    }
    match cx.attr_s("activation", "none").as_str() {
        "none" => {}
        "silu" | "swish" => y = y.mul(y.sigmoid()),
        a => bail!("activation {a:?} is not one of none, silu, swish"),
    }
    let total = (len + carry) as i64;
    let present = padded.slice(2, total - carry as i64, total, 1);
    Ok(vec![Value::tensor(y), Value::tensor(present)])
}

/// `[B, T, H*X]` (or `[B, T, H]`, `X = 1`) → `[B, H, T, X]`, for decay and beta.
fn per_head(t: &Tensor, heads: &Dim, width: Dim) -> OpResult<Tensor> {
    let d = dims_n(t, 3, "decay and beta")?;
    Ok(t.reshape(Shape::new([
        d[0].clone(),
        d[1].clone(),
        heads.clone(),
        width,
    ]))
    .permute([0i64, 2, 1, 3]))
}

/// `LinearAttention` (opset 27): the recurrence `S_t = a_t S_{t-1} + k_t ⊗ u_t`,
/// `o_t = scale · q_tᵀ S_t`, with `a_t = exp(decay_t)` for the gated rules and
/// `u_t = β_t (v_t - a_t S_{t-1}ᵀ k_t)` for the delta rules, unrolled over the sequence
/// (at most `MAX_UNROLLED_STEPS` steps); KV heads are shared by groups of query heads.
pub fn linear_attention(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    use crate::limits::MAX_UNROLLED_STEPS;
    let (q, k, v) = (cx.tensor(0)?, cx.tensor(1)?, cx.tensor(2)?);
    need_float(&q, "LinearAttention")?;
    let dt = q.dtype();
    if k.dtype() != dt || v.dtype() != dt {
        bail!(
            "query, key and value must have one dtype, got {dt}, {} and {}",
            k.dtype(),
            v.dtype()
        );
    }
    let hq = positive_attr(cx, "q_num_heads")?;
    let hkv = positive_attr(cx, "kv_num_heads")?;
    if hq % hkv != 0 {
        bail!("q_num_heads {hq} must be a multiple of kv_num_heads {hkv}");
    }
    let rule = cx.attr_s("update_rule", "gated_delta");
    let (gated, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        r => bail!("update_rule {r:?} is not one of linear, gated, delta, gated_delta"),
    };
    if gated != cx.opt_input(4).is_some() {
        bail!(
            "update_rule {rule} {} the decay input",
            if gated { "needs" } else { "forbids" }
        );
    }
    if delta != cx.opt_input(5).is_some() {
        bail!(
            "update_rule {rule} {} the beta input",
            if delta { "needs" } else { "forbids" }
        );
    }
    let (q4, k4, v4) = (
        split_heads(&q, hq, "query")?,
        split_heads(&k, hkv, "key")?,
        split_heads(&v, hkv, "value")?,
    );
    let (qd, kd, vd) = (
        dims_n(&q4, 4, "query")?,
        dims_n(&k4, 4, "key")?,
        dims_n(&v4, 4, "value")?,
    );
    if qd[0] != kd[0] || kd[0] != vd[0] || qd[2] != kd[2] || kd[2] != vd[2] || qd[3] != kd[3] {
        bail!(
            "query {} / key {} / value {} do not fit [batch, seq, heads*size]",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    let Some(steps) = qd[2].as_known() else {
        bail!(
            "LinearAttention needs a known sequence length, got {}",
            qd[2]
        );
    };
    if steps > MAX_UNROLLED_STEPS {
        bail!("{steps} steps is more than the {MAX_UNROLLED_STEPS} LinearAttention unrolls");
    }
    let (b, heads, dk, dv) = (kd[0].clone(), kd[1].clone(), kd[3].clone(), vd[3].clone());
    let state_shape = Shape::new([b.clone(), heads.clone(), dk.clone(), dv.clone()]);
    let mut state = if cx.opt_input(3).is_some() {
        let p = cx.tensor(3)?;
        if p.dtype() != dt || p.shape() != state_shape {
            bail!(
                "past_state must be {dt}{state_shape}, got {}{}",
                p.dtype(),
                p.shape()
            );
        }
        p
    } else {
        cx.g.zeros(state_shape, dt)
    };
    let decay = if gated {
        let d = cx.tensor(4)?;
        let dd = dims_of(&d);
        if d.dtype() != dt || d.rank() != 3 || dd[0] != b || dd[1] != qd[2] {
            bail!(
                "decay must be {dt}[batch, seq, ...], got {}{}",
                d.dtype(),
                d.shape()
            );
        }
        let width = if dd[2] == heads {
            Dim::known(1)
        } else if dd[2] == &heads * &dk {
            dk.clone()
        } else {
            bail!(
                "decay's last axis {} must be {heads} or {heads}*{dk}",
                dd[2]
            );
        };
        // [B, H, T, X] → [B, H, T, X, 1]: scales the state's rows.
        Some(per_head(&d, &heads, width)?.exp().unsqueeze(-1))
    } else {
        None
    };
    let beta = if delta {
        let bt = cx.tensor(5)?;
        let bd = dims_of(&bt);
        if bt.dtype() != dt || bt.rank() != 3 || bd[0] != b || bd[1] != qd[2] {
            bail!(
                "beta must be {dt}[batch, seq, ...], got {}{}",
                bt.dtype(),
                bt.shape()
            );
        }
        if bd[2] != heads && !bd[2].is_one() {
            bail!("beta's last axis {} must be {heads} or 1", bd[2]);
        }
        Some(per_head(&bt, &bd[2], Dim::known(1))?)
    } else {
        None
    };
    let scale = match cx.attr_f("scale", 0.0) {
        s if s != 0.0 => s,
        _ => match dk.as_known() {
            Some(n) if n > 0 => 1.0 / (n as f64).sqrt(),
            _ => bail!("the default scale needs a known, positive key size, got {dk}"),
        },
    };
    let groups = hq / hkv;
    let mut outs = Vec::with_capacity(steps as usize);
    for t in 0..steps as i64 {
        let at = |x: &Tensor| x.slice(2, t, t + 1, 1);
        // k_t as a column [B, H, dk, 1], v_t as a row [B, H, 1, dv].
        let k_col = at(&k4).transpose(-1, -2);
        let mut u = at(&v4);
        if let Some(a) = &decay {
            state = state.mul(at(a).squeeze(2));
        }
        if let Some(bt) = &beta {
            let recalled = k_col.mul(&state).sum(2i64, true);
            u = at(bt).mul(u.sub(&recalled));
        }
        state = state.add(k_col.mul(&u));
        outs.push(at(&q4).matmul(&repeat_heads(&state, groups)?).mul(scale));
    }
    let y = if outs.is_empty() {
        cx.g.zeros(
            Shape::new([qd[0].clone(), qd[1].clone(), Dim::known(0), dv]),
            dt,
        )
    } else {
        Tensor::cat(&outs.iter().collect::<Vec<_>>(), 2)
    };
    Ok(vec![Value::tensor(merge_heads(&y)?), Value::tensor(state)])
}

/// Runs a FlexAttention modifier sub-graph on `x`, which must give back one tensor of the
/// same shape and dtype.
fn modify(cx: &NodeCx<'_>, attr: &str, x: Tensor) -> OpResult<Tensor> {
    let Some(graph) = cx.attr_g(attr) else {
        return Ok(x);
    };
    let outs = crate::import::apply_subgraph(cx.g, graph, cx.opset, vec![Value::tensor(x.clone())])
        .map_err(|e| super::OpError(format!("{attr}: {e}")))?;
    let [out] = outs.as_slice() else {
        bail!("{attr} must have one output, got {}", outs.len());
    };
    let mut out = out.clone();
    let t = out.tensor_in(cx.g);
    if t.dtype() != x.dtype() || t.shape() != x.shape() {
        bail!(
            "{attr} must keep its input's type {}{}, got {}{}",
            x.dtype(),
            x.shape(),
            t.dtype(),
            t.shape()
        );
    }
    Ok(t)
}

/// `FlexAttention` (ai.onnx.preview, version 1): `softmax(score_mod(Q·Kᵀ·scale))` through
/// `prob_mod`, times V, with the modifiers imported from their sub-graphs and GQA as in
/// Attention.
pub fn flex_attention(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let (q, k, v) = (cx.tensor(0)?, cx.tensor(1)?, cx.tensor(2)?);
    need_float(&q, "FlexAttention")?;
    let dt = q.dtype();
    if k.dtype() != dt || v.dtype() != dt || q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        bail!(
            "Q, K and V must be rank 4 of one dtype, got {}{}, {}{} and {}{}",
            dt,
            q.shape(),
            k.dtype(),
            k.shape(),
            v.dtype(),
            v.shape()
        );
    }
    let groups = kv_groups(&q, &k, &v)?;
    let scale = match cx.has_attr("scale") {
        true => cx.attr_f("scale", 1.0) as f32,
        false => default_scale(&dims_n(&q, 4, "Q")?[3])?,
    };
    let root = f64::from(scale.sqrt());
    let precision = softmax_dtype(cx, if dt == DType::F64 { dt } else { DType::F32 })?;
    let k = repeat_heads(&k.mul(root), groups)?;
    let scores = q.mul(root).matmul(&k.transpose(-1, -2)).cast(precision);
    let scores = modify(cx, "score_mod", scores)?;
    let probs = modify(cx, "prob_mod", scores.softmax(-1))?;
    let y = probs.cast(dt).matmul(&repeat_heads(&v, groups)?);
    Ok(vec![Value::tensor(y)])
}
