//! The CPU backend's error type: why a program could not be compiled or run.

use kiln_ir::DType;
use kiln_kernel::{BufferId, KernelId, VerifyErrors};

/// Why a kernel program could not be compiled or run on the CPU.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CpuError {
    /// The program does not verify; nothing is compiled for an unverified program.
    #[error("the program does not verify: {}", .0.summary())]
    Verify(VerifyErrors),
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
    /// A declared symbol has no binding.
    #[error("symbol `{0}` is not bound")]
    Unbound(String),
    /// A binding violates its symbol's precondition.
    #[error("binding {name} = {value} violates the precondition {rule}")]
    Precondition {
        /// Symbol.
        name: String,
        /// Bound value.
        value: u64,
        /// The violated rule (`N >= 1`, `T <= 512`).
        rule: String,
    },
    /// The buffer list does not match the program.
    #[error("the program has {expected} buffers, {got} were supplied")]
    BufferCount {
        /// Buffers in the program.
        expected: usize,
        /// Buffers supplied.
        got: usize,
    },
    /// A supplied buffer has the wrong dtype or length.
    #[error("{buffer} must be {dtype}[{len}], got {got_dtype}[{got_len}]")]
    BufferShape {
        /// The buffer.
        buffer: BufferId,
        /// Its dtype.
        dtype: DType,
        /// Its size under the bindings.
        len: usize,
        /// Supplied dtype.
        got_dtype: DType,
        /// Supplied length.
        got_len: usize,
    },
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
