//! kiln's executor: turns an optimised graph into an [`Executable`] on a [`Backend`] and
//! runs it with validated inputs, keeping persistent state (parameters, optimiser moments,
//! counters) across runs.
//!
//! Compilation is `optimize` (crates/passes) → `fuse::lower` to a kernel plan, verified
//! there once ([`kiln_kernel::VerifiedProgram`]) → backend code; a loaded module's plan was
//! verified once by the loader, and no backend verifies again. State updates (a train step's new
//! parameter values) are extra outputs of the plan that the executor writes back into the
//! state after each run, so a run either applies every update or none.
//!
//! # The CPU run path
//!
//! On [`Backend::Cpu`] a run copies nothing: inputs are read in place from the caller's
//! arrays and parameters in place from the [`State`] store (kernels never store to
//! them), outputs are computed straight into the arrays [`Executable::run`] returns, and
//! state updates are computed into spare buffers that are swapped into the store. What
//! depends on the symbol binding (lengths, dims, pre-run checks, pointer tables) is
//! cached per binding, so a steady-state [`Executable::run`] allocates only its results
//! (the `Vec`, and per output its name, shape and data), and
//! [`Executable::run_borrowed`] (outputs as [`OutputView`]s into buffers the executable
//! reuses, like ONNX Runtime's I/O binding) allocates nothing; `tests/alloc.rs` pins both
//! with a counting allocator. Float contractions above 8192 multiply-adds call the `gemm`
//! crate, which allocates its packing buffers per call for some layouts.

mod alloc;
mod bind;
mod cpu;
mod signature;

pub use signature::{InputError, Signature, SymbolSpec, TensorSpec, bind_inputs};

use kiln_ir::{Array, Graph, NodeId, Op};
use kiln_kernel::{Program, VerifiedProgram};
use kiln_passes::pipeline::{Dump, Func, PipelineOptions, PipelineReport, optimize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where an executable runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Native code from the Cranelift JIT, contractions through a tuned GEMM.
    Cpu,
    /// WGSL compute shaders through wgpu, on any GPU (or Mesa's lavapipe).
    Gpu,
    /// The reference graph interpreter (the oracle).
    Interp,
    /// The kernel plan run by the kernel-IR executor (the backends' oracle for plans).
    Kernel,
}

impl Backend {
    /// The backend named by `KILN_BACKEND`, or `cpu`.
    pub fn from_env() -> Result<Backend, RuntimeError> {
        match std::env::var("KILN_BACKEND") {
            Ok(s) if !s.is_empty() => s.parse(),
            _ => Ok(Backend::Cpu),
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
            Backend::Interp => "interp",
            Backend::Kernel => "kernel",
        }
    }

    /// Every backend built into this binary.
    pub const ALL: [Backend; 4] = [Backend::Cpu, Backend::Gpu, Backend::Interp, Backend::Kernel];

    /// The backends usable on this machine: all but `gpu` when no GPU adapter can be
    /// opened. Test suites use `kiln_tests::backends()`, which turns a missing adapter into
    /// a failure under `KILN_REQUIRE_GPU=1`.
    pub fn available() -> Vec<Backend> {
        let gpu = kiln_gpu::GpuDevice::shared().is_ok();
        Backend::ALL
            .into_iter()
            .filter(|b| *b != Backend::Gpu || gpu)
            .collect()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Backend, RuntimeError> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| RuntimeError::UnknownBackend(s.to_string()))
    }
}

