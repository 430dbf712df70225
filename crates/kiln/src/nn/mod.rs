//! Neural-network layers with PyTorch's parameter names, layouts and default initialisation
//! distributions: [`Linear`], [`Conv2d`], [`MaxPool2d`], [`AvgPool2d`], [`Flatten`],
//! [`Dropout`], [`LayerNorm`], [`Embedding`], [`Lstm`], [`Gru`], activations and
//! [`Sequential`].
//!
//! A layer is built on a [`Graph`] with a name prefix and an init seed; it declares its
//! parameters with `g.param_init` under the names PyTorch's `state_dict` uses
//! (`{prefix}.weight`, `{prefix}.bias`, `{prefix}.weight_ih_l0`, ...), so weights move to
//! and from PyTorch unchanged. [`Module::parameters`] lists them in `state_dict` order.
//! Initial values come from the seeded counter-based host generator described in [`init`]:
//! the same distributions and bounds as PyTorch, not the same numbers.
//!
//! Seeds and names are the caller's to choose, and they matter:
//!
//! * the seed alone fixes a layer's initial values, so two layers of the same shape built
//!   with the same seed start with identical weights: give every layer its own seed, most
//!   simply from one model seed split per layer with [`init::Seeds`];
//! * parameters are identified by name, so building a layer again with the same prefix
//!   (same shapes) shares its parameters with the first one and resets their values to the
//!   new layer's initialisation ([`Graph::param_init`]);
//! * initial values are set on the graph when the layer is built; an executable compiled
//!   afterwards copies them, and training updates the executable's state, not the graph
//!   (see [`crate::compile`]).
//!
//! ```
//! use kiln::nn::{Linear, Module, Relu, Sequential};
//! use kiln::{DType, Graph};
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, (g.sym("N"), 64));
//! let model = Sequential::new()
//!     .push(Linear::new(&g, "0", 64, 128, 1))
//!     .push(Relu)
//!     .push(Linear::new(&g, "2", 128, 10, 2));
//! let logits = model.forward(&x);
//! assert_eq!(logits.shape().to_string(), "[N, 10]");
//! let names: Vec<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! ```

mod conv;
pub mod init;
mod linear;
mod norm;
mod rnn;
mod stateful;

pub use conv::{AvgPool2d, Conv2d, MaxPool2d};
pub use linear::{Embedding, Linear};
pub use norm::LayerNorm;
pub use rnn::{Gru, Lstm, RnnConfig, TimeLoop, gru_cell};
pub use stateful::StatefulLstm;

use crate::builder::Graph;
use crate::error::Error;
use crate::random;
use crate::state_dict::{LoadReport, StateDict, StateStore, load_expected};
use crate::tensor::Tensor;
use kiln_ir::{Array, ArrayError, DType};
use std::collections::HashSet;
use std::fmt;
use std::panic::Location;

/// A layer or model: a forward computation over its parameters.
pub trait Module: fmt::Debug {
    /// Builds the layer's computation on `x` (in the graph `x` belongs to).
    fn forward(&self, x: &Tensor) -> Tensor;

    /// Trainable parameters with their `state_dict` names, in `state_dict` order.
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// Non-trainable state (random-stream counters), by name. Empty by default.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Switches training behaviour (dropout) on or off for graphs built afterwards; a no-op
    /// for layers that behave the same in both modes.
    fn set_training(&mut self, training: bool) {
        let _ = training;
    }

    /// PyTorch's `model.state_dict()`: the current values of [`Module::parameters`] in
    /// `store` (a [`Graph`], an executable's [`State`](crate::State), an
    /// [`Executable`](crate::Executable)), by name. Optimiser state is never included; use
    /// [`crate::state_dict()`] with [`Keys::All`](crate::state_dict::Keys::All) for a
    /// checkpoint.
    fn state_dict(&self, store: &dyn StateStore) -> StateDict {
        self.parameters()
            .into_iter()
            .filter_map(|(n, _)| Some((n.clone(), store.value(&n)?)))
            .collect()
    }

