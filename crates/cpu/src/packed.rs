//! Pre-packed `f32` GEMM: a right operand packed once into column panels
//! ([`PackedB`]), kept while its contents stay the same, and the register-blocked
//! micro-kernels (AVX2/FMA, picked at run time, or portable code) that multiply a strided
//! left operand by it.
//!
//! The `gemm` crate packs both operands on every call; a weight matrix that a run (or a
//! scan's every step) multiplies by again and again is packed here once and reused until
//! its stamp says it changed (see `ContractPlan::run`).

/// Columns per panel: two 8-lane vectors.
pub(crate) const NR: usize = 16;
/// Rows per call of the AVX2 and portable micro-kernels.
const MR: usize = 6;
/// Depth of one pass over a panel: `KC * NR` floats (16 KiB) stay in L1 while every row
/// block of the left operand streams past them.
const KC: usize = 256;

/// A `[k, n]` `f32` matrix packed into panels of [`NR`] columns: panel `j` holds rows
/// `0..k` of columns `j*NR..j*NR+NR` (zero past `n`), each row's `NR` values contiguous.
#[derive(Debug, Default)]
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f32>,
    /// What was packed: the source address and its stamp (`None`: nothing valid).
    key: Option<(usize, u64)>,
}

impl PackedB {
    /// The number of panels.
    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// True if the matrix packed last came from `src` with `stamp` and has this shape.
    pub(crate) fn holds(&self, k: usize, n: usize, src: usize, stamp: u64) -> bool {
        self.k == k && self.n == n && self.key == Some((src, stamp))
    }

    /// Packs `src[p, j]` (at `src + p*rs + j*cs`, `p < k`, `j < n`), remembering `key`
    /// (`None`: the contents are not stable, pack again next time). Reuses the buffer, so
    /// packing a matrix of the same shape again does not allocate.
    ///
    /// # Safety
    /// Every addressed element must be in bounds of a live allocation.
    pub(crate) unsafe fn pack(
        &mut self,
        k: usize,
        n: usize,
        src: *const f32,
        rs: isize,
        cs: isize,
        key: Option<(usize, u64)>,
    ) {
        self.k = k;
        self.n = n;
        self.key = None;
        let len = self.panels() * k * NR;
        self.data.clear();
        self.data.resize(len, 0.0);
        if k == 0 {
            self.key = key;
            return;
        }
        for (j, panel) in self.data.chunks_exact_mut(k * NR).enumerate() {
            let cols = (n - j * NR).min(NR);
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                let at = src.wrapping_offset(p as isize * rs + (j * NR) as isize * cs);
                for (c, v) in row[..cols].iter_mut().enumerate() {
                    // SAFETY: (p, j*NR + c) with p < k, j*NR + c < n: in bounds by the
                    // caller's contract.
                    *v = unsafe { *at.wrapping_offset(c as isize * cs) };
                }
            }
        }
        self.key = key;
    }

    /// `dst[i, j] = sum_p a[i, p] * self[p, j]` for rows `rows` and panels `panels`
    /// (`k == 0` writes zeros).
    ///
    /// # Safety
    /// `a[i, p]` (at `a + i*a_rs + p*a_cs`) must be in bounds for `i` in `rows`, `p < k`;
    /// `dst[i, j]` in bounds and not accessed by others during the call for `i` in `rows`,
    /// `j` in the panels' columns (`< n`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn gemm(
        &self,
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        dst: *mut f32,
        dst_rs: isize,
        dst_cs: isize,
        a: *const f32,
        a_rs: isize,
        a_cs: isize,
    ) {
        // SAFETY: passed on; `pick` chose a kernel this CPU runs.
        unsafe { self.gemm_with(pick(), rows, panels, dst, dst_rs, dst_cs, a, a_rs, a_cs) }
    }

    /// [`PackedB::gemm`] with a given micro-kernel.
    ///
    /// # Safety
    /// As [`PackedB::gemm`]; the kernel runs on this CPU.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_with(
        &self,
        micro: Micro,
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        dst: *mut f32,
        dst_rs: isize,
        dst_cs: isize,
        a: *const f32,
        a_rs: isize,
        a_cs: isize,
    ) {
        let k = self.k;
        let panels = panels.start..panels.end.min(self.panels());
        if k == 0 {
            for i in rows {
                for j in panels.start * NR..(panels.end * NR).min(self.n) {
                    // SAFETY: (i, j) is in the destination (caller's contract).
                    unsafe {
                        *dst.wrapping_offset(i as isize * dst_rs + j as isize * dst_cs) = 0.0
                    };
                }
            }
            return;
        }
        let mut p0 = 0;
        while p0 < k {
            let kc = (k - p0).min(KC);
            for j in panels.clone() {
                let b = self.data[(j * k + p0) * NR..].as_ptr();
                let cols = (self.n - j * NR).min(NR);
                let mut i = rows.start;
                while i < rows.end {
                    let mr = (rows.end - i).min(micro.rows);
                    let tile = Tile {
                        kc,
                        a: a.wrapping_offset(i as isize * a_rs + p0 as isize * a_cs),
                        a_rs,
                        a_cs,
                        b,
                        c: dst.wrapping_offset(i as isize * dst_rs + (j * NR) as isize * dst_cs),
                        c_rs: dst_rs,
                        c_cs: dst_cs,
                        cols,
                        accumulate: p0 > 0,
                    };
                    // SAFETY: the tile addresses rows i..i+mr of `a` at depths p0..p0+kc,
                    // `kc` packed rows of panel j (inside `data`) and the output block
                    // (i..i+mr, j*NR..j*NR+cols): all in bounds by the caller's contract.
                    unsafe { (micro.tile)(mr, &tile) };
                    i += mr;
                }
            }
            p0 += kc;
        }
    }
}

