//! A bounded pool of device buffers, so that a loop of ops allocates nothing after warm-up.
//!
//! Policy: a request is rounded up to a size class (powers of two up to 1 MiB, then steps of
//! 1/16 of the next power of two, so at most ~6 % is wasted); a dropped [`DeviceBuffer`] goes
//! back to the free list of its class unless the pool already holds `max_idle_bytes` of idle
//! buffers, in which case the oldest idle buffers are released first. Reusing a buffer that
//! queued work still reads is safe because every use goes through the one queue in order
//! (see `Gpu::upload`, which flushes recorded work before writing). Buffers leaving the pool
//! are dropped, never `destroy()`ed: recorded work may still hold them, and wgpu frees a
//! dropped buffer once the last submission using it has completed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::PendingScopes;
use crate::error::{Error, Result};
use crate::layout;

/// Smallest buffer the pool hands out; also keeps every size a multiple of 16 bytes (a vec4).
const MIN_CAPACITY: u64 = 256;

/// A device buffer on loan from the pool; it returns there when dropped.
pub(crate) struct DeviceBuffer {
    buffer: wgpu::Buffer,
    capacity: u64,
    usage: wgpu::BufferUsages,
    pool: Arc<Mutex<PoolState>>,
    /// False once the buffer must not be reused (e.g. a map left pending by a timeout).
    reusable: bool,
}

impl DeviceBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// A view of the first `elems` f32 values (rounded up to whole vec4s; at least one).
    pub fn view(&self, elems: usize) -> super::View<'_> {
        self.view_at(0, elems)
    }

    /// A view of `elems` f32 values from element `start` (rounded up to whole vec4s, within
    /// the buffer).
    pub fn view_at(&self, start: usize, elems: usize) -> super::View<'_> {
        let offset = layout::bytes(start);
        super::View {
            buffer: &self.buffer,
            offset,
            size: layout::storage_bytes(elems).min(self.capacity - offset),
        }
    }

    /// Releases the buffer instead of returning it to the pool.
    pub fn discard(mut self) {
        self.reusable = false;
    }
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("capacity", &self.capacity)
            .field("usage", &self.usage)
            .finish()
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.pool.lock() {
            state.lent_bytes = state.lent_bytes.saturating_sub(self.capacity);
            if self.reusable {
                state.give_back(self.buffer.clone(), self.capacity, self.usage);
            }
        }
    }
}

struct PoolState {
    free: HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>,
    /// Idle buffers in the order they were returned, for releasing the oldest first.
    order: VecDeque<(u64, wgpu::BufferUsages)>,
    idle_bytes: u64,
    max_idle_bytes: u64,
    /// Bytes of the buffers out on loan.
    lent_bytes: u64,
    /// The most bytes lent and idle together since the last [`BufferPool::reset_peak`].
    peak_bytes: u64,
}

impl PoolState {
    fn give_back(&mut self, buffer: wgpu::Buffer, capacity: u64, usage: wgpu::BufferUsages) {
        if capacity > self.max_idle_bytes {
            return;
        }
        while self.idle_bytes + capacity > self.max_idle_bytes {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.free.get_mut(&key).and_then(|v| {
                if v.is_empty() {
                    None
                } else {
                    Some(v.remove(0))
                }
            }) {
                self.idle_bytes -= key.0;
                drop(old);
            }
        }
        self.free.entry((capacity, usage)).or_default().push(buffer);
        self.order.push_back((capacity, usage));
        self.idle_bytes += capacity;
    }

    fn take(&mut self, capacity: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        let buffer = self.free.get_mut(&(capacity, usage))?.pop()?;
        self.idle_bytes -= capacity;
        if let Some(i) = self.order.iter().rposition(|k| *k == (capacity, usage)) {
            self.order.remove(i);
        }
        Some(buffer)
    }
}

/// The pool itself: hands out [`DeviceBuffer`]s by size class and usage.
pub(crate) struct BufferPool {
    state: Arc<Mutex<PoolState>>,
}

