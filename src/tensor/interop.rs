//! A tensor over a buffer of the caller's ([`Tensor::from_wgpu_buffer`]) and a tensor's buffer
//! handed to the caller ([`Tensor::as_wgpu_buffer`]): the rules a caller's buffer must keep,
//! each an [`Error::ExternalBuffer`] naming it.

use std::sync::Arc;

use super::{DeviceParts, Part, Storage, Tensor, element_count};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout::{self, DType};

impl Tensor {
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
}