/// One micro-kernel call: `c[0..mr, 0..cols] (+)= a[0..mr, 0..kc] * b[0..kc, 0..NR]`.
struct Tile {
    kc: usize,
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    /// `kc` rows of `NR` packed values.
    b: *const f32,
    c: *mut f32,
    c_rs: isize,
    c_cs: isize,
    cols: usize,
    accumulate: bool,
}

/// A micro-kernel: `tile(mr, t)` computes `mr <= rows` rows of a tile.
#[derive(Clone, Copy)]
struct Micro {
    tile: unsafe fn(usize, &Tile),
    rows: usize,
}

/// The rows per micro-kernel call on this CPU: callers split rows among threads at
/// multiples of it, so every row meets the same kernel (and the same summation order)
/// whatever the thread count.
pub(crate) fn row_block() -> usize {
    pick().rows
}

/// The portable micro-kernel.
const PORTABLE: Micro = Micro {
    tile: portable_tile,
    rows: MR,
};

/// The micro-kernel for this CPU: AVX-512 (twelve rows of one 16-lane vector), AVX2 + FMA
/// (six rows of two 8-lane vectors), else portable code.
fn pick() -> Micro {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Micro {
                tile: avx512::tile,
                rows: avx512::ROWS,
            };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Micro {
                tile: avx2::tile,
                rows: MR,
            };
        }
    }
    PORTABLE
}

/// Writes an accumulator tile row to `c` (adding to it when `accumulate`).
///
/// # Safety
/// `c[0..cols]` at stride `cs` in bounds and unshared.
#[inline(always)]
unsafe fn store_row(row: &[f32; NR], c: *mut f32, cs: isize, cols: usize, accumulate: bool) {
    for (j, &v) in row[..cols].iter().enumerate() {
        let at = c.wrapping_offset(j as isize * cs);
        // SAFETY: the caller's contract.
        unsafe { *at = if accumulate { *at + v } else { v } };
    }
}

