//! Loading numeric CSV files into arrays.

use super::DataError;
use kiln_ir::{Array, DType};
use std::path::Path;

/// How to read a CSV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator (default `,`).
    pub delimiter: char,
    /// Skip the first line (default false).
    pub has_header: bool,
    /// Element type of the result (default `f32`).
    pub dtype: DType,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: ',',
            has_header: false,
            dtype: DType::F32,
        }
    }
}

/// Reads a numeric CSV file into a `[rows, columns]` array of `opts.dtype`. Blank lines are
/// skipped; every other line must have the same number of fields, each a number (an
/// integer for integer dtypes, `0`/`1` or `true`/`false` for `bool`). Errors name the
/// file and line.
pub fn load_csv(path: impl AsRef<Path>, opts: &CsvOptions) -> Result<Array, DataError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_csv(&text, &shown, opts)
}

/// Parses CSV text (see [`load_csv`]); `name` labels errors.
pub(crate) fn parse_csv(text: &str, name: &str, opts: &CsvOptions) -> Result<Array, DataError> {
    let bad = |line: usize, message: String| DataError::Parse {
        path: name.to_string(),
        line,
        message,
    };
    let mut values = Vec::new();
    let mut cols: Option<usize> = None;
    let mut rows = 0usize;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if (opts.has_header && i == 0) || line.trim().is_empty() {
            continue;
        }
        let mut n = 0usize;
        for field in line.split(opts.delimiter) {
            let f = field.trim();
            let v = match (opts.dtype, f) {
                (DType::Bool, "true") => 1.0,
                (DType::Bool, "false") => 0.0,
                _ => f
                    .parse::<f64>()
                    .map_err(|_| bad(lineno, format!("field {} `{f}` is not a number", n + 1)))?,
            };
            if opts.dtype.is_int() && v.fract() != 0.0 {
                return Err(bad(
                    lineno,
                    format!(
                        "field {} `{f}` is not an integer ({} requested)",
                        n + 1,
                        opts.dtype
                    ),
                ));
            }
            values.push(v);
            n += 1;
        }
        match cols {
            None => cols = Some(n),
            Some(c) if c != n => {
                return Err(bad(
                    lineno,
                    format!("{n} fields, but the first row has {c}"),
                ));
            }
            Some(_) => {}
        }
        rows += 1;
    }
    let cols = cols.unwrap_or(0);
    Ok(Array::from_f64_cast(opts.dtype, &[rows, cols], &values))
}
