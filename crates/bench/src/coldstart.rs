//! Whole-process cold start of the `kiln` runner: save SimpleNN as a `.kiln` module, then
//! time `kiln run simple_nn.kiln --input x=x.npy --backend B --out DIR` from spawn to exit.

use crate::measure::summary;
use crate::record::{Record, Status};
use crate::workloads;
use anyhow::Context;
use kiln::Backend;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Workload name of the cold-start record.
pub const NAME: &str = "cold_start_kiln_run";

/// The release `kiln` binary of this workspace.
pub fn default_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/kiln")
}

/// Saves the compiled SimpleNN (batch 1) on `backend` to `dir/simple_nn.kiln` and its input
/// to `dir/x.npy`; returns both paths.
pub fn save_simple_nn(dir: &Path, backend: Backend) -> anyhow::Result<(PathBuf, PathBuf)> {
    let w = workloads::select(&["simple_nn_infer_b1".to_string()])?[0];
    let ready = workloads::prepare(&w, backend)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let model = dir.join("simple_nn.kiln");
    ready.exe.save(&model)?;
    let x = dir.join("x.npy");
    let feed = ready
        .feeds
        .first()
        .map(|(_, a)| a.clone())
        .context("SimpleNN has an input")?;
    kiln::npy::write(&x, &feed)?;
    Ok((model, x))
}

/// The fastest backend this build has for the runner: `cpu`, else `kernel`, else the first.
pub fn runner_backend() -> Backend {
    ["cpu", "kernel"]
        .iter()
        .find_map(|n| Backend::ALL.iter().copied().find(|b| b.name() == *n))
        .unwrap_or(Backend::ALL[0])
}

/// Times `repeats` runs of `binary run MODEL --input x=X`. Skipped when the binary is
/// missing; failed (with the first line of stderr) when it exits unsuccessfully.
pub fn measure(binary: &Path, dir: &Path, repeats: u32) -> Record {
    let rec = |status| Record::new("kiln", NAME, "cli", status);
    if !binary.is_file() {
        return rec(Status::Skipped)
            .with_note(format!("kiln binary not built ({})", binary.display()));
    }
    let backend = runner_backend();
    let (model, x) = match save_simple_nn(dir, backend) {
        Ok(p) => p,
        Err(e) => return rec(Status::Failed).with_note(format!("saving SimpleNN: {e:#}")),
    };
    let mut samples = Vec::new();
    for _ in 0..repeats.max(1) + 1 {
        let t = Instant::now();
        let out = Command::new(binary)
            .arg("run")
            .arg(&model)
            .arg("--input")
            .arg(format!("x={}", x.display()))
            .arg("--backend")
            .arg(backend.name())
            .arg("--out")
            .arg(dir)
            .output();
        let dt = t.elapsed().as_secs_f64();
        match out {
            Ok(o) if o.status.success() => samples.push(dt),
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let first = err.lines().next().unwrap_or("").to_string();
                return rec(Status::Failed).with_note(format!(
                    "`kiln run {} --input x=... --backend {backend}` exited with {}: {first}",
                    model.display(),
                    o.status
                ));
            }
            Err(e) => {
                return rec(Status::Failed)
                    .with_note(format!("spawning {}: {e}", binary.display()));
            }
        }
    }
    // The first spawn warms the page cache; it is not counted.
    samples.remove(0);
    let (median, p10, p90) = summary(&samples);
    let mut r = rec(Status::Ok);
    r.median_s = Some(median);
    r.p10_s = Some(p10);
    r.p90_s = Some(p90);
    r.repeats = Some(samples.len() as u32);
    r.warmup = Some(1);
    r.note = Some(format!(
        "SimpleNN batch 1 on {backend}, process spawn to exit"
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_skipped_with_the_reason() {
        let r = measure(Path::new("/nonexistent/kiln"), Path::new("/nonexistent"), 3);
        assert_eq!(r.status, Status::Skipped);
        assert_eq!(
            r.note.as_deref(),
            Some("kiln binary not built (/nonexistent/kiln)")
        );
    }

    #[test]
    fn saved_simple_nn_loads_back() {
        let dir = std::env::temp_dir().join(format!("kiln-bench-test-{}", std::process::id()));
        let (model, x) = save_simple_nn(&dir, Backend::Kernel).unwrap();
        let mut exe = kiln_runtime::load(&model, Backend::Kernel).unwrap();
        assert_eq!(exe.signature().inputs[0].name, "x");
        assert_eq!(exe.state().snapshot().len(), 4);
        let xv = kiln::npy::read(&x).unwrap();
        let out = exe.run(&[("x", &xv)]).unwrap();
        assert_eq!(out[0].1.shape(), &[1, 10]);
        assert_eq!(kiln::npy::read(&x).unwrap().shape(), &[1, 784]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
