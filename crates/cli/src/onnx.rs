//! `kiln import`: an ONNX model compiled and saved as a `.kiln` module, and the loader every
//! command uses, which compiles `.onnx` files on the fly.

use anyhow::{Context, Result, anyhow, bail};
use kiln_onnx::{ImportOptions, Imported};
use kiln_runtime::{Backend, Executable};
use std::collections::HashMap;
use std::path::Path;

/// True for paths kiln reads as ONNX models (`.onnx`, any case).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Parses `NAME=N` dim fixes (`--dim batch=1`).
pub fn parse_dims(dims: &[String]) -> Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    for d in dims {
        let (k, v) = d
            .split_once('=')
            .ok_or_else(|| anyhow!("--dim `{d}`: expected NAME=N"))?;
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| anyhow!("--dim `{d}`: `{v}` is not a non-negative integer"))?;
        let name = kiln_onnx::symbol_name(k.trim());
        if out.insert(name.clone(), n).is_some() {
            bail!("--dim: {name} is fixed twice");
        }
    }
    Ok(out)
}

fn import(model: &Path, dims: &HashMap<String, u64>) -> Result<Imported> {
    let options = ImportOptions {
        dims: dims.clone(),
        ..ImportOptions::default()
    };
    kiln_onnx::import_file(model, &options).with_context(|| model.display().to_string())
}

/// Imports and compiles an ONNX model for `backend`.
pub fn compile(model: &Path, backend: Backend, dims: &HashMap<String, u64>) -> Result<Executable> {
    let imported = import(model, dims)?;
    imported
        .compile(backend)
        .with_context(|| format!("{}: compiling the imported model", model.display()))
}

/// `kiln import`: compiles `model` and saves it to `out`.
pub fn run(model: &Path, out: &Path, backend: Backend, dims: &[String]) -> Result<()> {
    let dims = parse_dims(dims)?;
    let imported = import(model, &dims)?;
    let exe = imported
        .compile(backend)
        .with_context(|| format!("{}: compiling the imported model", model.display()))?;
    exe.save(out)
        .with_context(|| format!("saving {}", out.display()))?;
    let sig = exe.signature();
    let list = |specs: &[kiln_format::TensorSpec]| {
        specs
            .iter()
            .map(|s| format!("{}: {}{}", s.name, s.dtype, s.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "imported {} (opset {}, {} parameters) -> {} [{backend}]",
        model.display(),
        imported.opset,
        imported.parameters.len(),
        out.display()
    );
    println!("  inputs:  {}", list(&sig.inputs));
    println!("  outputs: {}", list(&sig.outputs));
    Ok(())
}

/// `kiln import --list-ops` (a closed pipe ends the listing quietly).
pub fn list_ops() {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ONNX op types kiln imports (default domain):");
    for name in kiln_onnx::supported_ops() {
        if writeln!(out, "  {name}").is_err() {
            return;
        }
    }
}
