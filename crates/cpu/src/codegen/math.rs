//! Inline `f32` transcendentals (exp, log, tanh, sigmoid, erf, sin, cos) as polynomial
//! approximations, emitted identically for scalars (`f32`) and vectors (`f32x4`), so a
//! point gives the same bits in a vector body and in its scalar tail. No libm call is made
//! on the `f32` path. Measured accuracy is in docs/numerics.md; the coefficients are
//! Chebyshev fits (mpmath `chebyfit`) rounded to `f32`, the generator is in that document.

use super::Cg;
use super::error::CodegenError;
use crate::jit::Helper;
use crate::poly::{
    ERF_CLAMP, ERF_SMALL_P, ERFC_CENTRE, ERFC_INV_HALF_WIDTH, ERFC_SCALED_P, EXP_CLAMP_HI,
    EXP_CLAMP_LO, EXP_FAST_LIMIT, EXP_P, LN2_HI, LN2_LO, LOG_SERIES, LOG2E, ROUND_MAGIC,
    TANH_CLAMP, TANH_SMALL,
};
use cranelift_codegen::ir::{
    BlockArg, Endianness, InstBuilder, MemFlagsData, Type, Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use kiln_ir::{DType, UnaryOp};

const FRAC_2_PI: f32 = std::f32::consts::FRAC_2_PI;
/// `pi/2` in three `f32` parts (full precision; with fused multiply-add).
const PIO2_FMA: [f32; 3] = [1.570_796_4, -4.371_139e-8, -1.715_124_5e-15];
/// Above this magnitude sine and cosine call libm (f64) lane by lane.
const SINCOS_LIMIT: f32 = 524_288.0;
/// `pi/2` in three parts whose products with `|n| < 2^12` are exact (no fused multiply-add).
const PIO2_SHORT: [f32; 3] = [1.570_800_8, -4.410_743_7e-6, -4.371_139e-8];

impl Cg<'_, '_> {
    /// A float constant of type `ty` (`f32` or `f32x4`).
    fn fk(&mut self, ty: Type, v: f32) -> Value {
        let c = self.b.ins().f32const(v);
        if ty.is_vector() {
            self.b.ins().splat(ty, c)
        } else {
            c
        }
    }

    /// The integer type with the shape of `ty`.
    fn ity(ty: Type) -> Type {
        if ty.is_vector() {
            types::I32X4
        } else {
            types::I32
        }
    }

    /// An `i32` constant with the shape of `ty`.
    fn ik(&mut self, ty: Type, v: i32) -> Value {
        let c = self.b.ins().iconst(types::I32, i64::from(v));
        if ty.is_vector() {
            self.b.ins().splat(types::I32X4, c)
        } else {
            c
        }
    }

    fn bits_as(&mut self, to: Type, v: Value) -> Value {
        let flags = if to.is_vector() {
            MemFlagsData::new().with_endianness(Endianness::Little)
        } else {
            MemFlagsData::new()
        };
        self.b.ins().bitcast(to, flags, v)
    }

    /// `cond ? a : b` where `cond` came from a comparison of values shaped like `ty`.
    fn fsel(&mut self, ty: Type, cond: Value, a: Value, b: Value) -> Value {
        if ty.is_vector() {
            let m = self.bits_as(ty, cond);
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(cond, a, b)
        }
    }

    /// `cond ? a : b` for integer values shaped like `ty`.
    fn isel(&mut self, ty: Type, cond: Value, a: Value, b: Value) -> Value {
        if ty.is_vector() {
            self.b.ins().bitselect(cond, a, b)
        } else {
            self.b.ins().select(cond, a, b)
        }
    }

    /// The magnitude of `a` with the sign of `s`.
    fn copysign(&mut self, ty: Type, a: Value, s: Value) -> Value {
        if !ty.is_vector() {
            return self.b.ins().fcopysign(a, s);
        }
        let ity = Self::ity(ty);
        let abs = self.b.ins().fabs(a);
        let ab = self.bits_as(ity, abs);
        let sb = self.bits_as(ity, s);
        let m = self.ik(ty, i32::MIN);
        let sign = self.b.ins().band(sb, m);
        let r = self.b.ins().bor(ab, sign);
        self.bits_as(ty, r)
    }

    /// `a * b + c`, fused when the ISA has FMA.
    pub(crate) fn madd(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.jit.has_fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }

    /// Horner evaluation, coefficients highest degree first.
    fn horner(&mut self, ty: Type, x: Value, coeffs: &[f32]) -> Value {
        let mut acc = self.fk(ty, coeffs[0]);
        for &c in &coeffs[1..] {
            let k = self.fk(ty, c);
            acc = self.madd(acc, x, k);
        }
        acc
    }

    /// `2^n` for integer `n` in `[-126, 127]` (bits of the shape of `ty`).
    fn pow2(&mut self, ty: Type, n: Value) -> Value {
        let k = self.ik(ty, 127);
        let bias = self.b.ins().iadd(n, k);
        let bits = self.b.ins().ishl_imm_s(bias, 23);
        self.bits_as(ty, bits)
    }

    /// `e^x`: `x = n ln2 + r`, a degree-6 polynomial `p` for `e^r`, then `p 2^n`. When
    /// every lane has `|x| <= EXP_FAST_LIMIT` (the common case, one branch per vector),
    /// `2^n` is added to the exponent bits of `p` (the result is normal); otherwise a cold
    /// path clamps `x` to `[-104, 89]` and multiplies by `2^n` in two halves, so subnormal
    /// results round once and `n = 128` does not overflow. Both paths give the same bits
    /// wherever the fast one applies, so a lane's result does not depend on its neighbours.
    fn exp_f32(&mut self, ty: Type, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        self.exp_f32_abs(ty, x, a)
    }

    /// [`Self::exp_f32`] given `a = |x|` (computed by the caller).
    fn exp_f32_abs(&mut self, ty: Type, x: Value, a: Value) -> Value {
        let lim = self.fk(ty, EXP_FAST_LIMIT);
        // Any lane beyond the limit, or NaN, takes the slow path (one compare and a test).
        let bad = self.b.ins().fcmp(FloatCC::UnorderedOrGreaterThan, a, lim);
        let any = if ty.is_vector() {
            self.b.ins().vany_true(bad)
        } else {
            bad
        };
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let merge = self.b.create_block();
        let out = self.b.append_block_param(merge, ty);
        self.b.ins().brif(any, slow, &[], fast, &[]);

        self.b.switch_to_block(fast);
        let (p, ni) = self.exp_core(ty, x);
        let ity = Self::ity(ty);
        let pb = self.bits_as(ity, p);
        let nb = self.b.ins().ishl_imm_s(ni, 23);
        let rb = self.b.ins().iadd(pb, nb);
        let r = self.bits_as(ty, rb);
        self.b.ins().jump(merge, &[BlockArg::Value(r)]);

        self.b.switch_to_block(slow);
        self.b.set_cold_block(slow);
        let xc = self.clamp_below(ty, x, EXP_CLAMP_LO);
        let xc = self.clamp_above(ty, xc, EXP_CLAMP_HI);
        let (p, ni) = self.exp_core(ty, xc);
        let n1 = self.b.ins().sshr_imm_s(ni, 1);
        let n2 = self.b.ins().isub(ni, n1);
        let s1 = self.pow2(ty, n1);
        let s2 = self.pow2(ty, n2);
        let p = self.b.ins().fmul(p, s1);
        let r = self.b.ins().fmul(p, s2);
        self.b.ins().jump(merge, &[BlockArg::Value(r)]);

        self.b.switch_to_block(merge);
        out
    }

    /// `e^r` (as `p`) and `n` (as an integer) with `x = n ln2 + r`, `|r| <= ln2/2`, for
    /// `x` in `[-104, 89]`.
    fn exp_core(&mut self, ty: Type, x: Value) -> (Value, Value) {
        let (r, ni) = self.exp_reduce(ty, x);
        (self.horner(ty, r, &EXP_P), ni)
    }

    /// `x = n ln2 + r` with `|r| <= ln2/2`: `r` and `n` (as an integer).
    fn exp_reduce(&mut self, ty: Type, x: Value) -> (Value, Value) {
        let log2e = self.fk(ty, LOG2E);
        let (n, ni) = self.round_to_int(ty, x, log2e);
        let nhi = self.fk(ty, -LN2_HI);
        let nlo = self.fk(ty, -LN2_LO);
        let r = self.madd(n, nhi, x);
        let r = self.madd(n, nlo, r);
        (r, ni)
    }

    /// `max(x, k)` that keeps NaN (two instructions instead of a NaN-aware max).
    fn clamp_below(&mut self, ty: Type, x: Value, k: f32) -> Value {
        let kv = self.fk(ty, k);
        let lt = self.b.ins().fcmp(FloatCC::LessThan, x, kv);
        self.fsel(ty, lt, kv, x)
    }

    /// `min(x, k)` that keeps NaN.
    fn clamp_above(&mut self, ty: Type, x: Value, k: f32) -> Value {
        let kv = self.fk(ty, k);
        let gt = self.b.ins().fcmp(FloatCC::GreaterThan, x, kv);
        self.fsel(ty, gt, kv, x)
    }

    /// `n = round-to-nearest-even(x * k)` as a float and as an integer, for
    /// `|x * k| < 2^22`, by adding and subtracting `1.5 * 2^23` (whose low mantissa bits
    /// then hold `n`).
    fn round_to_int(&mut self, ty: Type, x: Value, k: Value) -> (Value, Value) {
        let m = self.fk(ty, ROUND_MAGIC);
        let t = self.madd(x, k, m);
        let n = self.b.ins().fsub(t, m);
        let bits = self.bits_as(Self::ity(ty), t);
        let mb = self.ik(ty, ROUND_MAGIC.to_bits() as i32);
        let ni = self.b.ins().isub(bits, mb);
        (n, ni)
    }

    /// `ln x`: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt 2)`, `s = (m-1)/(m+1)`,
    /// `ln m = 2 atanh s` as an odd series; subnormals are scaled first.
    fn log_f32(&mut self, ty: Type, x: Value) -> Value {
        let ity = Self::ity(ty);
        let min_pos = self.fk(ty, f32::MIN_POSITIVE);
        let tiny = self.b.ins().fcmp(FloatCC::LessThan, x, min_pos);
        let scale = self.fk(ty, 8_388_608.0);
        let scaled = self.b.ins().fmul(x, scale);
        let xs = self.fsel(ty, tiny, scaled, x);
        let m23 = self.ik(ty, -23);
        let z = self.ik(ty, 0);
        let eadj = self.isel(ty, tiny, m23, z);
        let bits = self.bits_as(ity, xs);
        let e = self.b.ins().ushr_imm_s(bits, 23);
        let mask = self.ik(ty, 0xff);
        let e = self.b.ins().band(e, mask);
        let bias = self.ik(ty, 127);
        let e = self.b.ins().isub(e, bias);
        let e = self.b.ins().iadd(e, eadj);
        let mant = self.ik(ty, 0x007f_ffff);
        let one_bits = self.ik(ty, 0x3f80_0000);
        let mb = self.b.ins().band(bits, mant);
        let mb = self.b.ins().bor(mb, one_bits);
        let m = self.bits_as(ty, mb);
        let sqrt2 = self.fk(ty, std::f32::consts::SQRT_2);
        let big = self.b.ins().fcmp(FloatCC::GreaterThan, m, sqrt2);
        let half = self.fk(ty, 0.5);
        let mh = self.b.ins().fmul(m, half);
        let m = self.fsel(ty, big, mh, m);
        let one_i = self.ik(ty, 1);
        let zero_i = self.ik(ty, 0);
        let inc = self.isel(ty, big, one_i, zero_i);
        let e = self.b.ins().iadd(e, inc);
        let ef = self.b.ins().fcvt_from_sint(ty, e);
        let one = self.fk(ty, 1.0);
        let two = self.fk(ty, 2.0);
        let f = self.b.ins().fsub(m, one);
        let d = self.b.ins().fadd(f, two);
        let s = self.b.ins().fdiv(f, d);
        let s2 = self.b.ins().fmul(s, s);
        let series = self.horner(ty, s2, &LOG_SERIES);
        let series = self.b.ins().fmul(series, s2);
        let tail = self.b.ins().fmul(s, series);
        let ln2lo = self.fk(ty, LN2_LO);
        let tail = self.madd(ef, ln2lo, tail);
        let twos = self.b.ins().fadd(s, s);
        let t = self.b.ins().fadd(twos, tail);
        let ln2hi = self.fk(ty, LN2_HI);
        let res = self.madd(ef, ln2hi, t);
        let inf = self.fk(ty, f32::INFINITY);
        let is_inf = self.b.ins().fcmp(FloatCC::Equal, x, inf);
        let res = self.fsel(ty, is_inf, inf, res);
        let zero = self.fk(ty, 0.0);
        let is_zero = self.b.ins().fcmp(FloatCC::Equal, x, zero);
        let ninf = self.fk(ty, f32::NEG_INFINITY);
        let res = self.fsel(ty, is_zero, ninf, res);
        let bad = self.b.ins().fcmp(FloatCC::UnorderedOrLessThan, x, zero);
        let nan = self.fk(ty, f32::NAN);
        self.fsel(ty, bad, nan, res)
    }

    /// `tanh x = sign(x) m / (m + 2)` with `m = e^(2a) - 1`, `a = min(|x|, 9.1)`: one
    /// exponential core, no separate small-argument polynomial. `m = 2^n q + (2^n - 1)`
    /// where `q = e^r - 1 = r P(r)` is the exponential's polynomial without its constant
    /// term, so there is no cancellation for small `a` (`n = 0`, `r = 2a` exactly).
    /// Above 9.1 tanh rounds to 1 (and so does the formula at 9.1); the clamp keeps `n`
    /// in `[0, 27]`, where `2^n` is built directly from its exponent bits (no branch).
    fn tanh_f32(&mut self, ty: Type, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let ac = self.clamp_above(ty, a, TANH_CLAMP);
        let y = self.b.ins().fadd(ac, ac);
        let (r, ni) = self.exp_reduce(ty, y);
        // q = r + r (r P2(r)): the leading term is exact, the rest is at most r/2.
        let p2 = self.horner(ty, r, &EXP_P[..5]);
        let rp = self.b.ins().fmul(r, p2);
        let q = self.madd(r, rp, r);
        let s = self.pow2(ty, ni);
        let one = self.fk(ty, 1.0);
        let sm1 = self.b.ins().fsub(s, one);
        let sp1 = self.b.ins().fadd(s, one);
        let m = self.madd(s, q, sm1);
        let d = self.madd(s, q, sp1);
        // One division: `m / d` below 0.55, `1 - 2/d` above (where `m` and `d` are both
        // rounded and their ratio would lose a bit or two).
        let thr = self.fk(ty, TANH_SMALL);
        let small = self.b.ins().fcmp(FloatCC::LessThan, a, thr);
        let two = self.fk(ty, 2.0);
        let num = self.fsel(ty, small, m, two);
        let v = self.b.ins().fdiv(num, d);
        let big = self.b.ins().fsub(one, v);
        let t = self.fsel(ty, small, v, big);
        self.with_sign_of(ty, t, x)
    }

    /// `t` (non-negative or NaN) with the sign bit of `s` ORed in.
    fn with_sign_of(&mut self, ty: Type, t: Value, s: Value) -> Value {
        if !ty.is_vector() {
            return self.b.ins().fcopysign(t, s);
        }
        let ity = Self::ity(ty);
        let tb = self.bits_as(ity, t);
        let sb = self.bits_as(ity, s);
        let m = self.ik(ty, i32::MIN);
        let sign = self.b.ins().band(sb, m);
        let r = self.b.ins().bor(tb, sign);
        self.bits_as(ty, r)
    }

    /// `1/(1+e^-x)` as `(x >= 0 ? 1 : e) / (1 + e)` with `e = e^-|x|` (no overflow).
    fn sigmoid_f32(&mut self, ty: Type, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp_f32_abs(ty, na, a);
        let one = self.fk(ty, 1.0);
        let d = self.b.ins().fadd(one, e);
        let zero = self.fk(ty, 0.0);
        let pos = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero);
        let num = self.fsel(ty, pos, one, e);
        self.b.ins().fdiv(num, d)
    }

    /// `erf x`: an odd polynomial below 1, `1 - e^(-a^2) * P(a)` on `[1, 4]` (clamped
    /// above 4, where `erf` rounds to 1).
    fn erf_f32(&mut self, ty: Type, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let u = self.b.ins().fmul(x, x);
        let p = self.horner(ty, u, &ERF_SMALL_P);
        let small = self.b.ins().fmul(x, p);
        let ac = self.clamp_above(ty, a, ERF_CLAMP);
        let mid = self.fk(ty, -ERFC_CENTRE);
        let inv = self.fk(ty, ERFC_INV_HALF_WIDTH);
        let t = self.b.ins().fadd(ac, mid);
        let t = self.b.ins().fmul(t, inv);
        let g = self.horner(ty, t, &ERFC_SCALED_P);
        let sq = self.b.ins().fmul(ac, ac);
        let nsq = self.b.ins().fneg(sq);
        let e = self.exp_f32(ty, nsq);
        let one = self.fk(ty, 1.0);
        let ng = self.b.ins().fneg(g);
        let big = self.madd(ng, e, one);
        let big = self.copysign(ty, big, x);
        let is_small = self.b.ins().fcmp(FloatCC::LessThan, a, one);
        self.fsel(ty, is_small, small, big)
    }

    /// `atan x` (Cephes' `atanf`): on `a = |x|`, `t = a` below `tan(pi/8)`,
    /// `t = (a - 1)/(a + 1)` with offset `pi/4` up to `tan(3pi/8)`, `t = -1/a` with offset
    /// `pi/2` above, so `|t| <= tan(pi/8)`; then `t + t^3 P(t^2)` plus the offset in two
    /// parts, and the sign of `x` put back. `-0`, `±inf` (`±pi/2`) and NaN need no branch.
    fn atan_f32(&mut self, ty: Type, x: Value) -> Value {
        const TAN_3PI_8: f32 = 2.414_213_6;
        const TAN_PI_8: f32 = 0.414_213_57;
        const PIO4: [f32; 2] = [std::f32::consts::FRAC_PI_4, -2.185_569_6e-8];
        const ATAN_P: [f32; 4] = [
            8.053_744_5e-2,
            -1.387_768_6e-1,
            1.997_771_1e-1,
            -3.333_295e-1,
        ];
        let a = self.b.ins().fabs(x);
        let hi = self.fk(ty, TAN_3PI_8);
        let lo = self.fk(ty, TAN_PI_8);
        let big = self.b.ins().fcmp(FloatCC::GreaterThan, a, hi);
        let mid = self.b.ins().fcmp(FloatCC::GreaterThan, a, lo);
        let one = self.fk(ty, 1.0);
        let minus_one = self.fk(ty, -1.0);
        let am1 = self.b.ins().fsub(a, one);
        let ap1 = self.b.ins().fadd(a, one);
        let num = self.fsel(ty, big, minus_one, am1);
        let den = self.fsel(ty, big, a, ap1);
        let q = self.b.ins().fdiv(num, den);
        let t = self.fsel(ty, mid, q, a);
        let zero = self.fk(ty, 0.0);
        let pio2_hi = self.fk(ty, 2.0 * PIO4[0]);
        let pio2_lo = self.fk(ty, 2.0 * PIO4[1]);
        let pio4_hi = self.fk(ty, PIO4[0]);
        let pio4_lo = self.fk(ty, PIO4[1]);
        let mid_hi = self.fsel(ty, mid, pio4_hi, zero);
        let mid_lo = self.fsel(ty, mid, pio4_lo, zero);
        let off_hi = self.fsel(ty, big, pio2_hi, mid_hi);
        let off_lo = self.fsel(ty, big, pio2_lo, mid_lo);
        let z = self.b.ins().fmul(t, t);
        let p = self.horner(ty, z, &ATAN_P);
        let zp = self.b.ins().fmul(z, p);
        let y = self.madd(t, zp, t);
        let y = self.b.ins().fadd(y, off_lo);
        let r = self.b.ins().fadd(off_hi, y);
        self.copysign(ty, r, x)
    }

    /// `sin x` (`cos_shift = 0`) or `cos x` (`cos_shift = 1`): `x = n pi/2 + r` with a
    /// three-part Cody-Waite reduction, Taylor polynomials on `|r| <= pi/4`, quadrant
    /// selection by the low bits of `n`.
    fn sincos_f32(&mut self, ty: Type, x: Value, cos_shift: i32) -> Result<Value, CodegenError> {
        let ity = Self::ity(ty);
        let k = self.fk(ty, FRAC_2_PI);
        let (n, q) = self.round_to_int(ty, x, k);
        let parts = if self.jit.has_fma {
            PIO2_FMA
        } else {
            PIO2_SHORT
        };
        let mut r = x;
        for p in parts {
            let c = self.fk(ty, -p);
            r = self.madd(n, c, r);
        }
        let shift = self.ik(ty, cos_shift);
        let q = self.b.ins().iadd(q, shift);
        let r2 = self.b.ins().fmul(r, r);
        let sp = self.horner(
            ty,
            r2,
            &[1.0 / 362_880.0, -1.0 / 5_040.0, 1.0 / 120.0, -1.0 / 6.0],
        );
        let r3 = self.b.ins().fmul(r2, r);
        let sin_r = self.madd(r3, sp, r);
        let cp = self.horner(
            ty,
            r2,
            &[
                -1.0 / 3_628_800.0,
                1.0 / 40_320.0,
                -1.0 / 720.0,
                1.0 / 24.0,
                -0.5,
                1.0,
            ],
        );
        let cos_r = cp;
        let one = self.ik(ty, 1);
        let odd = self.b.ins().band(q, one);
        let zero = self.ik(ty, 0);
        let use_cos = self.b.ins().icmp(IntCC::NotEqual, odd, zero);
        let v = if ty.is_vector() {
            let cb = self.bits_as(ity, cos_r);
            let sb = self.bits_as(ity, sin_r);
            let sel = self.b.ins().bitselect(use_cos, cb, sb);
            self.bits_as(ty, sel)
        } else {
            self.b.ins().select(use_cos, cos_r, sin_r)
        };
        let two = self.ik(ty, 2);
        let neg = self.b.ins().band(q, two);
        let sign = self.b.ins().ishl_imm_s(neg, 30);
        let vb = self.bits_as(ity, v);
        let vb = self.b.ins().bxor(vb, sign);
        let fast = self.bits_as(ty, vb);
        self.sincos_large(ty, x, fast, cos_shift)
    }

    /// Beyond `|x| > 2^19` the three-part reduction loses accuracy: those lanes (rare, and
    /// tested for with one branch) call libm in f64 instead.
    fn sincos_large(
        &mut self,
        ty: Type,
        x: Value,
        fast: Value,
        cos_shift: i32,
    ) -> Result<Value, CodegenError> {
        let limit = self.fk(ty, SINCOS_LIMIT);
        let a = self.b.ins().fabs(x);
        let big = self.b.ins().fcmp(FloatCC::GreaterThan, a, limit);
        let any = if ty.is_vector() {
            self.b.ins().vany_true(big)
        } else {
            big
        };
        let slow = self.b.create_block();
        let merge = self.b.create_block();
        let out = self.b.append_block_param(merge, ty);
        self.b
            .ins()
            .brif(any, slow, &[], merge, &[BlockArg::Value(fast)]);
        self.b.switch_to_block(slow);
        self.b.set_cold_block(slow);
        let helper = if cos_shift == 0 {
            Helper::Unary(UnaryOp::Sin)
        } else {
            Helper::Unary(UnaryOp::Cos)
        };
        let v = if ty.is_vector() {
            let mut v = fast;
            for l in 0..4u8 {
                let xl = self.b.ins().extractlane(x, l);
                let fl = self.b.ins().extractlane(fast, l);
                let al = self.b.ins().fabs(xl);
                let lim = self.b.ins().f32const(SINCOS_LIMIT);
                let bl = self.b.ins().fcmp(FloatCC::GreaterThan, al, lim);
                let slow_l = self.call_helper(helper, DType::F32, &[xl])?;
                let r = self.b.ins().select(bl, slow_l, fl);
                v = self.b.ins().insertlane(v, r, l);
            }
            v
        } else {
            self.call_helper(helper, DType::F32, &[x])?
        };
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        self.b.switch_to_block(merge);
        Ok(out)
    }

    /// An `f32` transcendental on a scalar or `f32x4` (`None` for other ops, which the
    /// caller computes with an instruction or through the op's `f64` helper).
    pub(crate) fn math_f32(
        &mut self,
        op: UnaryOp,
        ty: Type,
        x: Value,
    ) -> Result<Option<Value>, CodegenError> {
        Ok(Some(match op {
            UnaryOp::Exp => self.exp_f32(ty, x),
            UnaryOp::Log => self.log_f32(ty, x),
            UnaryOp::Tanh => self.tanh_f32(ty, x),
            UnaryOp::Sigmoid => self.sigmoid_f32(ty, x),
            UnaryOp::Erf => self.erf_f32(ty, x),
            UnaryOp::Atan => self.atan_f32(ty, x),
            UnaryOp::Sin => self.sincos_f32(ty, x, 0)?,
            UnaryOp::Cos => self.sincos_f32(ty, x, 1)?,
            // No polynomial: single instructions, or the op's `f64` helper.
            _ => return Ok(None),
        }))
    }
}
