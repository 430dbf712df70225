//! Every error class of the loader and writer, asserted with its message.

use crate::common;

use common::*;
use kiln_format::v1::{AttrV5, BufferKindV1, DTypeV1, ExprV1, IndexNodeV1, KernelV1, OpV5};
use kiln_format::{FormatError, Module, from_bytes, layout, load, to_bytes};

fn saved() -> Vec<u8> {
    to_bytes(&every_construct_module()).unwrap()
}

fn err(bytes: &[u8]) -> FormatError {
    match from_bytes(bytes) {
        Ok(_) => panic!("a malformed file loaded"),
        Err(e) => e,
    }
}

fn msg(bytes: &[u8]) -> String {
    let m = err(bytes).to_string();
    assert!(!m.contains('\n'), "message is not one line: {m}");
    m
}

fn set_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn not_a_kiln_file() {
    assert_eq!(
        msg(b"GIF89a\x01\x00 and more bytes of a picture"),
        r#"not a .kiln file: starts with "GIF89a\x01\x00", expected "KILNMOD\x00""#
    );
    assert!(matches!(err(b"PK"), FormatError::BadMagic { .. }));
    assert_eq!(
        msg(b""),
        "file is truncated: it has 0 bytes but 8 are needed for the magic bytes"
    );
}

