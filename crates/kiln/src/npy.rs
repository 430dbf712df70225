//! Reading and writing `.npy` files for every kiln dtype (`f32, f64, i32, i64, u32, bool`),
//! either byte order, C or Fortran layout on read. Writes are atomic (temp file + rename).

use crate::error::Error;
use kiln_ir::{Array, DType};
use npyz::WriterBuilder;
use std::io::{Read, Write};
use std::path::Path;

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Npy {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a `.npy` file.
pub fn read(path: impl AsRef<Path>) -> Result<Array, Error> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    from_bytes(&bytes).map_err(|e| match e {
        Error::Npy { message, .. } => err(path, message),
        other => other,
    })
}

/// Parses `.npy` bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<Array, Error> {
    let p = Path::new("<bytes>");
    let file =
        npyz::NpyFile::new(bytes).map_err(|e| err(p, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = file
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| err(p, "dimension too large")))
        .collect::<Result<_, _>>()?;
    let fortran = file.order() == npyz::Order::Fortran;
    let npyz::DType::Plain(ts) = file.dtype() else {
        return Err(err(p, "structured dtypes are not supported"));
    };
    let ts_s = ts.to_string();
    let code = ts_s.trim_start_matches(['<', '>', '|', '=']);
    let io = |e: std::io::Error| err(p, format!("reading data: {e}"));
    let arr = match code {
        "f4" => Array::from_f32(&shape, file.into_vec::<f32>().map_err(io)?)?,
        "f8" => Array::from_f64(&shape, file.into_vec::<f64>().map_err(io)?)?,
        "i4" => Array::from_i32(&shape, file.into_vec::<i32>().map_err(io)?)?,
        "i8" => Array::from_i64(&shape, file.into_vec::<i64>().map_err(io)?)?,
        "u4" => Array::from_u32(&shape, file.into_vec::<u32>().map_err(io)?)?,
        "b1" => Array::from_bool(&shape, file.into_vec::<bool>().map_err(io)?)?,
        other => {
            return Err(err(
                p,
                format!("dtype `{other}` is not supported (expected f4, f8, i4, i8, u4 or b1)"),
            ));
        }
    };
    Ok(if fortran { fortran_to_c(&arr) } else { arr })
}

/// Reorders column-major data into row-major.
fn fortran_to_c(a: &Array) -> Array {
    let shape = a.shape();
    let n = a.len();
    let bytes = a.to_le_bytes();
    let es = a.dtype().size_bytes();
    let mut out = vec![0u8; bytes.len()];
    let rank = shape.len();
    let mut idx = vec![0usize; rank];
    for c_flat in 0..n {
        let mut f_off = 0usize;
        let mut stride = 1usize;
        for (ax, &i) in idx.iter().enumerate() {
            f_off += i * stride;
            stride *= shape[ax];
        }
        out[c_flat * es..(c_flat + 1) * es].copy_from_slice(&bytes[f_off * es..(f_off + 1) * es]);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Array::from_le_bytes(a.dtype(), shape, &out).unwrap_or_else(|_| a.clone())
}

/// Serialises an array to `.npy` bytes (little-endian, C order).
pub fn to_bytes(a: &Array) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let p = Path::new("<bytes>");
    let io = |e: std::io::Error| err(p, format!("writing: {e}"));
    macro_rules! put {
        ($t:ty, $v:expr) => {{
            let mut w = npyz::WriteOptions::<$t>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut buf)
                .begin_nd()
                .map_err(io)?;
            w.extend($v.iter().copied()).map_err(io)?;
            w.finish().map_err(io)?;
        }};
    }
    match a.data() {
        kiln_ir::Data::F32(v) => put!(f32, v),
        kiln_ir::Data::F64(v) => put!(f64, v),
        kiln_ir::Data::I32(v) => put!(i32, v),
        kiln_ir::Data::I64(v) => put!(i64, v),
        kiln_ir::Data::U32(v) => put!(u32, v),
        kiln_ir::Data::Bool(v) => put!(bool, v),
    }
    Ok(buf)
}

/// Writes an array to a `.npy` file atomically (a temp file in the same directory, then rename).
pub fn write(path: impl AsRef<Path>, a: &Array) -> Result<(), Error> {
    let path = path.as_ref();
    let bytes = to_bytes(a)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| err(path, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path, e.to_string()));
    }
    Ok(())
}

/// Reads a `.npy` from any reader.
pub fn read_from(mut r: impl Read) -> Result<Array, Error> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .map_err(|e| err(Path::new("<reader>"), e.to_string()))?;
    from_bytes(&bytes)
}

/// The dtype kiln uses for a NumPy type string such as `<f4`, if supported.
pub fn dtype_of(type_str: &str) -> Option<DType> {
    match type_str.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => Some(DType::F32),
        "f8" => Some(DType::F64),
        "i4" => Some(DType::I32),
        "i8" => Some(DType::I64),
        "u4" => Some(DType::U32),
        "b1" => Some(DType::Bool),
        _ => None,
    }
}
