//! The GPU engine: the plan's WGSL shaders through wgpu. State is uploaded before each run
//! and outputs and updates are read back after it.

use crate::engine::{Engine, OutputBuffers, Run, read_arrays, update_output};
use crate::error::RuntimeError;
use crate::state::Store;
use kiln_gpu::GpuProgram;
use kiln_kernel::{BufferKind, VerifiedProgram};

/// A plan compiled for the GPU, with the names of its state buffers.
pub(crate) struct GpuEngine {
    program: GpuProgram,
    states: Vec<String>,
}

impl GpuEngine {
    pub(crate) fn new(program: &VerifiedProgram) -> Result<GpuEngine, RuntimeError> {
        let states = program
            .buffers
            .iter()
            .filter_map(|b| match &b.kind {
                BufferKind::State(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        Ok(GpuEngine {
            program: GpuProgram::compile(program)?,
            states,
        })
    }
}

impl Engine for GpuEngine {
    fn planned_scratch_bytes(
        &self,
        bindings: &std::collections::HashMap<String, u64>,
    ) -> Result<Option<u64>, RuntimeError> {
        Ok(Some(
            self.program.scratch_plan(bindings)?.peak_scratch_bytes,
        ))
    }

    fn run(
        &mut self,
        run: &Run<'_>,
        store: &mut Store,
        out: &mut OutputBuffers,
    ) -> Result<(), RuntimeError> {
        for name in &self.states {
            let value = store
                .get(name)
                .ok_or_else(|| RuntimeError::MissingState(name.clone()))?
                .to_array();
            self.program.set_state(name, &value)?;
        }
        let bindings = run.bindings();
        let mut got = self.program.run(bindings, &run.feeds())?;
        let mut take = |buffer: String| {
            got.remove(&buffer)
                .map(kiln_ir::Array::into_data)
                .ok_or(RuntimeError::UnknownOutput(buffer))
        };
        let outputs = read_arrays(run.outputs, run.graph, bindings, &mut |k| {
            take(run.outputs[k].0.clone())
        })?;
        let updated = read_arrays(run.updates, run.graph, bindings, &mut |k| {
            take(update_output(&run.updates[k].0))
        })?;
        for ((name, _), value) in run.updates.iter().zip(updated) {
            store.insert(name, value);
        }
        out.fill(outputs);
        Ok(())
    }
}
