//! The constants of the `f32` transcendentals (polynomial coefficients, range-reduction
//! splits, limits), shared by the inline Cranelift code (`codegen/math.rs`) and the wide
//! ahead-of-time kernels (`vecmath`), so both evaluate the same formulas. Their accuracy and
//! the generator of the fits are in docs/numerics.md.

/// `e^r` on `|r| <= ln2/2 * 1.01`, degree 6, highest coefficient first.
pub(crate) const EXP_P: [f32; 7] = [
    0.001_394_216,
    0.008_375_968,
    0.041_666_34,
    0.166_664_05,
    0.5,
    1.0,
    1.0,
];
/// Below this magnitude `e^x` is normal with `n` in `[-125, 125]`: `2^n` can be added to
/// the exponent bits of `e^r`.
pub(crate) const EXP_FAST_LIMIT: f32 = 86.5;
/// `erf(x)/x` as a polynomial in `u = x^2` on `[0, 1]`.
pub(crate) const ERF_SMALL_P: [f32; 7] = [
    7.875_875e-5,
    -0.000_801_686_4,
    0.005_189_087,
    -0.026_854_211,
    0.112_835_94,
    -0.376_126_26,
    // 2/sqrt(pi) rounded down one ulp by the fit.
    f32::from_bits(0x3f90_6eba),
];
/// The centre of the `erfc` fit's interval `[1, 4]`.
pub(crate) const ERFC_CENTRE: f32 = 2.5;
/// `1 / 1.5`, the inverse half-width of the `erfc` fit's interval.
pub(crate) const ERFC_INV_HALF_WIDTH: f32 = 1.0 / 1.5;
/// `erfc(a) * e^(a^2)` as a polynomial in `t = (a - 2.5) / 1.5` on `a` in `[1, 4]`.
pub(crate) const ERFC_SCALED_P: [f32; 11] = [
    9.294_974e-5,
    -0.000_245_186_44,
    0.000_376_477_28,
    -0.000_916_272_6,
    0.002_418_384_2,
    -0.005_611_233_4,
    0.012_486_7,
    -0.026_997_937,
    0.056_110_628,
    -0.111_521_39,
    0.210_806_37,
];

/// `log2 e`, the factor of the exponential's range reduction.
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for `|n| < 2^12`.
pub(crate) const LN2_HI: f32 = 0.693_115_23;
/// The low part of `ln 2` (see [`LN2_HI`]).
pub(crate) const LN2_LO: f32 = 3.194_618_3e-5;
/// `ln m = 2s + s * s^2 * P(s^2)`: the odd series `2/3, 2/5, 2/7, 2/9` of `2 atanh s`,
/// highest degree first.
pub(crate) const LOG_SERIES: [f32; 4] = [2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0];
/// `1.5 * 2^23`: added to and subtracted from `x` it rounds `x` to an integer (for
/// `|x| < 2^22`) and leaves that integer in the low mantissa bits.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// Above this magnitude `tanh` rounds to 1 (and the formula gives 1 at it).
pub(crate) const TANH_CLAMP: f32 = 9.1;
/// Below this magnitude `tanh` divides `m / (m + 2)`, above it computes `1 - 2 / (m + 2)`.
pub(crate) const TANH_SMALL: f32 = 0.55;
/// Above this magnitude `erf` rounds to 1: the argument of the `erfc` fit is clamped to it.
pub(crate) const ERF_CLAMP: f32 = 4.0;
/// The cold path of `exp` clamps its argument to `[EXP_CLAMP_LO, EXP_CLAMP_HI]`.
pub(crate) const EXP_CLAMP_LO: f32 = -104.0;
/// See [`EXP_CLAMP_LO`].
pub(crate) const EXP_CLAMP_HI: f32 = 89.0;