/// Errors of compiling or running an executable.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A backend name that is not built in.
    #[error("unknown backend `{0}` (available: cpu, gpu, interp, kernel)")]
    UnknownBackend(String),
    /// The caller's inputs do not match the signature.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A requested output or update names no live node.
    #[error("output `{0}` is not a node of the graph")]
    UnknownOutput(String),
    /// A state update's value does not match the state tensor's dtype or shape.
    #[error("update of state `{name}`: {message}")]
    Update {
        /// State name.
        name: String,
        /// What differs.
        message: String,
    },
    /// A parameter has no value.
    #[error("parameter `{0}` has no value; set it before compiling")]
    MissingState(String),
    /// The optimiser pipeline failed.
    #[error("optimiser: {0}")]
    Pass(#[from] kiln_passes::error::PassError),
    /// Lowering to kernels failed.
    #[error("lowering: {0}")]
    Fuse(#[from] kiln_passes::fuse::FuseError),
    /// The kernel plan failed verification.
    #[error("kernel plan rejected: {0}")]
    Verify(String),
    /// Graph evaluation failed.
    #[error(transparent)]
    Eval(#[from] kiln_interp::EvalError),
    /// Kernel execution failed.
    #[error("kernel execution: {0}")]
    Exec(#[from] kiln_kernel::ExecError),
    /// Saving or loading a `.kiln` file failed.
    #[error(transparent)]
    Format(#[from] kiln_format::FormatError),
    /// The CPU backend failed.
    #[error("cpu backend: {0}")]
    Cpu(#[from] kiln_cpu::CpuError),
    /// The GPU backend failed.
    #[error("gpu backend: {0}")]
    Gpu(#[from] kiln_gpu::GpuError),
    /// Anything else, one line.
    #[error("{0}")]
    Other(String),
}

/// Persistent named tensors shared by executables compiled from the same graph (a train
/// step and its eval executable see the same parameters).
///
/// Tensors are never removed, so the position of a tensor in the store is stable: the CPU
/// engine resolves each state buffer's position once and, after a run, swaps the new value
/// of an updated tensor in (no copy, no allocation).
#[derive(Clone, Debug, Default)]
pub struct State(Arc<Mutex<Store>>);

/// One stored tensor: its shape and data (kept apart so the run path can swap data).
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: kiln_ir::Data,
}

impl Stored {
    fn from_array(a: Array) -> Stored {
        Stored {
            shape: a.shape().to_vec(),
            data: a.into_data(),
        }
    }

    fn to_array(&self) -> Array {
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

    fn get(&self, name: &str) -> Option<&Stored> {
        self.slots.get(self.position(name)?)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Stored> {
        let at = self.position(name)?;
        self.slots.get_mut(at)
    }

    /// Inserts or replaces tensor `name`.
    fn insert(&mut self, name: &str, value: Array) {
        match self.position(name) {
            Some(at) => self.slots[at] = Stored::from_array(value),
            None => {
                self.index.insert(name.to_string(), self.slots.len());
                self.slots.push(Stored::from_array(value));
            }
        }
    }

    fn arrays(&self) -> impl Iterator<Item = (&String, Array)> {
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

    /// A copy of one tensor.
    pub fn get(&self, name: &str) -> Option<Array> {
        self.lock().get(name).map(Stored::to_array)
    }

    /// Replaces one tensor; it must keep its dtype and shape.
    pub fn set(&self, name: &str, value: Array) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        match s.get_mut(name) {
            Some(old) if old.data.dtype() == value.dtype() && old.shape == value.shape() => {
                *old = Stored::from_array(value);
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

    /// A snapshot of every tensor, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, Array)> {
        self.lock().arrays().map(|(k, v)| (k.clone(), v)).collect()
    }

    /// True if both handles share one store.
    pub fn same(&self, other: &State) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn ensure(&self, name: &str, value: &Array) {
        let mut s = self.lock();
        if s.position(name).is_none() {
            s.insert(name, value.clone());
        }
    }
}

/// What compilation did and how long it took.
#[derive(Clone, Debug, Default)]
pub struct CompileReport {
    /// Per-pass timings and statistics of the optimiser.
    pub pipeline: Option<PipelineReport>,
    /// Number of kernels in the plan, by kind (`loop`, `matmul`, `conv2d`).
    pub kernels: BTreeMap<&'static str, usize>,
    /// Wall time from graph to ready executable.
    pub total: Duration,
}

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

enum Engine {
    Cpu(Box<cpu::CpuEngine>),
    Gpu(Box<kiln_gpu::GpuProgram>),
    Interp,
    Kernel {
        program: Box<VerifiedProgram>,
        host: HostBuffers,
    },
}

/// Host buffers of a plan, allocated once per symbol binding and reused by later runs, so
/// the steady-state run allocates only the outputs it returns.
#[derive(Default)]
struct HostBuffers {
    bindings: Option<HashMap<String, u64>>,
    bufs: Vec<kiln_ir::Data>,
}

impl HostBuffers {
    /// The buffers for `bindings` with inputs and state copied in.
    fn fill(
        &mut self,
        p: &Program,
        bindings: &HashMap<String, u64>,
        inputs: &[(&str, &Array)],
        store: &Store,
    ) -> Result<&mut Vec<kiln_ir::Data>, RuntimeError> {
        if self.bindings.as_ref() != Some(bindings) {
            self.bufs = kiln_kernel::allocate(p, bindings)?;
            self.bindings = Some(bindings.clone());
        }
        for (i, b) in p.buffers.iter().enumerate() {
            let src = match &b.kind {
                kiln_kernel::BufferKind::Input(n) => {
                    inputs.iter().find(|(m, _)| m == n).map(|(_, a)| a.data())
                }
                kiln_kernel::BufferKind::State(n) => Some(
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

/// Reads the outputs of a host run and writes its state updates into `store` in place.
fn finish_host(
    slots: &Slots,
    graph: &Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId)],
    bindings: &HashMap<String, u64>,
    bufs: &[kiln_ir::Data],
    store: &mut Store,
) -> Result<Vec<Array>, RuntimeError> {
    let outs = read_outputs(&slots.outputs, graph, outputs, bindings, &mut |idx| {
        Ok(bufs[idx].clone())
    })?;
    for ((name, _), &idx) in updates.iter().zip(&slots.updates) {
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
    Ok(outs)
}

/// The plan's output buffer of every output and every state update (`update:NAME`),
/// resolved once when the executable is built instead of on every run.
#[derive(Clone, Debug, Default)]
struct Slots {
    outputs: Vec<usize>,
    updates: Vec<usize>,
}

impl Slots {
    fn resolve(
        p: &Program,
        outputs: &[(String, NodeId)],
        updates: &[(String, NodeId)],
    ) -> Result<Slots, RuntimeError> {
        let find = |name: &str| {
            p.buffers
                .iter()
                .position(|b| matches!(&b.kind, kiln_kernel::BufferKind::Output(n) if n == name))
                .ok_or_else(|| RuntimeError::UnknownOutput(name.to_string()))
        };
        Ok(Slots {
            outputs: outputs
                .iter()
                .map(|(n, _)| find(n))
                .collect::<Result<_, _>>()?,
            updates: updates
                .iter()
                .map(|(n, _)| find(&format!("{UPDATE_PREFIX}{n}")))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A compiled, runnable module.
pub struct Executable {
    /// Validates inputs and binds symbols without allocating.
    binder: bind::Binder,
    /// Outputs of the last [`Executable::run_borrowed`], one per output.
    held: Vec<kiln_ir::Data>,
    /// Their shapes.
    held_shapes: Vec<Vec<usize>>,
    backend: Backend,
    signature: Signature,
    graph: Graph,
    outputs: Vec<(String, NodeId)>,
    updates: Vec<(String, NodeId)>,
    program: VerifiedProgram,
    slots: Slots,
    state: State,
    engine: Engine,
    report: CompileReport,
}

impl fmt::Debug for Executable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executable")
            .field("backend", &self.backend)
            .field("signature", &self.signature)
            .field("nodes", &self.graph.len())
            .finish()
    }
}

const UPDATE_PREFIX: &str = kiln_format::UPDATE_OUTPUT_PREFIX;

/// Optimises and compiles `spec` for `backend`.
pub fn compile(spec: CompileSpec, backend: Backend) -> Result<Executable, RuntimeError> {
    let start = Instant::now();
    let n_out = spec.outputs.len();
    let all: Vec<NodeId> = spec
        .outputs
        .iter()
        .chain(&spec.updates)
        .map(|(_, id)| *id)
        .collect();
    for (name, id) in spec.outputs.iter().chain(&spec.updates) {
        if !spec.graph.contains(*id) {
            return Err(RuntimeError::UnknownOutput(name.clone()));
        }
    }
    let mut func = Func::new(spec.graph, all)?;
    let opts = PipelineOptions {
        dump: Dump::Env,
        ..PipelineOptions::default()
    };
    let pipeline = optimize(&mut func, &opts)?;
    let outputs: Vec<(String, NodeId)> = spec
        .outputs
        .iter()
        .zip(&func.outputs[..n_out])
        .map(|((n, _), id)| (n.clone(), *id))
        .collect();
    let updates: Vec<(String, NodeId)> = spec
        .updates
        .iter()
        .zip(&func.outputs[n_out..])
        .map(|((n, _), id)| (n.clone(), *id))
        .collect();
    let mut graph = func.graph;
    // Inputs nothing computed here depends on are not part of this executable's signature
    // (an eval executable built on a training graph does not take the labels).
    let live: std::collections::HashSet<NodeId> =
        outputs.iter().chain(&updates).map(|(_, id)| *id).collect();
    for (id, _) in graph
        .inputs()
        .into_iter()
        .map(|(id, n)| (id, n.to_string()))
        .collect::<Vec<_>>()
    {
        if graph.users(id).is_empty() && !live.contains(&id) {
            graph.remove(id);
        }
    }

    let state = spec.state.unwrap_or_default();
    for (id, name) in graph.parameters() {
        let node = graph.node(id);
        let value = match state.get(name) {
            Some(v) => v,
            None => spec
                .params
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
    for (name, id) in &updates {
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
            None => match state.get(name).or_else(|| spec.params.get(name).cloned()) {
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

    let signature = signature_of(&graph, &outputs);
    let program = lower(&graph, &outputs, &updates)?;
    let mut report = CompileReport {
        pipeline: Some(pipeline),
        ..CompileReport::default()
    };
    count_kernels(&program, &mut report.kernels);
    let slots = Slots::resolve(&program, &outputs, &updates)?;
    let engine = engine_for(backend, &program, &signature, &slots, &updates)?;
    report.total = start.elapsed();
    Ok(Executable {
        binder: bind::Binder::new(&signature, &graph),
        held: Vec::new(),
        held_shapes: Vec::new(),
        backend,
        signature,
        graph,
        outputs,
        updates,
        program,
        slots,
        state,
        engine,
        report,
    })
}

fn engine_for(
    backend: Backend,
    program: &VerifiedProgram,
    signature: &Signature,
    slots: &Slots,
    updates: &[(String, NodeId)],
) -> Result<Engine, RuntimeError> {
    Ok(match backend {
        Backend::Cpu => Engine::Cpu(Box::new(cpu::CpuEngine::new(
            kiln_cpu::compile(program)?,
            signature,
            slots,
            updates,
        ))),
        Backend::Gpu => Engine::Gpu(Box::new(kiln_gpu::GpuProgram::compile(program)?)),
        Backend::Interp => Engine::Interp,
        Backend::Kernel => Engine::Kernel {
            program: Box::new(program.clone()),
            host: HostBuffers::default(),
        },
    })
}

/// Builds an executable from a loaded module: no optimiser runs; the stored graph and plan
/// were verified by the loader and are lowered for `backend` as they are.
pub fn from_module(m: kiln_format::Module, backend: Backend) -> Result<Executable, RuntimeError> {
    let start = Instant::now();
    let program = match m.program {
        Some(p) => p,
        None => lower(&m.graph, &m.outputs, &m.updates)?,
    };
    let mut report = CompileReport::default();
    count_kernels(&program, &mut report.kernels);
    let slots = Slots::resolve(&program, &m.outputs, &m.updates)?;
    let engine = engine_for(backend, &program, &m.signature, &slots, &m.updates)?;
    report.total = start.elapsed();
    Ok(Executable {
        binder: bind::Binder::new(&m.signature, &m.graph),
        held: Vec::new(),
        held_shapes: Vec::new(),
        backend,
        signature: m.signature,
        graph: m.graph,
        outputs: m.outputs,
        updates: m.updates,
        program,
        slots,
        state: State::new(m.state),
        engine,
        report,
    })
}

/// Loads a `.kiln` file for `backend`.
pub fn load(path: &std::path::Path, backend: Backend) -> Result<Executable, RuntimeError> {
    from_module(kiln_format::load(path)?, backend)
}

/// Loads a module from the bytes of a `.kiln` file.
pub fn load_bytes(bytes: &[u8], backend: Backend) -> Result<Executable, RuntimeError> {
    from_module(kiln_format::from_bytes(bytes)?, backend)
}

fn lower(
    graph: &Graph,
    outputs: &[(String, NodeId)],
    updates: &[(String, NodeId)],
) -> Result<VerifiedProgram, RuntimeError> {
    let mut named: Vec<(String, NodeId)> = outputs.to_vec();
    named.extend(
        updates
            .iter()
            .map(|(n, id)| (format!("{UPDATE_PREFIX}{n}"), *id)),
    );
    Ok(kiln_passes::fuse::lower(graph, &named)?)
}

fn count_kernels(p: &Program, out: &mut BTreeMap<&'static str, usize>) {
    for k in &p.kernels {
        let kind = match k {
            kiln_kernel::Kernel::Loop(_) => "loop",
            kiln_kernel::Kernel::Matmul(_) => "matmul",
            kiln_kernel::Kernel::Conv2d(_) => "conv2d",
        };
        *out.entry(kind).or_default() += 1;
    }
}

/// The signature of an optimised graph: its inputs (id order), the named outputs, and every
/// symbol of its shapes (each at least 1).
pub fn signature_of(graph: &Graph, outputs: &[(String, NodeId)]) -> Signature {
    let mut inputs = Vec::new();
    let mut symbols: Vec<String> = Vec::new();
    for (id, _) in graph.inputs() {
        if let Op::Input { name, dtype, shape } = &graph.node(id).op {
            for s in shape.symbols() {
                if !symbols.iter().any(|x| **x == *s) {
                    symbols.push(s.to_string());
                }
            }
            inputs.push(TensorSpec {
                name: name.clone(),
                dtype: *dtype,
                shape: shape.clone(),
            });
        }
    }
    for id in graph.node_ids() {
        for s in graph.node(id).shape.symbols() {
            if !symbols.iter().any(|x| **x == *s) {
                symbols.push(s.to_string());
            }
        }
    }
    let outputs = outputs
        .iter()
        .map(|(name, id)| {
            let n = graph.node(*id);
            TensorSpec {
                name: name.clone(),
                dtype: n.dtype,
                shape: n.shape.clone(),
            }
        })
        .collect();
    let symbols = symbols
        .into_iter()
        .map(|name| SymbolSpec {
            name,
            min: 1,
            max: None,
        })
        .collect();
    Signature {
        inputs,
        outputs,
        symbols,
    }
}

/// Reads the named outputs (nodes of `graph`) from the plan buffers at `slots`.
fn read_outputs(
    slots: &[usize],
    graph: &Graph,
    outputs: &[(String, NodeId)],
    bindings: &HashMap<String, u64>,
    read: &mut dyn FnMut(usize) -> Result<kiln_ir::Data, RuntimeError>,
) -> Result<Vec<Array>, RuntimeError> {
    outputs
        .iter()
        .zip(slots)
        .map(|((name, id), &idx)| {
            let shape = graph
                .node(*id)
                .shape
                .eval(bindings)
                .map_err(|e| RuntimeError::Other(e.to_string()))?;
            Array::new(&shape, read(idx)?)
                .map_err(|e| RuntimeError::Other(format!("output `{name}`: {e}")))
        })
        .collect()
}

impl Executable {
    /// The backend it runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Inputs, outputs and symbols.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The optimised graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Named outputs (nodes of the optimised graph).
    pub fn outputs(&self) -> &[(String, NodeId)] {
        &self.outputs
    }

    /// State updates (nodes of the optimised graph).
    pub fn updates(&self) -> &[(String, NodeId)] {
        &self.updates
    }

    /// The kernel plan (every executable has one, whichever backend runs it).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The module this executable saves as: optimised graph, kernel plan, current state.
    pub fn to_module(&self) -> kiln_format::Module {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut options = BTreeMap::new();
        options.insert("compiled_for".to_string(), self.backend.name().to_string());
        kiln_format::Module {
            metadata: kiln_format::Metadata {
                producer: format!("kiln {}", env!("CARGO_PKG_VERSION")),
                created,
                options,
            },
            signature: self.signature.clone(),
            graph: self.graph.clone(),
            outputs: self.outputs.clone(),
            updates: self.updates.clone(),
            program: Some(self.program.clone()),
            state: self.saved_state(),
        }
    }

    /// The state this executable uses (its parameters and updated tensors), not the whole
    /// shared store: an eval module saved from a training run carries no optimiser moments.
    fn saved_state(&self) -> Vec<(String, Array)> {
        let mut used: std::collections::HashSet<String> = self
            .graph
            .parameters()
            .into_iter()
            .map(|(_, n)| n.to_string())
            .collect();
        used.extend(self.updates.iter().map(|(n, _)| n.clone()));
        self.state
            .snapshot()
            .into_iter()
            .filter(|(n, _)| used.contains(n))
            .collect()
    }

    /// Saves the executable (graph, kernel plan and current state) to a `.kiln` file,
    /// atomically.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), RuntimeError> {
        Ok(kiln_format::save(&self.to_module(), path.as_ref())?)
    }

    /// The persistent state store (share it with [`CompileSpec::state`]).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Compilation statistics.
    pub fn report(&self) -> &CompileReport {
        &self.report
    }

    /// Runs once: validates inputs, computes every output, then applies every state update.
    ///
    /// On the CPU backend a run reads inputs and state in place and computes outputs
    /// straight into the returned arrays; in steady state (same symbol binding as the
    /// previous run) it allocates only what it returns: the `Vec`, and per output its name,
    /// its shape and its data (a name or shape of length zero allocates nothing). See
    /// [`Executable::run_borrowed`] for runs that allocate nothing.
    pub fn run(&mut self, inputs: &[(&str, &Array)]) -> Result<Vec<(String, Array)>, RuntimeError> {
        self.run_with(inputs, &HashMap::new())
    }

    /// Like [`Executable::run`] with explicit symbol bindings for symbols no input determines.
    pub fn run_with(
        &mut self,
        inputs: &[(&str, &Array)],
        bindings: &HashMap<String, u64>,
    ) -> Result<Vec<(String, Array)>, RuntimeError> {
        self.binder.bind(&self.signature, inputs, bindings)?;
        if let Engine::Cpu(engine) = &mut self.engine {
            let mut store = self.state.lock();
            engine.run(
                &self.binder,
                &self.graph,
                &self.outputs,
                inputs,
                &mut store,
                cpu::Sink::Fresh,
            )?;
            drop(store);
            return engine.take_fresh(&self.outputs);
        }
        let outs = self.run_other(inputs)?;
        Ok(self
            .outputs
            .iter()
            .map(|(n, _)| n.clone())
            .zip(outs)
            .collect())
    }

    /// Runs once like [`Executable::run`] and returns borrowed views of the outputs, which
    /// live in buffers the executable keeps and reuses (the idea of ONNX Runtime's I/O
    /// binding): on the CPU backend, a steady-state run makes no heap allocation at all.
    /// The views are valid until the next run; copy what must outlive it
    /// ([`OutputView::to_array`]).
    ///
    /// ```no_run
    /// # fn demo(exe: &mut kiln_runtime::Executable, x: &kiln_ir::Array) -> Result<(), kiln_runtime::RuntimeError> {
    /// let outs = exe.run_borrowed(&[("x", x)])?;
    /// let logits = outs.get("logits").expect("an output named logits");
    /// println!("{:?} {:?}", logits.shape, logits.data);
    /// # Ok(()) }
    /// ```
    pub fn run_borrowed(&mut self, inputs: &[(&str, &Array)]) -> Result<Outputs<'_>, RuntimeError> {
        self.run_borrowed_with(inputs, &HashMap::new())
    }

    /// [`Executable::run_borrowed`] with explicit symbol bindings.
    pub fn run_borrowed_with(
        &mut self,
        inputs: &[(&str, &Array)],
        bindings: &HashMap<String, u64>,
    ) -> Result<Outputs<'_>, RuntimeError> {
        self.binder.bind(&self.signature, inputs, bindings)?;
        if let Engine::Cpu(engine) = &mut self.engine {
            let mut store = self.state.lock();
            engine.run(
                &self.binder,
                &self.graph,
                &self.outputs,
                inputs,
                &mut store,
                cpu::Sink::Held(&mut self.held),
            )?;
        } else {
            let outs = self.run_other(inputs)?;
            self.held.clear();
            self.held_shapes.clear();
            for a in outs {
                self.held_shapes.push(a.shape().to_vec());
                self.held.push(a.into_data());
            }
        }
        let shapes = match &self.engine {
            Engine::Cpu(engine) => &engine.shapes,
            _ => &self.held_shapes,
        };
        Ok(Outputs {
            names: &self.outputs,
            shapes,
            data: &self.held,
        })
    }

    /// A run on the engines other than the CPU's (the binder has bound the inputs).
    fn run_other(&mut self, inputs: &[(&str, &Array)]) -> Result<Vec<Array>, RuntimeError> {
        let bindings = &self.binder.map;
        Ok(match &mut self.engine {
            Engine::Cpu(_) => {
                return Err(RuntimeError::Other(
                    "internal: the CPU engine has its own run path".into(),
                ));
            }
            Engine::Kernel { program, host } => {
                let mut store = self.state.lock();
                let bufs = host.fill(program, bindings, inputs, &store)?;
                kiln_kernel::execute(program, bindings, bufs)?;
                finish_host(
                    &self.slots,
                    &self.graph,
                    &self.outputs,
                    &self.updates,
                    bindings,
                    bufs,
                    &mut store,
                )?
            }
            Engine::Interp => {
                let feeds: HashMap<String, Array> = inputs
                    .iter()
                    .map(|(n, a)| (n.to_string(), (*a).clone()))
                    .collect();
                let state: HashMap<String, Array> = self
                    .state
                    .lock()
                    .arrays()
                    .map(|(k, v)| (k.clone(), v))
                    .collect();
                let ids: Vec<NodeId> = self
                    .outputs
                    .iter()
                    .chain(&self.updates)
                    .map(|(_, id)| *id)
                    .collect();
                let mut vals = kiln_interp::eval(&self.graph, &ids, &feeds, &state)?;
                let upd = vals.split_off(self.outputs.len());
                let mut store = self.state.lock();
                for ((name, _), v) in self.updates.iter().zip(upd) {
                    store.insert(name, v);
                }
                vals
            }
            Engine::Gpu(gp) => {
                let feeds: HashMap<String, Array> = inputs
                    .iter()
                    .map(|(n, a)| (n.to_string(), (*a).clone()))
                    .collect();
                let p = &self.program;
                let mut store = self.state.lock();
                for b in &p.buffers {
                    if let kiln_kernel::BufferKind::State(n) = &b.kind {
                        let v = store
                            .get(n)
                            .ok_or_else(|| RuntimeError::MissingState(n.clone()))?
                            .to_array();
                        gp.set_state(n, &v)?;
                    }
                }
                let mut got = gp.run(bindings, &feeds)?;
                let mut read = |idx: usize| match &p.buffers[idx].kind {
                    kiln_kernel::BufferKind::Output(n) => got
                        .remove(n)
                        .map(Array::into_data)
                        .ok_or_else(|| RuntimeError::UnknownOutput(n.clone())),
                    _ => Err(RuntimeError::Other(format!(
                        "b{idx} is not an output buffer"
                    ))),
                };
                let outs = read_outputs(
                    &self.slots.outputs,
                    &self.graph,
                    &self.outputs,
                    bindings,
                    &mut read,
                )?;
                let upd = read_outputs(
                    &self.slots.updates,
                    &self.graph,
                    &self.updates,
                    bindings,
                    &mut read,
                )?;
                for ((name, _), v) in self.updates.iter().zip(upd) {
                    store.insert(name, v);
                }
                outs
            }
        })
    }
}

/// One output of [`Executable::run_borrowed`], borrowed from the executable.
#[derive(Clone, Copy, Debug)]
pub struct OutputView<'a> {
    /// The output's name.
    pub name: &'a str,
    /// Its concrete shape.
    pub shape: &'a [usize],
    /// Its elements, row-major.
    pub data: &'a kiln_ir::Data,
}

impl OutputView<'_> {
    /// An owned copy.
    pub fn to_array(&self) -> Result<Array, RuntimeError> {
        Array::new(self.shape, self.data.clone())
            .map_err(|e| RuntimeError::Other(format!("output `{}`: {e}", self.name)))
    }
}

/// The outputs of [`Executable::run_borrowed`], in the executable's output order.
#[derive(Clone, Copy, Debug)]
pub struct Outputs<'a> {
    names: &'a [(String, NodeId)],
    shapes: &'a [Vec<usize>],
    data: &'a [kiln_ir::Data],
}

impl<'a> Outputs<'a> {
    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.names.len().min(self.shapes.len()).min(self.data.len())
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Output `i`.
    pub fn at(&self, i: usize) -> Option<OutputView<'a>> {
        Some(OutputView {
            name: &self.names.get(i)?.0,
            shape: self.shapes.get(i)?,
            data: self.data.get(i)?,
        })
    }

    /// The output named `name`.
    pub fn get(&self, name: &str) -> Option<OutputView<'a>> {
        self.at(self.names.iter().position(|(n, _)| n == name)?)
    }

    /// Every output in order.
    pub fn iter(&self) -> impl Iterator<Item = OutputView<'a>> + 'a {
        let this = *self;
        (0..this.len()).filter_map(move |i| this.at(i))
    }
}
