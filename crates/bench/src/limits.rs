//! The machine's limits, measured by this binary: STREAM-style copy bandwidth and peak
//! f32 fused-multiply-add throughput, on one thread and on every thread.
//!
//! Copy: `b[i] = a[i]` over two arrays far larger than the last-level cache, counted as
//! STREAM counts it (bytes read + bytes written), best of several passes. FMA: independent
//! accumulator chains (more than latency × issue width, so the FMA ports never wait) of
//! `acc = acc * a + b` on the widest vectors the CPU has: AVX-512F or AVX2+FMA through
//! `std::arch` behind runtime feature detection, a portable autovectorised loop otherwise.

use std::hint::black_box;
use std::time::Instant;

/// One measured limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    /// Threads used.
    pub threads: usize,
    /// GB/s (copy) or GFLOP/s (FMA).
    pub value: f64,
    /// How it was measured (instruction set, array size).
    pub how: String,
}

/// Elements per copy array: 64 Mi f32 = 256 MiB each, 8x a 32 MiB L3.
pub const COPY_ELEMS: usize = 64 << 20;

/// Copy bandwidth in GB/s with `threads` threads over arrays of `elems` f32, best of
/// `passes` passes (each thread copies its own contiguous share, first touched by itself).
pub fn copy_bandwidth(threads: usize, elems: usize, passes: usize) -> Limit {
    let threads = threads.max(1);
    let chunk = elems.div_ceil(threads);
    let mut src: Vec<Vec<f32>> = Vec::new();
    let mut dst: Vec<Vec<f32>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = chunk.min(elems.saturating_sub(t * chunk));
                s.spawn(move || {
                    (
                        (0..n).map(|i| i as f32).collect::<Vec<f32>>(),
                        vec![0f32; n],
                    )
                })
            })
            .collect();
        for h in handles {
            if let Ok((a, b)) = h.join() {
                src.push(a);
                dst.push(b);
            }
        }
    });
    let bytes = 2.0 * 4.0 * src.iter().map(Vec::len).sum::<usize>() as f64;
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        std::thread::scope(|s| {
            for (a, b) in src.iter().zip(dst.iter_mut()) {
                s.spawn(move || {
                    for (d, x) in b.iter_mut().zip(a.iter()) {
                        *d = *x;
                    }
                    black_box(&b);
                });
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    Limit {
        threads,
        value: bytes / best / 1e9,
        how: format!(
            "copy of 2 x {} MiB f32 arrays, best of {passes}",
            (elems * 4) >> 20
        ),
    }
}

/// Accumulator chains per thread: FMA latency 4 cycles x 2 pipes = 8 needed; 12 hides more.
const CHAINS: usize = 12;

/// The FMA kernel this CPU runs: `avx512f`, `avx2+fma` or `portable`.
pub fn fma_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    "portable"
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! `std::arch` FMA loops; call only after runtime detection of their features.
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// `iters` rounds of `CHAINS` independent 16-lane FMAs; returns a lane sum so nothing is
    /// dead code. 32 FLOP per FMA.
    #[target_feature(enable = "avx512f")]
    pub fn avx512(iters: u64, a: f32, b: f32) -> f32 {
        let va = _mm512_set1_ps(a);
        let vb = _mm512_set1_ps(b);
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, va, vb);
            }
        }
        let mut s = _mm512_setzero_ps();
        for x in acc {
            s = _mm512_add_ps(s, x);
        }
        _mm512_reduce_add_ps(s)
    }

    /// As [`avx512`] with 8-lane AVX2 FMAs (16 FLOP per FMA).
    #[target_feature(enable = "avx2,fma")]
    pub fn avx2(iters: u64, a: f32, b: f32) -> f32 {
        let va = _mm256_set1_ps(a);
        let vb = _mm256_set1_ps(b);
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, va, vb);
            }
        }
        let mut s = _mm256_setzero_ps();
        for x in acc {
            s = _mm256_add_ps(s, x);
        }
        let mut out = [0f32; 8];
        // SAFETY: `out` holds exactly 8 f32, the width of the unaligned store.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }
}

/// Portable fallback: `CHAINS` x 8 independent multiply-adds per round, left to the
/// autovectoriser (a separate multiply and add, so 2 FLOP per element as well).
fn portable(iters: u64, a: f32, b: f32) -> f32 {
    let mut acc = [[1f32; 8]; CHAINS];
    for _ in 0..iters {
        for chain in acc.iter_mut() {
            for x in chain.iter_mut() {
                *x = *x * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

/// FLOP per round of one thread's loop on `isa`.
fn flop_per_iter(isa: &str) -> f64 {
    let lanes = match isa {
        "avx512f" => 16.0,
        _ => 8.0,
    };
    CHAINS as f64 * lanes * 2.0
}

/// Runs `iters` rounds of the `isa` loop (as named by [`fma_isa`]); returns the lane sum.
pub fn fma_loop(isa: &str, iters: u64) -> f32 {
    let (a, b) = (black_box(0.999_999f32), black_box(1e-7f32));
    #[cfg(target_arch = "x86_64")]
    {
        if isa == "avx512f" && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports avx512f (checked just above).
            return unsafe { x86::avx512(iters, a, b) };
        }
        if isa == "avx2+fma"
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports avx2 and fma (checked just above).
            return unsafe { x86::avx2(iters, a, b) };
        }
    }
    portable(iters, a, b)
}

/// Peak FMA GFLOP/s with `threads` threads on `isa`, best of `passes` runs of `iters` rounds.
pub fn fma_peak(isa: &'static str, threads: usize, iters: u64, passes: usize) -> Limit {
    let threads = threads.max(1);
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| black_box(fma_loop(isa, black_box(iters))));
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    let flop = flop_per_iter(isa) * iters as f64 * threads as f64;
    Limit {
        threads,
        value: flop / best / 1e9,
        how: format!("{isa}, {CHAINS} independent accumulators, best of {passes}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fma_kernel_computes_the_same_recurrence() {
        // acc_{k+1} = acc_k * a + b from acc_0 = 1: with a = 1, b = 1 after 3 rounds every
        // lane holds 4; lane sums are 4 * lanes * CHAINS.
        let expect = |lanes: f32| 4.0 * lanes * CHAINS as f32;
        assert_eq!(portable(3, 1.0, 1.0), expect(8.0));
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: features checked.
                assert_eq!(unsafe { x86::avx2(3, 1.0, 1.0) }, expect(8.0));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: feature checked.
                assert_eq!(unsafe { x86::avx512(3, 1.0, 1.0) }, expect(16.0));
            }
        }
        assert_eq!(flop_per_iter("avx512f"), 12.0 * 32.0);
        assert_eq!(flop_per_iter("avx2+fma"), 12.0 * 16.0);
    }

    #[test]
    fn measured_limits_are_positive_and_finite() {
        let c = copy_bandwidth(2, 1 << 16, 2);
        assert_eq!(c.threads, 2);
        assert!(c.value.is_finite() && c.value > 0.0, "{c:?}");
        let f = fma_peak(fma_isa(), 1, 1000, 1);
        assert!(f.value.is_finite() && f.value > 0.0, "{f:?}");
        assert!(f.how.starts_with(fma_isa()));
    }
}
