//! kiln-cpu's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-cpu --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

#[path = "common/accuracy.rs"]
mod accuracy;
mod common;

mod arena;
mod cache;
mod hoist;
mod kernels;
mod numerics;
mod ops;
mod preflight;
mod prepacked;
mod random_programs;
mod smoke;
mod stages;
mod vecmath;
