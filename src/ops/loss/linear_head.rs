//! The fused linear cross-entropy (what Liger-Kernel's fused linear cross-entropy and Apple's
//! Cut Cross-Entropy do on CUDA): the loss of the logits `z = x·Wᵀ + b` and the gradients dx,
//! dW, db without ever holding the `[N, K]` logits. The rows go in chunks through one scratch
//! buffer: a chunk's logits are formed there (`shaders/matmul.wgsl`), turned into their
//! gradient `∂loss/∂z` in place by the head kernel (`shaders/cross_entropy_head.wgsl`, scaled
//! for the whole batch's mean), and multiplied back into dx (the chunk's rows), dW and db
//! (accumulated) before the next chunk reuses the buffer:
//!   dx_rows = G·W,  dW += Gᵀ·x_rows,  db += 1ᵀ·G.

use crate::cpu;
use crate::cpu::narrow;
use crate::definitions::loss::{CrossEntropyOptions, HeadOptions, Reduction};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::layout::{self, DType};
use crate::ops::convert::common_float;
use crate::ops::linear::{
    accumulate_chunk, check_bias, chunk_logits, dims, host_logits, products_device,
};
use crate::ops::placement::{Placement, fits_binding, mixed, place};
use crate::tensor::Tensor;

use super::Targets;
use super::cross_entropy::check_class_options;
use super::cross_entropy::{ClassIndex, Classes, IGNORED};
use super::head::{HeadKernel, RowOutputs, class_targets, host_head};
use super::head_stats::scale_rows;

const OP: &str = "linear_cross_entropy";

/// The scratch a chunk's logits take at most, by default (32 MiB).
pub const LINEAR_CROSS_ENTROPY_CHUNK_BYTES: usize = 32 << 20;

/// A chunk's rows are a multiple of this (so that every chunk starts 256-byte aligned in x,
/// dx and the per-row buffers).
pub const LINEAR_CROSS_ENTROPY_ROW_ALIGN: usize = 64;

/// The loss of a linear layer's logits and its gradients, from
/// [`Tensor::linear_cross_entropy`].
#[derive(Clone, Debug)]
pub struct LinearCrossEntropy {
    /// The cross-entropy plus the z-loss, reduced as the options say (shape `[]`, or the
    /// input's shape without its last axis for `Reduction::None`).
    pub loss: Tensor,
    /// The z-loss part of `loss`, reduced the same way.
    pub z_loss: Tensor,
    /// Each row's log-sum-exp of the (capped) logits (f32, the input's shape without its last
    /// axis).
    pub lse: Tensor,
    /// The gradient of the (summed, for `None`) loss with respect to the input, its shape.
    pub dx: Tensor,
    /// With respect to the weight, `[K, H]`.
    pub dw: Tensor,
    /// With respect to the bias, `[K]` (whether or not a bias was given).
    pub db: Tensor,
}

impl Tensor {
    /// The cross-entropy of the linear layer's logits `z = x·Wᵀ + b` (this input `x [.., H]`,
    /// `weight [K, H]`, an optional `bias [K]`, as [`Tensor::linear`]) with class-index
    /// targets and every option of [`Tensor::cross_entropy_head`], returning the loss and the
    /// gradients `dx = G·W`, `dW = Gᵀ·x`, `db = Σ_n G` (`G = ∂loss/∂z`) **without storing the
    /// `[N, K]` logits**: the rows go in chunks of at most 32 MiB of logits
    /// ([`LINEAR_CROSS_ENTROPY_CHUNK_BYTES`]), each formed, turned into its gradient in place
    /// and multiplied back before the next. Device memory beyond the inputs and the gradients:
    /// one chunk, three floats and a class index per row. x, the weight and the gradients are
    /// bound whole, so each must fit one storage binding. Half inputs run on f32 copies.
    pub fn linear_cross_entropy(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
        head: &HeadOptions,
    ) -> Result<LinearCrossEntropy> {
        let chunk_rows = default_chunk_rows(weight);
        self.linear_cross_entropy_chunked(weight, bias, targets, options, head, chunk_rows)
    }

    /// [`Tensor::linear_cross_entropy`] with `chunk_rows` rows of logits per chunk (a positive
    /// multiple of [`LINEAR_CROSS_ENTROPY_ROW_ALIGN`]): fewer rows hold less memory and take
    /// more launches.
    pub fn linear_cross_entropy_chunked(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
        head: &HeadOptions,
        chunk_rows: usize,
    ) -> Result<LinearCrossEntropy> {
        self.fused_cross_entropy(weight, bias, targets, (options, head), None, chunk_rows)
    }

