//! A kernel program compiled for the GPU: one pipeline per kernel, constants and persistent
//! state resident on the device, pooled buffers for inputs and outputs, one scratch arena
//! per binding (shaders reach every scratch buffer through one arena binding at its offset
//! in the memory plan), and a run that records its schedule (`record.rs`) and reads back
//! only what was asked.

use crate::device::{GpuDevice, LayoutKey, Pipeline};
use crate::error::GpuError;
use crate::pool::BufferPool;
use crate::profile::{GpuProfile, Transfers, profile_env};
use crate::record::{Bound, Launch, READBACK, Recorder, STORAGE, device_bytes};
use kiln_ir::{Array, DType, Data, Dim, DimError};
use kiln_kernel::memplan::{self, MemoryPlan, PlanOptions};
use kiln_kernel::{
    BufferId, BufferKind, IndexWidth, IndexWidthError, KernelId, Program, ValueId, VerifiedProgram,
    WidthScope,
};
use kiln_wgsl::{ERROR_WORDS, KernelShader, WgslProgram, device_element_bytes};
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes of the narrowest element on the device (one 32-bit word; bool is a `u32`, `i64`
/// two words): the unit of empty bindings and scratch alignment.
const WORD_BYTES: u64 = 4;

/// Bytes of one element of `dtype` on the device.
fn element_bytes(dtype: DType) -> u64 {
    u64::from(device_element_bytes(dtype))
}

/// Knobs for compiling a program.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Caps the workgroups per grid dimension below the adapter's limit (tests use a small
    /// value to exercise 2-D and 3-D launches on small data).
    pub max_workgroups_per_dimension: Option<u32>,
    /// Generates shaders for this target instead of the device's own
    /// ([`GpuDevice::target`]); a target that uses subgroups needs an adapter that has them.
    pub target: Option<kiln_wgsl::Target>,
}

#[derive(Debug)]
struct CompiledKernel {
    pipeline: Arc<Pipeline>,
}

/// A program compiled for a GPU device. Inputs, outputs and scratch live in a buffer pool
/// reused across runs; constants and state stay on the device between runs.
#[derive(Debug)]
pub struct GpuProgram {
    device: Arc<GpuDevice>,
    program: VerifiedProgram,
    wgsl: WgslProgram,
    kernels: Vec<CompiledKernel>,
    constants: HashMap<BufferId, wgpu::Buffer>,
    states: HashMap<BufferId, (wgpu::Buffer, usize)>,
    error: wgpu::Buffer,
    pool: BufferPool,
    max_groups: u32,
    /// The scratch memory plan of the last binding run.
    arena_plan: Option<(HashMap<String, u64>, Arc<MemoryPlan>)>,
    /// Dispatch, byte and (when timing) GPU-time counters.
    profile: GpuProfile,
    /// Time every dispatch with timestamp queries (where the device has them).
    timing: bool,
}

impl Drop for GpuProgram {
    /// Under `KILN_GPU_PROFILE=1`, prints the program's profile table to stderr.
    fn drop(&mut self) {
        if self.profile.runs > 0 && profile_env() {
            eprintln!("{}", self.profile);
        }
    }
}

/// The little-endian device words of an array (an `i64` is two words, low first).
fn to_words(a: &Array) -> Vec<u8> {
    match a.data() {
        Data::Bool(v) => v.iter().flat_map(|&b| u32::from(b).to_le_bytes()).collect(),
        Data::F32(_) | Data::I32(_) | Data::U32(_) | Data::F64(_) | Data::I64(_) => a.to_le_bytes(),
    }
}

/// An array of `dtype` from device words.
fn from_words(dtype: DType, len: usize, bytes: &[u8]) -> Result<Array, GpuError> {
    let n = usize::try_from(element_bytes(dtype)).unwrap_or(4);
    let bytes = bytes.get(..len * n).unwrap_or(bytes);
    let bad = |e: kiln_ir::ArrayError| GpuError::Device(e.to_string());
    match dtype {
        DType::Bool => {
            let v = bytes
                .chunks_exact(4)
                .map(|c| c.iter().any(|&b| b != 0))
                .collect();
            Array::from_bool(&[len], v).map_err(bad)
        }
        _ => Array::from_le_bytes(dtype, &[len], bytes).map_err(bad),
    }
}

