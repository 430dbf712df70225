//! The library part of the `kiln` runner: readers of foreign formats that the binary and
//! the fuzz harnesses share.

#![forbid(unsafe_code)]

/// The bounded `.safetensors` reader lives in the library (`kiln::safetensors_file`); the
/// fuzz harness reaches it here.
pub use kiln::safetensors_file;
