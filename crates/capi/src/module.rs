//! [`kiln_module`]: an executable with its signature as C strings and the outputs of its
//! last run, and the accessors behind the exported functions.

use crate::error::{Failure, KILN_ERROR_BUFFER};
use crate::{dtype_code, kiln_spec, kiln_tensor};
use kiln_ir::{Array, Data};
use kiln_runtime::{Executable, TensorSpec};
use std::ffi::{CString, c_void};

/// One signature entry in C form.
#[derive(Debug)]
pub(crate) struct Spec {
    name: CString,
    dtype: u32,
    dims: Vec<i64>,
    shape: CString,
}

/// Where output `k` of the last run lives: inside the executable's held output buffers,
/// untouched until its next run.
#[derive(Debug)]
pub(crate) struct Held {
    data: *const c_void,
    pub(crate) bytes: usize,
    shape: Vec<usize>,
}

/// An opaque handle to a loaded module. Create it with `kiln_module_load`, free it with
/// `kiln_module_free`.
#[derive(Debug)]
pub struct kiln_module {
    exe: Executable,
    pub(crate) backend: CString,
    pub(crate) inputs: Vec<Spec>,
    pub(crate) outputs: Vec<Spec>,
    /// The outputs of the last run, in signature order.
    pub(crate) last: Vec<Held>,
    /// True while `last` describes a successful run.
    pub(crate) ran: bool,
}

fn c_string(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| Failure::argument(format!("`{s}` contains a NUL byte")))
}

fn spec(t: &TensorSpec) -> Result<Spec, Failure> {
    Ok(Spec {
        name: c_string(&t.name)?,
        dtype: dtype_code(t.dtype),
        dims: t
            .shape
            .dims()
            .iter()
            .map(|d| {
                d.as_known()
                    .and_then(|v| i64::try_from(v).ok())
                    .unwrap_or(-1)
            })
            .collect(),
        shape: c_string(&t.shape.to_string())?,
    })
}

/// The address of `d`'s elements.
fn data_ptr(d: &Data) -> *const c_void {
    match d {
        Data::F32(v) => v.as_ptr().cast(),
        Data::F64(v) => v.as_ptr().cast(),
        Data::I32(v) => v.as_ptr().cast(),
        Data::I64(v) => v.as_ptr().cast(),
        Data::U32(v) => v.as_ptr().cast(),
        Data::Bool(v) => v.as_ptr().cast(),
    }
}

impl kiln_module {
    pub(crate) fn new(exe: Executable) -> Result<kiln_module, Failure> {
        let sig = exe.signature();
        let inputs = sig.inputs.iter().map(spec).collect::<Result<_, _>>()?;
        let outputs: Vec<Spec> = sig.outputs.iter().map(spec).collect::<Result<_, _>>()?;
        let last = outputs
            .iter()
            .map(|_| Held {
                data: std::ptr::null(),
                bytes: 0,
                shape: Vec::new(),
            })
            .collect();
        Ok(kiln_module {
            backend: c_string(exe.backend().name())?,
            exe,
            inputs,
            outputs,
            last,
            ran: false,
        })
    }

    /// Runs the executable into its held buffers and records where each output lives.
    /// In steady state (same shapes as the previous run) this allocates nothing beyond
    /// what the executable's borrowed run does.
    pub(crate) fn run(&mut self, feeds: &[(&str, &Array)]) -> Result<(), Failure> {
        let outs = self.exe.run_borrowed(feeds)?;
        for (held, view) in self.last.iter_mut().zip(outs.iter()) {
            held.data = data_ptr(view.data);
            held.bytes = view.data.len() * view.data.dtype().size_bytes();
            held.shape.clear();
            held.shape.extend_from_slice(view.shape);
        }
        self.ran = outs.len() == self.last.len();
        Ok(())
    }

    fn held(&self, i: usize) -> Result<&Held, Failure> {
        if !self.ran {
            return Err(Failure::argument(
                "no outputs: the module has not run successfully since it was loaded or its last failure",
            ));
        }
        self.last.get(i).ok_or_else(|| {
            Failure::argument(format!(
                "output index {i} is out of range (the module has {} outputs)",
                self.last.len()
            ))
        })
    }
}

/// `kiln_module_input_spec` / `kiln_module_output_spec`.
///
/// # Safety
/// `m` is NULL or a live handle; `out` is NULL or writable.
pub(crate) unsafe fn write_spec(
    m: *const kiln_module,
    i: usize,
    out: *mut kiln_spec,
    input: bool,
) -> Result<(), Failure> {
    // SAFETY: the caller's guarantee.
    let m = unsafe { m.as_ref() }.ok_or_else(|| Failure::argument("module is NULL"))?;
    let (list, what) = if input {
        (&m.inputs, "input")
    } else {
        (&m.outputs, "output")
    };
    let s = list.get(i).ok_or_else(|| {
        Failure::argument(format!(
            "{what} index {i} is out of range (the module has {} {what}s)",
            list.len()
        ))
    })?;
    if out.is_null() {
        return Err(Failure::argument("out is NULL"));
    }
    // SAFETY: non-null and writable by the caller's guarantee.
    unsafe {
        *out = kiln_spec {
            name: s.name.as_ptr(),
            dtype: s.dtype,
            rank: s.dims.len(),
            dims: s.dims.as_ptr(),
            shape: s.shape.as_ptr(),
        };
    }
    Ok(())
}

/// `kiln_module_output`.
///
/// # Safety
/// `m` is NULL or a live handle; `out` is NULL or writable.
pub(crate) unsafe fn write_output(
    m: *const kiln_module,
    i: usize,
    out: *mut kiln_tensor,
) -> Result<(), Failure> {
    // SAFETY: the caller's guarantee.
    let m = unsafe { m.as_ref() }.ok_or_else(|| Failure::argument("module is NULL"))?;
    let h = m.held(i)?;
    if out.is_null() {
        return Err(Failure::argument("out is NULL"));
    }
    let s = &m.outputs[i];
    // SAFETY: non-null and writable by the caller's guarantee.
    unsafe {
        *out = kiln_tensor {
            name: s.name.as_ptr(),
            dtype: s.dtype,
            data: h.data,
            shape: h.shape.as_ptr(),
            rank: h.shape.len(),
        };
    }
    Ok(())
}

/// `kiln_module_output_copy`.
///
/// # Safety
/// `m` is NULL or a live handle; `dst` is NULL or writable for `dst_bytes` bytes.
pub(crate) unsafe fn copy_output(
    m: *const kiln_module,
    i: usize,
    dst: *mut c_void,
    dst_bytes: usize,
) -> Result<(), Failure> {
    // SAFETY: the caller's guarantee.
    let m = unsafe { m.as_ref() }.ok_or_else(|| Failure::argument("module is NULL"))?;
    let h = m.held(i)?;
    if dst_bytes < h.bytes {
        return Err(Failure {
            code: KILN_ERROR_BUFFER,
            message: format!(
                "output `{}` needs {} bytes, the buffer has {dst_bytes}",
                m.outputs[i].name.to_string_lossy(),
                h.bytes
            ),
        });
    }
    if h.bytes == 0 {
        return Ok(());
    }
    if dst.is_null() {
        return Err(Failure::argument("dst is NULL"));
    }
    // SAFETY: `h.data` holds `h.bytes` bytes in the executable's held buffer (untouched
    // since the run); `dst` is writable for at least that many and is caller memory, so the
    // ranges do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(h.data.cast::<u8>(), dst.cast::<u8>(), h.bytes) };
    Ok(())
}
