//! Errors of the GPU backend.

use kiln_ir::DType;
use kiln_kernel::{BufferId, KernelId};
use kiln_wgsl::{LaunchError, WgslError};

/// The message of [`GpuError::NoAdapter`].
pub const NO_ADAPTER: &str =
    "no GPU adapter found; install a Vulkan driver, e.g. Mesa's lavapipe, or use `Backend::Cpu`";

/// The one line of a multi-line wgpu message that says what failed: the first line naming
/// an error after the generic headers (`Validation Error`, `Caused by:`, `In ...`), else
/// the first non-empty line.
pub fn summary(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let generic = |l: &str| {
        l.eq_ignore_ascii_case("validation error")
            || l.starts_with("Caused by")
            || l.starts_with("In ")
    };
    let pick = lines
        .iter()
        .find(|l| !generic(l) && l.to_ascii_lowercase().contains("error"))
        .or_else(|| lines.iter().find(|l| !generic(l)))
        .or_else(|| lines.first());
    pick.map_or_else(String::new, |l| l.trim_end_matches(':').to_string())
}

/// Why a program could not be compiled or run on the GPU.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuError {
    /// wgpu found no adapter at all.
    #[error("{}", NO_ADAPTER)]
    NoAdapter,
    /// `KILN_GPU_ADAPTER` names no available adapter.
    #[error("KILN_GPU_ADAPTER={wanted:?} matches no adapter; available: {}", available.join(", "))]
    AdapterNotMatched {
        /// The requested substring.
        wanted: String,
        /// Names of the adapters found.
        available: Vec<String>,
    },
    /// The adapter refused to open a device.
    #[error("cannot open a device on {adapter}: {message}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// WGSL generation failed (f64/i64 dtype, a size over 32 bits, ...).
    #[error(transparent)]
    Wgsl(#[from] WgslError),
    /// A kernel needs more than the adapter allows.
    #[error("{kernel} needs {needed} {what}, but the adapter allows {limit}")]
    Limit {
        /// Kernel.
        kernel: KernelId,
        /// The resource (`storage buffers per shader stage`, ...).
        what: &'static str,
        /// Needed amount.
        needed: u64,
        /// The adapter's limit.
        limit: u64,
    },
    /// The driver rejected a generated shader or pipeline. Displays one line (the first
    /// line of wgpu's message that names the error); `Debug` and `KILN_LOG=gpu` (printed to
    /// stderr when it happens) show wgpu's whole message.
    #[error("{kernel}: the GPU driver rejected the shader: {}", summary(.message))]
    Shader {
        /// Kernel.
        kernel: KernelId,
        /// wgpu's whole message (usually many lines).
        message: String,
    },
    /// An index expression may compute an intermediate outside the shaders' 32-bit range.
    #[error("{0} (GPU shaders index with i32; run this program on `Backend::Cpu`)")]
    IndexWidth(#[from] kiln_kernel::IndexWidthError),
    /// A binding of the symbols is missing or violates a precondition, or a size overflows.
    #[error(transparent)]
    Bind(#[from] kiln_kernel::BindError),
    /// A kernel's launch size cannot be computed or does not fit the shader arithmetic.
    #[error("{kernel}: {source}")]
    Launch {
        /// Kernel.
        kernel: KernelId,
        /// The cause.
        source: LaunchError,
    },
    /// A buffer is larger than the adapter can bind, or than 32-bit indexing allows.
    #[error("{buffer} needs {bytes} bytes, but the limit is {limit}")]
    BufferTooLarge {
        /// Buffer.
        buffer: BufferId,
        /// Bytes needed.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The scratch arena could not be planned for the binding.
    #[error("scratch memory plan: {0}")]
    Plan(#[from] kiln_kernel::memplan::PlanError),
    /// The scratch arena is larger than one device buffer may be.
    #[error("the scratch arena needs {bytes} bytes, but the largest device buffer is {limit}")]
    ArenaTooLarge {
        /// Bytes needed.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// An input the program declares was not supplied.
    #[error("input {0:?} was not supplied")]
    MissingInput(String),
    /// A supplied input (or requested output, or state) is not in the program.
    #[error("the program has no {kind} named {name:?}")]
    UnknownName {
        /// `input`, `output` or `state`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A supplied array has the wrong dtype or element count.
    #[error("{kind} {name:?} must be {dtype}[{len}], got {got_dtype}[{got_len}]")]
    Mismatch {
        /// `input` or `state`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Expected dtype.
        dtype: DType,
        /// Expected element count.
        len: usize,
        /// Supplied dtype.
        got_dtype: DType,
        /// Supplied element count.
        got_len: usize,
    },
    /// A state with a symbolic size was read before it was set or run.
    #[error("state {0:?} has no value yet (set it or run the program first)")]
    StateUnset(String),
    /// A checked load read outside its buffer (the checked-load contract's error flag).
    #[error("{kernel}: load of {buffer} at index {index} is outside 0..{size}")]
    IndexOutOfBounds {
        /// Kernel.
        kernel: KernelId,
        /// Buffer read.
        buffer: BufferId,
        /// The offending index.
        index: i64,
        /// The buffer's length.
        size: usize,
    },
    /// An integer division or remainder by zero.
    #[error("{kernel}: integer division by zero")]
    DivisionByZero {
        /// Kernel.
        kernel: KernelId,
    },
    /// wgpu reported an error (validation, mapping, device loss).
    #[error("GPU error: {0}")]
    Device(String),
    /// The trip count of a counted loop of the schedule cannot be evaluated under the
    /// binding.
    #[error("the trip count of the loop over `{var}`: {source}")]
    Trip {
        /// The loop's induction symbol.
        var: String,
        /// The cause.
        source: kiln_ir::DimError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shader_errors_display_one_line() {
        let message = "Validation Error\n\nCaused by:\n  In Device::create_shader_module, label = 'kiln kernel'\n    \nShader validation error: Function [0] 'main' is invalid\n  ┌─ :3:5\n  │\n3 │     x % 0\n  │     ^^^^^ naga::ir::Expression [4]\n  = Division by zero\n";
        let e = GpuError::Shader {
            kernel: KernelId(2),
            message: message.into(),
        };
        assert_eq!(
            e.to_string(),
            "k2: the GPU driver rejected the shader: Shader validation error: Function [0] 'main' is invalid"
        );
        assert!(format!("{e:?}").contains("Division by zero"));
        assert_eq!(summary("just one line"), "just one line");
    }
}
