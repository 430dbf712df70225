//! `Array::from_le_bytes`: the one conversion from untrusted bytes to arrays.

use kiln_ir::{Array, ArrayError, DType};

#[test]
fn bool_bytes_other_than_0_and_1_are_rejected() {
    let a = Array::from_le_bytes(DType::Bool, &[3], &[1, 0, 1]).unwrap();
    assert_eq!(a, Array::from_bool(&[3], vec![true, false, true]).unwrap());
    for (bytes, index, value) in [(vec![0u8, 2, 1], 1, 2), (vec![7u8, 0, 0], 0, 7)] {
        let err = Array::from_le_bytes(DType::Bool, &[3], &bytes).unwrap_err();
        assert_eq!(err, ArrayError::BoolByte { index, value });
        assert_eq!(
            err.to_string(),
            format!("bool element {index} is stored as {value}, not 0 or 1")
        );
    }
}
