//! `kiln export-weights` / `import-weights`: state tensors to and from `.safetensors` with
//! PyTorch state_dict names and layouts, through the library's state dicts
//! (`kiln::state_dict`).

use anyhow::{Context, Result};
use kiln::optim::StateRole;
use kiln::state_dict::{Keys, StateDict};
use kiln::{State, StateDictError};
use kiln_ir::Array;
use std::path::Path;

/// Which tensors a command covers: `--params-only` gives the model's parameters alone.
fn keys(params_only: bool) -> Keys {
    if params_only {
        Keys::Parameters
    } else {
        Keys::All
    }
}

/// The module's state as a store the library's state-dict calls work on.
fn store(state: &[(String, Array)]) -> State {
    State::new(state.iter().cloned())
}

/// `kiln export-weights MODEL OUT.safetensors [--params-only]`.
pub fn export(model: &Path, out: &Path, params_only: bool) -> Result<()> {
    let m = kiln_format::load(model).with_context(|| model.display().to_string())?;
    let dict = kiln::state_dict(&store(&m.state), keys(params_only));
    kiln::save_safetensors(out, &dict)?;
    println!("wrote {} tensors to {}", dict.len(), out.display());
    Ok(())
}

/// `kiln import-weights MODEL IN.safetensors -o OUT.kiln [--params-only [--reset-optimizer]]`.
///
/// Every key must match (PyTorch's `strict=True`). With `params_only` the file holds the
/// model's parameters only and the module's optimiser state is kept, or zeroed with
/// `reset_optimizer`.
pub fn import(
    model: &Path,
    weights: &Path,
    out: &Path,
    params_only: bool,
    reset_optimizer: bool,
) -> Result<()> {
    let mut m = kiln_format::load(model).with_context(|| model.display().to_string())?;
    let dict: StateDict = kiln::load_safetensors(weights)?;
    let state = store(&m.state);
    let report = kiln::load_state_dict(&state, &dict, keys(params_only), true)
        .map_err(|e| with_flag_hint(e, &state, params_only))
        .with_context(|| format!("{} does not fit {}", weights.display(), model.display()))?;
    let reset = if reset_optimizer {
        kiln::state_dict::reset_training_state(&state)?
    } else {
        Vec::new()
    };
    for (name, a) in m.state.iter_mut() {
        if let Some(v) = state.get(name) {
            *a = v;
        }
    }
    kiln_format::save(&m, out).with_context(|| out.display().to_string())?;
    if reset.is_empty() {
        println!(
            "imported {} tensors into {}",
            report.loaded.len(),
            out.display()
        );
    } else {
        println!(
            "imported {} tensors into {} and reset {} optimiser tensors",
            report.loaded.len(),
            out.display(),
            reset.len()
        );
    }
    Ok(())
}

/// Adds the flag to pass when a file of parameters only meets a train-step module: every
/// missing key is optimiser or random-stream state.
fn with_flag_hint(e: kiln::Error, state: &State, params_only: bool) -> anyhow::Error {
    let training: Vec<String> = state
        .entries()
        .into_iter()
        .filter(|(n, d, s)| StateRole::of(n, *d, s).is_training_state())
        .map(|(n, _, _)| n)
        .collect();
    let hint = matches!(
        &e,
        kiln::Error::StateDict(StateDictError::Mismatch { missing, unexpected, mismatched })
            if !params_only
                && !missing.is_empty()
                && unexpected.is_empty()
                && mismatched.is_empty()
                && missing.iter().all(|k| training.contains(k))
    );
    let e = anyhow::Error::new(e);
    if hint {
        e.context(
            "the module is a train step and the file holds its parameters only: pass \
             --params-only to import them and keep its optimiser state (add \
             --reset-optimizer to zero it)",
        )
    } else {
        e
    }
}
