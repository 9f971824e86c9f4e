//! Elementwise activations in f64: `forward(x) = f(x)`, `backward(x, g) = g·f'(x)`.
//!
//! Conventions at kinks and non-finite inputs follow PyTorch's CPU kernels (see the table in
//! `shaders/activation.wgsl`): relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = α,
//! relu6' and hardsigmoid' are 0 at both ends, hardswish'(3) = 1; relu' and leaky_relu' pass
//! NaN through as g and g·slope, relu6' and hardsigmoid' give 0 at NaN; every other function
//! gives NaN for NaN.

use crate::definitions::activation::{Activation, QUICK_GELU_ALPHA};

const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// σ'(x) = σ(x)(1 − σ(x)) as e/(1 + e)² with e = e^−|x|, exact in both tails (1 − σ(x) would
/// cancel for x ≫ 0).
fn sigmoid_slope(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    e / ((1.0 + e) * (1.0 + e))
}

/// Φ(x), the standard normal CDF, through erfc so that both tails are accurate.
fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// φ(x), the standard normal density.
fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn softplus(x: f64, beta: f64, threshold: f64) -> f64 {
    if x * beta > threshold {
        x
    } else {
        (x * beta).exp().ln_1p() / beta
    }
}

fn elu(x: f64, alpha: f64) -> f64 {
    if x > 0.0 { x } else { alpha * x.exp_m1() }
}

fn elu_slope(x: f64, alpha: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else if x > 0.0 {
        1.0
    } else {
        alpha * x.exp()
    }
}

/// x − tanh x, through its Taylor series below |x| = 0.5 (forming it there would cancel x's
/// digits, even in f64): x³(1/3 − 2x²/15 + 17x⁴/315 − …), ten terms, relative error under 1e-10.
fn tanhshrink(x: f64) -> f64 {
    const SERIES: [f64; 10] = [
        1.0 / 3.0,
        -2.0 / 15.0,
        17.0 / 315.0,
        -62.0 / 2835.0,
        1382.0 / 155_925.0,
        -21844.0 / 6_081_075.0,
        929_569.0 / 638_512_875.0,
        -6_404_582.0 / 10_854_718_875.0,
        443_861_162.0 / 1_856_156_927_625.0,
        -18_888_466_084.0 / 194_896_477_400_625.0,
    ];
    if x.abs() < 0.5 {
        let u = x * x;
        x * u * SERIES.iter().rev().fold(0.0, |acc, &c| acc * u + c)
    } else {
        x - x.tanh()
    }
}

/// x·σ(αx): onnx_swish, and QuickGELU with α = 1.702.
fn swish(x: f64, alpha: f64) -> f64 {
    x * sigmoid(alpha * x)
}

/// g·(σ(αx) + αx·σ(αx)(1 − σ(αx))), NaN at ±∞ (∞·0, as PyTorch's product).
fn swish_backward(x: f64, g: f64, alpha: f64) -> f64 {
    let s = sigmoid(alpha * x);
    g * (s + alpha * x * s * (1.0 - s))
}

/// The eval-mode slope of rrelu.
fn rrelu_slope(lower: f32, upper: f32) -> f64 {
    (f64::from(lower) + f64::from(upper)) / 2.0
}

const GELU_TANH_BETA: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_TANH_KAPPA: f64 = 0.044715;

