//! The linear layer in f64: `y = x·Wᵀ + b` for `x [N, H]`, `W [K, H]`, `b [K]`, and its
//! gradients `dx = g·W`, `dW = gᵀ·x`, `db = Σ_n g`.

/// `y [N, K]` of `x [N, H]`, `w [K, H]` and an optional bias `b [K]`.
pub fn forward(x: &[f64], w: &[f64], b: Option<&[f64]>, n: usize, h: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * k];
    for r in 0..n {
        for c in 0..k {
            let dot: f64 = (0..h).map(|j| x[r * h + j] * w[c * h + j]).sum();
            y[r * k + c] = dot + b.map_or(0.0, |b| b[c]);
        }
    }
    y
}

/// `(dx [N, H], dW [K, H], db [K])` from the upstream gradient `g [N, K]`.
pub fn backward(
    x: &[f64],
    w: &[f64],
    g: &[f64],
    n: usize,
    h: usize,
    k: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; n * h];
    let mut dw = vec![0.0; k * h];
    let mut db = vec![0.0; k];
    for r in 0..n {
        for c in 0..k {
            let gv = g[r * k + c];
            db[c] += gv;
            for j in 0..h {
                dx[r * h + j] += gv * w[c * h + j];
                dw[c * h + j] += gv * x[r * h + j];
            }
        }
    }
    (dx, dw, db)
}
