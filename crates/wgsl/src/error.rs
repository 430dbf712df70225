//! Errors of WGSL code generation.

use kiln_ir::DType;
use kiln_kernel::KernelId;

/// Why a program cannot be lowered to WGSL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WgslError {
    /// A buffer, constant or value has a dtype WGSL cannot express (`f64`).
    #[error(
        "{what} is {dtype}, which WGSL cannot express (the GPU backend supports f32, i32, u32, i64 and bool); run this program on `Backend::Cpu` or `Backend::Interp`"
    )]
    UnsupportedDType {
        /// The buffer (`b3 (input "x")`) or kernel value (`k2: v5 = cast<i64>(v4)`).
        what: String,
        /// The offending dtype.
        dtype: DType,
    },
    /// A known size or constant index does not fit the shaders' 32-bit index arithmetic.
    #[error("{what} does not fit in a 32-bit signed index")]
    TooLarge {
        /// The dim and where it occurs.
        what: String,
    },
    /// A kernel uses an op/dtype combination or geometry that a verified program cannot
    /// contain (reported instead of panicking).
    #[error("{kernel}: {message}")]
    Unsupported {
        /// Kernel.
        kernel: KernelId,
        /// What is wrong.
        message: String,
    },
}