/// Splits `total` workgroups over a grid whose dimensions stay within `max`; the shaders
/// number workgroups `x + nx * (y + ny * z)` and skip those past `total`.
pub fn split_grid(total: u64, max: u32) -> Option<[u32; 3]> {
    let m = u64::from(max.max(1));
    let x = total.min(m).max(1);
    let rest = total.div_ceil(x);
    let y = rest.min(m).max(1);
    let z = rest.div_ceil(y).max(1);
    if z > m {
        return None;
    }
    Some([
        u32::try_from(x).ok()?,
        u32::try_from(y).ok()?,
        u32::try_from(z).ok()?,
    ])
}

impl GpuProgram {
    /// Compiles `program` on the shared device ([`GpuDevice::shared`]).
    pub fn compile(program: &VerifiedProgram) -> Result<GpuProgram, GpuError> {
        GpuProgram::compile_on(&GpuDevice::shared()?, program, &GpuOptions::default())
    }

    /// Compiles `program` on `device`: generates WGSL, checks the adapter's limits, builds
    /// (or reuses) one pipeline per kernel and uploads the constants.
    pub fn compile_on(
        device: &Arc<GpuDevice>,
        program: &VerifiedProgram,
        options: &GpuOptions,
    ) -> Result<GpuProgram, GpuError> {
        let target = options.target.unwrap_or_else(|| device.target());
        let wgsl = kiln_wgsl::compile_for(program, &target)?;
        check_index_width(program, &HashMap::new(), false)?;
        let limits = device.limits();
        let mut kernels = Vec::with_capacity(wgsl.kernels.len());
        for shader in &wgsl.kernels {
            check_limits(shader, limits)?;
            let mut layout: LayoutKey = shader.bindings.iter().map(|b| !b.writable).collect();
            if shader.arena_binding.is_some() {
                layout.push(false);
            }
            if shader.error_binding.is_some() {
                layout.push(false);
            }
            let pipeline = device.pipeline(&shader.source, &layout).map_err(|e| {
                let message = e.to_string();
                if std::env::var("KILN_LOG").is_ok_and(|v| v.contains("gpu")) {
                    eprintln!(
                        "{}: wgpu rejected the shader:\n{message}\n{}",
                        shader.kernel, shader.source
                    );
                }
                GpuError::Shader {
                    kernel: shader.kernel,
                    message,
                }
            })?;
            kernels.push(CompiledKernel { pipeline });
        }
        device.save_pipeline_cache();
        let mut constants = HashMap::new();
        for (i, b) in program.buffers.iter().enumerate() {
            if let BufferKind::Constant(a) = &b.kind {
                let buffer = device.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kiln constant"),
                    size: device_bytes(a.dtype(), a.len()),
                    usage: STORAGE,
                    mapped_at_creation: false,
                });
                let words = to_words(a);
                if !words.is_empty() {
                    device.queue.write_buffer(&buffer, 0, &words);
                }
                constants.insert(BufferId(u32::try_from(i).unwrap_or(u32::MAX)), buffer);
            }
        }
        let error = device.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln error flag"),
            size: (ERROR_WORDS as u64 * 4).div_ceil(16) * 16,
            usage: STORAGE,
            mapped_at_creation: false,
        });
        let max_groups = options
            .max_workgroups_per_dimension
            .unwrap_or(u32::MAX)
            .min(limits.max_compute_workgroups_per_dimension)
            .max(1);
        Ok(GpuProgram {
            device: device.clone(),
            program: program.clone(),
            kernels,
            constants,
            states: HashMap::new(),
            error,
            pool: BufferPool::default(),
            max_groups,
            arena_plan: None,
            profile: GpuProfile::new(
                device.describe(),
                wgsl.kernels.iter().map(|k| (k.kernel, k.kind)),
            ),
            timing: profile_env(),
            wgsl,
        })
    }

    /// The plan of the scratch arena under `bindings`: every scratch buffer at an offset
    /// aligned for storage bindings, each element one 32-bit word (two for `i64`), no in-place reuse (a
    /// kernel never binds one range as both an input and an output). A run allocates one
    /// arena of [`MemoryPlan::peak_scratch_bytes`].
    pub fn scratch_plan(&self, bindings: &HashMap<String, u64>) -> Result<MemoryPlan, GpuError> {
        let limits = self.device.limits();
        let alignment = u64::from(limits.min_storage_buffer_offset_alignment)
            .max(8)
            .next_power_of_two();
        let options = PlanOptions {
            alignment,
            in_place: false,
            element_bytes: Some(WORD_BYTES),
        };
        let plan = memplan::plan_with(&self.program, bindings, &options, &[])?;
        // Shaders address the arena in 32-bit words with `i32` offsets.
        let limit = limits
            .max_buffer_size
            .min(limits.max_storage_buffer_binding_size)
            .min(i32::MAX as u64 * WORD_BYTES);
        if plan.peak_scratch_bytes > limit {
            return Err(GpuError::ArenaTooLarge {
                bytes: plan.peak_scratch_bytes,
                limit,
            });
        }
        Ok(plan)
    }

    /// [`GpuProgram::scratch_plan`], cached for the last binding.
    fn cached_plan(
        &mut self,
        bindings: &HashMap<String, u64>,
    ) -> Result<Arc<MemoryPlan>, GpuError> {
        if let Some((b, plan)) = &self.arena_plan
            && b == bindings
        {
            return Ok(plan.clone());
        }
        let plan = Arc::new(self.scratch_plan(bindings)?);
        self.arena_plan = Some((bindings.clone(), plan.clone()));
        Ok(plan)
    }

    /// The generated shaders.
    pub fn wgsl(&self) -> &WgslProgram {
        &self.wgsl
    }

    /// The program.
    pub fn program(&self) -> &VerifiedProgram {
        &self.program
    }

    /// The device the program runs on.
    pub fn device(&self) -> &Arc<GpuDevice> {
        &self.device
    }

    /// The program's counters: runs, per-kernel dispatches, workgroups, bytes bound and
    /// (when timing) GPU time, and the bytes moved between host and device.
    pub fn profile(&self) -> &GpuProfile {
        &self.profile
    }

    /// Bytes moved between host and device since compiling.
    pub fn transfers(&self) -> Transfers {
        self.profile.transfers
    }

    /// Turns per-kernel GPU timing on or off (on by default under `KILN_GPU_PROFILE=1`).
    /// Timing runs each kernel in its own compute pass with timestamp queries; on a device
    /// without them ([`GpuDevice::timestamp_period`] is `None`) it does nothing.
    pub fn set_timing(&mut self, on: bool) {
        self.timing = on;
    }

    /// Device buffers the pool has created so far (stays constant across repeated runs
    /// under one binding).
    pub fn pooled_buffers_created(&self) -> usize {
        self.pool.created()
    }

    /// Runs the program and returns every output (as 1-D arrays of the output buffer's
    /// length).
    pub fn run(
        &mut self,
        bindings: &HashMap<String, u64>,
        inputs: &HashMap<String, Array>,
    ) -> Result<HashMap<String, Array>, GpuError> {
        self.run_outputs(bindings, inputs, None)
    }

    /// Runs the program and reads back only the outputs named in `outputs` (all outputs for
    /// `None`). State is updated on the device and not read back.
    pub fn run_outputs(
        &mut self,
        bindings: &HashMap<String, u64>,
        inputs: &HashMap<String, Array>,
        outputs: Option<&[&str]>,
    ) -> Result<HashMap<String, Array>, GpuError> {
        self.run_committing(bindings, inputs, outputs, &[])
    }

    /// [`GpuProgram::run_outputs`], then, in the same command encoder, copies each output
    /// `commits[k].0` into state `commits[k].1` on the device (a plan that computes new
    /// state values into outputs keeps them there without a round trip through the host).
    /// Each pair must agree in dtype and, under the binding, in length.
    pub fn run_committing(
        &mut self,
        bindings: &HashMap<String, u64>,
        inputs: &HashMap<String, Array>,
        outputs: Option<&[&str]>,
        commits: &[(&str, &str)],
    ) -> Result<HashMap<String, Array>, GpuError> {
        let lens = self.buffer_lens(bindings)?;
        let mut copies = Vec::with_capacity(commits.len());
        for (out, state) in commits {
            let o = self
                .program
                .output(out)
                .ok_or_else(|| GpuError::UnknownName {
                    kind: "output",
                    name: out.to_string(),
                })?;
            let s = self.state_id(state)?;
            let (ob, sb) = (
                &self.program.buffers[o.index()],
                &self.program.buffers[s.index()],
            );
            if ob.dtype != sb.dtype || lens[o.index()] != lens[s.index()] {
                return Err(GpuError::Mismatch {
                    kind: "state",
                    name: state.to_string(),
                    dtype: sb.dtype,
                    len: lens[s.index()],
                    got_dtype: ob.dtype,
                    got_len: lens[o.index()],
                });
            }
            copies.push((o, s));
        }
        check_run_index_width(&self.program, bindings)?;
        for name in inputs.keys() {
            if self.program.input(name).is_none() {
                return Err(GpuError::UnknownName {
                    kind: "input",
                    name: name.clone(),
                });
            }
        }
        let wanted: Vec<(String, BufferId)> = match outputs {
            Some(names) => names
                .iter()
                .map(|n| {
                    self.program
                        .output(n)
                        .map(|id| (n.to_string(), id))
                        .ok_or_else(|| GpuError::UnknownName {
                            kind: "output",
                            name: n.to_string(),
                        })
                })
                .collect::<Result<_, _>>()?,
            None => self
                .program
                .buffers
                .iter()
                .enumerate()
                .filter_map(|(i, b)| match &b.kind {
                    BufferKind::Output(n) => {
                        Some((n.clone(), BufferId(u32::try_from(i).unwrap_or(u32::MAX))))
                    }
                    _ => None,
                })
                .collect(),
        };
        let plan = self.cached_plan(bindings)?;
        let word = |id: BufferId| -> Option<u64> {
            plan.offsets
                .get(id.index())
                .copied()
                .flatten()
                .map(|b| b / WORD_BYTES)
        };
        let induction = induction_symbols(&self.program);
        let mut launches = Vec::with_capacity(self.wgsl.kernels.len());
        for (shader, compiled) in self.wgsl.kernels.iter().zip(&self.kernels) {
            let launch_error = |source| GpuError::Launch {
                kernel: shader.kernel,
                source,
            };
            let groups = shader.workgroups(bindings).map_err(launch_error)?;
            let per_iteration = shader.params.iter().any(|d| {
                d.symbols()
                    .iter()
                    .any(|s| induction.iter().any(|v| **v == **s))
            });
            let params = if per_iteration {
                None
            } else {
                Some(
                    shader
                        .params_bytes_with(bindings, &word)
                        .map_err(launch_error)?,
                )
            };
            let grid = split_grid(groups, self.max_groups).ok_or(GpuError::Limit {
                kernel: shader.kernel,
                what: "workgroups (in a 3-D grid)",
                needed: groups,
                limit: u64::from(self.max_groups).pow(3),
            })?;
            let mut entries: Vec<(u32, Bound)> = shader
                .bindings
                .iter()
                .map(|b| {
                    let bytes = device_bytes(b.dtype, lens[b.buffer.index()]);
                    (b.binding, Bound::Buffer(b.buffer, bytes))
                })
                .collect();
            entries.extend(shader.arena_binding.map(|a| (a, Bound::Arena)));
            entries.extend(shader.error_binding.map(|e| (e, Bound::Error)));
            let bound = shader
                .bindings
                .iter()
                .map(|b| (b.dtype, b.buffer))
                .chain(shader.packed.iter().map(|p| (p.dtype, p.buffer)))
                .map(|(dtype, id)| device_bytes(dtype, lens[id.index()]))
                .sum();
            launches.push(Launch {
                pipeline: compiled.pipeline.clone(),
                groups,
                grid,
                params,
                params_size: shader.params_size(),
                bound,
                entries,
            });
        }
        // Inputs first (they can fail), then device buffers.
        let mut uploads: Vec<(BufferId, Vec<u8>)> = Vec::new();
        for (i, b) in self.program.buffers.iter().enumerate() {
            if let BufferKind::Input(name) = &b.kind {
                let a = inputs
                    .get(name)
                    .ok_or_else(|| GpuError::MissingInput(name.clone()))?;
                if a.dtype() != b.dtype || a.len() != lens[i] {
                    return Err(GpuError::Mismatch {
                        kind: "input",
                        name: name.clone(),
                        dtype: b.dtype,
                        len: lens[i],
                        got_dtype: a.dtype(),
                        got_len: a.len(),
                    });
                }
                uploads.push((BufferId(u32::try_from(i).unwrap_or(u32::MAX)), to_words(a)));
            }
        }
        self.ensure_states(&lens)?;
        let device = self.device.clone();
        let max = device.limits().max_buffer_size;
        let arena = self.pool.take(
            &device.device,
            plan.peak_scratch_bytes.max(WORD_BYTES),
            STORAGE,
            max,
        );
        let mut pooled: HashMap<BufferId, wgpu::Buffer> = HashMap::new();
        let mut clears = Vec::new();
        for (i, b) in self.program.buffers.iter().enumerate() {
            let id = BufferId(u32::try_from(i).unwrap_or(u32::MAX));
            if matches!(b.kind, BufferKind::Input(_) | BufferKind::Output(_)) {
                let bytes = device_bytes(b.dtype, lens[i]);
                let buffer = self.pool.take(&device.device, bytes, STORAGE, max);
                pooled.insert(id, buffer);
                // Outputs start zeroed, as the executor allocates them.
                if matches!(b.kind, BufferKind::Output(_)) || lens[i] == 0 {
                    clears.push((id, bytes));
                }
            }
        }
        for (id, words) in &uploads {
            if let Some(b) = pooled.get(id)
                && !words.is_empty()
            {
                device.queue.write_buffer(b, 0, words);
            }
        }
        let mut buffers: HashMap<BufferId, &wgpu::Buffer> = HashMap::new();
        buffers.extend(pooled.iter().map(|(k, v)| (*k, v)));
        buffers.extend(self.constants.iter().map(|(k, v)| (*k, v)));
        buffers.extend(self.states.iter().map(|(k, v)| (*k, &v.0)));
        let mut env = bindings.clone();
        for s in &induction {
            env.insert(s.clone(), 0);
        }
        let reads: Vec<(BufferId, u64)> = wanted
            .iter()
            .map(|(_, id)| {
                let dtype = self.program.buffers[id.index()].dtype;
                (*id, device_bytes(dtype, lens[id.index()]))
            })
            .collect();
        let uploaded: u64 = uploads.iter().map(|(_, w)| w.len() as u64).sum();
        let downloaded: u64 = reads.iter().map(|(_, n)| *n).sum();
        let steps = self.program.steps();
        let mut recorder = Recorder::new(
            &device,
            &self.program,
            &self.wgsl,
            &launches,
            &lens,
            (&plan, &arena, &self.error),
            &buffers,
            (&mut self.pool, &mut self.profile),
            self.timing,
            env,
            clears,
        );
        let result = recorder
            .steps(&steps)
            .and_then(|()| recorder.finish(&copies, &reads));
        drop(recorder);
        drop(buffers);
        self.profile.runs += 1;
        self.profile.transfers.input_bytes += uploaded;
        self.pool.give(arena);
        for (_, b) in pooled {
            self.pool.give(b);
        }
        let data = result?;
        self.profile.transfers.output_bytes += downloaded;
        let mut out = HashMap::new();
        for ((name, id), bytes) in wanted.iter().zip(&data) {
            let b = &self.program.buffers[id.index()];
            out.insert(name.clone(), from_words(b.dtype, lens[id.index()], bytes)?);
        }
        Ok(out)
    }

    /// Checks the bindings against the symbols ([`Program::bind`]) and every buffer's
    /// length against the adapter's and the shaders' limits.
    fn buffer_lens(&self, bindings: &HashMap<String, u64>) -> Result<Vec<usize>, GpuError> {
        let lens = self.program.bind(bindings)?.buffer_lens();
        let limits = self.device.limits();
        lens.into_iter()
            .enumerate()
            .map(|(i, len)| {
                let id = BufferId(u32::try_from(i).unwrap_or(u32::MAX));
                let e = element_bytes(self.program.buffers[i].dtype);
                let limit = limits
                    .max_storage_buffer_binding_size
                    .min(limits.max_buffer_size)
                    .min(i32::MAX as u64 * e);
                let bytes = u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(e);
                if bytes > limit {
                    return Err(GpuError::BufferTooLarge {
                        buffer: id,
                        bytes,
                        limit,
                    });
                }
                Ok(len)
            })
            .collect()
    }

    /// Creates zeroed device buffers for state not yet set, and checks the sizes of the rest.
    fn ensure_states(&mut self, lens: &[usize]) -> Result<(), GpuError> {
        for (i, b) in self.program.buffers.iter().enumerate() {
            if let BufferKind::State(name) = &b.kind {
                let id = BufferId(u32::try_from(i).unwrap_or(u32::MAX));
                match self.states.get(&id) {
                    Some((_, len)) if *len != lens[i] => {
                        return Err(GpuError::Mismatch {
                            kind: "state",
                            name: name.clone(),
                            dtype: b.dtype,
                            len: lens[i],
                            got_dtype: b.dtype,
                            got_len: *len,
                        });
                    }
                    Some(_) => {}
                    None => {
                        let buffer = self.device.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("kiln state"),
                            size: device_bytes(b.dtype, lens[i]),
                            usage: STORAGE,
                            mapped_at_creation: false,
                        });
                        self.states.insert(id, (buffer, lens[i]));
                    }
                }
            }
        }
        Ok(())
    }

    fn state_id(&self, name: &str) -> Result<BufferId, GpuError> {
        self.program
            .state(name)
            .ok_or_else(|| GpuError::UnknownName {
                kind: "state",
                name: name.to_string(),
            })
    }

    /// Uploads the value of state `name` (parameters, optimiser moments). The array's dtype
    /// must match and, for a state of known size, its element count; its shape is ignored.
    pub fn set_state(&mut self, name: &str, value: &Array) -> Result<(), GpuError> {
        let id = self.state_id(name)?;
        let b = &self.program.buffers[id.index()];
        let known = b.size.as_known().and_then(|n| usize::try_from(n).ok());
        if value.dtype() != b.dtype || known.is_some_and(|n| n != value.len()) {
            return Err(GpuError::Mismatch {
                kind: "state",
                name: name.to_string(),
                dtype: b.dtype,
                len: known.unwrap_or(value.len()),
                got_dtype: value.dtype(),
                got_len: value.len(),
            });
        }
        let buffer = self.device.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln state"),
            size: device_bytes(value.dtype(), value.len()),
            usage: STORAGE,
            mapped_at_creation: false,
        });
        let words = to_words(value);
        if !words.is_empty() {
            self.device.queue.write_buffer(&buffer, 0, &words);
        }
        self.profile.transfers.state_upload_bytes += words.len() as u64;
        self.states.insert(id, (buffer, value.len()));
        Ok(())
    }

    /// Downloads the current value of state `name` as a 1-D array (zeros for a state of
    /// known size that was never set or run).
    pub fn state(&mut self, name: &str) -> Result<Array, GpuError> {
        let id = self.state_id(name)?;
        let dtype = self.program.buffers[id.index()].dtype;
        let Some((buffer, len)) = self.states.get(&id) else {
            let known = self.program.buffers[id.index()]
                .size
                .as_known()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| GpuError::StateUnset(name.to_string()))?;
            return Array::zeros(dtype, &[known]).map_err(|e| GpuError::Device(e.to_string()));
        };
        let len = *len;
        let bytes = device_bytes(dtype, len);
        let max = self.device.limits().max_buffer_size;
        let read = self.pool.take(&self.device.device, bytes, READBACK, max);
        let mut encoder =
            self.device
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("kiln state readback"),
                });
        encoder.copy_buffer_to_buffer(buffer, 0, &read, 0, bytes);
        let data = crate::device::submit_and_read(&self.device, encoder, &[(&read, bytes)]);
        self.pool.give(read);
        let data = data?;
        self.profile.transfers.state_download_bytes += bytes;
        from_words(dtype, len, data.first().map_or(&[][..], Vec::as_slice))
    }
}