impl BufferPool {
    pub fn new(max_idle_bytes: u64) -> Self {
        BufferPool {
            state: Arc::new(Mutex::new(PoolState {
                free: HashMap::new(),
                order: VecDeque::new(),
                idle_bytes: 0,
                max_idle_bytes,
                lent_bytes: 0,
                peak_bytes: 0,
            })),
        }
    }

    /// A buffer of at least `bytes` bytes with `usage`, reused when one is idle.
    pub fn get(
        &self,
        device: &wgpu::Device,
        scopes: &PendingScopes,
        bytes: u64,
        usage: wgpu::BufferUsages,
        max_buffer_size: u64,
        op: &'static str,
    ) -> Result<DeviceBuffer> {
        let capacity = size_class(bytes, max_buffer_size);
        if capacity > max_buffer_size {
            return Err(Error::TooLarge {
                op,
                requested: bytes,
                limit: max_buffer_size,
                unit: crate::Unit::Bytes,
                what: "max_buffer_size",
            });
        }
        let reused = self.lock()?.take(capacity, usage);
        let buffer = match reused {
            Some(b) => b,
            None => create_buffer(device, scopes, capacity, usage, op)?,
        };
        {
            let mut state = self.lock()?;
            state.lent_bytes += capacity;
            state.peak_bytes = state.peak_bytes.max(state.lent_bytes + state.idle_bytes);
        }
        Ok(DeviceBuffer {
            buffer,
            capacity,
            usage,
            pool: self.state.clone(),
            reusable: true,
        })
    }

    /// Bytes held idle in the pool.
    pub fn idle_bytes(&self) -> u64 {
        self.state.lock().map(|s| s.idle_bytes).unwrap_or(0)
    }

    /// Bytes of the pool's buffers, out on loan and idle: `(now, the most since the last
    /// reset)`.
    pub fn device_bytes(&self) -> (u64, u64) {
        self.state
            .lock()
            .map_or((0, 0), |s| (s.lent_bytes + s.idle_bytes, s.peak_bytes))
    }

    /// Starts the peak of [`BufferPool::device_bytes`] afresh from the bytes held now.
    pub fn reset_peak(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.peak_bytes = s.lent_bytes + s.idle_bytes;
        }
    }

    /// Releases every idle buffer.
    pub fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.free.clear();
            s.order.clear();
            s.idle_bytes = 0;
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, PoolState>> {
        super::pipelines::lock(&self.state)
    }
}

/// The capacity a request of `bytes` is rounded up to (never above `max` unless `bytes` is).
pub(crate) fn size_class(bytes: u64, max: u64) -> u64 {
    let bytes = bytes.max(MIN_CAPACITY);
    let class = if bytes <= 1 << 20 {
        bytes.next_power_of_two()
    } else {
        let step = bytes.next_power_of_two() / 16;
        bytes.div_ceil(step) * step
    };
    if class > max {
        bytes.div_ceil(16) * 16
    } else {
        class
    }
}

/// A new buffer of `size` bytes, or [`Error::OutOfMemory`] naming `op` if the device has no
/// room for it (in a browser, from the next asynchronous synchronize or read-back).
pub(crate) fn create_buffer(
    device: &wgpu::Device,
    scopes: &PendingScopes,
    size: u64,
    usage: wgpu::BufferUsages,
    op: &'static str,
) -> Result<wgpu::Buffer> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(op),
        size,
        usage,
        mapped_at_creation: false,
    });
    scopes.pop(scope, move |_| Error::OutOfMemory {
        op,
        bytes: size,
        memory: "device",
    })?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_a_sixteenth_above_one_mebibyte() {
        assert_eq!(size_class(1, u64::MAX), 256);
        assert_eq!(size_class(257, u64::MAX), 512);
        assert_eq!(size_class(1 << 20, u64::MAX), 1 << 20);
        assert_eq!(size_class((1 << 20) + 1, u64::MAX), (1 << 20) + (1 << 17));
        let big = 1_200_000_000;
        let c = size_class(big, u64::MAX);
        assert!(c >= big && (c - big) as f64 / (big as f64) < 1.0 / 16.0);
        // Near the device's limit the class falls back to the request rounded to 16 bytes.
        assert_eq!(size_class(1000, 1000), 1008);
    }
}
