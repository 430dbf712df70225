//! Recurrent layers as scans: the graph does not grow with the number of steps, one
//! compiled module runs every sequence length (a StatefulLSTM over chunks of any length),
//! packed sequences keep their state past their length and output zeros there, and the
//! unrolled mode builds no control flow (for backends that do not run it).

use kiln::nn::{Gru, Lstm, Module, RnnConfig, StatefulLstm, TimeLoop};
use kiln::{Array, Backend, DType, Graph, Tensor};

fn seq(shape: &[usize], seed: u32) -> Array {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| ((i as f32 + 1.0) * (seed as f32 * 0.37 + 0.11)).sin())
        .collect();
    Array::from_f32(shape, v).unwrap()
}

/// Control-flow ops (`scan`, `cond`, `while`) of the top-level graph.
fn loops(g: &Graph) -> usize {
    let ir = g.ir();
    ir.node_ids()
        .into_iter()
        .filter(|&id| matches!(ir.node(id).op.name(), "scan" | "cond" | "while"))
        .count()
}

/// Top-level nodes and control-flow ops of a 2-layer bidirectional LSTM over `steps`.
fn size(steps: usize, time_loop: TimeLoop) -> (usize, usize) {
    let g = Graph::new();
    let x = g.input("x", DType::F32, (steps, 4, 5));
    let cfg = RnnConfig::new(5, 6)
        .num_layers(2)
        .bidirectional(true)
        .time_loop(time_loop);
    let lstm = Lstm::new(&g, "l", cfg, 0);
    let (out, (h, c)) = lstm.forward_with_state(&x, None);
    g.check().unwrap();
    assert_eq!(out.shape().to_string(), format!("[{steps}, 4, 12]"));
    assert_eq!(h.shape().to_string(), "[4, 4, 6]");
    assert_eq!(c.shape().to_string(), "[4, 4, 6]");
    (g.len(), loops(&g))
}

#[test]
fn the_scan_graph_does_not_grow_with_the_number_of_steps() {
    let (short, short_loops) = size(3, TimeLoop::Scan);
    let (long, long_loops) = size(300, TimeLoop::Scan);
    assert_eq!(short, long, "nodes at T=3 and T=300");
    // One scan per layer and direction.
    assert_eq!((short_loops, long_loops), (4, 4));
    let (unrolled3, none3) = size(3, TimeLoop::Unroll);
    let (unrolled30, none30) = size(30, TimeLoop::Unroll);
    assert_eq!(
        (none3, none30),
        (0, 0),
        "unrolled graphs have no control flow"
    );
    assert!(unrolled30 > 5 * unrolled3, "{unrolled3} vs {unrolled30}");
}

#[test]
fn scan_and_unroll_agree_on_cpu() {
    for bidirectional in [false, true] {
        let mut outs = Vec::new();
        for time_loop in [TimeLoop::Scan, TimeLoop::Unroll] {
            let g = Graph::new();
            let x = g.input("x", DType::F32, (3, 6, 5));
            let lengths = g.input("lengths", DType::I32, [3]);
            let cfg = RnnConfig::new(5, 4)
                .num_layers(2)
                .batch_first(true)
                .bidirectional(bidirectional)
                .time_loop(time_loop);
            let gru = Gru::new(&g, "g", cfg, 4);
            let (out, h) = gru.forward_packed(&x, &lengths, None);
            let mut exe = kiln::compile(&[("out", &out), ("h", &h)], Backend::Cpu).unwrap();
            let l = Array::from_i32(&[3], vec![6, 2, 4]).unwrap();
            outs.push(
                exe.run(&[("x", &seq(&[3, 6, 5], 1)), ("lengths", &l)])
                    .unwrap(),
            );
        }
        for (a, b) in outs[0].iter().zip(&outs[1]) {
            let (a, b) = (a.1.to_f64_vec(), b.1.to_f64_vec());
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-6,
                    "bidirectional {bidirectional}: {x} vs {y}"
                );
            }
        }
    }
}

