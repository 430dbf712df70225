//! The fuzz harnesses of the loader, shared by the cargo-fuzz targets (crates/format/fuzz)
//! and the stable smoke test that runs them in CI (crates/cli/tests/fuzz_parsers.rs). Each
//! panics when a property fails; that is its purpose. Both start from the golden files in
//! crates/format/fuzz/seeds, which include a module with control flow
//! (`control_flow.kiln`: cond, scan, while and nested regions), so mutations reach the
//! region table and the bodies.

use crate::{Module, from_bytes, layout, to_bytes};
use kiln_kernel::Program;

/// `from_bytes` on raw bytes: an error is one line; a module that loads encodes again
/// and the encoding loads.
pub fn load_bytes(data: &[u8]) {
    match from_bytes(data) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
        }
        Ok(m) => match to_bytes(&m) {
            Ok(again) => {
                if let Err(e) = from_bytes(&again) {
                    panic!("a re-encoded module does not load: {e}");
                }
            }
            Err(e) => panic!("a loaded module does not encode: {e}"),
        },
    }
}

/// [`to_bytes`] of `m` with `plan` as its kernel plan, which need not verify (a
/// [`Module`] holds only verified plans): what a buggy or hostile writer would produce,
/// refused with the loader's error as [`crate::FormatError::Encode`].
pub fn to_bytes_with_plan(m: &Module, plan: &Program) -> Result<Vec<u8>, crate::FormatError> {
    crate::to_bytes_with_plan(m, Some(plan))
}

/// [`load_bytes`] after recomputing the CRC-32 trailer, so mutations reach the decoder,
/// the limits, the verifiers and the cross-checks instead of stopping at the checksum.
pub fn load_resealed(data: &[u8]) {
    let mut bytes = data.to_vec();
    layout::reseal(&mut bytes);
    load_bytes(&bytes);
}

/// Length-field values that reach the edges of every check.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    7,
    63,
    64,
    255,
    0xffff,
    0xffff_ffff,
    1 << 40,
    i64::MAX as u64,
    u64::MAX,
];

/// The seeded mutation engine every stable fuzz driver uses (the CI smoke test and the fuzz
/// projects' plain binaries): xorshift random numbers, so a seed reproduces a run exactly.
#[derive(Clone, Debug)]
pub struct Mutator(u64);

impl Mutator {
    /// A mutator seeded with `seed` (0 is taken as 1).
    pub fn new(seed: u64) -> Mutator {
        Mutator(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A random index below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A random seed with one to four mutations: bit flips, byte writes, truncation,
    /// insertion, deletion, length fields (2, 4 or 8 bytes) set to interesting values, runs
    /// of nesting brackets, digit runs, and splices from other seeds. `seeds` must not be
    /// empty.
    pub fn mutate(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut input = seeds
            .get(self.below(seeds.len()))
            .cloned()
            .unwrap_or_default();
        for _ in 0..1 + self.below(4) {
            self.mutate_once(seeds, &mut input);
        }
        input
    }

    fn mutate_once(&mut self, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
        let len = input.len();
        match self.below(10) {
            0 if len > 0 => {
                let at = self.below(len);
                input[at] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let at = self.below(len);
                input[at] = self.next_u64() as u8;
            }
            2 => input.truncate(self.below(len + 1)),
            3 => {
                let at = self.below(len + 1);
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.next_u64() as u8).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = self.below(len);
                let end = (at + 1 + self.below(64)).min(len);
                input.drain(at..end);
            }
            5 if len >= 8 => {
                let width = [2, 4, 8][self.below(3)];
                let at = self.below(len - width + 1);
                let v = INTERESTING[self.below(INTERESTING.len())].to_le_bytes();
                input[at..at + width].copy_from_slice(&v[..width]);
            }
            6 => {
                let at = self.below(len + 1);
                let open = [b'[', b'(', b'{', b'"', b'\''][self.below(5)];
                let n = 1 + self.below(200);
                input.splice(at..at, std::iter::repeat_n(open, n));
            }
            7 => {
                let at = self.below(len + 1);
                let n = 1 + self.below(40);
                input.splice(at..at, std::iter::repeat_n(b'9', n));
            }
            _ => {
                let Some(other) = seeds.get(self.below(seeds.len())) else {
                    return;
                };
                if !other.is_empty() && len > 0 {
                    let from = self.below(other.len());
                    let n = (1 + self.below(64)).min(other.len() - from);
                    let at = self.below(len);
                    let end = (at + n).min(len);
                    input.splice(at..end, other[from..from + n].iter().copied());
                }
            }
        }
    }
}
