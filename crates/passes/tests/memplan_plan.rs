//! Memory planning tests: liveness, in-place reuse, alignment and separation of persistent
//! buffers on hand-written kernel plans, and the planner's invariants on fused random
//! graphs.

use crate::fuse_util;

use fuse_util::check_plan as check_invariants;
use kiln_kernel::memplan::{PlanError, PlanOptions, Workspace, plan, plan_with};
use kiln_kernel::{BufferId, KernelId, parse};
use std::collections::HashMap;

fn n(v: u64) -> HashMap<String, u64> {
    HashMap::from([("N".to_string(), v)])
}

#[test]
fn elementwise_kernel_overwrites_its_dead_input_in_place() {
    let p = parse(
        "symbol N >= 1
b0 = input \"x\" f32[N*4]
b1 = scratch f32[N*4]
b2 = scratch f32[N*4]
b3 = output \"y\" f32[N]
k0 = loop [N*4] {
  v0 = load b0[i0]
  v1 = exp(v0)
  store b1[i0] = v1
}
k1 = loop [N*4] {
  v0 = load b1[i0]
  v1 = neg(v0)
  store b2[i0] = v1
}
k2 = loop [N] reduce [4] {
  v0 = load b2[i0*4 + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  store b3[i0] = v1
}
",
    )
    .expect("parses");
    let mp = plan(&p, &n(10)).expect("plans");
    assert_eq!(mp.in_place, vec![(BufferId(2), BufferId(1))]);
    assert_eq!(mp.offsets[1], mp.offsets[2]);
    assert_eq!(mp.offsets[0], None);
    assert_eq!(mp.offsets[3], None);
    assert_eq!(mp.bytes[1], 160);
    assert_eq!(mp.lifetimes[1], Some((0, 1)));
    assert_eq!(mp.lifetimes[2], Some((1, 2)));
    assert_eq!(mp.peak_scratch_bytes, 192);
    assert_eq!(mp.live_bound_bytes, 384);
    assert_eq!(mp.persistent_bytes, 160 + 40);
    check_invariants(&p, &mp);
}

#[test]
fn a_transposed_read_is_not_in_place_but_dead_buffers_share_memory() {
    let p = parse(
        "symbol N >= 1
b0 = input \"x\" f32[N*4]
b1 = scratch f32[N*4]
b2 = scratch f32[N*4]
b3 = scratch f32[N]
b4 = scratch f32[N]
b5 = output \"y\" f32[N]
k0 = loop [N, 4] {
  v0 = load b0[i0*4 + i1]
  store b1[i0*4 + i1] = v0
}
k1 = loop [4, N] {
  v0 = load b1[i1*4 + i0]
  store b2[i0*N + i1] = v0
}
k2 = loop [N] reduce [4] {
  v0 = load b2[r0*N + i0]
  v1 = reduce_sum(v0) init f32(0.0)
  store b3[i0] = v1
}
k3 = loop [N] {
  v0 = load b3[i0]
  v1 = exp(v0)
  store b4[i0] = v1
}
k4 = loop [N] {
  v0 = load b4[i0]
  store b5[i0] = v0
}
",
    )
    .expect("parses");
    let mp = plan(&p, &n(100)).expect("plans");
    // k1 reads b1 transposed: writing b2 over it would clobber unread elements.
    assert!(!mp.in_place.iter().any(|&(y, _)| y == BufferId(2)));
    assert_ne!(mp.offsets[1], mp.offsets[2]);
    // b3 -> b4 is an elementwise kernel reading b3 at its store index: in place.
    assert_eq!(mp.in_place, vec![(BufferId(4), BufferId(3))]);
    // b1 dies at k1, so b3 (born at k2) reuses its bytes: the arena is two 1600-byte slots.
    assert_eq!(mp.peak_scratch_bytes, 2 * 1600);
    assert_eq!(mp.live_bound_bytes, 2 * 1600);
    check_invariants(&p, &mp);
}

#[test]
fn sizes_follow_the_binding_and_unbound_symbols_are_errors() {
    let p = parse(
        "symbol N >= 1
b0 = input \"x\" f64[N]
b1 = scratch f64[N*3]
b2 = output \"y\" f64[N*3]
k0 = loop [N, 3] {
  v0 = load b0[i0]
  store b1[i0*3 + i1] = v0
}
k1 = loop [N*3] {
  v0 = load b1[i0]
  store b2[i0] = v0
}
",
    )
    .expect("parses");
    let small = plan(&p, &n(1)).expect("plans");
    let big = plan(&p, &n(1000)).expect("plans");
    assert_eq!((small.bytes[1], small.peak_scratch_bytes), (24, 64));
    assert_eq!((big.bytes[1], big.peak_scratch_bytes), (24000, 24000));
    let err = plan(&p, &HashMap::new());
    assert!(
        matches!(
            err,
            Err(PlanError::Size {
                buffer: BufferId(0),
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn fused_models_plan_within_their_live_sets() {
    // SimpleNN forward at IR level: one scratch buffer between the two matmuls.
    let mut g = kiln_ir::Graph::new();
    let x = fuse_util::input(&mut g, "x", kiln_ir::DType::F32, fuse_util::n_shape(&[784]));
    let w1 = fuse_util::param(&mut g, "fc1.weight", kiln_ir::DType::F32, &[128, 784]);
    let b1 = fuse_util::param(&mut g, "fc1.bias", kiln_ir::DType::F32, &[128]);
    let w2 = fuse_util::param(&mut g, "fc2.weight", kiln_ir::DType::F32, &[10, 128]);
    let b2 = fuse_util::param(&mut g, "fc2.bias", kiln_ir::DType::F32, &[10]);
    let h = fuse_util::linear(&mut g, x, w1, b1);
    let h = fuse_util::relu(&mut g, h);
    let y = fuse_util::linear(&mut g, h, w2, b2);
    let y = fuse_util::softmax(&mut g, y);
    let p = kiln_passes::fuse::lower(&g, &[("y".into(), y)]).expect("lowers");
    let mp = plan(&p, &n(64)).expect("plans");
    check_invariants(&p, &mp);
    assert!(mp.peak_scratch_bytes <= mp.live_bound_bytes);
    // h (64 x 128 f32) and the logits (64 x 10) are live together at the second matmul;
    // the softmax is one kernel (row max and row sum are its two reduction stages).
    assert_eq!(p.kernels.len(), 3);
    assert_eq!(mp.peak_scratch_bytes, 64 * 128 * 4 + 64 * 10 * 4);
    assert_eq!(mp.live_bound_bytes, 64 * 128 * 4 + 64 * 10 * 4);
}

/// `x -> exp -> neg -> sum of 4`: b1 dies in k1, which may write b2 over it.
const CHAIN: &str = "symbol N >= 1
b0 = input \"x\" f32[N*4]
b1 = scratch f32[N*4]
b2 = scratch f32[N*4]
b3 = output \"y\" f32[N]
k0 = loop [N*4] {
  v0 = load b0[i0]
  v1 = exp(v0)
  store b1[i0] = v1
}
k1 = loop [N*4] {
  v0 = load b1[i0]
  v1 = neg(v0)
  store b2[i0] = v1
}
k2 = loop [N] reduce [4] {
  v0 = load b2[i0*4 + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  store b3[i0] = v1
}
";

#[test]
fn alignment_and_in_place_reuse_are_options() {
    let p = parse(CHAIN).expect("parses");
    let separate = PlanOptions {
        alignment: 256,
        in_place: false,
        element_bytes: None,
    };
    let mp = plan_with(&p, &n(10), &separate, &[]).expect("plans");
    assert!(mp.in_place.is_empty());
    assert_eq!(mp.alignment, 256);
    // b1 and b2 (160 bytes each, one 256-byte slot each) are live together at k1.
    assert_eq!((mp.offsets[1], mp.offsets[2]), (Some(0), Some(256)));
    assert_eq!(mp.peak_scratch_bytes, 512);
    assert_eq!(mp.live_bound_bytes, 512);
    check_invariants(&p, &mp);
    let odd = PlanOptions {
        alignment: 48,
        in_place: true,
        element_bytes: None,
    };
    assert_eq!(
        plan_with(&p, &n(10), &odd, &[]),
        Err(PlanError::Alignment(48))
    );
}

#[test]
fn workspace_is_live_only_during_its_kernel() {
    let p = parse(CHAIN).expect("parses");
    let ws = [
        Workspace {
            kernel: KernelId(2),
            bytes: 100,
        },
        Workspace {
            kernel: KernelId(0),
            bytes: 1,
        },
    ];
    let mp = plan_with(&p, &n(10), &PlanOptions::default(), &ws).expect("plans");
    assert_eq!(mp.in_place, vec![(BufferId(2), BufferId(1))]);
    // Slots live at k0: b1 (192) + 64; k1: the b1/b2 slot (192); k2: b2 (192) + 128. The
    // live bound counts b1 and b2 apart: 384 at k1.
    assert_eq!(mp.peak_scratch_bytes, 192 + 128);
    assert_eq!(mp.live_bound_bytes, 384);
    let slot = mp.offsets[2].expect("placed");
    let w0 = mp.workspace_offsets[0];
    assert!(w0 >= slot + 192 || w0 + 128 <= slot, "{mp:?}");
    assert_eq!(w0 % 64, 0);
    // The k0 workspace may take any bytes b1 does not use at k0.
    let w1 = mp.workspace_offsets[1];
    assert!(w1 >= slot + 192 || w1 + 64 <= slot, "{mp:?}");
    assert_eq!(
        plan_with(
            &p,
            &n(10),
            &PlanOptions::default(),
            &[Workspace {
                kernel: KernelId(3),
                bytes: 8
            }]
        ),
        Err(PlanError::NoSuchKernel(KernelId(3)))
    );
}

#[test]
fn a_uniform_element_size_replaces_the_dtype_size() {
    let p = parse(CHAIN).expect("parses");
    let words = PlanOptions {
        alignment: 256,
        in_place: false,
        element_bytes: Some(8),
    };
    let mp = plan_with(&p, &n(10), &words, &[]).expect("plans");
    // 40 f32 elements at 8 bytes each, instead of 4.
    assert_eq!(mp.bytes[1], 320);
    assert_eq!(mp.bytes[2], 320);
    check_invariants(&p, &mp);
}

/// `stored_whole_first` for the program `text` under `N = 3`, per buffer.
fn stored_first(text: &str) -> Vec<bool> {
    let p = parse(text).expect("parses");
    let whole = kiln_kernel::memplan::stored_whole_first(&p, &n(3));
    assert_eq!(
        plan(&p, &n(3)).expect("plans").stored_first,
        whole,
        "the memory plan carries the same flags"
    );
    whole
}

#[test]
fn outputs_stored_whole_by_their_first_kernel_need_no_zeroing() {
    // A row softmax: every element of b1 stored at the row-major index of [N, 4].
    let softmax = "symbol N >= 1
b0 = input \"x\" f32[N*4]
b1 = output \"y\" f32[N*4]
k0 = loop [N, 4] reduce [4] {
  v0 = load b0[i0*4 + r0]
  v1 = reduce_max(v0) init f32(-inf)
  v2 = load b0[i0*4 + i1]
  v3 = sub(v2, v1)
  store b1[i0*4 + i1] = v3
}
";
    assert_eq!(stored_first(softmax), vec![false, true]);
    // Two outputs of one kernel, and an output first written by a later kernel.
    let two = "symbol N >= 1
b0 = input \"x\" f32[N]
b1 = scratch f32[N]
b2 = output \"a\" f32[N]
b3 = output \"b\" i32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = neg(v0)
  store b1[i0] = v1
}
k1 = loop [N] {
  v0 = load b1[i0]
  v1 = cast<i32>(v0)
  store b2[i0] = v0
  store b3[i0] = v1
}
";
    assert_eq!(stored_first(two), vec![false, false, true, true]);
}

#[test]
fn outputs_not_provably_stored_whole_first_are_zeroed() {
    // Half of the output (a pad's interior), a transposed store over a smaller domain,
    // a strided store, and a store at an offset.
    for store in [
        "loop [N] {\n  v0 = load b0[i0]\n  store b1[i0] = v0\n}",
        "loop [N, 1] {\n  v0 = load b0[i0]\n  store b1[i0*2] = v0\n}",
        "loop [N] {\n  v0 = load b0[i0]\n  store b1[i0 + N] = v0\n}",
    ] {
        let text = format!(
            "symbol N >= 1\nb0 = input \"x\" f32[N]\nb1 = output \"y\" f32[N*2]\nk0 = {store}\n"
        );
        assert_eq!(stored_first(&text), vec![false, false], "{store}");
    }
    // The first kernel touching the output reads it (an accumulation), or only the second
    // kernel covers it after the first wrote part of it.
    let reads_first = "symbol N >= 1
b0 = input \"x\" f32[N]
b1 = output \"y\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  store b1[i0] = v0
}
k1 = loop [N] {
  v0 = load b1[i0]
  v1 = neg(v0)
  store b1[i0] = v1
}
";
    // k0 stores all of b1 before k1 reads it: stored first.
    assert_eq!(stored_first(reads_first), vec![false, true]);
    let partial_then_whole = "symbol N >= 1
b0 = input \"x\" f32[N*2]
b1 = output \"y\" f32[N*2]
k0 = loop [N] {
  v0 = load b0[i0]
  store b1[i0] = v0
}
k1 = loop [N*2] {
  v0 = load b0[i0]
  store b1[i0] = v0
}
";
    assert_eq!(stored_first(partial_then_whole), vec![false, false]);
    // A transposed store over the whole domain is a permutation, not the row-major index:
    // not claimed (the analysis only proves the identity layout).
    let transposed = "symbol N >= 1
b0 = input \"x\" f32[N*4]
b1 = output \"y\" f32[N*4]
k0 = loop [N, 4] {
  v0 = load b0[i0*4 + i1]
  store b1[i1*N + i0] = v0
}
";
    assert_eq!(stored_first(transposed), vec![false, false]);
}