#[test]
fn future_and_past_versions_are_rejected_with_numbers() {
    let mut bytes = saved();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    let e = err(&bytes);
    assert!(matches!(
        e,
        FormatError::UnsupportedVersion {
            found: 7,
            oldest: 1,
            supported: 5,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "unsupported .kiln format version 7: this build reads versions 1 to 5 (written by a newer kiln)"
    );
    bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        msg(&bytes),
        "unsupported .kiln format version 0: this build reads versions 1 to 5 (written by an older kiln)"
    );
}

#[test]
fn truncation_is_named_with_sizes() {
    let bytes = saved();
    assert_eq!(
        msg(&bytes[..30]),
        "file is truncated: it has 30 bytes but 44 are needed for the preamble and checksum"
    );
    let h = layout::split(&bytes).unwrap();
    let header_len = h.header.len();
    let cut = bytes.len() - 100;
    assert_eq!(
        msg(&bytes[..cut]),
        format!(
            "file is truncated: it has {cut} bytes but {} are needed for a {header_len}-byte header, a {}-byte data section at offset {} and the checksum",
            bytes.len(),
            h.data.len(),
            h.data_offset
        )
    );
}

#[test]
fn corruption_fails_the_checksum() {
    let mut bytes = saved();
    bytes[100] ^= 0x10;
    let e = err(&bytes);
    let FormatError::Checksum {
        stored,
        computed,
        covered,
    } = e
    else {
        panic!("expected a checksum error, got {e}");
    };
    assert_eq!(covered as usize, bytes.len() - 4);
    assert_ne!(stored, computed);
    assert_eq!(
        e.to_string(),
        format!(
            "checksum mismatch: trailer says {stored:#010x}, bytes 0..{covered} hash to {computed:#010x} (file corrupted or truncated)"
        )
    );
}

#[test]
fn framing_fields_are_checked() {
    let good = saved();
    let mut bytes = good.clone();
    set_u64(&mut bytes, 16, 1 << 32);
    layout::reseal(&mut bytes);
    assert_eq!(
        msg(&bytes),
        "header: length in bytes 4294967296 exceeds the limit 16777216"
    );
    let mut bytes = good.clone();
    set_u64(&mut bytes, 32, u64::MAX - 63);
    layout::reseal(&mut bytes);
    assert_eq!(
        msg(&bytes),
        "data section: length in bytes 18446744073709551552 exceeds the limit 34359738368"
    );
    let mut bytes = good.clone();
    bytes[12] = 1;
    layout::reseal(&mut bytes);
    assert_eq!(
        msg(&bytes),
        "preamble: flags are 0x00000001, but version 5 defines none (must be 0)"
    );
    let mut bytes = good.clone();
    let offset = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
    set_u64(&mut bytes, 24, offset + 64);
    layout::reseal(&mut bytes);
    let header_len = layout::split(&good).unwrap().header.len();
    assert_eq!(
        msg(&bytes),
        format!(
            "preamble: data section offset {} should be {offset} (the {header_len}-byte header's end {} rounded up to 64)",
            offset + 64,
            header_len + 40
        )
    );
    // A module whose header does not end on a 64-byte boundary, so it is padded.
    let mut bytes = [saved(), to_bytes(&control_flow_module()).unwrap()]
        .into_iter()
        .find(|b| {
            let p = layout::split(b).unwrap();
            40 + p.header.len() < p.data_offset as usize
        })
        .expect("a test module whose header needs padding");
    let pad_at = 40 + layout::split(&bytes).unwrap().header.len();
    bytes[pad_at] = 0xaa;
    layout::reseal(&mut bytes);
    assert_eq!(
        msg(&bytes),
        format!("header padding: byte {pad_at} is 0xaa, expected 0")
    );
}

#[test]
fn header_decode_errors_give_the_position() {
    let good = saved();
    let parts = layout::split(&good).unwrap();
    let header = parts.header.to_vec();
    let n = header.len();
    let short = layout::assemble(&header[..n - 1], parts.data).unwrap();
    let e = err(&short);
    assert!(matches!(e, FormatError::Decode { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "header does not decode at header byte {} of {}: the header ends 1 byte(s) early",
            n - 1,
            n - 1
        )
    );
    let mut long = header.clone();
    long.push(0);
    let long = layout::assemble(&long, parts.data).unwrap();
    assert_eq!(
        msg(&long),
        format!(
            "header does not decode at header byte {n} of {}: 1 unused byte(s) after the header's last field",
            n + 1
        )
    );
    // The producer string claims more bytes than the header limit.
    let mut huge = header.clone();
    huge[0] = 253;
    huge.splice(1..1, u64::MAX.to_le_bytes());
    let huge = layout::assemble(&huge, parts.data).unwrap();
    assert!(
        msg(&huge).starts_with("header does not decode at header byte 9 of "),
        "{}",
        msg(&huge)
    );
}

#[test]
fn state_data_outside_the_data_section() {
    let bytes = rewrite(&saved(), |h, _| {
        let w = h.state.iter_mut().find(|s| s.name == "w").unwrap();
        w.tensor.offset = 1 << 20;
    });
    let data_len = layout::split(&bytes).unwrap().data.len();
    assert_eq!(
        msg(&bytes),
        format!(
            "state tensor w: data range 1048576..1048640 exceeds the data section size {data_len}"
        )
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.state[0].tensor.offset = u64::MAX - 63;
    });
    assert_eq!(
        msg(&bytes),
        format!(
            "state tensor w: data range 18446744073709551552..overflow exceeds the data section size {data_len}"
        )
    );
}

#[test]
fn tensor_references_are_checked_before_allocation() {
    let bytes = rewrite(&saved(), |h, _| {
        h.state[0].tensor.len = 9_999_999;
    });
    assert_eq!(
        msg(&bytes),
        "state tensor w: data length 9999999 bytes does not match f32[4, 4], which needs 64"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.state[0].tensor.shape = vec![u64::MAX, u64::MAX];
    });
    assert_eq!(
        msg(&bytes),
        "state tensor w: dimension 18446744073709551615 exceeds the limit 1099511627776"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.state[0].tensor.shape = vec![1 << 40, 1 << 40];
    });
    assert_eq!(
        msg(&bytes),
        "state tensor w: element count 18446744073709551615 exceeds the limit 8589934592"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.state[0].tensor.offset += 4;
    });
    assert!(
        msg(&bytes).ends_with("is not a multiple of 64"),
        "{}",
        msg(&bytes)
    );
    let bytes = rewrite(&saved(), |h, _| {
        let other = h.state[1].tensor.offset;
        h.state[0].tensor.offset = other;
    });
    assert!(
        msg(&bytes).contains(": data range ") && msg(&bytes).contains(" overlaps "),
        "{}",
        msg(&bytes)
    );
}

