//! Arithmetic for the ONNX element types kiln carries in a wider dtype ([`Narrow`]): wrapping
//! an 8- or 16-bit integer result back into its type, rounding a `float16`/`bfloat16` result
//! to its precision, and the unsigned order of `uint64` carried as `i64` bits.

use crate::tensor::Narrow;
use crate::value::{Known, Value};
use kiln::{Graph, Tensor};
use kiln_ir::DType;

/// `x` (in the carrier dtype) brought into the value set of `n`: integers wrap modulo
/// 2^bits as numpy does, floats round to nearest-even at `n`'s precision (`float16`
/// overflows to ±inf and keeps its subnormal spacing). `uint64` needs nothing: `i64`
/// arithmetic already wraps at 64 bits.
pub fn normalize(x: &Tensor, n: Narrow) -> Tensor {
    match n {
        Narrow::U8 | Narrow::U16 => {
            let mask = if n == Narrow::U8 { 0xff } else { 0xffff };
            x.logical_and(f64::from(mask))
        }
        Narrow::I8 | Narrow::I16 => {
            let (half, mask) = if n == Narrow::I8 {
                (128.0, 255.0)
            } else {
                (32_768.0, 65_535.0)
            };
            x.add(half).logical_and(mask).sub(half)
        }
        Narrow::U64 => x.clone(),
        Narrow::F16 => round_f16(x),
        Narrow::BF16 => round_bf16(x),
    }
}

/// `v` marked as carrying `n` (or nothing): a run-time result is first brought into `n`'s
/// value set (an op on `uint8` values computes in `i32`, so its result is wrapped); a known
/// array is taken as already in it.
pub fn with_type(g: &Graph, mut v: Value, n: Option<Narrow>) -> Value {
    if let (Some(n), Known::Nothing) = (n, v.known()) {
        let t = v.tensor_in(g);
        v = Value::tensor(normalize(&t, n));
    }
    v.with_narrow(n)
}

/// Rounds `x` (finite, |x| small enough that `x * (2^s + 1)` does not overflow) to `24 - s`
/// significant bits, nearest-even: Veltkamp's split, exact in f32 arithmetic.
fn keep_bits(x: &Tensor, s: i32) -> Tensor {
    let c = f64::from(2i32.pow(s as u32) + 1);
    let gamma = x.mul(c);
    gamma.sub(gamma.sub(x))
}

/// `x` rounded to IEEE half precision (kept in f32).
fn round_f16(x: &Tensor) -> Tensor {
    let x = if x.dtype() == DType::F32 {
        x.clone()
    } else {
        x.cast(DType::F32)
    };
    let mag = x.abs();
    // Subnormal halves are multiples of 2^-24.
    let tiny = x.mul(2f64.powi(24)).round().mul(2f64.powi(-24));
    let normal = keep_bits(&x, 13);
    // 65520 and above round to infinity (65504 is the largest half).
    let inf = x.sign().mul(f64::INFINITY);
    let r = mag.lt(2f64.powi(-14)).where_(&tiny, &normal);
    mag.ge(65_520.0).where_(&inf, &r)
}

/// `x` rounded to bfloat16 (kept in f32). Large values are scaled down by a power of two
/// around the split so it cannot overflow; subnormals keep their fixed spacing.
fn round_bf16(x: &Tensor) -> Tensor {
    let x = if x.dtype() == DType::F32 {
        x.clone()
    } else {
        x.cast(DType::F32)
    };
    let big = x.abs().gt(2f64.powi(100));
    let scaled = keep_bits(&x.mul(2f64.powi(-64)), 16).mul(2f64.powi(64));
    let plain = keep_bits(&x, 16);
    // Subnormal bfloat16 values are multiples of 2^-133 (scaled in two exact steps).
    let tiny = x
        .mul(2f64.powi(66))
        .mul(2f64.powi(67))
        .round()
        .mul(2f64.powi(-67))
        .mul(2f64.powi(-66));
    let r = big.where_(&scaled, x.abs().lt(2f64.powi(-126)).where_(&tiny, &plain));
    // inf and NaN pass through unchanged.
    x.abs()
        .eq(f64::INFINITY)
        .logical_or(x.is_nan())
        .where_(&x, &r)
}

/// The `i64` whose signed order is the unsigned order of the `uint64` bits `x` (and back:
/// the map is its own inverse).
pub fn unsigned_key(x: &Tensor) -> Tensor {
    x.logical_xor(i64::MIN as f64)
}