/// The induction symbols of the program's counted loops.
fn induction_symbols(program: &Program) -> Vec<String> {
    let mut out = Vec::new();
    kiln_kernel::schedule::walk(&program.steps(), &mut |step, _, _| {
        if let kiln_kernel::Step::Loop(l) = step {
            out.push(l.var.clone());
        }
    });
    out
}

/// [`check_index_width`] for a run: with every induction symbol at 0 and again at its
/// loop's last iteration (index polynomials are affine in an induction symbol, so their
/// intermediates take their extremes at the ends), as the CPU backend's pre-run checks do.
fn check_run_index_width(
    program: &Program,
    bindings: &HashMap<String, u64>,
) -> Result<(), GpuError> {
    let mut first = bindings.clone();
    let mut last = bindings.clone();
    let mut loops = Vec::new();
    kiln_kernel::schedule::walk(&program.steps(), &mut |step, _, _| {
        if let kiln_kernel::Step::Loop(l) = step {
            loops.push((l.var.clone(), l.trip.clone()));
        }
    });
    if loops.is_empty() {
        return check_index_width(program, bindings, true);
    }
    for (var, trip) in loops {
        let trip = trip.eval(bindings).map_err(|source| GpuError::Trip {
            var: var.clone(),
            source,
        })?;
        first.insert(var.clone(), 0);
        last.insert(var, trip.saturating_sub(1));
    }
    check_index_width(program, &first, true)?;
    check_index_width(program, &last, true)
}

