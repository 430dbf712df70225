//! Output memory: zeroed arrays from the allocator's zeroed path (fresh pages are not
//! written twice), with large ones advised to use transparent huge pages, so the first
//! touch of a 64 MiB output faults 32 times instead of 16384.

use kiln_ir::{DType, Data};
use std::alloc::Layout;

/// Size from which an allocation is advised onto huge pages.
const HUGE_FROM: usize = 4 << 20;

/// Element types whose all-zero bit pattern is a valid value.
///
/// # Safety
/// Implementors guarantee that all-zero bytes are a valid value of the type.
unsafe trait Zeroable: Sized {}
// SAFETY: 0.0, 0 and `false` are all-zero bit patterns.
unsafe impl Zeroable for f32 {}
// SAFETY: as above.
unsafe impl Zeroable for f64 {}
// SAFETY: as above.
unsafe impl Zeroable for i32 {}
// SAFETY: as above.
unsafe impl Zeroable for i64 {}
// SAFETY: as above.
unsafe impl Zeroable for u32 {}
// SAFETY: as above.
unsafe impl Zeroable for bool {}

fn zeroed_vec<T: Zeroable>(len: usize) -> Option<Vec<T>> {
    let layout = Layout::array::<T>(len).ok()?;
    if layout.size() == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return None;
    }
    advise_huge(p, layout.size());
    // SAFETY: `p` comes from the global allocator with the layout of `[T; len]` (so the
    // capacity is `len`), and its `len` elements are initialised: all-zero bytes are a
    // valid `T` (`Zeroable`).
    Some(unsafe { Vec::from_raw_parts(p.cast::<T>(), len, len) })
}

#[cfg(target_os = "linux")]
fn advise_huge(p: *mut u8, size: usize) {
    const HUGE: usize = 2 << 20;
    if size < HUGE_FROM {
        return;
    }
    let addr = p as usize;
    let start = addr.div_ceil(HUGE) * HUGE;
    let end = (addr + size) / HUGE * HUGE;
    if end > start {
        // SAFETY: `[start, end)` lies inside the allocation just made; MADV_HUGEPAGE only
        // changes how the kernel backs those pages, never their contents. Failure (e.g.
        // THP disabled) is harmless and ignored.
        unsafe {
            libc::madvise(
                p.wrapping_add(start - addr).cast::<libc::c_void>(),
                end - start,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_p: *mut u8, _size: usize) {
    let _ = HUGE_FROM;
}

/// `len` zeros of `dtype` in one allocation, or `None` if memory is exhausted.
pub(crate) fn zeroed(dtype: DType, len: usize) -> Option<Data> {
    Some(match dtype {
        DType::F32 => Data::F32(zeroed_vec(len)?),
        DType::F64 => Data::F64(zeroed_vec(len)?),
        DType::I32 => Data::I32(zeroed_vec(len)?),
        DType::I64 => Data::I64(zeroed_vec(len)?),
        DType::U32 => Data::U32(zeroed_vec(len)?),
        DType::Bool => Data::Bool(zeroed_vec(len)?),
    })
}

/// `len` elements of `dtype` in one allocation whose contents are not cleared (`bool`,
/// whose bit patterns are not all valid, is zeroed instead), or `None` if memory is
/// exhausted. Skips the allocator's `memset` of a recycled block.
///
/// # Safety
///
/// Nothing reads an element before it is written: the caller hands the array to a run
/// that stores every element before reading any
/// ([`kiln_kernel::memplan::stored_whole_first`]), and clears it (with
/// [`clear`]) if that run fails.
pub(crate) unsafe fn unwritten(dtype: DType, len: usize) -> Option<Data> {
    fn vec<T>(len: usize) -> Option<Vec<T>> {
        let mut v: Vec<T> = Vec::new();
        v.try_reserve_exact(len).ok()?;
        advise_huge(
            v.as_mut_ptr().cast::<u8>(),
            len.saturating_mul(size_of::<T>()),
        );
        // SAFETY: the capacity is `len`; the elements are plain numbers (every bit pattern
        // is a value) that the caller writes before any read (this function's contract).
        unsafe { v.set_len(len) };
        Some(v)
    }
    Some(match dtype {
        DType::F32 => Data::F32(vec(len)?),
        DType::F64 => Data::F64(vec(len)?),
        DType::I32 => Data::I32(vec(len)?),
        DType::I64 => Data::I64(vec(len)?),
        DType::U32 => Data::U32(vec(len)?),
        DType::Bool => Data::Bool(zeroed_vec(len)?),
    })
}

/// Sets every element of `d` to zero (`false`).
pub(crate) fn clear(d: &mut Data) {
    match d {
        Data::F32(v) => v.fill(0.0),
        Data::F64(v) => v.fill(0.0),
        Data::I32(v) => v.fill(0),
        Data::I64(v) => v.fill(0),
        Data::U32(v) => v.fill(0),
        Data::Bool(v) => v.fill(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_arrays_are_zero_of_the_right_length() {
        let big = zeroed(DType::F32, 3 << 20).unwrap();
        let Data::F32(v) = &big else { panic!("dtype") };
        assert_eq!(v.len(), 3 << 20);
        assert!(v.iter().all(|&x| x == 0.0));
        let Some(Data::Bool(b)) = zeroed(DType::Bool, 5) else {
            panic!("dtype")
        };
        assert_eq!(b, vec![false; 5]);
        assert_eq!(zeroed(DType::I64, 0).map(|d| d.len()), Some(0));
    }
}
