//! Computation values (every dtype widened to `f64`, `i64` or `bool`) and index helpers.
//!
//! Arithmetic runs on the widened values: floats in `f64`, then rounded once to the node's
//! dtype; integers in `i64` with wrapping arithmetic, then truncated to the node's dtype
//! (so `i32`/`u32` wrap like two's complement); booleans as `bool`.

use crate::error::EvalError;
use kiln_ir::{Array, DType, Data};

/// Widened element values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Vals {
    /// `f32`/`f64` elements as `f64` (exact).
    F(Vec<f64>),
    /// `i32`/`i64`/`u32` elements as `i64` (exact).
    I(Vec<i64>),
    /// `bool` elements.
    B(Vec<bool>),
}

impl Vals {
    /// Widens an array's elements.
    pub(crate) fn of(a: &Array) -> Vals {
        match a.data() {
            Data::F32(v) => Vals::F(v.iter().map(|&x| f64::from(x)).collect()),
            Data::F64(v) => Vals::F(v.clone()),
            Data::I32(v) => Vals::I(v.iter().map(|&x| i64::from(x)).collect()),
            Data::I64(v) => Vals::I(v.clone()),
            Data::U32(v) => Vals::I(v.iter().map(|&x| i64::from(x)).collect()),
            Data::Bool(v) => Vals::B(v.clone()),
        }
    }

    /// Narrows to `dtype`: floats round to nearest, integers wrap.
    pub(crate) fn into_array(
        self,
        op: &'static str,
        dtype: DType,
        shape: &[usize],
    ) -> Result<Array, EvalError> {
        let data = match (self, dtype) {
            (Vals::F(v), DType::F32) => Data::F32(v.iter().map(|&x| x as f32).collect()),
            (Vals::F(v), DType::F64) => Data::F64(v),
            (Vals::I(v), DType::I32) => Data::I32(v.iter().map(|&x| x as i32).collect()),
            (Vals::I(v), DType::I64) => Data::I64(v),
            (Vals::I(v), DType::U32) => Data::U32(v.iter().map(|&x| x as u32).collect()),
            (Vals::B(v), DType::Bool) => Data::Bool(v),
            (vals, dtype) => {
                return Err(EvalError::malformed(
                    op,
                    format!("computed {} values for a {dtype} result", vals.kind()),
                ));
            }
        };
        Ok(Array::new(shape, data)?)
    }

    fn kind(&self) -> &'static str {
        match self {
            Vals::F(_) => "float",
            Vals::I(_) => "integer",
            Vals::B(_) => "bool",
        }
    }
}

/// Number of elements of a concrete shape, refusing shapes whose data could not be allocated.
pub(crate) fn numel(shape: &[usize]) -> Result<usize, EvalError> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize))
        .ok_or_else(|| EvalError::from(kiln_ir::ArrayError::Overflow(shape.to_vec())))
}

/// Row-major strides of a concrete shape, in elements.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    kiln_ir::shape::strides(shape)
}

/// Strides that read an array of shape `from` broadcast (NumPy rules) to shape `to`:
/// trailing axes align, size-1 and missing axes get stride 0.
pub(crate) fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<isize> {
    let st = strides(from);
    let off = to.len() - from.len().min(to.len());
    (0..to.len())
        .map(|i| match i.checked_sub(off) {
            Some(j) if j < from.len() && from[j] != 1 => st[j] as isize,
            _ => 0,
        })
        .collect()
}

/// For every element of `shape` in row-major order, the offset `base + Σ idx[i] * strides[i]`.
/// The caller guarantees every offset is non-negative.
pub(crate) fn view_offsets(shape: &[usize], base: isize, strides: &[isize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let rank = shape.len();
    let mut idx = vec![0usize; rank];
    let mut off = base;
    for _ in 0..n {
        out.push(off as usize);
        let mut ax = rank;
        while ax > 0 {
            ax -= 1;
            idx[ax] += 1;
            off += strides[ax];
            if idx[ax] < shape[ax] {
                break;
            }
            off -= strides[ax] * shape[ax] as isize;
            idx[ax] = 0;
        }
    }
    out
}

/// Calls `f` with every multi-index of `shape` in row-major order.
pub(crate) fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx);
        let mut ax = shape.len();
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}

