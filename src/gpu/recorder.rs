//! The recorder: launches recorded into one pending command encoder with their parameter
//! blocks in a shared arena, submitted in batches, with a bound on submissions in flight.

use super::{Gpu, GpuHolder, View};
use crate::error::{Error, Result};
use crate::gpu::pipelines::{self, Kernel, PARAMS_SLOT, lock};
use crate::layout::{self, DType};

/// Launches recorded before the batch is submitted (and parameter slots in the arena).
const BATCH_LAUNCHES: u64 = 256;

/// Submissions allowed in flight before a new one waits for the oldest: the back-pressure
/// that keeps a long loop of ops from queueing unbounded work (and memory) ahead of the device.
const MAX_IN_FLIGHT: usize = 8;

/// The pending command encoder and the parameter blocks its launches read.
pub(super) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    launches: u64,
    arena: wgpu::Buffer,
    pub last_submission: Option<wgpu::SubmissionIndex>,
    in_flight: std::collections::VecDeque<wgpu::SubmissionIndex>,
}

impl Recorder {
    pub fn new(arena: wgpu::Buffer) -> Recorder {
        Recorder {
            encoder: None,
            params: Vec::new(),
            launches: 0,
            arena,
            last_submission: None,
            in_flight: std::collections::VecDeque::new(),
        }
    }

    /// The uniform buffer that holds a batch's parameter blocks, one slot per launch.
    pub fn arena(device: &wgpu::Device) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params arena"),
            size: BATCH_LAUNCHES * PARAMS_SLOT,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// The pending encoder, started on first use.
    pub fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            })
        })
    }
}

impl Gpu {
    /// Records one launch of `kernel` over `groups` workgroups (laid out by [`layout::grid`]).
    pub fn launch(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        views: &[View<'_>],
        params: &[u8],
        groups: u64,
    ) -> Result<()> {
        self.launch_stored(kernel, DType::F32, constants, views, params, groups)
    }

    /// [`Gpu::launch`] of a kernel built for tensors stored as `storage` (a family with half
    /// storage: its root's `//! storage` line).
    pub fn launch_stored(
        &self,
        kernel: &Kernel,
        storage: DType,
        constants: &[(&'static str, f64)],
        views: &[View<'_>],
        params: &[u8],
        groups: u64,
    ) -> Result<()> {
        self.check(kernel.entry)?;
        if groups == 0 {
            return Ok(());
        }
        writable_aliasing(kernel, views)?;
        let grid = layout::grid(groups, self.limits.max_compute_workgroups_per_dimension)?;
        self.scoped(|| self.record(kernel, storage, constants, views, params, grid))?;
        self.check(kernel.entry)
    }

    fn record(
        &self,
        kernel: &Kernel,
        storage: DType,
        constants: &[(&'static str, f64)],
        views: &[View<'_>],
        params: &[u8],
        grid: [u32; 2],
    ) -> Result<()> {
        let pipeline =
            self.pipelines
                .get(&self.device, &self.scopes, kernel, storage, constants)?;
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
                pipelines::Slot::Read(b) | pipelines::Slot::ReadWrite(b) => b,
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

    /// [`Gpu::synchronize`] without blocking. Natively a helper thread (holding `holder`)
    /// waits on the device while the future is pending. In a browser the queue's
    /// work-done promise is awaited, then every error scope of the crate's work since the
    /// last settle: a validation or out-of-memory error among them is this call's `Err`.
    pub async fn synchronize_async<H: GpuHolder>(&self, holder: &H) -> Result<()> {
        const OP: &str = "synchronize";
        self.check(OP)?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (tx, rx) = futures_channel::oneshot::channel();
            let holder = holder.clone();
            std::thread::Builder::new()
                .name("gpu-activations synchronize".into())
                .spawn(move || {
                    let result = match holder.held() {
                        Some(gpu) => gpu.synchronize(),
                        None => Ok(()),
                    };
                    let _ = tx.send(result);
                })
                .map_err(|e| Error::Gpu {
                    op: OP,
                    message: format!("could not start the helper thread: {e}"),
                })?;
            rx.await.map_err(|_| Error::Gpu {
                op: OP,
                message: "the helper thread ended without an answer".into(),
            })?
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = holder;
            self.flush()?;
            let (tx, rx) = futures_channel::oneshot::channel();
            self.queue.on_submitted_work_done(move || {
                let _ = tx.send(());
            });
            rx.await.map_err(|_| Error::Gpu {
                op: OP,
                message: "the queue's work-done callback was dropped".into(),
            })?;
            self.scopes.settle().await?;
            self.check(OP)
        }
    }

    pub(super) fn submit(&self, rec: &mut Recorder) {
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
    pub(super) fn track(&self, rec: &mut Recorder, index: wgpu::SubmissionIndex) {
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

    pub(super) fn wait(
        &self,
        index: Option<wgpu::SubmissionIndex>,
        op: &'static str,
    ) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: Some(self.readback_timeout),
            })
            .map(|_| ())
            .map_err(|e| self.wait_error(e, op))
    }

    /// The typed error for a wait on the device that failed.
    pub(super) fn wait_error(&self, e: wgpu::PollError, op: &'static str) -> Error {
        let seconds = self.readback_timeout.as_secs_f64();
        match e {
            _ if self.is_lost() => Error::DeviceLost("the device was lost while waiting".into()),
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
        }
    }
}

/// Refuses a launch that binds one buffer range to two storage slots where either is writable:
/// WebGPU forbids it (a browser's validation fails the whole submission) while wgpu's native
/// back ends let it pass, so it is caught here, natively too.
fn writable_aliasing(kernel: &Kernel, views: &[View<'_>]) -> Result<()> {
    let bound: Vec<(&pipelines::Slot, &View<'_>)> = kernel.slots.iter().zip(views).collect();
    for (i, (slot_a, a)) in bound.iter().enumerate() {
        for (slot_b, b) in &bound[i + 1..] {
            let writable = matches!(slot_a, pipelines::Slot::ReadWrite(_))
                || matches!(slot_b, pipelines::Slot::ReadWrite(_));
            if writable && a.overlaps(b) {
                return Err(Error::Gpu {
                    op: kernel.entry,
                    message: format!(
                        "{}::{} binds one buffer range to two storage slots, one of them \
                         writable, which WebGPU forbids",
                        kernel.module.name, kernel.entry
                    ),
                });
            }
        }
    }
    Ok(())
}