/// The portable micro-kernel (the compiler vectorises the `NR`-wide rows).
///
/// # Safety
/// The tile's addresses are in bounds (see [`PackedB::gemm`]).
unsafe fn portable_tile(mr: usize, t: &Tile) {
    let mut acc = [[0f32; NR]; MR];
    for p in 0..t.kc {
        // SAFETY: `p < kc`: row p of the packed panel chunk.
        let b = unsafe { std::slice::from_raw_parts(t.b.add(p * NR), NR) };
        for (i, row) in acc[..mr].iter_mut().enumerate() {
            // SAFETY: (i, p) of the tile's left block.
            let x = unsafe {
                *t.a.wrapping_offset(i as isize * t.a_rs + p as isize * t.a_cs)
            };
            for (r, &y) in row.iter_mut().zip(b) {
                *r += x * y;
            }
        }
    }
    for (i, row) in acc[..mr].iter().enumerate() {
        // SAFETY: row i of the tile's output block.
        unsafe {
            store_row(
                row,
                t.c.wrapping_offset(i as isize * t.c_rs),
                t.c_cs,
                t.cols,
                t.accumulate,
            )
        };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR, Tile, store_row};
    use std::arch::x86_64::*;

    /// Dispatches on the row count so each row count gets a fully unrolled kernel.
    ///
    /// # Safety
    /// AVX2 and FMA are available; the tile's addresses are in bounds.
    pub(super) unsafe fn tile(mr: usize, t: &Tile) {
        // SAFETY: passed on.
        unsafe {
            match mr {
                1 => rows::<1, 4>(t),
                2 => rows::<2, 2>(t),
                3 => rows::<3, 1>(t),
                4 => rows::<4, 1>(t),
                5 => rows::<5, 1>(t),
                _ => rows::<MR, 1>(t),
            }
        }
    }

    /// `M` rows times 16 columns: `2*M` accumulators, two panel loads and `M` broadcasts
    /// per step of the depth. With `U > 1` the depth is unrolled into `U` independent sets of
    /// accumulators (summed at the end), so few rows still keep enough FMAs in flight.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const M: usize, const U: usize>(t: &Tile) {
        let mut sets = [[[_mm256_setzero_ps(); 2]; M]; U];
        let mut row_ptr = [t.a; M];
        for (i, r) in row_ptr.iter_mut().enumerate() {
            *r = t.a.wrapping_offset(i as isize * t.a_rs);
        }
        // One step of the depth into a set of accumulators (a macro, not a closure, so it
        // compiles with this function's target features).
        macro_rules! step {
            ($acc:expr, $p:expr) => {{
                let (acc, p): (&mut [[__m256; 2]; M], usize) = (&mut $acc, $p);
                // SAFETY: `p < kc`: row p of the packed panel chunk and (i, p) of the left
                // block (caller's contract).
                unsafe {
                    let b = t.b.add(p * NR);
                    let b0 = _mm256_loadu_ps(b);
                    let b1 = _mm256_loadu_ps(b.add(8));
                    let off = p as isize * t.a_cs;
                    for (r, row) in acc.iter_mut().zip(&row_ptr) {
                        let x = _mm256_broadcast_ss(&*row.wrapping_offset(off));
                        r[0] = _mm256_fmadd_ps(x, b0, r[0]);
                        r[1] = _mm256_fmadd_ps(x, b1, r[1]);
                    }
                }
            }};
        }
        let full = t.kc / U * U;
        let mut p = 0;
        while p < full {
            for (u, acc) in sets.iter_mut().enumerate() {
                step!(*acc, p + u);
            }
            p += U;
        }
        for p in full..t.kc {
            step!(sets[0], p);
        }
        let (first, rest) = sets.split_at_mut(1);
        let acc = &mut first[0];
        for set in rest.iter() {
            for (a, s) in acc.iter_mut().zip(set) {
                a[0] = _mm256_add_ps(a[0], s[0]);
                a[1] = _mm256_add_ps(a[1], s[1]);
            }
        }
        for (i, [lo, hi]) in acc.iter().enumerate() {
            let c = t.c.wrapping_offset(i as isize * t.c_rs);
            // SAFETY: row i of the output block, `cols` columns at stride c_cs (caller's
            // contract); the full-width contiguous case touches exactly 16 of them.
            unsafe {
                if t.cols == NR && t.c_cs == 1 {
                    let (mut v0, mut v1) = (*lo, *hi);
                    if t.accumulate {
                        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
                        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c.add(8)));
                    }
                    _mm256_storeu_ps(c, v0);
                    _mm256_storeu_ps(c.add(8), v1);
                } else {
                    let mut row = [0f32; NR];
                    _mm256_storeu_ps(row.as_mut_ptr(), *lo);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), *hi);
                    store_row(&row, c, t.c_cs, t.cols, t.accumulate);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{NR, Tile, store_row};
    use std::arch::x86_64::*;

    /// Rows per call: twelve accumulators, one panel load and twelve broadcasts per step.
    pub(super) const ROWS: usize = 12;

    /// Dispatches on the row count so each row count gets a fully unrolled kernel.
    ///
    /// # Safety
    /// AVX-512F is available; the tile's addresses are in bounds.
    pub(super) unsafe fn tile(mr: usize, t: &Tile) {
        // SAFETY: passed on.
        unsafe {
            match mr {
                1 => rows::<1, 8>(t),
                2 => rows::<2, 4>(t),
                3 => rows::<3, 3>(t),
                4 => rows::<4, 2>(t),
                5 => rows::<5, 2>(t),
                6 => rows::<6, 2>(t),
                7 => rows::<7, 1>(t),
                8 => rows::<8, 1>(t),
                9 => rows::<9, 1>(t),
                10 => rows::<10, 1>(t),
                11 => rows::<11, 1>(t),
                _ => rows::<ROWS, 1>(t),
            }
        }
    }

    /// `M` rows of one 16-lane vector; with `U > 1` the depth is unrolled into `U`
    /// independent sets of accumulators (summed at the end).
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const M: usize, const U: usize>(t: &Tile) {
        let mut sets = [[_mm512_setzero_ps(); M]; U];
        let mut row_ptr = [t.a; M];
        for (i, r) in row_ptr.iter_mut().enumerate() {
            *r = t.a.wrapping_offset(i as isize * t.a_rs);
        }
        // One step of the depth into a set of accumulators (a macro, not a closure, so it
        // compiles with this function's target features).
        macro_rules! step {
            ($acc:expr, $p:expr) => {{
                let (acc, p): (&mut [__m512; M], usize) = (&mut $acc, $p);
                // SAFETY: `p < kc`: row p of the packed panel chunk and (i, p) of the left
                // block (caller's contract).
                unsafe {
                    let b0 = _mm512_loadu_ps(t.b.add(p * NR));
                    let off = p as isize * t.a_cs;
                    for (r, row) in acc.iter_mut().zip(&row_ptr) {
                        let x = _mm512_set1_ps(*row.wrapping_offset(off));
                        *r = _mm512_fmadd_ps(x, b0, *r);
                    }
                }
            }};
        }
        let full = t.kc / U * U;
        let mut p = 0;
        while p < full {
            for (u, acc) in sets.iter_mut().enumerate() {
                step!(*acc, p + u);
            }
            p += U;
        }
        for p in full..t.kc {
            step!(sets[0], p);
        }
        let (first, rest) = sets.split_at_mut(1);
        let acc = &mut first[0];
        for set in rest.iter() {
            for (a, s) in acc.iter_mut().zip(set) {
                *a = _mm512_add_ps(*a, *s);
            }
        }
        for (i, v) in acc.iter().enumerate() {
            let c = t.c.wrapping_offset(i as isize * t.c_rs);
            // SAFETY: row i of the output block, `cols` columns at stride c_cs (caller's
            // contract); the full-width contiguous case touches exactly 16 of them.
            unsafe {
                if t.cols == NR && t.c_cs == 1 {
                    let mut v = *v;
                    if t.accumulate {
                        v = _mm512_add_ps(v, _mm512_loadu_ps(c));
                    }
                    _mm512_storeu_ps(c, v);
                } else {
                    let mut row = [0f32; NR];
                    _mm512_storeu_ps(row.as_mut_ptr(), *v);
                    store_row(&row, c, t.c_cs, t.cols, t.accumulate);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn packed_gemm_matches_a_reference_on_ragged_shapes() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 3),
            (13, 33, 300),
            (6, 16, 256),
            (64, 40, 0),
            (5, 70, 513),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0)
                .collect();
            let want = reference(m, n, k, &a, &b);
            // B stored transposed ([n, k] row-major), as a PyTorch weight is.
            let bt: Vec<f32> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
            let mut p = PackedB::default();
            // SAFETY: p < k, j < n index `bt` as [n, k].
            unsafe { p.pack(k, n, bt.as_ptr(), 1, k as isize, Some((1, 1))) };
            assert!(p.holds(k, n, 1, 1) && !p.holds(k, n, 1, 2));
            for micro in [PORTABLE, pick()] {
                let mut c = vec![f32::NAN; m * n];
                // Two halves of the rows, all panels, as two threads would split them.
                for rows in [0..m / 2, m / 2..m] {
                    // SAFETY: a is [m, k], c is [m, n], both row-major; the kernel is
                    // this CPU's or the portable one.
                    unsafe {
                        p.gemm_with(
                            micro,
                            rows,
                            0..n.div_ceil(NR),
                            c.as_mut_ptr(),
                            n as isize,
                            1,
                            a.as_ptr(),
                            k as isize,
                            1,
                        )
                    };
                }
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{m}x{n}x{k}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
