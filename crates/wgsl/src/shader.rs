//! The output of WGSL generation: one compute shader per kernel with everything a host needs
//! to bind and dispatch it (binding table, per-kernel parameters, grid size).

use kiln_ir::{DType, Dim, DimError};
use kiln_kernel::{BufferId, KernelId};
use std::collections::HashMap;
use std::fmt;

/// Words of the error buffer bound to shaders that can fail at run time
/// (`array<atomic<u32>, 6>`): see the `ERROR_*` word indices.
pub const ERROR_WORDS: usize = 6;
/// Error word: non-zero once any invocation failed.
pub const ERROR_FLAG: usize = 0;
/// Error word: number of failures (the first one claims the detail words).
pub const ERROR_COUNT: usize = 1;
/// Error word: what failed, [`ERROR_CODE_INDEX`] or [`ERROR_CODE_DIVISION`].
pub const ERROR_CODE: usize = 2;
/// Error word: the failing kernel's position in the program (from the params uniform).
pub const ERROR_KERNEL: usize = 3;
/// Error word: the binding number of the buffer a checked load read (0 for a division).
pub const ERROR_BINDING: usize = 4;
/// Error word: the offending index, as the bits of an `i32`.
pub const ERROR_INDEX: usize = 5;
/// Error code: a checked load's index was outside its buffer.
pub const ERROR_CODE_INDEX: u32 = 1;
/// Error code: an integer division or remainder by zero.
pub const ERROR_CODE_DIVISION: u32 = 2;

/// The error buffer's binding word for a checked load of a buffer in the arena: this
/// plus the buffer's position in [`KernelShader::packed`] (bindings stay far below it).
pub const PACKED_ERROR_BASE: u32 = 0x1_0000;

/// A buffer that shaders reach inside a shared device buffer instead of through a binding
/// of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arena {
    /// The run's scratch arena (offsets from the memory plan of the binding).
    Scratch,
}

/// A buffer a shader reaches through the arena binding, at the word offset the host passes
/// in the params uniform (field `a<k>` for `packed[k]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackedBuffer {
    /// The program buffer.
    pub buffer: BufferId,
    /// Its dtype (elements are one 32-bit word of the arena, `i64` two).
    pub dtype: DType,
    /// Which shared buffer holds it.
    pub arena: Arena,
}

/// Which template a kernel was lowered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderKind {
    /// One invocation per point of a loop kernel without reduction axes.
    Elementwise,
    /// One invocation per point; a short, statically sized reduction runs serially.
    SerialReduce,
    /// One workgroup per point; its invocations stride over the reduction domain and
    /// combine their partial results with a tree in workgroup memory (`shaders/reduce.wgsl`).
    RowReduce,
    /// One workgroup per point of the outer domain axes, for reductions that do not depend
    /// on the inner axes (a softmax or layer-norm row): the workgroup reduces once as
    /// [`ShaderKind::RowReduce`] does, then its invocations stride over the inner points.
    HoistedReduce,
    /// Tiled matrix product (`shaders/gemm.wgsl`).
    Matmul,
    /// Convolution as an implicit GEMM over the tiled matrix product template.
    Conv2d,
}

impl ShaderKind {
    /// A short name for listings.
    pub fn name(self) -> &'static str {
        match self {
            ShaderKind::Elementwise => "elementwise",
            ShaderKind::SerialReduce => "serial-reduce",
            ShaderKind::RowReduce => "row-reduce",
            ShaderKind::HoistedReduce => "hoisted-reduce",
            ShaderKind::Matmul => "matmul",
            ShaderKind::Conv2d => "conv2d",
        }
    }
}

/// A storage buffer binding of a shader: binding `binding` of group 0 is program buffer
/// `buffer`. Bool buffers are stored as one `u32` (0 or 1) per element.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StorageBinding {
    /// Binding number in group 0 (binding 0 is the params uniform).
    pub binding: u32,
    /// The program buffer bound there.
    pub buffer: BufferId,
    /// The buffer's dtype in the program.
    pub dtype: DType,
    /// True if bound `read_write`: the kernel stores to the buffer, or the buffer is scratch
    /// (scratch buffers share one arena buffer on the device, which one dispatch may bind
    /// several times, and binding one buffer both read-only and writable in a dispatch is a
    /// usage conflict). False for `read`.
    pub writable: bool,
}

/// One factor of a kernel's workgroup count: `ceil(prod(max(extent, 0)) / per_group)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GridAxis {
    /// Extents whose (clamped) product is the number of items along this factor.
    pub extents: Vec<Dim>,
    /// Items each workgroup covers.
    pub per_group: u32,
}

