//! kiln's module file (`.kiln`): a compiled module — signature, optimised graph, kernel
//! plan and state — saved to one file and loaded back without running the optimiser.
//!
//! A file is a fixed preamble (magic, format version, lengths), a header encoded with serde
//! and bincode from the versioned DTOs in [`v1`] (the graph with the regions of its
//! control-flow ops, flattened into one table), a 64-byte aligned little-endian data
//! section holding every tensor (state, graph constants, kernel-plan constants), and a
//! CRC-32 over everything before it. docs/file-format.md specifies the bytes.
//!
//! Loading treats the file as hostile ([`from_bytes`]): the framing, every length, offset,
//! dtype, shape, name and symbol is checked against the [`limits`] before anything the file
//! asks for is allocated; the graph is re-verified with [`kiln_ir::verify()`] and the kernel
//! plan with [`kiln_kernel::verify()`] (every access proven in bounds for every binding the
//! signature allows); and the parts are cross-checked against each other. Any problem is a
//! [`FormatError`] whose one-line message says what is wrong and where. docs/security.md
//! states the guarantees and how they are tested.
//!
//! Saving ([`save`]) is atomic: a temporary file in the target directory is written,
//! synced and renamed over the target, so an interrupted save never leaves a truncated
//! `.kiln` behind.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
mod decode;
mod encode;
pub mod error;
mod file;
pub mod fuzzing;
pub mod layout;
pub mod limits;
mod names;
pub mod v1;

pub use error::FormatError;
pub use file::{load, save};
pub use layout::{FORMAT_VERSION, OLDEST_READABLE_VERSION};

use kiln_ir::{Array, DType, Graph, NodeId, Shape};
use kiln_kernel::{Program, VerifiedProgram};
use std::collections::BTreeMap;

/// Who wrote a module and how.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Producer and its version, e.g. `kiln 0.1.0`.
    pub producer: String,
    /// Creation time in seconds since the Unix epoch.
    pub created: u64,
    /// The options the module was compiled with (`opt_level = 2`, `backend = cpu`, ...).
    pub options: BTreeMap<String, String>,
}

/// One named tensor of a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape, possibly symbolic.
    pub shape: Shape,
}

/// A symbol and the values it may take, `min..=max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Name (`N`).
    pub name: String,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value, if bounded.
    pub max: Option<u64>,
}

/// Inputs, outputs and symbols of a module.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Signature {
    /// Inputs; each is an `input` node of the graph.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the order of [`Module::outputs`].
    pub outputs: Vec<TensorSpec>,
    /// Every symbol of the input and output shapes, with its range.
    pub symbols: Vec<SymbolSpec>,
}

/// A compiled module: everything a runtime needs to run it with no optimiser.
///
/// What [`from_bytes`] guarantees about a loaded module (beyond the verifiers):
///
/// * `signature.inputs` are exactly the graph's `input` nodes (name, dtype, shape);
/// * `signature.outputs` has the names of `outputs`, in order, with their nodes' types;
/// * every symbol in a graph shape is declared in `signature.symbols`;
/// * the graph's regions nest at most [`limits::MAX_REGION_DEPTH`] deep; every region an
///   op runs verifies with the graph (`kiln_ir::verify`), and a region no op runs (left by a
///   pass that removed its op) verifies as a graph whose parameters and results name its
///   nodes;
/// * every `outputs`/`updates` node exists; an update's node has its state's dtype and shape;
/// * every `param` node and every kernel-plan `state` buffer has a state entry of the same
///   name, dtype and element count (the state may hold more entries);
/// * the plan's input buffers are signature inputs with equal dtype and element count, its
///   output buffers are the signature outputs or `update:NAME` for each update, each
///   present exactly once, and every signature symbol range lies inside the plan's range.
#[derive(Clone, Debug)]
pub struct Module {
    /// Producer, creation time, options.
    pub metadata: Metadata,
    /// Named inputs and outputs with symbolic shapes and symbol constraints.
    pub signature: Signature,
    /// The optimised graph.
    pub graph: Graph,
    /// Named graph outputs.
    pub outputs: Vec<(String, NodeId)>,
    /// State updates: state name → node computing its new value (train steps).
    pub updates: Vec<(String, NodeId)>,
    /// The verified kernel plan (`None` for interpreter-only modules).
    pub program: Option<VerifiedProgram>,
    /// Parameters, optimiser moments, counters; stored in the data section.
    pub state: Vec<(String, Array)>,
}

/// The prefix of a kernel-plan output buffer that carries a state update (`update:fc1.weight`).
pub const UPDATE_OUTPUT_PREFIX: &str = "update:";

/// Encodes a module as the bytes of a `.kiln` file. The bytes are then checked by
/// [`from_bytes`] itself, so every limit and rule of the loader has one home (the decoder)
/// and a module the loader would refuse (a rank over [`limits::MAX_RANK`], too many
/// operands, ...) is an [`FormatError::Encode`] naming the limit or rule, never a file.
pub fn to_bytes(m: &Module) -> Result<Vec<u8>, FormatError> {
    to_bytes_with_plan(m, m.program.as_deref())
}

/// [`to_bytes`] with `program` as the module's kernel plan (verified or not).
pub(crate) fn to_bytes_with_plan(
    m: &Module,
    program: Option<&Program>,
) -> Result<Vec<u8>, FormatError> {
    let (header, data) = encode::module(m, program)?;
    let header = codec::encode_header(&header)?;
    let bytes = layout::assemble(&header, &data)?;
    from_bytes(&bytes).map_err(encode::refused_by_loader)?;
    Ok(bytes)
}

/// Decodes and validates a `.kiln` file's bytes. The input is treated as hostile: every
/// problem is an error naming what is wrong and where, never a panic or an unbounded
/// allocation.
///
/// ```
/// let err = kiln_format::from_bytes(b"not a kiln module").unwrap_err();
/// assert!(!err.to_string().contains('\n')); // one line
/// assert!(kiln_format::from_bytes(&[]).is_err());
/// ```
pub fn from_bytes(bytes: &[u8]) -> Result<Module, FormatError> {
    let parts = layout::split(bytes)?;
    match parts.version {
        1 => {
            let header = codec::decode_header::<v1::Numbered>(parts.header)?;
            decode::module(&header, parts.data)
        }
        2 => {
            let header = codec::decode_header::<v1::NamedV2>(parts.header)?;
            decode::module(&header, parts.data)
        }
        3 => {
            let header = codec::decode_header::<v1::NamedV3>(parts.header)?;
            decode::module(&header, parts.data)
        }
        4 => {
            let header = codec::decode_header::<v1::NamedV4>(parts.header)?;
            decode::module(&header, parts.data)
        }
        _ => {
            let header = codec::decode_header::<v1::Named>(parts.header)?;
            decode::module(&header, parts.data)
        }
    }
}
