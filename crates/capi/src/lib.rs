//! kiln's C ABI: load a `.kiln` module, query its signature, run it on caller memory.
//!
//! The header `include/kiln.h` is generated from this crate by cbindgen (`tests/header.rs`
//! regenerates it and fails if the committed copy differs; `BLESS=1` rewrites it). The
//! contract, stated once here and in docs/c.md:
//!
//! * Every function returns a status code (`KILN_OK` is 0) or a value that cannot fail;
//!   after a failure, `kiln_last_error()` gives this thread's one-line message.
//! * No panic unwinds into C: each function runs its body under `catch_unwind`, and a caught
//!   panic (a kiln bug) returns `KILN_ERROR_PANIC`.
//! * Inputs are read in place: a `kiln_tensor` points at the caller's elements, which kiln
//!   reads during `kiln_module_run` without copying them on the `cpu` backend.
//! * Outputs live in buffers the module owns, valid until its next run or its free
//!   (`kiln_module_output`), or are copied into the caller's buffers
//!   (`kiln_module_output_copy`).
//! * A module is used by one thread at a time; different modules are independent.

#![allow(non_camel_case_types)]

mod error;
mod module;

pub use error::{
    KILN_ERROR_ARGUMENT, KILN_ERROR_BUFFER, KILN_ERROR_COMPILE, KILN_ERROR_FORMAT,
    KILN_ERROR_INPUT, KILN_ERROR_PANIC, KILN_ERROR_RUN, KILN_OK,
};
pub use module::kiln_module;

use error::{Failure, guard};
use kiln_ir::DType;
use kiln_runtime::{Backend, BorrowedArray};
use std::ffi::{CStr, c_char, c_void};
use std::path::Path;

/// Element type code of `float` (IEEE binary32).
pub const KILN_F32: u32 = 0;
/// Element type code of `double`.
pub const KILN_F64: u32 = 1;
/// Element type code of `int32_t`.
pub const KILN_I32: u32 = 2;
/// Element type code of `int64_t`.
pub const KILN_I64: u32 = 3;
/// Element type code of `uint32_t`.
pub const KILN_U32: u32 = 4;
/// Element type code of `bool` (one byte, 0 or 1).
pub const KILN_BOOL: u32 = 5;

/// The element type code of `dtype`.
pub(crate) fn dtype_code(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => KILN_F32,
        DType::F64 => KILN_F64,
        DType::I32 => KILN_I32,
        DType::I64 => KILN_I64,
        DType::U32 => KILN_U32,
        DType::Bool => KILN_BOOL,
    }
}

fn dtype_of(code: u32) -> Result<DType, Failure> {
    DType::ALL
        .into_iter()
        .find(|&d| dtype_code(d) == code)
        .ok_or_else(|| Failure::argument(format!("unknown dtype code {code} (0 to 5)")))
}

/// A tensor in caller or module memory: an input given to `kiln_module_run`, or an output
/// returned by `kiln_module_output`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kiln_tensor {
    /// The input or output name (NUL-terminated UTF-8).
    pub name: *const c_char,
    /// Element type code (`KILN_F32`, ...).
    pub dtype: u32,
    /// The elements, row-major, aligned for the element type; may be NULL if there are none.
    pub data: *const c_void,
    /// `rank` dimension sizes; may be NULL when `rank` is 0.
    pub shape: *const usize,
    /// Number of dimensions.
    pub rank: usize,
}

