//! `.safetensors` files, the format PyTorch and Hugging Face exchange weights in: a
//! bounded reader that treats the file as hostile and an atomic writer.
//!
//! Reading takes the 8-byte header length first (at most [`MAX_HEADER_BYTES`]), then the
//! header, parsed and validated by the `safetensors` crate, then exactly the data size the
//! header states (at most [`MAX_DATA_BYTES`]); tensors become kiln arrays through
//! `Array::from_le_bytes`, which rejects bool bytes other than 0 and 1. Every error is one
//! line. [`crate::load_safetensors`] and [`crate::save_safetensors`] build state dicts on
//! these; the `kiln` runner's `export-weights` and `import-weights` use them too.

use kiln_fs::one_line;
use kiln_ir::{Array, DType};
use safetensors::tensor::{Metadata, TensorView};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Longest header read, in bytes (the `safetensors` crate's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Largest data section read, in bytes: 32 GiB (the `.kiln` data limit).
pub const MAX_DATA_BYTES: u64 = 32 << 30;

/// Why a `.safetensors` file could not be read or written.
#[derive(thiserror::Error)]
#[error("{path}: {message}")]
pub struct SafetensorsError {
    /// The file.
    pub path: String,
    /// What is wrong, on one line.
    pub message: String,
}

/// The kiln dtype of a safetensors dtype, if kiln has it.
pub fn kiln_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::U32 => DType::U32,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// Why the bytes of a file do not make a `.safetensors` file kiln reads (one line).
#[derive(thiserror::Error)]
pub enum ParseError {
    /// Reading the header length failed.
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
    /// The input ends inside the 8-byte header length.
    #[error("truncated: {0} bytes, the header length needs 8")]
    TruncatedHeaderLength(usize),
    /// The header length is outside `2..=MAX_HEADER_BYTES`.
    #[error("header length {0} is outside 2..={MAX_HEADER_BYTES}")]
    HeaderLength(u64),
    /// The input ends inside the header.
    #[error("truncated: {got} bytes, the {header_len}-byte header needs {needed}")]
    TruncatedHeader {
        /// Bytes present.
        got: u64,
        /// The stated header length.
        header_len: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// Reading the header failed.
    #[error("reading the header: {0}")]
    HeaderRead(kiln_fs::ReadError),
    /// The header is not valid safetensors JSON (the parser's message, on one line).
    #[error("not a valid safetensors header: {0}")]
    InvalidHeader(String),
    /// The data section is over [`MAX_DATA_BYTES`].
    #[error("data section of {0} bytes exceeds the limit {MAX_DATA_BYTES}")]
    DataTooLarge(u64),
    /// A regular file whose length is not what its header states.
    #[error("file has {len} bytes, but its header states {stated}")]
    LengthMismatch {
        /// The file's length.
        len: u64,
        /// The length the header states.
        stated: u64,
    },
    /// Reading the data section failed.
    #[error("data section: {0}")]
    Data(kiln_fs::ReadError),
    /// The `safetensors` crate rejects the file (its message, on one line).
    #[error("not a valid safetensors file: {0}")]
    InvalidFile(String),
}

/// Why one tensor of a valid file cannot be a kiln array.
#[derive(thiserror::Error)]
pub enum TensorError {
    /// A dtype kiln does not have.
    #[error("unsupported dtype {0:?}")]
    UnsupportedDtype(Dtype),
    /// The bytes do not make an array (a bool byte other than 0 or 1).
    #[error("{0}")]
    Array(#[from] kiln_ir::ArrayError),
}

crate::debug_fmt::debug_as_display!(SafetensorsError, ParseError, TensorError);

/// The safetensors dtype of a kiln dtype (every kiln dtype has one).
pub fn safetensors_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::U32 => Dtype::U32,
        DType::Bool => Dtype::BOOL,
    }
}

/// The bytes of a `.safetensors` file holding `tensors` (little-endian, names as given) and
/// the string `metadata`. Errors (one line) if two tensors share a name.
pub(crate) fn to_bytes<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Array)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let tensors: Vec<(&str, &Array)> = tensors.into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    if let Some((name, _)) = tensors.iter().find(|(n, _)| !seen.insert(*n)) {
        return Err(format!("tensor `{}` is given twice", one_line(name)));
    }
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, a)| a.to_le_bytes()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, a), data) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(safetensors_dtype(a.dtype()), a.shape().to_vec(), data)
            .map_err(|e| format!("tensor `{}`: {}", one_line(name), one_line(&e.to_string())))?;
        views.push((name.to_string(), view));
    }
    safetensors::serialize(views, metadata).map_err(|e| one_line(&e.to_string()))
}

