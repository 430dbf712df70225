//! Counter-based randomness as in JAX: Threefry-2x32 keys ([`key`], [`fold_in`], [`split`]),
//! samples built on [`Graph::random_bits`] ([`uniform`], [`normal`], [`bernoulli`],
//! [`dropout`]), and the host generator ([`HostRng`], [`host_uniform`], [`host_normal`]) used
//! for parameter initialisation and data shuffling.
//!
//! ```
//! use kiln::random::{host_uniform, key, key_data, split, uniform};
//! use kiln::Graph;
//!
//! let g = Graph::new();
//! let k = key(&g, 42); // jax.random.PRNGKey(42)
//! let keys = split(&k, 2); // jax.random.split(k, 2): [2, 2]
//! let u = uniform(&k, [4], 0.0, 1.0);
//! let out = kiln::eval(&[&k, &keys, &u], &[])?;
//! assert_eq!(out[0].as_u32()?, &[0, 42]);
//! assert_eq!(out[1].shape(), &[2, 2]);
//! let samples = out[2].as_f32()?;
//! assert!(samples.iter().all(|v| (0.0..1.0).contains(v)));
//! // The same key gives the same numbers in the graph and on the host.
//! assert_eq!(samples, host_uniform(key_data(42), &[4], 0.0, 1.0)?.as_f32()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A key is a `u32[2]` tensor, the raw key data of `jax.random.PRNGKey(seed)`. Everything here
//! reproduces JAX (with `jax_threefry_partitionable`, the default since JAX 0.5) from the
//! same key:
//!
//! | kiln | JAX | match |
//! |------|-----|-------|
//! | [`key`]`(g, s)` | `jax.random.PRNGKey(s)` (seeds >= 2^32: with `jax_enable_x64`) | bit-exact |
//! | [`fold_in`]`(k, d)` | `jax.random.fold_in(k, d)` | bit-exact |
//! | [`split`]`(k, n)` | `jax.random.split(k, n)` | bit-exact |
//! | [`uniform`]`(k, shape, 0, 1)` | `jax.random.uniform(k, shape, float32)` | bit-exact |
//! | [`uniform`]`(k, shape, lo, hi)` | `jax.random.uniform(k, shape, float32, lo, hi)` | product rounding |
//! | [`bernoulli`]`(k, p, shape)` | `jax.random.bernoulli(k, p, shape)` | bit-exact |
//! | [`normal`]`(k, shape)` | `jax.random.normal(k, shape, float32)` | ~1e-6 relative (tails ~5e-6) |
//! | [`host_uniform`]`(k, shape, lo, hi)` | `jax.random.uniform(k, shape, float32, lo, hi)` | bit-exact |
//! | [`host_normal`]`(k, shape)` | `jax.random.normal(k, shape, float32)` | ~1e-6 relative (tails ~5e-6) |
//!
//! `uniform` maps a 32-bit word `b` to `(b >> 9) * 2^-23` in `[0, 1)` (JAX's
//! `bits >> 9 | 0x3f800000` reinterpreted as `f32`, minus 1, which is the same number), then
//! scales it to `[lo, hi)`. `normal` is JAX's inverse-error-function method:
//! `√2 · erfinv(u)` with `u` uniform in `(-1, 1)`, where `erfinv` is Giles' single-precision
//! polynomial (the one XLA uses), so values agree with JAX to rounding, not bit for bit. In
//! the far tails (`|u|` near 1) XLA computes `log1p(-u²)` from a rounded `u²` and is off by
//! up to ~5e-6 relative (e.g. 3.828943 where the exact value is 3.828959); kiln's
//! `log((1 - u)(1 + u))` keeps `1 - u` exact and stays accurate there.
//!
//! Every function that builds nodes is `#[track_caller]`; a bad key or argument records a
//! diagnostic at the caller and returns a poisoned tensor.

use crate::builder::{Graph, IntoShape};
use crate::tensor::Tensor;
use kiln_ir::semantics::threefry::{self, Step};
use kiln_ir::{Array, ArrayError, DType, Op, Shape};
use std::panic::Location;

/// Name suffix of the per-layer random-stream counters (`drop1.rng_counter`): `u32` scalar
/// parameters that a train step advances by one (see [`rng_counters`]).
pub const RNG_COUNTER_SUFFIX: &str = "rng_counter";

/// The raw key data of `jax.random.PRNGKey(seed)`: `[seed >> 32, seed & 0xffff_ffff]` (JAX
/// drops the high word unless `jax_enable_x64` is on, so seeds below 2^32 agree in both modes).
pub fn key_data(seed: u64) -> [u32; 2] {
    [(seed >> 32) as u32, seed as u32]
}

/// `jax.random.fold_in(key, data)` on the host: `threefry2x32(key, [0, data])`.
pub fn host_fold_in(key: [u32; 2], data: u32) -> [u32; 2] {
    kiln_interp::threefry2x32(key, [0, data])
}

