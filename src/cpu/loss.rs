//! The fused losses in f64, written from PyTorch's documented formulas
//! (`torch.nn.functional.cross_entropy` and `binary_cross_entropy_with_logits`).
//!
//! Every function returns the loss (one value per row for `Reduction::None` in cross-entropy,
//! one per element in BCE, else a single value) and the gradient of the loss's sum with respect
//! to the logits (for `None`, the gradient of the summed per-row losses), as autograd gives it.
//! Each takes its op's options struct, as the op does. Arguments are taken as the ops validate
//! them (targets in range, tables of the right length); anything else gives NaN rows or
//! defaults, never a panic.

use crate::cpu::softmax::forward_row;
use crate::cpu::widen;
use crate::definitions::loss::{BceOptions, CrossEntropyOptions, HeadOptions, Reduction};

/// Loss values and the gradient with respect to the logits, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct LossReference {
    /// The reduced loss (one value) or the per-row / per-element losses for `None`.
    pub loss: Vec<f64>,
    /// d(loss)/d(logits), same length as the logits.
    pub grad: Vec<f64>,
}

/// What a cross-entropy row is compared with.
#[derive(Clone, Copy, Debug)]
pub enum CrossEntropyTargets<'a> {
    /// One class index per row (`ignore_index` rows are skipped).
    Indices(&'a [i64]),
    /// Class probabilities, one row of `classes` values per logit row.
    Probabilities(&'a [f64]),
}

/// Softmax cross-entropy over rows of `classes` logits:
/// index targets `loss_i = (1 − ε)(−w_y log p_y) + (ε/K) Σ_c (−w_c log p_c)`, mean over
/// `Σ w_y` of the rows not ignored; probability targets `loss_i = −Σ_c w_c t'_c log p_c` with
/// `t' = (1 − ε)t + ε/K`, mean over the rows.
pub fn cross_entropy(
    logits: &[f64],
    classes: usize,
    targets: CrossEntropyTargets<'_>,
    options: &CrossEntropyOptions,
) -> LossReference {
    let weight = options.weight.as_deref().map(widen);
    let weight = weight.as_deref();
    let (reduction, ignore_index) = (options.reduction, options.ignore_index);
    let label_smoothing = f64::from(options.label_smoothing);
    if classes == 0 {
        return LossReference {
            loss: vec![f64::NAN],
            grad: Vec::new(),
        };
    }
    let k = classes as f64;
    let eps = label_smoothing;
    let w = |c: usize| weight.and_then(|w| w.get(c)).copied().unwrap_or(1.0);
    let w_all: f64 = (0..classes).map(w).sum();
    let rows = logits.len() / classes;
    let mut losses = vec![0.0; rows];
    let mut grad = vec![0.0; rows * classes];
    // Rows that count towards the mean (not ignored), and its denominator.
    let mut counted = vec![false; rows];
    let mut denominator = 0.0;
    for r in 0..rows {
        let z = &logits[r * classes..(r + 1) * classes];
        let log_p = forward_row(z, true);
        let g = &mut grad[r * classes..(r + 1) * classes];
        match targets {
            CrossEntropyTargets::Indices(t) => {
                let target = t.get(r).copied();
                if target == Some(ignore_index) {
                    continue;
                }
                counted[r] = true;
                // A missing or out-of-range target (the ops validate; this is a reference)
                // gives a NaN row rather than a panic.
                let Some(y) = target
                    .and_then(|t| usize::try_from(t).ok())
                    .filter(|&y| y < classes)
                else {
                    losses[r] = f64::NAN;
                    g.fill(f64::NAN);
                    continue;
                };
                denominator += w(y);
                let mut loss = (1.0 - eps) * (-w(y) * log_p[y]);
                if eps > 0.0 {
                    loss += eps / k * (0..classes).map(|c| -w(c) * log_p[c]).sum::<f64>();
                }
                losses[r] = loss;
                for c in 0..classes {
                    let p = log_p[c].exp();
                    let hit = if c == y { 1.0 } else { 0.0 };
                    g[c] = (1.0 - eps) * w(y) * (p - hit);
                    if eps > 0.0 {
                        g[c] += eps / k * (w_all * p - w(c));
                    }
                }
            }
            CrossEntropyTargets::Probabilities(t) => {
                counted[r] = true;
                denominator += 1.0;
                let Some(t) = t.get(r * classes..(r + 1) * classes) else {
                    losses[r] = f64::NAN;
                    g.fill(f64::NAN);
                    continue;
                };
                let smooth = |c: usize| (1.0 - eps) * t[c] + eps / k;
                let a: f64 = (0..classes).map(|c| w(c) * smooth(c)).sum();
                losses[r] = (0..classes).map(|c| -w(c) * smooth(c) * log_p[c]).sum();
                for c in 0..classes {
                    g[c] = log_p[c].exp() * a - w(c) * smooth(c);
                }
            }
        }
    }
    match reduction {
        Reduction::None => LossReference { loss: losses, grad },
        Reduction::Sum => LossReference {
            loss: vec![losses.iter().sum()],
            grad,
        },
        Reduction::Mean => {
            // PyTorch divides the counted rows by Σ w_y, however small: a zero total weight
            // gives NaN there (0/0), while ignored rows keep their zero gradient.
            for (row, g) in grad.chunks_mut(classes).enumerate() {
                if counted[row] {
                    g.iter_mut().for_each(|v| *v /= denominator);
                }
            }
            LossReference {
                loss: vec![losses.iter().sum::<f64>() / denominator],
                grad,
            }
        }
    }
}

/// The cross-entropy of an LLM head with Liger-Kernel's options, over rows of `classes`
/// logits with class-index targets: the logits capped to `c·tanh(z/c)` when `softcap` is
/// `Some(c)`, the cross-entropy of the capped logits plus the z-loss `s·lse²` per row (its
/// gradient `2s·lse·p` included), the gradient taken through the cap. Returns the loss, the
/// gradient, the z-loss (reduced as the loss) and each row's `lse` (of the capped logits).
pub fn cross_entropy_head(
    logits: &[f64],
    classes: usize,
    targets: &[i64],
    options: &CrossEntropyOptions,
    head: &HeadOptions,
) -> HeadReference {
    let weight = options.weight.as_deref().map(widen);
    let weight = weight.as_deref();
    let (reduction, ignore_index) = (options.reduction, options.ignore_index);
    let lse_square_scale = f64::from(head.lse_square_scale);
    let softcap = head.softcap.map(f64::from);
    let capped: Vec<f64> = match softcap {
        Some(c) => logits.iter().map(|&z| c * (z / c).tanh()).collect(),
        None => logits.to_vec(),
    };
    let ce = cross_entropy(
        &capped,
        classes,
        CrossEntropyTargets::Indices(targets),
        options,
    );
    let rows = targets.len();
    let lse: Vec<f64> = capped
        .chunks(classes.max(1))
        .map(|row| {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            m + row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln()
        })
        .collect();
    let counted = |r: usize| targets[r] != ignore_index;
    let denominator: f64 = (0..rows)
        .filter(|&r| counted(r))
        .map(|r| weight.map_or(1.0, |w| w[targets[r] as usize]))
        .sum();
    let scale = match reduction {
        Reduction::Mean => 1.0 / denominator,
        _ => 1.0,
    };
    let z_rows: Vec<f64> = (0..rows)
        .map(|r| {
            if counted(r) {
                lse_square_scale * lse[r] * lse[r]
            } else {
                0.0
            }
        })
        .collect();
    let mut grad = ce.grad;
    for r in (0..rows).filter(|&r| counted(r)) {
        for c in 0..classes {
            let i = r * classes + c;
            grad[i] += scale * 2.0 * lse_square_scale * lse[r] * (capped[i] - lse[r]).exp();
        }
    }
    if let Some(c) = softcap {
        for (g, &z) in grad.iter_mut().zip(logits) {
            let t = (z / c).tanh();
            *g *= 1.0 - t * t;
        }
    }
    let reduce = |v: &[f64]| match reduction {
        Reduction::None => v.to_vec(),
        Reduction::Sum => vec![v.iter().sum()],
        Reduction::Mean => vec![v.iter().sum::<f64>() / denominator],
    };
    let z_loss = reduce(&z_rows);
    let loss = ce
        .loss
        .iter()
        .zip(z_loss.iter())
        .map(|(a, b)| a + b)
        .collect();
    HeadReference {
        loss,
        grad,
        z_loss,
        lse,
    }
}

/// What [`cross_entropy_head`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadReference {
    /// The cross-entropy plus the z-loss, reduced.
    pub loss: Vec<f64>,
    /// The gradient with respect to the (uncapped) logits.
    pub grad: Vec<f64>,
    /// The z-loss alone, reduced as the loss.
    pub z_loss: Vec<f64>,
    /// Each row's log-sum-exp of the capped logits.
    pub lse: Vec<f64>,
}

