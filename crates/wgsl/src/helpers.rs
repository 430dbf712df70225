//! WGSL helper functions that give scalar ops kiln's semantics where WGSL's builtins differ
//! (NaN-propagating max/min, floor division, Python remainder, wrapping float-to-int casts,
//! `erf`, a `tanh` accurate near zero), emulate `i64` in two 32-bit words and implement the
//! checked-load contract. A shader includes only the helpers it uses, in declaration order.
//!
//! An `i64` value is a `vec2<u32>`: `x` holds the low word and `y` the high word of the
//! two's-complement value, which is also the layout of a little-endian `i64` in a storage
//! buffer, so `array<vec2<u32>>` binds the host's bytes unchanged.

/// One helper function (or small group of functions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Helper {
    /// Records the first run-time failure in the error buffer.
    Fail,
    /// `kiln_check(i, n, binding)`: clamps a checked load's index and flags an overflow.
    Check,
    /// `kiln_in(lo, x, hi)`: a masked load's guard.
    In,
    /// Floor division and modulo of indices by a positive divisor.
    IndexDiv,
    /// `kiln_isnan` by bit pattern (immune to fast-math assumptions).
    IsNan,
    /// Maximum and minimum that propagate NaN.
    FMaxMin,
    /// Float remainder with the divisor's sign.
    FRem,
    /// `pow` with the sign and special-value rules of C's `pow`.
    Pow,
    /// `tanh` accurate near zero and saturating for large arguments.
    Tanh,
    /// Overflow-free sigmoid.
    Sigmoid,
    /// The error function.
    Erf,
    /// Float sign that keeps signed zeros and NaN.
    SignF32,
    /// The low 32 bits of `trunc(x)` as a 64-bit integer, saturating like Rust's `as i64`.
    FloatBits,
    /// Integer floor division and remainder with the divisor's sign; flags division by zero.
    IntDiv,
    /// Two-word `i64`: add, sub, neg, abs, sign, comparisons, min, max, sign extension and
    /// the saturating conversion to an `i32` index.
    I64,
    /// Two-word `i64` multiplication (the low 64 bits of the product).
    I64Mul,
    /// Two-word `i64` floor division and remainder; flags division by zero.
    I64Div,
    /// `i64` to `f32`, rounded to nearest even like Rust's `as f32`.
    I64ToF32,
    /// `f32` to `i64`: truncate, saturate at the `i64` range, NaN to 0 (Rust's `as i64`).
    F32ToI64,
}

impl Helper {
    /// Helpers this one calls.
    pub(crate) fn deps(self) -> &'static [Helper] {
        match self {
            Helper::Fail | Helper::In | Helper::IndexDiv | Helper::IsNan | Helper::Sigmoid => &[],
            Helper::Check | Helper::IntDiv => &[Helper::Fail],
            Helper::FMaxMin | Helper::Pow | Helper::FloatBits => &[Helper::IsNan],
            Helper::FRem | Helper::Tanh | Helper::Erf | Helper::SignF32 | Helper::I64 => &[],
            Helper::I64Mul | Helper::I64ToF32 => &[Helper::I64],
            Helper::I64Div => &[Helper::I64, Helper::Fail],
            Helper::F32ToI64 => &[Helper::I64, Helper::IsNan],
        }
    }

    /// True if the helper writes the error buffer.
    pub(crate) fn uses_error(self) -> bool {
        matches!(self, Helper::Fail)
    }

    /// The WGSL source.
    pub(crate) fn source(self) -> &'static str {
        match self {
            Helper::Fail => FAIL,
            Helper::Check => CHECK,
            Helper::In => IN,
            Helper::IndexDiv => INDEX_DIV,
            Helper::IsNan => IS_NAN,
            Helper::FMaxMin => FMAX_MIN,
            Helper::FRem => FREM,
            Helper::Pow => POW,
            Helper::Tanh => TANH,
            Helper::Sigmoid => SIGMOID,
            Helper::Erf => ERF,
            Helper::SignF32 => SIGN_F32,
            Helper::FloatBits => FLOAT_BITS,
            Helper::IntDiv => INT_DIV,
            Helper::I64 => I64,
            Helper::I64Mul => I64_MUL,
            Helper::I64Div => I64_DIV,
            Helper::I64ToF32 => I64_TO_F32,
            Helper::F32ToI64 => F32_TO_I64,
        }
    }
}

