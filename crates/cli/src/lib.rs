//! The library part of the `kiln` runner: readers of foreign formats that the binary and
//! the fuzz harnesses share.

#![forbid(unsafe_code)]

pub mod safetensors_file;
