//! Threefry-2x32 with 20 rounds (Random123), the block function of kiln's counter-based
//! random bits. [`steps`] is the round schedule every implementation follows: the host
//! function [`threefry2x32`], the graph builder's elementwise version and the fusion pass's
//! scalar `u32` lowering.

/// Rotation amounts of the two alternating groups of four rounds.
pub const ROTATIONS: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
/// Key-schedule parity constant of Threefish/Threefry 32-bit: the third key word is
/// `key[0] ^ key[1] ^ KS_PARITY`.
pub const KS_PARITY: u32 = 0x1BD1_1BDA;
/// Groups of four rounds (20 rounds in all).
pub const GROUPS: usize = 5;

/// One step of the block function on the state `(x0, x1)`, after the initial key injection
/// `x0 += ks[0]`, `x1 += ks[1]` (with `ks` the three key-schedule words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A round: `x0 += x1; x1 = rotate_left(x1, rotation) ^ x0`.
    Mix {
        /// The rotation amount, `0 < rotation < 32`.
        rotation: u32,
    },
    /// A key injection after a group: `x0 += ks[x0_word]; x1 += ks[x1_word] + count`.
    Inject {
        /// The key-schedule word added to `x0`.
        x0_word: usize,
        /// The key-schedule word added to `x1`.
        x1_word: usize,
        /// The injection number (1-based) added to `x1`.
        count: u32,
    },
}

/// The rounds and key injections after the initial injection, in order.
pub fn steps() -> impl Iterator<Item = Step> {
    (0..GROUPS).flat_map(|group| {
        let inject = group + 1;
        ROTATIONS[group % 2]
            .into_iter()
            .map(|rotation| Step::Mix { rotation })
            .chain(std::iter::once(Step::Inject {
                x0_word: inject % 3,
                x1_word: (inject + 1) % 3,
                count: inject as u32,
            }))
    })
}

/// The Threefry-2x32 block function: encrypts `counter` under `key`.
pub fn threefry2x32(key: [u32; 2], counter: [u32; 2]) -> [u32; 2] {
    let ks = [key[0], key[1], key[0] ^ key[1] ^ KS_PARITY];
    let mut x0 = counter[0].wrapping_add(ks[0]);
    let mut x1 = counter[1].wrapping_add(ks[1]);
    for step in steps() {
        match step {
            Step::Mix { rotation } => {
                x0 = x0.wrapping_add(x1);
                x1 = x1.rotate_left(rotation) ^ x0;
            }
            Step::Inject {
                x0_word,
                x1_word,
                count,
            } => {
                x0 = x0.wrapping_add(ks[x0_word]);
                x1 = x1.wrapping_add(ks[x1_word]).wrapping_add(count);
            }
        }
    }
    [x0, x1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_has_twenty_rounds_and_five_injections() {
        let all: Vec<Step> = steps().collect();
        assert_eq!(all.len(), 25);
        assert_eq!(all[0], Step::Mix { rotation: 13 });
        assert_eq!(all[5], Step::Mix { rotation: 17 });
        assert_eq!(
            all[4],
            Step::Inject {
                x0_word: 1,
                x1_word: 2,
                count: 1
            }
        );
        assert_eq!(
            all[24],
            Step::Inject {
                x0_word: 2,
                x1_word: 0,
                count: 5
            }
        );
    }

    #[test]
    fn known_answer() {
        assert_eq!(threefry2x32([0, 0], [0, 0]), [0x6b200159, 0x99ba4efe]);
    }
}
