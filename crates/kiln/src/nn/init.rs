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
//! # One seed per model
//!
//! Every layer takes a seed, and two layers of the same shape built with the same seed start
//! with the same weights. [`Seeds`] splits one model seed into one seed per layer, keyed by
//! the layer's name prefix, so layers never share a stream by accident and adding a layer
//! does not change the others' initial values:
//!
//! ```
//! use kiln::nn::{Linear, Module, Relu, Sequential, init::Seeds};
//! use kiln::Graph;
//!
//! let g = Graph::new();
//! let seeds = Seeds::new(42); // the model's one seed
//! let model = Sequential::new()
//!     .push(Linear::new(&g, "0", 4, 4, seeds.layer("0")))
//!     .push(Relu)
//!     .push(Linear::new(&g, "2", 4, 4, seeds.layer("2")));
//! assert_ne!(seeds.layer("0"), seeds.layer("2"));
//! assert!(!g.param_value("0.weight").unwrap().bit_eq(&g.param_value("2.weight").unwrap()));
//! assert_eq!(model.parameters().len(), 4);
//! ```
//!
//! # PyTorch's initial values
//!
//! `init::torch_compatible` is a non-goal: kiln draws from JAX's counter-based Threefry
//! generator, not PyTorch's Mersenne-Twister/Philox streams, so the distributions match
//! PyTorch and the numbers do not. To start from exactly PyTorch's initial weights, save
//! them from PyTorch (`safetensors.torch.save_file(model.state_dict(), "init.safetensors")`)
//! and load them with [`crate::load_safetensors`] and
//! [`Module::load_state_dict`](crate::nn::Module::load_state_dict) (docs/training.md).
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

/// One model seed split into one seed per layer: [`Seeds::layer`] of a name prefix is
/// `fold_in(fold_in(PRNGKey(seed), h₀), h₁)` read as a `u64`, where `h₀h₁` is the 64-bit
/// FNV-1a hash of the prefix. Distinct prefixes give distinct, independent seeds; the same
/// prefix gives the same seed (the same parameters, since parameters are named by prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    key: [u32; 2],
}

impl Seeds {
    /// The seeds of a model seeded with `seed`.
    pub fn new(seed: u64) -> Seeds {
        Seeds {
            key: random::key_data(seed),
        }
    }

    /// The seed of the layer named `prefix` (pass it to the layer's constructor).
    pub fn layer(&self, prefix: &str) -> u64 {
        let h = prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let k = random::host_fold_in(random::host_fold_in(self.key, (h >> 32) as u32), h as u32);
        (u64::from(k[0]) << 32) | u64::from(k[1])
    }
}

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