#[test]
fn padding_and_bool_bytes_are_checked() {
    let bytes = rewrite(&saved(), |_, data| {
        let last = data.len() - 1;
        data[last] = 9;
    });
    let data_len = layout::split(&bytes).unwrap().data.len();
    assert_eq!(
        msg(&bytes),
        format!(
            "data section: padding byte {} is 0x09, expected 0",
            data_len - 1
        )
    );
    let bytes = rewrite(&saved(), |h, data| {
        let node = h
            .graph
            .nodes
            .iter()
            .find(|n| matches!(&n.op, OpV5::Constant(r) if r.dtype == DTypeV1::Bool))
            .unwrap();
        let OpV5::Constant(r) = &node.op else {
            unreachable!()
        };
        data[r.offset as usize + 1] = 2;
    });
    assert_eq!(
        msg(&bytes),
        "graph node n6 constant: bool element 1 is stored as 2, not 0 or 1"
    );
}

#[test]
fn limits_are_named() {
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].shape = vec!["1".to_string(); 40];
    });
    assert_eq!(
        msg(&bytes),
        "signature input x: rank 40 exceeds the limit 32"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].shape[1] = "N^9".to_string();
    });
    assert_eq!(
        msg(&bytes),
        "signature input x: dimension \"N^9\" has the exponent 9, over the limit 8"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].shape[1] = "99999999999999999999".to_string();
    });
    assert_eq!(
        msg(&bytes),
        "signature input x: dimension \"99999999999999999999\" has the constant 99999999999999999999, over the limit 1099511627776"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.graph.nodes.last_mut().unwrap().id = 1 << 21;
    });
    let nodes = header_of(&saved()).graph.nodes.len();
    let limit = kiln_format::limits::max_node_id(nodes);
    assert_eq!(limit, nodes as u64 * 16 + 65536);
    assert_eq!(
        msg(&bytes),
        format!("graph node n2097152: id 2097152 exceeds the limit {limit}")
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].shape = vec!["1".to_string(); (1 << 19) + 1];
    });
    let total = kiln_format::limits::MAX_TOTAL_DIMS + 1 + 70;
    let m = msg(&bytes);
    assert!(m.starts_with("header: dimension count "), "{m}");
    assert!(m.ends_with(" exceeds the limit 524288"), "{m}");
    let counted: u64 = m["header: dimension count ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(counted > total - 70 && counted < total + 400, "{m}");
    // Sparse ids: a small graph cannot make the loader allocate a slot per id up to 2^20.
    let bytes = rewrite(&saved(), |h, _| {
        h.graph.nodes.last_mut().unwrap().id = (1 << 20) - 1;
    });
    assert_eq!(
        msg(&bytes),
        format!("graph node n1048575: id 1048575 exceeds the limit {limit}")
    );
    let bytes = rewrite(&saved(), |h, _| {
        for n in &mut h.graph.nodes {
            if let OpV5::Op { name, attrs } = &mut n.op
                && name == "conv2d"
                && let AttrV5::Hw(stride) = &mut attrs[0]
            {
                stride[0] = u64::MAX;
            }
        }
    });
    assert!(
        msg(&bytes).ends_with(": factor attribute 18446744073709551615 exceeds the limit 1048576"),
        "{}",
        msg(&bytes)
    );
}

#[test]
fn dims_must_be_canonical_and_declared() {
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].shape[0] = "1*N".to_string();
    });
    assert_eq!(
        msg(&bytes),
        "signature input x: dimension \"1*N\" is not in canonical form (expected \"N\")"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].shape[0] = "M".to_string();
    });
    assert_eq!(
        msg(&bytes),
        "signature input x: symbol M is not declared in the signature"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].shape[0] = "N/2".to_string();
    });
    assert_eq!(
        msg(&bytes),
        "signature input x: dimension \"N/2\" has the unexpected character '/'"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.symbols[0].max = Some(0);
    });
    assert_eq!(msg(&bytes), "signature symbol N: range 1..=0 is empty");
}

#[test]
fn graph_structure_is_checked() {
    let bytes = rewrite(&saved(), |h, _| {
        h.graph.nodes[5].operands = vec![999_999];
    });
    assert_eq!(
        msg(&bytes),
        "graph node n5: operand n999999 is not a node of the graph"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.graph.nodes.swap(2, 3);
    });
    assert_eq!(
        msg(&bytes),
        "graph node n2: ids are not strictly increasing (n2 follows n3)"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.graph.nodes[0].loc.as_mut().unwrap().file = 7;
    });
    assert_eq!(
        msg(&bytes),
        "graph node n0: source file index 7 is out of range (the table has 1)"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.outputs[0].node = 4000;
    });
    assert_eq!(
        msg(&bytes),
        "output y: node n4000 is not a node of the graph"
    );
}

