//! Seeded parameter initialisation with PyTorch's default distributions.
//!
//! The generator: parameter number `k` (in `state_dict` order, from 0) of a layer built with
//! seed `s` is drawn from the key `fold_in(PRNGKey(s), k)` with JAX's samplers
//! ([`random::host_uniform`], [`random::host_normal`]), so
//! `jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(s), k), shape, minval=-b,
//! maxval=b)` reproduces a uniform-initialised parameter exactly. Distributions and bounds
//! follow PyTorch:
//!
//! | layer | parameter | distribution |
//! |-------|-----------|--------------|
//! | `Linear`, `Conv2d` | weight | `U(-1/√fan_in, 1/√fan_in)` (kaiming-uniform, `a = √5`) |
//! | `Linear`, `Conv2d` | bias | `U(-1/√fan_in, 1/√fan_in)` |
//! | `LSTM`, `GRU` | every parameter | `U(-1/√hidden, 1/√hidden)` |
//! | `Embedding` | weight | `N(0, 1)` |
//! | `LayerNorm` | weight, bias | ones, zeros |
//!
//! ```
//! use kiln::nn::{Linear, Module, init};
//! use kiln::Graph;
//!
//! let g = Graph::new();
//! let fc = Linear::new(&g, "fc", 4, 3, 7); // seed 7
//! let weight = g.param_value("fc.weight").unwrap();
//! // Parameter 0 (the weight) of a layer seeded with 7, bound 1/√4.
//! let expect = init::uniform(7, 0, &[3, 4], init::fan_in_bound(4))?;
//! assert!(weight.bit_eq(&expect));
//! assert!(weight.as_f32()?.iter().all(|w| w.abs() <= 0.5));
//! assert_eq!(fc.parameters().len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::random;
use kiln_ir::{Array, ArrayError};

/// The key of parameter `index` of a layer seeded with `seed`: `fold_in(PRNGKey(seed), index)`.
pub fn param_key(seed: u64, index: u32) -> [u32; 2] {
    random::host_fold_in(random::key_data(seed), index)
}

/// `U(-bound, bound)` `f32` values for parameter `index` of a layer seeded with `seed`.
/// Errors only if the shape's element count overflows.
pub fn uniform(seed: u64, index: u32, shape: &[usize], bound: f64) -> Result<Array, ArrayError> {
    random::host_uniform(param_key(seed, index), shape, -bound, bound)
}

/// `N(0, 1)` `f32` values for parameter `index` of a layer seeded with `seed`. Errors only
/// if the shape's element count overflows.
pub fn normal(seed: u64, index: u32, shape: &[usize]) -> Result<Array, ArrayError> {
    random::host_normal(param_key(seed, index), shape)
}

/// PyTorch's bound for `Linear`/`Conv2d` weights and biases: kaiming-uniform with
/// `a = √5` gives `gain · √(3 / fan_in) = 1/√fan_in` (0 when `fan_in` is 0).
pub fn fan_in_bound(fan_in: usize) -> f64 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f64).sqrt()
    }
}
