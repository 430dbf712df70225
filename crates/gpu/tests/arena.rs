//! The GPU engine's scratch arena: every scratch buffer of a run lives in one device
//! buffer at its offset in the memory plan, so scratch buffers with disjoint lifetimes
//! share bytes; a kernel may bind several ranges of the arena (all `read_write`, which
//! wgpu accepts in one dispatch) and the results still equal the kernel executor's.

use crate::common;

use common::{TRANSCENDENTAL, bind, check, f32s, named};
use kiln_gpu::{GpuOptions, GpuProgram, test_device};
use kiln_kernel::parse;

/// b1 -> b2 -> b3 -> b4: b1 dies when b2 is written, so b3 can take its bytes; k3 reads
/// two scratch ranges of the arena at once.
const CHAIN: &str = "symbol N >= 1
b0 = input \"x\" f32[N]
b1 = scratch f32[N]
b2 = scratch f32[N]
b3 = scratch f32[N]
b4 = scratch bool[N]
b5 = output \"y\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = exp(v0)
  store b1[i0] = v1
}
k1 = loop [N] {
  v0 = load b1[i0]
  v1 = neg(v0)
  store b2[i0] = v1
}
k2 = loop [N] {
  v0 = load b2[i0]
  v1 = mul(v0, v0)
  store b3[i0] = v1
  v2 = f32(-2.0)
  v3 = lt(v0, v2)
  store b4[i0] = v3
}
k3 = loop [N] {
  v0 = load b3[i0]
  v1 = load b2[i0]
  v2 = load b4[i0]
  v3 = add(v0, v1)
  v4 = select(v2, v3, v0)
  store b5[i0] = v4
}
";

#[test]
fn scratch_shares_one_arena_and_runs_like_the_executor() {
    let p = parse(CHAIN).expect("parses");
    let n = 1000u64;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32) * 3.0 - 1.5).collect();
    let Some((outs, _)) = check(
        &p,
        &bind(&[("N", n)]),
        &named(vec![("x", f32s(&x))]),
        &|_| TRANSCENDENTAL,
    ) else {
        return;
    };
    assert_eq!(outs["y"].len(), n as usize);

    let Some(device) = test_device() else {
        return;
    };
    let program = GpuProgram::compile_on(&device, &common::verified(&p), &GpuOptions::default())
        .expect("compiles");
    let plan = program.scratch_plan(&bind(&[("N", n)])).expect("plans");
    let slot = (n * 4).next_multiple_of(plan.alignment);
    // Four scratch buffers of N words, at most three live at once (k2 writes b3 and b4
    // while b2 is live; b1 is dead by then).
    assert_eq!(plan.peak_scratch_bytes, 3 * slot);
    assert_eq!(plan.offsets[1], plan.offsets[3], "b3 reuses b1's bytes");
    // Bools take a whole word on the device.
    assert_eq!(plan.bytes[4], n * 4);
    assert_eq!(plan.offsets[1].unwrap() % plan.alignment, 0);
}
