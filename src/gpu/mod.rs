//! The device side: one wgpu device and queue, its pipelines, its buffer pool, and the recorder
//! that batches launches into command buffers.
//!
//! Launches are recorded into a pending command encoder and submitted together when the batch
//! is full, before a host write, or when a result is read back; nothing waits on the GPU except
//! a read-back or [`Gpu::synchronize`].

pub(crate) mod dispatch;
pub(crate) mod kernels;
pub(crate) mod pool;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use kernels::{Kernel, PARAMS_SLOT, PipelineCache, lock};
use pool::{BufferPool, DeviceBuffer};

/// Launches recorded before the batch is submitted (and parameter slots in the arena).
const BATCH_LAUNCHES: u64 = 256;

/// Submissions allowed in flight before a new one waits for the oldest: the back-pressure
/// that keeps a long loop of ops from queueing unbounded work (and memory) ahead of the device.
const MAX_IN_FLIGHT: usize = 8;

/// Idle bytes the buffer pool may keep.
const POOL_IDLE_BYTES: u64 = 512 << 20;

/// Bytes moved per staging step of an upload or read-back, so that staging memory stays
/// bounded however large a tensor is.
const TRANSFER_CHUNK: u64 = 64 << 20;

/// The smallest upload that goes through the context's own staging buffers.
const STAGED_UPLOAD_MIN: u64 = 1 << 20;

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
    /// The largest buffer this context allocates, in bytes (the adapter's `max_buffer_size`,
    /// or less if the options cap it); larger tensors are split into several buffers.
    pub max_buffer: u64,
    /// The largest storage binding, in bytes (never more than one buffer).
    pub max_binding: u64,
    /// Whose device this is.
    pub owner: DeviceOwner,
    pipelines: PipelineCache,
    pool: BufferPool,
    recorder: Mutex<Recorder>,
    upload_staging: Mutex<[UploadSlot; 2]>,
    health: Arc<Health>,
    readback_timeout: Duration,
}

/// What the device's callbacks report, read by every launch.
#[derive(Default)]
struct Health {
    lost: AtomicBool,
    lost_reason: Mutex<Option<String>>,
    error: Mutex<Option<String>>,
}

/// The pending command encoder and the parameter blocks its launches read.
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    launches: u64,
    arena: wgpu::Buffer,
    last_submission: Option<wgpu::SubmissionIndex>,
    in_flight: std::collections::VecDeque<wgpu::SubmissionIndex>,
}

/// What the device layer is told with its device and queue: the adapter's facts, whose the
/// device is, and two settings of the caller's.
pub(crate) struct DeviceFacts {
    /// The adapter's subgroup sizes, where kernels may use subgroups (`SUBGROUP` enabled).
    pub subgroup_sizes: Option<SubgroupSizes>,
    /// Whether the adapter is GPU hardware.
    pub hardware: bool,
    /// Whose device it is.
    pub owner: DeviceOwner,
    /// A cap on the size of one buffer below the device's `max_buffer_size`.
    pub max_buffer_bytes: Option<u64>,
    /// How long a read-back waits for the device.
    pub readback_timeout: Duration,
}

