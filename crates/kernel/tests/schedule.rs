//! Schedules: loops with an induction symbol, while loops and ifs over kernels. The
//! executor runs them, the text form round-trips them, the verifier proves `xs[t*row + i]`
//! in bounds for `0 <= t < trip` and rejects misuse.

use kiln_ir::Data;
use kiln_kernel::{Program, allocate, execute, parse, verify};
use std::collections::HashMap;

fn run(text: &str, binds: &[(&str, u64)], fill: &[(&str, Data)]) -> (Program, Vec<Data>) {
    let p = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parse(&p.to_string()), Ok(p.clone()), "round trip of\n{p}");
    let p = verify(p).unwrap_or_else(|e| panic!("{e}"));
    let b: HashMap<String, u64> = binds.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let mut bufs = allocate(&p, &b).unwrap();
    for (name, data) in fill {
        let id = p.input(name).unwrap();
        bufs[id.index()] = data.clone();
    }
    execute(&p, &b, &mut bufs).unwrap();
    (p.into_program(), bufs)
}

fn out(p: &Program, bufs: &[Data], name: &str) -> Vec<f64> {
    match &bufs[p.output(name).unwrap().index()] {
        Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        other => panic!("unexpected {:?}", other.dtype()),
    }
}

/// A running sum over the rows of `xs` (`T` rows of 2): carry `c`, ys the partial sums.
const SCAN: &str = r#"
symbol T >= 0
symbol t0 >= 0
b0 = input "xs" f32[T*2]
b1 = input "c0" f32[2]
b2 = output "c" f32[2]
b3 = scratch f32[2]
b4 = output "ys" f32[T*2]
k0 = loop [2] {
  v0 = load b2[i0]
  v1 = load b0[{t0*2} + i0]
  v2 = add(v0, v1)
  store b3[i0] = v2
  store b4[{t0*2} + i0] = v2
}
schedule {
  copy b1 -> b2
  loop REV t0 < {T} {
    k0
    copy b3 -> b2
  }
}
"#;

#[test]
fn a_counted_loop_scans_rows_forward_and_reverse() {
    let xs: Vec<f32> = (1..=6).map(|x| x as f32).collect();
    let fill = [
        ("xs", Data::F32(xs.clone())),
        ("c0", Data::F32(vec![10.0, 20.0])),
    ];
    let (p, b) = run(&SCAN.replace("REV", ""), &[("T", 3)], &fill);
    assert_eq!(out(&p, &b, "c"), vec![19.0, 32.0]);
    assert_eq!(out(&p, &b, "ys"), vec![11.0, 22.0, 14.0, 26.0, 19.0, 32.0]);
    let (p, b) = run(&SCAN.replace("REV", "reverse"), &[("T", 3)], &fill);
    assert_eq!(out(&p, &b, "c"), vec![19.0, 32.0]);
    // Steps t = 2, 1, 0: 15,26 then 18,30 then 19,32; row t belongs to step t.
    assert_eq!(out(&p, &b, "ys"), vec![19.0, 32.0, 18.0, 30.0, 15.0, 26.0]);
    for t in [0u64, 1] {
        let fill = [
            ("xs", Data::F32(xs[..2 * t as usize].to_vec())),
            ("c0", Data::F32(vec![10.0, 20.0])),
        ];
        let (p, b) = run(&SCAN.replace("REV", ""), &[("T", t)], &fill);
        let want = if t == 0 { [10.0, 20.0] } else { [11.0, 22.0] };
        assert_eq!(out(&p, &b, "c"), want.to_vec());
    }
}

/// Collatz: count the steps from `n` down to 1.
const COLLATZ: &str = r#"
b0 = input "n" i32[1]
b1 = output "n_out" i32[1]
b2 = output "steps" i32[1]
b3 = scratch bool[1]
b4 = scratch i32[1]
b5 = scratch i32[1]
b6 = const i32[1] [0]
k0 = loop [1] {
  v0 = load b1[i0]
  v1 = i32(1)
  v2 = ne(v0, v1)
  store b3[i0] = v2
}
k1 = loop [1] {
  v0 = load b1[i0]
  v1 = i32(2)
  v2 = rem(v0, v1)
  v3 = i32(0)
  v4 = eq(v2, v3)
  v5 = div(v0, v1)
  v6 = i32(3)
  v7 = mul(v0, v6)
  v8 = i32(1)
  v9 = add(v7, v8)
  v10 = select(v4, v5, v9)
  store b4[i0] = v10
  v11 = load b2[i0]
  v12 = add(v11, v8)
  store b5[i0] = v12
}
schedule {
  copy b0 -> b1
  copy b6 -> b2
  while {
    k0
  } test b3 do {
    k1
    copy b4 -> b1
    copy b5 -> b2
  }
}
"#;

#[test]
fn a_while_loop_runs_until_its_predicate_fails() {
    for (n, steps) in [(1, 0), (6, 8), (27, 111)] {
        let (p, b) = run(COLLATZ, &[], &[("n", Data::I32(vec![n]))]);
        assert_eq!(out(&p, &b, "steps"), vec![steps as f64], "n = {n}");
        assert_eq!(out(&p, &b, "n_out"), vec![1.0]);
    }
}

