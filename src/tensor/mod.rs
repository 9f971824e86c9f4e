//! [`Tensor`]: a buffer on the context's device with a shape and an element type.

use std::sync::{Arc, RwLock};

use crate::context::Context;
use crate::error::{Error, Result, Unit};
use crate::gpu::memory::check_host_bytes;
use crate::gpu::pool::DeviceBuffer;
use crate::layout::{self, DType, storage_bytes_of};

mod interop;
mod storage;

pub(crate) use storage::{DeviceParts, Part, Storage, read_host, write_host};
use storage::{decode_half, encode};

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

    fn gpu_or_err(&self, op: &'static str) -> Result<&crate::gpu::Gpu> {
        self.ctx.gpu().ok_or(Error::Gpu {
            op,
            message: "tensor storage is on the device but the context has none".into(),
        })
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