/// Negative log-likelihood over rows of `classes` log-probabilities, as
/// `torch.nn.functional.nll_loss`: `loss_r = −w_y·x_{r,y}` (0 for an ignored row), gradient
/// `−w_y` at each row's class and 0 elsewhere, the mean dividing both by `Σ w_y` over the rows
/// not ignored (NaN when that is 0). NLL has no label smoothing: `options.label_smoothing` is
/// not read (the op refuses one that is not 0).
pub fn nll_loss(
    log_probs: &[f64],
    classes: usize,
    targets: &[i64],
    options: &CrossEntropyOptions,
) -> LossReference {
    let weight = options.weight.as_deref().map(widen);
    let weight = weight.as_deref();
    let (reduction, ignore_index) = (options.reduction, options.ignore_index);
    let w = |c: usize| weight.map_or(1.0, |w| w[c]);
    let mut losses = vec![0.0; targets.len()];
    let mut grad = vec![0.0; log_probs.len()];
    let mut denominator = 0.0;
    let mut hits = Vec::with_capacity(targets.len());
    for (r, &t) in targets.iter().enumerate() {
        if t == ignore_index {
            continue;
        }
        let Some(y) = usize::try_from(t).ok().filter(|&y| y < classes) else {
            losses[r] = f64::NAN;
            continue;
        };
        denominator += w(y);
        losses[r] = -w(y) * log_probs[r * classes + y];
        grad[r * classes + y] = -w(y);
        hits.push(r * classes + y);
    }
    match reduction {
        Reduction::None => LossReference { loss: losses, grad },
        Reduction::Sum => LossReference {
            loss: vec![losses.iter().sum()],
            grad,
        },
        Reduction::Mean => {
            // Only each row's target is divided (PyTorch's backward): a zero total weight makes
            // those NaN and leaves the zeros.
            hits.iter().for_each(|&i| grad[i] /= denominator);
            LossReference {
                loss: vec![losses.iter().sum::<f64>() / denominator],
                grad,
            }
        }
    }
}

