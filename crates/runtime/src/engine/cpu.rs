//! The CPU engine's run path: zero-copy and, in steady state, allocation-free.
//!
//! * Inputs are read in place from the caller's arrays, and state that no kernel writes is
//!   read in place from the [`State`](crate::State) store (kernels never store to input
//!   buffers: the verifier rejects it and `kiln_cpu::compile` re-checks it), stamped with
//!   its store version, so a weight's packed form is kept until an update renews it.
//! * Outputs are computed straight into the arrays the run returns (or into the
//!   executable's held buffers for [`Executable::run_borrowed`](crate::Executable::run_borrowed)).
//! * State updates are computed into spare buffers owned by the engine, then swapped into
//!   the store: the store receives the new value and the engine keeps the old buffer as the
//!   next run's spare. Every output buffer of a plan is fully written by its kernels.
//! * Everything that depends on the symbol binding (buffer lengths, dims, pre-run checks,
//!   pointer tables, output shapes, spare buffers) is kept in a [`kiln_cpu::RunPlan`] and
//!   reused while the binding stays the same.

use crate::alloc::zeroed;
use crate::bind::Binder;
use crate::engine::{Engine, OutputBuffers, Run, Slots};
use crate::error::RuntimeError;
use crate::signature::Signature;
use crate::state::Store;
use kiln_cpu::{CpuProgram, RunOptions, RunPlan};
use kiln_ir::{Data, Graph, NodeId};
use kiln_kernel::{BufferId, BufferKind};

fn id(i: usize) -> BufferId {
    BufferId(u32::try_from(i).unwrap_or(u32::MAX))
}

/// A state buffer of the plan.
#[derive(Debug)]
struct StateBuf {
    buffer: BufferId,
    name: String,
    /// Position in the store, once resolved.
    slot: Option<usize>,
    /// A kernel writes it: it runs on a private copy (writes are not kept, as on the other
    /// host engines; updates go through `update:` outputs).
    private: Option<Data>,
}

/// A state update: its output buffer, the state it replaces and the spare buffer the next
/// value is computed into.
#[derive(Debug)]
struct UpdateBuf {
    buffer: BufferId,
    name: String,
    slot: Option<usize>,
    spare: Data,
}

/// The CPU engine of an executable.
#[derive(Debug)]
pub(crate) struct CpuEngine {
    program: CpuProgram,
    plan: Option<RunPlan>,
    /// The signature symbol values `plan` was made for.
    key: Vec<u64>,
    /// Shapes of the named outputs under the plan's binding.
    shapes: Vec<Vec<usize>>,
    /// Program input buffers with the signature input each reads.
    inputs: Vec<(BufferId, Option<usize>)>,
    states: Vec<StateBuf>,
    /// Output buffer of each named output, and the earlier output sharing it, if any.
    outputs: Vec<(BufferId, Option<usize>)>,
    updates: Vec<UpdateBuf>,
}

impl CpuEngine {
    pub(crate) fn new(
        program: CpuProgram,
        signature: &Signature,
        slots: &Slots,
        updates: &[(String, NodeId)],
    ) -> CpuEngine {
        let mut inputs = Vec::new();
        let mut states = Vec::new();
        for (i, b) in program.program().buffers.iter().enumerate() {
            match &b.kind {
                BufferKind::Input(n) => {
                    inputs.push((id(i), signature.inputs.iter().position(|s| s.name == *n)));
                }
                BufferKind::State(n) => states.push(StateBuf {
                    buffer: id(i),
                    name: n.clone(),
                    slot: None,
                    private: program.writes(id(i)).then(|| Data::F32(Vec::new())),
                }),
                BufferKind::Output(_) | BufferKind::Constant(_) | BufferKind::Scratch => {}
            }
        }
        let outputs = slots
            .outputs
            .iter()
            .enumerate()
            .map(|(k, &b)| (id(b), slots.outputs[..k].iter().position(|&x| x == b)))
            .collect::<Vec<_>>();
        let updates = updates
            .iter()
            .zip(&slots.updates)
            .map(|((name, _), &b)| UpdateBuf {
                buffer: id(b),
                name: name.clone(),
                slot: None,
                spare: Data::F32(Vec::new()),
            })
            .collect();
        CpuEngine {
            program,
            plan: None,
            key: Vec::new(),
            shapes: Vec::new(),
            inputs,
            states,
            outputs,
            updates,
        }
    }

