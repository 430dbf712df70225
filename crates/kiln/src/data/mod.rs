//! The data pipeline: the [`Dataset`] trait, in-memory [`TensorDataset`]s, a CSV loader
//! (`.npy` files are read with [`crate::npy::read`]), the bundled UCI digits ([`digits`]), [`DataLoader`] (batching, seeded shuffle,
//! `drop_last`, background prefetch) and [`padded_batch`] for variable-length sequences.
//!
//! A sample is a list of fields (`Vec<Array>`, e.g. features and label); a batch stacks each
//! field along a new leading axis. Ragged fields are never truncated: stacking samples of
//! different shapes is an error unless the field is padded explicitly
//! ([`DataLoader::pad_field`], [`padded_batch`]), which also returns the lengths and a mask.
//!
//! ```
//! use kiln::data::{DataLoader, TensorDataset};
//! use kiln::Array;
//! use std::sync::Arc;
//! let x = Array::from_f32(&[5, 2], (0..10).map(|v| v as f32).collect()).unwrap();
//! let y = Array::from_i64(&[5], vec![0, 1, 0, 1, 0]).unwrap();
//! let ds = Arc::new(TensorDataset::new(vec![x, y]).unwrap());
//! let loader = DataLoader::new(ds, 2).unwrap().shuffle(7).drop_last(true);
//! let batches: Vec<_> = loader.epoch(0).collect::<Result<_, _>>().unwrap();
//! assert_eq!(batches.len(), 2);
//! assert_eq!(batches[0].fields[0].shape(), &[2, 2]);
//! ```

mod csv;
pub mod digits;
mod loader;
mod pad;

pub use csv::{CsvOptions, load_csv};
pub use loader::{Batch, Batches, DataLoader, Padding};
pub use pad::{PaddedBatch, padded_batch};

use kiln_ir::{Array, ArrayError, DType, Data};

/// Errors of the data pipeline (`Debug` prints the `Display` sentence).
#[derive(thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A text file has malformed content.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Shapes or dtypes that cannot go together (ragged fields, mismatched lengths, ...).
    #[error("{0}")]
    Shape(String),
    /// A sample index beyond the dataset.
    #[error("sample index {index} is out of range for a dataset of {len} samples")]
    Index {
        /// The index.
        index: usize,
        /// The dataset size.
        len: usize,
    },
    /// An invalid setting (batch size 0, ...).
    #[error("{0}")]
    Config(String),
    /// The prefetch thread stopped without finishing the epoch.
    #[error("the prefetch thread stopped unexpectedly")]
    Worker,
    /// An array could not be built.
    #[error(transparent)]
    Array(#[from] ArrayError),
}

crate::debug_fmt::debug_as_display!(DataError);

/// A source of samples addressed by index. `Send + Sync` so a loader can read it from its
/// prefetch thread.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// True if there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index`: one array per field.
    fn get(&self, index: usize) -> Result<Vec<Array>, DataError>;

    /// The samples `indices`, each field stacked along a new leading axis. The default
    /// stacks [`Dataset::get`]'s results; an error names a ragged field.
    fn get_batch(&self, indices: &[usize]) -> Result<Vec<Array>, DataError> {
        let samples: Vec<Vec<Array>> = indices
            .iter()
            .map(|&i| self.get(i))
            .collect::<Result<_, _>>()?;
        collate(&samples)
    }
}