const FAIL: &str = "\
fn kiln_fail(code: u32, binding: u32, index: i32) {
    atomicOr(&kiln_error[0], 1u);
    if (atomicAdd(&kiln_error[1], 1u) == 0u) {
        atomicStore(&kiln_error[2], code);
        atomicStore(&kiln_error[3], params.kernel);
        atomicStore(&kiln_error[4], binding);
        atomicStore(&kiln_error[5], bitcast<u32>(index));
    }
}
";

const CHECK: &str = "\
fn kiln_check(i: i32, n: i32, binding: u32) -> i32 {
    if (i < 0 || i >= n) {
        kiln_fail(1u, binding, i);
        return clamp(i, 0, max(n - 1, 0));
    }
    return i;
}
";

const IN: &str = "\
fn kiln_in(lo: i32, x: i32, hi: i32) -> bool {
    return lo <= x && x < hi;
}
";

const INDEX_DIV: &str = "\
fn kiln_floor_div(a: i32, d: i32) -> i32 {
    let q = a / d;
    return select(q, q - 1, a % d != 0 && a < 0);
}

fn kiln_floor_mod(a: i32, d: i32) -> i32 {
    let r = a % d;
    return select(r, r + d, r < 0);
}
";

const IS_NAN: &str = "\
fn kiln_isnan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
";

const FMAX_MIN: &str = "\
fn kiln_fmax(a: f32, b: f32) -> f32 {
    if (kiln_isnan(a) || kiln_isnan(b)) {
        return a + b;
    }
    return max(a, b);
}

fn kiln_fmin(a: f32, b: f32) -> f32 {
    if (kiln_isnan(a) || kiln_isnan(b)) {
        return a + b;
    }
    return min(a, b);
}
";

const FREM: &str = "\
fn kiln_frem(a: f32, b: f32) -> f32 {
    let r = a - b * trunc(a / b);
    if (r != 0.0 && ((r < 0.0) != (b < 0.0))) {
        return r + b;
    }
    return r;
}
";

const POW: &str = "\
fn kiln_pow(a: f32, b: f32) -> f32 {
    if (b == 0.0 || a == 1.0) {
        return 1.0;
    }
    if (kiln_isnan(a) || kiln_isnan(b)) {
        return a + b;
    }
    let big = abs(b) >= 16777216.0;
    let integral = big || fract(b) == 0.0;
    let odd = !big && integral && fract(b * 0.5) != 0.0;
    let x = abs(a);
    var m: f32;
    if (x == 0.0) {
        m = select(bitcast<f32>(0x7f800000u), 0.0, b > 0.0);
    } else if (x == 1.0) {
        m = 1.0;
    } else {
        m = pow(x, b);
    }
    if ((bitcast<u32>(a) & 0x80000000u) != 0u) {
        if (!integral) {
            return bitcast<f32>(0x7fc00000u);
        }
        if (odd) {
            return -m;
        }
    }
    return m;
}
";

const TANH: &str = "\
fn kiln_tanh(x: f32) -> f32 {
    if (abs(x) < 0.3) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.33333334 + x2 * (0.13333334 + x2 * (-0.053968254 + x2 * (0.021869488 + x2 * -0.008863236)))));
    }
    let t = exp(-2.0 * abs(x));
    let r = (1.0 - t) / (1.0 + t);
    return select(r, -r, x < 0.0);
}
";

const SIGMOID: &str = "\
fn kiln_sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}
";

const ERF: &str = "\
fn kiln_erf(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.5) {
        let x2 = x * x;
        return x * (1.1283791671 + x2 * (-0.3761263890 + x2 * (0.1128379167 + x2 * (-0.0268661706 + x2 * (0.0052239776 + x2 * -0.0008548327)))));
    }
    let t = 1.0 / (1.0 + 0.5 * a);
    let c = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
    let r = 1.0 - c;
    return select(r, -r, x < 0.0);
}
";

const SIGN_F32: &str = "\
fn kiln_sign_f32(x: f32) -> f32 {
    if (x > 0.0) {
        return 1.0;
    }
    if (x < 0.0) {
        return -1.0;
    }
    return x;
}
";

