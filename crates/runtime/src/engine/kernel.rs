//! The kernel engine: runs the kernel plan with the kernel-IR executor (the backends'
//! oracle for plans) on host buffers reused while the symbol binding stays the same.

use crate::engine::{Engine, OutputBuffers, Run, Slots, read_arrays};
use crate::error::RuntimeError;
use crate::state::Store;
use kiln_ir::{Array, Data};
use kiln_kernel::{BufferKind, Program, VerifiedProgram};
use std::collections::HashMap;

/// The kernel plan with its host buffers.
pub(crate) struct KernelEngine {
    program: VerifiedProgram,
    slots: Slots,
    host: HostBuffers,
}

impl KernelEngine {
    pub(crate) fn new(program: &VerifiedProgram, slots: &Slots) -> KernelEngine {
        KernelEngine {
            program: program.clone(),
            slots: slots.clone(),
            host: HostBuffers::default(),
        }
    }
}

/// Host buffers of a plan, allocated once per symbol binding and reused by later runs, so
/// the steady-state run allocates only the outputs it returns.
#[derive(Default)]
struct HostBuffers {
    bindings: Option<HashMap<String, u64>>,
    bufs: Vec<Data>,
}

impl HostBuffers {
    /// The buffers for `bindings` with inputs and state copied in.
    fn fill(
        &mut self,
        program: &Program,
        bindings: &HashMap<String, u64>,
        inputs: &[(&str, &Array)],
        store: &Store,
    ) -> Result<&mut Vec<Data>, RuntimeError> {
        if self.bindings.as_ref() != Some(bindings) {
            self.bufs = kiln_kernel::allocate(program, bindings)?;
            self.bindings = Some(bindings.clone());
        }
        for (i, b) in program.buffers.iter().enumerate() {
            let src = match &b.kind {
                BufferKind::Input(n) => inputs.iter().find(|(m, _)| m == n).map(|(_, a)| a.data()),
                BufferKind::State(n) => Some(
                    &store
                        .get(n)
                        .ok_or_else(|| RuntimeError::MissingState(n.clone()))?
                        .data,
                ),
                _ => None,
            };
            if let Some(a) = src {
                kiln_ir::array::copy_data(&mut self.bufs[i], a)
                    .map_err(|e| RuntimeError::Other(format!("buffer b{i}: {e}")))?;
            }
        }
        Ok(&mut self.bufs)
    }
}

impl Engine for KernelEngine {
    fn run(
        &mut self,
        run: &Run<'_>,
        store: &mut Store,
        out: &mut OutputBuffers,
    ) -> Result<(), RuntimeError> {
        let bindings = run.bindings();
        let bufs = self.host.fill(&self.program, bindings, run.inputs, store)?;
        kiln_kernel::execute(&self.program, bindings, bufs)?;
        let outputs = read_arrays(run.outputs, run.graph, bindings, &mut |k| {
            Ok(bufs[self.slots.outputs[k]].clone())
        })?;
        for ((name, _), &idx) in run.updates.iter().zip(&self.slots.updates) {
            let target = store
                .get_mut(name)
                .ok_or_else(|| RuntimeError::MissingState(name.clone()))?;
            kiln_ir::array::copy_data(&mut target.data, &bufs[idx]).map_err(|e| {
                RuntimeError::Update {
                    name: name.clone(),
                    message: e.to_string(),
                }
            })?;
        }
        out.fill(outputs);
        Ok(())
    }
}