/// `f(x)`.
pub fn forward(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        Activation::LeakyRelu { negative_slope } => {
            if x > 0.0 {
                x
            } else {
                x * f64::from(negative_slope)
            }
        }
        Activation::Elu { alpha } => elu(x, f64::from(alpha)),
        Activation::Selu => SELU_SCALE * elu(x, SELU_ALPHA),
        Activation::Gelu => x * normal_cdf(x),
        Activation::GeluTanh => {
            let inner = GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x * x * x);
            0.5 * x * (1.0 + inner.tanh())
        }
        Activation::Silu => x * sigmoid(x),
        Activation::Mish => x * x.exp().ln_1p().tanh(),
        Activation::Softplus { beta, threshold } => {
            softplus(x, f64::from(beta), f64::from(threshold))
        }
        Activation::Hardsigmoid => {
            if x.is_nan() {
                x
            } else {
                ((x + 3.0).clamp(0.0, 6.0)) / 6.0
            }
        }
        Activation::Hardswish => {
            if x.is_nan() {
                x
            } else {
                x * (x + 3.0).clamp(0.0, 6.0) / 6.0
            }
        }
        Activation::Relu6 => {
            if x.is_nan() {
                x
            } else {
                x.clamp(0.0, 6.0)
            }
        }
        Activation::Logsigmoid => {
            if x.is_nan() {
                x
            } else {
                x.min(0.0) - (-x.abs()).exp().ln_1p()
            }
        }
        Activation::Celu { alpha } => {
            let a = f64::from(alpha);
            if x > 0.0 { x } else { a * (x / a).exp_m1() }
        }
        Activation::Hardtanh { min_val, max_val } => {
            if x.is_nan() {
                x
            } else {
                x.clamp(f64::from(min_val), f64::from(max_val))
            }
        }
        Activation::Softsign => x / (1.0 + x.abs()),
        Activation::Tanhshrink => tanhshrink(x),
        Activation::Threshold { threshold, value } => {
            if x <= f64::from(threshold) {
                f64::from(value)
            } else {
                x
            }
        }
        Activation::Hardshrink { lambd } => {
            if x.abs() <= f64::from(lambd) {
                0.0
            } else {
                x
            }
        }
        Activation::Softshrink { lambd } => {
            let l = f64::from(lambd);
            if x.is_nan() {
                x
            } else if x > l {
                x - l
            } else if x < -l {
                x + l
            } else {
                0.0
            }
        }
        Activation::RreluEval { lower, upper } => {
            if x > 0.0 {
                x
            } else {
                x * rrelu_slope(lower, upper)
            }
        }
        Activation::OnnxHardSigmoid { alpha, beta } => {
            if x.is_nan() {
                x
            } else {
                (f64::from(alpha) * x + f64::from(beta)).clamp(0.0, 1.0)
            }
        }
        Activation::OnnxSelu { alpha, gamma } => f64::from(gamma) * elu(x, f64::from(alpha)),
        Activation::OnnxThresholdedRelu { alpha } => {
            if x > f64::from(alpha) {
                x
            } else {
                0.0
            }
        }
        Activation::OnnxSwish { alpha } => swish(x, f64::from(alpha)),
        Activation::QuickGelu => swish(x, f64::from(QUICK_GELU_ALPHA)),
        Activation::SquaredRelu => {
            if x > 0.0 || x.is_nan() {
                x * x
            } else {
                0.0
            }
        }
    }
}

