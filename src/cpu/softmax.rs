//! Row-wise softmax and log-softmax in f64, forward and backward, over rows of `cols` values.
//!
//! `y_i = e^{x_i − M}/S`, `log y_i = x_i − M − log S` with `M = max_j x_j`,
//! `S = Σ_j e^{x_j − M}`; backward from the saved output `y`: `dx = y ⊙ (g − Σ_j g_j y_j)`
//! and, for log-softmax, `dx = g − e^y · Σ_j g_j`. A row with NaN or +∞, or of all −∞, gives
//! NaN, as in PyTorch (the arithmetic does it: ∞ − ∞ and −∞ − (−∞) are NaN).

use super::widen;
/// The maximum of a row, NaN if any element is NaN.
fn row_max(row: &[f64]) -> f64 {
    row.iter().fold(f64::NEG_INFINITY, |m, &v| {
        if v.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(v)
        }
    })
}

/// Softmax (or log-softmax when `log`) of one row, in f64.
pub fn forward_row(x: &[f64], log: bool) -> Vec<f64> {
    let m = row_max(x);
    let s: f64 = x.iter().map(|&v| (v - m).exp()).sum();
    x.iter()
        .map(|&v| {
            if log {
                v - m - s.ln()
            } else {
                (v - m).exp() / s
            }
        })
        .collect()
}

/// The backward of softmax (or log-softmax) for one row, from the saved output `y`.
pub fn backward_row(y: &[f64], g: &[f64], log: bool) -> Vec<f64> {
    if log {
        let sum: f64 = g.iter().sum();
        y.iter().zip(g).map(|(&y, &g)| g - y.exp() * sum).collect()
    } else {
        let dot: f64 = y.iter().zip(g).map(|(&y, &g)| y * g).sum();
        y.iter().zip(g).map(|(&y, &g)| y * (g - dot)).collect()
    }
}

/// Forward over `rows × cols` values, rounded to f32.
pub fn forward(x: &[f32], cols: usize, log: bool) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    x.chunks(cols)
        .flat_map(|row| forward_row(&widen(row), log))
        .map(|v| v as f32)
        .collect()
}

/// Backward over `rows × cols` values, rounded to f32.
pub fn backward(y: &[f32], g: &[f32], cols: usize, log: bool) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    y.chunks(cols)
        .zip(g.chunks(cols))
        .flat_map(|(y, g)| backward_row(&widen(y), &widen(g), log))
        .map(|v| v as f32)
        .collect()
}
