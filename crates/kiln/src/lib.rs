//! kiln: build symbolic tensor graphs with a PyTorch-like API; nothing runs until you
//! evaluate or compile.
//!
//! ```
//! use kiln::{DType, Graph};
//! let g = Graph::new();
//! let n = g.sym("N");
//! let x = g.input("x", DType::F32, (&n, 784));
//! let w1 = g.param("fc1.weight", DType::F32, [128, 784]);
//! let b1 = g.param("fc1.bias", DType::F32, [128]);
//! let h = (x.matmul(&w1.t()) + &b1).relu();
//! assert_eq!(h.shape().to_string(), "[N, 128]");
//! assert!(g.check().is_ok());
//! ```

#![deny(missing_docs)]

mod autodiff;
mod builder;
mod compile;
mod composite;
pub mod data;
mod error;
mod eval;
pub mod functional;
pub mod loss;
pub mod models;
pub mod nn;
pub mod npy;
pub mod optim;
mod overload;
pub mod random;
mod tensor;

pub use autodiff::{
    grad, hessian, jacobian, jvp, try_grad, try_hessian, try_jacobian, try_jvp, try_vjp,
    value_and_grad, vjp,
};
pub use builder::{Diagnostic, Graph, IntoShape};
pub use compile::{compile, compile_shared, compile_step};
pub use error::Error;
pub use eval::{eval, eval_with_bindings};
pub use kiln_ir::{Array, ArrayError, DType, Data, Dim, Loc, Shape};
pub use kiln_runtime::{Backend, Executable, Signature, State};
pub use tensor::{Axes, ConvOpts, Operand, Tensor};

/// The underlying IR crate, for passes and tools that work on the graph directly.
pub use kiln_ir as ir;