const FLOAT_BITS: &str = "\
fn kiln_float_bits(x: f32) -> u32 {
    if (kiln_isnan(x)) {
        return 0u;
    }
    let t = trunc(x);
    if (t >= 0x1p63f) {
        return 0xffffffffu;
    }
    if (t <= -0x1p63f) {
        return 0u;
    }
    let a = abs(t);
    let hi = floor(a / 4294967296.0);
    let lo = u32(a - hi * 4294967296.0);
    return select(lo, 0u - lo, t < 0.0);
}
";

const INT_DIV: &str = "\
fn kiln_div_i32(a: i32, b: i32) -> i32 {
    if (b == 0) {
        kiln_fail(2u, 0u, 0);
        return 0;
    }
    let q = a / b;
    return select(q, q - 1, a % b != 0 && ((a < 0) != (b < 0)));
}

fn kiln_rem_i32(a: i32, b: i32) -> i32 {
    if (b == 0) {
        kiln_fail(2u, 0u, 0);
        return 0;
    }
    let r = a % b;
    return select(r, r + b, r != 0 && ((r < 0) != (b < 0)));
}

fn kiln_div_u32(a: u32, b: u32) -> u32 {
    if (b == 0u) {
        kiln_fail(2u, 0u, 0);
        return 0u;
    }
    return a / b;
}

fn kiln_rem_u32(a: u32, b: u32) -> u32 {
    if (b == 0u) {
        kiln_fail(2u, 0u, 0);
        return 0u;
    }
    return a % b;
}
";

const I64: &str = "\
fn kiln_i64_add(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn kiln_i64_sub(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn kiln_i64_neg(a: vec2<u32>) -> vec2<u32> {
    return kiln_i64_sub(vec2<u32>(0u, 0u), a);
}

fn kiln_i64_is_neg(a: vec2<u32>) -> bool {
    return (a.y & 0x80000000u) != 0u;
}

fn kiln_i64_abs(a: vec2<u32>) -> vec2<u32> {
    return select(a, kiln_i64_neg(a), kiln_i64_is_neg(a));
}

fn kiln_i64_sign(a: vec2<u32>) -> vec2<u32> {
    if (kiln_i64_is_neg(a)) {
        return vec2<u32>(0xffffffffu, 0xffffffffu);
    }
    return vec2<u32>(select(0u, 1u, (a.x | a.y) != 0u), 0u);
}

fn kiln_i64_lt(a: vec2<u32>, b: vec2<u32>) -> bool {
    let ah = bitcast<i32>(a.y);
    let bh = bitcast<i32>(b.y);
    return ah < bh || (ah == bh && a.x < b.x);
}

fn kiln_i64_max(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return select(a, b, kiln_i64_lt(a, b));
}

fn kiln_i64_min(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return select(a, b, kiln_i64_lt(b, a));
}

fn kiln_i64_from_i32(x: i32) -> vec2<u32> {
    return vec2<u32>(bitcast<u32>(x), select(0u, 0xffffffffu, x < 0));
}

fn kiln_i64_index(a: vec2<u32>) -> i32 {
    let lo = bitcast<i32>(a.x);
    if (a.y == select(0u, 0xffffffffu, lo < 0)) {
        return lo;
    }
    return select(2147483647i, -2147483647i - 1i, kiln_i64_is_neg(a));
}
";

const I64_MUL: &str = "\
fn kiln_u32_mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>((p00 & 0xffffu) | (mid << 16u), a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

fn kiln_i64_mul(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let p = kiln_u32_mul_wide(a.x, b.x);
    return vec2<u32>(p.x, p.y + a.x * b.y + a.y * b.x);
}
";

const I64_DIV: &str = "\
fn kiln_u64_divmod(n: vec2<u32>, d: vec2<u32>) -> vec4<u32> {
    if (n.y == 0u && d.y == 0u) {
        return vec4<u32>(n.x / d.x, 0u, n.x % d.x, 0u);
    }
    var q = vec2<u32>(0u, 0u);
    var r = vec2<u32>(0u, 0u);
    for (var i = 63u; i < 64u; i -= 1u) {
        var bit: u32;
        if (i >= 32u) {
            bit = (n.y >> (i - 32u)) & 1u;
        } else {
            bit = (n.x >> i) & 1u;
        }
        r = vec2<u32>((r.x << 1u) | bit, (r.y << 1u) | (r.x >> 31u));
        if (r.y > d.y || (r.y == d.y && r.x >= d.x)) {
            r = kiln_i64_sub(r, d);
            if (i >= 32u) {
                q.y |= 1u << (i - 32u);
            } else {
                q.x |= 1u << i;
            }
        }
    }
    return vec4<u32>(q, r);
}

