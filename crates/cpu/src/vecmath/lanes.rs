//! The lane operations the wide kernels are written over: one trait, [`Lanes`], with an
//! implementation per instruction set (AVX-512F `__m512`, AVX2+FMA `__m256`, and a
//! portable one-lane `f32`), so each function in [`super::funcs`] is written once and
//! compiled once per width.
//!
//! Every method is `#[inline(always)]` and `unsafe`: an implementation may only be used
//! inside a function compiled with its target features (`#[target_feature]`), entered after
//! run-time detection of those features ([`super::Level::detect`]). Multiply-add is always
//! fused, as in the inline code on a host with FMA.

/// A vector of `f32` lanes with its `i32` lanes and lane mask types.
///
/// # Safety
///
/// Implementations call instructions of one instruction set; a caller must only use them
/// where that set is available (see the module docs).
pub(super) unsafe trait Lanes: Copy {
    /// The same lanes as `i32`.
    type I: Copy;
    /// A lane mask.
    type M: Copy;
    /// Lanes per vector.
    const N: usize;

    /// Loads `N` floats (unaligned).
    unsafe fn load(p: *const f32) -> Self;
    /// Stores `N` floats (unaligned).
    unsafe fn store(self, p: *mut f32);
    unsafe fn splat(v: f32) -> Self;
    unsafe fn isplat(v: i32) -> Self::I;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    /// `self * b + c`, rounded once.
    unsafe fn fma(self, b: Self, c: Self) -> Self;
    /// Clears the sign bit.
    unsafe fn abs(self) -> Self;
    /// Flips the sign bit.
    unsafe fn neg(self) -> Self;
    /// `self < b` (false for NaN).
    unsafe fn lt(self, b: Self) -> Self::M;
    /// `self > b` (false for NaN).
    unsafe fn gt(self, b: Self) -> Self::M;
    /// `self >= b` (false for NaN).
    unsafe fn ge(self, b: Self) -> Self::M;
    /// `self == b` (false for NaN).
    unsafe fn eq(self, b: Self) -> Self::M;
    /// `!(self <= b)`: greater, or either is NaN.
    unsafe fn ngt_le(self, b: Self) -> Self::M;
    /// `!(self >= b)`: less, or either is NaN.
    unsafe fn nge(self, b: Self) -> Self::M;
    /// Either is NaN.
    unsafe fn unord(self, b: Self) -> Self::M;
    unsafe fn mask_or(a: Self::M, b: Self::M) -> Self::M;
    /// The mask of no lane.
    unsafe fn mask_none() -> Self::M;
    /// Whether any lane is set.
    unsafe fn any(m: Self::M) -> bool;
    /// `m ? a : b` lane by lane.
    unsafe fn select(m: Self::M, a: Self, b: Self) -> Self;
    /// `m ? a : b` lane by lane, on integers.
    unsafe fn iselect(m: Self::M, a: Self::I, b: Self::I) -> Self::I;
    unsafe fn to_bits(self) -> Self::I;
    unsafe fn from_bits(i: Self::I) -> Self;
    unsafe fn iadd(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn isub(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn iand(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn ior(a: Self::I, b: Self::I) -> Self::I;
    /// Shift left by 23 (into the exponent field).
    unsafe fn shl23(a: Self::I) -> Self::I;
    /// Logical shift right by 23 (the exponent field down).
    unsafe fn shr23(a: Self::I) -> Self::I;
    /// Arithmetic shift right by 1.
    unsafe fn sra1(a: Self::I) -> Self::I;
    /// Signed integer to float, rounded to nearest.
    unsafe fn from_int(a: Self::I) -> Self;
    /// The lanes in order, in the first `N` entries.
    unsafe fn lanes(self) -> [f32; 16];
}

/// The portable implementation: one lane, plain `f32` arithmetic, `f32::mul_add`.
#[derive(Clone, Copy, Debug)]
pub(super) struct One(pub f32);

// SAFETY: plain Rust arithmetic, available everywhere.
unsafe impl Lanes for One {
    type I = i32;
    type M = bool;
    const N: usize = 1;

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller passes a pointer to one readable float.
        One(unsafe { p.read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller passes a pointer to one writable float.
        unsafe { p.write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        One(v)
    }
    #[inline(always)]
    unsafe fn isplat(v: i32) -> i32 {
        v
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        One(self.0 + b.0)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        One(self.0 - b.0)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        One(self.0 * b.0)
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        One(self.0 / b.0)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        One(self.0.mul_add(b.0, c.0))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        One(self.0.abs())
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        One(-self.0)
    }
    #[inline(always)]
    unsafe fn lt(self, b: Self) -> bool {
        self.0 < b.0
    }
    #[inline(always)]
    unsafe fn gt(self, b: Self) -> bool {
        self.0 > b.0
    }
    #[inline(always)]
    unsafe fn ge(self, b: Self) -> bool {
        self.0 >= b.0
    }
    #[inline(always)]
    unsafe fn eq(self, b: Self) -> bool {
        self.0 == b.0
    }
    #[inline(always)]
    unsafe fn ngt_le(self, b: Self) -> bool {
        self.0 > b.0 || self.0.is_nan() || b.0.is_nan()
    }
    #[inline(always)]
    unsafe fn nge(self, b: Self) -> bool {
        self.0 < b.0 || self.0.is_nan() || b.0.is_nan()
    }
    #[inline(always)]
    unsafe fn unord(self, b: Self) -> bool {
        self.0.is_nan() || b.0.is_nan()
    }
    #[inline(always)]
    unsafe fn mask_or(a: bool, b: bool) -> bool {
        a | b
    }
    #[inline(always)]
    unsafe fn mask_none() -> bool {
        false
    }
    #[inline(always)]
    unsafe fn any(m: bool) -> bool {
        m
    }
    #[inline(always)]
    unsafe fn select(m: bool, a: Self, b: Self) -> Self {
        if m { a } else { b }
    }
    #[inline(always)]
    unsafe fn iselect(m: bool, a: i32, b: i32) -> i32 {
        if m { a } else { b }
    }
    #[inline(always)]
    unsafe fn to_bits(self) -> i32 {
        self.0.to_bits() as i32
    }
    #[inline(always)]
    unsafe fn from_bits(i: i32) -> Self {
        One(f32::from_bits(i as u32))
    }
    #[inline(always)]
    unsafe fn iadd(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    unsafe fn isub(a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    #[inline(always)]
    unsafe fn iand(a: i32, b: i32) -> i32 {
        a & b
    }
    #[inline(always)]
    unsafe fn ior(a: i32, b: i32) -> i32 {
        a | b
    }
    #[inline(always)]
    unsafe fn shl23(a: i32) -> i32 {
        a.wrapping_shl(23)
    }
    #[inline(always)]
    unsafe fn shr23(a: i32) -> i32 {
        ((a as u32) >> 23) as i32
    }
    #[inline(always)]
    unsafe fn sra1(a: i32) -> i32 {
        a >> 1
    }
    #[inline(always)]
    unsafe fn from_int(a: i32) -> Self {
        One(a as f32)
    }
    #[inline(always)]
    unsafe fn lanes(self) -> [f32; 16] {
        let mut out = [0.0; 16];
        out[0] = self.0;
        out
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// Eight lanes, AVX2 + FMA.
    #[derive(Clone, Copy, Debug)]
    pub(in super::super) struct Avx2(__m256);

    /// Sixteen lanes, AVX-512F.
    #[derive(Clone, Copy, Debug)]
    pub(in super::super) struct Avx512(__m512);

    /// Implements a method whose body is one `unsafe` intrinsic expression; the safety
    /// argument is the trait's (the caller runs with the instruction set enabled).
    macro_rules! lane_fns {
        ($( fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty = $body:expr; )*) => {
            $(
                #[inline(always)]
                unsafe fn $name($($arg: $ty),*) -> $ret {
                    // SAFETY: the caller runs with this implementation's features enabled
                    // (trait contract); pointer arguments are valid for `N` floats.
                    unsafe { $body }
                }
            )*
        };
    }

    // SAFETY: every method uses AVX/AVX2/FMA instructions only.
    unsafe impl Lanes for Avx2 {
        type I = __m256i;
        type M = __m256;
        const N: usize = 8;
        lane_fns! {
            fn load(p: *const f32) -> Self = Avx2(_mm256_loadu_ps(p));
            fn splat(v: f32) -> Self = Avx2(_mm256_set1_ps(v));
            fn isplat(v: i32) -> __m256i = _mm256_set1_epi32(v);
            fn mask_or(a: __m256, b: __m256) -> __m256 = _mm256_or_ps(a, b);
            fn mask_none() -> __m256 = _mm256_setzero_ps();
            fn any(m: __m256) -> bool = _mm256_movemask_ps(m) != 0;
            fn select(m: __m256, a: Self, b: Self) -> Self = Avx2(_mm256_blendv_ps(b.0, a.0, m));
            fn iselect(m: __m256, a: __m256i, b: __m256i) -> __m256i = _mm256_castps_si256(
                _mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m)
            );
            fn from_bits(i: __m256i) -> Self = Avx2(_mm256_castsi256_ps(i));
            fn iadd(a: __m256i, b: __m256i) -> __m256i = _mm256_add_epi32(a, b);
            fn isub(a: __m256i, b: __m256i) -> __m256i = _mm256_sub_epi32(a, b);
            fn iand(a: __m256i, b: __m256i) -> __m256i = _mm256_and_si256(a, b);
            fn ior(a: __m256i, b: __m256i) -> __m256i = _mm256_or_si256(a, b);
            fn shl23(a: __m256i) -> __m256i = _mm256_slli_epi32::<23>(a);
            fn shr23(a: __m256i) -> __m256i = _mm256_srli_epi32::<23>(a);
            fn sra1(a: __m256i) -> __m256i = _mm256_srai_epi32::<1>(a);
            fn from_int(a: __m256i) -> Self = Avx2(_mm256_cvtepi32_ps(a));
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx2(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx2(unsafe { _mm256_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx2(unsafe { _mm256_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn div(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx2(unsafe { _mm256_div_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn abs(self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx2(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
        }
        #[inline(always)]
        unsafe fn neg(self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx2(unsafe { _mm256_xor_ps(_mm256_set1_ps(-0.0), self.0) })
        }
        #[inline(always)]
        unsafe fn lt(self, b: Self) -> __m256 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn gt(self, b: Self) -> __m256 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn ge(self, b: Self) -> __m256 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_cmp_ps::<_CMP_GE_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn eq(self, b: Self) -> __m256 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn ngt_le(self, b: Self) -> __m256 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_cmp_ps::<_CMP_NLE_UQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn nge(self, b: Self) -> __m256 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_cmp_ps::<_CMP_NGE_UQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn unord(self, b: Self) -> __m256 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_cmp_ps::<_CMP_UNORD_Q>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn to_bits(self) -> __m256i {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm256_castps_si256(self.0) }
        }
        #[inline(always)]
        unsafe fn lanes(self) -> [f32; 16] {
            let mut out = [0.0; 16];
            // SAFETY: as in `lane_fns!`; `out` has room for 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), self.0) };
            out
        }
    }

    // SAFETY: every method uses AVX-512F instructions only.
    unsafe impl Lanes for Avx512 {
        type I = __m512i;
        type M = __mmask16;
        const N: usize = 16;
        lane_fns! {
            fn load(p: *const f32) -> Self = Avx512(_mm512_loadu_ps(p));
            fn splat(v: f32) -> Self = Avx512(_mm512_set1_ps(v));
            fn isplat(v: i32) -> __m512i = _mm512_set1_epi32(v);
            fn select(m: __mmask16, a: Self, b: Self) -> Self = Avx512(_mm512_mask_blend_ps(m, b.0, a.0));
            fn iselect(m: __mmask16, a: __m512i, b: __m512i) -> __m512i = _mm512_mask_blend_epi32(m, b, a);
            fn from_bits(i: __m512i) -> Self = Avx512(_mm512_castsi512_ps(i));
            fn iadd(a: __m512i, b: __m512i) -> __m512i = _mm512_add_epi32(a, b);
            fn isub(a: __m512i, b: __m512i) -> __m512i = _mm512_sub_epi32(a, b);
            fn iand(a: __m512i, b: __m512i) -> __m512i = _mm512_and_si512(a, b);
            fn ior(a: __m512i, b: __m512i) -> __m512i = _mm512_or_si512(a, b);
            fn shl23(a: __m512i) -> __m512i = _mm512_slli_epi32::<23>(a);
            fn shr23(a: __m512i) -> __m512i = _mm512_srli_epi32::<23>(a);
            fn sra1(a: __m512i) -> __m512i = _mm512_srai_epi32::<1>(a);
            fn from_int(a: __m512i) -> Self = Avx512(_mm512_cvtepi32_ps(a));
        }
        #[inline(always)]
        unsafe fn mask_or(a: __mmask16, b: __mmask16) -> __mmask16 {
            a | b
        }
        #[inline(always)]
        unsafe fn mask_none() -> __mmask16 {
            0
        }
        #[inline(always)]
        unsafe fn any(m: __mmask16) -> bool {
            m != 0
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx512(unsafe { _mm512_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx512(unsafe { _mm512_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx512(unsafe { _mm512_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn div(self, b: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx512(unsafe { _mm512_div_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx512(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn abs(self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx512(unsafe {
                _mm512_castsi512_ps(_mm512_and_si512(
                    _mm512_castps_si512(self.0),
                    _mm512_set1_epi32(i32::MAX),
                ))
            })
        }
        #[inline(always)]
        unsafe fn neg(self) -> Self {
            // SAFETY: as in `lane_fns!`.
            Avx512(unsafe {
                _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(self.0),
                    _mm512_set1_epi32(i32::MIN),
                ))
            })
        }
        #[inline(always)]
        unsafe fn lt(self, b: Self) -> __mmask16 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn gt(self, b: Self) -> __mmask16 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn ge(self, b: Self) -> __mmask16 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_cmp_ps_mask::<_CMP_GE_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn eq(self, b: Self) -> __mmask16 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn ngt_le(self, b: Self) -> __mmask16 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn nge(self, b: Self) -> __mmask16 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn unord(self, b: Self) -> __mmask16 {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self.0, b.0) }
        }
        #[inline(always)]
        unsafe fn to_bits(self) -> __m512i {
            // SAFETY: as in `lane_fns!`.
            unsafe { _mm512_castps_si512(self.0) }
        }
        #[inline(always)]
        unsafe fn lanes(self) -> [f32; 16] {
            let mut out = [0.0; 16];
            // SAFETY: as in `lane_fns!`; `out` has room for 16 floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), self.0) };
            out
        }
    }
}
