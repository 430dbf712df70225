//! `kiln.Module`: a loaded or imported executable, run from keyword arguments of NumPy
//! arrays, with its signature, state dict and a `kiln info`-like repr.

use crate::arrays::{feeds, numpy_name, to_array, to_numpy};
use crate::errors::{self, Kind, Stage, raise};
use kiln::state_dict::Keys;
use kiln_ir::{Array, Dim};
use kiln_runtime::{Executable, RuntimeError, Signature};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::{Mutex, MutexGuard};

/// A compiled kiln module: run it with keyword arguments (`m(x=batch)`), step it if it is a
/// train step, read and load its state with PyTorch's names.
#[pyclass(module = "kiln", name = "Module", frozen)]
pub(crate) struct Module {
    /// Locked for each run (runs of one module take turns; the GIL is released meanwhile).
    exe: Mutex<Executable>,
    signature: Signature,
    backend: &'static str,
    updates: usize,
}

/// One input or output: name, NumPy dtype name and shape (ints, or strings for symbolic
/// dims such as `"N"`).
#[pyclass(module = "kiln", name = "TensorSpec", frozen, get_all)]
pub(crate) struct TensorSpec {
    name: String,
    dtype: &'static str,
    shape: Vec<Py<PyAny>>,
}

#[pymethods]
impl TensorSpec {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = self.name.as_str().into_pyobject(py)?.repr()?;
        let dtype = self.dtype.into_pyobject(py)?.repr()?;
        let shape = PyList::new(py, &self.shape)?.repr()?;
        Ok(format!(
            "TensorSpec(name={name}, dtype={dtype}, shape={shape})"
        ))
    }
}

/// A module's inputs and outputs, and its symbols with their allowed ranges
/// (`{"N": (1, None)}`).
#[pyclass(module = "kiln", name = "Signature", frozen, get_all)]
pub(crate) struct PySignature {
    inputs: Vec<Py<TensorSpec>>,
    outputs: Vec<Py<TensorSpec>>,
    symbols: Py<PyDict>,
}

#[pymethods]
impl PySignature {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let list = |v: &[Py<TensorSpec>]| -> PyResult<String> {
            let parts: PyResult<Vec<String>> = v
                .iter()
                .map(|t| Ok(t.bind(py).repr()?.to_string()))
                .collect();
            Ok(parts?.join(", "))
        };
        Ok(format!(
            "Signature(inputs=[{}], outputs=[{}], symbols={})",
            list(&self.inputs)?,
            list(&self.outputs)?,
            self.symbols.bind(py).repr()?
        ))
    }
}

/// What `load_state_dict` did, in PyTorch's terms.
#[pyclass(module = "kiln", name = "LoadReport", frozen, get_all)]
pub(crate) struct LoadReport {
    loaded: Vec<String>,
    missing_keys: Vec<String>,
    unexpected_keys: Vec<String>,
}

#[pymethods]
impl LoadReport {
    fn __repr__(&self) -> String {
        format!(
            "LoadReport(loaded={:?}, missing_keys={:?}, unexpected_keys={:?})",
            self.loaded, self.missing_keys, self.unexpected_keys
        )
    }
}

fn spec(py: Python<'_>, t: &kiln_runtime::TensorSpec) -> PyResult<Py<TensorSpec>> {
    let shape = t
        .shape
        .dims()
        .iter()
        .map(|d: &Dim| match d.as_known() {
            Some(v) => Ok(v.into_pyobject(py)?.into_any().unbind()),
            None => Ok(d.to_string().into_pyobject(py)?.into_any().unbind()),
        })
        .collect::<PyResult<_>>()?;
    Py::new(
        py,
        TensorSpec {
            name: t.name.clone(),
            dtype: numpy_name(t.dtype),
            shape,
        },
    )
}

fn keys_of(keys: &str) -> PyResult<Keys> {
    match keys {
        "parameters" => Ok(Keys::Parameters),
        "all" => Ok(Keys::All),
        other => Err(PyValueError::new_err(format!(
            "keys must be \"parameters\" or \"all\", not {other:?}"
        ))),
    }
}

