//! im2col for the conv2d contraction: copies the input patches of a block of output positions
//! into GEMM columns, one output row segment at a time (no division per element; runs of
//! unit-stride input are plain copies).

/// The geometry of a 2-D convolution as im2col sees it (all in elements, non-negative).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    /// Input height and width.
    pub h: i64,
    pub w: i64,
    /// Kernel height and width.
    pub kh: i64,
    pub kw: i64,
    /// Strides.
    pub sh: i64,
    pub sw: i64,
    /// Leading padding.
    pub ph: i64,
    pub pw: i64,
    /// Dilations.
    pub dh: i64,
    pub dw: i64,
    /// Output width.
    pub ow: i64,
}

/// Strides (in elements) of the input's channel, row and column axes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strides {
    pub c: i64,
    pub h: i64,
    pub w: i64,
}

/// The positions `[lo, hi)` within `[0, ow)` whose input column `ox*sw + off` lies in
/// `[0, w)` (output columns of one kernel column, or kernel columns of one output column).
fn valid_cols(off: i64, sw: i64, w: i64, ow: i64) -> (i64, i64) {
    // ox*sw + off >= 0  <=>  ox >= ceil(-off / sw)
    let lo = if off >= 0 { 0 } else { (-off + sw - 1) / sw };
    // ox*sw + off <= w - 1  <=>  ox <= floor((w - 1 - off) / sw)
    let last = w - 1 - off;
    let hi = if last < 0 { 0 } else { last / sw + 1 };
    (lo.min(ow), hi.min(ow).max(lo.min(ow)))
}

/// How [`fill`] lays out the columns: `K = channels * kh * kw` patch elements by `P` output
/// positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `col[k * P + p]`: runs along output rows (long when the output is wide).
    KMajor,
    /// `col[p * K + k]`: runs along kernel rows (long when the kernel is wide, as in the
    /// weight-gradient convolution, whose "kernel" is the whole output plane).
    PMajor,
}

impl Layout {
    /// The layout with the longer contiguous runs for `g`.
    pub(crate) fn for_geometry(g: &Geometry) -> Layout {
        if g.kw > g.ow {
            Layout::PMajor
        } else {
            Layout::KMajor
        }
    }

    /// `(row stride, column stride)` of the `K x P` matrix in this layout.
    pub(crate) fn strides(self, k: i64, p: i64) -> (i64, i64) {
        match self {
            Layout::KMajor => (p, 1),
            Layout::PMajor => (1, k),
        }
    }
}

/// Copies `dst.len()` elements starting at `src`, `step` elements apart.
///
/// # Safety
///
/// Every `src + j * step` for `j < dst.len()` must be readable.
#[inline]
unsafe fn gather_run<T: Copy>(dst: &mut [T], src: *const T, step: i64) {
    if step == 1 {
        for (j, slot) in dst.iter_mut().enumerate() {
            // SAFETY: per the contract.
            *slot = unsafe { *src.add(j) };
        }
    } else {
        for (j, slot) in dst.iter_mut().enumerate() {
            // SAFETY: per the contract.
            *slot = unsafe { *src.wrapping_offset(j as isize * step as isize) };
        }
    }
}

/// Fills `col`, the `K = channels * kh * kw` by `p1 - p0` patch matrix in `layout`, with
/// the input values read by output positions `[p0, p1)` (row-major over the output plane),
/// zero where the kernel reads padding.
///
/// # Safety
///
/// `x` must point at element `(channel 0, row 0, column 0)` of the input plane, and for every
/// `ci < channels`, `iy < g.h`, `ix < g.w` the element at
/// `x + ci*s.c + iy*s.h + ix*s.w` must be readable. `col` must hold at least
/// `channels * kh * kw * (p1 - p0)` elements; `0 <= p0 <= p1`, `g.sw >= 1`, `g.ow >= 1`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn fill<T: Copy>(
    col: &mut [T],
    zero: T,
    x: *const T,
    s: Strides,
    channels: i64,
    g: &Geometry,
    layout: Layout,
    p0: i64,
    p1: i64,
) {
    match layout {
        // SAFETY: the same contract.
        Layout::KMajor => unsafe { fill_k_major(col, zero, x, s, channels, g, p0, p1) },
        // SAFETY: the same contract.
        Layout::PMajor => unsafe { fill_p_major(col, zero, x, s, channels, g, p0, p1) },
    }
}

/// [`fill`] in [`Layout::KMajor`].
#[allow(clippy::too_many_arguments)]
unsafe fn fill_k_major<T: Copy>(
    col: &mut [T],
    zero: T,
    x: *const T,
    s: Strides,
    channels: i64,
    g: &Geometry,
    p0: i64,
    p1: i64,
) {
    let cols = (p1 - p0) as usize;
    let mut row = 0usize;
    for ci in 0..channels {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut col[row * cols..(row + 1) * cols];
                row += 1;
                let xoff = kx * g.dw - g.pw;
                let (lo, hi) = valid_cols(xoff, g.sw, g.w, g.ow);
                let (mut oy, mut ox0) = (p0 / g.ow, p0 % g.ow);
                let mut at = 0usize;
                while at < cols {
                    let ox1 = g.ow.min(ox0 + (cols - at) as i64);
                    let n = (ox1 - ox0) as usize;
                    let seg = &mut dst[at..at + n];
                    let iy = oy * g.sh + ky * g.dh - g.ph;
                    if iy < 0 || iy >= g.h {
                        seg.fill(zero);
                    } else {
                        let a = lo.clamp(ox0, ox1);
                        let b = hi.clamp(a, ox1);
                        let (a_at, b_at) = ((a - ox0) as usize, (b - ox0) as usize);
                        seg[..a_at].fill(zero);
                        seg[b_at..].fill(zero);
                        let ix = a * g.sw + xoff;
                        let src = x.wrapping_offset((ci * s.c + iy * s.h + ix * s.w) as isize);
                        // SAFETY: columns ix, ix + sw, ... of row iy of channel ci are inside
                        // the input plane (valid_cols), readable per the contract.
                        unsafe { gather_run(&mut seg[a_at..b_at], src, g.sw * s.w) };
                    }
                    at += n;
                    oy += 1;
                    ox0 = 0;
                }
            }
        }
    }
}

