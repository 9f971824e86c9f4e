//! Uploads and read-backs: host data to a device buffer and back, in bounded chunks, through
//! staging buffers the context keeps (uploads) or borrows from the pool (read-backs).

use super::pool::{self, DeviceBuffer};
use super::{Gpu, GpuHolder};
use crate::error::{Error, Result};
use crate::gpu::pipelines::lock;

/// Bytes moved per staging step of an upload or read-back, so that staging memory stays
/// bounded however large a tensor is.
const TRANSFER_CHUNK: u64 = 64 << 20;

/// The smallest upload that goes through the context's own staging buffers.
const STAGED_UPLOAD_MIN: u64 = 1 << 20;

/// A staging buffer of an async read-back: released rather than pooled unless its read
/// finished ([`Abandonable::finish`]), since a future dropped half-way may leave a map pending
/// on it.
struct Abandonable(Option<DeviceBuffer>);

impl Abandonable {
    /// The read is done and the buffer unmapped: it may go back to the pool.
    fn finish(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Abandonable {
    fn drop(&mut self) {
        if let Some(buffer) = self.0.take() {
            buffer.discard();
        }
    }
}

/// One of the two staging buffers of large uploads, and the submission that last copied out of
/// it (which must finish before it is mapped again).
#[derive(Default)]
pub(super) struct UploadSlot {
    pub buffer: Option<wgpu::Buffer>,
    last_copy: Option<wgpu::SubmissionIndex>,
}

/// The map callback's answer.
type MapAnswer = std::result::Result<(), wgpu::BufferAsyncError>;

/// A read-back chunk in flight: its submission and the map callback's answer, which a
/// blocking read takes after polling the device and an async one awaits.
struct PendingRead {
    index: Option<wgpu::SubmissionIndex>,
    len: u64,
    rx: futures_channel::oneshot::Receiver<MapAnswer>,
}

impl Gpu {
    /// A pooled buffer holding `data` (padded to whole vec4s).
    pub fn upload_new(&self, data: &[u8], op: &'static str) -> Result<DeviceBuffer> {
        let buffer = self.alloc(data.len() as u64, op)?;
        self.upload(buffer.raw(), data)?;
        Ok(buffer)
    }

    /// Writes `data` at the start of `buffer`. Recorded work is submitted first, so that the
    /// write cannot overtake a launch that still reads an earlier tenant of a pooled buffer.
    /// Each 64 MiB chunk is staged and submitted on its own and counts as a submission in
    /// flight, so a large upload holds a bounded amount of staging memory.
    ///
    /// Uploads of at least `STAGED_UPLOAD_MIN` bytes go through two staging buffers that the
    /// context keeps and maps again for each chunk (a fresh staging buffer per write, as
    /// `Queue::write_buffer` makes, costs the host a page fault per page); smaller ones through
    /// `write_buffer`, and so do all of them in a browser, where a map cannot be waited for.
    pub fn upload(&self, buffer: &wgpu::Buffer, data: &[u8]) -> Result<()> {
        const OP: &str = "upload";
        self.check(OP)?;
        let small = (data.len() as u64) < STAGED_UPLOAD_MIN || !data.len().is_multiple_of(4);
        if small || cfg!(target_arch = "wasm32") {
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
            slot.buffer = Some(pool::create_buffer(
                &self.device,
                &self.scopes,
                size,
                usage,
                "upload",
            )?);
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
            staging.push(self.pool.get(
                &self.device,
                &self.scopes,
                chunk,
                staging_usage,
                self.max_buffer,
                OP,
            )?);
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
        let (tx, rx) = futures_channel::oneshot::channel();
        staging
            .raw()
            .slice(0..len)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        Ok(PendingRead { index, len, rx })
    }

    /// Waits for a started read and copies it out of its staging buffer into `dst`.
    fn finish_read(
        &self,
        mut read: PendingRead,
        staging: &DeviceBuffer,
        dst: &mut [u8],
    ) -> Result<()> {
        const OP: &str = "read-back";
        self.wait(read.index.clone(), OP)?;
        self.check(OP)?;
        let answer = self.map_answer(&mut read.rx)?;
        self.copy_out(answer, read.len, staging, dst)
    }

    /// The map callback's answer, once the copy has finished. The callback runs inside a
    /// device poll, which may be another thread's, still running: poll and yield until it
    /// has answered, within the read-back timeout.
    #[cfg(not(target_arch = "wasm32"))]
    fn map_answer(
        &self,
        rx: &mut futures_channel::oneshot::Receiver<MapAnswer>,
    ) -> Result<MapAnswer> {
        let deadline = std::time::Instant::now() + self.readback_timeout;
        loop {
            match rx.try_recv() {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) if std::time::Instant::now() < deadline => {
                    let _ = self.device.poll(wgpu::PollType::Poll);
                    std::thread::yield_now();
                }
                _ => {
                    return Err(Error::Timeout {
                        op: "read-back",
                        seconds: self.readback_timeout.as_secs_f64(),
                    });
                }
            }
        }
    }

    /// In a browser the answer comes from its event loop, which a blocking call never lets
    /// run: only [`Gpu::read_into_async`] reads back there.
    #[cfg(target_arch = "wasm32")]
    fn map_answer(
        &self,
        rx: &mut futures_channel::oneshot::Receiver<MapAnswer>,
    ) -> Result<MapAnswer> {
        rx.try_recv().ok().flatten().ok_or(Error::Gpu {
            op: "read-back",
            message: "a blocking read-back cannot wait in a browser; use Tensor::to_vec_async"
                .into(),
        })
    }

    /// [`Gpu::read_into`] without blocking: one chunk at a time, its copy recorded here and
    /// its map awaited. In a browser the copy is submitted here and the map's callback comes
    /// from the event loop. Natively a helper thread submits the copy (a driver may block a
    /// submission while earlier work runs: lavapipe does), asks for the map and waits on the
    /// device, where the callback fires; until then the future is pending. `holder` keeps
    /// this device layer alive for the helper. A future dropped half-way leaves its staging
    /// buffer out of the pool.
    pub async fn read_into_async<H: GpuHolder>(
        &self,
        holder: &H,
        buffer: &wgpu::Buffer,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<()> {
        const OP: &str = "read-back";
        self.check(OP)?;
        let size = dst.len() as u64;
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let mut start = 0;
        while start < size {
            let len = TRANSFER_CHUNK.min(size - start);
            let staging = Abandonable(Some(self.pool.get(
                &self.device,
                &self.scopes,
                len,
                usage,
                self.max_buffer,
                OP,
            )?));
            let Some(chunk) = staging.0.as_ref() else {
                break;
            };
            lock(&self.recorder)?
                .encoder(&self.device)
                .copy_buffer_to_buffer(buffer, offset + start, chunk.raw(), 0, len);
            let answer = self.map_when_copied(holder, chunk.raw(), len).await?;
            // In a browser: the errors of the crate's work until this read (none kept natively).
            self.scopes.settle().await?;
            let range = start as usize..(start + len) as usize;
            self.copy_out(answer, len, chunk, &mut dst[range])?;
            staging.finish();
            start += len;
        }
        Ok(())
    }

    /// Submits the recorded work (a copy into `staging` last), maps `len` bytes of `staging`
    /// once the copy has run, and gives the map callback's answer. Natively all of it runs on
    /// a helper thread, the future pending meanwhile.
    #[cfg(not(target_arch = "wasm32"))]
    async fn map_when_copied<H: GpuHolder>(
        &self,
        holder: &H,
        staging: &wgpu::Buffer,
        len: u64,
    ) -> Result<MapAnswer> {
        const OP: &str = "read-back";
        let (tx, mut rx) = futures_channel::oneshot::channel();
        let (done_tx, mut done) = futures_channel::oneshot::channel();
        let holder = holder.clone();
        let staging = staging.clone();
        std::thread::Builder::new()
            .name("gpu-activations read-back".into())
            .spawn(move || {
                let failure = match holder.held() {
                    Some(gpu) => gpu.submit_map_and_wait(&staging, len, tx).err(),
                    None => Some(Error::Gpu {
                        op: OP,
                        message: "the context has no device".into(),
                    }),
                };
                let _ = done_tx.send(failure);
            })
            .map_err(|e| Error::Gpu {
                op: OP,
                message: format!("could not start the read-back's helper thread: {e}"),
            })?;
        let mut helper_done = false;
        std::future::poll_fn(|cx| {
            use std::future::Future;
            use std::pin::Pin;
            use std::task::Poll;
            if let Poll::Ready(answer) = Pin::new(&mut rx).poll(cx) {
                return Poll::Ready(answer.map_err(|_| Error::Gpu {
                    op: OP,
                    message: "the map callback was dropped".into(),
                }));
            }
            if !helper_done && let Poll::Ready(failure) = Pin::new(&mut done).poll(cx) {
                helper_done = true;
                match failure {
                    // The copy has run: the callback has fired or is about to (in the helper's
                    // wait or another thread's), and `rx` wakes this future.
                    Ok(None) => {}
                    Ok(Some(e)) => return Poll::Ready(Err(e)),
                    Err(_) => {
                        return Poll::Ready(Err(Error::Gpu {
                            op: OP,
                            message: "the read-back's helper thread ended without an answer".into(),
                        }));
                    }
                }
            }
            Poll::Pending
        })
        .await
    }

    /// In a browser the callback comes from its event loop: submit, map, and await it.
    #[cfg(target_arch = "wasm32")]
    async fn map_when_copied<H: GpuHolder>(
        &self,
        _holder: &H,
        staging: &wgpu::Buffer,
        len: u64,
    ) -> Result<MapAnswer> {
        let (tx, rx) = futures_channel::oneshot::channel();
        lock(&self.recorder).map(|mut rec| self.submit(&mut rec))?;
        staging
            .slice(0..len)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        rx.await.map_err(|_| Error::Gpu {
            op: "read-back",
            message: "the map callback was dropped".into(),
        })
    }

    /// (On a read-back's helper thread.) Submits what is recorded, asks for the map of
    /// `staging` (answered through `tx`) and waits on the device until the submission has run.
    #[cfg(not(target_arch = "wasm32"))]
    fn submit_map_and_wait(
        &self,
        staging: &wgpu::Buffer,
        len: u64,
        tx: futures_channel::oneshot::Sender<MapAnswer>,
    ) -> Result<()> {
        let index = {
            let mut rec = lock(&self.recorder)?;
            self.submit(&mut rec);
            rec.last_submission.clone()
        };
        staging
            .slice(0..len)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        self.wait(index, "read-back")?;
        self.check("read-back")
    }

    /// Copies a mapped chunk out of `staging` into `dst` and unmaps it.
    fn copy_out(
        &self,
        answer: MapAnswer,
        len: u64,
        staging: &DeviceBuffer,
        dst: &mut [u8],
    ) -> Result<()> {
        const OP: &str = "read-back";
        answer.map_err(|e| Error::Gpu {
            op: OP,
            message: e.to_string(),
        })?;
        {
            let view = staging
                .raw()
                .slice(0..len)
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
