//! The control-flow builder: `cond`, `scan`, `while_loop` and `fori_loop` with closures,
//! captures of enclosing tensors, parameters declared inside bodies, and diagnostics at the
//! user's line.

use kiln::nn::{Linear, Module};
use kiln::{Array, DType, Graph, ScanOptions, Shape, Tensor};

fn f32s(t: &[&Tensor], feeds: &[(&str, &Array)]) -> Vec<Vec<f32>> {
    kiln::eval(t, feeds)
        .unwrap()
        .iter()
        .map(|a| a.as_f32().unwrap().to_vec())
        .collect()
}

#[test]
fn cond_reads_captured_tensors_and_runs_one_branch() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let k = g.input("k", DType::F32, Shape::scalar());
    let pred = x.sum(0, false).gt(g.scalar(0.0, DType::F32));
    // `k` is captured by the then-branch only, `x` by both.
    let y = g.cond(&pred, &[], |_, _| vec![&x * &k], |_, _| vec![-&x]);
    let k2 = Array::from_f32(&[], vec![3.0]).unwrap();
    let pos = Array::from_f32(&[3], vec![1.0, -2.0, 4.0]).unwrap();
    let neg = Array::from_f32(&[3], vec![1.0, -2.0, -4.0]).unwrap();
    assert_eq!(
        f32s(&[&y[0]], &[("x", &pos), ("k", &k2)])[0],
        [3.0, -6.0, 12.0]
    );
    assert_eq!(
        f32s(&[&y[0]], &[("x", &neg), ("k", &k2)])[0],
        [-1.0, 2.0, 4.0]
    );
    g.check().unwrap();
}

#[test]
fn scan_runs_any_symbolic_length_forward_and_reverse() {
    let g = Graph::new();
    let t = g.sym("T");
    let xs = g.input("xs", DType::F32, (&t, 2));
    let w = g.input("w", DType::F32, [2]);
    let zero = g.zeros([2], DType::F32);
    let step = |_: &Graph, c: &[Tensor], x: &[Tensor]| {
        let s = &c[0] * 0.5 + &x[0] * &w;
        (vec![s.clone()], vec![s.sum(0, false)])
    };
    let (fc, fys) = g.scan(&[&zero], &[&xs], step);
    let rev = ScanOptions {
        reverse: true,
        length: None,
    };
    let (rc, rys) = g.scan_with(&[&zero], &[&xs], &rev, step);
    g.check().unwrap();
    let wv = Array::from_f32(&[2], vec![1.0, -1.0]).unwrap();
    for steps in [0usize, 1, 3, 7] {
        let data: Vec<f32> = (0..steps * 2).map(|i| i as f32 * 0.25 - 1.0).collect();
        let feed = Array::from_f32(&[steps, 2], data.clone()).unwrap();
        let out = f32s(
            &[&fc[0], &fys[0], &rc[0], &rys[0]],
            &[("xs", &feed), ("w", &wv)],
        );
        // The same recurrence by hand, in the order each scan runs its steps.
        let run = |order: Vec<usize>| {
            let mut c = [0f32; 2];
            let mut ys = vec![0f32; steps];
            for s in order {
                for j in 0..2 {
                    c[j] = c[j] * 0.5 + data[s * 2 + j] * [1.0, -1.0][j];
                }
                ys[s] = c[0] + c[1];
            }
            (c.to_vec(), ys)
        };
        let (c, ys) = run((0..steps).collect());
        assert_eq!(out[0], c, "T={steps}");
        assert_eq!(out[1], ys, "T={steps}");
        let (c, ys) = run((0..steps).rev().collect());
        assert_eq!(out[2], c, "reverse T={steps}");
        assert_eq!(out[3], ys, "reverse T={steps}");
    }
}

#[test]
fn while_loop_counts_collatz_steps() {
    let g = Graph::new();
    let n = g.input("n", DType::I32, Shape::scalar());
    let zero = g.scalar(0.0, DType::I32);
    let out = g.while_loop(
        &[&n, &zero],
        |g, c| c[0].ne(g.scalar(1.0, DType::I32)),
        |g, c| {
            let two = g.scalar(2.0, DType::I32);
            let even = c[0].rem(&two).eq(g.scalar(0.0, DType::I32));
            let next = even.where_(c[0].div(&two), &(&c[0] * 3.0 + 1.0));
            vec![next, &c[1] + 1.0]
        },
    );
    g.check().unwrap();
    for (v, steps) in [(1, 0), (6, 8), (27, 111)] {
        let r = kiln::eval(
            &[&out[1]],
            &[("n", &Array::from_i32(&[], vec![v]).unwrap())],
        )
        .unwrap();
        assert_eq!(r[0].as_i32().unwrap(), &[steps], "collatz({v})");
    }
}

