//! Host arrays: a dtype, a concrete shape and owned element data.

use crate::dtype::DType;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Typed element storage of an [`Array`].
#[derive(Clone, Debug)]
pub enum Data {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `u32` elements.
    U32(Vec<u32>),
    /// `bool` elements.
    Bool(Vec<bool>),
}

impl Data {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::I32(_) => DType::I32,
            Data::I64(_) => DType::I64,
            Data::U32(_) => DType::U32,
            Data::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::U32(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Error building an [`Array`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrayError {
    /// The element count does not match the shape.
    #[error("array of shape {shape:?} needs {expected} elements, got {got}")]
    Length {
        /// The shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// The byte buffer length is not the shape's size.
    #[error("{dtype} array of shape {shape:?} needs {expected} bytes, got {got}")]
    Bytes {
        /// The dtype.
        dtype: DType,
        /// The shape.
        shape: Vec<usize>,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// A bool element's byte is neither 0 nor 1.
    #[error("bool element {index} is stored as {value}, not 0 or 1")]
    BoolByte {
        /// The element's index.
        index: usize,
        /// The byte found.
        value: u8,
    },
    /// The shape's element count overflows `usize`.
    #[error("shape {0:?} has too many elements")]
    Overflow(Vec<usize>),
    /// The allocator cannot provide the array's memory.
    #[error("{dtype} array of shape {shape:?} cannot be allocated")]
    Alloc {
        /// The dtype.
        dtype: DType,
        /// The shape.
        shape: Vec<usize>,
    },
    /// A value of the wrong dtype was requested.
    #[error("expected a {expected} array, found {got}")]
    DType {
        /// Requested dtype.
        expected: DType,
        /// Actual dtype.
        got: DType,
    },
}

/// Copies `src` into `dst` element for element; both must have one dtype and length.
pub fn copy_data(dst: &mut Data, src: &Data) -> Result<(), ArrayError> {
    if dst.dtype() != src.dtype() || dst.len() != src.len() {
        return Err(ArrayError::Length {
            shape: vec![dst.len()],
            expected: dst.len(),
            got: src.len(),
        });
    }
    match (dst, src) {
        (Data::F32(d), Data::F32(s)) => d.copy_from_slice(s),
        (Data::F64(d), Data::F64(s)) => d.copy_from_slice(s),
        (Data::I32(d), Data::I32(s)) => d.copy_from_slice(s),
        (Data::I64(d), Data::I64(s)) => d.copy_from_slice(s),
        (Data::U32(d), Data::U32(s)) => d.copy_from_slice(s),
        (Data::Bool(d), Data::Bool(s)) => d.copy_from_slice(s),
        (d, s) => {
            return Err(ArrayError::DType {
                expected: d.dtype(),
                got: s.dtype(),
            });
        }
    }
    Ok(())
}

/// A concrete host tensor: dtype, shape and row-major data.
#[derive(Clone)]
pub struct Array {
    shape: Vec<usize>,
    data: Data,
}

fn numel(shape: &[usize]) -> Result<usize, ArrayError> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| ArrayError::Overflow(shape.to_vec()))
}

macro_rules! typed_ctor {
    ($ctor:ident, $get:ident, $t:ty, $variant:ident) => {
        /// Builds an array from a shape and elements of this type.
        pub fn $ctor(shape: &[usize], data: Vec<$t>) -> Result<Array, ArrayError> {
            Array::new(shape, Data::$variant(data))
        }
        /// The elements, if the dtype matches.
        pub fn $get(&self) -> Result<&[$t], ArrayError> {
            match &self.data {
                Data::$variant(v) => Ok(v),
                other => Err(ArrayError::DType {
                    expected: DType::$variant,
                    got: other.dtype(),
                }),
            }
        }
    };
}

impl Array {
    /// Builds an array, checking that the data length matches the shape.
    pub fn new(shape: &[usize], data: Data) -> Result<Array, ArrayError> {
        let expected = numel(shape)?;
        if expected != data.len() {
            return Err(ArrayError::Length {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        Ok(Array {
            shape: shape.to_vec(),
            data,
        })
    }

    typed_ctor!(from_f32, as_f32, f32, F32);
    typed_ctor!(from_f64, as_f64, f64, F64);
    typed_ctor!(from_i32, as_i32, i32, I32);
    typed_ctor!(from_i64, as_i64, i64, I64);
    typed_ctor!(from_u32, as_u32, u32, U32);
    typed_ctor!(from_bool, as_bool, bool, Bool);

    /// A rank-0 array holding `value` converted to `dtype`.
    pub fn scalar(dtype: DType, value: f64) -> Array {
        Array::from_f64_cast(dtype, &[], &[value])
    }

    /// An array of zeros, allocated fallibly: a shape too large for memory is an error.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Array, ArrayError> {
        fn make<T: Clone>(n: usize, zero: T) -> Option<Vec<T>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).ok()?;
            v.resize(n, zero);
            Some(v)
        }
        let n = numel(shape)?;
        let data = match dtype {
            DType::F32 => make(n, 0.0).map(Data::F32),
            DType::F64 => make(n, 0.0).map(Data::F64),
            DType::I32 => make(n, 0).map(Data::I32),
            DType::I64 => make(n, 0).map(Data::I64),
            DType::U32 => make(n, 0).map(Data::U32),
            DType::Bool => make(n, false).map(Data::Bool),
        };
        let data = data.ok_or_else(|| ArrayError::Alloc {
            dtype,
            shape: shape.to_vec(),
        })?;
        Ok(Array {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Builds an array of `dtype` from `f64` values, converting each as a cast would
    /// (floats round to nearest, integers truncate toward zero and wrap, bool is `!= 0`).
    /// The caller guarantees `values.len()` equals the shape's element count.
    pub fn from_f64_cast(dtype: DType, shape: &[usize], values: &[f64]) -> Array {
        let data = match dtype {
            DType::F32 => Data::F32(values.iter().map(|&v| v as f32).collect()),
            DType::F64 => Data::F64(values.to_vec()),
            DType::I32 => Data::I32(values.iter().map(|&v| v as i64 as i32).collect()),
            DType::I64 => Data::I64(values.iter().map(|&v| v as i64).collect()),
            DType::U32 => Data::U32(values.iter().map(|&v| v as i64 as u32).collect()),
            DType::Bool => Data::Bool(values.iter().map(|&v| v != 0.0).collect()),
        };
        Array {
            shape: shape.to_vec(),
            data,
        }
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The concrete shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The typed storage.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Overwrites the elements with `src`, which must have the same dtype and length
    /// (no allocation).
    pub fn copy_from(&mut self, src: &Data) -> Result<(), ArrayError> {
        copy_data(&mut self.data, src)
    }

    /// Consumes the array, returning its storage.
    pub fn into_data(self) -> Data {
        self.data
    }

    /// The same data under another shape with the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<Array, ArrayError> {
        Array::new(shape, self.data.clone())
    }

    /// The one element of a one-element array (a scalar loss, a count) as `f64`, like
    /// PyTorch's `tensor.item()`. Errors ([`ArrayError::Length`]) if the array does not
    /// hold exactly one element.
    ///
    /// ```
    /// let loss = kiln_ir::Array::from_f32(&[], vec![0.25]).unwrap();
    /// assert_eq!(loss.item().unwrap(), 0.25);
    /// assert!(kiln_ir::Array::from_f32(&[2], vec![0.0; 2]).unwrap().item().is_err());
    /// ```
    pub fn item(&self) -> Result<f64, ArrayError> {
        if self.data.len() != 1 {
            return Err(ArrayError::Length {
                shape: self.shape.clone(),
                expected: 1,
                got: self.data.len(),
            });
        }
        Ok(self.to_f64_vec()[0])
    }

    /// Every element converted to `f64` (exact for all dtypes but 64-bit integers beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::F64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }

    /// Every element converted to `i64` (floats truncate toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Data::I64(v) => v.clone(),
            Data::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Data::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
        }
    }

    /// Little-endian bytes of the elements (bool as one byte 0/1).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
        }
    }

    /// Builds an array from little-endian bytes (bool: one byte, 0 or 1; any other byte is
    /// an error, as in the `.kiln` and `.npy` readers).
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Array, ArrayError> {
        let n = numel(shape)?;
        let expected = n
            .checked_mul(dtype.size_bytes())
            .ok_or_else(|| ArrayError::Overflow(shape.to_vec()))?;
        if bytes.len() != expected {
            return Err(ArrayError::Bytes {
                dtype,
                shape: shape.to_vec(),
                expected,
                got: bytes.len(),
            });
        }
        fn chunks<const K: usize, T>(b: &[u8], f: impl Fn([u8; K]) -> T) -> Vec<T> {
            b.chunks_exact(K)
                .map(|c| {
                    let mut a = [0u8; K];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect()
        }
        let data = match dtype {
            DType::F32 => Data::F32(chunks(bytes, f32::from_le_bytes)),
            DType::F64 => Data::F64(chunks(bytes, f64::from_le_bytes)),
            DType::I32 => Data::I32(chunks(bytes, i32::from_le_bytes)),
            DType::I64 => Data::I64(chunks(bytes, i64::from_le_bytes)),
            DType::U32 => Data::U32(chunks(bytes, u32::from_le_bytes)),
            DType::Bool => {
                if let Some(index) = bytes.iter().position(|&b| b > 1) {
                    return Err(ArrayError::BoolByte {
                        index,
                        value: bytes[index],
                    });
                }
                Data::Bool(bytes.iter().map(|&b| b == 1).collect())
            }
        };
        Ok(Array {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Bitwise equality of dtype, shape and every element's bytes (so NaN equals itself).
    pub fn bit_eq(&self, other: &Array) -> bool {
        self.shape == other.shape
            && self.dtype() == other.dtype()
            && self.to_le_bytes() == other.to_le_bytes()
    }
}

impl PartialEq for Array {
    fn eq(&self, other: &Array) -> bool {
        self.bit_eq(other)
    }
}
impl Eq for Array {}
impl Hash for Array {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shape.hash(state);
        self.dtype().hash(state);
        self.to_le_bytes().hash(state);
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals = self.to_f64_vec();
        let shown: Vec<String> = vals.iter().take(8).map(|v| format!("{v}")).collect();
        write!(
            f,
            "Array<{}{:?}>[{}{}]",
            self.dtype(),
            self.shape,
            shown.join(", "),
            if vals.len() > 8 { ", ..." } else { "" }
        )
    }
}
