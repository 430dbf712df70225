//! The fuzz harnesses of every parser kiln runs on untrusted bytes, run on stable Rust for a
//! bounded number of deterministic mutations of committed seeds: `.kiln`
//! (`kiln_format::fuzzing::load_bytes` and `load_resealed`), `.npy`
//! (`kiln::npy::fuzz_check`) and `.safetensors` (`kiln_cli::safetensors_file::check`, the
//! import path). Each input must finish without a panic, with a one-line error, in under
//! [`PER_INPUT`]; a failing input is saved under `target/fuzz-failures/` for replay.
//!
//! `KILN_FUZZ_CASES` sets the mutations per target (default 20 000); `KILN_FUZZ_SEED` the
//! generator seed. `BLESS=1` rewrites the `.npy` and `.safetensors` seeds in
//! crates/cli/fuzz/seeds, which the cargo-fuzz targets start from.

use kiln::Array;
use kiln_format::fuzzing::Mutator;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest any single input may take.
const PER_INPUT: Duration = Duration::from_secs(2);

fn cases() -> usize {
    std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

fn seed() -> u64 {
    std::env::var("KILN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64)
        .max(1)
}

/// Runs `check` on every seed and on `cases()` mutations; fails naming the saved input on
/// the first panic or slow input.
fn drive(target: &str, check: fn(&[u8]), seeds: &[Vec<u8>]) {
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let failures = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let mut mutator = Mutator::new(seed());
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let total = seeds.len() + cases();
    for i in 0..total {
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            mutator.mutate(seeds)
        };
        let t = Instant::now();
        let result = std::panic::catch_unwind(|| check(&input));
        let took = t.elapsed();
        slowest = slowest.max(took);
        if result.is_err() || took > PER_INPUT {
            std::fs::create_dir_all(&failures).unwrap();
            let path = failures.join(format!("{target}-{i}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{target}: input {i} {} (saved to {})",
                if result.is_err() {
                    "panicked".to_string()
                } else {
                    format!("took {took:?}, over {PER_INPUT:?}")
                },
                path.display()
            );
        }
    }
    eprintln!(
        "{target}: {total} inputs in {:.2?}, slowest {slowest:.2?}",
        start.elapsed()
    );
}

fn read_dir(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn seed_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(kind)
}

/// A version 1.0 `.npy` with `header` padded as NumPy pads it.
fn npy_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn npy_seeds() -> Vec<(String, Vec<u8>)> {
    let w = |a: Array| kiln::npy::to_bytes(&a).unwrap();
    vec![
        (
            "f32_2x3.npy".into(),
            w(Array::from_f32(&[2, 3], vec![1.0, -2.0, 0.5, 3.0, 4.0, 5.0]).unwrap()),
        ),
        (
            "f64_3.npy".into(),
            w(Array::from_f64(&[3], vec![1.0, -2.5, 1e300]).unwrap()),
        ),
        (
            "i32_scalar.npy".into(),
            w(Array::from_i32(&[], vec![-7]).unwrap()),
        ),
        (
            "i64_2x0.npy".into(),
            w(Array::from_i64(&[2, 0], vec![]).unwrap()),
        ),
        (
            "u32_4.npy".into(),
            w(Array::from_u32(&[4], vec![0, 1, 2, u32::MAX]).unwrap()),
        ),
        (
            "bool_3.npy".into(),
            w(Array::from_bool(&[3], vec![true, false, true]).unwrap()),
        ),
        (
            "i4_big_endian_fortran.npy".into(),
            npy_raw(
                "{'descr': '>i4', 'fortran_order': True, 'shape': (2L, 2L), }",
                &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4],
            ),
        ),
        ("version3.npy".into(), {
            let mut v = npy_raw(
                "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1,)}",
                &[0, 0, 128, 63],
            );
            let h = u16::from_le_bytes([v[8], v[9]]);
            v[6] = 3;
            v.splice(8..10, (u32::from(h)).to_le_bytes());
            v
        }),
    ]
}

fn safetensors_seeds() -> Vec<(String, Vec<u8>)> {
    let st = |tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>| {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    };
    vec![
        (
            "mixed.safetensors".into(),
            st(vec![
                ("fc.weight", Dtype::F32, vec![2, 2], vec![0; 16]),
                ("fc.bias", Dtype::F64, vec![2], vec![0; 16]),
                ("mask", Dtype::BOOL, vec![3], vec![1, 0, 1]),
                ("step", Dtype::I64, vec![], vec![1, 0, 0, 0, 0, 0, 0, 0]),
            ]),
        ),
        (
            "ints.safetensors".into(),
            st(vec![
                (
                    "a",
                    Dtype::I32,
                    vec![1, 2],
                    vec![1, 0, 0, 0, 255, 255, 255, 255],
                ),
                ("b", Dtype::U32, vec![1], vec![7, 0, 0, 0]),
                ("half", Dtype::F16, vec![1], vec![0, 60]),
            ]),
        ),
        ("empty.safetensors".into(), st(vec![])),
    ]
}

/// Checks that the committed seeds are the generated ones (`BLESS=1` rewrites them).
fn committed(kind: &str, generated: Vec<(String, Vec<u8>)>) -> Vec<Vec<u8>> {
    let dir = seed_dir(kind);
    if std::env::var_os("BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &generated {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut generated = generated;
    generated.sort();
    let on_disk = read_dir(&dir);
    let expected: Vec<Vec<u8>> = generated.into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        on_disk, expected,
        "{kind} seeds differ from the generated ones; BLESS=1 rewrites them"
    );
    on_disk
}

#[test]
fn kiln_loader_survives_mutated_seeds() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = read_dir(&manifest.join("../format/fuzz/seeds"));
    seeds.extend(read_dir(&manifest.join("../format/tests/v1_files")));
    drive("load_bytes", kiln_format::fuzzing::load_bytes, &seeds);
    drive("load_resealed", kiln_format::fuzzing::load_resealed, &seeds);
}

#[test]
fn npy_reader_survives_mutated_seeds() {
    let seeds = committed("npy", npy_seeds());
    drive("npy_read", kiln::npy::fuzz_check, &seeds);
}

#[test]
fn safetensors_import_survives_mutated_seeds() {
    let seeds = committed("safetensors", safetensors_seeds());
    drive(
        "safetensors_read",
        kiln_cli::safetensors_file::check,
        &seeds,
    );
}
