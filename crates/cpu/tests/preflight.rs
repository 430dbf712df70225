//! Pre-run checks on degenerate index guards (found by the CPU differential property test in
//! crates/passes/tests/fuse_differential.rs): a guard whose bound is the guarded expression
//! itself (`0 <= 0 < 4`) once sent the overflow pre-check into unbounded recursion.

use std::collections::HashMap;

const PROGRAM: &str = r#"
b0 = input "in1" f32[32]
b1 = input "in2" f32[4]
b2 = input "in3" i32[8]
b3 = input "in4" i64[5]
b4 = input "in5" i32[5]
b5 = output "out0" i32[1]
k0 = loop [] {
  v0 = load b2[0*2 + 1] if 0 <= 0 < 4 && 0 <= {-1} + 0 < 5 else i32(2)
  v1 = index<i32>(0)
  v2 = i32(4)
  v3 = lt(v1, v2)
  v4 = index<i32>(1)
  v5 = i32(2)
  v6 = lt(v4, v5)
  v7 = and(v3, v6)
  v8 = select(v7, v0, v5)
  v9 = index<i32>(0 - 1)
  v10 = i32(0)
  v11 = ge(v9, v10)
  v12 = i32(5)
  v13 = lt(v9, v12)
  v14 = and(v11, v13)
  v15 = index<i32>(0 - 2)
  v16 = ge(v15, v10)
  v17 = i32(1)
  v18 = lt(v15, v17)
  v19 = and(v14, v16)
  v20 = and(v19, v18)
  v21 = index<i32>(2)
  v22 = i32(3)
  v23 = lt(v21, v22)
  v24 = and(v20, v23)
  v25 = select(v24, v8, v10)
  store b5[0] = v25
}
"#;

#[test]
fn a_guard_bounded_by_itself_runs_and_matches_the_executor() {
    let p = kiln_kernel::parse(PROGRAM).unwrap();
    let p = kiln_kernel::verify(p).unwrap();
    let b = HashMap::new();
    let mut want = kiln_kernel::allocate(&p, &b).unwrap();
    kiln_kernel::execute(&p, &b, &mut want).unwrap();
    let cpu = kiln_cpu::compile(&p).unwrap();
    let mut got = kiln_kernel::allocate(&p, &b).unwrap();
    cpu.run(&b, &mut got).unwrap();
    let (kiln_ir::Data::I32(g), kiln_ir::Data::I32(w)) = (&got[5], &want[5]) else {
        panic!("out0 is not i32");
    };
    assert_eq!(g, w);
    assert_eq!(g, &vec![0]);
}
