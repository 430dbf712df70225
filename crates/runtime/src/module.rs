//! Saving and loading: an [`Executable`] as a `kiln_format::Module` (optimised graph,
//! kernel plan, the state it uses) and back, from a file or from bytes.

use crate::backend::Backend;
use crate::compile::{Parts, executable, fuse};
use crate::error::RuntimeError;
use crate::executable::Executable;
use crate::state::State;
use kiln_ir::Array;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

impl Executable {
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
        let mut used: HashSet<String> = self
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
    /// atomically: a temporary file in the same directory is written, synced and renamed
    /// over `path`, so a crash never leaves a truncated file. The state saved is a snapshot
    /// of the tensors this executable uses, taken now (an eval executable sharing a training
    /// store saves the trained weights, not the optimiser moments).
    /// Errors ([`RuntimeError::Format`]) if the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), RuntimeError> {
        Ok(kiln_format::save(&self.to_module(), path.as_ref())?)
    }

    /// Loads a `.kiln` file to run on `backend`: [`load`] as a constructor, the
    /// counterpart of [`Executable::save`]. Errors as [`load`].
    pub fn load_with_backend(
        path: impl AsRef<Path>,
        backend: Backend,
    ) -> Result<Executable, RuntimeError> {
        load(path.as_ref(), backend)
    }
}

/// Builds an executable from a loaded module: no optimiser runs; the stored graph and plan
/// were verified by the loader and are lowered for `backend` as they are. The executable
/// gets a new state holding the module's saved tensors. Errors if the module has no plan
/// and lowering fails, or `backend` cannot run the plan.
pub fn from_module(m: kiln_format::Module, backend: Backend) -> Result<Executable, RuntimeError> {
    let start = Instant::now();
    let program = match m.program {
        Some(p) => p,
        None => fuse(&m.graph, &m.outputs, &m.updates)?,
    };
    let parts = Parts {
        signature: m.signature,
        graph: m.graph,
        outputs: m.outputs,
        updates: m.updates,
        program,
        state: State::new(m.state),
    };
    executable(parts, backend, None, start)
}

/// Loads a `.kiln` file for `backend`. The file is treated as hostile: every length, name
/// and shape is checked against `kiln_format::limits`, and the graph and kernel plan are
/// verified before anything runs (docs/security.md). The executable gets its own state,
/// holding the values saved in the file; no optimiser runs.
///
/// # Errors
///
/// [`RuntimeError::Format`] for an unreadable, corrupt or over-limit file (one line saying
/// what and where); a backend error if `backend` cannot run the module (`gpu` refuses
/// `f64`/`i64` tensors).
pub fn load(path: &Path, backend: Backend) -> Result<Executable, RuntimeError> {
    from_module(kiln_format::load(path)?, backend)
}

/// Loads a module from the bytes of a `.kiln` file, with the checks of [`load`].
pub fn load_bytes(bytes: &[u8], backend: Backend) -> Result<Executable, RuntimeError> {
    from_module(kiln_format::from_bytes(bytes)?, backend)
}
