//! Compiles `onnx.proto` with protox (a protobuf compiler in Rust, so no `protoc`) and
//! writes prost's Rust code for package `onnx` to the given output file.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(proto), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: kiln-onnx-gen ONNX_PROTO OUT_RS".into());
    };
    let proto = PathBuf::from(proto);
    let dir = proto.parent().ok_or("onnx.proto has no directory")?;
    let descriptors = protox::compile([&proto], [dir])?;
    let tmp = tempdir()?;
    prost_build::Config::new()
        .out_dir(&tmp)
        .compile_fds(descriptors)?;
    let code = std::fs::read_to_string(tmp.join("onnx.rs"))?;
    std::fs::write(out, code)?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

fn tempdir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-onnx-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