    /// [`Tensor::linear_cross_entropy`] with `reduction = None` for a loss the caller forms
    /// from the per-row losses: returns them (`loss`, one per row, unweighted) and the
    /// gradients of `Σ_r w_r·loss_r` for the per-row upstream weights `grad_loss` (`w`, one per
    /// row, the rows' shape): each row's `∂loss_r/∂z` is scaled by `w_r` in the chunk before it
    /// is multiplied back (an ignored row stays 0). A reduction other than `None` is
    /// [`Error::UnsupportedCombination`]; weights of another shape [`Error::ShapeMismatch`].
    pub fn linear_cross_entropy_weighted(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
        head: &HeadOptions,
        grad_loss: &Tensor,
    ) -> Result<LinearCrossEntropy> {
        let chunk = default_chunk_rows(weight);
        self.fused_cross_entropy(
            weight,
            bias,
            targets,
            (options, head),
            Some(grad_loss),
            chunk,
        )
    }

    /// [`Tensor::linear_cross_entropy_weighted`] with `chunk_rows` rows of logits per chunk.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cross_entropy_weighted_chunked(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
        head: &HeadOptions,
        grad_loss: &Tensor,
        chunk_rows: usize,
    ) -> Result<LinearCrossEntropy> {
        let pair = (options, head);
        self.fused_cross_entropy(weight, bias, targets, pair, Some(grad_loss), chunk_rows)
    }

    /// The fused head, with per-row upstream weights `weights` for `reduction = None`.
    fn fused_cross_entropy(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        (options, head): (&CrossEntropyOptions, &HeadOptions),
        weights: Option<&Tensor>,
        chunk_rows: usize,
    ) -> Result<LinearCrossEntropy> {
        check_chunk_rows(OP, chunk_rows)?;
        head.validate(OP)?;
        let (n, h, k) = dims(OP, self, weight)?;
        let mut operands = vec![("the input", self), ("weight", weight)];
        operands.extend(bias.map(|b| ("bias", b)));
        let dtype = common_float(OP, &operands)?;
        if dtype.is_half() {
            let wide: Vec<Tensor> = operands
                .iter()
                .map(|(_, t)| t.to_dtype(DType::F32))
                .collect::<Result<_>>()?;
            let r = wide[0].fused_cross_entropy(
                &wide[1],
                wide.get(2),
                targets,
                (options, head),
                weights,
                chunk_rows,
            )?;
            return Ok(LinearCrossEntropy {
                loss: r.loss.to_dtype(dtype)?,
                z_loss: r.z_loss.to_dtype(dtype)?,
                lse: r.lse,
                dx: r.dx.to_dtype(dtype)?,
                dw: r.dw.to_dtype(dtype)?,
                db: r.db.to_dtype(dtype)?,
            });
        }
        check_bias(OP, self, bias, k)?;
        check_class_options(OP, weight.shape(), k, options)?;
        let weights = row_weights(self, options, weights)?;
        let checked = class_targets(OP, self.context(), targets, (n, k), options)?;
        let weights = weights.map(|w| w.to_dtype(DType::F32)).transpose()?;
        let row_shape = &self.shape()[..self.shape().len().saturating_sub(1)];
        let loss_shape: Vec<usize> = match options.reduction {
            Reduction::None => row_shape.to_vec(),
            _ => Vec::new(),
        };
        let ctx = self.context();
        let mut operands = vec![self, weight];
        operands.extend(bias);
        if let Placement::Host = place(OP, &operands)? {
            let (x, w, logits) = host_logits(self, weight, bias, (n, h, k))?;
            let mut r = host_head(OP, &logits, k, &checked, options, head)?;
            if let Some(weights) = &weights {
                scale_host_rows(&mut r.grad, k, &checked, &weights.to_vec()?)?;
            }
            let (dx, dw, db) = cpu::linear::backward(&x, &w, &r.grad, n, h, k);
            let host = |v: &[f64], shape: &[usize]| Tensor::from_slice(ctx, &narrow(v), shape);
            return Ok(LinearCrossEntropy {
                loss: host(&r.loss, &loss_shape)?,
                z_loss: host(&r.z_loss, &loss_shape)?,
                lse: host(&r.lse, row_shape)?,
                dx: host(&dx, self.shape())?,
                dw: host(&dw, &[k, h])?,
                db: host(&db, &[k])?,
            });
        }
        let gpu = products_device(ctx, &[self, weight])?;
        let chunk = scratch_rows(OP, gpu, n, k, chunk_rows)?;
        let scratch = gpu.alloc(layout::bytes(chunk * k), OP)?;
        let ones = Tensor::from_slice(ctx, &vec![1.0; chunk], &[chunk])?;
        let mut uploaded = None;
        let index = checked.index.on_device(gpu, &mut uploaded, OP)?;
        let kernel = HeadKernel::new(gpu, &checked, options, head, k)?;
        let row_out = RowOutputs::alloc(gpu, n)?;
        let dx = Tensor::uninit_as(ctx, self.shape(), DType::F32, OP)?;
        let dw = Tensor::zeros(ctx, &[k, h])?;
        let db = Tensor::zeros(ctx, &[k])?;
        products_device(ctx, &[&dx, &dw])?;
        for r0 in (0..n).step_by(chunk) {
            let rows = chunk.min(n - r0);
            let logits = scratch.view(rows * k);
            let x_rows = self.view(r0 * h, rows * h, OP)?;
            chunk_logits(ctx, (x_rows, logits), weight, bias, (rows, k, h))?;
            kernel.launch(
                gpu,
                rows,
                [
                    logits,
                    index.view_at(r0, rows),
                    logits,
                    row_out.loss.view_at(r0, rows),
                    row_out.z_loss.view_at(r0, rows),
                    row_out.lse.view_at(r0, rows),
                ],
            )?;
            if let Some(weights) = &weights {
                let per_row = [logits, index.view(n.max(1)), weights.view(0, n, OP)?];
                scale_rows(gpu, (rows, r0, k), per_row)?;
            }
            // The chunk now holds G, its rows of ∂loss/∂z.
            let sums = (&dx, &dw, &db, &ones);
            accumulate_chunk(ctx, OP, sums, (logits, x_rows, weight), (r0, rows, h, k))?;
        }
        let (loss, z_loss, lse) = row_out.reduce(
            gpu,
            ctx,
            (options.reduction, kernel.scale()),
            n,
            &loss_shape,
        )?;
        Ok(LinearCrossEntropy {
            loss,
            z_loss,
            lse: lse.reshape(row_shape)?,
            dx,
            dw,
            db,
        })
    }
}

