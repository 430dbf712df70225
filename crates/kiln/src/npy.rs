//! Reading and writing `.npy` files for every kiln dtype (`f32, f64, i32, i64, u32, bool`),
//! either byte order, C or Fortran layout on read. The reader treats the file as hostile:
//! it reads the magic bytes, the version and the header length first, parses the header
//! dictionary itself (a linear scan with [`MAX_HEADER_BYTES`], [`MAX_RANK`] and an
//! allowed-character set: no recursion, so no nesting blow-up) and then reads exactly the
//! data size the header states (at most [`MAX_DATA_BYTES`]). Every error is one line.
//! Writes are atomic and symlink-safe ([`kiln_fs::write_atomic`]).
//!
//! ```
//! use kiln::{Array, npy};
//!
//! let a = Array::from_i64(&[2, 2], vec![1, -2, 3, -4])?;
//! let bytes = npy::to_bytes(&a)?; // what numpy.save writes
//! assert!(bytes.starts_with(b"\x93NUMPY"));
//! let back = npy::from_bytes(&bytes)?;
//! assert_eq!(back.shape(), &[2, 2]);
//! assert_eq!(back.as_i64()?, &[1, -2, 3, -4]);
//!
//! // Hostile input is an error, never a panic or a huge allocation.
//! assert!(npy::from_bytes(b"\x93NUMPY\x01\x00garbage").is_err());
//!
//! let path = std::env::temp_dir().join(format!("kiln-npy-doc-{}.npy", std::process::id()));
//! npy::write(&path, &a)?;
//! assert!(npy::read(&path)?.bit_eq(&a));
//! std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::Error;
use kiln_fs::one_line;
use kiln_ir::{Array, DType};
use npyz::WriterBuilder;
use std::io::Read;
use std::path::Path;

/// Longest `.npy` header read, in bytes (NumPy itself refuses headers over 10 000 bytes
/// unless told otherwise).
pub const MAX_HEADER_BYTES: usize = 1 << 16;

/// Largest rank of a `.npy` array (the `.kiln` limit too).
pub const MAX_RANK: usize = 32;

/// Largest data size of a `.npy` array read, in bytes: 32 GiB (the `.kiln` data limit).
pub const MAX_DATA_BYTES: u64 = 32 << 30;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Npy {
        path: one_line(&path.display().to_string()),
        message: one_line(&message.into()),
    }
}

