//! State dicts: a model's named tensors in and out of a graph or an executable's state, and
//! to and from `.safetensors` files, with PyTorch's `load_state_dict` reporting.
//!
//! A [`StateDict`] maps `state_dict` names (`fc1.weight`, `[out, in]`) to arrays, as
//! PyTorch's does, so `torch.save`-free exchange is one call each way:
//! `safetensors.torch.save_file(model.state_dict(), "init.safetensors")` in Python, then
//! [`load_safetensors`] and [`load_state_dict`] (or [`Module::load_state_dict`](crate::nn::Module::load_state_dict)) here; and
//! [`state_dict`] then [`save_safetensors`] back.
//!
//! A store ([`StateStore`]) is a [`Graph`] (its parameter values, what the next compile
//! copies), a [`State`] (an executable's tensors, what its next run reads) or an
//! [`Executable`]. Its tensors are the model's parameters plus, in a training store, what
//! training adds: optimiser moments, step counters and random-stream counters
//! ([`StateRole`]). [`Keys`] says which of the two a dict covers, always explicitly:
//! [`Keys::Parameters`] is PyTorch's `model.state_dict()`, [`Keys::All`] a full checkpoint
//! to resume training from.
//!
//! Loading checks everything before it changes anything: keys the store expects and the
//! dict lacks are *missing*, keys the dict has and the store lacks are *unexpected* (both
//! errors when `strict`, reported in the [`LoadReport`] otherwise), and a tensor whose dtype
//! or shape differs is always an error ([`StateDictError::Mismatch`]). On an error nothing
//! is loaded.
//!
//! ```
//! use kiln::nn::{Linear, Module};
//! use kiln::state_dict::{Keys, StateDict};
//! use kiln::{Array, Graph};
//!
//! let g = Graph::new();
//! let fc = Linear::new(&g, "fc", 2, 1, 0);
//! let mut dict = StateDict::new();
//! dict.insert("fc.weight".into(), Array::from_f32(&[1, 2], vec![0.5, -0.5])?);
//! dict.insert("fc.bias".into(), Array::from_f32(&[1], vec![0.25])?);
//! let report = fc.load_state_dict(&g, &dict, true)?;
//! assert_eq!(report.loaded, ["fc.bias", "fc.weight"]);
//! assert_eq!(g.param_value("fc.bias").unwrap().as_f32()?, &[0.25]);
//!
//! // A transposed weight is refused with PyTorch's wording, and nothing is loaded.
//! dict.insert("fc.weight".into(), Array::from_f32(&[2, 1], vec![0.0, 0.0])?);
//! let err = kiln::load_state_dict(&g, &dict, Keys::Parameters, true).unwrap_err();
//! assert!(err.to_string().contains("size mismatch for `fc.weight`"), "{err}");
//! assert_eq!(g.param_value("fc.weight").unwrap().as_f32()?, &[0.5, -0.5]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::builder::Graph;
use crate::error::{Error, StateDictError};
use crate::optim::StateRole;
use crate::safetensors_file;
use kiln_ir::{Array, DType, Shape};
use kiln_runtime::{Executable, State};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Named tensors, sorted by name: PyTorch's `state_dict` (names and layouts unchanged).
pub type StateDict = BTreeMap<String, Array>;

/// Which tensors of a store a state dict covers. Always explicit: a dict of parameters loads
/// into a training store without touching its optimiser state, and a full checkpoint
/// carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// The model's parameters only ([`StateRole::Parameter`]): PyTorch's
    /// `model.state_dict()`. Optimiser moments, step counters and random-stream counters
    /// are neither expected nor written.
    Parameters,
    /// Every tensor of the store, optimiser state included: a checkpoint that resumes
    /// training exactly.
    All,
}

impl Keys {
    fn covers(self, name: &str, dtype: DType, shape: &[usize]) -> bool {
        self == Keys::All || StateRole::of(name, dtype, shape) == StateRole::Parameter
    }
}

