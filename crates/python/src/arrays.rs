//! NumPy arrays (and any buffer-protocol object) in and out of kiln: inputs are read in
//! place when they are C-contiguous, aligned, native-endian and of a kiln dtype; others are
//! converted by NumPy first; results are copied once into fresh NumPy arrays.

use crate::errors::{Kind, raise};
use kiln_ir::{Array, DType, Data};
use kiln_runtime::{BorrowedArray, InputError, Signature};
use pyo3::buffer::{ElementType, PyUntypedBuffer};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `numpy` module.
pub(crate) fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(NUMPY
        .get_or_try_init(py, || py.import("numpy").map(Bound::unbind))?
        .bind(py))
}

/// NumPy's name of a kiln dtype.
pub(crate) fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::U32 => "uint32",
        DType::Bool => "bool",
    }
}

/// The kiln dtype of a buffer's elements, if kiln has one.
fn dtype_of(element: ElementType) -> Option<DType> {
    match element {
        ElementType::Float { bytes: 4 } => Some(DType::F32),
        ElementType::Float { bytes: 8 } => Some(DType::F64),
        ElementType::SignedInteger { bytes: 4 } => Some(DType::I32),
        ElementType::SignedInteger { bytes: 8 } => Some(DType::I64),
        ElementType::UnsignedInteger { bytes: 4 } => Some(DType::U32),
        ElementType::Bool => Some(DType::Bool),
        _ => None,
    }
}

/// One input, ready to run: a view of the caller's (or a converted) array's memory.
pub(crate) struct Feed {
    pub(crate) name: String,
    /// Read in place; its memory belongs to `buffer`'s exporter.
    view: BorrowedArray<'static>,
    /// The buffer export that keeps `view`'s memory alive and unmoved; released (with the
    /// object it came from) only after `view` is gone.
    _buffer: PyUntypedBuffer,
    /// True when the caller's own memory is read (no conversion was needed).
    pub(crate) in_place: bool,
}

impl Feed {
    pub(crate) fn array(&self) -> &Array {
        self.view.array()
    }
}

/// What a buffer needs before kiln can read it.
enum Fit {
    /// Read in place as this dtype.
    InPlace(DType),
    /// Convert to this dtype's native, C-contiguous layout first.
    Convert(DType),
    /// No kiln dtype: the element format, for the message.
    Unsupported(String),
}

fn fit(buffer: &PyUntypedBuffer) -> Fit {
    let format = buffer.format();
    let Some(dtype) = dtype_of(ElementType::from_format(format)) else {
        return Fit::Unsupported(format.to_string_lossy().into_owned());
    };
    let foreign_order = matches!(format.to_bytes().first(), Some(b'>' | b'!'));
    let aligned = (buffer.buf_ptr() as usize).is_multiple_of(dtype.size_bytes());
    if buffer.item_size() == dtype.size_bytes()
        && buffer.is_c_contiguous()
        && aligned
        && !foreign_order
    {
        Fit::InPlace(dtype)
    } else {
        Fit::Convert(dtype)
    }
}

/// A view of `buffer`, which must hold C-contiguous, aligned elements of `dtype`, as an
/// array of `shape`.
fn view(
    py: Python<'_>,
    name: &str,
    buffer: PyUntypedBuffer,
    shape: &[usize],
    dtype: DType,
    in_place: bool,
) -> PyResult<Feed> {
    let count: usize = shape.iter().product();
    if count * dtype.size_bytes() != buffer.len_bytes() {
        return Err(raise(
            py,
            Kind::Input,
            format!("input `{name}`: its buffer does not hold a {dtype} array of shape {shape:?}"),
        ));
    }
    // SAFETY: the buffer export pins the exporter's memory (PEP 3118: it stays valid and
    // unmoved until released), and the `Feed` keeps the export for as long as the view.
    // Kiln only reads it. Another Python thread writing the array during a run (the GIL is
    // released) races with the read, as it would in any native extension; docs/python.md
    // says not to.
    let view = unsafe { BorrowedArray::from_raw(dtype, shape, buffer.buf_ptr().cast()) }
        .map_err(|e| raise(py, Kind::Input, format!("input `{name}`: {e}")))?;
    Ok(Feed {
        name: name.to_string(),
        view,
        _buffer: buffer,
        in_place,
    })
}

/// The buffer of `numpy.ascontiguousarray(obj, dtype)`, flattened (a rank-0 array exports
/// no shape), with its dtype and shape.
fn converted(
    py: Python<'_>,
    name: &str,
    obj: &Bound<'_, PyAny>,
    dtype: Option<DType>,
) -> PyResult<(PyUntypedBuffer, DType, Vec<usize>)> {
    let kwargs = PyDict::new(py);
    if let Some(d) = dtype {
        kwargs.set_item("dtype", numpy_name(d))?;
    }
    let array = numpy(py)?
        .call_method("ascontiguousarray", (obj,), Some(&kwargs))
        .map_err(|e| {
            raise(
                py,
                Kind::Input,
                format!("input `{name}`: cannot be converted to an array: {e}"),
            )
        })?;
    // `ascontiguousarray` makes rank-0 arrays rank 1: the shape is the original's.
    let shape: Vec<usize> = numpy(py)?.call_method1("shape", (obj,))?.extract()?;
    let buffer = PyUntypedBuffer::get(&array.call_method1("reshape", (-1,))?)?;
    match fit(&buffer) {
        Fit::InPlace(d) => Ok((buffer, d, shape)),
        _ => Err(raise(
            py,
            Kind::Input,
            format!(
                "input `{name}`: {} arrays are not supported (kiln takes float32, float64, int32, int64, uint32 and bool)",
                array.getattr("dtype")?.str()?
            ),
        )),
    }
}

