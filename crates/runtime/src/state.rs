//! [`State`]: the persistent named tensors (parameters, optimiser moments, counters) that
//! executables compiled from one graph share, and the [`Store`] behind it that engines read
//! and update.

use crate::error::RuntimeError;
use kiln_ir::Array;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Persistent named tensors shared by executables compiled from the same graph (a train
/// step and its eval executable see the same parameters).
///
/// Cloning a `State` clones the handle, not the tensors: clones share one store, guarded
/// by a mutex that each run holds while it executes. [`State::get`] and
/// [`State::snapshot`] return copies.
///
/// ```
/// use kiln_ir::Array;
/// use kiln_runtime::State;
/// let state = State::new([("w".to_string(), Array::from_f32(&[2], vec![1.0, 2.0]).unwrap())]);
/// let shared = state.clone();
/// shared.set("w", Array::from_f32(&[2], vec![3.0, 4.0]).unwrap()).unwrap();
/// assert_eq!(state.get("w").unwrap().as_f32().unwrap(), &[3.0, 4.0]);
/// assert!(state.same(&shared));
/// // A tensor keeps its dtype and shape, and set never adds one.
/// assert!(state.set("w", Array::from_f32(&[3], vec![0.0; 3]).unwrap()).is_err());
/// assert!(state.set("v", Array::from_f32(&[1], vec![0.0]).unwrap()).is_err());
/// ```
///
/// Tensors are never removed, so the position of a tensor in the store is stable: the CPU
/// engine resolves each state buffer's position once and, after a run, swaps the new value
/// of an updated tensor in (no copy, no allocation).
///
/// A GPU executable keeps the tensors it updates on the device: after its run the newest
/// value of such a tensor lives there and the host copy is read back only when someone asks
/// ([`State::get`], [`State::snapshot`], saving, a run on another backend). Each tensor has
/// a version that every write renews (unique in the process), so the GPU engine uploads a
/// tensor only when the host copy changed since it last saw it, and the CPU engine repacks
/// a weight only when its version changed.
#[derive(Clone, Debug, Default)]
pub struct State(Arc<Mutex<Store>>);

/// The newer value of a stored tensor that an engine keeps on its device.
pub(crate) struct DeviceCopy {
    /// The engine holding it ([`DeviceCopy::owner`] compares engines).
    pub(crate) owner: usize,
    /// Reads the value back (the tensor's elements, in order).
    pub(crate) fetch: Box<dyn Fn() -> Result<kiln_ir::Data, RuntimeError> + Send + Sync>,
}

impl std::fmt::Debug for DeviceCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCopy")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A [`State`] handle that does not keep the store alive: a graph remembers the stores of
/// the executables compiled from it this way, without holding their tensors.
#[derive(Clone, Debug, Default)]
pub struct WeakState(Weak<Mutex<Store>>);

impl WeakState {
    /// The store, if something still holds it.
    pub fn upgrade(&self) -> Option<State> {
        self.0.upgrade().map(State)
    }
}

/// One stored tensor: its shape and data (kept apart so the run path can swap data).
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: kiln_ir::Data,
    /// Renewed ([`next_version`]) by every host-side write (insert, [`State::set`], a host
    /// engine's update) and by a device engine's update.
    pub(crate) version: u64,
    /// The engine that updated the tensor last, if it keeps the value on its device.
    pub(crate) device: Option<DeviceCopy>,
    /// True while `data` is older than `device`'s value.
    pub(crate) stale: bool,
}

/// Source of versions: every version is unique in the process (never 0), so an engine may
/// key what it derives from a tensor (a packed weight) by the version alone.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

/// A version no tensor has had before.
pub(crate) fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

impl Stored {
    fn from_array(a: Array) -> Stored {
        Stored {
            shape: a.shape().to_vec(),
            data: a.into_data(),
            version: next_version(),
            device: None,
            stale: false,
        }
    }

    /// Replaces the value by a host-side write: a new version, no device copy.
    pub(crate) fn replace(&mut self, a: Array) {
        *self = Stored::from_array(a);
    }

    /// Marks `data` as written on the host (a host engine swapped a new value in).
    pub(crate) fn touch(&mut self) {
        self.version = next_version();
        self.device = None;
        self.stale = false;
    }

    /// Reads the device's newer value into `data`, if there is one. The device copy stays
    /// valid (the engine that holds it need not upload it again).
    pub(crate) fn sync(&mut self) -> Result<(), RuntimeError> {
        if self.stale
            && let Some(d) = &self.device
        {
            let data = (d.fetch)()?;
            if data.dtype() != self.data.dtype() || data.len() != self.data.len() {
                return Err(RuntimeError::Other(format!(
                    "the device returned {} {} elements for a {} tensor of {}",
                    data.len(),
                    data.dtype(),
                    self.data.dtype(),
                    self.data.len()
                )));
            }
            self.data = data;
            self.stale = false;
        }
        Ok(())
    }

    pub(crate) fn to_array(&self) -> Array {
        // The shape and the data length agree: both come from an `Array`, and the run path
        // only swaps in data of the same dtype and length.
        Array::new(&self.shape, self.data.clone()).unwrap_or_else(|_| {
            Array::new(&[self.data.len()], self.data.clone())
                .unwrap_or_else(|_| Array::scalar(self.data.dtype(), 0.0))
        })
    }
}