fn kiln_div_i64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    if ((b.x | b.y) == 0u) {
        kiln_fail(2u, 0u, 0);
        return vec2<u32>(0u, 0u);
    }
    let qr = kiln_u64_divmod(kiln_i64_abs(a), kiln_i64_abs(b));
    if (kiln_i64_is_neg(a) == kiln_i64_is_neg(b)) {
        return qr.xy;
    }
    let q = kiln_i64_neg(qr.xy);
    if ((qr.z | qr.w) != 0u) {
        return kiln_i64_sub(q, vec2<u32>(1u, 0u));
    }
    return q;
}

fn kiln_rem_i64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    if ((b.x | b.y) == 0u) {
        kiln_fail(2u, 0u, 0);
        return vec2<u32>(0u, 0u);
    }
    let mb = kiln_i64_abs(b);
    let r = kiln_u64_divmod(kiln_i64_abs(a), mb).zw;
    if ((r.x | r.y) == 0u) {
        return r;
    }
    var m = r;
    if (kiln_i64_is_neg(a) != kiln_i64_is_neg(b)) {
        m = kiln_i64_sub(mb, r);
    }
    return select(m, kiln_i64_neg(m), kiln_i64_is_neg(b));
}
";

const I64_TO_F32: &str = "\
fn kiln_u64_shr(a: vec2<u32>, s: u32) -> vec2<u32> {
    if (s == 0u) {
        return a;
    }
    if (s >= 32u) {
        return vec2<u32>(a.y >> (s - 32u), 0u);
    }
    return vec2<u32>((a.x >> s) | (a.y << (32u - s)), a.y >> s);
}

fn kiln_i64_to_f32(a: vec2<u32>) -> f32 {
    let negative = kiln_i64_is_neg(a);
    let m = kiln_i64_abs(a);
    var bits: u32;
    if (m.y == 0u && m.x < 0x1000000u) {
        bits = bitcast<u32>(f32(m.x));
    } else {
        var top: u32;
        if (m.y != 0u) {
            top = 32u + firstLeadingBit(m.y);
        } else {
            top = firstLeadingBit(m.x);
        }
        let shift = top - 23u;
        let kept = kiln_u64_shr(m, shift);
        var mantissa = kept.x;
        let half = kiln_u64_shr(m, shift - 1u).x & 1u;
        var sticky: bool;
        if (shift - 1u >= 32u) {
            sticky = m.x != 0u || (m.y & ((1u << (shift - 33u)) - 1u)) != 0u;
        } else {
            sticky = (m.x & ((1u << (shift - 1u)) - 1u)) != 0u;
        }
        var exponent = top;
        if (half == 1u && (sticky || (mantissa & 1u) == 1u)) {
            mantissa += 1u;
            if (mantissa == 0x1000000u) {
                mantissa = 0x800000u;
                exponent += 1u;
            }
        }
        bits = ((exponent + 127u) << 23u) | (mantissa & 0x7fffffu);
    }
    return bitcast<f32>(bits | select(0u, 0x80000000u, negative));
}
";

const F32_TO_I64: &str = "\
fn kiln_f32_to_i64(x: f32) -> vec2<u32> {
    if (kiln_isnan(x)) {
        return vec2<u32>(0u, 0u);
    }
    let t = trunc(x);
    if (t >= 0x1p63f) {
        return vec2<u32>(0xffffffffu, 0x7fffffffu);
    }
    if (t <= -0x1p63f) {
        return vec2<u32>(0u, 0x80000000u);
    }
    let a = abs(t);
    let hi = floor(a / 4294967296.0);
    let m = vec2<u32>(u32(a - hi * 4294967296.0), u32(hi));
    return select(m, kiln_i64_neg(m), t < 0.0);
}
";