/// A constant key `u32[2]` equal to `jax.random.PRNGKey(seed)`.
#[track_caller]
pub fn key(g: &Graph, seed: u64) -> Tensor {
    let [a, b] = key_data(seed);
    g.constant(Array::from_f64_cast(
        DType::U32,
        &[2],
        &[f64::from(a), f64::from(b)],
    ))
}

/// Checks that `key` is a `u32[2]` tensor; records a diagnostic at `loc` otherwise.
fn check_key(loc: &Location<'_>, op: &'static str, key: &Tensor) -> bool {
    if key.is_poisoned() {
        return false;
    }
    let ok = key.dtype() == DType::U32 && key.shape() == Shape::known(&[2]);
    if !ok {
        key.graph().fail(
            loc,
            op,
            format!(
                "{op}: a key must be a u32[2] tensor, got {}{}",
                key.dtype(),
                key.shape()
            ),
        );
    }
    ok
}

/// Word `i` of a `u32[2]` key as a rank-0 tensor.
#[track_caller]
fn word(key: &Tensor, i: i64) -> Tensor {
    key.slice(0, i, i + 1, 1).reshape(Shape::scalar())
}

/// `x` rotated left by `r` bits (`0 < r < 32`), as `x·2^r | x / 2^(32-r)` in `u32`.
#[track_caller]
fn rotl(x: &Tensor, r: u32) -> Tensor {
    let hi = x.mul(f64::from(1u32 << r));
    let lo = x.div(f64::from(1u32 << (32 - r)));
    hi.logical_or(&lo)
}

/// The Threefry-2x32 block function (20 rounds) applied elementwise in the graph: encrypts
/// the counter pairs `(x0, x1)` (`u32` tensors of one shape) under `key` (`u32[2]`).
/// Equal to `kiln_interp::threefry2x32` on every element.
#[track_caller]
pub fn threefry2x32(key: &Tensor, x0: &Tensor, x1: &Tensor) -> (Tensor, Tensor) {
    let loc = Location::caller();
    let g = key.graph();
    if !check_key(loc, "threefry2x32", key) {
        return (Tensor::poisoned(g), Tensor::poisoned(g));
    }
    if x0.is_poisoned() || x1.is_poisoned() {
        return (Tensor::poisoned(g), Tensor::poisoned(g));
    }
    if x0.dtype() != DType::U32 || x1.dtype() != DType::U32 || x0.shape() != x1.shape() {
        let p = g.fail(
            loc,
            "threefry2x32",
            format!(
                "threefry2x32: counters must be u32 tensors of one shape, got {}{} and {}{}",
                x0.dtype(),
                x0.shape(),
                x1.dtype(),
                x1.shape()
            ),
        );
        return (p.clone(), p);
    }
    let k0 = word(key, 0);
    let k1 = word(key, 1);
    let k2 = k0
        .logical_xor(&k1)
        .logical_xor(f64::from(threefry::KS_PARITY));
    let ks = [k0, k1, k2];
    let mut a = x0 + &ks[0];
    let mut b = x1 + &ks[1];
    for step in threefry::steps() {
        match step {
            Step::Mix { rotation } => {
                a = &a + &b;
                b = rotl(&b, rotation).logical_xor(&a);
            }
            Step::Inject {
                x0_word,
                x1_word,
                count,
            } => {
                a = &a + &ks[x0_word];
                b = (&b + &ks[x1_word]) + f64::from(count);
            }
        }
    }
    (a, b)
}

/// `jax.random.fold_in(key, data)`: a new key `threefry2x32(key, [0, data])` from a key and a
/// `u32` scalar (typically a step counter), bit-identical to JAX.
#[track_caller]
pub fn fold_in(key: &Tensor, data: &Tensor) -> Tensor {
    let loc = Location::caller();
    let g = key.graph();
    if !check_key(loc, "fold_in", key) || data.is_poisoned() {
        return Tensor::poisoned(g);
    }
    if data.dtype() != DType::U32 || data.rank() != 0 {
        return g.fail(
            loc,
            "fold_in",
            format!(
                "fold_in: data must be a u32 scalar, got {}{}",
                data.dtype(),
                data.shape()
            ),
        );
    }
    let zero = g.scalar(0.0, DType::U32);
    let (a, b) = threefry2x32(key, &zero, data);
    Tensor::cat(&[&a.reshape([1]), &b.reshape([1])], 0)
}

/// `jax.random.split(key, num)`: `num` new keys `[num, 2]`; row `i` equals
/// `fold_in(key, i)`.
#[track_caller]
pub fn split(key: &Tensor, num: u64) -> Tensor {
    let loc = Location::caller();
    let g = key.graph();
    if !check_key(loc, "split", key) {
        return Tensor::poisoned(g);
    }
    let lo = g.arange(num, DType::U32);
    let hi = lo.zeros_like();
    let (a, b) = threefry2x32(key, &hi, &lo);
    Tensor::cat(&[&a.unsqueeze(-1), &b.unsqueeze(-1)], -1)
}

