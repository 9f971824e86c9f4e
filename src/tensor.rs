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
    Device(Arc<DeviceBuffer>),
    Host(Arc<RwLock<Vec<f32>>>),
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
                let buffer = gpu.alloc(byte_len(expected), OP)?;
                gpu.upload(buffer.raw(), bytemuck::cast_slice(data))?;
                Storage::Device(Arc::new(buffer))
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
        if let (Some(gpu), Storage::Device(buffer)) = (ctx.gpu(), &t.storage) {
            gpu.clear(buffer.raw())?;
        }
        Ok(t)
    }

    /// A tensor of `shape` whose contents are unspecified until an op writes them.
    pub(crate) fn uninit(ctx: &Context, shape: &[usize], op: &'static str) -> Result<Tensor> {
        let n = element_count(op, shape)?;
        let storage = match ctx.gpu() {
            Some(gpu) => Storage::Device(Arc::new(gpu.alloc(byte_len(n), op)?)),
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
        Tensor {
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype: DType::F32,
            storage: Storage::Device(Arc::new(buffer)),
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
            Storage::Device(buffer) => {
                let gpu = self.gpu_or_err("read-back")?;
                gpu.read_into(buffer.raw(), 0, bytemuck::cast_slice_mut(dst))
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
    pub(crate) fn view(&self, start: usize, len: usize, op: &'static str) -> Result<View<'_>> {
        match &self.storage {
            Storage::Device(b) => Ok(View {
                buffer: b.raw(),
                offset: (start * self.dtype.size()) as u64,
                size: byte_len(len).min(b.capacity() - (start * self.dtype.size()) as u64),
            }),
            Storage::Host(_) => Err(Error::Gpu {
                op,
                message: "a host tensor was mixed with device tensors".into(),
            }),
        }
    }

    fn gpu_or_err(&self, op: &'static str) -> Result<&crate::gpu::Gpu> {
        self.ctx.gpu().ok_or(Error::Gpu {
            op,
            message: "tensor storage is on the device but the context has none".into(),
        })
    }
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
