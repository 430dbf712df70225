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
fn merge_heads(t: &Tensor) -> Tensor {
    let d = dims_of(t);
    let hidden = &d[1] * &d[3];
    t.permute([0i64, 2, 1, 3])
        .reshape(Shape::new([d[0].clone(), d[2].clone(), hidden]))
}

/// Each head of `[B, H, T, D]` repeated `times` times in place (`h0, h0, h1, h1, ...`).
fn repeat_heads(t: &Tensor, times: u64) -> Tensor {
    if times == 1 {
        return t.clone();
    }
    let d = dims_of(t);
    let wide = Shape::new([
        d[0].clone(),
        d[1].clone(),
        Dim::known(times),
        d[2].clone(),
        d[3].clone(),
    ]);
    let heads = &d[1] * &Dim::known(times);
    t.unsqueeze(2).expand(wide).reshape(Shape::new([
        d[0].clone(),
        heads,
        d[2].clone(),
        d[3].clone(),
    ]))
}

/// A dim as an `i64` scalar tensor (symbolic dims are counted at run time).
fn dim_scalar(g: &Graph, d: &Dim) -> Tensor {
    match d.as_known() {
        Some(k) => g.scalar(k as f64, DType::I64),
        None => g.ones(Shape::new([d.clone()]), DType::I64).sum(0i64, false),
    }
}

/// `0` where `keep`, `-inf` elsewhere, as `dtype`.
fn keep_bias(g: &Graph, keep: &Tensor, dtype: DType) -> Tensor {
    keep.where_(&g.scalar(0.0, dtype), f64::NEG_INFINITY)
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
        let (pkd, pvd, kd, vd) = (dims_of(&pk), dims_of(&pv), dims_of(&k), dims_of(&v));
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
    let (qd, kd, vd) = (dims_of(&q), dims_of(&k), dims_of(&v));
    if qd[0] != kd[0] || kd[0] != vd[0] || kd[1] != vd[1] || kd[2] != vd[2] || qd[3] != kd[3] {
        bail!(
            "Q {} / K {} / V {} do not fit [batch, heads, seq, size]",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    let groups = if qd[1] == kd[1] {
        1
    } else {
        match (qd[1].as_known(), kd[1].as_known()) {
            (Some(hq), Some(hkv)) if hkv > 0 && hq % hkv == 0 => hq / hkv,
            _ => bail!(
                "q_num_heads {} must be a multiple of kv_num_heads {}",
                qd[1],
                kd[1]
            ),
        }
    };
    let scale = if cx.has_attr("scale") {
        cx.attr_f("scale", 1.0) as f32
    } else {
        match qd[3].as_known() {
            Some(size) if size > 0 => 1.0 / (size as f32).sqrt(),
            _ => bail!(
                "the default scale needs a known, positive head size, got {}",
                qd[3]
            ),
        }
    };
    let root = f64::from(scale.sqrt());
    let (sq, total) = (qd[2].clone(), kd[2].clone());
    let g = cx.g.clone();

    let mut bias: Option<Tensor> = None;
    if cx.opt_input(3).is_some() {
        let m = cx.tensor(3)?;
        if m.rank() == 0 || m.rank() > 4 {
            bail!("attn_mask must have rank 1 to 4, got {}", m.shape());
        }
        let mut m = match m.dtype() {
            DType::Bool => keep_bias(&g, &m, dt),
            d if d == dt => m,
            d => bail!("attn_mask must be bool or {dt}, got {d}"),
        };
        let last = dims_of(&m)[m.rank() - 1].clone();
        if last != total {
            let (Some(l), Some(t)) = (last.as_known(), total.as_known()) else {
                bail!("attn_mask's last axis {last} must be known to pad it to {total}");
            };
            if l > t {
                bail!("attn_mask's last axis {l} is longer than the total length {t}");
            }
            let mut pads = vec![(0, 0); m.rank()];
            pads[m.rank() - 1] = (0, t - l);
            m = m.pad(&pads, f64::NEG_INFINITY);
        }
        bias = Some(m);
    }
    if cx.attr_i("is_causal", 0) != 0 {
        let grid = Shape::new([sq.clone(), total.clone()]);
        let rows = g.iota(DType::I64, grid.clone(), 0);
        let cols = g.iota(DType::I64, grid, 1);
        let keep = cols.le(rows.add(dim_scalar(&g, &past_len)));
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

    let k_all = repeat_heads(&k.mul(root), groups);
    let v_all = repeat_heads(&v, groups);
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
    let precision = match cx.has_attr("softmax_precision") {
        false => dt,
        // FLOAT, FLOAT16 and BFLOAT16 (kiln computes the 16-bit ones in float32), DOUBLE.
        true => match cx.attr_i("softmax_precision", 0) {
            1 | 10 | 16 => DType::F32,
            11 => DType::F64,
            p => bail!("softmax_precision {p} is not a float type"),
        },
    };
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
        y = merge_heads(&y);
    }
    Ok(vec![
        Value::tensor(y),
        Value::tensor(k),
        Value::tensor(v),
        Value::tensor(qk),
    ])
}
