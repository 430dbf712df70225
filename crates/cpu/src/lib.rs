//! kiln's CPU backend: a kernel plan ([`kiln_kernel::Program`]) lowered to native code.
//!
//! * Every loop kernel becomes one Cranelift function (host ISA, `opt_level=speed`) with the
//!   signature `(buffer base pointers, symbolic dim values, start, end, error flags)`, where
//!   `[start, end)` is a range of the kernel's split axis (its first axis whose extent is not
//!   1), so a kernel's points can be divided among threads. Loops are blocks, never
//!   unrolled over a tensor. The innermost domain axis (or, for row reductions, the
//!   innermost reduction axis) runs as `f32x4`/`f64x2` vectors with a scalar tail when every
//!   access there is contiguous or uniform across lanes. Transcendentals on `f32` are inline
//!   polynomials (see docs/numerics.md); on `f64` they call libm through imported symbols.
//!   On hosts with AVX2+FMA, a vectorised loop with `f32` exp/log/tanh/sigmoid/erf runs
//!   them over 512-point tiles through ahead-of-time compiled AVX-512/AVX2 kernels
//!   ([`vecmath`]), which give the same bits as the inline code.
//! * Reductions that do not depend on the innermost domain axes (the row sums of a softmax
//!   or layer norm fused with their broadcast epilogue, at every point `[i0, i1]`) are
//!   hoisted out of them: they run once per point of the outer axes, then the inner loops
//!   compute the rest of the body, so such a kernel costs `O(rows * cols)`, not
//!   `O(rows * cols^2)`. Each reduction keeps the order of combination it would have
//!   unhoisted, so results are bit for bit the same ([`LoopSummary::hoisted`]).
//! * Matmul and conv2d kernels call the `gemm` crate (AVX2/FMA micro-kernels dispatched at
//!   run time) on strided views taken straight from plain affine operand loads; other
//!   operand bodies are materialised by generated loops, epilogues run as one generated
//!   loop over the accumulator. Conv2d is im2col + GEMM.
//! * Scratch memory is one arena per [`RunPlan`] (one binding of the symbols), laid out by
//!   the memory plan ([`kiln_kernel::memplan`], [`memory_plan`]): every scratch buffer and
//!   every contraction's materialised operands and accumulator at a 64-byte-aligned
//!   offset, buffers with disjoint lifetimes sharing bytes, an elementwise kernel's output
//!   written over its dead input in place.
//! * Kernels above a work threshold are split over a persistent thread pool
//!   (`KILN_THREADS`, default: all cores).
//! * Compiled loops are cached per process by the structure of the kernel.
//! * Setting `KILN_CPU_DUMP` prints the kernel plan, then each compiled loop's CLIF and machine
//!   code, to stderr.
//!
//! # Safety model
//!
//! Generated code does no bounds checks of its own on plain and masked accesses. It relies
//! on: (1) [`compile`] taking only a [`kiln_kernel::VerifiedProgram`], whose verification
//! proved every plain and masked access in bounds for every binding allowed by the symbols'
//! preconditions; (2) [`CpuProgram::run`] checking the bindings against those preconditions
//! ([`kiln_kernel::Program::bind`]) and every buffer's dtype and length
//! against the bindings before any generated code runs; (3) a pre-run check that every
//! divisor is positive and no proven index can overflow 64-bit arithmetic, so the machine
//! computes exactly the values the proof is about. Checked loads (gathers) clamp their
//! index and raise an error flag, reported as [`CpuError::IndexOutOfBounds`] after the
//! kernel; integer division by zero raises [`CpuError::DivisionByZero`] the same way.
//!
//! ```
//! use kiln_cpu::compile;
//! use kiln_ir::Data;
//! use std::collections::HashMap;
//!
//! let program = kiln_kernel::parse(
//!     "symbol N >= 1
//!      b0 = input \"x\" f32[N]
//!      b1 = output \"y\" f32[N]
//!      k0 = loop [N] {
//!        v0 = load b0[i0]
//!        v1 = exp(v0)
//!        store b1[i0] = v1
//!      }",
//! )
//! .unwrap();
//! let program = kiln_kernel::verify(program).unwrap();
//! let compiled = compile(&program).unwrap();
//! let bindings = HashMap::from([("N".to_string(), 3u64)]);
//! let mut buffers = vec![Data::F32(vec![0.0, 1.0, -1.0]), Data::F32(vec![0.0; 3])];
//! compiled.run(&bindings, &mut buffers).unwrap();
//! let Data::F32(y) = &buffers[1] else { unreachable!() };
//! assert_eq!(y[0], 1.0);
//! assert!((y[1] - std::f32::consts::E).abs() < 1e-6);
//! ```

mod arena;
mod cache;
pub(crate) mod codegen;
mod contract;
mod error;
mod im2col;
mod jit;
mod job;
mod loops;
mod packed;
mod poly;
pub mod pool;
mod preflight;
mod program;
pub mod vecmath;

pub use arena::ARENA_ALIGNMENT;
pub use cache::{CacheStats, cache_stats};

pub use error::CpuError;
pub use program::{
    CONSTANT_STAMP, CpuProgram, LoopSummary, RunOptions, RunPlan, Runner, VectorAxis, compile,
    memory_plan,
};

#[cfg(test)]
mod tests {
    #[test]
    fn compiled_programs_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<crate::CpuProgram>();
        shareable::<crate::CpuError>();
    }
}
