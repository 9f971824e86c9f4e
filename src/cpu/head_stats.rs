//! Per-token statistics of a head's logits in f64, for a loss the caller writes on them (PPO,
//! GRPO, DPO-style), forward and backward.
//!
//! Over rows of `classes` logits with one class index `t` per row, `u = cap(z)/T` (`cap(z) =
//! c·tanh(z/c)` with a softcap `c`, else `z`), `p = softmax(u)`:
//!
//! - `lse = log Σ_j e^{u_j}`, `log p_t = u_t − lse`, `H = −Σ_j p_j log p_j`;
//! - the gradient of `L = Σ_r a_r·log p_t + Σ_r c_r·H_r (+ Σ_r s·lse_r²)` with respect to z:
//!   `∂L/∂z_j = cap'(z_j)·[(a·(δ_jt − p_j) − c·p_j·(log p_j + H))/T + 2s·lse·p_j]`,
//!   `cap'(z) = 1 − tanh²(z/c)`.
//!
//! Edge rows as the softmax's: a row whose `u` holds a NaN or a +∞, or is all −∞, gives NaN
//! (every output and its gradient); a −∞ entry of another row has `p = 0` and adds nothing to
//! the entropy (the limit of `p log p`) or to the gradient's entropy term. An ignored row (its
//! class the ignore index) gives 0 log-probability and entropy and no gradient; its `lse` is
//! computed all the same. `u` is taken as f32 forms it: beyond f32's range it is ±∞.

use crate::definitions::loss::HeadStats;

/// What [`head_stats`] returns, one value per row.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadStatsReference {
    /// `log p_t` (0 on ignored rows).
    pub logp: Vec<f64>,
    /// `H = −Σ p log p` (0 on ignored rows).
    pub entropy: Vec<f64>,
    /// `log Σ e^u` (every row).
    pub lse: Vec<f64>,
}

/// `u = cap(z)/T` of one logit, ±∞ where it lies beyond f32's range (the ops form u in f32,
/// as PyTorch's `z / T` does, so 3e38/0.5 is +∞ there).
fn scaled(z: f64, options: &HeadStats) -> f64 {
    let capped = match options.softcap {
        Some(c) => {
            let c = f64::from(c);
            c * (z / c).tanh()
        }
        None => z,
    };
    let u = capped / f64::from(options.temperature);
    if (u as f32).is_infinite() {
        f64::from(u as f32)
    } else {
        u
    }
}

/// `cap'(z)`: 1 without a softcap.
fn cap_slope(z: f64, options: &HeadStats) -> f64 {
    match options.softcap {
        Some(c) => {
            let t = (z / f64::from(c)).tanh();
            1.0 - t * t
        }
        None => 1.0,
    }
}

/// `(lse, H)` of one row of `u`, NaN for an edge row (a NaN or +∞, or all −∞).
fn row_stats(u: &[f64]) -> (f64, f64) {
    if u.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return (f64::NAN, f64::NAN);
    }
    let m = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return (f64::NAN, f64::NAN);
    }
    let s: f64 = u.iter().map(|&v| (v - m).exp()).sum();
    let lse = m + s.ln();
    let entropy = -u
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| {
            let log_p = v - lse;
            log_p.exp() * log_p
        })
        .sum::<f64>();
    (lse, entropy)
}

/// Whether row `r` is ignored (its target is the ignore index).
fn ignored(targets: &[i64], r: usize, options: &HeadStats) -> bool {
    targets.get(r) == Some(&options.ignore_index)
}

/// The statistics of each row of `logits` (rows of `classes`) with class indices `targets`.
/// A target outside `[0, classes)` that is not the ignore index (the ops refuse it) gives a
/// NaN log-probability.
pub fn head_stats(
    logits: &[f64],
    classes: usize,
    targets: &[i64],
    options: &HeadStats,
) -> HeadStatsReference {
    let rows = targets.len();
    let mut out = HeadStatsReference {
        logp: vec![0.0; rows],
        entropy: vec![0.0; rows],
        lse: vec![f64::NAN; rows],
    };
    for r in 0..rows {
        let Some(z) = logits.get(r * classes..(r + 1) * classes) else {
            continue;
        };
        let u: Vec<f64> = z.iter().map(|&z| scaled(z, options)).collect();
        let (lse, entropy) = row_stats(&u);
        out.lse[r] = lse;
        if ignored(targets, r, options) {
            continue;
        }
        out.entropy[r] = entropy;
        out.logp[r] = usize::try_from(targets[r])
            .ok()
            .and_then(|t| u.get(t))
            .map_or(
                f64::NAN,
                |&ut| if lse.is_nan() { f64::NAN } else { ut - lse },
            );
    }
    out
}

/// The gradient with respect to `logits` of `Σ a·log p_t + Σ c·H (+ Σ s·lse²)` given the
/// upstream gradients `grad_logp` (a) and `grad_entropy` (c), each one per row (`None`: zero),
/// with each row's `lse` and `H` as [`head_stats`] gives them.
pub fn head_stats_backward(
    logits: &[f64],
    classes: usize,
    targets: &[i64],
    options: &HeadStats,
    grad_logp: Option<&[f64]>,
    grad_entropy: Option<&[f64]>,
) -> Vec<f64> {
    let stats = head_stats(logits, classes, targets, options);
    let (lse, entropy) = (&stats.lse, &stats.entropy);
    let t = f64::from(options.temperature);
    let s = f64::from(options.lse_square_scale);
    let mut grad = vec![0.0; logits.len()];
    for (r, g) in grad.chunks_mut(classes.max(1)).enumerate() {
        if ignored(targets, r, options) {
            continue;
        }
        let at = |v: Option<&[f64]>| v.and_then(|v| v.get(r)).copied().unwrap_or(0.0);
        let (a, c) = (at(grad_logp), at(grad_entropy));
        let (l, h) = (lse[r], entropy[r]);
        let target = targets.get(r).and_then(|&t| usize::try_from(t).ok());
        for (j, g) in g.iter_mut().enumerate() {
            let z = logits[r * classes + j];
            let u = scaled(z, options);
            if !l.is_finite() || u.is_nan() || u == f64::INFINITY {
                *g = f64::NAN;
                continue;
            }
            let log_p = u - l;
            let p = if u == f64::NEG_INFINITY {
                0.0
            } else {
                log_p.exp()
            };
            let hit = if target == Some(j) { 1.0 } else { 0.0 };
            let entropy_term = if p > 0.0 { p * (log_p + h) } else { 0.0 };
            let dz = (a * (hit - p) - c * entropy_term) / t + 2.0 * s * l * p;
            *g = dz * cap_slope(z, options);
        }
    }
    grad
}
