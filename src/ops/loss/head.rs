//! The cross-entropy of an LLM head with Liger-Kernel's options, z-loss and softcap, in one
//! fused kernel (`shaders/cross_entropy_head.wgsl`), returning the loss, the gradient, the
//! z-loss and each row's log-sum-exp (what chunked and fused heads need).

use crate::cpu;
use crate::cpu::{narrow, widen};
use crate::definitions::loss::{CrossEntropyOptions, HeadOptions, Reduction};
use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::pool::DeviceBuffer;
use crate::gpu::{Gpu, View};
use crate::layout::{self, DType};
use crate::ops::placement::{Placement, device, fits_binding, mixed, place, store};
use crate::ops::sum::sum_to_scalar;
use crate::tensor::Tensor;
use crate::wgsl::Shader;

use super::class_index::device_classes;
use super::cross_entropy::{ClassIndex, Classes, check_options, validate_classes};
use super::{Lines, Targets};

const OP: &str = "cross_entropy_head";

/// Invocations per workgroup (one row each).
const WG: u32 = 64;

/// The longest row the kernel holds in registers (`4·HEAD_CACHE` in the shader).
use crate::wgsl::HEAD_CACHED_CLASSES as CACHED_CLASSES;

params! {
    /// Mirrors `Params` in `shaders/cross_entropy_head.wgsl`.
    struct HeadParams {
        rows: u32,
        cols: u32,
        eps: f32,
        scale: f32,
        w_all: f32,
        lse_square_scale: f32,
        softcap: f32,
        stride: u32,
    }
}

const HEAD_ROWS: Kernel = Kernel {
    module: Shader::CrossEntropyHead.module(),
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
pub(super) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    vec![(HEAD_ROWS, HeadParams::LAYOUT)]
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
        self.expect_float(OP, "the logits")?;
        let (rows, classes) = check_options(OP, self, options)?;
        let row_shape = &self.shape()[..self.shape().len() - 1];
        head_loss(
            OP,
            self,
            targets,
            options,
            head,
            Lines {
                rows,
                classes,
                stride: 1,
            },
            row_shape,
        )
    }
}

/// The head over `x`'s rows as `lines` lays them out (the options checked against
/// `lines.classes` by the caller); the per-row results shaped `row_shape`.
pub(super) fn head_loss(
    op: &'static str,
    x: &Tensor,
    targets: Targets<'_>,
    options: &CrossEntropyOptions,
    head: &HeadOptions,
    lines: Lines,
    row_shape: &[usize],
) -> Result<HeadLoss> {
    head.validate(op)?;
    let Lines { rows, classes, .. } = lines;
    let checked = class_targets(op, x.context(), targets, (rows, classes), options)?;
    let dtype = x.dtype();
    let z = x.to_dtype(DType::F32)?;
    let loss_shape: Vec<usize> = match options.reduction {
        Reduction::None => row_shape.to_vec(),
        _ => Vec::new(),
    };
    let ctx = x.context();
    let grad = Tensor::uninit_as(ctx, x.shape(), DType::F32, op)?;
    let (loss, z_loss, lse) = match place(op, &[&z, &grad])? {
        Placement::Host => {
            let in_rows = lines.gather(&widen(&z.to_vec()?));
            let r = host_head(op, &in_rows, classes, &checked, options, head)?;
            store(op, &grad, narrow(&lines.scatter(&r.grad)))?;
            (
                Tensor::from_slice(ctx, &narrow(&r.loss), &loss_shape)?,
                Tensor::from_slice(ctx, &narrow(&r.z_loss), &loss_shape)?,
                Tensor::from_slice(ctx, &narrow(&r.lse), row_shape)?,
            )
        }
        Placement::Device(gpu) => {
            let operands = (&z, &grad);
            launch(
                gpu,
                op,
                operands,
                &checked,
                (options, head),
                lines,
                &loss_shape,
            )?
        }
    };
    Ok(HeadLoss {
        loss: loss.to_dtype(dtype)?,
        grad: grad.to_dtype(dtype)?,
        z_loss: z_loss.to_dtype(dtype)?,
        lse: lse.reshape(row_shape)?,
    })
}

