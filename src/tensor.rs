//! [`Tensor`]: a buffer on the context's device with a shape and an element type.

use std::sync::{Arc, RwLock};

use crate::context::Context;
use crate::error::{Error, Result, Unit};
use crate::gpu::View;
use crate::gpu::memory::check_host_bytes;
use crate::gpu::pool::DeviceBuffer;
use crate::layout::{self, DType, storage_bytes_of};

/// A tensor's data: on the device, or in host memory for the CPU backend (as f32 values; a
/// half tensor's are exactly representable in its type).
#[derive(Clone)]
pub(crate) enum Storage {
    Device(Arc<DeviceParts>),
    Host(Arc<RwLock<Vec<f32>>>),
}

/// One buffer of a tensor's device storage, and who owns it.
pub(crate) enum Part {
    /// Ours, on loan from the pool: it returns there when the last tensor sharing it drops.
    Pooled(DeviceBuffer),
    /// The caller's ([`Tensor::from_wgpu_buffer`]): `size` bytes from `offset`. Never returned
    /// to the pool and never destroyed by this crate; the clone of the handle keeps the buffer
    /// alive while a tensor or recorded work refers to it.
    External {
        buffer: wgpu::Buffer,
        offset: u64,
        size: u64,
    },
}

impl Part {
    pub fn buffer(&self) -> &wgpu::Buffer {
        match self {
            Part::Pooled(b) => b.raw(),
            Part::External { buffer, .. } => buffer,
        }
    }

    /// Byte offset of the part's first element in its buffer.
    pub fn offset(&self) -> u64 {
        match self {
            Part::Pooled(_) => 0,
            Part::External { offset, .. } => *offset,
        }
    }

    /// A read-back copies from the buffer: it needs `COPY_SRC` (which a caller's may lack).
    fn check_readable(&self) -> Result<()> {
        if self.buffer().usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Ok(());
        }
        Err(Error::ExternalBuffer {
            op: "read-back",
            rule: "the buffer was made without COPY_SRC usage, which a read-back copies from"
                .into(),
        })
    }

    /// Bytes the part may use from its offset.
    pub fn size(&self) -> u64 {
        match self {
            Part::Pooled(b) => b.capacity(),
            Part::External { size, .. } => *size,
        }
    }
}

/// A tensor's device storage: one buffer, or several when the tensor is larger than one
/// buffer may be. Every part but the last holds `part_elems` elements. When there are several,
/// `part_elems` is a multiple of 128 (so every part boundary is a 256-byte-aligned offset in
/// any other tensor of any float type) and, where it fits, of the last dimension the tensor was
/// made with (so rows stay whole); a single part holds the whole tensor.
pub(crate) struct DeviceParts {
    parts: Vec<Part>,
    part_elems: usize,
}

