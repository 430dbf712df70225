//! Hostile `.onnx` bytes never panic the importer: deterministic mutations of the ONNX node
//! suite's models (fetched by crates/onnx/fetch-node-tests.sh) are imported and, when the
//! import succeeds, compiled on `interp`. Byte-level mutations test the protobuf decoding;
//! structure-aware ones (attribute values, dims, tensor shapes and node wiring set to
//! hostile values in a decoded model) reach the op importers. Each input must finish without a panic in under
//! [`PER_INPUT`], and every error must be one line. A failing input is saved under the
//! target directory's `fuzz-failures/` for replay. `KILN_FUZZ_CASES` sets the number of
//! mutations per target (default 20 000 byte-level, 10 000 structure-aware), `KILN_FUZZ_SEED` the generator's seed; with `KILN_FUZZ_TRACE` set
//! each input is written to `fuzz-failures/<target>-current.onnx` before it runs.

use kiln_format::fuzzing::Mutator;
use kiln_onnx::proto::{ModelProto, tensor_shape_proto::dimension, type_proto};
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest any single input may take.
const PER_INPUT: Duration = Duration::from_secs(2);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = match std::env::var_os("KILN_ONNX_NODE_TESTS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/onnx-node-tests/node"),
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "the ONNX node tests are not at {} ({e}); run crates/onnx/fetch-node-tests.sh",
                dir.display()
            )
        })
        .flatten()
        .map(|e| e.path().join("model.onnx"))
        .filter(|p| p.is_file())
        .collect();
    cases.sort();
    cases
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() <= 4096)
        .collect()
}

/// Imports (and compiles what imports); returns the error messages seen.
fn check(bytes: &[u8]) -> Vec<String> {
    kiln_onnx::fuzzing::import_errors(bytes)
}

/// A hostile integer: boundaries, small values, huge values.
fn hostile_int(m: &mut Mutator) -> i64 {
    const PICKS: [i64; 12] = [
        0,
        1,
        -1,
        2,
        -2,
        3,
        7,
        1 << 20,
        1 << 40,
        i64::MAX,
        i64::MIN,
        -(1 << 31),
    ];
    if m.below(4) == 0 {
        m.next_u64() as i64
    } else {
        PICKS[m.below(PICKS.len())]
    }
}

/// Sets one attribute, dim, tensor shape or node input of a decoded model to a hostile value.
fn mutate_structure(m: &mut Mutator, model: &mut ModelProto) {
    let Some(graph) = model.graph.as_mut() else {
        return;
    };
    match m.below(5) {
        0 | 1 if !graph.node.is_empty() => {
            let k = m.below(graph.node.len());
            let node = &mut graph.node[k];
            if node.attribute.is_empty() {
                return;
            }
            let a = m.below(node.attribute.len());
            let attr = &mut node.attribute[a];
            match m.below(4) {
                0 => attr.i = Some(hostile_int(m)),
                1 if !attr.ints.is_empty() => {
                    let j = m.below(attr.ints.len());
                    attr.ints[j] = hostile_int(m);
                }
                1 => attr.ints.push(hostile_int(m)),
                2 => attr.f = Some([f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30][m.below(5)]),
                _ => attr.ints.truncate(m.below(attr.ints.len() + 1)),
            }
        }
        2 if !graph.input.is_empty() => {
            let k = m.below(graph.input.len());
            if let Some(type_proto::Value::TensorType(t)) = graph.input[k]
                .r#type
                .as_mut()
                .and_then(|t| t.value.as_mut())
                && let Some(shape) = t.shape.as_mut()
            {
                if shape.dim.is_empty() || m.below(4) == 0 {
                    shape.dim.truncate(m.below(shape.dim.len() + 1));
                } else {
                    let j = m.below(shape.dim.len());
                    shape.dim[j].value = Some(dimension::Value::DimValue(hostile_int(m)));
                }
            }
        }
        3 if !graph.initializer.is_empty() => {
            let k = m.below(graph.initializer.len());
            let t = &mut graph.initializer[k];
            if t.dims.is_empty() || m.below(3) == 0 {
                t.dims.push(hostile_int(m));
            } else {
                let j = m.below(t.dims.len());
                t.dims[j] = hostile_int(m);
            }
        }
        _ if !graph.node.is_empty() => {
            let k = m.below(graph.node.len());
            let node = &mut graph.node[k];
            if m.below(2) == 0 {
                node.input.truncate(m.below(node.input.len() + 1));
            } else {
                node.input.push(String::new());
            }
        }
        _ => {}
    }
}

