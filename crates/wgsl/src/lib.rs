//! kiln's WGSL code generator: lowers a kernel-IR [`Program`] to one WGSL compute shader per
//! kernel. It takes a [`VerifiedProgram`], so it relies on the verifier's facts without
//! checking them again. It produces text and launch metadata only and never depends on wgpu; crates/gpu
//! runs the shaders. Every shader the test suite generates is parsed and validated with naga.
//!
//! # Shapes of the generated shaders
//!
//! Each kernel instantiates a template from the workspace's `shaders/` folder:
//!
//! | kernel | template | launch |
//! | --- | --- | --- |
//! | loop, no reduction | `elementwise.wgsl` | one invocation per point, 64 per workgroup |
//! | loop, reduction of at most [`SERIAL_REDUCTION_MAX`] known points | `elementwise.wgsl` | one invocation per point, serial loop |
//! | loop, longer or symbolic reduction | `reduce.wgsl` | one workgroup per point, tree in workgroup memory |
//! | the same, with reductions that do not depend on some inner domain axes (softmax, layer norm rows) | `reduce_rows.wgsl` | one workgroup per point of the outer axes: the tree runs once, then the invocations stride over the inner points |
//! | matmul | `gemm.wgsl` | one 8x8 workgroup per 32x32 output tile and batch entry, 4x4 outputs per invocation |
//! | conv2d | `gemm.wgsl` (implicit GEMM) | one workgroup per 32 pixels x 32 output channels per group |
//!
//! Operand bodies of contractions become loader functions (`kiln_a`, `kiln_b`) that the
//! template calls while staging tiles; the epilogue becomes `kiln_epilogue`, called once per
//! output element with the accumulator, so the fused epilogue needs no extra pass. A loop
//! kernel whose reductions run in stages ([`kiln_kernel::Body::stages`]: a softmax row's max,
//! then the sum of `exp(x - max)`) gets one reduction loop, and in the workgroup templates one
//! gather, per stage, in the same shader.
//!
//! # Conventions
//!
//! * Symbolic dims arrive in a per-kernel uniform `Params` struct (one `i32` per distinct
//!   symbolic dim, [`KernelShader::params`]) after the kernel's index; known dims are
//!   literals. Index arithmetic is `i32`; a host checks that buffers and launch counts fit
//!   ([`KernelShader::workgroups`]).
//! * Workgroups are numbered `x + nx * (y + ny * z)`, so a launch of more than 65535
//!   workgroups can be spread over a 2-D or 3-D grid; shaders ignore surplus workgroups.
//! * Storage buffers are bound at `@group(0) @binding(1..)` in buffer order, `read` or
//!   `read_write`; bool buffers hold one `u32` (0 or 1) per element. Scratch buffers are not
//!   bound one by one: a kernel reaches all of them through one `array<u32>` binding, the
//!   scratch arena, at word offsets the host passes in the params uniform (a kernel's
//!   storage bindings are therefore its inputs, outputs, state and constants, the arena and
//!   the error buffer, whatever its scratch count).
//! * Checked loads clamp their index into the buffer and, when it was outside, record the
//!   kernel, binding and index in an atomic error buffer ([`ERROR_WORDS`] words); integer
//!   division by zero records [`ERROR_CODE_DIVISION`] and yields 0. The host reads the buffer
//!   back after the run and reports the first failure.
//! * Scalar ops follow kiln's semantics (NaN-propagating max/min, floor division, remainder
//!   with the divisor's sign, round half to even, casts that truncate and wrap like the
//!   executor). Transcendentals use the GPU's builtins or short polynomial helpers and are
//!   not correctly rounded (docs/gpu.md gives the tolerances the tests use).
//! * `i64` is emulated in two 32-bit words: a value is a `vec2<u32>` (low word first, the
//!   host's little-endian layout, so `i64` buffers bind unchanged at 8 bytes per element)
//!   and arithmetic, comparisons, floor division, casts and reductions go through helper
//!   functions with the executor's wrapping semantics. An `i64` used as an index saturates
//!   into the `i32` range, so an index that does not fit is out of bounds of every buffer.
//! * `f64` cannot be expressed: [`compile`] rejects a program that declares such a buffer
//!   or computes such a value, naming the buffer or kernel value.