/// A `uint64` value (as `i64` bits) converted to `to`, a float dtype, by its unsigned value.
pub fn u64_to_float(x: &Tensor, to: DType) -> Tensor {
    let f = x.cast(DType::F64);
    x.lt(0.0).where_(f.add(2f64.powi(64)), &f).cast(to)
}

/// Unsigned quotient and remainder of `uint64` bits (`i64` carriers), from signed
/// operations: a divisor of 2^63 or more goes at most once; otherwise a dividend of 2^63 or
/// more is halved (exactly, as unsigned), divided, doubled and corrected by one step.
pub fn u64_div_rem(a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    let big_b = b.lt(0.0);
    let big_a = a.lt(0.0);
    // b >= 2^63: the quotient is a >= b (unsigned).
    let q_big = unsigned_key(a).ge(unsigned_key(b)).cast(DType::I64);
    // Both below 2^63: plain division (floor and truncation agree on non-negatives).
    let safe_b = big_b.where_(b.ones_like(), b);
    let q_small = a.div(&safe_b);
    // a >= 2^63 > b: (a >> 1) is (a ^ MIN) / 2 + 2^62.
    let half = unsigned_key(a).div(2.0).add(2f64.powi(62));
    let q0 = half.div(&safe_b).mul(2.0);
    let r0 = a.sub(q0.mul(&safe_b));
    let one_more = unsigned_key(&r0).ge(unsigned_key(&safe_b));
    let q_wide = one_more.where_(q0.add(1.0), &q0);
    let q = big_b.where_(&q_big, big_a.where_(&q_wide, &q_small));
    let r = a.sub(q.mul(b));
    (q, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln::Graph;
    use kiln_ir::{Array, Data};

    fn run(t: &Tensor) -> Array {
        kiln::eval(&[t], &[]).expect("evaluates").remove(0)
    }

    #[test]
    fn uint64_division_matches_u64_arithmetic_across_the_sign_bit() {
        let vals: Vec<u64> = vec![
            0,
            1,
            7,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            (1 << 63) + 12_345,
            u64::MAX - 1,
            u64::MAX,
        ];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &x in &vals {
            for &y in vals.iter().filter(|&&y| y != 0) {
                a.push(x as i64);
                b.push(y as i64);
            }
        }
        let g = Graph::new();
        let n = a.len();
        let ta = g.constant(Array::new(&[n], Data::I64(a.clone())).unwrap());
        let tb = g.constant(Array::new(&[n], Data::I64(b.clone())).unwrap());
        let (q, r) = u64_div_rem(&ta, &tb);
        let (q, r) = (run(&q).to_i64_vec(), run(&r).to_i64_vec());
        for k in 0..n {
            let (x, y) = (a[k] as u64, b[k] as u64);
            assert_eq!(q[k] as u64, x / y, "{x} / {y}");
            assert_eq!(r[k] as u64, x % y, "{x} % {y}");
        }
    }

    #[test]
    fn narrow_integers_wrap_like_numpy() {
        let g = Graph::new();
        let x = g.constant(Array::new(&[5], Data::I32(vec![-129, -1, 127, 128, 300])).unwrap());
        assert_eq!(
            run(&normalize(&x, Narrow::I8)).to_i64_vec(),
            vec![127, -1, 127, -128, 44]
        );
        assert_eq!(
            run(&normalize(&x, Narrow::U8)).to_i64_vec(),
            vec![127, 255, 127, 128, 44]
        );
    }

    #[test]
    fn half_rounding_agrees_with_ieee_conversion() {
        let mut v: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            -0.3,
            65_504.0,
            65_519.0,
            65_520.0,
            1e-5,
            3e-8,
            1e-9,
            2049.0,
            2051.0,
            12_345.678,
            f32::INFINITY,
            -1e30,
        ];
        let mut s = 0x1234_5678u32;
        for _ in 0..2000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let f = f32::from_bits(s);
            if f.is_finite() && f.abs() < 1e6 {
                v.push(f);
            }
        }
        let g = Graph::new();
        let x = g.constant(Array::new(&[v.len()], Data::F32(v.clone())).unwrap());
        let h = run(&normalize(&x, Narrow::F16)).to_f64_vec();
        let b = run(&normalize(&x, Narrow::BF16)).to_f64_vec();
        for (k, &f) in v.iter().enumerate() {
            let want = half::f16::from_f32(f).to_f32();
            assert_eq!(h[k] as f32, want, "f16 of {f:e}");
            let want = half::bf16::from_f32(f).to_f32();
            assert_eq!(b[k] as f32, want, "bf16 of {f:e}");
        }
    }
}