/// [`fill`] in [`Layout::PMajor`].
#[allow(clippy::too_many_arguments)]
unsafe fn fill_p_major<T: Copy>(
    col: &mut [T],
    zero: T,
    x: *const T,
    s: Strides,
    channels: i64,
    g: &Geometry,
    p0: i64,
    p1: i64,
) {
    let k = (channels * g.kh * g.kw) as usize;
    let kw = g.kw as usize;
    for (j, p) in (p0..p1).enumerate() {
        let (oy, ox) = (p / g.ow, p % g.ow);
        let dst = &mut col[j * k..(j + 1) * k];
        // Kernel columns kx with 0 <= ox*sw + kx*dw - pw < w: the same range problem as
        // the output columns of one kernel column, with dw as the step.
        let base = ox * g.sw - g.pw;
        let (lo, hi) = valid_cols(base, g.dw, g.w, g.kw);
        let mut at = 0usize;
        for ci in 0..channels {
            for ky in 0..g.kh {
                let run = &mut dst[at..at + kw];
                at += kw;
                let iy = oy * g.sh + ky * g.dh - g.ph;
                if iy < 0 || iy >= g.h {
                    run.fill(zero);
                    continue;
                }
                let (a, b) = (lo as usize, hi as usize);
                run[..a].fill(zero);
                run[b..].fill(zero);
                let ix = base + lo * g.dw;
                let src = x.wrapping_offset((ci * s.c + iy * s.h + ix * s.w) as isize);
                // SAFETY: kernel columns lo..hi read input columns inside [0, w) of row iy
                // (in range) of channel ci, readable per the contract.
                unsafe { gather_run(&mut run[a..b], src, g.dw * s.w) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-element definition im2col must equal.
    fn naive(x: &[f32], c: i64, g: &Geometry, oh: i64, p0: i64, p1: i64) -> Vec<f32> {
        let mut out = Vec::new();
        for ci in 0..c {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    for p in p0..p1 {
                        let (oy, ox) = (p / g.ow, p % g.ow);
                        assert!(oy < oh);
                        let iy = oy * g.sh + ky * g.dh - g.ph;
                        let ix = ox * g.sw + kx * g.dw - g.pw;
                        out.push(if iy >= 0 && iy < g.h && ix >= 0 && ix < g.w {
                            x[(ci * g.h * g.w + iy * g.w + ix) as usize]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_over_geometries_and_blocks() {
        let mut cases = 0;
        for (h, w) in [(1, 1), (5, 7), (9, 4)] {
            for (kh, kw) in [(1, 1), (3, 2), (5, 5)] {
                for (sh, sw) in [(1, 1), (2, 3)] {
                    for (ph, pw) in [(0, 0), (2, 1)] {
                        for (dh, dw) in [(1, 1), (2, 1), (1, 2)] {
                            let span_h = dh * (kh - 1) + 1;
                            let span_w = dw * (kw - 1) + 1;
                            if h + 2 * ph < span_h || w + 2 * pw < span_w {
                                continue;
                            }
                            let oh = (h + 2 * ph - span_h) / sh + 1;
                            let ow = (w + 2 * pw - span_w) / sw + 1;
                            let g = Geometry {
                                h,
                                w,
                                kh,
                                kw,
                                sh,
                                sw,
                                ph,
                                pw,
                                dh,
                                dw,
                                ow,
                            };
                            let c = 2;
                            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
                            let plane = oh * ow;
                            for (p0, p1) in [
                                (0, plane),
                                (1, plane),
                                (0, plane.min(3)),
                                (plane / 2, plane),
                            ] {
                                if p0 > p1 {
                                    continue;
                                }
                                let want = naive(&x, c, &g, oh, p0, p1);
                                let s = Strides {
                                    c: h * w,
                                    h: w,
                                    w: 1,
                                };
                                let kk = (c * kh * kw) as usize;
                                let np = (p1 - p0) as usize;
                                for layout in [Layout::KMajor, Layout::PMajor] {
                                    let mut got = vec![f32::NAN; want.len()];
                                    // SAFETY: x is a dense [c, h, w] plane.
                                    unsafe {
                                        fill(&mut got, 0.0, x.as_ptr(), s, c, &g, layout, p0, p1)
                                    };
                                    let (rs, cs) = layout.strides(kk as i64, np as i64);
                                    let read: Vec<f32> = (0..kk)
                                        .flat_map(|r| (0..np).map(move |q| (r, q)))
                                        .map(|(r, q)| got[r * rs as usize + q * cs as usize])
                                        .collect();
                                    assert_eq!(read, want, "{layout:?} {g:?} p {p0}..{p1}");
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(cases > 100, "{cases}");
    }
}
