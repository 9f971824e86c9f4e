//! The losses in PyTorch's layout, the class at dim 1: logits `[N, C]` or `[N, C, d1, …, dk]`
//! (a segmentation map's `[N, C, H, W]`), targets `[N]` or `[N, d1, …, dk]`. The class dim is
//! moved last (`ops::transpose`), the row kernels run on `[N·S, C]`, and the gradient moves
//! back; the last-dim layout that LLM heads produce keeps its own names
//! ([`Tensor::cross_entropy`]).

use crate::definitions::loss::{CrossEntropyOptions, Reduction};
use crate::error::{Error, Result};
use crate::layout::DType;
use crate::ops::transpose::transpose_last_two;
use crate::tensor::Tensor;

use super::{LossAndGrad, Targets};

const OP: &str = "cross_entropy (class at dim 1)";
const OP_NLL: &str = "nll_loss (class at dim 1)";

/// `(N, C, S, [N, d1, …, dk])` of an input in the class-at-dim-1 layout.
fn class_dim_layout(
    op: &'static str,
    shape: &[usize],
) -> Result<(usize, usize, usize, Vec<usize>)> {
    match shape {
        [n, c, spatial @ ..] => {
            let mut target_shape = vec![*n];
            target_shape.extend_from_slice(spatial);
            Ok((*n, *c, spatial.iter().product(), target_shape))
        }
        _ => Err(Error::invalid_shape(
            op,
            shape,
            "the class-at-dim-1 layout needs [N, C] or [N, C, d1, …, dk]",
        )),
    }
}

/// Checks that `targets` has one entry per `[N, d1, …, dk]` position (class indices) or the
/// logits' shape (probabilities).
fn check_targets(
    op: &'static str,
    targets: &Targets<'_>,
    logits_shape: &[usize],
    target_shape: &[usize],
) -> Result<()> {
    let positions: usize = target_shape.iter().product();
    let (got, expected) = match targets {
        Targets::Indices(t) if t.len() != positions => (vec![t.len()], target_shape),
        Targets::IndicesU32(t) if t.len() != positions => (vec![t.len()], target_shape),
        Targets::Device(t) if t.shape() != target_shape && t.shape() != [positions] => {
            (t.shape().to_vec(), target_shape)
        }
        Targets::Probabilities(p) if p.shape() != logits_shape => {
            (p.shape().to_vec(), logits_shape)
        }
        _ => return Ok(()),
    };
    Err(Error::ShapeMismatch {
        op,
        what: "targets (class indices of shape [N, d1, …, dk], or probabilities of the logits' \
               shape)",
        got,
        expected: expected.to_vec(),
    })
}

impl Tensor {
    /// Softmax cross-entropy in PyTorch's layout (`torch.nn.functional.cross_entropy`): logits
    /// `[N, C]` or `[N, C, d1, …, dk]` with the class at dim 1; targets class indices for each
    /// `[N, d1, …, dk]` position (row-major) or probabilities of the logits' shape. Options,
    /// loss and gradient as [`Tensor::cross_entropy`] (which takes the class along the last dim,
    /// as LLM heads produce it); `Reduction::None` gives the loss of shape `[N, d1, …, dk]`,
    /// and the gradient has the logits' shape and layout. Half logits compute in f32 and round
    /// once, as everywhere.
    pub fn cross_entropy_dim1(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
    ) -> Result<LossAndGrad> {
        in_class_dim1(OP, self, targets, options, |rows, targets| {
            rows.cross_entropy(targets, options)
        })
    }

    /// Negative log-likelihood in PyTorch's layout (`torch.nn.functional.nll_loss`):
    /// log-probabilities `[N, C]` or `[N, C, d1, …, dk]` with the class at dim 1, one class
    /// index per `[N, d1, …, dk]` position; as [`Tensor::nll_loss`] otherwise
    /// (`loss = −w_y·x_y`, `Reduction::None` of shape `[N, d1, …, dk]`).
    pub fn nll_loss_dim1(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
    ) -> Result<LossAndGrad> {
        in_class_dim1(OP_NLL, self, targets, options, |rows, targets| {
            rows.nll_loss(targets, options)
        })
    }
}

/// Runs `loss` (a last-dim loss) on `x` in the class-at-dim-1 layout: the class moved last
/// (and probability targets with it), the gradient moved back and the loss shaped
/// `[N, d1, …, dk]` for `Reduction::None`.
fn in_class_dim1(
    op: &'static str,
    x: &Tensor,
    targets: Targets<'_>,
    options: &CrossEntropyOptions,
    loss: impl FnOnce(&Tensor, Targets<'_>) -> Result<LossAndGrad>,
) -> Result<LossAndGrad> {
    let (n, c, s, target_shape) = class_dim_layout(op, x.shape())?;
    check_targets(op, &targets, x.shape(), &target_shape)?;
    if s == 1 {
        // [N, C, 1, …]: already rows of classes.
        let moved_targets;
        let targets = match targets {
            Targets::Probabilities(p) => {
                moved_targets = p.reshape(&[n, c])?;
                Targets::Probabilities(&moved_targets)
            }
            other => other,
        };
        let r = loss(&x.reshape(&[n, c])?, targets)?;
        return finish(r, x.shape(), &target_shape, options, None);
    }
    let class_last = |t: &Tensor| {
        let moved = transpose_last_two(&t.to_dtype(DType::F32)?, n, c, s)?;
        moved.reshape(&[n * s, c])
    };
    let moved_targets;
    let targets = match targets {
        Targets::Probabilities(p) => {
            moved_targets = class_last(p)?;
            Targets::Probabilities(&moved_targets)
        }
        other => other,
    };
    let r = loss(&class_last(x)?, targets)?;
    finish(
        r,
        x.shape(),
        &target_shape,
        options,
        Some((n, c, s, x.dtype())),
    )
}

/// The loss reshaped to `[N, d1, …, dk]` for `Reduction::None`, and the gradient moved back to
/// the class-at-dim-1 layout (`moved_back`: `(N, C, S, dtype)` when the class was moved last)
/// and rounded to the logits' type.
fn finish(
    r: LossAndGrad,
    shape: &[usize],
    target_shape: &[usize],
    options: &CrossEntropyOptions,
    moved_back: Option<(usize, usize, usize, DType)>,
) -> Result<LossAndGrad> {
    let loss = match options.reduction {
        Reduction::None => r.loss.reshape(target_shape)?,
        _ => r.loss,
    };
    let grad = match moved_back {
        Some((n, c, s, dtype)) => {
            let back = transpose_last_two(&r.grad, n, s, c)?.reshape(shape)?;
            return Ok(LossAndGrad {
                loss: loss.to_dtype(dtype)?,
                grad: back.to_dtype(dtype)?,
            });
        }
        None => r.grad.reshape(shape)?,
    };
    Ok(LossAndGrad { loss, grad })
}
