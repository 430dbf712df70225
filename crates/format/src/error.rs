//! The loader's and writer's typed error: every variant says what is wrong and where, on
//! one line.

use std::path::PathBuf;

/// Why a module could not be saved or loaded. Each message is one line that names the
/// offending item (`state tensor fc1.weight`, `graph node n12`, `header byte 412`) and the
/// numbers involved.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading, writing, syncing or renaming a file failed.
    #[error("{action} {path}: {source}", path = .path.display())]
    Io {
        /// What was being done (`reading`, `writing temporary file`, ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not start with the `.kiln` magic bytes.
    #[error("not a .kiln file: starts with {found}, expected {expected}")]
    BadMagic {
        /// The first bytes found, escaped.
        found: String,
        /// The magic, escaped.
        expected: String,
    },
    /// The file was written by a format version this build does not read.
    #[error(
        "unsupported .kiln format version {found}: this build reads versions {oldest} to {supported} (written by {relation} kiln)"
    )]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// The oldest version this build reads.
        oldest: u32,
        /// The version this build writes (and the newest it reads).
        supported: u32,
        /// `a newer` or `an older`.
        relation: &'static str,
    },
    /// The file is shorter than its own framing says.
    #[error("file is truncated: it has {size} bytes but {needed} are needed for {what}")]
    Truncated {
        /// What did not fit (`the fixed preamble`, `the data section`, ...).
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        size: u64,
    },
    /// The CRC-32 trailer does not match the file's contents.
    #[error(
        "checksum mismatch: trailer says {stored:#010x}, bytes 0..{covered} hash to {computed:#010x} (file corrupted or truncated)"
    )]
    Checksum {
        /// Value in the trailer.
        stored: u32,
        /// Value computed over the covered bytes.
        computed: u32,
        /// Number of bytes covered.
        covered: u64,
    },
    /// A size or count exceeds one of the limits in [`crate::limits`].
    #[error("{location}: {what} {value} exceeds the limit {limit}")]
    Limit {
        /// Where (`header`, `graph node n3`, `state tensor fc1.weight`).
        location: String,
        /// Which quantity (`rank`, `length in bytes`, ...).
        what: &'static str,
        /// The value found.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The header bytes do not decode as the schema of this format version.
    #[error("header does not decode at header byte {offset} of {len}: {message}")]
    Decode {
        /// Bytes of the header consumed when decoding failed.
        offset: u64,
        /// Header length.
        len: u64,
        /// What the decoder found.
        message: String,
    },
    /// A decoded value is malformed or inconsistent with the rest of the file.
    #[error("{location}: {message}")]
    Invalid {
        /// Where (`data section`, `graph node n4`, `kernel plan buffer b2`, ...).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// The stored graph fails `kiln_ir::verify`.
    #[error("graph fails verification ({count} error{s}): {summary}", s = if *.count == 1 { "" } else { "s" })]
    GraphVerify {
        /// Number of verifier errors.
        count: usize,
        /// The first errors, `; `-separated.
        summary: String,
    },
    /// The stored kernel plan fails `kiln_kernel::verify` (types, roles or a bounds proof).
    #[error("kernel plan fails verification ({count} error{s}): {summary}", s = if *.count == 1 { "" } else { "s" })]
    ProgramVerify {
        /// Number of verifier errors.
        count: usize,
        /// The first errors, `; `-separated.
        summary: String,
    },
    /// The module cannot be written (it breaks a limit or holds an unencodable value).
    #[error("cannot encode module: {location}: {message}")]
    Encode {
        /// The offending item.
        location: String,
        /// What is wrong.
        message: String,
    },
}

impl FormatError {
    pub(crate) fn invalid(location: impl Into<String>, message: impl Into<String>) -> FormatError {
        FormatError::Invalid {
            location: one_line(&location.into()),
            message: one_line(&message.into()),
        }
    }

    pub(crate) fn limit(
        location: impl Into<String>,
        what: &'static str,
        value: u64,
        limit: u64,
    ) -> FormatError {
        FormatError::Limit {
            location: one_line(&location.into()),
            what,
            value,
            limit,
        }
    }

    pub(crate) fn encode(location: impl Into<String>, message: impl Into<String>) -> FormatError {
        FormatError::Encode {
            location: one_line(&location.into()),
            message: one_line(&message.into()),
        }
    }
}

pub(crate) use kiln_fs::one_line;

/// How a name from a file appears in a message: as is when it is printable, else quoted and
/// escaped.
pub(crate) fn shown(name: &str) -> String {
    if !name.is_empty() && !name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

/// The path of region `k` of the graph at `parent` (`""` for the top-level graph) as
/// messages show it: `r0`, `r0/r2` (region r2 of region r0's graph), ...
pub(crate) fn region_path(parent: &str, k: usize) -> String {
    if parent.is_empty() {
        format!("r{k}")
    } else {
        format!("{parent}/r{k}")
    }
}

/// The first few messages of a verifier's error list joined on one line.
pub(crate) fn summarize<T: ToString>(errors: &[T]) -> String {
    const SHOWN: usize = 3;
    let mut parts: Vec<String> = errors
        .iter()
        .take(SHOWN)
        .map(|e| one_line(&e.to_string()))
        .collect();
    if errors.len() > SHOWN {
        parts.push(format!("and {} more", errors.len() - SHOWN));
    }
    parts.join("; ")
}
