//! kiln-interp's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-interp --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod common;

mod control;
mod graph_eval;
mod models;
mod properties;
mod random_bits_golden;
