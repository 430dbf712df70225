//! Tests of the `.npy` reader on hostile input and of the writer on planted links.

use super::*;

/// A `.npy` file (version 1.0) with `header` padded as NumPy pads it, then `data`.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn msg(bytes: &[u8]) -> String {
    let e = from_bytes(bytes).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    e
}

#[test]
fn every_dtype_round_trips() {
    for a in [
        Array::from_f32(&[2, 3], vec![1.0, -2.5, 3.0, 4.0, 5.0, f32::NAN]).unwrap(),
        Array::from_f64(&[3], vec![1.0, -2.5, 1e300]).unwrap(),
        Array::from_i32(&[1, 2], vec![-7, 9]).unwrap(),
        Array::from_i64(&[2], vec![i64::MIN, i64::MAX]).unwrap(),
        Array::from_u32(&[], vec![u32::MAX]).unwrap(),
        Array::from_bool(&[2, 0], vec![]).unwrap(),
        Array::from_bool(&[3], vec![true, false, true]).unwrap(),
    ] {
        let back = from_bytes(&to_bytes(&a).unwrap()).unwrap();
        assert!(back.bit_eq(&a), "{a:?} -> {back:?}");
    }
}

#[test]
fn big_endian_and_fortran_order_are_read() {
    let mut data = Vec::new();
    for v in [1i32, 2, 3, 4, 5, 6] {
        data.extend_from_slice(&v.to_be_bytes());
    }
    let a = from_bytes(&npy(
        "{'descr': '>i4', 'fortran_order': True, 'shape': (2L, 3L), }",
        &data,
    ))
    .unwrap();
    assert_eq!(a, Array::from_i32(&[2, 3], vec![1, 3, 5, 2, 4, 6]).unwrap());
    let b = from_bytes(&npy(
        r#"{"shape": (3,), "fortran_order": False, "descr": "|b1"}"#,
        &[1, 0, 1],
    ))
    .unwrap();
    assert_eq!(b, Array::from_bool(&[3], vec![true, false, true]).unwrap());
}

/// The header that made npyz's parser take minutes: 30 nested `[` in `descr`. It is
/// refused by the linear parser at once.
#[test]
fn deeply_nested_headers_are_refused_at_once() {
    let nested = format!(
        "{{'descr': {}'<f4'{}, 'fortran_order': False, 'shape': (1,), }}",
        "[".repeat(30),
        "]".repeat(30)
    );
    assert_eq!(
        msg(&npy(&nested, &[0; 4])),
        "<bytes>: header: structured dtypes are not supported"
    );
    let deep_shape = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}1,{}, }}",
        "(".repeat(30),
        ")".repeat(30)
    );
    assert_eq!(
        msg(&npy(&deep_shape, &[0; 4])),
        "<bytes>: header: expected a dimension at byte 51, found '('"
    );
}

#[test]
fn malformed_headers_give_one_line_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }",
            "dtype `f2` is not supported (expected f4, f8, i4, i8, u4 or b1)",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, }",
            "key 'shape' is missing",
        ),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
            "key 'descr' at byte 17 appears twice",
        ),
        (
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }",
            "fortran_order is `Maybe`, not True or False",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
            "unknown key 'x' at byte 56",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} trailing",
            "expected the end of the header at byte 56, found 't'",
        ),
        (
            "{'descr': '<f4\n', 'fortran_order': False, 'shape': (1,), }",
            "dtype `f4\\n` is not supported (expected f4, f8, i4, i8, u4 or b1)",
        ),
        (
            "{'descr': 'f4', 'fortran_order': False, 'shape': (1,), }",
            "dtype `f4` has no byte order",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
            "dimension at byte 51 is too large",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2\u{e9}), }",
            "byte 55 is 0xc3, not printable ASCII",
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(
            msg(&npy(header, &[0; 4])),
            format!("<bytes>: header: {expected}"),
            "{header}"
        );
    }
    let rank33 = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        "1,".repeat(33)
    );
    assert_eq!(
        msg(&npy(&rank33, &[0; 4])),
        "<bytes>: header: rank exceeds the limit 32"
    );
}

