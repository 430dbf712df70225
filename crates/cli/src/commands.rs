//! `kiln run`, `info`, `bench` and `dot`.

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_ir::{Array, DType};
use kiln_kernel::{BufferKind, Kernel, Program};
use kiln_runtime::{Backend, Executable};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Parses `SYM=N` bindings.
pub fn parse_binds(binds: &[String]) -> Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    for b in binds {
        let (k, v) = b
            .split_once('=')
            .ok_or_else(|| anyhow!("--bind `{b}`: expected SYM=N"))?;
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| anyhow!("--bind `{b}`: `{v}` is not a non-negative integer"))?;
        if out.insert(k.trim().to_string(), n).is_some() {
            bail!("--bind: symbol {k} bound twice");
        }
    }
    Ok(out)
}

/// The backend named on the command line, else `KILN_BACKEND`, else `cpu`.
pub fn backend_of(name: Option<&str>) -> Result<Backend> {
    Ok(match name {
        Some(n) => n.parse()?,
        None => Backend::from_env()?,
    })
}

/// Loads a `.kiln` module, or imports and compiles an `.onnx` model.
fn load(model: &Path, backend: Backend) -> Result<Executable> {
    if crate::onnx::is_onnx(model) {
        return crate::onnx::compile(model, backend, &HashMap::new());
    }
    kiln_runtime::load(model, backend).with_context(|| model.display().to_string())
}

/// The module a `.kiln` file holds, or the module an `.onnx` model compiles to.
fn module_of(model: &Path) -> Result<kiln_format::Module> {
    if crate::onnx::is_onnx(model) {
        return Ok(load(model, Backend::Interp)?.to_module());
    }
    kiln_format::load(model).with_context(|| model.display().to_string())
}

fn describe(a: &Array) -> String {
    format!("{}{:?}", a.dtype(), a.shape())
}

/// The file an output is written to: `<escaped name>.npy`, where ASCII letters, digits, `_`,
/// `-` and `.` stand for themselves and every other byte of the name's UTF-8 is `%XX`
/// (upper-case hex). The escape is injective, so distinct outputs get distinct files.
fn file_name_for(output: &str) -> String {
    let mut out = String::with_capacity(output.len() + 4);
    for b in output.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out.push_str(".npy");
    out
}

/// The output files of `names`, refusing names whose files would coincide on a
/// case-insensitive file system, before anything is written.
fn output_files(names: &[&str]) -> Result<Vec<String>> {
    let files: Vec<String> = names.iter().map(|n| file_name_for(n)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        if let Some(j) = seen.insert(f.to_ascii_lowercase(), i) {
            bail!(
                "outputs `{}` and `{}` would both be written to {f} on a case-insensitive file system; nothing was written",
                names[j],
                names[i]
            );
        }
    }
    Ok(files)
}

/// `kiln run`.
pub fn run(
    model: &Path,
    inputs: &[String],
    backend: Option<&str>,
    out_dir: &Path,
    binds: &[String],
    save_state: Option<&Path>,
    json_out: bool,
) -> Result<()> {
    let backend = backend_of(backend)?;
    let binds = parse_binds(binds)?;
    let mut arrays: Vec<(String, Array)> = Vec::new();
    for spec in inputs {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--input `{spec}`: expected NAME=FILE.npy"))?;
        if arrays.iter().any(|(n, _)| n == name) {
            bail!("input `{name}` given more than once");
        }
        let a = kiln::npy::read(file).with_context(|| format!("input `{name}`"))?;
        arrays.push((name.to_string(), a));
    }
    let mut exe = load(model, backend)?;
    let names: Vec<&str> = exe
        .signature()
        .outputs
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let files: HashMap<String, String> = names
        .iter()
        .map(|n| n.to_string())
        .zip(output_files(&names)?)
        .collect();
    let feeds: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let start = Instant::now();
    let outs = exe.run_with(&feeds, &binds)?;
    let elapsed = start.elapsed();
    if !out_dir.as_os_str().is_empty() {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
    }
    let mut written = Vec::new();
    for (name, a) in &outs {
        let file = files
            .get(name)
            .ok_or_else(|| anyhow!("output `{name}` is not in the signature"))?;
        let path = out_dir.join(file);
        kiln::npy::write(&path, a)?;
        written.push((name.clone(), path, describe(a)));
    }
    if let Some(p) = save_state {
        exe.save(p)
            .with_context(|| format!("saving state to {}", p.display()))?;
    }
    if json_out {
        let outs: Vec<_> = written
            .iter()
            .map(|(n, p, d)| json!({"name": n, "path": p.display().to_string(), "type": d}))
            .collect();
        println!(
            "{}",
            json!({"model": model.display().to_string(), "backend": backend.name(), "seconds": elapsed.as_secs_f64(), "outputs": outs, "saved_state": save_state.map(|p| p.display().to_string())})
        );
    } else {
        println!(
            "ran {} on {} in {:.3} ms",
            model.display(),
            backend,
            elapsed.as_secs_f64() * 1e3
        );
        for (n, p, d) in &written {
            println!("  {n}: {d} -> {}", p.display());
        }
        if let Some(p) = save_state {
            println!("  state saved to {}", p.display());
        }
    }
    Ok(())
}

