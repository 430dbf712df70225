//! `kiln export-weights` / `import-weights`: state tensors to and from `.safetensors` with
//! PyTorch state_dict names and layouts.

use anyhow::{Context, Result, anyhow, bail};
use kiln_ir::{Array, DType, Op};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::BTreeMap;
use std::io::Write;
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

fn kiln_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::U32 => DType::U32,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
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
    write_atomic(out, &buf)?;
    println!("wrote {} tensors to {}", bytes.len(), out.display());
    Ok(())
}

/// `kiln import-weights MODEL IN.safetensors -o OUT.kiln`.
pub fn import(model: &Path, weights: &Path, out: &Path) -> Result<()> {
    let mut m = kiln_format::load(model).with_context(|| model.display().to_string())?;
    let raw = std::fs::read(weights).with_context(|| weights.display().to_string())?;
    let st = SafeTensors::deserialize(&raw)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e:?}", weights.display()))?;
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
    for (name, view) in st.tensors() {
        let Some(old) = current.get(&name) else {
            problems.push(format!("{name}: not a state tensor of the module"));
            continue;
        };
        let Some(dt) = kiln_dtype(view.dtype()) else {
            problems.push(format!("{name}: unsupported dtype {:?}", view.dtype()));
            continue;
        };
        if dt != old.dtype() || view.shape() != old.shape() {
            problems.push(format!(
                "{name}: expected {}{:?}, got {}{:?}",
                old.dtype(),
                old.shape(),
                dt,
                view.shape()
            ));
            continue;
        }
        match Array::from_le_bytes(dt, view.shape(), view.data()) {
            Ok(a) => {
                new.insert(name, a);
            }
            Err(e) => problems.push(format!("{name}: {e}")),
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
