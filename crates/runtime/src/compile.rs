//! The compile driver: a graph and its named outputs become an [`Executable`] in five
//! stages, one function each:
//!
//! 1. [`optimize_graph`]: the pass pipeline (`kiln_passes::pipeline::optimize`);
//! 2. [`prune_unused_inputs`]: inputs no output or update depends on leave the signature;
//! 3. [`seed_state`]: every parameter and updated tensor gets its value in the [`State`];
//! 4. [`fuse`]: lowering to a kernel plan, which `fuse::lower` verifies before returning it;
//! 5. [`engine_for`]: the backend's engine for the verified plan.
//!
//! [`crate::from_module`] starts from a loaded module's optimised graph and state: it runs
//! stage 4 only when the module carries no plan, then stage 5.

use crate::backend::Backend;
use crate::bind::Binder;
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::GpuEngine;
use crate::engine::interp::InterpEngine;
use crate::engine::kernel::KernelEngine;
use crate::engine::{Engine, OutputBuffers, Slots, update_output};
use crate::error::RuntimeError;
use crate::executable::Executable;
use crate::report::CompileReport;
use crate::signature::{Signature, signature_of};
use crate::state::State;
use kiln_ir::{Array, Graph, NodeId};
use kiln_kernel::VerifiedProgram;
use kiln_passes::pipeline::{Dump, Func, PipelineOptions, PipelineReport, optimize};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What to compile: a graph, its named outputs and state updates.
#[derive(Clone, Debug)]
pub struct CompileSpec {
    /// The graph (a snapshot; the executable owns its copy).
    pub graph: Graph,
    /// Named outputs.
    pub outputs: Vec<(String, NodeId)>,
    /// State updates: state name → node computing its new value.
    pub updates: Vec<(String, NodeId)>,
    /// Initial values of parameters (by name); missing ones are an error unless `state`
    /// already holds them.
    pub params: HashMap<String, Array>,
    /// Share this state store instead of creating one.
    pub state: Option<State>,
}

/// Optimises and compiles `spec` for `backend` (what `kiln::compile` calls).
///
/// # Errors
///
/// [`RuntimeError::UnknownOutput`] for an output or update that is no node of the graph,
/// [`RuntimeError::MissingState`] for a parameter with no value in `params` or `state`,
/// [`RuntimeError::Update`] for a value or update whose dtype or shape differs from its
/// declaration, and a pass, lowering or backend error (`gpu` refuses `f64`).
pub fn compile(spec: CompileSpec, backend: Backend) -> Result<Executable, RuntimeError> {
    let start = Instant::now();
    let CompileSpec {
        graph,
        outputs,
        updates,
        params,
        state,
    } = spec;
    let (optimized, pipeline) = optimize_graph(graph, &outputs, &updates)?;
    let Optimized {
        mut graph,
        outputs,
        updates,
    } = optimized;
    prune_unused_inputs(&mut graph, &outputs, &updates);
    let state = seed_state(&graph, &updates, &params, state.unwrap_or_default())?;
    let signature = signature_of(&graph, &outputs);
    let program = fuse(&graph, &outputs, &updates)?;
    let parts = Parts {
        signature,
        graph,
        outputs,
        updates,
        program,
        state,
    };
    executable(parts, backend, Some(pipeline), start)
}

/// The optimised graph with the outputs and updates renamed onto its nodes.
struct Optimized {
    graph: Graph,
    outputs: Vec<(String, NodeId)>,
    updates: Vec<(String, NodeId)>,
}

/// Stage 1: runs the pass pipeline on `graph`, keeping `outputs` and `updates` alive.
fn optimize_graph(
    graph: Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId)],
) -> Result<(Optimized, PipelineReport), RuntimeError> {
    for (name, id) in outputs.iter().chain(updates) {
        if !graph.contains(*id) {
            return Err(RuntimeError::UnknownOutput(name.clone()));
        }
    }
    let all: Vec<NodeId> = outputs.iter().chain(updates).map(|(_, id)| *id).collect();
    let mut func = Func::new(graph, all)?;
    let options = PipelineOptions {
        dump: Dump::Env,
        ..PipelineOptions::default()
    };
    let pipeline = optimize(&mut func, &options)?;
    let (new_outputs, new_updates) = func.outputs.split_at(outputs.len());
    let rename = |named: &[(String, NodeId)], ids: &[NodeId]| {
        named
            .iter()
            .zip(ids)
            .map(|((n, _), id)| (n.clone(), *id))
            .collect()
    };
    let optimized = Optimized {
        outputs: rename(outputs, new_outputs),
        updates: rename(updates, new_updates),
        graph: func.graph,
    };
    Ok((optimized, pipeline))
}