fn kernel_kind(k: &Kernel) -> &'static str {
    match k {
        Kernel::Loop(_) => "loop",
        Kernel::Matmul(_) => "matmul",
        Kernel::Conv2d(_) => "conv2d",
    }
}

/// `kiln info`.
pub fn info(model: &Path, binds: &[String], json_out: bool) -> Result<()> {
    let m = module_of(model)?;
    let mut bindings = parse_binds(binds)?;
    for s in &m.signature.symbols {
        bindings.entry(s.name.clone()).or_insert(s.min.max(1));
    }
    let params: Vec<&(String, Array)> = m.state.iter().collect();
    let n_params: usize = params.iter().map(|(_, a)| a.len()).sum();
    let param_bytes: usize = params
        .iter()
        .map(|(_, a)| a.len() * a.dtype().size_bytes())
        .sum();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut scratch = None;
    if let Some(p) = &m.program {
        for k in &p.kernels {
            *kinds.entry(kernel_kind(k)).or_default() += 1;
        }
        scratch = kiln_cpu::memory_plan(p, &bindings)
            .ok()
            .map(|plan| plan.peak_scratch_bytes);
    }
    let spec = |t: &kiln_format::TensorSpec| format!("{}: {}{}", t.name, t.dtype, t.shape);
    let binding_text = {
        let mut b: Vec<String> = bindings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        b.sort();
        b.join(", ")
    };
    if json_out {
        println!(
            "{}",
            json!({
                "format_version": kiln_format::FORMAT_VERSION,
                "producer": m.metadata.producer,
                "created": m.metadata.created,
                "inputs": m.signature.inputs.iter().map(|t| json!({"name": t.name, "dtype": t.dtype.name(), "shape": t.shape.to_string()})).collect::<Vec<_>>(),
                "outputs": m.signature.outputs.iter().map(|t| json!({"name": t.name, "dtype": t.dtype.name(), "shape": t.shape.to_string()})).collect::<Vec<_>>(),
                "symbols": m.signature.symbols.iter().map(|s| json!({"name": s.name, "min": s.min, "max": s.max})).collect::<Vec<_>>(),
                "updates": m.updates.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                "state_tensors": params.len(),
                "parameter_count": n_params,
                "parameter_bytes": param_bytes,
                "graph_nodes": m.graph.len(),
                "kernels": kinds,
                "binding": binding_text,
                "scratch_bytes": scratch,
            })
        );
        return Ok(());
    }
    println!("{}", model.display());
    println!(
        "  format version {}, produced by {}",
        kiln_format::FORMAT_VERSION,
        m.metadata.producer
    );
    println!("  inputs:");
    for t in &m.signature.inputs {
        println!("    {}", spec(t));
    }
    println!("  outputs:");
    for t in &m.signature.outputs {
        println!("    {}", spec(t));
    }
    if !m.signature.symbols.is_empty() {
        let syms: Vec<String> = m
            .signature
            .symbols
            .iter()
            .map(|s| {
                format!(
                    "{} >= {}{}",
                    s.name,
                    s.min,
                    s.max.map_or(String::new(), |x| format!(", <= {x}"))
                )
            })
            .collect();
        println!("  symbols: {}", syms.join("; "));
    }
    if !m.updates.is_empty() {
        println!("  state updates per run: {}", m.updates.len());
    }
    println!(
        "  state: {} tensors, {} elements, {} bytes",
        params.len(),
        n_params,
        param_bytes
    );
    println!("  graph: {} nodes", m.graph.len());
    let k: Vec<String> = kinds.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "  kernels: {}",
        if k.is_empty() {
            "none".into()
        } else {
            k.join(", ")
        }
    );
    match scratch {
        Some(b) => println!("  scratch memory at {binding_text}: {b} bytes (CPU arena)"),
        None => println!("  scratch memory: not available"),
    }
    Ok(())
}

