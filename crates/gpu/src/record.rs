//! Recording a run: walks the program's schedule (kernels, copies, counted loops, while
//! loops and ifs) and records its dispatches and copies into command encoders. Everything
//! between two host decisions goes into one encoder and one submit: a counted loop, whose
//! trip count is known when the run starts, records every iteration's dispatches (each
//! with its own params at a dynamic offset of one uniform buffer, the induction symbol's
//! value among them); a `while` or `if` predicate is copied to a read-back buffer, the
//! encoder is submitted and the host waits for the one word before it records the next
//! steps.

use crate::device::{GpuDevice, Pipeline};
use crate::error::GpuError;
use crate::pool::BufferPool;
use crate::profile::{GpuProfile, Timer, durations};
use kiln_ir::DType;
use kiln_kernel::memplan::MemoryPlan;
use kiln_kernel::{BufferId, KernelId, Program, Step};
use kiln_wgsl::{
    ERROR_BINDING, ERROR_CODE, ERROR_CODE_DIVISION, ERROR_FLAG, ERROR_INDEX, ERROR_KERNEL,
    ERROR_WORDS, PACKED_ERROR_BASE, WgslProgram,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Dispatches recorded before a segment is submitted without a host decision (bounds the
/// params buffer and the timestamp queries of one submit).
const MAX_SEGMENT: usize = 4096;

/// Usage of a params buffer.
const UNIFORM: wgpu::BufferUsages = wgpu::BufferUsages::UNIFORM.union(wgpu::BufferUsages::COPY_DST);
/// Usage of a read-back buffer.
pub(crate) const READBACK: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);
/// Usage of every storage buffer.
pub(crate) const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// One kernel of a run: its pipeline, launch and the bytes it binds.
pub(crate) struct Launch {
    pub(crate) pipeline: Arc<Pipeline>,
    /// Workgroups (0: the kernel is skipped).
    pub(crate) groups: u64,
    pub(crate) grid: [u32; 3],
    /// The params uniform when it does not depend on an induction symbol.
    pub(crate) params: Option<Vec<u8>>,
    /// Bytes of the params uniform.
    pub(crate) params_size: u64,
    /// Bytes of the storage buffers the kernel binds.
    pub(crate) bound: u64,
    /// The storage bindings after the params uniform.
    pub(crate) entries: Vec<(u32, Bound)>,
}

/// A storage binding of a kernel.
#[derive(Clone, Copy)]
pub(crate) enum Bound {
    /// A program buffer at `bytes` of its device buffer.
    Buffer(BufferId, u64),
    /// The scratch arena, whole.
    Arena,
    /// The error buffer.
    Error,
}

enum Cmd {
    Dispatch { kernel: usize, offset: u32 },
    Copy { src: BufferId, dst: BufferId },
}

/// What a run needs from its program, borrowed for the run.
pub(crate) struct Recorder<'a> {
    pub(crate) device: &'a GpuDevice,
    pub(crate) program: &'a Program,
    pub(crate) wgsl: &'a WgslProgram,
    pub(crate) launches: &'a [Launch],
    pub(crate) lens: &'a [usize],
    pub(crate) plan: &'a MemoryPlan,
    pub(crate) arena: &'a wgpu::Buffer,
    pub(crate) error: &'a wgpu::Buffer,
    /// Device buffers of inputs, outputs, constants and state.
    pub(crate) buffers: &'a HashMap<BufferId, &'a wgpu::Buffer>,
    pub(crate) pool: &'a mut BufferPool,
    pub(crate) profile: &'a mut GpuProfile,
    pub(crate) timing: bool,
    /// The bindings, plus the current value of every induction symbol.
    pub(crate) env: HashMap<String, u64>,
    /// Clears recorded at the start of the first submit.
    pub(crate) clears: Vec<(BufferId, u64)>,
    cmds: Vec<Cmd>,
    params: Vec<u8>,
    submitted: bool,
}

/// Bytes of one element of `dtype` on the device, at least one element.
pub(crate) fn device_bytes(dtype: DType, len: usize) -> u64 {
    let e = u64::from(kiln_wgsl::device_element_bytes(dtype));
    (len as u64).saturating_mul(e).max(e)
}

