//! kiln's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod control_compile;
mod control_flow;
mod data_pipeline;
mod diagnostics;
mod errors;
mod loss_basics;
mod nn_layers;
mod optim_steps;
mod random_threefry;
mod rnn_golden;
mod rnn_scan;
mod state_dict;
