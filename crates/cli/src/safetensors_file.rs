//! Reading `.safetensors` files as hostile input: the 8-byte header length first (at
//! most [`MAX_HEADER_BYTES`]), then the header, parsed and validated by the `safetensors`
//! crate, then exactly the data size the header states (at most [`MAX_DATA_BYTES`]);
//! tensors become kiln arrays through `Array::from_le_bytes`, which rejects bool bytes
//! other than 0 and 1. Every error is one line.

use kiln_fs::one_line;
use kiln_ir::{Array, DType};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use std::io::Read;
use std::path::Path;

/// Longest header read, in bytes (the `safetensors` crate's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Largest data section read, in bytes: 32 GiB (the `.kiln` data limit).
pub const MAX_DATA_BYTES: u64 = 32 << 30;

/// Why a `.safetensors` file could not be read.
#[derive(Debug, thiserror::Error)]
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

/// One tensor of a file: its name and either its array or why it cannot be one.
pub type Tensor = (String, Result<Array, String>);

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
    let bytes = read_bounded(&mut file, meta.is_file().then_some(meta.len())).map_err(fail)?;
    tensors(&bytes).map_err(fail)
}

/// The bytes of a whole file from `r` (whose size is `len` when known), read only as far
/// as its header states.
pub fn read_bounded(r: &mut impl Read, len: Option<u64>) -> Result<Vec<u8>, String> {
    let mut start = [0u8; 8];
    let n = kiln_fs::read_up_to(r, &mut start).map_err(|e| format!("reading: {e}"))?;
    if n < 8 {
        return Err(format!("truncated: {n} bytes, the header length needs 8"));
    }
    let header_len = u64::from_le_bytes(start);
    if !(2..=MAX_HEADER_BYTES).contains(&header_len) {
        return Err(format!(
            "header length {header_len} is outside 2..={MAX_HEADER_BYTES}"
        ));
    }
    if let Some(len) = len
        && len < 8 + header_len
    {
        return Err(format!(
            "truncated: {len} bytes, the {header_len}-byte header needs {}",
            8 + header_len
        ));
    }
    let mut bytes = start.to_vec();
    bytes.extend(
        kiln_fs::read_exact_len(&mut r.by_ref().take(header_len), header_len).map_err(
            |e| match e {
                kiln_fs::ReadError::Short { got, .. } => format!(
                    "truncated: {} bytes, the {header_len}-byte header needs {}",
                    8 + got,
                    8 + header_len
                ),
                e => format!("reading the header: {e}"),
            },
        )?,
    );
    let metadata: Metadata = serde_json::from_slice(&bytes[8..])
        .map_err(|e| one_line(&format!("not a valid safetensors header: {e}")))?;
    let data_len = metadata.data_len() as u64;
    if data_len > MAX_DATA_BYTES {
        return Err(format!(
            "data section of {data_len} bytes exceeds the limit {MAX_DATA_BYTES}"
        ));
    }
    let stated = 8 + header_len + data_len;
    if let Some(len) = len
        && len != stated
    {
        return Err(format!(
            "file has {len} bytes, but its header states {stated}"
        ));
    }
    let data = kiln_fs::read_exact_len(r, data_len).map_err(|e| format!("data section: {e}"))?;
    bytes.extend(data);
    Ok(bytes)
}

/// The tensors of a whole file's bytes, sorted by name.
pub fn tensors(bytes: &[u8]) -> Result<Vec<Tensor>, String> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| one_line(&format!("not a valid safetensors file: {e}")))?;
    let mut out: Vec<Tensor> =
        st.tensors()
            .into_iter()
            .map(|(name, view)| {
                let array = match kiln_dtype(view.dtype()) {
                    None => Err(format!("unsupported dtype {:?}", view.dtype())),
                    Some(dt) => Array::from_le_bytes(dt, view.shape(), view.data())
                        .map_err(|e| e.to_string()),
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
        Err(e) => assert!(!e.contains('\n'), "multi-line error: {e}"),
        Ok(ts) => {
            for (name, t) in ts {
                if let Err(e) = t {
                    assert!(!e.contains('\n'), "multi-line error for {name}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