/// What [`load_state_dict`] did, in PyTorch's terms (`missing_keys`, `unexpected_keys`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The keys loaded, sorted.
    pub loaded: Vec<String>,
    /// Keys the store expects that the dict lacks (kept at their current values).
    pub missing_keys: Vec<String>,
    /// Keys of the dict that the store lacks (ignored).
    pub unexpected_keys: Vec<String>,
}

/// A place named tensors live in: a [`Graph`]'s parameter values, an executable's [`State`],
/// or an [`Executable`] (its state).
pub trait StateStore {
    /// Every tensor the store declares: name, dtype and shape, sorted by name.
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)>;

    /// A copy of tensor `name`'s current value, if it has one.
    fn value(&self, name: &str) -> Option<Array>;

    /// Replaces tensor `name` (an entry with the value's dtype and shape).
    fn assign(&self, name: &str, value: Array) -> Result<(), Error>;
}

impl StateStore for Graph {
    /// The declared parameters with a static shape. Optimiser state is a parameter of the
    /// graph too, declared by the optimiser.
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)> {
        let mut out: Vec<(String, DType, Vec<usize>)> = self.with_ir(|ir| {
            ir.parameters()
                .into_iter()
                .filter_map(|(id, name)| {
                    let node = ir.node(id);
                    Some((name.to_string(), node.dtype, node.shape.as_known()?))
                })
                .collect()
        });
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn value(&self, name: &str) -> Option<Array> {
        self.param_value(name)
    }

    /// [`Graph::set_param`]: the graph's value and every executable compiled from it.
    fn assign(&self, name: &str, value: Array) -> Result<(), Error> {
        self.set_param(name, value)
    }
}

impl StateStore for State {
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)> {
        State::entries(self)
    }

    fn value(&self, name: &str) -> Option<Array> {
        self.get(name)
    }

    /// [`State::set`]: seen by the next run of every executable sharing the store.
    fn assign(&self, name: &str, value: Array) -> Result<(), Error> {
        Ok(self.set(name, value)?)
    }
}

impl StateStore for Executable {
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)> {
        self.state().entries()
    }

    fn value(&self, name: &str) -> Option<Array> {
        self.state().get(name)
    }

    fn assign(&self, name: &str, value: Array) -> Result<(), Error> {
        Ok(self.state().set(name, value)?)
    }
}

/// Reads a `.safetensors` file (PyTorch's `safetensors.torch.save_file`, Hugging Face
/// checkpoints) as a state dict. The file is treated as hostile (bounded header and data,
/// see [`crate::safetensors_file`]).
///
/// # Errors
///
/// [`StateDictError::File`] if the file cannot be read or is not valid safetensors;
/// [`StateDictError::Tensor`] for a tensor of a dtype kiln lacks (`f16`, `bf16`, ...: cast
/// it to `float32` before saving).
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<StateDict, Error> {
    let path = path.as_ref();
    let mut dict = StateDict::new();
    for (name, tensor) in safetensors_file::read(path).map_err(StateDictError::from)? {
        let array = tensor.map_err(|e| StateDictError::Tensor {
            path: kiln_fs::one_line(&path.display().to_string()),
            name: kiln_fs::one_line(&name),
            message: e.to_string(),
        })?;
        dict.insert(name, array);
    }
    Ok(dict)
}

/// Writes a state dict to a `.safetensors` file atomically, tensors under their names,
/// little-endian, readable by `safetensors.torch.load_file`. Errors
/// ([`StateDictError::File`]) if the file cannot be written.
pub fn save_safetensors(path: impl AsRef<Path>, dict: &StateDict) -> Result<(), Error> {
    let mut meta = HashMap::new();
    meta.insert(
        "producer".to_string(),
        format!("kiln {}", env!("CARGO_PKG_VERSION")),
    );
    safetensors_file::write(
        path.as_ref(),
        dict.iter().map(|(n, a)| (n.as_str(), a)),
        Some(meta),
    )
    .map_err(|e| Error::from(StateDictError::from(e)))
}