/// A kernel lowered to one WGSL compute shader with entry point `main`.
///
/// Group 0 holds binding 0, a uniform `Params` struct (the `u32` kernel index followed by
/// one `i32` per entry of [`KernelShader::params`]), the storage buffers of
/// [`KernelShader::bindings`] and, if [`KernelShader::error_binding`] is set, the error
/// buffer of [`ERROR_WORDS`] atomic words (zeroed before a run, read back after it).
///
/// The shader reads its workgroup index as `x + nx * (y + ny * z)` from `workgroup_id` and
/// `num_workgroups` and ignores workgroups past the count, so a host may spread
/// [`KernelShader::workgroups`] over a 1-, 2- or 3-D grid to stay within its per-dimension
/// limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelShader {
    /// The kernel this shader runs.
    pub kernel: KernelId,
    /// The template used.
    pub kind: ShaderKind,
    /// WGSL source text. It names no program ids, so equal kernels at different positions
    /// give equal text (and share a pipeline).
    pub source: String,
    /// Storage buffers, bindings `1..=len` in order.
    pub bindings: Vec<StorageBinding>,
    /// Scratch buffers the shader reaches through one `array<u32>` binding, the scratch
    /// arena, at the word offsets the params uniform holds after the dims (`a0, a1, ...`).
    pub packed: Vec<PackedBuffer>,
    /// Binding of the scratch arena (after [`KernelShader::bindings`]), if `packed` is not
    /// empty.
    pub arena_binding: Option<u32>,
    /// Binding of the error buffer, for shaders with checked loads or integer division.
    pub error_binding: Option<u32>,
    /// Dims the shader reads from the params uniform, in field order (`d0, d1, ...`).
    pub params: Vec<Dim>,
    /// Workgroup count factors; their product is the number of workgroups.
    pub grid: Vec<GridAxis>,
    /// Products of (clamped) extents the shader computes in `i32` arithmetic; each must fit
    /// an `i32` under a binding ([`KernelShader::workgroups`] checks them).
    pub counts: Vec<Vec<Dim>>,
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// The `@workgroup_size` attribute (x, y, z).
    pub workgroup_shape: [u32; 3],
    /// Bytes of workgroup memory the shader declares.
    pub workgroup_memory: u32,
}

/// Why a kernel's launch size cannot be computed under a binding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// A dim could not be evaluated.
    #[error(transparent)]
    Dim(#[from] DimError),
    /// A value does not fit the shaders' 32-bit signed arithmetic.
    #[error("`{dim}` = {value} does not fit in a 32-bit signed index")]
    TooLarge {
        /// The dim (or product) that overflowed.
        dim: String,
        /// Its value (saturated).
        value: i128,
    },
}

/// The product of clamped extents, which must fit an `i32`.
fn count_items(extents: &[Dim], bindings: &HashMap<String, u64>) -> Result<i128, LaunchError> {
    let mut items: i128 = 1;
    for d in extents {
        items = items.saturating_mul(i128::from(eval_signed(d, bindings)?.max(0)));
    }
    if items > i128::from(i32::MAX) {
        let text: Vec<String> = extents.iter().map(ToString::to_string).collect();
        return Err(LaunchError::TooLarge {
            dim: text.join(" * "),
            value: items,
        });
    }
    Ok(items)
}

/// Evaluates a dim as a signed integer (`Dim::eval` refuses negative values, which index
/// offsets such as `{-1}` may have).
pub fn eval_signed(d: &Dim, bindings: &HashMap<String, u64>) -> Result<i64, DimError> {
    match d.eval(bindings) {
        Ok(v) => i64::try_from(v).map_err(|_| DimError::Overflow(d.to_string())),
        Err(DimError::Negative { value, .. }) => Ok(value),
        Err(e) => Err(e),
    }
}

impl KernelShader {
    /// Bytes of the params uniform: one word for the kernel index, one per param and one
    /// per packed buffer, rounded up to 16.
    pub fn params_size(&self) -> u64 {
        (4 * (1 + self.params.len() as u64 + self.packed.len() as u64)).div_ceil(16) * 16
    }

    /// Storage buffers the shader binds: its buffers, the arena and the error buffer.
    pub fn storage_bindings(&self) -> u64 {
        self.bindings.len() as u64
            + u64::from(self.arena_binding.is_some())
            + u64::from(self.error_binding.is_some())
    }

    /// The params uniform's contents under `bindings` with every packed buffer at word
    /// offset 0 (see [`KernelShader::params_bytes_with`]).
    pub fn params_bytes(&self, bindings: &HashMap<String, u64>) -> Result<Vec<u8>, LaunchError> {
        self.params_bytes_with(bindings, &|_| Some(0))
    }

