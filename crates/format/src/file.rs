//! Saving and loading `.kiln` files: atomic writes through [`kiln_fs::write_atomic`]
//! (exclusive, unpredictable temporary file, fsync, rename, fsync of the directory) and
//! reads that check the magic bytes first and then read only the size the file states.

use crate::error::FormatError;
use crate::layout::{PREAMBLE_BYTES, START_BYTES, check_prefix, stated_size};
use crate::limits::MAX_FILE_BYTES;
use crate::{Module, from_bytes, to_bytes};
use std::fs::File;
use std::io::Read;
use std::path::Path;

impl From<kiln_fs::FsError> for FormatError {
    fn from(e: kiln_fs::FsError) -> Self {
        FormatError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

/// Saves a module to `path` atomically: either the complete new file is at `path`
/// afterwards, or (on any error) whatever was there before is untouched and no temporary
/// file is left behind. A symbolic link at `path` is replaced, never written through.
pub fn save(m: &Module, path: &Path) -> Result<(), FormatError> {
    let bytes = to_bytes(m)?;
    Ok(kiln_fs::write_atomic(path, &bytes)?)
}

/// Loads a module from `path`, then [`from_bytes`]. A regular file is read only if it is
/// at most [`MAX_FILE_BYTES`] long and starts with the `.kiln` magic bytes and version;
/// anything else (a pipe, a device) is read as a stream: the preamble first, checked, then
/// exactly the size it states (at most [`MAX_FILE_BYTES`]).
pub fn load(path: &Path) -> Result<Module, FormatError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| FormatError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = File::open(path).map_err(io("opening"))?;
    let meta = file.metadata().map_err(io("reading metadata of"))?;
    let bytes = if meta.is_file() {
        read_regular(&mut file, meta.len(), path)?
    } else {
        read_stream(&mut file, path)?
    };
    from_bytes(&bytes)
}

fn too_long(path: &Path, len: u64) -> FormatError {
    FormatError::limit(
        path.display().to_string(),
        "file size in bytes",
        len,
        MAX_FILE_BYTES,
    )
}

fn read_error(path: &Path, e: kiln_fs::ReadError) -> FormatError {
    match e {
        kiln_fs::ReadError::Io(source) => FormatError::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        },
        kiln_fs::ReadError::Short { needed, got } => FormatError::Truncated {
            what: "the size the preamble states".to_string(),
            needed,
            size: got,
        },
        kiln_fs::ReadError::Long { needed } => FormatError::invalid(
            "file",
            format!("continues after the {needed} bytes its preamble states"),
        ),
    }
}

/// A regular file of `len` bytes: limit, magic and version, the size its preamble states,
/// then the rest.
fn read_regular(file: &mut File, len: u64, path: &Path) -> Result<Vec<u8>, FormatError> {
    if len > MAX_FILE_BYTES {
        return Err(too_long(path, len));
    }
    let mut start = [0u8; PREAMBLE_BYTES];
    let n = kiln_fs::read_up_to(file, &mut start).map_err(|e| read_error(path, e.into()))?;
    check_prefix(&start[..n.min(START_BYTES)], len.max(n as u64))?;
    // A file larger than its preamble states is refused before the rest is read; a shorter
    // one is read (it is no larger than the stated size) so the loader can say what is missing.
    if n == PREAMBLE_BYTES
        && let Ok(stated) = stated_size(&start)
        && stated < len
    {
        return Err(FormatError::invalid(
            "file",
            format!("it has {len} bytes, but its preamble states {stated}"),
        ));
    }
    let rest =
        kiln_fs::read_exact_len(file, len.saturating_sub(n as u64)).map_err(|e| match e {
            // The file changed size while being read: report what was there.
            kiln_fs::ReadError::Short { got, .. } => FormatError::Truncated {
                what: format!("the {len} bytes its metadata states"),
                needed: len,
                size: n as u64 + got,
            },
            e => read_error(path, e),
        })?;
    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(&start[..n]);
    bytes.extend_from_slice(&rest);
    Ok(bytes)
}

/// A stream: the preamble, checked, then exactly the size it states.
fn read_stream(r: &mut impl Read, path: &Path) -> Result<Vec<u8>, FormatError> {
    let mut preamble = [0u8; PREAMBLE_BYTES];
    let n = kiln_fs::read_up_to(r, &mut preamble).map_err(|e| read_error(path, e.into()))?;
    let size = stated_size(&preamble[..n])?;
    if size > MAX_FILE_BYTES {
        return Err(too_long(path, size));
    }
    let rest = kiln_fs::read_exact_len(r, size - n as u64).map_err(|e| read_error(path, e))?;
    let mut bytes = preamble[..n].to_vec();
    bytes.extend_from_slice(&rest);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless stream of zero bytes that counts what is read from it.
    struct Zeros(u64);

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(0);
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_stream_is_refused_after_its_preamble() {
        let mut z = Zeros(0);
        let err = read_stream(&mut z, Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"not a .kiln file: starts with "\x00\x00\x00\x00\x00\x00\x00\x00", expected "KILNMOD\x00""#
        );
        assert_eq!(z.0, PREAMBLE_BYTES as u64);
    }

    #[test]
    fn a_stream_is_read_to_the_size_its_preamble_states_and_no_further() {
        let m = crate::Module {
            metadata: Default::default(),
            signature: Default::default(),
            graph: kiln_ir::Graph::new(),
            outputs: vec![],
            updates: vec![],
            program: None,
            state: vec![],
        };
        let good = to_bytes(&m).unwrap();
        let mut endless = good.as_slice().chain(Zeros(0));
        let err = read_stream(&mut endless, Path::new("pipe")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "file: continues after the {} bytes its preamble states",
                good.len() - PREAMBLE_BYTES
            )
        );
        let bytes = read_stream(&mut good.as_slice(), Path::new("pipe")).unwrap();
        assert_eq!(bytes, good);
        let mut huge = good.clone();
        huge[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let err = read_stream(&mut huge.as_slice().chain(Zeros(0)), Path::new("p")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data section: length in bytes 1099511627776 exceeds the limit 34359738368"
        );
    }

    #[test]
    fn a_regular_file_longer_than_its_preamble_states_is_refused_before_reading_on() {
        let m = crate::Module {
            metadata: Default::default(),
            signature: Default::default(),
            graph: kiln_ir::Graph::new(),
            outputs: vec![],
            updates: vec![],
            program: None,
            state: vec![],
        };
        let mut bytes = to_bytes(&m).unwrap();
        let stated = bytes.len();
        bytes.resize(stated + 4096, 0);
        let path =
            std::env::temp_dir().join(format!("kiln-format-long-{}.kiln", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let mut file = File::open(&path).unwrap();
        let err = read_regular(&mut file, bytes.len() as u64, &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "file: it has {} bytes, but its preamble states {stated}",
                bytes.len()
            )
        );
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), bytes.len() - PREAMBLE_BYTES);
        std::fs::remove_file(&path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn dev_zero_is_refused_with_a_bad_magic_error() {
        let err = load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"not a .kiln file: starts with "\x00\x00\x00\x00\x00\x00\x00\x00", expected "KILNMOD\x00""#
        );
    }
}
