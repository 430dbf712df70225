//! Wide vector math: ahead-of-time compiled `f32` kernels (exp, log, tanh, sigmoid, erf in
//! place over a slice, or from another slice minus a scalar; row max and row sum) at the
//! widest instruction set the host has, picked once at run time — AVX-512F (16 lanes),
//! AVX2+FMA (8 lanes), or a portable one-lane path — because Cranelift's x86-64 backend
//! emits 128-bit vectors only.
//!
//! Generated code calls them on L1-sized tiles through the `kiln_cpu_wide_unary` symbol (see
//! `codegen/tile.rs`), and on a softmax row read straight from its buffer through
//! `kiln_cpu_wide_unary_shifted` (`codegen/kept.rs`); each lane computes the same
//! operations in the same order as the inline code of `codegen/math.rs` with FMA, so a
//! point gives the same bits whichever path computed it (docs/numerics.md). On hosts
//! without AVX2+FMA the generated code keeps its inline 128-bit (SSE) math and never calls
//! these.
//!
//! `KILN_CPU_VECMATH` caps the level: `avx512`, `avx2`, or `off`/`portable` (generated code
//! never calls the wide kernels: it only does at AVX2 or above); unset means the best the
//! host has.

mod funcs;
mod lanes;

use kiln_ir::UnaryOp;
use lanes::{Lanes, One};
use std::sync::OnceLock;

/// The symbol generated code imports for [`unary_entry`]:
/// `extern "C" fn(op: u32, data: *mut f32, n: i64)`.
pub(crate) const WIDE_UNARY_SYMBOL: &str = "kiln_cpu_wide_unary";

/// The symbol generated code imports for [`shifted_entry`]:
/// `extern "C" fn(op: u32, dst: *mut f32, src: *const f32, c: f32, n: i64)`.
pub(crate) const WIDE_SHIFTED_SYMBOL: &str = "kiln_cpu_wide_unary_shifted";

/// An instruction-set level of the wide kernels, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// One lane of plain Rust `f32` arithmetic (`f32::mul_add`): any target.
    Portable,
    /// Eight lanes, AVX2 and FMA.
    Avx2,
    /// Sixteen lanes, AVX-512F.
    Avx512,
}

impl Level {
    /// Every level, narrowest first.
    pub const ALL: [Level; 3] = [Level::Portable, Level::Avx2, Level::Avx512];

    /// Whether the host can run this level.
    pub fn supported(self) -> bool {
        match self {
            Level::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Level::Avx2 | Level::Avx512 => false,
        }
    }

    /// The levels the host can run, narrowest first.
    pub fn available() -> Vec<Level> {
        Level::ALL.into_iter().filter(|l| l.supported()).collect()
    }

    /// The widest level the host runs, capped by `KILN_CPU_VECMATH`; `None` when that says
    /// `off`. Detected once per process.
    pub fn detect() -> Option<Level> {
        static LEVEL: OnceLock<Option<Level>> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let best = Level::available()
                .into_iter()
                .max()
                .unwrap_or(Level::Portable);
            let cap = match std::env::var("KILN_CPU_VECMATH").ok().as_deref() {
                Some("off") => return None,
                Some("portable") => Level::Portable,
                Some("avx2") => Level::Avx2,
                _ => Level::Avx512,
            };
            Some(best.min(cap))
        })
    }

    /// The lanes of one vector.
    pub fn lanes(self) -> usize {
        match self {
            Level::Portable => 1,
            Level::Avx2 => 8,
            Level::Avx512 => 16,
        }
    }
}

/// The unary ops with a wide kernel, with their codes in [`unary_entry`].
const WIDE_OPS: [UnaryOp; 5] = [
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Erf,
];

/// The code of a unary op with a wide kernel (`None` for the others).
pub(crate) fn wide_code(op: UnaryOp) -> Option<u32> {
    WIDE_OPS.iter().position(|&o| o == op).map(|i| i as u32)
}

/// Applies the op with code `code` in place to `n` floats at `p` with lanes `V`.
///
/// # Safety
///
/// `V`'s instruction set is available; `p` is valid for reads and writes of `n` floats.
#[inline(always)]
unsafe fn unary_with<V: Lanes>(code: u32, p: *mut f32, n: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match code {
            0 => funcs::map::<V, funcs::Exp>(p, n),
            1 => funcs::map::<V, funcs::Log>(p, n),
            2 => funcs::map::<V, funcs::Tanh>(p, n),
            3 => funcs::map::<V, funcs::Sigmoid>(p, n),
            4 => funcs::map::<V, funcs::Erf>(p, n),
            _ => {}
        }
    }
}

