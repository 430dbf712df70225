//! kiln: build symbolic tensor graphs with a PyTorch-like API; nothing runs until you
//! evaluate or compile.
//!
//! This page is a guided tour. Every example is compiled and run by `cargo test --doc -p
//! kiln`; they use the `interp` (reference interpreter) and `cpu` (Cranelift JIT) backends.
//!
//! # 1. Build a graph, evaluate it
//!
//! A [`Graph`] collects nodes; a [`Tensor`] is a handle to one of them. Ops are methods and
//! operators (`+ - * /`, with tensors or scalars on either side) and only record what to
//! compute: shapes and dtypes are inferred as you go. [`eval`] runs any tensors through the
//! reference interpreter, feeding [`Array`]s to the named inputs.
//!
//! ```
//! use kiln::{Array, DType, Graph};
//!
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, [2, 3]);
//! let w = g.param_init("w", Array::from_f32(&[3], vec![1.0, 10.0, 100.0])?);
//! let y = (&x * &w).sum(1, false) + 0.5; // broadcasts w over the rows
//! assert_eq!(y.shape().to_string(), "[2]");
//!
//! let xv = Array::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let out = kiln::eval(&[&y], &[("x", &xv)])?;
//! assert_eq!(out[0].as_f32()?, &[321.5, 654.5]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # 2. Errors are values with your line number
//!
//! Building never panics on a bad shape: the op records a [`Diagnostic`] at *your* call
//! site (every builder op is `#[track_caller]`) and returns a poisoned tensor whose
//! dependents stay quiet. [`Graph::check`] returns every diagnostic at once; [`eval`] and
//! [`compile`] refuse a graph that has any.
//!
//! ```
//! use kiln::{DType, Graph};
//!
//! let g = Graph::new();
//! let a = g.input("a", DType::F32, [2, 3]);
//! let b = g.input("b", DType::F32, [4, 5]);
//! let c = a.matmul(&b); let line = line!(); // the failing call
//! let d = c.relu(); // poisoned too, but no second diagnostic
//! assert!(d.is_poisoned());
//!
//! let diags = g.diagnostics();
//! assert_eq!(diags.len(), 1);
//! assert_eq!(diags[0].loc.line, line);
//! assert!(diags[0].message.contains("inner dimensions differ"), "{}", diags[0]);
//! assert!(g.check().is_err());
//! assert!(kiln::eval(&[&d], &[]).is_err());
//! ```
//!
//! # 3. Derivatives are graph transforms
//!
//! [`grad`] appends the gradient computation to the same graph and returns ordinary tensors,
//! so you can evaluate, compile or differentiate them again ([`hessian`], [`jvp`], [`vjp`],
//! [`jacobian`]; docs/autodiff.md has the conventions).
//!
//! ```
//! use kiln::{Array, DType, Graph};
//!
//! let g = Graph::new();
//! let x = g.input("x", DType::F64, [3]);
//! let f = (&x * &x * &x).sum_all(); // f(x) = Σ x³
//! let df = kiln::grad(&f, &[&x]).remove(0); // 3x²
//! let d2f = kiln::grad(&df.sum_all(), &[&x]).remove(0); // 6x
//!
//! let xv = Array::from_f64(&[3], vec![1.0, 2.0, -1.0])?;
//! let out = kiln::eval(&[&f, &df, &d2f], &[("x", &xv)])?;
//! assert_eq!(out[0].as_f64()?, &[8.0]);
//! assert_eq!(out[1].as_f64()?, &[3.0, 12.0, 3.0]);
//! assert_eq!(out[2].as_f64()?, &[6.0, 12.0, -6.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # 4. Compile once, run many times
//!
//! [`compile`] optimises the graph, lowers it to a kernel plan and builds an [`Executable`]
//! for a [`Backend`]. [`Executable::run`] checks the inputs against the
//! [`Signature`] (names, dtypes, shapes) and returns the named outputs.
//!
//! | backend | what runs | dtypes |
//! |---|---|---|
//! | [`Backend::Cpu`] (default) | Cranelift JIT, GEMM for contractions | all |
//! | [`Backend::Gpu`] | WGSL shaders through wgpu (docs/gpu.md) | `f32`, `i32`, `u32`, `bool` and `i64` (two 32-bit words): compiling a graph with an `f64` tensor fails |
//! | [`Backend::Interp`] | the reference interpreter (the oracle) | all |
//! | [`Backend::Kernel`] | the kernel-plan executor | all |
//!
//! [`Backend::from_env`] reads `KILN_BACKEND`; [`Backend::available`] leaves out `gpu` when
//! the machine has no adapter.
//!
//! ```
//! use kiln::{Array, Backend, DType, Graph};
//!
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, [2, 2]);
//! let y = (x.matmul(&x.t()) - 1.0).relu();
//!
//! let mut exe = kiln::compile(&[("y", &y)], Backend::Cpu)?;
//! let xv = Array::from_f32(&[2, 2], vec![1.0, 2.0, 0.0, 0.5])?;
//! let out = exe.run(&[("x", &xv)])?;
//! assert_eq!(out[0].0, "y");
//! assert_eq!(out[0].1.as_f32()?, &[4.0, 0.0, 0.0, 0.0]);
//!
//! // Inputs are validated against the signature, with a one-line error.
//! let wrong = Array::from_f32(&[3], vec![0.0; 3])?;
//! let err = exe.run(&[("x", &wrong)]).unwrap_err();
//! assert!(err.to_string().contains("input `x`"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # 5. Symbolic dims: one executable for every batch size
//!
//! A named dimension ([`Graph::sym`]) stays symbolic through inference, the optimiser and
//! compilation; its value is bound from the inputs on each run.
//!
//! ```
//! use kiln::{Array, Backend, DType, Graph};
//!
//! let g = Graph::new();
//! let n = g.sym("N");
//! let x = g.input("x", DType::F32, (&n, 2));
//! let flat = x.flatten(0, -1); // [N*2]
//! let total = x.sum_all();
//! assert_eq!(flat.shape().to_string(), "[N*2]");
//!
//! let mut exe = kiln::compile(&[("flat", &flat), ("total", &total)], Backend::Cpu)?;
//! assert_eq!(exe.signature().symbols[0].name, "N");
//! for batch in [1, 3] {
//!     let xv = Array::from_f32(&[batch, 2], vec![1.0; batch * 2])?;
//!     let out = exe.run(&[("x", &xv)])?;
//!     assert_eq!(out[0].1.shape(), &[batch * 2]);
//!     assert_eq!(out[1].1.as_f32()?, &[(batch * 2) as f32]);
//! }
//!
//! // The interpreter reports the binding it inferred.
//! let xv = Array::from_f32(&[5, 2], vec![0.0; 10])?;
//! let (_, bindings) = kiln::eval_with_bindings(&[&flat], &[("x", &xv)])?;
//! assert_eq!(bindings["N"], 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # 6. Parameters live in the executable's state
//!
//! A parameter ([`Graph::param`], [`Graph::param_init`]) is persistent named state. Its
//! value on the graph is what [`eval`] uses and what [`compile`] copies into the new
//! executable's [`State`]. The graph stays linked to what it compiled: a later
//! [`Graph::set_param`] reaches every executable compiled from it, as [`State::set`]
//! (through [`Executable::state`]) does for one store. Executables made with
//! [`compile_shared`] share one store, so an update through one is seen by the other. A
//! compiled train step's updates stay in its state; read them there.
//!
//! ```
//! use kiln::{Array, Backend, DType, Graph};
//!
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, [1]);
//! let scale = g.param_init("scale", Array::from_f32(&[1], vec![2.0])?);
//! let y = &x * &scale;
//! let one = Array::from_f32(&[1], vec![1.0])?;
//!
//! let mut exe = kiln::compile(&[("y", &y)], Backend::Interp)?;
//! assert_eq!(exe.run(&[("x", &one)])?[0].1.item()?, 2.0);
//! g.set_param("scale", Array::from_f32(&[1], vec![3.0])?)?;
//! assert_eq!(kiln::eval(&[&y], &[("x", &one)])?[0].item()?, 3.0); // the graph's value
//! assert_eq!(exe.run(&[("x", &one)])?[0].1.item()?, 3.0); // reaches the executable
//!
//! exe.state().set("scale", Array::from_f32(&[1], vec![4.0])?)?; // this store only
//! assert_eq!(exe.run(&[("x", &one)])?[0].1.item()?, 4.0);
//!
//! // A second executable on the same store sees the change.
//! let double = &y * 2.0;
//! let mut other = kiln::compile_shared(&[("z", &double)], &[], exe.state(), Backend::Interp)?;
//! assert!(other.state().same(exe.state()));
//! assert_eq!(other.run(&[("x", &one)])?[0].1.item()?, 8.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # 7. A training step with an optimiser
//!
//! Layers in [`nn`] declare their parameters with PyTorch's `state_dict` names and seeded
//! initial values; [`loss`] has PyTorch's losses; an optimiser in [`optim`] appends the
//! gradient and the update rule and returns a [`optim::TrainStep`]. Compiled, each run of the
//! step returns the loss and applies every update to the executable's state in place.
//!
//! ```
//! use kiln::loss::{Reduction, mse_loss};
//! use kiln::nn::{Linear, Module};
//! use kiln::optim::Sgd;
//! use kiln::{Array, Backend, DType, Graph};
//!
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, [4, 1]);
//! let y = g.input("y", DType::F32, [4, 1]);
//! let model = Linear::new(&g, "fc", 1, 1, 0); // seed 0
//! let pred = model.forward(&x);
//! let loss = mse_loss(&pred, &y, Reduction::Mean);
//! let step = Sgd::new(0.1).minimize(&loss, &model.parameters());
//!
//! let mut train = step.compile(Backend::Cpu)?;
//! let xv = Array::from_f32(&[4, 1], vec![0.0, 1.0, 2.0, 3.0])?;
//! let yv = Array::from_f32(&[4, 1], vec![1.0, 3.0, 5.0, 7.0])?; // y = 2x + 1
//! let mut losses = Vec::new();
//! for _ in 0..200 {
//!     let out = train.run(&[("x", &xv), ("y", &yv)])?;
//!     losses.push(out[0].1.as_f32()?[0]);
//! }
//! assert!(losses[199] < 1e-3 * losses[0]);
//! let w = train.state().get("fc.weight").unwrap();
//! assert!((w.as_f32()?[0] - 2.0).abs() < 0.05);
//! assert_eq!(train.state().get("optim.step").unwrap().as_f32()?, &[200.0]);
//!
//! // An inference executable on the trained weights: share the training state.
//! let mut infer = kiln::compile_shared(&[("pred", &pred)], &[], train.state(), Backend::Cpu)?;
//! let p = infer.run(&[("x", &Array::from_f32(&[4, 1], vec![10.0; 4])?)])?;
//! assert!((p[0].1.as_f32()?[0] - 21.0).abs() < 0.5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # 8. Save and load
//!
//! [`Executable::save`] writes a `.kiln` file (the optimised graph, the kernel plan and the
//! current state) atomically; [`load`] reads it back for any backend without running the
//! optimiser, treating the file as hostile (docs/file-format.md, docs/security.md). The
//! command line runs the same file: `kiln run model.kiln --input x=x.npy`. Arrays move in and
//! out as `.npy` files with [`npy`].
//!
//! ```
//! use kiln::{Array, Backend, DType, Graph};
//!
//! let g = Graph::new();
//! let n = g.sym("N");
//! let x = g.input("x", DType::F32, (&n, 3));
//! let w = g.param_init("w", Array::from_f32(&[3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0])?);
//! let y = x.matmul(&w).tanh();
//! let exe = kiln::compile(&[("y", &y)], Backend::Cpu)?;
//!
//! let path = std::env::temp_dir().join(format!("kiln-tour-{}.kiln", std::process::id()));
//! exe.save(&path)?;
//! let mut loaded = kiln::load(&path, Backend::Interp)?;
//! std::fs::remove_file(&path)?;
//!
//! let xv = Array::from_f32(&[1, 3], vec![0.5, -0.5, 0.25])?;
//! let out = loaded.run(&[("x", &xv)])?;
//! let expect = [0.75f32.tanh(), (-0.25f32).tanh()];
//! for (got, want) in out[0].1.as_f32()?.iter().zip(expect) {
//!     assert!((got - want).abs() < 1e-6);
//! }
//! let saved_w = loaded.state().get("w").ok_or("the module carries w")?;
//! assert_eq!(saved_w.as_f32()?, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # 9. Weights in and out: state dicts
//!
//! [`load_safetensors`] reads a PyTorch `state_dict` saved with
//! `safetensors.torch.save_file`; [`nn::Module::load_state_dict`] loads it into the graph
//! (or an executable's state) with PyTorch's strict/non-strict rules; [`state_dict()`] and
//! [`save_safetensors`] write a checkpoint, with or without the optimiser state
//! ([`state_dict::Keys`]). docs/training.md walks through a whole training run.
//!
//! ```
//! use kiln::nn::{Linear, Module};
//! use kiln::state_dict::Keys;
//! use kiln::{Backend, DType, Graph};
//!
//! let g = Graph::new();
//! let x = g.input("x", DType::F32, [1, 2]);
//! let fc = Linear::new(&g, "fc", 2, 2, 0);
//! let mut exe = kiln::compile(&[("y", &fc.forward(&x))], Backend::Cpu)?;
//! let path = std::env::temp_dir().join(format!("kiln-tour-{}.safetensors", std::process::id()));
//! kiln::save_safetensors(&path, &kiln::state_dict(exe.state(), Keys::Parameters))?;
//! let dict = kiln::load_safetensors(&path)?;
//! std::fs::remove_file(&path)?;
//! assert_eq!(dict.keys().collect::<Vec<_>>(), ["fc.bias", "fc.weight"]);
//! let report = fc.load_state_dict(exe.state(), &dict, true)?;
//! assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where to go next
//!
//! | module | what |
//! |---|---|
//! | [`nn`] | layers with PyTorch's parameter names and initialisation |
//! | [`loss`] | cross-entropy, NLL, MSE, L1, BCE-with-logits |
//! | [`optim`] | SGD, Adam, AdamW, learning-rate schedules, gradient clipping |
//! | [`data`] | datasets, CSV and `.npy` loaders, a shuffling, prefetching [`data::DataLoader`] |
//! | [`random`] | JAX-compatible counter-based random numbers in the graph and on the host |
//! | [`functional`] | stateless building blocks (the LSTM cell) |
//! | [`npy`] | reading and writing `.npy` files |
//! | [`state_dict`](mod@state_dict) | PyTorch-style state dicts, `.safetensors` in and out ([`safetensors_file`]) |
//! | [`models`] | the reference models the test suite compares with PyTorch |
//! | [`ir`] | the graph IR underneath, for passes and tools |
//!
//! The repository's `docs/` explains the design: training.md (a training run end to end),
//! errors.md (the error families), ARCHITECTURE.md (crates and invariants), pipeline.md (the
//! passes), autodiff.md, numerics.md, gpu.md, file-format.md, onnx.md (ONNX
//! import with the `kiln-onnx` crate) and security.md.

#![deny(missing_docs)]

mod autodiff;
mod builder;
mod compile;
mod composite;
mod control;
pub mod data;
mod debug_fmt;
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
pub mod safetensors_file;
pub mod state_dict;
mod tensor;

pub use autodiff::{
    grad, hessian, jacobian, jvp, try_grad, try_hessian, try_jacobian, try_jvp, try_vjp,
    value_and_grad, vjp,
};
pub use builder::{Graph, IntoShape};
pub use compile::{compile, compile_shared, compile_step};
pub use control::ScanOptions;
pub use error::{Diagnostic, Error, StateDictError};
pub use eval::{eval, eval_with_bindings};
pub use kiln_ir::{Array, ArrayError, DType, Data, Dim, Loc, Shape};
pub use kiln_runtime::{
    Backend, Executable, RuntimeError, Signature, State, WeakState, load, load_bytes,
    quiet_gpu_start_up,
};
pub use state_dict::{StateDict, load_safetensors, load_state_dict, save_safetensors, state_dict};
pub use tensor::{Axes, ConvOpts, Operand, Tensor};

/// The underlying IR crate, for passes and tools that work on the graph directly.
pub use kiln_ir as ir;
