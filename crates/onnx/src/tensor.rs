//! ONNX tensors and element types: `TensorProto` to [`Array`] (raw little-endian bytes or
//! the typed repeated fields), and ONNX data type codes to kiln dtypes.

use crate::error::OnnxError;
use crate::limits::{MAX_RANK, MAX_TENSOR_ELEMENTS};
use crate::proto::TensorProto;
use crate::proto::tensor_proto::{DataLocation, DataType};
use kiln_ir::{Array, DType, Data};
use prost::Message;

/// An ONNX element type kiln has no dtype for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementTypeError {
    /// A known ONNX type without a kiln dtype (`UINT8`, `FLOAT16`, `STRING`, ...).
    #[error(
        "element type {0} is not supported (kiln has float32, float64, int32, int64, uint32, bool)"
    )]
    Unsupported(&'static str),
    /// A code that names no ONNX type.
    #[error("unknown element type code {0}")]
    Unknown(i32),
}

/// The kiln dtype of an ONNX element type code.
pub fn dtype_of(code: i32) -> Result<DType, ElementTypeError> {
    match DataType::try_from(code) {
        Ok(DataType::Float) => Ok(DType::F32),
        Ok(DataType::Double) => Ok(DType::F64),
        Ok(DataType::Int32) => Ok(DType::I32),
        Ok(DataType::Int64) => Ok(DType::I64),
        Ok(DataType::Uint32) => Ok(DType::U32),
        Ok(DataType::Bool) => Ok(DType::Bool),
        Ok(other) => Err(ElementTypeError::Unsupported(other.as_str_name())),
        Err(_) => Err(ElementTypeError::Unknown(code)),
    }
}

/// The ONNX element type code of a kiln dtype.
pub fn code_of(dtype: DType) -> i32 {
    (match dtype {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::U32 => DataType::Uint32,
        DType::Bool => DataType::Bool,
    }) as i32
}

/// Decodes a serialized `TensorProto` (the `.pb` files of the ONNX test suites).
pub fn read_tensor_pb(bytes: &[u8]) -> Result<Array, OnnxError> {
    let t = TensorProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    to_array(&t)
}

/// The value of a `TensorProto` stored in the model (raw data or typed fields). External
/// data is refused.
pub fn to_array(t: &TensorProto) -> Result<Array, OnnxError> {
    let name = kiln_fs::one_line(t.name.as_deref().unwrap_or_default());
    let err = |message: String| OnnxError::Tensor {
        name: name.clone(),
        message: kiln_fs::one_line(&message),
    };
    if t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty() {
        return Err(err(
            "stores its data in an external file, which kiln does not read; save the model with its data inside".into(),
        ));
    }
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let dtype = dtype_of(t.data_type.unwrap_or(0)).map_err(|e| err(e.to_string()))?;
    if t.dims.len() > MAX_RANK {
        return Err(err(format!("rank {} exceeds {MAX_RANK}", t.dims.len())));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut count: u64 = 1;
    for &d in &t.dims {
        let d = u64::try_from(d).map_err(|_| err(format!("negative dim {d}")))?;
        count = count
            .checked_mul(d)
            .filter(|&c| c <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| err(format!("more than {MAX_TENSOR_ELEMENTS} elements")))?;
        shape.push(usize::try_from(d).map_err(|_| err("dim too large".into()))?);
    }
    let n = usize::try_from(count).map_err(|_| err("too many elements".into()))?;
    if let Some(raw) = &t.raw_data {
        let want = n
            .checked_mul(dtype.size_bytes())
            .ok_or_else(|| err("too many bytes".into()))?;
        if raw.len() != want {
            return Err(err(format!(
                "raw data holds {} bytes, {} of {dtype} need {want}",
                raw.len(),
                n
            )));
        }
        return Array::from_le_bytes(dtype, &shape, raw).map_err(|e| err(e.to_string()));
    }
    let wrong = |field: &str, got: usize| {
        err(format!(
            "{field} holds {got} values, the shape {shape:?} needs {n}"
        ))
    };
    let data = match dtype {
        DType::F32 => {
            if t.float_data.len() != n {
                return Err(wrong("float_data", t.float_data.len()));
            }
            Data::F32(t.float_data.clone())
        }
        DType::F64 => {
            if t.double_data.len() != n {
                return Err(wrong("double_data", t.double_data.len()));
            }
            Data::F64(t.double_data.clone())
        }
        DType::I32 => {
            if t.int32_data.len() != n {
                return Err(wrong("int32_data", t.int32_data.len()));
            }
            Data::I32(t.int32_data.clone())
        }
        DType::I64 => {
            if t.int64_data.len() != n {
                return Err(wrong("int64_data", t.int64_data.len()));
            }
            Data::I64(t.int64_data.clone())
        }
        DType::U32 => {
            if t.uint64_data.len() != n {
                return Err(wrong("uint64_data", t.uint64_data.len()));
            }
            let mut v = Vec::with_capacity(n);
            for &x in &t.uint64_data {
                v.push(
                    u32::try_from(x)
                        .map_err(|_| err(format!("uint32 value {x} is out of range")))?,
                );
            }
            Data::U32(v)
        }
        DType::Bool => {
            if t.int32_data.len() != n {
                return Err(wrong("int32_data", t.int32_data.len()));
            }
            Data::Bool(t.int32_data.iter().map(|&x| x != 0).collect())
        }
    };
    Array::new(&shape, data).map_err(|e| err(e.to_string()))
}

/// A `TensorProto` holding `a` as raw little-endian data.
pub fn from_array(name: &str, a: &Array) -> TensorProto {
    TensorProto {
        dims: a.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(code_of(a.dtype())),
        name: Some(name.to_string()),
        raw_data: Some(a.to_le_bytes()),
        ..TensorProto::default()
    }
}
