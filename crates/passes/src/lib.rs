//! kiln's graph passes. Each pass is a free function in its own module; the pipeline is a
//! plain list of calls (see [`pipeline`]). Autodiff is a graph transform like any other.

pub mod autodiff;
pub mod control;
pub mod cse;
pub mod dce;
pub mod error;
pub mod func;
pub mod fuse;
pub mod infer;
pub mod pipeline;
pub mod region;
pub mod simplify;
