//! `kiln export-weights` / `import-weights`: state tensors to and from `.safetensors` with
//! PyTorch state_dict names and layouts.

use anyhow::{Context, Result, anyhow, bail};
use kiln_fs::one_line;
use kiln_ir::{Array, DType, Op};
use safetensors::{Dtype, tensor::TensorView};
use std::collections::BTreeMap;
use std::path::Path;

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::U32 => Dtype::U32,
        DType::Bool => Dtype::BOOL,
    }
}

/// `kiln export-weights MODEL OUT.safetensors`.
pub fn export(model: &Path, out: &Path) -> Result<()> {
    let m = kiln_format::load(model).with_context(|| model.display().to_string())?;
    let bytes: Vec<(String, Vec<u8>, Array)> = m
        .state
        .iter()
        .map(|(n, a)| (n.clone(), a.to_le_bytes(), a.clone()))
        .collect();
    let mut views = Vec::new();
    for (name, data, a) in &bytes {
        let v = TensorView::new(st_dtype(a.dtype()), a.shape().to_vec(), data)
            .map_err(|e| anyhow!("tensor {name}: {e:?}"))?;
        views.push((name.clone(), v));
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("producer".to_string(), m.metadata.producer.clone());
    let buf =
        safetensors::serialize(views, Some(meta)).map_err(|e| anyhow!("serialising: {e:?}"))?;
    kiln_fs::write_atomic(out, &buf)?;
    println!("wrote {} tensors to {}", bytes.len(), out.display());
    Ok(())
}

/// `kiln import-weights MODEL IN.safetensors -o OUT.kiln`.
pub fn import(model: &Path, weights: &Path, out: &Path) -> Result<()> {
    let mut m = kiln_format::load(model).with_context(|| model.display().to_string())?;
    let tensors = kiln_cli::safetensors_file::read(weights)?;
    let current: BTreeMap<String, Array> = m.state.iter().cloned().collect();
    let params: Vec<String> = m
        .graph
        .node_ids()
        .into_iter()
        .filter_map(|id| match &m.graph.node(id).op {
            Op::Parameter { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut problems = Vec::new();
    let mut new = BTreeMap::new();
    for (name, array) in tensors {
        let shown = one_line(&name);
        let Some(old) = current.get(&name) else {
            problems.push(format!("{shown}: not a state tensor of the module"));
            continue;
        };
        match array {
            Ok(a) if a.dtype() == old.dtype() && a.shape() == old.shape() => {
                new.insert(name, a);
            }
            Ok(a) => problems.push(format!(
                "{shown}: expected {}{:?}, got {}{:?}",
                old.dtype(),
                old.shape(),
                a.dtype(),
                a.shape()
            )),
            Err(e) => problems.push(format!("{shown}: {e}")),
        }
    }
    for p in &params {
        if !new.contains_key(p) && !problems.iter().any(|x| x.starts_with(&format!("{p}:"))) {
            problems.push(format!("{p}: missing from {}", weights.display()));
        }
    }
    if !problems.is_empty() {
        problems.sort();
        bail!(
            "{} does not match the module: {}",
            weights.display(),
            problems.join("; ")
        );
    }
    let n = new.len();
    for (name, a) in m.state.iter_mut() {
        if let Some(v) = new.remove(name) {
            *a = v;
        }
    }
    kiln_format::save(&m, out).with_context(|| out.display().to_string())?;
    println!("imported {n} tensors into {}", out.display());
    Ok(())
}
