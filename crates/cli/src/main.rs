//! The `kiln` runner binary: run, inspect, benchmark and convert compiled `.kiln` modules,
//! and import ONNX models.
//!
//! Exit codes: 0 success, 1 a runtime or input error (one line on stderr), 2 a usage error.

mod commands;
mod demo;
mod onnx;
mod report;
mod weights;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run and inspect compiled kiln modules.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// On error, print every cause in full (also: KILN_LOG set to anything but `0`).
    #[arg(long, short, global = true)]
    verbose: bool,
}

/// The most timed iterations `kiln bench` accepts.
const MAX_ITERS: u64 = 1_000_000;

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a module on inputs from .npy files and write every output as DIR/<name>.npy.
    Run {
        /// The .kiln module.
        model: PathBuf,
        /// An input as NAME=FILE.npy (repeatable).
        #[arg(long = "input", short = 'i', value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Backend: cpu, gpu, interp or kernel (default: $KILN_BACKEND, else cpu).
        #[arg(long)]
        backend: Option<String>,
        /// Directory for the outputs.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Bind a symbol no input determines, SYM=N (repeatable).
        #[arg(long = "bind", value_name = "SYM=N")]
        binds: Vec<String>,
        /// Write the module with its updated state to this file.
        #[arg(long, value_name = "OUT.kiln")]
        save_state: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Describe a module: version, producer, signature, parameters, kernels, scratch memory.
    Info {
        /// The .kiln module.
        model: PathBuf,
        /// Bind symbols for the memory report, SYM=N (unbound symbols count as 1).
        #[arg(long = "bind", value_name = "SYM=N")]
        binds: Vec<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Time a module on random inputs matching its signature.
    Bench {
        /// The .kiln module.
        model: PathBuf,
        /// Backend: cpu, gpu, interp or kernel (default: $KILN_BACKEND, else cpu).
        #[arg(long)]
        backend: Option<String>,
        /// Timed iterations after warm-up (1 to 1000000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=MAX_ITERS))]
        iters: u64,
        /// Bind symbols, SYM=N (unbound symbols are 1).
        #[arg(long = "bind", value_name = "SYM=N")]
        binds: Vec<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train an MLP on the bundled UCI digits, save digits.kiln and check it on every backend.
    Demo {
        /// Where training runs: cpu, gpu, interp or kernel (default: $KILN_BACKEND, else cpu).
        #[arg(long)]
        backend: Option<String>,
        /// Passes over the training split (1 to 10000).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        epochs: u32,
        /// Batch size (1 to 65536).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65_536))]
        batch: u64,
        /// Adam learning rate.
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
        /// Seed of initialisation, dropout and shuffling.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The digits CSV (default: the bundled fixtures/data/digits.csv).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where the inference module is written.
        #[arg(long, default_value = "digits.kiln")]
        out: PathBuf,
    },
    /// Print the graph and its kernel plan as Graphviz (kernels as clusters).
    Dot {
        /// The .kiln module.
        model: PathBuf,
    },
    /// Write the module's state tensors (PyTorch state_dict names) to a .safetensors file.
    ExportWeights {
        /// The .kiln module.
        model: PathBuf,
        /// The .safetensors file to write.
        out: PathBuf,
        /// Write the model's parameters only (PyTorch's `model.state_dict()`), without
        /// optimiser moments, step and random-stream counters.
        #[arg(long)]
        params_only: bool,
    },
    /// Import an ONNX model: compile it and save it as a .kiln module (`kiln run`, `info`
    /// and `bench` also take .onnx files directly).
    Import {
        /// The .onnx model.
        #[arg(required_unless_present = "list_ops")]
        model: Option<PathBuf>,
        /// The .kiln file to write.
        #[arg(short = 'o', long = "out", required_unless_present = "list_ops")]
        out: Option<PathBuf>,
        /// Backend to compile for (default: KILN_BACKEND or cpu).
        #[arg(long)]
        backend: Option<String>,
        /// Fix a named dim (an ONNX dim_param) to a size, e.g. `--dim batch=1` (repeatable).
        #[arg(long = "dim", value_name = "NAME=N")]
        dims: Vec<String>,
        /// List the ONNX op types kiln imports and exit.
        #[arg(long)]
        list_ops: bool,
    },
    /// Replace the module's weights with those of a .safetensors file (every key must
    /// match, as PyTorch's `load_state_dict(strict=True)`).
    ImportWeights {
        /// The .kiln module.
        model: PathBuf,
        /// The .safetensors file to read.
        weights: PathBuf,
        /// The .kiln file to write.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// The file holds the model's parameters only: import them and keep the module's
        /// optimiser state (a train-step module; the default expects every state tensor).
        #[arg(long)]
        params_only: bool,
        /// With --params-only: zero the optimiser moments and step counters instead of
        /// keeping them (training restarts as with a fresh optimiser).
        #[arg(long, requires = "params_only")]
        reset_optimizer: bool,
    },
}

fn main() -> ExitCode {
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { kiln_runtime::quiet_gpu_start_up() };
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Run {
            model,
            inputs,
            backend,
            out,
            binds,
            save_state,
            json,
        } => commands::run(
            &model,
            &inputs,
            backend.as_deref(),
            &out,
            &binds,
            save_state.as_deref(),
            json,
        ),
        Command::Info { model, binds, json } => commands::info(&model, &binds, json),
        Command::Bench {
            model,
            backend,
            iters,
            binds,
            json,
        } => commands::bench(&model, backend.as_deref(), iters, &binds, json),
        Command::Dot { model } => commands::dot(&model),
        Command::Demo {
            backend,
            epochs,
            batch,
            lr,
            seed,
            data,
            out,
        } => demo::run(&demo::DemoOptions {
            backend,
            epochs,
            batch: usize::try_from(batch).unwrap_or(usize::MAX),
            lr,
            seed,
            data,
            out,
        }),
        Command::ExportWeights {
            model,
            out,
            params_only,
        } => weights::export(&model, &out, params_only),
        Command::Import { list_ops: true, .. } => {
            onnx::list_ops();
            Ok(())
        }
        Command::Import {
            model: Some(model),
            out: Some(out),
            backend,
            dims,
            ..
        } => {
            commands::backend_of(backend.as_deref()).and_then(|b| onnx::run(&model, &out, b, &dims))
        }
        Command::Import { .. } => Err(anyhow::anyhow!("kiln import needs MODEL and -o OUT")),
        Command::ImportWeights {
            model,
            weights,
            out,
            params_only,
            reset_optimizer,
        } => weights::import(&model, &weights, &out, params_only, reset_optimizer),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.verbose || report::log_requested() {
                eprintln!("error: {}", report::full(&e));
            } else {
                eprintln!("error: {}", report::one_line(&e));
            }
            ExitCode::from(1)
        }
    }
}