/// The portable entry (any code; unknown codes do nothing).
///
/// # Safety
///
/// `p` is valid for reads and writes of `n` floats.
unsafe fn unary_portable(code: u32, p: *mut f32, n: usize) {
    // SAFETY: the portable lanes need no instruction set; `p` as the caller promises.
    unsafe { unary_with::<One>(code, p, n) }
}

/// # Safety
///
/// AVX2 and FMA are available; `p` is valid for reads and writes of `n` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn unary_avx2(code: u32, p: *mut f32, n: usize) {
    // SAFETY: this function runs with AVX2 and FMA; `p` as the caller promises.
    unsafe { unary_with::<lanes::Avx2>(code, p, n) }
}

/// # Safety
///
/// AVX-512F is available; `p` is valid for reads and writes of `n` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn unary_avx512(code: u32, p: *mut f32, n: usize) {
    // SAFETY: this function runs with AVX-512F; `p` as the caller promises.
    unsafe { unary_with::<lanes::Avx512>(code, p, n) }
}

/// Dispatches to `level` (which the caller has checked is supported).
///
/// # Safety
///
/// `level.supported()`; `p` is valid for reads and writes of `n` floats.
unsafe fn unary_at(level: Level, code: u32, p: *mut f32, n: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unary_avx512(code, p, n),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unary_avx2(code, p, n),
            _ => unary_portable(code, p, n),
        }
    }
}

/// The entry generated code calls (registered as [`WIDE_UNARY_SYMBOL`]): the op with code
/// `code` in place over `n` floats at `p`, at the level [`Level::detect`] chose.
///
/// # Safety
///
/// `p` is valid for reads and writes of `n` floats (`n <= 0` does nothing).
pub(crate) unsafe extern "C" fn unary_entry(code: u32, p: *mut f32, n: i64) {
    let Ok(n) = usize::try_from(n) else { return };
    let level = Level::detect().unwrap_or(Level::Portable);
    // SAFETY: `detect` only returns supported levels; `p` as the caller promises.
    unsafe { unary_at(level, code, p, n) }
}

/// Applies `op` in place to `data` at `level`. Returns `false` (leaving `data` as it was)
/// when `op` has no wide kernel or the host cannot run `level`.
pub fn unary(level: Level, op: UnaryOp, data: &mut [f32]) -> bool {
    let Some(code) = wide_code(op) else {
        return false;
    };
    if !level.supported() {
        return false;
    }
    // SAFETY: the level is supported, the slice is valid for its length.
    unsafe { unary_at(level, code, data.as_mut_ptr(), data.len()) };
    true
}

/// Writes `op(src[j] - c)` with the op of code `code` to `dst[j]`, `j < n`, with lanes `V`
/// (the subtraction is the inline code's `fsub`, so each point gives the same bits as
/// subtracting first and applying [`unary_with`] in place).
///
/// # Safety
///
/// `V`'s instruction set is available; `src` is valid for reads and `dst` for writes of
/// `n` floats, and they are the same memory or do not overlap.
#[inline(always)]
unsafe fn shifted_with<V: Lanes>(code: u32, dst: *mut f32, src: *const f32, c: f32, n: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match code {
            0 => funcs::map_shifted::<V, funcs::Exp>(dst, src, c, n),
            1 => funcs::map_shifted::<V, funcs::Log>(dst, src, c, n),
            2 => funcs::map_shifted::<V, funcs::Tanh>(dst, src, c, n),
            3 => funcs::map_shifted::<V, funcs::Sigmoid>(dst, src, c, n),
            4 => funcs::map_shifted::<V, funcs::Erf>(dst, src, c, n),
            _ => {}
        }
    }
}

/// # Safety
///
/// AVX2 and FMA are available; the pointers as [`shifted_with`] requires.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn shifted_avx2(code: u32, dst: *mut f32, src: *const f32, c: f32, n: usize) {
    // SAFETY: this function runs with AVX2 and FMA; the pointers as the caller promises.
    unsafe { shifted_with::<lanes::Avx2>(code, dst, src, c, n) }
}

