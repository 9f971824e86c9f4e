//! The losses in PyTorch's layout, the class at dim 1: logits `[N, C]` or `[N, C, d1, …, dk]`
//! (a segmentation map's `[N, C, H, W]`), targets `[N]` or `[N, d1, …, dk]`. With class indices
//! the cross-entropy runs the head kernel, and the NLL its own, over the lines in place (a row's
//! classes `S` apart); for probability targets the class dim is moved last (`ops::transpose`), the row kernels run on
//! `[N·S, C]`, and the gradient moves back. The last-dim layout that LLM heads produce keeps its
//! own names ([`Tensor::cross_entropy`]).

use crate::definitions::loss::{CrossEntropyOptions, HeadOptions, Reduction};
use crate::error::{Error, Result};
use crate::layout::DType;
use crate::ops::transpose::transpose_last_two;
use crate::tensor::Tensor;

use super::cross_entropy::check_class_options;
use super::head::head_loss;
use super::nll::nll;
use super::{Lines, LossAndGrad, Targets};

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
        let (n, c, s, target_shape) = class_dim_layout(OP, self.shape())?;
        check_targets(OP, &targets, self.shape(), &target_shape)?;
        if let Targets::Probabilities(p) = targets {
            return probabilities_in_class_dim1(self, p, options, (n, c, s), &target_shape);
        }
        self.expect_float(OP, "the logits")?;
        check_class_options(OP, self.shape(), c, options)?;
        let lines = Lines::class_dim1(n, c, s);
        let no_extras = HeadOptions::default();
        let r = head_loss(OP, self, targets, options, &no_extras, lines, &target_shape)?;
        Ok(LossAndGrad {
            loss: r.loss,
            grad: r.grad,
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
        let (n, c, s, target_shape) = class_dim_layout(OP_NLL, self.shape())?;
        check_targets(OP_NLL, &targets, self.shape(), &target_shape)?;
        self.expect_float(OP_NLL, "the log-probabilities")?;
        let lines = Lines::class_dim1(n, c, s);
        nll(OP_NLL, self, targets, options, lines, &target_shape)
    }
}

/// The cross-entropy with probability targets (`p` of the logits' shape): both moved to rows
/// `[N·S, C]` (the class last), the row kernels run, the gradient moved back to the logits'
/// layout and the loss shaped `[N, d1, …, dk]` for `Reduction::None`.
fn probabilities_in_class_dim1(
    x: &Tensor,
    p: &Tensor,
    options: &CrossEntropyOptions,
    (n, c, s): (usize, usize, usize),
    target_shape: &[usize],
) -> Result<LossAndGrad> {
    // [N, C, 1, …] is already rows of classes.
    let class_last = |t: &Tensor| match s {
        1 => t.reshape(&[n, c]),
        _ => transpose_last_two(&t.to_dtype(DType::F32)?, n, c, s)?.reshape(&[n * s, c]),
    };
    let r = class_last(x)?.cross_entropy(Targets::Probabilities(&class_last(p)?), options)?;
    let loss = match options.reduction {
        Reduction::None => r.loss.reshape(target_shape)?,
        _ => r.loss,
    };
    let grad = match s {
        1 => r.grad,
        _ => transpose_last_two(&r.grad, n, s, c)?,
    };
    let grad = grad.reshape(x.shape())?;
    Ok(LossAndGrad {
        loss: loss.to_dtype(x.dtype())?,
        grad: grad.to_dtype(x.dtype())?,
    })
}