impl<'a> Recorder<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        device: &'a GpuDevice,
        program: &'a Program,
        wgsl: &'a WgslProgram,
        launches: &'a [Launch],
        lens: &'a [usize],
        (plan, arena, error): (&'a MemoryPlan, &'a wgpu::Buffer, &'a wgpu::Buffer),
        buffers: &'a HashMap<BufferId, &'a wgpu::Buffer>,
        (pool, profile): (&'a mut BufferPool, &'a mut GpuProfile),
        timing: bool,
        env: HashMap<String, u64>,
        clears: Vec<(BufferId, u64)>,
    ) -> Recorder<'a> {
        Recorder {
            device,
            program,
            wgsl,
            launches,
            lens,
            plan,
            arena,
            error,
            buffers,
            pool,
            profile,
            timing,
            env,
            clears,
            cmds: Vec::new(),
            params: Vec::new(),
            submitted: false,
        }
    }

    /// A program buffer's device buffer and the byte offset of its data there.
    fn place(&self, id: BufferId) -> Result<(&'a wgpu::Buffer, u64), GpuError> {
        if let Some(Some(offset)) = self.plan.offsets.get(id.index()) {
            return Ok((self.arena, *offset));
        }
        self.buffers
            .get(&id)
            .map(|b| (*b, 0))
            .ok_or_else(|| GpuError::Device(format!("{id} has no device buffer")))
    }

    fn bytes(&self, id: BufferId) -> u64 {
        let dtype = self
            .program
            .buffers
            .get(id.index())
            .map_or(DType::F32, |b| b.dtype);
        device_bytes(dtype, self.lens.get(id.index()).copied().unwrap_or(0))
    }

    /// Records `steps`, submitting and waiting where a predicate must be read.
    pub(crate) fn steps(&mut self, steps: &[Step]) -> Result<(), GpuError> {
        for step in steps {
            match step {
                Step::Kernel(k) => self.kernel(*k)?,
                Step::Copy { src, dst } => self.cmds.push(Cmd::Copy {
                    src: *src,
                    dst: *dst,
                }),
                Step::Loop(l) => {
                    let trip = l.trip.eval(&self.env).map_err(|source| GpuError::Trip {
                        var: l.var.clone(),
                        source,
                    })?;
                    for it in 0..trip {
                        let t = if l.reverse { trip - 1 - it } else { it };
                        self.env.insert(l.var.clone(), t);
                        self.steps(&l.body)?;
                    }
                    self.env.insert(l.var.clone(), 0);
                }
                Step::While(w) => loop {
                    self.steps(&w.cond)?;
                    if !self.predicate(w.pred)? {
                        break;
                    }
                    self.steps(&w.body)?;
                },
                Step::If(i) => {
                    let branch = if self.predicate(i.pred)? {
                        &i.then
                    } else {
                        &i.other
                    };
                    self.steps(branch)?;
                }
            }
        }
        Ok(())
    }

    fn kernel(&mut self, k: KernelId) -> Result<(), GpuError> {
        let launch = self
            .launches
            .get(k.index())
            .ok_or_else(|| GpuError::Device(format!("{k} is not a kernel")))?;
        if launch.groups == 0 {
            return Ok(());
        }
        let align = u64::from(self.device.limits().min_uniform_buffer_offset_alignment).max(16);
        let offset = (self.params.len() as u64).div_ceil(align) * align;
        let offset = u32::try_from(offset)
            .map_err(|_| GpuError::Device("too many dispatches in one submit".into()))?;
        self.params.resize(offset as usize, 0);
        match &launch.params {
            Some(p) => self.params.extend_from_slice(p),
            None => {
                let shader = &self.wgsl.kernels[k.index()];
                let plan = self.plan;
                let word = |id: BufferId| -> Option<u64> {
                    plan.offsets
                        .get(id.index())
                        .copied()
                        .flatten()
                        .map(|b| b / 4)
                };
                let p = shader
                    .params_bytes_with(&self.env, &word)
                    .map_err(|source| GpuError::Launch { kernel: k, source })?;
                self.params.extend_from_slice(&p);
            }
        }
        if let Some(p) = self.profile.kernels.get_mut(k.index()) {
            p.dispatches += 1;
            p.workgroups += launch.groups;
            p.bytes_bound += launch.bound;
        }
        self.cmds.push(Cmd::Dispatch {
            kernel: k.index(),
            offset,
        });
        if self.cmds.len() >= MAX_SEGMENT {
            self.submit(&[])?;
        }
        Ok(())
    }

    /// Submits what was recorded and reads the one-word predicate `pred`.
    fn predicate(&mut self, pred: BufferId) -> Result<bool, GpuError> {
        let data = self.submit(&[(pred, 4)])?;
        let word = data
            .first()
            .and_then(|d| d.get(..4))
            .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        self.profile.transfers.control_bytes += 4;
        Ok(word != 0)
    }

    /// Records the segment into an encoder with the clears (first submit only), the
    /// `commits` copies and a read-back of each `reads` buffer's first bytes and of the
    /// error buffer; submits, waits, and returns the bytes read (error words checked).
    pub(crate) fn finish(
        &mut self,
        commits: &[(BufferId, BufferId)],
        reads: &[(BufferId, u64)],
    ) -> Result<Vec<Vec<u8>>, GpuError> {
        for &(src, dst) in commits {
            self.cmds.push(Cmd::Copy { src, dst });
        }
        self.submit(reads)
    }

    fn submit(&mut self, reads: &[(BufferId, u64)]) -> Result<Vec<Vec<u8>>, GpuError> {
        let device = self.device;
        let max = device.limits().max_buffer_size;
        let scope = device
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = device
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln run"),
            });
        if !self.submitted {
            encoder.clear_buffer(self.error, 0, None);
            encoder.clear_buffer(self.arena, 0, Some(self.plan.peak_scratch_bytes.max(4)));
            for &(id, bytes) in &self.clears {
                if let Some(b) = self.buffers.get(&id) {
                    encoder.clear_buffer(b, 0, Some(bytes));
                }
            }
            self.submitted = true;
        }
        let cmds = std::mem::take(&mut self.cmds);
        let params = std::mem::take(&mut self.params);
        let uniform = (!params.is_empty()).then(|| {
            let b = self
                .pool
                .take(&device.device, params.len() as u64, UNIFORM, max);
            device.queue.write_buffer(&b, 0, &params);
            b
        });
        // One bind group per kernel of the segment; the dispatch picks its params by offset.
        let mut groups: HashMap<usize, wgpu::BindGroup> = HashMap::new();
        if let Some(uniform) = &uniform {
            for c in &cmds {
                if let Cmd::Dispatch { kernel, .. } = c
                    && !groups.contains_key(kernel)
                {
                    groups.insert(*kernel, self.bind_group(*kernel, uniform)?);
                }
            }
        }
        let dispatches: Vec<usize> = cmds
            .iter()
            .filter_map(|c| match c {
                Cmd::Dispatch { kernel, .. } => Some(*kernel),
                Cmd::Copy { .. } => None,
            })
            .collect();
        let timer = device
            .timestamp_period()
            .filter(|_| self.timing)
            .and_then(|_| Timer::new(&device.device, dispatches.len()));
        let mut temps = Vec::new();
        let mut k = 0usize;
        let mut i = 0usize;
        while i < cmds.len() {
            match &cmds[i] {
                Cmd::Dispatch { .. } => {
                    let mut pass: Option<wgpu::ComputePass<'static>> = None;
                    while let Some(Cmd::Dispatch { kernel, offset }) = cmds.get(i) {
                        let launch = &self.launches[*kernel];
                        if timer.is_some() || pass.is_none() {
                            drop(pass.take());
                            pass = Some(
                                encoder
                                    .begin_compute_pass(&wgpu::ComputePassDescriptor {
                                        label: Some("kiln kernels"),
                                        timestamp_writes: timer.as_ref().and_then(|t| t.writes(k)),
                                    })
                                    .forget_lifetime(),
                            );
                        }
                        if let (Some(p), Some(bg)) = (pass.as_mut(), groups.get(kernel)) {
                            let [x, y, z] = launch.grid;
                            p.set_pipeline(&launch.pipeline.pipeline);
                            p.set_bind_group(0, bg, &[*offset]);
                            p.dispatch_workgroups(x, y, z);
                        }
                        k += 1;
                        i += 1;
                    }
                }
                Cmd::Copy { src, dst } => {
                    let bytes = self.bytes(*src);
                    let (s, so) = self.place(*src)?;
                    let (d, dof) = self.place(*dst)?;
                    if s == d {
                        // wgpu refuses a copy within one buffer: go through a temporary.
                        let t = self.pool.take(&device.device, bytes, STORAGE, max);
                        encoder.copy_buffer_to_buffer(s, so, &t, 0, bytes);
                        encoder.copy_buffer_to_buffer(&t, 0, d, dof, bytes);
                        temps.push(t);
                    } else {
                        encoder.copy_buffer_to_buffer(s, so, d, dof, bytes);
                    }
                    i += 1;
                }
            }
        }
        if let Some(t) = &timer {
            encoder.resolve_query_set(&t.queries, 0..2 * t.timed, &t.resolve, 0);
        }
        let error_bytes = ERROR_WORDS as u64 * 4;
        let mut staging = Vec::with_capacity(reads.len() + 2);
        let error_read = self.pool.take(&device.device, error_bytes, READBACK, max);
        encoder.copy_buffer_to_buffer(self.error, 0, &error_read, 0, error_bytes);
        staging.push((error_read, error_bytes));
        for &(id, bytes) in reads {
            let read = self.pool.take(&device.device, bytes, READBACK, max);
            let (src, offset) = self.place(id)?;
            encoder.copy_buffer_to_buffer(src, offset, &read, 0, bytes);
            staging.push((read, bytes));
        }
        if let Some(t) = &timer {
            let read = self.pool.take(&device.device, t.bytes(), READBACK, max);
            encoder.copy_buffer_to_buffer(&t.resolve, 0, &read, 0, t.bytes());
            staging.push((read, t.bytes()));
        }
        let list: Vec<(&wgpu::Buffer, u64)> = staging.iter().map(|(b, n)| (b, *n)).collect();
        let data = crate::device::submit_and_read(device, encoder, &list);
        drop(list);
        let scoped = crate::device::block_on(scope.pop());
        self.profile.transfers.control_bytes += params.len() as u64 + error_bytes;
        for (b, _) in staging {
            self.pool.give(b);
        }
        for t in temps {
            self.pool.give(t);
        }
        if let Some(u) = uniform {
            self.pool.give(u);
        }
        if let Some(e) = scoped {
            return Err(GpuError::Device(e.to_string()));
        }
        if let Some(e) = device.take_uncaptured().into_iter().next() {
            return Err(GpuError::Device(e));
        }
        let mut data = data?;
        if let (Some(period), Some(t)) = (device.timestamp_period(), &timer)
            && data.len() == reads.len() + 2
            && let Some(resolved) = data.pop()
        {
            let timed = dispatches.iter().take(t.timed as usize);
            for (kernel, ns) in timed.zip(durations(&resolved, period)) {
                if let Some(p) = self.profile.kernels.get_mut(*kernel) {
                    p.gpu_ns = Some(p.gpu_ns.unwrap_or(0) + ns);
                }
            }
        }
        let words: Vec<u32> = data
            .first()
            .map(|d| {
                d.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
            .unwrap_or_default();
        if words.get(ERROR_FLAG).copied().unwrap_or(0) != 0 {
            return Err(decode_error(self.wgsl, &words, self.lens));
        }
        Ok(data.into_iter().skip(1).collect())
    }

    fn bind_group(
        &self,
        kernel: usize,
        uniform: &wgpu::Buffer,
    ) -> Result<wgpu::BindGroup, GpuError> {
        let launch = &self.launches[kernel];
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: uniform,
                offset: 0,
                size: wgpu::BufferSize::new(launch.params_size),
            }),
        }];
        for &(binding, bound) in &launch.entries {
            let resource = match bound {
                Bound::Buffer(id, bytes) => {
                    let (buffer, offset) = self.place(id)?;
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset,
                        size: wgpu::BufferSize::new(bytes),
                    })
                }
                Bound::Arena => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: self.arena,
                    offset: 0,
                    size: wgpu::BufferSize::new(self.plan.peak_scratch_bytes.max(4)),
                }),
                Bound::Error => self.error.as_entire_binding(),
            };
            entries.push(wgpu::BindGroupEntry { binding, resource });
        }
        Ok(self
            .device
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("kiln kernel bindings"),
                layout: &launch.pipeline.layout,
                entries: &entries,
            }))
    }
}

/// The error a run's error words report.
pub(crate) fn decode_error(wgsl: &WgslProgram, words: &[u32], lens: &[usize]) -> GpuError {
    let word = |i: usize| words.get(i).copied().unwrap_or(0);
    let kernel = KernelId(word(ERROR_KERNEL));
    if word(ERROR_CODE) == ERROR_CODE_DIVISION {
        return GpuError::DivisionByZero { kernel };
    }
    let binding = word(ERROR_BINDING);
    let buffer = wgsl
        .kernels
        .get(kernel.index())
        .and_then(|s| match binding.checked_sub(PACKED_ERROR_BASE) {
            Some(k) => s.packed.get(k as usize).map(|p| p.buffer),
            None => s
                .bindings
                .iter()
                .find(|b| b.binding == binding)
                .map(|b| b.buffer),
        })
        .unwrap_or(BufferId(u32::MAX));
    GpuError::IndexOutOfBounds {
        kernel,
        buffer,
        index: i64::from(word(ERROR_INDEX) as i32),
        size: lens.get(buffer.index()).copied().unwrap_or(0),
    }
}