/// # Safety
///
/// AVX-512F is available; the pointers as [`shifted_with`] requires.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn shifted_avx512(code: u32, dst: *mut f32, src: *const f32, c: f32, n: usize) {
    // SAFETY: this function runs with AVX-512F; the pointers as the caller promises.
    unsafe { shifted_with::<lanes::Avx512>(code, dst, src, c, n) }
}

/// Dispatches [`shifted_with`] to `level` (which the caller has checked is supported).
///
/// # Safety
///
/// `level.supported()`; the pointers as [`shifted_with`] requires.
unsafe fn shifted_at(level: Level, code: u32, dst: *mut f32, src: *const f32, c: f32, n: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => shifted_avx512(code, dst, src, c, n),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => shifted_avx2(code, dst, src, c, n),
            _ => shifted_with::<One>(code, dst, src, c, n),
        }
    }
}

/// The entry generated code calls (registered as [`WIDE_SHIFTED_SYMBOL`]): `dst[j] =
/// op(src[j] - c)` for the op with code `code`, at the level [`Level::detect`] chose. A
/// softmax row's `exp(x - max)` reads the row straight from its buffer this way.
///
/// # Safety
///
/// `src` is valid for reads and `dst` for writes of `n` floats, the same memory or not
/// overlapping (`n <= 0` does nothing).
pub(crate) unsafe extern "C" fn shifted_entry(
    code: u32,
    dst: *mut f32,
    src: *const f32,
    c: f32,
    n: i64,
) {
    let Ok(n) = usize::try_from(n) else { return };
    let level = Level::detect().unwrap_or(Level::Portable);
    // SAFETY: `detect` only returns supported levels; the pointers as the caller promises.
    unsafe { shifted_at(level, code, dst, src, c, n) }
}

/// Writes `op(src[j] - c)` to `dst[j]` at `level`. Returns `false` (leaving `dst` as it
/// was) when `op` has no wide kernel, the host cannot run `level`, or the lengths differ.
pub fn unary_shifted(level: Level, op: UnaryOp, dst: &mut [f32], src: &[f32], c: f32) -> bool {
    let Some(code) = wide_code(op) else {
        return false;
    };
    if !level.supported() || dst.len() != src.len() {
        return false;
    }
    // SAFETY: the level is supported; the slices are valid, of equal length, and a shared
    // and a mutable borrow never overlap.
    unsafe { shifted_at(level, code, dst.as_mut_ptr(), src.as_ptr(), c, dst.len()) };
    true
}

/// A row reduction with a wide kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowReduce {
    /// The largest element (`-inf` for none, NaN if any is NaN).
    Max,
    /// The sum, in the lane order of `funcs::row_sum`.
    Sum,
}

/// # Safety
///
/// `V`'s instruction set is available.
#[inline(always)]
unsafe fn reduce_with<V: Lanes>(op: RowReduce, row: &[f32]) -> f32 {
    // SAFETY: forwarded from the caller; the slice is valid for its length.
    unsafe {
        match op {
            RowReduce::Max => funcs::row_max::<V>(row.as_ptr(), row.len()),
            RowReduce::Sum => funcs::row_sum::<V>(row.as_ptr(), row.len()),
        }
    }
}

/// # Safety
///
/// AVX2 and FMA are available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn reduce_avx2(op: RowReduce, row: &[f32]) -> f32 {
    // SAFETY: this function runs with AVX2.
    unsafe { reduce_with::<lanes::Avx2>(op, row) }
}

/// # Safety
///
/// AVX-512F is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn reduce_avx512(op: RowReduce, row: &[f32]) -> f32 {
    // SAFETY: this function runs with AVX-512F.
    unsafe { reduce_with::<lanes::Avx512>(op, row) }
}

/// Reduces `row` at `level`; `None` when the host cannot run `level`.
pub fn reduce(level: Level, op: RowReduce, row: &[f32]) -> Option<f32> {
    if !level.supported() {
        return None;
    }
    // SAFETY: the level is supported.
    Some(unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => reduce_avx512(op, row),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => reduce_avx2(op, row),
            _ => reduce_with::<One>(op, row),
        }
    })
}
