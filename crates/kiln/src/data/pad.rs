//! Padding variable-length sequences into one batch, with their lengths and a mask.

use super::DataError;
use kiln_ir::{Array, DType, Data};

/// A batch of variable-length sequences padded to one length.
#[derive(Clone, Debug, PartialEq)]
pub struct PaddedBatch {
    /// The sequences `[B, L, ...]`, padded at the end of axis 1.
    pub data: Array,
    /// The true length of each sequence, `i64[B]`.
    pub lengths: Array,
    /// `bool[B, L]`: true at the real (unpadded) positions.
    pub mask: Array,
}

/// Pads sequences (arrays `[len_i, ...]` of one dtype and one trailing shape) at the end of
/// their first axis with `pad_value` to the longest length, or to `pad_to` when given (a
/// fixed length for a compiled shape). A sequence longer than `pad_to` is an error: nothing
/// is truncated.
pub fn padded_batch(
    seqs: &[Array],
    pad_value: f64,
    pad_to: Option<usize>,
) -> Result<PaddedBatch, DataError> {
    let Some(first) = seqs.first() else {
        return Err(DataError::Shape(
            "padded_batch needs at least one sequence".into(),
        ));
    };
    let Some((_, tail)) = first.shape().split_first() else {
        return Err(DataError::Shape(
            "padded_batch: sequences must have rank >= 1 (length first)".into(),
        ));
    };
    let mut lengths = Vec::with_capacity(seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        match s.shape().split_first() {
            Some((&len, t)) if t == tail && s.dtype() == first.dtype() => lengths.push(len),
            _ => {
                return Err(DataError::Shape(format!(
                    "padded_batch: sequence {i} is {}{:?}, expected {}[len, {}]",
                    s.dtype(),
                    s.shape(),
                    first.dtype(),
                    tail.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let target = match pad_to {
        Some(l) if l < longest => {
            let (i, len) = lengths
                .iter()
                .enumerate()
                .find(|&(_, &n)| n > l)
                .map_or((0, longest), |(i, &n)| (i, n));
            return Err(DataError::Shape(format!(
                "padded_batch: sequence {i} has length {len}, longer than pad_to = {l} \
                 (sequences are never truncated)"
            )));
        }
        Some(l) => l,
        None => longest,
    };
    let row: usize = tail.iter().product();
    let b = seqs.len();
    let mut shape = vec![b, target];
    shape.extend_from_slice(tail);
    let fill = Array::from_f64_cast(first.dtype(), &[1], &[pad_value]);
    macro_rules! pad {
        ($variant:ident) => {{
            let f = match fill.data() {
                Data::$variant(v) => v[0],
                _ => Default::default(),
            };
            let mut out = Vec::with_capacity(b * target * row);
            for (s, &n) in seqs.iter().zip(&lengths) {
                if let Data::$variant(v) = s.data() {
                    out.extend_from_slice(v);
                    out.resize(out.len() + (target - n) * row, f);
                }
            }
            Data::$variant(out)
        }};
    }
    let data = match first.dtype() {
        DType::F32 => pad!(F32),
        DType::F64 => pad!(F64),
        DType::I32 => pad!(I32),
        DType::I64 => pad!(I64),
        DType::U32 => pad!(U32),
        DType::Bool => pad!(Bool),
    };
    let mask: Vec<bool> = lengths
        .iter()
        .flat_map(|&n| (0..target).map(move |j| j < n))
        .collect();
    Ok(PaddedBatch {
        data: Array::new(&shape, data)?,
        lengths: Array::from_i64(&[b], lengths.iter().map(|&n| n as i64).collect())?,
        mask: Array::from_bool(&[b, target], mask)?,
    })
}
