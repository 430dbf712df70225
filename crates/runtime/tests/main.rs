//! kiln-runtime's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-runtime --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod common;

mod control;
mod control_gpu;
mod gpu_state;
mod verify_once;
