//! Measures the maximum error (ulps of the correctly rounded f32 result, against f64 libm)
//! of the CPU backend's inline f32 transcendentals over their ranges.
//!
//! `cargo run --release -p kiln-cpu --example numerics [stride]` (default stride 7: every
//! 7th f32 bit pattern in each range; stride 1 is exhaustive and slow).

#[path = "../tests/common/accuracy.rs"]
mod accuracy;

fn main() {
    let stride: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let cases: [(&str, f32, f32); 15] = [
        ("exp", -104.0, 89.0),
        ("log", 0.0, f32::MAX),
        ("tanh", -12.0, 12.0),
        ("sigmoid", -104.0, 40.0),
        ("erf", -5.0, 5.0),
        ("atan", -4.0, 4.0),
        ("atan", -f32::MAX, f32::MAX),
        ("sin", -100.0, 100.0),
        ("cos", -100.0, 100.0),
        ("sin", -10_000.0, 10_000.0),
        ("cos", -10_000.0, 10_000.0),
        ("sin", -1.0e6, 1.0e6),
        ("cos", -1.0e6, 1.0e6),
        ("sin", -f32::MAX, f32::MAX),
        ("cos", -f32::MAX, f32::MAX),
    ];
    println!("| op | range | points | max ulp | at x |");
    println!("|---|---|---|---|---|");
    for (op, lo, hi) in cases {
        let t = std::time::Instant::now();
        let r = accuracy::measure(op, lo, hi, stride);
        println!(
            "| {op} | [{lo:e}, {hi:e}] | {} | {:.3} | {:e} |   ({:.1}s)",
            r.points,
            r.max_ulp,
            r.at,
            t.elapsed().as_secs_f64()
        );
    }
}
