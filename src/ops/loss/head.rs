//! The cross-entropy of an LLM head with Liger-Kernel's options, z-loss and softcap, in one
//! fused kernel (`shaders/cross_entropy_head.wgsl`), returning the loss, the gradient, the
//! z-loss and each row's log-sum-exp (what chunked and fused heads need).

use crate::cpu;
use crate::definitions::loss::{CrossEntropyOptions, HeadOptions, Reduction};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, Shader, Slot};
use crate::layout::{self, DType};
use crate::ops::sum::sum_to_scalar;
use crate::tensor::{Storage, Tensor, write_host};

use super::class_index::device_classes;
use super::cross_entropy::{ClassIndex, Classes, check_options, validate_classes};
use super::{Targets, mixed, narrow, widen};

const OP: &str = "cross_entropy_head";

/// Invocations per workgroup (one row each).
const WG: u32 = 64;

/// Mirrors `Params` in `shaders/cross_entropy_head.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct HeadParams {
    rows: u32,
    cols: u32,
    eps: f32,
    scale: f32,
    w_all: f32,
    lse_square_scale: f32,
    softcap: f32,
}

const HEAD_ROWS: Kernel = Kernel {
    shader: Shader::CrossEntropyHead,
    entry: "head_rows",
    slots: &[
        Slot::ReadWrite(1),
        Slot::Read(2),
        Slot::ReadWrite(3),
        Slot::ReadWrite(4),
        Slot::Read(5),
        Slot::ReadWrite(6),
        Slot::ReadWrite(7),
    ],
};

/// The kernel with its parameter block's size.
#[cfg(test)]
pub(super) fn launched_kernels() -> Vec<(Kernel, usize)> {
    vec![(HEAD_ROWS, size_of::<HeadParams>())]
}

/// The loss of an LLM head and what comes with it.
#[derive(Clone, Debug)]
pub struct HeadLoss {
    /// The cross-entropy plus the z-loss, reduced as the options say (shape `[]`, or the
    /// logits' shape without its last axis for `Reduction::None`).
    pub loss: Tensor,
    /// The gradient of the (summed, for `None`) loss with respect to the logits.
    pub grad: Tensor,
    /// The z-loss part of `loss` (`s·lse²`), reduced the same way (Liger's `return_z_loss`).
    pub z_loss: Tensor,
    /// Each row's log-sum-exp of the (capped) logits, shape: the logits' without the last axis.
    pub lse: Tensor,
}

impl Tensor {
    /// Softmax cross-entropy of these logits (`[.., K]`, the class along the last dim, as an
    /// LLM head produces them) with Liger-Kernel's options, in one fused pass: with a softcap
    /// `c` the logits become `z' = c·tanh(z/c)`; each row's loss is the cross-entropy of `z'`
    /// (with the options' weights, `ignore_index` and label smoothing) plus the z-loss
    /// `s·lse²`, `lse = log Σ_c e^{z'_c}`; the gradient is
    /// `scale·[softmax − t' (weighted) + 2s·lse·softmax]·(1 − (z'/c)²)`, `scale` dividing by
    /// `Σ w_y` for the mean as in [`Tensor::cross_entropy`]. Returns the z-loss and each row's
    /// `lse` as well. Targets are class indices (on the host or the device); the logits are
    /// bound whole, so they must fit one storage binding.
    pub fn cross_entropy_head(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
        head: &HeadOptions,
    ) -> Result<HeadLoss> {
        head.validate(OP)?;
        self.expect_float(OP, "the logits")?;
        let (rows, classes) = check_options(OP, self, options)?;
        let eps = options.label_smoothing;
        let widened;
        let checked = match targets {
            Targets::Indices(t) => validate_classes(OP, t, rows, classes, options)?,
            Targets::IndicesU32(t) => {
                widened = t.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
                validate_classes(OP, &widened, rows, classes, options)?
            }
            Targets::Device(t) => {
                if !t.context().same(self.context()) {
                    return Err(Error::ContextMismatch { op: OP });
                }
                let gpu = self.context().gpu().ok_or_else(|| mixed(OP))?;
                let d = device_classes(gpu, t, rows, classes, options)?;
                Classes {
                    index: ClassIndex::Device(d.index),
                    weight_sum: d.weight_sum,
                }
            }
            Targets::Probabilities(t) => {
                return Err(Error::DTypeMismatch {
                    op: OP,
                    what: "targets",
                    got: t.dtype(),
                    expected: "class indices (the head's losses take no probabilities)",
                });
            }
        };
        let dtype = self.dtype();
        let z = self.to_dtype(DType::F32)?;
        let row_shape = &self.shape()[..self.shape().len() - 1];
        let loss_shape: Vec<usize> = match options.reduction {
            Reduction::None => row_shape.to_vec(),
            _ => Vec::new(),
        };
        let ctx = self.context();
        let grad = Tensor::uninit_as(ctx, self.shape(), DType::F32, OP)?;
        let (loss, z_loss, lse) = match (z.storage(), grad.storage()) {
            (Storage::Host(_), Storage::Host(g)) => {
                let ClassIndex::Host(index) = &checked.index else {
                    return Err(mixed(OP));
                };
                let labels: Vec<i64> = index
                    .iter()
                    .map(|&i| {
                        if i == u32::MAX {
                            options.ignore_index
                        } else {
                            i64::from(i)
                        }
                    })
                    .collect();
                let weight = options.weight.as_ref().map(|w| widen(w));
                let r = cpu::loss::cross_entropy_head(
                    &widen(&z.to_vec()?),
                    classes,
                    &labels,
                    weight.as_deref(),
                    options.reduction,
                    options.ignore_index,
                    f64::from(eps),
                    f64::from(head.lse_square_scale),
                    head.softcap.map(f64::from),
                );
                *write_host(g)? = narrow(&r.grad);
                (
                    Tensor::from_slice(ctx, &narrow(&r.loss), &loss_shape)?,
                    Tensor::from_slice(ctx, &narrow(&r.z_loss), &loss_shape)?,
                    Tensor::from_slice(ctx, &narrow(&r.lse), row_shape)?,
                )
            }
            _ => launch(
                &z,
                &grad,
                &checked,
                options,
                head,
                (rows, classes),
                &loss_shape,
            )?,
        };
        Ok(HeadLoss {
            loss: loss.to_dtype(dtype)?,
            grad: grad.to_dtype(dtype)?,
            z_loss: z_loss.to_dtype(dtype)?,
            lse: lse.reshape(row_shape)?,
        })
    }
}

