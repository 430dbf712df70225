//! ONNX tensors and element types: `TensorProto` to [`Array`] (raw little-endian bytes or
//! the typed repeated fields), and ONNX data type codes to kiln dtypes. The ONNX types kiln
//! has no dtype for but can represent exactly ([`Narrow`]: 8- and 16-bit integers, uint64,
//! float16, bfloat16) are carried in a wider kiln dtype.

use crate::error::OnnxError;
use crate::limits::{MAX_RANK, MAX_TENSOR_ELEMENTS};
use crate::proto::TensorProto;
use crate::proto::tensor_proto::{DataLocation, DataType};
use kiln_ir::{Array, DType, Data};
use prost::Message;

/// An ONNX element type kiln has no dtype for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementTypeError {
    /// A known ONNX type kiln cannot carry (`STRING`, the float8 and 4-bit families, ...).
    #[error(
        "element type {0} is not supported (kiln imports float32/64, float16, bfloat16, int8/16/32/64, uint8/16/32/64, bool)"
    )]
    Unsupported(&'static str),
    /// A code that names no ONNX type.
    #[error("unknown element type code {0}")]
    Unknown(i32),
}

/// An ONNX element type without a kiln dtype of its own, carried exactly in a wider one:
/// the 8- and 16-bit integers in `i32` (every result is wrapped back into the type's range),
/// `uint64` as the bits of an `i64` (ordering ops compare it unsigned), `float16` and
/// `bfloat16` in `f32` (every result is rounded to the type's precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Narrow {
    /// `uint8`.
    U8,
    /// `int8`.
    I8,
    /// `uint16`.
    U16,
    /// `int16`.
    I16,
    /// `uint64`.
    U64,
    /// IEEE half precision.
    F16,
    /// bfloat16 (float32's range, 8 significant bits).
    BF16,
}

impl Narrow {
    /// The kiln dtype that carries it.
    pub fn carrier(self) -> DType {
        match self {
            Narrow::U8 | Narrow::I8 | Narrow::U16 | Narrow::I16 => DType::I32,
            Narrow::U64 => DType::I64,
            Narrow::F16 | Narrow::BF16 => DType::F32,
        }
    }

    /// The ONNX name.
    pub fn name(self) -> &'static str {
        match self {
            Narrow::U8 => "uint8",
            Narrow::I8 => "int8",
            Narrow::U16 => "uint16",
            Narrow::I16 => "int16",
            Narrow::U64 => "uint64",
            Narrow::F16 => "float16",
            Narrow::BF16 => "bfloat16",
        }
    }

    /// The value range of an 8- or 16-bit integer type.
    pub fn int_range(self) -> Option<(i64, i64)> {
        match self {
            Narrow::U8 => Some((0, 255)),
            Narrow::I8 => Some((-128, 127)),
            Narrow::U16 => Some((0, 65_535)),
            Narrow::I16 => Some((-32_768, 32_767)),
            _ => None,
        }
    }

    /// Bytes per element in ONNX.
    pub fn bytes(self) -> usize {
        match self {
            Narrow::U8 | Narrow::I8 => 1,
            Narrow::U16 | Narrow::I16 | Narrow::F16 | Narrow::BF16 => 2,
            Narrow::U64 => 8,
        }
    }

    /// Converts one little-endian element to the carrier's `f64`-free representation.
    fn decode(self, b: &[u8]) -> Elem {
        match self {
            Narrow::U8 => Elem::Int(i64::from(b[0])),
            Narrow::I8 => Elem::Int(i64::from(b[0] as i8)),
            Narrow::U16 => Elem::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))),
            Narrow::I16 => Elem::Int(i64::from(i16::from_le_bytes([b[0], b[1]]))),
            Narrow::U64 => Elem::Int(i64::from_le_bytes(b.try_into().unwrap_or_default())),
            Narrow::F16 => Elem::Float(self.float_from_bits(u16::from_le_bytes([b[0], b[1]]))),
            Narrow::BF16 => Elem::Float(self.float_from_bits(u16::from_le_bytes([b[0], b[1]]))),
        }
    }

    fn float_from_bits(self, bits: u16) -> f32 {
        match self {
            Narrow::BF16 => half::bf16::from_bits(bits).to_f32(),
            _ => half::f16::from_bits(bits).to_f32(),
        }
    }
}

enum Elem {
    Int(i64),
    Float(f32),
}

/// An imported element type: the kiln dtype, and the narrower ONNX type it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElemType {
    /// The kiln dtype of the values.
    pub dtype: DType,
    /// The ONNX type when it is narrower than `dtype`.
    pub narrow: Option<Narrow>,
}

impl ElemType {
    /// Bytes per element in ONNX.
    pub fn bytes(self) -> usize {
        self.narrow.map_or(self.dtype.size_bytes(), Narrow::bytes)
    }
}

