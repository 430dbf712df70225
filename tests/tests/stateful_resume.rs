//! Stateful modules: a StatefulLSTM continues its sequence across runs (and resets), and a
//! compiled training step saved mid-training resumes bit-identically after loading.

use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::{Linear, Module, Relu, RnnConfig, Sequential, StatefulLstm, TimeLoop};
use kiln::optim::Adam;
use kiln::{Array, Backend, DType, Graph, Tensor};
use kiln_tests::golden::assert_close;

fn seq(shape: &[usize], seed: u64) -> Array {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    Array::from_f32(shape, v).unwrap()
}

#[test]
fn stateful_lstm_continues_the_sequence_across_runs_and_resets() {
    for backend in kiln_tests::backends() {
        let g = Graph::new();
        let cfg = RnnConfig::new(28, 128).time_loop(TimeLoop::Scan);
        let model = StatefulLstm::new(&g, "rnn", cfg, 2, 10, 11);
        let x = g.input("x", DType::F32, [2, 5, 28]);
        let (logits, updates) = model.forward(&x);
        // Reference: the whole 10-step sequence at once from a zero state.
        let full = seq(&[2, 10, 28], 5);
        let v = full.as_f32().unwrap();
        let chunk = |k: usize| {
            let mut out = Vec::new();
            for b in 0..2 {
                out.extend_from_slice(&v[b * 280 + k * 140..b * 280 + k * 140 + 140]);
            }
            Array::from_f32(&[2, 5, 28], out).unwrap()
        };
        let (c1, c2) = (chunk(0), chunk(1));
        let xf = g.input("xfull", DType::F32, [2, 10, 28]);
        let (ref_logits, _) = model.forward(&xf);
        let want = kiln::eval(&[&ref_logits], &[("xfull", &full)])
            .unwrap()
            .remove(0);
        let ups: Vec<(&str, &Tensor)> = updates.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut exe = kiln::compile_step(&[("logits", &logits)], &ups, backend).unwrap();
        let first = exe.run(&[("x", &c1)]).unwrap().remove(0).1;
        let second = exe.run(&[("x", &c2)]).unwrap().remove(0).1;
        assert_close(
            &format!("{backend}: chunked == whole sequence"),
            &second,
            &want,
        );
        for (name, zeros) in model.reset_values() {
            exe.state().set(&name, zeros).unwrap();
        }
        let again = exe.run(&[("x", &c1)]).unwrap().remove(0).1;
        assert!(
            again.bit_eq(&first),
            "{backend}: reset did not restart the sequence"
        );
    }
}

fn digits_like(n: usize, seed: u64) -> (Array, Array) {
    let x = seq(&[n, 64], seed);
    let y: Vec<i32> = (0..n).map(|i| (i * 7 % 10) as i32).collect();
    (x, Array::from_i32(&[n], y).unwrap())
}

#[test]
fn train_three_steps_save_load_two_more_equals_five_steps() {
    let dir = std::env::temp_dir().join(format!("kiln-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let build = || {
        let g = Graph::new();
        let n = g.sym("N");
        let x = g.input("x", DType::F32, (&n, 64));
        let y = g.input("y", DType::I32, vec![n.clone()]);
        let model = Sequential::new()
            .push(Linear::new(&g, "fc1", 64, 32, 3))
            .push(Relu)
            .push(Linear::new(&g, "fc2", 32, 10, 4));
        let loss = cross_entropy(&model.forward(&x), &y, Reduction::Mean, 0.0);
        Adam::new(1e-2).minimize(&loss, &model.parameters())
    };
    let batches: Vec<(Array, Array)> = (0..5).map(|k| digits_like(16, 100 + k)).collect();
    let feed = |b: &(Array, Array)| [("x", b.0.clone()), ("y", b.1.clone())];
    let run = |exe: &mut kiln::Executable, b: &(Array, Array)| {
        let f = feed(b);
        let refs: Vec<(&str, &Array)> = f.iter().map(|(n, a)| (*n, a)).collect();
        exe.run(&refs).unwrap().remove(0).1
    };
    let mut straight = build().compile(Backend::Cpu).unwrap();
    let straight_losses: Vec<Array> = batches.iter().map(|b| run(&mut straight, b)).collect();

    let mut first = build().compile(Backend::Cpu).unwrap();
    for b in &batches[..3] {
        run(&mut first, b);
    }
    let path = dir.join("step.kiln");
    first.save(&path).unwrap();
    let mut resumed = kiln_runtime::load(&path, Backend::Cpu).unwrap();
    for (k, b) in batches[3..].iter().enumerate() {
        let l = run(&mut resumed, b);
        assert!(
            l.bit_eq(&straight_losses[3 + k]),
            "loss of step {} differs after resuming",
            4 + k
        );
    }
    let a = straight.state().snapshot();
    let b = resumed.state().snapshot();
    let names: Vec<&String> = b.iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n.contains("adam_m"))
            && names.iter().any(|n| n.as_str() == "optim.step"),
        "{names:?}"
    );
    for (name, v) in &b {
        let (_, w) = a.iter().find(|(n, _)| n == name).unwrap();
        assert!(
            v.bit_eq(w),
            "state {name} differs between resumed and straight training"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
