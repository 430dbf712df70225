//! `kiln::random`: the in-graph Threefry-2x32 equals the interpreter's host implementation
//! (and Random123's known answers), samplers have the right ranges and work on symbolic
//! shapes, the host stream is deterministic, and misuse is a diagnostic at the caller.

use kiln::random::{self, HostRng, host_fold_in, key_data};
use kiln::{Array, DType, Graph, Tensor};
use proptest::prelude::*;
use std::collections::HashMap;

fn u32s(shape: &[usize], v: Vec<u32>) -> Array {
    Array::from_u32(shape, v).unwrap_or_else(|e| panic!("{e}"))
}

fn eval(ts: &[&Tensor], feeds: &[(&str, &Array)]) -> Vec<Array> {
    kiln::eval(ts, feeds).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn graph_threefry_reproduces_random123_known_answers() {
    let cases = [
        (
            [0x13198a2e, 0x03707344],
            [0x243f6a88, 0x85a308d3],
            [0xc4923a9c, 0x483df7a0],
        ),
        ([0, 0], [0, 0], [0x6b200159, 0x99ba4efe]),
        (
            [u32::MAX, u32::MAX],
            [u32::MAX, u32::MAX],
            [0x1cb996fc, 0xbb002be7],
        ),
    ];
    for (key, ctr, want) in cases {
        let g = Graph::new();
        let k = g.constant(u32s(&[2], key.to_vec()));
        let x0 = g.constant(u32s(&[], vec![ctr[0]]));
        let x1 = g.constant(u32s(&[], vec![ctr[1]]));
        let (a, b) = random::threefry2x32(&k, &x0, &x1);
        let out = eval(&[&a, &b], &[]);
        assert_eq!(
            (out[0].as_u32().ok(), out[1].as_u32().ok()),
            (Some(&want[..1]), Some(&want[1..]))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn graph_threefry_equals_the_host_block_function(
        key in any::<[u32; 2]>(),
        ctrs in proptest::collection::vec(any::<[u32; 2]>(), 1..6),
    ) {
        let g = Graph::new();
        let k = g.input("k", DType::U32, [2]);
        let n = ctrs.len();
        let x0 = g.input("x0", DType::U32, [n]);
        let x1 = g.input("x1", DType::U32, [n]);
        let (a, b) = random::threefry2x32(&k, &x0, &x1);
        let kv = u32s(&[2], key.to_vec());
        let v0 = u32s(&[n], ctrs.iter().map(|c| c[0]).collect());
        let v1 = u32s(&[n], ctrs.iter().map(|c| c[1]).collect());
        let out = eval(&[&a, &b], &[("k", &kv), ("x0", &v0), ("x1", &v1)]);
        for (i, c) in ctrs.iter().enumerate() {
            let want = kiln_interp::threefry2x32(key, *c);
            prop_assert_eq!(out[0].as_u32().ok().map(|v| v[i]), Some(want[0]));
            prop_assert_eq!(out[1].as_u32().ok().map(|v| v[i]), Some(want[1]));
        }
    }
}

#[test]
fn fold_in_split_and_key_agree_with_the_host() {
    let g = Graph::new();
    let k = random::key(&g, 0xABCD_0000_1234);
    let data = g.input("d", DType::U32, kiln::Shape::scalar());
    let folded = random::fold_in(&k, &data);
    let split = random::split(&k, 3);
    let dv = u32s(&[], vec![77]);
    let out = eval(&[&k, &folded, &split], &[("d", &dv)]);
    let kd = key_data(0xABCD_0000_1234);
    assert_eq!(kd, [0xABCD, 0x1234]);
    assert_eq!(out[0].as_u32().ok(), Some(&kd[..]));
    assert_eq!(out[1].as_u32().ok(), Some(&host_fold_in(kd, 77)[..]));
    let rows: Vec<u32> = (0..3).flat_map(|i| host_fold_in(kd, i)).collect();
    assert_eq!(out[2].shape(), &[3, 2]);
    assert_eq!(out[2].as_u32().ok(), Some(&rows[..]));
}

#[test]
fn samplers_work_on_symbolic_shapes_and_stay_in_range() {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 50));
    let k = random::key(&g, 3);
    let u = random::uniform(&k, x.shape(), -1.5, 2.5);
    let z = random::normal(&k, x.shape());
    let b = random::bernoulli(&k, 0.2, x.shape());
    assert_eq!(u.shape().to_string(), "[N, 50]");
    let xv = Array::zeros(DType::F32, &[40, 50]).unwrap_or_else(|e| panic!("{e}"));
    let out = eval(&[&u, &z, &b], &[("x", &xv)]);
    let uv = out[0].to_f64_vec();
    assert_eq!(uv.len(), 2000);
    assert!(uv.iter().all(|v| (-1.5..2.5).contains(v)));
    let mean = uv.iter().sum::<f64>() / 2000.0;
    assert!((mean - 0.5).abs() < 0.1, "{mean}");
    let zv = out[1].to_f64_vec();
    let zm = zv.iter().sum::<f64>() / 2000.0;
    let zvar = zv.iter().map(|v| (v - zm).powi(2)).sum::<f64>() / 2000.0;
    assert!(zm.abs() < 0.1 && (zvar - 1.0).abs() < 0.1, "{zm} {zvar}");
    let ones = out[2].to_f64_vec().iter().sum::<f64>();
    assert!((300.0..500.0).contains(&ones), "{ones} of 2000 at p = 0.2");
    // The same key and shape give the same samples as the host sampler.
    let host =
        random::host_uniform(key_data(3), &[40, 50], 0.0, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let u01 = random::uniform(&k, x.shape(), 0.0, 1.0);
    let got = eval(&[&u01], &[("x", &xv)]);
    assert!(got[0].bit_eq(&host));
}

#[test]
fn erfinv_inverts_erf_and_maps_the_edges_to_infinity() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [7]);
    let y = random::erfinv(&x);
    let xs = [-1.0f32, -0.999, -0.5, 0.0, 0.3, 0.9999, 1.0];
    let xv = Array::from_f32(&[7], xs.to_vec()).unwrap_or_else(|e| panic!("{e}"));
    let out = eval(&[&y], &[("x", &xv)]);
    let v = out[0].as_f32().unwrap_or_default();
    assert_eq!((v[0], v[6]), (f32::NEG_INFINITY, f32::INFINITY));
    assert_eq!(v[3], 0.0);
    for (i, &xi) in xs.iter().enumerate().take(6).skip(1) {
        let back = kiln_interp::erf(f64::from(v[i]));
        assert!(
            (back - f64::from(xi)).abs() < 2e-6,
            "erf(erfinv({xi})) = {back}"
        );
    }
}

