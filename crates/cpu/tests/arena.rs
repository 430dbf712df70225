//! The scratch arena: a run plan allocates one arena of the memory plan's peak, scratch
//! buffers with disjoint lifetimes share its bytes, an elementwise kernel writes over its
//! dead input in place (vectorised and split over threads), and a contraction's workspace
//! lives in it too; results match the kernel executor.

use kiln_cpu::{RunOptions, compile, memory_plan};
use kiln_ir::Data;
use kiln_kernel::{BufferId, allocate, execute, parse};
use std::collections::HashMap;

/// `x -> exp -> neg (in place) -> *2 (in place) -> matmul with a materialised operand ->
/// row sums`, with every intermediate in scratch.
const PROGRAM: &str = "symbol N >= 1
b0 = input \"x\" f32[N*64]
b1 = scratch f32[N*64]
b2 = scratch f32[N*64]
b3 = scratch f32[N*64]
b4 = scratch f32[N*16]
b5 = output \"y\" f32[N]
b6 = input \"w\" f32[1024]
k0 = loop [N, 64] {
  v0 = load b0[i0*64 + i1]
  v1 = mul(v0, v0)
  v2 = neg(v1)
  v3 = exp(v2)
  store b1[i0*64 + i1] = v3
}
k1 = loop [N, 64] {
  v0 = load b1[i0*64 + i1]
  v1 = f32(0.5)
  v2 = sub(v0, v1)
  store b2[i0*64 + i1] = v2
}
k2 = loop [N, 64] {
  v0 = load b2[i0*64 + i1]
  v1 = add(v0, v0)
  v2 = mul(v1, v0)
  store b3[i0*64 + i1] = v2
}
k3 = matmul m N k 64 n 16 {
  a {
    v0 = load b3[i0*64 + i1]
    v1 = tanh(v0)
    yield v1
  }
  b {
    v0 = load b6[i0*16 + i1]
    yield v0
  }
  epilogue {
    v0 = acc
    store b4[i0*16 + i1] = v0
  }
}
k4 = loop [N] reduce [16] {
  v0 = load b4[i0*16 + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  store b5[i0] = v1
}
";

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32) * 0.731 + seed).sin() * 1.5)
        .collect()
}

#[test]
fn in_place_pairs_and_workspace_share_one_arena_and_match_the_executor() {
    let program = kiln_kernel::verify(parse(PROGRAM).expect("parses")).expect("verifies");
    let compiled = compile(&program).expect("compiles");
    let in_place_loops: Vec<_> = compiled.loops().into_iter().skip(1).take(2).collect();
    assert!(
        in_place_loops
            .iter()
            .all(|l| l.vector.is_some() && l.split_axis == Some(0)),
        "{in_place_loops:?}"
    );
    for n in [1u64, 7, 4096] {
        let bindings = HashMap::from([("N".to_string(), n)]);
        let mp = compiled.memory_plan(&bindings).expect("plans");
        assert_eq!(
            mp,
            memory_plan(&program, &bindings).expect("plans uncompiled")
        );
        assert_eq!(
            mp.in_place,
            vec![(BufferId(2), BufferId(1)), (BufferId(3), BufferId(2))]
        );
        assert_eq!(mp.offsets[1], mp.offsets[2]);
        assert_eq!(mp.offsets[2], mp.offsets[3]);
        // The materialised `tanh` operand of k3: N*64 f32, live only during k3.
        assert_eq!(mp.workspace_offsets.len(), 1);
        let slot = (n * 64 * 4).div_ceil(64) * 64;
        let out = (n * 16 * 4).div_ceil(64) * 64;
        assert_eq!(mp.peak_scratch_bytes, 2 * slot + out);

        let len = n as usize;
        let x = Data::F32(values(len * 64, 0.3));
        let w = Data::F32(values(1024, 1.1));
        let mut want = allocate(&program, &bindings).expect("allocates");
        want[0] = x.clone();
        want[6] = w.clone();
        execute(&program, &bindings, &mut want).expect("executes");
        let Data::F32(want) = &want[5] else {
            unreachable!()
        };

        let mut plan = compiled.bind(&bindings).expect("binds");
        assert_eq!(plan.scratch_bytes() as u64, mp.peak_scratch_bytes);
        for threads in [1, 4] {
            let mut y = Data::F32(vec![f32::NAN; len]);
            let mut run = compiled.runner(&mut plan).expect("runner");
            run.read(BufferId(0), &x).unwrap();
            run.read(BufferId(6), &w).unwrap();
            run.write(BufferId(5), &mut y).unwrap();
            run.run(&RunOptions {
                threads: Some(threads),
            })
            .expect("runs");
            let Data::F32(y) = y else { unreachable!() };
            for (i, (a, b)) in y.iter().zip(want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "N={n} threads={threads} y[{i}]: {a} vs {b}"
                );
            }
        }
    }
}
