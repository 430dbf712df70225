//! The GPU engine: the plan's WGSL shaders through wgpu. State lives on the device between
//! runs: a tensor is uploaded only when the store's host copy changed since the engine last
//! saw it (its version), new values are copied into the state buffers on the device in the
//! run's command encoder, and the store reads a tensor back only when someone asks for it
//! ([`crate::State::get`], a snapshot, saving, a run on a host backend).

use crate::engine::{Engine, OutputBuffers, Run, read_arrays, update_output};
use crate::error::RuntimeError;
use crate::state::{DeviceCopy, Store};
use kiln_gpu::{GpuProgram, Transfers};
use kiln_kernel::{BufferKind, VerifiedProgram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Tells engines apart in [`DeviceCopy::owner`].
static NEXT_ENGINE: AtomicUsize = AtomicUsize::new(1);

/// A plan compiled for the GPU, with the names of its state buffers.
pub(crate) struct GpuEngine {
    /// Shared with the store's [`DeviceCopy`] read-backs.
    program: Arc<Mutex<GpuProgram>>,
    /// This engine's [`DeviceCopy::owner`].
    id: usize,
    /// Each state buffer's name and the store version its device copy holds (`None`:
    /// never uploaded).
    states: Vec<(String, Option<u64>)>,
}

fn lock(program: &Mutex<GpuProgram>) -> MutexGuard<'_, GpuProgram> {
    program.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read-back of state `name` from the device of engine `owner`.
fn device_copy(program: &Arc<Mutex<GpuProgram>>, owner: usize, name: &str) -> DeviceCopy {
    let program = Arc::clone(program);
    let name = name.to_string();
    DeviceCopy {
        owner,
        fetch: Box::new(move || Ok(lock(&program).state(&name)?.into_data())),
    }
}

impl GpuEngine {
    pub(crate) fn new(program: &VerifiedProgram) -> Result<GpuEngine, RuntimeError> {
        let states = program
            .buffers
            .iter()
            .filter_map(|b| match &b.kind {
                BufferKind::State(n) => Some((n.clone(), None)),
                _ => None,
            })
            .collect();
        Ok(GpuEngine {
            program: Arc::new(Mutex::new(GpuProgram::compile(program)?)),
            id: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed),
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
            lock(&self.program)
                .scratch_plan(bindings)?
                .peak_scratch_bytes,
        ))
    }

    fn keeps_state_on_device(&self) -> bool {
        true
    }

    fn device_transfers(&self) -> Option<Transfers> {
        Some(lock(&self.program).transfers())
    }

    fn run(
        &mut self,
        run: &Run<'_>,
        store: &mut Store,
        out: &mut OutputBuffers,
    ) -> Result<(), RuntimeError> {
        let mut program = lock(&self.program);
        for (name, seen) in &mut self.states {
            let slot = store
                .get_mut(name)
                .ok_or_else(|| RuntimeError::MissingState(name.clone()))?;
            let ours = slot.device.as_ref().is_some_and(|d| d.owner == self.id);
            if ours && *seen == Some(slot.version) {
                continue;
            }
            if !ours {
                // Another GPU engine may hold the newest value: read it back first.
                slot.sync()?;
            }
            program.set_state(name, &slot.to_array())?;
            *seen = Some(slot.version);
        }
        // Updates of tensors the plan keeps in a state buffer stay on the device; any other
        // update (a tensor the plan never reads) comes back through its output.
        let (on_device, on_host): (Vec<_>, Vec<_>) = run
            .updates
            .iter()
            .map(|(name, _)| (name.as_str(), update_output(name)))
            .partition(|(name, _)| program.program().state(name).is_some());
        let commits: Vec<(&str, &str)> = on_device
            .iter()
            .map(|(name, output)| (output.as_str(), *name))
            .collect();
        let mut wanted: Vec<&str> = run.outputs.iter().map(|(n, _)| n.as_str()).collect();
        wanted.extend(on_host.iter().map(|(_, output)| output.as_str()));
        let bindings = run.bindings();
        let mut got = program.run_committing(bindings, &run.feeds(), Some(&wanted), &commits)?;
        drop(program);
        let mut take = |buffer: String| {
            got.remove(&buffer)
                .map(kiln_ir::Array::into_data)
                .ok_or(RuntimeError::UnknownOutput(buffer))
        };
        let outputs = read_arrays(run.outputs, run.graph, bindings, &mut |k| {
            take(run.outputs[k].0.clone())
        })?;
        let host_updates: Vec<_> = run
            .updates
            .iter()
            .filter(|(name, _)| on_host.iter().any(|(n, _)| n == name))
            .cloned()
            .collect();
        let updated = read_arrays(&host_updates, run.graph, bindings, &mut |k| {
            take(update_output(&host_updates[k].0))
        })?;
        for ((name, _), value) in host_updates.iter().zip(updated) {
            store.insert(name, value);
        }
        for (name, seen) in &mut self.states {
            if !on_device.iter().any(|(n, _)| n == name) {
                continue;
            }
            let slot = store
                .get_mut(name)
                .ok_or_else(|| RuntimeError::MissingState(name.clone()))?;
            if slot.device.as_ref().is_none_or(|d| d.owner != self.id) {
                slot.device = Some(device_copy(&self.program, self.id, name));
            }
            slot.version = crate::state::next_version();
            slot.stale = true;
            *seen = Some(slot.version);
        }
        out.fill(outputs);
        Ok(())
    }
}
