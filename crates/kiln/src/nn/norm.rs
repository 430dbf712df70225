//! Normalisation layers: `LayerNorm`.

use super::{Module, declare, join};
use crate::builder::Graph;
use crate::tensor::Tensor;
use kiln_ir::{Array, ArrayError, DType, Shape};
use std::panic::Location;

/// `torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine)`: normalises over the
/// trailing axes equal to `normalized_shape` (biased variance), then applies
/// `{prefix}.weight` (ones) and `{prefix}.bias` (zeros), both shaped `normalized_shape`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    shape: Vec<usize>,
    eps: f64,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    params: Vec<(String, Tensor)>,
}

fn filled(shape: &[usize], v: f64) -> Result<Array, ArrayError> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| ArrayError::Overflow(shape.to_vec()))?;
    Ok(Array::from_f64_cast(DType::F32, shape, &vec![v; n]))
}

impl LayerNorm {
    /// Layer norm with a learnable weight and bias.
    #[track_caller]
    pub fn new(g: &Graph, prefix: &str, normalized_shape: &[usize]) -> LayerNorm {
        let wname = join(prefix, "weight");
        let bname = join(prefix, "bias");
        let w = declare(g, &wname, filled(normalized_shape, 1.0));
        let b = declare(g, &bname, filled(normalized_shape, 0.0));
        LayerNorm {
            shape: normalized_shape.to_vec(),
            eps: 1e-5,
            weight: Some(w.clone()),
            bias: Some(b.clone()),
            params: vec![(wname, w), (bname, b)],
        }
    }

    /// Layer norm without parameters (`elementwise_affine=False`).
    pub fn no_affine(normalized_shape: &[usize]) -> LayerNorm {
        LayerNorm {
            shape: normalized_shape.to_vec(),
            eps: 1e-5,
            weight: None,
            bias: None,
            params: Vec::new(),
        }
    }

    /// With another epsilon (default `1e-5`).
    #[must_use]
    pub fn eps(mut self, eps: f64) -> LayerNorm {
        self.eps = eps;
        self
    }
}

impl Module for LayerNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let loc = Location::caller();
        if x.is_poisoned() {
            return x.clone();
        }
        let s = x.shape();
        let k = self.shape.len();
        let want = Shape::known(&self.shape);
        if s.rank() < k || s.0[s.rank() - k..] != want.0[..] {
            return x.graph().fail(
                loc,
                "layer_norm",
                format!("layer_norm: input {s} does not end with the normalized shape {want}"),
            );
        }
        x.layer_norm(k, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }
}
