//! Metadata, symbol tables and the signature.

use super::context::{Cx, Result, count, dtype, unique_named};
use crate::error::{FormatError, shown};
use crate::limits::*;
use crate::names::{name, symbol_name};
use crate::v1::*;
use crate::{Metadata, SymbolSpec, TensorSpec};
use std::collections::{BTreeMap, HashSet};

pub(super) fn metadata(m: &MetadataV1) -> Result<Metadata> {
    let producer = name(&m.producer, || "metadata producer".to_string())?;
    count(
        m.options.len(),
        MAX_ENTRIES,
        || "metadata options".to_string(),
        "entry count",
    )?;
    let mut options = BTreeMap::new();
    let mut last: Option<&str> = None;
    for (k, v) in &m.options {
        let key = name(k, || "metadata option key".to_string())?;
        if v.len() as u64 > MAX_NAME_BYTES {
            return Err(FormatError::limit(
                format!("metadata option {}", shown(k)),
                "value length in bytes",
                v.len() as u64,
                MAX_NAME_BYTES,
            ));
        }
        if last.is_some_and(|l| l >= k.as_str()) {
            return Err(FormatError::invalid(
                format!("metadata option {}", shown(k)),
                "keys are not sorted and unique",
            ));
        }
        last = Some(k);
        options.insert(key, v.clone());
    }
    Ok(Metadata {
        producer,
        created: m.created,
        options,
    })
}

pub(super) fn symbols(list: &[SymbolV1], owner: &str) -> Result<Vec<SymbolSpec>> {
    count(
        list.len(),
        MAX_SYMBOLS,
        || format!("{owner} symbols"),
        "symbol count",
    )?;
    let mut seen = HashSet::new();
    list.iter()
        .map(|s| {
            let location = || format!("{owner} symbol {}", shown(&s.name));
            let n = symbol_name(&s.name, location)?;
            if !seen.insert(n.clone()) {
                return Err(FormatError::invalid(location(), "declared twice"));
            }
            if let Some(max) = s.max
                && max < s.min
            {
                return Err(FormatError::invalid(
                    location(),
                    format!("range {}..={max} is empty", s.min),
                ));
            }
            Ok(SymbolSpec {
                name: n,
                min: s.min,
                max: s.max,
            })
        })
        .collect()
}

pub(super) fn tensor_specs(
    cx: &Cx<'_>,
    list: &[TensorSpecV1],
    what: &str,
) -> Result<Vec<TensorSpec>> {
    unique_named(
        list,
        what,
        |t| &t.name,
        |t, n, location| {
            Ok(TensorSpec {
                name: n,
                dtype: dtype(t.dtype),
                shape: cx.shape(&t.shape, location)?,
            })
        },
    )
}
