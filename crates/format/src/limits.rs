//! Hard limits the loader enforces before it allocates anything a file asks for.
//!
//! Every limit is far above what a real module needs and low enough that a hostile file
//! cannot make the loader allocate or compute without bound. Each is checked in one place,
//! the decoder; the writer (`to_bytes`) runs the loader on what it encoded, so `save` never
//! writes a file `load` rejects for a limit.

/// Largest file [`crate::load`] reads (header, data and framing together): 32 GiB + 16 MiB.
pub const MAX_FILE_BYTES: u64 = MAX_HEADER_BYTES + MAX_DATA_BYTES + 4096;

/// Largest encoded header: 16 MiB. Tensor data lives in the data section, so a header
/// holds only structure (names, shapes, ops, kernel bodies): about 35 bytes per graph node.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Most dimension expressions in one header (shapes, shape attributes, buffer sizes, kernel
/// extents, index constants). A decoded dim costs a few hundred bytes of memory for two
/// bytes of file, so this bounds the loader's memory, not just the header's size.
pub const MAX_TOTAL_DIMS: u64 = 1 << 19;

/// Largest data section (parameters, constants and state together): 32 GiB.
pub const MAX_DATA_BYTES: u64 = 32 << 30;

/// Largest total size of the state tensors: 32 GiB (the whole data section).
pub const MAX_STATE_BYTES: u64 = MAX_DATA_BYTES;

/// Most elements in one tensor (state, graph constant or kernel constant): 2^33.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 33;

/// Most live nodes in the graph, the nodes of every region (at every nesting level)
/// included.
pub const MAX_NODES: u64 = 1 << 20;

/// Most regions (bodies of `cond`, `scan` and `while` ops) in the graph, counting the
/// regions of every nesting level.
pub const MAX_REGIONS: u64 = 1 << 16;

/// Deepest nesting of regions (a body inside a body inside ...; a region of the top-level
/// graph is at depth 1): the IR's own limit, which its verifier and every pass that
/// recurses through bodies rely on.
pub const MAX_REGION_DEPTH: u64 = kiln_ir::verify::MAX_REGION_DEPTH as u64;

/// Most work the graph verifier may be asked to do, in units of one node or one operand,
/// parameter or result looked at. Verifying is linear in the file's size except where
/// control flow multiplies it: a region is verified once per op slot that runs it (a `cond`
/// may run one region as both branches, at every level), and each `get` node re-types its
/// control-flow op (all its operands and its regions' parameters and results). The loader
/// adds this up before verifying, so a small file cannot make it verify for minutes (about
/// two to three seconds at the limit; a graph of [`MAX_NODES`] nodes and no control flow is
/// about a fifth of it).
pub const MAX_VERIFY_WORK: u64 = 1 << 24;

/// What one verification of a region costs in [`MAX_VERIFY_WORK`] units on top of its
/// nodes: the verifier's per-graph setup (maps, the cycle search), measured at about fifty
/// times the cost of one node.
pub const REGION_VERIFY_WORK: u64 = 64;

/// Largest node id (ids may have gaps where passes removed nodes; the loader recreates
/// them, so this also bounds the slots it allocates). Equal to the text parser's limit.
pub const MAX_NODE_ID: u32 = (1 << 20) - 1;

/// Node ids may be sparse (passes remove nodes and ids are never reused), and the loader
/// allocates one slot per id up to the largest, so the largest id must stay below
/// `ID_SPAN_PER_NODE × node count + ID_SPAN_SLACK`: a tiny file cannot claim a million slots.
/// The same bound holds for the slots of the top-level graph and all its regions together
/// (each region graph numbers its nodes from 0).
pub const ID_SPAN_PER_NODE: u64 = 16;

/// See [`ID_SPAN_PER_NODE`].
pub const ID_SPAN_SLACK: u64 = 1 << 16;

/// The largest node id a graph of `nodes` live nodes may use.
pub fn max_node_id(nodes: usize) -> u64 {
    (nodes as u64)
        .saturating_mul(ID_SPAN_PER_NODE)
        .saturating_add(ID_SPAN_SLACK)
        .min(u64::from(MAX_NODE_ID))
}

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

/// Largest size attribute (`kiln_ir::AttrKind::Size`, `Sizes`, `Pairs`: a pad amount,
/// window size, window stride or window padding): 2^40.
pub const MAX_WINDOW_ATTR: u64 = 1 << 40;

/// Largest factor attribute (`kiln_ir::AttrKind::Factor`, `Hw`: a convolution's stride,
/// padding, dilation or group count), small because factors multiply dims: 2^20.
pub const MAX_CONV_ATTR: u64 = 1 << 20;

/// Most attribute values of one graph op in a version 5 header.
pub const MAX_ATTRS: u64 = 16;

/// Longest name (input, output, state, parameter, symbol, source file, option key or
/// value, producer), in bytes.
pub const MAX_NAME_BYTES: u64 = 4096;

/// Longest op name (`reduce_prod`, `window_max`, ...) in a version 2 to 5 header.
pub const MAX_OP_NAME_BYTES: u64 = 64;

/// Most symbols in the signature or the kernel plan.
pub const MAX_SYMBOLS: u64 = 256;

/// Most entries in the signature's inputs or outputs, the module's outputs or updates, the
/// state table, the creation options or the source-file table.
pub const MAX_ENTRIES: u64 = 1 << 20;

/// Most buffers in the kernel plan.
pub const MAX_BUFFERS: u64 = 1 << 16;

/// Most kernels in the kernel plan.
pub const MAX_KERNELS: u64 = 1 << 16;

/// Most scalar values (or stores) in one kernel body.
pub const MAX_BODY_VALUES: u64 = 1 << 16;

/// Most nodes in one index expression.
pub const MAX_INDEX_NODES: u64 = 1024;

/// Deepest nesting of one index expression (the verifier and backends recurse over it).
pub const MAX_INDEX_DEPTH: u64 = 64;

/// Most guards on one masked load.
pub const MAX_GUARDS: u64 = 64;

/// Most steps in a kernel plan's schedule (every kernel once, plus copies and control
/// steps).
pub const MAX_SCHEDULE_STEPS: u64 = 4 * MAX_KERNELS;

/// Deepest nesting of loop, while and if steps in a schedule (the kernel verifier's
/// limit, `kiln_kernel::schedule::MAX_SCHEDULE_DEPTH`).
pub const MAX_SCHEDULE_DEPTH: u64 = kiln_kernel::schedule::MAX_SCHEDULE_DEPTH as u64;