mod emit;
mod error;
mod helpers;
mod lower;
mod shader;
mod target;

pub use emit::device_element_bytes;
pub use error::WgslError;
pub use lower::SERIAL_REDUCTION_MAX;
pub use shader::{
    Arena, ERROR_BINDING, ERROR_CODE, ERROR_CODE_DIVISION, ERROR_CODE_INDEX, ERROR_COUNT,
    ERROR_FLAG, ERROR_INDEX, ERROR_KERNEL, ERROR_WORDS, GridAxis, KernelShader, LaunchError,
    PACKED_ERROR_BASE, PackedBuffer, ShaderKind, StorageBinding, WgslProgram, eval_signed,
};
pub use target::{GemmTile, Target};

use emit::expressible;
use kiln_kernel::{BufferKind, Expr, KernelId, LoadMode, Program, VerifiedProgram};

/// Lowers a verified program to WGSL for [`Target::portable`]: rejects dtypes WGSL cannot
/// express, and generates one shader per kernel.
pub fn compile(program: &VerifiedProgram) -> Result<WgslProgram, WgslError> {
    compile_for(program, &Target::portable())
}

/// Lowers a verified program to WGSL specialised for `target` (subgroup reductions, the
/// GEMM tile), as [`compile`] does for every adapter.
pub fn compile_for(program: &VerifiedProgram, target: &Target) -> Result<WgslProgram, WgslError> {
    let program = program.as_program();
    check_dtypes(program)?;
    let kernels = program
        .kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            lower::lower_kernel(
                program,
                KernelId(u32::try_from(i).unwrap_or(u32::MAX)),
                k,
                target,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WgslProgram { kernels })
}

/// Rejects every buffer and kernel value whose dtype WGSL cannot express.
fn check_dtypes(program: &Program) -> Result<(), WgslError> {
    for (i, b) in program.buffers.iter().enumerate() {
        if !expressible(b.dtype) {
            let name = match &b.kind {
                BufferKind::Input(n) | BufferKind::Output(n) | BufferKind::State(n) => {
                    format!(" {n:?}")
                }
                BufferKind::Constant(_) | BufferKind::Scratch => String::new(),
            };
            return Err(WgslError::UnsupportedDType {
                what: format!("b{i} ({}{name})", b.kind.keyword()),
                dtype: b.dtype,
            });
        }
    }
    for (i, kernel) in program.kernels.iter().enumerate() {
        for body in kernel.bodies(&program.symbols) {
            for (k, e) in body.body.values.iter().enumerate() {
                let dtype = match e {
                    Expr::Const(s) => Some(s.dtype()),
                    Expr::Index { dtype, .. } | Expr::Cast(dtype, _) => Some(*dtype),
                    Expr::Reduce { init, .. } => Some(init.dtype()),
                    Expr::Load(l) => match &l.mode {
                        LoadMode::Masked { fill, .. } => Some(fill.dtype()),
                        LoadMode::Plain | LoadMode::Checked => None,
                    },
                    Expr::Unary(..) | Expr::Binary(..) | Expr::Select(..) | Expr::Acc => None,
                };
                if let Some(d) = dtype.filter(|d| !expressible(*d)) {
                    let role = body.role.name();
                    let place = if role.is_empty() {
                        String::new()
                    } else {
                        format!(" {role}")
                    };
                    return Err(WgslError::UnsupportedDType {
                        what: format!("k{i}{place}: v{k} = {e}"),
                        dtype: d,
                    });
                }
            }
        }
    }
    Ok(())
}
