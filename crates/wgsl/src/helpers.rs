//! WGSL helper functions that give scalar ops kiln's semantics where WGSL's builtins differ
//! (NaN-propagating max/min, floor division, Python remainder, wrapping float-to-int casts,
//! `erf`, a `tanh` accurate near zero) and implement the checked-load contract. A shader
//! includes only the helpers it uses, in declaration order.

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
}

impl Helper {
    /// Helpers this one calls.
    pub(crate) fn deps(self) -> &'static [Helper] {
        match self {
            Helper::Fail | Helper::In | Helper::IndexDiv | Helper::IsNan | Helper::Sigmoid => &[],
            Helper::Check | Helper::IntDiv => &[Helper::Fail],
            Helper::FMaxMin | Helper::Pow | Helper::FloatBits => &[Helper::IsNan],
            Helper::FRem | Helper::Tanh | Helper::Erf | Helper::SignF32 => &[],
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
