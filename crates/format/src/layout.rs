//! File framing: the fixed preamble, the 64-byte aligned data section and the CRC-32
//! trailer (docs/file-format.md has the byte-by-byte layout).
//!
//! ```text
//! 0   magic       8 bytes  "KILNMOD\0"
//! 8   version     u32 LE   FORMAT_VERSION
//! 12  flags       u32 LE   0
//! 16  header_len  u64 LE
//! 24  data_offset u64 LE   multiple of 64, >= 40 + header_len
//! 32  data_len    u64 LE   multiple of 64
//! 40  header      header_len bytes (see codec)
//! ..  zero padding up to data_offset
//! data_offset     data section, data_len bytes
//! end - 4         CRC-32 (IEEE) of every preceding byte, u32 LE
//! ```

use crate::error::FormatError;
use crate::limits::{MAX_DATA_BYTES, MAX_HEADER_BYTES};

/// The first eight bytes of every `.kiln` file.
pub const MAGIC: [u8; 8] = *b"KILNMOD\0";

/// The format version this build writes and reads (version 5: graph ops as a stable name
/// and attribute values by kind).
pub const FORMAT_VERSION: u32 = 5;

/// The oldest format version this build still reads (version 1: op kinds by number).
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Bytes before the header.
pub const PREAMBLE_BYTES: usize = 40;

/// Bytes of the checksum trailer.
pub const TRAILER_BYTES: usize = 4;

/// Alignment of the data section and of every tensor in it.
pub const ALIGN: u64 = 64;

/// The parts of a framed file, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// Format version.
    pub version: u32,
    /// Encoded header.
    pub header: &'a [u8],
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// The data section.
    pub data: &'a [u8],
}