    /// Takes the run plan for the binder's binding out of the engine: the kept one while
    /// the binding stays the same, else a new one (with the output shapes and the spare
    /// buffers resized for it). The caller puts it back after the run.
    fn take_plan(
        &mut self,
        binder: &Binder,
        graph: &Graph,
        outputs: &[(String, NodeId)],
    ) -> Result<RunPlan, RuntimeError> {
        if let Some(plan) = self.plan.take()
            && self.key == binder.values
        {
            return Ok(plan);
        }
        let plan = self.program.bind(&binder.map)?;
        self.shapes = outputs
            .iter()
            .map(|(_, id)| graph.node(*id).shape.eval(&binder.map))
            .collect::<Result<_, _>>()
            .map_err(|e| RuntimeError::Other(e.to_string()))?;
        let buffers = &self.program.program().buffers;
        let sized = |b: BufferId, d: &mut Data| -> Result<(), RuntimeError> {
            let len = plan
                .buffer_len(b)
                .ok_or_else(|| RuntimeError::Other(format!("{b} is not a buffer of the plan")))?;
            let dtype = buffers[b.index()].dtype;
            if d.len() != len || d.dtype() != dtype {
                *d = zeroed(dtype, len)
                    .ok_or_else(|| RuntimeError::Other(format!("{b}: out of memory")))?;
            }
            Ok(())
        };
        for u in &mut self.updates {
            sized(u.buffer, &mut u.spare)?;
        }
        for s in &mut self.states {
            if let Some(p) = &mut s.private {
                sized(s.buffer, p)?;
            }
        }
        self.key.clear();
        self.key.extend_from_slice(&binder.values);
        Ok(plan)
    }
}

impl Engine for CpuEngine {
    fn planned_scratch_bytes(
        &self,
        bindings: &std::collections::HashMap<String, u64>,
    ) -> Result<Option<u64>, RuntimeError> {
        Ok(Some(self.program.memory_plan(bindings)?.peak_scratch_bytes))
    }

    /// Runs under the binder's binding, reading inputs and state in place and computing
    /// outputs straight into `out`'s buffers.
    fn run(
        &mut self,
        run: &Run<'_>,
        store: &mut Store,
        out: &mut OutputBuffers,
    ) -> Result<(), RuntimeError> {
        let mut plan = self.take_plan(run.binder, run.graph, run.outputs)?;
        let result = self.run_planned(&mut plan, run, store, out);
        self.plan = Some(plan);
        result
    }
}