/// The current values of the store's tensors that `keys` covers (a tensor without a value,
/// a graph parameter never set, is left out).
pub fn state_dict(store: &(impl StateStore + ?Sized), keys: Keys) -> StateDict {
    store
        .entries()
        .into_iter()
        .filter(|(n, d, s)| keys.covers(n, *d, s))
        .filter_map(|(n, _, _)| Some((n.clone(), store.value(&n)?)))
        .collect()
}

/// Loads `dict` into the store: every key of the store that `keys` covers is expected.
/// With `strict`, a missing or unexpected key is an error (PyTorch's `strict=True`);
/// without, they are listed in the returned [`LoadReport`] and the rest is loaded. A dtype
/// or shape that differs from the store's is always an error. Nothing is loaded on an
/// error.
///
/// Loading [`Keys::Parameters`] into a training store keeps its optimiser state (call
/// [`reset_training_state`] to start the moments afresh); [`Keys::All`] restores a
/// checkpoint written from [`state_dict`] with [`Keys::All`].
///
/// # Errors
///
/// [`StateDictError::Mismatch`] naming every missing, unexpected and mismatched key.
pub fn load_state_dict(
    store: &(impl StateStore + ?Sized),
    dict: &StateDict,
    keys: Keys,
    strict: bool,
) -> Result<LoadReport, Error> {
    let expected = store
        .entries()
        .into_iter()
        .filter(|(n, d, s)| keys.covers(n, *d, s))
        .map(|(n, d, s)| (n, (d, s)))
        .collect();
    load_expected(store, &expected, dict, strict)
}

/// Sets every optimiser moment and step counter of the store to zeros (random-stream
/// counters too): training restarts from the current parameters as from a fresh optimiser.
/// Returns the names reset, sorted. Errors only if the store refuses a value.
pub fn reset_training_state(store: &(impl StateStore + ?Sized)) -> Result<Vec<String>, Error> {
    let mut reset = Vec::new();
    for (name, dtype, shape) in store.entries() {
        if StateRole::of(&name, dtype, &shape).is_training_state() {
            store.assign(&name, Array::zeros(dtype, &shape)?)?;
            reset.push(name);
        }
    }
    Ok(reset)
}

/// Loads the keys of `dict` that `expected` names (with their dtypes and shapes); the rules
/// of [`load_state_dict`].
pub(crate) fn load_expected(
    store: &(impl StateStore + ?Sized),
    expected: &BTreeMap<String, (DType, Vec<usize>)>,
    dict: &StateDict,
    strict: bool,
) -> Result<LoadReport, Error> {
    let missing: Vec<String> = expected
        .keys()
        .filter(|k| !dict.contains_key(*k))
        .cloned()
        .collect();
    let unexpected: Vec<String> = dict
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .cloned()
        .collect();
    let mismatched: Vec<String> = dict
        .iter()
        .filter_map(|(k, v)| {
            let (dtype, shape) = expected.get(k)?;
            (v.dtype() != *dtype || v.shape() != shape.as_slice()).then(|| {
                format!(
                    "`{k}`: expected {dtype}{}, got {}{}",
                    Shape::known(shape),
                    v.dtype(),
                    Shape::known(v.shape())
                )
            })
        })
        .collect();
    if !mismatched.is_empty() || (strict && !(missing.is_empty() && unexpected.is_empty())) {
        return Err(StateDictError::Mismatch {
            missing,
            unexpected,
            mismatched,
        }
        .into());
    }
    let mut loaded = Vec::new();
    for (k, v) in dict {
        if expected.contains_key(k) {
            store.assign(k, v.clone())?;
            loaded.push(k.clone());
        }
    }
    Ok(LoadReport {
        loaded,
        missing_keys: missing,
        unexpected_keys: unexpected,
    })
}
