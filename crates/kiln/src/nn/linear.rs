//! Dense layers: `Linear` and `Embedding`.

use super::{Module, declare, init, join};
use crate::builder::Graph;
use crate::tensor::Tensor;
use kiln_ir::{Dim, Shape};
use std::panic::Location;

/// `torch.nn.Linear(in_features, out_features, bias)`: `y = x @ weight^T + bias` over the
/// last axis of `x`. Parameters `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`,
/// both `U(-1/√in, 1/√in)`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    params: Vec<(String, Tensor)>,
}

impl Linear {
    /// A linear layer with a bias.
    #[track_caller]
    pub fn new(
        g: &Graph,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        seed: u64,
    ) -> Linear {
        Linear::build(g, prefix, in_features, out_features, true, seed)
    }

    /// A linear layer without a bias (`bias=False`).
    #[track_caller]
    pub fn no_bias(
        g: &Graph,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        seed: u64,
    ) -> Linear {
        Linear::build(g, prefix, in_features, out_features, false, seed)
    }

    #[track_caller]
    fn build(g: &Graph, prefix: &str, inp: usize, out: usize, bias: bool, seed: u64) -> Linear {
        let bound = init::fan_in_bound(inp);
        let wname = join(prefix, "weight");
        let weight = declare(g, &wname, init::uniform(seed, 0, &[out, inp], bound));
        let mut params = vec![(wname, weight.clone())];
        let bias = if bias {
            let bname = join(prefix, "bias");
            let b = declare(g, &bname, init::uniform(seed, 1, &[out], bound));
            params.push((bname, b.clone()));
            Some(b)
        } else {
            None
        };
        Linear {
            weight,
            bias,
            params,
        }
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }
}

/// `torch.nn.Embedding(num_embeddings, embedding_dim)`: looks up rows of `{prefix}.weight`
/// `[num, dim]` (initialised `N(0, 1)`) for integer indices of any shape; the result has
/// the indices' shape followed by `dim`. An index out of range is an evaluation error.
#[derive(Clone, Debug)]
pub struct Embedding {
    weight: (String, Tensor),
    dim: usize,
}

impl Embedding {
    /// An embedding table.
    #[track_caller]
    pub fn new(
        g: &Graph,
        prefix: &str,
        num_embeddings: usize,
        embedding_dim: usize,
        seed: u64,
    ) -> Embedding {
        let name = join(prefix, "weight");
        let w = declare(
            g,
            &name,
            init::normal(seed, 0, &[num_embeddings, embedding_dim]),
        );
        Embedding {
            weight: (name, w),
            dim: embedding_dim,
        }
    }

    /// The table `[num, dim]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight.1
    }
}

impl Module for Embedding {
    #[track_caller]
    fn forward(&self, indices: &Tensor) -> Tensor {
        let loc = Location::caller();
        let g = indices.graph();
        if indices.is_poisoned() {
            return indices.clone();
        }
        if !indices.dtype().is_index() {
            return g.fail(
                loc,
                "embedding",
                format!(
                    "embedding: indices must be integers, got {}{}",
                    indices.dtype(),
                    indices.shape()
                ),
            );
        }
        let s = indices.shape();
        let flat = indices.reshape(Shape(vec![s.numel()]));
        let rows = self.weight.1.index_select(0, &flat);
        let mut dims: Vec<Dim> = s.0;
        dims.push(Dim::from(self.dim));
        rows.reshape(Shape(dims))
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![self.weight.clone()]
    }
}
