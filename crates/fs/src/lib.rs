//! File access for paths a user names: atomic, symlink-safe writes ([`write_atomic`]) and
//! reads bounded by the sizes a file states ([`read_exact_len`]).
//!
//! Every file kiln writes (`.kiln` modules, `.npy` outputs, `.safetensors` exports) goes
//! through [`write_atomic`]: the bytes are written to a sibling temporary file with an
//! unpredictable name, created exclusively (`O_CREAT | O_EXCL`: an existing file or a
//! symbolic link planted at that name is never opened), synced, renamed over the target
//! (which replaces a link at the target rather than writing through it) and the directory
//! is synced. On any error the temporary file is removed and the target is untouched.
//!
//! This crate sits below every crate that writes files (kiln-format, kiln, kiln-cli) and
//! depends on nothing of kiln's.

#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file operation that failed, with what was being done and to which path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}", path = .path.display())]
pub struct FsError {
    /// What was being done (`creating temporary file`, `renaming temporary file onto`, ...).
    pub action: &'static str,
    /// The file involved.
    pub path: PathBuf,
    /// The operating system's error.
    pub source: io::Error,
}

fn fs_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError {
    let path = path.to_path_buf();
    move |source| FsError {
        action,
        path,
        source,
    }
}

/// How many fresh temporary names [`write_atomic`] tries before giving up when each one
/// already exists.
pub const TEMP_NAME_ATTEMPTS: usize = 16;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary name for a file called `file_name`: `.NAME.XXXXXXXXXXXXXXXX.tmp`,
/// where the 16 hex digits are a SipHash, under the process's random keys, of the process
/// id, a counter and the time, so another user cannot predict it.
pub fn temp_name(file_name: &OsStr) -> OsString {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    let mut name = OsString::from(".");
    name.push(file_name);
    name.push(format!(".{:016x}.tmp", h.finish()));
    name
}

/// Writes `bytes` to `path` atomically; see the crate documentation.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the writing done by `write` (which may stream, or fail half way).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FsError> {
    write_atomic_named(path, &mut temp_name, write)
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

/// [`write_atomic_with`] with the temporary names drawn from `names` (tests inject
/// predictable names to check that an existing file at a drawn name is never opened).
fn write_atomic_named(
    path: &Path,
    names: &mut dyn FnMut(&OsStr) -> OsString,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FsError> {
    let file_name = path.file_name().ok_or_else(|| FsError {
        action: "saving to",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "path names no file"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut attempt = 0;
    let (mut file, tmp_path) = loop {
        let tmp_path = dir.join(names(file_name));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
        {
            Ok(f) => break (f, tmp_path),
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < TEMP_NAME_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(e) => return Err(fs_error("creating temporary file", &tmp_path)(e)),
        }
    };
    let mut guard = TempFile {
        path: tmp_path.clone(),
        armed: true,
    };
    write(&mut file).map_err(fs_error("writing temporary file", &tmp_path))?;
    file.sync_all()
        .map_err(fs_error("syncing temporary file", &tmp_path))?;
    drop(file);
    fs::rename(&tmp_path, path).map_err(fs_error("renaming temporary file onto", path))?;
    guard.armed = false;
    sync_dir(&dir).map_err(fs_error("syncing directory", &dir))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Why [`read_exact_len`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The reader failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The input ended before the stated size.
    #[error("truncated: {needed} bytes needed, {got} present")]
    Short {
        /// Bytes the caller asked for.
        needed: u64,
        /// Bytes the input had.
        got: u64,
    },
    /// The input goes on after the stated size.
    #[error("{needed} bytes expected, but more follow")]
    Long {
        /// Bytes the caller asked for.
        needed: u64,
    },
}

/// Reads exactly `len` bytes from `r` and checks that nothing follows them. The caller
/// bounds `len` (by its format's limits) before calling; the buffer grows as bytes
/// arrive, so a short input never costs `len` bytes of memory.
pub fn read_exact_len(r: &mut impl Read, len: u64) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let got = r.by_ref().take(len).read_to_end(&mut out)? as u64;
    if got < len {
        return Err(ReadError::Short { needed: len, got });
    }
    let mut one = [0u8; 1];
    loop {
        match r.read(&mut one) {
            Ok(0) => return Ok(out),
            Ok(_) => return Err(ReadError::Long { needed: len }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the input; returns how many.
pub fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;

/// `s` with control characters escaped (`\n` as `\\n`), so an error message that quotes a
/// name or header taken from a file stays on one line.
pub fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}