    /// The params uniform's contents under `bindings`: the kernel index, every param as a
    /// little-endian `i32`, then the word offset of every packed buffer (`offset(buffer)`,
    /// which must fit an `i32`).
    pub fn params_bytes_with(
        &self,
        bindings: &HashMap<String, u64>,
        offset: &dyn Fn(BufferId) -> Option<u64>,
    ) -> Result<Vec<u8>, LaunchError> {
        let mut out = Vec::with_capacity(usize::try_from(self.params_size()).unwrap_or(16));
        out.extend_from_slice(&self.kernel.0.to_le_bytes());
        for d in &self.params {
            let v = eval_signed(d, bindings)?;
            let v = i32::try_from(v).map_err(|_| LaunchError::TooLarge {
                dim: d.to_string(),
                value: i128::from(v),
            })?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        for p in &self.packed {
            let words = offset(p.buffer).unwrap_or(u64::MAX);
            let v = i32::try_from(words).map_err(|_| LaunchError::TooLarge {
                dim: format!("the arena offset of {}", p.buffer),
                value: i128::from(words),
            })?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.resize(usize::try_from(self.params_size()).unwrap_or(out.len()), 0);
        Ok(out)
    }

    /// The number of workgroups to launch under `bindings` (0: nothing to do). Every
    /// factor's item count must fit an `i32`, which the shaders' arithmetic assumes.
    pub fn workgroups(&self, bindings: &HashMap<String, u64>) -> Result<u64, LaunchError> {
        for count in &self.counts {
            count_items(count, bindings)?;
        }
        let mut total: u64 = 1;
        for axis in &self.grid {
            let items = count_items(&axis.extents, bindings)?;
            let groups = u64::try_from(items)
                .unwrap_or(0)
                .div_ceil(u64::from(axis.per_group.max(1)));
            total = total.saturating_mul(groups);
        }
        if total.saturating_mul(u64::from(self.workgroup_size)) > u64::from(u32::MAX) {
            return Err(LaunchError::TooLarge {
                dim: format!("the launch of {}", self.kernel),
                value: i128::from(total),
            });
        }
        Ok(total)
    }

    /// The storage binding of program buffer `buffer`, if the shader binds it.
    pub fn binding_of(&self, buffer: BufferId) -> Option<&StorageBinding> {
        self.bindings.iter().find(|b| b.buffer == buffer)
    }
}

/// Lists the shader as a header comment (kernel, template, bindings, params, grid) followed
/// by the source; used by dumps and the golden filetests.
impl fmt::Display for KernelShader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shape: Vec<String> = self.workgroup_shape.iter().map(u32::to_string).collect();
        while shape.len() > 1 && shape.last().is_some_and(|s| s == "1") {
            shape.pop();
        }
        writeln!(
            f,
            "// {}: {} shader, workgroup size {}, {} bytes of workgroup memory",
            self.kernel,
            self.kind.name(),
            shape.join("x"),
            self.workgroup_memory
        )?;
        writeln!(f, "// binding 0: params")?;
        for b in &self.bindings {
            writeln!(
                f,
                "// binding {}: {} {} {}",
                b.binding,
                b.buffer,
                b.dtype,
                if b.writable { "read_write" } else { "read" }
            )?;
        }
        if let Some(a) = self.arena_binding {
            let packed: Vec<String> = self
                .packed
                .iter()
                .enumerate()
                .map(|(k, p)| format!("{} {} at a{k}", p.buffer, p.dtype))
                .collect();
            writeln!(f, "// binding {a}: scratch arena ({})", packed.join(", "))?;
        }
        if let Some(e) = self.error_binding {
            writeln!(f, "// binding {e}: error flag")?;
        }
        let grid: Vec<String> = self
            .grid
            .iter()
            .map(|a| {
                let ext: Vec<String> = a.extents.iter().map(|d| format!("{d}")).collect();
                let ext = if ext.is_empty() {
                    "1".to_string()
                } else {
                    ext.join("*")
                };
                if a.per_group == 1 {
                    format!("[{ext}]")
                } else {
                    format!("ceil([{ext}] / {})", a.per_group)
                }
            })
            .collect();
        writeln!(f, "// workgroups: {}", grid.join(" * "))?;
        f.write_str(&self.source)
    }
}

/// A program lowered to WGSL: one shader per kernel, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgslProgram {
    /// `kernels[k]` runs kernel `k<k>`.
    pub kernels: Vec<KernelShader>,
}

impl fmt::Display for WgslProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.kernels.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{k}")?;
        }
        Ok(())
    }
}
