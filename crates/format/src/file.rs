//! Saving and loading `.kiln` files: atomic writes (temporary file in the same directory,
//! fsync, rename, fsync of the directory) and size-capped reads.

use crate::error::FormatError;
use crate::limits::MAX_FILE_BYTES;
use crate::{Module, from_bytes, to_bytes};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Saves a module to `path` atomically: either the complete new file is at `path`
/// afterwards, or (on any error) whatever was there before is untouched and no temporary
/// file is left behind.
pub fn save(m: &Module, path: &Path) -> Result<(), FormatError> {
    let bytes = to_bytes(m)?;
    write_atomic(path, &bytes, |f, b| f.write_all(b))
}

/// Loads a module from `path`: reads at most [`MAX_FILE_BYTES`], then [`from_bytes`].
pub fn load(path: &Path) -> Result<Module, FormatError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| FormatError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = File::open(path).map_err(io("opening"))?;
    let len = file.metadata().map_err(io("reading metadata of"))?.len();
    if len > MAX_FILE_BYTES {
        return Err(FormatError::limit(
            path.display().to_string(),
            "file size in bytes",
            len,
            MAX_FILE_BYTES,
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io("reading"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(FormatError::limit(
            path.display().to_string(),
            "file size in bytes",
            bytes.len() as u64,
            MAX_FILE_BYTES,
        ));
    }
    from_bytes(&bytes)
}

/// Removes the temporary file on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a temporary sibling file; `write` does the writing (a
/// parameter so tests can make it fail half way).
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    write: impl FnOnce(&mut File, &[u8]) -> std::io::Result<()>,
) -> Result<(), FormatError> {
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source: std::io::Error| FormatError::Io {
            action,
            path: p,
            source,
        }
    };
    let file_name = path.file_name().ok_or_else(|| FormatError::Io {
        action: "saving to",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path names no file"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp_path = dir.join(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(io("creating temporary file", &tmp_path))?;
    let mut guard = TempFile {
        path: tmp_path.clone(),
        armed: true,
    };
    write(&mut file, bytes).map_err(io("writing temporary file", &tmp_path))?;
    file.sync_all()
        .map_err(io("syncing temporary file", &tmp_path))?;
    drop(file);
    fs::rename(&tmp_path, path).map_err(io("renaming temporary file onto", path))?;
    guard.armed = false;
    sync_dir(&dir).map_err(io("syncing directory", &dir))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-format-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_write_failing_half_way_keeps_the_old_file_and_leaves_no_temp() {
        let d = scratch_dir("halfway");
        let target = d.join("m.kiln");
        write_atomic(&target, b"old contents", |f, b| f.write_all(b)).unwrap();
        let err = write_atomic(&target, b"new contents that never land", |f, b| {
            f.write_all(&b[..5])?;
            Err(std::io::Error::other("simulated disk full"))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("writing temporary file "), "{msg}");
        assert!(msg.ends_with(": simulated disk full"), "{msg}");
        assert_eq!(fs::read(&target).unwrap(), b"old contents");
        assert_eq!(entries(&d), vec!["m.kiln".to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replacing_a_file_swaps_contents_completely() {
        let d = scratch_dir("replace");
        let target = d.join("m.kiln");
        write_atomic(&target, b"first version, longer", |f, b| f.write_all(b)).unwrap();
        write_atomic(&target, b"second", |f, b| f.write_all(b)).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second");
        assert_eq!(entries(&d), vec!["m.kiln".to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }
}
