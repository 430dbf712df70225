//! Reading and writing `.npy` files for every kiln dtype (`f32, f64, i32, i64, u32, bool`),
//! either byte order, C or Fortran layout on read. The reader treats the file as hostile:
//! it reads the magic bytes, the version and the header length first, parses the header
//! dictionary itself (a linear scan with [`MAX_HEADER_BYTES`], [`MAX_RANK`] and an
//! allowed-character set: no recursion, so no nesting blow-up) and then reads exactly the
//! data size the header states (at most [`MAX_DATA_BYTES`]). Every error is one line.
//! Writes are atomic and symlink-safe ([`kiln_fs::write_atomic`]).

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

fn escaped(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// Reads a `.npy` file. A regular file must be exactly as long as its header states; a
/// pipe or device is read as a stream, and only as far as the header states.
pub fn read(path: impl AsRef<Path>) -> Result<Array, Error> {
    let path = path.as_ref();
    let mut file = std::fs::File::open(path).map_err(|e| err(path, e.to_string()))?;
    let meta = file.metadata().map_err(|e| err(path, e.to_string()))?;
    let len = meta.is_file().then_some(meta.len());
    parse(&mut file, len).map_err(|m| err(path, m))
}

/// Parses `.npy` bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<Array, Error> {
    parse(&mut &bytes[..], Some(bytes.len() as u64)).map_err(|m| err(Path::new("<bytes>"), m))
}

