//! Forward and reverse mode through `cond`, `scan` and `while`, checked against central
//! finite differences of the reference interpreter in f64, to second order through scan.

use crate::autodiff_util;

use autodiff_util::{Rng, arr, eval};
use kiln_ir::{Array, DType, Graph, NodeId, Op, parse, verify};
use kiln_passes::autodiff::{self, AutodiffError};
use std::collections::HashMap;

fn graph(text: &str) -> Graph {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn input_id(g: &Graph, name: &str) -> NodeId {
    g.inputs()
        .into_iter()
        .find(|(_, n)| *n == name)
        .unwrap_or_else(|| panic!("no input {name:?}"))
        .0
}

fn add_input(g: &mut Graph, name: &str, like: NodeId) -> NodeId {
    let n = g.node(like);
    let op = Op::Input {
        name: name.into(),
        dtype: n.dtype,
        shape: n.shape.clone(),
    };
    g.add(op, &[]).expect("input")
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// Appends the JVP and VJP of `out` with respect to the `f64` inputs named in `wrt` to `g`,
/// and checks both at `feeds` (every input of `g`) against central differences along a
/// random direction: the JVP elementwise, the VJP through `<u, J v>`, and `<u, jvp(v)> =
/// <vjp(u), v>`. Shapes may be symbolic (the feeds bind them).
fn check_fd(mut g: Graph, out: NodeId, wrt: &[&str], feeds: &[(&str, Array)], seed: u64, tol: f64) {
    let mut feeds: HashMap<String, Array> = feeds
        .iter()
        .map(|(n, a)| (n.to_string(), a.clone()))
        .collect();
    let ws: Vec<NodeId> = wrt.iter().map(|n| input_id(&g, n)).collect();
    let ct = add_input(&mut g, "ct", out);
    let ts: Vec<NodeId> = ws
        .iter()
        .zip(wrt)
        .map(|(&w, n)| add_input(&mut g, &format!("t.{n}"), w))
        .collect();
    let grads = autodiff::vjp(&mut g, &[out], &[ct], &ws).unwrap_or_else(|e| panic!("vjp: {e}"));
    let tout = autodiff::jvp(&mut g, &[out], &ws, &ts).unwrap_or_else(|e| panic!("jvp: {e}"))[0];
    if let Err(errs) = verify(&g) {
        panic!("graph does not verify: {errs:?}\n{g}");
    }

    let mut rng = Rng::new(seed);
    let out_shape = kiln_interp::eval(&g, &[out], &feeds, &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}"))[0]
        .shape()
        .to_vec();
    let uv: Vec<f64> = (0..out_shape.iter().product::<usize>())
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    feeds.insert("ct".into(), arr(&out_shape, uv.clone()));
    let mut vv = Vec::new();
    for n in wrt {
        let shape = feeds[*n].shape().to_vec();
        let v: Vec<f64> = (0..feeds[*n].len())
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        feeds.insert(format!("t.{n}"), arr(&shape, v.clone()));
        vv.push(v);
    }
    let mut outs = vec![out, tout];
    outs.extend(&grads);
    let vals = eval(&g, &outs, &feeds);
    assert!(vals[0].iter().all(|v| v.is_finite()), "{:?}", vals[0]);

    let h = 1e-6;
    let shifted = |sign: f64| {
        let mut f = feeds.clone();
        for (n, v) in wrt.iter().zip(&vv) {
            let x = &feeds[*n];
            let moved: Vec<f64> = x
                .to_f64_vec()
                .iter()
                .zip(v)
                .map(|(x, t)| x + sign * h * t)
                .collect();
            f.insert(n.to_string(), arr(x.shape(), moved));
        }
        eval(&g, &[out], &f).remove(0)
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    let fd: Vec<f64> = plus
        .iter()
        .zip(&minus)
        .map(|(p, m)| (p - m) / (2.0 * h))
        .collect();
    for (k, (a, b)) in vals[1].iter().zip(&fd).enumerate() {
        assert!(
            close(*a, *b, tol),
            "jvp[{k}] = {a}, finite differences give {b}\njvp {:?}\nfd  {:?}",
            vals[1],
            fd
        );
    }
    let u_fd = dot(&uv, &fd);
    let vjp_v: f64 = vv
        .iter()
        .enumerate()
        .map(|(i, v)| dot(&vals[2 + i], v))
        .sum();
    assert!(
        close(vjp_v, u_fd, tol),
        "<vjp(u), v> = {vjp_v}, finite differences give {u_fd}"
    );
    assert!(
        close(vjp_v, dot(&uv, &vals[1]), 1e-9),
        "<vjp(u), v> = {vjp_v} but <u, jvp(v)> = {}",
        dot(&uv, &vals[1])
    );
}

fn values(rng: &mut Rng, shape: &[usize]) -> Array {
    let n = shape.iter().product();
    arr(shape, (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect())
}

/// Two results per branch; the then-branch ignores `b` (its cotangent there is zeros).
const COND: &str = r#"
n0 = input "x" : f64[3]
n1 = input "y" : f64[3]
n2 = reduce_sum n0 axes=[0] keepdim=false : f64[]
n3 = const f64[] [0.0] : f64[]
n4 = gt n2, n3 : bool[]
n5 = cond n4, n0, n1 then=r0 else=r1 : bool[]
n6 = get n5 index=0 : f64[3]
n7 = get n5 index=1 : f64[]
n8 = mul n6, n7 : f64[3]
r0 (n0, n1) -> (n3, n4) {
  n0 = input "a" : f64[3]
  n1 = input "b" : f64[3]
  n2 = sin n0 : f64[3]
  n3 = mul n2, n0 : f64[3]
  n4 = reduce_sum n0 axes=[0] keepdim=false : f64[]
}
r1 (n0, n1) -> (n2, n4) {
  n0 = input "a" : f64[3]
  n1 = input "b" : f64[3]
  n2 = mul n0, n1 : f64[3]
  n3 = exp n1 : f64[3]
  n4 = reduce_sum n3 axes=[0] keepdim=false : f64[]
}
"#;

#[test]
fn cond_derivatives_follow_the_branch_taken() {
    let y = arr(&[3], vec![0.3, -0.7, 1.1]);
    for (seed, x) in [
        (1, arr(&[3], vec![0.5, 1.0, -0.2])),
        (2, arr(&[3], vec![-0.5, 0.4, -0.9])),
    ] {
        let feeds = [("x", x.clone()), ("y", y.clone())];
        check_fd(graph(COND), NodeId(8), &["x", "y"], &feeds, seed, 1e-6);
        check_fd(graph(COND), NodeId(8), &["y"], &feeds, seed, 1e-6);
        // Only the second result is used: the first gets no cotangent.
        check_fd(graph(COND), NodeId(7), &["x", "y"], &feeds, seed, 1e-6);
    }
}

#[test]
fn cond_gradient_is_zero_for_an_argument_the_branch_taken_ignores() {
    let mut g = graph(COND);
    let (x, y) = (input_id(&g, "x"), input_id(&g, "y"));
    let loss = g
        .add(
            Op::Reduce {
                op: kiln_ir::ReduceOp::Sum,
                axes: vec![0],
                keepdim: false,
            },
            &[NodeId(8)],
        )
        .unwrap();
    let grads = autodiff::grad(&mut g, loss, &[x, y]).unwrap();
    let feeds: HashMap<String, Array> = [
        ("x".to_string(), arr(&[3], vec![0.5, 1.0, -0.2])),
        ("y".to_string(), arr(&[3], vec![0.3, -0.7, 1.1])),
    ]
    .into();
    let v = eval(&g, &grads, &feeds);
    assert_eq!(v[1], vec![0.0; 3]);
    assert!(v[0].iter().all(|d| *d != 0.0), "{:?}", v[0]);
}

/// An RNN-like scan: carries `h` (tanh(W h + U x + 0.1 i)), a float accumulator `s` and an
/// integer step counter `i`; ys `h * s`; consts `W`, `U`.
const RNN: &str = r#"
n0 = input "h0" : f64[2, 1]
n1 = input "xs" : f64[T, 3, 1]
n2 = input "w" : f64[2, 2]
n3 = input "u" : f64[2, 3]
n4 = input "s0" : f64[]
n5 = const i32[] [0] : i32[]
n6 = scan n0, n4, n5, n1, n2, n3 body=r0 length=[T] carries=3 xs=1 reverse=REV : bool[]
n7 = get n6 index=0 : f64[2, 1]
n8 = get n6 index=1 : f64[]
n9 = get n6 index=3 : f64[T, 2, 1]
n10 = reduce_sum n9 axes=[0, 1, 2] keepdim=false : f64[]
n11 = reduce_sum n7 axes=[0, 1] keepdim=false : f64[]
n12 = add n10, n8 : f64[]
n13 = mul n12, n11 : f64[]
r0 (n0, n1, n2, n3, n4, n5) -> (n13, n16, n18, n19) {
  n0 = input "h" : f64[2, 1]
  n1 = input "s" : f64[]
  n2 = input "i" : i32[]
  n3 = input "x" : f64[3, 1]
  n4 = input "w" : f64[2, 2]
  n5 = input "u" : f64[2, 3]
  n6 = matmul n4, n0 : f64[2, 1]
  n7 = matmul n5, n3 : f64[2, 1]
  n8 = add n6, n7 : f64[2, 1]
  n9 = cast n2 : f64[]
  n10 = const f64[] [0.1] : f64[]
  n11 = mul n9, n10 : f64[]
  n12 = add n8, n11 : f64[2, 1]
  n13 = tanh n12 : f64[2, 1]
  n14 = mul n13, n13 : f64[2, 1]
  n15 = reduce_sum n14 axes=[0, 1] keepdim=false : f64[]
  n16 = add n1, n15 : f64[]
  n17 = const i32[] [1] : i32[]
  n18 = add n2, n17 : i32[]
  n19 = mul n13, n1 : f64[2, 1]
}
"#;

fn rnn(reverse: bool, length: Option<usize>) -> Graph {
    let text = RNN.replace("REV", if reverse { "true" } else { "false" });
    let text = match length {
        Some(t) => text.replace('T', &t.to_string()),
        None => text,
    };
    graph(&text)
}

fn rnn_feeds(seed: u64, t: usize) -> Vec<(&'static str, Array)> {
    let mut rng = Rng::new(seed);
    vec![
        ("h0", values(&mut rng, &[2, 1])),
        ("xs", values(&mut rng, &[t, 3, 1])),
        ("w", values(&mut rng, &[2, 2])),
        ("u", values(&mut rng, &[2, 3])),
        ("s0", values(&mut rng, &[])),
    ]
}

const RNN_WRT: [&str; 5] = ["h0", "xs", "w", "u", "s0"];

#[test]
fn scan_derivatives_forward_and_reverse_with_carries_xs_ys_and_consts() {
    for reverse in [false, true] {
        for (seed, out) in [(3, 13), (4, 10), (5, 11), (6, 8)] {
            let g = rnn(reverse, Some(4));
            check_fd(g, NodeId(out), &RNN_WRT, &rnn_feeds(seed, 4), seed, 1e-6);
        }
        // Some operands only: the consts alone, the xs alone.
        check_fd(
            rnn(reverse, Some(3)),
            NodeId(13),
            &["w"],
            &rnn_feeds(7, 3),
            7,
            1e-6,
        );
        check_fd(
            rnn(reverse, Some(3)),
            NodeId(13),
            &["xs"],
            &rnn_feeds(8, 3),
            8,
            1e-6,
        );
    }
}

#[test]
fn scan_with_symbolic_length_differentiates_at_every_length() {
    for reverse in [false, true] {
        for t in [0, 1, 2, 5] {
            let seed = 10 + t as u64;
            check_fd(
                rnn(reverse, None),
                NodeId(13),
                &RNN_WRT,
                &rnn_feeds(seed, t),
                seed,
                1e-6,
            );
        }
    }
    // One derivative graph serves every length: the derivative scans keep the symbol.
    let mut g = rnn(false, None);
    let w = input_id(&g, "w");
    let gw = autodiff::grad(&mut g, NodeId(13), &[w]).unwrap()[0];
    let text = g.to_string();
    let scans: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('n') && l.contains(" = scan "))
        .collect();
    // The primal scan (which also stacks its input carries) and the reverse scan, none
    // unrolled.
    assert_eq!(scans.len(), 2, "{text}");
    assert!(scans.iter().all(|l| l.contains("length=[T]")), "{text}");
    assert_eq!(
        scans.iter().filter(|l| l.contains("reverse=true")).count(),
        1,
        "{text}"
    );
    for t in [2, 6] {
        let feeds: HashMap<String, Array> = rnn_feeds(1, t)
            .into_iter()
            .map(|(n, a)| (n.to_string(), a))
            .collect();
        assert!(eval(&g, &[gw], &feeds)[0].iter().all(|v| v.is_finite()));
    }
}

#[test]
fn second_derivative_through_scan_matches_finite_differences() {
    for reverse in [false, true] {
        let mut g = rnn(reverse, None);
        let ws: Vec<NodeId> = RNN_WRT.iter().map(|n| input_id(&g, n)).collect();
        let grads = autodiff::grad(&mut g, NodeId(13), &ws).unwrap();
        // Differentiate d out / d w and d out / d xs again, in both modes.
        for (k, seed) in [(2, 21), (1, 22)] {
            check_fd(
                g.clone(),
                grads[k],
                &RNN_WRT,
                &rnn_feeds(seed, 3),
                seed,
                1e-5,
            );
        }
    }
}

#[test]
fn grad_of_grad_through_scan_is_a_hessian_vector_product() {
    // f(w) = sum(h_T) of a tanh RNN; r . grad f as a scalar, then its gradient: H r.
    let mut g = rnn(false, None);
    let w = input_id(&g, "w");
    let gw = autodiff::grad(&mut g, NodeId(11), &[w]).unwrap()[0];
    let r = add_input(&mut g, "r", w);
    let prod = g.add(Op::Binary(kiln_ir::BinaryOp::Mul), &[gw, r]).unwrap();
    let s = g
        .add(
            Op::Reduce {
                op: kiln_ir::ReduceOp::Sum,
                axes: vec![0, 1],
                keepdim: false,
            },
            &[prod],
        )
        .unwrap();
    let hr = autodiff::grad(&mut g, s, &[w]).unwrap()[0];
    let mut feeds: HashMap<String, Array> = rnn_feeds(30, 4)
        .into_iter()
        .map(|(n, a)| (n.to_string(), a))
        .collect();
    let rv = vec![0.3, -0.5, 0.8, 0.1];
    feeds.insert("r".into(), arr(&[2, 2], rv.clone()));
    let got = eval(&g, &[hr], &feeds).remove(0);
    let h = 1e-5;
    let grad_at = |sign: f64| {
        let mut f = feeds.clone();
        let moved: Vec<f64> = feeds["w"]
            .to_f64_vec()
            .iter()
            .zip(&rv)
            .map(|(x, d)| x + sign * h * d)
            .collect();
        f.insert("w".into(), arr(&[2, 2], moved));
        eval(&g, &[gw], &f).remove(0)
    };
    let (p, m) = (grad_at(1.0), grad_at(-1.0));
    for k in 0..4 {
        let fd = (p[k] - m[k]) / (2.0 * h);
        assert!(close(got[k], fd, 1e-6), "H r [{k}] = {}, fd {fd}", got[k]);
    }
}

/// A scan without carries (a map with a const), reversed.
const MAP: &str = r#"
n0 = input "xs" : f64[4, 2]
n1 = input "k" : f64[2]
n2 = scan n0, n1 body=r0 length=[4] carries=0 xs=1 reverse=true : bool[]
n3 = get n2 index=0 : f64[4, 2]
r0 (n0, n1) -> (n3) {
  n0 = input "x" : f64[2]
  n1 = input "k" : f64[2]
  n2 = mul n0, n1 : f64[2]
  n3 = sin n2 : f64[2]
}
"#;

#[test]
fn scan_without_carries_maps_derivatives_per_step() {
    let mut rng = Rng::new(40);
    let feeds = [
        ("xs", values(&mut rng, &[4, 2])),
        ("k", values(&mut rng, &[2])),
    ];
    check_fd(graph(MAP), NodeId(3), &["xs", "k"], &feeds, 40, 1e-6);
}

/// A scan nested in the then-branch of a cond.
const NESTED: &str = r#"
n0 = input "xs" : f64[3, 2]
n1 = input "c" : f64[2]
n2 = input "p" : bool[]
n3 = cond n2, n0, n1 then=r0 else=r1 : bool[]
n4 = get n3 index=0 : f64[2]
r0 (n0, n1) -> (n3) {
  n0 = input "xs" : f64[3, 2]
  n1 = input "c" : f64[2]
  n2 = scan n1, n0 body=r0 length=[3] carries=1 xs=1 reverse=false : bool[]
  n3 = get n2 index=0 : f64[2]
  r0 (n0, n1) -> (n4) {
    n0 = input "c" : f64[2]
    n1 = input "x" : f64[2]
    n2 = mul n0, n1 : f64[2]
    n3 = sin n2 : f64[2]
    n4 = add n3, n0 : f64[2]
  }
}
r1 (n0, n1) -> (n3) {
  n0 = input "xs" : f64[3, 2]
  n1 = input "c" : f64[2]
  n2 = reduce_sum n0 axes=[0] keepdim=false : f64[2]
  n3 = mul n2, n1 : f64[2]
}
"#;

#[test]
fn scan_nested_in_cond_differentiates_in_both_branches() {
    for (seed, p) in [(50, true), (51, false)] {
        let mut rng = Rng::new(seed);
        let feeds = [
            ("xs", values(&mut rng, &[3, 2])),
            ("c", values(&mut rng, &[2])),
            ("p", Array::from_bool(&[], vec![p]).unwrap()),
        ];
        check_fd(graph(NESTED), NodeId(4), &["xs", "c"], &feeds, seed, 1e-6);
    }
}

/// Newton iterations for `sqrt(a)` until converged (at most 50 steps): a while loop with a
/// data-dependent trip count, an integer counter and a const.
const NEWTON: &str = r#"
n0 = input "x0" : f64[]
n1 = input "a" : f64[]
n2 = const i32[] [0] : i32[]
n3 = while n0, n2, n1 cond=r0 body=r1 carries=2 : bool[]
n4 = get n3 index=0 : f64[]
r0 (n0, n1, n2) -> (n10) {
  n0 = input "x" : f64[]
  n1 = input "i" : i32[]
  n2 = input "a" : f64[]
  n3 = mul n0, n0 : f64[]
  n4 = sub n3, n2 : f64[]
  n5 = abs n4 : f64[]
  n6 = const f64[] [1e-13] : f64[]
  n7 = gt n5, n6 : bool[]
  n8 = const i32[] [50] : i32[]
  n9 = lt n1, n8 : bool[]
  n10 = and n7, n9 : bool[]
}
r1 (n0, n1, n2) -> (n6, n8) {
  n0 = input "x" : f64[]
  n1 = input "i" : i32[]
  n2 = input "a" : f64[]
  n3 = div n2, n0 : f64[]
  n4 = add n0, n3 : f64[]
  n5 = const f64[] [0.5] : f64[]
  n6 = mul n4, n5 : f64[]
  n7 = const i32[] [1] : i32[]
  n8 = add n1, n7 : i32[]
}
"#;

#[test]
fn while_jvp_of_newton_sqrt_is_the_derivative_of_sqrt() {
    let mut g = graph(NEWTON);
    let a = input_id(&g, "a");
    let x0 = input_id(&g, "x0");
    let ta = add_input(&mut g, "ta", a);
    let tx = add_input(&mut g, "tx", x0);
    let t = autodiff::jvp(&mut g, &[NodeId(4)], &[a, x0], &[ta, tx]).unwrap()[0];
    verify(&g).unwrap();
    for av in [2.0, 9.0, 0.3] {
        let feeds: HashMap<String, Array> = [
            ("x0".to_string(), arr(&[], vec![1.0])),
            ("a".to_string(), arr(&[], vec![av])),
            ("ta".to_string(), arr(&[], vec![1.0])),
            ("tx".to_string(), arr(&[], vec![0.7])),
        ]
        .into();
        let v = eval(&g, &[NodeId(4), t], &feeds);
        assert!(close(v[0][0], f64::sqrt(av), 1e-12), "{v:?}");
        // d sqrt(a)/da = 1/(2 sqrt a); the converged loop forgets x0.
        assert!(
            close(v[1][0], 0.5 / f64::sqrt(av), 1e-9),
            "{v:?} at a = {av}"
        );
    }
}

/// A while loop with a fixed trip count and a float carry that only the body makes depend on
/// the tangent (through a const), checked against finite differences.
const POWER: &str = r#"
n0 = input "x" : f64[2]
n1 = input "k" : f64[2]
n2 = const i32[] [0] : i32[]
n3 = const f64[2] [1.0, 1.0] : f64[2]
n4 = while n3, n2, n0, n1 cond=r0 body=r1 carries=2 : bool[]
n5 = get n4 index=0 : f64[2]
r0 (n0, n1, n2, n3) -> (n5) {
  n0 = input "p" : f64[2]
  n1 = input "i" : i32[]
  n2 = input "x" : f64[2]
  n3 = input "k" : f64[2]
  n4 = const i32[] [3] : i32[]
  n5 = lt n1, n4 : bool[]
}
r1 (n0, n1, n2, n3) -> (n6, n8) {
  n0 = input "p" : f64[2]
  n1 = input "i" : i32[]
  n2 = input "x" : f64[2]
  n3 = input "k" : f64[2]
  n4 = mul n0, n2 : f64[2]
  n5 = sin n3 : f64[2]
  n6 = add n4, n5 : f64[2]
  n7 = const i32[] [1] : i32[]
  n8 = add n1, n7 : i32[]
}
"#;

#[test]
fn while_jvp_matches_finite_differences() {
    let mut g = graph(POWER);
    let (x, k) = (input_id(&g, "x"), input_id(&g, "k"));
    let (tx, tk) = (add_input(&mut g, "tx", x), add_input(&mut g, "tk", k));
    let t = autodiff::jvp(&mut g, &[NodeId(5)], &[x, k], &[tx, tk]).unwrap()[0];
    verify(&g).unwrap();
    let (xv, kv, txv, tkv) = ([0.7, -1.2], [0.4, 0.9], [0.3, -0.8], [1.1, 0.5]);
    let feeds = |xs: [f64; 2], ks: [f64; 2]| -> HashMap<String, Array> {
        [
            ("x".to_string(), arr(&[2], xs.to_vec())),
            ("k".to_string(), arr(&[2], ks.to_vec())),
            ("tx".to_string(), arr(&[2], txv.to_vec())),
            ("tk".to_string(), arr(&[2], tkv.to_vec())),
        ]
        .into()
    };
    let got = eval(&g, &[t], &feeds(xv, kv)).remove(0);
    let h = 1e-6;
    let at = |s: f64| {
        let xs = [xv[0] + s * h * txv[0], xv[1] + s * h * txv[1]];
        let ks = [kv[0] + s * h * tkv[0], kv[1] + s * h * tkv[1]];
        eval(&g, &[NodeId(5)], &feeds(xs, ks)).remove(0)
    };
    let (p, m) = (at(1.0), at(-1.0));
    for i in 0..2 {
        let fd = (p[i] - m[i]) / (2.0 * h);
        assert!(close(got[i], fd, 1e-6), "jvp[{i}] = {}, fd {fd}", got[i]);
    }
}

#[test]
fn reverse_mode_through_while_is_refused_with_advice() {
    let mut g = graph(NEWTON);
    let a = input_id(&g, "a");
    let e = autodiff::grad(&mut g, NodeId(4), &[a]).unwrap_err();
    assert_eq!(e, AutodiffError::WhileReverse { node: NodeId(3) });
    let msg = e.to_string();
    assert!(
        msg.contains("n3") && msg.contains("scan") && msg.contains("fori_loop"),
        "{msg}"
    );
}

#[test]
fn derivatives_of_an_integer_loop_result_are_absent_not_errors() {
    // The counter of the Newton loop is an integer: it carries no tangent.
    let mut g = graph(NEWTON);
    let a = input_id(&g, "a");
    let ta = add_input(&mut g, "ta", a);
    let i = g.add(Op::Get { index: 1 }, &[NodeId(3)]).unwrap();
    let f = g.add(Op::Cast(DType::F64), &[i]).unwrap();
    let t = autodiff::jvp(&mut g, &[f], &[a], &[ta]).unwrap()[0];
    let feeds: HashMap<String, Array> = [
        ("x0".to_string(), arr(&[], vec![1.0])),
        ("a".to_string(), arr(&[], vec![4.0])),
        ("ta".to_string(), arr(&[], vec![1.0])),
    ]
    .into();
    assert_eq!(eval(&g, &[t], &feeds)[0], vec![0.0]);
}

#[test]
fn a_get_of_a_non_control_node_is_malformed_in_both_modes() {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F64,
                shape: kiln_ir::Shape::known(&[2]),
            },
            &[],
        )
        .unwrap();
    let y = g.add(Op::Unary(kiln_ir::UnaryOp::Sin), &[x]).unwrap();
    let bad = g.add_unchecked(
        kiln_ir::Node {
            op: Op::Get { index: 0 },
            dtype: DType::F64,
            shape: kiln_ir::Shape::known(&[2]),
            loc: None,
        },
        &[y],
    );
    let t = add_input(&mut g, "t", x);
    let e = autodiff::jvp(&mut g, &[bad], &[x], &[t]).unwrap_err();
    assert!(
        matches!(&e, AutodiffError::Malformed { node, message } if *node == bad && message.contains("not a control-flow op")),
        "{e:?}"
    );
    let e = autodiff::vjp(&mut g, &[bad], &[t], &[x]).unwrap_err();
    assert!(
        matches!(&e, AutodiffError::Malformed { node, .. } if *node == bad),
        "{e:?}"
    );
}

/// `s0 + sum_t sqrt(xs[t])`: a scan whose body runs the Newton `while` loop.
fn scan_of_while() -> Graph {
    let regions = &NEWTON[NEWTON.find("r0 (").expect("regions")..];
    let nested: String = regions
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect::<String>();
    let text = format!(
        r#"
n0 = input "xs" : f64[3]
n1 = input "s0" : f64[]
n2 = scan n1, n0 body=r0 length=[3] carries=1 xs=1 reverse=false : bool[]
n3 = get n2 index=0 : f64[]
r0 (n0, n1) -> (n6) {{
  n0 = input "s" : f64[]
  n1 = input "a" : f64[]
  n2 = const f64[] [1.0] : f64[]
  n3 = const i32[] [0] : i32[]
  n4 = while n2, n3, n1 cond=r0 body=r1 carries=2 : bool[]
  n5 = get n4 index=0 : f64[]
  n6 = add n0, n5 : f64[]
{nested}}}
"#
    );
    graph(&text)
}

#[test]
fn a_while_inside_a_scan_body_differentiates_forward_and_names_where_reverse_fails() {
    let mut g = scan_of_while();
    let (xs, s0) = (input_id(&g, "xs"), input_id(&g, "s0"));
    let e = autodiff::grad(&mut g, NodeId(3), &[xs]).unwrap_err();
    assert_eq!(
        e,
        AutodiffError::InRegion {
            node: NodeId(2),
            region: kiln_ir::RegionId(0),
            source: Box::new(AutodiffError::WhileReverse { node: NodeId(4) }),
        }
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("in r0 of n2: ") && msg.contains("while loop n4"),
        "{msg}"
    );

    let (txs, ts0) = (add_input(&mut g, "txs", xs), add_input(&mut g, "ts0", s0));
    let t = autodiff::jvp(&mut g, &[NodeId(3)], &[xs, s0], &[txs, ts0]).unwrap()[0];
    verify(&g).unwrap();
    let (a, ta) = ([2.0, 0.5, 7.0], [0.3, -1.0, 0.6]);
    let feeds: HashMap<String, Array> = [
        ("xs".to_string(), arr(&[3], a.to_vec())),
        ("s0".to_string(), arr(&[], vec![0.25])),
        ("txs".to_string(), arr(&[3], ta.to_vec())),
        ("ts0".to_string(), arr(&[], vec![1.5])),
    ]
    .into();
    let v = eval(&g, &[NodeId(3), t], &feeds);
    let want: f64 = 0.25 + a.iter().map(|x| x.sqrt()).sum::<f64>();
    let dwant: f64 = 1.5
        + a.iter()
            .zip(&ta)
            .map(|(x, d)| d / (2.0 * x.sqrt()))
            .sum::<f64>();
    assert!(close(v[0][0], want, 1e-12), "{v:?}");
    assert!(close(v[1][0], dwant, 1e-9), "{v:?} want {dwant}");
}
