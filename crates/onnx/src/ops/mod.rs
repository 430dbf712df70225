//! The op table: every ONNX op type kiln imports, and the per-node context op importers
//! read their inputs and attributes through. Each importer maps one node to kiln
//! primitives and composites, and folds it at import time where its inputs are known.

mod attention;
mod elementwise;
mod image;
mod index;
mod math;
mod ml;
mod movement;
mod nn;
mod quant;
mod reduce;
mod rnn;
mod scan;
mod signal;
mod source;
mod text;
mod training;

use crate::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::value::Value;
use kiln::{Graph, Tensor};
use kiln_ir::{Array, Dim};

/// Why one node could not be imported (the caller adds the node's identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError(pub String);

/// Result of an op importer.
pub type OpResult<T> = Result<T, OpError>;

/// Returns early with an [`OpError`] built like `format!`.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::ops::OpError(format!($($t)*)))
    };
}
pub(crate) use bail;

/// An op importer: the node's outputs, in order.
pub type Importer = fn(&mut NodeCx<'_>) -> OpResult<Vec<Value>>;

/// The ONNX op types of the default domain kiln imports, sorted by name.
pub const OPS: &[(&str, Importer)] = &[
    ("Abs", elementwise::abs),
    ("Acos", elementwise::acos),
    ("Acosh", elementwise::acosh),
    ("Add", elementwise::add),
    ("AffineGrid", image::affine_grid),
    ("And", elementwise::and),
    ("ArgMax", reduce::argmax),
    ("ArgMin", reduce::argmin),
    ("Asin", elementwise::asin),
    ("Asinh", elementwise::asinh),
    ("Atan", elementwise::atan),
    ("Atanh", elementwise::atanh),
    ("Attention", attention::attention),
    ("AveragePool", nn::average_pool),
    ("BatchNormalization", nn::batch_norm),
    ("BitCast", elementwise::bit_cast),
    ("BitShift", elementwise::bit_shift),
    ("BitwiseAnd", elementwise::bitwise_and),
    ("BitwiseNot", elementwise::bitwise_not),
    ("BitwiseOr", elementwise::bitwise_or),
    ("BitwiseXor", elementwise::bitwise_xor),
    ("BlackmanWindow", signal::blackman_window),
    ("Cast", elementwise::cast),
    ("CastLike", elementwise::cast_like),
    ("CausalConvWithState", attention::causal_conv_with_state),
    ("Ceil", elementwise::ceil),
    ("Celu", elementwise::celu),
    ("CenterCropPad", image::center_crop_pad),
    ("Clip", elementwise::clip),
    ("Col2Im", image::col2im),
    ("Compress", index::compress),
    ("Concat", movement::concat),
    ("Constant", source::constant),
    ("ConstantOfShape", source::constant_of_shape),
    ("Conv", nn::conv),
    ("ConvInteger", quant::conv_integer),
    ("ConvTranspose", image::conv_transpose),
    ("Cos", elementwise::cos),
    ("Cosh", elementwise::cosh),
    ("CumProd", math::cumprod),
    ("CumSum", reduce::cumsum),
    ("DFT", signal::dft),
    ("DeformConv", image::deform_conv),
    ("DepthToSpace", movement::depth_to_space),
    ("DequantizeLinear", quant::dequantize_linear),
    ("Det", math::det),
    ("Div", elementwise::div),
    ("Dropout", elementwise::dropout),
    ("DynamicQuantizeLinear", quant::dynamic_quantize_linear),
    ("Einsum", math::einsum),
    ("Elu", elementwise::elu),
    ("Equal", elementwise::equal),
    ("Erf", elementwise::erf),
    ("Exp", elementwise::exp),
    ("Expand", movement::expand),
    ("EyeLike", source::eye_like),
    ("Flatten", movement::flatten),
    ("Floor", elementwise::floor),
    ("GRU", rnn::gru),
    ("Gather", movement::gather),
    ("GatherElements", movement::gather_elements),
    ("GatherND", index::gather_nd),
    ("Gelu", elementwise::gelu),
    ("Gemm", nn::gemm),
    ("GlobalAveragePool", nn::global_average_pool),
    ("GlobalMaxPool", nn::global_max_pool),
    ("Greater", elementwise::greater),
    ("GreaterOrEqual", elementwise::greater_or_equal),
    ("GridSample", image::grid_sample),
    ("GroupNormalization", nn::group_norm),
    ("HammingWindow", signal::hamming_window),
    ("HannWindow", signal::hann_window),
    ("HardSigmoid", elementwise::hard_sigmoid),
    ("HardSwish", elementwise::hard_swish),
    ("Hardmax", reduce::hardmax),
    ("Identity", elementwise::identity),
    ("InstanceNormalization", nn::instance_norm),
    ("IsInf", elementwise::is_inf),
    ("IsNaN", elementwise::is_nan),
    ("LRN", nn::lrn),
    ("LSTM", rnn::lstm),
    ("LayerNormalization", nn::layer_norm),
    ("LeakyRelu", elementwise::leaky_relu),
    ("Less", elementwise::less),
    ("LessOrEqual", elementwise::less_or_equal),
    ("LinearAttention", attention::linear_attention),
    ("Log", elementwise::log),
    ("LogSoftmax", reduce::log_softmax),
    ("LpNormalization", nn::lp_norm),
    ("LpPool", nn::lp_pool),
    ("MatMul", nn::matmul),
    ("MatMulInteger", quant::matmul_integer),
    ("Max", elementwise::max),
    ("MaxPool", nn::max_pool),
    ("MaxUnpool", nn::max_unpool),
    ("Mean", elementwise::mean),
    ("MeanVarianceNormalization", nn::mean_variance_norm),
    ("MelWeightMatrix", signal::mel_weight_matrix),
    ("Min", elementwise::min),
    ("Mish", elementwise::mish),
    ("Mod", elementwise::modulo),
    ("Mul", elementwise::mul),
    ("Neg", elementwise::neg),
    ("NegativeLogLikelihoodLoss", nn::nll_loss),
    ("NonMaxSuppression", index::non_max_suppression),
    ("NonZero", index::non_zero),
    ("Not", elementwise::not),
    ("OneHot", source::one_hot),
    ("Or", elementwise::or),
    ("PRelu", elementwise::prelu),
    ("Pad", movement::pad),
    ("Pow", elementwise::pow),
    ("QLinearConv", quant::qlinear_conv),
    ("QLinearMatMul", quant::qlinear_matmul),
    ("QuantizeLinear", quant::quantize_linear),
    ("RMSNormalization", nn::rms_norm),
    ("RNN", rnn::rnn),
    ("Range", source::range),
    ("Reciprocal", elementwise::reciprocal),
    ("ReduceL1", reduce::reduce_l1),
    ("ReduceL2", reduce::reduce_l2),
    ("ReduceLogSum", reduce::reduce_log_sum),
    ("ReduceLogSumExp", reduce::reduce_log_sum_exp),
    ("ReduceMax", reduce::reduce_max),
    ("ReduceMean", reduce::reduce_mean),
    ("ReduceMin", reduce::reduce_min),
    ("ReduceProd", reduce::reduce_prod),
    ("ReduceSum", reduce::reduce_sum),
    ("ReduceSumSquare", reduce::reduce_sum_square),
    ("Relu", elementwise::relu),
    ("Reshape", movement::reshape),
    ("Resize", image::resize),
    ("ReverseSequence", index::reverse_sequence),
    ("RoiAlign", image::roi_align),
    ("RotaryEmbedding", attention::rotary_embedding),
    ("Round", elementwise::round),
    ("STFT", signal::stft),
    ("Scan", scan::scan),
    ("Scatter", movement::scatter_elements),
    ("ScatterElements", movement::scatter_elements),
    ("ScatterND", index::scatter_nd),
    ("Selu", elementwise::selu),
    ("Shape", source::shape),
    ("Shrink", elementwise::shrink),
    ("Sigmoid", elementwise::sigmoid),
    ("Sign", elementwise::sign),
    ("Sin", elementwise::sin),
    ("Sinh", elementwise::sinh),
    ("Size", source::size),
    ("Slice", movement::slice),
    ("Softmax", reduce::softmax),
    ("SoftmaxCrossEntropyLoss", nn::softmax_cross_entropy),
    ("Softplus", elementwise::softplus),
    ("Softsign", elementwise::softsign),
    ("SpaceToDepth", movement::space_to_depth),
    ("Split", movement::split),
    ("Sqrt", elementwise::sqrt),
    ("Squeeze", movement::squeeze),
    ("Sub", elementwise::sub),
    ("Sum", elementwise::sum),
    ("Swish", elementwise::swish),
    ("Tan", elementwise::tan),
    ("Tanh", elementwise::tanh),
    ("TensorScatter", index::tensor_scatter),
    ("TfIdfVectorizer", text::tfidf_vectorizer),
    ("ThresholdedRelu", elementwise::thresholded_relu),
    ("Tile", movement::tile),
    ("TopK", index::top_k),
    ("Transpose", movement::transpose),
    ("Trilu", source::trilu),
    ("Unique", index::unique),
    ("Unsqueeze", movement::unsqueeze),
    ("Upsample", image::upsample),
    ("Where", elementwise::where_),
    ("Xor", elementwise::xor),
];

/// The ONNX op types of the `ai.onnx.preview` domain kiln imports, sorted by name.
pub const PREVIEW_OPS: &[(&str, Importer)] = &[("FlexAttention", attention::flex_attention)];

/// The op table of an ONNX domain kiln imports (`None` for any other domain).
fn table_of(domain: &str) -> Option<&'static [(&'static str, Importer)]> {
    match domain {
        "" | "ai.onnx" => Some(OPS),
        "ai.onnx.ml" => Some(ml::ML_OPS),
        "ai.onnx.preview.training" => Some(training::TRAINING_OPS),
        "ai.onnx.preview" => Some(PREVIEW_OPS),
        _ => None,
    }
}