impl CpuEngine {
    /// [`Engine::run`] under `plan`, the plan of the binder's binding.
    fn run_planned(
        &mut self,
        plan: &mut RunPlan,
        run: &Run<'_>,
        store: &mut Store,
        out: &mut OutputBuffers,
    ) -> Result<(), RuntimeError> {
        let binder = run.binder;
        for s in &mut self.states {
            if s.slot.is_none() {
                s.slot = store.position(&s.name);
            }
        }
        for u in &mut self.updates {
            if u.slot.is_none() {
                u.slot = store.position(&u.name);
            }
        }
        let CpuEngine {
            program,
            shapes,
            states,
            outputs,
            updates,
            inputs: input_bufs,
            ..
        } = self;
        let held = &mut out.data;
        held.resize_with(outputs.len(), || Data::F32(Vec::new()));
        // Outputs whose every element the run stores before reading any are allocated
        // without clearing, and cleared if the run fails (it may stop before storing them
        // all). `fresh` marks them without allocating: bit k for output k, and every such
        // output from the 64th on.
        let mut fresh_mask = 0u64;
        let fresh_bit = |k: usize| 1u64.checked_shl(u32::try_from(k).unwrap_or(u32::MAX));
        for (k, (&(b, _), d)) in outputs.iter().zip(held.iter_mut()).enumerate() {
            let len = plan.buffer_len(b).unwrap_or(0);
            let dtype = program.program().buffers[b.index()].dtype;
            if d.len() != len || d.dtype() != dtype {
                let fresh = if plan.stored_first(b) {
                    fresh_mask |= fresh_bit(k).unwrap_or(0);
                    // SAFETY: the run stores every element of `b` before reading any
                    // (`stored_first`), and a failed run clears it below.
                    unsafe { crate::alloc::unwritten(dtype, len) }
                } else {
                    zeroed(dtype, len)
                };
                *d = fresh.ok_or_else(|| RuntimeError::Other(format!("{b}: out of memory")))?;
            }
        }
        let ran = (|| -> Result<(), RuntimeError> {
            out.shapes.resize_with(shapes.len(), Vec::new);
            for (to, from) in out.shapes.iter_mut().zip(shapes.iter()) {
                to.clone_from(from);
            }
            for s in states.iter_mut() {
                if let (Some(p), Some(at)) = (&mut s.private, s.slot) {
                    kiln_ir::array::copy_data(p, &store.slots[at].data).map_err(|e| {
                        RuntimeError::Update {
                            name: s.name.clone(),
                            message: e.to_string(),
                        }
                    })?;
                }
            }
            {
                let mut runner = program.runner(plan)?;
                for &(b, sig) in input_bufs.iter() {
                    let a = sig
                        .and_then(|k| binder.order.get(k))
                        .and_then(|&j| run.inputs.get(j))
                        .ok_or_else(|| RuntimeError::Other(format!("no input feeds {b}")))?
                        .1;
                    runner.read(b, a.data())?;
                }
                for s in states.iter_mut() {
                    let at = s
                        .slot
                        .ok_or_else(|| RuntimeError::MissingState(s.name.clone()))?;
                    match &mut s.private {
                        Some(p) => runner.write(s.buffer, p)?,
                        None => {
                            let slot = &store.slots[at];
                            runner.read_stamped(s.buffer, &slot.data, slot.version)?;
                        }
                    }
                }
                for (&(b, dup), d) in outputs.iter().zip(held.iter_mut()) {
                    if dup.is_none() {
                        runner.write(b, d)?;
                    }
                }
                for u in updates.iter_mut() {
                    runner.write(u.buffer, &mut u.spare)?;
                }
                runner.run(&RunOptions::default())?;
            }
            for k in 0..outputs.len() {
                if let Some(first) = outputs[k].1 {
                    held[k] = held[first].clone();
                }
            }
            for u in updates.iter_mut() {
                let at = u
                    .slot
                    .ok_or_else(|| RuntimeError::MissingState(u.name.clone()))?;
                let target = &mut store.slots[at].data;
                if target.dtype() != u.spare.dtype() || target.len() != u.spare.len() {
                    return Err(RuntimeError::Update {
                        name: u.name.clone(),
                        message: format!(
                            "state is {}[{}] but the new value is {}[{}]",
                            target.dtype(),
                            target.len(),
                            u.spare.dtype(),
                            u.spare.len()
                        ),
                    });
                }
                std::mem::swap(target, &mut u.spare);
            }
            Ok(())
        })();
        if ran.is_err() {
            for (k, (&(b, _), d)) in outputs.iter().zip(held.iter_mut()).enumerate() {
                let fresh = fresh_bit(k).is_none_or(|bit| fresh_mask & bit != 0);
                if fresh && plan.stored_first(b) {
                    crate::alloc::clear(d);
                }
            }
        }
        ran
    }
}
