//! The scratch arena of a run plan: one allocation, aligned to [`ARENA_ALIGNMENT`], that holds
//! every scratch buffer of the program and every contraction's workspace at its offset in
//! the memory plan ([`kiln_kernel::memplan`]).

/// Alignment of the arena and of every offset in it, in bytes.
pub const ARENA_ALIGNMENT: u64 = kiln_kernel::memplan::ALIGNMENT;

/// One aligned unit of arena storage.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
struct Line([u8; ARENA_ALIGNMENT as usize]);

/// Zero-initialised storage of a fixed number of bytes, allocated on first use.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    lines: Vec<Line>,
}

impl Arena {
    /// The address of `bytes` zero-initialised bytes (a multiple of [`ARENA_ALIGNMENT`]),
    /// allocated in one piece on the first call and kept for later calls with the same size.
    /// `None` if the allocation fails. For zero bytes no allocation is made and the address
    /// is a dangling aligned pointer, never dereferenced (no scratch buffer has an element).
    pub(crate) fn base(&mut self, bytes: usize) -> Option<*mut u8> {
        let lines = bytes.div_ceil(ARENA_ALIGNMENT as usize);
        if self.lines.len() != lines {
            let mut v = Vec::new();
            v.try_reserve_exact(lines).ok()?;
            v.resize(lines, Line([0; ARENA_ALIGNMENT as usize]));
            self.lines = v;
        }
        Some(self.lines.as_mut_ptr().cast())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arena_is_aligned_zeroed_and_kept() {
        let mut a = Arena::default();
        let p = a.base(200).unwrap();
        assert_eq!(p as usize % ARENA_ALIGNMENT as usize, 0);
        assert_eq!(a.lines.len(), 4);
        assert!(a.lines.iter().all(|l| l.0 == [0; 64]));
        assert_eq!(a.base(200).unwrap(), p);
        assert_eq!(a.base(0).unwrap() as usize % ARENA_ALIGNMENT as usize, 0);
        assert!(a.lines.is_empty());
    }
}
