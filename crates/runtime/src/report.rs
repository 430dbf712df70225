//! [`CompileReport`]: what compilation did and how long it took.

use kiln_kernel::{Kernel, Program};
use kiln_passes::pipeline::PipelineReport;
use std::collections::BTreeMap;
use std::time::Duration;

/// What compilation did and how long it took.
#[derive(Clone, Debug, Default)]
pub struct CompileReport {
    /// Per-pass timings and statistics of the optimiser.
    pub pipeline: Option<PipelineReport>,
    /// Number of kernels in the plan, by kind (`loop`, `matmul`, `conv2d`).
    pub kernels: BTreeMap<&'static str, usize>,
    /// Wall time from graph to ready executable.
    pub total: Duration,
}

impl CompileReport {
    /// Adds the kernels of `program` to [`CompileReport::kernels`].
    pub(crate) fn count_kernels(&mut self, program: &Program) {
        for k in &program.kernels {
            let kind = match k {
                Kernel::Loop(_) => "loop",
                Kernel::Matmul(_) => "matmul",
                Kernel::Conv2d(_) => "conv2d",
            };
            *self.kernels.entry(kind).or_default() += 1;
        }
    }
}