/// `g·f'(x)`.
pub fn backward(act: Activation, x: f64, g: f64) -> f64 {
    match act {
        Activation::Sigmoid => g * sigmoid_slope(x),
        Activation::Tanh => {
            let t = x.tanh();
            g * (1.0 - t * t)
        }
        Activation::Relu => {
            if x <= 0.0 {
                0.0
            } else {
                g
            }
        }
        Activation::LeakyRelu { negative_slope } => {
            if x > 0.0 {
                g
            } else {
                g * f64::from(negative_slope)
            }
        }
        Activation::Elu { alpha } => g * elu_slope(x, f64::from(alpha)),
        Activation::Selu => g * SELU_SCALE * elu_slope(x, SELU_ALPHA),
        Activation::Gelu => g * (normal_cdf(x) + x * normal_pdf(x)),
        Activation::GeluTanh => {
            let x_sq = x * x;
            let inner = GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x_sq * x);
            let t = inner.tanh();
            let left = 0.5 * x;
            let inner_slope = GELU_TANH_BETA * (1.0 + 3.0 * GELU_TANH_KAPPA * x_sq);
            g * (0.5 * (1.0 + t) + left * (1.0 - t * t) * inner_slope)
        }
        Activation::Silu => {
            let s = sigmoid(x);
            g * s * (1.0 + x * (1.0 - s))
        }
        Activation::Mish => {
            let t = x.exp().ln_1p().tanh();
            g * (t + x * sigmoid(x) * (1.0 - t * t))
        }
        Activation::Softplus { beta, threshold } => {
            let z = x * f64::from(beta);
            if z > f64::from(threshold) {
                g
            } else {
                g * sigmoid(z)
            }
        }
        Activation::Hardsigmoid => {
            if x > -3.0 && x < 3.0 {
                g / 6.0
            } else {
                0.0
            }
        }
        Activation::Hardswish => {
            if x < -3.0 {
                0.0
            } else if x >= 3.0 {
                g
            } else {
                g * (x / 3.0 + 0.5)
            }
        }
        Activation::Relu6 => {
            if x > 0.0 && x < 6.0 {
                g
            } else {
                0.0
            }
        }
        Activation::Logsigmoid => g * sigmoid(-x),
        Activation::Celu { alpha } => {
            if x.is_nan() {
                f64::NAN
            } else if x > 0.0 {
                g
            } else {
                g * (x / f64::from(alpha)).exp()
            }
        }
        Activation::Hardtanh { min_val, max_val } => {
            if x > f64::from(min_val) && x < f64::from(max_val) {
                g
            } else {
                0.0
            }
        }
        Activation::Softsign => {
            if x.is_finite() {
                g / ((1.0 + x.abs()) * (1.0 + x.abs()))
            } else {
                f64::NAN
            }
        }
        Activation::Tanhshrink => {
            let t = x.tanh();
            g * t * t
        }
        Activation::Threshold { threshold, .. } => {
            if x <= f64::from(threshold) {
                0.0
            } else {
                g
            }
        }
        Activation::Hardshrink { lambd } | Activation::Softshrink { lambd } => {
            if x.abs() > f64::from(lambd) { g } else { 0.0 }
        }
        Activation::RreluEval { lower, upper } => {
            if x > 0.0 {
                g
            } else {
                g * rrelu_slope(lower, upper)
            }
        }
        Activation::OnnxHardSigmoid { alpha, beta } => {
            let v = f64::from(alpha) * x + f64::from(beta);
            if v > 0.0 && v < 1.0 {
                g * f64::from(alpha)
            } else {
                0.0
            }
        }
        Activation::OnnxSelu { alpha, gamma } => {
            if x.is_nan() || x == 0.0 {
                0.0
            } else {
                g * f64::from(gamma) * elu_slope(x, f64::from(alpha))
            }
        }
        Activation::OnnxThresholdedRelu { alpha } => {
            if x > f64::from(alpha) {
                g
            } else {
                0.0
            }
        }
        Activation::OnnxSwish { alpha } => swish_backward(x, g, f64::from(alpha)),
        Activation::QuickGelu => swish_backward(x, g, f64::from(QUICK_GELU_ALPHA)),
        Activation::SquaredRelu => {
            if x > 0.0 || x.is_nan() {
                2.0 * x * g
            } else {
                0.0
            }
        }
    }
}

/// `g·σ'` from the saved output `y = σ(x)`: `g·y(1 − y)`.
pub fn sigmoid_backward_from_output(y: f64, g: f64) -> f64 {
    g * y * (1.0 - y)
}

/// `g·tanh'` from the saved output `y = tanh x`: `g·(1 − y²)`.
pub fn tanh_backward_from_output(y: f64, g: f64) -> f64 {
    g * (1.0 - y * y)
}

/// `f` over a slice, rounded to f32.
pub fn forward_slice(act: Activation, x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| forward(act, f64::from(v)) as f32)
        .collect()
}

/// `g·f'(x)` over slices of equal length, rounded to f32.
pub fn backward_slice(act: Activation, x: &[f32], g: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(g)
        .map(|(&v, &d)| backward(act, f64::from(v), f64::from(d)) as f32)
        .collect()
}

impl Activation {
    /// `f(x)` in f64 (the CPU reference).
    pub fn reference(self, x: f64) -> f64 {
        forward(self, x)
    }

    /// `g·f'(x)` in f64 (the CPU reference).
    pub fn reference_backward(self, x: f64, g: f64) -> f64 {
        backward(self, x, g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::activation::{NanBackward, NanForward};

    #[test]
    fn the_cpu_reference_gives_each_entrys_answer_at_nan() {
        let nan = f64::NAN;
        for a in Activation::ALL {
            let (at_nan, at_nan_backward) = a.nan_policy();
            let y = forward(a, nan);
            match at_nan {
                NanForward::Zero => assert_eq!(y, 0.0, "{a:?}"),
                NanForward::Nan | NanForward::NanByFormula => assert!(y.is_nan(), "{a:?}"),
            }
            let g = 0.75;
            let dx = backward(a, nan, g);
            let want = match at_nan_backward {
                NanBackward::Nan => nan,
                NanBackward::Grad => g,
                NanBackward::GradTimesSlope => g * f64::from(a.packed()[0]),
                NanBackward::Zero => 0.0,
            };
            assert!(
                dx == want || (dx.is_nan() && want.is_nan()),
                "{a:?}: {dx} at NaN, the table says {at_nan_backward:?}"
            );
        }
    }
}
