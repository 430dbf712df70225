//! The ONNX backend node test suite (onnx==1.22.0, 1,765 cases; fetched by
//! crates/onnx/fetch-node-tests.sh) on `interp`, `cpu` and `gpu`: every case is imported,
//! compiled and run on its first test data set, and compared with the expected outputs with
//! ONNX's tolerance (rtol 1e-3, atol 1e-7, NaN equal; integers and bools exact). The cases
//! that pass are committed per backend in tests/conformance/<backend>.txt: a case that
//! stops passing fails the test, and so does one that starts passing (so the list is kept
//! current: re-run with BLESS=1 to rewrite it). The per-case table, with each failure's
//! reason, is written to target/onnx-conformance/<backend>.tsv.

use kiln::Backend;
use kiln_ir::{Array, DType};
use kiln_onnx::tensor::read_typed_tensor_pb;
use kiln_onnx::{ImportOptions, OnnxError, import};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn suite_dir() -> PathBuf {
    match std::env::var_os("KILN_ONNX_NODE_TESTS") {
        Some(p) => PathBuf::from(p),
        None => root().join("target/onnx-node-tests/node"),
    }
}

/// One case's data: the model and its first test data set.
struct Case {
    name: String,
    model: Vec<u8>,
    inputs: Vec<Array>,
    outputs: Vec<Array>,
    /// Why the data itself cannot be read by kiln (an element type kiln lacks).
    unreadable: Option<String>,
    /// Whether some input or output has an ONNX type kiln carries in a wider dtype.
    narrow: bool,
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<(usize, PathBuf)> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name
                        .strip_prefix(prefix)?
                        .strip_suffix(".pb")?
                        .parse()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

fn load_cases() -> Vec<Case> {
    let dir = suite_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "the ONNX node tests are not at {} ({e}); run crates/onnx/fetch-node-tests.sh (CI does) or set KILN_ONNX_NODE_TESTS",
                dir.display()
            )
        })
        .flatten()
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if let Some(f) = filter() {
        names.retain(|n| f.iter().any(|s| n.contains(s.as_str())));
    }
    names
        .into_iter()
        .map(|name| {
            let case = dir.join(&name);
            let model = fs::read(case.join("model.onnx")).expect("model.onnx is readable");
            let data = case.join("test_data_set_0");
            let mut unreadable = None;
            let mut narrow = false;
            let mut read = |p: &PathBuf| -> Option<Array> {
                match read_typed_tensor_pb(&fs::read(p).ok()?) {
                    Ok((a, n)) => {
                        narrow |= n.is_some();
                        Some(a)
                    }
                    Err(e) => {
                        unreadable.get_or_insert(e.to_string());
                        None
                    }
                }
            };
            let inputs = numbered(&data, "input_")
                .iter()
                .filter_map(&mut read)
                .collect();
            let outputs = numbered(&data, "output_")
                .iter()
                .filter_map(&mut read)
                .collect();
            Case {
                name,
                model,
                inputs,
                outputs,
                unreadable,
                narrow,
            }
        })
        .collect()
}

