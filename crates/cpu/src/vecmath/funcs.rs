//! The `f32` transcendentals and row reductions, written once over [`Lanes`]: the same
//! operations in the same order as the inline Cranelift code of `codegen/math.rs` on a host
//! with FMA (constants from [`crate::poly`]), so a lane gives the same bits as the inline
//! code at that point, at every width.

use super::lanes::Lanes;
use crate::poly::{
    ERF_CLAMP, ERF_SMALL_P, ERFC_CENTRE, ERFC_INV_HALF_WIDTH, ERFC_SCALED_P, EXP_CLAMP_HI,
    EXP_CLAMP_LO, EXP_FAST_LIMIT, EXP_P, LN2_HI, LN2_LO, LOG_SERIES, LOG2E, ROUND_MAGIC,
    TANH_CLAMP, TANH_SMALL,
};

/// Horner evaluation, coefficients highest degree first, one fused multiply-add a step.
#[inline(always)]
unsafe fn horner<V: Lanes>(x: V, c: &[f32]) -> V {
    // SAFETY (every `unsafe` block of this file): the caller runs with `V`'s instruction
    // set enabled (the contract of `Lanes`, passed on by every function here).
    unsafe {
        let mut acc = V::splat(c[0]);
        for &ci in &c[1..] {
            acc = acc.fma(x, V::splat(ci));
        }
        acc
    }
}

/// `x < k ? k : x` (keeps NaN).
#[inline(always)]
unsafe fn clamp_below<V: Lanes>(x: V, k: f32) -> V {
    unsafe {
        let kv = V::splat(k);
        V::select(x.lt(kv), kv, x)
    }
}

/// `x > k ? k : x` (keeps NaN).
#[inline(always)]
unsafe fn clamp_above<V: Lanes>(x: V, k: f32) -> V {
    unsafe {
        let kv = V::splat(k);
        V::select(x.gt(kv), kv, x)
    }
}

/// `x = n ln2 + r` with `|r| <= ln2/2`: `r` and `n` as an integer (`n` rounded with the
/// `1.5 * 2^23` trick).
#[inline(always)]
unsafe fn exp_reduce<V: Lanes>(x: V) -> (V, V::I) {
    unsafe {
        let m = V::splat(ROUND_MAGIC);
        let t = x.fma(V::splat(LOG2E), m);
        let n = t.sub(m);
        let ni = V::isub(t.to_bits(), V::isplat(ROUND_MAGIC.to_bits() as i32));
        let r = n.fma(V::splat(-LN2_HI), x);
        let r = n.fma(V::splat(-LN2_LO), r);
        (r, ni)
    }
}

/// `2^n` for `n` in `[-126, 127]`.
#[inline(always)]
unsafe fn pow2<V: Lanes>(n: V::I) -> V {
    unsafe { V::from_bits(V::shl23(V::iadd(n, V::isplat(127)))) }
}

/// `e^x` given `a = |x|`: the fast path adds `n` to the exponent bits when every lane has
/// `a <= 86.5`; otherwise the clamped two-halves path (the same bits where both apply).
#[inline(always)]
unsafe fn exp_abs<V: Lanes>(x: V, a: V) -> V {
    unsafe {
        if !V::any(a.ngt_le(V::splat(EXP_FAST_LIMIT))) {
            let (r, ni) = exp_reduce(x);
            let p = horner(r, &EXP_P);
            V::from_bits(V::iadd(p.to_bits(), V::shl23(ni)))
        } else {
            let xc = clamp_above(clamp_below(x, EXP_CLAMP_LO), EXP_CLAMP_HI);
            let (r, ni) = exp_reduce(xc);
            let p = horner(r, &EXP_P);
            let n1 = V::sra1(ni);
            let n2 = V::isub(ni, n1);
            p.mul(pow2(n1)).mul(pow2(n2))
        }
    }
}

/// `e^x`.
#[inline(always)]
pub(super) unsafe fn exp<V: Lanes>(x: V) -> V {
    unsafe { exp_abs(x, x.abs()) }
}