/// The importer of an op type of a domain kiln imports: `None` for an unsupported op, an
/// error for an unsupported domain.
pub fn lookup_in(domain: &str, op_type: &str) -> OpResult<Option<Importer>> {
    let Some(table) = table_of(domain) else {
        bail!(
            "domain `{domain}` is not supported (only ai.onnx, ai.onnx.ml, ai.onnx.preview and ai.onnx.preview.training)"
        );
    };
    Ok(table
        .binary_search_by(|(name, _)| name.cmp(&op_type))
        .ok()
        .map(|i| table[i].1))
}

/// The supported op types of `domain` (the default domain if unknown), comma separated.
pub fn supported_list(domain: &str) -> String {
    table_of(domain)
        .unwrap_or(OPS)
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One node being imported: its inputs (`None` for omitted optional inputs), attributes and
/// opset, and the graph being built.
#[derive(Debug)]
pub struct NodeCx<'a> {
    /// The graph being built.
    pub g: &'a Graph,
    /// The node.
    pub node: &'a NodeProto,
    /// The opset of the default domain.
    pub opset: i64,
    /// The node's inputs.
    pub inputs: Vec<Option<Value>>,
    /// Set by importers that give their outputs' narrow ONNX types themselves (`Cast`,
    /// `QuantizeLinear`, ...); otherwise an output whose dtype carries an input's narrow type
    /// inherits that type.
    pub typed_outputs: bool,
    /// Every value defined so far in the node's graph (sub-graphs read outer values).
    pub scope: &'a std::collections::HashMap<String, Value>,
}