/// Compares with ONNX's tolerance; `None` when equal.
fn compare(got: &Array, want: &Array) -> Option<String> {
    if got.dtype() != want.dtype() {
        return Some(format!(
            "dtype {} != expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Some(format!(
            "shape {:?} != expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if !want.dtype().is_float() {
        return (got.to_i64_vec() != want.to_i64_vec()).then(|| "values differ".to_string());
    }
    for (i, (g, w)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-7 + 1e-3 * w.abs();
        if !ok {
            return Some(format!("element {i}: {g} != expected {w}"));
        }
    }
    None
}

/// Runs one case; `Ok(())` when it passes.
fn run_case(case: &Case, backend: Backend) -> Result<(), String> {
    if let Some(e) = &case.unreadable {
        return Err(format!("test data: {e}"));
    }
    let model = <kiln_onnx::proto::ModelProto as prost::Message>::decode(case.model.as_slice());
    let input_names: Vec<String> = match &model {
        Ok(m) => m
            .graph
            .iter()
            .flat_map(|g| &g.input)
            .filter_map(|v| v.name.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut options = ImportOptions::default();
    let imported = match import(&case.model, &options) {
        Ok(m) => m,
        Err(OnnxError::Node { message, .. })
            if message.contains("must be known when importing") =>
        {
            // Inputs that must be known (a Reshape target, Pad's fill value, OneHot's depth,
            // fed as graph inputs) are fixed to the test's values, as a user would with
            // `ImportOptions::constant_inputs`: integer inputs first, then every input.
            for (name, a) in input_names.iter().zip(&case.inputs) {
                if !a.dtype().is_float() {
                    options.constant_inputs.insert(name.clone(), a.clone());
                }
            }
            match import(&case.model, &options) {
                Ok(m) => m,
                Err(OnnxError::Node { message, .. })
                    if message.contains("must be known when importing") =>
                {
                    for (name, a) in input_names.iter().zip(&case.inputs) {
                        options.constant_inputs.insert(name.clone(), a.clone());
                    }
                    import(&case.model, &options).map_err(|e| format!("import: {e}"))?
                }
                Err(e) => return Err(format!("import: {e}")),
            }
        }
        Err(e) => return Err(format!("import: {e}")),
    };
    let mut exe = imported
        .compile(backend)
        .map_err(|e| format!("compile: {e}"))?;
    let by_name: HashMap<&str, &Array> = input_names
        .iter()
        .map(String::as_str)
        .zip(&case.inputs)
        .collect();
    let mut feeds = Vec::new();
    let wanted: Vec<String> = exe
        .signature()
        .inputs
        .iter()
        .map(|i| i.name.clone())
        .collect();
    for name in &wanted {
        match by_name.get(name.as_str()) {
            Some(a) => feeds.push((name.as_str(), *a)),
            None => return Err(format!("no test data for input `{name}`")),
        }
    }
    let outs = exe.run(&feeds).map_err(|e| format!("run: {e}"))?;
    if outs.len() != case.outputs.len() {
        return Err(format!(
            "{} outputs, expected {}",
            outs.len(),
            case.outputs.len()
        ));
    }
    for (k, ((name, got), want)) in outs.iter().zip(&case.outputs).enumerate() {
        if let Some(diff) = compare(got, want) {
            return Err(format!("output {k} `{name}`: {diff}"));
        }
    }
    Ok(())
}

fn all_f32(case: &Case) -> bool {
    case.unreadable.is_none()
        && !case.narrow
        && case
            .inputs
            .iter()
            .chain(&case.outputs)
            .all(|a| a.dtype() == DType::F32)
}

/// `KILN_ONNX_FILTER=Resize,test_gridsample`: run only the cases whose name contains one of
/// the comma-separated strings, print each result and check no pass list (for working on
/// one op).
fn filter() -> Option<Vec<String>> {
    let f = std::env::var("KILN_ONNX_FILTER").ok()?;
    Some(f.split(',').map(str::to_string).collect())
}

/// Runs every case (a panic counts as a failure), in order of `cases`, on up to four
/// threads: the cases are independent, and on a software GPU adapter compiling their
/// shaders is most of the suite's time.
fn run_cases(cases: &[Case], backend: Backend) -> Vec<Result<(), String>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let one = |case: &Case| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(case, backend)))
            .unwrap_or_else(|_| Err("PANIC".to_string()))
    };
    let mut indexed: Vec<(usize, Result<(), String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    (w..cases.len())
                        .step_by(workers)
                        .map(|i| (i, one(&cases[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread catches its cases' panics"))
            .collect()
    });
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, r)| r).collect()
}

fn check_backend(backend: Backend) {
    let cases = load_cases();
    if filter().is_some() {
        let mut passed = 0;
        for (case, r) in cases.iter().zip(run_cases(&cases, backend)) {
            match &r {
                Ok(()) => passed += 1,
                Err(e) => println!("{backend} {}: {}", case.name, kiln_fs::one_line(e)),
            }
        }
        println!("{backend}: {passed} of {} filtered cases pass", cases.len());
        return;
    }
    assert!(
        cases.len() > 1000,
        "only {} cases found in {}",
        cases.len(),
        suite_dir().display()
    );
    let results: BTreeMap<String, Result<(), String>> = cases
        .iter()
        .map(|c| c.name.clone())
        .zip(run_cases(&cases, backend))
        .collect();
    let passed: BTreeSet<&str> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n.as_str())
        .collect();
    let f32_total = cases.iter().filter(|c| all_f32(c)).count();
    let f32_passed = cases
        .iter()
        .filter(|c| all_f32(c) && passed.contains(c.name.as_str()))
        .count();
    let out_dir = root().join("target/onnx-conformance");
    fs::create_dir_all(&out_dir).expect("target/onnx-conformance can be created");
    let mut table = String::from("case\tresult\n");
    for (name, r) in &results {
        let cell = match r {
            Ok(()) => "pass".to_string(),
            Err(e) => kiln_fs::one_line(e),
        };
        table.push_str(&format!("{name}\t{cell}\n"));
    }
    fs::write(out_dir.join(format!("{backend}.tsv")), &table).expect("the table can be written");
    println!(
        "{backend}: {} of {} cases pass; all-float32 subset: {f32_passed} of {f32_total}",
        passed.len(),
        cases.len()
    );
    let list_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/conformance/{backend}.txt"));
    let mut list = String::new();
    for name in &passed {
        list.push_str(name);
        list.push('\n');
    }
    if std::env::var_os("BLESS").is_some() {
        fs::write(&list_path, list).expect("the pass list can be written");
        return;
    }
    let expected_text = fs::read_to_string(&list_path).unwrap_or_default();
    let expected: BTreeSet<&str> = expected_text.lines().filter(|l| !l.is_empty()).collect();
    let regressed: Vec<String> = expected
        .difference(&passed)
        .map(|n| {
            format!(
                "{n}: {}",
                results
                    .get(*n)
                    .and_then(|r| r.clone().err())
                    .unwrap_or_else(|| "missing".into())
            )
        })
        .collect();
    let new: Vec<&&str> = passed.difference(&expected).take(20).collect();
    let new_count = passed.difference(&expected).count();
    assert!(
        regressed.is_empty() && new_count == 0,
        "{backend}: {} expected passes now fail:\n{}\n{} cases pass that {} does not list (re-run with BLESS=1), first: {:?}",
        regressed.len(),
        regressed.join("\n"),
        new_count,
        list_path.display(),
        new
    );
}

#[test]
fn node_suite_interp() {
    check_backend(Backend::Interp);
}

#[test]
fn node_suite_cpu() {
    check_backend(Backend::Cpu);
}

#[test]
fn node_suite_gpu() {
    if kiln_gpu::test_device().is_none() {
        return;
    }
    check_backend(Backend::Gpu);
}
