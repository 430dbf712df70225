//! Values flowing between imported nodes: a graph tensor, plus what the importer knows about
//! it at import time (a constant's elements, or a shape vector's possibly symbolic dims) so
//! shape sub-graphs (`Shape → Gather → Concat → Reshape`) resolve while importing.

use crate::tensor::Narrow;
use kiln::{Graph, Tensor};
use kiln_ir::{Array, DType, Data, Dim, Shape};

/// What is known about a value while importing.
#[derive(Clone, Debug)]
pub enum Known {
    /// Nothing beyond its type: a run-time value.
    Nothing,
    /// Its elements (a constant, an integer initializer, or a folded computation).
    Array(Array),
    /// An `int64` (or `int32`) vector, or scalar when `scalar`, whose elements are dims,
    /// some symbolic: the output of `Shape` and of the arithmetic and casts done on it.
    Dims {
        /// The elements.
        dims: Vec<Dim>,
        /// True for a rank-0 value (one element).
        scalar: bool,
    },
}

/// One value of the ONNX graph.
#[derive(Clone, Debug)]
pub struct Value {
    /// Always `Some` when `known` is `Nothing` (both private, set only by the constructors).
    tensor: Option<Tensor>,
    known: Known,
    /// Its dtype.
    pub dtype: DType,
    /// Its (possibly symbolic) shape.
    pub shape: Shape,
    /// The narrower ONNX element type `dtype` carries, if any.
    pub narrow: Option<Narrow>,
}

impl Value {
    /// A run-time tensor.
    pub fn tensor(t: Tensor) -> Value {
        Value {
            dtype: t.dtype(),
            shape: t.shape(),
            tensor: Some(t),
            known: Known::Nothing,
            narrow: None,
        }
    }

    /// The same value, marked as carrying the ONNX type `narrow`.
    pub fn with_narrow(mut self, narrow: Option<Narrow>) -> Value {
        self.narrow = narrow;
        self
    }

    /// A tensor whose elements are known (it is already a constant in the graph, or `t`
    /// computes exactly `a`).
    pub fn constant(t: Tensor, a: Array) -> Value {
        Value {
            dtype: a.dtype(),
            shape: Shape::known(a.shape()),
            tensor: Some(t),
            known: Known::Array(a),
            narrow: None,
        }
    }

    /// A known array, put in the graph as a constant when first used as a tensor.
    pub fn array(a: Array) -> Value {
        Value {
            dtype: a.dtype(),
            shape: Shape::known(a.shape()),
            tensor: None,
            known: Known::Array(a),
            narrow: None,
        }
    }

    /// An `int64` vector of dims (a scalar when `scalar`). All-known dims become an array.
    pub fn dims(dims: Vec<Dim>, scalar: bool) -> Value {
        Value::dims_of(dims, scalar, DType::I64)
    }

    /// A vector of dims with the integer dtype `dtype` (`int64`, or `int32` for models that
    /// cast their shapes): all-known dims become an array.
    pub fn dims_of(dims: Vec<Dim>, scalar: bool, dtype: DType) -> Value {
        let dtype = if dtype == DType::I32 {
            DType::I32
        } else {
            DType::I64
        };
        let fits = |k: u64| match dtype {
            DType::I32 => i32::try_from(k).is_ok(),
            _ => i64::try_from(k).is_ok(),
        };
        if let Some(v) = dims
            .iter()
            .map(|d| d.as_known().filter(|&k| fits(k)).map(|k| k as i64))
            .collect::<Option<Vec<i64>>>()
        {
            let shape: &[usize] = if scalar { &[] } else { &[v.len()] };
            let data = match dtype {
                DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
                _ => Data::I64(v),
            };
            if let Ok(a) = Array::new(shape, data) {
                return Value::array(a);
            }
        }
        Value {
            dtype,
            shape: if scalar {
                Shape::scalar()
            } else {
                Shape::new([dims.len() as u64])
            },
            tensor: None,
            known: Known::Dims { dims, scalar },
            narrow: None,
        }
    }

    /// Dims derived from this value's dims (a slice, gather, concat, reshape of them): the
    /// result keeps this value's integer dtype.
    pub fn derived_dims(&self, dims: Vec<Dim>, scalar: bool) -> Value {
        Value::dims_of(dims, scalar, self.dtype)
    }

    /// What is known at import time.
    pub fn known(&self) -> &Known {
        &self.known
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// The known array, if any.
    pub fn as_array(&self) -> Option<&Array> {
        match &self.known {
            Known::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value as integers, when its elements are known integers.
    pub fn as_ints(&self) -> Option<Vec<i64>> {
        let a = self.as_array()?;
        (a.dtype().is_int() || a.dtype() == DType::U32).then(|| a.to_i64_vec())
    }

    /// The value as dims (a vector or scalar of non-negative integers, possibly symbolic).
    pub fn as_dims(&self) -> Option<Vec<Dim>> {
        match &self.known {
            Known::Dims { dims, .. } => Some(dims.clone()),
            Known::Array(_) => self
                .as_ints()?
                .into_iter()
                .map(|v| u64::try_from(v).ok().map(Dim::known))
                .collect(),
            Known::Nothing => None,
        }
    }

    /// The graph tensor, built on first use for import-time values.
    pub fn tensor_in(&mut self, g: &Graph) -> Tensor {
        if let Some(t) = &self.tensor {
            return t.clone();
        }
        let t = match &self.known {
            Known::Array(a) => g.constant(a.clone()),
            Known::Dims { dims, scalar } => {
                let dtype = self.dtype;
                let parts: Vec<Tensor> = dims
                    .iter()
                    .map(|d| match d.as_known() {
                        Some(k) => g.full([1usize], k as f64, dtype),
                        None => g.ones(Shape::new([d.clone()]), dtype).sum(0i64, true),
                    })
                    .collect();
                let refs: Vec<&Tensor> = parts.iter().collect();
                let v = if refs.is_empty() {
                    g.zeros([0usize], dtype)
                } else {
                    Tensor::cat(&refs, 0)
                };
                if *scalar {
                    v.reshape(Shape::scalar())
                } else {
                    v
                }
            }
            Known::Nothing => unreachable!("constructors give every run-time value its tensor"),
        };
        self.tensor = Some(t.clone());
        t
    }
}