/// Rows per chunk must be a positive multiple of [`LINEAR_CROSS_ENTROPY_ROW_ALIGN`].
pub(super) fn check_chunk_rows(op: &'static str, chunk_rows: usize) -> Result<()> {
    if chunk_rows == 0 || !chunk_rows.is_multiple_of(LINEAR_CROSS_ENTROPY_ROW_ALIGN) {
        return Err(Error::InvalidParameter {
            op,
            name: "chunk_rows",
            value: chunk_rows as f64,
            reason: "must be a positive multiple of 64",
        });
    }
    Ok(())
}

/// One chunk of scratch for `chunk_rows` rows of `k` logits on `gpu` (at most `n` rows).
pub(super) fn scratch_rows(
    op: &'static str,
    gpu: &Gpu,
    n: usize,
    k: usize,
    chunk_rows: usize,
) -> Result<usize> {
    let chunk = chunk_rows
        .min(n.next_multiple_of(LINEAR_CROSS_ENTROPY_ROW_ALIGN))
        .max(1);
    let what = "max_storage_buffer_binding_size (one chunk of logits is bound whole); take fewer \
                rows per chunk";
    fits_binding(gpu, op, what, layout::bytes(chunk * k))?;
    Ok(chunk)
}

/// The rows per chunk of [`LINEAR_CROSS_ENTROPY_CHUNK_BYTES`] for `weight`'s classes.
pub(super) fn default_chunk_rows(weight: &Tensor) -> usize {
    let classes = weight.shape().first().copied().unwrap_or(0).max(1);
    let rows = (LINEAR_CROSS_ENTROPY_CHUNK_BYTES / layout::bytes(classes) as usize)
        / LINEAR_CROSS_ENTROPY_ROW_ALIGN
        * LINEAR_CROSS_ENTROPY_ROW_ALIGN;
    rows.max(LINEAR_CROSS_ENTROPY_ROW_ALIGN)
}

/// Per-row upstream weights checked against `x`'s rows (only with `reduction = None`).
fn row_weights(
    x: &Tensor,
    options: &CrossEntropyOptions,
    weights: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let Some(w) = weights else {
        return Ok(None);
    };
    if options.reduction != Reduction::None {
        return Err(Error::UnsupportedCombination {
            op: OP,
            options: "per-row upstream weights with a reduced loss",
            reason: "the weights multiply the per-row losses of reduction None; a mean's or a \
                     sum's gradient takes one upstream factor, applied by the caller",
        });
    }
    if !w.context().same(x.context()) {
        return Err(Error::ContextMismatch { op: OP });
    }
    w.expect_float(OP, "grad_loss (per-row weights)")?;
    let rows = &x.shape()[..x.shape().len().saturating_sub(1)];
    if w.shape() != rows {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "grad_loss (one weight per row)",
            got: w.shape().to_vec(),
            expected: rows.to_vec(),
        });
    }
    Ok(Some(w.clone()))
}

/// Each row of the host's gradient `grad` (rows of `k`) times its weight; ignored rows 0.
fn scale_host_rows(grad: &mut [f64], k: usize, checked: &Classes, weights: &[f32]) -> Result<()> {
    let ClassIndex::Host(index) = &checked.index else {
        return Err(mixed(OP));
    };
    for ((g, &class), &w) in grad.chunks_mut(k.max(1)).zip(index).zip(weights) {
        let scale = if class == IGNORED { 0.0 } else { f64::from(w) };
        g.iter_mut().for_each(|v| *v *= scale);
    }
    Ok(())
}
