//! The pipeline cache on disk: the driver's compiled pipelines, saved per adapter so that a
//! later process (or a second load of a module) skips shader compilation in the driver.
//!
//! The file is `<dir>/<key>.bin`, where `<dir>` is `KILN_GPU_CACHE_DIR` (empty or `off`
//! disables the cache), else `$XDG_CACHE_HOME/kiln`, else `$HOME/.cache/kiln`, and `<key>`
//! is wgpu's key for the adapter (vendor and device; only Vulkan has one). Its bytes are a
//! kiln header (magic, length and CRC-32 of the payload) followed by the payload wgpu
//! returned. A file that is missing, short, longer than [`MAX_BYTES`] or whose checksum
//! fails is ignored, so a torn or corrupted file costs a recompile and nothing else; wgpu
//! and the driver check the payload's own header (driver version, device) again. Saves
//! are atomic ([`kiln_fs::write_atomic`]).

use std::io::Read;
use std::path::{Path, PathBuf};

/// The environment variable that sets (or, empty or `off`, disables) the cache folder.
pub const CACHE_DIR_ENV: &str = "KILN_GPU_CACHE_DIR";

/// Files larger than this are not read (a cache of a few thousand pipelines is far below).
pub const MAX_BYTES: u64 = 256 << 20;

const MAGIC: &[u8; 8] = b"KILNPC1\0";
const HEADER: usize = 8 + 8 + 4;

/// The cache folder from the environment, or `None` when the cache is disabled or no
/// folder can be named.
pub(crate) fn folder() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(v) if v.is_empty() || v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(|v| PathBuf::from(v).join("kiln"))
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache").join("kiln"))
            }),
    }
}

/// The payload of the cache file at `path`, if it exists and is intact. At most
/// [`MAX_BYTES`] are read, whatever the file's size.
pub(crate) fn read(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len > MAX_BYTES {
        return None;
    }
    let bytes = kiln_fs::read_exact_len(&mut file.take(MAX_BYTES), len).ok()?;
    unwrap(&bytes).map(<[u8]>::to_vec)
}

/// Checks a file's header and returns its payload.
fn unwrap(bytes: &[u8]) -> Option<&[u8]> {
    let (head, payload) = bytes.split_at_checked(HEADER)?;
    if &head[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(head[16..20].try_into().ok()?);
    (len == payload.len() as u64 && crc32fast::hash(payload) == crc).then_some(payload)
}

/// The file bytes for `payload`.
fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes `payload` to `path` atomically ([`kiln_fs::write_atomic`]), creating the folder.
pub(crate) fn write(path: &Path, payload: &[u8]) -> Result<(), kiln_fs::FsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| kiln_fs::FsError {
            action: "creating the pipeline cache folder",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    kiln_fs::write_atomic(path, &wrap(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_damage_is_ignored() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let file = wrap(&payload);
        assert_eq!(unwrap(&file), Some(&payload[..]));
        for cut in [0, 5, HEADER, file.len() - 1] {
            assert_eq!(unwrap(&file[..cut]), None, "truncated at {cut}");
        }
        let mut flipped = file.clone();
        flipped[HEADER + 500] ^= 1;
        assert_eq!(unwrap(&flipped), None);
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(unwrap(&longer), None);
        assert_eq!(unwrap(&wrap(&[])), Some(&[][..]));
    }

    #[test]
    fn saves_replace_the_file_atomically() {
        let dir = std::env::temp_dir().join(format!("kiln-pc-{}", std::process::id()));
        let path = dir.join("key.bin");
        write(&path, b"first").expect("write");
        write(&path, b"second").expect("write");
        assert_eq!(read(&path).as_deref(), Some(&b"second"[..]));
        let leftovers = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        std::fs::write(&path, b"KILNPC1\0garbage").expect("write");
        assert_eq!(read(&path), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
