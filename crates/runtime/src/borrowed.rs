//! [`BorrowedArray`]: caller memory (a NumPy array, a C buffer) seen as an [`Array`] without
//! a copy, the zero-copy input path of the Python and C bindings.
//!
//! [`Executable::run`](crate::Executable::run) takes `&Array`, and on the CPU backend it
//! reads every input in place. A `BorrowedArray` is an `Array` whose element vector points
//! at the caller's memory: it is only ever lent out as `&Array` and never dropped
//! (`ManuallyDrop`), so the vector never frees, grows or writes that memory, and the
//! lifetime `'a` keeps the memory borrowed for as long as the view exists. Engines that
//! need owned inputs (`interp`, `kernel`, `gpu`) clone it, which copies as for any input.

use kiln_ir::{Array, ArrayError, DType, Data};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

/// Why caller memory cannot be viewed as an array.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BorrowError {
    /// A null pointer for a non-empty array.
    #[error("the data pointer of a non-empty array is null")]
    Null,
    /// The address is not aligned for the dtype.
    #[error("{dtype} data must be aligned to {align} bytes; address {address:#x} is not")]
    Misaligned {
        /// The dtype.
        dtype: DType,
        /// Its alignment.
        align: usize,
        /// The address given.
        address: usize,
    },
    /// The shape's element count or byte size overflows.
    #[error(transparent)]
    Array(#[from] ArrayError),
}

/// An [`Array`] over memory the caller owns, read in place (see the module docs).
#[derive(Debug)]
pub struct BorrowedArray<'a> {
    array: ManuallyDrop<Array>,
    memory: PhantomData<&'a [u8]>,
}

/// A vector over `len` elements at `data`, never to be dropped or grown.
///
/// # Safety
/// As [`BorrowedArray::from_raw`], for `T` the dtype's element type.
unsafe fn view<T>(data: *const u8, len: usize) -> Vec<T> {
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `len` initialised, aligned elements at `data`, readable
    // for the view's lifetime. The vector is wrapped in `ManuallyDrop` by the only caller and
    // lent out only behind shared references, so it never deallocates, reallocates or
    // writes through the pointer, which is the only use of the allocator-provenance
    // requirement of `from_raw_parts`.
    unsafe { Vec::from_raw_parts(data.cast::<T>().cast_mut(), len, len) }
}

impl<'a> BorrowedArray<'a> {
    /// Views `shape.iter().product()` elements of `dtype` at `data` as an array.
    ///
    /// # Errors
    ///
    /// [`BorrowError`] if `data` is null or misaligned for a non-empty array, the shape
    /// overflows, or a `bool` element's byte is neither 0 nor 1.
    ///
    /// # Safety
    ///
    /// For the lifetime `'a`, `data` must point to that many initialised elements of
    /// `dtype` (as the host stores them; `bool` elements are bytes, checked to be 0 or 1),
    /// readable and not written by anyone.
    pub unsafe fn from_raw(
        dtype: DType,
        shape: &[usize],
        data: *const u8,
    ) -> Result<BorrowedArray<'a>, BorrowError> {
        let len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|n| n.checked_mul(dtype.size_bytes()).is_some())
            .ok_or_else(|| ArrayError::Overflow(shape.to_vec()))?;
        if len > 0 {
            if data.is_null() {
                return Err(BorrowError::Null);
            }
            let align = dtype.size_bytes();
            if !(data as usize).is_multiple_of(align) {
                return Err(BorrowError::Misaligned {
                    dtype,
                    align,
                    address: data as usize,
                });
            }
            if dtype == DType::Bool {
                // SAFETY: the caller guarantees `len` readable bytes at `data`.
                let bytes = unsafe { std::slice::from_raw_parts(data, len) };
                if let Some(index) = bytes.iter().position(|&b| b > 1) {
                    return Err(ArrayError::BoolByte {
                        index,
                        value: bytes[index],
                    }
                    .into());
                }
            }
        }
        // SAFETY: forwarded from the caller; alignment, non-null and bool bytes checked above.
        let data = unsafe {
            match dtype {
                DType::F32 => Data::F32(view(data, len)),
                DType::F64 => Data::F64(view(data, len)),
                DType::I32 => Data::I32(view(data, len)),
                DType::I64 => Data::I64(view(data, len)),
                DType::U32 => Data::U32(view(data, len)),
                DType::Bool => Data::Bool(view(data, len)),
            }
        };
        // Cannot fail: `len` is the shape's element count, computed as `Array::new` does.
        let array = Array::new(shape, data)?;
        Ok(BorrowedArray {
            array: ManuallyDrop::new(array),
            memory: PhantomData,
        })
    }

    /// The array, for [`Executable::run`](crate::Executable::run) and friends.
    pub fn array(&self) -> &Array {
        &self.array
    }
}

impl std::ops::Deref for BorrowedArray<'_> {
    type Target = Array;

    fn deref(&self) -> &Array {
        &self.array
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_caller_memory_in_place() {
        let host = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        // SAFETY: `host` outlives the view and is not written while it exists.
        let b =
            unsafe { BorrowedArray::from_raw(DType::F32, &[2, 3], host.as_ptr().cast()) }.unwrap();
        assert_eq!(b.shape(), &[2, 3]);
        let seen = b.as_f32().unwrap();
        assert_eq!(seen, host.as_slice());
        assert_eq!(seen.as_ptr(), host.as_ptr());
    }

    #[test]
    fn refuses_null_and_misaligned_memory() {
        // SAFETY: the constructor refuses the pointer before reading through it.
        let null = unsafe { BorrowedArray::from_raw(DType::F32, &[1], std::ptr::null()) };
        assert_eq!(null.unwrap_err(), BorrowError::Null);
        let bytes = [0u8; 16];
        let odd = bytes
            .as_ptr()
            .wrapping_add(1 + (bytes.as_ptr() as usize) % 2);
        // SAFETY: as above.
        let err = unsafe { BorrowedArray::from_raw(DType::I32, &[2], odd) }.unwrap_err();
        assert!(
            matches!(err, BorrowError::Misaligned { align: 4, .. }),
            "{err}"
        );
        // SAFETY: an empty array reads nothing.
        let empty = unsafe { BorrowedArray::from_raw(DType::F64, &[0, 3], std::ptr::null()) };
        assert_eq!(empty.unwrap().shape(), &[0, 3]);
        let bools = [1u8, 0, 2];
        // SAFETY: `bools` outlives the call.
        let err =
            unsafe { BorrowedArray::from_raw(DType::Bool, &[3], bools.as_ptr()) }.unwrap_err();
        assert_eq!(
            err,
            BorrowError::Array(ArrayError::BoolByte { index: 2, value: 2 })
        );
    }
}
