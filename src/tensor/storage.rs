//! Where a tensor's data lives: device buffers (pooled, or views of the caller's; split into
//! several when larger than one buffer may be) or host memory on the CPU backend, how a launch
//! binds a range of it, and the encoding of half types in storage.

use std::sync::{Arc, RwLock};

use super::Tensor;
use crate::error::{Error, Result};
use crate::gpu::View;
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
    pub(super) fn check_readable(&self) -> Result<()> {
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
    pub(super) parts: Vec<Part>,
    pub(super) part_elems: usize,
}

impl DeviceParts {
    /// Allocates `n` elements of `dtype` laid out for rows of `cols`.
    pub(super) fn alloc(
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

    pub(super) fn single(buffer: DeviceBuffer, n: usize) -> Self {
        DeviceParts {
            parts: vec![Part::Pooled(buffer)],
            part_elems: n.max(1),
        }
    }

    /// `(buffer, first byte, bytes)` of the storage when it is one buffer.
    pub(super) fn one_range(&self) -> Option<(&wgpu::Buffer, u64, u64)> {
        match self.parts.as_slice() {
            [part] => Some((part.buffer(), part.offset(), part.size())),
            _ => None,
        }
    }

    /// `(part, first element, elements)` of each part of a tensor of `n` elements.
    pub(super) fn spans(&self, n: usize) -> impl Iterator<Item = (&Part, usize, usize)> {
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

impl Tensor {
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
}

/// The bytes of f32 `values` stored as float type `dtype`, padded to a whole number of 4-byte
/// words (what a buffer write takes). The values are exact in `dtype`.
pub(super) fn encode(values: &[f32], dtype: DType) -> std::borrow::Cow<'_, [u8]> {
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
pub(super) fn decode_half(bits: &[u16], dtype: DType, dst: &mut [f32]) {
    for (d, &b) in dst.iter_mut().zip(bits) {
        *d = match dtype {
            DType::BF16 => half::bf16::from_bits(b).to_f32(),
            _ => half::f16::from_bits(b).to_f32(),
        };
    }
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
