//! The signature of an executable (named inputs and outputs with symbolic shapes, symbol
//! constraints) and validation of caller-supplied inputs against it.

use kiln_ir::{Array, DType, Dim, Graph, NodeId, Op, Shape};
use std::collections::{BTreeMap, HashMap};

pub use kiln_format::{Signature, SymbolSpec, TensorSpec};

/// A caller-side input problem. Each message is one line naming the input, what was
/// expected and what was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A required input was not given.
    #[error("missing input `{name}` (expected {expected})")]
    Missing {
        /// Input name.
        name: String,
        /// Its spec.
        expected: String,
    },
    /// An input name the executable does not have.
    #[error("unknown input `{name}` (inputs are: {known})")]
    Unknown {
        /// The given name.
        name: String,
        /// The valid names.
        known: String,
    },
    /// The same input was given twice.
    #[error("input `{0}` given more than once")]
    Duplicate(String),
    /// Wrong dtype.
    #[error("input `{name}`: expected dtype {expected}, got {got}")]
    DType {
        /// Input name.
        name: String,
        /// Expected dtype.
        expected: DType,
        /// Given dtype.
        got: DType,
    },
    /// Wrong rank.
    #[error("input `{name}`: expected rank {expected} ({shape}), got rank {got} {got_shape:?}")]
    Rank {
        /// Input name.
        name: String,
        /// Expected rank.
        expected: usize,
        /// Expected shape.
        shape: Shape,
        /// Given rank.
        got: usize,
        /// Given shape.
        got_shape: Vec<usize>,
    },
    /// A dimension differs from the signature.
    #[error(
        "input `{name}`: dimension {axis} is {got}, expected {expected} (shape {shape}, got {got_shape:?})"
    )]
    Size {
        /// Input name.
        name: String,
        /// Axis.
        axis: usize,
        /// Expected dim.
        expected: Dim,
        /// Expected shape.
        shape: Shape,
        /// Given size.
        got: usize,
        /// Given shape.
        got_shape: Vec<usize>,
    },
    /// Two inputs (or an explicit binding) disagree about a symbol.
    #[error("symbol {symbol} is {first} from {first_source} but {second} from {second_source}")]
    Conflict {
        /// The symbol.
        symbol: String,
        /// First value.
        first: u64,
        /// Where it came from.
        first_source: String,
        /// Second value.
        second: u64,
        /// Where it came from.
        second_source: String,
    },
    /// A symbol outside its allowed range.
    #[error("symbol {symbol} = {value} is outside its allowed range {min}..={max}")]
    Range {
        /// The symbol.
        symbol: String,
        /// Its value.
        value: u64,
        /// Minimum.
        min: u64,
        /// Maximum (or `inf`).
        max: String,
    },
    /// A symbol no input determines and no binding gives.
    #[error(
        "symbol {0} is not determined by the inputs; bind it explicitly (`Executable::run_with`, e.g. {0}=8)"
    )]
    Unbound(String),
    /// An explicit binding of a symbol the executable does not have.
    #[error("cannot bind unknown symbol {symbol} (symbols are: {known})")]
    UnknownSymbol {
        /// The symbol.
        symbol: String,
        /// Valid symbols.
        known: String,
    },
}

