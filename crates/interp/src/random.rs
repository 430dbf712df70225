//! Counter-based random bits: Threefry-2x32 (20 rounds, Random123) laid out as JAX does.

/// Rotation amounts of the two alternating groups of four rounds.
const ROTATIONS: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
/// Key-schedule parity constant of Threefish/Threefry 32-bit.
const KS_PARITY: u32 = 0x1BD1_1BDA;

/// The Threefry-2x32 block function with 20 rounds: encrypts `counter` under `key`.
/// The key is injected before the first round and after every four rounds.
pub fn threefry2x32(key: [u32; 2], counter: [u32; 2]) -> [u32; 2] {
    let ks = [key[0], key[1], key[0] ^ key[1] ^ KS_PARITY];
    let mut x0 = counter[0].wrapping_add(ks[0]);
    let mut x1 = counter[1].wrapping_add(ks[1]);
    for group in 0..5usize {
        for r in ROTATIONS[group % 2] {
            x0 = x0.wrapping_add(x1);
            x1 = x1.rotate_left(r);
            x1 ^= x0;
        }
        let inject = group + 1;
        x0 = x0.wrapping_add(ks[inject % 3]);
        x1 = x1
            .wrapping_add(ks[(inject + 1) % 3])
            .wrapping_add(inject as u32);
    }
    [x0, x1]
}

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