    /// PyTorch's `model.load_state_dict(dict, strict)`: loads exactly the keys
    /// [`Module::parameters`] names into `store`, with the rules of
    /// [`crate::load_state_dict`] (missing and unexpected keys are errors when `strict`,
    /// a dtype or shape mismatch always; nothing is loaded on an error). Optimiser state in
    /// the store is kept. Loading into the [`Graph`] also reaches the executables compiled
    /// from it ([`Graph::set_param`]).
    fn load_state_dict(
        &self,
        store: &dyn StateStore,
        dict: &StateDict,
        strict: bool,
    ) -> Result<LoadReport, Error> {
        let names: HashSet<String> = self.parameters().into_iter().map(|(n, _)| n).collect();
        let expected = store
            .entries()
            .into_iter()
            .filter(|(n, _, _)| names.contains(n))
            .map(|(n, d, s)| (n, (d, s)))
            .collect();
        load_expected(store, &expected, dict, strict)
    }
}

/// `{prefix}.{name}`, or `name` alone when the prefix is empty.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Declares parameter `name` with an initial value, recording a diagnostic at the caller if
/// the value could not be built.
#[track_caller]
pub(crate) fn declare(g: &Graph, name: &str, value: Result<Array, ArrayError>) -> Tensor {
    match value {
        Ok(v) => g.param_init(name, v),
        Err(e) => g.fail(
            Location::caller(),
            "param",
            format!("parameter `{name}`: {e}"),
        ),
    }
}

/// A stack of modules applied in order (`torch.nn.Sequential`). Parameter names are the
/// ones the layers were built with; name them `"0"`, `"1"`, ... to match PyTorch's.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty stack (the identity).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a layer.
    #[must_use]
    pub fn push(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer.
    pub fn add(&mut self, layer: Box<dyn Module>) {
        self.layers.push(layer);
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True if there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h);
        }
        h
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.iter().flat_map(|l| l.parameters()).collect()
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.layers.iter().flat_map(|l| l.buffers()).collect()
    }

    fn set_training(&mut self, training: bool) {
        for l in &mut self.layers {
            l.set_training(training);
        }
    }
}

macro_rules! activation {
    ($($(#[$m:meta])* $name:ident => $method:ident;)*) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl Module for $name {
            #[track_caller]
            fn forward(&self, x: &Tensor) -> Tensor {
                x.$method()
            }
            fn parameters(&self) -> Vec<(String, Tensor)> {
                Vec::new()
            }
        }
    )*};
}

activation! {
    /// `torch.nn.ReLU`.
    Relu => relu;
    /// `torch.nn.Tanh`.
    Tanh => tanh;
    /// `torch.nn.Sigmoid`.
    Sigmoid => sigmoid;
    /// `torch.nn.GELU` (exact, erf-based).
    Gelu => gelu;
}

/// `torch.nn.Flatten`: merges axes `start..=end` (default `1..=-1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    /// First merged axis.
    pub start: i64,
    /// Last merged axis (negative counts from the end).
    pub end: i64,
}

impl Flatten {
    /// Merges axes `start..=end`.
    pub fn new(start: i64, end: i64) -> Flatten {
        Flatten { start, end }
    }
}

impl Default for Flatten {
    fn default() -> Flatten {
        Flatten::new(1, -1)
    }
}

impl Module for Flatten {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten(self.start, self.end)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// `torch.nn.Dropout(p)` with a counter-based random stream: in training mode the mask of a
/// step is `bernoulli(fold_in(PRNGKey(seed), counter), 1 - p)` (see
/// [`random::dropout`]), where `counter` is the `u32` state `{prefix}.rng_counter` that
/// every train step advances by one. The same seed and counter give the same mask on every
/// backend. In evaluation mode ([`Module::set_training`]`(false)`) it is the identity.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f64,
    key: Tensor,
    counter: (String, Tensor),
    training: bool,
}

impl Dropout {
    /// A dropout layer with drop probability `p`, in training mode.
    #[track_caller]
    pub fn new(g: &Graph, prefix: &str, p: f64, seed: u64) -> Dropout {
        let name = join(prefix, random::RNG_COUNTER_SUFFIX);
        let counter = declare(g, &name, Ok(Array::scalar(DType::U32, 0.0)));
        Dropout {
            p,
            key: random::key(g, seed),
            counter: (name, counter),
            training: true,
        }
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The key of the current step: `fold_in(PRNGKey(seed), counter)`.
    #[track_caller]
    pub fn step_key(&self) -> Tensor {
        random::fold_in(&self.key, &self.counter.1)
    }
}

impl Module for Dropout {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.training {
            return x.clone();
        }
        random::dropout(x, self.p, &self.step_key())
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        vec![self.counter.clone()]
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
