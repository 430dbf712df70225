//! kiln-cli's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-cli --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod common;

mod cli;
mod fuzz_parsers;
mod hostile;
mod onnx;
mod quiet_gpu;
mod train_weights;