/// Writes `tensors` to a `.safetensors` file at `path` atomically (a temporary file renamed
/// over `path`), with `metadata` in its header.
pub fn write<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Array)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), SafetensorsError> {
    let fail = |message: String| SafetensorsError {
        path: one_line(&path.display().to_string()),
        message,
    };
    let bytes = to_bytes(tensors, metadata).map_err(fail)?;
    kiln_fs::write_atomic(path, &bytes).map_err(|e| fail(one_line(&e.to_string())))
}

/// One tensor of a file: its name and either its array or why it cannot be one.
pub type Tensor = (String, Result<Array, TensorError>);

/// Reads the tensors of the `.safetensors` file at `path`, sorted by name. A regular file
/// must be exactly as long as its header states; anything else is read as a stream, only
/// as far as the header states.
pub fn read(path: &Path) -> Result<Vec<Tensor>, SafetensorsError> {
    let fail = |message: String| SafetensorsError {
        path: one_line(&path.display().to_string()),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    let bytes = read_bounded(&mut file, meta.is_file().then_some(meta.len()))
        .map_err(|e| fail(e.to_string()))?;
    tensors(&bytes).map_err(|e| fail(e.to_string()))
}

/// The bytes of a whole file from `r` (whose size is `len` when known), read only as far
/// as its header states.
pub fn read_bounded(r: &mut impl Read, len: Option<u64>) -> Result<Vec<u8>, ParseError> {
    let mut start = [0u8; 8];
    let n = kiln_fs::read_up_to(r, &mut start)?;
    if n < 8 {
        return Err(ParseError::TruncatedHeaderLength(n));
    }
    let header_len = u64::from_le_bytes(start);
    if !(2..=MAX_HEADER_BYTES).contains(&header_len) {
        return Err(ParseError::HeaderLength(header_len));
    }
    if let Some(len) = len
        && len < 8 + header_len
    {
        return Err(ParseError::TruncatedHeader {
            got: len,
            header_len,
            needed: 8 + header_len,
        });
    }
    let mut bytes = start.to_vec();
    bytes.extend(
        kiln_fs::read_exact_len(&mut r.by_ref().take(header_len), header_len).map_err(
            |e| match e {
                kiln_fs::ReadError::Short { got, .. } => ParseError::TruncatedHeader {
                    got: 8 + got,
                    header_len,
                    needed: 8 + header_len,
                },
                e => ParseError::HeaderRead(e),
            },
        )?,
    );
    let metadata: Metadata = serde_json::from_slice(&bytes[8..])
        .map_err(|e| ParseError::InvalidHeader(one_line(&e.to_string())))?;
    let data_len = metadata.data_len() as u64;
    if data_len > MAX_DATA_BYTES {
        return Err(ParseError::DataTooLarge(data_len));
    }
    let stated = 8 + header_len + data_len;
    if let Some(len) = len
        && len != stated
    {
        return Err(ParseError::LengthMismatch { len, stated });
    }
    let data = kiln_fs::read_exact_len(r, data_len).map_err(ParseError::Data)?;
    bytes.extend(data);
    Ok(bytes)
}

/// The tensors of a whole file's bytes, sorted by name.
pub fn tensors(bytes: &[u8]) -> Result<Vec<Tensor>, ParseError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| ParseError::InvalidFile(one_line(&e.to_string())))?;
    let mut out: Vec<Tensor> =
        st.tensors()
            .into_iter()
            .map(|(name, view)| {
                let array = match kiln_dtype(view.dtype()) {
                    None => Err(TensorError::UnsupportedDtype(view.dtype())),
                    Some(dt) => Array::from_le_bytes(dt, view.shape(), view.data())
                        .map_err(TensorError::Array),
                };
                (name, array)
            })
            .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The fuzz harness: any bytes give tensors or a one-line error, never a panic.
pub fn check(bytes: &[u8]) {
    let result = read_bounded(&mut &bytes[..], Some(bytes.len() as u64)).and_then(|b| tensors(&b));
    match result {
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
        Ok(ts) => {
            for (name, t) in ts {
                if let Err(e) = t {
                    let message = e.to_string();
                    assert!(
                        !message.contains('\n'),
                        "multi-line error for {name}: {message}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