impl Module {
    pub(crate) fn new(exe: Executable) -> Module {
        Module {
            signature: exe.signature().clone(),
            backend: exe.backend().name(),
            updates: exe.updates().len(),
            exe: Mutex::new(exe),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Executable> {
        self.exe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs once with the GIL released; returns the outputs as NumPy arrays by name.
    fn run_inputs<'py>(
        &self,
        py: Python<'py>,
        inputs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let feeds = feeds(py, &self.signature, inputs)?;
        let named: Vec<(&str, &Array)> =
            feeds.iter().map(|f| (f.name.as_str(), f.array())).collect();
        // The executable is locked and run with the GIL released, and unlocked before the
        // GIL is taken back: a thread never waits for one while holding the other.
        let outs = py
            .detach(|| self.lock().run(&named).map_err(Box::new))
            .map_err(|e| errors::runtime(py, &e, Stage::Run))?;
        let dict = PyDict::new(py);
        for (name, a) in &outs {
            dict.set_item(name, to_numpy(py, a.shape(), a.data())?)?;
        }
        Ok(dict)
    }

    /// The text of `repr`: what `kiln info` prints about the module.
    fn describe(&self) -> String {
        let sig = &self.signature;
        let mut s = format!("kiln.Module on {}\n  inputs:\n", self.backend);
        for t in &sig.inputs {
            s.push_str(&format!("    {}: {}{}\n", t.name, t.dtype, t.shape));
        }
        s.push_str("  outputs:\n");
        for t in &sig.outputs {
            s.push_str(&format!("    {}: {}{}\n", t.name, t.dtype, t.shape));
        }
        if !sig.symbols.is_empty() {
            let syms: Vec<String> = sig
                .symbols
                .iter()
                .map(|x| {
                    format!(
                        "{} >= {}{}",
                        x.name,
                        x.min,
                        x.max.map_or(String::new(), |m| format!(", <= {m}"))
                    )
                })
                .collect();
            s.push_str(&format!("  symbols: {}\n", syms.join("; ")));
        }
        if self.updates > 0 {
            s.push_str(&format!("  state updates per run: {}\n", self.updates));
        }
        let state = self.lock().state().clone();
        let entries = state.entries();
        let elements: usize = entries
            .iter()
            .map(|(_, _, sh)| sh.iter().product::<usize>())
            .sum();
        let bytes: usize = entries
            .iter()
            .map(|(_, d, sh)| d.size_bytes() * sh.iter().product::<usize>())
            .sum();
        s.push_str(&format!(
            "  state: {} tensors, {elements} elements, {bytes} bytes",
            entries.len()
        ));
        s
    }
}

#[pymethods]
impl Module {
    /// Runs once. Inputs are keyword arguments, NumPy arrays or anything with the buffer
    /// protocol; C-contiguous arrays of the input's dtype are read in place. Returns a dict
    /// of NumPy arrays by output name. A train step applies its state updates (see `step`).
    #[pyo3(signature = (**inputs))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.run_inputs(py, inputs)
    }

    /// `m(x=...)` is `m.run(x=...)`.
    #[pyo3(signature = (**inputs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        inputs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.run_inputs(py, inputs)
    }

    /// Runs one training step of a train-step module: computes its outputs (the loss, as
    /// computed before the update) and applies every state update, all or none. Raises
    /// `KilnError` for a module without state updates.
    #[pyo3(signature = (**inputs))]
    fn step<'py>(
        &self,
        py: Python<'py>,
        inputs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        if self.updates == 0 {
            return Err(raise(
                py,
                Kind::Kiln,
                "this module has no state updates (it is not a train step); use run",
            ));
        }
        self.run_inputs(py, inputs)
    }

    /// The module's state as a dict of NumPy arrays (copies) with PyTorch's names.
    /// `keys="parameters"` (the default) gives the model's parameters, as PyTorch's
    /// `model.state_dict()`; `keys="all"` adds optimiser moments, step and random-stream
    /// counters (a checkpoint that resumes training exactly).
    #[pyo3(signature = (keys = "parameters"))]
    fn state_dict<'py>(&self, py: Python<'py>, keys: &str) -> PyResult<Bound<'py, PyDict>> {
        let keys = keys_of(keys)?;
        let state = self.lock().state().clone();
        let dict = kiln::state_dict(&state, keys);
        let out = PyDict::new(py);
        for (name, a) in &dict {
            out.set_item(name, to_numpy(py, a.shape(), a.data())?)?;
        }
        Ok(out)
    }

    /// Loads tensors by name into the module's state, as PyTorch's `load_state_dict`: with
    /// `strict`, missing and unexpected keys raise `InputError`; a dtype or shape mismatch
    /// always does, and on any error nothing is loaded. Returns a `LoadReport`.
    #[pyo3(signature = (state_dict, strict = true, keys = "parameters"))]
    fn load_state_dict(
        &self,
        py: Python<'_>,
        state_dict: &Bound<'_, PyDict>,
        strict: bool,
        keys: &str,
    ) -> PyResult<LoadReport> {
        let keys = keys_of(keys)?;
        let mut dict = kiln::StateDict::new();
        for (k, v) in state_dict.iter() {
            let name: String = k.extract()?;
            let a = to_array(py, &name, &v)?;
            dict.insert(name, a);
        }
        let state = self.lock().state().clone();
        let report = kiln::load_state_dict(&state, &dict, keys, strict)
            .map_err(|e| errors::kiln(py, &e, Stage::Run))?;
        Ok(LoadReport {
            loaded: report.loaded,
            missing_keys: report.missing_keys,
            unexpected_keys: report.unexpected_keys,
        })
    }

    /// Saves the module (graph, kernel plan, current state) to a `.kiln` file, atomically.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        py.detach(|| self.lock().save(&path).map_err(Box::new))
            .map_err(|e: Box<RuntimeError>| errors::runtime(py, &e, Stage::Run))
    }

    /// The inputs, outputs and symbols.
    #[getter]
    fn signature(&self, py: Python<'_>) -> PyResult<PySignature> {
        let sig = &self.signature;
        let symbols = PyDict::new(py);
        for s in &sig.symbols {
            symbols.set_item(&s.name, (s.min, s.max))?;
        }
        Ok(PySignature {
            inputs: sig
                .inputs
                .iter()
                .map(|t| spec(py, t))
                .collect::<PyResult<_>>()?,
            outputs: sig
                .outputs
                .iter()
                .map(|t| spec(py, t))
                .collect::<PyResult<_>>()?,
            symbols: symbols.unbind(),
        })
    }

    /// The backend it runs on: `"cpu"`, `"gpu"` or `"interp"`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// True for a train step (a module whose runs update its state).
    #[getter]
    fn is_train_step(&self) -> bool {
        self.updates > 0
    }

    /// For tests: whether each input would be read in place (`True`) or converted first.
    #[pyo3(signature = (**inputs))]
    fn _reads_in_place<'py>(
        &self,
        py: Python<'py>,
        inputs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for f in feeds(py, &self.signature, inputs)? {
            out.set_item(&f.name, f.in_place)?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        self.describe()
    }
}