/// `n` rounded up to a multiple of [`ALIGN`].
pub fn align_up(n: u64) -> Option<u64> {
    n.checked_add(ALIGN - 1).map(|v| v / ALIGN * ALIGN)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn escaped(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// CRC-32 (IEEE 802.3, as zlib's `crc32`) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// Frames an encoded header and a data section (whose length must be a multiple of
/// [`ALIGN`]) into a complete file.
pub fn assemble(header: &[u8], data: &[u8]) -> Result<Vec<u8>, FormatError> {
    let header_len = header.len() as u64;
    if header_len > MAX_HEADER_BYTES {
        return Err(FormatError::encode(
            "header",
            format!("length in bytes {header_len} exceeds the limit {MAX_HEADER_BYTES}"),
        ));
    }
    let data_len = data.len() as u64;
    if data_len > MAX_DATA_BYTES {
        return Err(FormatError::encode(
            "data section",
            format!("length in bytes {data_len} exceeds the limit {MAX_DATA_BYTES}"),
        ));
    }
    let data_offset = align_up(PREAMBLE_BYTES as u64 + header_len)
        .ok_or_else(|| FormatError::encode("header", "length overflows"))?;
    let total = data_offset as usize + data.len() + TRAILER_BYTES;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&data_offset.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(header);
    out.resize(data_offset as usize, 0);
    out.extend_from_slice(data);
    reseal_push(&mut out);
    Ok(out)
}

fn reseal_push(out: &mut Vec<u8>) {
    let crc = crc32(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Recomputes the CRC-32 trailer of a file in place (for tools and for tests that mutate
/// files on purpose and want the loader's deeper checks, not the checksum, to catch the
/// mutation). Files shorter than the trailer are left alone.
pub fn reseal(bytes: &mut [u8]) {
    let Some(body_len) = bytes.len().checked_sub(TRAILER_BYTES) else {
        return;
    };
    let crc = crc32(&bytes[..body_len]);
    bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
}

/// Checks the magic bytes and the version at the start of a file of `size` bytes; `bytes`
/// holds at least its first 12 bytes, or the whole file if it is shorter.
fn check_start(bytes: &[u8], size: u64) -> Result<u32, FormatError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        let n = bytes.len().min(MAGIC.len());
        if bytes.len() < MAGIC.len() && bytes == &MAGIC[..n] {
            return Err(FormatError::Truncated {
                what: "the magic bytes".to_string(),
                needed: MAGIC.len() as u64,
                size,
            });
        }
        return Err(FormatError::BadMagic {
            found: format!("\"{}\"", escaped(&bytes[..n])),
            expected: format!("\"{}\"", escaped(&MAGIC)),
        });
    }
    if bytes.len() < 12 {
        return Err(FormatError::Truncated {
            what: "the format version".to_string(),
            needed: 12,
            size,
        });
    }
    let version = u32_at(bytes, 8);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(FormatError::UnsupportedVersion {
            found: version,
            oldest: OLDEST_READABLE_VERSION,
            supported: FORMAT_VERSION,
            relation: if version > FORMAT_VERSION {
                "a newer"
            } else {
                "an older"
            },
        });
    }
    Ok(version)
}

/// Checks the preamble's flags and lengths against the limits and each other and returns
/// the file size they state.
fn check_lengths(preamble: &[u8]) -> Result<u64, FormatError> {
    let flags = u32_at(preamble, 12);
    let header_len = u64_at(preamble, 16);
    let data_offset = u64_at(preamble, 24);
    let data_len = u64_at(preamble, 32);
    if flags != 0 {
        return Err(FormatError::invalid(
            "preamble",
            format!(
                "flags are {flags:#010x}, but version {FORMAT_VERSION} defines none (must be 0)"
            ),
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(FormatError::limit(
            "header",
            "length in bytes",
            header_len,
            MAX_HEADER_BYTES,
        ));
    }
    if data_len > MAX_DATA_BYTES {
        return Err(FormatError::limit(
            "data section",
            "length in bytes",
            data_len,
            MAX_DATA_BYTES,
        ));
    }
    let header_end = PREAMBLE_BYTES as u64 + header_len;
    let expected_offset = align_up(header_end).unwrap_or(u64::MAX);
    if data_offset != expected_offset {
        return Err(FormatError::invalid(
            "preamble",
            format!(
                "data section offset {data_offset} should be {expected_offset} (the {header_len}-byte header's end {header_end} rounded up to {ALIGN})"
            ),
        ));
    }
    if !data_len.is_multiple_of(ALIGN) {
        return Err(FormatError::invalid(
            "preamble",
            format!("data section length {data_len} is not a multiple of {ALIGN}"),
        ));
    }
    Ok(data_offset + data_len + TRAILER_BYTES as u64)
}

/// Checks the start of a file of `size` bytes (the magic bytes and the version) from its
/// first [`START_BYTES`] bytes, or all of it if it is shorter, so a reader can refuse a
/// file that is not a `.kiln` file before reading the rest.
pub fn check_prefix(prefix: &[u8], size: u64) -> Result<(), FormatError> {
    check_start(prefix, size).map(|_| ())
}

/// The bytes [`check_prefix`] looks at.
pub const START_BYTES: usize = 12;

/// The size of the whole file that `preamble` (its first [`PREAMBLE_BYTES`], or all of it
/// if it is shorter) starts, after checking the magic bytes, the version, the flags and the
/// lengths against the limits: a reader of a stream reads exactly that many bytes.
pub fn stated_size(preamble: &[u8]) -> Result<u64, FormatError> {
    check_start(preamble, preamble.len() as u64)?;
    if preamble.len() < PREAMBLE_BYTES {
        return Err(FormatError::Truncated {
            what: "the preamble".to_string(),
            needed: PREAMBLE_BYTES as u64,
            size: preamble.len() as u64,
        });
    }
    check_lengths(preamble)
}

/// Checks the framing of a file (magic, version, flags, lengths, alignment, zero padding,
/// checksum) and returns its parts. Nothing is allocated.
pub fn split(bytes: &[u8]) -> Result<Parts<'_>, FormatError> {
    let size = bytes.len() as u64;
    let version = check_start(bytes, size)?;
    let min = (PREAMBLE_BYTES + TRAILER_BYTES) as u64;
    if size < min {
        return Err(FormatError::Truncated {
            what: "the preamble and checksum".to_string(),
            needed: min,
            size,
        });
    }
    let body_len = bytes.len() - TRAILER_BYTES;
    let stored = u32_at(bytes, body_len);
    let computed = crc32(&bytes[..body_len]);
    let header_len = u64_at(bytes, 16);
    let data_offset = u64_at(bytes, 24);
    let data_len = u64_at(bytes, 32);
    // Lengths first: a truncated file is reported as truncated, not as a bad checksum.
    let data_end = data_offset.checked_add(data_len);
    if let Some(end) = data_end.and_then(|e| e.checked_add(TRAILER_BYTES as u64))
        && end > size
        && data_offset.is_multiple_of(ALIGN)
        && data_len.is_multiple_of(ALIGN)
        && header_len <= MAX_HEADER_BYTES
        && data_len <= MAX_DATA_BYTES
        && align_up(PREAMBLE_BYTES as u64 + header_len) == Some(data_offset)
    {
        return Err(FormatError::Truncated {
            what: format!(
                "a {header_len}-byte header, a {data_len}-byte data section at offset {data_offset} and the checksum"
            ),
            needed: end,
            size,
        });
    }
    if stored != computed {
        return Err(FormatError::Checksum {
            stored,
            computed,
            covered: body_len as u64,
        });
    }
    let expected_size = check_lengths(bytes)?;
    let header_end = PREAMBLE_BYTES as u64 + header_len;
    if expected_size != size {
        return Err(if expected_size > size {
            FormatError::Truncated {
                what: format!(
                    "a {header_len}-byte header, a {data_len}-byte data section and the checksum"
                ),
                needed: expected_size,
                size,
            }
        } else {
            FormatError::invalid(
                "file",
                format!(
                    "{} unexpected byte(s) between the data section's end {} and the checksum",
                    size - expected_size,
                    data_offset + data_len
                ),
            )
        });
    }
    // All offsets are now below `size`, which fits in usize.
    let (h0, h1, d0, d1) = (
        PREAMBLE_BYTES,
        header_end as usize,
        data_offset as usize,
        (data_offset + data_len) as usize,
    );
    if let Some(p) = bytes[h1..d0].iter().position(|&b| b != 0) {
        return Err(FormatError::invalid(
            "header padding",
            format!("byte {} is {:#04x}, expected 0", h1 + p, bytes[h1 + p]),
        ));
    }
    Ok(Parts {
        version,
        header: &bytes[h0..h1],
        data_offset,
        data: &bytes[d0..d1],
    })
}
