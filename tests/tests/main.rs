//! kiln-tests's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-tests --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod train_support;

mod autodiff_composites;
mod autodiff_errors;
mod autodiff_hessian;
mod autodiff_models;
mod builder_extremes;
mod compile_e2e;
mod control_golden;
mod deep_chains;
mod empty_tensors;
mod fuse_models;
mod golden_models;
mod golden_ops;
mod prepacked_weights;
mod run_time_checks;
mod stateful_resume;
mod train_compiled;
mod train_digits;
mod train_layers;
mod train_losses;
mod train_parity;
mod train_random;
