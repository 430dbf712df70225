//! Control flow compiled end to end: the data-dependent branch TorchScript's `jit.script` is
//! sold on (on every available backend, saved to a `.kiln` file and loaded back), a scan over
//! a symbolic length and a while loop.

use kiln::{Array, Backend, DType, Graph};

fn f32s(out: &[(String, Array)]) -> Vec<f32> {
    out[0].1.as_f32().unwrap().to_vec()
}

/// `if x.sum() > 0: return x * 2 else: return -x`.
fn branchy() -> (Graph, kiln::Tensor) {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n,));
    let positive = x.sum(0, false).gt(0.0);
    let y = g.cond(
        &positive,
        &[&x],
        |_, a| vec![&a[0] * 2.0],
        |_, a| vec![-&a[0]],
    );
    g.check().unwrap();
    (g, y[0].clone())
}

#[test]
fn a_data_dependent_branch_compiles_saves_and_runs_both_ways() {
    let (_g, y) = branchy();
    let pos = Array::from_f32(&[3], vec![1.0, -2.0, 4.0]).unwrap();
    let neg = Array::from_f32(&[4], vec![1.0, -2.0, -4.0, 0.5]).unwrap();
    let dir = std::env::temp_dir().join(format!("kiln-cond-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Every available backend: `gpu` where an adapter exists (the predicate read back to the
    // host; crates/runtime/tests/control_gpu.rs runs it under KILN_REQUIRE_GPU=1).
    for backend in Backend::available() {
        let mut exe = kiln::compile(&[("y", &y)], backend).unwrap();
        assert_eq!(f32s(&exe.run(&[("x", &pos)]).unwrap()), [2.0, -4.0, 8.0]);
        assert_eq!(
            f32s(&exe.run(&[("x", &neg)]).unwrap()),
            [-1.0, 2.0, 4.0, -0.5]
        );
        let path = dir.join(format!("branch-{backend:?}.kiln"));
        exe.save(&path).unwrap();
        let mut loaded = kiln::load(&path, backend).unwrap();
        assert_eq!(f32s(&loaded.run(&[("x", &pos)]).unwrap()), [2.0, -4.0, 8.0]);
        assert_eq!(
            f32s(&loaded.run(&[("x", &neg)]).unwrap()),
            [-1.0, 2.0, 4.0, -0.5]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_scan_over_a_symbolic_length_and_a_while_loop_run_on_cpu() {
    let g = Graph::new();
    let t = g.sym("T");
    let xs = g.input("xs", DType::F32, (&t, 2));
    let zero = g.zeros([2], DType::F32);
    let (_, ys) = g.scan(&[&zero], &[&xs], |_, c, x| {
        let s = &c[0] * 0.5 + &x[0];
        (vec![s.clone()], vec![s])
    });
    let n = g.input("n", DType::I32, kiln::Shape::scalar());
    let steps0 = g.scalar(0.0, DType::I32);
    let collatz = g.while_loop(
        &[&n, &steps0],
        |_, c| c[0].ne(1.0),
        |g, c| {
            let two = g.scalar(2.0, DType::I32);
            let even = c[0].rem(&two).eq(0.0);
            vec![even.where_(c[0].div(&two), &c[0] * 3.0 + 1.0), &c[1] + 1.0]
        },
    );
    g.check().unwrap();
    let mut interp = kiln::compile(&[("ys", &ys[0])], Backend::Interp).unwrap();
    let mut cpu = kiln::compile(&[("ys", &ys[0])], Backend::Cpu).unwrap();
    for steps in [1usize, 4, 9] {
        let data: Vec<f32> = (0..steps * 2).map(|i| (i as f32).sin()).collect();
        let feed = Array::from_f32(&[steps, 2], data).unwrap();
        let want = interp.run(&[("xs", &feed)]).unwrap();
        let got = cpu.run(&[("xs", &feed)]).unwrap();
        assert_eq!(got[0].1.shape(), &[steps, 2]);
        assert_eq!(f32s(&got), f32s(&want), "T={steps}");
    }
    let mut cpu = kiln::compile(&[("steps", &collatz[1])], Backend::Cpu).unwrap();
    for (v, steps) in [(1, 0), (6, 8), (27, 111)] {
        let out = cpu
            .run(&[("n", &Array::from_i32(&[], vec![v]).unwrap())])
            .unwrap();
        assert_eq!(out[0].1.as_i32().unwrap(), &[steps], "collatz({v})");
    }
}
