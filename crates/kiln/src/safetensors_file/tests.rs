//! Tests of the bounded `.safetensors` reader on hostile input.

use super::*;
use safetensors::tensor::TensorView;

fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn read_bytes(bytes: &[u8]) -> Result<Vec<Tensor>, String> {
    read_bounded(&mut &bytes[..], Some(bytes.len() as u64))
        .and_then(|b| tensors(&b))
        .map_err(|e| e.to_string())
}

#[test]
fn bool_bytes_other_than_0_and_1_are_rejected() {
    let f = file(&[
        ("ok", Dtype::BOOL, vec![2], vec![1, 0]),
        ("two", Dtype::BOOL, vec![2], vec![0, 2]),
        ("seven", Dtype::BOOL, vec![1], vec![7]),
    ]);
    let t = read_bytes(&f).unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].0, "ok");
    assert_eq!(
        t[0].1.as_ref().unwrap(),
        &Array::from_bool(&[2], vec![true, false]).unwrap()
    );
    assert_eq!(t[1].0, "seven");
    assert_eq!(
        t[1].1.as_ref().unwrap_err().to_string(),
        "bool element 0 is stored as 7, not 0 or 1"
    );
    assert_eq!(t[2].0, "two");
    assert_eq!(
        t[2].1.as_ref().unwrap_err().to_string(),
        "bool element 1 is stored as 2, not 0 or 1"
    );
}

#[test]
fn sizes_are_checked_before_reading_on() {
    let good = file(&[("w", Dtype::F32, vec![2], vec![0; 8])]);
    assert_eq!(read_bytes(&good).unwrap().len(), 1);
    assert_eq!(
        read_bytes(&good[..5]).unwrap_err(),
        "truncated: 5 bytes, the header length needs 8"
    );
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap());
    assert_eq!(
        read_bytes(&good[..20]).unwrap_err(),
        format!(
            "truncated: 20 bytes, the {header_len}-byte header needs {}",
            8 + header_len
        )
    );
    assert_eq!(
        read_bytes(&good[..good.len() - 1]).unwrap_err(),
        format!(
            "file has {} bytes, but its header states {}",
            good.len() - 1,
            good.len()
        )
    );
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_eq!(
        read_bytes(&huge).unwrap_err(),
        "header length 1099511627776 is outside 2..=100000000"
    );
    let claim = br#"{"w":{"dtype":"F64","shape":[1099511627776,1024],"data_offsets":[0,9007199254740992]}}"#;
    let mut big = (claim.len() as u64).to_le_bytes().to_vec();
    big.extend_from_slice(claim);
    assert_eq!(
        read_bytes(&big).unwrap_err(),
        "data section of 9007199254740992 bytes exceeds the limit 34359738368"
    );
    let mut nested = br#"{"w":"#.to_vec();
    nested.extend(std::iter::repeat_n(b'[', 100_000));
    let mut deep = (nested.len() as u64).to_le_bytes().to_vec();
    deep.extend_from_slice(&nested);
    let e = read_bytes(&deep).unwrap_err();
    assert!(
        e.starts_with("not a valid safetensors header: recursion limit exceeded"),
        "{e}"
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
        read_bounded(&mut z, None).unwrap_err().to_string(),
        "header length 0 is outside 2..=100000000"
    );
    assert_eq!(z.0, 8);
    let good = file(&[("w", Dtype::F32, vec![2], vec![0; 8])]);
    let mut z = Zeros(0);
    assert_eq!(
        read_bounded(&mut good.as_slice().chain(&mut z), None)
            .unwrap_err()
            .to_string(),
        "data section: 8 bytes expected, but more follow"
    );
    assert!(z.0 <= 8192, "read {} bytes", z.0);
}

#[cfg(unix)]
#[test]
fn dev_zero_is_refused_after_eight_bytes() {
    assert_eq!(
        read(Path::new("/dev/zero")).unwrap_err().to_string(),
        "/dev/zero: header length 0 is outside 2..=100000000"
    );
}
