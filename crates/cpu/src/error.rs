//! The CPU backend's error type: why a program could not be compiled or run.

use kiln_kernel::{BindError, KernelId};

/// Why a kernel program could not be compiled or run on the CPU.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CpuError {
    /// The host machine is not supported by the code generator.
    #[error("the host is not supported by the code generator: {0}")]
    Host(String),
    /// Code generation failed (a Cranelift error; a bug in this backend).
    #[error("{kernel}: code generation failed: {message}")]
    Codegen {
        /// The kernel being compiled.
        kernel: KernelId,
        /// What went wrong.
        message: String,
    },
    /// A kernel uses a construct the backend does not lower.
    #[error("{kernel}: {message}")]
    Unsupported {
        /// The kernel.
        kernel: KernelId,
        /// What is not supported.
        message: String,
    },
    /// The bindings, or a supplied buffer, do not fit the program.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A run's buffers were supplied wrongly: a buffer missing, a written buffer supplied
    /// read-only, or a run plan used with another program.
    #[error("{0}")]
    Buffers(String),
    /// A size, index or divisor does not fit 64 bits (or memory) under the bindings, or a
    /// divisor is not positive.
    #[error("{0}")]
    Overflow(String),
    /// A checked load read outside its buffer (the error flag of the checked-load contract).
    /// The kernel ran to completion reading clamped elements; outputs are unspecified.
    #[error("{kernel}: a checked load read outside its buffer")]
    IndexOutOfBounds {
        /// The kernel that raised the flag.
        kernel: KernelId,
    },
    /// An integer division or remainder by zero (outputs are unspecified).
    #[error("{kernel}: integer division by zero")]
    DivisionByZero {
        /// The kernel that raised the flag.
        kernel: KernelId,
    },
    /// The scratch arena could not be planned under the bindings.
    #[error(transparent)]
    Plan(#[from] kiln_kernel::memplan::PlanError),
    /// A worker thread panicked while running a kernel (a bug in this backend).
    #[error("{kernel}: a worker thread panicked")]
    WorkerPanic {
        /// The kernel.
        kernel: KernelId,
    },
}