/// The head on the host (the CPU backend): the f64 reference over `logits`.
pub(super) fn host_head(
    op: &'static str,
    logits: &[f64],
    classes: usize,
    checked: &Classes,
    options: &CrossEntropyOptions,
    head: &HeadOptions,
) -> Result<cpu::loss::HeadReference> {
    let ClassIndex::Host(index) = &checked.index else {
        return Err(mixed(op));
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
    Ok(cpu::loss::cross_entropy_head(
        logits, classes, &labels, options, head,
    ))
}

/// The class indices of `targets` for `rows` rows of `classes` logits on `ctx`, checked (on
/// the host or on the device): the head's losses take no probabilities.
pub(super) fn class_targets(
    op: &'static str,
    ctx: &crate::Context,
    targets: Targets<'_>,
    (rows, classes): (usize, usize),
    options: &CrossEntropyOptions,
) -> Result<Classes> {
    match targets {
        Targets::Indices(t) => validate_classes(op, t, rows, classes, options),
        Targets::IndicesU32(t) => {
            let widened: Vec<i64> = t.iter().map(|&v| i64::from(v)).collect();
            validate_classes(op, &widened, rows, classes, options)
        }
        Targets::Device(t) => {
            if !t.context().same(ctx) {
                return Err(Error::ContextMismatch { op });
            }
            let gpu = device(op, ctx)?;
            let d = device_classes(gpu, t, rows, classes, options)?;
            Ok(Classes {
                index: ClassIndex::Device(d.index),
                weight_sum: d.weight_sum,
            })
        }
        Targets::Probabilities(t) => Err(Error::DTypeMismatch {
            op,
            what: "targets",
            got: t.dtype(),
            expected: "class indices (the head's losses take no probabilities)",
        }),
    }
}

/// The fused launch: `(loss, z_loss, lse)` with the gradient written into `grad`.
fn launch(
    gpu: &Gpu,
    op: &'static str,
    (z, grad): (&Tensor, &Tensor),
    checked: &Classes,
    (options, head): (&CrossEntropyOptions, &HeadOptions),
    lines: Lines,
    loss_shape: &[usize],
) -> Result<(Tensor, Tensor, Tensor)> {
    let Lines { rows, classes, .. } = lines;
    let ctx = z.context();
    let n = z.len();
    fits_binding(
        gpu,
        op,
        "max_storage_buffer_binding_size (the head's logits are bound whole); split the batch",
        layout::bytes(n),
    )?;
    let mut uploaded = None;
    let index = checked.index.on_device(gpu, &mut uploaded, op)?;
    let kernel = HeadKernel::new(gpu, checked, options, head, classes)?.strided(lines.stride);
    let rows_out = RowOutputs::alloc(gpu, rows)?;
    let full = rows.max(1);
    kernel.launch(
        gpu,
        rows,
        [
            z.view(0, n, op)?,
            index.view(full),
            grad.view(0, n, op)?,
            rows_out.loss.view(full),
            rows_out.z_loss.view(full),
            rows_out.lse.view(full),
        ],
    )?;
    rows_out.reduce(
        gpu,
        ctx,
        (options.reduction, kernel.scale()),
        rows,
        loss_shape,
    )
}

/// The per-row results of the head kernel: loss, z-loss and log-sum-exp.
pub(super) struct RowOutputs {
    pub loss: DeviceBuffer,
    pub z_loss: DeviceBuffer,
    pub lse: DeviceBuffer,
}

impl RowOutputs {
    /// Buffers for `rows` rows.
    pub fn alloc(gpu: &crate::gpu::Gpu, rows: usize) -> Result<RowOutputs> {
        let row_buffer = || gpu.alloc(layout::bytes(rows.max(1)), OP);
        Ok(RowOutputs {
            loss: row_buffer()?,
            z_loss: row_buffer()?,
            lse: row_buffer()?,
        })
    }

    /// `(loss, z_loss, lse)` of `rows` rows as the reduction asks (`loss_shape` for `None`),
    /// `scale` dividing a mean; `lse` of shape `[rows]`.
    pub fn reduce(
        self,
        gpu: &crate::gpu::Gpu,
        ctx: &crate::Context,
        (reduction, scale): (Reduction, f32),
        rows: usize,
        loss_shape: &[usize],
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let reduce = |buffer| match reduction {
            Reduction::None => Ok(Tensor::from_device(ctx, buffer, loss_shape)),
            Reduction::Sum => sum_to_scalar(gpu, ctx, &buffer, rows, 1.0),
            Reduction::Mean => sum_to_scalar(gpu, ctx, &buffer, rows, scale),
        };
        let lse = Tensor::from_device(ctx, self.lse, &[rows]);
        Ok((reduce(self.loss)?, reduce(self.z_loss)?, lse))
    }
}

/// The head kernel set up for one call's options: the class weights uploaded, the gradient's
/// scale and the kernel's constants.
pub(super) struct HeadKernel {
    weight: DeviceBuffer,
    weights: usize,
    params: HeadParams,
    constants: [(&'static str, f64); 7],
}

impl HeadKernel {
    pub fn new(
        gpu: &crate::gpu::Gpu,
        checked: &Classes,
        options: &CrossEntropyOptions,
        head: &HeadOptions,
        classes: usize,
    ) -> Result<HeadKernel> {
        // Two passes over a row, 16 logits per loop iteration.
        gpu.check_loop_limit(
            OP,
            2 * classes.div_ceil(16),
            "loop iterations of one invocation over a row of the head (the adapter ends an \
             invocation after that many; llvmpipe): a row of more than about 520,000 classes",
        )?;
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
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        let wg = WG.min(gpu.workgroup_cap());
        Ok(HeadKernel {
            weight,
            weights: options.weight.as_ref().map_or(1, Vec::len),
            params: HeadParams {
                rows: 0,
                cols: classes as u32,
                eps: options.label_smoothing,
                scale,
                w_all: w_all as f32,
                lse_square_scale: head.lse_square_scale,
                softcap: head.softcap.unwrap_or(1.0),
                stride: 1,
            },
            constants: [
                ("WG", f64::from(wg)),
                ("HAS_WEIGHT", flag(options.weight.is_some())),
                ("SMOOTHING", flag(options.label_smoothing > 0.0)),
                ("SOFTCAP", flag(head.softcap.is_some())),
                ("STRIDED", 0.0),
                (
                    "LEN",
                    if classes <= CACHED_CLASSES {
                        classes as f64
                    } else {
                        0.0
                    },
                ),
                // Four vec4s per loop iteration where one would loop too long (llvmpipe).
                ("WIDE", flag(!gpu.loops_fit(2 * classes.div_ceil(4)))),
            ],
        })
    }

    /// The same kernel over rows whose consecutive logits lie `stride` apart (PyTorch's
    /// `[N, C, S]`; 1 keeps the contiguous rows).
    pub fn strided(mut self, stride: usize) -> HeadKernel {
        self.params.stride = stride as u32;
        self.constants[4].1 = if stride > 1 { 1.0 } else { 0.0 };
        self
    }

    /// The gradient's scale (`1/Σ w_y` for a mean, else 1).
    pub fn scale(&self) -> f32 {
        self.params.scale
    }

    /// Runs the kernel over `rows` rows: `[logits, class index, gradient (may be the logits),
    /// row loss, row z-loss, row lse]`.
    pub fn launch(
        &self,
        gpu: &crate::gpu::Gpu,
        rows: usize,
        [z, index, grad, loss, z_loss, lse]: [View<'_>; 6],
    ) -> Result<()> {
        let params = HeadParams {
            rows: rows as u32,
            ..self.params
        };
        let wg = self.constants[0].1 as u64;
        // In place (the gradient over the logits): the logits bound once (View::overlaps).
        let in_place = z.overlaps(&grad);
        let spare = match in_place {
            true => Some(gpu.alloc(16, OP)?),
            false => None,
        };
        let mut constants = self.constants.to_vec();
        constants.push(("IN_PLACE", if in_place { 1.0 } else { 0.0 }));
        gpu.launch(
            &HEAD_ROWS,
            &constants,
            &[
                z,
                index,
                match &spare {
                    Some(spare) => spare.view(4),
                    None => grad,
                },
                loss,
                self.weight.view(self.weights),
                z_loss,
                lse,
            ],
            bytemuck::bytes_of(&params),
            (rows as u64).div_ceil(wg).max(1),
        )
    }
}