/// The fused launch: `(loss, z_loss, lse)` with the gradient written into `grad`.
fn launch(
    z: &Tensor,
    grad: &Tensor,
    checked: &Classes,
    options: &CrossEntropyOptions,
    head: &HeadOptions,
    (rows, classes): (usize, usize),
    loss_shape: &[usize],
) -> Result<(Tensor, Tensor, Tensor)> {
    let ctx = z.context();
    let gpu = ctx.gpu().ok_or_else(|| mixed(OP))?;
    let n = z.len();
    if layout::bytes(n) > gpu.max_binding {
        return Err(Error::TooLarge {
            op: OP,
            requested: layout::bytes(n),
            limit: gpu.max_binding,
            what: "max_storage_buffer_binding_size (the head's logits are bound whole); split \
                   the batch",
        });
    }
    let uploaded;
    let index = match &checked.index {
        ClassIndex::Host(host) => {
            uploaded = gpu.upload_new(bytemuck::cast_slice(host), OP)?;
            &uploaded
        }
        ClassIndex::Device(device) => device,
    };
    let weight = gpu.upload_new(
        bytemuck::cast_slice(options.weight.as_deref().unwrap_or(&[0.0])),
        OP,
    )?;
    let w_all = options
        .weight
        .as_ref()
        .map_or(classes as f64, |w| w.iter().map(|&v| f64::from(v)).sum());
    let scale = match options.reduction {
        Reduction::Mean => (1.0 / checked.weight_sum) as f32,
        _ => 1.0,
    };
    let row_buffers = || gpu.alloc(layout::bytes(rows.max(1)), OP);
    let (row_loss, row_z_loss, row_lse) = (row_buffers()?, row_buffers()?, row_buffers()?);
    let params = HeadParams {
        rows: rows as u32,
        cols: classes as u32,
        eps: options.label_smoothing,
        scale,
        w_all: w_all as f32,
        lse_square_scale: head.lse_square_scale,
        softcap: head.softcap.unwrap_or(1.0),
    };
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let wg = WG.min(gpu.workgroup_cap());
    let constants = [
        ("WG", f64::from(wg)),
        ("HAS_WEIGHT", flag(options.weight.is_some())),
        ("SMOOTHING", flag(options.label_smoothing > 0.0)),
        ("SOFTCAP", flag(head.softcap.is_some())),
    ];
    let views = [
        z.view(0, n, OP)?,
        index.view(rows.max(1)),
        grad.view(0, n, OP)?,
        row_loss.view(rows.max(1)),
        weight.view(options.weight.as_ref().map_or(1, Vec::len)),
        row_z_loss.view(rows.max(1)),
        row_lse.view(rows.max(1)),
    ];
    gpu.launch(
        &HEAD_ROWS,
        &constants,
        &views,
        bytemuck::bytes_of(&params),
        (rows as u64).div_ceil(u64::from(wg)).max(1),
    )?;
    let reduce = |buffer| match options.reduction {
        Reduction::None => Ok(Tensor::from_device(ctx, buffer, loss_shape)),
        Reduction::Sum => sum_to_scalar(gpu, ctx, &buffer, rows, 1.0),
        Reduction::Mean => sum_to_scalar(gpu, ctx, &buffer, rows, scale),
    };
    let lse = Tensor::from_device(ctx, row_lse, &[rows]);
    Ok((reduce(row_loss)?, reduce(row_z_loss)?, lse))
}