impl DeviceParts {
    /// Allocates `n` elements of `dtype` laid out for rows of `cols`.
    fn alloc(
        gpu: &crate::gpu::Gpu,
        n: usize,
        dtype: DType,
        cols: usize,
        op: &'static str,
    ) -> Result<Self> {
        gpu.check_tensor_bytes(storage_bytes_of(n, dtype), op)?;
        let max_elems = layout::elements_of_in(gpu.max_buffer, dtype);
        if n <= max_elems {
            return Ok(DeviceParts::single(
                gpu.alloc(storage_bytes_of(n, dtype), op)?,
                n,
            ));
        }
        let align = layout::ALIGNED_ELEMENTS;
        let unit = lcm(cols.max(1), align);
        let part_elems = if unit <= max_elems {
            max_elems / unit * unit
        } else {
            max_elems / align * align
        };
        let count = n.div_ceil(part_elems);
        let parts = (0..count)
            .map(|i| {
                let len = part_elems.min(n - i * part_elems);
                Ok(Part::Pooled(gpu.alloc(storage_bytes_of(len, dtype), op)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeviceParts { parts, part_elems })
    }

    fn single(buffer: DeviceBuffer, n: usize) -> Self {
        DeviceParts {
            parts: vec![Part::Pooled(buffer)],
            part_elems: n.max(1),
        }
    }

    /// `(buffer, first byte, bytes)` of the storage when it is one buffer.
    fn one_range(&self) -> Option<(&wgpu::Buffer, u64, u64)> {
        match self.parts.as_slice() {
            [part] => Some((part.buffer(), part.offset(), part.size())),
            _ => None,
        }
    }

    /// `(part, first element, elements)` of each part of a tensor of `n` elements.
    fn spans(&self, n: usize) -> impl Iterator<Item = (&Part, usize, usize)> {
        self.parts.iter().enumerate().map(move |(i, b)| {
            let start = i * self.part_elems;
            (b, start, self.part_elems.min(n.saturating_sub(start)))
        })
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The least common multiple, saturating at `usize::MAX`.
fn lcm(a: usize, b: usize) -> usize {
    (a / gcd(a, b)).saturating_mul(b)
}

/// An n-dimensional array that lives where its [`Context`] computes.
///
/// Activations treat a tensor as flat; row operations treat it as
/// `[product of leading dims, last dim]`. Cloning shares the storage (like `Arc`).
/// Operations record work and return at once; [`Tensor::to_vec`] waits for the result.
#[derive(Clone)]
pub struct Tensor {
    ctx: Context,
    shape: Vec<usize>,
    dtype: DType,
    storage: Storage,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .field("backend", &self.ctx.backend())
            .finish()
    }
}

/// The most elements a shape may count: eight bytes each (the widest element type) stay
/// addressable in 64 bits, and the count fits `usize`.
const MAX_ELEMENTS: u64 = {
    let by_bytes = u64::MAX / 8;
    if (usize::MAX as u64) < by_bytes {
        usize::MAX as u64
    } else {
        by_bytes
    }
};

/// The number of elements of `shape`, or [`Error::TooLarge`] (in elements) when it, or the
/// count of any part of the shape (a zero dim counted as one), exceeds [`MAX_ELEMENTS`]. So a
/// tensor's shape, and every product of some of its dims, can be multiplied out unchecked.
pub(crate) fn element_count(op: &'static str, shape: &[usize]) -> Result<usize> {
    let span = shape.iter().try_fold(1u64, |acc, &d| {
        acc.checked_mul(d.max(1) as u64)
            .filter(|&n| n <= MAX_ELEMENTS)
    });
    match span {
        Some(_) => Ok(shape.iter().product()),
        None => Err(Error::TooLarge {
            op,
            requested: shape
                .iter()
                .fold(1u64, |acc, &d| acc.saturating_mul(d.max(1) as u64)),
            limit: MAX_ELEMENTS,
            unit: Unit::Elements,
            what: "elements one tensor may have (the count of its shape, zero dims counted as \
                   one)",
        }),
    }
}

/// The element count of a tensor of `shape` and `dtype` on `ctx`, or [`Error::TooLarge`] when
/// the shape overflows or its bytes cannot be held where `ctx` keeps tensors: in at most
/// `MAX_PARTS` device buffers (and the host's available memory on a software adapter), or in
/// the host's memory on the CPU backend (where tensors are f32 values).
fn checked_size(ctx: &Context, op: &'static str, shape: &[usize], dtype: DType) -> Result<usize> {
    let n = element_count(op, shape)?;
    match ctx.gpu() {
        Some(gpu) => gpu.check_tensor_bytes(storage_bytes_of(n, dtype), op)?,
        None => check_host_bytes(n as u64 * DType::F32.size() as u64, op)?,
    }
    Ok(n)
}

/// `n` zeros of type `T` in host memory, after checking that the host can hold them at all;
/// an allocation that fails is [`Error::OutOfMemory`] rather than an abort.
fn host_vec<T: Clone + Default>(n: usize, op: &'static str) -> Result<Vec<T>> {
    let bytes = (n as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    check_host_bytes(bytes, op)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| host_out_of_memory(op, bytes))?;
    v.resize(n, T::default());
    Ok(v)
}

impl Tensor {
    /// Uploads `data` as an f32 tensor of `shape` (row-major).
    pub fn from_slice(ctx: &Context, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_slice_as(ctx, data, shape, DType::F32)
    }

    /// Uploads `data` as a tensor of `shape` stored as `dtype` (`F32`, `F16` or `BF16`), each
    /// value rounded to the nearest of that type (ties to even; beyond its range ±∞).
    pub fn from_slice_as(
        ctx: &Context,
        data: &[f32],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(Error::DTypeMismatch {
                op: "upload",
                what: "the requested storage type",
                got: dtype,
                expected: "float32, float16 or bfloat16",
            });
        }
        checked_size(ctx, "upload", shape, dtype)?;
        if dtype == DType::F32 {
            return Tensor::upload(ctx, data, shape, dtype);
        }
        let rounded: Vec<f32> = data.iter().map(|&v| dtype.round(v)).collect();
        Tensor::upload(ctx, &rounded, shape, dtype)
    }

    /// Uploads f16 values as an `F16` tensor of `shape`.
    pub fn from_f16(ctx: &Context, data: &[half::f16], shape: &[usize]) -> Result<Tensor> {
        checked_size(ctx, "upload", shape, DType::F16)?;
        let wide: Vec<f32> = data.iter().map(|h| h.to_f32()).collect();
        Tensor::upload(ctx, &wide, shape, DType::F16)
    }

    /// Uploads bfloat16 values as a `BF16` tensor of `shape`.
    pub fn from_bf16(ctx: &Context, data: &[half::bf16], shape: &[usize]) -> Result<Tensor> {
        checked_size(ctx, "upload", shape, DType::BF16)?;
        let wide: Vec<f32> = data.iter().map(|h| h.to_f32()).collect();
        Tensor::upload(ctx, &wide, shape, DType::BF16)
    }

    /// A tensor of `shape` and float type `dtype` holding `values` (each exact in `dtype`).
    fn upload(ctx: &Context, values: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        const OP: &str = "upload";
        let expected = checked_size(ctx, OP, shape, dtype)?;
        if values.len() != expected {
            return Err(Error::LengthMismatch {
                op: OP,
                len: values.len(),
                shape: shape.to_vec(),
                expected,
            });
        }
        let storage = match ctx.gpu() {
            Some(gpu) => {
                let parts = DeviceParts::alloc(gpu, expected, dtype, last_dim(shape), OP)?;
                for (part, start, len) in parts.spans(expected) {
                    let bytes = encode(&values[start..start + len], dtype);
                    gpu.upload(part.buffer(), &bytes)?;
                }
                Storage::Device(Arc::new(parts))
            }
            None => Storage::Host(Arc::new(RwLock::new(copy_host(values, OP)?))),
        };
        Ok(Tensor {
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype,
            storage,
        })
    }

    /// A zero-copy view of the caller's `buffer`: `shape`'s f32 elements (row-major) from byte
    /// `offset_bytes`. Ops read the view and write into it (the `_into` variants, in place
    /// included), and their results are in the buffer for the caller's next pipeline once
    /// [`Context::flush`] has submitted them. The tensor keeps a clone of the handle, so the
    /// caller may drop theirs while work is queued; the crate never pools or destroys it.
    ///
    /// Rules, each a typed [`Error::ExternalBuffer`] naming it: the buffer has `STORAGE` usage
    /// (and `COPY_SRC` for [`Tensor::to_vec`]); `offset_bytes` is a multiple of the device's
    /// `min_storage_buffer_offset_alignment` (at least 16); the view holds a positive multiple
    /// of 4 elements (kernels write whole vec4s, and would write past a shorter view); it lies
    /// inside the buffer, within one storage binding; and the buffer belongs to the context's
    /// device. A buffer of another device of the same `wgpu::Instance` (every context the
    /// crate opens itself shares one) is always caught. wgpu 30 does not say which instance a
    /// buffer comes from, and looks it up by an id unique only within one, so a buffer of
    /// another instance is caught unless its id names a storage buffer of the same size on
    /// the context's device: make the context with [`Context::from_wgpu`] on the buffers'
    /// device.
    pub fn from_wgpu_buffer(
        ctx: &Context,
        buffer: &wgpu::Buffer,
        offset_bytes: u64,
        shape: &[usize],
    ) -> Result<Tensor> {
        Tensor::from_wgpu_buffer_as(ctx, buffer, offset_bytes, shape, DType::F32)
    }

    /// [`Tensor::from_wgpu_buffer`] for elements of `dtype`: a float type (`F32`, `F16`,
    /// `BF16`: a positive multiple of 4 elements), or the integer class indices of
    /// [`crate::Targets::Device`] (`U32`, `I32`, `I64`), which kernels only read and which
    /// therefore may hold any number of elements.
    pub fn from_wgpu_buffer_as(
        ctx: &Context,
        buffer: &wgpu::Buffer,
        offset_bytes: u64,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        const OP: &str = "from_wgpu_buffer";
        let broken = |rule: String| Error::ExternalBuffer { op: OP, rule };
        let gpu = ctx
            .gpu()
            .ok_or_else(|| broken("the context is the CPU backend, which has no device".into()))?;
        let n = element_count(OP, shape)?;
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(broken(format!(
                "the buffer's usage {:?} lacks STORAGE",
                buffer.usage()
            )));
        }
        let align = layout::bytes(layout::offset_alignment_elements(&gpu.limits));
        if !offset_bytes.is_multiple_of(align) {
            return Err(broken(format!(
                "offset {offset_bytes} is not a multiple of {align} bytes \
                 (min_storage_buffer_offset_alignment)"
            )));
        }
        if n == 0 || (dtype.is_float() && !n.is_multiple_of(layout::VEC4)) {
            return Err(broken(format!(
                "shape {shape:?} holds {n} elements; a view of a caller's buffer holds a positive \
                 multiple of 4 (kernels write whole vec4s)"
            )));
        }
        let size = n as u64 * dtype.size() as u64;
        let end = offset_bytes
            .checked_add(size)
            .filter(|&e| e <= buffer.size());
        if end.is_none() {
            return Err(broken(format!(
                "bytes {offset_bytes}..{} run past the end of the buffer ({} bytes)",
                offset_bytes.saturating_add(size),
                buffer.size()
            )));
        }
        if size > gpu.max_binding {
            return Err(broken(format!(
                "{size} bytes is more than one storage binding may hold ({} bytes, \
                 max_storage_buffer_binding_size)",
                gpu.max_binding
            )));
        }
        if let Err(message) = gpu.check_own_buffer(buffer) {
            return Err(broken(format!(
                "the buffer is not one of this context's device (a buffer of another device, \
                 or of another wgpu instance): {message}"
            )));
        }
        Ok(Tensor {
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype,
            storage: Storage::Device(Arc::new(DeviceParts {
                parts: vec![Part::External {
                    buffer: buffer.clone(),
                    offset: offset_bytes,
                    size,
                }],
                part_elems: n,
            })),
        })
    }

    /// `(buffer, byte offset, bytes)` of a tensor stored in one buffer, for the caller's next
    /// pipeline to read (after [`Context::flush`]). Keep the tensor alive while that work is
    /// queued: once the last tensor sharing a pooled buffer drops, the pool may hand the buffer
    /// to the next op. A CPU-backend tensor, or one split over several buffers, is an
    /// [`Error::ExternalBuffer`].
    pub fn as_wgpu_buffer(&self) -> Result<(wgpu::Buffer, u64, u64)> {
        const OP: &str = "as_wgpu_buffer";
        let broken = |rule: &str| Error::ExternalBuffer {
            op: OP,
            rule: rule.into(),
        };
        match &self.storage {
            Storage::Device(parts) => match parts.one_range() {
                Some((buffer, offset, _)) => Ok((
                    buffer.clone(),
                    offset,
                    (self.len() * self.dtype.size()) as u64,
                )),
                None => Err(broken(
                    "the tensor is split over several buffers (it is larger than one buffer may be)",
                )),
            },
            Storage::Host(_) => Err(broken(
                "the tensor lives in host memory (CPU backend); it has no wgpu buffer",
            )),
        }
    }

    /// A tensor of `shape` filled with zeros (on the device, without a host copy).
    pub fn zeros(ctx: &Context, shape: &[usize]) -> Result<Tensor> {
        Tensor::zeros_as(ctx, shape, DType::F32)
    }

    /// A tensor of `shape` stored as float type `dtype`, filled with zeros.
    pub fn zeros_as(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(Error::DTypeMismatch {
                op: "zeros",
                what: "the requested storage type",
                got: dtype,
                expected: "float32, float16 or bfloat16",
            });
        }
        let t = Tensor::uninit_as(ctx, shape, dtype, "zeros")?;
        if let (Some(gpu), Storage::Device(parts)) = (ctx.gpu(), &t.storage) {
            for part in &parts.parts {
                gpu.clear(part.buffer())?;
            }
        }
        Ok(t)
    }

    /// A tensor of `shape` whose contents are unspecified until an op writes them.
    pub(crate) fn uninit(ctx: &Context, shape: &[usize], op: &'static str) -> Result<Tensor> {
        Tensor::uninit_as(ctx, shape, DType::F32, op)
    }

    /// [`Tensor::uninit`] stored as float type `dtype`.
    pub(crate) fn uninit_as(
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
        op: &'static str,
    ) -> Result<Tensor> {
        let n = checked_size(ctx, op, shape, dtype)?;
        let storage = match ctx.gpu() {
            Some(gpu) => Storage::Device(Arc::new(DeviceParts::alloc(
                gpu,
                n,
                dtype,
                last_dim(shape),
                op,
            )?)),
            None => Storage::Host(Arc::new(RwLock::new(host_vec(n, op)?))),
        };
        Ok(Tensor {
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype,
            storage,
        })
    }

    /// Wraps a device buffer holding `shape`'s elements.
    pub(crate) fn from_device(ctx: &Context, buffer: DeviceBuffer, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype: DType::F32,
            storage: Storage::Device(Arc::new(DeviceParts::single(buffer, n))),
        }
    }

