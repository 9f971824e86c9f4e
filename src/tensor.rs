//! [`Tensor`]: a buffer on the context's device with a shape and an element type.

use std::sync::{Arc, RwLock};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::gpu::View;
use crate::gpu::pool::DeviceBuffer;

/// Element type of a tensor's storage. Only `F32` exists today; the enum leaves room for
/// half-precision storage without changing the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
}

/// A tensor's data: on the device, or in host memory for the CPU backend.
#[derive(Clone)]
pub(crate) enum Storage {
    Device(Arc<DeviceParts>),
    Host(Arc<RwLock<Vec<f32>>>),
}

/// A tensor's device storage: one buffer, or several when the tensor is larger than one
/// buffer may be. Every part but the last holds `part_elems` elements. When there are several,
/// `part_elems` is a multiple of 64 (so every part boundary is a 256-byte-aligned offset in any
/// other tensor) and, where it fits, of the last dimension the tensor was made with (so rows
/// stay whole); a single part holds the whole tensor.
pub(crate) struct DeviceParts {
    parts: Vec<DeviceBuffer>,
    part_elems: usize,
}

impl DeviceParts {
    /// Allocates `n` elements laid out for rows of `cols`.
    fn alloc(gpu: &crate::gpu::Gpu, n: usize, cols: usize, op: &'static str) -> Result<Self> {
        let max_elems = (gpu.max_buffer / 16 * 4) as usize;
        if n <= max_elems {
            return Ok(DeviceParts {
                parts: vec![gpu.alloc(byte_len(n), op)?],
                part_elems: n.max(1),
            });
        }
        gpu.check_fits(byte_len(n), op)?;
        let unit = lcm(cols.max(1), 64);
        let part_elems = if unit <= max_elems {
            max_elems / unit * unit
        } else {
            max_elems / 64 * 64
        };
        let count = n.div_ceil(part_elems);
        let parts = (0..count)
            .map(|i| gpu.alloc(byte_len(part_elems.min(n - i * part_elems)), op))
            .collect::<Result<Vec<_>>>()?;
        Ok(DeviceParts { parts, part_elems })
    }

    fn single(buffer: DeviceBuffer, n: usize) -> Self {
        DeviceParts {
            parts: vec![buffer],
            part_elems: n.max(1),
        }
    }

    /// `(part, first element, elements)` of each part of a tensor of `n` elements.
    fn spans(&self, n: usize) -> impl Iterator<Item = (&DeviceBuffer, usize, usize)> {
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

/// The number of elements of `shape`, checked against overflow of byte offsets.
pub(crate) fn element_count(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n.checked_mul(4).is_some_and(|b| u64::try_from(b).is_ok()))
        .ok_or_else(|| Error::ShapeOverflow {
            op,
            shape: shape.to_vec(),
            limit: "usize",
        })
}

impl Tensor {
    /// Uploads `data` as a tensor of `shape` (row-major).
    pub fn from_slice(ctx: &Context, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        const OP: &str = "upload";
        let expected = element_count(OP, shape)?;
        if data.len() != expected {
            return Err(Error::LengthMismatch {
                op: OP,
                len: data.len(),
                shape: shape.to_vec(),
                expected,
            });
        }
        let storage = match ctx.gpu() {
            Some(gpu) => {
                let parts = DeviceParts::alloc(gpu, expected, last_dim(shape), OP)?;
                for (buffer, start, len) in parts.spans(expected) {
                    gpu.upload(
                        buffer.raw(),
                        bytemuck::cast_slice(&data[start..start + len]),
                    )?;
                }
                Storage::Device(Arc::new(parts))
            }
            None => Storage::Host(Arc::new(RwLock::new(data.to_vec()))),
        };
        Ok(Tensor {
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype: DType::F32,
            storage,
        })
    }

    /// A tensor of `shape` filled with zeros (on the device, without a host copy).
    pub fn zeros(ctx: &Context, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::uninit(ctx, shape, "zeros")?;
        if let (Some(gpu), Storage::Device(parts)) = (ctx.gpu(), &t.storage) {
            for buffer in &parts.parts {
                gpu.clear(buffer.raw())?;
            }
        }
        Ok(t)
    }

    /// A tensor of `shape` whose contents are unspecified until an op writes them.
    pub(crate) fn uninit(ctx: &Context, shape: &[usize], op: &'static str) -> Result<Tensor> {
        let n = element_count(op, shape)?;
        let storage = match ctx.gpu() {
            Some(gpu) => {
                Storage::Device(Arc::new(DeviceParts::alloc(gpu, n, last_dim(shape), op)?))
            }
            None => Storage::Host(Arc::new(RwLock::new(host_zeros(n, op)?))),
        };
        Ok(Tensor {
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype: DType::F32,
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

    /// A new tensor of the same shape on the same context, contents unspecified.
    pub(crate) fn uninit_like(&self, op: &'static str) -> Result<Tensor> {
        Tensor::uninit(&self.ctx, &self.shape, op)
    }

    /// Copies the tensor back to the host, waiting for the work that produces it.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Device(_) => {
                let mut values = vec![0.0f32; self.len()];
                self.read_into(&mut values)?;
                Ok(values)
            }
            Storage::Host(data) => Ok(read_host(data)?.clone()),
        }
    }

    /// Copies the tensor into `dst` (of exactly `len()` elements), waiting for the work that
    /// produces it. Reusing one host buffer this way avoids allocating (and first-touching)
    /// a new one per read-back.
    pub fn read_into(&self, dst: &mut [f32]) -> Result<()> {
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
                for (buffer, start, len) in parts.spans(dst.len()) {
                    let bytes = bytemuck::cast_slice_mut(&mut dst[start..start + len]);
                    gpu.read_into(buffer.raw(), 0, bytes)?;
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
        let n = element_count("reshape", shape)?;
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

    /// Whether `self` and `other` share storage.
    pub(crate) fn aliases(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Device(a), Storage::Device(b)) => Arc::ptr_eq(a, b),
            (Storage::Host(a), Storage::Host(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// A view of `len` elements starting at element `start`, for binding to a kernel of `op`.
    /// The range must lie within one part (see [`Tensor::part_end`]).
    pub(crate) fn view(&self, start: usize, len: usize, op: &'static str) -> Result<View<'_>> {
        match &self.storage {
            Storage::Device(parts) => {
                let index = start / parts.part_elems;
                let within = start - index * parts.part_elems;
                let buffer = parts
                    .parts
                    .get(index)
                    .filter(|_| within + len <= parts.part_elems)
                    .ok_or(Error::Gpu {
                        op,
                        message: "a view crosses the tensor's buffers".into(),
                    })?;
                let offset = (within * self.dtype.size()) as u64;
                Ok(View {
                    buffer: buffer.raw(),
                    offset,
                    size: byte_len(len).min(buffer.capacity() - offset),
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

/// The last dimension of a shape (1 for a scalar): the row length parts are laid out for.
fn last_dim(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}

/// `n` zeros in host memory, or a typed error if the allocation fails.
fn host_zeros(n: usize, op: &'static str) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        op,
        bytes: (n as u64).saturating_mul(4),
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// Bytes a tensor of `n` f32 elements occupies on the device: rounded up to whole vec4s.
pub(crate) fn byte_len(n: usize) -> u64 {
    (n.max(1) as u64).div_ceil(4) * 16
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
