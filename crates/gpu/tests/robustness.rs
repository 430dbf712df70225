//! Plans that used to go wrong only on the GPU: index intermediates beyond `i32` (refused
//! before any dispatch) and statically empty domains (no literal division by zero in the
//! shaders, no dispatch, results equal to the executor's).

use crate::common;

use common::{EXACT, bind, check, f32s, named, validate_wgsl};
use kiln_gpu::{GpuError, GpuOptions, GpuProgram, test_device};
use kiln_kernel::{IndexWidthError, KernelId, parse, verify};

/// Verified, exact on the executor and the CPU, but `i0*65536*32768` wraps in `i32`.
const WRAPS: &str = "
b0 = input \"x\" f32[4]
b1 = output \"y\" f32[4]
k0 = loop [4] {
  v0 = load b0[((i0*65536)*32768)/65536/32768]
  store b1[i0] = v0
}
";

/// The same with the factor symbolic: fine for small `N`, wraps for `N >= 16384`.
const WRAPS_FOR_LARGE_N: &str = "
symbol N >= 1
b0 = input \"x\" f32[4]
b1 = output \"y\" f32[4]
k0 = loop [4] {
  v0 = load b0[((i0*N)*65536)/N/65536]
  store b1[i0] = v0
}
";

#[test]
fn index_intermediates_beyond_i32_are_refused_before_dispatch() {
    let fixed = verify(parse(WRAPS).expect("parses")).expect("verifies");
    let symbolic = verify(parse(WRAPS_FOR_LARGE_N).expect("parses")).expect("verifies");
    let x = named(vec![("x", f32s(&[1.0, 2.0, 3.0, 4.0]))]);
    let big = bind(&[("N", 16384)]);
    let exact = common::reference(&symbolic, &big, &x, &Default::default()).expect("runs");
    assert_eq!(exact.0["y"], f32s(&[1.0, 2.0, 3.0, 4.0]));
    let Some(device) = test_device() else { return };
    let Err(err) = GpuProgram::compile_on(&device, &fixed, &GpuOptions::default()) else {
        panic!("a plan that wraps in i32 compiled");
    };
    assert_eq!(
        err,
        GpuError::IndexWidth(IndexWidthError::Overflow {
            kernel: KernelId(0),
            index: "i0*65536*32768".into(),
            bits: 32,
        })
    );
    assert_eq!(
        err.to_string(),
        "k0: index `i0*65536*32768` may overflow 32-bit arithmetic under the given bindings \
         (GPU shaders index with i32; run this program on `Backend::Cpu`)"
    );
    let mut p =
        GpuProgram::compile_on(&device, &symbolic, &GpuOptions::default()).expect("compiles");
    let small = p.run(&bind(&[("N", 1)]), &x).expect("runs for N = 1");
    assert_eq!(small["y"], f32s(&[1.0, 2.0, 3.0, 4.0]));
    let err = p.run(&big, &x).expect_err("refused for N = 16384");
    assert!(
        matches!(
            &err,
            GpuError::IndexWidth(IndexWidthError::Overflow { bits: 32, .. })
        ),
        "{err}"
    );
}

/// Every kernel kind over statically empty extents: an elementwise `[3, 0]`, a serial sum
/// over an empty axis (zeros), a tree reduction over `[N, 0]`, a hoisted row reduction, and
/// matmuls with `k = 0` (zeros) and `n = 0`.
const EMPTY: &str = "
symbol N >= 1
b0 = input \"x\" f32[0]
b1 = output \"y\" f32[0]
b2 = output \"s\" f32[3]
b3 = output \"t\" f32[3]
b4 = input \"a\" f32[0]
b5 = input \"b\" f32[0]
b6 = output \"c\" f32[6]
b7 = output \"d\" f32[0]
b8 = output \"u\" f32[0]
k0 = loop [3, 0] {
  v0 = load b0[i0*0 + i1]
  v1 = exp(v0)
  store b1[i0*0 + i1] = v1
}
k1 = loop [3] reduce [0] {
  v0 = load b0[i0*0 + r0]
  v1 = reduce_sum(v0) init f32(0.0)
  store b2[i0] = v1
}
k2 = loop [3] reduce [N, 0] {
  v0 = load b0[i0*0 + r0*0 + r1]
  v1 = reduce_max(v0) init f32(0.0)
  store b3[i0] = v1
}
k3 = loop [0, 5] reduce [N] {
  v0 = load b0[i0 + r0*0]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = f32(1.0)
  v3 = add(v1, v2)
  store b8[i0*5 + i1] = v3
}
k4 = matmul m 3 k 0 n 2 {
  a {
    v0 = load b4[i0*0 + i1]
    yield v0
  }
  b {
    v0 = load b5[i0*2 + i1]
    yield v0
  }
  epilogue {
    v0 = acc
    store b6[i0*2 + i1] = v0
  }
}
k5 = matmul m 3 k 4 n 0 {
  a {
    v0 = f32(1.0)
    yield v0
  }
  b {
    v0 = load b5[i0*0 + i1]
    yield v0
  }
  epilogue {
    v0 = acc
    store b7[i0*0 + i1] = v0
  }
}
";

#[test]
fn statically_empty_domains_run_and_match_the_executor() {
    let p = verify(parse(EMPTY).expect("parses")).expect("verifies");
    validate_wgsl(&p);
    let wgsl = kiln_wgsl::compile(&p).expect("lowers");
    for k in &wgsl.kernels {
        let literal_zero = ["% 0", "/ 0"].iter().any(|op| {
            k.source.match_indices(op).any(|(at, _)| {
                let next = k.source[at + op.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_digit() || c == '.' || c == 'u' || c == 'i')
            })
        });
        assert!(
            !literal_zero,
            "{}: divides by a literal zero:\n{}",
            k.kernel, k.source
        );
    }
    let empty = f32s(&[]);
    let inputs = named(vec![
        ("x", empty.clone()),
        ("a", empty.clone()),
        ("b", empty),
    ]);
    for n in [1u64, 70] {
        if let Some((outs, _)) = check(&p, &bind(&[("N", n)]), &inputs, &|_| EXACT) {
            assert_eq!(outs["s"], f32s(&[0.0; 3]));
            assert_eq!(outs["t"], f32s(&[0.0; 3]));
            assert_eq!(outs["c"], f32s(&[0.0; 6]));
            assert_eq!(outs["y"].len(), 0);
            assert_eq!(outs["u"].len(), 0);
        }
    }
}
