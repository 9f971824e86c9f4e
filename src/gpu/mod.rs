//! The device layer: one wgpu device and queue with the adapter's facts, its pipelines, its
//! buffer pool, and the recorder that batches launches into command buffers. It knows nothing
//! of the context's options or of any op.
//!
//! Launches are recorded into a pending command encoder and submitted together when the batch
//! is full, before a host write, or when a result is read back; nothing waits on the GPU except
//! a read-back or [`Gpu::synchronize`]. One responsibility per file: `health` (device loss and
//! errors), `recorder` (launches and submissions), `transfer` (uploads and read-backs), `memory`
//! (what a software adapter may allocate), `pipelines` (shader modules and pipelines), `pool` (buffers).

mod health;
pub(crate) mod memory;
pub(crate) mod pipelines;
pub(crate) mod pool;
mod recorder;
mod transfer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use health::Health;
use pipelines::PipelineCache;
use pool::{BufferPool, DeviceBuffer};
use recorder::Recorder;
use transfer::UploadSlot;

/// Idle bytes the buffer pool may keep.
const POOL_IDLE_BYTES: u64 = 512 << 20;

/// The answers of popped error scopes. Natively a scope's answer is ready when it is popped,
/// and [`PendingScopes::pop`] returns its error at once. In a browser (wasm32) it resolves
/// only through the event loop: the scope is kept, with what its error will mean, and the next
/// asynchronous synchronize or read-back awaits it ([`PendingScopes::settle`]) and returns the
/// first error as the `Result` of that call.
#[derive(Default)]
pub(crate) struct PendingScopes {
    #[cfg(target_arch = "wasm32")]
    kept: std::cell::RefCell<Vec<PendingScope>>,
}

/// A popped scope whose answer is still to come, and how its error becomes the crate's.
#[cfg(target_arch = "wasm32")]
struct PendingScope {
    answer: std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>,
    to_error: Box<dyn FnOnce(wgpu::Error) -> Error>,
}

impl PendingScopes {
    /// Pops `scope`: natively its error now, as `to_error` makes it; in a browser `Ok(())`,
    /// the answer kept for [`PendingScopes::settle`].
    pub fn pop(
        &self,
        scope: wgpu::ErrorScopeGuard,
        to_error: impl FnOnce(wgpu::Error) -> Error + 'static,
    ) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            match pollster::block_on(scope.pop()) {
                Some(e) => Err(to_error(e)),
                None => Ok(()),
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            self.kept.borrow_mut().push(PendingScope {
                answer: Box::pin(scope.pop()),
                to_error: Box::new(to_error),
            });
            Ok(())
        }
    }

    /// Awaits every kept scope and returns the first error among them (always `Ok` natively,
    /// where none is kept).
    pub async fn settle(&self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let kept = std::mem::take(&mut *self.kept.borrow_mut());
            let mut first = None;
            for scope in kept {
                if let Some(e) = scope.answer.await {
                    first.get_or_insert_with(|| (scope.to_error)(e));
                }
            }
            if let Some(e) = first {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// What keeps a device layer alive and reaches it (a context): a read-back's helper thread
/// holds a clone while it waits on the device.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) trait GpuHolder: Clone + Send + Sync + 'static {
    /// The device layer, if there is one.
    fn held(&self) -> Option<&Gpu>;
}

/// What keeps a device layer alive and reaches it (a context; in a browser nothing is sent
/// to another thread, and nothing waits on the device).
#[cfg(target_arch = "wasm32")]
pub(crate) trait GpuHolder: Clone + 'static {
    /// The device layer, if there is one.
    #[allow(dead_code)]
    fn held(&self) -> Option<&Gpu>;
}

/// Usage of every tensor buffer.
pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A slice of a device buffer bound to one storage slot of a launch.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl View<'_> {
    /// Whether the two views share bytes of one buffer. WebGPU forbids two storage bindings of
    /// one dispatch to overlap where either is writable (wgpu's native back ends let it pass);
    /// a launch that would is refused (`Gpu::launch`), and a kernel that may write over its
    /// input (the cross-entropies' gradient over the logits) binds the buffer once, its
    /// `IN_PLACE` constant set, and a small unwritten buffer in the other slot.
    pub fn overlaps(&self, other: &View<'_>) -> bool {
        self.buffer == other.buffer
            && self.offset < other.offset + other.size
            && other.offset < self.offset + self.size
    }
}

/// Who owns the device, and so who handles its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceOwner {
    /// The crate opened it: its device-lost and uncaptured-error callbacks are the crate's.
    Crate,
    /// The caller's ([`crate::Context::from_wgpu`]): their callbacks stay as they are, and the
    /// crate's work runs inside validation error scopes whose errors it keeps for itself.
    Caller,
}

/// The least and the most invocations a subgroup of the adapter has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubgroupSizes {
    pub min: u32,
    pub max: u32,
}

/// Loop iterations left to a kernel's short loops (workgroup reductions, merges of partial
/// results) beside the main loops that [`Gpu::loops_fit`] is asked about.
const LOOP_MARGIN: usize = 256;

/// Device state shared by every clone of a GPU `Context`.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    /// Whether kernels may use subgroup operations.
    pub subgroups: bool,
    /// The adapter's subgroup sizes, where kernels may use subgroups.
    pub subgroup_sizes: Option<SubgroupSizes>,
    /// Whether the adapter is GPU hardware (not a software rasteriser on the CPU).
    pub hardware: bool,
    /// The most loop iterations one invocation runs in all, where the adapter stops an
    /// invocation there (llvmpipe: 65,535, silently); kernels whose invocations would loop
    /// longer are split or refused.
    pub loop_limit: Option<usize>,
    /// The largest buffer this context allocates, in bytes (the adapter's `max_buffer_size`,
    /// or less if the options cap it); larger tensors are split into several buffers.
    pub max_buffer: u64,
    /// The largest storage binding, in bytes (never more than one buffer).
    pub max_binding: u64,
    /// Whose device this is.
    pub owner: DeviceOwner,
    pipelines: PipelineCache,
    pool: BufferPool,
    /// Error scopes whose answers are still to come (in a browser).
    pub(crate) scopes: PendingScopes,
    recorder: Mutex<Recorder>,
    upload_staging: Mutex<[UploadSlot; 2]>,
    health: Arc<Health>,
    readback_timeout: Duration,
}

