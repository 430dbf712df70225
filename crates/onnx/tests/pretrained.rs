//! Real pretrained models shipped in PyPI wheels (fixtures/onnx/pretrained/README.md names
//! each source and license; fixtures/gen/gen_pretrained.py writes the fixtures) import,
//! compile on every available backend and match ONNX Runtime's outputs on deterministic
//! inputs within 1e-4 of each output's scale.

use kiln::{Array, Backend};
use kiln_onnx::{ImportOptions, import_file};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/onnx/pretrained")
        .join(name)
}

fn npy(name: &str) -> Array {
    kiln::npy::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every numbered `<model>.<kind><k>.npy`, in order.
fn numbered(model: &str, kind: &str) -> Vec<Array> {
    (0..)
        .map(|k| format!("{model}.{kind}{k}.npy"))
        .take_while(|n| fixture(n).is_file())
        .map(|n| npy(&n))
        .collect()
}

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Interp, Backend::Cpu];
    if kiln_gpu::test_device().is_some() {
        b.push(Backend::Gpu);
    }
    b
}

/// Imports `model` with `dims` fixed, runs it on every backend and compares each output
/// with ONNX Runtime's; returns the worst error relative to scale per backend.
fn check(model: &str, dims: &[(&str, u64)]) {
    let options = ImportOptions {
        dims: dims.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        ..ImportOptions::default()
    };
    let imported = import_file(&fixture(&format!("{model}.onnx")), &options)
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    let xs = numbered(model, "in");
    let want = numbered(model, "out");
    assert_eq!(imported.inputs.len(), xs.len(), "{model}: inputs");
    assert_eq!(imported.outputs.len(), want.len(), "{model}: outputs");
    let feeds: Vec<(&str, &Array)> = imported
        .inputs
        .iter()
        .map(|(n, _)| n.as_str())
        .zip(&xs)
        .collect();
    for backend in backends() {
        let mut exe = imported
            .compile(backend)
            .unwrap_or_else(|e| panic!("{model} on {backend}: {e}"));
        let got = exe
            .run(&feeds)
            .unwrap_or_else(|e| panic!("{model} on {backend}: {e}"));
        assert_eq!(got.len(), want.len(), "{model} on {backend}");
        for ((name, g), w) in got.iter().zip(&want) {
            assert_eq!(g.shape(), w.shape(), "{model} on {backend}: `{name}`");
            let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
            let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            println!(
                "{model} on {backend}: `{name}` max abs error {worst:.3e} (scale {scale:.3e})"
            );
            assert!(
                worst <= 1e-4 * scale,
                "{model} on {backend}: `{name}` max abs error {worst} against ONNX Runtime (scale {scale})"
            );
        }
    }
}

/// Google's Magika file-type classifier (standard_v3_3): int32 byte tokens `[N, 2048]` →
/// probabilities over 214 content types. Its batch axis is fixed while importing: the model
/// slices every axis to `[0, 10^9)`, which on a symbolic axis is the whole axis only while
/// the batch stays below 10^9, and the importer keeps slices exact.
#[test]
fn magika_matches_onnx_runtime() {
    check("magika_standard_v3_3", &[("unk__214", 3)]);
}

/// PaddleOCR's text-direction classifier (a MobileNetV3) from RapidOCR: `[N, 3, 48, 192]`
/// → probabilities of 0° and 180°. The image size is declared unknown (`?`) and fixed while
/// importing (convolutions need known spatial sizes); the batch stays symbolic through the
/// same int32 shape round trip as Magika's.
#[test]
fn ppocr_direction_classifier_matches_onnx_runtime() {
    check("ppocr_mobile_v2_cls", &[("x_2", 48), ("x_3", 192)]);
}

/// Silero VAD over a sequence of 8 audio chunks: STFT as a convolution, a conv encoder and
/// an LSTM run over the chunks (its sequence axis is fixed to 8 while importing).
#[test]
fn silero_vad_sequence_matches_onnx_runtime() {
    check("silero_vad_16k_sequence", &[("sequence_length", 8)]);
}

/// Silero VAD, one chunk with the LSTM state carried in and out.
#[test]
fn silero_vad_single_chunk_matches_onnx_runtime() {
    check("silero_vad_openvino_16k", &[]);
}