/// Stage 2: removes the inputs nothing computed here depends on, so they are not part of
/// the executable's signature (an eval executable built on a training graph does not take
/// the labels).
fn prune_unused_inputs(
    graph: &mut Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId)],
) {
    let live: HashSet<NodeId> = outputs.iter().chain(updates).map(|(_, id)| *id).collect();
    let inputs: Vec<NodeId> = graph.inputs().into_iter().map(|(id, _)| id).collect();
    for id in inputs {
        if graph.users(id).is_empty() && !live.contains(&id) {
            graph.remove(id);
        }
    }
}

/// Stage 3: puts the value of every parameter and every updated tensor into `state`
/// (a value already there wins over `params`) and checks it against its declaration.
fn seed_state(
    graph: &Graph,
    updates: &[(String, NodeId)],
    params: &HashMap<String, Array>,
    state: State,
) -> Result<State, RuntimeError> {
    for (id, name) in graph.parameters() {
        let node = graph.node(id);
        let value = match state.get(name) {
            Some(v) => v,
            None => params
                .get(name)
                .cloned()
                .ok_or_else(|| RuntimeError::MissingState(name.to_string()))?,
        };
        if Some(value.shape().to_vec()) != node.shape.as_known() || value.dtype() != node.dtype {
            return Err(RuntimeError::Update {
                name: name.to_string(),
                message: format!(
                    "declared {}{} but the value is {}{:?}",
                    node.dtype,
                    node.shape,
                    value.dtype(),
                    value.shape()
                ),
            });
        }
        state.ensure(name, &value);
    }
    for (name, id) in updates {
        let node = graph.node(*id);
        let target = graph
            .parameters()
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(pid, _)| pid);
        let declared = match target {
            Some(pid) => {
                let p = graph.node(pid);
                (p.dtype, p.shape.clone())
            }
            None => match state.get(name).or_else(|| params.get(name).cloned()) {
                Some(v) => {
                    state.ensure(name, &v);
                    (v.dtype(), kiln_ir::Shape::known(v.shape()))
                }
                None => return Err(RuntimeError::MissingState(name.clone())),
            },
        };
        if declared != (node.dtype, node.shape.clone()) {
            return Err(RuntimeError::Update {
                name: name.clone(),
                message: format!(
                    "state is {}{} but the new value is {}{}",
                    declared.0, declared.1, node.dtype, node.shape
                ),
            });
        }
    }
    Ok(state)
}

/// Stage 4: lowers the graph to a kernel plan with one output buffer per output and one
/// per state update (`update:NAME`). `fuse::lower` verifies the plan before returning it.
pub(crate) fn fuse(
    graph: &Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId)],
) -> Result<VerifiedProgram, RuntimeError> {
    let mut named: Vec<(String, NodeId)> = outputs.to_vec();
    named.extend(updates.iter().map(|(n, id)| (update_output(n), *id)));
    Ok(kiln_passes::fuse::lower(graph, &named)?)
}

/// Stage 5: the engine that runs the verified `program` on `backend`.
fn engine_for(
    backend: Backend,
    program: &VerifiedProgram,
    signature: &Signature,
    slots: &Slots,
    updates: &[(String, NodeId)],
) -> Result<Box<dyn Engine>, RuntimeError> {
    Ok(match backend {
        Backend::Cpu => Box::new(CpuEngine::new(
            kiln_cpu::compile(program)?,
            signature,
            slots,
            updates,
        )),
        Backend::Gpu => Box::new(GpuEngine::new(program)?),
        Backend::Interp => Box::new(InterpEngine),
        Backend::Kernel => Box::new(KernelEngine::new(program, slots)),
    })
}

/// What an executable is built from: an optimised graph with its verified kernel plan.
pub(crate) struct Parts {
    pub(crate) signature: Signature,
    pub(crate) graph: Graph,
    pub(crate) outputs: Vec<(String, NodeId)>,
    pub(crate) updates: Vec<(String, NodeId)>,
    pub(crate) program: VerifiedProgram,
    pub(crate) state: State,
}

/// Builds the engine for `parts` on `backend` and the executable around it; `start` is
/// when compilation began, for [`CompileReport::total`].
pub(crate) fn executable(
    parts: Parts,
    backend: Backend,
    pipeline: Option<PipelineReport>,
    start: Instant,
) -> Result<Executable, RuntimeError> {
    let Parts {
        signature,
        graph,
        outputs,
        updates,
        program,
        state,
    } = parts;
    let mut report = CompileReport {
        pipeline,
        ..CompileReport::default()
    };
    report.count_kernels(&program);
    let slots = Slots::resolve(&program, &outputs, &updates)?;
    let engine = engine_for(backend, &program, &signature, &slots, &updates)?;
    report.total = start.elapsed();
    Ok(Executable {
        binder: Binder::new(&signature, &graph),
        fresh: OutputBuffers::default(),
        held: OutputBuffers::default(),
        backend,
        signature,
        graph,
        outputs,
        updates,
        program,
        state,
        engine,
        report,
    })
}
