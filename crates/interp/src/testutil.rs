//! Small array builders for unit tests.

use kiln_ir::Array;

macro_rules! builder {
    ($name:ident, $t:ty, $ctor:ident) => {
        /// An array of this dtype; panics on a length mismatch (tests only).
        pub(crate) fn $name(shape: &[usize], v: &[$t]) -> Array {
            Array::$ctor(shape, v.to_vec()).expect("test array length matches its shape")
        }
    };
}

builder!(f32s, f32, from_f32);
builder!(f64s, f64, from_f64);
builder!(i32s, i32, from_i32);
builder!(i64s, i64, from_i64);
builder!(u32s, u32, from_u32);
