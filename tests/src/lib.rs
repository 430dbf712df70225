//! Shared helpers for kiln end-to-end tests.

pub mod golden;
pub use kiln::models;

/// The backends a test runs on: every available one. Without a GPU adapter the `gpu`
/// backend is skipped with a printed reason, or the test panics when `KILN_REQUIRE_GPU=1`
/// (CI sets it), so a missing driver fails the suite instead of hiding the GPU tests.
pub fn backends() -> Vec<kiln::Backend> {
    let _ = kiln_gpu::test_device();
    kiln::Backend::available()
}
