//! Helpers shared by the `kiln` binary's integration tests: scratch directories, running the
//! binary, reading its output.
// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory, removed when dropped.
pub struct Tmp(PathBuf);

impl Tmp {
    /// A fresh `kiln-cli-<tag>-<pid>` directory under the system temp dir.
    pub fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("kiln-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the `kiln` binary with `args` (and no `KILN_BACKEND`).
pub fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_BACKEND")
        .output()
        .unwrap()
}

/// kiln's stderr (all of it: the runner keeps the Vulkan stack's start-up quiet, see
/// tests/quiet_gpu.rs).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// kiln's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