    /// A new tensor of the same shape and element type on the same context, contents
    /// unspecified.
    pub(crate) fn uninit_like(&self, op: &'static str) -> Result<Tensor> {
        Tensor::uninit_as(&self.ctx, &self.shape, self.dtype, op)
    }

    /// Copies the tensor back to the host, waiting for the work that produces it. A half
    /// tensor's values are widened to f32 exactly.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Device(_) => {
                let mut values = host_vec(self.len(), "read-back")?;
                self.read_into(&mut values)?;
                Ok(values)
            }
            Storage::Host(data) => copy_host(&read_host(data)?, "read-back"),
        }
    }

    /// [`Tensor::to_vec`] without blocking, for a browser (wasm32 and WebGPU) or an async
    /// runtime: the read-back's maps are awaited instead of waited for. Natively a helper
    /// thread submits the recorded work and waits on the device; the future is pending until
    /// the data is mapped, and no `poll` waits on the device.
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
        self.expect_float("to_vec_async", "the tensor")?;
        match &self.storage {
            Storage::Device(parts) => {
                let gpu = self.gpu_or_err("read-back")?;
                let mut values = host_vec(self.len(), "read-back")?;
                for (part, start, len) in parts.spans(values.len()) {
                    part.check_readable()?;
                    let dst = &mut values[start..start + len];
                    if self.dtype.is_half() {
                        let mut bits = host_vec::<u16>(len.next_multiple_of(2), "read-back")?;
                        let bytes = bytemuck::cast_slice_mut(&mut bits);
                        gpu.read_into_async(&self.ctx, part.buffer(), part.offset(), bytes)
                            .await?;
                        decode_half(&bits, self.dtype, dst);
                    } else {
                        let bytes = bytemuck::cast_slice_mut(dst);
                        gpu.read_into_async(&self.ctx, part.buffer(), part.offset(), bytes)
                            .await?;
                    }
                }
                Ok(values)
            }
            Storage::Host(data) => copy_host(&read_host(data)?, "read-back"),
        }
    }

    /// Copies the tensor into `dst` (of exactly `len()` elements), waiting for the work that
    /// produces it. Reusing one host buffer this way avoids allocating (and first-touching)
    /// a new one per read-back.
    ///
    /// A half tensor's values are widened to f32 exactly.
    pub fn read_into(&self, dst: &mut [f32]) -> Result<()> {
        self.expect_float("read_into", "the tensor")?;
        if dst.len() != self.len() {
            return Err(Error::LengthMismatch {
                op: "read_into",
                len: dst.len(),
                shape: self.shape.clone(),
                expected: self.len(),
            });
        }
        match &self.storage {
            Storage::Device(parts) => {
                let gpu = self.gpu_or_err("read-back")?;
                for (part, start, len) in parts.spans(dst.len()) {
                    part.check_readable()?;
                    let dst = &mut dst[start..start + len];
                    if self.dtype.is_half() {
                        let mut bits = host_vec::<u16>(len.next_multiple_of(2), "read-back")?;
                        gpu.read_into(
                            part.buffer(),
                            part.offset(),
                            bytemuck::cast_slice_mut(&mut bits),
                        )?;
                        decode_half(&bits, self.dtype, dst);
                    } else {
                        gpu.read_into(part.buffer(), part.offset(), bytemuck::cast_slice_mut(dst))?;
                    }
                }
                Ok(())
            }
            Storage::Host(data) => {
                dst.copy_from_slice(&read_host(data)?);
                Ok(())
            }
        }
    }

    /// The same data viewed with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = checked_size(&self.ctx, "reshape", shape, self.dtype)?;
        if n != self.len() {
            return Err(Error::LengthMismatch {
                op: "reshape",
                len: self.len(),
                shape: shape.to_vec(),
                expected: n,
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// The values as f16 (exact for an `F16` tensor; rounded to nearest, ties to even, for
    /// the other float types).
    pub fn to_f16_vec(&self) -> Result<Vec<half::f16>> {
        Ok(self
            .to_vec()?
            .into_iter()
            .map(half::f16::from_f32)
            .collect())
    }

    /// The values as bfloat16 (exact for a `BF16` tensor; rounded to nearest, ties to even,
    /// for the other float types).
    pub fn to_bf16_vec(&self) -> Result<Vec<half::bf16>> {
        Ok(self
            .to_vec()?
            .into_iter()
            .map(half::bf16::from_f32)
            .collect())
    }

    /// Fails with [`Error::DTypeMismatch`] unless the tensor holds float elements (f32, f16
    /// or bf16).
    pub(crate) fn expect_float(&self, op: &'static str, what: &'static str) -> Result<()> {
        if self.dtype.is_float() {
            return Ok(());
        }
        Err(Error::DTypeMismatch {
            op,
            what,
            got: self.dtype,
            expected: "float elements (float32, float16 or bfloat16)",
        })
    }

    /// Fails with [`Error::DTypeMismatch`] unless the tensor holds f32 elements.
    pub(crate) fn expect_f32(&self, op: &'static str, what: &'static str) -> Result<()> {
        if self.dtype == DType::F32 {
            return Ok(());
        }
        Err(Error::DTypeMismatch {
            op,
            what,
            got: self.dtype,
            expected: "f32 elements",
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The context the tensor lives on.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// `(rows, cols)` for row operations: the product of the leading dims and the last dim.
    pub fn rows_cols(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape.split_last() {
            Some((&cols, lead)) => Ok((lead.iter().product(), cols)),
            None => Err(Error::invalid_shape(
                op,
                &self.shape,
                "a row operation needs a tensor of rank at least 1",
            )),
        }
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Whether `self` and `other` share storage: the same tensor storage, or views of the same
    /// range of a caller's buffer.
    pub(crate) fn aliases(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Device(a), Storage::Device(b)) => {
                Arc::ptr_eq(a, b) || a.one_range().is_some_and(|r| b.one_range() == Some(r))
            }
            (Storage::Host(a), Storage::Host(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether `self` and `other` are different ranges of one buffer (views of a caller's
    /// buffer), which one launch cannot bind: wgpu tracks a buffer's usage as a whole, so it
    /// cannot be read-only in one binding and writable in another.
    pub(crate) fn shares_a_buffer_apart(&self, other: &Tensor) -> bool {
        let (Storage::Device(a), Storage::Device(b)) = (&self.storage, &other.storage) else {
            return false;
        };
        !self.aliases(other)
            && a.parts
                .iter()
                .any(|p| b.parts.iter().any(|q| p.buffer() == q.buffer()))
    }

    /// A view of `len` elements starting at element `start`, for binding to a kernel of `op`.
    /// The range must lie within one part (see [`Tensor::part_end`]).
    pub(crate) fn view(&self, start: usize, len: usize, op: &'static str) -> Result<View<'_>> {
        match &self.storage {
            Storage::Device(parts) => {
                let index = start / parts.part_elems;
                let within = start - index * parts.part_elems;
                let part = parts
                    .parts
                    .get(index)
                    .filter(|_| within + len <= parts.part_elems)
                    .ok_or(Error::Gpu {
                        op,
                        message: "a view crosses the tensor's buffers".into(),
                    })?;
                let offset = (within * self.dtype.size()) as u64;
                Ok(View {
                    buffer: part.buffer(),
                    offset: part.offset() + offset,
                    size: storage_bytes_of(len, self.dtype).min(part.size() - offset),
                })
            }
            Storage::Host(_) => Err(Error::Gpu {
                op,
                message: "a host tensor was mixed with device tensors".into(),
            }),
        }
    }

    /// The end of the part holding element `start` (the tensor's length for host tensors and
    /// single-buffer tensors): a launch must not bind across it.
    pub(crate) fn part_end(&self, start: usize) -> usize {
        match &self.storage {
            Storage::Device(parts) => {
                ((start / parts.part_elems + 1) * parts.part_elems).min(self.len())
            }
            Storage::Host(_) => self.len(),
        }
    }

    fn gpu_or_err(&self, op: &'static str) -> Result<&crate::gpu::Gpu> {
        self.ctx.gpu().ok_or(Error::Gpu {
            op,
            message: "tensor storage is on the device but the context has none".into(),
        })
    }
}

/// The bytes of f32 `values` stored as float type `dtype`, padded to a whole number of 4-byte
/// words (what a buffer write takes). The values are exact in `dtype`.
fn encode(values: &[f32], dtype: DType) -> std::borrow::Cow<'_, [u8]> {
    let bits: Vec<u16> = match dtype {
        DType::F16 => values
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect(),
        DType::BF16 => values
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect(),
        _ => return std::borrow::Cow::Borrowed(bytemuck::cast_slice(values)),
    };
    let mut bytes: Vec<u8> = bytemuck::cast_slice(&bits).to_vec();
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    std::borrow::Cow::Owned(bytes)
}

/// f32 values of half-type `dtype` bits.
fn decode_half(bits: &[u16], dtype: DType, dst: &mut [f32]) {
    for (d, &b) in dst.iter_mut().zip(bits) {
        *d = match dtype {
            DType::BF16 => half::bf16::from_bits(b).to_f32(),
            _ => half::f16::from_bits(b).to_f32(),
        };
    }
}

/// The last dimension of a shape (1 for a scalar): the row length parts are laid out for.
fn last_dim(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}

/// The error of a host allocation of `bytes` that failed.
fn host_out_of_memory(op: &'static str, bytes: u64) -> Error {
    Error::OutOfMemory {
        op,
        bytes,
        memory: "host",
    }
}

/// A copy of `values` in host memory, or a typed error if the host cannot hold it.
fn copy_host(values: &[f32], op: &'static str) -> Result<Vec<f32>> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(values.len())
        .map_err(|_| host_out_of_memory(op, layout::bytes(values.len())))?;
    copy.extend_from_slice(values);
    Ok(copy)
}

pub(crate) fn read_host(
    data: &RwLock<Vec<f32>>,
) -> Result<std::sync::RwLockReadGuard<'_, Vec<f32>>> {
    data.read().map_err(|_| Error::Gpu {
        op: "read",
        message: "a thread panicked while writing this tensor".into(),
    })
}

pub(crate) fn write_host(
    data: &RwLock<Vec<f32>>,
) -> Result<std::sync::RwLockWriteGuard<'_, Vec<f32>>> {
    data.write().map_err(|_| Error::Gpu {
        op: "write",
        message: "a thread panicked while writing this tensor".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_host_allocation_says_host_memory_ran_out() {
        let message = host_out_of_memory("zeros", 1 << 40).to_string();
        assert_eq!(
            message,
            "out of host memory allocating 1099511627776 bytes for zeros"
        );
    }
}