#[test]
fn structurally_mutated_models_never_panic_and_fail_in_one_line() {
    let seeds: Vec<ModelProto> = seeds()
        .iter()
        .filter_map(|b| ModelProto::decode(b.as_slice()).ok())
        .collect();
    assert!(seeds.len() > 500, "only {} seed models", seeds.len());
    let cases = env_u64("KILN_FUZZ_CASES", 10_000) as usize;
    let mut m = Mutator::new(env_u64("KILN_FUZZ_SEED", 0x5eed_0e11).max(1));
    let inputs = (0..cases).map(|_| {
        let mut model = seeds[m.below(seeds.len())].clone();
        for _ in 0..1 + m.below(3) {
            mutate_structure(&mut m, &mut model);
        }
        model.encode_to_vec()
    });
    drive("onnx-structure", inputs.collect());
}

#[test]
fn mutated_models_never_panic_and_fail_in_one_line() {
    let seeds = seeds();
    assert!(seeds.len() > 500, "only {} seed models", seeds.len());
    let cases = env_u64("KILN_FUZZ_CASES", 20_000) as usize;
    let mut mutator = Mutator::new(env_u64("KILN_FUZZ_SEED", 0x5eed_0e11).max(1));
    drive(
        "onnx-bytes",
        (0..cases).map(|_| mutator.mutate(&seeds)).collect(),
    );
}

/// Runs every input; fails naming the saved input on the first panic, slow input or
/// multi-line error.
fn drive(target: &str, inputs: Vec<Vec<u8>>) {
    let failures = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let start = Instant::now();
    let (mut imported, mut slowest) = (0usize, Duration::ZERO);
    let cases = inputs.len();
    let trace = std::env::var_os("KILN_FUZZ_TRACE").is_some();
    for (i, input) in inputs.into_iter().enumerate() {
        if trace {
            // Replay a crash that kills the process: the input being checked.
            std::fs::create_dir_all(&failures).expect("the failure directory can be created");
            std::fs::write(failures.join(format!("{target}-current.onnx")), &input)
                .expect("the current input can be saved");
        }
        let t = Instant::now();
        let result = std::panic::catch_unwind(|| check(&input));
        let took = t.elapsed();
        slowest = slowest.max(took);
        let bad = match &result {
            Err(_) => Some("panicked".to_string()),
            Ok(_) if took > PER_INPUT => Some(format!("took {took:?}, over {PER_INPUT:?}")),
            Ok(errors) => errors
                .iter()
                .find(|e| e.contains('\n'))
                .map(|e| format!("gave a multi-line error: {e:?}")),
        };
        if let Some(why) = bad {
            std::fs::create_dir_all(&failures).expect("the failure directory can be created");
            let path = failures.join(format!("{target}-{i}.onnx"));
            std::fs::write(&path, &input).expect("the failing input can be saved");
            panic!(
                "{target}: mutated model {i} {why} (saved to {})",
                path.display()
            );
        }
        if result.is_ok_and(|e| e.is_empty()) {
            imported += 1;
        }
    }
    eprintln!(
        "{target}: {cases} mutated models in {:.2?} ({imported} imported and compiled), slowest {slowest:.2?}",
        start.elapsed()
    );
}
