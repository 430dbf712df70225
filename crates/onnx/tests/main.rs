//! kiln-onnx's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-onnx --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod attention;
mod hostile;
mod image_ops;
mod misc_ops;
mod recurrent;
mod reference_models;