#[test]
fn dropout_edges_and_bad_probability() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let k = random::key(&g, 1);
    assert_eq!(random::dropout(&x, 0.0, &k).node(), x.node());
    let zeros = random::dropout(&x, 1.0, &k);
    let xv = Array::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        eval(&[&zeros], &[("x", &xv)])[0].as_f32().ok(),
        Some(&[0.0f32; 3][..])
    );
    let line = line!() + 1;
    let bad = random::dropout(&x, 1.5, &k);
    assert!(bad.is_poisoned());
    let d = g.diagnostics();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].op, d[0].loc.line), ("dropout", line));
    assert_eq!(
        d[0].message,
        "dropout: probability must be in [0, 1], got 1.5"
    );
}

#[test]
fn a_key_must_be_u32_pairs() {
    let g = Graph::new();
    let k = g.input("k", DType::I32, [2]);
    let line = line!() + 1;
    let u = random::uniform(&k, [3], 0.0, 1.0);
    assert!(u.is_poisoned());
    let d = g.diagnostics();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].loc.line, line);
    assert_eq!(
        d[0].message,
        "uniform: a key must be a u32[2] tensor, got i32[2]"
    );
    let g = Graph::new();
    let k = random::key(&g, 0);
    let f = random::fold_in(&k, &g.scalar(1.0, DType::I64));
    assert!(f.is_poisoned());
    assert_eq!(
        g.diagnostics()[0].message,
        "fold_in: data must be a u32 scalar, got i64[]"
    );
}

#[test]
fn rng_counters_are_found_among_ancestors() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [4]);
    let c = g.param_init("drop.rng_counter", Array::scalar(DType::U32, 0.0));
    let other = g.param_init("other.rng_counter", Array::scalar(DType::U32, 0.0));
    let y = random::dropout(&x, 0.5, &random::fold_in(&random::key(&g, 1), &c));
    let found = random::rng_counters(&y);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "drop.rng_counter");
    assert_eq!(found[0].1.node(), c.node());
    assert!(random::rng_counters(&x).is_empty());
    assert_eq!(random::rng_counters(&other).len(), 1);
}

#[test]
fn host_stream_is_deterministic_and_permutations_are_permutations() {
    let a: Vec<u32> = {
        let mut r = HostRng::new(9);
        (0..5).map(|_| r.next_u32()).collect()
    };
    let mut r = HostRng::new(9);
    let b: Vec<u32> = (0..5).map(|_| r.next_u32()).collect();
    assert_eq!(a, b);
    assert_eq!(
        a,
        kiln_interp::random_bits(key_data(9), &[5]),
        "the jax.random.bits stream"
    );
    let mut r = HostRng::new(1);
    let mut counts = HashMap::new();
    for _ in 0..600 {
        let v = r.below(3);
        assert!(v < 3);
        *counts.entry(v).or_insert(0) += 1;
    }
    assert!(
        counts.values().all(|&c| (150..250).contains(&c)),
        "{counts:?}"
    );
    assert_eq!(r.below(0), 0);
    let p = HostRng::new(4).permutation(100);
    let mut s = p.clone();
    s.sort_unstable();
    assert_eq!(s, (0..100).collect::<Vec<_>>());
    assert_ne!(p, (0..100).collect::<Vec<_>>());
    assert_eq!(p, HostRng::new(4).permutation(100));
    assert_ne!(p, HostRng::new(5).permutation(100));
}
