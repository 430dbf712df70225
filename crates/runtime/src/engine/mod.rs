//! The engines that run a compiled plan, behind one trait: every backend takes a run the
//! binder has validated and bound, writes the named outputs into [`OutputBuffers`] and
//! applies the state updates to the [`Store`].
//!
//! * [`interp`]: the reference graph interpreter, on the optimised graph.
//! * [`kernel`]: the kernel-IR executor, on the plan in host buffers.
//! * [`cpu`]: the Cranelift JIT's code, zero-copy and allocation-free in steady state.
//! * [`gpu`]: WGSL shaders through wgpu.

pub(crate) mod cpu;
pub(crate) mod gpu;
pub(crate) mod interp;
pub(crate) mod kernel;

use crate::bind::Binder;
use crate::error::RuntimeError;
use crate::state::Store;
use kiln_ir::{Array, Data, Graph, NodeId};
use kiln_kernel::{BufferKind, Program};
use std::collections::HashMap;

/// One run of an executable: the bound inputs and what to compute.
pub(crate) struct Run<'a> {
    /// The binder holding this run's symbol binding and input order.
    pub(crate) binder: &'a Binder,
    /// The caller's inputs, validated against the signature.
    pub(crate) inputs: &'a [(&'a str, &'a Array)],
    /// The optimised graph.
    pub(crate) graph: &'a Graph,
    /// Named outputs (nodes of `graph`).
    pub(crate) outputs: &'a [(String, NodeId)],
    /// State updates: state name → node of `graph` computing its new value.
    pub(crate) updates: &'a [(String, NodeId)],
}

impl Run<'_> {
    /// The symbol binding of this run.
    pub(crate) fn bindings(&self) -> &HashMap<String, u64> {
        &self.binder.map
    }

    /// The inputs as an owned name → array map.
    pub(crate) fn feeds(&self) -> HashMap<String, Array> {
        self.inputs
            .iter()
            .map(|(n, a)| (n.to_string(), (*a).clone()))
            .collect()
    }
}

/// A backend's way of running a compiled plan.
pub(crate) trait Engine: Send + Sync {
    /// Runs once: computes every named output of `run` into `out` (one entry per output, in
    /// order, each with its concrete shape; an entry whose dtype and length already fit may
    /// be reused), then writes every state update into `store`.
    fn run(
        &mut self,
        run: &Run<'_>,
        store: &mut Store,
        out: &mut OutputBuffers,
    ) -> Result<(), RuntimeError>;

    /// True if the engine keeps the state it updates on a device and syncs the store
    /// itself ([`crate::state::Stored::device`]); the executable then neither reads device
    /// copies back before the run nor marks updates as host writes after it.
    fn keeps_state_on_device(&self) -> bool {
        false
    }

    /// Bytes moved between host and device, for device engines.
    fn device_transfers(&self) -> Option<kiln_gpu::Transfers> {
        None
    }

    /// The bytes of the scratch arena the engine allocates per binding (the peak of its
    /// memory plan), for engines that keep one.
    fn planned_scratch_bytes(
        &self,
        _bindings: &std::collections::HashMap<String, u64>,
    ) -> Result<Option<u64>, RuntimeError> {
        Ok(None)
    }
}

/// The outputs of a run: data and shape per named output, kept by the executable and
/// handed to the engine run after run.
#[derive(Debug, Default)]
pub(crate) struct OutputBuffers {
    pub(crate) data: Vec<Data>,
    pub(crate) shapes: Vec<Vec<usize>>,
}

impl OutputBuffers {
    /// Replaces the contents with `arrays`.
    pub(crate) fn fill(&mut self, arrays: Vec<Array>) {
        self.data.clear();
        self.shapes.clear();
        for a in arrays {
            self.shapes.push(a.shape().to_vec());
            self.data.push(a.into_data());
        }
    }

    /// Moves the data out as named arrays (the shapes stay, for reuse).
    pub(crate) fn take(
        &mut self,
        names: &[(String, NodeId)],
    ) -> Result<Vec<(String, Array)>, RuntimeError> {
        let mut out = Vec::with_capacity(names.len());
        for ((data, (name, _)), shape) in self.data.drain(..).zip(names).zip(&self.shapes) {
            let a = Array::new(shape, data)
                .map_err(|e| RuntimeError::Other(format!("output `{name}`: {e}")))?;
            out.push((name.clone(), a));
        }
        Ok(out)
    }
}

/// The plan's output buffer of every output and every state update (`update:NAME`),
/// resolved once when the executable is built instead of on every run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slots {
    pub(crate) outputs: Vec<usize>,
    pub(crate) updates: Vec<usize>,
}

impl Slots {
    pub(crate) fn resolve(
        program: &Program,
        outputs: &[(String, NodeId)],
        updates: &[(String, NodeId)],
    ) -> Result<Slots, RuntimeError> {
        let find = |name: &str| {
            program
                .buffers
                .iter()
                .position(|b| matches!(&b.kind, BufferKind::Output(n) if n == name))
                .ok_or_else(|| RuntimeError::UnknownOutput(name.to_string()))
        };
        Ok(Slots {
            outputs: outputs
                .iter()
                .map(|(n, _)| find(n))
                .collect::<Result<_, _>>()?,
            updates: updates
                .iter()
                .map(|(n, _)| find(&update_output(n)))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The name of the plan output holding the new value of state `name`.
pub(crate) fn update_output(name: &str) -> String {
    format!("{}{name}", kiln_format::UPDATE_OUTPUT_PREFIX)
}

/// The arrays of `named` (nodes of `graph`) under `bindings`; `read(k)` gives the data of
/// the `k`-th.
pub(crate) fn read_arrays(
    named: &[(String, NodeId)],
    graph: &Graph,
    bindings: &HashMap<String, u64>,
    read: &mut dyn FnMut(usize) -> Result<Data, RuntimeError>,
) -> Result<Vec<Array>, RuntimeError> {
    named
        .iter()
        .enumerate()
        .map(|(k, (name, id))| {
            let shape = graph
                .node(*id)
                .shape
                .eval(bindings)
                .map_err(|e| RuntimeError::Other(e.to_string()))?;
            Array::new(&shape, read(k)?)
                .map_err(|e| RuntimeError::Other(format!("output `{name}`: {e}")))
        })
        .collect()
}
