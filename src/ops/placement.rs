//! Where an op runs, decided in one place for every op: on the CPU backend, where every
//! operand lives in host memory and the f64 reference computes the answer, or on the
//! context's GPU. The host branch of an op stores through [`store`], which rounds to the
//! output's storage type as a kernel's store does; the device branch gets the GPU.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::layout;
use crate::tensor::{Storage, Tensor, write_host};

/// Where an op's operands live.
pub(crate) enum Placement<'a> {
    /// The CPU backend: every operand in host memory.
    Host,
    /// The context's GPU: every operand in its buffers.
    Device(&'a Gpu),
}

/// Where `op` runs on `tensors` (the op has checked they share one context): the host when
/// every one is in host memory, the context's GPU when every one is on it.
pub(crate) fn place<'a>(op: &'static str, tensors: &[&'a Tensor]) -> Result<Placement<'a>> {
    let on_host = |t: &&Tensor| matches!(t.storage(), Storage::Host(_));
    match tensors.first() {
        None => Ok(Placement::Host),
        Some(_) if tensors.iter().all(on_host) => Ok(Placement::Host),
        Some(first) if !tensors.iter().any(on_host) => {
            Ok(Placement::Device(device(op, first.context())?))
        }
        Some(_) => Err(mixed(op)),
    }
}

/// The GPU of `ctx`, for an op whose operands are on the device.
pub(crate) fn device<'a>(op: &'static str, ctx: &'a Context) -> Result<&'a Gpu> {
    ctx.gpu().ok_or_else(|| mixed(op))
}

/// Operands split between host memory and a device (or, inside an op, a host-side part where
/// the device's was due).
pub(crate) fn mixed(op: &'static str) -> Error {
    Error::Gpu {
        op,
        message: "mixed host and device tensors".into(),
    }
}

/// Stores host `values` into `out` (in host memory), each rounded to `out`'s storage type.
pub(crate) fn store(op: &'static str, out: &Tensor, mut values: Vec<f32>) -> Result<()> {
    let Storage::Host(dst) = out.storage() else {
        return Err(mixed(op));
    };
    let dtype = out.dtype();
    if dtype.is_half() {
        for v in &mut values {
            *v = dtype.round(*v);
        }
    }
    *write_host(dst)? = values;
    Ok(())
}

/// Checks that each of `tensors` fits one storage binding of `gpu`, for kernels that bind
/// their operands whole (`what` names the limit and why, for the error).
pub(crate) fn bound_whole(
    gpu: &Gpu,
    op: &'static str,
    what: &'static str,
    tensors: &[&Tensor],
) -> Result<()> {
    tensors
        .iter()
        .try_for_each(|t| fits_binding(gpu, op, what, layout::bytes(t.len())))
}

/// Checks that `bytes` fit one storage binding of `gpu` (`what` names the limit and why).
pub(crate) fn fits_binding(
    gpu: &Gpu,
    op: &'static str,
    what: &'static str,
    bytes: u64,
) -> Result<()> {
    if bytes > gpu.max_binding {
        return Err(Error::TooLarge {
            op,
            requested: bytes,
            limit: gpu.max_binding,
            unit: crate::Unit::Bytes,
            what,
        });
    }
    Ok(())
}
