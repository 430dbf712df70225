//! Import limits: what a hostile or broken `.onnx` file can make the importer do is bounded
//! by these numbers (documented in docs/security.md).

/// Largest model file read (protobuf's own 2 GiB message limit).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;
/// Most nodes in one graph.
pub const MAX_NODES: usize = 1 << 20;
/// Largest tensor rank.
pub const MAX_RANK: usize = 32;
/// Largest size of one axis of any value (a graph input's declared dims, a node's
/// outputs); larger sizes cannot be run and are refused while importing.
pub const MAX_DIM: u64 = 1 << 40;
/// Largest element count of one tensor decoded from the file (initializers, Constant values,
/// test data); its bytes must also be present in the file.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;
/// Largest element count of a tensor the importer itself materialises while folding
/// (ConstantOfShape, Range, Expand of known values, ...).
pub const MAX_FOLDED_ELEMENTS: u64 = 1 << 24;
/// Most steps one recurrent node (LSTM, GRU, RNN, all directions together; LinearAttention)
/// or Scan is unrolled to: each step adds graph nodes, and the sequence length comes from
/// the model.
pub const MAX_UNROLLED_STEPS: u64 = 1 << 12;
/// Most kiln graph nodes an import may have built before it unrolls one more Scan
/// iteration (bounds nested unrolling).
pub const MAX_GRAPH_NODES: usize = 1 << 20;
/// Deepest nesting of sub-graphs (If/Loop/Scan bodies), which protobuf decoding also caps.
pub const MAX_GRAPH_DEPTH: usize = 16;
