//! Round trips: modules covering every graph op and every kernel construct come back from
//! bytes and from disk equal (graph text, kernel plan, state bit for bit).

use crate::common;

use common::*;
use kiln_format::{from_bytes, to_bytes};

#[test]
fn every_op_and_every_kernel_construct_round_trip() {
    let m = every_construct_module();
    let bytes = to_bytes(&m).unwrap();
    let back = from_bytes(&bytes).unwrap();
    assert_same(&m, &back);
    // Encoding is deterministic: the loaded module encodes to the same bytes.
    assert_eq!(to_bytes(&back).unwrap(), bytes);
}

#[test]
fn interpreter_only_module_round_trips() {
    let m = interpreter_module();
    let back = from_bytes(&to_bytes(&m).unwrap()).unwrap();
    assert!(back.program.is_none());
    assert_same(&m, &back);
}

/// The kernel filetest fixtures that verify and have concrete state sizes.
fn fixture_modules() -> Vec<(String, kiln_format::Module)> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/kernel");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "kir")
                && !p.file_name().unwrap().to_string_lossy().starts_with("err_")
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        let program = kiln_kernel::verify(kiln_kernel::parse(&text).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if let Some(m) = module_around(program) {
            out.push((p.file_stem().unwrap().to_string_lossy().into_owned(), m));
        }
    }
    out
}

#[test]
fn kernel_fixtures_round_trip() {
    let modules = fixture_modules();
    assert!(
        modules.len() >= 8,
        "only {} fixtures wrapped",
        modules.len()
    );
    for (name, m) in modules {
        let back = from_bytes(&to_bytes(&m).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same(&m, &back);
    }
}

#[test]
fn tensors_are_64_byte_aligned_little_endian() {
    let m = every_construct_module();
    let bytes = to_bytes(&m).unwrap();
    let parts = kiln_format::layout::split(&bytes).unwrap();
    assert_eq!(parts.data_offset % 64, 0);
    assert_eq!(parts.data.len() % 64, 0);
    let h = header_of(&bytes);
    assert_eq!(h.state.len(), 4);
    for s in &h.state {
        assert_eq!(s.tensor.offset % 64, 0, "{}", s.name);
    }
    // `w` is first: its first element -1.0f32 is bf 80 00 00 little-endian at the section start.
    assert_eq!(h.state[0].name, "w");
    let w = h.state[0].tensor.offset as usize;
    assert_eq!(&parts.data[w..w + 8], &[0, 0, 0x80, 0xbf, 0, 0, 0x40, 0xbf]);
    // `step` holds i64::MIN + 3.
    let step = h.state.iter().find(|s| s.name == "step").unwrap();
    let at = step.tensor.offset as usize;
    assert_eq!(&parts.data[at..at + 8], &(i64::MIN + 3).to_le_bytes());
    // The trailer is the CRC-32 of everything before it.
    let n = bytes.len();
    assert_eq!(
        u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()),
        kiln_format::layout::crc32(&bytes[..n - 4])
    );
    assert_eq!(&bytes[..8], b"KILNMOD\0");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        kiln_format::FORMAT_VERSION
    );
}

