//! kiln-passes's integration tests, one test binary: each module was a file of its own
//! binary (`cargo test -p kiln-passes --test integration <module>::` runs one). Tests that need
//! a process of their own (a counting global allocator, environment variables, process-wide
//! counters) stay separate targets in Cargo.toml.

mod autodiff_util;
mod fuse_util;

mod autodiff_clean;
mod autodiff_control;
mod autodiff_conventions;
mod autodiff_errors;
mod autodiff_higher;
mod autodiff_rules;
mod control_passes;
mod cse_dce_infer;
mod equivalence;
mod filetests;
mod fuse_control;
mod fuse_differential;
mod fuse_filetests;
mod fuse_lower;
mod fuse_staged;
mod memplan_plan;
mod pipeline;
mod simplify_rules;