/// The imported element type of an ONNX element type code.
pub fn elem_type(code: i32) -> Result<ElemType, ElementTypeError> {
    let native = |dtype| {
        Ok(ElemType {
            dtype,
            narrow: None,
        })
    };
    let narrow = |n: Narrow| {
        Ok(ElemType {
            dtype: n.carrier(),
            narrow: Some(n),
        })
    };
    match DataType::try_from(code) {
        Ok(DataType::Float) => native(DType::F32),
        Ok(DataType::Double) => native(DType::F64),
        Ok(DataType::Int32) => native(DType::I32),
        Ok(DataType::Int64) => native(DType::I64),
        Ok(DataType::Uint32) => native(DType::U32),
        Ok(DataType::Bool) => native(DType::Bool),
        Ok(DataType::Uint8) => narrow(Narrow::U8),
        Ok(DataType::Int8) => narrow(Narrow::I8),
        Ok(DataType::Uint16) => narrow(Narrow::U16),
        Ok(DataType::Int16) => narrow(Narrow::I16),
        Ok(DataType::Uint64) => narrow(Narrow::U64),
        Ok(DataType::Float16) => narrow(Narrow::F16),
        Ok(DataType::Bfloat16) => narrow(Narrow::BF16),
        Ok(other) => Err(ElementTypeError::Unsupported(other.as_str_name())),
        Err(_) => Err(ElementTypeError::Unknown(code)),
    }
}

/// The kiln dtype of an ONNX element type code (the carrier of a narrow type).
pub fn dtype_of(code: i32) -> Result<DType, ElementTypeError> {
    elem_type(code).map(|e| e.dtype)
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
    read_typed_tensor_pb(bytes).map(|(a, _)| a)
}

/// [`read_tensor_pb`], with the narrow ONNX type the array carries.
pub fn read_typed_tensor_pb(bytes: &[u8]) -> Result<(Array, Option<Narrow>), OnnxError> {
    let t = TensorProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    to_typed_array(&t)
}

/// The value of a `TensorProto` stored in the model (raw data or typed fields), narrow types
/// in their carrier dtype. External data is refused.
pub fn to_array(t: &TensorProto) -> Result<Array, OnnxError> {
    to_typed_array(t).map(|(a, _)| a)
}

/// [`to_array`], with the narrow ONNX type the array carries.
pub fn to_typed_array(t: &TensorProto) -> Result<(Array, Option<Narrow>), OnnxError> {
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
    let ElemType { dtype, narrow } =
        elem_type(t.data_type.unwrap_or(0)).map_err(|e| err(e.to_string()))?;
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
    if let Some(nw) = narrow {
        let elems: Vec<Elem> = if let Some(raw) = &t.raw_data {
            if raw.len() != n * nw.bytes() {
                return Err(err(format!(
                    "raw data holds {} bytes, {n} of {} need {}",
                    raw.len(),
                    nw.name(),
                    n * nw.bytes()
                )));
            }
            raw.chunks_exact(nw.bytes()).map(|b| nw.decode(b)).collect()
        } else if nw == Narrow::U64 {
            if t.uint64_data.len() != n {
                return Err(err(format!(
                    "uint64_data holds {} values, the shape {shape:?} needs {n}",
                    t.uint64_data.len()
                )));
            }
            t.uint64_data.iter().map(|&x| Elem::Int(x as i64)).collect()
        } else {
            // 8- and 16-bit types are stored one per int32_data entry (floats as their bits).
            if t.int32_data.len() != n {
                return Err(err(format!(
                    "int32_data holds {} values, the shape {shape:?} needs {n}",
                    t.int32_data.len()
                )));
            }
            t.int32_data
                .iter()
                .map(|&x| nw.decode(&(x as u32).to_le_bytes()[..nw.bytes()]))
                .collect()
        };
        let data = match nw.carrier() {
            DType::F32 => Data::F32(
                elems
                    .iter()
                    .map(|e| match e {
                        Elem::Float(f) => *f,
                        Elem::Int(i) => *i as f32,
                    })
                    .collect(),
            ),
            DType::I64 => Data::I64(
                elems
                    .iter()
                    .map(|e| match e {
                        Elem::Int(i) => *i,
                        Elem::Float(f) => *f as i64,
                    })
                    .collect(),
            ),
            _ => Data::I32(
                elems
                    .iter()
                    .map(|e| match e {
                        Elem::Int(i) => *i as i32,
                        Elem::Float(f) => *f as i32,
                    })
                    .collect(),
            ),
        };
        let a = Array::new(&shape, data).map_err(|e| err(e.to_string()))?;
        return Ok((a, narrow));
    }
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
        return Array::from_le_bytes(dtype, &shape, raw)
            .map(|a| (a, None))
            .map_err(|e| err(e.to_string()));
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
    Array::new(&shape, data)
        .map(|a| (a, None))
        .map_err(|e| err(e.to_string()))
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
