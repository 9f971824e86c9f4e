//! Negative log-likelihood of log-probabilities (`shaders/nll.wgsl`), as
//! `torch.nn.functional.nll_loss`: class indices checked on the host, the gradient zeroed and
//! each row's loss and gradient written on the device, the losses reduced there. Rows are the
//! last dim's, or PyTorch's class-at-dim-1 lines read in place ([`Lines`]).

use crate::cpu;
use crate::cpu::{narrow, widen};
use crate::definitions::loss::{CrossEntropyOptions, Reduction};
use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout::{self, DType};
use crate::ops::placement::{Placement, fits_binding, mixed, place, store};
use crate::ops::sum::sum_to_scalar;
use crate::tensor::Tensor;
use crate::wgsl::Shader;

use super::cross_entropy::{ClassIndex, validate_classes};
use super::{Lines, LossAndGrad, Targets, check_weight};

const OP: &str = "nll_loss";

/// Invocations per workgroup.
const WG: u32 = 256;

params! {
    /// Mirrors `Params` in `shaders/nll.wgsl`.
    struct NllParams {
        rows: u32,
        classes: u32,
        scale: f32,
        stride: u32,
    }
}

const LOSSES: Kernel = Kernel {
    module: Shader::Nll.module(),
    entry: "losses",
    slots: &[
        Slot::Read(1),
        Slot::Read(2),
        Slot::ReadWrite(3),
        Slot::ReadWrite(4),
        Slot::Read(5),
    ],
};

/// The kernels with their parameter block's size.
#[cfg(test)]
pub(super) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    vec![(LOSSES, NllParams::LAYOUT)]
}

impl Tensor {
    /// Negative log-likelihood of these log-probabilities (`[.., C]`, the class along the last
    /// dim), as `torch.nn.functional.nll_loss`: `loss_r = −w_y·x_{r,y}`, the gradient `−w_y` at
    /// each row's class and 0 elsewhere; `reduction`, `ignore_index` and per-class `weight` as
    /// for [`Tensor::cross_entropy`] (the mean divides by `Σ w_y`), no label smoothing. Targets
    /// are class indices on the host. For PyTorch's layout (class at dim 1) see
    /// [`Tensor::nll_loss_dim1`].
    pub fn nll_loss(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
    ) -> Result<LossAndGrad> {
        self.expect_float(OP, "the log-probabilities")?;
        let (rows, classes) = self.rows_cols(OP)?;
        let row_shape = &self.shape()[..self.shape().len() - 1];
        let lines = Lines {
            rows,
            classes,
            stride: 1,
        };
        nll(OP, self, targets, options, lines, row_shape)
    }
}

/// The negative log-likelihood of `x`'s rows as `lines` lays them out, the per-row losses shaped
/// `row_shape` for `Reduction::None`.
pub(super) fn nll(
    op: &'static str,
    x: &Tensor,
    targets: Targets<'_>,
    options: &CrossEntropyOptions,
    lines: Lines,
    row_shape: &[usize],
) -> Result<LossAndGrad> {
    let Lines { rows, classes, .. } = lines;
    let dtype = x.dtype();
    if options.label_smoothing != 0.0 {
        return Err(Error::InvalidParameter {
            op,
            name: "label_smoothing",
            value: crate::Error::f32_param(options.label_smoothing),
            reason: "nll_loss has no label smoothing (it is cross-entropy's option)",
        });
    }
    check_weight(op, "weight", &options.weight, classes)?;
    let widened;
    let indices: &[i64] = match targets {
        Targets::Indices(t) => t,
        Targets::IndicesU32(t) => {
            widened = t.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
            &widened
        }
        Targets::Device(t) | Targets::Probabilities(t) => {
            return Err(Error::DTypeMismatch {
                op,
                what: "targets",
                got: t.dtype(),
                expected: "class indices on the host (Targets::Indices or IndicesU32)",
            });
        }
    };
    let checked = validate_classes(op, indices, rows, classes, options)?;
    let x = x.to_dtype(DType::F32)?;
    let loss_shape: Vec<usize> = match options.reduction {
        Reduction::None => row_shape.to_vec(),
        _ => Vec::new(),
    };
    let ctx = x.context();
    let grad = Tensor::zeros(ctx, x.shape())?;
    let loss = match place(op, &[&x, &grad])? {
        Placement::Host => {
            let r = cpu::loss::nll_loss(
                &lines.gather(&widen(&x.to_vec()?)),
                classes,
                indices,
                options,
            );
            store(op, &grad, narrow(&lines.scatter(&r.grad)))?;
            Tensor::from_slice(ctx, &narrow(&r.loss), &loss_shape)?
        }
        Placement::Device(gpu) => {
            let n = x.len();
            fits_binding(
                gpu,
                op,
                "max_storage_buffer_binding_size (the log-probabilities are bound whole)",
                layout::bytes(n),
            )?;
            let ClassIndex::Host(index) = &checked.index else {
                return Err(mixed(op));
            };
            let index = gpu.upload_new(bytemuck::cast_slice(index), op)?;
            let ones;
            let weight: &[f32] = match &options.weight {
                Some(w) => w,
                None => {
                    ones = vec![1.0f32; classes];
                    &ones
                }
            };
            let weight = gpu.upload_new(bytemuck::cast_slice(weight), op)?;
            let row_loss = gpu.alloc(layout::bytes(rows.max(1)), op)?;
            let scale = match options.reduction {
                Reduction::Mean => (1.0 / checked.weight_sum) as f32,
                _ => 1.0,
            };
            let params = NllParams {
                rows: rows as u32,
                classes: classes as u32,
                scale,
                stride: lines.stride.max(1) as u32,
            };
            let wg = WG.min(gpu.workgroup_cap());
            gpu.launch(
                &LOSSES,
                &[("WG", f64::from(wg))],
                &[
                    x.view(0, n, op)?,
                    index.view(rows),
                    grad.view(0, n, op)?,
                    row_loss.view(rows.max(1)),
                    weight.view(classes),
                ],
                bytemuck::bytes_of(&params),
                (rows as u64).div_ceil(u64::from(wg)).max(1),
            )?;
            match options.reduction {
                Reduction::None => Tensor::from_device(ctx, row_loss, &loss_shape),
                Reduction::Sum => sum_to_scalar(gpu, ctx, &row_loss, rows, 1.0)?,
                Reduction::Mean => sum_to_scalar(gpu, ctx, &row_loss, rows, scale)?,
            }
        }
    };
    Ok(LossAndGrad {
        loss: loss.to_dtype(dtype)?,
        grad: grad.to_dtype(dtype)?,
    })
}
