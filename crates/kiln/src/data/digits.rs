//! The UCI optical-recognition handwritten digits (8×8 images, 1,797 samples, 10 classes),
//! bundled as `fixtures/data/digits.csv` (scikit-learn's `digits.csv.gz`, decompressed; see
//! `fixtures/data/README.md` for the licence and attribution).
//!
//! Each CSV row holds 64 pixel counts in `0..=16` (row-major 8×8) and the class label. The
//! fixed train/test split: sample `i` is in the test set when `i % 5 == 4` (359 samples),
//! otherwise in the training set (1,438 samples).
//!
//! ```
//! use kiln::data::digits;
//!
//! let (train, test) = digits::split(digits::SAMPLES);
//! assert_eq!((train.len(), test.len()), (1438, 359));
//! assert_eq!(test[..2], [4, 9]);
//!
//! // From a checkout of the repository (the file is not part of the published crate):
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/data/digits.csv");
//! let all = digits::load(path)?;
//! assert_eq!(all.images.shape(), &[digits::SAMPLES, digits::FEATURES]);
//! let test_set = all.subset(&test)?;
//! assert_eq!(test_set.len(), 359);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{CsvOptions, DataError, TensorDataset, load_csv, take_rows};
use kiln_ir::{Array, DType};
use std::path::Path;

/// Number of samples in the bundled file.
pub const SAMPLES: usize = 1797;
/// Pixels per image.
pub const FEATURES: usize = 64;
/// Number of classes.
pub const CLASSES: usize = 10;

/// The digits, one row per sample.
#[derive(Clone, Debug)]
pub struct Digits {
    /// Pixel counts `f32[n, 64]` in `0..=16`, unscaled.
    pub images: Array,
    /// Classes `i64[n]` in `0..10`.
    pub labels: Array,
}

impl Digits {
    /// The samples `indices` (copied). Errors ([`DataError::Index`]) if one is out of range.
    pub fn subset(&self, indices: &[usize]) -> Result<Digits, DataError> {
        Ok(Digits {
            images: take_rows(&self.images, indices)?,
            labels: take_rows(&self.labels, indices)?,
        })
    }

    /// Images scaled to `[0, 1]` (divided by 16) and labels, as a dataset. Cannot fail for
    /// a `Digits` made by [`load`] or [`Digits::subset`].
    pub fn to_dataset(&self) -> Result<TensorDataset, DataError> {
        let scaled: Vec<f32> = self.images.as_f32()?.iter().map(|v| v / 16.0).collect();
        let images = Array::from_f32(self.images.shape(), scaled)?;
        TensorDataset::new(vec![images, self.labels.clone()])
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Reads a digits CSV (64 pixel columns then the label) such as `fixtures/data/digits.csv`.
/// Errors if the file cannot be read or parsed, or a row does not have 65 columns.
pub fn load(path: impl AsRef<Path>) -> Result<Digits, DataError> {
    let table = load_csv(
        path,
        &CsvOptions {
            dtype: DType::F64,
            ..CsvOptions::default()
        },
    )?;
    let [rows, cols] = table.shape() else {
        return Err(DataError::Shape("digits: expected a table".into()));
    };
    let (rows, cols) = (*rows, *cols);
    if cols != FEATURES + 1 {
        return Err(DataError::Shape(format!(
            "digits: expected {} columns (64 pixels and the label), found {cols}",
            FEATURES + 1
        )));
    }
    let v = table.as_f64()?;
    let mut images = Vec::with_capacity(rows * FEATURES);
    let mut labels = Vec::with_capacity(rows);
    for r in v.chunks_exact(cols) {
        images.extend(r[..FEATURES].iter().map(|&p| p as f32));
        let label = r[FEATURES];
        if !(0.0..CLASSES as f64).contains(&label) {
            return Err(DataError::Shape(format!(
                "digits: label {label} is not a class in 0..{CLASSES}"
            )));
        }
        labels.push(label as i64);
    }
    Ok(Digits {
        images: Array::from_f32(&[rows, FEATURES], images)?,
        labels: Array::from_i64(&[rows], labels)?,
    })
}

/// The fixed split of `n` samples: `(train, test)` indices, test when `i % 5 == 4`.
pub fn split(n: usize) -> (Vec<usize>, Vec<usize>) {
    (0..n).partition(|i| i % 5 != 4)
}