#[test]
fn fori_loop_gives_the_index_and_accepts_symbolic_bounds() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [1]);
    let k = g.sym("K");
    let marker = g.input("marker", DType::F32, (&k,));
    let out = g.fori_loop(0, k.clone(), &[&x], |_, i, c| {
        vec![&c[0] + i.cast(DType::F32)]
    });
    let fixed = g.fori_loop(2, 5, &[&x], |_, i, c| vec![&c[0] + i.cast(DType::F32)]);
    g.check().unwrap();
    let one = Array::from_f32(&[1], vec![1.0]).unwrap();
    // K = 5: indices 0..5 for the symbolic loop, 2, 3, 4 for the fixed one.
    let m = Array::from_f32(&[5], vec![0.0; 5]).unwrap();
    let r = kiln::eval(
        &[&out[0], &fixed[0], &marker],
        &[("x", &one), ("marker", &m)],
    )
    .unwrap();
    assert_eq!(r[0].as_f32().unwrap(), &[11.0]);
    assert_eq!(r[1].as_f32().unwrap(), &[10.0]);
    // A lower bound above a symbolic upper bound's minimum is refused at the call.
    let _ = g.fori_loop(2, k.clone(), &[&x], |_, _, c| c.to_vec());
    let d = g.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message.contains("every value of the symbols"),
        "{}",
        d[0]
    );
}

#[test]
fn nested_bodies_capture_from_any_enclosing_graph() {
    let g = Graph::new();
    let xs = g.input("xs", DType::F32, [3, 2]);
    let scale = g.input("scale", DType::F32, Shape::scalar());
    let zero = g.zeros([2], DType::F32);
    // A scan whose body holds a cond whose branch reads `scale` from the top-level graph.
    let (c, _) = g.scan(&[&zero], &[&xs], |g, c, x| {
        let big = x[0].sum(0, false).gt(g.scalar(2.0, DType::F32));
        let add = g.cond(
            &big,
            &[&x[0]],
            |_, a| vec![&a[0] * &scale],
            |_, a| vec![a[0].clone()],
        );
        (vec![&c[0] + &add[0]], vec![])
    });
    g.check().unwrap();
    let feed = Array::from_f32(&[3, 2], vec![1.0, 1.0, 2.0, 2.0, 0.5, 0.5]).unwrap();
    let s = Array::from_f32(&[], vec![10.0]).unwrap();
    let out = f32s(&[&c[0]], &[("xs", &feed), ("scale", &s)]);
    assert_eq!(out[0], [1.0 + 20.0 + 0.5, 1.0 + 20.0 + 0.5]);
}

#[test]
fn layers_built_inside_a_body_declare_their_parameters_on_the_top_level_graph() {
    let g = Graph::new();
    let xs = g.input("xs", DType::F32, [4, 3]);
    let h0 = g.zeros([2], DType::F32);
    let (h, _) = g.scan(&[&h0], &[&xs], |g, c, x| {
        let cell = Linear::new(g, "cell", 3, 2, 7);
        (vec![(cell.forward(&x[0]) + &c[0]).tanh()], vec![])
    });
    g.check().unwrap();
    let names: Vec<String> = g.param_values().into_keys().collect();
    assert!(names.contains(&"cell.weight".to_string()), "{names:?}");
    assert_eq!(g.ir().parameters().len(), 2);
    // The same recurrence unrolled on the top-level graph, with the same weights.
    let cell = Linear::new(&g, "cell", 3, 2, 7);
    let mut hu = h0.clone();
    for t in 0..4 {
        let x = xs.slice(0, t, t + 1, 1).reshape([3]);
        hu = (cell.forward(&x) + &hu).tanh();
    }
    let feed = Array::from_f32(&[4, 3], (0..12).map(|i| i as f32 * 0.1).collect()).unwrap();
    let out = f32s(&[&h[0], &hu], &[("xs", &feed)]);
    assert_eq!(out[0], out[1]);
}

#[test]
fn bad_bodies_are_diagnostics_at_the_users_line() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let p = g.scalar(1.0, DType::Bool);
    let line = line!() + 1;
    let _ = g.cond(
        &p,
        &[&x],
        |_, a| vec![a[0].clone()],
        |_, a| vec![a[0].sum(0, false)],
    );
    let d = g.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].loc.line, line);
    assert!(d[0].loc.file.ends_with("control_flow.rs"));
    assert!(
        d[0].message.contains("f32[3]") && d[0].message.contains("f32[]"),
        "{}",
        d[0]
    );

    let g = Graph::new();
    let xs = g.input("xs", DType::F32, [3, 2]);
    let zero = g.zeros([2], DType::F32);
    let line = line!() + 1;
    let _ = g.scan(&[&zero], &[&xs], |_, c, _| {
        (vec![c[0].sum(0, true)], vec![])
    });
    let d = g.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].loc.line, line);
    assert!(d[0].message.contains("keep its type"), "{}", d[0]);

    // A tensor built inside a body and used outside it.
    let g = Graph::new();
    let xs = g.input("xs", DType::F32, [3, 2]);
    let zero = g.zeros([2], DType::F32);
    let mut leaked = None;
    let _ = g.scan(&[&zero], &[&xs], |_, c, x| {
        leaked = Some(&x[0] * 2.0);
        (vec![c[0].clone()], vec![])
    });
    let line = line!() + 1;
    let _ = &zero + leaked.as_ref().unwrap();
    let d = g.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].loc.line, line);
    assert!(d[0].message.contains("return it from the body"), "{}", d[0]);

    // A tensor of another graph entirely.
    let g = Graph::new();
    let other = Graph::new().input("y", DType::F32, [2]);
    let zero = g.zeros([2], DType::F32);
    let _ = g.scan_with(
        &[&zero],
        &[],
        &ScanOptions {
            reverse: false,
            length: Some(3.into()),
        },
        |_, c, _| (vec![&c[0] + &other], vec![]),
    );
    let d = g.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("different graphs"), "{}", d[0]);
}