/// Shows that every index of every kernel body computes its intermediates within `i32`
/// under `bindings` ([`kiln_kernel::check_index_width`]). At compile (`bound` false, no
/// bindings) only bodies whose dims are all known are checked; a run checks every body
/// before anything is dispatched.
fn check_index_width(
    program: &Program,
    bindings: &HashMap<String, u64>,
    bound: bool,
) -> Result<(), GpuError> {
    let dims = |d: &Dim| -> Option<i64> {
        match d.eval(bindings) {
            Ok(v) => i64::try_from(v).ok(),
            Err(DimError::Negative { value, .. }) => Some(value),
            Err(_) => None,
        }
    };
    let values = |_: ValueId| Some((i128::from(i32::MIN), i128::from(i32::MAX)));
    for (i, kernel) in program.kernels.iter().enumerate() {
        for body in kernel.bodies(&program.symbols) {
            let Some(domain) = &body.domain else {
                continue;
            };
            let scope = WidthScope {
                kernel: KernelId(u32::try_from(i).unwrap_or(u32::MAX)),
                domain,
                reduce: &body.reduce,
                values: &values,
                dims: &dims,
            };
            match kiln_kernel::check_index_width(body.body, &scope, IndexWidth::I32) {
                Ok(()) => {}
                Err(IndexWidthError::Unevaluated { .. }) if !bound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Checks a shader against the device limits.
fn check_limits(shader: &KernelShader, limits: &wgpu::Limits) -> Result<(), GpuError> {
    let storage = shader.storage_bindings();
    let checks = [
        (
            "storage buffers per shader stage",
            storage,
            u64::from(limits.max_storage_buffers_per_shader_stage),
        ),
        (
            "bindings per bind group",
            storage + 1,
            u64::from(limits.max_bindings_per_bind_group),
        ),
        (
            "invocations per workgroup",
            u64::from(shader.workgroup_size),
            u64::from(limits.max_compute_invocations_per_workgroup),
        ),
        (
            "invocations along x",
            u64::from(shader.workgroup_shape[0]),
            u64::from(limits.max_compute_workgroup_size_x),
        ),
        (
            "invocations along y",
            u64::from(shader.workgroup_shape[1]),
            u64::from(limits.max_compute_workgroup_size_y),
        ),
        (
            "bytes of workgroup memory",
            u64::from(shader.workgroup_memory),
            u64::from(limits.max_compute_workgroup_storage_size),
        ),
    ];
    for (what, needed, limit) in checks {
        if needed > limit {
            return Err(GpuError::Limit {
                kernel: shader.kernel,
                what,
                needed,
                limit,
            });
        }
    }
    Ok(())
}