#[test]
fn an_empty_module_round_trips() {
    let m = kiln_format::Module {
        metadata: kiln_format::Metadata::default(),
        signature: kiln_format::Signature::default(),
        graph: kiln_ir::Graph::new(),
        outputs: Vec::new(),
        updates: Vec::new(),
        program: None,
        state: Vec::new(),
    };
    let bytes = to_bytes(&m).unwrap();
    // Preamble, a small header padded to 64, no data, the trailer.
    assert_eq!(bytes.len(), 64 + 4);
    assert_same(&m, &from_bytes(&bytes).unwrap());
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-format-rt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn listing(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn save_and_load_through_the_file_system() {
    let d = scratch_dir("disk");
    let path = d.join("model.kiln");
    let m = every_construct_module();
    kiln_format::save(&m, &path).unwrap();
    assert_same(&m, &kiln_format::load(&path).unwrap());
    // Saving again replaces the file atomically and leaves nothing else behind.
    let m2 = interpreter_module();
    kiln_format::save(&m2, &path).unwrap();
    assert_same(&m2, &kiln_format::load(&path).unwrap());
    assert_eq!(listing(&d), vec!["model.kiln".to_string()]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_failed_save_leaves_no_temp_file_and_keeps_what_was_there() {
    let d = scratch_dir("fail");
    // The target is a directory: the rename fails after the temporary file was written.
    let target = d.join("occupied.kiln");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"still here").unwrap();
    let e = kiln_format::save(&every_construct_module(), &target).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "renaming temporary file onto {}: ",
            target.display()
        )),
        "{msg}"
    );
    assert_eq!(listing(&d), vec!["occupied.kiln".to_string()]);
    assert_eq!(
        std::fs::read(target.join("keep.txt")).unwrap(),
        b"still here"
    );
    // A missing directory fails before anything is written.
    let missing = d.join("no/such/dir/m.kiln");
    let e = kiln_format::save(&every_construct_module(), &missing).unwrap_err();
    assert!(e.to_string().starts_with("creating temporary file "), "{e}");
    // A module the writer refuses leaves an existing file untouched.
    let good = d.join("good.kiln");
    kiln_format::save(&interpreter_module(), &good).unwrap();
    let before = std::fs::read(&good).unwrap();
    let mut bad = every_construct_module();
    bad.metadata.producer = "p".repeat(5000);
    assert!(kiln_format::save(&bad, &good).is_err());
    assert_eq!(std::fs::read(&good).unwrap(), before);
    assert_eq!(
        listing(&d),
        vec!["good.kiln".to_string(), "occupied.kiln".to_string()]
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// The module of docs/file-format.md section 6: input `x: f32[N]`, parameter `w = [2.0]`,
/// output `y = x * w`, no kernel plan.
fn worked_example() -> kiln_format::Module {
    use kiln_format::{Metadata, Module, Signature, SymbolSpec, TensorSpec};
    use kiln_ir::{Array, BinaryOp, DType, Dim, Graph, Op, Shape};
    let n = Shape::new([Dim::sym("N")]);
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: n.clone(),
            },
            &[],
        )
        .unwrap();
    let w = g
        .add(
            Op::Parameter {
                name: "w".into(),
                dtype: DType::F32,
                shape: Shape::known(&[1]),
            },
            &[],
        )
        .unwrap();
    let y = g.add(Op::Binary(BinaryOp::Mul), &[x, w]).unwrap();
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        dtype: DType::F32,
        shape: n.clone(),
    };
    Module {
        metadata: Metadata {
            producer: "kiln 0.1.0".into(),
            created: 1_700_000_000,
            options: [("opt".to_string(), "2".to_string())].into(),
        },
        signature: Signature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
            symbols: vec![SymbolSpec {
                name: "N".into(),
                min: 1,
                max: None,
            }],
        },
        graph: g,
        outputs: vec![("y".into(), y)],
        updates: vec![],
        program: None,
        state: vec![("w".into(), Array::from_f32(&[1], vec![2.0]).unwrap())],
    }
}

#[test]
fn the_worked_example_of_the_format_docs_has_the_documented_nodes() {
    let bytes = to_bytes(&worked_example()).unwrap();
    let parts = kiln_format::layout::split(&bytes).unwrap();
    assert_eq!((bytes.len(), parts.header.len()), (260, 120));
    // Version 5 nodes: n0 `input` with attributes Name "x" and Type f32 ["N"], then its
    // stated type, operands and location.
    let n0: &[u8] = &[
        0x00, 0x01, 0x05, b'i', b'n', b'p', b'u', b't', 0x02, 0x0e, 0x01, b'x', 0x0c, 0x00, 0x01,
        0x01, b'N', 0x00, 0x01, 0x01, b'N', 0x00, 0x00,
    ];
    let at = parts
        .header
        .windows(n0.len())
        .position(|w| w == n0)
        .expect("n0 as documented");
    assert_eq!(at + 40, 0x54);
    assert_same(&worked_example(), &from_bytes(&bytes).unwrap());
}