/// One input or output of a module's signature. Its pointers stay valid until the module
/// is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kiln_spec {
    /// Name (NUL-terminated UTF-8).
    pub name: *const c_char,
    /// Element type code.
    pub dtype: u32,
    /// Number of dimensions.
    pub rank: usize,
    /// `rank` sizes, -1 for a symbolic dimension.
    pub dims: *const i64,
    /// The shape as text, symbols included (`[N, 64]`).
    pub shape: *const c_char,
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that outlives `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::argument(format!("{what} is NULL")));
    }
    // SAFETY: non-null, and the caller guarantees termination and lifetime.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Failure::argument(format!("{what} is not UTF-8")))
}

/// The module behind a handle, or an argument error.
///
/// # Safety
/// `m` is null or a live handle from `kiln_module_load`, not used by another thread.
unsafe fn module_mut<'a>(m: *mut kiln_module) -> Result<&'a mut kiln_module, Failure> {
    // SAFETY: the caller's guarantee.
    unsafe { m.as_mut() }.ok_or_else(|| Failure::argument("module is NULL"))
}

/// The message of this thread's last failed call: one line, NUL-terminated, valid until the
/// next call into kiln on this thread. An empty string if no call has failed.
#[unsafe(no_mangle)]
pub extern "C" fn kiln_last_error() -> *const c_char {
    error::last_error_ptr()
}

/// The version of the kiln C API library (NUL-terminated, static).
#[unsafe(no_mangle)]
pub extern "C" fn kiln_version() -> *const c_char {
    c"0.1.0".as_ptr()
}

/// Loads the `.kiln` file at `path` to run on `backend` (`"cpu"`, `"gpu"`, `"interp"`;
/// NULL means `"cpu"`) and stores the new module in `*out`. The file is treated as hostile:
/// a malformed one fails with `KILN_ERROR_FORMAT` and never crashes.
///
/// # Safety
/// `path` and `backend` (when not NULL) are NUL-terminated strings; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_load(
    path: *const c_char,
    backend: *const c_char,
    out: *mut *mut kiln_module,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(Failure::argument("out is NULL"));
        }
        // SAFETY: `out` is non-null and writable by the caller's guarantee.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's guarantees for the strings.
        let path = unsafe { text(path, "path") }?;
        let backend: Backend = if backend.is_null() {
            Backend::Cpu
        } else {
            // SAFETY: as above.
            unsafe { text(backend, "backend") }?.parse()?
        };
        let exe = kiln_runtime::load(Path::new(path), backend)?;
        let module = Box::new(kiln_module::new(exe)?);
        // SAFETY: as above.
        unsafe { *out = Box::into_raw(module) };
        Ok(())
    })
}

/// Frees a module (NULL is ignored). Its output buffers and signature strings go with it.
///
/// # Safety
/// `m` is NULL or a handle from `kiln_module_load` that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_free(m: *mut kiln_module) {
    if !m.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(m) });
        }));
    }
}

/// The backend the module runs on (`"cpu"`, ...), valid until the module is freed; NULL
/// for a NULL module.
///
/// # Safety
/// `m` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_backend(m: *const kiln_module) -> *const c_char {
    // SAFETY: the caller's guarantee.
    match unsafe { m.as_ref() } {
        Some(m) => m.backend.as_ptr(),
        None => std::ptr::null(),
    }
}

/// The number of inputs of the module's signature (0 for NULL).
///
/// # Safety
/// `m` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_num_inputs(m: *const kiln_module) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe { m.as_ref() }.map_or(0, |m| m.inputs.len())
}

/// The number of outputs of the module's signature (0 for NULL).
///
/// # Safety
/// `m` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_num_outputs(m: *const kiln_module) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe { m.as_ref() }.map_or(0, |m| m.outputs.len())
}

/// Writes the signature of input `i` into `*out`.
///
/// # Safety
/// `m` is NULL or a live handle; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_input_spec(
    m: *const kiln_module,
    i: usize,
    out: *mut kiln_spec,
) -> i32 {
    // SAFETY: the caller's guarantees.
    guard(|| unsafe { module::write_spec(m, i, out, true) })
}

/// Writes the signature of output `i` into `*out`.
///
/// # Safety
/// `m` is NULL or a live handle; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_output_spec(
    m: *const kiln_module,
    i: usize,
    out: *mut kiln_spec,
) -> i32 {
    // SAFETY: the caller's guarantees.
    guard(|| unsafe { module::write_spec(m, i, out, false) })
}

/// Runs the module once on `n_inputs` inputs, read in place. Symbolic dimensions are bound
/// from the input shapes. The outputs then live in the module until its next run
/// (`kiln_module_output`, `kiln_module_output_copy`). A train-step module applies its state
/// updates, all or none. On failure no output is available.
///
/// # Safety
/// `m` is a live handle used by no other thread; `inputs` points to `n_inputs` tensors
/// whose names, shapes and data are valid for reads during the call, and whose data is not
/// written during it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_run(
    m: *mut kiln_module,
    inputs: *const kiln_tensor,
    n_inputs: usize,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's guarantee.
        let m = unsafe { module_mut(m) }?;
        m.ran = false;
        let given: &[kiln_tensor] = if n_inputs == 0 {
            &[]
        } else if inputs.is_null() {
            return Err(Failure::argument("inputs is NULL"));
        } else {
            // SAFETY: `n_inputs` readable tensors by the caller's guarantee.
            unsafe { std::slice::from_raw_parts(inputs, n_inputs) }
        };
        let mut views = Vec::with_capacity(given.len());
        for (k, t) in given.iter().enumerate() {
            // SAFETY: the caller's guarantees for each tensor.
            let name = unsafe { text(t.name, &format!("inputs[{k}].name")) }?;
            let dtype = dtype_of(t.dtype)?;
            let shape: &[usize] = if t.rank == 0 {
                &[]
            } else if t.shape.is_null() {
                return Err(Failure::argument(format!("inputs[{k}].shape is NULL")));
            } else {
                // SAFETY: `rank` readable sizes by the caller's guarantee.
                unsafe { std::slice::from_raw_parts(t.shape, t.rank) }
            };
            // SAFETY: the caller guarantees the elements for the duration of this call,
            // which the views do not outlive.
            let view = unsafe { BorrowedArray::from_raw(dtype, shape, t.data.cast()) }
                .map_err(|e| Failure::argument(format!("input `{name}`: {e}")))?;
            views.push((name, view));
        }
        let feeds: Vec<(&str, &kiln_ir::Array)> =
            views.iter().map(|(n, v)| (*n, v.array())).collect();
        m.run(&feeds)
    })
}

/// Writes a view of output `i` of the last successful run into `*out`: its data and shape
/// live in the module until its next run or its free.
///
/// # Safety
/// `m` is NULL or a live handle; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_output(
    m: *const kiln_module,
    i: usize,
    out: *mut kiln_tensor,
) -> i32 {
    // SAFETY: the caller's guarantees.
    guard(|| unsafe { module::write_output(m, i, out) })
}

/// The size in bytes of output `i` of the last successful run (0 if there is none).
///
/// # Safety
/// `m` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_output_bytes(m: *const kiln_module, i: usize) -> usize {
    // SAFETY: the caller's guarantee.
    match unsafe { m.as_ref() } {
        Some(m) if m.ran => m.last.get(i).map_or(0, |o| o.bytes),
        _ => 0,
    }
}

/// Copies output `i` of the last successful run into the caller's buffer `dst` of
/// `dst_bytes` bytes (`KILN_ERROR_BUFFER` if it is smaller than the output).
///
/// # Safety
/// `m` is NULL or a live handle; `dst` is NULL or writable for `dst_bytes` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_module_output_copy(
    m: *const kiln_module,
    i: usize,
    dst: *mut c_void,
    dst_bytes: usize,
) -> i32 {
    // SAFETY: the caller's guarantees.
    guard(|| unsafe { module::copy_output(m, i, dst, dst_bytes) })
}
