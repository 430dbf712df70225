//! Why an ONNX model could not be imported: every error names what it is about (the file,
//! the tensor, or the node by index, name, op type, domain and opset).

use std::fmt;

/// Where in the model a node error happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// Position of the node in its graph's node list.
    pub index: usize,
    /// The node's name (may be empty).
    pub name: String,
    /// Its op type (`Conv`).
    pub op_type: String,
    /// Its domain (`""` is the default `ai.onnx` domain).
    pub domain: String,
    /// The opset the model imports for that domain.
    pub opset: i64,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = if self.domain.is_empty() {
            "ai.onnx"
        } else {
            &self.domain
        };
        write!(f, "node #{}", self.index)?;
        if !self.name.is_empty() {
            write!(f, " `{}`", self.name)?;
        }
        write!(f, " ({} from {domain} opset {})", self.op_type, self.opset)
    }
}

/// Why an ONNX model could not be imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The bytes are not a well-formed ModelProto.
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    /// The model exceeds a documented import limit.
    #[error("the model exceeds an import limit: {0}")]
    Limit(String),
    /// A model-level problem (missing graph, opset, IR version, external data).
    #[error("{0}")]
    Model(String),
    /// A tensor (initializer, Constant value, test data) could not be read.
    #[error("tensor `{name}`: {message}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A graph input or output declaration is unusable.
    #[error("graph {what} `{name}`: {message}")]
    Value {
        /// `input` or `output`.
        what: &'static str,
        /// The value's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An op type kiln does not import.
    #[error("{node}: unsupported op type; supported: {supported}")]
    UnsupportedOp {
        /// The node.
        node: NodeRef,
        /// The supported op types of its domain, comma separated (`kiln import --list-ops`).
        supported: String,
    },
    /// A node could not be imported (attribute, dtype, shape, unknown value).
    #[error("{node}: {message}")]
    Node {
        /// The node.
        node: NodeRef,
        /// What is wrong.
        message: String,
    },
}