impl NodeCx<'_> {
    /// Input `i`, which the op requires.
    pub fn input(&mut self, i: usize) -> OpResult<&mut Value> {
        match self.inputs.get_mut(i) {
            Some(Some(v)) => Ok(v),
            _ => bail!("input {i} is required"),
        }
    }

    /// Input `i` if given.
    pub fn opt_input(&mut self, i: usize) -> Option<&mut Value> {
        self.inputs.get_mut(i).and_then(Option::as_mut)
    }

    /// Input `i` as a graph tensor.
    pub fn tensor(&mut self, i: usize) -> OpResult<Tensor> {
        let g = self.g.clone();
        Ok(self.input(i)?.tensor_in(&g))
    }

    /// Every given input as a graph tensor (variadic ops).
    pub fn tensors(&mut self) -> Vec<Tensor> {
        let g = self.g.clone();
        self.inputs
            .iter_mut()
            .flatten()
            .map(|v| v.tensor_in(&g))
            .collect()
    }

    /// Input `i`'s elements as integers, which must be known at import time.
    pub fn ints_input(&mut self, i: usize, what: &str) -> OpResult<Vec<i64>> {
        match self.input(i)?.as_ints() {
            Some(v) => Ok(v),
            None => bail!(
                "{what} (input {i}) must be known when importing (a constant or computable from shapes), but it is computed at run time"
            ),
        }
    }

    /// Optional input `i`'s elements as integers (`None` if omitted).
    pub fn opt_ints_input(&mut self, i: usize, what: &str) -> OpResult<Option<Vec<i64>>> {
        if self.opt_input(i).is_none() {
            return Ok(None);
        }
        self.ints_input(i, what).map(Some)
    }

    /// Input `i`'s elements as dims (possibly symbolic), known at import time.
    pub fn dims_input(&mut self, i: usize, what: &str) -> OpResult<Vec<Dim>> {
        match self.input(i)?.as_dims() {
            Some(v) => Ok(v),
            None => bail!(
                "{what} (input {i}) must be known when importing (a constant or computable from shapes), but it is computed at run time"
            ),
        }
    }

    /// Input `i`'s single known float value (optional scalar inputs such as Clip's bounds).
    pub fn opt_scalar_input(&mut self, i: usize, what: &str) -> OpResult<Option<f64>> {
        let Some(v) = self.opt_input(i) else {
            return Ok(None);
        };
        match v.as_array() {
            Some(a) if a.len() == 1 => Ok(Some(a.to_f64_vec()[0])),
            Some(a) => bail!(
                "{what} (input {i}) must hold one element, got {:?}",
                a.shape()
            ),
            None => bail!("{what} (input {i}) must be known when importing"),
        }
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    /// Whether attribute `name` is present.
    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// Integer attribute, or `default`.
    pub fn attr_i(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }

    /// Float attribute, or `default`.
    pub fn attr_f(&self, name: &str, default: f64) -> f64 {
        self.attr(name).and_then(|a| a.f).map_or(default, f64::from)
    }

    /// Integer-list attribute, if present.
    pub fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    /// Float-list attribute, if present.
    pub fn attr_floats(&self, name: &str) -> Option<Vec<f32>> {
        self.attr(name).map(|a| a.floats.clone())
    }

    /// String attribute (lossy UTF-8), or `default`.
    pub fn attr_s(&self, name: &str, default: &str) -> String {
        self.attr(name).and_then(|a| a.s.as_ref()).map_or_else(
            || default.to_string(),
            |s| String::from_utf8_lossy(s).into_owned(),
        )
    }

    /// Graph attribute, if present.
    pub fn attr_g(&self, name: &str) -> Option<&GraphProto> {
        self.attr(name).and_then(|a| a.g.as_ref())
    }

    /// Tensor attribute, if present.
    pub fn attr_t(&self, name: &str) -> Option<&TensorProto> {
        self.attr(name).and_then(|a| a.t.as_ref())
    }

    /// Number of declared outputs (trailing optional outputs may be omitted).
    pub fn n_outputs(&self) -> usize {
        self.node.output.len()
    }
}