/// `ln x` (subnormals scaled by `2^23`; `x = m 2^e`, `s = (m-1)/(m+1)`, odd series).
#[inline(always)]
pub(super) unsafe fn log<V: Lanes>(x: V) -> V {
    unsafe {
        let tiny = x.lt(V::splat(f32::MIN_POSITIVE));
        let scaled = x.mul(V::splat(8_388_608.0));
        let xs = V::select(tiny, scaled, x);
        let eadj = V::iselect(tiny, V::isplat(-23), V::isplat(0));
        let bits = xs.to_bits();
        let e = V::iand(V::shr23(bits), V::isplat(0xff));
        let e = V::iadd(V::isub(e, V::isplat(127)), eadj);
        let mb = V::ior(
            V::iand(bits, V::isplat(0x007f_ffff)),
            V::isplat(0x3f80_0000),
        );
        let m = V::from_bits(mb);
        let big = m.gt(V::splat(std::f32::consts::SQRT_2));
        let m = V::select(big, m.mul(V::splat(0.5)), m);
        let e = V::iadd(e, V::iselect(big, V::isplat(1), V::isplat(0)));
        let ef = V::from_int(e);
        let one = V::splat(1.0);
        let f = m.sub(one);
        let d = f.add(V::splat(2.0));
        let s = f.div(d);
        let s2 = s.mul(s);
        let series = horner(s2, &LOG_SERIES).mul(s2);
        let tail = s.mul(series);
        let tail = ef.fma(V::splat(LN2_LO), tail);
        let t = s.add(s).add(tail);
        let res = ef.fma(V::splat(LN2_HI), t);
        let inf = V::splat(f32::INFINITY);
        let res = V::select(x.eq(inf), inf, res);
        let zero = V::splat(0.0);
        let res = V::select(x.eq(zero), V::splat(f32::NEG_INFINITY), res);
        V::select(x.nge(zero), V::splat(f32::NAN), res)
    }
}

/// `t` with the sign bit of `s` ORed in.
#[inline(always)]
unsafe fn with_sign_of<V: Lanes>(t: V, s: V) -> V {
    unsafe {
        let sign = V::iand(s.to_bits(), V::isplat(i32::MIN));
        V::from_bits(V::ior(t.to_bits(), sign))
    }
}

/// `tanh x = sign(x) m / (m + 2)`, `m = e^(2a) - 1`, `a = min(|x|, 9.1)`.
#[inline(always)]
pub(super) unsafe fn tanh<V: Lanes>(x: V) -> V {
    unsafe {
        let a = x.abs();
        let ac = clamp_above(a, TANH_CLAMP);
        let (r, ni) = exp_reduce(ac.add(ac));
        let p2 = horner(r, &EXP_P[..5]);
        let q = r.fma(r.mul(p2), r);
        let s = pow2::<V>(ni);
        let one = V::splat(1.0);
        let m = s.fma(q, s.sub(one));
        let d = s.fma(q, s.add(one));
        let small = a.lt(V::splat(TANH_SMALL));
        let num = V::select(small, m, V::splat(2.0));
        let v = num.div(d);
        let t = V::select(small, v, one.sub(v));
        with_sign_of(t, x)
    }
}

/// `(x >= 0 ? 1 : e) / (1 + e)` with `e = e^-|x|`.
#[inline(always)]
pub(super) unsafe fn sigmoid<V: Lanes>(x: V) -> V {
    unsafe {
        let a = x.abs();
        let e = exp_abs(a.neg(), a);
        let one = V::splat(1.0);
        let d = one.add(e);
        let num = V::select(x.ge(V::splat(0.0)), one, e);
        num.div(d)
    }
}

/// `erf x`: `x P(x^2)` below 1, `sign(x) (1 - e^(-a^2) Q(a))` on `[1, 4]`, clamped above.
#[inline(always)]
pub(super) unsafe fn erf<V: Lanes>(x: V) -> V {
    unsafe {
        let a = x.abs();
        let small = x.mul(horner(x.mul(x), &ERF_SMALL_P));
        let ac = clamp_above(a, ERF_CLAMP);
        let t = ac
            .add(V::splat(-ERFC_CENTRE))
            .mul(V::splat(ERFC_INV_HALF_WIDTH));
        let g = horner(t, &ERFC_SCALED_P);
        let e = exp(ac.mul(ac).neg());
        let big = g.neg().fma(e, V::splat(1.0));
        let big = with_sign_of(big.abs(), x);
        V::select(a.lt(V::splat(1.0)), small, big)
    }
}

/// A unary function over lanes. A type per function, not a closure, so the function is
/// inlined into the caller compiled with `V`'s target features (a closure is compiled on
/// its own, without them).
pub(super) trait Unary {
    /// The function at every lane.
    ///
    /// # Safety
    ///
    /// `V`'s instruction set is available.
    unsafe fn f<V: Lanes>(x: V) -> V;
}

