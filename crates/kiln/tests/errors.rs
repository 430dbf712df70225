//! Every public error family prints one human sentence, the same in `Debug` as in
//! `Display` (what a `main` returning the error with `?` shows), and library messages name
//! library calls, not command-line flags (docs/errors.md).

use kiln::data::{CsvOptions, DataLoader, TensorDataset};
use kiln::state_dict::{Keys, StateDict};
use kiln::{Array, Backend, DType, Error, Graph, RuntimeError};

/// Asserts that `Debug` is the `Display` sentence, on one line, with no struct syntax, and
/// returns it.
fn sentence(e: &(impl std::fmt::Debug + std::fmt::Display)) -> String {
    let display = e.to_string();
    let debug = format!("{e:?}");
    assert_eq!(debug, display, "Debug differs from Display");
    for nested in ["{ ", "(\"", "Box(", "Some("] {
        assert!(!display.contains(nested), "structure in {display:?}");
    }
    assert!(
        !display.contains("--"),
        "a command-line flag in a library error: {display}"
    );
    display
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kiln-errors-{}-{name}", std::process::id()))
}

#[test]
fn check_errors_name_the_call_site() {
    let g = Graph::new();
    let a = g.input("a", DType::F32, [2, 3]);
    let b = g.input("b", DType::F32, [4, 5]);
    let line = line!() + 1;
    let c = a.matmul(&b);
    let e = kiln::eval(&[&c], &[]).unwrap_err();
    assert!(matches!(e, Error::Check(_)));
    let text = format!("{e:?}");
    assert_eq!(text, e.to_string());
    assert!(text.contains(&format!("errors.rs:{line}")), "{text}");
    assert!(text.contains("inner dimensions differ"), "{text}");
}

#[test]
fn eval_errors_name_the_node_and_op() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let i = g.input("i", DType::I32, [2, 1]);
    let picked = x.gather(1, &i);
    let xv = Array::zeros(DType::F32, &[2, 3]).unwrap();
    let iv = Array::from_i32(&[2, 1], vec![0, 3]).unwrap();
    let e = kiln::eval(&[&picked], &[("x", &xv), ("i", &iv)]).unwrap_err();
    assert!(matches!(e, Error::Eval(_)));
    let text = sentence(&e);
    assert!(
        text.contains("gather") && text.contains("out of range"),
        "{text}"
    );
}

#[test]
fn runtime_errors_are_sentences() {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [3]);
    let mut exe = kiln::compile(&[("y", &x.exp())], Backend::Cpu).unwrap();
    let wrong = Array::zeros(DType::F32, &[4]).unwrap();
    let e: RuntimeError = exe.run(&[("x", &wrong)]).unwrap_err();
    let text = sentence(&e);
    assert!(text.contains("input `x`"), "{text}");
    // Through kiln::Error, as a `?` in main would carry it.
    let wrapped = Error::from(e);
    assert_eq!(sentence(&wrapped), text);

    let e = "tpu".parse::<Backend>().unwrap_err();
    assert_eq!(
        sentence(&e),
        "unknown backend `tpu` (available: cpu, gpu, interp, kernel)"
    );
    let missing = kiln::load(&temp("absent.kiln"), Backend::Cpu).unwrap_err();
    assert!(sentence(&missing).contains("absent.kiln"));
}

#[test]
fn state_dict_errors_are_sentences() {
    let e = kiln::load_safetensors(temp("absent.safetensors")).unwrap_err();
    assert!(matches!(e, Error::StateDict(_)));
    assert!(sentence(&e).contains("absent.safetensors"));

    let junk = temp("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file at all").unwrap();
    let e = kiln::load_safetensors(&junk).unwrap_err();
    std::fs::remove_file(&junk).unwrap();
    let text = sentence(&e);
    assert!(
        text.contains("junk.safetensors") && text.contains("header"),
        "{text}"
    );

    let g = Graph::new();
    g.param_init("w", Array::zeros(DType::F32, &[2]).unwrap());
    let mut dict = StateDict::new();
    dict.insert("v".into(), Array::zeros(DType::F32, &[2]).unwrap());
    let e = kiln::load_state_dict(&g, &dict, Keys::Parameters, true).unwrap_err();
    assert_eq!(
        sentence(&e),
        "the state dict does not match the model: missing keys `w`; unexpected keys `v`"
    );
}

#[test]
fn data_errors_are_sentences() {
    let e = kiln::data::load_csv(temp("absent.csv"), &CsvOptions::default()).unwrap_err();
    assert!(sentence(&e).contains("absent.csv"));
    let ds = TensorDataset::new(vec![Array::zeros(DType::F32, &[2, 1]).unwrap()]).unwrap();
    let e = DataLoader::new(std::sync::Arc::new(ds), 0).unwrap_err();
    let wrapped = Error::from(e);
    assert!(sentence(&wrapped).contains("batch"), "{wrapped}");
}

#[test]
fn npy_array_and_io_errors_are_sentences() {
    let e = kiln::npy::read(temp("absent.npy")).unwrap_err();
    assert!(sentence(&e).contains("absent.npy"));
    let e = Error::from(Array::from_f32(&[2, 2], vec![0.0; 3]).unwrap_err());
    assert_eq!(
        sentence(&e),
        "array of shape [2, 2] needs 4 elements, got 3"
    );
    let e = Error::io(
        "out/dir",
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
    );
    assert_eq!(sentence(&e), "out/dir: denied");
    let g = Graph::new();
    let e = g
        .set_param("nope", Array::zeros(DType::F32, &[1]).unwrap())
        .unwrap_err();
    assert!(sentence(&e).contains("nope"));
}

#[test]
fn mixed_graph_errors_are_sentences() {
    let (g1, g2) = (Graph::new(), Graph::new());
    let a = g1.input("a", DType::F32, [1]);
    let b = g2.input("b", DType::F32, [1]);
    let e = kiln::compile(&[("a", &a), ("b", &b)], Backend::Interp).unwrap_err();
    assert_eq!(
        sentence(&e),
        "tensors from different graphs were passed to compile"
    );
}
