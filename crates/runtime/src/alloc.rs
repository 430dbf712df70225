//! Output memory: zeroed arrays. A large one is zeroed lazily by the kernel: its whole
//! pages are released with `MADV_DONTNEED` (private anonymous memory then reads as zero
//! pages, faulted in on first touch) and advised onto transparent huge pages, so a 16 MiB
//! output costs eight huge-page faults whose clearing lands in cache just before the
//! program writes it, instead of a 16 MiB `memset` (what `calloc` does for memory the
//! allocator recycles) that the program's stores then read back from DRAM.

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
    let size = layout.size();
    let p = if size >= HUGE_FROM {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        if !p.is_null() {
            advise_huge(p, size);
            zero_lazily(p, size);
        }
        p
    } else {
        // SAFETY: the layout has a non-zero size.
        unsafe { std::alloc::alloc_zeroed(layout) }
    };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` comes from the global allocator with the layout of `[T; len]` (so the
    // capacity is `len`), and its `len` elements are initialised to all-zero bytes (by the
    // allocator, `memset` or released pages), a valid `T` (`Zeroable`).
    Some(unsafe { Vec::from_raw_parts(p.cast::<T>(), len, len) })
}

/// Zeroes the `size` bytes at `p` (a fresh allocation): the partial pages at either end
/// with `memset`, the whole pages between by releasing them (`MADV_DONTNEED`: the kernel
/// maps zero pages on the next touch of private anonymous memory, which is what the
/// allocator's heap and mappings are), or with `memset` where that fails.
#[cfg(target_os = "linux")]
fn zero_lazily(p: *mut u8, size: usize) {
    // SAFETY: `sysconf` has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|&g| g.is_power_of_two())
        .unwrap_or(4096);
    let addr = p as usize;
    let start = (addr.div_ceil(page) * page).min(addr + size);
    let end = ((addr + size) / page * page).max(start);
    // SAFETY: `[start, end)` lies inside the allocation of `size` bytes at `p`, which no
    // one else references; releasing its pages is what makes them read as zero.
    let released = end > start
        && unsafe {
            libc::madvise(
                p.wrapping_add(start - addr).cast::<libc::c_void>(),
                end - start,
                libc::MADV_DONTNEED,
            )
        } == 0;
    // SAFETY: each range lies inside the allocation of `size` bytes at `p`.
    unsafe {
        if released {
            std::ptr::write_bytes(p, 0, start - addr);
            std::ptr::write_bytes(p.wrapping_add(end - addr), 0, addr + size - end);
        } else {
            std::ptr::write_bytes(p, 0, size);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn zero_lazily(p: *mut u8, size: usize) {
    // SAFETY: `p` is an allocation of `size` bytes that no one else references.
    unsafe { std::ptr::write_bytes(p, 0, size) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_large_allocations_come_back_zero() {
        // Dirty a large block, free it, and ask again: the allocator hands recycled memory
        // back (often the same block), which must read as zero at both ends and between.
        for len in [(5 << 20) + 3, 6 << 20] {
            let Some(Data::F32(mut v)) = zeroed(DType::F32, len) else {
                panic!("dtype")
            };
            v.fill(1.5);
            drop(v);
            let Some(Data::F32(w)) = zeroed(DType::F32, len) else {
                panic!("dtype")
            };
            assert_eq!(w.len(), len);
            assert!(w.iter().all(|&x| x.to_bits() == 0));
        }
    }

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