/// What the device layer is told with its device and queue: the adapter's facts, whose the
/// device is, and two settings of the caller's.
pub(crate) struct DeviceFacts {
    /// The adapter's subgroup sizes, where kernels may use subgroups (`SUBGROUP` enabled).
    pub subgroup_sizes: Option<SubgroupSizes>,
    /// Whether the adapter is GPU hardware.
    pub hardware: bool,
    /// The adapter's limit on one invocation's loop iterations, if it has one.
    pub loop_limit: Option<usize>,
    /// Whose device it is.
    pub owner: DeviceOwner,
    /// A cap on the size of one buffer below the device's `max_buffer_size`.
    pub max_buffer_bytes: Option<u64>,
    /// A cap on the size of one storage binding below the device's limit.
    pub max_binding_bytes: Option<u64>,
    /// How long a read-back waits for the device.
    pub readback_timeout: Duration,
}
impl Gpu {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue, facts: DeviceFacts) -> Self {
        let DeviceFacts {
            subgroup_sizes,
            hardware,
            loop_limit,
            owner,
            max_buffer_bytes,
            max_binding_bytes,
            readback_timeout,
        } = facts;
        let health = Health::watch(&device, owner);
        let arena = Recorder::arena(&device);
        let limits = device.limits();
        let max_buffer = max_buffer_bytes
            .map_or(limits.max_buffer_size, |cap| {
                cap.min(limits.max_buffer_size)
            })
            .max(1024);
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(max_binding_bytes.unwrap_or(u64::MAX).max(1024))
            .min(max_buffer)
            .min(u64::from(u32::MAX));
        Gpu {
            device,
            queue,
            limits,
            subgroups: subgroup_sizes.is_some(),
            subgroup_sizes,
            hardware,
            loop_limit,
            max_buffer,
            max_binding,
            owner,
            pipelines: PipelineCache::default(),
            pool: BufferPool::new(POOL_IDLE_BYTES),
            scopes: PendingScopes::default(),
            recorder: Mutex::new(Recorder::new(arena)),
            upload_staging: Mutex::new(Default::default()),
            health,
            readback_timeout,
        }
    }

    /// The largest power-of-two workgroup size the device runs (the lesser of its invocation
    /// and x-size limits); kernels that prefer 256 use this where the device offers less.
    pub fn workgroup_cap(&self) -> u32 {
        let limit = self
            .limits
            .max_compute_invocations_per_workgroup
            .min(self.limits.max_compute_workgroup_size_x)
            .max(1);
        1 << (31 - limit.leading_zeros())
    }

    /// Whether one invocation may run `iterations` iterations of its main loops (and the short
    /// ones every kernel has besides) on this adapter.
    pub fn loops_fit(&self, iterations: usize) -> bool {
        self.loop_limit
            .is_none_or(|limit| iterations + LOOP_MARGIN <= limit)
    }

    /// `Err(TooLarge)` when one invocation of `op` would run `iterations` loop iterations on
    /// an adapter that stops it sooner (`what`: the work that is too long).
    pub fn check_loop_limit(
        &self,
        op: &'static str,
        iterations: usize,
        what: &'static str,
    ) -> Result<()> {
        match self.loop_limit {
            Some(limit) if !self.loops_fit(iterations) => Err(Error::TooLarge {
                op,
                requested: iterations as u64,
                limit: (limit - LOOP_MARGIN) as u64,
                unit: crate::Unit::LoopIterations,
                what,
            }),
            _ => Ok(()),
        }
    }

    /// A pooled storage buffer of at least `bytes` bytes.
    pub fn alloc(&self, bytes: u64, op: &'static str) -> Result<DeviceBuffer> {
        self.check(op)?;
        self.pool.get(
            &self.device,
            &self.scopes,
            bytes,
            STORAGE_USAGE,
            self.max_buffer,
            op,
        )
    }

    /// Bytes idle in the buffer pool and held by the upload staging buffers.
    pub fn pool_idle_bytes(&self) -> u64 {
        let staging: u64 = self.upload_staging.lock().map_or(0, |slots| {
            slots
                .iter()
                .filter_map(|s| s.buffer.as_ref().map(wgpu::Buffer::size))
                .sum()
        });
        self.pool.idle_bytes() + staging
    }

    /// Releases the idle buffers of the pool and the upload staging buffers (dropped, not
    /// destroyed: a copy still in flight keeps its buffer alive until it finishes).
    /// The pool's bytes, now and at their peak (see [`crate::Context::device_bytes`]).
    pub fn device_bytes(&self) -> (u64, u64) {
        self.pool.device_bytes()
    }

    /// Starts the pool's peak afresh.
    pub fn reset_peak_device_bytes(&self) {
        self.pool.reset_peak();
    }

    /// Every pipeline built on this device so far.
    pub fn pipelines_built(&self) -> Result<Vec<pipelines::PipelineRecord>> {
        self.pipelines.built()
    }

    pub fn trim_pool(&self) {
        self.pool.clear();
        if let Ok(mut slots) = self.upload_staging.lock() {
            *slots = Default::default();
        }
    }
}