/// A normalised axis in `0..rank`.
pub fn axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 {
        axis.saturating_add(r)
    } else {
        axis
    };
    if !(0..r).contains(&a) {
        bail!("axis {axis} is out of range for rank {rank}");
    }
    Ok(a as usize)
}

/// Normalised axes, each in `0..rank`.
pub fn axes(v: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    v.iter().map(|&a| axis(a, rank)).collect()
}

/// A tensor's dims.
pub fn dims_of(t: &Tensor) -> Vec<Dim> {
    t.shape().dims().to_vec()
}

/// Requires a float dtype.
pub fn need_float(t: &Tensor, op: &str) -> OpResult<()> {
    if !t.dtype().is_float() {
        bail!("{op} needs a float input, got {}", t.dtype());
    }
    Ok(())
}

/// A known integer array of `shape`.
pub fn int_array(shape: &[usize], v: Vec<i64>) -> OpResult<Array> {
    Array::new(shape, kiln_ir::Data::I64(v)).map_err(|e| OpError(e.to_string()))
}

/// `numpy`-style broadcast of two shapes (symbolic dims must match exactly or be 1).
pub fn broadcast(a: &[Dim], b: &[Dim]) -> OpResult<Vec<Dim>> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = (i + a.len()).checked_sub(n).map(|k| &a[k]);
        let db = (i + b.len()).checked_sub(n).map(|k| &b[k]);
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(x), Some(y)) if x.is_one() => y.clone(),
            (Some(x), Some(y)) if y.is_one() => x.clone(),
            (x, y) => bail!("shapes do not broadcast: {x:?} vs {y:?}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_op_table_is_sorted_so_every_entry_is_found() {
        assert!(OPS.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, _) in OPS {
            assert!(lookup_in("", name).is_ok_and(|i| i.is_some()), "{name}");
        }
        assert!(lookup_in("ai.onnx", "NoSuchOp").is_ok_and(|i| i.is_none()));
        assert!(lookup_in("com.example", "Relu").is_err());
        for table in [ml::ML_OPS, training::TRAINING_OPS, PREVIEW_OPS] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
        assert!(lookup_in("ai.onnx.ml", "Binarizer").is_ok_and(|i| i.is_some()));
        assert!(lookup_in("ai.onnx.preview", "FlexAttention").is_ok_and(|i| i.is_some()));
    }
}