/// The element type of `obj` as a user reads it (`float16`), or its buffer format.
fn described(obj: &Bound<'_, PyAny>, format: String) -> String {
    obj.getattr("dtype")
        .and_then(|d| d.str())
        .map(|s| s.to_string())
        .unwrap_or(format)
}

/// The inputs of a run, from keyword arguments.
pub(crate) fn feeds(
    py: Python<'_>,
    sig: &Signature,
    inputs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<Feed>> {
    let mut out = Vec::new();
    let Some(inputs) = inputs else {
        return Ok(out);
    };
    for (key, obj) in inputs.iter() {
        let name: String = key.extract()?;
        let Some(spec) = sig.inputs.iter().find(|s| s.name == name) else {
            let known = sig
                .inputs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(raise(
                py,
                Kind::Input,
                InputError::Unknown { name, known }.to_string(),
            ));
        };
        match PyUntypedBuffer::get(&obj) {
            Ok(buffer) => match fit(&buffer) {
                Fit::InPlace(d) => {
                    let shape = buffer.shape().to_vec();
                    out.push(view(py, &name, buffer, &shape, d, true)?);
                }
                Fit::Convert(d) => {
                    drop(buffer);
                    let (buffer, d, shape) = converted(py, &name, &obj, Some(d))?;
                    out.push(view(py, &name, buffer, &shape, d, false)?);
                }
                Fit::Unsupported(format) => {
                    return Err(raise(
                        py,
                        Kind::Input,
                        format!(
                            "input `{name}`: expected dtype {}, got {}",
                            spec.dtype,
                            described(&obj, format)
                        ),
                    ));
                }
            },
            Err(_) => {
                // Python numbers and nested lists take the signature's dtype; a rank-0
                // array keeps its own.
                let dtype = if obj.hasattr("dtype")? {
                    None
                } else {
                    Some(spec.dtype)
                };
                let (buffer, d, shape) = converted(py, &name, &obj, dtype)?;
                out.push(view(py, &name, buffer, &shape, d, false)?);
            }
        }
    }
    Ok(out)
}

/// A new NumPy array holding `data` under `shape`.
pub(crate) fn to_numpy<'py>(
    py: Python<'py>,
    shape: &[usize],
    data: &Data,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", numpy_name(data.dtype()))?;
    // Flat first: a rank-0 array exports no shape through the buffer protocol.
    let flat = numpy(py)?.call_method("empty", (data.len(),), Some(&kwargs))?;
    let buffer = PyUntypedBuffer::get(&flat)?;
    let bytes: &[u8] = match data {
        Data::F32(v) => bytemuck_slice(v),
        Data::F64(v) => bytemuck_slice(v),
        Data::I32(v) => bytemuck_slice(v),
        Data::I64(v) => bytemuck_slice(v),
        Data::U32(v) => bytemuck_slice(v),
        Data::Bool(v) => bytemuck_slice(v),
    };
    if buffer.readonly() || !buffer.is_c_contiguous() || buffer.len_bytes() != bytes.len() {
        return Err(raise(
            py,
            Kind::Kiln,
            format!(
                "numpy.empty gave an unexpected buffer for a {} array of shape {shape:?}",
                data.dtype()
            ),
        ));
    }
    // SAFETY: the fresh array is writable, C-contiguous and exactly `bytes.len()` long
    // (checked above); it cannot overlap kiln's output buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.buf_ptr().cast::<u8>(), bytes.len())
    };
    drop(buffer);
    flat.call_method1("reshape", (PyTuple::new(py, shape)?,))
}

/// The bytes of a slice of plain numbers (or `bool`s, one byte each).
fn bytemuck_slice<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: every `T` used here (f32, f64, i32, i64, u32, bool) has no padding and no
    // invalid byte patterns when read as bytes; the length is the slice's size in bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// An owned kiln array from a NumPy array (or anything `numpy.ascontiguousarray` takes), for
/// state dicts: copied, since the store keeps it.
pub(crate) fn to_array(py: Python<'_>, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Array> {
    let (buffer, shape) = match PyUntypedBuffer::get(obj) {
        Ok(b) => match fit(&b) {
            Fit::InPlace(_) => {
                let shape = b.shape().to_vec();
                (b, shape)
            }
            Fit::Convert(d) => {
                let (b, _, shape) = converted(py, name, obj, Some(d))?;
                (b, shape)
            }
            Fit::Unsupported(format) => {
                return Err(raise(
                    py,
                    Kind::Input,
                    format!(
                        "`{name}`: {} arrays are not supported",
                        described(obj, format)
                    ),
                ));
            }
        },
        Err(_) => {
            let (b, _, shape) = converted(py, name, obj, None)?;
            (b, shape)
        }
    };
    let Some(dtype) = dtype_of(ElementType::from_format(buffer.format())) else {
        return Err(raise(
            py,
            Kind::Input,
            format!("`{name}`: unsupported dtype"),
        ));
    };
    let bytes: &[u8] = if buffer.len_bytes() == 0 {
        &[]
    } else {
        // SAFETY: the export keeps its `len_bytes` bytes alive while they are read here.
        unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes()) }
    };
    Array::from_le_bytes(dtype, &shape, bytes)
        .map_err(|e| raise(py, Kind::Input, format!("`{name}`: {e}")))
}
