//! Shared helpers of the differential tests: deterministic inputs, running a program on the
//! kernel executor and on the CPU backend, and comparing every written buffer.
#![allow(dead_code)]

pub mod fixture;

use kiln_cpu::{CpuError, RunOptions};
use kiln_ir::{DType, Data};
use kiln_kernel::{BufferKind, Program};
use std::collections::HashMap;

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo) as u64)) as i64
    }
}

/// How inputs are filled.
#[derive(Clone, Copy, Debug)]
pub struct Fill {
    /// Float range `[-scale, scale)`.
    pub scale: f64,
    /// Mix in special floats (NaN, infinities, signed zeros, huge values).
    pub specials: bool,
    /// Integers are never zero.
    pub nonzero: bool,
    /// Integer range `[lo, hi)`.
    pub ints: (i64, i64),
}

impl Default for Fill {
    fn default() -> Fill {
        Fill {
            scale: 4.0,
            specials: false,
            nonzero: false,
            ints: (-50, 50),
        }
    }
}

const SPECIALS: [f64; 10] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    -0.0,
    1e30,
    -1e30,
    1e-30,
    3.0e9,
    -2.5,
];

fn fill_data(d: &mut Data, rng: &mut Rng, f: Fill) {
    let float = |rng: &mut Rng| {
        if f.specials && rng.next().is_multiple_of(5) {
            SPECIALS[(rng.next() % SPECIALS.len() as u64) as usize]
        } else {
            rng.uniform(-f.scale, f.scale)
        }
    };
    let int = |rng: &mut Rng| loop {
        let v = rng.int(f.ints.0, f.ints.1);
        if !(f.nonzero && v == 0) {
            return v;
        }
    };
    match d {
        Data::F32(v) => v.iter_mut().for_each(|x| *x = float(rng) as f32),
        Data::F64(v) => v.iter_mut().for_each(|x| *x = float(rng)),
        Data::I32(v) => v.iter_mut().for_each(|x| *x = int(rng) as i32),
        Data::I64(v) => v.iter_mut().for_each(|x| *x = int(rng)),
        Data::U32(v) => v
            .iter_mut()
            .for_each(|x| *x = int(rng).unsigned_abs() as u32),
        Data::Bool(v) => v.iter_mut().for_each(|x| *x = rng.next().is_multiple_of(2)),
    }
}

pub fn bindings(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Buffers for `program` with inputs and state filled.
pub fn inputs(program: &Program, b: &HashMap<String, u64>, seed: u64, fill: Fill) -> Vec<Data> {
    let mut bufs = kiln_kernel::allocate(program, b).expect("allocate");
    let mut rng = Rng::new(seed);
    for (buf, data) in program.buffers.iter().zip(bufs.iter_mut()) {
        if matches!(buf.kind, BufferKind::Input(_) | BufferKind::State(_)) {
            fill_data(data, &mut rng, fill);
        }
    }
    bufs
}

/// Element-wise comparison: floats within `rel * |want| + abs` (NaN matches NaN, signed
/// zeros match), everything else exactly.
pub fn assert_close(got: &Data, want: &Data, rel: f64, abs: f64, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.len(), want.len(), "{what}: length");
    let g = kiln_ir::Array::new(&[got.len()], got.clone())
        .unwrap()
        .to_f64_vec();
    let w = kiln_ir::Array::new(&[want.len()], want.clone())
        .unwrap()
        .to_f64_vec();
    let float = got.dtype().is_float();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if !float || a == b {
            a == b
        } else {
            (a - b).abs() <= rel * b.abs() + abs
        };
        assert!(ok, "{what}[{i}]: got {a:e}, want {b:e}");
    }
    if !float {
        assert_eq!(
            kiln_ir::Array::new(&[got.len()], got.clone())
                .unwrap()
                .to_le_bytes(),
            kiln_ir::Array::new(&[want.len()], want.clone())
                .unwrap()
                .to_le_bytes(),
            "{what}: bits"
        );
    }
}

/// The outcome of one run.
pub type Outcome = Result<Vec<Data>, String>;

pub fn run_exec(program: &Program, b: &HashMap<String, u64>, bufs: &[Data]) -> Outcome {
    let mut bufs = bufs.to_vec();
    let program = kiln_kernel::verify(program.clone()).map_err(|e| e.to_string())?;
    kiln_kernel::execute(&program, b, &mut bufs).map_err(|e| e.to_string())?;
    Ok(bufs)
}

pub fn run_cpu(
    program: &Program,
    b: &HashMap<String, u64>,
    bufs: &[Data],
    threads: Option<usize>,
) -> Result<Vec<Data>, CpuError> {
    let program = kiln_kernel::verify(program.clone()).unwrap_or_else(|e| panic!("{e}"));
    let compiled = kiln_cpu::compile(&program)?;
    let mut bufs = bufs.to_vec();
    compiled.run_with(b, &mut bufs, &RunOptions { threads })?;
    Ok(bufs)
}

/// Runs `program` on the executor and the CPU backend (all threads and one thread) and
/// compares every buffer that is not an input. Returns the CPU buffers.
pub fn differential(
    program: &Program,
    b: &HashMap<String, u64>,
    bufs: &[Data],
    rel: f64,
    abs: f64,
) -> Vec<Data> {
    let want = run_exec(program, b, bufs).expect("executor");
    let got = run_cpu(program, b, bufs, None).unwrap_or_else(|e| panic!("cpu: {e}\n{program}"));
    let single = run_cpu(program, b, bufs, Some(1)).unwrap_or_else(|e| panic!("cpu: {e}"));
    for (k, buf) in program.buffers.iter().enumerate() {
        if matches!(buf.kind, BufferKind::Input(_) | BufferKind::Constant(_)) {
            continue;
        }
        assert_close(
            &got[k],
            &want[k],
            rel,
            abs,
            &format!("b{k} of\n{program}\n"),
        );
        assert_close(
            &single[k],
            &want[k],
            rel,
            abs,
            &format!("b{k} (one thread) of\n{program}\n"),
        );
    }
    got
}

/// Parses a program, panicking with the parse error.
pub fn parse(text: &str) -> Program {
    kiln_kernel::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The sizes used to hit vector tails.
pub const SIZES: [u64; 5] = [1, 3, 7, 50, 783];

/// Every dtype.
pub const DTYPES: [DType; 6] = DType::ALL;