/// Stacks every field of `samples` along a new leading axis. Errors ([`DataError::Shape`])
/// on an empty batch, samples with different numbers of fields, or a field whose samples
/// differ in dtype or shape (nothing is truncated or padded implicitly).
pub fn collate(samples: &[Vec<Array>]) -> Result<Vec<Array>, DataError> {
    let Some(first) = samples.first() else {
        return Err(DataError::Shape("cannot collate an empty batch".into()));
    };
    (0..first.len())
        .map(|f| {
            let field: Vec<&Array> = samples
                .iter()
                .map(|s| {
                    s.get(f).ok_or_else(|| {
                        DataError::Shape(format!(
                            "samples have different numbers of fields ({} and {})",
                            first.len(),
                            s.len()
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            stack(&field).map_err(|e| match e {
                DataError::Shape(m) => DataError::Shape(format!("field {f}: {m}")),
                other => other,
            })
        })
        .collect()
}

/// Stacks arrays of one dtype and shape along a new leading axis. Errors
/// ([`DataError::Shape`]) on zero arrays or arrays that differ in dtype or shape.
pub fn stack(arrays: &[&Array]) -> Result<Array, DataError> {
    let Some(first) = arrays.first() else {
        return Err(DataError::Shape("cannot stack zero arrays".into()));
    };
    for (i, a) in arrays.iter().enumerate() {
        if a.dtype() != first.dtype() || a.shape() != first.shape() {
            return Err(DataError::Shape(format!(
                "sample {i} is {}{:?} but sample 0 is {}{:?}; pad variable-length fields \
                 explicitly (DataLoader::pad_field or padded_batch)",
                a.dtype(),
                a.shape(),
                first.dtype(),
                first.shape()
            )));
        }
    }
    let mut shape = vec![arrays.len()];
    shape.extend_from_slice(first.shape());
    let parts: Vec<&Data> = arrays.iter().map(|a| a.data()).collect();
    Ok(Array::new(&shape, concat_data(first.dtype(), &parts))?)
}

/// Concatenates element storage of one dtype.
fn concat_data(dtype: DType, parts: &[&Data]) -> Data {
    macro_rules! cat {
        ($variant:ident) => {
            Data::$variant(
                parts
                    .iter()
                    .flat_map(|d| match d {
                        Data::$variant(v) => v.as_slice(),
                        _ => &[],
                    })
                    .copied()
                    .collect(),
            )
        };
    }
    match dtype {
        DType::F32 => cat!(F32),
        DType::F64 => cat!(F64),
        DType::I32 => cat!(I32),
        DType::I64 => cat!(I64),
        DType::U32 => cat!(U32),
        DType::Bool => cat!(Bool),
    }
}

/// Rows `indices` of `a` along its first axis (`a[indices]`), as one array (a copy).
/// Errors on a rank-0 array ([`DataError::Shape`]) or an index out of range
/// ([`DataError::Index`]).
pub fn take_rows(a: &Array, indices: &[usize]) -> Result<Array, DataError> {
    let Some((&n, rest)) = a.shape().split_first() else {
        return Err(DataError::Shape(
            "cannot index rows of a rank-0 array".into(),
        ));
    };
    let row: usize = rest.iter().product();
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        return Err(DataError::Index { index: bad, len: n });
    }
    macro_rules! take {
        ($v:expr, $variant:ident) => {
            Data::$variant(
                indices
                    .iter()
                    .flat_map(|&i| $v[i * row..(i + 1) * row].iter().copied())
                    .collect(),
            )
        };
    }
    let data = match a.data() {
        Data::F32(v) => take!(v, F32),
        Data::F64(v) => take!(v, F64),
        Data::I32(v) => take!(v, I32),
        Data::I64(v) => take!(v, I64),
        Data::U32(v) => take!(v, U32),
        Data::Bool(v) => take!(v, Bool),
    };
    let mut shape = vec![indices.len()];
    shape.extend_from_slice(rest);
    Ok(Array::new(&shape, data)?)
}

/// Row `index` of `a` along its first axis, without that axis. Errors as [`take_rows`].
pub fn row(a: &Array, index: usize) -> Result<Array, DataError> {
    let r = take_rows(a, &[index])?;
    Ok(r.reshaped(&a.shape()[1..])?)
}

/// A dataset of in-memory arrays that share their first axis (PyTorch's `TensorDataset`):
/// sample `i` is row `i` of every field.
#[derive(Clone, Debug)]
pub struct TensorDataset {
    fields: Vec<Array>,
    len: usize,
}

impl TensorDataset {
    /// A dataset over `fields`, which must all have rank >= 1 and the same first dimension;
    /// otherwise (or with no field at all) the error is a [`DataError::Shape`] naming the
    /// field.
    pub fn new(fields: Vec<Array>) -> Result<TensorDataset, DataError> {
        let Some(first) = fields.first() else {
            return Err(DataError::Shape(
                "a TensorDataset needs at least one field".into(),
            ));
        };
        let len =
            first.shape().first().copied().ok_or_else(|| {
                DataError::Shape("TensorDataset fields must have rank >= 1".into())
            })?;
        for (i, f) in fields.iter().enumerate() {
            if f.shape().first() != Some(&len) {
                return Err(DataError::Shape(format!(
                    "field {i} has shape {:?}, but field 0 has {len} samples",
                    f.shape()
                )));
            }
        }
        Ok(TensorDataset { fields, len })
    }

    /// The fields.
    pub fn fields(&self) -> &[Array] {
        &self.fields
    }

    /// The samples `indices` as a new dataset (a split or subset; the rows are copied).
    /// Errors ([`DataError::Index`]) if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Result<TensorDataset, DataError> {
        let fields = self
            .fields
            .iter()
            .map(|f| take_rows(f, indices))
            .collect::<Result<_, _>>()?;
        TensorDataset::new(fields)
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Result<Vec<Array>, DataError> {
        self.fields.iter().map(|f| row(f, index)).collect()
    }

    fn get_batch(&self, indices: &[usize]) -> Result<Vec<Array>, DataError> {
        self.fields.iter().map(|f| take_rows(f, indices)).collect()
    }
}

/// A dataset of samples held as a list, for ragged data (variable-length sequences).
#[derive(Clone, Debug, Default)]
pub struct VecDataset {
    samples: Vec<Vec<Array>>,
}

impl VecDataset {
    /// A dataset over explicit samples (one `Vec<Array>` of fields each).
    pub fn new(samples: Vec<Vec<Array>>) -> VecDataset {
        VecDataset { samples }
    }
}

impl Dataset for VecDataset {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn get(&self, index: usize) -> Result<Vec<Array>, DataError> {
        self.samples.get(index).cloned().ok_or(DataError::Index {
            index,
            len: self.samples.len(),
        })
    }
}
