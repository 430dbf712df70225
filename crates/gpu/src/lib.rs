//! kiln's GPU backend: runs kernel programs as WGSL compute shaders (from `kiln-wgsl`)
//! through wgpu, on Vulkan, Metal or DX12 adapters, including software ones such as Mesa's
//! lavapipe.
//!
//! * [`GpuDevice`] picks an adapter (a discrete GPU first; `KILN_GPU_ADAPTER` selects one
//!   by name substring), opens a device with the adapter's limits and caches pipelines by
//!   shader hash, so equal kernels share one pipeline across programs.
//! * [`GpuProgram::compile`] lowers a program, checks every shader against the limits
//!   (storage buffers per stage, workgroup size and memory) and uploads the constants.
//! * [`GpuProgram::run`] evaluates buffer sizes under the bindings, takes input, output
//!   and scratch buffers from a pool reused across runs, walks the program's schedule
//!   (counted loops recorded into the same command encoder with per-dispatch params;
//!   `while`/`if` predicates read back, one submit each), spreads launches beyond 65535
//!   workgroups over a 2-D or 3-D grid, reads back only the requested outputs and the
//!   error flag, and reports a checked load out of bounds or an integer division by zero
//!   as an error.
//! * State buffers (parameters, optimiser moments) stay on the device between runs;
//!   [`GpuProgram::set_state`] and [`GpuProgram::state`] move them to and from the host.
//! * `i64` buffers are two words per element on the device (`kiln-wgsl` emulates the
//!   arithmetic), so their bytes move unchanged.
//! * [`GpuProgram::profile`] counts dispatches, workgroups and bytes per kernel and the
//!   bytes moved between host and device; under `KILN_GPU_PROFILE=1` every kernel is timed
//!   with timestamp queries where the adapter has them and the table is printed to stderr
//!   when the program is dropped.
//!
//! Without an adapter, compiling fails with [`GpuError::NoAdapter`]. Tests obtain the
//! device through [`test_device`], which skips (or, under `KILN_REQUIRE_GPU=1`, fails).

mod device;
pub mod disk_cache;
mod error;
mod pool;
mod profile;
mod program;
mod record;

pub use device::{ADAPTER_ENV, GpuDevice, PORTABLE_ENV};
pub use error::{GpuError, NO_ADAPTER};
pub use profile::{GpuProfile, KernelProfile, PROFILE_ENV, Transfers};
pub use program::{GpuOptions, GpuProgram, split_grid};

use std::sync::Arc;

/// The environment variable that turns a missing adapter from a skipped test into a failure.
pub const REQUIRE_GPU_ENV: &str = "KILN_REQUIRE_GPU";

/// The shared device for a GPU test, or `None` (after printing why) when there is no
/// adapter, so the test can return early.
///
/// # Panics
///
/// When no device can be opened and `KILN_REQUIRE_GPU=1` is set (CI sets it where a GPU
/// or lavapipe is expected), so a missing driver fails the suite instead of skipping it.
pub fn test_device() -> Option<Arc<GpuDevice>> {
    match GpuDevice::shared() {
        Ok(device) => Some(device),
        Err(e) => {
            if std::env::var(REQUIRE_GPU_ENV).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE_GPU_ENV}=1 but no GPU device could be opened: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}