/// Why `.npy` bytes could not be read; shown as the message of [`Error::Npy`].
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The reader failed.
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
    /// Fewer bytes than the magic string, all of them matching it.
    #[error("truncated: {0} bytes, the magic bytes need 6")]
    TruncatedMagic(usize),
    /// The magic string does not match (both escaped).
    #[error("not a .npy file: starts with \"{found}\", expected \"{expected}\"")]
    NotNpy {
        /// The first bytes, escaped.
        found: String,
        /// The magic string, escaped.
        expected: String,
    },
    /// The file ends inside the version bytes.
    #[error("truncated: {0} bytes, the version needs 8")]
    TruncatedVersion(usize),
    /// A format version this reader does not know.
    #[error("unsupported .npy version {major}.{minor}")]
    Version {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The file ends inside the header length.
    #[error("truncated: {got} bytes, the header length needs {needed}")]
    TruncatedHeaderLength {
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The stated header length is over [`MAX_HEADER_BYTES`].
    #[error("header length {0} exceeds the limit {MAX_HEADER_BYTES}")]
    HeaderTooLong(usize),
    /// The file ends inside the header.
    #[error("truncated: {got} bytes, the {header_len}-byte header needs {needed}")]
    TruncatedHeader {
        /// The stated header length.
        header_len: usize,
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The header dictionary is malformed.
    #[error("header: {0}")]
    Header(#[from] HeaderError),
    /// The data size is over [`MAX_DATA_BYTES`].
    #[error("shape {shape:?} of {dtype} needs more than the limit of {MAX_DATA_BYTES} data bytes")]
    DataTooLarge {
        /// The stated shape.
        shape: Vec<usize>,
        /// The stated dtype.
        dtype: DType,
    },
    /// A regular file whose length is not what its header states.
    #[error("file has {len} bytes, but its header and {dtype}{shape:?} data need {stated}")]
    LengthMismatch {
        /// The file's length.
        len: u64,
        /// The stated dtype.
        dtype: DType,
        /// The stated shape.
        shape: Vec<usize>,
        /// The length the header states.
        stated: u64,
    },
    /// The input ends inside the data.
    #[error("truncated: {dtype}{shape:?} data needs {needed} bytes, {got} present")]
    TruncatedData {
        /// The stated dtype.
        dtype: DType,
        /// The stated shape.
        shape: Vec<usize>,
        /// Data bytes needed.
        needed: u64,
        /// Data bytes present.
        got: u64,
    },
    /// Reading the data failed.
    #[error("data: {0}")]
    Data(kiln_fs::ReadError),
    /// The data does not make an array.
    #[error("{0}")]
    Array(#[from] kiln_ir::ArrayError),
}

/// What is wrong with a header dictionary (offsets are bytes into the header text).
#[derive(Debug, thiserror::Error)]
enum HeaderError {
    /// Something else than the expected token; `found` is the quoted byte or `the end`.
    #[error("expected {what} at byte {at}, found {found}")]
    Expected {
        /// What the grammar expects.
        what: String,
        /// The offset.
        at: usize,
        /// What is there.
        found: String,
    },
    /// A string without its closing quote.
    #[error("string at byte {0} is not closed")]
    UnclosedString(usize),
    /// A backslash in a string.
    #[error("escape at byte {0} is not supported")]
    Escape(usize),
    /// Text that is not UTF-8 (unreachable after the printable-ASCII check).
    #[error("{0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// A dimension that does not fit the integer types.
    #[error("dimension at byte {0} is too large")]
    DimensionTooLarge(usize),
    /// A dimension over 2^40.
    #[error("dimension {value} at byte {at} exceeds the limit {}", 1u64 << 40)]
    DimensionOverLimit {
        /// The dimension.
        value: u64,
        /// Its offset.
        at: usize,
    },
    /// A dimension that does not fit `usize`.
    #[error("dimension {value} at byte {at} is too large")]
    DimensionOverUsize {
        /// The dimension.
        value: u64,
        /// Its offset.
        at: usize,
    },
    /// More than [`MAX_RANK`] dimensions.
    #[error("rank exceeds the limit {MAX_RANK}")]
    RankOverLimit,
    /// A type string naming a dtype kiln does not have (without its byte-order mark).
    #[error("dtype `{0}` is not supported (expected f4, f8, i4, i8, u4 or b1)")]
    UnsupportedDtype(String),
    /// A multi-byte type string without a byte order.
    #[error("dtype `{0}` has no byte order")]
    NoByteOrder(String),
    /// A byte that is not printable ASCII or whitespace.
    #[error("byte {at} is {byte:#04x}, not printable ASCII")]
    NotPrintable {
        /// Its offset.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// A structured dtype (a list as `descr`).
    #[error("structured dtypes are not supported")]
    Structured,
    /// `fortran_order` is neither `True` nor `False`.
    #[error("fortran_order is `{0}`, not True or False")]
    FortranOrder(String),
    /// A key other than `descr`, `fortran_order` and `shape`.
    #[error("unknown key '{key}' at byte {at}")]
    UnknownKey {
        /// The key.
        key: String,
        /// Its offset.
        at: usize,
    },
    /// A key given twice.
    #[error("key '{key}' at byte {at} appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Its offset.
        at: usize,
    },
    /// One of the three keys is missing.
    #[error("key '{0}' is missing")]
    MissingKey(&'static str),
}

fn escaped(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// Reads a `.npy` file. A regular file must be exactly as long as its header states; a
/// pipe or device is read as a stream, and only as far as the header states.
///
/// # Errors
///
/// [`Error::Npy`] with the path and a one-line message if the file cannot be opened or
/// read, is not a `.npy` file, has a dtype kiln lacks (see [`dtype_of`]), a header or data
/// over [`MAX_HEADER_BYTES`], [`MAX_RANK`] or [`MAX_DATA_BYTES`], or a length that
/// disagrees with its header.
pub fn read(path: impl AsRef<Path>) -> Result<Array, Error> {
    let path = path.as_ref();
    let mut file = std::fs::File::open(path).map_err(|e| err(path, e.to_string()))?;
    let meta = file.metadata().map_err(|e| err(path, e.to_string()))?;
    let len = meta.is_file().then_some(meta.len());
    parse(&mut file, len).map_err(|e| err(path, e.to_string()))
}

/// Parses `.npy` bytes; the whole slice must be one array. Errors as [`read`] (the path
/// shown is `<bytes>`).
pub fn from_bytes(bytes: &[u8]) -> Result<Array, Error> {
    parse(&mut &bytes[..], Some(bytes.len() as u64))
        .map_err(|e| err(Path::new("<bytes>"), e.to_string()))
}

/// Reads a `.npy` from any reader, only as far as its header states. Errors as [`read`]
/// (the path shown is `<reader>`), including a reader that ends early.
pub fn read_from(mut r: impl Read) -> Result<Array, Error> {
    parse(&mut r, None).map_err(|e| err(Path::new("<reader>"), e.to_string()))
}

/// What a `.npy` header states.
#[derive(Debug, PartialEq)]
struct Header {
    dtype: DType,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
}

/// Reads and checks a whole `.npy` file from `r`; `len` is its size when known (a regular
/// file), checked against the header before the data is read.
fn parse(r: &mut impl Read, len: Option<u64>) -> Result<Array, ReadError> {
    let io = ReadError::Io;
    let mut start = [0u8; 12];
    let n = kiln_fs::read_up_to(r, &mut start[..8]).map_err(io)?;
    if start[..n.min(6)] != MAGIC[..n.min(6)] || n < 6 {
        if n < 6 && start[..n] == MAGIC[..n] {
            return Err(ReadError::TruncatedMagic(n));
        }
        return Err(ReadError::NotNpy {
            found: escaped(&start[..n.min(6)]),
            expected: escaped(MAGIC),
        });
    }
    if n < 8 {
        return Err(ReadError::TruncatedVersion(n));
    }
    let (major, minor) = (start[6], start[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(ReadError::Version { major, minor }),
    };
    let got = kiln_fs::read_up_to(r, &mut start[8..8 + len_bytes]).map_err(io)?;
    if got < len_bytes {
        return Err(ReadError::TruncatedHeaderLength {
            got: 8 + got,
            needed: 8 + len_bytes,
        });
    }
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([start[8], start[9]]))
    } else {
        u32::from_le_bytes([start[8], start[9], start[10], start[11]]) as usize
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(ReadError::HeaderTooLong(header_len));
    }
    let mut text = vec![0u8; header_len];
    let got = kiln_fs::read_up_to(r, &mut text).map_err(io)?;
    let header_start = 8 + len_bytes;
    if got < header_len {
        return Err(ReadError::TruncatedHeader {
            header_len,
            got: header_start + got,
            needed: header_start + header_len,
        });
    }
    let h = parse_header(&text)?;
    let elements = h
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let data_bytes = elements
        .and_then(|e| e.checked_mul(h.dtype.size_bytes() as u64))
        .filter(|&b| b <= MAX_DATA_BYTES)
        .ok_or_else(|| ReadError::DataTooLarge {
            shape: h.shape.clone(),
            dtype: h.dtype,
        })?;
    let stated = (header_start + header_len) as u64 + data_bytes;
    if let Some(len) = len
        && len != stated
    {
        return Err(ReadError::LengthMismatch {
            len,
            dtype: h.dtype,
            shape: h.shape,
            stated,
        });
    }
    let mut data = kiln_fs::read_exact_len(r, data_bytes).map_err(|e| match e {
        kiln_fs::ReadError::Short { needed, got } => ReadError::TruncatedData {
            dtype: h.dtype,
            shape: h.shape.clone(),
            needed,
            got,
        },
        e => ReadError::Data(e),
    })?;
    let es = h.dtype.size_bytes();
    if h.big_endian && es > 1 {
        for c in data.chunks_exact_mut(es) {
            c.reverse();
        }
    }
    let arr = Array::from_le_bytes(h.dtype, &h.shape, &data)?;
    Ok(if h.fortran { fortran_to_c(&arr) } else { arr })
}

/// A cursor over header text with one-line errors that give the byte offset.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while self.at < self.b.len() && matches!(self.b[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.b.get(self.at).copied()
    }

    fn fail(&self, what: &str) -> HeaderError {
        HeaderError::Expected {
            what: what.to_string(),
            at: self.at,
            found: match self.b.get(self.at) {
                Some(&c) => format!("'{}'", escaped(&[c])),
                None => "the end".to_string(),
            },
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), HeaderError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.fail(&format!("'{}'", c as char)))
        }
    }

    /// A quoted string without escapes.
    fn string(&mut self) -> Result<&str, HeaderError> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.fail("a quoted string")),
        };
        let start = self.at + 1;
        let Some(len) = self.b[start..].iter().position(|&c| c == q) else {
            return Err(HeaderError::UnclosedString(self.at));
        };
        let s = &self.b[start..start + len];
        if let Some(p) = s.iter().position(|&c| c == b'\\') {
            return Err(HeaderError::Escape(start + p));
        }
        self.at = start + len + 1;
        // Only printable ASCII reaches here (checked on the whole header).
        Ok(std::str::from_utf8(s)?)
    }

    fn word(&mut self) -> Result<&str, HeaderError> {
        self.skip_space();
        let start = self.at;
        while self.at < self.b.len() && self.b[self.at].is_ascii_alphabetic() {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.fail("True or False"));
        }
        Ok(std::str::from_utf8(&self.b[start..self.at])?)
    }

    /// A non-negative integer (a Python 2 `L` suffix is allowed), at most 2^40.
    fn dim(&mut self) -> Result<usize, HeaderError> {
        self.skip_space();
        let start = self.at;
        while self.at < self.b.len() && self.b[self.at].is_ascii_digit() && self.at - start < 20 {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.fail("a dimension"));
        }
        let text = std::str::from_utf8(&self.b[start..self.at])?;
        let value: u64 = text
            .parse()
            .map_err(|_| HeaderError::DimensionTooLarge(start))?;
        if value > 1 << 40 {
            return Err(HeaderError::DimensionOverLimit { value, at: start });
        }
        if self.b.get(self.at) == Some(&b'L') {
            self.at += 1;
        }
        usize::try_from(value).map_err(|_| HeaderError::DimensionOverUsize { value, at: start })
    }

    fn shape(&mut self) -> Result<Vec<usize>, HeaderError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            if dims.len() == MAX_RANK {
                return Err(HeaderError::RankOverLimit);
            }
            dims.push(self.dim()?);
            if !self.eat(b',') && self.peek() != Some(b')') {
                return Err(self.fail("',' or ')'"));
            }
        }
        Ok(dims)
    }
}