/// `f32` samples uniform in `[minval, maxval)` as
/// `jax.random.uniform(key, shape, jnp.float32, minval, maxval)`: bit-identical for the
/// default `[0, 1)` and whenever `maxval - minval` is a power of two. Otherwise XLA fuses
/// `u · (maxval - minval) + minval` into one multiply-add while the graph rounds the product
/// first, so a sample can differ by that rounding: at most `2^-24 · (maxval - minval)` plus
/// one ulp of the result ([`host_uniform`] is exact). `shape` may be symbolic.
#[track_caller]
pub fn uniform(key: &Tensor, shape: impl IntoShape, minval: f64, maxval: f64) -> Tensor {
    let loc = Location::caller();
    let g = key.graph();
    if !check_key(loc, "uniform", key) {
        return Tensor::poisoned(g);
    }
    let bits = g.random_bits(key, shape);
    let unit = bits.div(512.0).cast(DType::F32).mul(2f64.powi(-23));
    let lo = minval as f32;
    let range = (maxval as f32) - lo;
    (unit * f64::from(range) + f64::from(lo)).maximum(f64::from(lo))
}

/// Standard normal `f32` samples as `jax.random.normal(key, shape, jnp.float32)`:
/// `√2 · erfinv(u)` with `u = uniform(key, shape, nextafter(-1, 0), 1)`. Equal to JAX's up to
/// the rounding of `erfinv` (about 1e-6 relative).
#[track_caller]
pub fn normal(key: &Tensor, shape: impl IntoShape) -> Tensor {
    let lo = f64::from(f32::from_bits((-1.0f32).to_bits() - 1));
    let u = uniform(key, shape, lo, 1.0);
    erfinv(&u) * f64::from(std::f32::consts::SQRT_2)
}

/// `bool` samples that are true with probability `p`: `uniform(key, shape) < p`, exactly
/// `jax.random.bernoulli(key, p, shape)`.
#[track_caller]
pub fn bernoulli(key: &Tensor, p: f64, shape: impl IntoShape) -> Tensor {
    uniform(key, shape, 0.0, 1.0).lt(f64::from(p as f32))
}

/// Giles' single-precision polynomial for `erfinv` on `(-1, 1)` (as XLA's `ErfInv`), with
/// `erfinv(±1) = ±inf`. Composed of primitives, so it differentiates and lowers everywhere.
#[track_caller]
pub fn erfinv(x: &Tensor) -> Tensor {
    const SMALL: [f64; 9] = [
        2.810_226_36e-08,
        3.432_739_39e-07,
        -3.523_387_7e-06,
        -4.391_506_54e-06,
        0.000_218_580_87,
        -0.001_253_725_03,
        -0.004_177_681_64,
        0.246_640_727,
        1.501_409_41,
    ];
    const LARGE: [f64; 9] = [
        -0.000_200_214_257,
        0.000_100_950_558,
        0.001_349_343_22,
        -0.003_673_428_44,
        0.005_739_507_73,
        -0.007_622_461_3,
        0.009_438_870_47,
        1.001_674_06,
        2.832_976_82,
    ];
    let w = -((x.neg() + 1.0) * (x + 1.0)).log();
    let small = w.lt(5.0);
    let ws = &w - 2.5;
    let wl = w.sqrt() - 3.0;
    let poly = |c: &[f64; 9], w: &Tensor| {
        let mut p = w.full_like(c[0]);
        for &ci in &c[1..] {
            p = p * w + ci;
        }
        p
    };
    let p = small.where_(poly(&SMALL, &ws), poly(&LARGE, &wl));
    let edge = x.abs().eq(1.0);
    edge.where_(x * f64::INFINITY, p * x)
}

/// Inverted dropout with the mask drawn from `key`: each element of `x` is kept with
/// probability `1 - p` and scaled by `1 / (1 - p)`, otherwise zeroed, exactly
/// `where(bernoulli(key, 1 - p, x.shape), x / (1 - p), 0)` (flax's `Dropout`). `p = 0` is the
/// identity, `p = 1` gives zeros; `p` outside `[0, 1]` is a diagnostic.
#[track_caller]
pub fn dropout(x: &Tensor, p: f64, key: &Tensor) -> Tensor {
    let loc = Location::caller();
    let g = x.graph();
    if !(0.0..=1.0).contains(&p) {
        return g.fail(
            loc,
            "dropout",
            format!("dropout: probability must be in [0, 1], got {p}"),
        );
    }
    if p == 0.0 {
        return x.clone();
    }
    if p == 1.0 {
        return x.zeros_like();
    }
    let keep = 1.0 - p;
    let mask = bernoulli(key, keep, x.shape());
    mask.where_(x / keep, 0.0)
}

