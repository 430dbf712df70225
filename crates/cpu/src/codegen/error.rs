//! [`CodegenError`]: why a loop kernel could not be lowered to a Cranelift function. The
//! CPU backend reports it as a [`crate::CpuError`] naming the kernel.

use kiln_ir::{DType, Dim};
use kiln_kernel::{BufferId, ValueId};

/// Why a loop kernel could not be lowered. Most variants are body shapes the verifier
/// rejects, so seeing one means a verified program reached the code generator in a form it
/// does not expect; the `internal:` ones are inconsistencies of the code generator itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum CodegenError {
    /// Node `node` reads `operand`, which no earlier node defines.
    #[error("v{node} reads undefined {operand}")]
    UndefinedOperand {
        /// The reading node.
        node: usize,
        /// The value it reads.
        operand: ValueId,
    },
    /// Node `node` loads from a buffer the job does not have.
    #[error("v{node} loads unknown {buffer}")]
    UnknownLoadBuffer {
        /// The loading node.
        node: usize,
        /// The buffer it names.
        buffer: BufferId,
    },
    /// An operation applied to operand types the kernel IR's typing rules reject (the
    /// rule's message).
    #[error("{0}")]
    Typing(String),
    /// Node `v{0}` is `acc`, which only exists in contraction epilogues.
    #[error("v{0}: `acc` outside a contraction epilogue")]
    AccInBody(usize),
    /// An `acc` node evaluated in a loop body.
    #[error("`acc` outside a contraction epilogue")]
    AccOutsideEpilogue,
    /// Cranelift rejected a declaration or a function (its message).
    #[error("{0}")]
    Cranelift(String),
    /// Cranelift panicked while compiling the function.
    #[error("the code generator panicked")]
    Panicked,
    /// The function does not have the kernel signature.
    #[error("kernel signature mismatch")]
    SignatureMismatch,
    /// The buffer pointer table does not fit 32-bit offsets.
    #[error("too many buffers")]
    TooManyBuffers,
    /// The dims table does not fit 32-bit offsets.
    #[error("too many dims")]
    TooManyDims,
    /// The stack buffers of the values kept for the hoisted loop do not fit 32 bits.
    #[error("kept values too large")]
    KeptValuesTooLarge,
    /// A loop, reduction or vector variable index beyond the kernel's axes.
    #[error("{0} variable out of range")]
    VariableOutOfRange(&'static str),
    /// A buffer index beyond the job's buffers.
    #[error("unknown buffer")]
    UnknownBuffer,
    /// A store of a value that was not computed at the point.
    #[error("store of an unevaluated value")]
    StoreOfUnevaluated,
    /// A value kept for the hoisted loop was not computed in the reduction loop.
    #[error("kept value v{0} was not evaluated")]
    KeptNotEvaluated(usize),
    /// The operand of a reduction was not computed at the reduction point.
    #[error("reduced operand v{0} was not evaluated")]
    ReducedNotEvaluated(usize),
    /// A value read before the node defining it was emitted.
    #[error("{0} used before it is defined")]
    UsedBeforeDefined(ValueId),
    /// A value read by an index expression before the node defining it was emitted.
    #[error("{0} used in an index before it is defined")]
    IndexBeforeDefined(ValueId),
    /// A float value used in an index expression.
    #[error("a float value used as an index")]
    FloatIndex,
    /// A reduction node in a kernel without reduction axes.
    #[error("reduction without reduction axes")]
    NoReductionAxes,
    /// A reduction node with no operand.
    #[error("reduction without operand")]
    ReductionWithoutOperand,
    /// A vector operand folded into a scalar accumulator.
    #[error("vector operand of a scalar reduction")]
    VectorOperandOfScalarReduction,
    /// A kernel with reused values but no domain axis.
    #[error("no domain axis")]
    NoDomainAxis,
    /// An operation on a dtype it is not defined for.
    #[error("{op} is not defined for {dtype}")]
    UndefinedFor {
        /// The operation's name.
        op: &'static str,
        /// The operand dtype.
        dtype: DType,
    },
    /// A helper call returned no value.
    #[error("helper without result")]
    HelperWithoutResult,
    /// A comparison operator with no integer condition code.
    #[error("comparison")]
    NoComparison,
    /// A symbolic dim that was not collected into the dims table.
    #[error("internal: dim {0} was not collected")]
    UncollectedDim(Dim),
    /// A vector value where a scalar node expects a scalar.
    #[error("internal: {0} is a vector in a scalar node")]
    VectorInScalarNode(ValueId),
    /// A reduction node reached scalar node emission.
    #[error("internal: v{node} reduction evaluated as a node ({dtype})")]
    ReductionAsScalarNode {
        /// The reduction node.
        node: usize,
        /// Its dtype.
        dtype: DType,
    },
    /// A reduction node reached vector node emission.
    #[error("internal: v{0} reduction evaluated as a node")]
    ReductionAsVectorNode(usize),
    /// Another inconsistency of the code generator.
    #[error("internal: {0}")]
    Internal(&'static str),
}