/// The store behind a [`State`]: tensors in insertion order, indexed by name.
#[derive(Debug, Default)]
pub(crate) struct Store {
    index: BTreeMap<String, usize>,
    pub(crate) slots: Vec<Stored>,
}

impl Store {
    /// The position of tensor `name`.
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Stored> {
        self.slots.get(self.position(name)?)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Stored> {
        let at = self.position(name)?;
        self.slots.get_mut(at)
    }

    /// Reads every tensor whose newest value is on a device back into the host copy.
    pub(crate) fn sync(&mut self) -> Result<(), RuntimeError> {
        self.slots.iter_mut().try_for_each(Stored::sync)
    }

    /// Inserts or replaces tensor `name` (a host-side write).
    pub(crate) fn insert(&mut self, name: &str, value: Array) {
        match self.position(name) {
            Some(at) => self.slots[at].replace(value),
            None => {
                self.index.insert(name.to_string(), self.slots.len());
                self.slots.push(Stored::from_array(value));
            }
        }
    }

    /// Every tensor as an array, sorted by name.
    pub(crate) fn arrays(&self) -> impl Iterator<Item = (&String, Array)> {
        self.index
            .iter()
            .map(|(k, &at)| (k, self.slots[at].to_array()))
    }
}

impl State {
    /// A state store holding `values`.
    pub fn new(values: impl IntoIterator<Item = (String, Array)>) -> State {
        let mut store = Store::default();
        for (name, value) in values {
            store.insert(&name, value);
        }
        State(Arc::new(Mutex::new(store)))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of one tensor (read back from the device first if a GPU run updated it
    /// last). `None` if no tensor has that name, or if reading it back from the device
    /// fails ([`State::try_get`] says why).
    pub fn get(&self, name: &str) -> Option<Array> {
        self.try_get(name).ok().flatten()
    }

    /// [`State::get`], with the error of a failed read-back from the device.
    ///
    /// # Errors
    ///
    /// The device's error when the newest value is on a device that fails to read back.
    pub fn try_get(&self, name: &str) -> Result<Option<Array>, RuntimeError> {
        let mut s = self.lock();
        match s.get_mut(name) {
            Some(slot) => {
                slot.sync()?;
                Ok(Some(slot.to_array()))
            }
            None => Ok(None),
        }
    }

    /// Replaces one tensor; it must keep its dtype and shape. Every executable sharing this
    /// store sees the new value from its next run.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Update`] if no tensor of that name is stored (`set` never adds one)
    /// or the dtype or shape differs.
    pub fn set(&self, name: &str, value: Array) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        match s.get_mut(name) {
            Some(old) if old.data.dtype() == value.dtype() && old.shape == value.shape() => {
                old.replace(value);
                Ok(())
            }
            Some(old) => Err(RuntimeError::Update {
                name: name.into(),
                message: format!(
                    "expected {}{:?}, got {}{:?}",
                    old.data.dtype(),
                    old.shape,
                    value.dtype(),
                    value.shape()
                ),
            }),
            None => Err(RuntimeError::Update {
                name: name.into(),
                message: "no such state tensor".into(),
            }),
        }
    }

    /// A snapshot of every tensor, sorted by name (tensors a GPU run updated last are read
    /// back from the device first; one whose read-back fails is left out, see
    /// [`State::try_snapshot`]).
    pub fn snapshot(&self) -> Vec<(String, Array)> {
        let mut guard = self.lock();
        let store = &mut *guard;
        let mut failed = Vec::new();
        for (k, &at) in &store.index {
            if store.slots[at].sync().is_err() {
                failed.push(k.clone());
            }
        }
        store
            .arrays()
            .filter(|(k, _)| !failed.contains(k))
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    /// [`State::snapshot`], failing if a tensor cannot be read back from its device.
    ///
    /// # Errors
    ///
    /// The first device error.
    pub fn try_snapshot(&self) -> Result<Vec<(String, Array)>, RuntimeError> {
        let mut s = self.lock();
        s.sync()?;
        Ok(s.arrays().map(|(k, v)| (k.clone(), v)).collect())
    }

    /// True if both handles share one store.
    pub fn same(&self, other: &State) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// True if the store holds a tensor named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().position(name).is_some()
    }

    /// Every stored tensor's name, dtype and shape, sorted by name (no data is copied).
    pub fn entries(&self) -> Vec<(String, kiln_ir::DType, Vec<usize>)> {
        let s = self.lock();
        s.index
            .iter()
            .map(|(k, &at)| {
                (
                    k.clone(),
                    s.slots[at].data.dtype(),
                    s.slots[at].shape.clone(),
                )
            })
            .collect()
    }

    /// A handle that does not keep the store alive ([`WeakState::upgrade`] gives it back
    /// while some executable or `State` still holds it).
    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.0))
    }

    /// Inserts tensor `name` with `value` unless the store already holds it.
    pub(crate) fn ensure(&self, name: &str, value: &Array) {
        let mut s = self.lock();
        if s.position(name).is_none() {
            s.insert(name, value.clone());
        }
    }
}