/// Sigmoid BCE with logits per element:
/// `l = w[(1 − y)z + q(log(1 + e^{−|z|}) + max(−z, 0))]`, `q = (π − 1)y + 1`, gradient
/// `w(qσ(z) − πy)`; `weight` and `pos_weight` repeat along rows of `cols` (their length).
pub fn bce_with_logits(logits: &[f64], targets: &[f64], options: &BceOptions) -> LossReference {
    let weight = options.weight.as_deref().map(widen);
    let pos_weight = options.pos_weight.as_deref().map(widen);
    let (weight, pos_weight) = (weight.as_deref(), pos_weight.as_deref());
    let reduction = options.reduction;
    let per_col = |table: Option<&[f64]>, i: usize| {
        table
            .filter(|t| !t.is_empty())
            .map_or(1.0, |t| t[i % t.len()])
    };
    let mut losses = Vec::with_capacity(logits.len());
    let mut grad = Vec::with_capacity(logits.len());
    for (i, (&z, &y)) in logits.iter().zip(targets).enumerate() {
        let w = per_col(weight, i);
        let pw = per_col(pos_weight, i);
        let q = (pw - 1.0) * y + 1.0;
        let softplus_neg = (-z.abs()).exp().ln_1p() + (-z).max(0.0);
        losses.push(w * ((1.0 - y) * z + q * softplus_neg));
        let sigma = 1.0 / (1.0 + (-z).exp());
        grad.push(w * (q * sigma - pw * y));
    }
    let n = losses.len() as f64;
    match reduction {
        Reduction::None => LossReference { loss: losses, grad },
        Reduction::Sum => LossReference {
            loss: vec![losses.iter().sum()],
            grad,
        },
        Reduction::Mean => LossReference {
            loss: vec![losses.iter().sum::<f64>() / n],
            grad: grad.into_iter().map(|g| g / n).collect(),
        },
    }
}
