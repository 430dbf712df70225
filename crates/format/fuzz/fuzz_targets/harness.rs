//! The stable-toolchain driver shared by the fuzz targets: without libFuzzer, a target is a
//! binary that mutates the seed files (bit flips, byte writes, truncation, insertion,
//! deletion, interesting 64-bit values, splices between seeds) with a seeded xorshift
//! generator for a fixed time and runs the check on each input. A panic saves the input
//! as `crash-<n>.bin` and exits with status 1.
//!
//! ```text
//! load_bytes [--seconds N] [--seed S] [--seeds DIR] [FILE...]
//! ```
//!
//! With FILE arguments it only replays those files (reproducing a crash).

use kiln_format::fuzzing::Mutator;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn run_one(check: fn(&[u8]), input: &[u8]) -> bool {
    std::panic::catch_unwind(|| check(input)).is_ok()
}

/// Parses the command line and fuzzes or replays with `check`.
pub fn main(check: fn(&[u8])) {
    let mut seconds = 60u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut seed_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds),
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(seed)
                    .max(1)
            }
            "--seeds" => seed_dir = args.next().map(PathBuf::from).unwrap_or(seed_dir),
            _ => files.push(PathBuf::from(a)),
        }
    }
    if !files.is_empty() {
        let mut failed = false;
        for f in &files {
            let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let ok = run_one(check, &bytes);
            println!("{}: {}", f.display(), if ok { "ok" } else { "PANIC" });
            failed |= !ok;
        }
        std::process::exit(i32::from(failed));
    }
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&seed_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", seed_dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seed files in {}", seed_dir.display());
    // Panics are expected to be caught and reported, not printed for every input.
    std::panic::set_hook(Box::new(|_| {}));
    let mut mutator = Mutator::new(seed);
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut execs: u64 = 0;
    let mut crashes: u64 = 0;
    while start.elapsed() < limit {
        for _ in 0..64 {
            let input = mutator.mutate(&seeds);
            execs += 1;
            if !run_one(check, &input) {
                let path = format!("crash-{crashes}.bin");
                let _ = std::fs::write(&path, &input);
                eprintln!("panic on input saved to {path}");
                crashes += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{execs} executions in {secs:.0} s ({:.0}/s) from {} seeds, seed {seed}: {crashes} panics",
        execs as f64 / secs,
        seeds.len()
    );
    std::process::exit(i32::from(crashes > 0));
}