#[test]
fn the_graph_is_reverified() {
    let bytes = rewrite(&saved(), |h, _| {
        let mm = h
            .graph
            .nodes
            .iter_mut()
            .find(|n| is_op(&n.op, "matmul"))
            .unwrap();
        mm.dtype = DTypeV1::F64;
    });
    let e = err(&bytes);
    let m = e.to_string();
    assert!(matches!(e, FormatError::GraphVerify { .. }));
    assert!(
        m.starts_with("graph fails verification (2 errors): n"),
        "{m}"
    );
    assert!(
        m.contains(" (matmul): stated type f64[N, 4] differs from the inferred f32[N, 4]; "),
        "{m}"
    );
    // A cycle: the matmul's first operand becomes `y`, which is computed from the matmul.
    let header = header_of(&saved());
    let y = header.outputs[0].node;
    let matmul_id = header
        .graph
        .nodes
        .iter()
        .find(|n| is_op(&n.op, "matmul"))
        .unwrap()
        .id;
    let bytes = rewrite(&saved(), |h, _| {
        let mm = h
            .graph
            .nodes
            .iter_mut()
            .find(|n| is_op(&n.op, "matmul"))
            .unwrap();
        mm.operands[0] = y;
    });
    let m = msg(&bytes);
    assert!(m.starts_with("graph fails verification ("), "{m}");
    assert!(
        m.contains(&format!("dependency cycle through n{matmul_id}, n{y}")),
        "{m}"
    );
}

fn kernel_body_mut(h: &mut kiln_format::v1::HeaderV1, k: usize) -> &mut kiln_format::v1::BodyV1 {
    match &mut h.program.as_mut().unwrap().kernels[k] {
        KernelV1::Loop { body, .. } => body,
        KernelV1::Matmul { epilogue, .. } | KernelV1::Conv2d { epilogue, .. } => epilogue,
    }
}

#[test]
fn every_kernel_is_reverified() {
    // k4 = loop [16] { v0 = load b1[i0] ... }: read one past the end.
    let bytes = rewrite(&saved(), |h, _| {
        let body = kernel_body_mut(h, 4);
        let ExprV1::Load(l) = &mut body.values[0] else {
            panic!("k4 v0 is a load")
        };
        l.index = vec![
            IndexNodeV1::Var(0),
            IndexNodeV1::Dim("1".into()),
            IndexNodeV1::Add(0, 1),
        ];
    });
    let e = err(&bytes);
    assert!(matches!(e, FormatError::ProgramVerify { count: 1, .. }));
    assert_eq!(
        e.to_string(),
        "kernel plan fails verification (1 error): k4: v0 = load b1[i0 + 1]: index may exceed the last element of b1: cannot prove 16 <= 15"
    );
    let bytes = rewrite(&saved(), |h, _| {
        let body = kernel_body_mut(h, 4);
        let ExprV1::Load(l) = &mut body.values[0] else {
            panic!("k4 v0 is a load")
        };
        l.buffer = 1000;
    });
    assert!(
        msg(&bytes)
            .starts_with("kernel plan fails verification (1 error): k4: v0 = load b1000[i0]: "),
        "{}",
        msg(&bytes)
    );
    let bytes = rewrite(&saved(), |h, _| {
        let body = kernel_body_mut(h, 4);
        let ExprV1::Load(l) = &mut body.values[0] else {
            panic!("k4 v0 is a load")
        };
        l.index = vec![IndexNodeV1::Var(0), IndexNodeV1::Add(0, 0)];
    });
    assert_eq!(
        msg(&bytes),
        "kernel plan kernel k4 v0: index node 0 is used twice (an index expression is a tree)"
    );
    let bytes = rewrite(&saved(), |h, _| {
        let body = kernel_body_mut(h, 4);
        let ExprV1::Load(l) = &mut body.values[0] else {
            panic!("k4 v0 is a load")
        };
        let mut nodes = vec![IndexNodeV1::Var(0)];
        for i in 0..70u32 {
            nodes.push(IndexNodeV1::Dim("0".into()));
            nodes.push(IndexNodeV1::Add(2 * i, 2 * i + 1));
        }
        l.index = nodes;
    });
    assert_eq!(
        msg(&bytes),
        "kernel plan kernel k4 v0: index expression depth 65 exceeds the limit 64"
    );
}