/// The smallest and largest value of an integer dtype, as `i64`.
pub(crate) fn int_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        DType::U32 => (0, i64::from(u32::MAX)),
        DType::I64 | DType::F32 | DType::F64 | DType::Bool => (i64::MIN, i64::MAX),
    }
}

/// Runs `$body` with `$get` bound to the typed element getter of `$dtype` (`Array::as_f32`,
/// ...) and `$wrap` to the matching `Data` constructor.
macro_rules! typed {
    ($dtype:expr, |$get:ident, $wrap:ident| $body:expr) => {
        match $dtype {
            kiln_ir::DType::F32 => {
                let $get = kiln_ir::Array::as_f32;
                let $wrap = kiln_ir::Data::F32;
                $body
            }
            kiln_ir::DType::F64 => {
                let $get = kiln_ir::Array::as_f64;
                let $wrap = kiln_ir::Data::F64;
                $body
            }
            kiln_ir::DType::I32 => {
                let $get = kiln_ir::Array::as_i32;
                let $wrap = kiln_ir::Data::I32;
                $body
            }
            kiln_ir::DType::I64 => {
                let $get = kiln_ir::Array::as_i64;
                let $wrap = kiln_ir::Data::I64;
                $body
            }
            kiln_ir::DType::U32 => {
                let $get = kiln_ir::Array::as_u32;
                let $wrap = kiln_ir::Data::U32;
                $body
            }
            kiln_ir::DType::Bool => {
                let $get = kiln_ir::Array::as_bool;
                let $wrap = kiln_ir::Data::Bool;
                $body
            }
        }
    };
}
pub(crate) use typed;

/// The elements of `x` at `offsets`, in order, as a new array of `shape`.
pub(crate) fn take(x: &Array, offsets: &[usize], shape: &[usize]) -> Result<Array, EvalError> {
    let data = typed!(x.dtype(), |get, wrap| {
        let v = get(x)?;
        wrap(offsets.iter().map(|&i| v[i]).collect())
    });
    Ok(Array::new(shape, data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_broadcast_and_negative_strides() {
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), vec![0, 1, 0]);
        assert_eq!(view_offsets(&[2, 3], 0, &[0, 1]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(view_offsets(&[2, 2], 3, &[-2, -1]), vec![3, 2, 1, 0]);
        assert_eq!(view_offsets(&[], 5, &[]), vec![5]);
        assert!(view_offsets(&[2, 0], 0, &[1, 1]).is_empty());
    }

    #[test]
    fn index_walk_is_row_major() {
        let mut seen = Vec::new();
        for_each_index(&[2, 2], |i| seen.push(i.to_vec()));
        assert_eq!(seen, vec![vec![0, 0], vec![0, 1], vec![1, 0], vec![1, 1]]);
        let mut count = 0;
        for_each_index(&[], |_| count += 1);
        assert_eq!(count, 1);
        for_each_index(&[3, 0], |_| count += 1);
        assert_eq!(count, 1);
    }

    #[test]
    fn narrowing_wraps_and_rounds() -> Result<(), EvalError> {
        let a = Vals::I(vec![1 << 32 | 5, -1]).into_array("t", DType::U32, &[2])?;
        assert_eq!(a.as_u32()?, &[5, u32::MAX]);
        let a = Vals::I(vec![i64::from(i32::MAX) + 1]).into_array("t", DType::I32, &[1])?;
        assert_eq!(a.as_i32()?, &[i32::MIN]);
        let a = Vals::F(vec![0.1]).into_array("t", DType::F32, &[1])?;
        assert_eq!(a.as_f32()?, &[0.1f32]);
        let e = Vals::B(vec![true]).into_array("t", DType::F32, &[1]);
        assert!(matches!(e, Err(EvalError::Malformed { .. })));
        assert!(numel(&[usize::MAX, 2]).is_err());
        assert_eq!(numel(&[3, 4])?, 12);
        Ok(())
    }
}
