//! [`RuntimeError`]: every way compiling, loading or running an executable can fail.

use crate::signature::InputError;

/// Errors of compiling or running an executable.
///
/// `Debug` prints the same sentence as `Display`, so a `main` that returns this error with
/// `?` shows the message, not a nested structure.
#[derive(thiserror::Error)]
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
    /// A run-time check failed on a backend (an index out of range, an integer division by
    /// zero), named by the kernel plan's debug table: the graph node, its op and where the
    /// user built it, then the backend's own report.
    #[error("{site} ({backend} backend, kernel {kernel})")]
    Check {
        /// `n24 (gather at src/main.rs:41:7): an index is out of range for axis 1 of size 3`.
        site: String,
        /// The backend that ran the check: `cpu`, `gpu` or `kernel`.
        backend: &'static str,
        /// The kernel whose check failed.
        kernel: kiln_kernel::KernelId,
        /// The backend's own error (the offending flat index where it reports one).
        cause: Box<RuntimeError>,
    },
    /// Anything else, one line.
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// This error with the graph op behind it when it is a backend's failed run-time check
    /// and `program`'s debug table names the op (unchanged otherwise).
    pub(crate) fn at_check_site(self, program: &kiln_kernel::Program) -> RuntimeError {
        use kiln_cpu::CpuError;
        use kiln_gpu::GpuError;
        use kiln_kernel::{CheckKind, ExecError};
        let (backend, kernel, kind) = match &self {
            RuntimeError::Cpu(CpuError::IndexOutOfBounds { kernel }) => {
                ("cpu", *kernel, CheckKind::Index)
            }
            RuntimeError::Gpu(GpuError::IndexOutOfBounds { kernel, .. }) => {
                ("gpu", *kernel, CheckKind::Index)
            }
            RuntimeError::Exec(ExecError::IndexOutOfBounds { kernel, .. }) => {
                ("kernel", *kernel, CheckKind::Index)
            }
            RuntimeError::Cpu(CpuError::DivisionByZero { kernel }) => {
                ("cpu", *kernel, CheckKind::Divide)
            }
            RuntimeError::Gpu(GpuError::DivisionByZero { kernel }) => {
                ("gpu", *kernel, CheckKind::Divide)
            }
            RuntimeError::Exec(ExecError::Scalar { kernel, .. }) => {
                ("kernel", *kernel, CheckKind::Divide)
            }
            _ => return self,
        };
        match program
            .kernels
            .get(kernel.index())
            .and_then(|k| k.describe_check(kind))
        {
            Some(site) => RuntimeError::Check {
                site,
                backend,
                kernel,
                cause: Box::new(self),
            },
            None => self,
        }
    }
}

impl std::fmt::Debug for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
