//! Counter-based random bits: Threefry-2x32 (20 rounds, Random123) laid out as JAX does.

pub use kiln_ir::semantics::threefry::threefry2x32;

/// `jax.random.bits(key, shape, dtype=uint32)` with `jax_threefry_partitionable` on (the
/// default since JAX 0.5): the element at row-major flat index `i` is `b0 ^ b1` where
/// `[b0, b1] = threefry2x32(key, [i >> 32, i & 0xffff_ffff])`.
///
/// The shape's element count must fit in memory, as for any allocation.
pub fn random_bits(key: [u32; 2], shape: &[usize]) -> Vec<u32> {
    let n = shape.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
    (0..n)
        .map(|i| {
            let [b0, b1] = threefry2x32(key, [(i >> 32) as u32, i as u32]);
            b0 ^ b1
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random123_known_answers() {
        assert_eq!(
            threefry2x32([0x13198a2e, 0x03707344], [0x243f6a88, 0x85a308d3]),
            [0xc4923a9c, 0x483df7a0]
        );
        assert_eq!(threefry2x32([0, 0], [0, 0]), [0x6b200159, 0x99ba4efe]);
        assert_eq!(
            threefry2x32([u32::MAX, u32::MAX], [u32::MAX, u32::MAX]),
            [0x1cb996fc, 0xbb002be7]
        );
    }

    #[test]
    fn bits_follow_the_flat_counter() {
        let bits = random_bits([7, 9], &[2, 3]);
        assert_eq!(bits.len(), 6);
        for (i, b) in bits.iter().enumerate() {
            let [x, y] = threefry2x32([7, 9], [0, i as u32]);
            assert_eq!(*b, x ^ y);
        }
        assert!(random_bits([1, 2], &[4, 0]).is_empty());
        assert_eq!(random_bits([1, 2], &[]).len(), 1);
    }
}