const IF: &str = r#"
b0 = input "x" f32[3]
b1 = input "p" bool[1]
b2 = output "y" f32[3]
k0 = loop [3] {
  v0 = load b0[i0]
  v1 = f32(2.0)
  v2 = mul(v0, v1)
  store b2[i0] = v2
}
k1 = loop [3] {
  v0 = load b0[i0]
  v1 = neg(v0)
  store b2[i0] = v1
}
schedule {
  if b1 {
    k0
  } else {
    k1
  }
}
"#;

#[test]
fn an_if_runs_one_branch() {
    let x = Data::F32(vec![1.0, -2.0, 3.0]);
    for (p, want) in [(true, [2.0, -4.0, 6.0]), (false, [-1.0, 2.0, -3.0])] {
        let fill = [("x", x.clone()), ("p", Data::Bool(vec![p]))];
        let (prog, b) = run(IF, &[], &fill);
        assert_eq!(out(&prog, &b, "y"), want.to_vec());
    }
}

fn errors(text: &str) -> String {
    let p = parse(text).unwrap_or_else(|e| panic!("{e}"));
    match verify(p) {
        Ok(_) => panic!("verified:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_verifier_uses_the_trip_count_and_rejects_misuse() {
    let past = SCAN
        .replace("REV", "")
        .replace("load b0[{t0*2} + i0]", "load b0[{t0*2} + i0 + 1]");
    let e = errors(&past);
    assert!(e.contains("k0") && e.contains("b0"), "{e}");
    // One row past the trip count.
    let e = errors(&SCAN.replace("REV", "").replace("{T} {", "{T+1} {"));
    assert!(e.contains("b0"), "{e}");
    // The induction symbol outside its loop.
    let outside = SCAN.replace("REV", "").replace(
        "  copy b1 -> b2\n  loop  t0 < {T} {\n    k0\n",
        "  copy b1 -> b2\n  k0\n  loop  t0 < {T} {\n",
    );
    let e = errors(&outside);
    assert!(e.contains("outside its loop"), "{e}");
    // In a buffer size.
    let e = errors(
        &SCAN
            .replace("REV", "")
            .replace("b3 = scratch f32[2]", "b3 = scratch f32[t0+2]"),
    );
    assert!(e.contains("induction symbol `t0`"), "{e}");
    // A kernel left out, a predicate that is not bool[1].
    let e = errors(&IF.replace("    k1\n", ""));
    assert!(e.contains("every kernel runs exactly once"), "{e}");
    let e = errors(&IF.replace("b1 = input \"p\" bool[1]", "b1 = input \"p\" f32[1]"));
    assert!(e.contains("predicate"), "{e}");
    // Kernels out of pre-order.
    let e = errors(&IF.replace("    k0\n  } else {\n    k1", "    k1\n  } else {\n    k0"));
    assert!(e.contains("pre-order"), "{e}");
    // A copy between buffers of different sizes.
    let e = errors(&COLLATZ.replace("copy b6 -> b2", "copy b0 -> b3"));
    assert!(e.contains("copy b0 -> b3"), "{e}");
}

/// `b2` is written before the loop and read inside it; `b3` lives only inside the loop
/// body; `b4` only after it.
const LIVES: &str = r#"
symbol t0 >= 0
b0 = input "x" f32[4]
b1 = output "y" f32[4]
b2 = scratch f32[4]
b3 = scratch f32[4]
b4 = scratch f32[4]
k0 = loop [4] {
  v0 = load b0[i0]
  store b2[i0] = v0
}
k1 = loop [4] {
  v0 = load b2[i0]
  store b3[i0] = v0
}
k2 = loop [4] {
  v0 = load b3[i0]
  store b1[i0] = v0
}
k3 = loop [4] {
  v0 = load b1[i0]
  store b4[i0] = v0
}
k4 = loop [4] {
  v0 = load b4[i0]
  store b1[i0] = v0
}
schedule {
  k0
  loop t0 < {3} {
    k1
    k2
  }
  k3
  k4
}
"#;

#[test]
fn scratch_used_in_a_loop_lives_for_the_whole_loop() {
    let p = verify(parse(LIVES).unwrap()).unwrap();
    let plan = kiln_kernel::memplan::plan(&p, &HashMap::new()).unwrap();
    // Without the loop, b3 would live over k1..=k2 and share memory with b2 in place.
    assert_eq!(plan.lifetimes[2], Some((0, 3)));
    assert_eq!(plan.lifetimes[3], Some((0, 3)));
    assert_eq!(plan.lifetimes[4], Some((3, 4)));
    assert!(plan.in_place.is_empty(), "{:?}", plan.in_place);
    assert_ne!(plan.offsets[2], plan.offsets[3]);
    let (p2, b) = run(LIVES, &[], &[("x", Data::F32(vec![1.0, 2.0, 3.0, 4.0]))]);
    assert_eq!(out(&p2, &b, "y"), vec![1.0, 2.0, 3.0, 4.0]);
}
