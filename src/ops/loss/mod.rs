//! Fused losses: softmax cross-entropy and sigmoid BCE with logits, each returning the loss and
//! the gradient with respect to the logits from one kernel, with PyTorch's semantics. The
//! launches are in `cross_entropy` and `bce`; both reduce their losses with `sum`.

mod bce;
mod class_dim;
mod class_index;
mod cross_entropy;
mod head;
mod head_stats;
mod linear_head;
mod linear_head_stats;
mod nll;

use bce::bce_with_logits;
pub use head::HeadLoss;
pub use head_stats::HeadStatsOutput;
pub use linear_head::{
    LINEAR_CROSS_ENTROPY_CHUNK_BYTES, LINEAR_CROSS_ENTROPY_ROW_ALIGN, LinearCrossEntropy,
};
pub use linear_head_stats::LinearHeadStep;

#[cfg(test)]
pub(crate) use cross_entropy::flag_triples;

/// Every kernel the losses may launch, with the size of the parameter block the host writes.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(crate::gpu::pipelines::Kernel, crate::ops::ParamsLayout)> {
    let mut all = cross_entropy::launched_kernels();
    all.extend(class_index::launched_kernels());
    all.extend(bce::launched_kernels());
    all.extend(nll::launched_kernels());
    all.extend(head::launched_kernels());
    all.extend(head_stats::launched_kernels());
    all
}
use cross_entropy::cross_entropy_into;

use crate::definitions::loss::{BceOptions, CrossEntropyOptions};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The rows a class-index loss reads: `rows` rows of `classes` values, a row's consecutive values
/// `stride` apart (1 for the class along the last dim; `S` for PyTorch's `[N, C, S]`, whose row
/// `n·S + s` starts at `n·C·S + s`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Lines {
    pub rows: usize,
    pub classes: usize,
    pub stride: usize,
}

impl Lines {
    /// The rows of a tensor `[N, C, S]`: `N·S` rows of `C` values, `S` apart.
    pub fn class_dim1(n: usize, c: usize, s: usize) -> Lines {
        Lines {
            rows: n * s,
            classes: c,
            stride: s,
        }
    }

    /// Where value `c` of row `r` lies.
    fn at(self, r: usize, c: usize) -> usize {
        let s = self.stride.max(1);
        (r / s) * self.classes * s + c * s + r % s
    }

    /// The rows of `all`, one after another (`rows × classes`).
    pub fn gather(self, all: &[f64]) -> Vec<f64> {
        let n = self.rows * self.classes;
        (0..n)
            .map(|i| all[self.at(i / self.classes, i % self.classes)])
            .collect()
    }

    /// `rows × classes` values put back where [`Lines::gather`] took them from.
    pub fn scatter(self, in_rows: &[f64]) -> Vec<f64> {
        let mut all = vec![0.0; in_rows.len()];
        for (i, &v) in in_rows.iter().enumerate() {
            all[self.at(i / self.classes, i % self.classes)] = v;
        }
        all
    }
}

/// The targets of a cross-entropy.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// One class index per row.
    Indices(&'a [i64]),
    /// One class index per row, unsigned.
    IndicesU32(&'a [u32]),
    /// One class index per row in a tensor on the device (`U32`, `I32` or `I64`, e.g. a view
    /// of the caller's buffer from [`Tensor::from_wgpu_buffer_as`]), converted and checked on
    /// the device: a label that is neither in `[0, K)` nor the ignore index is
    /// [`Error::TargetOutOfRange`] (its row and value) before any result of the call can be
    /// read, and never indexes out of bounds. Costs one small read-back per call.
    Device(&'a Tensor),
    /// Class probabilities, a tensor of the logits' shape.
    Probabilities(&'a Tensor),
}

/// A loss and the gradient of the (summed, for `None`) loss with respect to the logits.
#[derive(Clone, Debug)]
pub struct LossAndGrad {
    /// Shape `[]` for `Mean` and `Sum`; the logits' shape without its last axis (cross-entropy)
    /// or the logits' shape (BCE) for `None`.
    pub loss: Tensor,
    /// Same shape as the logits.
    pub grad: Tensor,
}

impl Tensor {
    /// Softmax cross-entropy of these logits (`[.., K]`, rows along the last axis) with PyTorch's
    /// semantics, returning the loss and `d loss / d logits = scale·(softmax − t')` (weighted and
    /// smoothed as the options say), computed in one fused pass. Class indices are checked on
    /// the host while they are uploaded.
    pub fn cross_entropy(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
    ) -> Result<LossAndGrad> {
        let grad = self.uninit_like(OP_CE)?;
        let loss = cross_entropy_into(self, targets, options, &grad)?;
        Ok(LossAndGrad { loss, grad })
    }

    /// As [`Tensor::cross_entropy`], writing the gradient into `grad` (a tensor of the logits'
    /// shape on the same context: a view of a caller's buffer, say, or the logits themselves
    /// for in place). Returns the loss.
    pub fn cross_entropy_into(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
        grad: &Tensor,
    ) -> Result<Tensor> {
        cross_entropy_into(self, targets, options, grad)
    }

    /// As [`Tensor::cross_entropy`], but the gradient overwrites the logits, so a large
    /// vocabulary needs no second buffer of the logits' size. Returns the loss.
    pub fn cross_entropy_in_place(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
    ) -> Result<Tensor> {
        cross_entropy_into(self, targets, options, self)
    }

    /// Sigmoid binary cross-entropy with logits (any shape), PyTorch's semantics:
    /// `l = w[(1 − y)z + q·(log(1 + e^{−|z|}) + max(−z, 0))]`, `q = (pos_weight − 1)y + 1`, and
    /// the gradient `w(q·σ(z) − pos_weight·y)` (= `σ(z) − y` unweighted), scaled by the reduction.
    pub fn bce_with_logits(&self, targets: &Tensor, options: &BceOptions) -> Result<LossAndGrad> {
        bce_with_logits(self, targets, options)
    }
}

const OP_CE: &str = "cross_entropy";
const OP_BCE: &str = "bce_with_logits";

/// Turns integer-valued floats into class indices, rejecting NaN, infinities and fractions.
pub fn class_indices_from_floats(values: &[f64]) -> Result<Vec<i64>> {
    values
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(Error::TargetNotInteger {
                    op: OP_CE,
                    row,
                    value: v,
                })
            }
        })
        .collect()
}

fn check_weight(
    op: &'static str,
    name: &'static str,
    w: &Option<Vec<f32>>,
    len: usize,
) -> Result<()> {
    match w {
        Some(w) if w.len() != len => Err(Error::ShapeMismatch {
            op,
            what: name,
            got: vec![w.len()],
            expected: vec![len],
        }),
        _ => Ok(()),
    }
}
