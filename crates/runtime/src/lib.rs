//! kiln's executor: turns an optimised graph into an [`Executable`] on a [`Backend`] and
//! runs it with validated inputs, keeping persistent state (parameters, optimiser moments,
//! counters) across runs.
//!
//! Compilation ([`compile`], crates/runtime/src/compile.rs) is a list of stages: `optimize`
//! (crates/passes) → prune unused inputs → seed the state → `fuse::lower` to a verified
//! kernel plan, verified there once ([`kiln_kernel::VerifiedProgram`]; a loaded module's
//! plan was verified once by the loader, and no engine verifies again) → the backend's
//! engine (crates/runtime/src/engine/, one file per backend, one `run` path for all).
//! State updates (a train step's new
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

#![deny(missing_docs)]

mod alloc;
mod backend;
mod bind;
mod borrowed;
mod compile;
mod engine;
mod error;
mod executable;
mod module;
mod report;
mod signature;
mod state;

pub use backend::{Backend, quiet_gpu_start_up};
pub use borrowed::{BorrowError, BorrowedArray};
pub use compile::{CompileSpec, compile};
pub use error::RuntimeError;
pub use executable::{Executable, OutputView, Outputs};
pub use module::{from_module, load, load_bytes};
pub use report::CompileReport;
pub use signature::{InputError, Signature, SymbolSpec, TensorSpec, bind_inputs, signature_of};
pub use state::{State, WeakState};
