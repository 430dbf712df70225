//! Softmax and layer norm over the last axis of a `[4096, 1024]` f32 tensor, as the fusion
//! pass lowers them (the programs of `fixtures/filetests/fuse/{softmax,layer_norm}.kir`
//! with their row length scaled to 1024).
//!
//! `cargo run --release -p kiln-cpu --example row_norms [softmax|layer_norm|all] [rows]`
//!
//! Each case reports the best wall time of several runs with one thread and with the whole
//! pool, and the largest difference from the kernel executor on the first rows.

#[path = "../tests/common/fixture.rs"]
mod fixture;

use kiln_cpu::{RunOptions, compile};
use kiln_ir::Data;
use kiln_kernel::{BufferKind, Program};
use std::collections::HashMap;
use std::time::Instant;

const COLS: u64 = 1024;

/// The fixture program `name` with its row length `from` scaled to [`COLS`]; `mean` is the
/// fixture's `1/from` constant, if it has one.
fn program(name: &str, from: u64, mean: Option<&str>) -> Program {
    let text = fixture::fuse_fixture_program(name).expect("fixture");
    let mut text = fixture::replace_literal(&text, &from.to_string(), &COLS.to_string());
    if let Some(m) = mean {
        text = fixture::replace_literal(&text, m, &format!("{:?}", 1.0 / COLS as f32));
    }
    kiln_kernel::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn buffers(program: &Program, b: &HashMap<String, u64>) -> Vec<Data> {
    let mut bufs = kiln_kernel::allocate(program, b).expect("allocate");
    let mut state = 0x2545_f491_u64;
    for (buf, data) in program.buffers.iter().zip(bufs.iter_mut()) {
        if let (BufferKind::Input(_) | BufferKind::State(_), Data::F32(v)) = (&buf.kind, data) {
            for x in v.iter_mut() {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                *x = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0;
            }
        }
    }
    bufs
}

fn best<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn case(name: &str, program: &Program, rows: u64) {
    let t = Instant::now();
    let program = &kiln_kernel::verify(program.clone()).expect("verifies");
    let compiled = compile(program).expect("compile");
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let b = HashMap::from([("N".to_string(), rows)]);
    let mut bufs = buffers(program, &b);
    println!(
        "{name}: [{rows}, {COLS}] f32, compile {compile_ms:.1} ms, loops {:?}",
        compiled.loops()
    );
    let first = t.elapsed();
    compiled.run(&b, &mut bufs).expect("run");
    let reps = if t.elapsed() - first > std::time::Duration::from_secs(1) {
        2
    } else {
        10
    };
    for threads in [Some(1), None] {
        let opts = RunOptions { threads };
        let s = best(reps, || {
            compiled.run_with(&b, &mut bufs, &opts).expect("run")
        });
        println!(
            "  threads={:<4} {:9.2} ms  {:6.2} ns/elem",
            threads.map_or("all".to_string(), |t| t.to_string()),
            s * 1e3,
            s * 1e9 / (rows * COLS) as f64
        );
    }
    let small = HashMap::from([("N".to_string(), 8u64)]);
    let inputs = buffers(program, &small);
    let mut want = inputs.clone();
    kiln_kernel::execute(program, &small, &mut want).expect("execute");
    let mut got = inputs;
    compiled.run(&small, &mut got).expect("run");
    let mut worst = 0.0f32;
    for (buf, (g, w)) in program.buffers.iter().zip(got.iter().zip(&want)) {
        if let (BufferKind::Output(_), Data::F32(g), Data::F32(w)) = (&buf.kind, g, w) {
            for (a, b) in g.iter().zip(w) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    println!("  max |cpu - executor| on 8 rows = {worst:e}");
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let rows: u64 = std::env::args()
        .nth(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or(4096);
    println!("threads in pool: {}", kiln_cpu::pool::global().size());
    if which == "softmax" || which == "all" {
        case("softmax", &program("softmax", 10, None), rows);
    }
    if which == "layer_norm" || which == "all" {
        case(
            "layer_norm",
            &program("layer_norm", 16, Some("0.0625")),
            rows,
        );
    }
}
