//! [`Backend`]: where an executable runs, and the names the command line uses for it.

use crate::error::RuntimeError;
use std::fmt;
use std::str::FromStr;

/// Where an executable runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Native code from the Cranelift JIT, contractions through a tuned GEMM.
    Cpu,
    /// WGSL compute shaders through wgpu, on any GPU (or Mesa's lavapipe). WGSL has no
    /// 64-bit types: compiling a graph with an `f64` or `i64` tensor for this backend fails
    /// (use `Cpu` or `Interp`). Compiling fails if no adapter can be opened
    /// ([`Backend::available`]). See docs/gpu.md.
    Gpu,
    /// The reference graph interpreter (the oracle): exact, every dtype, slow.
    Interp,
    /// The kernel plan run by the kernel-IR executor (the backends' oracle for plans).
    Kernel,
}

impl Backend {
    /// The backend named by `KILN_BACKEND`, or `cpu` when it is unset or empty. Errors
    /// ([`RuntimeError::UnknownBackend`]) on any other name than `cpu`, `gpu`, `interp`,
    /// `kernel`.
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

/// Where `XDG_RUNTIME_DIR` points when the environment has no valid one: a path under a
/// file, which no one can create, so no display server can be found there.
const NO_RUNTIME_DIR: &str = "/dev/null/kiln-no-display";

/// Keeps the GPU start-up quiet. Mesa's Vulkan drivers (lavapipe among them) look for a
/// Wayland display when an instance starts, and libwayland prints `error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment.` on stderr when the variable is unset or not an
/// absolute path. kiln never opens a window, so a program (the runner, the benchmark tool)
/// points the variable at a directory that cannot exist: the display lookup then fails
/// silently. A valid `XDG_RUNTIME_DIR` is left alone.
///
/// # Safety
///
/// It may set an environment variable, so it must run before any other thread exists (the
/// first statement of `main`), as [`std::env::set_var`] requires.
pub unsafe fn quiet_gpu_start_up() {
    let valid =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_absolute());
    if !valid {
        // SAFETY: the caller runs this before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", NO_RUNTIME_DIR) };
    }
}
