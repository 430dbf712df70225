//! Graphs and data the control-flow tests of every engine share (host engines in
//! control.rs, the GPU in control_gpu.rs).

use kiln_ir::Array;

/// Deterministic `f32` data of `shape`, varied by `seed`.
pub fn f32s(shape: &[usize], seed: u32) -> Array {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| ((i as u32 * 5 + seed * 11) % 13) as f32 * 0.25 - 1.5)
        .collect();
    Array::from_f32(shape, v).unwrap()
}

/// A scan over a symbolic length `T` (`REV` is replaced by `false` or `true`).
pub const SCAN: &str = r#"
n0 = input "xs" : f32[T, 2]
n1 = input "c0" : f32[2]
n2 = input "k" : f32[]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=REV : bool[]
n4 = get n3 index=0 : f32[2]
n5 = get n3 index=1 : f32[T, 2]
r0 (n0, n1, n2) -> (n3, n4) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = input "k" : f32[]
  n3 = add n0, n1 : f32[2]
  n4 = mul n3, n2 : f32[2]
}
"#;

/// Newton's iteration as a while loop.
pub const NEWTON: &str = r#"
n0 = input "a" : f32[]
n1 = const f32[] [1.0] : f32[]
n2 = while n1, n0 cond=r0 body=r1 carries=1 : bool[]
n3 = get n2 index=0 : f32[]
r0 (n0, n1) -> (n6) {
  n0 = input "x" : f32[]
  n1 = input "a" : f32[]
  n2 = mul n0, n0 : f32[]
  n3 = sub n2, n1 : f32[]
  n4 = abs n3 : f32[]
  n5 = const f32[] [0.0001] : f32[]
  n6 = gt n4, n5 : bool[]
}
r1 (n0, n1) -> (n5) {
  n0 = input "x" : f32[]
  n1 = input "a" : f32[]
  n2 = div n1, n0 : f32[]
  n3 = add n0, n2 : f32[]
  n4 = const f32[] [0.5] : f32[]
  n5 = mul n3, n4 : f32[]
}
"#;