/// Checks `inputs` against `sig` and returns the symbol bindings. `explicit` bindings
/// (`Executable::run_with`; the runner's `--bind N=8`) are checked against the inputs.
pub fn bind_inputs(
    sig: &Signature,
    inputs: &[(&str, &Array)],
    explicit: &HashMap<String, u64>,
) -> Result<HashMap<String, u64>, InputError> {
    let this = sig;
    {
        let known_syms = || {
            this.symbols
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sources: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for (sym, v) in explicit {
            if !this.symbols.iter().any(|s| &s.name == sym) {
                return Err(InputError::UnknownSymbol {
                    symbol: sym.clone(),
                    known: known_syms(),
                });
            }
            sources.insert(sym.clone(), (*v, "the explicit binding".to_string()));
        }
        let mut given: HashMap<&str, &Array> = HashMap::new();
        for (name, a) in inputs {
            if !this.inputs.iter().any(|s| s.name == *name) {
                let known = this
                    .inputs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(InputError::Unknown {
                    name: name.to_string(),
                    known,
                });
            }
            if given.insert(name, a).is_some() {
                return Err(InputError::Duplicate(name.to_string()));
            }
        }
        for spec in &this.inputs {
            let Some(a) = given.get(spec.name.as_str()) else {
                return Err(InputError::Missing {
                    name: spec.name.clone(),
                    expected: format!("{}{}", spec.dtype, spec.shape),
                });
            };
            if a.dtype() != spec.dtype {
                return Err(InputError::DType {
                    name: spec.name.clone(),
                    expected: spec.dtype,
                    got: a.dtype(),
                });
            }
            if a.shape().len() != spec.shape.rank() {
                return Err(InputError::Rank {
                    name: spec.name.clone(),
                    expected: spec.shape.rank(),
                    shape: spec.shape.clone(),
                    got: a.shape().len(),
                    got_shape: a.shape().to_vec(),
                });
            }
            for (axis, (d, &got)) in spec.shape.0.iter().zip(a.shape()).enumerate() {
                if let Some(sym) = d.as_symbol() {
                    let src = format!("input `{}` dimension {axis}", spec.name);
                    match sources.get(sym) {
                        Some((v, first)) if *v != got as u64 => {
                            return Err(InputError::Conflict {
                                symbol: sym.to_string(),
                                first: *v,
                                first_source: first.clone(),
                                second: got as u64,
                                second_source: src,
                            });
                        }
                        Some(_) => {}
                        None => {
                            sources.insert(sym.to_string(), (got as u64, src));
                        }
                    }
                }
            }
        }
        let bindings: HashMap<String, u64> =
            sources.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
        for s in &this.symbols {
            let Some(&v) = bindings.get(&s.name) else {
                return Err(InputError::Unbound(s.name.clone()));
            };
            if v < s.min || s.max.is_some_and(|m| v > m) {
                return Err(InputError::Range {
                    symbol: s.name.clone(),
                    value: v,
                    min: s.min,
                    max: s.max.map_or("inf".into(), |m| m.to_string()),
                });
            }
        }
        // Compound dims (`N*28`) must evaluate to the given sizes.
        for spec in &this.inputs {
            let a = given[spec.name.as_str()];
            for (axis, (d, &got)) in spec.shape.0.iter().zip(a.shape()).enumerate() {
                let ok = d.eval(&bindings).is_ok_and(|v| v == got as u64);
                if !ok {
                    return Err(InputError::Size {
                        name: spec.name.clone(),
                        axis,
                        expected: d.clone(),
                        shape: spec.shape.clone(),
                        got,
                        got_shape: a.shape().to_vec(),
                    });
                }
            }
        }
        Ok(bindings)
    }
}

/// The signature of an optimised graph: its inputs (id order), the named outputs, and every
/// symbol of its shapes (each at least 1).
pub fn signature_of(graph: &Graph, outputs: &[(String, NodeId)]) -> Signature {
    let mut inputs = Vec::new();
    let mut symbols: Vec<String> = Vec::new();
    for (id, _) in graph.inputs() {
        if let Op::Input { name, dtype, shape } = &graph.node(id).op {
            for s in shape.symbols() {
                if !symbols.iter().any(|x| **x == *s) {
                    symbols.push(s.to_string());
                }
            }
            inputs.push(TensorSpec {
                name: name.clone(),
                dtype: *dtype,
                shape: shape.clone(),
            });
        }
    }
    for id in graph.node_ids() {
        for s in graph.node(id).shape.symbols() {
            if !symbols.iter().any(|x| **x == *s) {
                symbols.push(s.to_string());
            }
        }
    }
    let outputs = outputs
        .iter()
        .map(|(name, id)| {
            let n = graph.node(*id);
            TensorSpec {
                name: name.clone(),
                dtype: n.dtype,
                shape: n.shape.clone(),
            }
        })
        .collect();
    let symbols = symbols
        .into_iter()
        .map(|name| SymbolSpec {
            name,
            min: 1,
            max: None,
        })
        .collect();
    Signature {
        inputs,
        outputs,
        symbols,
    }
}