/// Defines the [`Unary`] type of each function.
macro_rules! unary_types {
    ($($name:ident => $f:ident),* $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($f), "` as a [`Unary`].")]
            #[derive(Debug)]
            pub(super) struct $name;
            impl Unary for $name {
                #[inline(always)]
                unsafe fn f<V: Lanes>(x: V) -> V {
                    // SAFETY: forwarded from the caller.
                    unsafe { $f(x) }
                }
            }
        )*
    };
}

unary_types!(Exp => exp, Log => log, Tanh => tanh, Sigmoid => sigmoid, Erf => erf);

/// Applies `F` in place to `n` floats at `p`: whole vectors, then the tail through a
/// zero-padded vector on the stack.
#[inline(always)]
pub(super) unsafe fn map<V: Lanes, F: Unary>(p: *mut f32, n: usize) {
    unsafe {
        let whole = n - n % V::N;
        let mut i = 0;
        while i < whole {
            let q = p.add(i);
            F::f(V::load(q)).store(q);
            i += V::N;
        }
        if whole < n {
            let mut pad = [0.0f32; 16];
            std::ptr::copy_nonoverlapping(p.add(whole), pad.as_mut_ptr(), n - whole);
            F::f(V::load(pad.as_ptr())).store(pad.as_mut_ptr());
            std::ptr::copy_nonoverlapping(pad.as_ptr(), p.add(whole), n - whole);
        }
    }
}

/// Writes `F(src[j] - c)` to `dst[j]` for `j < n`: whole vectors, then the tail through a
/// zero-padded vector on the stack. `dst` and `src` may be the same (never partly
/// overlapping) memory.
#[inline(always)]
pub(super) unsafe fn map_shifted<V: Lanes, F: Unary>(
    dst: *mut f32,
    src: *const f32,
    c: f32,
    n: usize,
) {
    unsafe {
        let whole = n - n % V::N;
        let shift = V::splat(c);
        let mut i = 0;
        while i < whole {
            F::f(V::load(src.add(i)).sub(shift)).store(dst.add(i));
            i += V::N;
        }
        if whole < n {
            let mut pad = [0.0f32; 16];
            std::ptr::copy_nonoverlapping(src.add(whole), pad.as_mut_ptr(), n - whole);
            F::f(V::load(pad.as_ptr()).sub(shift)).store(pad.as_mut_ptr());
            std::ptr::copy_nonoverlapping(pad.as_ptr(), dst.add(whole), n - whole);
        }
    }
}

/// Independent accumulator vectors of the row reductions.
const ACCS: usize = 4;

/// The largest of `n` floats at `p` (`-inf` for none, NaN if any is NaN): partial maxima
/// stepped with a compare and a blend, NaN terms recorded in a mask.
#[inline(always)]
pub(super) unsafe fn row_max<V: Lanes>(p: *const f32, n: usize) -> f32 {
    unsafe {
        let mut acc = [V::splat(f32::NEG_INFINITY); ACCS];
        let mut nan = V::mask_none();
        let step = V::N * ACCS;
        let whole = n - n % step;
        let mut i = 0;
        while i < whole {
            for (k, a) in acc.iter_mut().enumerate() {
                let x = V::load(p.add(i + k * V::N));
                *a = V::select(x.gt(*a), x, *a);
                nan = V::mask_or(nan, x.unord(x));
            }
            i += step;
        }
        let mut best = f32::NEG_INFINITY;
        let mut any_nan = V::any(nan);
        for a in acc {
            for &l in &a.lanes()[..V::N] {
                best = if l > best { l } else { best };
            }
        }
        for j in whole..n {
            let x = *p.add(j);
            any_nan |= x.is_nan();
            best = if x > best { x } else { best };
        }
        if any_nan { f32::NAN } else { best }
    }
}

/// The sum of `n` floats at `p`: [`ACCS`] vectors of lane partials (term `k` to vector
/// `(k / N) mod ACCS`, lane `k mod N`), added pairwise, then their lanes in order, then the
/// tail in order.
#[inline(always)]
pub(super) unsafe fn row_sum<V: Lanes>(p: *const f32, n: usize) -> f32 {
    unsafe {
        let mut acc = [V::splat(-0.0); ACCS];
        let step = V::N * ACCS;
        let whole = n - n % step;
        let mut i = 0;
        while i < whole {
            for (k, a) in acc.iter_mut().enumerate() {
                *a = a.add(V::load(p.add(i + k * V::N)));
            }
            i += step;
        }
        let v = acc[0].add(acc[1]).add(acc[2].add(acc[3]));
        let mut sum = -0.0f32;
        for &l in &v.lanes()[..V::N] {
            sum += l;
        }
        for j in whole..n {
            sum += *p.add(j);
        }
        sum
    }
}