impl Gpu {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue, facts: DeviceFacts) -> Self {
        let DeviceFacts {
            subgroup_sizes,
            hardware,
            owner,
            max_buffer_bytes,
            readback_timeout,
        } = facts;
        let health = Arc::new(Health::default());
        if owner == DeviceOwner::Crate {
            let h = health.clone();
            device.set_device_lost_callback(move |reason, message| {
                h.lost.store(true, Ordering::SeqCst);
                if let Ok(mut r) = h.lost_reason.lock() {
                    *r = Some(format!("{reason:?}: {message}"));
                }
            });
            let h = health.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut slot) = h.error.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            }));
        }
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params arena"),
            size: BATCH_LAUNCHES * PARAMS_SLOT,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let limits = device.limits();
        let max_buffer = max_buffer_bytes
            .map_or(limits.max_buffer_size, |cap| {
                cap.min(limits.max_buffer_size)
            })
            .max(1024);
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(max_buffer)
            .min(u64::from(u32::MAX));
        Gpu {
            device,
            queue,
            limits,
            subgroups: subgroup_sizes.is_some(),
            subgroup_sizes,
            hardware,
            max_buffer,
            max_binding,
            owner,
            pipelines: PipelineCache::default(),
            pool: BufferPool::new(POOL_IDLE_BYTES),
            recorder: Mutex::new(Recorder {
                encoder: None,
                params: Vec::new(),
                launches: 0,
                arena,
                last_submission: None,
                in_flight: std::collections::VecDeque::new(),
            }),
            upload_staging: Mutex::new(Default::default()),
            health,
            readback_timeout,
        }
    }

    /// Runs `f`, and on the caller's device inside a validation error scope: an error it
    /// raises is kept for the next [`Gpu::check`] instead of reaching the caller's handler.
    /// (On wasm32 the scope's result cannot be waited for; it is dropped there.)
    fn scoped<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.owner == DeviceOwner::Crate {
            return f();
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop())
            && let Ok(mut slot) = self.health.error.lock()
        {
            slot.get_or_insert_with(|| e.to_string());
        }
        #[cfg(target_arch = "wasm32")]
        drop(scope);
        out
    }

    /// Whether `buffer` can be bound on this device as storage (it fails for a buffer of
    /// another device), tried on a one-binding bind group inside a validation error scope.
    pub fn check_own_buffer(&self, buffer: &wgpu::Buffer) -> std::result::Result<(), String> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("external buffer check"),
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }],
            });
        let _ = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("external buffer check"),
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(buffer.size().min(16)),
                }),
            }],
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(e.to_string());
        }
        #[cfg(target_arch = "wasm32")]
        drop(scope);
        Ok(())
    }

    /// Destroys the device and marks the context lost (for testing fault handling).
    pub fn destroy(&self) {
        self.health.lost.store(true, Ordering::SeqCst);
        if let Ok(mut r) = self.health.lost_reason.lock() {
            r.get_or_insert_with(|| "destroyed by Context::destroy_device".into());
        }
        self.device.destroy();
    }

    fn has_kept_error(&self) -> bool {
        self.health.error.lock().is_ok_and(|e| e.is_some())
    }

    /// Fails with the device-lost or captured GPU error, if one occurred.
    pub fn check(&self, op: &'static str) -> Result<()> {
        if self.health.lost.load(Ordering::SeqCst) {
            let reason = lock(&self.health.lost_reason)?
                .clone()
                .unwrap_or_else(|| "unknown reason".into());
            return Err(Error::DeviceLost(reason));
        }
        if let Some(message) = lock(&self.health.error)?.take() {
            return Err(Error::Gpu { op, message });
        }
        Ok(())
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

    /// Fails with [`Error::TooLarge`] if a request of `bytes` in all cannot fit: on a software
    /// adapter, whose device memory is host memory, more than the host has available. (A GPU
    /// reports no such figure; its allocations fail with `OutOfMemory` instead.)
    pub fn check_fits(&self, bytes: u64, op: &'static str) -> Result<()> {
        if self.hardware {
            return Ok(());
        }
        match host_available_bytes() {
            Some(limit) if bytes > limit => Err(Error::TooLarge {
                op,
                requested: bytes,
                limit,
                what: "available host memory (a software adapter's device memory)",
            }),
            _ => Ok(()),
        }
    }

    /// A pooled storage buffer of at least `bytes` bytes.
    pub fn alloc(&self, bytes: u64, op: &'static str) -> Result<DeviceBuffer> {
        self.check(op)?;
        self.pool
            .get(&self.device, bytes, STORAGE_USAGE, self.max_buffer, op)
    }

    /// A pooled buffer holding `data` (padded to whole vec4s).
    pub fn upload_new(&self, data: &[u8], op: &'static str) -> Result<DeviceBuffer> {
        let buffer = self.alloc(data.len() as u64, op)?;
        self.upload(buffer.raw(), data)?;
        Ok(buffer)
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
    pub fn trim_pool(&self) {
        self.pool.clear();
        if let Ok(mut slots) = self.upload_staging.lock() {
            *slots = Default::default();
        }
    }

    /// Writes `data` at the start of `buffer`. Recorded work is submitted first, so that the
    /// write cannot overtake a launch that still reads an earlier tenant of a pooled buffer.
    /// Each 64 MiB chunk is staged and submitted on its own and counts as a submission in
    /// flight, so a large upload holds a bounded amount of staging memory.
    ///
    /// Uploads of at least `STAGED_UPLOAD_MIN` bytes go through two staging buffers that the
    /// context keeps and maps again for each chunk (a fresh staging buffer per write, as
    /// `Queue::write_buffer` makes, costs the host a page fault per page); smaller ones through
    /// `write_buffer`.
    pub fn upload(&self, buffer: &wgpu::Buffer, data: &[u8]) -> Result<()> {
        const OP: &str = "upload";
        self.check(OP)?;
        if (data.len() as u64) < STAGED_UPLOAD_MIN || !data.len().is_multiple_of(4) {
            let mut rec = lock(&self.recorder)?;
            self.submit(&mut rec);
            for (i, chunk) in data.chunks(TRANSFER_CHUNK as usize).enumerate() {
                self.queue
                    .write_buffer(buffer, i as u64 * TRANSFER_CHUNK, chunk);
                let index = self.queue.submit(std::iter::empty());
                self.track(&mut rec, index);
            }
            return Ok(());
        }
        let mut slots = lock(&self.upload_staging)?;
        {
            let mut rec = lock(&self.recorder)?;
            self.submit(&mut rec);
        }
        for (i, chunk) in data.chunks(TRANSFER_CHUNK as usize).enumerate() {
            let slot = &mut slots[i % 2];
            self.upload_slot(slot, chunk.len() as u64)?;
            let staging = slot.buffer.as_ref().ok_or(Error::Gpu {
                op: OP,
                message: "no staging buffer".into(),
            })?;
            if let Err(e) = self.write_mapped(staging, slot.last_copy.clone(), chunk) {
                // A map may still be pending on it: the next upload makes a new one.
                *slot = UploadSlot::default();
                return Err(e);
            }
            let index = {
                let mut rec = lock(&self.recorder)?;
                rec.encoder(&self.device).copy_buffer_to_buffer(
                    staging,
                    0,
                    buffer,
                    i as u64 * TRANSFER_CHUNK,
                    chunk.len() as u64,
                );
                self.submit(&mut rec);
                rec.last_submission.clone()
            };
            slot.last_copy = index;
        }
        Ok(())
    }

    /// The slot's staging buffer, (re)made if it holds fewer than `bytes`.
    fn upload_slot(&self, slot: &mut UploadSlot, bytes: u64) -> Result<()> {
        let big_enough = slot.buffer.as_ref().is_some_and(|b| b.size() >= bytes);
        if !big_enough {
            let size = bytes
                .next_power_of_two()
                .clamp(STAGED_UPLOAD_MIN, TRANSFER_CHUNK)
                .max(bytes);
            let usage = wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC;
            slot.buffer = Some(pool::create_buffer(&self.device, size, usage, "upload")?);
            slot.last_copy = None;
        }
        Ok(())
    }

    /// Maps `staging` once its last copy (`last_copy`) has run, writes `data` at its start and
    /// unmaps it.
    fn write_mapped(
        &self,
        staging: &wgpu::Buffer,
        last_copy: Option<wgpu::SubmissionIndex>,
        data: &[u8],
    ) -> Result<()> {
        const OP: &str = "upload";
        let len = data.len() as u64;
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .slice(0..len)
            .map_async(wgpu::MapMode::Write, move |r| {
                let _ = tx.send(r);
            });
        match last_copy {
            Some(index) => self.wait(Some(index), OP)?,
            None => {
                let _ = self.device.poll(wgpu::PollType::Poll);
            }
        }
        let mapped = match rx.try_recv() {
            Ok(r) => r,
            // Not mapped by the first poll: wait for the device, as a read-back does.
            Err(_) => {
                self.wait(None, OP)?;
                rx.recv_timeout(self.readback_timeout)
                    .map_err(|_| Error::Timeout {
                        op: OP,
                        seconds: self.readback_timeout.as_secs_f64(),
                    })?
            }
        };
        mapped.map_err(|e| Error::Gpu {
            op: OP,
            message: e.to_string(),
        })?;
        {
            let mut view =
                staging
                    .slice(0..len)
                    .get_mapped_range_mut()
                    .map_err(|e| Error::Gpu {
                        op: OP,
                        message: e.to_string(),
                    })?;
            view.copy_from_slice(data);
        }
        staging.unmap();
        Ok(())
    }

    /// Records one launch of `kernel` over `groups` workgroups (laid out by [`dispatch::grid`]).
    pub fn launch(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        views: &[View<'_>],
        params: &[u8],
        groups: u64,
    ) -> Result<()> {
        self.check(kernel.entry)?;
        if groups == 0 {
            return Ok(());
        }
        let grid = dispatch::grid(groups, self.limits.max_compute_workgroups_per_dimension)?;
        self.scoped(|| self.record(kernel, constants, views, params, grid))?;
        self.check(kernel.entry)
    }

    fn record(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        views: &[View<'_>],
        params: &[u8],
        grid: [u32; 2],
    ) -> Result<()> {
        let pipeline = self.pipelines.get(&self.device, kernel, constants)?;
        let mut rec = lock(&self.recorder)?;
        if rec.launches == BATCH_LAUNCHES {
            self.submit(&mut rec);
        }
        let slot = rec.launches;
        rec.launches += 1;
        rec.params.resize((slot * PARAMS_SLOT) as usize, 0);
        rec.params.extend_from_slice(params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.arena,
                offset: 0,
                size: wgpu::BufferSize::new(PARAMS_SLOT),
            }),
        }];
        for (slot, view) in kernel.slots.iter().zip(views) {
            let binding = match *slot {
                kernels::Slot::Read(b) | kernels::Slot::ReadWrite(b) => b,
            };
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: view.buffer,
                    offset: view.offset,
                    size: wgpu::BufferSize::new(view.size),
                }),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry),
            layout: &pipeline.layout,
            entries: &entries,
        });
        let mut pass = rec
            .encoder(&self.device)
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.entry),
                timestamp_writes: None,
            });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[(slot * PARAMS_SLOT) as u32]);
        pass.dispatch_workgroups(grid[0], grid[1], 1);
        Ok(())
    }

    /// Records filling `buffer` with zeros.
    pub fn clear(&self, buffer: &wgpu::Buffer) -> Result<()> {
        self.check("zeros")?;
        lock(&self.recorder)?
            .encoder(&self.device)
            .clear_buffer(buffer, 0, None);
        Ok(())
    }

    /// Submits the recorded batch, if any, without waiting for it.
    pub fn flush(&self) -> Result<()> {
        let mut rec = lock(&self.recorder)?;
        self.submit(&mut rec);
        Ok(())
    }

    /// Submits recorded work and waits until the device has finished all of it.
    pub fn synchronize(&self) -> Result<()> {
        self.flush()?;
        let index = lock(&self.recorder)?.last_submission.clone();
        self.wait(index, "synchronize")?;
        self.check("synchronize")
    }

    fn submit(&self, rec: &mut Recorder) {
        let Some(encoder) = rec.encoder.take() else {
            return;
        };
        if !rec.params.is_empty() {
            self.queue.write_buffer(&rec.arena, 0, &rec.params);
        }
        let index = self.scoped(|| self.queue.submit([encoder.finish()]));
        rec.params.clear();
        rec.launches = 0;
        self.track(rec, index);
    }

    /// Records a submission as the latest and in flight, lets wgpu reclaim what finished
    /// submissions held, and waits for the oldest while too many are queued.
    fn track(&self, rec: &mut Recorder, index: wgpu::SubmissionIndex) {
        rec.last_submission = Some(index.clone());
        rec.in_flight.push_back(index);
        // Let wgpu reclaim what finished submissions held, and bound what is queued.
        let _ = self.device.poll(wgpu::PollType::Poll);
        while rec.in_flight.len() > MAX_IN_FLIGHT {
            if let Some(oldest) = rec.in_flight.pop_front() {
                // A failure here resurfaces at the next check or read-back.
                let _ = self.device.poll(wgpu::PollType::Wait {
                    submission_index: Some(oldest),
                    timeout: Some(self.readback_timeout),
                });
            }
        }
    }

    fn wait(&self, index: Option<wgpu::SubmissionIndex>, op: &'static str) -> Result<()> {
        let seconds = self.readback_timeout.as_secs_f64();
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: Some(self.readback_timeout),
            })
            .map(|_| ())
            .map_err(|e| match e {
                _ if self.health.lost.load(Ordering::SeqCst) => {
                    Error::DeviceLost("the device was lost while waiting".into())
                }
                // A submission that failed validation (its error kept by a scope) says why.
                _ if self.has_kept_error() => self.check(op).err().unwrap_or(Error::Gpu {
                    op,
                    message: e.to_string(),
                }),
                wgpu::PollError::Timeout => Error::Timeout { op, seconds },
                other => Error::Gpu {
                    op,
                    message: other.to_string(),
                },
            })
    }

    /// Copies `dst.len()` bytes at `offset` of `buffer` into `dst`, waiting for all work
    /// recorded so far. Large reads go through two pooled staging buffers of at most
    /// `TRANSFER_CHUNK` bytes in turn: the device copies one chunk while the host copies the
    /// other out, and staging memory stays bounded whatever the tensor's size.
    pub fn read_into(&self, buffer: &wgpu::Buffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        const OP: &str = "read-back";
        self.check(OP)?;
        let size = dst.len() as u64;
        if size == 0 {
            return Ok(());
        }
        let chunk = TRANSFER_CHUNK.min(size);
        let chunks = size.div_ceil(chunk);
        let staging_usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let mut staging = Vec::new();
        for _ in 0..chunks.min(2) {
            staging.push(
                self.pool
                    .get(&self.device, chunk, staging_usage, self.max_buffer, OP)?,
            );
        }
        let mut pending = Some(self.start_read(buffer, offset, chunk.min(size), &staging[0])?);
        for k in 0..chunks {
            let start = k * chunk;
            let len = chunk.min(size - start);
            let next = if k + 1 < chunks {
                let next_start = start + chunk;
                let next_len = chunk.min(size - next_start);
                Some(self.start_read(
                    buffer,
                    offset + next_start,
                    next_len,
                    &staging[((k + 1) % 2) as usize],
                )?)
            } else {
                None
            };
            let Some(read) = pending.take() else {
                break;
            };
            let buf = &staging[(k % 2) as usize];
            if let Err(e) =
                self.finish_read(read, buf, &mut dst[start as usize..(start + len) as usize])
            {
                // A map may still complete later: these staging buffers must not be reused.
                for s in staging {
                    s.discard();
                }
                return Err(e);
            }
            pending = next;
        }
        Ok(())
    }

    /// Records a copy of `len` bytes into `staging`, submits it and asks for the map.
    fn start_read(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        len: u64,
        staging: &DeviceBuffer,
    ) -> Result<PendingRead> {
        let index = {
            let mut rec = lock(&self.recorder)?;
            rec.encoder(&self.device)
                .copy_buffer_to_buffer(buffer, offset, staging.raw(), 0, len);
            self.submit(&mut rec);
            rec.last_submission.clone()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .raw()
            .slice(0..len)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        Ok(PendingRead { index, len, rx })
    }

    /// Waits for a started read and copies it out of its staging buffer into `dst`.
    fn finish_read(&self, read: PendingRead, staging: &DeviceBuffer, dst: &mut [u8]) -> Result<()> {
        const OP: &str = "read-back";
        self.wait(read.index, OP)?;
        self.check(OP)?;
        match read.rx.recv_timeout(self.readback_timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Error::Gpu {
                    op: OP,
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::Timeout {
                    op: OP,
                    seconds: self.readback_timeout.as_secs_f64(),
                });
            }
        }
        {
            let view = staging
                .raw()
                .slice(0..read.len)
                .get_mapped_range()
                .map_err(|e| Error::Gpu {
                    op: OP,
                    message: e.to_string(),
                })?;
            dst.copy_from_slice(&view);
        }
        staging.raw().unmap();
        Ok(())
    }
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
fn host_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One of the two staging buffers of large uploads, and the submission that last copied out of
/// it (which must finish before it is mapped again).
#[derive(Default)]
struct UploadSlot {
    buffer: Option<wgpu::Buffer>,
    last_copy: Option<wgpu::SubmissionIndex>,
}

/// A read-back chunk in flight: its submission and the map callback's answer.
struct PendingRead {
    index: Option<wgpu::SubmissionIndex>,
    len: u64,
    rx: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

impl Recorder {
    /// The pending encoder, started on first use.
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            })
        })
    }
}
