//! [`Executable`]: a compiled, runnable module, and the [`Outputs`] its borrowed runs
//! return. Every backend runs through the same path: bind the inputs, lock the state,
//! hand both to the engine.

use crate::backend::Backend;
use crate::bind::Binder;
use crate::engine::{Engine, OutputBuffers, Run};
use crate::error::RuntimeError;
use crate::report::CompileReport;
use crate::signature::Signature;
use crate::state::State;
use kiln_ir::{Array, Graph, NodeId};
use kiln_kernel::VerifiedProgram;
use std::collections::HashMap;
use std::fmt;

/// A compiled, runnable module: a signature, the optimised graph, a verified kernel plan,
/// the backend's engine and a persistent [`State`].
///
/// Made by `kiln::compile` (or [`crate::compile`]) from a graph, or by [`crate::load`] from
/// a `.kiln` file. It owns copies of everything it needs; its parameters live in
/// [`Executable::state`] (`kiln::Graph::set_param` on the graph it was compiled from reaches
/// them through that store). `run` takes `&mut self` because the executable reuses its
/// buffers from run to run.
pub struct Executable {
    /// Validates inputs and binds symbols without allocating.
    pub(crate) binder: Binder,
    /// Outputs of the run in progress of [`Executable::run`], moved out when it returns.
    pub(crate) fresh: OutputBuffers,
    /// Outputs of the last [`Executable::run_borrowed`], one per output.
    pub(crate) held: OutputBuffers,
    pub(crate) backend: Backend,
    pub(crate) signature: Signature,
    pub(crate) graph: Graph,
    pub(crate) outputs: Vec<(String, NodeId)>,
    pub(crate) updates: Vec<(String, NodeId)>,
    pub(crate) program: VerifiedProgram,
    pub(crate) state: State,
    pub(crate) engine: Box<dyn Engine>,
    pub(crate) report: CompileReport,
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

/// Which of the executable's output buffers a run fills.
#[derive(Clone, Copy)]
enum Destination {
    /// `fresh`: buffers allocated for this run and moved out after it.
    Fresh,
    /// `held`: buffers kept and reused run after run.
    Held,
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

    /// The verified kernel plan (every executable has one, whichever backend runs it).
    pub fn program(&self) -> &VerifiedProgram {
        &self.program
    }

    /// The bytes of scratch memory the engine allocates for runs under `bindings` (symbol
    /// values by name): the peak of its memory plan ([`kiln_kernel::memplan`]), held in one
    /// arena per binding. `None` for the engines that keep no arena (`interp`, `kernel`,
    /// `gpu`). Errors if `bindings` does not bind every symbol of the plan.
    pub fn planned_scratch_bytes(
        &self,
        bindings: &HashMap<String, u64>,
    ) -> Result<Option<u64>, RuntimeError> {
        self.engine.planned_scratch_bytes(bindings)
    }

    /// The persistent state store: the parameters this executable reads and the tensors
    /// its updates write, by name. Read a tensor with [`State::get`], replace one with
    /// [`State::set`] (seen by the next run). The handle is shared, not a copy: executables
    /// compiled with the same store ([`CompileSpec::state`](crate::CompileSpec::state),
    /// `kiln::compile_shared`) see each other's updates.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Compilation statistics.
    pub fn report(&self) -> &CompileReport {
        &self.report
    }

    /// Runs once: validates inputs, computes every output, then applies every state update.
    /// Returns the outputs by name, in the order they were compiled with.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Input`] (one line naming the input) if an input is missing, unknown,
    /// given twice, or has the wrong dtype or shape for the signature, or if the inputs bind
    /// a symbol inconsistently; a backend error if the run itself fails. A failed run
    /// applies no state update.
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
    /// A binding that disagrees with the inputs is an [`RuntimeError::Input`] error.
    pub fn run_with(
        &mut self,
        inputs: &[(&str, &Array)],
        bindings: &HashMap<String, u64>,
    ) -> Result<Vec<(String, Array)>, RuntimeError> {
        self.fresh.data.clear();
        self.run_into(inputs, bindings, Destination::Fresh)?;
        self.fresh.take(&self.outputs)
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

    /// [`Executable::run_borrowed`] with explicit symbol bindings. Errors as
    /// [`Executable::run_with`].
    pub fn run_borrowed_with(
        &mut self,
        inputs: &[(&str, &Array)],
        bindings: &HashMap<String, u64>,
    ) -> Result<Outputs<'_>, RuntimeError> {
        self.run_into(inputs, bindings, Destination::Held)?;
        Ok(Outputs {
            names: &self.outputs,
            shapes: &self.held.shapes,
            data: &self.held.data,
        })
    }

    /// Binds `inputs`, then runs the engine with the state locked, its outputs going to
    /// the buffers `destination` names.
    fn run_into(
        &mut self,
        inputs: &[(&str, &Array)],
        bindings: &HashMap<String, u64>,
        destination: Destination,
    ) -> Result<(), RuntimeError> {
        self.binder.bind(&self.signature, inputs, bindings)?;
        let run = Run {
            binder: &self.binder,
            inputs,
            graph: &self.graph,
            outputs: &self.outputs,
            updates: &self.updates,
        };
        let out = match destination {
            Destination::Fresh => &mut self.fresh,
            Destination::Held => &mut self.held,
        };
        let mut store = self.state.lock();
        let program = &self.program;
        if self.engine.keeps_state_on_device() {
            return self
                .engine
                .run(&run, &mut store, out)
                .map_err(|e| e.at_check_site(program));
        }
        // A host engine reads the host copies: fetch what a GPU run left on its device,
        // and mark the tensors it updates as written on the host.
        store.sync()?;
        self.engine
            .run(&run, &mut store, out)
            .map_err(|e| e.at_check_site(program))?;
        for (name, _) in &self.updates {
            if let Some(slot) = store.get_mut(name) {
                slot.touch();
            }
        }
        Ok(())
    }

    /// Bytes the engine moved between host and device since compiling (`None` for host
    /// engines): a GPU train loop uploads its state once and reads it back only when asked.
    pub fn device_transfers(&self) -> Option<kiln_gpu::Transfers> {
        self.engine.device_transfers()
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
    /// An owned copy. Cannot fail for a view returned by a run (shape and data agree).
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