#[test]
fn cross_checks_name_the_mismatch() {
    let bytes = rewrite(&saved(), |h, data| {
        let b = h.state.iter().position(|s| s.name == "b").unwrap();
        let t = h.state.remove(b).tensor;
        data[t.offset as usize..(t.offset + t.len) as usize].fill(0);
    });
    assert_eq!(
        msg(&bytes),
        "graph node n2: parameter b has no state tensor"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.state[1].tensor.dtype = DTypeV1::I32;
    });
    assert_eq!(
        msg(&bytes),
        "state tensor b: is i32[4] but parameter node n2 is f32[4]"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs[0].dtype = DTypeV1::F64;
    });
    assert_eq!(
        msg(&bytes),
        "signature input x: declared f64[N, 4] but graph input n0 is f32[N, 4]"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.inputs.clear();
    });
    assert_eq!(
        msg(&bytes),
        "graph node n0: input x is missing from the signature"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.signature.outputs.swap(0, 1);
    });
    assert_eq!(
        msg(&bytes),
        "signature output neg_y: the module's output in this position is y"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.program.as_mut().unwrap().symbols[0].min = 2;
    });
    assert_eq!(
        msg(&bytes),
        "kernel plan symbol N: the signature allows >= 1 but the plan is verified only for >= 2"
    );
    let bytes = rewrite(&saved(), |h, _| {
        let p = h.program.as_mut().unwrap();
        p.buffers[0].size = "N*8".to_string();
    });
    assert_eq!(
        msg(&bytes),
        "kernel plan buffer b0: is f32[N*8] but signature input x is f32[N*4]"
    );
    let bytes = rewrite(&saved(), |h, _| {
        let p = h.program.as_mut().unwrap();
        for b in &mut p.buffers {
            if b.kind == BufferKindV1::Output("neg_y".into()) {
                b.kind = BufferKindV1::Output("other".into());
            }
        }
    });
    assert_eq!(
        msg(&bytes),
        "kernel plan buffer b17: output other is neither a signature output nor update:<state> of an update"
    );
    let bytes = rewrite(&saved(), |h, _| {
        h.updates[0].node = h.outputs[0].node;
    });
    assert_eq!(
        msg(&bytes),
        format!(
            "update w: node n{} is f32[N, 4] but the state tensor is f32[4, 4]",
            header_of(&saved()).outputs[0].node
        )
    );
}

#[test]
fn unencodable_modules_are_refused_by_the_writer() {
    let mut m: Module = every_construct_module();
    m.state[0].0 = "a".repeat(4097);
    let e = to_bytes(&m).unwrap_err();
    assert!(matches!(e, FormatError::Encode { .. }));
    let s = e.to_string();
    assert!(
        s.starts_with("cannot encode module: state tensor aaaa"),
        "{s}"
    );
    assert!(
        s.ends_with(": name length in bytes 4097 exceeds the limit 4096"),
        "{s}"
    );
}

#[test]
fn the_writer_applies_the_loaders_rules() {
    let mut m = every_construct_module();
    let n = kiln_ir::Dim::sym("N");
    let n9 = (0..8).fold(n.clone(), |acc, _| &acc * &n);
    m.signature.inputs[0].shape = kiln_ir::Shape::new([n9, kiln_ir::Dim::known(4)]);
    assert_eq!(
        to_bytes(&m).unwrap_err().to_string(),
        "cannot encode module: signature input x: dimension \"N^9\" has the exponent 9, over the limit 8"
    );
    let mut m = every_construct_module();
    m.signature.symbols[0].name = "not a name".to_string();
    assert_eq!(
        to_bytes(&m).unwrap_err().to_string(),
        "cannot encode module: signature symbol \"not a name\": symbol name \"not a name\" is not an identifier"
    );
    let mut m = every_construct_module();
    m.state[1].0 = "line\nbreak".to_string();
    assert_eq!(
        to_bytes(&m).unwrap_err().to_string(),
        "cannot encode module: state tensor \"line\\nbreak\": name \"line\\nbreak\" contains a control character"
    );
}