#[test]
fn framing_errors_give_one_line_errors() {
    let good = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        &[0; 8],
    );
    assert_eq!(
        msg(b"PK\x03\x04 a zip file"),
        r#"<bytes>: not a .npy file: starts with "PK\x03\x04 a", expected "\x93NUMPY""#
    );
    assert_eq!(
        msg(&good[..4]),
        "<bytes>: truncated: 4 bytes, the magic bytes need 6"
    );
    assert_eq!(
        msg(&good[..9]),
        "<bytes>: truncated: 9 bytes, the header length needs 10"
    );
    assert_eq!(
        msg(&good[..40]),
        "<bytes>: truncated: 40 bytes, the 118-byte header needs 128"
    );
    assert_eq!(
        msg(&good[..130]),
        "<bytes>: file has 130 bytes, but its header and f32[2] data need 136"
    );
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        msg(&longer),
        "<bytes>: file has 137 bytes, but its header and f32[2] data need 136"
    );
    let mut v9 = good.clone();
    v9[6] = 9;
    assert_eq!(msg(&v9), "<bytes>: unsupported .npy version 9.0");
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend_from_slice(&(1u32 << 30).to_le_bytes());
    assert_eq!(
        msg(&v2),
        "<bytes>: header length 1073741824 exceeds the limit 65536"
    );
    let huge = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
        &[],
    );
    assert_eq!(
        msg(&huge),
        "<bytes>: header: shape [1099511627776, 1099511627776] of f64 needs more than the limit of 34359738368 data bytes"
            .replace("header: ", "")
    );
    let bools = npy(
        "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
        &[1, 2, 0],
    );
    assert_eq!(
        msg(&bools),
        "<bytes>: bool element 1 is stored as 2, not 0 or 1"
    );
}

/// An endless stream of zero bytes that counts what is read from it.
struct Zeros(u64);

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(0);
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
}

#[test]
fn a_stream_is_read_only_as_far_as_the_header_states() {
    let mut z = Zeros(0);
    assert_eq!(
        read_from(&mut z).unwrap_err().to_string(),
        r#"<reader>: not a .npy file: starts with "\x00\x00\x00\x00\x00\x00", expected "\x93NUMPY""#
    );
    assert_eq!(z.0, 8);
    let head = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }",
        &[],
    );
    let mut z = Zeros(0);
    assert_eq!(
        read_from(head.as_slice().chain(&mut z))
            .unwrap_err()
            .to_string(),
        "<reader>: data: 4000 bytes expected, but more follow"
    );
    assert!(z.0 <= 4001 + 8192, "read {} bytes", z.0);
}

#[cfg(unix)]
#[test]
fn dev_zero_is_refused_after_its_first_bytes() {
    assert_eq!(
        read("/dev/zero").unwrap_err().to_string(),
        r#"/dev/zero: not a .npy file: starts with "\x00\x00\x00\x00\x00\x00", expected "\x93NUMPY""#
    );
}

/// A symbolic link planted at every temporary name the old writer used (`.NAME.tmpPID`)
/// or the `.kiln` writer used (`.NAME.tmp-PID-N`) is never written through.
#[cfg(unix)]
#[test]
fn writing_never_follows_a_planted_symbolic_link() {
    let dir = std::env::temp_dir().join(format!("kiln-npy-symlink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let pid = std::process::id();
    let mut planted = vec![format!(".y.npy.tmp{pid}")];
    planted.extend((0..8).map(|n| format!(".y.npy.tmp-{pid}-{n}")));
    for name in &planted {
        std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
    }
    let a = Array::from_f32(&[2], vec![1.0, 2.0]).unwrap();
    write(dir.join("y.npy"), &a).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(read(dir.join("y.npy")).unwrap(), a);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = planted.clone();
    expected.extend(["victim".to_string(), "y.npy".to_string()]);
    expected.sort();
    assert_eq!(left, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
