//! Hard limits the loader enforces before it allocates anything a file asks for.
//!
//! Every limit is far above what a real module needs and low enough that a hostile file
//! cannot make the loader allocate or compute without bound. The writer checks the ones a
//! module can break (sizes, counts, names) so that `save` never writes a file `load`
//! rejects for a limit.

/// Largest file [`crate::load`] reads (header, data and framing together): 32 GiB.
pub const MAX_FILE_BYTES: u64 = MAX_HEADER_BYTES + MAX_DATA_BYTES + 4096;

/// Largest encoded header: 32 MiB. Tensor data lives in the data section, so a header
/// holds only structure (names, shapes, ops, kernel bodies).
pub const MAX_HEADER_BYTES: u64 = 32 << 20;

/// Largest data section (parameters, constants and state together): 32 GiB.
pub const MAX_DATA_BYTES: u64 = 32 << 30;

/// Largest total size of the state tensors: 32 GiB (the whole data section).
pub const MAX_STATE_BYTES: u64 = MAX_DATA_BYTES;

/// Most elements in one tensor (state, graph constant or kernel constant): 2^33.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 33;

/// Most live nodes in the graph.
pub const MAX_NODES: u64 = 1 << 20;

/// Largest node id (ids may have gaps where passes removed nodes; the loader recreates
/// them, so this also bounds the slots it allocates). Equal to the text parser's limit.
pub const MAX_NODE_ID: u32 = (1 << 20) - 1;

/// Most operands of one node (a `concat` of many tensors is the only op with more than 3).
pub const MAX_OPERANDS: u64 = 1 << 16;

/// Largest rank of a shape, and most entries in an axis list, permutation, slice, pad or
/// window attribute.
pub const MAX_RANK: u64 = 32;

/// Largest integer constant inside a dimension expression (`N*784` has the constant 784),
/// and largest dimension of a state tensor or constant: 2^40.
pub const MAX_DIM_VALUE: u64 = 1 << 40;

/// Largest exponent of a symbol in a dimension expression (`T^2`).
pub const MAX_DIM_EXPONENT: u64 = 8;

/// Longest dimension expression text, in bytes.
pub const MAX_DIM_TEXT_BYTES: u64 = 256;

/// Largest pad amount, window size, window stride or window padding: 2^40.
pub const MAX_WINDOW_ATTR: u64 = 1 << 40;

/// Largest convolution stride, padding, dilation or group count: 2^20.
pub const MAX_CONV_ATTR: u64 = 1 << 20;

/// Longest name (input, output, state, parameter, symbol, source file, option key or
/// value, producer), in bytes.
pub const MAX_NAME_BYTES: u64 = 4096;

/// Most symbols in the signature or the kernel plan.
pub const MAX_SYMBOLS: u64 = 256;

/// Most entries in the signature's inputs or outputs, the module's outputs or updates, the
/// state table, the creation options or the source-file table.
pub const MAX_ENTRIES: u64 = 1 << 20;

/// Most buffers in the kernel plan.
pub const MAX_BUFFERS: u64 = 1 << 20;

/// Most kernels in the kernel plan.
pub const MAX_KERNELS: u64 = 1 << 20;

/// Most scalar values (or stores) in one kernel body.
pub const MAX_BODY_VALUES: u64 = 1 << 16;

/// Most nodes in one index expression.
pub const MAX_INDEX_NODES: u64 = 1024;

/// Deepest nesting of one index expression (the verifier and backends recurse over it).
pub const MAX_INDEX_DEPTH: u64 = 64;

/// Most guards on one masked load.
pub const MAX_GUARDS: u64 = 64;