#[test]
fn missing_files_are_io_errors() {
    let path = std::env::temp_dir().join("kiln-format-no-such-file.kiln");
    let e = load(&path).unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "opening {}: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn op_names_are_bounded_and_unknown_ones_named() {
    let unary_node = |h: &kiln_format::v1::HeaderV1| {
        h.graph
            .nodes
            .iter()
            .position(|n| is_op(&n.op, "neg"))
            .expect("every_construct has a unary node")
    };
    let bytes = rewrite(&saved(), |h, _| {
        let i = unary_node(h);
        h.graph.nodes[i].op = op_v5("no_such_op", vec![]);
    });
    let m = msg(&bytes);
    assert!(
        m.starts_with("graph node n") && m.ends_with(": unknown graph op \"no_such_op\""),
        "{m}"
    );
    let bytes = rewrite(&saved(), |h, _| {
        let i = unary_node(h);
        h.graph.nodes[i].op = op_v5(&"x".repeat(65), vec![]);
    });
    let m = msg(&bytes);
    assert!(
        m.ends_with(": op name length in bytes 65 exceeds the limit 64"),
        "{m}"
    );
    let bytes = rewrite(&saved(), |h, _| {
        let body = kernel_body_mut(h, 0);
        let v = body
            .values
            .iter_mut()
            .find(|e| matches!(e, ExprV1::Binary(..)))
            .expect("kernel k0 has a binary value");
        if let ExprV1::Binary(b, ..) = v {
            *b = "add\u{0}".to_string();
        }
    });
    let m = msg(&bytes);
    assert!(m.contains("unknown binary op \"add\\0\""), "{m}");
}

/// The first node of the top-level graph whose op is named `name`.
fn node_index(h: &kiln_format::v1::HeaderV1, name: &str) -> usize {
    h.graph
        .nodes
        .iter()
        .position(|n| is_op(&n.op, name))
        .unwrap_or_else(|| panic!("every_construct has a {name} node"))
}

#[test]
fn version_5_attributes_are_bounded_by_their_kind() {
    let attrs_of = |name: &'static str, f: fn(&mut Vec<AttrV5>)| {
        rewrite(&saved(), move |h, _| {
            let i = node_index(h, name);
            if let OpV5::Op { attrs, .. } = &mut h.graph.nodes[i].op {
                f(attrs);
            }
        })
    };
    let ends = |bytes: &[u8], tail: &str| {
        let m = msg(bytes);
        assert!(m.starts_with("graph node n") && m.ends_with(tail), "{m}");
    };
    ends(
        &attrs_of("concat", |a| a[0] = AttrV5::Axis(32)),
        ": axis 32 exceeds the limit 31",
    );
    ends(
        &attrs_of("permute", |a| a[0] = AttrV5::Axes(vec![0; 33])),
        ": axis count 33 exceeds the limit 32",
    );
    ends(
        &attrs_of("pad", |a| a[0] = AttrV5::Pairs(vec![(0, 1 << 41)])),
        &format!(
            ": size attribute {} exceeds the limit {}",
            1u64 << 41,
            1u64 << 40
        ),
    );
    ends(
        &attrs_of("window_max", |a| a[0] = AttrV5::Sizes(vec![1; 40])),
        ": size list length 40 exceeds the limit 32",
    );
    ends(
        &attrs_of("input", |a| a[0] = AttrV5::Name("a\nb".into())),
        ": name \"a\\nb\" contains a control character",
    );
    ends(
        &attrs_of("input", |a| a[1] = AttrV5::Shape(vec!["N".into()])),
        ": `input` attribute `type` takes a value of kind tensor type, got shape",
    );
    ends(
        &attrs_of("concat", |a| a.push(AttrV5::Bool(true))),
        ": `concat` takes 1 attribute(s), got 2",
    );
    ends(
        &attrs_of("concat", |a| {
            a.extend(std::iter::repeat_n(AttrV5::Bool(true), 16))
        }),
        ": attribute count 17 exceeds the limit 16",
    );
    ends(
        &rewrite(&saved(), |h, _| {
            let i = node_index(h, "matmul");
            h.graph.nodes[i].op = op_v5("const", vec![]);
        }),
        ": unknown graph op \"const\"",
    );
    // Attributes that are in bounds but wrong for the operands are the verifier's.
    let e = err(&attrs_of("concat", |a| a[0] = AttrV5::Axis(31)));
    assert!(matches!(e, FormatError::GraphVerify { .. }), "{e}");
}
