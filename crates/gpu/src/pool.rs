//! A pool of device buffers reused across runs: buffers are grouped by usage and by size
//! rounded up to a power of two (at least 256 bytes), so repeated runs under the same or
//! similar bindings allocate nothing.

use std::collections::HashMap;

/// Free buffers by `(usage bits, capacity)`.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: HashMap<(u32, u64), Vec<wgpu::Buffer>>,
    created: usize,
}

/// The capacity class of a request of `bytes` bytes.
pub(crate) fn size_class(bytes: u64) -> u64 {
    bytes.max(256).checked_next_power_of_two().unwrap_or(bytes)
}

impl BufferPool {
    /// A buffer of at least `bytes` bytes with `usage`, reused when one is free.
    pub(crate) fn take(
        &mut self,
        device: &wgpu::Device,
        bytes: u64,
        usage: wgpu::BufferUsages,
        max: u64,
    ) -> wgpu::Buffer {
        let mut cap = size_class(bytes);
        if cap > max {
            cap = bytes.max(4).div_ceil(4) * 4;
        }
        if let Some(b) = self.free.get_mut(&(usage.bits(), cap)).and_then(Vec::pop) {
            return b;
        }
        self.created += 1;
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln pooled buffer"),
            size: cap,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&mut self, buffer: wgpu::Buffer) {
        self.free
            .entry((buffer.usage().bits(), buffer.size()))
            .or_default()
            .push(buffer);
    }

    /// Buffers created so far (a measure of reuse).
    pub(crate) fn created(&self) -> usize {
        self.created
    }
}