/// Past its length a sequence outputs exact zeros and keeps its state: `h_n` is the output
/// at its last step (forward direction), bit for bit, on `interp` and `cpu`.
#[test]
fn packed_steps_past_a_length_output_zeros_and_keep_the_state() {
    let g = Graph::new();
    let t = g.sym("T");
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&t, &n, 3));
    let lengths = g.input("lengths", DType::I64, vec![n.clone()]);
    let lstm = Lstm::new(&g, "l", RnnConfig::new(3, 4), 9);
    let (out, (h, c)) = lstm.forward_packed(&x, &lengths, None);
    let lens = [5usize, 1, 3];
    let lv = Array::from_i64(&[3], lens.iter().map(|&l| l as i64).collect()).unwrap();
    let xv = seq(&[5, 3, 3], 2);
    for backend in [Backend::Interp, Backend::Cpu] {
        let mut exe = kiln::compile(&[("out", &out), ("h", &h), ("c", &c)], backend).unwrap();
        let r = exe.run(&[("x", &xv), ("lengths", &lv)]).unwrap();
        let (o, hn) = (r[0].1.as_f32().unwrap(), r[1].1.as_f32().unwrap());
        for (b, &len) in lens.iter().enumerate() {
            for step in 0..5 {
                let row = &o[(step * 3 + b) * 4..(step * 3 + b + 1) * 4];
                if step >= len {
                    assert!(row.iter().all(|&v| v == 0.0), "{backend}: t={step} b={b}");
                } else {
                    assert!(row.iter().any(|&v| v != 0.0), "{backend}: t={step} b={b}");
                }
            }
            let last = &o[((len - 1) * 3 + b) * 4..((len - 1) * 3 + b + 1) * 4];
            assert_eq!(
                &hn[b * 4..b * 4 + 4],
                last,
                "{backend}: h_n of sequence {b}"
            );
        }
        // A sequence of full length is unaffected by the mask.
        let full = Array::from_i64(&[3], vec![5; 3]).unwrap();
        let masked = exe.run(&[("x", &xv), ("lengths", &full)]).unwrap();
        let plain = kiln::compile(&[("out", &lstm.forward(&x))], backend)
            .unwrap()
            .run(&[("x", &xv)])
            .unwrap();
        assert!(masked[0].1.bit_eq(&plain[0].1), "{backend}");
    }
}

/// A StatefulLSTM with a symbolic chunk length: one executable takes chunks of 3 and 5
/// steps and ends where the whole 8-step sequence does.
#[test]
fn a_stateful_lstm_runs_chunks_of_any_length_with_one_executable() {
    let g = Graph::new();
    let model = StatefulLstm::new(&g, "rnn", RnnConfig::new(4, 8).num_layers(2), 2, 3, 5);
    let x = g.input("x", DType::F32, (2, g.sym("T"), 4));
    let (logits, updates) = model.forward(&x);
    let whole = seq(&[2, 8, 4], 3);
    let v = whole.as_f32().unwrap();
    let chunk = |from: usize, to: usize| {
        let mut out = Vec::new();
        for b in 0..2 {
            out.extend_from_slice(&v[b * 32 + from * 4..b * 32 + to * 4]);
        }
        Array::from_f32(&[2, to - from, 4], out).unwrap()
    };
    let ups: Vec<(&str, &Tensor)> = updates.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for backend in [Backend::Interp, Backend::Cpu] {
        let mut exe = kiln::compile_step(&[("logits", &logits)], &ups, backend).unwrap();
        exe.run(&[("x", &chunk(0, 3))]).unwrap();
        let chunked = exe.run(&[("x", &chunk(3, 8))]).unwrap().remove(0).1;
        for (name, zeros) in model.reset_values() {
            exe.state().set(&name, zeros).unwrap();
        }
        let straight = exe.run(&[("x", &whole)]).unwrap().remove(0).1;
        let (a, b) = (chunked.to_f64_vec(), straight.to_f64_vec());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-6, "{backend}: {p} vs {q}");
        }
    }
}

/// A module holding the scans of a recurrent layer saves to a `.kiln` file and loads back
/// (the loops' induction symbols are not signature symbols), running every length.
#[test]
fn a_scanned_lstm_saves_loads_and_runs_any_length() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, (g.sym("N"), g.sym("T"), 3));
    let cfg = RnnConfig::new(3, 5).batch_first(true).bidirectional(true);
    let out = Lstm::new(&g, "l", cfg, 1).forward(&x);
    let dir = std::env::temp_dir().join(format!("kiln-rnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for backend in [Backend::Interp, Backend::Cpu] {
        let mut exe = kiln::compile(&[("out", &out)], backend).unwrap();
        let path = dir.join(format!("lstm-{backend}.kiln"));
        exe.save(&path).unwrap();
        let mut loaded = kiln::load(&path, backend).unwrap();
        for steps in [1usize, 4, 9] {
            let xv = seq(&[2, steps, 3], steps as u32);
            let want = exe.run(&[("x", &xv)]).unwrap().remove(0).1;
            let got = loaded.run(&[("x", &xv)]).unwrap().remove(0).1;
            assert_eq!(got.shape(), &[2, steps, 10]);
            assert!(got.bit_eq(&want), "{backend} T={steps}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
