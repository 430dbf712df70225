//! The transformer workloads' model: one post-norm encoder layer, as PyTorch's
//! `nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)` computes it,
//! built from kiln's matmul, reshape, permute, softmax and layer norm.
//!
//! ```text
//! h = norm1(x + out_proj(attention(x)))      attention: 4 heads of 64, softmax(q·kᵀ/8)·v
//! y = norm2(h + linear2(relu(linear1(h))))   LayerNorm eps 1e-5
//! ```
//!
//! The train step's classifier pools `y` over the sequence (mean over axis 1) and applies
//! `head = Linear(256, 10)`. Parameters are named as the `state_dict` of a module holding
//! the encoder layer as `layer` and the classifier as `head`, so
//! crates/bench/peers/bench_peers.py loads the same values by name.

use kiln::{DType, Dim, Graph, Tensor};

/// Model width.
pub const D_MODEL: usize = 256;
/// Attention heads.
pub const HEADS: usize = 4;
/// Width of the feed-forward block.
pub const FF: usize = 1024;
/// Sequence length of the workloads.
pub const SEQ: usize = 128;
/// Classes of the train step's head.
pub const CLASSES: usize = 10;
/// LayerNorm's epsilon (PyTorch's default).
const EPS: f64 = 1e-5;

/// `(name, shape, bound, centre)` of every parameter in `state_dict` order: the value is
/// `U(centre - bound, centre + bound)`. Weights get PyTorch's default bound
/// (xavier-uniform `√(6 / (256 + 768))` for the packed q/k/v projection, `1/√fan_in` for
/// the Linear layers). PyTorch starts the attention biases and LayerNorm biases at 0 and
/// LayerNorm weights at 1; here they are drawn around those values (bound `1/√256`) so that
/// every parameter changes the output a comparison checks.
pub fn param_specs(head: bool) -> Vec<(String, Vec<usize>, f64, f64)> {
    let d = D_MODEL;
    let fan = |n: usize| 1.0 / (n as f64).sqrt();
    let xavier = (6.0 / (d + 3 * d) as f64).sqrt();
    let mut v = vec![
        (
            "layer.self_attn.in_proj_weight",
            vec![3 * d, d],
            xavier,
            0.0,
        ),
        ("layer.self_attn.in_proj_bias", vec![3 * d], fan(d), 0.0),
        ("layer.self_attn.out_proj.weight", vec![d, d], fan(d), 0.0),
        ("layer.self_attn.out_proj.bias", vec![d], fan(d), 0.0),
        ("layer.linear1.weight", vec![FF, d], fan(d), 0.0),
        ("layer.linear1.bias", vec![FF], fan(d), 0.0),
        ("layer.linear2.weight", vec![d, FF], fan(FF), 0.0),
        ("layer.linear2.bias", vec![d], fan(FF), 0.0),
        ("layer.norm1.weight", vec![d], fan(d), 1.0),
        ("layer.norm1.bias", vec![d], fan(d), 0.0),
        ("layer.norm2.weight", vec![d], fan(d), 1.0),
        ("layer.norm2.bias", vec![d], fan(d), 0.0),
    ];
    if head {
        v.push(("head.weight", vec![CLASSES, d], fan(d), 0.0));
        v.push(("head.bias", vec![CLASSES], fan(d), 0.0));
    }
    v.into_iter()
        .map(|(n, s, b, c)| (n.to_string(), s, b, c))
        .collect()
}

fn p(g: &Graph, name: &str, shape: impl kiln::IntoShape) -> Tensor {
    g.param(&format!("layer.{name}"), DType::F32, shape)
}

/// The encoder layer over `x` `[batch, seq, 256]`: returns `(x, y)` with `y` shaped like `x`.
pub fn encoder(g: &Graph, batch: impl Into<Dim>, seq: usize) -> (Tensor, Tensor) {
    let (d, h, dh) = (D_MODEL, HEADS, D_MODEL / HEADS);
    let n: Dim = batch.into();
    let x = g.input("x", DType::F32, (n.clone(), seq, d));
    let qkv = x.linear(
        &p(g, "self_attn.in_proj_weight", [3 * d, d]),
        Some(&p(g, "self_attn.in_proj_bias", [3 * d])),
    );
    // [batch, seq, 3·256] -> the i-th of q, k, v as [batch, heads, seq, 64].
    let split = |i: i64| {
        qkv.slice(-1, i * d as i64, (i + 1) * d as i64, 1)
            .reshape((n.clone(), seq, h, dh))
            .permute([0, 2, 1, 3])
    };
    let q = split(0) * (1.0 / (dh as f64).sqrt());
    let (k, v) = (split(1), split(2));
    let att = q.matmul(&k.t()).softmax(-1).matmul(&v);
    let att = att.permute([0, 2, 1, 3]).reshape((n, seq, d));
    let sa = att.linear(
        &p(g, "self_attn.out_proj.weight", [d, d]),
        Some(&p(g, "self_attn.out_proj.bias", [d])),
    );
    let norm = |t: Tensor, which: &str| {
        t.layer_norm(
            1,
            Some(&p(g, &format!("{which}.weight"), [d])),
            Some(&p(g, &format!("{which}.bias"), [d])),
            EPS,
        )
    };
    let hid = norm(&x + sa, "norm1");
    let ff = hid
        .linear(
            &p(g, "linear1.weight", [FF, d]),
            Some(&p(g, "linear1.bias", [FF])),
        )
        .relu()
        .linear(
            &p(g, "linear2.weight", [d, FF]),
            Some(&p(g, "linear2.bias", [d])),
        );
    let y = norm(&hid + ff, "norm2");
    (x, y)
}

/// The train step's model: [`encoder`], mean over the sequence, `head` Linear(256, 10);
/// returns `(x, logits)` with logits `[batch, 10]`.
pub fn classifier(g: &Graph, batch: impl Into<Dim>, seq: usize) -> (Tensor, Tensor) {
    let (x, y) = encoder(g, batch, seq);
    let w = g.param("head.weight", DType::F32, [CLASSES, D_MODEL]);
    let b = g.param("head.bias", DType::F32, [CLASSES]);
    (x, y.mean(1, false).linear(&w, Some(&b)))
}

/// Forward FLOP of the encoder layer (multiply-add = 2): the four projections, the two
/// attention products and the feed-forward block; softmax and layer norms not counted.
pub fn forward_flops(batch: usize, seq: usize) -> f64 {
    let (b, s, d, f) = (batch as f64, seq as f64, D_MODEL as f64, FF as f64);
    2.0 * b * s * (4.0 * d * d + 2.0 * s * d + 2.0 * d * f)
}