/// The dtype and byte order of a NumPy type string such as `<f4`.
fn descr(s: &str) -> Result<(DType, bool), HeaderError> {
    let dtype = dtype_of(s).ok_or_else(|| {
        HeaderError::UnsupportedDtype(s.trim_start_matches(['<', '>', '|', '=']).to_string())
    })?;
    let big = match s.as_bytes().first() {
        Some(b'>') => true,
        Some(b'<') => false,
        Some(b'=') => cfg!(target_endian = "big"),
        Some(b'|') if dtype.size_bytes() == 1 => false,
        _ => return Err(HeaderError::NoByteOrder(s.to_string())),
    };
    Ok((dtype, big))
}

/// Parses the header dictionary, e.g. `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (2, 3), }`: exactly these three keys, each once; only printable ASCII and
/// whitespace.
fn parse_header(text: &[u8]) -> Result<Header, HeaderError> {
    if let Some(p) = text
        .iter()
        .position(|&c| !(c.is_ascii_graphic() || matches!(c, b' ' | b'\t' | b'\n' | b'\r')))
    {
        return Err(HeaderError::NotPrintable {
            at: p,
            byte: text[p],
        });
    }
    let mut c = Cursor { b: text, at: 0 };
    c.expect(b'{')?;
    let (mut dtype, mut fortran, mut shape) = (None, None, None);
    while !c.eat(b'}') {
        let key_at = c.at;
        let key = c.string()?.to_string();
        c.expect(b':')?;
        let dup = match key.as_str() {
            "descr" => {
                if c.peek() == Some(b'[') {
                    return Err(HeaderError::Structured);
                }
                dtype.replace(descr(c.string()?)?).is_some()
            }
            "fortran_order" => {
                let v = match c.word()? {
                    "True" => true,
                    "False" => false,
                    w => return Err(HeaderError::FortranOrder(w.to_string())),
                };
                fortran.replace(v).is_some()
            }
            "shape" => shape.replace(c.shape()?).is_some(),
            k => {
                return Err(HeaderError::UnknownKey {
                    key: k.to_string(),
                    at: key_at,
                });
            }
        };
        if dup {
            return Err(HeaderError::DuplicateKey { key, at: key_at });
        }
        if !c.eat(b',') && c.peek() != Some(b'}') {
            return Err(c.fail("',' or '}'"));
        }
    }
    if c.peek().is_some() {
        return Err(c.fail("the end of the header"));
    }
    let ((dtype, big_endian), fortran, shape) = match (dtype, fortran, shape) {
        (Some(d), Some(f), Some(s)) => (d, f, s),
        (d, f, _) => {
            let missing = if d.is_none() {
                "descr"
            } else if f.is_none() {
                "fortran_order"
            } else {
                "shape"
            };
            return Err(HeaderError::MissingKey(missing));
        }
    };
    Ok(Header {
        dtype,
        big_endian,
        fortran,
        shape,
    })
}