/// Reads a `.npy` from any reader, only as far as its header states.
pub fn read_from(mut r: impl Read) -> Result<Array, Error> {
    parse(&mut r, None).map_err(|m| err(Path::new("<reader>"), m))
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
fn parse(r: &mut impl Read, len: Option<u64>) -> Result<Array, String> {
    let io = |e: std::io::Error| format!("reading: {e}");
    let mut start = [0u8; 12];
    let n = kiln_fs::read_up_to(r, &mut start[..8]).map_err(io)?;
    if start[..n.min(6)] != MAGIC[..n.min(6)] || n < 6 {
        if n < 6 && start[..n] == MAGIC[..n] {
            return Err(format!("truncated: {n} bytes, the magic bytes need 6"));
        }
        return Err(format!(
            "not a .npy file: starts with \"{}\", expected \"{}\"",
            escaped(&start[..n.min(6)]),
            escaped(MAGIC)
        ));
    }
    if n < 8 {
        return Err(format!("truncated: {n} bytes, the version needs 8"));
    }
    let (major, minor) = (start[6], start[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(format!("unsupported .npy version {major}.{minor}")),
    };
    let got = kiln_fs::read_up_to(r, &mut start[8..8 + len_bytes]).map_err(io)?;
    if got < len_bytes {
        return Err(format!(
            "truncated: {} bytes, the header length needs {}",
            8 + got,
            8 + len_bytes
        ));
    }
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([start[8], start[9]]))
    } else {
        u32::from_le_bytes([start[8], start[9], start[10], start[11]]) as usize
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "header length {header_len} exceeds the limit {MAX_HEADER_BYTES}"
        ));
    }
    let mut text = vec![0u8; header_len];
    let got = kiln_fs::read_up_to(r, &mut text).map_err(io)?;
    let header_start = 8 + len_bytes;
    if got < header_len {
        return Err(format!(
            "truncated: {} bytes, the {header_len}-byte header needs {}",
            header_start + got,
            header_start + header_len
        ));
    }
    let h = parse_header(&text).map_err(|m| format!("header: {m}"))?;
    let elements = h
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let data_bytes = elements
        .and_then(|e| e.checked_mul(h.dtype.size_bytes() as u64))
        .filter(|&b| b <= MAX_DATA_BYTES)
        .ok_or_else(|| {
            format!(
                "shape {:?} of {} needs more than the limit of {MAX_DATA_BYTES} data bytes",
                h.shape, h.dtype
            )
        })?;
    let stated = (header_start + header_len) as u64 + data_bytes;
    if let Some(len) = len
        && len != stated
    {
        return Err(format!(
            "file has {len} bytes, but its header and {}{:?} data need {stated}",
            h.dtype, h.shape
        ));
    }
    let mut data = kiln_fs::read_exact_len(r, data_bytes).map_err(|e| match e {
        kiln_fs::ReadError::Short { needed, got } => format!(
            "truncated: {}{:?} data needs {needed} bytes, {got} present",
            h.dtype, h.shape
        ),
        e => format!("data: {e}"),
    })?;
    let es = h.dtype.size_bytes();
    if h.big_endian && es > 1 {
        for c in data.chunks_exact_mut(es) {
            c.reverse();
        }
    }
    let arr = Array::from_le_bytes(h.dtype, &h.shape, &data).map_err(|e| e.to_string())?;
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

    fn fail(&self, what: &str) -> String {
        match self.b.get(self.at) {
            Some(&c) => format!(
                "expected {what} at byte {}, found '{}'",
                self.at,
                escaped(&[c])
            ),
            None => format!("expected {what} at byte {}, found the end", self.at),
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

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.fail(&format!("'{}'", c as char)))
        }
    }

    /// A quoted string without escapes.
    fn string(&mut self) -> Result<&str, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.fail("a quoted string")),
        };
        let start = self.at + 1;
        let Some(len) = self.b[start..].iter().position(|&c| c == q) else {
            return Err(format!("string at byte {} is not closed", self.at));
        };
        let s = &self.b[start..start + len];
        if let Some(p) = s.iter().position(|&c| c == b'\\') {
            return Err(format!("escape at byte {} is not supported", start + p));
        }
        self.at = start + len + 1;
        // Only printable ASCII reaches here (checked on the whole header).
        std::str::from_utf8(s).map_err(|e| e.to_string())
    }

    fn word(&mut self) -> Result<&str, String> {
        self.skip_space();
        let start = self.at;
        while self.at < self.b.len() && self.b[self.at].is_ascii_alphabetic() {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.fail("True or False"));
        }
        std::str::from_utf8(&self.b[start..self.at]).map_err(|e| e.to_string())
    }

    /// A non-negative integer (a Python 2 `L` suffix is allowed), at most 2^40.
    fn dim(&mut self) -> Result<usize, String> {
        self.skip_space();
        let start = self.at;
        while self.at < self.b.len() && self.b[self.at].is_ascii_digit() && self.at - start < 20 {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.fail("a dimension"));
        }
        let text = std::str::from_utf8(&self.b[start..self.at]).map_err(|e| e.to_string())?;
        let v: u64 = text
            .parse()
            .map_err(|_| format!("dimension at byte {start} is too large"))?;
        if v > 1 << 40 {
            return Err(format!(
                "dimension {v} at byte {start} exceeds the limit {}",
                1u64 << 40
            ));
        }
        if self.b.get(self.at) == Some(&b'L') {
            self.at += 1;
        }
        usize::try_from(v).map_err(|_| format!("dimension {v} at byte {start} is too large"))
    }

    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            if dims.len() == MAX_RANK {
                return Err(format!("rank exceeds the limit {MAX_RANK}"));
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
fn descr(s: &str) -> Result<(DType, bool), String> {
    let dtype = dtype_of(s).ok_or_else(|| {
        format!(
            "dtype `{}` is not supported (expected f4, f8, i4, i8, u4 or b1)",
            s.trim_start_matches(['<', '>', '|', '='])
        )
    })?;
    let big = match s.as_bytes().first() {
        Some(b'>') => true,
        Some(b'<') => false,
        Some(b'=') => cfg!(target_endian = "big"),
        Some(b'|') if dtype.size_bytes() == 1 => false,
        _ => return Err(format!("dtype `{s}` has no byte order")),
    };
    Ok((dtype, big))
}

/// Parses the header dictionary, e.g. `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (2, 3), }`: exactly these three keys, each once; only printable ASCII and
/// whitespace.
fn parse_header(text: &[u8]) -> Result<Header, String> {
    if let Some(p) = text
        .iter()
        .position(|&c| !(c.is_ascii_graphic() || matches!(c, b' ' | b'\t' | b'\n' | b'\r')))
    {
        return Err(format!("byte {p} is {:#04x}, not printable ASCII", text[p]));
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
                    return Err("structured dtypes are not supported".to_string());
                }
                dtype.replace(descr(c.string()?)?).is_some()
            }
            "fortran_order" => {
                let v = match c.word()? {
                    "True" => true,
                    "False" => false,
                    w => return Err(format!("fortran_order is `{w}`, not True or False")),
                };
                fortran.replace(v).is_some()
            }
            "shape" => shape.replace(c.shape()?).is_some(),
            k => return Err(format!("unknown key '{k}' at byte {key_at}")),
        };
        if dup {
            return Err(format!("key '{key}' at byte {key_at} appears twice"));
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
            return Err(format!("key '{missing}' is missing"));
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

/// Serialises an array to `.npy` bytes (little-endian, C order).
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
/// ([`kiln_fs::write_atomic`]).
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
