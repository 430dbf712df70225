//! Micro-benchmarks of the CPU backend.
//!
//! `cargo run --release -p kiln-cpu --example bench [ew_chain|matmul_1024|copy|all]`
//!
//! * `ew_chain`: `y = tanh(x*1.7 + 0.3) * sigmoid(x) - 0.5*x` over 16M f32 (one fused
//!   loop kernel), against a plain Rust loop calling std's (libm) `tanh` and `exp`.
//! * `matmul_1024`: `[1024, 1024] x [1024, 1024]` f32 through the GEMM, with a plain store
//!   epilogue and with a bias + relu epilogue.
//!
//! Each case reports the best of several runs, with one thread and with the whole pool.

use kiln_cpu::{RunOptions, compile};
use kiln_ir::Data;
use std::collections::HashMap;
use std::time::Instant;

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`), if available.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Best wall time of `reps` runs, and the calling thread's CPU time in that run (which
/// excludes time the machine gave to other processes; meaningful for one-thread runs).
fn best_with_cpu<F: FnMut()>(reps: usize, mut f: F) -> (f64, Option<f64>) {
    let mut best = (f64::INFINITY, None);
    for _ in 0..reps {
        let c = thread_cpu_ns();
        let t = Instant::now();
        f();
        let wall = t.elapsed().as_secs_f64();
        let cpu = c.zip(thread_cpu_ns()).map(|(a, b)| (b - a) as f64 * 1e-9);
        if wall < best.0 {
            best = (wall, cpu);
        }
    }
    best
}

fn best<F: FnMut()>(reps: usize, f: F) -> f64 {
    best_with_cpu(reps, f).0
}

fn cpu_note(cpu: Option<f64>, threads: Option<usize>) -> String {
    match (cpu, threads) {
        (Some(c), Some(1)) => format!("  (thread CPU time {:.2} ms)", c * 1e3),
        _ => String::new(),
    }
}

fn ew_chain() {
    let n: usize = 16 << 20;
    let program = kiln_kernel::parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N]
         b1 = output \"y\" f32[N]
         k0 = loop [N] {
           v0 = load b0[i0]
           v1 = f32(1.7)
           v2 = mul(v0, v1)
           v3 = f32(0.3)
           v4 = add(v2, v3)
           v5 = tanh(v4)
           v6 = sigmoid(v0)
           v7 = mul(v5, v6)
           v8 = f32(0.5)
           v9 = mul(v8, v0)
           v10 = sub(v7, v9)
           store b1[i0] = v10
         }",
    )
    .expect("parse");
    let t = Instant::now();
    let compiled =
        compile(&kiln_kernel::verify(program.clone()).expect("verifies")).expect("compile");
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i % 10_007) as f32 / 10_007.0 - 0.5) * 8.0)
        .collect();
    let b = HashMap::from([("N".to_string(), n as u64)]);
    let mut bufs = vec![Data::F32(x.clone()), Data::F32(vec![0.0; n])];
    println!(
        "ew_chain: 16M f32, compile {compile_ms:.1} ms, loops {:?}",
        compiled.loops()
    );
    for threads in [Some(1), None] {
        let opts = RunOptions { threads };
        let (s, cpu) = best_with_cpu(7, || compiled.run_with(&b, &mut bufs, &opts).expect("run"));
        let gbs = (n * 8) as f64 / s / 1e9;
        println!(
            "  kiln-cpu threads={:<4} {:7.2} ms  {:5.2} ns/elem  {:5.2} GB/s{}",
            threads.map_or("all".to_string(), |t| t.to_string()),
            s * 1e3,
            s * 1e9 / n as f64,
            gbs,
            cpu_note(cpu, threads)
        );
    }
    let mut y = vec![0.0f32; n];
    let (s, cpu) = best_with_cpu(3, || {
        for (o, &v) in y.iter_mut().zip(&x) {
            *o = (v * 1.7 + 0.3).tanh() * (1.0 / (1.0 + (-v).exp())) - 0.5 * v;
        }
    });
    println!(
        "  rust scalar std (1 thread) {:7.2} ms  {:5.2} ns/elem{}",
        s * 1e3,
        s * 1e9 / n as f64,
        cpu_note(cpu, Some(1))
    );
    let Data::F32(got) = &bufs[1] else {
        unreachable!()
    };
    let worst = got
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("  max |kiln - std| = {worst:e}");
}

fn matmul_1024() {
    let n = 1024usize;
    for (name, epilogue) in [
        ("store", "v0 = acc\n store b3[i0*1024 + i1] = v0"),
        (
            "bias+relu",
            "v0 = acc\n v1 = load b2[i1]\n v2 = add(v0, v1)\n v3 = f32(0.0)\n v4 = max(v2, v3)\n store b3[i0*1024 + i1] = v4",
        ),
    ] {
        let program = kiln_kernel::parse(&format!(
            "b0 = input \"a\" f32[1048576]
             b1 = input \"b\" f32[1048576]
             b2 = input \"bias\" f32[1024]
             b3 = output \"c\" f32[1048576]
             k0 = matmul m 1024 k 1024 n 1024 {{
               a {{
                 v0 = load b0[i0*1024 + i1]
                 yield v0
               }}
               b {{
                 v0 = load b1[i0*1024 + i1]
                 yield v0
               }}
               epilogue {{
                 {epilogue}
               }}
             }}"
        ))
        .expect("parse");
        let compiled =
            compile(&kiln_kernel::verify(program.clone()).expect("verifies")).expect("compile");
        let a: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let bm: Vec<f32> = (0..n * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut bufs = vec![
            Data::F32(a),
            Data::F32(bm),
            Data::F32(vec![0.1; n]),
            Data::F32(vec![0.0; n * n]),
        ];
        let b = HashMap::new();
        println!("matmul_1024 ({name} epilogue):");
        for threads in [Some(1), None] {
            let opts = RunOptions { threads };
            let (s, cpu) =
                best_with_cpu(5, || compiled.run_with(&b, &mut bufs, &opts).expect("run"));
            println!(
                "  threads={:<4} {:7.2} ms  {:6.1} GFLOP/s{}",
                threads.map_or("all".to_string(), |t| t.to_string()),
                s * 1e3,
                2.0 * (n * n * n) as f64 / s / 1e9,
                cpu_note(cpu, threads)
            );
        }
    }
}

/// A copy kernel at growing sizes, one thread against the pool: the split threshold must
/// keep small memory-bound kernels on one thread.
fn copy() {
    let program = kiln_kernel::parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N]
         b1 = output \"y\" f32[N]
         k0 = loop [N] {
           v0 = load b0[i0]
           store b1[i0] = v0
         }",
    )
    .expect("parse");
    let compiled =
        compile(&kiln_kernel::verify(program.clone()).expect("verifies")).expect("compile");
    println!("copy f32 (best of 20):");
    for shift in [12, 14, 15, 16, 17, 18, 20, 22, 24] {
        let n = 1usize << shift;
        let b = HashMap::from([("N".to_string(), n as u64)]);
        let mut bufs = vec![Data::F32(vec![1.0; n]), Data::F32(vec![0.0; n])];
        let mut line = format!("  n=2^{shift:<3}");
        for threads in [Some(1), None] {
            let opts = RunOptions { threads };
            let s = best(20, || compiled.run_with(&b, &mut bufs, &opts).expect("run"));
            line += &format!(
                "  threads={:<4} {:9.1} us {:6.2} GB/s",
                threads.map_or("all".to_string(), |t| t.to_string()),
                s * 1e6,
                (n * 8) as f64 / s / 1e9
            );
        }
        println!("{line}");
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    println!("threads in pool: {}", kiln_cpu::pool::global().size());
    if which == "ew_chain" || which == "all" {
        ew_chain();
    }
    if which == "matmul_1024" || which == "all" {
        matmul_1024();
    }
    if which == "copy" || which == "all" {
        copy();
    }
}