/// Reorders column-major data into row-major.
fn fortran_to_c(a: &Array) -> Array {
    let shape = a.shape();
    let n = a.len();
    let bytes = a.to_le_bytes();
    let es = a.dtype().size_bytes();
    let mut out = vec![0u8; bytes.len()];
    let rank = shape.len();
    let mut idx = vec![0usize; rank];
    for c_flat in 0..n {
        let mut f_off = 0usize;
        let mut stride = 1usize;
        for (ax, &i) in idx.iter().enumerate() {
            f_off += i * stride;
            stride *= shape[ax];
        }
        out[c_flat * es..(c_flat + 1) * es].copy_from_slice(&bytes[f_off * es..(f_off + 1) * es]);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Array::from_le_bytes(a.dtype(), shape, &out).unwrap_or_else(|_| a.clone())
}

/// Serialises an array to `.npy` bytes (format version 1.0, little-endian, C order), as
/// `numpy.save` writes them. Errors only if the encoder fails.
pub fn to_bytes(a: &Array) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let p = Path::new("<bytes>");
    let io = |e: std::io::Error| err(p, format!("writing: {e}"));
    macro_rules! put {
        ($t:ty, $v:expr) => {{
            let mut w = npyz::WriteOptions::<$t>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut buf)
                .begin_nd()
                .map_err(io)?;
            w.extend($v.iter().copied()).map_err(io)?;
            w.finish().map_err(io)?;
        }};
    }
    match a.data() {
        kiln_ir::Data::F32(v) => put!(f32, v),
        kiln_ir::Data::F64(v) => put!(f64, v),
        kiln_ir::Data::I32(v) => put!(i32, v),
        kiln_ir::Data::I64(v) => put!(i64, v),
        kiln_ir::Data::U32(v) => put!(u32, v),
        kiln_ir::Data::Bool(v) => put!(bool, v),
    }
    Ok(buf)
}