/// The random-stream counters a tensor depends on: every `u32` scalar parameter named
/// `*.rng_counter` among its ancestors, by name, in graph order. A train step advances each
/// by one, so every step draws fresh randomness.
pub fn rng_counters(t: &Tensor) -> Vec<(String, Tensor)> {
    let Some(id) = t.node() else {
        return Vec::new();
    };
    let g = t.graph();
    let ir = g.ir();
    let Ok(order) = ir.ancestors(&[id]) else {
        return Vec::new();
    };
    order
        .into_iter()
        .filter_map(|n| {
            let node = ir.node(n);
            match &node.op {
                Op::Parameter { name, dtype, shape }
                    if *dtype == DType::U32
                        && shape.rank() == 0
                        && name.rsplit('.').next() == Some(RNG_COUNTER_SUFFIX) =>
                {
                    Some((name.clone(), Tensor::from_node(g, n)))
                }
                _ => None,
            }
        })
        .collect()
}

/// Element count of a shape, or the overflow error.
fn numel(shape: &[usize]) -> Result<usize, ArrayError> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| ArrayError::Overflow(shape.to_vec()))
}

/// `jax.random.uniform(key, shape, jnp.float32, minval, maxval)` computed on the host,
/// bit-identical to JAX for every range (the scale and shift are one fused multiply-add, as
/// XLA computes them). Errors only if the shape's element count overflows.
pub fn host_uniform(
    key: [u32; 2],
    shape: &[usize],
    minval: f64,
    maxval: f64,
) -> Result<Array, ArrayError> {
    numel(shape)?;
    let lo = minval as f32;
    let range = (maxval as f32) - lo;
    let v: Vec<f32> = kiln_interp::random_bits(key, shape)
        .into_iter()
        .map(|b| {
            let unit = (b >> 9) as f32 * 2f32.powi(-23);
            unit.mul_add(range, lo).max(lo)
        })
        .collect();
    Array::from_f32(shape, v)
}

/// Standard normal `f32` samples on the host from the same uniforms as [`normal`]
/// (`√2 · erfinv(u)`), with `erfinv` computed to double precision (Giles' polynomial
/// refined by two Newton steps on `erf`), then rounded once. Errors only if the shape's
/// element count overflows.
pub fn host_normal(key: [u32; 2], shape: &[usize]) -> Result<Array, ArrayError> {
    let lo = f64::from(f32::from_bits((-1.0f32).to_bits() - 1));
    let u = host_uniform(key, shape, lo, 1.0)?;
    let v: Vec<f32> = u
        .to_f64_vec()
        .into_iter()
        .map(|x| (std::f64::consts::SQRT_2 * erfinv_f64(x)) as f32)
        .collect();
    Array::from_f32(shape, v)
}

/// `erfinv` in double precision on `[-1, 1]`.
fn erfinv_f64(x: f64) -> f64 {
    if x.abs() >= 1.0 {
        return if x.is_nan() {
            x
        } else {
            x.signum() * f64::INFINITY
        };
    }
    let w = -((1.0 - x) * (1.0 + x)).ln();
    let mut y = if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = p * w + c;
        }
        p * x
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = p * w + c;
        }
        p * x
    };
    let two_over_sqrt_pi = 2.0 / std::f64::consts::PI.sqrt();
    for _ in 0..2 {
        let err = kiln_interp::erf(y) - x;
        y -= err / (two_over_sqrt_pi * (-y * y).exp());
    }
    y
}

/// A host stream of random words: word `i` is element `i` of `jax.random.bits(key, (n,))`
/// (`b0 ^ b1` of `threefry2x32(key, [i >> 32, i & 0xffff_ffff])`). Deterministic per key;
/// used to shuffle datasets.
#[derive(Clone, Debug)]
pub struct HostRng {
    key: [u32; 2],
    counter: u64,
}

impl HostRng {
    /// The stream of `jax.random.PRNGKey(seed)`.
    pub fn new(seed: u64) -> HostRng {
        HostRng::from_key(key_data(seed))
    }

    /// The stream of a raw key.
    pub fn from_key(key: [u32; 2]) -> HostRng {
        HostRng { key, counter: 0 }
    }

    /// The next 32-bit word.
    pub fn next_u32(&mut self) -> u32 {
        let c = self.counter;
        self.counter = self.counter.wrapping_add(1);
        let [a, b] = kiln_interp::threefry2x32(self.key, [(c >> 32) as u32, c as u32]);
        a ^ b
    }

    /// The next 64-bit value (two words, high first).
    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        (hi << 32) | u64::from(self.next_u32())
    }

    /// A uniform integer in `0..n` (unbiased, by rejection); 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}
