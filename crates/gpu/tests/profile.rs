//! The program's counters: a 100-step update loop on device-resident state uploads the
//! state once and reads it back only when asked, dispatch and workgroup counts add up, and
//! the per-kernel table lists every kernel (with GPU times where the adapter has timestamp
//! queries). Skipped without an adapter unless KILN_REQUIRE_GPU=1.

use crate::common;

use common::{bind, f32s, named, verified};
use kiln_gpu::{GpuOptions, GpuProgram, test_device};
use kiln_kernel::parse;

/// SGD-like step: `w -= 0.5 * g`, a loss output, and a statically empty kernel that is
/// never dispatched.
const STEP: &str = "
b0 = input \"g\" f32[256]
b1 = state \"w\" f32[256]
b2 = output \"loss\" f32[1]
b3 = output \"none\" f32[0]
k0 = loop [256] {
  v0 = load b1[i0]
  v1 = load b0[i0]
  v2 = f32(0.5)
  v3 = mul(v1, v2)
  v4 = sub(v0, v3)
  store b1[i0] = v4
}
k1 = loop [1] reduce [256] {
  v0 = load b1[r0]
  v1 = mul(v0, v0)
  v2 = reduce_sum(v1) init f32(0.0)
  store b2[0] = v2
}
k2 = loop [0] {
  v0 = f32(1.0)
  store b3[i0] = v0
}
";

#[test]
fn a_train_loop_moves_state_once_and_reads_it_back_only_when_asked() {
    let Some(device) = test_device() else {
        return;
    };
    let program = verified(&parse(STEP).expect("parses"));
    let mut p =
        GpuProgram::compile_on(&device, &program, &GpuOptions::default()).expect("compiles");
    p.set_timing(true);
    let w: Vec<f32> = (0..256).map(|i| i as f32 / 64.0).collect();
    p.set_state("w", &f32s(&w)).expect("sets state");
    let g = named(vec![("g", f32s(&vec![0.001; 256]))]);
    for _ in 0..100 {
        p.run_outputs(&bind(&[]), &g, Some(&["loss"]))
            .expect("runs");
    }
    let t = p.transfers();
    assert_eq!(t.state_upload_bytes, 256 * 4, "state uploaded once");
    assert_eq!(t.state_download_bytes, 0, "state never read back");
    assert_eq!(t.input_bytes, 100 * 256 * 4);
    assert_eq!(t.output_bytes, 100 * 4, "only the loss comes back");
    let prof = p.profile().clone();
    assert_eq!(prof.runs, 100);
    let counts: Vec<(u64, u64)> = prof
        .kernels
        .iter()
        .map(|k| (k.dispatches, k.workgroups))
        .collect();
    assert_eq!(counts, vec![(100, 400), (100, 100), (0, 0)]);
    assert_eq!(prof.kernels[0].bytes_bound, 100 * 2 * 256 * 4);
    if device.timestamp_period().is_some() {
        assert!(prof.kernels[0].gpu_ns.is_some() && prof.kernels[1].gpu_ns.is_some());
        assert!(prof.kernels[2].gpu_ns.is_none(), "never dispatched");
    } else {
        assert!(prof.gpu_ns().is_none());
    }
    let table = prof.to_string();
    for want in [
        "k0",
        "k1",
        "k2",
        "elementwise",
        "row-reduce",
        "100 runs",
        "moved:",
    ] {
        assert!(table.contains(want), "missing {want} in\n{table}");
    }
    // Asking for the state reads it back once, with the 100 updates applied.
    let got = p.state("w").expect("reads state").to_f64_vec();
    assert_eq!(p.transfers().state_download_bytes, 256 * 4);
    for (i, v) in got.iter().enumerate() {
        let want = f64::from(w[i]) - 100.0 * 0.0005;
        assert!((v - want).abs() < 1e-4, "[{i}] got {v}, want {want}");
    }
}
