//! The header encoding: serde + bincode 2 (standard configuration: little-endian, variable
//! length integers), with a decode limit. This is the only module that names bincode, so
//! the encoding can be swapped by changing it alone (and the format version).

use crate::error::{FormatError, one_line};
use crate::limits::MAX_HEADER_BYTES;
use crate::v1::{HeaderV1, OpNaming};
use bincode::config::{Configuration, LittleEndian, Varint};
use bincode::de::read::Reader;
use bincode::error::DecodeError;

/// bincode's standard configuration: little-endian, varint integers, and a limit on the
/// bytes a decode may claim. bincode counts decoded sizes (a one-byte varint claims the 8
/// bytes of a `u64`), so the limit is 8 × the header limit: every valid header fits, and a
/// hostile length field cannot make the decoder allocate more than this before it fails.
pub const DECODE_LIMIT: usize = 8 * MAX_HEADER_BYTES as usize;
const LIMIT: usize = DECODE_LIMIT;
type Config = Configuration<LittleEndian, Varint, bincode::config::Limit<LIMIT>>;

fn config() -> Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<LIMIT>()
}

/// Encodes a header (of the current version; tests also write older ones).
pub fn encode_header<N: OpNaming>(header: &HeaderV1<N>) -> Result<Vec<u8>, FormatError> {
    bincode::serde::encode_to_vec(header, config())
        .map_err(|e| FormatError::encode("header", one_line(&format!("{e:?}"))))
}

/// A slice reader that remembers how far decoding got, for error messages.
struct Counting<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader for Counting<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        if out.len() > rest.len() {
            return Err(DecodeError::UnexpectedEnd {
                additional: out.len() - rest.len(),
            });
        }
        out.copy_from_slice(&rest[..out.len()]);
        self.pos += out.len();
        Ok(())
    }
}

/// Decodes a header that must span exactly `bytes`, its op kinds spelled as `N` says
/// ([`crate::v1::Named`] in version 5 files, [`crate::v1::NamedV4`] in version 4 files,
/// [`crate::v1::NamedV3`] in version 3 files,
/// [`crate::v1::NamedV2`] in version 2 files,
/// [`crate::v1::Numbered`] in version 1 files).
pub fn decode_header<N: OpNaming>(bytes: &[u8]) -> Result<HeaderV1<N>, FormatError> {
    let len = bytes.len() as u64;
    let mut reader = Counting { bytes, pos: 0 };
    let decoded: Result<HeaderV1<N>, DecodeError> =
        bincode::serde::decode_from_reader(&mut reader, config());
    match decoded {
        Ok(header) if reader.pos == bytes.len() => Ok(header),
        Ok(_) => Err(FormatError::Decode {
            offset: reader.pos as u64,
            len,
            message: format!(
                "{} unused byte(s) after the header's last field",
                bytes.len() - reader.pos
            ),
        }),
        Err(e) => Err(FormatError::Decode {
            offset: reader.pos as u64,
            len,
            message: describe(&e),
        }),
    }
}

fn describe(e: &DecodeError) -> String {
    match e {
        DecodeError::UnexpectedEnd { additional } => {
            format!("the header ends {additional} byte(s) early")
        }
        DecodeError::LimitExceeded => {
            format!("a length field claims more than the {DECODE_LIMIT}-byte decode limit")
        }
        DecodeError::UnexpectedVariant {
            type_name, found, ..
        } => format!("unknown variant {found} of {}", short_type(type_name)),
        DecodeError::Utf8 { .. } => "a string is not valid UTF-8".to_string(),
        DecodeError::InvalidBooleanValue(v) => format!("boolean byte {v} is neither 0 nor 1"),
        DecodeError::OutsideUsizeRange(v) => format!("length {v} does not fit in usize"),
        DecodeError::InvalidIntegerType { expected, found } => {
            format!("integer tag for {found:?} where {expected:?} was expected")
        }
        other => one_line(&format!("{other:?}")),
    }
}

fn short_type(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}
