//! kiln-gpu's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-gpu --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod common;

mod arena;
mod fused_fixtures;
mod int64;
mod profile;
mod robustness;
mod scalar_ops;
