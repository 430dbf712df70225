//! A run-time check that fails on a compiled backend names the user's op: an out-of-range
//! class label (a gather's index) or an integer division by zero reports the graph node,
//! its op and the file:line that built it (the kernel plan's debug table), on `cpu`, `gpu`
//! and `kernel`, in an evaluation module, a compiled train step, and after a save and load.

use kiln::loss::{Reduction, cross_entropy};
use kiln::nn::{Linear, Module};
use kiln::optim::Sgd;
use kiln::{Array, Backend, DType, Executable, Graph, Tensor};

/// `file!():line`, the location a node built on that line of this file records.
fn here(line: u32) -> String {
    format!("{}:{line}:", file!())
}

/// A linear classifier over 3 classes with its cross-entropy loss, and the line of the
/// `cross_entropy` call (where its gather is built).
fn classifier(g: &Graph) -> (Linear, Tensor, u32) {
    let x = g.input("x", DType::F32, [4, 5]);
    let y = g.input("y", DType::I64, [4]);
    let fc = Linear::new(g, "fc", 5, 3, 11);
    let line = line!() + 1;
    let loss = cross_entropy(&fc.forward(&x), &y, Reduction::Mean, 0.0);
    (fc, loss, line)
}

fn feeds(bad_label: i64) -> (Array, Array) {
    let x: Vec<f32> = (0..20).map(|i| (i as f32 - 9.5) / 7.0).collect();
    (
        Array::from_f32(&[4, 5], x).unwrap_or_else(|e| panic!("{e}")),
        Array::from_i64(&[4], vec![0, 2, bad_label, 1]).unwrap_or_else(|e| panic!("{e}")),
    )
}

/// Runs `exe` with label 3 (of 3 classes) and returns the error's message, after checking
/// that the valid labels run.
fn out_of_range_message(exe: &mut Executable, backend: Backend) -> String {
    let (x, ok) = feeds(1);
    exe.run(&[("x", &x), ("y", &ok)])
        .unwrap_or_else(|e| panic!("{backend}: valid labels failed: {e}"));
    let (x, bad) = feeds(3);
    match exe.run(&[("x", &x), ("y", &bad)]) {
        Ok(_) => panic!("{backend}: label 3 of 3 classes ran"),
        Err(e) => {
            let text = e.to_string();
            assert_eq!(format!("{e:?}"), text, "{backend}: Debug differs");
            assert!(!text.contains('\n'), "{backend}: {text}");
            text
        }
    }
}

fn compiled_backends() -> Vec<Backend> {
    kiln_tests::backends()
        .into_iter()
        .filter(|b| *b != Backend::Interp)
        .collect()
}

#[test]
fn an_out_of_range_label_names_the_gather_and_the_users_line() {
    for backend in compiled_backends() {
        let g = Graph::new();
        let (_, loss, line) = classifier(&g);
        let mut exe =
            kiln::compile(&[("loss", &loss)], backend).unwrap_or_else(|e| panic!("{backend}: {e}"));
        let text = out_of_range_message(&mut exe, backend);
        assert!(text.contains("(gather at "), "{backend}: {text}");
        assert!(text.contains(&here(line)), "{backend}: {text}");
        assert!(
            text.contains("an index is out of range for axis 1 of size 3"),
            "{backend}: {text}"
        );
        // Then the backend and its kernel, without repeating the cause.
        assert!(
            text.contains(&format!("({backend} backend, kernel k")),
            "{backend}: {text}"
        );
        assert_eq!(text.matches("out of range").count(), 1, "{backend}: {text}");
    }
}

#[test]
fn a_train_step_names_the_gather_and_the_users_line() {
    for backend in compiled_backends() {
        let g = Graph::new();
        let (fc, loss, line) = classifier(&g);
        let step = Sgd::new(0.1).minimize(&loss, &fc.parameters());
        let mut exe = step
            .compile(backend)
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        let text = out_of_range_message(&mut exe, backend);
        assert!(text.contains("(gather at "), "{backend}: {text}");
        assert!(text.contains(&here(line)), "{backend}: {text}");
    }
}

#[test]
fn the_debug_table_survives_save_and_load() {
    let g = Graph::new();
    let (_, loss, line) = classifier(&g);
    let exe = kiln::compile(&[("loss", &loss)], Backend::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let path = std::env::temp_dir().join(format!("kiln-checks-{}.kiln", std::process::id()));
    exe.save(&path).unwrap_or_else(|e| panic!("{e}"));
    for backend in compiled_backends() {
        let mut loaded = kiln::load(&path, backend).unwrap_or_else(|e| panic!("{backend}: {e}"));
        let text = out_of_range_message(&mut loaded, backend);
        assert!(text.contains("(gather at "), "{backend}: {text}");
        assert!(text.contains(&here(line)), "{backend}: {text}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_integer_division_by_zero_names_the_division() {
    for backend in compiled_backends() {
        let g = Graph::new();
        let a = g.input("a", DType::I32, [4]);
        let b = g.input("b", DType::I32, [4]);
        let line = line!() + 1;
        let q = &a / &b;
        let mut exe = kiln::compile(&[("q", &(&q + 1.0))], backend)
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        let av = Array::from_i32(&[4], vec![7, -7, 9, 4]).unwrap_or_else(|e| panic!("{e}"));
        let ok = Array::from_i32(&[4], vec![2, 2, 3, 1]).unwrap_or_else(|e| panic!("{e}"));
        let out = exe
            .run(&[("a", &av), ("b", &ok)])
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(out[0].1.to_f64_vec(), [4.0, -3.0, 4.0, 5.0], "{backend}");
        let zero = Array::from_i32(&[4], vec![2, 0, 3, 1]).unwrap_or_else(|e| panic!("{e}"));
        let e = exe
            .run(&[("a", &av), ("b", &zero)])
            .expect_err("division by zero ran");
        let text = e.to_string();
        assert!(
            text.contains("at ") && text.contains(&here(line)),
            "{backend}: {text}"
        );
        assert!(
            text.contains("integer division by zero"),
            "{backend}: {text}"
        );
    }
}