/// Uniform values in [-1, 1) for float inputs, zeros otherwise; allocated fallibly, so a
/// binding too large for memory is a one-line error.
fn random_input(dtype: DType, shape: &[usize], seed: &mut u64) -> Result<Array> {
    let too_large = || anyhow!("{dtype}{shape:?} cannot be allocated");
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(too_large)?;
    let mut next = || {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    Ok(match dtype {
        DType::F32 => {
            let mut v: Vec<f32> = Vec::new();
            v.try_reserve_exact(n).map_err(|_| too_large())?;
            v.extend((0..n).map(|_| next() as f32));
            Array::from_f32(shape, v)?
        }
        DType::F64 => {
            let mut v: Vec<f64> = Vec::new();
            v.try_reserve_exact(n).map_err(|_| too_large())?;
            v.extend((0..n).map(|_| next()));
            Array::from_f64(shape, v)?
        }
        _ => Array::zeros(dtype, shape)?,
    })
}

/// `kiln bench`.
pub fn bench(
    model: &Path,
    backend: Option<&str>,
    iters: u64,
    binds: &[String],
    json_out: bool,
) -> Result<()> {
    let backend = backend_of(backend)?;
    let mut bindings = parse_binds(binds)?;
    let mut exe = load(model, backend)?;
    for s in &exe.signature().symbols {
        bindings.entry(s.name.clone()).or_insert(s.min.max(1));
    }
    let mut seed = 0x5eed;
    let inputs: Vec<(String, Array)> = exe
        .signature()
        .inputs
        .iter()
        .map(|t| {
            let shape = t
                .shape
                .eval(&bindings)
                .map_err(|e| anyhow!("input `{}`: {e}", t.name))?;
            let a = random_input(t.dtype, &shape, &mut seed)
                .with_context(|| format!("input `{}`", t.name))?;
            Ok((t.name.clone(), a))
        })
        .collect::<Result<_>>()?;
    let feeds: Vec<(&str, &Array)> = inputs.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let warm = Instant::now();
    for _ in 0..3 {
        exe.run_with(&feeds, &bindings)?;
    }
    let per = warm.elapsed() / 3;
    let expected = per.saturating_mul(u32::try_from(iters).unwrap_or(u32::MAX));
    let bar = if expected > Duration::from_secs(1) && !json_out {
        let b = ProgressBar::new(iters);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut times = Vec::with_capacity(usize::try_from(iters).unwrap_or(0));
    for _ in 0..iters {
        let t = Instant::now();
        exe.run_with(&feeds, &bindings)?;
        times.push(t.elapsed().as_secs_f64());
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let (p10, med, p90) = (q(0.1), q(0.5), q(0.9));
    if json_out {
        println!(
            "{}",
            json!({"model": model.display().to_string(), "backend": backend.name(), "iters": iters, "median_s": med, "p10_s": p10, "p90_s": p90})
        );
    } else {
        println!(
            "{} on {backend}: median {:.3} ms, p10 {:.3} ms, p90 {:.3} ms over {iters} runs",
            model.display(),
            med * 1e3,
            p10 * 1e3,
            p90 * 1e3
        );
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `kiln dot`.
pub fn dot(model: &Path) -> Result<()> {
    let m = module_of(model)?;
    let mut out =
        String::from("digraph kiln {\n  rankdir=TB;\n  node [shape=box, fontname=monospace];\n");
    out.push_str("  subgraph cluster_graph {\n    label=\"graph\";\n");
    for id in m.graph.node_ids() {
        let n = m.graph.node(id);
        let _ = writeln!(
            out,
            "    {id} [label=\"{id} = {}\\n{}{}\"];",
            n.op.name(),
            n.dtype,
            esc(&n.shape.to_string())
        );
        for o in m.graph.operands(id) {
            let _ = writeln!(out, "    {o} -> {id};");
        }
    }
    out.push_str("  }\n");
    if let Some(p) = &m.program {
        write_plan(&mut out, p);
    }
    out.push_str("}\n");
    print!("{out}");
    Ok(())
}

fn write_plan(out: &mut String, p: &Program) {
    for (i, b) in p.buffers.iter().enumerate() {
        let kind = match &b.kind {
            BufferKind::Input(n) => format!("input {n}"),
            BufferKind::Output(n) => format!("output {n}"),
            BufferKind::State(n) => format!("state {n}"),
            BufferKind::Constant(_) => "const".into(),
            BufferKind::Scratch => "scratch".into(),
        };
        let _ = writeln!(
            out,
            "  b{i} [shape=cylinder, label=\"b{i}: {}\\n{}[{}]\"];",
            esc(&kind),
            b.dtype,
            esc(&b.size.to_string())
        );
    }
    for (k, kernel) in p.kernels.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_k{k} {{\n    label=\"k{k} ({})\";\n    k{k} [shape=ellipse, label=\"k{k}\"];\n  }}",
            kernel_kind(kernel)
        );
        let text = kernel_text(p, k);
        for (i, _) in p.buffers.iter().enumerate() {
            let tag = format!("b{i}[");
            if text.contains(&format!("load {tag}"))
                || text.contains(&format!("load checked {tag}"))
            {
                let _ = writeln!(out, "  b{i} -> k{k};");
            }
            if text.contains(&format!("store {tag}")) || text.contains(&format!("-> {tag}")) {
                let _ = writeln!(out, "  k{k} -> b{i};");
            }
        }
    }
}

/// The printed text of kernel `k` (the program's text form, sliced at kernel headers).
fn kernel_text(p: &Program, k: usize) -> String {
    let full = p.to_string();
    let head = format!("k{k} = ");
    let next = format!("k{} = ", k + 1);
    let Some(start) = full.find(&head) else {
        return String::new();
    };
    let end = full[start..].find(&next).map_or(full.len(), |e| start + e);
    full[start..end].to_string()
}