/// Writes an array to a `.npy` file atomically and without following a symbolic link
/// ([`kiln_fs::write_atomic`]): a reader sees the old file or the new one, never half of
/// it. Errors ([`Error::Npy`] with the path) if the file cannot be written.
pub fn write(path: impl AsRef<Path>, a: &Array) -> Result<(), Error> {
    let path = path.as_ref();
    let bytes = to_bytes(a)?;
    kiln_fs::write_atomic(path, &bytes).map_err(|e| err(path, e.to_string()))
}

/// The dtype kiln uses for a NumPy type string such as `<f4`, if supported.
pub fn dtype_of(type_str: &str) -> Option<DType> {
    match type_str.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => Some(DType::F32),
        "f8" => Some(DType::F64),
        "i4" => Some(DType::I32),
        "i8" => Some(DType::I64),
        "u4" => Some(DType::U32),
        "b1" => Some(DType::Bool),
        _ => None,
    }
}

/// The fuzz harness of the reader (cargo-fuzz target `npy_read` in crates/cli/fuzz and the
/// CI smoke test crates/cli/tests/fuzz_parsers.rs): any bytes give an array or a one-line
/// error, and an array read writes and reads back bit for bit. Panics when a property fails.
pub fn fuzz_check(bytes: &[u8]) {
    match from_bytes(bytes) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
        }
        Ok(a) => {
            let again = to_bytes(&a).map(|b| from_bytes(&b));
            match again {
                Ok(Ok(b)) => assert!(b.bit_eq(&a), "{a:?} reads back as {b:?}"),
                Ok(Err(e)) | Err(e) => panic!("an array read does not round-trip: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
